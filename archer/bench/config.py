"""The benchmark's own config: which env, which methods, which seeds, the budget, the marks.

A bench YAML (`configs/bench/*.yaml`) is validated like a training config: unknown keys and bad
values fail before any work starts, naming the key. Each method's training config is an ordinary
`archer train` config (a YAML of overrides plus `key=value` pairs); the bench adds the shared
start, the seed, the budget and the evaluation marks to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archer.config.sections import ConfigError, EnvConfig


@dataclass
class MethodSpec:
    name: str = ""
    """The method's label in tables and plots, and its folder under the output dir."""
    algo: str | None = None
    """Registry key (`archer algos`); null: the name. A method registered by the user's own
    code is named here once it is in the registry (docs/benchmark.md)."""
    config: str | None = None
    """An `archer train --config` YAML whose settings the method uses (e.g. its tuned section)."""
    overrides: list[str] = field(default_factory=list)
    """`key=value` training overrides after the config file."""
    data: str | None = None
    """Offline methods: the dataset (default: the start's scripted data). They do not collect:
    each appears as a reference line at its dataset size, not as a curve."""


@dataclass
class StartSpec:
    """The one starting checkpoint every run begins from, built once and cached."""

    init_policy: str | None = None
    """A policy directory to start from; null builds one: `episodes` episodes of the scripted
    `agent` at `noise`, then `epochs` epochs of BC (the warm start of `archer train`)."""
    agent: str = "info_gain"
    """Scripted agent of the start's data (one the env knows, or module:callable)."""
    noise: float = 0.5
    """The agent's noise: a weaker start leaves room to improve."""
    episodes: int = 100
    """Scripted episodes the start is cloned from."""
    epochs: int = 2
    """BC epochs on them."""
    seed: int = 0
    """Seed of the start's data and BC (one start for every seed of every method)."""
    expert: str | None = "info_gain"
    """Scripted agent evaluated at noise 0 as the expert reference line (null: none)."""
    random: str | None = "random"
    """Scripted agent evaluated as the random reference line (null: none)."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not 0.0 <= self.noise <= 1.0:
            errors.append(("start.noise", f"must be in [0, 1], got {self.noise}"))
        for key in ("episodes", "epochs"):
            if getattr(self, key) < 1:
                errors.append((f"start.{key}", f"must be >= 1, got {getattr(self, key)}"))
        if self.init_policy is not None and not (Path(self.init_policy) / "config.json").is_file():
            errors.append(("start.init_policy", f"{self.init_policy} is not a policy directory "
                                                "(no config.json)"))
        return errors


@dataclass
class BenchConfig:
    name: str = "bench"
    """The benchmark's name: the default output folder is runs/bench/<name>."""
    output_dir: str | None = None
    """Where runs, results and the report go; null: runs/bench/<name>."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The env every run plays (a registered id, or module:Id for a user's own)."""
    methods: list[MethodSpec] = field(default_factory=list)
    """The methods compared, each a name, an algo and its training settings."""
    only: list[str] = field(default_factory=list)
    """Run (and report) only these method names (empty: all); e.g. only=[archer,ppo]."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Training seeds; every method runs every seed."""
    budget_episodes: int = 320
    """Environment episodes each online run may use (its iterations: budget / episodes per
    iteration, which must divide it)."""
    eval_every_episodes: int = 64
    """Held-out evaluation every this many episodes, the same marks for every method (each
    method's episodes per iteration must divide it), plus one before training."""
    eval_episodes: int = 50
    """Greedy and sampled evaluation episodes at each mark."""
    metric: str = "sample"
    """Which evaluation the summary and thresholds read: sample or greedy decoding."""
    thresholds: list[float] = field(default_factory=list)
    """Returns whose first crossing (an evaluation mark at or above) is reported per run as
    episodes-to-threshold."""
    baseline: str | None = None
    """Method whose episodes-to-threshold the others are divided by (ratio = method / baseline)."""
    common: list[str] = field(default_factory=list)
    """`key=value` overrides for every run and the start (e.g. rollout.num_workers=0)."""
    start: StartSpec = field(default_factory=StartSpec)
    """The shared starting checkpoint."""
    launcher: str = "ray"
    """ray: each run is a Ray task reserving `cpus_per_run` CPUs (on a cluster, on any node that
    sees output_dir); local: subprocesses on this machine."""
    parallel: int = 1
    """Runs at once (local launcher; under ray, the CPUs given to a local Ray are parallel x
    cpus_per_run)."""
    cpus_per_run: int = 1
    """CPUs reserved per run (and OMP_NUM_THREADS of its process)."""
    bootstrap: int = 2000
    """Bootstrap resamples (over seeds) of the episodes-to-threshold intervals."""

    def out(self) -> Path:
        return Path(self.output_dir or f"runs/bench/{self.name}")

    def selected(self) -> list[MethodSpec]:
        return [m for m in self.methods if not self.only or m.name in self.only]

    def check(self) -> list[tuple[str, str]]:
        errors = [(f"env.{k}", m) for k, m in self.env.check()]
        errors += self.start.check()
        names = [m.name for m in self.methods]
        if not self.methods:
            errors.append(("methods", "must list at least one method"))
        for i, m in enumerate(self.methods):
            if not m.name or "/" in m.name or m.name.startswith("."):
                errors.append((f"methods[{i}].name", f"must be a folder name, got {m.name!r}"))
            if m.config is not None and not Path(m.config).is_file():
                errors.append((f"methods[{i}].config", f"no such file: {m.config}"))
        if len(set(names)) != len(names):
            errors.append(("methods", f"names must be unique, got {names}"))
        for name in self.only:
            if name not in names:
                errors.append(("only", f"{name!r} is not a method of this bench ({names})"))
        if self.baseline is not None and self.baseline not in names:
            errors.append(("baseline", f"{self.baseline!r} is not a method of this bench ({names})"))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            errors.append(("seeds", f"must be distinct seeds, at least one, got {self.seeds}"))
        for key in ("budget_episodes", "eval_every_episodes", "eval_episodes", "parallel",
                    "cpus_per_run", "bootstrap"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.eval_every_episodes > self.budget_episodes:
            errors.append(("eval_every_episodes", f"must be <= budget_episodes "
                                                  f"({self.budget_episodes})"))
        if self.metric not in ("sample", "greedy"):
            errors.append(("metric", f"must be sample or greedy, got {self.metric!r}"))
        if self.launcher not in ("ray", "local"):
            errors.append(("launcher", f"must be ray or local, got {self.launcher!r}"))
        return errors


def load_bench(path: str | Path | None, overrides: list[str] | None = None) -> BenchConfig:
    """Defaults <- the YAML at `path` <- `key=value` overrides, validated."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged: Any = OmegaConf.structured(BenchConfig)
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"bench config {path}: no such file")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        cfg: BenchConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid bench config{f' {path}' if path else ''}: "
                          f"{str(err).splitlines()[0]}") from None
    errors = cfg.check()
    if errors:
        raise ConfigError("invalid bench config:\n" + "\n".join(f"  {k}: {m}" for k, m in errors))
    for m in cfg.methods:
        m.algo = m.algo or m.name
    return cfg
