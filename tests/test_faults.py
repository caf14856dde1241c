"""Crash points (archer/faults.py) kill with a real SIGKILL where they say, and a checkpoint
killed mid-write or mid-swap leaves a complete one to resume from (archer/checkpoint.py)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from archer import checkpoint
from archer.faults import parse

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, crash: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ARCHER_CRASH_AT", None)
    if crash:
        env["ARCHER_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


def test_parse_accepts_a_point_and_a_count_only():
    assert parse("critic_step:3") == ("critic_step", 3)
    for bad in ("critic_step", "critic_step:0", "critic:2", "collect:x", ":1"):
        with pytest.raises(ValueError, match="ARCHER_CRASH_AT="):
            parse(bad)


def test_crash_point_kills_on_its_nth_hit_and_ignores_other_points():
    code = ("from archer.faults import crash_point\n"
            "for i in range(5):\n"
            "    crash_point('collect')\n"
            "    crash_point('critic_step')\n"
            "    print(i, flush=True)\n")
    killed = run_python(code, "critic_step:3")
    assert killed.returncode == -signal.SIGKILL
    assert killed.stdout.split() == ["0", "1"]  # the third critic_step never printed
    assert run_python(code, None).stdout.split() == ["0", "1", "2", "3", "4"]


SAVE_TWICE = """
import json, sys
from pathlib import Path
from archer import checkpoint
ckpt = Path(sys.argv[1]) / "checkpoint"
for it in (1, 2):
    checkpoint.save(ckpt, lambda tmp: (tmp / "state.json").write_text(json.dumps(it)),
                    {"iteration": it})
"""


@pytest.mark.parametrize("point", ["checkpoint_write", "checkpoint_swap"])
def test_a_checkpoint_killed_while_saving_leaves_the_previous_one(tmp_path, point):
    code = SAVE_TWICE.replace("sys.argv[1]", repr(str(tmp_path)))
    hit = 2 if point == "checkpoint_write" else 1  # the first save has nothing to swap out
    assert run_python(code, f"{point}:{hit}").returncode == -signal.SIGKILL
    found = checkpoint.resolve(tmp_path / "checkpoint")
    # killed in the second save: the first checkpoint, whole, is what a resume reads
    assert checkpoint.meta(found) == {"iteration": 1}
    assert json.loads((found / "state.json").read_text()) == 1
    if point == "checkpoint_swap":  # the first one was already renamed aside
        assert found.name == "checkpoint.old" and not (tmp_path / "checkpoint").exists()
    else:  # the second one never got its COMPLETE marker
        assert found.name == "checkpoint"
        assert not (tmp_path / "checkpoint.tmp" / checkpoint.COMPLETE).exists()
    # and the next save after the resume replaces it cleanly
    checkpoint.save(tmp_path / "checkpoint", lambda tmp: None, {"iteration": 2})
    assert checkpoint.meta(checkpoint.resolve(tmp_path / "checkpoint")) == {"iteration": 2}
    assert not (tmp_path / "checkpoint.old").exists()
