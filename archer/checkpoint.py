"""The one atomic checkpoint writer of a run.

`save(directory, write)` has `write(tmp)` fill a temporary directory, marks it COMPLETE, then
swaps it in for `directory` with renames: a crash at any point leaves either the old checkpoint
or the new one, never half of one (an interrupted swap leaves `<name>.old`, which `resolve`
falls back to). `resolve` checks a checkpoint before a resume and names what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archer.errors import CheckpointError
from archer.faults import crash_point

COMPLETE = "COMPLETE"


def save(directory: Path, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    crash_point("checkpoint_write")
    (tmp / COMPLETE).write_text(json.dumps(meta))
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
        crash_point("checkpoint_swap")
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def resolve(directory: Path) -> Path:
    """The complete checkpoint at `directory` (or the `.old` one an interrupted swap left);
    a clear CheckpointError otherwise."""
    old = directory.with_name(directory.name + ".old")
    if not directory.exists() and (old / COMPLETE).is_file():
        return old
    if not directory.is_dir():
        raise CheckpointError(f"train.resume=true but there is no checkpoint at {directory}")
    if not (directory / COMPLETE).is_file():
        raise CheckpointError(f"checkpoint {directory} is incomplete or corrupt (no {COMPLETE} "
                              "marker)")
    return directory


def meta(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / COMPLETE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint {directory}: unreadable {COMPLETE} ({err})") from None
