"""Runs -> learning curves -> the numbers a paper reports.

- `read_curve`: a run's evaluation marks from its metrics.jsonl (the last line of an
  iteration wins: a resumed run may have logged it twice), with every x-axis.
- `episodes_to_threshold`: the first mark at or above a threshold, None ("> budget") if none.
- `median_ci`: the median over seeds and a bootstrap interval over seeds, where a run that
  never crossed counts as +inf (so a median or bound beyond the budget reads "> budget").
- `ratio`: a method's episodes-to-threshold over the baseline's, as a number only when both
  are measured; otherwise a bound (> or <), or undetermined.

Torch-free: `archer bench report` re-renders without loading a model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

AXES = {"env_episodes": "progress/env_episodes", "env_turns": "progress/env_turns",
        "policy_tokens": "progress/policy_tokens", "gradient_steps": "progress/gradient_steps",
        "wall_s": "progress/wall_s", "dataset_episodes": "progress/dataset_episodes"}
"""Column of results.csv -> the metrics key it comes from."""
EVALS = ("return_greedy", "return_sample", "success_greedy", "success_sample",
         "return_greedy_sem", "return_sample_sem")


def read_curve(metrics: Path) -> list[dict[str, float]]:
    """The evaluation marks of one run, in order: iteration, the x-axes and the eval values."""
    by_iter: dict[float, dict[str, Any]] = {}
    for line in metrics.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_iter[row["iteration"]] = row
    marks = []
    for it in sorted(by_iter):
        row = by_iter[it]
        if "eval/return_sample" not in row:
            continue
        mark = {"iteration": it}
        mark.update({col: float(row.get(key, 0.0)) for col, key in AXES.items()})
        mark.update({k: float(row[f"eval/{k}"]) for k in EVALS if f"eval/{k}" in row})
        marks.append(mark)
    return marks


def episodes_to_threshold(episodes: list[float], values: list[float], threshold: float
                          ) -> float | None:
    """The episodes of the first evaluation mark whose value is >= threshold (None: never)."""
    for x, v in zip(episodes, values, strict=True):
        if v >= threshold:
            return x
    return None


def _censored(values: list[float | None]) -> np.ndarray:
    """Episodes-to-threshold per seed with "never" (None) as +inf."""
    return np.array([math.inf if v is None else v for v in values], dtype=float)


def _median(xs: np.ndarray) -> float:
    """Median with +inf allowed (the middle order statistic, the mean of the two middle ones
    for an even count; one of them +inf gives +inf)."""
    s = np.sort(xs)
    n = len(s)
    return float(s[n // 2]) if n % 2 else float((s[n // 2 - 1] + s[n // 2]) / 2)


@dataclass
class Interval:
    median: float
    low: float
    high: float
    """The median over seeds and a (1 - alpha) bootstrap interval; +inf: beyond the budget."""


def median_ci(values: list[float | None], resamples: int, seed: int = 0,
              alpha: float = 0.05) -> Interval:
    """Median over seeds of episodes-to-threshold (None = never: +inf), and a percentile
    bootstrap interval from resampling the seeds with replacement."""
    xs = _censored(values)
    rng = np.random.default_rng(seed)
    meds = np.array([_median(xs[rng.integers(len(xs), size=len(xs))])
                     for _ in range(resamples)])
    low = float(np.quantile(meds, alpha / 2, method="inverted_cdf"))
    high = float(np.quantile(meds, 1 - alpha / 2, method="inverted_cdf"))
    return Interval(_median(xs), low, high)


@dataclass
class Ratio:
    kind: str
    """number (both measured), lower (the method never crossed: ratio > value), upper (the
    baseline never crossed: ratio < value), or undetermined (neither crossed)."""
    value: float | None

    def text(self) -> str:
        if self.kind == "number":
            return f"{self.value:.2f}x"
        if self.kind == "lower":
            return f"> {self.value:.2f}x"
        if self.kind == "upper":
            return f"< {self.value:.2f}x"
        return "undetermined (neither reached it)"


def ratio(method: float, baseline: float, budget: float) -> Ratio:
    """method / baseline episodes-to-threshold (medians). A median of +inf means "more than
    the budget": the ratio is then only bounded, by the budget in its place."""
    if math.isinf(method) and math.isinf(baseline):
        return Ratio("undetermined", None)
    if math.isinf(method):
        return Ratio("lower", budget / baseline)
    if math.isinf(baseline):
        return Ratio("upper", method / budget)
    return Ratio("number", method / baseline)


def ratio_interval(method: list[float | None], baseline: list[float | None], budget: float,
                   resamples: int, seed: int = 0, alpha: float = 0.05) -> tuple[str, str]:
    """A bootstrap interval of the ratio of medians, both methods' seeds resampled
    independently. A resample whose median is beyond the budget puts the budget in its place,
    so its ratio is a bound; an end of the interval that falls on such a resample is shown as
    one (> when the method's median was beyond the budget, < when the baseline's was)."""
    m, b = _censored(method), _censored(baseline)
    rng = np.random.default_rng(seed)
    draws: list[tuple[float, str]] = []
    for _ in range(resamples):
        mm = _median(m[rng.integers(len(m), size=len(m))])
        bb = _median(b[rng.integers(len(b), size=len(b))])
        if math.isinf(mm) and math.isinf(bb):
            draws.append((math.nan, "?"))
            continue
        mark = "> " if math.isinf(mm) else "< " if math.isinf(bb) else ""
        draws.append((min(mm, budget) / min(bb, budget), mark))
    known = sorted(d for d in draws if not math.isnan(d[0]))
    if len(known) < len(draws) * (1 - alpha):  # most resamples crossed in neither
        return ("undetermined", "undetermined")

    def at(q: float) -> str:  # the inverted-CDF quantile of the resamples
        value, mark = known[min(len(known) - 1, max(0, math.ceil(q * len(known)) - 1))]
        return f"{mark}{value:.2f}x"

    return at(alpha / 2), at(1 - alpha / 2)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max over seeds."""
    a = np.array(values, dtype=float)
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()),
            "mean": float(a.mean()), "n": len(a)}
