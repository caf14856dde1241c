"""Guess My City (as in LMRL-Gym): find the secret city by asking questions, then name it.

Observation: the question/answer history after the header "Questions:\\n". Reward -1 per
question, 0 for the question that names the city (any alias), at most `max_turns` (20) questions
(losing then is part of the task: `terminated=True`). Naming another known city is a wrong guess
("No."). Answers never contain the city's name.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from archer_envs.agents import InfoGainAgent, RandomQuestionAgent
from archer_envs.core import TextEnv
from archer_envs.guess_my_city.oracle import NO, YES, City, CityOracle
from archer_envs.text_utils import PhraseIndex, parse_history

HEADER = "Questions:\n"
CITIES_FILE = Path(__file__).with_name("cities.json")

OPEN_QUESTIONS = [
    "What continent is it on?",
    "What country is it in?",
    "What language do people speak there?",
    "What is the climate like?",
    "How many people live there?",
    "Which hemisphere is it in?",
]
KNOWN_FOR = "What is it known for?"


@lru_cache(maxsize=4)
def load_cities(path: str | None = None) -> tuple[City, ...]:
    raw = json.loads(Path(path or CITIES_FILE).read_text(encoding="utf-8"))
    return tuple(
        City(**{**r, "aliases": tuple(r["aliases"]), "features": tuple(r["features"])}) for r in raw
    )


def guess_question(city: str) -> str:
    return f"Is it {city}?"


class GuessMyCityEnv(TextEnv):
    def __init__(
        self,
        cities_path: str | None = None,
        max_turns: int = 20,
        heldout_fraction: float = 0.2,
        max_action_chars: int = 300,
        render_mode: str | None = None,
    ):
        super().__init__(
            max_turns=max_turns,
            heldout_fraction=heldout_fraction,
            max_action_chars=max_action_chars,
            horizon_terminates=True,
            render_mode=render_mode,
        )
        self.cities = list(load_cities(cities_path))
        self.oracle = CityOracle(self.cities)
        self._aliases = {c.city: (c.city, *c.aliases) for c in self.cities}
        self._names = PhraseIndex(self._aliases)
        self._history = HEADER

    @property
    def split_name(self) -> str:
        return "GuessMyCity"

    def all_task_ids(self) -> list[str]:
        return [c.city for c in self.cities]

    def named_city(self, question: str) -> str | None:
        """The known city (any alias) a question names, if any: the secret first."""
        named = self._names.named(question)
        if self._task_id in named:
            return self._task_id
        return min(named) if named else None

    def expected_answer(self, secret: str, question: str) -> str:
        """What the env would answer (used by the scripted agents, on a hot path)."""
        named = self._names.named(question)
        if secret in named:
            return YES
        if named:
            return NO
        return self.oracle(secret, question)

    def _begin(self, task_id: str) -> str:
        self._history = HEADER
        return self._history

    def _turn(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        assert self._task_id is not None
        named = self.named_city(action) if action else None
        if not action:
            shown, answer = "(no question)", self.oracle(self._task_id, "")
        elif named == self._task_id:
            shown, answer = action, YES
        elif named is not None:
            shown, answer = action, NO
        else:
            shown, answer = action, self.oracle(self._task_id, action)
        self._history += f"{shown} {answer}\n"
        solved = named == self._task_id
        return self._history, (0.0 if solved else -1.0), solved, {"answer": answer}

    def closed_questions(self) -> list[str]:
        qs = ["Is it a capital city?", "Is it on the coast?"]
        qs += ["Is it in the northern hemisphere?", "Is it in the eastern hemisphere?"]
        qs += [f"Is it in {x}?" for x in sorted({c.continent for c in self.cities})]
        qs += [f"Do people there speak {x}?" for x in sorted({c.language for c in self.cities})]
        qs += [f"Does it have more than {n} million people?" for n in (1, 5, 10)]
        return qs

    def make_agent(self, name: str, seed: int = 0, noise: float = 0.0) -> Any:
        questions = OPEN_QUESTIONS + self.closed_questions()
        if name == "info_gain":
            return InfoGainAgent(
                candidates=[c.city for c in self.cities],
                questions=questions,
                expected_answer=self.expected_answer,
                guess=guess_question,
                parse=lambda obs: parse_history(obs, HEADER),
                noise=noise,
                seed=seed,
                last_resort=[KNOWN_FOR, "What landmarks does it have?"],
            )
        if name == "random":
            pool = questions + [KNOWN_FOR] + [guess_question(c.city) for c in self.cities]
            return RandomQuestionAgent(pool, seed)
        raise ValueError(f"unknown scripted agent {name!r} for Guess My City: info_gain, random")

    def corpus(self) -> list[str]:
        lines = [HEADER, YES, NO, *OPEN_QUESTIONS, KNOWN_FOR, *self.closed_questions()]
        for c in self.cities:
            lines.append(guess_question(c.city))
            lines += [self.oracle(c.city, q) for q in OPEN_QUESTIONS + [KNOWN_FOR]]
        return lines
