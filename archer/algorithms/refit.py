"""Refit: offline RL as reward-weighted fine-tuning (Mukherjee, Kveton et al. 2025, arXiv
2506.06964; ALGORITHMS.md). Swift (`archer/algorithms/swift.py`) is the same update with
standardised weights.

    loss = - (1/N) sum_episodes w_e sum_{agent turns t of e} log pi(a_t | s_t)

over the N episodes of a step, log pi summed over each utterance's tokens; environment text is
never a target. Refit's weight is the episode's return mapped into [0, 1],
w = (R + reward_shift) x reward_scale: the paper's lower bound on the expected return needs
w >= 0, so a weight outside [0, 1] is refused with an error naming the episode's file and
line (`allow_negative` lets negative weights through, at the user's risk: minimising the
log-likelihood of an utterance has no floor). No importance ratios, no temperature, no
exponentiation.

One loop iteration is one pass over the dataset's episodes in shuffled steps of `batch_size`
episodes (all their agent turns), with BC's learning-rate schedule (linear warm-up, then
cosine to 10%).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from archer.algorithms.api import Acting, RunContext, engine_acting
from archer.algorithms.bc import (
    Example,
    check_last_step,
    load_scheduled,
    offline_engine,
    save_scheduled,
    schedule,
    turn_examples,
)
from archer.algorithms.losses import weighted_logp_loss
from archer.algorithms.updates import policy_step
from archer.buffer.dataset import DatasetError, iter_located
from archer.metrics import mean_metrics
from archer.models.policy import Policy, TokenBatch
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config, RefitConfig, SwiftConfig

Metrics = dict[str, float]


# ---------------------------------------------------------------------------- losses
def refit_weights(returns: Sequence[float], where: Sequence[str], shift: float, scale: float,
                  allow_negative: bool = False) -> list[float]:
    """w_e = (R_e + shift) x scale for each episode; outside [0, 1] is a DatasetError naming
    the episode (`where[e]`), except below 0 with `allow_negative`."""
    weights = []
    for r, at in zip(returns, where, strict=True):
        w = (float(r) + shift) * scale
        if w > 1.0 + 1e-9 or (w < -1e-9 and not allow_negative):
            raise DatasetError(
                f"{at}: return {r:g} gives the Refit weight (R + refit.reward_shift) x "
                f"refit.reward_scale = ({r:g} + {shift:g}) x {scale:g} = {w:g}, outside [0, 1]: "
                "set reward_shift and reward_scale so that every return maps into [0, 1]"
                + ("" if w > 1 else " (or refit.allow_negative=true)"))
        weights.append(w)
    return weights


# ------------------------------------------------------------------------- algorithm
class RewardWeighted:
    """Weighted fine-tuning on fixed per-episode weights (Refit's or Swift's)."""

    data = "offline"

    def __init__(self, s: RefitConfig | SwiftConfig, prefix: str, policy: Policy, engine: Any,
                 episodes: list[list[Example]], weights: list[float], epochs: int, seed: int):
        if not episodes:
            raise DatasetError("the dataset has no episode with a non-empty agent utterance")
        # each episode gives a step one row at least
        check_last_step(len(episodes), s.batch_size, engine, "episodes", prefix)
        self.s, self.prefix, self.policy, self.engine = s, prefix, policy, engine
        self.episodes, self.weights = episodes, weights
        self.steps_per_epoch = math.ceil(len(episodes) / s.batch_size)
        total = self.steps_per_epoch * epochs
        self.scheduler = schedule(engine.base_optimizer, s.warmup_steps, total)
        self.rng = random.Random(seed)
        self.version = 0

    def learn(self, new: list[Trajectory], iteration: int) -> Metrics:
        order = list(range(len(self.episodes)))
        self.rng.shuffle(order)
        history = []
        for start in range(0, len(order), self.s.batch_size):
            chosen = order[start : start + self.s.batch_size]
            turns = [(ex, self.weights[e]) for e in chosen for ex in self.episodes[e]]
            rows = self.policy.batch([o for (o, _), _ in turns], [a for (_, a), _ in turns])
            row_w = torch.tensor([w for _, w in turns], dtype=torch.float32)  # [B]
            n = float(len(chosen))

            def loss(logp: torch.Tensor, sub: TokenBatch, idx: list[int], row_w=row_w, n=n):
                # - (1/N episodes) sum_rows w_row log pi(a_row | s_row)
                return weighted_logp_loss(logp, sub.action_mask.to(logp.device),
                                          row_w[idx].to(logp.device), n, prefix=self.prefix)

            # the step's turns in near-even parts, one per micro-batch of the engine
            m = policy_step(self.engine, self.policy, rows, loss, micro_batch_size=None,
                            prefix=self.prefix)
            self.scheduler.step()
            history.append({**m, f"{self.prefix}/weight_mean":
                            float(sum(self.weights[e] for e in chosen) / n),
                            f"{self.prefix}/lr": self.scheduler.get_last_lr()[0]})
        self.policy.model.eval()
        self.version += 1
        return mean_metrics(history) | {f"{self.prefix}/steps": float(len(history)),
                                        "progress/dataset_episodes": float(len(self.episodes))}

    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    def save(self, directory: Path) -> None:
        save_scheduled(directory, self.prefix, self.policy, self.engine, self.scheduler,
                       self.rng, self.version)

    def load(self, directory: Path) -> None:
        self.version = load_scheduled(directory, self.prefix, self.prefix, self.policy,
                                      self.engine, self.scheduler, self.rng)


def start(cfg: Config, run: RunContext, s: RefitConfig | SwiftConfig,
          ) -> tuple[Policy, Any, list[str], list[Trajectory]]:
    """The dataset `cfg.data.path` (each episode with its "file, line" location) and the policy
    at `run.init_policy`, else `model.path`, else a tiny model with a tokenizer trained on the
    data, inside BC's engine (`offline_engine`: one micro-batch per step in the driver, a DeepSpeed
    engine in a learner group)."""
    from archer.models.builders import build_policy

    assert cfg.data.path is not None  # Config checks it for the offline algorithms
    located = list(iter_located(cfg.data.path))
    if not located:
        raise DatasetError(f"dataset {cfg.data.path} holds no episodes")
    where, trajectories = [w for w, _ in located], [t for _, t in located]
    policy = build_policy(cfg, trajectories, run.init_policy)
    engine = offline_engine(cfg, policy, lr=s.lr, batch_size=s.batch_size,
                            grad_clip=s.grad_clip, weight_decay=s.weight_decay)
    return policy, engine, where, trajectories


def episode_examples(policy: Policy, trajectories: list[Trajectory], weights: list[float],
                     ) -> tuple[list[list[Example]], list[float]]:
    """Each episode's agent turns as examples, with its weight; episodes without a non-empty
    utterance are left out."""
    kept, kept_w = [], []
    for traj, w in zip(trajectories, weights, strict=True):
        examples = turn_examples(policy, [traj])
        if examples:
            kept.append(examples)
            kept_w.append(w)
    return kept, kept_w


def build(cfg: Config, run: RunContext) -> RewardWeighted:
    s = cfg.refit
    policy, engine, where, trajectories = start(cfg, run, s)
    weights = refit_weights([t.episode_return for t in trajectories], where, s.reward_shift,
                            s.reward_scale, s.allow_negative)
    episodes, weights = episode_examples(policy, trajectories, weights)
    return RewardWeighted(s, "refit", policy, engine, episodes, weights, cfg.train.iterations,
                          cfg.seed)
