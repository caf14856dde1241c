"""CHAI: ArCHer's critic over a frozen actor; acting reranks sampled utterances by the critic.

ALGORITHMS.md (Hong et al. 2023, as the ArCHer paper runs it): the critic and its loss are
ArCHer's (double Q + V, Polyak target, TD targets from the replay store); the actor is never
trained. To act, the policy samples k utterances (`chai.candidates`, default 5) and the one
with the highest min(Q̄_1, Q̄_2)(s, a) under the *target* critic is played:

    a* = argmax_{j <= k} min_i Q̄_i(s, a_j),    a_j ~ pi_0(.|s)

That reranked policy is also the one the V target follows: V_i(s) -> Q̄_i(s, a*), so the critic
learns the values of the policy that acts. Rollout workers and evaluation act through the same
rule (`CriticChooser`, pushed to the workers after every critic phase). Costs: every utterance
is k generations plus k critic scores, and so is every fresh utterance of the V targets.

In a learner group (`cluster.learner_ranks`) every rank trains the same critic on its share of
each step's micro-batches (`archer.algorithms.updates.critic_step`), the fresh utterances are
split over the ranks (each row from its own seed, so the split does not change them), only
rank 0 writes the checkpoint, and the group hands rank 0's chooser to the driver whenever the
target critic moved. The in-process learner keeps drawing its fresh utterances from the global
RNG (its numbers are unchanged), so a group of one samples other utterances than it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from archer.algorithms import parallel
from archer.algorithms.api import Acting, RunContext
from archer.algorithms.archer import ArCHer
from archer.algorithms.updates import draw_seeds, sample
from archer.buffer.store import EpisodeStore
from archer.errors import CheckpointError
from archer.models.critic import DoubleCritic, build_critic, make_target
from archer.models.policy import Policy, Sampling

if TYPE_CHECKING:
    from archer.config import ArcherConfig, Config

__all__ = ["CHAI", "CriticChooser", "best_candidates", "build"]


def best_candidates(q1: torch.Tensor, q2: torch.Tensor, k: int) -> torch.Tensor:
    """Index of the best of each group of k candidates by min(Q1, Q2): [N * k] x 2 -> [N].
    Ties go to the first candidate."""
    if q1.numel() % k:
        raise ValueError(f"{q1.numel()} values do not split into groups of {k}")
    return torch.minimum(q1, q2).reshape(-1, k).argmax(dim=1)  # [N]


class CriticChooser:
    """Keeps the candidate with the highest min Q of `critic` (CHAI's target critic). Pickled
    to rollout workers whole; it scores on the critic's device."""

    def __init__(self, critic: DoubleCritic, candidates: int):
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.critic, self.candidates = critic, candidates

    def choose(self, observations: list[str], utterances: list[str]) -> list[int]:
        self.critic.eval()
        with torch.no_grad():
            q1, q2 = self.critic.q(observations, utterances)  # [N * k] each
        return best_candidates(q1, q2, self.candidates).tolist()


class CHAI(ArCHer):
    """ArCHer's critic phase, no actor phase, acting through `CriticChooser(target)`."""

    frozen_policy = True
    """The acting policy never changes (a learner group exports no weights, only the
    chooser)."""

    def __init__(self, s: ArcherConfig, candidates: int, policy: Policy, critic: DoubleCritic,
                 target: DoubleCritic, store: EpisodeStore, sampling: Sampling, device: str,
                 generation_batch: int):
        super().__init__(s, policy, None, critic, target, store, sampling, micro_batch_size=1,
                         ref=None, device=device, generation_batch=generation_batch)
        self.candidates = candidates
        self.chooser_version = 0
        self.policy.model.eval().requires_grad_(False)

    def learn(self, new: list, iteration: int) -> dict[str, float]:
        m = super().learn(new, iteration)  # critic phase only: warmup_iters = every iteration
        self.chooser_version += 1  # the target critic moved
        return m

    def _fresh(self, states: list[str]) -> list[str]:
        """a* for the V targets: the reranked policy's utterance for each state. Learner
        ranks sample and rerank their parts of the rows, each from its own seed (`sample`);
        in one process the rows draw from torch's global generator."""
        seeds = draw_seeds(len(states)) if parallel.in_group() else None
        return sample(self.policy, None, states, self.sampling, self.generation_batch,
                      seeds=seeds, chooser=self._chooser()).texts

    def _chooser(self) -> CriticChooser:
        return CriticChooser(self.target, self.candidates)

    def acting(self) -> Acting:
        return Acting(policy=self.policy, version=0, chooser=self._chooser(),
                      chooser_version=self.chooser_version)

    def save(self, directory: Path) -> None:
        if not parallel.is_writer():  # learner ranks hold the same critic, store and counters
            return
        self.policy.save_pretrained(directory / "policy")  # pi_0, unchanged
        self._save_critic(directory)
        (directory / "chai_state.json").write_text(json.dumps(
            {"chooser_version": self.chooser_version}))

    def load(self, directory: Path) -> None:
        try:
            self._load_critic(directory)
            state = json.loads((directory / "chai_state.json").read_text())
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume CHAI from {directory}: {err}") from None
        self.chooser_version = int(state["chooser_version"])


def build(cfg: Config, run: RunContext) -> CHAI:
    """CHAI from `cfg.chai` (the critic's schedule, `candidates`) and the frozen policy at
    `run.init_policy` (no engine: nothing trains it)."""
    from archer.config import ArcherConfig

    if run.init_policy is None:
        raise ValueError("CHAI starts from a policy: the loop passes the warm start")
    c = cfg.chai
    policy = Policy.from_pretrained(run.init_policy, cfg.device, cfg.model.max_context_tokens,
                                    reserve=cfg.generation.max_new_tokens)
    critic = build_critic(cfg.critic, run.corpus or None, cfg.device, cfg.seed)
    target = make_target(critic)
    critic.eval()
    schedule = ArcherConfig(warmup_iters=0, critic=c.critic)
    schedule.actor.updates_per_iter = 0
    return CHAI(schedule, c.candidates, policy, critic, target,
                EpisodeStore(cfg.buffer.capacity, cfg.seed), Sampling.from_config(cfg.generation),
                cfg.device, cfg.generation.batch_size)
