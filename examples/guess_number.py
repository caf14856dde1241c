"""A user's own env, written with Gymnasium alone (no archer import): guess a number in 1..16,
hints "Higher." / "Lower.", -1 per wrong guess, at most 6 guesses. archer reaches it as
`examples.guess_number:GuessMyNumber-v0` (Gymnasium's module:EnvId form, importing this module
registers the id), and its scripted agents as `examples.guess_number:bisect` (the expert:
binary search, return -3 or better) and `examples.guess_number:noisy` (a random number half of
the time, else bisect).

    archer envs check examples.guess_number:GuessMyNumber-v0
    ARCHER_PLUGINS=examples.above_average_bc archer bench --config configs/bench/user_example.yaml
"""

from __future__ import annotations

import random
import re
import string

import gymnasium as gym
from gymnasium import spaces

N = 16


class GuessNumberEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, max_turns: int = 6):
        self.max_turns = max_turns
        self.observation_space = spaces.Text(max_length=10_000, charset=string.printable)
        self.action_space = spaces.Text(max_length=200, min_length=0, charset=string.printable)
        self.secret, self.turns, self.text = 1, 0, ""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        self.secret = int(options["task_id"]) if "task_id" in options else int(
            self.np_random.integers(1, N + 1))
        self.turns = 0
        self.text = f"Guess my number, 1 to {N}.\n"
        return self.text, {"task_id": str(self.secret)}

    def step(self, action):
        self.turns += 1
        found = re.search(r"\d+", action)
        guess = int(found.group()) if found else None
        hint = ("Say a number." if guess is None else "Correct!" if guess == self.secret
                else "Higher." if guess < self.secret else "Lower.")
        self.text += f"{guess if guess is not None else '?'}: {hint}\n"
        solved = guess == self.secret
        truncated = not solved and self.turns >= self.max_turns
        info = {"success": solved} if solved or truncated else {}
        return self.text, 0.0 if solved else -1.0, solved, truncated, info


def bisect(observation: str) -> str:
    """Binary search on the hints so far."""
    low, high = 1, N
    for guess, hint in re.findall(r"(\d+): (Higher|Lower)\.", observation):
        if hint == "Higher":
            low = max(low, int(guess) + 1)
        else:
            high = min(high, int(guess) - 1)
    return str((low + high) // 2)


_rng = random.Random(0)


def noisy(observation: str) -> str:
    """Half of the time a random number, else bisect."""
    return str(_rng.randint(1, N)) if _rng.random() < 0.5 else bisect(observation)


def uniform(observation: str) -> str:
    """A random number every turn."""
    return str(_rng.randint(1, N))


gym.register(id="GuessMyNumber-v0", entry_point=GuessNumberEnv)
