"""The algorithm registry: `algo=NAME` -> the module that builds it.

A literal dict of dotted module paths (greppable, imported lazily): each module has a
`build(cfg, run) -> Algorithm` (the only function in it that reads the config), pure loss
functions and an object that satisfies `archer.algorithms.api.Algorithm`. Shared update steps
are in `archer.algorithms.updates`. Importing this package imports neither torch, ray nor
deepspeed (the config checks `algo` against this dict).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archer.algorithms.api import Algorithm, RunContext
    from archer.config import Config

ALGORITHMS: dict[str, str] = {
    "archer": "archer.algorithms.archer",
    "bc": "archer.algorithms.bc",
    "reinforce": "archer.algorithms.reinforce",
    "filtered_bc": "archer.algorithms.filtered_bc",
    "ppo": "archer.algorithms.ppo",
    "chai": "archer.algorithms.chai",
    "agro": "archer.algorithms.agro",
    "refit": "archer.algorithms.refit",
    "swift": "archer.algorithms.swift",
    "dpo": "archer.algorithms.dpo",
    "ilql": "archer.algorithms.ilql",
    "offline_archer": "archer.algorithms.offline_archer",
}
"""Registry key -> module. Each key has a config section of the same name."""

SUMMARIES: dict[str, str] = {
    "archer": "online, replay: utterance-level double critic + token-level actor (REINFORCE or PPO)",
    "bc": "offline: token NLL on a dataset's agent utterances (SFT; also the warm start)",
    "reinforce": "online, on-policy: trajectory-level REINFORCE / GRPO (single-turn RL, no critic)",
    "filtered_bc": "online: token NLL on the episodes at or above a return percentile so far",
    "ppo": "online, on-policy: token-level PPO with a token value model and GAE over agent tokens",
    "chai": "online, replay: ArCHer's critic over a frozen policy; acts by the best of k samples",
    "agro": "online, on- and off-policy: trajectory PG on R - beta log(pi/pi_ref), per-task baseline",
    "refit": "offline: reward-weighted fine-tuning, episode weight = return mapped into [0, 1]",
    "swift": "offline: reward-weighted fine-tuning, returns standardised per task id",
    "dpo": "offline: DPO on (higher, lower)-return episode pairs of a task id, frozen reference",
    "ilql": "offline: token Q/V heads on the policy (expectile V, CQL); value-guided decoding",
    "offline_archer": "offline: ArCHer's critic with an expectile V (IQL) + an AWR actor",
}
"""One line per algorithm for `archer algos`."""

OFFLINE: frozenset[str] = frozenset({"bc", "refit", "swift", "dpo", "ilql",
                                        "offline_archer"})
"""Algorithms that learn from `data.path` and start without a warm start (from
train.init_policy, model.path, or a tiny model trained on the data)."""

DATA_PARALLEL: frozenset[str] = frozenset({"archer", "reinforce", "ppo", "filtered_bc", "agro",
                                           "chai", "bc", "refit", "swift", "dpo",
                                           "offline_archer", "ilql"})
"""Algorithms whose steps, fresh samples and checkpoints are written for a learner group
(`cluster.learner_ranks >= 1`, `archer.distributed.learner`): every step through the shared
updates, a seed per fresh sample, and only rank 0 writing the files all ranks hold alike."""


PLUGINS_VAR = "ARCHER_PLUGINS"
"""Environment variable: comma-separated modules imported before a config is checked, each of
which registers its own algorithms with `register` (docs/algorithms.md#adding-a-method). A
variable, not a flag, so that the processes archer starts (`archer bench` runs, Ray workers)
see the same registry."""
_loaded: set[str] = set()


def register(name: str, module: str, summary: str, offline: bool = False) -> None:
    """Add an algorithm defined outside archer: `algo=name` builds `module.build(cfg, run)`.
    Its settings are `cfg.algo_kwargs` (archer has no config section for it)."""
    global OFFLINE
    if name in ALGORITHMS and ALGORITHMS[name] != module:
        raise ValueError(f"algorithm {name!r} is already registered as {ALGORITHMS[name]}")
    ALGORITHMS[name] = module
    SUMMARIES[name] = summary
    if offline:
        OFFLINE = OFFLINE | {name}


def load_plugins() -> None:
    """Import the modules named by $ARCHER_PLUGINS (once each)."""
    import os

    from archer.config.sections import ConfigError

    for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_VAR, "").split(","))):
        if name in _loaded:
            continue
        try:
            import_module(name)
        except ImportError as err:
            raise ConfigError(f"{PLUGINS_VAR}: cannot import {name!r} ({err}); is its folder on "
                              "PYTHONPATH?") from None
        _loaded.add(name)


def is_offline(cfg: Config) -> bool:
    """The run learns from `data.path` without rollouts: an OFFLINE algorithm, or AGRO with
    `agro.offline`."""
    return cfg.algo in OFFLINE or (cfg.algo == "agro" and bool(cfg.agro.offline))


def build(cfg: Config, run: RunContext) -> Algorithm:
    """The algorithm `cfg.algo`, built by its module's `build(cfg, run)`."""
    from archer.config import ConfigError

    load_plugins()
    if cfg.algo not in ALGORITHMS:
        raise ConfigError(f"unknown algo {cfg.algo!r}; registered: {sorted(ALGORITHMS)}")
    return import_module(ALGORITHMS[cfg.algo]).build(cfg, run)
