"""`check_text_env`: the checks a multi-turn text env must pass to work with every archer
algorithm. Goes beyond Gymnasium's checker: text spaces, determinism under a seed, task-id round
trip, deterministic disjoint splits, reward and termination sanity, episodes ending within the
turn limit, the info keys, and malformed utterances handled rather than raised.

    from archer_envs.checker import check_text_env
    report = check_text_env("my_module:MyEnv-v0")
    assert report.ok, report.format()
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium import spaces


@dataclass
class CheckReport:
    env_id: str
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(passed for _, passed, _ in self.results)

    def format(self) -> str:
        lines = [f"env checker: {self.env_id}"]
        for name, passed, msg in self.results:
            lines.append(f"  [{'ok' if passed else 'FAIL'}] {name}{': ' + msg if msg else ''}")
        lines.append("all checks passed" if self.ok else "some checks FAILED")
        return "\n".join(lines)


class _Fail(AssertionError):
    pass


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise _Fail(msg)


def check_text_env(env_id: str, episodes: int = 8, seed: int = 0,
                   env_kwargs: dict[str, Any] | None = None) -> CheckReport:
    """Run every check on `env_id`; never raises for a failing env, reports instead."""
    report = CheckReport(env_id)
    kwargs = env_kwargs or {}
    try:
        env = gym.make(env_id, disable_env_checker=True, **kwargs)
    except Exception as err:
        report.results.append(("make", False, f"{type(err).__name__}: {err}"))
        return report
    report.results.append(("make", True, ""))
    base = env.unwrapped
    max_turns = getattr(base, "max_turns", None) or (env.spec.max_episode_steps if env.spec else None)

    def run(name: str, fn: Callable[[], str | None]) -> None:
        try:
            msg = fn() or ""
            report.results.append((name, True, msg))
        except _Fail as err:
            report.results.append((name, False, str(err)))
        except Exception as err:
            report.results.append((name, False, f"raised {type(err).__name__}: {err}"))

    def text_spaces() -> str:
        _require(isinstance(env.observation_space, spaces.Text), "observation_space must be spaces.Text")
        _require(isinstance(env.action_space, spaces.Text), "action_space must be spaces.Text")
        for ch in " ?.,'\n":
            _require(ch in env.observation_space.character_set,
                     f"observation charset lacks {ch!r}: pass a full charset to spaces.Text")
        return ""

    def gymnasium_checker() -> str:
        from gymnasium.utils.env_checker import check_env

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped,
                      skip_render_check=True)
        return f"{len(caught)} warning(s)" if caught else ""

    def reset_contract() -> str:
        obs, info = env.reset(seed=seed)
        _require(isinstance(obs, str) and obs != "", "reset must return a non-empty str observation")
        _require(isinstance(info, dict) and "task_id" in info, "reset info must carry 'task_id'")
        _require(env.observation_space.contains(obs), "observation not in observation_space")
        return ""

    def splits() -> str:
        _require(hasattr(base, "task_ids"), "env must expose task_ids(split)")
        train, evl, all_ids = base.task_ids("train"), base.task_ids("eval"), base.task_ids("all")
        other = gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped
        _require(other.task_ids("train") == train and other.task_ids("eval") == evl,
                 "task split differs between two instances: it must be deterministic")
        _require(len(train) > 0 and len(evl) > 0, "train and eval splits must be non-empty")
        _require(set(train) | set(evl) == set(all_ids), "train and eval must cover all task ids")
        if getattr(base, "has_heldout", True):
            _require(not set(train) & set(evl), "held-out eval tasks overlap training tasks")
            return f"{len(train)} train / {len(evl)} held-out tasks"
        _require(set(evl) == set(train), "an env without held-out tasks evaluates on its train set")
        return f"{len(train)} tasks, no held-out split (eval = train)"

    def task_round_trip() -> str:
        ids = base.task_ids("all")
        sample = ids if len(ids) <= 300 else random.Random(seed).sample(ids, 300)
        for t in sample:
            _, info = env.reset(seed=seed, options={"task_id": t})
            _require(info.get("task_id") == t, f"reset(task_id={t!r}) reported {info.get('task_id')!r}")
        return f"{len(sample)} task ids"

    def agent_for(i: int) -> Callable[[str], str]:
        if hasattr(base, "make_agent"):
            try:
                return base.make_agent("random", seed=seed + i)
            except ValueError:
                pass
        env.action_space.seed(seed + i)
        return lambda obs: env.action_space.sample()

    def play(agent: Callable[[str], str], reset_seed: int) -> list[tuple[Any, ...]]:
        obs, info = env.reset(seed=reset_seed)
        trace: list[tuple[Any, ...]] = [(obs, info.get("task_id"))]
        limit = (max_turns or 1000) + 1
        for _ in range(limit):
            action = agent(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            trace.append((action, obs, reward, terminated, truncated))
            if terminated or truncated:
                return trace
        raise _Fail(f"episode did not end within {limit} steps (max_turns={max_turns})")

    def determinism() -> str:
        a = play(agent_for(0), seed)
        b = play(agent_for(0), seed)
        _require(a == b, "same seed and same actions gave different observations or rewards")
        return ""

    def episodes_sane() -> str:
        lengths, successes = [], 0
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            agent, steps = agent_for(i), 0
            while True:
                obs, reward, terminated, truncated, info = env.step(agent(obs))
                steps += 1
                _require(isinstance(obs, str), "step must return a str observation")
                _require(isinstance(reward, (int, float)) and math.isfinite(reward), f"reward {reward!r} is not a finite number")
                _require(isinstance(terminated, bool) and isinstance(truncated, bool), "terminated/truncated must be bool")
                _require("task_id" in info, "step info must carry 'task_id'")
                if terminated or truncated:
                    _require("success" in info, "the last step's info must carry 'success'")
                    successes += bool(info["success"])
                    break
                _require(max_turns is None or steps < max_turns, f"episode passed max_turns={max_turns} without ending")
            lengths.append(steps)
        return f"{episodes} episodes, length {min(lengths)}-{max(lengths)}, {successes} successes"

    def malformed_actions() -> str:
        for action in ("", "   ", "x" * 100_000, "two\nlines"):
            env.reset(seed=seed)
            _, _, _, _, info = env.step(action)
        return "empty, blank, huge and multi-line utterances handled"

    for name, fn in [("text spaces", text_spaces), ("gymnasium check_env", gymnasium_checker),
                     ("reset contract", reset_contract), ("task splits", splits),
                     ("task-id round trip", task_round_trip), ("determinism", determinism),
                     ("episodes", episodes_sane), ("malformed utterances", malformed_actions)]:
        run(name, fn)
    env.close()
    return report
