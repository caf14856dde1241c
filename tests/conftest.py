import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_policy():
    """A tiny random GPT-2 policy with a tokenizer trained offline on Twenty Questions text."""
    import gymnasium as gym

    import archer_envs  # noqa: F401
    from archer.models.policy import Policy
    from archer.models.tiny import build_tiny_policy, train_tokenizer

    env = gym.make("archer/TwentyQuestionsSubset-v0").unwrapped
    tokenizer = train_tokenizer(env.corpus() * 3, vocab_size=512)
    model = build_tiny_policy(tokenizer, "tiny", max_positions=256, seed=0)
    return Policy(model, tokenizer, max_context_tokens=256)


@pytest.fixture(scope="session")
def coin_start(tmp_path_factory):
    """Tiny policies cloned from a coin-flipping agent on the one- and three-turn yes/no envs
    (tests/user_envs.py): {env name: policy directory}. Shared by the online methods' tests."""
    import user_envs  # noqa: F401

    from archer.config import load_config
    from archer.evaluation import collect
    from archer.warm_start import train_bc

    starts = {}
    for env, epochs in (("SayYes-v0", 20), ("SayYesThrice-v0", 10)):
        tmp = tmp_path_factory.mktemp(env)
        cfg = load_config(overrides=[f"env.id=user_envs:{env}",
                                     "collect.agent=user_envs:coin_agent", "collect.episodes=200",
                                     f"bc.epochs={epochs}", "model.vocab_size=300",
                                     "model.max_context_tokens=64", "generation.max_new_tokens=4",
                                     f"output_dir={tmp}"])
        collect(cfg, tmp / "d.jsonl", progress=False)
        starts[env] = train_bc(cfg, tmp / "d.jsonl", tmp / "sft", progress=False,
                               log=lambda *_: None)["policy"]
    return starts


OFFLINE_THRICE = ["env.id=user_envs:SayYesThrice-v0", "model.vocab_size=300",
                  "model.max_context_tokens=64", "generation.max_new_tokens=4",
                  "train.eval_every=0", "train.tensorboard=false", "eval.episodes=64"]
"""Settings of the offline methods' tests on SayYesThrice (tests/algorithms/test_refit.py,
test_dpo.py)."""


@pytest.fixture(scope="session")
def coin_thrice(tmp_path_factory):
    """200 coin-flip episodes of SayYesThrice (reward 1 only when all three answers are yes:
    about 1/8 of them) and BC on all of them (10 epochs from a tiny model built on the data):
    (data file, BC policy directory, BC's sampled return after). The offline methods must beat
    that BC."""
    import user_envs  # noqa: F401

    from archer import loop
    from archer.config import load_config
    from archer.evaluation import collect

    tmp = tmp_path_factory.mktemp("coin_thrice")
    cfg = load_config(overrides=["env.id=user_envs:SayYesThrice-v0",
                                 "collect.agent=user_envs:coin_agent", "collect.episodes=200",
                                 f"output_dir={tmp}"])
    collect(cfg, tmp / "d.jsonl", progress=False)
    bc = loop.run(load_config(overrides=[*OFFLINE_THRICE, "algo=bc", f"data.path={tmp / 'd.jsonl'}",
                                         f"output_dir={tmp / 'bc'}", "train.iterations=10"]),
                  progress=False, log=lambda *_: None)
    return (tmp / "d.jsonl", str(tmp / "bc" / "checkpoint" / "policy"),
            bc["after"]["eval/return_sample"])
