"""Policy and critic models, and builders for tiny offline ones."""

from archer.models.policy import Policy, PolicyLoadError
from archer.models.tiny import build_tiny_policy, train_tokenizer

__all__ = ["Policy", "PolicyLoadError", "build_tiny_policy", "train_tokenizer"]
