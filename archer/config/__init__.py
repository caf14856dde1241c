"""Structured configuration: the one place where defaults live.

A run's config is `OmegaConf.merge(Config, yaml_file, cli_overrides)`, turned back into these
dataclasses. Unknown keys and wrong types fail in the merge; keys that moved in a release fail
with the key's new name; impossible values (a negative learning rate, gamma outside [0, 1], ...)
fail in `Config.__post_init__`. All raise `ConfigError` naming the key and what is allowed,
before any work starts.

`algo` picks the algorithm; every algorithm has its own section, named as its registry key
(`archer`, `bc`), and all sections are always present.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from archer.config.algos import (
    AgroConfig,
    ArcherConfig,
    BCConfig,
    ChaiConfig,
    DPOConfig,
    FilteredBCConfig,
    ILQLConfig,
    OfflineArcherConfig,
    PGActorConfig,
    RefitConfig,
    ReinforceConfig,
    SwiftConfig,
    TDCriticConfig,
    TokenPPOConfig,
)
from archer.config.sections import (
    Q_INPUTS,
    BufferConfig,
    ClusterConfig,
    CollectConfig,
    ConfigError,
    CriticConfig,
    DataConfig,
    DeepSpeedConfig,
    EnvConfig,
    EvalConfig,
    GenerationConfig,
    ModelConfig,
    RolloutConfig,
    TrainConfig,
)

__all__ = [
    "MOVED", "Q_INPUTS", "AgroConfig", "ArcherConfig", "BCConfig", "ChaiConfig", "BufferConfig", "ClusterConfig", "CollectConfig", "Config",
    "ConfigError", "CriticConfig", "DPOConfig", "ILQLConfig", "OfflineArcherConfig", "DataConfig", "DeepSpeedConfig", "EnvConfig", "EvalConfig",
    "FilteredBCConfig", "GenerationConfig", "ModelConfig", "PGActorConfig", "RefitConfig",
    "ReinforceConfig", "RolloutConfig", "SwiftConfig", "TDCriticConfig", "TokenPPOConfig",
    "TrainConfig", "load_config", "to_yaml",
]


@dataclass
class Config:
    algo: str = "archer"
    """The algorithm (`archer algos` lists them); its section below is the one read."""
    seed: int = 0
    """Seed for python, numpy and torch RNGs, task sampling and every episode seed."""
    device: str = "cpu"
    """Torch device for the policy: cpu, cuda, cuda:N."""
    output_dir: str = "runs/quickstart"
    """Where datasets, checkpoints and metrics of a run go."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The environment every command plays."""
    collect: CollectConfig = field(default_factory=CollectConfig)
    """Scripted episodes: the warm start's data and `archer collect` (not the policy's
    rollouts, which are `rollout`)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model (a local HF causal LM, or a tiny one built from config)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """How the policy samples utterances (acting, rollouts, fresh samples)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """`archer eval` and the evaluations before and after a run (`train.eval_episodes` sizes
    the periodic ones)."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """The policy's training episodes: how many per iteration, on which workers."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """Where the learner runs: in the driver, or as a group of DeepSpeed ranks on Ray."""
    buffer: BufferConfig = field(default_factory=BufferConfig)
    """The episode store of a replay algorithm."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """The critic model (its training settings are in the algorithm's section)."""
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    """The policy's training engine."""
    data: DataConfig = field(default_factory=DataConfig)
    """The dataset of an offline algorithm."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The loop: iterations, evaluation, checkpoints, the starting policy."""
    archer: ArcherConfig = field(default_factory=ArcherConfig)
    """algo=archer: ArCHer's critic and actor schedule."""
    bc: BCConfig = field(default_factory=BCConfig)
    """algo=bc, and the warm start of every online run."""
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    """algo=reinforce: trajectory-level REINFORCE / GRPO."""
    filtered_bc: FilteredBCConfig = field(default_factory=FilteredBCConfig)
    """algo=filtered_bc: NLL on the best episodes so far."""
    ppo: TokenPPOConfig = field(default_factory=TokenPPOConfig)
    """algo=ppo: token-level PPO (the single-turn RL baseline of the ArCHer paper)."""
    chai: ChaiConfig = field(default_factory=ChaiConfig)
    """algo=chai: ArCHer's critic over a frozen policy, acting by reranking k samples."""
    agro: AgroConfig = field(default_factory=AgroConfig)
    """algo=agro: any-generation reward optimisation (on-policy plus replayed episodes)."""
    refit: RefitConfig = field(default_factory=RefitConfig)
    """algo=refit: offline reward-weighted fine-tuning, weights in [0, 1]."""
    swift: SwiftConfig = field(default_factory=SwiftConfig)
    """algo=swift: offline reward-weighted fine-tuning, weights standardised per task id."""
    dpo: DPOConfig = field(default_factory=DPOConfig)
    """algo=dpo: offline preference optimisation on (higher, lower)-return episode pairs."""
    ilql: ILQLConfig = field(default_factory=ILQLConfig)
    """algo=ilql: offline implicit language Q-learning, acting by value-guided decoding."""
    offline_archer: OfflineArcherConfig = field(default_factory=OfflineArcherConfig)
    """algo=offline_archer: ArCHer's critic with an expectile V, and an AWR actor, on a dataset."""
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    """Settings of an algorithm registered outside archer ($ARCHER_PLUGINS), which has no
    section of its own: it reads them from here (e.g. algo_kwargs.lr=1e-4)."""

    def __post_init__(self) -> None:
        errors = []
        from archer.algorithms import ALGORITHMS, DATA_PARALLEL, is_offline, load_plugins

        load_plugins()
        if self.algo not in ALGORITHMS:
            errors.append(("algo", f"must be one of {sorted(ALGORITHMS)}, got {self.algo!r}"))
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            errors.append(("device", f"must be cpu, cuda or cuda:N, got {self.device!r}"))
        if not self.output_dir.strip():
            errors.append(("output_dir", "must be a non-empty path"))
        for f in fields(self):
            section = getattr(self, f.name)
            if is_dataclass(section) and hasattr(section, "check"):
                errors += [(f"{f.name}.{key}", msg) for key, msg in section.check()]
        if (self.device.startswith("cuda") and self.rollout.num_workers > 0
                and self.rollout.num_gpus_per_worker == 0):
            errors.append(("rollout.num_gpus_per_worker", "must be > 0 with device=cuda and Ray "
                           "rollout workers (e.g. 0.5 puts two workers on one GPU), or set "
                           "rollout.num_workers=0"))
        if self.rollout.backend == "vllm":
            if self.generation.top_p != 1.0:
                errors.append(("generation.top_p", "must be 1 with rollout.backend=vllm (its "
                               "log-probs are renormalised over the nucleus, the learner's are "
                               f"not), got {self.generation.top_p}"))
            if not self.device.startswith("cuda"):
                errors.append(("rollout.backend", "vllm needs device=cuda and "
                               "rollout.num_gpus_per_worker > 0 (vllm_fake is its CPU double)"))
        if self.algo == "archer":
            errors += self._check_archer()
        if self.cluster.learner_ranks >= 1:
            errors += self._check_learner_group(DATA_PARALLEL)
        if (self.algo == "reinforce" and self.reinforce.baseline in ("group", "loo")
                and self.rollout.group_size < 2):
            errors.append(("rollout.group_size", f"must be >= 2 for reinforce.baseline="
                           f"{self.reinforce.baseline} (a group of one has no baseline: "
                           "play each task id k times per iteration, or use baseline=running)"))
        if self.algo in ("reinforce", "agro") and (  # their steps take whole task groups
                self.rollout.episodes_per_iter // self.rollout.group_size
                < getattr(self, self.algo).minibatches):
            errors.append((f"{self.algo}.minibatches", "must be <= the groups per iteration "
                           "(rollout.episodes_per_iter / rollout.group_size), got "
                           f"{getattr(self, self.algo).minibatches}"))
        if self.algo == "chai" and self.chai.critic.batch_size > self.buffer.capacity:
            errors.append(("chai.critic.batch_size", f"must be <= buffer.capacity "
                           f"({self.buffer.capacity}), got {self.chai.critic.batch_size}"))
        if self.algo == "dpo" and self.train.init_policy is None and self.model.path is None:
            errors.append(("train.init_policy", "algo=dpo starts from a policy, its frozen "
                           "reference: set train.init_policy (e.g. the SFT of the same data, "
                           "`archer sft`) or model.path"))
        if self.algo == "agro" and self.agro.offline and self.train.init_policy is None:
            errors.append(("train.init_policy", "agro.offline=true starts from a policy, its "
                           "frozen reference: set train.init_policy (e.g. `archer sft` of the "
                           "same data)"))
        if self.algo in ALGORITHMS and is_offline(self) and self.data.path is None:
            errors.append(("data.path", f"algo={self.algo} learns offline from a dataset: set "
                                        "data.path=FILE (written by `archer collect`)"))
        if errors:
            raise ConfigError(
                "invalid config:\n" + "\n".join(f"  {key}: {msg}" for key, msg in errors)
            )

    def _check_learner_group(self, supported: frozenset[str]) -> list[tuple[str, str]]:
        n, errors = self.cluster.learner_ranks, []
        if self.algo not in supported:
            errors.append(("cluster.learner_ranks", f"a learner group runs {sorted(supported)}"
                           f"; algo={self.algo} learns in the driver (an algorithm registered "
                           "outside archer may not split its steps over ranks): use "
                           "cluster.learner_ranks=0"))
        if not self.deepspeed.enabled and self.algo != "chai":  # chai trains no policy
            errors.append(("deepspeed.enabled", "a learner group needs the DeepSpeed engine "
                           "(its gradients are all-reduced across ranks)"))
        if self.algo in ("reinforce", "ppo", "agro") and getattr(self, self.algo).micro_batches % n:
            errors.append(("cluster.learner_ranks", f"must divide {self.algo}.micro_batches (the "
                           f"micro-batches of one step, {getattr(self, self.algo).micro_batches}"
                           f"), got {n}"))
        # a step's rows (dpo: pairs, ilql: episodes), cut into deepspeed.micro_batch_size parts
        step = {a: (f"{a}.batch_size", getattr(self, a).batch_size)
                for a in ("filtered_bc", "bc", "refit", "swift", "dpo", "ilql")}
        step["offline_archer"] = ("offline_archer.actor.batch_size",
                                  self.offline_archer.actor.batch_size)
        if self.algo in step:
            key, rows = step[self.algo]
            micro = self.deepspeed.micro_batch_size
            if rows % micro or (rows // micro) % n:
                errors.append(("cluster.learner_ranks", f"must divide the micro-batches of one "
                               f"step ({key} / deepspeed.micro_batch_size = {rows} / {micro}, "
                               f"whole), got {n}"))
        if self.algo == "archer":
            a = self.archer
            micro = self.deepspeed.micro_batch_size
            rows = a.actor.rows_per_step
            if rows % micro == 0 and (rows // micro) % n:  # else _check_archer names micro
                errors.append(("cluster.learner_ranks", f"must divide the micro-batches of one "
                               f"actor step ({rows // micro}), "
                               f"got {n}"))
        if (self.algo in ("bc", "refit", "swift", "offline_archer", "ilql")
                and not (self.train.init_policy or self.model.path)):
            errors.append(("train.init_policy", f"algo={self.algo} in a learner group starts "
                           "from a saved policy, which the driver loads too: set "
                           "train.init_policy or model.path (e.g. `archer sft` of the data)"))
        if self.algo in ("archer", "chai", "offline_archer"):
            c = getattr(self, self.algo).critic
            parts = -(-c.batch_size // c.micro_batch_size)
            if parts % n:
                errors.append(("cluster.learner_ranks", f"must divide the micro-batches of one "
                               f"critic step ({self.algo}.critic.batch_size / micro_batch_size "
                               f"= {parts}), got {n}"))
        return errors

    def _check_archer(self) -> list[tuple[str, str]]:
        a, errors = self.archer, []
        if a.fresh_samples == "rollout" and self.rollout.num_workers == 0:
            errors.append(("archer.fresh_samples", "rollout samples on the Ray rollout "
                           "workers: set rollout.num_workers >= 1, or use learner"))
        for key, value in (("critic.batch_size", a.critic.batch_size),
                           ("actor.batch_size", a.actor.batch_size)):
            if value > self.buffer.capacity:
                errors.append((f"archer.{key}", f"must be <= buffer.capacity "
                               f"({self.buffer.capacity}), got {value}"))
        rows = a.actor.rows_per_step
        if a.actor.utterances_per_update % a.actor.steps_per_pass == 0 and (
                rows % self.deepspeed.micro_batch_size):
            what = "archer.actor.batch_size x archer.actor.samples_per_state"
            if a.actor.steps_per_pass > 1:
                what += " / archer.actor.minibatches"
            errors.append(("deepspeed.micro_batch_size", f"must divide the rows of one actor "
                           f"step, {what} ({rows}), got {self.deepspeed.micro_batch_size}"))
        return errors


MOVED: dict[str, str] = {
    "actor.warmup_iters": "archer.warmup_iters",
    "actor.*": "archer.actor.*",
    **{f"critic.{k}": f"archer.critic.{k}" for k in (
        "lr", "gamma", "tau", "batch_size", "updates_per_iter", "grad_clip", "min_q_for_v")},
    "sft.*": "bc.*",
}
"""Keys that moved when the config gained one section per algorithm: old -> new. A config that
still uses an old key fails with the new name."""


def _moved(key: str) -> str | None:
    if key in MOVED:
        return MOVED[key]
    head, _, rest = key.partition(".")
    if f"{head}.*" in MOVED and rest:
        return MOVED[f"{head}.*"].replace("*", rest)
    return None


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1]


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
    moved = sorted({(k, new) for layer in layers
                    for k in _leaves(OmegaConf.to_container(layer))
                    if (new := _moved(k)) is not None})
    if moved:
        raise ConfigError("config keys that moved (one section per algorithm now):\n" + "\n".join(
            f"  unknown config key '{old}': it moved to '{new}'" for old, new in moved))
    try:
        merged = OmegaConf.merge(base, *layers)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    assert isinstance(cfg, Config)
    return cfg


def _section_types(cls: type) -> dict[str, type]:
    """Field name -> dataclass type, for the dataclass fields of `cls`."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if is_dataclass(hints.get(f.name))}


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or "?"
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    if type(err).__name__ in ("ConfigKeyError", "ConfigAttributeError"):
        section = key.rsplit(".", 1)[0] if "." in key else ""
        node: Any = Config
        for part in section.split(".") if section else []:
            node = _section_types(node).get(part)
            if node is None:
                break
        allowed = sorted(f.name for f in fields(node)) if node is not None else []
        hint = f"; allowed keys{' in ' + section if section else ''}: {allowed}" if allowed else ""
        return f"unknown config key '{key}'{hint}"
    return f"invalid value for config key '{key}': {first}"


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
