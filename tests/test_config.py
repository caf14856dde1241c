from pathlib import Path

import pytest

from archer.algorithms import ALGORITHMS
from archer.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_valid():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.env.id == "archer/TwentyQuestionsSubset-v0"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_yaml_then_cli_override_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("bc:\n  lr: 0.01\n  epochs: 3\n")
    cfg = load_config(f, ["bc.lr=0.5"])
    assert cfg.bc.lr == 0.5 and cfg.bc.epochs == 3


@pytest.mark.parametrize(
    "override, key, hint",
    [
        (["bc.lrr=1"], "bc.lrr", "allowed keys in bc"),
        (["archer.actor.lrr=1"], "archer.actor.lrr", "allowed keys in archer.actor"),
        (["bogus=1"], "bogus", "allowed keys"),
        (["bc.lr=-1"], "bc.lr", "must be > 0"),
        (["bc.lr=fast"], "bc.lr", "could not be converted"),
        (["algo=nope"], "algo", f"must be one of {sorted(ALGORITHMS)}, got 'nope'"),
        (["algo=bc"], "data.path", "set data.path=FILE"),
        (["eval.split=test"], "eval.split", "must be one of"),
        (["collect.noise=1.5"], "collect.noise", "[0, 1]"),
        (["generation.top_p=0"], "generation.top_p", "(0, 1]"),
        (["model.size=huge"], "model.size", "must be one of"),
        (["device=tpu"], "device", "cpu, cuda"),
        (["critic.q_input=cross"], "critic.q_input", "must be one of"),
        (["archer.actor.samples_per_state=0"], "archer.actor.samples_per_state", "must be >= 1"),
        (["archer.actor.samples_per_state=1"], "archer.actor.baseline", "samples_per_state >= 2"),
        (["archer.actor.batch_size=16", "archer.actor.samples_per_state=3",
          "deepspeed.micro_batch_size=32"], "deepspeed.micro_batch_size",
         "archer.actor.batch_size x archer.actor.samples_per_state (48)"),
        (["archer.actor.loss=ppo", "archer.actor.minibatches=4", "deepspeed.micro_batch_size=32"],
         "deepspeed.micro_batch_size", "/ archer.actor.minibatches (16)"),
        (["device=cuda"], "rollout.num_gpus_per_worker", "must be > 0 with device=cuda"),
    ],
)
def test_bad_values_name_the_key(override, key, hint):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=override)
    assert key in str(err.value) and hint in str(err.value)


def test_all_errors_reported_together():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["bc.epochs=0", "eval.episodes=0"])
    assert "bc.epochs" in str(err.value) and "eval.episodes" in str(err.value)


@pytest.mark.parametrize("old, new", [
    ("actor.lr", "archer.actor.lr"), ("actor.warmup_iters", "archer.warmup_iters"),
    ("critic.gamma", "archer.critic.gamma"), ("sft.epochs", "bc.epochs"),
])
def test_moved_keys_name_their_new_place(old, new, tmp_path):
    with pytest.raises(ConfigError, match=f"'{old}': it moved to '{new}'"):
        load_config(overrides=[f"{old}=1"])
    f = tmp_path / "old.yaml"
    section, key = old.split(".")
    f.write_text(f"{section}:\n  {key}: 1\n")
    with pytest.raises(ConfigError, match=f"it moved to '{new}'"):
        load_config(f)


def test_config_show_prints_the_resolved_config(capsys):
    from archer.cli import main

    assert main(["config", "show", "algo=bc", "data.path=d.jsonl", "bc.lr=0.5"]) == 0
    out = capsys.readouterr().out
    assert "algo=bc: only the 'bc' algorithm section is read" in out
    assert "lr: 0.5" in out and "archer:" in out and "warmup_iters: 3" in out


def test_algos_lists_the_registry(capsys):
    from archer.algorithms import ALGORITHMS
    from archer.cli import main

    assert main(["algos"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(ALGORITHMS)


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("bc: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["bc.lr"])


def test_direct_construction_is_validated():
    from archer.config import BCConfig

    with pytest.raises(ConfigError, match="bc.batch_size"):
        Config(bc=BCConfig(batch_size=0))
