"""collect -> sft -> eval end to end on a user's env (GuessNumber, tests/user_envs.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import user_envs  # noqa: F401
from archer.buffer.dataset import read_trajectories
from archer.config import load_config
from archer.evaluation import collect, evaluate
from archer.models.policy import Policy, PolicyLoadError
from archer.warm_start import train_bc

TESTS = Path(__file__).resolve().parent


def cfg_for(tmp_path, *extra):
    return load_config(overrides=[
        "env.id=user_envs:GuessNumber-v0", f"output_dir={tmp_path}", "model.max_context_tokens=128",
        "model.vocab_size=400", "eval.episodes=32", *extra,
    ])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gn")
    cfg = cfg_for(tmp, "collect.agent=user_envs:bisect_agent", "collect.episodes=200",
                  "bc.epochs=4")
    collect(cfg, tmp / "data.jsonl", progress=False)
    summary = train_bc(cfg, tmp / "data.jsonl", tmp / "sft", progress=False)
    return cfg, tmp, summary


def test_collect_with_a_user_callable(trained):
    cfg, tmp, _ = trained
    trajs = read_trajectories(tmp / "data.jsonl")
    assert len(trajs) == 200 and all(t.agent == "user_envs:bisect_agent" for t in trajs)
    assert all(t.success and t.episode_return == -3.0 for t in trajs)
    train_ids = set(user_envs.GuessNumberEnv().task_ids("train"))
    assert {t.task_id for t in trajs} == train_ids  # collected on the train split only


def test_sft_learns_the_scripted_policy(trained):
    """Learnability: BC on expert data reproduces the expert on its tasks; random does worse."""
    cfg, tmp, summary = trained
    assert summary["skipped_steps"] == 0 and summary["final_nll"] < 0.2
    policy = Policy.from_pretrained(summary["policy"], max_context_tokens=128)
    cfg.eval.split = "train"
    sft_result, _ = evaluate(cfg, policy=policy, progress=False)
    random_result, _ = evaluate(cfg, agent="random", progress=False)
    assert sft_result["success_rate"] == 1.0 and sft_result["return_mean"] == -3.0
    assert random_result["return_mean"] < sft_result["return_mean"] - 1.0


def test_checkpoint_loads_with_plain_transformers(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, summary = trained
    model = AutoModelForCausalLM.from_pretrained(summary["policy"])
    tok = AutoTokenizer.from_pretrained(summary["policy"])
    assert model.config.vocab_size == len(tok)
    assert summary["episodes"] == 200


def test_fine_tune_from_a_local_model_path(trained, tmp_path):
    """The same loading code accepts any local HF checkpoint as a starting point."""
    cfg, tmp, trained_summary = trained
    cfg2 = cfg_for(tmp_path, f"model.path={trained_summary['policy']}", "bc.epochs=1")
    summary = train_bc(cfg2, tmp / "data.jsonl", tmp_path / "ft", progress=False)
    assert summary["final_nll"] < 0.2  # starts from the trained weights, not from scratch


def test_min_return_filters_episodes(tmp_path):
    cfg = cfg_for(tmp_path, "collect.agent=random", "collect.episodes=40", "bc.epochs=1",
                  "bc.min_return=-4")
    collect(cfg, tmp_path / "d.jsonl", progress=False)
    kept = [t for t in read_trajectories(tmp_path / "d.jsonl") if t.episode_return >= -4]
    summary = train_bc(cfg, tmp_path / "d.jsonl", tmp_path / "sft", progress=False)
    assert summary["episodes"] == len(kept) < 40


def test_env_errors_are_counted_not_raised(tmp_path):
    cfg = cfg_for(tmp_path, "env.id=user_envs:BrokenGuessNumber-v0", "eval.split=train")
    result, trajs = evaluate(cfg, agent="user_envs:bisect_agent", progress=False)
    assert result["env_errors"] == 32 and result["episodes"] == 32
    assert all("simulated env bug" in t.error and t.turns[-1].truncated for t in trajs)


def empty_agent(observation):
    return ""


def huge_agent(observation):
    return "Is it " + "very " * 5000 + "big?"


@pytest.mark.parametrize("agent, counter", [("test_pipeline:empty_agent", "invalid_actions"),
                                            ("test_pipeline:huge_agent", "truncated_actions")])
def test_malformed_utterances_are_counted(tmp_path, agent, counter):
    cfg = cfg_for(tmp_path, "eval.episodes=4")
    result, _ = evaluate(cfg, agent=agent, progress=False)
    assert result[counter] == 4 * 6 and result["return_mean"] == -6.0


def test_missing_policy_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyLoadError, match="no Hugging Face checkpoint"):
        Policy.from_pretrained(tmp_path / "nothing")


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "archer.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_cli_eval_json_prints_exactly_one_object(trained):
    _, _, summary = trained
    out = run_cli("eval", "--policy", summary["policy"], "--env", "user_envs:GuessNumber-v0",
                  "--episodes", "8", "--split", "train", "--json", "model.max_context_tokens=128")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    for key in ("return_mean", "return_std", "success_rate", "turns_mean", "episodes"):
        assert key in result
    assert result["episodes"] == 8 and result["success_rate"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["eval", "--agent", "random", "--env", "archer/NoSuchEnv-v0"], "unknown env id"),
    (["eval", "--agent", "random", "--env", "no_such_module:X-v0"], "cannot import"),
    (["eval", "--agent", "no_such_agent", "--env", "user_envs:GuessNumber-v0"], "unknown agent"),
    (["eval", "--policy", "/nonexistent/dir", "--env", "user_envs:GuessNumber-v0"], "no Hugging Face checkpoint"),
    (["sft", "--data", "/nonexistent.jsonl", "--out", "x"], "dataset file not found"),
    (["sft", "--data", "/dev/null", "--out", "x", "bc.lr=-1"], "bc.lr: must be > 0"),
    (["collect", "--env", "user_envs:GuessNumber-v0", "--agent", "random", "--out", "x.jsonl",
      "--noise", "2"], "collect.noise"),
])
def test_cli_bad_input_gives_a_clear_error(tmp_path, args, message):
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr and "Traceback" not in out.stderr


def test_cli_corrupt_dataset(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"env_id": "x", "task_id": "1", "turns": []}\n{oops\n')
    out = run_cli("sft", "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "line 2: not valid JSON" in out.stderr
    assert "Traceback" not in out.stderr
