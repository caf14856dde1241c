"""An algorithm registered from outside archer ($ARCHER_PLUGINS): examples/above_average_bc.py
is found by name, configured through `algo_kwargs`, trains through the loop and learns."""

import subprocess
import sys
from pathlib import Path

import pytest
import user_envs  # noqa: F401

from archer import algorithms, loop
from archer.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "examples.above_average_bc"


@pytest.fixture()
def plugin(monkeypatch):
    monkeypatch.setenv(algorithms.PLUGINS_VAR, PLUGIN)
    yield
    algorithms.ALGORITHMS.pop("above_average_bc", None)
    algorithms.SUMMARIES.pop("above_average_bc", None)
    algorithms._loaded.discard(PLUGIN)
    sys.modules.pop(PLUGIN, None)


def test_an_unknown_plugin_module_is_a_config_error(monkeypatch):
    monkeypatch.setenv(algorithms.PLUGINS_VAR, "no_such_module_here")
    with pytest.raises(ConfigError, match="ARCHER_PLUGINS: cannot import 'no_such_module_here'"):
        load_config(overrides=["algo=archer"])


def test_without_the_plugin_the_name_is_unknown():
    with pytest.raises(ConfigError, match="algo: must be one of"):
        load_config(overrides=["algo=above_average_bc"])


def test_a_plugin_algorithm_learns_through_the_loop(plugin, coin_start, tmp_path):
    over = ["algo=above_average_bc", "env.id=user_envs:SayYes-v0", f"output_dir={tmp_path}",
            f"train.init_policy={coin_start['SayYes-v0']}", "rollout.num_workers=0",
            "rollout.episodes_per_iter=16", "rollout.envs_per_worker=16",
            "generation.max_new_tokens=4", "model.max_context_tokens=64", "train.iterations=4",
            "train.eval_every=0", "eval.episodes=64", "train.tensorboard=false",
            "deepspeed.micro_batch_size=16", "algo_kwargs.lr=1e-3"]
    result = loop.run(load_config(overrides=over), progress=False, log=lambda *_: None)
    before, after = result["before"]["eval/return_sample"], result["after"]["eval/return_sample"]
    print(f"above-average BC on SayYes: sampled {before:.3f} -> {after:.3f}")
    assert after > before + 0.2
    assert all(h["above_average_bc/kept"] > 0 for h in result["history"])
    assert (tmp_path / "checkpoint" / "policy" / "config.json").is_file()


def test_archer_algos_lists_a_plugin(plugin):
    proc = subprocess.run([sys.executable, "-m", "archer.cli", "algos"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, algorithms.PLUGINS_VAR: PLUGIN})
    assert proc.returncode == 0 and "above_average_bc" in proc.stdout


def test_a_learner_group_refuses_a_plugin_by_name(plugin):
    """Every built-in method runs in a learner group; a registered one learns in the driver
    (archer cannot know that its steps split over ranks)."""
    with pytest.raises(ConfigError, match=r"a learner group runs \[.*'ilql'.*\]; "
                                          "algo=above_average_bc learns in the driver"):
        load_config(overrides=["algo=above_average_bc", "cluster.learner_ranks=2"])
