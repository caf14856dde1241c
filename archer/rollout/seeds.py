"""The seed plan: which reset seed every episode of a run gets.

An episode seed is `episode_seed(run_seed, stream, index)`, laid out in 62 bits as

    [stream: 2 bits][run seed mod 2**20: 20 bits][index: 40 bits]

with streams "train" (the policy's training rollouts), "eval" (evaluation) and "collect"
(scripted data for the warm start). The stream bits make the three streams disjoint by
construction, for every run seed; within a stream, the seed is one-to-one in the index
(below 2**40). No plan seed is below 2**60, so the small seeds a person types
(`archer play --seed 3`, the env checker's 0..n) never replay a planned episode either.
Two runs whose seeds differ by a multiple of 2**20 share episode seeds: they are different
runs, so nothing in one can leak into the other.
"""

from __future__ import annotations

STREAMS = {"train": 1, "eval": 2, "collect": 3}
"""Stream name -> the value of its two top bits (0 is left for hand-typed seeds)."""

RUN_SEED_BITS = 20
INDEX_BITS = 40

EVAL_SEED_NOTE = (
    "evaluation episodes use the 'eval' seed stream, disjoint from the seeds of training "
    "rollouts ('train') and of scripted data ('collect')"
)


def episode_seed(run_seed: int, stream: str, index: int) -> int:
    """The reset seed of episode `index` (0-based) of `stream` in the run seeded `run_seed`."""
    if stream not in STREAMS:
        raise ValueError(f"seed stream must be one of {sorted(STREAMS)}, got {stream!r}")
    if not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"episode index must be in [0, 2**{INDEX_BITS}), got {index}")
    run = int(run_seed) % 2**RUN_SEED_BITS
    return (STREAMS[stream] << (RUN_SEED_BITS + INDEX_BITS)) | (run << INDEX_BITS) | int(index)


def episode_seeds(run_seed: int, stream: str, n: int, start: int = 0) -> list[int]:
    """Seeds of episodes `start .. start + n - 1` of `stream`."""
    return [episode_seed(run_seed, stream, start + i) for i in range(n)]


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs (which user agents and sampling without
    per-row seeds draw from)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
