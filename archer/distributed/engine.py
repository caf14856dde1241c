"""The actor engine: one optimizer step over a batch of micro-batches, under DeepSpeed or torch.

`build_actor_engine` returns a `DeepSpeedActorEngine` (`deepspeed.enabled: true`) or a
`TorchActorEngine` (plain torch AdamW, for debugging and as a cross-check). Both have the
interface the algorithms use (`ActorEngine`), and the same arithmetic:

    for each micro-batch:  loss = mean over the micro-batch;  engine.backward(loss);  engine.step()

Gradients are averaged over the `gradient_accumulation_steps = batch_size // micro_batch_size`
micro-batches of a step (each loss is scaled by 1 / GAS), clipped to `grad_clip` (0 = off), and
the optimizer steps at the accumulation boundary only: on the last micro-batch of each group.

DeepSpeed on a CPU-only machine needs no compiled ops: the optimizer is the client's torch AdamW,
the backend is gloo (DeepSpeed's CPU accelerator falls back to it when oneCCL is absent), and the
one op DeepSpeed would JIT-compile on CPU at start-up (`deepspeed_shm_comm`, used only by
inference all-reduce) is marked incompatible, so nothing is built (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from archer.config import DeepSpeedConfig

__all__ = [
    "ActorEngine",
    "DeepSpeedActorEngine",
    "TorchActorEngine",
    "build_actor_engine",
    "deepspeed_config",
    "ensure_process_group",
]

META_FILE = "archer_engine.json"
"""Written last into a checkpoint directory: its presence marks a complete checkpoint."""
_TORCH_STATE_FILE = "engine_state.pt"
_DS_TAG = "deepspeed"
_STEPS_PER_PRINT = 1_000_000_000


class ActorEngine(Protocol):
    """What the algorithms call; both engines implement it."""

    module: torch.nn.Module
    gradient_accumulation_steps: int
    base_optimizer: torch.optim.Optimizer
    """The torch optimizer whose param groups' learning rates every step applies, inside
    DeepSpeed's ZeRO 1-3 and bf16 wrappers (which are not torch optimizers): what a
    learning-rate schedule drives."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> bool: ...
    def is_boundary(self) -> bool: ...
    def zero_grad(self) -> None: ...
    def get_grad_norm(self) -> float | None: ...
    def gathered_parameters(
        self, module: torch.nn.Module | None = None
    ) -> contextlib.AbstractContextManager[None]: ...
    def weight_buckets(
        self, bucket_bytes: int, skip: tuple[str, ...] = ()
    ) -> Iterator[dict[str, torch.Tensor]]: ...
    def save_checkpoint(self, path: str | os.PathLike[str]) -> None: ...
    def load_checkpoint(self, path: str | os.PathLike[str]) -> None: ...
    @property
    def global_steps(self) -> int: ...
    @property
    def micro_steps(self) -> int: ...


# ----------------------------------------------------------------------------- config
def deepspeed_config(
    ds: DeepSpeedConfig, batch_size: int, grad_clip: float, world_size: int = 1
) -> dict[str, Any]:
    """The DeepSpeed JSON config for an actor step of `batch_size` sequences over all ranks.

    `batch_size` is the rows of one optimizer step, global: with `world_size` ranks each rank
    runs `batch_size / (world_size * micro_batch_size)` micro-batches, so adding ranks splits
    the same step instead of changing it. Raises ValueError naming the setting to change.
    """
    errors = [f"deepspeed.{key}: {msg}" for key, msg in ds.check()]
    if world_size < 1:
        errors.append(f"world_size: must be >= 1, got {world_size}")
    if batch_size < 1:
        errors.append(f"actor.batch_size x actor.samples_per_state: must be >= 1, got {batch_size}")
    elif ds.micro_batch_size >= 1 and world_size >= 1 and batch_size % (
            ds.micro_batch_size * world_size):
        ranks = f" x {world_size} learner ranks" if world_size > 1 else ""
        errors.append(
            f"deepspeed.micro_batch_size{ranks}: must divide actor.batch_size x "
            f"actor.samples_per_state ({batch_size}), got {ds.micro_batch_size}{ranks}"
        )
    if grad_clip < 0:
        errors.append(f"actor.grad_clip: must be >= 0 (0 disables), got {grad_clip}")
    if errors:
        raise ValueError("invalid DeepSpeed actor settings:\n  " + "\n  ".join(errors))
    gas = batch_size // (ds.micro_batch_size * world_size)
    config: dict[str, Any] = {
        "train_batch_size": batch_size,
        "train_micro_batch_size_per_gpu": ds.micro_batch_size,
        "gradient_accumulation_steps": gas,
        "gradient_clipping": float(grad_clip),
        "zero_optimization": {"stage": ds.zero_stage},
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": False},
        "steps_per_print": _STEPS_PER_PRINT,
        "wall_clock_breakdown": False,
    }
    if ds.zero_stage > 0:
        # ZeRO wraps the client torch AdamW; DeepSpeed calls it "untested" but it is exact.
        config["zero_allow_untested_optimizer"] = True
    return config


def _check_batch(ds: DeepSpeedConfig, batch_size: int, grad_clip: float) -> int:
    """Validates like `deepspeed_config` (one source of errors); returns the GAS."""
    deepspeed_config(ds, batch_size, grad_clip)
    return batch_size // ds.micro_batch_size


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the actor model has no trainable parameters (all requires_grad=False)")
    return params


# ------------------------------------------------------------------- weight export
def param_bytes(param: torch.Tensor) -> int:
    """A parameter's whole size in bytes, also under ZeRO-3, where `numel()` of a partitioned
    parameter is 0 and `ds_numel` holds the real count."""
    numel = getattr(param, "ds_numel", None)
    return int(numel if numel is not None else param.numel()) * param.element_size()


def weight_buckets(
    module: torch.nn.Module, bucket_bytes: int,
    gather: Any = None, skip: tuple[str, ...] = (),
) -> Iterator[dict[str, torch.Tensor]]:
    """`module`'s parameters (each once: tied weights under their first name) and persistent
    buffers as CPU copies, in buckets of at most `bucket_bytes` (a larger parameter is a
    bucket of its own). `gather(params)` is the context in which a bucket's parameters are
    whole (ZeRO-3's gather; None: they already are): one bucket is gathered, copied and
    released before the next, so an export never holds more than one bucket beyond the
    rank's shard. Names starting with a prefix in `skip` are left out. Under ZeRO-3 every rank
    must iterate in step (the gather is a collective); every rank gets the copies."""
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes: must be >= 1, got {bucket_bytes}")
    params = [(n, q) for n, q in module.named_parameters() if not n.startswith(skip)]
    buckets: list[list[tuple[str, torch.nn.Parameter]]] = [[]]
    size = 0
    for name, param in params:
        nbytes = param_bytes(param)
        if buckets[-1] and size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append((name, param))
        size += nbytes
    for bucket in buckets:
        if not bucket:
            continue
        ctx = gather([q for _, q in bucket]) if gather is not None else contextlib.nullcontext()
        with ctx:
            out = {name: q.detach().to("cpu", copy=True) for name, q in bucket}
        yield out
    names = set(module.state_dict().keys())
    buffers = {n: b.detach().to("cpu", copy=True) for n, b in module.named_buffers()
               if n in names and not n.startswith(skip)}
    if buffers:
        yield buffers


# ---------------------------------------------------------------------- checkpoints
def _write_atomically(path: Path, write: Any, rank: int = 0, barrier: Any = None) -> None:
    """Calls `write(tmp_dir)` on every rank, then (rank 0) swaps `tmp_dir` in for `path`.

    The temp name is deterministic so that all ranks write into the same directory (on a
    shared file system). A crash leaves either the old checkpoint, or `.<name>.old` beside
    an absent `path` (which `_resolve_checkpoint` falls back to), never a half-written one.
    """
    path = path.absolute()
    tmp = path.parent / f".{path.name}.tmp"
    old = path.parent / f".{path.name}.old"
    sync = barrier or (lambda: None)
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    sync()
    write(tmp)
    sync()
    if rank == 0:
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    sync()


def _resolve_checkpoint(path: str | os.PathLike[str], kind: str) -> tuple[Path, dict[str, Any]]:
    """The checkpoint directory to read and its metadata; clear errors for missing/corrupt."""
    path = Path(path).absolute()
    old = path.parent / f".{path.name}.old"
    if not path.is_dir() and (old / META_FILE).is_file():
        path = old  # a save was interrupted between its two renames
    if not path.is_dir():
        raise FileNotFoundError(f"no actor engine checkpoint at {path} (directory not found)")
    meta_file = path / META_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{path} is not a complete actor engine checkpoint: {META_FILE} is "
            "missing (an interrupted save, or a different kind of directory)"
        ) from None
    except (OSError, ValueError) as err:
        raise ValueError(
            f"corrupt actor engine checkpoint at {path}: cannot read {META_FILE} ({err})"
        ) from None
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        found = meta.get("kind") if isinstance(meta, dict) else None
        raise ValueError(
            f"actor engine checkpoint at {path} was written by a {found!r} engine; "
            f"this is a {kind!r} engine (deepspeed.enabled must match the run that "
            "saved it)"
        )
    return path, meta


# ------------------------------------------------------------------------ torch engine
class TorchActorEngine:
    """Plain torch AdamW with the DeepSpeed engine's semantics (single process, no collectives)."""

    kind = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float,
        batch_size: int,
        micro_batch_size: int,
        grad_clip: float,
        weight_decay: float = 0.0,
        device: str = "cpu",
    ):
        self.module = model.to(device)
        self.device = torch.device(device)
        self.gradient_accumulation_steps = _check_batch(
            DeepSpeedConfig(enabled=False, micro_batch_size=micro_batch_size), batch_size, grad_clip
        )
        self.grad_clip = float(grad_clip)
        self._params = _trainable(model)
        self.optimizer = torch.optim.AdamW(self._params, lr=lr, weight_decay=weight_decay)
        self.base_optimizer = self.optimizer
        self._global_steps = 0
        self._micro_steps = 0
        self._grad_norm: float | None = None
        self._pending = False  # a backward happened in the current accumulation group
        self._dropped = False  # zero_grad() discarded the current group's gradients

    @property
    def global_steps(self) -> int:
        """Optimizer steps applied so far."""
        return self._global_steps

    @property
    def micro_steps(self) -> int:
        """`step()` calls so far (micro-batches, applied or not)."""
        return self._micro_steps

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulates d(loss / GAS); `loss` is one micro-batch's mean."""
        (loss / self.gradient_accumulation_steps).backward()
        self._pending = True

    def is_boundary(self) -> bool:
        """True when the next `step()` closes an accumulation group (and may apply the optimizer)."""
        return (self._micro_steps + 1) % self.gradient_accumulation_steps == 0

    def step(self) -> bool:
        """Ends a micro-batch; at the boundary clips and steps. Returns True if weights changed."""
        applied = False
        if self.is_boundary():
            if self._pending and not self._dropped:
                norm = torch.nn.utils.clip_grad_norm_(
                    self._params, self.grad_clip if self.grad_clip > 0 else float("inf")
                )
                self._grad_norm = float(norm)
                self.optimizer.step()
                self._global_steps += 1
                applied = True
            self.optimizer.zero_grad(set_to_none=True)
            self._pending = self._dropped = False
        self._micro_steps += 1
        return applied

    def zero_grad(self) -> None:
        """Discards accumulated gradients; mid-group, the group's optimizer step is dropped."""
        if self._pending:
            self._dropped = True
        self.optimizer.zero_grad(set_to_none=True)

    def get_grad_norm(self) -> float | None:
        """Global grad norm (before clipping) of the last applied step; None before any."""
        return self._grad_norm

    def gathered_parameters(
        self, module: torch.nn.Module | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """A no-op here: the module always holds its full parameters."""
        return contextlib.nullcontext()

    def weight_buckets(
        self, bucket_bytes: int, skip: tuple[str, ...] = ()
    ) -> Iterator[dict[str, torch.Tensor]]:
        return weight_buckets(self.module, bucket_bytes, skip=skip)

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Weights, optimizer state and step counters, written atomically to `path`."""
        _refuse_mid_group(self)

        def write(tmp: Path) -> None:
            torch.save(
                {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict()},
                tmp / _TORCH_STATE_FILE,
            )
            _write_meta(tmp, self, {})

        _write_atomically(Path(path), write)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        ckpt, meta = _resolve_checkpoint(path, self.kind)
        try:
            state = torch.load(
                ckpt / _TORCH_STATE_FILE, map_location=self.device, weights_only=True
            )
            self.module.load_state_dict(state["module"])
            self.optimizer.load_state_dict(state["optimizer"])
        except Exception as err:  # missing file, truncated pickle, wrong shapes, ...
            raise ValueError(f"corrupt actor engine checkpoint at {ckpt}: {err}") from err
        self._global_steps = int(meta["global_steps"])
        self._micro_steps = int(meta["micro_steps"])
        self._grad_norm = meta.get("grad_norm")
        self._pending = self._dropped = False


def _refuse_mid_group(engine: Any) -> None:
    if engine.micro_steps % engine.gradient_accumulation_steps:
        raise RuntimeError(
            f"save_checkpoint() in the middle of a gradient accumulation "
            f"({engine.micro_steps % engine.gradient_accumulation_steps} of "
            f"{engine.gradient_accumulation_steps} micro-batches); accumulated gradients are not "
            "saved, so save after the step() that closes the group"
        )


def _write_meta(directory: Path, engine: Any, extra: dict[str, Any]) -> None:
    meta = {
        "kind": engine.kind,
        "global_steps": engine.global_steps,
        "micro_steps": engine.micro_steps,
        "grad_norm": engine.get_grad_norm(),
        "gradient_accumulation_steps": engine.gradient_accumulation_steps,
        **extra,
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")


# -------------------------------------------------------------------- process group
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now ("" : on every interface, for other nodes to reach)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_process_group(backend: str) -> None:
    """Initialises torch.distributed once per process; an existing group is reused as is.

    Under a launcher (`deepspeed`, `torchrun`: MASTER_PORT is set) the group comes from the
    environment. Otherwise it is a one-process group, rank 0 of 1 on 127.0.0.1 at a free port,
    and MASTER_PORT is NOT written to the environment: a child process started later (a
    subprocess `archer train`, a test) must pick its own port, not inherit one already bound.
    RANK, WORLD_SIZE and LOCAL_RANK are set when absent, since DeepSpeed reads them.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return
    defaults = {"MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if "MASTER_PORT" in os.environ:
        dist.init_process_group(backend=backend, init_method="env://")
    else:
        dist.init_process_group(backend=backend, init_method=f"tcp://127.0.0.1:{free_port()}",
                                rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]))


def _import_deepspeed(device: str) -> Any:
    """`deepspeed`, with its accelerator matching `device` and no JIT-built ops on CPU."""
    on_cpu = device == "cpu" or not torch.cuda.is_available()
    if "deepspeed" not in sys.modules and on_cpu:
        # DeepSpeed picks its accelerator once, at import; say "cpu" rather than let it guess.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator().device_name()
    wanted = "cpu" if device == "cpu" else device.split(":")[0]
    if accelerator != wanted:
        raise ValueError(
            f"device={device!r}, but DeepSpeed's accelerator in this process is {accelerator!r} "
            f"(chosen when deepspeed was first imported; DS_ACCELERATOR="
            f"{os.environ.get('DS_ACCELERATOR')!r}); set device to match, or set DS_ACCELERATOR "
            "before anything imports deepspeed"
        )
    if accelerator == "cpu":
        # The CPU accelerator's comm backend JIT-compiles a shared-memory all-reduce op at start
        # (tens of seconds, needs a C++ toolchain) that only inference all-reduce uses. Training
        # collectives go through torch.distributed (gloo), so mark the op unavailable.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    return deepspeed


def _resolve_backend(ds: DeepSpeedConfig, device: str) -> str:
    if ds.backend == "auto":
        return "gloo" if device == "cpu" else "nccl"
    if ds.backend == "nccl" and device == "cpu":
        raise ValueError(
            "deepspeed.backend: nccl needs CUDA devices; use gloo (or auto) with device=cpu"
        )
    return ds.backend


# -------------------------------------------------------------------- deepspeed engine
class DeepSpeedActorEngine:
    """A `deepspeed.initialize` engine around the actor, with a client torch AdamW."""

    kind = "deepspeed"

    def __init__(
        self,
        model: torch.nn.Module,
        ds: DeepSpeedConfig,
        lr: float,
        batch_size: int,
        grad_clip: float,
        weight_decay: float = 0.0,
        device: str = "cpu",
    ):
        world = int(os.environ.get("WORLD_SIZE", "1"))
        deepspeed_config(ds, batch_size, grad_clip, world)  # fail on bad settings before set-up
        self._ds = _import_deepspeed(device)
        import torch.distributed as dist

        ensure_process_group(_resolve_backend(ds, device))
        self.world_size = dist.get_world_size()
        self.rank = dist.get_rank()
        self.config = deepspeed_config(ds, batch_size, grad_clip, self.world_size)
        self.zero_stage = ds.zero_stage
        optimizer = torch.optim.AdamW(_trainable(model), lr=lr, weight_decay=weight_decay)
        self.engine, self.optimizer, _, _ = self._ds.initialize(
            model=model, optimizer=optimizer, config=self.config
        )
        # the client AdamW: DeepSpeed's wrappers step it with their own (sharded, fp32) params
        # in its param groups, so its groups' lr is the one applied
        self.base_optimizer = optimizer
        self.module: torch.nn.Module = self.engine.module
        self.device = self.engine.device
        self.gradient_accumulation_steps = int(self.engine.gradient_accumulation_steps())
        # The basic (ZeRO-0 fp32) path clips without recording the norm; we compute it then.
        self._own_norm = ds.zero_stage == 0 and ds.precision == "fp32"
        self._grad_norm: float | None = None
        self._pending = False
        self._dropped = False

    @property
    def global_steps(self) -> int:
        return int(self.engine.global_steps)

    @property
    def micro_steps(self) -> int:
        return int(self.engine.micro_steps)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.engine(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        """DeepSpeed scales `loss` by 1 / GAS (and reduces across ranks at the boundary)."""
        self.engine.backward(loss)
        self._pending = True

    def is_boundary(self) -> bool:
        return bool(self.engine.is_gradient_accumulation_boundary())

    def step(self) -> bool:
        if not self.is_boundary():
            self.engine.step()
            return False
        if not self._pending or self._dropped:
            # Nothing to apply: close the group without touching the optimizer.
            self._discard_module_grads()
            self.engine.micro_steps += 1
            self._pending = self._dropped = False
            return False
        before = self.global_steps
        own_norm = self._module_grad_norm() if self._own_norm else None
        self.engine.step()
        self._pending = False
        applied = self.global_steps > before and bool(getattr(self.engine, "_step_applied", True))
        if applied:
            norm = own_norm if self._own_norm else self.engine.get_global_grad_norm()
            self._grad_norm = None if norm is None else float(norm)
        return applied

    def zero_grad(self) -> None:
        """Discards accumulated gradients; mid-group, the group's optimizer step is dropped.

        Dropping a partial group is supported under ZeRO stage 0 only: ZeRO 1-3 keep reduced
        gradients in their own partitioned buffers, which only their step can clear. With
        several ranks every rank must drop the same group (the boundary backward all-reduces).
        """
        if self._pending:
            if self.zero_stage > 0:
                raise RuntimeError(
                    "zero_grad() after backward() in the middle of a gradient accumulation is "
                    f"not supported under ZeRO stage {self.zero_stage} (its partitioned gradient "
                    "buffers cannot be cleared); check each loss before backward(), or use "
                    "deepspeed.zero_stage=0"
                )
            self._dropped = True
        self._discard_module_grads()

    def _discard_module_grads(self) -> None:
        self.engine.zero_grad()  # sets every module parameter's .grad to None

    def _module_grad_norm(self) -> float:
        grads = [p.grad.detach().float() for p in self.module.parameters() if p.grad is not None]
        if not grads:
            return 0.0
        return float(
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        )

    def get_grad_norm(self) -> float | None:
        return self._grad_norm

    def gathered_parameters(
        self, module: torch.nn.Module | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Full parameters of `module` (a submodule of the engine's; default: all of it) on
        every rank inside the block (ZeRO-3, a collective: every rank enters); a no-op
        otherwise.

        Use it around anything that reads `module` directly under ZeRO-3: generation,
        `save_pretrained`, copying weights to rollout workers, a head's Polyak target.
        Read-only: changes made inside are not written back to the partitions.
        """
        if self.zero_stage != 3:
            return contextlib.nullcontext()
        params = list((self.module if module is None else module).parameters())
        return self._ds.zero.GatheredParameters(params, modifier_rank=None)

    def weight_buckets(
        self, bucket_bytes: int, skip: tuple[str, ...] = ()
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The weights in buckets of at most `bucket_bytes`, gathered one bucket at a time
        under ZeRO-3 (`weight_buckets`); every rank must iterate in step."""
        gather = None
        if self.zero_stage == 3:
            def gather(params: list[torch.nn.Parameter]) -> Any:
                return self._ds.zero.GatheredParameters(params, modifier_rank=None)
        return weight_buckets(self.module, bucket_bytes, gather=gather, skip=skip)

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """DeepSpeed's checkpoint (weights, optimizer, counters) in `path`, written atomically.

        Every rank must call it; with ZeRO > 0 each rank writes its optimizer shard, so `path`
        must be on a file system all ranks share.
        """
        _refuse_mid_group(self)
        import torch.distributed as dist

        def write(tmp: Path) -> None:
            self.engine.save_checkpoint(
                str(tmp),
                tag=_DS_TAG,
                save_latest=False,
                client_state={"archer_micro_steps": self.micro_steps},
            )
            if self.rank == 0:
                _write_meta(
                    tmp, self, {"zero_stage": self.zero_stage, "world_size": self.world_size}
                )

        _write_atomically(Path(path), write, rank=self.rank, barrier=dist.barrier)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restores weights, optimizer state and counters saved by `save_checkpoint`.

        Under ZeRO-3 load into a freshly built engine (DeepSpeed cannot load into a ZeRO-3
        engine that has already saved). The ZeRO stage and, for ZeRO > 0, the world size must
        match the saving run's.
        """
        ckpt, meta = _resolve_checkpoint(path, self.kind)
        saved_stage, saved_world = meta.get("zero_stage"), meta.get("world_size")
        if saved_stage != self.zero_stage or (
            self.zero_stage > 0 and saved_world != self.world_size
        ):
            raise ValueError(
                f"actor engine checkpoint at {ckpt} was saved with ZeRO stage {saved_stage} on "
                f"{saved_world} rank(s); this engine runs stage {self.zero_stage} on "
                f"{self.world_size}; resume with the same deepspeed.zero_stage and rank count"
            )
        try:
            load_path, client_state = self.engine.load_checkpoint(
                str(ckpt), tag=_DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=False
            )
        except Exception as err:  # truncated files, wrong shapes, missing shards, ...
            raise ValueError(f"corrupt actor engine checkpoint at {ckpt}: {err}") from err
        if load_path is None:
            raise ValueError(
                f"corrupt actor engine checkpoint at {ckpt}: DeepSpeed found no "
                f"checkpoint under tag {_DS_TAG!r}"
            )
        self.engine.micro_steps = int(client_state.get("archer_micro_steps", meta["micro_steps"]))
        self._grad_norm = meta.get("grad_norm")
        self._pending = self._dropped = False


# --------------------------------------------------------------------------- builder
def build_actor_engine(
    model: torch.nn.Module,
    ds: DeepSpeedConfig,
    lr: float,
    batch_size: int,
    grad_clip: float,
    weight_decay: float = 0.0,
    device: str = "cpu",
) -> DeepSpeedActorEngine | TorchActorEngine:
    """The actor's training engine: DeepSpeed when `ds.enabled`, else plain torch AdamW.

    `batch_size` is the rows of one optimizer step over all ranks; each of the W ranks runs
    `batch_size // (W * ds.micro_batch_size)` micro-batches and the gradients are averaged.
    """
    if not lr > 0:
        raise ValueError(f"actor.lr: must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay: must be >= 0, got {weight_decay}")
    if ds.enabled:
        return DeepSpeedActorEngine(
            model,
            ds,
            lr=lr,
            batch_size=batch_size,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            device=device,
        )
    return TorchActorEngine(
        model,
        lr=lr,
        batch_size=batch_size,
        micro_batch_size=ds.micro_batch_size,
        grad_clip=grad_clip,
        weight_decay=weight_decay,
        device=device,
    )
