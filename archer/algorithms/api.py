"""The contract between the loop and an algorithm. No code to inherit: a protocol and two
plain records.

The loop (archer/loop.py) collects episodes with `acting()`, hands them to `learn()`, and saves
and restores through `save()`/`load()`. It knows nothing about critics, buffers or epochs; an
algorithm knows nothing about Ray.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import torch

    from archer.config import Config
    from archer.models.policy import Policy
    from archer.rollout.collector import ActingRule
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
    chooser: ActingRule | None = None
    """An acting rule on top of the policy (`archer.rollout.collector.ActingRule`): a
    `Chooser` (CHAI keeps the best of k sampled utterances by its critic) or a token-level
    `Guide` (ILQL's value-guided decoding); None acts with the policy's own samples. Rollout
    workers and evaluation act through it."""
    chooser_version: int = 0
    """Bumped by learn() whenever the chooser changed (the loop pushes it to the workers)."""
    buckets: Callable[[int, tuple[str, ...]], Iterator[dict[str, torch.Tensor]]] | None = None
    """(bucket_bytes, name prefixes to skip) -> the acting weights as CPU copies in buckets of
    at most that size, gathered one bucket at a time under ZeRO-3 (every learner rank in step);
    None: read them whole under `gathered`."""


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
    return Acting(policy=policy, version=version, gathered=engine.gathered_parameters,
                  buckets=engine.weight_buckets)


def save_policy(policy: Policy, engine: Any, directory: Path) -> None:
    """The acting policy in HF format at `directory / "policy"`, and the engine's state (weights,
    optimizer, step counters) at `directory / "engine"`."""
    from archer.algorithms.parallel import is_writer

    with engine.gathered_parameters():  # a collective under ZeRO-3: every rank enters
        if is_writer():
            policy.save_pretrained(directory / "policy")
    engine.save_checkpoint(directory / "engine")  # every rank: its own shard


def start_policy(cfg: Config, run: RunContext, method: str, *, lr: float, batch_size: int,
                 grad_clip: float, kl_coef: float = 0.0,
                 heads: dict[str, torch.nn.Module] | None = None,
                 ) -> tuple[Policy, Any, torch.nn.Module | None]:
    """The policy at `run.init_policy` trained inside an actor engine (`cfg.deepspeed`, rows of
    `batch_size` per optimizer step), in eval mode (no dropout: scoring must match acting),
    and, when `kl_coef > 0`, a frozen copy of the starting weights as the KL reference, in
    the engine's precision. `heads` are attached to the policy model (`attach_head`) before
    the engine is built, so they train with it; the reference has none."""
    from archer.distributed.engine import build_actor_engine
    from archer.models.policy import Policy, attach_head

    if run.init_policy is None:
        raise ValueError(f"{method} starts from a policy: the loop passes the warm start")
    policy = Policy.from_pretrained(run.init_policy, cfg.device, cfg.model.max_context_tokens,
                                    reserve=cfg.generation.max_new_tokens)
    ref = copy.deepcopy(policy.model).eval().requires_grad_(False) if kl_coef > 0 else None
    for name, head in (heads or {}).items():
        attach_head(policy.model, name, head.to(cfg.device))
    engine = build_actor_engine(policy.model, cfg.deepspeed, lr=lr, batch_size=batch_size,
                                grad_clip=grad_clip, device=cfg.device)
    policy.model = engine.module
    policy.model.eval()
    if ref is not None:  # bf16 under deepspeed.precision=bf16
        ref.to(dtype=next(engine.module.parameters()).dtype)
    return policy, engine, ref


def save_reference(ref: torch.nn.Module | None, directory: Path) -> None:
    """The KL anchor (the run's starting policy) at `directory / "reference_policy"`."""
    from archer.algorithms.parallel import is_writer

    if ref is not None and is_writer():
        ref.save_pretrained(directory / "reference_policy")


def load_reference(ref: torch.nn.Module | None, directory: Path, device: Any,
                   ) -> torch.nn.Module | None:
    """The KL reference saved by `save_reference`, frozen on `device`; `ref` itself when the
    algorithm keeps none or the checkpoint has none."""
    if ref is None or not (directory / "reference_policy").is_dir():
        return ref
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(directory / "reference_policy"))
    return loaded.to(device).eval().requires_grad_(False)
