"""Builders that read the config and hand plain objects to the algorithms: the policy (a local
HF model, or a tiny one with a tokenizer trained on the data) and the tokenizer corpus."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from archer.models.policy import Policy
from archer.models.tiny import build_tiny_policy, train_tokenizer
from archer.rollout.envs import env_info
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config


def tokenizer_corpus(trajectories: list[Trajectory]) -> list[str]:
    """Text to train a tokenizer on: the episodes, plus whatever the env says it can produce."""
    texts = [t.final_observation or (t.turns[-1].observation if t.turns else "") for t in trajectories]
    texts += [turn.action for t in trajectories for turn in t.turns]
    return texts + _env_strings(trajectories, "corpus")


def tokenizer_atomic_terms(trajectories: list[Trajectory]) -> list[str]:
    """Strings the envs of `trajectories` want kept whole by a tokenizer (`atomic_terms()`)."""
    return _env_strings(trajectories, "atomic_terms")


def _env_strings(trajectories: list[Trajectory], method: str) -> list[str]:
    """The strings an env's optional `<method>()` lists (`EnvInfo`), over the envs of
    `trajectories`."""
    out: list[str] = []
    for env_id in sorted({t.env_id for t in trajectories}):
        out += getattr(env_info(env_id), method)
    return out


def build_policy(cfg: Config, trajectories: list[Trajectory], path: str | Path | None = None,
                 ) -> Policy:
    """The policy at `path` (or `cfg.model.path`); with neither, a tiny GPT-2 from
    `cfg.model.size` and a byte-level BPE tokenizer trained on `trajectories`."""
    path = path if path is not None else cfg.model.path
    if path is not None:
        return Policy.from_pretrained(path, cfg.device, cfg.model.max_context_tokens,
                                      reserve=cfg.generation.max_new_tokens)
    tokenizer = train_tokenizer(tokenizer_corpus(trajectories), cfg.model.vocab_size,
                                tokenizer_atomic_terms(trajectories))
    model = build_tiny_policy(tokenizer, cfg.model.size, cfg.model.max_context_tokens, cfg.seed)
    return Policy(model, tokenizer, cfg.device, cfg.model.max_context_tokens,
                  reserve=cfg.generation.max_new_tokens)
