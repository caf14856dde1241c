"""`archer bench` end to end on the shipped smoke config (shortened to 16 episodes a run), through
the real CLI: a shared start, 2 methods x 2 seeds as Ray tasks, the output files and what is in
them, a re-run that skips finished runs, a larger budget that resumes one, and `archer bench
report` re-rendering without training."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "bench" / "smoke.yaml"


def archer(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "archer.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"archer {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The shipped smoke bench plus an offline method (BC on the start's 200 logged episodes,
    2 epochs: a reference line at its dataset size)."""
    import yaml

    tmp = tmp_path_factory.mktemp("bench")
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["methods"].append({"name": "bc", "overrides": ["train.iterations=2"]})
    config = tmp / "smoke_plus_bc.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp / "smoke"
    proc = archer("bench", "--config", str(config), f"output_dir={out}", "budget_episodes=16",
                  "eval_every_episodes=8", "--progress-every", "5")
    return out, proc.stdout, config


def test_the_smoke_bench_writes_results_summary_plots_and_report(smoke):
    out, stdout, _ = smoke
    assert "6 runs, 0 already done, 6 to run (ray, 2 at a time)" in stdout
    assert "[bench 6/6 done]" in stdout
    for name in ("results.csv", "summary.json", "report.md", "bench.yaml", "start.json",
                 "return_vs_episodes.png", "return_vs_episodes_logx.png",
                 "success_vs_episodes.png", "return_vs_wallclock.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    # online: 2 methods x 2 seeds x 3 marks (before training, 8 and 16 episodes); offline BC:
    # 2 seeds x 2 marks (before, after its epochs), at 0 environment episodes
    assert len(rows) == 12 + 4
    offline = [r for r in rows if r["method"] == "bc"]
    assert {r["kind"] for r in offline} == {"offline"} and len(offline) == 4
    assert {float(r["env_episodes"]) for r in offline} == {0.0}
    assert float(offline[-1]["dataset_episodes"]) == 200
    rows = [r for r in rows if r["method"] != "bc"]
    for method in ("archer", "reinforce"):
        for seed in ("0", "1"):
            mine = [r for r in rows if r["method"] == method and r["seed"] == seed]
            assert [float(r["env_episodes"]) for r in mine] == [0, 8, 16]
            assert [float(r["env_turns"]) for r in mine] == [0, 32, 64]  # 4 turns an episode
            steps = [float(r["gradient_steps"]) for r in mine]
            tokens = [float(r["policy_tokens"]) for r in mine]
            assert steps[0] == tokens[0] == 0 and steps[1] > 0 and tokens[2] > tokens[1] > 0
            assert all(0.0 <= float(r["return_sample"]) <= 1.0 for r in mine)
    # every method is evaluated on the same episodes before training: one seed, one start
    starts = {(r["seed"], r["return_sample"]) for r in rows if r["iteration"] == "-1.0"}
    assert len(starts) == 2

    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["baseline"] == "archer"
    start = summary["start"]
    assert start["expert"] == 1.0 and 0.2 < start["random"] < 0.8  # always_yes; a coin
    bc = summary["methods"].pop("bc")
    assert bc["offline"] and bc["dataset_episodes"]["median"] == 200 and "thresholds" not in bc
    for name, entry in summary["methods"].items():
        assert entry["seeds_done"] == [0, 1]
        assert set(entry["thresholds"]) == {"0.6", "0.8"}
        for t, th in entry["thresholds"].items():
            finals = [r for r in rows if r["method"] == name]
            assert len(th["per_seed"]) == 2
            for seed, e2t in zip((0, 1), th["per_seed"], strict=True):
                curve = [r for r in finals if r["seed"] == str(seed)]
                crossed = [float(r["env_episodes"]) for r in curve
                           if float(r["return_sample"]) >= float(t)]
                assert e2t == (crossed[0] if crossed else None)
    ratio = summary["methods"]["reinforce"]["thresholds"]["0.6"]["ratio_to_baseline"]
    assert ratio["kind"] in ("number", "lower", "upper", "undetermined")

    report = (out / "report.md").read_text()
    assert "| method | seeds | start | final return: median |" in report
    assert "## Episodes to threshold" in report and "ratio to archer" in report
    assert "![return vs environment episodes](return_vs_episodes.png)" in report
    assert "- commit: `" in report and "torch " in report and "CPUs" in report
    assert "archer train env.id=archer/EarlyChoice-v0" in report
    assert "| bc (offline) | 0,1 |" in report and "200 logged" in report


def test_a_rerun_skips_finished_runs_and_a_larger_budget_resumes(smoke):
    out, _, config = smoke
    metrics = out / "runs" / "reinforce" / "seed0" / "metrics.jsonl"
    before = metrics.read_text()
    again = archer("bench", "--config", str(config), f"output_dir={out}", "budget_episodes=16",
                   "eval_every_episodes=8", "--progress-every", "5")
    assert "6 runs, 6 already done, 0 to run" in again.stdout
    assert metrics.read_text() == before  # nothing retrained
    # one run, a budget of 24 episodes: it resumes from its checkpoint at 16
    more = archer("bench", "--config", str(config), f"output_dir={out}", "budget_episodes=24",
                  "eval_every_episodes=8", "only=[reinforce]", "seeds=[0]")
    assert "1 runs, 0 already done, 1 to run" in more.stdout
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [-1, 0, 1, 2]  # one more iteration, not a restart
    assert lines[-1]["progress/env_episodes"] == 24
    assert lines[-1]["progress/gradient_steps"] > lines[-2]["progress/gradient_steps"]
    assert "resumed from" in (metrics.parent / "train.log").read_text()


def test_bench_report_rerenders_without_training(smoke):
    out, _, _ = smoke
    (out / "report.md").unlink()
    proc = archer("bench", "report", str(out))
    assert "report:" in proc.stdout and (out / "report.md").is_file()
    assert "## Episodes to threshold" in (out / "report.md").read_text()


def test_bad_bench_configs_fail_before_any_work_naming_the_key(tmp_path):
    proc = archer("bench", "--config", str(SMOKE), f"output_dir={tmp_path}", "budget=3",
                  check=False)
    assert proc.returncode == 2 and "budget" in proc.stderr
    proc = archer("bench", "--config", str(SMOKE), f"output_dir={tmp_path}",
                  "eval_every_episodes=12", check=False)
    assert proc.returncode == 2 and "must divide eval_every_episodes=12" in proc.stderr
    proc = archer("bench", "--config", str(SMOKE), f"output_dir={tmp_path}", "baseline=ppo",
                  check=False)
    assert proc.returncode == 2 and "baseline: 'ppo' is not a method" in proc.stderr
    proc = archer("bench", "--config", str(SMOKE), f"output_dir={tmp_path}",
                  "methods=[{name: archer}, {name: bc}]", "baseline=bc", check=False)
    assert proc.returncode == 2 and "'bc' is an offline method" in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "start").exists()
    (tmp_path / "bench.lock").write_text(f"{os.getpid()}\n")  # a live bench holds the folder
    proc = archer("bench", "--config", str(SMOKE), f"output_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "in use by another bench" in proc.stderr
    assert not (tmp_path / "start").exists()
    proc = archer("bench", "report", str(tmp_path / "nothing"), check=False)
    assert proc.returncode == 2 and "not a bench output folder" in proc.stderr


def test_a_start_with_no_room_to_improve_is_called_out():
    from archer.bench.config import load_bench
    from archer.bench.run import Start, _warn_no_room

    cfg = load_bench(SMOKE)  # thresholds 0.6 and 0.8 on the sampled return; expert 1.0
    said = []
    _warn_no_room(cfg, Start("p", None, {"start_sample": 0.7, "expert": 1.0}), said.append)
    assert len(said) == 1 and "already reaches threshold(s) [0.6]" in said[0]
    said.clear()
    _warn_no_room(cfg, Start("p", None, {"start_sample": 1.0, "expert": 1.0}), said.append)
    assert len(said) == 2 and "no room to improve" in said[1]
    said.clear()
    _warn_no_room(cfg, Start("p", None, {"start_sample": 0.5, "expert": 1.0}), said.append)
    assert said == []
