"""Creating environments by Gymnasium id, including a user's own `module:EnvId`, and
`env_info`: what archer learns about an env from its optional methods.

The required contract is Gymnasium's with text: `reset(seed=..., options=...) -> (str, dict)`
and `step(str) -> (str, float, bool, bool, dict)`. Everything else is optional, and is read
here and nowhere else (`OPTIONAL_METHODS` lists it, `docs/environments.md` says what each
one is used for). An env without `task_ids(split)` is played by seed alone: `EnvInfo.tasks`
is None and episodes are reset without a task id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from archer_envs import TextEnv  # importing archer_envs registers the archer/* ids

from archer.errors import ArcherError


class EnvError(ArcherError, ValueError):
    """An env id that cannot be made, or an env that breaks the text-env contract."""


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """`gymnasium.make` with a clear error for unknown ids.

    "my_module:MyEnv-v0" imports `my_module` first (Gymnasium's own convention), so a user's
    env registered there needs nothing from archer.
    """
    try:
        return gym.make(env_id, disable_env_checker=True, **kwargs)
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound,
            gym.error.UnregisteredEnv) as err:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("archer/")))
        raise EnvError(f"unknown env id {env_id!r} ({err}). archer envs: {known}; "
                       "your own env: 'your_module:YourEnv-v0' after gymnasium.register") from None
    except ModuleNotFoundError as err:
        raise EnvError(f"cannot import the module of env {env_id!r}: {err}") from None
    except TypeError as err:
        raise EnvError(f"bad keyword arguments for env {env_id!r}: {err}") from None


SPLITS = ("train", "eval", "all")

OPTIONAL_METHODS = {
    "task_ids(split)": "episodes are drawn by seed; evaluation uses seeds disjoint from "
                       "training's",
    "has_heldout": "held-out tasks inferred from the splits (eval disjoint from train)",
    "corpus()": "a new tokenizer is trained on the collected episodes alone",
    "atomic_terms()": "no strings are kept whole by a new tokenizer",
    "make_agent(name, seed, noise)": "no scripted agents: pass --agent module:callable",
    "max_turns": "the checker cannot test a turn limit; an episode that never ends is cut "
                 "at 1000 turns",
}
"""Optional env method -> what archer does without it (the note `env_info` gives)."""

NO_TASKS_NOTE = "this env has no task ids: evaluation uses seeds disjoint from training's"
NO_HELDOUT_NOTE = "this env has no held-out tasks: eval = train tasks, new seeds"
HELDOUT_NOTE = "eval tasks are held out from training"


@dataclass(frozen=True)
class EnvInfo:
    """What archer knows about an env beyond the Gymnasium contract (see `env_info`)."""

    env_id: str
    train_tasks: list[str] | None
    """Task ids of the "train" split; None when the env has no `task_ids(split)`."""
    eval_tasks: list[str] | None
    all_tasks: list[str] | None
    has_heldout: bool
    """The eval split holds tasks the train split lacks (False without task ids)."""
    corpus: list[str] = field(default_factory=list)
    """Text the env can produce or expect (`corpus()`), for training a tokenizer offline."""
    atomic_terms: list[str] = field(default_factory=list)
    """Strings a new tokenizer keeps whole (`atomic_terms()`)."""
    has_agents: bool = False
    """The env provides scripted agents (`make_agent(name, seed, noise)`)."""
    notes: list[str] = field(default_factory=list)
    """One line per optional method the env lacks: what archer does instead."""

    @property
    def has_task_ids(self) -> bool:
        return self.all_tasks is not None

    def tasks(self, split: str) -> list[str] | None:
        """Task ids of `split` ("train", "eval" or "all"), or None for an env without them."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        tasks = {"train": self.train_tasks, "eval": self.eval_tasks, "all": self.all_tasks}[split]
        return None if tasks is None else list(tasks)

    def heldout_note(self, split: str = "eval") -> str:
        """One line saying what evaluating on `split` measures."""
        if not self.has_task_ids:
            return NO_TASKS_NOTE
        if not self.has_heldout:
            return NO_HELDOUT_NOTE
        if split != "eval":
            return f"split {split!r} holds training tasks: new seeds only"
        return HELDOUT_NOTE


def env_info(env_id: str, kwargs: dict[str, Any] | None = None,
             env: gym.Env | None = None) -> EnvInfo:
    """Read the optional methods of one instance of `env_id` (`env`, or a new one).

    Raises EnvError for an env whose `task_ids` gives an empty train or eval split.
    """
    own = env is None
    env = make_env(env_id, **(kwargs or {})) if env is None else env
    try:
        return _describe(env_id, env.unwrapped)
    finally:
        if own:
            env.close()


def _describe(env_id: str, base: Any) -> EnvInfo:
    tasks = _provides(base, "task_ids(split)")
    notes = [f"no {name}: {effect}" for name, effect in OPTIONAL_METHODS.items()
             if not _provides(base, name) and (tasks or name != "has_heldout")]
    train = evl = every = None
    if tasks:
        train, evl = _split(base, env_id, "train"), _split(base, env_id, "eval")
        try:
            every = [str(t) for t in base.task_ids("all")]
        except ValueError:  # an env with train and eval splits only
            every = list(dict.fromkeys(train + evl))
    if train is None or evl is None:
        heldout = False
    elif _provides(base, "has_heldout"):
        heldout = bool(base.has_heldout)
    else:
        heldout = not set(train) & set(evl)
    return EnvInfo(
        env_id=env_id, train_tasks=train, eval_tasks=evl, all_tasks=every, has_heldout=heldout,
        corpus=[str(s) for s in base.corpus()] if _provides(base, "corpus()") else [],
        atomic_terms=([str(s) for s in base.atomic_terms()]
                      if _provides(base, "atomic_terms()") else []),
        has_agents=_provides(base, "make_agent(name, seed, noise)"), notes=notes,
    )


def provides(env: gym.Env, method: str) -> bool:
    """Whether `env` has the optional `method` ("corpus" or "corpus()"): it has an attribute
    of that name that is not TextEnv's "not provided" default."""
    return _provides(env.unwrapped, method)


def _provides(base: Any, method: str) -> bool:
    name = method.partition("(")[0]
    if not hasattr(base, name):
        return False
    if name not in _TEXTENV_DEFAULTS:
        return True
    return getattr(type(base), name, None) is not getattr(TextEnv, name)


_TEXTENV_DEFAULTS = ("corpus", "atomic_terms", "make_agent")
"""Methods TextEnv declares with a "not provided" default."""


def _split(base: Any, env_id: str, split: str) -> list[str]:
    ids = [str(t) for t in base.task_ids(split)]
    if not ids:
        raise EnvError(f"split {split!r} of {env_id} is empty: task_ids({split!r}) returned "
                       "no task ids")
    return ids
