from pathlib import Path

import pytest

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
    f.write_text("sft:\n  lr: 0.01\n  epochs: 3\n")
    cfg = load_config(f, ["sft.lr=0.5"])
    assert cfg.sft.lr == 0.5 and cfg.sft.epochs == 3


@pytest.mark.parametrize(
    "override, key, hint",
    [
        (["sft.lrr=1"], "sft.lrr", "allowed keys in sft"),
        (["bogus=1"], "bogus", "allowed keys"),
        (["sft.lr=-1"], "sft.lr", "must be > 0"),
        (["sft.lr=fast"], "sft.lr", "could not be converted"),
        (["eval.split=test"], "eval.split", "must be one of"),
        (["collect.noise=1.5"], "collect.noise", "[0, 1]"),
        (["generation.top_p=0"], "generation.top_p", "(0, 1]"),
        (["model.size=huge"], "model.size", "must be one of"),
        (["device=tpu"], "device", "cpu, cuda"),
        (["critic.q_input=cross"], "critic.q_input", "must be one of"),
        (["actor.samples_per_state=0"], "actor.samples_per_state", "must be >= 1"),
        (["actor.samples_per_state=1"], "actor.baseline", "samples_per_state >= 2"),
        (["actor.batch_size=16", "actor.samples_per_state=3", "deepspeed.micro_batch_size=32"],
         "deepspeed.micro_batch_size", "actor.batch_size x actor.samples_per_state (48)"),
    ],
)
def test_bad_values_name_the_key(override, key, hint):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=override)
    assert key in str(err.value) and hint in str(err.value)


def test_all_errors_reported_together():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["sft.epochs=0", "eval.episodes=0"])
    assert "sft.epochs" in str(err.value) and "eval.episodes" in str(err.value)


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["sft.lr"])


def test_direct_construction_is_validated():
    from archer.config import SFTConfig

    with pytest.raises(ConfigError, match="sft.batch_size"):
        Config(sft=SFTConfig(batch_size=0))
