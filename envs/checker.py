"""`check_text_env`: the checks a multi-turn text env must pass to work with every archer
algorithm. Goes beyond Gymnasium's checker: text spaces, determinism under a seed, task-id round
trip, deterministic disjoint splits, reward and termination sanity, episodes ending within the
turn limit, the info keys, and malformed utterances handled rather than raised.

    from archer_envs.checker import check_text_env
    report = check_text_env("my_module:MyEnv-v0")
    assert report.ok, report.format()

Failures are breaks of the required contract: str observations in a `spaces.Text`, str actions,
`reset(seed=..., options=...) -> (obs, info dict)` deterministic under a seed, `step` returning
a 5-tuple with a finite reward and bool `terminated`/`truncated`, episodes that end, malformed
utterances handled. Notes are everything archer can do without: a missing optional method
(`task_ids`, `has_heldout`, `corpus`, `atomic_terms`, `make_agent`, `max_turns`), a missing
optional info key (`task_id`, `success`), and Gymnasium checker warnings that are advice.
Gymnasium warnings that report a contract break (an observation outside the observation
space, a non-bool `terminated`, a non-number or non-finite reward, a malformed `reset` result,
non-deterministic steps) are failures (`GYMNASIUM_CONTRACT_WARNINGS`).
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

from archer.rollout.envs import EnvInfo, env_info, provides

GYMNASIUM_CONTRACT_WARNINGS = (
    "not within the observation space",
    "signal to be a boolean",
    "reward returned by `step()` must be",
    "reward is a NaN",
    "reward is an inf",
    "result returned by `env.reset()`",
    "should be `(obs, info)`",
    "not equal although similar",
)
"""Substrings of Gymnasium checker warnings that mean a contract break (a failure here);
every other Gymnasium warning is a note."""


@dataclass
class CheckReport:
    env_id: str
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the env lacks that archer can do without; never a failure."""

    @property
    def ok(self) -> bool:
        return all(passed for _, passed, _ in self.results)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def format(self) -> str:
        lines = [f"env checker: {self.env_id}"]
        for name, passed, msg in self.results:
            lines.append(f"  [{'ok' if passed else 'FAIL'}] {name}{': ' + msg if msg else ''}")
        if self.notes:
            lines.append(f"notes ({len(self.notes)}; optional, not failures):")
            lines += [f"  - {n}" for n in self.notes]
        failed = sum(not passed for _, passed, _ in self.results)
        lines.append("all checks passed" if self.ok else f"{failed} check(s) FAILED")
        return "\n".join(lines)


class _Fail(AssertionError):
    pass


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise _Fail(msg)


@dataclass
class _Ctx:
    """What every check sees: the env under test and how to make another one."""

    env_id: str
    kwargs: dict[str, Any]
    env: gym.Env
    seed: int
    episodes: int
    report: CheckReport
    info: EnvInfo | None = None
    """Set by the "optional methods" check."""

    @property
    def task_ids(self) -> list[str] | None:
        """All task ids; None when the env has no `task_ids(split)`."""
        return self.info.all_tasks if self.info is not None else None

    @property
    def base(self) -> Any:
        return self.env.unwrapped

    @property
    def max_turns(self) -> int | None:
        spec = self.env.spec
        return getattr(self.base, "max_turns", None) or (spec.max_episode_steps if spec else None)

    def make(self) -> gym.Env:
        return gym.make(self.env_id, disable_env_checker=True, **self.kwargs)


# ----------------------------------------------------------------------------- the checks
def _text_spaces(c: _Ctx) -> str:
    _require(isinstance(c.env.observation_space, spaces.Text), "observation_space must be spaces.Text")
    _require(isinstance(c.env.action_space, spaces.Text), "action_space must be spaces.Text")
    for ch in " ?.,'\n":
        _require(ch in c.env.observation_space.character_set,
                 f"observation charset lacks {ch!r}: pass a full charset to spaces.Text")
    return ""


def _gymnasium_checker(c: _Ctx) -> str:
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(c.make().unwrapped, skip_render_check=True)
    broken, advice = classify_gymnasium_warnings([str(w.message) for w in caught])
    _require(not broken, "; ".join(broken))
    for m in advice:
        c.report.note(f"gymnasium: {m}")
    return f"{len(advice)} warning(s), as notes" if advice else ""


def classify_gymnasium_warnings(messages: list[str]) -> tuple[list[str], list[str]]:
    """Split Gymnasium checker warnings into (contract breaks, advice), deduplicated."""
    unique = list(dict.fromkeys(m.replace("WARN: ", "") for m in messages))
    broken = [m for m in unique if any(p in m for p in GYMNASIUM_CONTRACT_WARNINGS)]
    return broken, [m for m in unique if m not in broken]


def _optional_methods(c: _Ctx) -> str:
    c.info = info = env_info(c.env_id, c.kwargs, env=c.env)
    for n in info.notes:
        c.report.note(n)
    return f"{len(info.notes)} missing, as notes" if info.notes else "all provided"


def _reset_contract(c: _Ctx) -> str:
    obs, info = c.env.reset(seed=c.seed)
    _require(isinstance(obs, str) and obs != "", "reset must return a non-empty str observation")
    _require(isinstance(info, dict), "reset must return an info dict")
    _require(c.env.observation_space.contains(obs), "observation not in observation_space")
    if "task_id" not in info:
        _require(c.task_ids is None, "an env with task_ids() must report info['task_id']")
        c.report.note("reset info has no 'task_id': episodes are recorded with task id ''")
    return ""


def _splits(c: _Ctx) -> str:
    if c.info is None or c.task_ids is None:
        return "no task ids: episodes are drawn by seed"
    base = c.base
    train, evl = base.task_ids("train"), base.task_ids("eval")
    other = c.make().unwrapped
    _require(other.task_ids("train") == train and other.task_ids("eval") == evl,
             "task split differs between two instances: it must be deterministic")
    _require(set(train) | set(evl) == set(c.task_ids), "train and eval must cover all task ids")
    if c.info.has_heldout:
        _require(not set(train) & set(evl), "held-out eval tasks overlap training tasks")
        return f"{len(train)} train / {len(evl)} held-out tasks"
    _require(set(evl) == set(train), "an env without held-out tasks evaluates on its train set")
    return f"{len(train)} tasks, no held-out split (eval = train)"


def _task_round_trip(c: _Ctx) -> str:
    if c.task_ids is None:
        return "no task ids: skipped"
    ids = c.task_ids
    sample = ids if len(ids) <= 300 else random.Random(c.seed).sample(ids, 300)
    for t in sample:
        _, info = c.env.reset(seed=c.seed, options={"task_id": t})
        _require(info.get("task_id") == t, f"reset(task_id={t!r}) reported {info.get('task_id')!r}")
    return f"{len(sample)} task ids"


def _agent_for(c: _Ctx, i: int) -> Callable[[str], str]:
    if provides(c.env, "make_agent"):
        try:
            return c.base.make_agent("random", seed=c.seed + i)
        except ValueError:
            pass
    c.env.action_space.seed(c.seed + i)
    return lambda obs: c.env.action_space.sample()


def _play(c: _Ctx, agent: Callable[[str], str], reset_seed: int) -> list[tuple[Any, ...]]:
    obs, info = c.env.reset(seed=reset_seed)
    trace: list[tuple[Any, ...]] = [(obs, info.get("task_id"))]
    limit = (c.max_turns or 1000) + 1
    for _ in range(limit):
        action = agent(obs)
        obs, reward, terminated, truncated, info = c.env.step(action)
        trace.append((action, obs, reward, terminated, truncated))
        if terminated or truncated:
            return trace
    raise _Fail(f"episode did not end within {limit} steps (max_turns={c.max_turns})")


def _determinism(c: _Ctx) -> str:
    a = _play(c, _agent_for(c, 0), c.seed)
    b = _play(c, _agent_for(c, 0), c.seed)
    _require(a == b, "same seed and same actions gave different observations or rewards")
    return ""


def _check_step(c: _Ctx, result: Any, steps: int) -> bool:
    """Check one step's result; return whether the episode ended."""
    _require(isinstance(result, tuple) and len(result) == 5,
             "step must return (obs, reward, terminated, truncated, info)")
    obs, reward, terminated, truncated, info = result
    _require(isinstance(obs, str), "step must return a str observation")
    _require(isinstance(reward, (int, float)) and math.isfinite(reward),
             f"reward {reward!r} is not a finite number")
    _require(isinstance(terminated, bool) and isinstance(truncated, bool),
             "terminated/truncated must be bool")
    _require(isinstance(info, dict), "step must return an info dict")
    if "task_id" not in info:
        _require(c.task_ids is None, "an env with task_ids() must report info['task_id']")
    done = terminated or truncated
    if done and "success" not in info:
        c.report.note("the last step's info has no 'success': success rates will read 0")
    _require(done or c.max_turns is None or steps < c.max_turns,
             f"episode passed max_turns={c.max_turns} without ending")
    return done


def _episodes(c: _Ctx) -> str:
    lengths, successes = [], 0
    for i in range(c.episodes):
        obs, _ = c.env.reset(seed=c.seed + i)
        agent, steps, done = _agent_for(c, i), 0, False
        while not done:
            result = c.env.step(agent(obs))
            steps += 1
            done = _check_step(c, result, steps)
            obs, info = result[0], result[4]
        successes += bool(info.get("success"))
        lengths.append(steps)
    return f"{c.episodes} episodes, length {min(lengths)}-{max(lengths)}, {successes} successes"


def _malformed_actions(c: _Ctx) -> str:
    for action in ("", "   ", "x" * 100_000, "two\nlines"):
        c.env.reset(seed=c.seed)
        c.env.step(action)
    return "empty, blank, huge and multi-line utterances handled"


CHECKS: list[tuple[str, Callable[[_Ctx], str]]] = [
    ("text spaces", _text_spaces),
    ("gymnasium check_env", _gymnasium_checker),
    ("optional methods", _optional_methods),
    ("reset contract", _reset_contract),
    ("task splits", _splits),
    ("task-id round trip", _task_round_trip),
    ("determinism", _determinism),
    ("episodes", _episodes),
    ("malformed utterances", _malformed_actions),
]
"""The checks, in order; each returns a message for the report or raises `_Fail`."""


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
    ctx = _Ctx(env_id, kwargs, env, seed, episodes, report)
    for name, check in CHECKS:
        try:
            report.results.append((name, True, check(ctx) or ""))
        except _Fail as err:
            report.results.append((name, False, str(err)))
        except Exception as err:
            report.results.append((name, False, f"raised {type(err).__name__}: {err}"))
    env.close()
    return report
