"""A diagnostic env for multi-turn credit assignment.

`archer/EarlyChoice-v0`: four turns of "yes or no"; only the first answer counts, and the
reward comes only after the fourth turn (1 if the first answer was "yes", else 0). The three
later answers change nothing, so a method must tell the decision that earned the return from
the three that did not: a per-turn critic can (Q of the first turn is the return, later turns
have zero advantage), a trajectory-level method pushes all four turns with the same weight
(the later three get noise), and token-level GAE with lambda < 1 has to carry the end-of-episode
reward back across the later turns. A 50/50 policy (the `coin` agent) scores 0.5.
"""

from __future__ import annotations

import random
from typing import Any

from archer_envs.core import TextEnv

PROMPT = "Answer yes or no, four times. Only the first answer counts.\n"


def _is_yes(action: str) -> bool:
    return action.strip().lower().rstrip(".!") == "yes"


class EarlyChoiceEnv(TextEnv):
    """Four turns; the return (at the end) is 1 if the first answer was "yes"."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_turns", 4)
        kwargs.setdefault("heldout_fraction", 0.25)
        super().__init__(**kwargs)

    def all_task_ids(self) -> list[str]:
        return [str(i) for i in range(8)]  # the same game: ids only make groups possible

    def _begin(self, task_id: str) -> str:
        self._history, self._first_yes = PROMPT, False
        return self._history

    def _turn(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._turns == 0:
            self._first_yes = _is_yes(action)
        self._history += f"{action}\n"
        last = self._turns + 1 == self.max_turns
        reward = 1.0 if last and self._first_yes else 0.0
        return self._history, reward, last, {"success": last and self._first_yes}

    def corpus(self) -> list[str]:
        return [PROMPT, "yes\n", "no\n"] * 20

    def make_agent(self, name: str, seed: int = 0, noise: float = 0.0) -> Any:
        """`coin`: yes or no at random (return 0.5); `always_yes`: the expert (return 1), with
        probability `noise` a coin flip instead."""
        if name not in ("coin", "always_yes"):
            return super().make_agent(name, seed, noise)
        rng = random.Random(seed)
        if name == "coin":  # one draw per answer (the data of the documented runs)
            return lambda observation: rng.choice(["yes", "no"])
        return lambda observation: rng.choice(["yes", "no"]) if rng.random() < noise else "yes"
