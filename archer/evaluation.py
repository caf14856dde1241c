"""Evaluation of a policy or a scripted agent on an env's task split, and dataset collection."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from archer.buffer.dataset import write_trajectories
from archer.config import Config
from archer.models.policy import Policy
from archer.rollout.agents import batch_agent, resolve_agent
from archer.rollout.batched import BatchedTextEnvs, run_episodes
from archer.rollout.envs import env_has_heldout, env_task_ids
from archer.types import Trajectory


def summarize(trajectories: list[Trajectory]) -> dict[str, Any]:
    """Return mean/std, success rate, turns, and counts of malformed utterances and env errors."""
    returns = np.array([t.episode_return for t in trajectories], dtype=float)
    turns = [turn for t in trajectories for turn in t.turns]
    return {
        "episodes": len(trajectories),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_sem": float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else 0.0,
        "success_rate": float(np.mean([t.success for t in trajectories])),
        "turns_mean": float(np.mean([t.length for t in trajectories])),
        "invalid_actions": sum(bool(t.info.get("invalid_action")) for t in turns),
        "truncated_actions": sum(bool(t.info.get("action_truncated")) for t in turns),
        "env_errors": sum(t.error is not None for t in trajectories),
    }


def cycle_tasks(task_ids: list[str], episodes: int) -> list[str]:
    return [task_ids[i % len(task_ids)] for i in range(episodes)]


def policy_agent(policy: Policy, cfg: Config, decoding: str) -> Callable[[list[str]], list[str]]:
    generator = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    temperature = 0.0 if decoding == "greedy" else cfg.generation.temperature

    def act(observations: list[str]) -> list[str]:
        return policy.generate(
            observations,
            max_new_tokens=cfg.generation.max_new_tokens,
            temperature=temperature,
            top_p=cfg.generation.top_p,
            stop_on_newline=cfg.generation.stop_on_newline,
            generator=generator,
        )

    return act


def evaluate(cfg: Config, policy: Policy | None = None, agent: str | None = None,
             progress: bool = True) -> tuple[dict[str, Any], list[Trajectory]]:
    """Play `cfg.eval.episodes` episodes on `cfg.eval.split` with a policy or a scripted agent."""
    if (policy is None) == (agent is None):
        raise ValueError("evaluate needs exactly one of policy or agent")
    envs = BatchedTextEnvs(cfg.env.id, min(cfg.eval.num_envs, cfg.eval.episodes), cfg.env.kwargs)
    try:
        tasks = cycle_tasks(env_task_ids(envs.envs[0], cfg.eval.split), cfg.eval.episodes)
        if policy is not None:
            act, name = policy_agent(policy, cfg, cfg.eval.decoding), "policy"
        else:
            assert agent is not None
            act = batch_agent(resolve_agent(agent, envs.envs[0], seed=cfg.seed))
            name = agent
        # Eval episodes use seeds disjoint from collection seeds (which start at cfg.seed).
        trajectories = run_episodes(envs, act, tasks, seed=cfg.seed + 1_000_000,
                                    agent_name=name, progress=progress)
    finally:
        envs.close()
    summary = summarize(trajectories)
    summary.update({"env": cfg.env.id, "split": cfg.eval.split,
                    "decoding": cfg.eval.decoding if policy is not None else "scripted",
                    "heldout": env_has_heldout(envs.envs[0])})
    return summary, trajectories


def collect(cfg: Config, out: str | os.PathLike[str], progress: bool = True) -> dict[str, Any]:
    """Collect `cfg.collect.episodes` episodes of a scripted agent (or any callable) to `out`.

    Task ids are drawn uniformly (seeded) from `cfg.collect.split`.
    """
    n_envs = min(32, cfg.collect.episodes)
    envs = BatchedTextEnvs(cfg.env.id, n_envs, cfg.env.kwargs)
    try:
        pool = env_task_ids(envs.envs[0], cfg.collect.split)
        rng = np.random.default_rng(cfg.seed)
        tasks = [pool[int(i)] for i in rng.integers(len(pool), size=cfg.collect.episodes)]
        agent = resolve_agent(cfg.collect.agent, envs.envs[0], seed=cfg.seed, noise=cfg.collect.noise)
        trajectories = run_episodes(envs, batch_agent(agent), tasks, seed=cfg.seed,
                                    agent_name=cfg.collect.agent, progress=progress)
    finally:
        envs.close()
    write_trajectories(trajectories, out)
    return summarize(trajectories)
