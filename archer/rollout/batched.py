"""The batched turn loop: many envs, one agent call per turn for all of them.

`run_episodes` plays a list of task ids (None: by seed alone) on `num_envs` env copies. Each turn it gathers the
observations of every live episode, asks the (batched) agent once, and steps each env; a slot
whose episode ends takes the next task. An env that raises in `reset` or `step` ends that
episode with `error` set (the turn is marked truncated) and the run goes on.

A plain agent maps observations to utterances. A context agent (`agent_context=True`) also
gets a `TurnContext` per live episode (its task id, reset seed and turn index), so it can seed
each utterance from its own episode alone, and returns per-turn extras (`logprobs`, `action_ids`)
that are stored on the turns.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
from tqdm.auto import tqdm

from archer.rollout.envs import make_env
from archer.types import Trajectory, Turn

INFO_KEYS = ("invalid_action", "action_truncated", "answer")
EXTRA_KEYS = ("logprobs", "action_ids")
"""Per-turn extras a context agent may return; each is stored in the `Turn` field of its name."""


@dataclass(frozen=True)
class TurnContext:
    """What a context agent knows of a live episode besides its observation."""

    task_id: str
    seed: int
    """The episode's reset seed."""
    turn: int
    """Index of the utterance being asked for: 0 for the first one of the episode."""


BatchAgent = Callable[[list[str]], list[str]]
ContextAgent = Callable[
    [list[str], list[TurnContext]], tuple[list[str], list[dict[str, Any]] | None]
]
"""`(observations, contexts) -> (actions, extras)`; extras is None or one dict per action
with keys from `EXTRA_KEYS`."""


@dataclass
class _Slot:
    traj: Trajectory
    observation: str


class BatchedTextEnvs:
    """`n` copies of one env id, reset and stepped together."""

    def __init__(self, env_id: str, n: int, env_kwargs: dict | None = None):
        if n < 1:
            raise ValueError(f"need at least one env, got {n}")
        self.env_id = env_id
        self.envs: list[gym.Env] = [make_env(env_id, **(env_kwargs or {})) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.envs)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def run_episodes(
    envs: BatchedTextEnvs,
    agent: BatchAgent | ContextAgent,
    task_ids: Sequence[str | None],
    seed: int = 0,
    agent_name: str = "",
    progress: bool = False,
    max_turns: int = 1000,
    seeds: Sequence[int] | None = None,
    agent_context: bool = False,
) -> list[Trajectory]:
    """Play one episode per task id and return them in the order of `task_ids`, whatever
    order they finished in. Episode i is reset with seed `seeds[i]` if `seeds` is given, else
    `seed + i`. A task id of None resets with the seed alone (an env without task ids, or
    one that draws its own task); the trajectory's `task_id` is then the one the env reports
    in its reset info, or "". `max_turns` is a safety cap for envs without a turn limit of their own:
    reaching it marks the episode truncated. With `agent_context`, `agent` is a `ContextAgent`
    called as `agent(observations, contexts)`."""
    if seeds is not None and len(seeds) != len(task_ids):
        raise ValueError(f"got {len(seeds)} seeds for {len(task_ids)} task ids")
    if seeds is None:
        seeds = [seed + i for i in range(len(task_ids))]
    episode_seeds = [int(s) for s in seeds]
    results: list[Trajectory | None] = [None] * len(task_ids)
    live: dict[int, tuple[int, _Slot]] = {}  # slot -> (episode index, state)
    next_episode = 0
    bar = tqdm(
        total=len(task_ids),
        desc=f"episodes {envs.env_id}",
        disable=not progress,
        unit="ep",
        leave=False,
    )

    def start(slot: int) -> None:
        nonlocal next_episode
        while next_episode < len(task_ids):
            i = next_episode
            next_episode += 1
            task = task_ids[i]
            traj = Trajectory(
                envs.env_id, "" if task is None else str(task), [], agent=agent_name,
                seed=episode_seeds[i],
            )
            try:
                obs, traj.task_id = _reset(envs.envs[slot], task, episode_seeds[i])
            except Exception as err:  # an env that raises ends its episode, not the run
                traj.error = _describe(err)
                results[i] = traj
                bar.update(1)
                continue
            live[slot] = (i, _Slot(traj, obs))
            return

    for slot in range(len(envs)):
        start(slot)
    while live:
        slots = sorted(live)
        observations = [live[s][1].observation for s in slots]
        extras: list[dict[str, Any]] | None = None
        if agent_context:
            contexts = [
                TurnContext(st.traj.task_id, episode_seeds[i], len(st.traj.turns))
                for i, st in (live[s] for s in slots)
            ]
            actions, extras = cast(ContextAgent, agent)(observations, contexts)
        else:
            actions = cast(BatchAgent, agent)(observations)
        if len(actions) != len(slots):
            raise RuntimeError(
                f"agent returned {len(actions)} actions for {len(slots)} observations"
            )
        if extras is not None:
            _check_extras(extras, len(slots))
        for row, (slot, action) in enumerate(zip(slots, actions, strict=True)):
            i, state = live[slot]
            fields = dict(extras[row]) if extras is not None else {}
            try:
                obs, reward, terminated, truncated, info = envs.envs[slot].step(action)
            except Exception as err:
                state.traj.turns.append(
                    Turn(
                        state.observation,
                        str(action),
                        0.0,
                        False,
                        True,
                        {"error": _describe(err)},
                        **fields,
                    )
                )
                state.traj.error = _describe(err)
                done = True
            else:
                kept = {k: info[k] for k in INFO_KEYS if k in info}
                state.traj.turns.append(
                    Turn(
                        state.observation,
                        action,
                        float(reward),
                        bool(terminated),
                        bool(truncated),
                        kept,
                        **fields,
                    )
                )
                state.observation = obs
                if not (terminated or truncated) and len(state.traj.turns) >= max_turns:
                    state.traj.turns[-1].truncated = truncated = True
                done = terminated or truncated
                if done:
                    state.traj.final_observation = obs
                    state.traj.success = bool(info.get("success", False))
            if done:
                results[i] = state.traj
                del live[slot]
                bar.update(1)
                start(slot)
    bar.close()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def _reset(env: gym.Env, task_id: str | None, seed: int) -> tuple[str, str]:
    """Reset `env` on `task_id` (None: the seed alone); return the observation and the task
    id the episode is recorded under."""
    if task_id is None:
        obs, info = env.reset(seed=seed)
        reported = info.get("task_id") if isinstance(info, dict) else None
        return obs, "" if reported is None else str(reported)
    obs, _ = env.reset(seed=seed, options={"task_id": task_id})
    return obs, str(task_id)


def _check_extras(extras: list[dict[str, Any]], n: int) -> None:
    if len(extras) != n:
        raise RuntimeError(f"agent returned {len(extras)} extras for {n} observations")
    unknown = {key for e in extras for key in e} - set(EXTRA_KEYS)
    if unknown:
        raise RuntimeError(
            f"agent returned unknown per-turn extras {sorted(unknown)}; allowed: {list(EXTRA_KEYS)}"
        )


def _describe(err: BaseException) -> str:
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" at {frame.filename}:{frame.lineno}" if frame else ""
    return f"{type(err).__name__}: {err}{where}"
