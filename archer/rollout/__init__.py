"""Rollouts: env creation, agents, and the batched turn loop."""

from archer.rollout.batched import BatchedTextEnvs, run_episodes
from archer.rollout.envs import EnvError, make_env

__all__ = ["BatchedTextEnvs", "EnvError", "make_env", "run_episodes"]
