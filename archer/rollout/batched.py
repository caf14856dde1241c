"""The batched turn loop: many envs, one agent call per turn for all of them.

`run_episodes` plays a list of task ids on `num_envs` env copies. Each turn it gathers the
observations of every live episode, asks the (batched) agent once, and steps each env; a slot
whose episode ends takes the next task. An env that raises in `reset` or `step` ends that
episode with `error` set (the turn is marked truncated) and the run goes on.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
from tqdm.auto import tqdm

from archer.rollout.envs import make_env
from archer.types import Trajectory, Turn

BatchAgent = Callable[[list[str]], list[str]]
INFO_KEYS = ("invalid_action", "action_truncated", "answer")


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
    agent: BatchAgent,
    task_ids: Sequence[str],
    seed: int = 0,
    agent_name: str = "",
    progress: bool = False,
    max_turns: int = 1000,
) -> list[Trajectory]:
    """Play one episode per task id and return them in the order of `task_ids`, whatever
    order they finished in. Episode i is reset with seed `seed + i`. `max_turns` is a safety
    cap for envs without a turn limit of their own: reaching it marks the episode truncated."""
    results: list[Trajectory | None] = [None] * len(task_ids)
    live: dict[int, tuple[int, _Slot]] = {}  # slot -> (episode index, state)
    next_episode = 0
    bar = tqdm(total=len(task_ids), desc=f"episodes {envs.env_id}", disable=not progress,
               unit="ep", leave=False)

    def start(slot: int) -> None:
        nonlocal next_episode
        while next_episode < len(task_ids):
            i = next_episode
            next_episode += 1
            traj = Trajectory(envs.env_id, str(task_ids[i]), [], agent=agent_name, seed=seed + i)
            try:
                obs, _ = envs.envs[slot].reset(seed=seed + i, options={"task_id": task_ids[i]})
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
        actions = agent([live[s][1].observation for s in slots])
        if len(actions) != len(slots):
            raise RuntimeError(f"agent returned {len(actions)} actions for {len(slots)} observations")
        for slot, action in zip(slots, actions):
            i, state = live[slot]
            try:
                obs, reward, terminated, truncated, info = envs.envs[slot].step(action)
            except Exception as err:
                state.traj.turns.append(Turn(state.observation, str(action), 0.0, False, True,
                                             {"error": _describe(err)}))
                state.traj.error = _describe(err)
                done = True
            else:
                kept = {k: info[k] for k in INFO_KEYS if k in info}
                state.traj.turns.append(
                    Turn(state.observation, action, float(reward), bool(terminated),
                         bool(truncated), kept)
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


def _describe(err: BaseException) -> str:
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" at {frame.filename}:{frame.lineno}" if frame else ""
    return f"{type(err).__name__}: {err}{where}"
