"""Structured configuration: the one place where defaults live.

A run's config is `OmegaConf.merge(Config, yaml_file, cli_overrides)`, turned back into these
dataclasses. Unknown keys and wrong types fail in the merge; impossible values (a negative
learning rate, gamma outside [0, 1], ...) fail in `Config.__post_init__`. Both raise
`ConfigError` naming the key and what is allowed, before any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key(s)."""


@dataclass
class EnvConfig:
    id: str = "archer/TwentyQuestionsSubset-v0"
    """Gymnasium env id, or "module:EnvId" for an env registered by the user's own module."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for `gymnasium.make` (e.g. {oracle: embedding})."""

    def check(self) -> list[tuple[str, str]]:
        return [("id", "must be a non-empty env id")] if not self.id.strip() else []


@dataclass
class CollectConfig:
    agent: str = "info_gain"
    """Scripted agent name known to the env (info_gain, random) or "module:callable" (obs -> action)."""
    noise: float = 0.3
    """Probability that a scripted agent asks a random question instead of its best one."""
    episodes: int = 500
    """Number of episodes to collect."""
    split: str = "train"
    """Task split to collect on: train, eval or all."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not 0.0 <= self.noise <= 1.0:
            errors.append(("noise", f"must be in [0, 1], got {self.noise}"))
        if self.episodes < 1:
            errors.append(("episodes", f"must be >= 1, got {self.episodes}"))
        errors += _choice("split", self.split, ("train", "eval", "all"))
        return errors


@dataclass
class ModelConfig:
    path: str | None = None
    """Local HF causal-LM directory to start from; null builds a tiny model from `size`."""
    size: str = "tiny"
    """Tiny GPT-2 preset used when `path` is null: tiny (~0.4M params) or small (~3M)."""
    vocab_size: int = 1024
    """Vocabulary size of the byte-level BPE tokenizer trained when `path` is null."""
    max_context_tokens: int = 512
    """Longest prompt + utterance the policy sees; longer histories are cut from the left."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("size", self.size, ("tiny", "small"))
        if self.vocab_size < 300:
            errors.append(("vocab_size", f"must be >= 300 (256 bytes + merges), got {self.vocab_size}"))
        if self.max_context_tokens < 16:
            errors.append(("max_context_tokens", f"must be >= 16, got {self.max_context_tokens}"))
        if self.path is not None and not self.path.strip():
            errors.append(("path", "must be null or a directory path"))
        return errors


@dataclass
class GenerationConfig:
    max_new_tokens: int = 32
    """Longest utterance, in tokens."""
    temperature: float = 1.0
    """Sampling temperature; 0 means greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]."""
    stop_on_newline: bool = True
    """End an utterance at the first newline as well as at the end-of-sequence token."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if self.max_new_tokens < 1:
            errors.append(("max_new_tokens", f"must be >= 1, got {self.max_new_tokens}"))
        if self.temperature < 0:
            errors.append(("temperature", f"must be >= 0 (0 = greedy), got {self.temperature}"))
        if not 0 < self.top_p <= 1:
            errors.append(("top_p", f"must be in (0, 1], got {self.top_p}"))
        return errors


@dataclass
class SFTConfig:
    lr: float = 2e-3
    """AdamW learning rate."""
    epochs: int = 10
    """Passes over the dataset."""
    batch_size: int = 32
    """Turns (prompt, utterance pairs) per optimizer step."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables clipping."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up steps, then cosine decay to 10%."""
    min_return: float | None = None
    """Keep only episodes with return >= this (filtered BC); null keeps all."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if self.epochs < 1:
            errors.append(("epochs", f"must be >= 1, got {self.epochs}"))
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        if self.weight_decay < 0:
            errors.append(("weight_decay", f"must be >= 0, got {self.weight_decay}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        if self.warmup_steps < 0:
            errors.append(("warmup_steps", f"must be >= 0, got {self.warmup_steps}"))
        return errors


@dataclass
class EvalConfig:
    episodes: int = 100
    """Episodes per evaluation (task ids of the split are cycled in order)."""
    split: str = "eval"
    """Task split: eval (held-out), train or all."""
    decoding: str = "greedy"
    """greedy, or sample (uses generation.temperature and top_p)."""
    num_envs: int = 32
    """Envs stepped together (one batched policy call per turn)."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("split", self.split, ("train", "eval", "all"))
        errors += _choice("decoding", self.decoding, ("greedy", "sample"))
        if self.episodes < 1:
            errors.append(("episodes", f"must be >= 1, got {self.episodes}"))
        if self.num_envs < 1:
            errors.append(("num_envs", f"must be >= 1, got {self.num_envs}"))
        return errors


@dataclass
class Config:
    seed: int = 0
    """Seed for python, numpy and torch RNGs and for env task sampling."""
    device: str = "cpu"
    """Torch device for the policy: cpu, cuda, cuda:N."""
    output_dir: str = "runs/quickstart"
    """Where datasets, checkpoints and metrics of a run go."""
    env: EnvConfig = field(default_factory=EnvConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        errors = []
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            errors.append(("device", f"must be cpu, cuda or cuda:N, got {self.device!r}"))
        if not self.output_dir.strip():
            errors.append(("output_dir", "must be a non-empty path"))
        for f in fields(self):
            section = getattr(self, f.name)
            if is_dataclass(section) and hasattr(section, "check"):
                errors += [(f"{f.name}.{key}", msg) for key, msg in section.check()]
        if errors:
            raise ConfigError(
                "invalid config:\n" + "\n".join(f"  {key}: {msg}" for key, msg in errors)
            )


def _choice(key: str, value: str, allowed: Sequence[str]) -> list[tuple[str, str]]:
    return [] if value in allowed else [(key, f"must be one of {list(allowed)}, got {value!r}")]


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> Config:
    """Defaults <- YAML file <- `key=value` overrides, validated; raises ConfigError."""
    base = OmegaConf.structured(Config)
    layers = []
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            layers.append(OmegaConf.load(p))
        except Exception as err:  # yaml errors come in several types
            raise ConfigError(f"config file {p} is not valid YAML: {err}") from None
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {bad}")
    layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(base, *layers)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    assert isinstance(cfg, Config)
    return cfg


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or "?"
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    if type(err).__name__ in ("ConfigKeyError", "ConfigAttributeError"):
        section = key.rsplit(".", 1)[0] if "." in key else ""
        node: Any = Config
        for part in section.split(".") if section else []:
            node = {f.name: f.type for f in fields(node)}.get(part, None)
            node = _DATACLASS_BY_NAME.get(str(node), None)
            if node is None:
                break
        allowed = sorted(f.name for f in fields(node)) if node is not None else []
        hint = f"; allowed keys{' in ' + section if section else ''}: {allowed}" if allowed else ""
        return f"unknown config key '{key}'{hint}"
    return f"invalid value for config key '{key}': {first}"


_DATACLASS_BY_NAME = {
    cls.__name__: cls
    for cls in (EnvConfig, CollectConfig, ModelConfig, GenerationConfig, SFTConfig, EvalConfig)
}


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
