"""The episode store: whole episodes, served as utterance-level transitions, as episodes, or as
groups of the same task id.

Episodes are kept whole, oldest first; once more than `capacity` agent turns are stored, the
oldest episodes are evicted (the newest one always stays). `sample_turns` draws transitions
(s, a, r, s', done) uniformly with replacement from the store's own seeded
`numpy.random.Generator`, so sampling is reproducible and independent of every other RNG.

On disk a store is a directory: `episodes.jsonl.gz`, the dataset format of `archer collect`
(docs/datasets.md; `data.path` can point at it), and `store.json` with the capacity, the seed,
the counters, the RNG state and the iteration each episode entered. Both are written
atomically; a restored store holds the same episodes and gives the same next samples.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archer.buffer.dataset import DatasetError, read_trajectories, write_trajectories
from archer.errors import ArcherError
from archer.types import Trajectory, Transition, Turn

FORMAT = "archer-episode-store"
VERSION = 1
EPISODES_FILE = "episodes.jsonl.gz"
STATE_FILE = "store.json"


class StoreError(ArcherError, ValueError):
    """A saved episode store that is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class TurnRef:
    """Turn `t` of a stored episode."""

    episode: Trajectory
    t: int
    iteration: int = -1
    """The training iteration in which the episode entered the store."""

    @property
    def turn(self) -> Turn:
        return self.episode.turns[self.t]

    @property
    def next_observation(self) -> str:
        """s': the next turn's observation, or the episode's final one after its last turn."""
        turns = self.episode.turns
        return turns[self.t + 1].observation if self.t + 1 < len(turns) else (
            self.episode.final_observation)

    @property
    def transition(self) -> Transition:
        turn, ep = self.turn, self.episode
        return Transition(turn.observation, turn.action, turn.reward, self.next_observation,
                          turn.terminated, ep.task_id,
                          -1 if ep.policy_version is None else ep.policy_version, self.iteration)


def _valid_turns(traj: Trajectory) -> list[int]:
    """Turns that make a transition: a turn on which the env raised has no valid s'."""
    return [i for i, turn in enumerate(traj.turns) if "error" not in turn.info]


class EpisodeStore:
    """Whole episodes, FIFO by turns, with uniform sampling of transitions or episodes."""

    def __init__(self, capacity: int | None, seed: int = 0):
        if capacity is not None and capacity < 1:
            raise ValueError(f"episode store capacity must be >= 1 turns or None, got {capacity}")
        self.capacity = capacity
        self.seed = seed
        self._episodes: list[Trajectory] = []
        self._iterations: list[int] = []
        self._turns = 0
        self._added_turns = 0
        self._evicted_turns = 0
        self._index: list[tuple[int, int]] | None = None  # (episode, turn), built lazily
        self._rng = np.random.default_rng(seed)

    @classmethod
    def from_dataset(cls, path: str | os.PathLike[str], seed: int = 0) -> EpisodeStore:
        """An unbounded store holding a dataset's episodes (raises DatasetError)."""
        store = cls(None, seed)
        store.add(read_trajectories(path), iteration=-1)
        return store

    # ------------------------------------------------------------------ writing
    def add(self, trajectories: Sequence[Trajectory], iteration: int) -> int:
        """Append whole episodes; evict the oldest beyond `capacity` turns. Returns the number
        of transitions added (turns without an env error)."""
        added = 0
        for traj in trajectories:
            if not isinstance(traj, Trajectory):
                raise TypeError(f"EpisodeStore.add takes Trajectory objects, got "
                                f"{type(traj).__name__}")
            self._episodes.append(traj)
            self._iterations.append(iteration)
            n = len(_valid_turns(traj))
            self._turns += n
            self._added_turns += n
            added += n
        while self.capacity is not None and self._turns > self.capacity and len(self._episodes) > 1:
            old = self._episodes.pop(0)
            self._iterations.pop(0)
            n = len(_valid_turns(old))
            self._turns -= n
            self._evicted_turns += n
        self._index = None
        return added

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Stored transitions (agent turns without an env error)."""
        return self._turns

    def episodes(self) -> list[Trajectory]:
        """The stored episodes, oldest first."""
        return list(self._episodes)

    def turns(self) -> list[TurnRef]:
        """Every stored transition, oldest first."""
        return [TurnRef(self._episodes[e], t, self._iterations[e]) for e, t in self._refs()]

    def _refs(self) -> list[tuple[int, int]]:
        if self._index is None:
            self._index = [(e, t) for e, ep in enumerate(self._episodes) for t in _valid_turns(ep)]
        return self._index

    def sample_turns(self, n: int) -> list[TurnRef]:
        """`n` transitions drawn uniformly with replacement."""
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        refs = self._refs()
        if not refs:
            raise ValueError("cannot sample from an empty episode store; add episodes first")
        idx = self._rng.integers(0, len(refs), size=n)
        return [TurnRef(self._episodes[refs[i][0]], refs[i][1], self._iterations[refs[i][0]])
                for i in (int(j) for j in idx)]

    def sample_episodes(self, n: int) -> list[Trajectory]:
        """`n` episodes drawn uniformly with replacement."""
        if not self._episodes:
            raise ValueError("cannot sample from an empty episode store; add episodes first")
        return [self._episodes[int(i)] for i in self._rng.integers(0, len(self._episodes), n)]

    def by_task(self) -> dict[str, list[Trajectory]]:
        """Episodes grouped by task id, oldest first within each group."""
        groups: dict[str, list[Trajectory]] = defaultdict(list)
        for ep in self._episodes:
            groups[ep.task_id].append(ep)
        return dict(groups)

    def stats(self, current_iteration: int | None = None) -> dict[str, float]:
        """Namespaced metrics; ages appear when `current_iteration` is given and the store
        holds episodes of known iteration."""
        out: dict[str, float] = {
            "buffer/size": float(self._turns),
            "buffer/episodes": float(len(self._episodes)),
            "buffer/added_total": float(self._added_turns),
            "buffer/overwritten": float(self._evicted_turns),
        }
        refs = self._refs()
        if not refs:
            return out
        versions = [-1 if ep.policy_version is None else ep.policy_version
                    for ep in self._episodes]
        out["buffer/policy_version_min"] = float(min(versions))
        out["buffer/policy_version_max"] = float(max(versions))
        out["buffer/done_fraction"] = sum(
            self._episodes[e].turns[t].terminated for e, t in refs) / len(refs)
        if current_iteration is not None:
            ages = [current_iteration - self._iterations[e] for e, _ in refs
                    if self._iterations[e] >= 0]
            if ages:
                out["buffer/age_iters_mean"] = sum(ages) / len(ages)
                out["buffer/age_iters_max"] = float(max(ages))
        return out

    # ------------------------------------------------------------------ disk
    def save(self, directory: str | os.PathLike[str]) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_trajectories(self._episodes, directory / EPISODES_FILE)
        state = {"format": FORMAT, "version": VERSION, "capacity": self.capacity,
                 "seed": self.seed, "iterations": self._iterations,
                 "added_turns": self._added_turns, "evicted_turns": self._evicted_turns,
                 "rng": self._rng.bit_generator.state}
        tmp = directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, default=int))
        os.replace(tmp, directory / STATE_FILE)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> EpisodeStore:
        directory = Path(directory)
        where = directory / STATE_FILE
        try:
            state: dict[str, Any] = json.loads(where.read_text())
        except FileNotFoundError:
            raise StoreError(f"no episode store at {directory} ({STATE_FILE} is missing)") from None
        except json.JSONDecodeError as err:
            raise StoreError(f"{where} is not valid JSON ({err.msg})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise StoreError(f"{where} is not an archer episode store")
        if state.get("version") != VERSION:
            raise StoreError(f"{where}: store version {state.get('version')} is not "
                             f"supported (this archer reads version {VERSION})")
        store = cls(state["capacity"], state["seed"])
        episodes: list[Trajectory] = []
        if state["iterations"]:
            try:
                episodes = read_trajectories(directory / EPISODES_FILE)
            except DatasetError as err:
                raise StoreError(f"episode store {directory}: {err}") from None
        if len(episodes) != len(state["iterations"]):
            raise StoreError(f"episode store {directory}: {len(episodes)} episodes but "
                             f"{len(state['iterations'])} entries in {STATE_FILE}")
        store._episodes = episodes
        store._iterations = [int(i) for i in state["iterations"]]
        store._turns = sum(len(_valid_turns(ep)) for ep in episodes)
        store._added_turns = int(state["added_turns"])
        store._evicted_turns = int(state["evicted_turns"])
        store._rng.bit_generator.state = state["rng"]
        return store
