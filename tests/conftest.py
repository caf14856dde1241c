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
