"""A user's own env, in their own module, registered with nothing from archer but TextEnv.

Used by the tests as "user_envs:GuessNumber-v0" (Gymnasium's module:EnvId form), and as a
cheap env for end-to-end tests.
"""

from __future__ import annotations

import re

import gymnasium as gym

from archer_envs import TextEnv


class GuessNumberEnv(TextEnv):
    """Find a number in 1..n with "Is it more than K?" questions, then "Is it K?"."""

    HEADER = "Find the number.\n"

    def __init__(self, n: int = 8, max_turns: int = 6, **kwargs):
        super().__init__(max_turns=max_turns, heldout_fraction=0.25, **kwargs)
        self.n = n

    def all_task_ids(self) -> list[str]:
        return [str(i) for i in range(1, self.n + 1)]

    def _begin(self, task_id: str) -> str:
        self.secret, self.history = int(task_id), self.HEADER
        return self.history

    def _turn(self, action: str):
        more = re.fullmatch(r"is it more than (\d+)\?", action.lower())
        guess = re.fullmatch(r"is it (\d+)\?", action.lower())
        solved = bool(guess and int(guess.group(1)) == self.secret)
        if more:
            answer = "Yes." if self.secret > int(more.group(1)) else "No."
        else:
            answer = "Yes." if solved else "No."
        self.history += f"{action or '(nothing)'} {answer}\n"
        return self.history, (0.0 if solved else -1.0), solved, {}

    def make_agent(self, name: str, seed: int = 0, noise: float = 0.0):
        if name == "random":
            import random

            rng = random.Random(seed)
            pool = [f"Is it more than {k}?" for k in range(1, self.n)] + [
                f"Is it {k}?" for k in range(1, self.n + 1)
            ]
            return lambda obs: rng.choice(pool)
        raise ValueError(f"unknown agent {name!r}")


def bisect_agent(observation: str) -> str:
    """A user's scripted policy: binary search, reading only the observation."""
    low, high = 1, 8
    for line in observation.splitlines()[1:]:
        m = re.match(r"Is it more than (\d+)\? (Yes|No)\.", line)
        if m:
            k = int(m.group(1))
            low, high = (k + 1, high) if m.group(2) == "Yes" else (low, k)
    return f"Is it {low}?" if low == high else f"Is it more than {(low + high) // 2}?"


class BrokenEnv(GuessNumberEnv):
    """Raises on its third step: an env bug must end the episode, not the run."""

    def _turn(self, action: str):
        if self._turns == 2:
            raise RuntimeError("simulated env bug")
        return super()._turn(action)


gym.register(id="GuessNumber-v0", entry_point=GuessNumberEnv)
gym.register(id="BrokenGuessNumber-v0", entry_point=BrokenEnv)


class SayYesEnv(TextEnv):
    """One turn: saying "yes" earns 1, anything else 0. The smallest env an RL method must
    learn; a policy cloned from a coin-flipping agent starts at an expected return of 0.5."""

    def __init__(self, **kwargs):
        super().__init__(max_turns=1, heldout_fraction=0.25, **kwargs)

    def all_task_ids(self) -> list[str]:
        return [str(i) for i in range(8)]

    def _begin(self, task_id: str) -> str:
        return "Answer yes or no.\n"

    def _turn(self, action: str):
        said_yes = action.strip().lower().rstrip(".!") == "yes"
        return f"Answer yes or no.\n{action}\n", (1.0 if said_yes else 0.0), True, {
            "success": said_yes}

    def corpus(self) -> list[str]:
        return ["Answer yes or no.\n", "yes", "no"] * 20


def coin_agent(observation: str) -> str:
    import random

    return random.choice(["yes", "no"])


gym.register(id="SayYes-v0", entry_point=SayYesEnv)


class SayYesThriceEnv(TextEnv):
    """Three turns, and the reward only at the end: 1 if every answer was "yes", else 0.
    From a 50/50 start the expected return is 1/8. Credit must flow back through the TD
    target and the target critic's V(s'): the first two utterances earn nothing themselves."""

    def __init__(self, **kwargs):
        super().__init__(max_turns=3, heldout_fraction=0.25, **kwargs)

    def all_task_ids(self) -> list[str]:
        return [str(i) for i in range(8)]

    def _begin(self, task_id: str) -> str:
        self._history = "Answer yes or no, three times.\n"
        self._all_yes = True
        return self._history

    def _turn(self, action: str):
        self._all_yes &= action.strip().lower().rstrip(".!") == "yes"
        self._history += f"{action}\n"
        last = self._turns + 1 == self.max_turns
        reward = 1.0 if last and self._all_yes else 0.0
        return self._history, reward, last, {"success": last and self._all_yes}

    def corpus(self) -> list[str]:
        return ["Answer yes or no, three times.\n", "yes\n", "no\n"] * 20


gym.register(id="SayYesThrice-v0", entry_point=SayYesThriceEnv)
