"""A user's env registered with Gymnasium alone (examples/guess_number.py: no archer import, no
task_ids) through the commands a new user runs: envs check, collect, sft, eval, train."""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archer.buffer.dataset import read_trajectories
from archer.cli import main
from archer.config import load_config
from archer.evaluation import evaluate
from archer.rollout.batched import BatchedTextEnvs, run_episodes
from archer.rollout.envs import NO_TASKS_NOTE
from archer.rollout.seeds import episode_seeds
from examples import guess_number

ROOT = Path(__file__).resolve().parents[1]
ENV = "examples.guess_number:GuessMyNumber-v0"
BISECT = "examples.guess_number:bisect"


def run_cli(*args):
    """`archer ARGS` in a fresh interpreter, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "archer.cli", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def cli(*args) -> str:
    """`archer ARGS` in this process (the same `main`, without a new interpreter's start-up);
    returns what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(args))
    assert rc == 0, buf.getvalue()
    return buf.getvalue()


def test_envs_check_passes_with_notes():
    out = run_cli("envs", "check", ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all checks passed" in out.stdout and "FAIL" not in out.stdout
    notes = out.stdout.split("notes (")[1]
    for method in ("task_ids(split)", "corpus()", "atomic_terms()", "make_agent(name, seed, noise)"):
        assert f"no {method}" in notes


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """archer collect -> archer sft, as a user types them."""
    tmp = tmp_path_factory.mktemp("plain")
    common = ["model.max_context_tokens=128", "model.vocab_size=300"]
    cli("collect", "--env", ENV, "--agent", BISECT, "--episodes", "60",
        "--out", str(tmp / "data.jsonl"), "--quiet", *common)
    cli("sft", "--data", str(tmp / "data.jsonl"), "--out", str(tmp / "sft"), "--quiet",
        f"env.id={ENV}", "bc.epochs=2", *common)
    return tmp


def test_collect_draws_episodes_by_seed(cli_run):
    trajs = read_trajectories(cli_run / "data.jsonl")
    assert len(trajs) == 60 and all(t.success for t in trajs)
    assert [t.seed for t in trajs] == episode_seeds(0, "collect", 60)
    assert all(t.task_id == str(int(t.task_id)) for t in trajs)  # the secret the env reports


def test_eval_says_its_seeds_are_disjoint_from_training(cli_run):
    out = cli("eval", "--policy", str(cli_run / "sft" / "checkpoint" / "policy"), "--env", ENV, "--episodes", "16",
              "model.max_context_tokens=128")
    assert f"heldout_note: {NO_TASKS_NOTE}" in out
    out = cli("eval", "--policy", str(cli_run / "sft" / "checkpoint" / "policy"), "--env", ENV, "--episodes", "16",
              "--json", "model.max_context_tokens=128")
    result = json.loads(out)
    assert result["heldout"] is False and result["heldout_note"] == NO_TASKS_NOTE
    assert result["episodes"] == 16 and result["split"] == "eval"


def test_eval_seeds_are_the_eval_stream(tmp_path):
    cfg = load_config(overrides=[f"env.id={ENV}", f"output_dir={tmp_path}", "eval.episodes=8"])
    summary, trajs = evaluate(cfg, agent=BISECT, progress=False)
    assert [t.seed for t in trajs] == episode_seeds(cfg.seed, "eval", 8)
    assert summary["success_rate"] == 1.0 and summary["heldout_note"] == NO_TASKS_NOTE
    assert not {t.seed for t in trajs} & set(episode_seeds(cfg.seed, "train", 10_000))


def test_run_episodes_without_task_ids():
    agent = lambda obs: [guess_number.bisect(o) for o in obs]  # noqa: E731
    envs = BatchedTextEnvs(ENV, 2)
    trajs = run_episodes(envs, agent, [None, "5", None], seeds=[3, 4, 3])
    assert trajs[1].task_id == "5" and trajs[0].task_id == trajs[2].task_id != ""
    assert all(t.success for t in trajs)
    # An env that reports no task id in its reset info: the episode is recorded under "".
    base = envs.envs[0].unwrapped
    plain_reset = base.reset
    base.reset = lambda seed=None, options=None: (plain_reset(seed=seed)[0], {})
    envs.envs = envs.envs[:1]
    (quiet,) = run_episodes(envs, agent, [None], seeds=[3])
    assert quiet.task_id == "" and quiet.success


def test_train_runs_archer_on_it_by_seed(cli_run):
    """archer train from the user's SFT policy: training episodes are drawn by train-stream
    seeds (no task ids) and the printout says evaluation uses seeds disjoint from them."""
    out = cli("train", "--quiet", f"env.id={ENV}", f"output_dir={cli_run / 'train'}",
              f"train.init_policy={cli_run / 'sft' / 'checkpoint' / 'policy'}",
              "model.max_context_tokens=128", "rollout.num_workers=0",
              "rollout.episodes_per_iter=8", "rollout.envs_per_worker=8",
              "train.iterations=2", "archer.warmup_iters=1", "archer.critic.updates_per_iter=2",
              "archer.critic.batch_size=8", "archer.actor.batch_size=4",
              "archer.actor.updates_per_iter=1", "deepspeed.micro_batch_size=8",
              "critic.hidden_dim=16", "eval.episodes=8", "train.tensorboard=false")
    assert NO_TASKS_NOTE in out and "after archer" in out, out
    lines = [json.loads(x) for x in (cli_run / "train" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["progress/env_episodes"] == 16.0 and lines[-1]["policy_version"] == 1.0
