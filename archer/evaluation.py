"""Evaluation of a policy or a scripted agent on an env's task split (or, for an env without
task ids, on evaluation seeds), and dataset collection."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from archer.buffer.dataset import write_trajectories
from archer.config import Config
from archer.models.policy import Policy, Sampling
from archer.rollout.agents import batch_agent, resolve_agent
from archer.rollout.batched import BatchedTextEnvs, run_episodes
from archer.rollout.collector import ActingRule, act_utterances, is_guide
from archer.rollout.envs import env_info
from archer.rollout.seeds import episode_seeds, seed_everything
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


def policy_agent(policy: Policy, cfg: Config, decoding: str, chooser: ActingRule | None = None,
                 ) -> Callable[[list[str]], list[str]]:
    """The policy as a batch agent. With a reranking `Chooser` the candidates are always
    sampled (at generation.temperature): k greedy candidates would be one utterance k times.
    A `Guide` decodes greedily or samples as `decoding` says ("ilql" samples)."""
    generator = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    greedy = decoding == "greedy" and (chooser is None or is_guide(chooser))
    sampling = Sampling.from_config(cfg.generation, greedy=greedy)

    def act(observations: list[str]) -> list[str]:
        return act_utterances(policy, observations, sampling, generator=generator,
                              chooser=chooser).texts

    return act


def evaluate(cfg: Config, policy: Policy | None = None, agent: str | None = None,
             progress: bool = True, chooser: ActingRule | None = None,
             ) -> tuple[dict[str, Any], list[Trajectory]]:
    """Play `cfg.eval.episodes` episodes with a policy or a scripted agent: the task ids of
    `cfg.eval.split` in turn, or for an env without task ids episodes drawn by seed alone.
    Either way the reset seeds are the run's "eval" seed stream (`archer.rollout.seeds`),
    disjoint from training's. The summary's `heldout_note` says what the split measures.
    A policy acts through `chooser` when one is given (`policy_agent`); eval.decoding=ilql
    needs one, a `Guide` (`archer.algorithms.ilql.load_guide`)."""
    if (policy is None) == (agent is None):
        raise ValueError("evaluate needs exactly one of policy or agent")
    if policy is not None and cfg.eval.decoding == "ilql" and not is_guide(chooser):
        raise ValueError("eval.decoding=ilql decodes with ILQL's heads: pass their guide "
                         "(`archer eval --decoding ilql` loads them beside the policy)")
    envs = BatchedTextEnvs(cfg.env.id, min(cfg.eval.num_envs, cfg.eval.episodes), cfg.env.kwargs)
    try:
        info = env_info(cfg.env.id, cfg.env.kwargs, env=envs.envs[0])
        split_tasks = info.tasks(cfg.eval.split)
        tasks: list[str | None] = ([None] * cfg.eval.episodes if split_tasks is None
                                   else list(cycle_tasks(split_tasks, cfg.eval.episodes)))
        if policy is not None:
            act, name = policy_agent(policy, cfg, cfg.eval.decoding, chooser), "policy"
        else:
            assert agent is not None
            act = batch_agent(resolve_agent(agent, envs.envs[0], seed=cfg.seed))
            name = agent
        trajectories = run_episodes(envs, act, tasks,
                                    seeds=episode_seeds(cfg.seed, "eval", len(tasks)),
                                    agent_name=name, progress=progress)
    finally:
        envs.close()
    summary = summarize(trajectories)
    summary.update({"env": cfg.env.id, "split": cfg.eval.split,
                    "decoding": cfg.eval.decoding if policy is not None else "scripted",
                    "heldout": info.has_heldout,
                    "heldout_note": info.heldout_note(cfg.eval.split)})
    return summary, trajectories


def collect(cfg: Config, out: str | os.PathLike[str], progress: bool = True) -> dict[str, Any]:
    """Collect `cfg.collect.episodes` episodes of a scripted agent (or any callable) to `out`.

    Task ids are drawn uniformly (seeded) from `cfg.collect.split`; an env without task ids is
    played by seed alone. Reset seeds are the run's "collect" seed stream.
    """
    seed_everything(cfg.seed)  # a user agent drawing on the global RNGs is reproducible too
    n_envs = min(32, cfg.collect.episodes)
    envs = BatchedTextEnvs(cfg.env.id, n_envs, cfg.env.kwargs)
    try:
        pool = env_info(cfg.env.id, cfg.env.kwargs, env=envs.envs[0]).tasks(cfg.collect.split)
        tasks: list[str | None] = [None] * cfg.collect.episodes
        if pool is not None:
            rng = np.random.default_rng(cfg.seed)
            tasks = [pool[int(i)] for i in rng.integers(len(pool), size=cfg.collect.episodes)]
        agent = resolve_agent(cfg.collect.agent, envs.envs[0], seed=cfg.seed, noise=cfg.collect.noise)
        trajectories = run_episodes(envs, batch_agent(agent), tasks,
                                    seeds=episode_seeds(cfg.seed, "collect", len(tasks)),
                                    agent_name=cfg.collect.agent, progress=progress)
    finally:
        envs.close()
    write_trajectories(trajectories, out)
    return summarize(trajectories)
