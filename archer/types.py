"""The data every part of archer exchanges: turns and trajectories.

A `Trajectory` is one episode: the env and task it ran on, and its turns in order. A `Turn` is
one agent utterance (its text and, from a policy, its token ids and log-probs) with the
observation it answered and what the env returned. Everything is plain Python so it
serialises to JSON (the dataset format, docs/datasets.md) without loss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Turn:
    observation: str
    """The text the agent saw before speaking (the state s_t)."""
    action: str
    """The utterance as the agent produced it (a_t)."""
    reward: float
    """Reward returned by the env for this utterance (r_t)."""
    terminated: bool
    """The task ended after this turn (no bootstrap)."""
    truncated: bool
    """A time limit or an error cut the episode short after this turn (bootstrap allowed)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Per-turn flags worth keeping: invalid_action, action_truncated, answer, error."""
    logprobs: list[float] | None = None
    """Log-probabilities under the acting policy, one per id of `action_ids`, the stop token
    included (policy rollouts only; scripted agents leave it None)."""
    action_ids: list[int] | None = None
    """The token ids the policy sampled, the stop token included when one was sampled (policy
    rollouts only; None for scripted turns, which are encoded as `encode(text) + eos`)."""


@dataclass
class Trajectory:
    env_id: str
    task_id: str
    turns: list[Turn]
    final_observation: str = ""
    """The observation after the last turn (s_T)."""
    success: bool = False
    agent: str = ""
    """Who produced it: a scripted agent name, a `module:callable`, or a policy directory."""
    seed: int | None = None
    error: str | None = None
    """Set when the env raised: the episode was ended there and counted, not retried."""
    policy_version: int | None = None
    """Version of the policy weights that acted (bumped after every actor update)."""
    tokenizer: str | None = None
    """Fingerprint of the acting policy's tokenizer (`Policy.fingerprint`): what its turns'
    `action_ids` mean."""

    @property
    def episode_return(self) -> float:
        return float(sum(t.reward for t in self.turns))

    @property
    def length(self) -> int:
        return len(self.turns)

    @property
    def return_complete(self) -> bool:
        """The env ended it (last turn terminated, no error): no reward after the last turn is
        missing, so Monte Carlo returns from its turns are exact."""
        return bool(self.turns) and self.error is None and self.turns[-1].terminated

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["return"] = self.episode_return
        d["length"] = self.length
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        turns = [Turn(**t) for t in d["turns"]]
        fields = {k: d[k] for k in ("final_observation", "success", "agent", "seed", "error",
                                    "policy_version", "tokenizer") if k in d}
        traj = cls(env_id=d["env_id"], task_id=str(d["task_id"]), turns=turns, **fields)
        if "return" in d and not math.isclose(d["return"], traj.episode_return, abs_tol=1e-6):
            raise ValueError(
                f"stored return {d['return']} != sum of turn rewards {traj.episode_return}"
            )
        return traj


@dataclass
class Transition:
    """One utterance-level step (s, a, r, s', done), as the episode store serves it."""

    observation: str
    action: str
    reward: float
    next_observation: str
    done: bool
    """The episode terminated after this utterance: no bootstrap from s'."""
    task_id: str = ""
    policy_version: int = -1
    """Policy version that produced the action (-1: scripted or unknown)."""
    iteration: int = -1
    """Training iteration in which the transition entered the buffer."""


def trajectory_transitions(traj: Trajectory, iteration: int = -1) -> list[Transition]:
    """The utterance-level transitions of an episode. s' of the last turn is the final
    observation; done is `terminated` (a truncated turn bootstraps). A turn on which the env
    raised has no valid s' and is left out."""
    out = []
    for i, turn in enumerate(traj.turns):
        if "error" in turn.info:
            continue
        nxt = traj.turns[i + 1].observation if i + 1 < len(traj.turns) else traj.final_observation
        out.append(Transition(turn.observation, turn.action, turn.reward, nxt, turn.terminated,
                              traj.task_id, -1 if traj.policy_version is None else traj.policy_version,
                              iteration))
    return out
