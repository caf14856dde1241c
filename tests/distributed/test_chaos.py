"""scripts/chaos.py for real: an `archer train` driver (Ray rollout worker, DeepSpeed actor)
SIGKILLed after a critic step, then resumed, loses nothing against straight runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.distributed
def test_a_driver_killed_after_a_critic_step_resumes_exactly(tmp_path):
    out = tmp_path / "chaos"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--out", str(out),
         "--iterations", "2", "--scenarios", "critic_step", "--seed", "0"],
        capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "chaos.json").read_text())
    (result,) = report["scenarios"]
    # seed 0 draws the 4th of 6 critic steps: in iteration 1, after the first checkpoint
    assert result["killed"] and result["killed_at"] == "critic_step #4"
    assert result["iterations_logged"] == 1 and result["resumed_from"] == 1
    assert result["start_ok"] and result["rows_equal"] and result["final_equal"]
    assert "1 of 1 scenarios lost nothing" in done.stdout
    # the references differ from one iteration to the next: equality above is not vacuous
    refs = report["references"]
    assert refs["1"]["buffer"] != refs["2"]["buffer"] and refs["1"]["policy"] != refs["2"]["policy"]
