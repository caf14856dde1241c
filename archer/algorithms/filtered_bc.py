"""Filtered BC: NLL on the agent utterances of the best episodes collected so far
(ALGORITHMS.md). Each iteration the new episodes join the store (`buffer.capacity` turns,
oldest episodes evicted first); the episodes whose return is at or above the
`filtered_bc.percentile`-th percentile of the stored returns are kept, and
`filtered_bc.updates_per_iter` steps each train on `filtered_bc.batch_size` of their turns,
drawn uniformly, on the ids that were sampled.

    loss = - (1/n_tokens) sum_{kept turns} sum_j log pi(a^j | s, a^<j)
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from archer.algorithms.api import Acting, RunContext, engine_acting, save_policy, start_policy
from archer.algorithms.bc import Example, turn_examples
from archer.algorithms.losses import nll_loss
from archer.algorithms.parallel import is_writer
from archer.algorithms.updates import policy_step
from archer.buffer.store import EpisodeStore
from archer.config import FilteredBCConfig
from archer.errors import CheckpointError
from archer.metrics import mean_metrics
from archer.models.policy import Policy, TokenBatch
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config

Metrics = dict[str, float]


def return_threshold(returns: list[float], percentile: float) -> float:
    """The `percentile`-th percentile of `returns` (linear interpolation, numpy's default)."""
    return float(np.percentile(np.asarray(returns, dtype=np.float64), percentile))


def filter_episodes(episodes: list[Trajectory], percentile: float) -> tuple[list[Trajectory], float]:
    """The episodes with return >= the percentile of all their returns, and that threshold."""
    threshold = return_threshold([t.episode_return for t in episodes], percentile)
    return [t for t in episodes if t.episode_return >= threshold], threshold


class FilteredBC:
    data = "online"

    def __init__(self, s: FilteredBCConfig, policy: Policy, engine: Any, store: EpisodeStore,
                 micro_batch_size: int, seed: int):
        self.s, self.policy, self.engine, self.store = s, policy, engine, store
        self.micro_batch_size = micro_batch_size
        self.rng = random.Random(seed)
        self.version = 0

    def learn(self, new: list[Trajectory], iteration: int) -> Metrics:
        self.store.add(new, iteration)
        kept, threshold = filter_episodes(self.store.episodes(), self.s.percentile)
        examples: list[Example] = turn_examples(self.policy, kept)
        history = []
        for _ in range(self.s.updates_per_iter if examples else 0):
            batch = [examples[self.rng.randrange(len(examples))] for _ in range(self.s.batch_size)]
            rows = self.policy.batch([o for o, _ in batch], [a for _, a in batch])
            n = float(max(rows.action_tokens, 1))

            def loss(logp: torch.Tensor, sub: TokenBatch, idx: list[int], n: float = n):
                return nll_loss(logp, sub.action_mask.to(logp.device), n, prefix="filtered_bc")

            history.append(policy_step(self.engine, self.policy, rows, loss,
                                       micro_batch_size=self.micro_batch_size,
                                       prefix="filtered_bc"))
        self.policy.model.eval()
        if history:
            self.version += 1
        return mean_metrics(history) | {
            "filtered_bc/threshold": threshold,
            "filtered_bc/kept_episodes": float(len(kept)),
            "filtered_bc/kept_turns": float(len(examples)),
            "filtered_bc/stored_episodes": float(len(self.store.episodes()))}

    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    def save(self, directory: Path) -> None:
        save_policy(self.policy, self.engine, directory)
        if not is_writer():  # learner ranks hold the same store, counters and RNG
            return
        self.store.save(directory / "store")
        (directory / "filtered_bc_state.json").write_text(json.dumps(
            {"version": self.version, "rng": self.rng.getstate()}))

    def load(self, directory: Path) -> None:
        try:
            self.engine.load_checkpoint(directory / "engine")
            self.store = EpisodeStore.load(directory / "store")
            state = json.loads((directory / "filtered_bc_state.json").read_text())
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume filtered BC from {directory}: {err}") from None
        self.version = int(state["version"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.policy.model = self.engine.module
        self.policy.model.eval()


def build(cfg: Config, run: RunContext) -> FilteredBC:
    """Filtered BC from `cfg.filtered_bc`, the policy at `run.init_policy` and a store of
    `buffer.capacity` turns."""
    s = cfg.filtered_bc
    policy, engine, _ = start_policy(cfg, run, "filtered BC", lr=s.lr, batch_size=s.batch_size,
                                     grad_clip=s.grad_clip)
    return FilteredBC(s, policy, engine, EpisodeStore(cfg.buffer.capacity, cfg.seed),
                      cfg.deepspeed.micro_batch_size, cfg.seed)
