"""`TextEnv`: a small helper over `gymnasium.Env` for multi-turn text tasks.

A text env has string observations and string actions, a finite set of task ids (which secret
word, which city, which instruction) split deterministically into train and held-out eval sets,
and a turn limit. Subclasses implement three hooks:

- `all_task_ids()`: every task id, in a fixed order;
- `_begin(task_id) -> str`: start an episode on that task and return the first observation;
- `_turn(action) -> (observation, reward, finished, info)`: play one cleaned utterance;
  `finished` means the agent's action ended the task (a correct guess, a purchase). Success is
  `finished` unless the hook sets `info["success"]` itself (WebShop: reward above a threshold),
  and the hook may flag `info["invalid_action"]` for an utterance its grammar rejects.

and may override the optional methods archer reads when present (`corpus`, `atomic_terms`,
`make_agent`; `task_ids` and `has_heldout` are provided here). None of this is required: a
plain `gymnasium.Env` with str observations and actions works with archer too.

The base class owns everything that must be the same across envs: seeding and task sampling,
cleaning of malformed actions (empty, multi-line or huge utterances are handled and flagged in
`info`, never raised), the turn limit, and the `terminated`/`truncated` contract.
"""

from __future__ import annotations

import hashlib
import string
from typing import Any

import gymnasium as gym
from gymnasium import spaces

# `spaces.Text` accepts only alphanumerics by default; text envs need the full printable range
# plus the Latin-1 supplement and Latin Extended-A (city names such as "São Paulo", "Kraków").
CHARSET = frozenset(
    string.printable + "".join(chr(c) for c in range(0xA0, 0x250)) + "‘’“”–—…€"
)
MAX_OBSERVATION_CHARS = 100_000

SPLITS = ("train", "eval", "all")


def clean_action(action: Any, max_chars: int) -> tuple[str, dict[str, Any]]:
    """Normalise a policy utterance; return it with flags describing what was repaired.

    Whitespace (newlines included) collapses to single spaces, so one utterance is one line of
    history. Utterances longer than `max_chars` are cut. Non-strings are a programming error.
    """
    if not isinstance(action, str):
        raise TypeError(f"a text env takes a str action, got {type(action).__name__}: {action!r}")
    flags: dict[str, Any] = {"invalid_action": False, "action_truncated": False}
    text = " ".join(action.split())
    if len(text) > max_chars:
        text = text[:max_chars].rstrip()
        flags["action_truncated"] = True
    if not text:
        flags["invalid_action"] = True
    return text, flags


def split_task_ids(name: str, task_ids: list[str], heldout_fraction: float) -> dict[str, list[str]]:
    """Deterministic train / held-out split of `task_ids`.

    Tasks are ranked by a SHA-256 of "name:task_id" (stable across runs, machines and Python's
    hash seed) and the first round(n * heldout_fraction) go to "eval". A fraction of 0 means
    the env has no held-out tasks: then "eval" is the training set, as in the small benchmark
    envs of the ArCHer paper, and `TextEnv.has_heldout` is False.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    if len(set(task_ids)) != len(task_ids):
        raise ValueError(f"{name}: duplicate task ids")
    ordered = sorted(
        task_ids, key=lambda t: hashlib.sha256(f"{name}:{t}".encode()).hexdigest()
    )
    n_eval = round(len(task_ids) * heldout_fraction)
    if heldout_fraction > 0 and n_eval == 0:
        n_eval = 1
    heldout = set(ordered[:n_eval])
    train = [t for t in task_ids if t not in heldout]
    evaluation = [t for t in task_ids if t in heldout] if heldout else list(task_ids)
    return {"train": train, "eval": evaluation, "all": list(task_ids)}


class TextEnv(gym.Env):
    """Base class for text-in, text-out multi-turn environments (see module docstring)."""

    metadata = {"render_modes": ["ansi", "human"]}

    def __init__(
        self,
        max_turns: int = 20,
        heldout_fraction: float = 0.2,
        max_action_chars: int = 300,
        horizon_terminates: bool = True,
        render_mode: str | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if max_action_chars < 1:
            raise ValueError(f"max_action_chars must be >= 1, got {max_action_chars}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.max_turns = max_turns
        self.max_action_chars = max_action_chars
        self.horizon_terminates = horizon_terminates
        self.heldout_fraction = heldout_fraction
        self.render_mode = render_mode
        self.observation_space = spaces.Text(
            max_length=MAX_OBSERVATION_CHARS, min_length=1, charset=CHARSET
        )
        self.action_space = spaces.Text(max_length=max_action_chars, min_length=0, charset=CHARSET)
        self._splits: dict[str, list[str]] | None = None
        self._task_id: str | None = None
        self._turns = 0
        self._done = True
        self._observation = ""

    # ----------------------------------------------------------------- hooks for subclasses
    def all_task_ids(self) -> list[str]:
        raise NotImplementedError

    def _begin(self, task_id: str) -> str:
        raise NotImplementedError

    def _turn(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        raise NotImplementedError

    # ----------------------------------------------------------------------- public API
    @property
    def split_name(self) -> str:
        """Name used to seed the task split; subclasses with variants override it."""
        return type(self).__name__

    def task_ids(self, split: str = "train") -> list[str]:
        """Task ids of a split: "train", "eval" (held-out) or "all"."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if self._splits is None:
            self._splits = split_task_ids(self.split_name, self.all_task_ids(), self.heldout_fraction)
        return list(self._splits[split])

    @property
    def has_heldout(self) -> bool:
        """True when the eval split is disjoint from the train split (optional for a user env:
        without it archer compares the splits; without `task_ids` it is False)."""
        return self.heldout_fraction > 0

    # ------------------------------------------------- optional methods (archer's defaults)
    # archer reads these through `archer.rollout.envs.env_info`, and a user env need not
    # subclass TextEnv to have them: any env with methods of these names is read the same way.
    # The defaults here mean "not provided"; override the ones your env can answer.
    def corpus(self) -> list[str]:
        """Text the env can produce or expect (questions, answers, page text). `archer sft`
        and a tiny critic train their tokenizer on it besides the collected episodes."""
        return []

    def atomic_terms(self) -> list[str]:
        """Strings a new tokenizer must keep as one token each (WebShop's product ids)."""
        return []

    def make_agent(self, name: str, seed: int = 0, noise: float = 0.0) -> Any:
        """A scripted agent `observation -> utterance` by name (`archer collect --agent NAME`);
        `noise` is the probability of a random action. Raises ValueError for unknown names."""
        raise ValueError(f"{type(self).__name__} provides no scripted agents (asked for "
                         f"{name!r}); pass --agent module:callable")

    @property
    def task_id(self) -> str | None:
        return self._task_id

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode. `options={"task_id": ...}` picks the task; otherwise one is drawn
        uniformly from `options.get("split", "train")` with the env's seeded RNG."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"task_id", "split"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; allowed: task_id, split")
        task_id = options.get("task_id")
        if task_id is None:
            pool = self.task_ids(options.get("split", "train"))
            task_id = pool[int(self.np_random.integers(len(pool)))]
        elif task_id not in set(self.task_ids("all")):
            raise ValueError(f"unknown task_id {task_id!r} for {self.split_name}")
        self._task_id = str(task_id)
        self._turns = 0
        self._done = False
        self._observation = self._begin(self._task_id)
        return self._observation, {"task_id": self._task_id, "turn": 0}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        text, flags = clean_action(action, self.max_action_chars)
        observation, reward, finished, info = self._turn(text)
        self._turns += 1
        out_of_turns = self._turns >= self.max_turns and not finished
        terminated = finished or (out_of_turns and self.horizon_terminates)
        truncated = out_of_turns and not self.horizon_terminates
        self._done = terminated or truncated
        flags["invalid_action"] = flags["invalid_action"] or bool(info.get("invalid_action"))
        info = {**info, **flags, "task_id": self._task_id, "turn": self._turns}
        if self._done:
            info["success"] = bool(info.get("success", finished))
        else:
            info.pop("success", None)
        self._observation = observation
        if self.render_mode == "human":
            print(self.render())
        return observation, float(reward), bool(terminated), bool(truncated), info

    def render(self) -> str:  # type: ignore[override]
        return self._observation
