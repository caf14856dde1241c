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
