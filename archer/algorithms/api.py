"""The contract between the loop and an algorithm. No code to inherit: a protocol and two
plain records.

The loop (archer/loop.py) collects episodes with `acting()`, hands them to `learn()`, and saves
and restores through `save()`/`load()`. It knows nothing about critics, buffers or epochs; an
algorithm knows nothing about Ray.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from archer.models.policy import Policy
    from archer.types import Trajectory

DataKind = Literal["online", "offline"]
"""online: the loop collects `rollout.episodes_per_iter` episodes every iteration and passes
them to learn(); offline: nothing is collected (learn() gets []), the algorithm reads its
dataset."""


@dataclass(frozen=True)
class Acting:
    """What a rollout worker or an evaluation needs to act like the algorithm."""

    policy: Policy
    """The acting policy (its model is the one being trained: read it under `gathered`)."""
    version: int = 0
    """Bumped by learn() whenever the acting weights changed."""
    gathered: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
    """Context in which the policy's parameters are whole (ZeRO-3 gathers them)."""


@dataclass(frozen=True)
class RunContext:
    """What the loop knows that builders need."""

    out: Path
    """The run's output directory."""
    init_policy: Path | None
    """The policy to start from: the warm start, train.init_policy, or the checkpoint's; None
    for an offline algorithm that builds its policy from `model` (bc without a start)."""
    corpus: list[str] = field(default_factory=list)
    """Text for a tiny critic's tokenizer (the env's corpus, else the warm-start data)."""
    resume: bool = False
    """The loop will call load() on the checkpoint after build()."""
    log: Callable[[str], None] = print


class Algorithm(Protocol):
    data: DataKind

    def learn(self, new: list[Trajectory], iteration: int) -> dict[str, float]:
        """Learn from this iteration's episodes (online) or the dataset (offline); returns
        namespaced metrics (`critic/*`, `actor/*`, `bc/*`, `time/*_s`); counters of skipped
        non-finite steps end in `/skipped`."""
        ...

    def acting(self) -> Acting: ...

    def save(self, directory: Path) -> None:
        """Everything learn() needs to continue exactly: models (the acting policy in HF
        format under `directory / "policy"`), engines, optimizers, buffers, counters."""
        ...

    def load(self, directory: Path) -> None: ...


def engine_acting(policy: Policy, engine: Any, version: int) -> Acting:
    """The Acting of a policy trained inside `engine` (whole weights under its gather)."""
    return Acting(policy=policy, version=version, gathered=engine.gathered_parameters)


def save_policy(policy: Policy, engine: Any, directory: Path) -> None:
    """The acting policy in HF format at `directory / "policy"`, and the engine's state (weights,
    optimizer, step counters) at `directory / "engine"`."""
    with engine.gathered_parameters():
        policy.save_pretrained(directory / "policy")
    engine.save_checkpoint(directory / "engine")
