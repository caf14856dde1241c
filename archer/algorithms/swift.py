"""Swift: Refit's reward-weighted fine-tuning with the weights standardised within the logged
episodes of the same task id (Mukherjee, Kveton et al. 2025, arXiv 2506.06964;
ALGORITHMS.md):

    w_e = (R_e - mean_g) / std_g      over the episodes g of e's task id (population std)

A task id logged once has no group statistics: its episodes take the global mean and std of
all episodes instead, and the run warns with their count. A group whose returns are all equal
gets weight 0 (there is nothing to prefer in it); so does every episode when all returns in
the dataset are equal. The update is `archer.algorithms.refit.RewardWeighted`.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from archer.algorithms.api import RunContext
from archer.algorithms.refit import RewardWeighted, episode_examples, start

if TYPE_CHECKING:
    from archer.config import Config


def swift_weights(returns: Sequence[float], task_ids: Sequence[str | None],
                  ) -> tuple[list[float], int]:
    """(standardised weights, how many episodes were alone in their task id); an episode
    without a task id (an env that draws its episodes by seed) is alone."""
    r = np.asarray(returns, dtype=np.float64)
    groups: dict[object, list[int]] = defaultdict(list)
    for i, task in enumerate(task_ids):
        groups[("episode", i) if task is None else task].append(i)

    def standardise(x: float, mean: float, std: float) -> float:
        return 0.0 if std < 1e-12 else (x - mean) / std

    g_mean, g_std = float(r.mean()), float(r.std())
    weights, alone = [0.0] * len(r), 0
    for members in groups.values():
        if len(members) == 1:
            alone += 1
            weights[members[0]] = standardise(r[members[0]], g_mean, g_std)
            continue
        mean, std = float(r[members].mean()), float(r[members].std())
        for i in members:
            weights[i] = standardise(r[i], mean, std)
    return weights, alone


def build(cfg: Config, run: RunContext) -> RewardWeighted:
    s = cfg.swift
    policy, engine, _, trajectories = start(cfg, run, s)
    weights, alone = swift_weights([t.episode_return for t in trajectories],
                                   [t.task_id for t in trajectories])
    if alone:
        warnings.warn(f"swift: {alone} episode(s) of {cfg.data.path} are the only one of their "
                      "task id; they are standardised with the whole dataset's mean and std",
                      RuntimeWarning, stacklevel=2)
    episodes, weights = episode_examples(policy, trajectories, weights)
    return RewardWeighted(s, "swift", policy, engine, episodes, weights, cfg.train.iterations,
                          cfg.seed)
