"""Trajectory datasets on disk: JSON Lines, one episode an object a line (docs/datasets.md).

Each line holds `env_id`, `task_id`, `agent`, `seed`, `success`, `error`, `return`, `length`,
`final_observation` and `turns`, a list of {observation, action, reward, terminated, truncated,
info}. JSONL is appendable, greppable, streams, and loads with `pandas.read_json(lines=True)`.
Files ending in `.gz` are gzip-compressed.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from archer.errors import ArcherError
from archer.types import Trajectory

REQUIRED_KEYS = ("env_id", "task_id", "turns")
TURN_KEYS = ("observation", "action", "reward", "terminated", "truncated")


class DatasetError(ArcherError, ValueError):
    """A dataset file is missing, empty or malformed; the message names the file and line."""


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def write_trajectories(trajectories: Iterable[Trajectory], path: str | os.PathLike[str]) -> int:
    """Write episodes atomically (temp file, then rename); return how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + (".gz" if path.suffix == ".gz" else ""))
    n = 0
    with _open(tmp, "w") as f:
        for traj in trajectories:
            f.write(json.dumps(traj.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def iter_trajectories(path: str | os.PathLike[str]) -> Iterator[Trajectory]:
    for _, traj in iter_located(path):
        yield traj


def iter_located(path: str | os.PathLike[str]) -> Iterator[tuple[str, Trajectory]]:
    """Each episode with where it is ("<path>, line N"), for errors about its content."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    with _open(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{where}: expected a JSON object per line")
            missing = [k for k in REQUIRED_KEYS if k not in record]
            if missing:
                raise DatasetError(f"{where}: missing key(s) {missing}")
            if not isinstance(record["turns"], list):
                raise DatasetError(f"{where}: 'turns' must be a list")
            for i, turn in enumerate(record["turns"]):
                bad = [k for k in TURN_KEYS if not isinstance(turn, dict) or k not in turn]
                if bad:
                    raise DatasetError(f"{where}: turn {i} lacks {bad}")
            try:
                traj = Trajectory.from_dict(record)
            except (TypeError, ValueError) as err:
                raise DatasetError(f"{where}: {err}") from None
            yield where, traj


def read_trajectories(path: str | os.PathLike[str]) -> list[Trajectory]:
    """Read every episode; an empty file is an error (nothing to train or evaluate on)."""
    trajectories = list(iter_trajectories(path))
    if not trajectories:
        raise DatasetError(f"dataset {path} holds no episodes")
    return trajectories
