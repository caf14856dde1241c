"""Data parallelism for the shared update steps (`archer.algorithms.updates`).

Every rank of a learner group (`archer.distributed.learner`) holds the same data: the same
episodes, replay buffer, RNG streams and weights. A step is planned identically on every rank
(the same rows, the same micro-batches, normalisers over the whole step); each rank then runs
its own contiguous share of the micro-batches, and the ranks' gradients are summed, so W ranks
take exactly the step one rank would. Fresh samples are split the same way, each row with its
own seed, and gathered back in order.

Without a process group, or in a group of one, every function here is a no-op (but
`part_rng`, which a learner group of any size uses): the in-process learner is unchanged.
Only torch.distributed is used (gloo on CPU, nccl on GPUs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


_in_group = False


def join_group() -> None:
    """Mark this process as a learner rank (`LearnerRank.setup`), even in a group of one, so
    that dropout draws from the same per-part streams whatever the number of ranks."""
    global _in_group
    _in_group = True


def in_group() -> bool:
    """Whether this process is a learner rank (of a group of any size, one included)."""
    return _in_group or world()[1] > 1


def world() -> tuple[int, int]:
    """(this process's rank, the number of ranks); (0, 1) without a process group."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_writer() -> bool:
    """Whether this rank writes the files every rank holds the same copy of (rank 0)."""
    return world()[0] == 0


def my_share(parts: Sequence[T], what: str = "micro-batches") -> list[T]:
    """This rank's contiguous share of `parts`, which must split evenly over the ranks."""
    rank, size = world()
    if size == 1:
        return list(parts)
    if len(parts) % size:
        raise ValueError(f"{len(parts)} {what} do not split over {size} learner ranks: make "
                         f"their number a multiple of {size}")
    per = len(parts) // size
    return list(parts[rank * per:(rank + 1) * per])


def even_parts(n: int, count: int) -> list[list[int]]:
    """0..n-1 in `count` consecutive parts whose sizes differ by at most one."""
    bounds = [n * k // count for k in range(count + 1)]
    return [list(range(bounds[k], bounds[k + 1])) for k in range(count)]


def split_rows(n: int) -> list[int]:
    """The rows of `n` that this rank handles: its part of `even_parts(n, W)` (rows need not
    split evenly, unlike micro-batches)."""
    rank, size = world()
    return even_parts(n, size)[rank]


def gather(local: list[T]) -> list[T]:
    """Every rank's `local` list, concatenated in rank order, on every rank."""
    import torch.distributed as dist

    size = world()[1]
    if size == 1:
        return list(local)
    out: list[Any] = [None] * size
    dist.all_gather_object(out, local)
    return [x for part in out for x in part]


def sum_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Each value summed over the ranks (every rank reports the same keys: shares of a step)."""
    import torch.distributed as dist

    if world()[1] == 1 or not metrics:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return dict(zip(keys, values.tolist(), strict=True))


def all_finite(finite: bool) -> bool:
    """True when `finite` holds on every rank: a non-finite loss on one rank skips the step on
    all of them, so no rank waits in a collective the others left."""
    import torch.distributed as dist

    if world()[1] == 1:
        return finite
    flag = torch.tensor([1.0 if finite else 0.0])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() == 1.0)


def sum_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """The ranks' gradients of `params` summed in place, in one flat all-reduce (a missing
    gradient counts as zero). For modules trained outside an actor engine (the critic)."""
    import torch.distributed as dist

    if world()[1] == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p)
        offset += n


@contextlib.contextmanager
def part_rng(step: int, part: int, device: torch.device | str | None = None) -> Iterator[None]:
    """In a learner group, the block draws from a stream fixed by (step, part) and leaves the
    global RNG as it found it: dropout in one rank's micro-batches cannot make the ranks' RNG
    streams (and so their batches) drift apart, and W ranks draw the masks one rank of a group
    draws. A no-op in the in-process learner (its numbers are unchanged)."""
    if not in_group():
        yield
        return
    dev = torch.device(device) if device is not None else torch.device("cpu")
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed((int(step) * 1_000_003 + int(part)) % 2**62)
        yield
