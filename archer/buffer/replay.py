"""The replay buffer: utterance-level transitions (s, a, r, s', done) for the off-policy critic.

A ring buffer over a fixed-size list. The n-th transition ever added (counting from 0) goes to
slot `n % capacity`, so once the buffer is full each new transition overwrites the oldest one.
`sample` draws slots uniformly with replacement from the buffer's own `numpy.random.Generator`,
so sampling is reproducible from the seed and independent of every other RNG in a run.

On disk (`save` / `load`) a buffer is one gzip-compressed JSON Lines file: a header line
(format, version, capacity, seed, counters, RNG state), then one `Transition` a line in slot
order. It is written atomically (temp file + `os.replace`) and restores exactly: the same
transitions in the same slots, the same counters, and the same next samples.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from archer.types import Trajectory, Transition, trajectory_transitions

FORMAT = "archer-replay-buffer"
VERSION = 1
_FIELDS = {f.name: f for f in fields(Transition)}
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "observation": (str,),
    "action": (str,),
    "reward": (int, float),
    "next_observation": (str,),
    "done": (bool,),
    "task_id": (str,),
    "policy_version": (int,),
    "iteration": (int,),
}


class ReplayBufferError(ValueError):
    """A replay-buffer file or state that is missing or malformed; the message names it."""


class ReplayBuffer:
    """Fixed-capacity FIFO store of `Transition`s with uniform sampling with replacement."""

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seed = seed
        self._items: list[Transition | None] = [None] * capacity
        self._added_total = 0
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ writing
    def add(self, transitions: Iterable[Transition]) -> None:
        """Append transitions in order; when full, each one overwrites the oldest."""
        for t in transitions:
            if not isinstance(t, Transition):
                raise TypeError(
                    f"ReplayBuffer.add takes Transition objects, got {type(t).__name__}"
                )
            self._items[self._added_total % self.capacity] = t
            self._added_total += 1

    def add_trajectories(self, trajectories: Iterable[Trajectory], iteration: int) -> int:
        """Add the utterance-level transitions of whole episodes (see `trajectory_transitions`:
        done is `terminated`, error turns are left out); return how many were added."""
        n = 0
        for traj in trajectories:
            transitions = trajectory_transitions(traj, iteration)
            self.add(transitions)
            n += len(transitions)
        return n

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return min(self._added_total, self.capacity)

    def transitions(self) -> list[Transition]:
        """The stored transitions, oldest first."""
        size = len(self)
        start = self._added_total % self.capacity if self._added_total > self.capacity else 0
        slots = [(start + i) % self.capacity for i in range(size)]
        return [self._slot(i) for i in slots]

    def sample(self, n: int) -> list[Transition]:
        """`n` transitions drawn uniformly with replacement from those stored."""
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer; add transitions first")
        idx = self._rng.integers(0, len(self), size=n)
        return [self._slot(int(i)) for i in idx]

    def _slot(self, i: int) -> Transition:
        item = self._items[i]
        assert item is not None, f"replay buffer slot {i} is empty"
        return item

    def stats(self, current_iteration: int | None = None) -> dict[str, float]:
        """Namespaced metrics. Ages (`current_iteration - transition.iteration`) are over the
        transitions with a known iteration (>= 0), and appear only when `current_iteration` is
        given; value statistics appear only when the buffer is not empty."""
        items = [self._slot(i) for i in range(len(self))]
        out: dict[str, float] = {
            "buffer/size": float(len(items)),
            "buffer/added_total": float(self._added_total),
            "buffer/overwritten": float(max(0, self._added_total - self.capacity)),
        }
        if not items:
            return out
        versions = [t.policy_version for t in items]
        out["buffer/policy_version_min"] = float(min(versions))
        out["buffer/policy_version_max"] = float(max(versions))
        out["buffer/done_fraction"] = sum(t.done for t in items) / len(items)
        if current_iteration is not None:
            ages = [current_iteration - t.iteration for t in items if t.iteration >= 0]
            if ages:
                out["buffer/age_iters_mean"] = sum(ages) / len(ages)
                out["buffer/age_iters_max"] = float(max(ages))
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the buffer exactly, as plain Python values."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "capacity": self.capacity,
            "seed": self.seed,
            "added_total": self._added_total,
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "transitions": [asdict(self._slot(i)) for i in range(len(self))],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`; the capacity must match this buffer's."""
        _check_header(state, "replay buffer state")
        if state["capacity"] != self.capacity:
            raise ReplayBufferError(
                f"replay buffer state has capacity {state['capacity']}, this buffer "
                f"{self.capacity}; build the buffer with the saved capacity (ReplayBuffer.load)"
            )
        size = min(state["added_total"], self.capacity)
        records = state["transitions"]
        if len(records) != size:
            raise ReplayBufferError(
                f"replay buffer state holds {len(records)} transitions, expected {size} "
                f"(capacity {self.capacity}, added_total {state['added_total']})"
            )
        items = [
            _transition(r, f"replay buffer state, transition {i}") for i, r in enumerate(records)
        ]
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = copy.deepcopy(state["rng"])
        except (TypeError, ValueError, KeyError) as err:
            raise ReplayBufferError(f"replay buffer state has an invalid RNG state: {err}") from None
        self.seed = state["seed"]
        self._added_total = state["added_total"]
        self._items = [*items, *[None] * (self.capacity - size)]
        self._rng = rng

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the buffer to one gzip'd JSON Lines file, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        records = state.pop("transitions")
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            with gzip.open(tmp, "wt", encoding="utf-8") as f:
                f.write(json.dumps(state) + "\n")
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReplayBuffer:
        """Read a buffer written by `save`; raises ReplayBufferError naming the file if it is missing
        or malformed."""
        path = Path(path)
        if not path.is_file():
            raise ReplayBufferError(f"replay buffer file not found: {path}")
        state: Any = None
        records: list[Any] = []
        lineno = 0
        try:
            with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
                for lineno, line in enumerate(f, 1):
                    if lineno == 1:
                        state = json.loads(line)
                    else:
                        records.append(json.loads(line))
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as err:
            raise ReplayBufferError(
                f"replay buffer file {path} is not readable gzip'd text: {err}"
            ) from None
        except json.JSONDecodeError as err:
            raise ReplayBufferError(
                f"replay buffer file {path}, line {lineno}: not valid JSON ({err.msg})"
            ) from None
        if state is None:
            raise ReplayBufferError(f"replay buffer file {path} is empty")
        if isinstance(state, dict):
            state["transitions"] = records
        try:
            _check_header(state, "replay buffer state")
            buffer = cls(state["capacity"], seed=state["seed"])
            buffer.load_state_dict(state)
        except (ReplayBufferError, ValueError) as err:
            raise ReplayBufferError(f"replay buffer file {path}: {err}") from None
        return buffer


def _check_header(state: Any, where: str) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ReplayBufferError(f"{where} is not a {FORMAT} (format field missing or different)")
    if state.get("version") != VERSION:
        raise ReplayBufferError(
            f"{where} has version {state.get('version')!r}; this code reads {VERSION}"
        )
    for key in ("capacity", "seed", "added_total"):
        value = state.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ReplayBufferError(f"{where}: '{key}' must be an integer >= 0, got {value!r}")
    if state["capacity"] < 1:
        raise ReplayBufferError(f"{where}: 'capacity' must be >= 1, got {state['capacity']}")
    if not isinstance(state.get("rng"), dict) or not isinstance(state.get("transitions"), list):
        raise ReplayBufferError(f"{where}: 'rng' (a dict) and 'transitions' (a list) are required")


def _transition(record: Any, where: str) -> Transition:
    if not isinstance(record, dict) or set(record) != set(_FIELDS):
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ReplayBufferError(f"{where}: expected the keys {sorted(_FIELDS)}, got {keys}")
    for key, types in _FIELD_TYPES.items():
        value = record[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise ReplayBufferError(f"{where}: '{key}' has the wrong type {type(value).__name__}")
    return Transition(**{**record, "reward": float(record["reward"])})
