"""Agents: anything that maps observations to utterances.

A spec names either a scripted agent the env provides (`env.unwrapped.make_agent(name, ...)`:
info_gain, random) or any Python callable `observation -> action` as "module:attr". A class
there is instantiated with no arguments first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from archer.errors import ArcherError
from archer.rollout.envs import provides

Agent = Callable[[str], str]


class AgentError(ArcherError, ValueError):
    """An agent spec that names no agent the env or a module provides."""


def resolve_agent(spec: str, env: gym.Env, seed: int = 0, noise: float = 0.0) -> Agent:
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise AgentError(f"agent {spec!r}: cannot import {module_name!r} ({err})") from None
        try:
            obj: Any = getattr(module, attr)
        except AttributeError:
            raise AgentError(f"agent {spec!r}: module {module_name!r} has no {attr!r}") from None
        if isinstance(obj, type):
            obj = obj()
        if not callable(obj):
            raise AgentError(f"agent {spec!r} is not callable")
        return obj
    base = env.unwrapped
    if not provides(env, "make_agent"):
        raise AgentError(
            f"env {type(base).__name__} provides no scripted agents; pass --agent module:callable"
        )
    try:
        return base.make_agent(spec, seed=seed, noise=noise)
    except (KeyError, ValueError) as err:
        raise AgentError(f"agent {spec!r}: {err}") from None


def batch_agent(agent: Agent) -> Callable[[list[str]], list[str]]:
    """Turn a one-observation agent into the batched form the rollout loop calls."""
    return lambda observations: [agent(o) for o in observations]
