"""Rollout collection: whole policy episodes in chunks, with the sampled ids and log-probs.

A collection is a list of episodes, each a (task id, seed) pair. It is cut into chunks of
`rollout.envs_per_worker` consecutive episodes (`plan_chunks`), and each chunk is played by
`rollout_chunk` on one batch of envs. The k-th utterance of an episode is sampled with its own
seed, `utterance_seed(episode seed, k)`, so an episode's text depends on its seed and the
weights only: not on its chunk, its batch-mates or the worker that played it. That is what
lets the in-process collector here and the Ray collector (`archer.distributed.rollout`) give
the same trajectories for the same seeds and weights.

Both collectors share one interface: `set_weights(state_dict, version)`, `set_chooser(chooser,
version)` (an acting rule on top of the policy: CHAI's reranker, a `Chooser`, or ILQL's
value-guided decoding, a `Guide`), `collect(task_ids,
seeds) -> list[Trajectory]` (in the order of `task_ids`), `close()`, and the attributes
`version`, `chooser_version`, `restarts` and `last_stats` (`rollout/time_s`, `rollout/tokens`,
`rollout/tokens_per_s`, `rollout/restarts`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from archer.config import Config, GenerationConfig
from archer.faults import crash_point
from archer.models.policy import Generation, Guide, Policy, Sampling
from archer.rollout.batched import BatchedTextEnvs, TurnContext, run_episodes
from archer.types import Trajectory

Chunk = list[tuple[str | None, int]]
"""Consecutive episodes of a collection, as (task id or None, episode seed) pairs."""

DECODINGS = ("sample", "greedy")


class Chooser(Protocol):
    """An acting rule on top of the policy (CHAI's reranker): the policy samples `candidates`
    utterances per observation and `choose` keeps one. It travels to rollout workers by
    pickle, so it holds what it needs (a critic, say), on the CPU."""

    candidates: int

    def choose(self, observations: list[str], utterances: list[str]) -> list[int]:
        """observations, utterances: N * k, the k candidates of an observation consecutive ->
        N indices in [0, k), the candidate kept for each observation."""
        ...


ActingRule = Chooser | Guide
"""What `Acting.chooser` and `set_chooser` carry: a reranker of whole utterances (`choose`) or
a token-level guide (`adjust`)."""


def is_guide(rule: object) -> bool:
    """True for a token-level `Guide` (it has `adjust`), False for a `Chooser` or None."""
    return rule is not None and callable(getattr(rule, "adjust", None))


def utterance_seed(episode_seed: int, turn: int) -> int:
    """Sampling seed of utterance `turn` (0-based) of the episode reset with `episode_seed`.

    A hash of the pair (numpy's SeedSequence), so nearby episode seeds give unrelated streams
    and no two (seed, turn) pairs collide the way `seed * 1000 + turn` would after 1000 turns.
    """
    state = np.random.SeedSequence([int(episode_seed), int(turn)]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))  # 63 bits: a valid torch seed on every platform


def candidate_seed(seed: int, candidate: int) -> int:
    """Sampling seed of candidate `candidate` of an utterance whose own seed is `seed`."""
    state = np.random.SeedSequence([int(seed), int(candidate), 1]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def act_utterances(
    policy: Policy,
    observations: list[str],
    sampling: Sampling,
    seeds: list[int] | None = None,
    generator: Any = None,
    chunk_size: int | None = None,
    chooser: ActingRule | None = None,
) -> Generation:
    """One utterance per observation: the policy's sample; with a `Guide` the sample of the
    guided logits (ids and log-probs of the guided distribution); with a `Chooser` the
    candidate it keeps out of `chooser.candidates` sampled ones (candidate j of a row seeded
    with `candidate_seed(seed, j)`), whose ids and log-probs are the kept candidate's under the
    policy (log pi, not the probability of the reranked choice)."""
    if chooser is None or is_guide(chooser):
        return policy.generate(observations, sampling, seeds=seeds, generator=generator,
                               chunk_size=chunk_size,
                               guide=chooser if is_guide(chooser) else None)  # type: ignore[arg-type]
    k = int(chooser.candidates)
    if k < 1:
        raise ValueError(f"a chooser needs >= 1 candidates, got {k}")
    many = [o for o in observations for _ in range(k)]
    many_seeds = None if seeds is None else [candidate_seed(s, j) for s in seeds for j in range(k)]
    gen = policy.generate(many, sampling, seeds=many_seeds, generator=generator,
                          chunk_size=chunk_size)
    picks = chooser.choose(many, gen.texts)
    if len(picks) != len(observations) or not all(0 <= j < k for j in picks):
        raise ValueError(f"the chooser returned {picks!r} for {len(observations)} observations "
                         f"of {k} candidates each")
    rows = [i * k + j for i, j in enumerate(picks)]
    return Generation([gen.texts[r] for r in rows], [gen.action_ids[r] for r in rows],
                      [gen.logprobs[r] for r in rows])


def plan_chunks(task_ids: Sequence[str | None], seeds: Sequence[int], chunk_size: int) -> list[Chunk]:
    """Split the episodes (task_ids[i], seeds[i]) into chunks of `chunk_size` consecutive ones
    (the last may be shorter); concatenating the chunks gives the episodes back in order."""
    if len(task_ids) != len(seeds):
        raise ValueError(f"got {len(seeds)} seeds for {len(task_ids)} task ids")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    episodes = [(None if t is None else str(t), int(s)) for t, s in zip(task_ids, seeds, strict=True)]
    return [episodes[i : i + chunk_size] for i in range(0, len(episodes), chunk_size)]


def rollout_chunk(
    policy: Policy,
    envs: BatchedTextEnvs,
    chunk: Chunk,
    gen: GenerationConfig,
    version: int,
    decoding: str = "sample",
    chooser: ActingRule | None = None,
) -> list[Trajectory]:
    """Play one episode per (task id, seed) of `chunk` with `policy` on `envs` (through
    `chooser` when one is given: `act_utterances`).

    Every turn stores its sampled token ids (`Turn.action_ids`, the stop token included) and
    their log-probs (`Turn.logprobs`, one per id); every trajectory the policy `version` and
    the policy's tokenizer fingerprint. `decoding` is "sample" (gen.temperature, gen.top_p) or
    "greedy".
    """
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {list(DECODINGS)}, got {decoding!r}")
    sampling = Sampling.from_config(gen, greedy=decoding == "greedy")

    def act(
        observations: list[str], contexts: list[TurnContext]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        out = act_utterances(policy, observations, sampling,
                             seeds=[utterance_seed(c.seed, c.turn) for c in contexts],
                             chunk_size=gen.batch_size, chooser=chooser)
        extras = [
            {"action_ids": ids, "logprobs": lp}
            for ids, lp in zip(out.action_ids, out.logprobs, strict=True)
        ]
        return out.texts, extras

    trajectories = run_episodes(
        envs,
        act,
        [task for task, _ in chunk],
        seeds=[seed for _, seed in chunk],
        agent_name="policy",
        agent_context=True,
    )
    for traj in trajectories:
        traj.policy_version = version
        traj.tokenizer = policy.fingerprint
    return trajectories


def rollout_stats(
    trajectories: Sequence[Trajectory], seconds: float, restarts: int
) -> dict[str, float]:
    """Throughput metrics of one collection. `rollout/restarts` is the collector's total."""
    tokens = sum(len(turn.action_ids or ()) for traj in trajectories for turn in traj.turns)
    return {
        "rollout/time_s": seconds,
        "rollout/tokens": tokens,
        "rollout/tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "rollout/restarts": restarts,
    }


class InProcessCollector:
    """Collects in the trainer's process, chunk after chunk (`rollout.num_workers == 0`).

    With the trainer's own policy object its weights are always current, so `set_weights`
    given that policy's (or its engine's) tensors only records the version; other tensors are
    copied in.
    """

    def __init__(self, cfg: Config, policy: Policy):
        self.cfg = cfg
        self.policy = policy
        self.envs = BatchedTextEnvs(cfg.env.id, cfg.rollout.envs_per_worker, cfg.env.kwargs)
        self.version = 0
        self.chooser: ActingRule | None = None
        self.chooser_version = -1  # none pushed yet
        self.restarts = 0
        self.last_stats: dict[str, float] = {}

    def set_chooser(self, chooser: ActingRule | None, version: int) -> None:
        """Act through `chooser` (None: the policy's own samples) from now on."""
        self.chooser, self.chooser_version = chooser, version

    def set_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        if not _is_own_state(self.policy.model, state_dict):
            self.policy.model.load_state_dict(state_dict)
        self.version = version

    def set_version(self, version: int) -> None:
        """The shared policy was updated in place (the trainer's own model, which under
        ZeRO-3 cannot take a `load_state_dict`): act under `version` from now on."""
        self.version = version

    def collect(self, task_ids: Sequence[str], seeds: Sequence[int]) -> list[Trajectory]:
        start = time.perf_counter()
        trajectories: list[Trajectory] = []
        for chunk in plan_chunks(task_ids, seeds, self.cfg.rollout.envs_per_worker):
            trajectories += rollout_chunk(
                self.policy, self.envs, chunk, self.cfg.generation, self.version,
                chooser=self.chooser)
            crash_point("collect")
        self.last_stats = rollout_stats(trajectories, time.perf_counter() - start, 0)
        return trajectories

    def close(self) -> None:
        self.envs.close()


def _is_own_state(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when `state_dict` holds `model`'s own tensors (same storage), not a copy."""
    own = model.state_dict()
    return own.keys() == state_dict.keys() and all(
        own[k].data_ptr() == state_dict[k].data_ptr() for k in own
    )
