"""Policy and critic models, and builders for tiny offline ones."""

from archer.models.critic import (
    CriticLoadError,
    DoubleCritic,
    build_critic,
    make_target,
    polyak_update,
)
from archer.models.policy import Policy, PolicyLoadError
from archer.models.tiny import build_tiny_policy, train_tokenizer

__all__ = [
    "Policy",
    "PolicyLoadError",
    "build_tiny_policy",
    "train_tokenizer",
    "CriticLoadError",
    "DoubleCritic",
    "build_critic",
    "make_target",
    "polyak_update",
]
