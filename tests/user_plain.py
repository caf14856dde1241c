"""A user's env written with Gymnasium alone: no archer import, no TextEnv, no task_ids().

Used by the tests as "user_plain:Guess-v0" (Gymnasium's module:EnvId form): archer imports
this module, which registers the id. The secret number comes from the reset seed, or from
`options={"task_id": "7"}` when given; the info dict carries the secret as "task_id" and
"success" at the end, as the Env interface asks, and nothing else is provided.
"""

from __future__ import annotations

import re
import string

import gymnasium as gym
from gymnasium import spaces


class GuessEnv(gym.Env):
    """Guess a number in 1..n; each wrong guess costs 1 and is answered "Higher." or "Lower."."""

    metadata = {"render_modes": []}

    def __init__(self, n: int = 16, max_turns: int = 6):
        self.n, self.max_turns = n, max_turns
        self.observation_space = spaces.Text(max_length=10_000, charset=string.printable)
        self.action_space = spaces.Text(max_length=200, min_length=0, charset=string.printable)
        self.secret, self.turns, self.history = 1, 0, ""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        if "task_id" in options:
            self.secret = int(options["task_id"])
        else:
            self.secret = int(self.np_random.integers(1, self.n + 1))
        self.turns = 0
        self.history = f"I picked a number from 1 to {self.n}. Guess it.\n"
        return self.history, {"task_id": str(self.secret)}

    def step(self, action):
        self.turns += 1
        found = re.search(r"-?\d+", action)
        guess = int(found.group()) if found else None
        if guess is None:
            answer = "Say a number."
        else:
            answer = "Correct!" if guess == self.secret else (
                "Higher." if guess < self.secret else "Lower.")
        self.history += f"You: {' '.join(action.split())[:40]} -> {answer}\n"
        solved = guess == self.secret
        truncated = not solved and self.turns >= self.max_turns
        info = {"success": solved} if solved or truncated else {}
        return self.history, 0.0 if solved else -1.0, solved, truncated, info


def bisect_agent(observation: str) -> str:
    """The user's scripted policy: binary search on the hints in the observation."""
    low, high = 1, int(re.search(r"from 1 to (\d+)", observation).group(1))
    for guess, hint in re.findall(r"You: (\d+) -> (Higher|Lower)\.", observation):
        if hint == "Higher":
            low = max(low, int(guess) + 1)
        else:
            high = min(high, int(guess) - 1)
    return str((low + high) // 2)


gym.register(id="Guess-v0", entry_point=GuessEnv)
