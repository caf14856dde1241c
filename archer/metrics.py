"""Metrics: one logger (a JSON line per iteration, TensorBoard scalars), timed phases, and the
averaging rule for a phase's steps (means, except `*/skipped` counters, which add up)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import TracebackType

import numpy as np

COUNTS: dict[str, int] = {"gradient_steps": 0, "generated_tokens": 0}
"""Process-wide work counters that the loop reads as differences around a phase (the
benchmark's x-axes): optimizer steps taken by `archer.algorithms.updates` (the only callers of
a step), and tokens sampled by `Policy.generate` in this process."""


def count(key: str, n: int = 1) -> None:
    COUNTS[key] += n


class timed:
    """`with timed(sink, "collect"):` records the block's seconds in sink["collect"]."""

    def __init__(self, sink: dict[str, float], name: str):
        self.sink, self.name = sink, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.sink[self.name] = self.sink.get(self.name, 0.0) + time.perf_counter() - self.t0


def mean_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """Per key: the mean over the steps that report it; `*/skipped` counters are summed."""
    keys = {k for h in history for k in h}
    out = {k: float(np.mean([h[k] for h in history if k in h])) for k in keys}
    for k in keys:
        if k.endswith("/skipped"):
            out[k] = float(sum(h.get(k, 0.0) for h in history))
    return out


class MetricsLogger:
    """Appends one JSON object per call to `out/metrics.jsonl` (and TensorBoard events under
    `out/tb` when asked), keyed by the "iteration" entry."""

    def __init__(self, out: Path, tensorboard: bool):
        self.path = out / "metrics.jsonl"
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))

    def log(self, metrics: dict[str, float]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.tb is not None:
            step = int(metrics["iteration"])
            for k, v in metrics.items():
                if k != "iteration":
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
