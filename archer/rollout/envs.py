"""Creating environments by Gymnasium id, including a user's own `module:EnvId`."""

from __future__ import annotations

from typing import Any

import archer_envs  # noqa: F401  (registers the archer/* ids)
import gymnasium as gym


class EnvError(ValueError):
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


def env_has_heldout(env: gym.Env) -> bool:
    """Whether the env's eval split holds tasks its train split lacks (TextEnv.has_heldout;
    envs that do not say are taken to have them)."""
    return bool(getattr(env.unwrapped, "has_heldout", True))


def env_task_ids(env: gym.Env, split: str) -> list[str]:
    """Task ids of a split, for envs that expose them (every archer TextEnv does)."""
    base = env.unwrapped
    if not hasattr(base, "task_ids"):
        raise EnvError(
            f"{env.spec.id if env.spec else type(base).__name__} has no task_ids(split); "
            "subclass archer_envs.TextEnv or add task_ids() to evaluate on task splits"
        )
    ids = list(base.task_ids(split))
    if not ids:
        raise EnvError(f"split {split!r} of {type(base).__name__} is empty")
    return ids
