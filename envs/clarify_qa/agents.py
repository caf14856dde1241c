"""Scripted ClarifyQA agents. They read only the observation (the request's text is looked up
in the env's requests), so one instance plays many episodes in any order, in a batch.

- `always_answer`: answers at once with the most likely reading's answer (right only when the
  user meant that reading);
- `always_ask`: asks which reading the user means (naming every reading), then answers the
  reading the user's reply names (the most likely one if the reply names none);
- `ask_when_ambiguous`: asks only when the request has several readings, else answers.

`noise` p: each answer is, with probability p, the answer of a uniformly drawn *other* reading
of the request (a wrong one; a request with one reading has none, so its answers stay right),
and `ask_when_ambiguous` also flips its ask-or-answer decision with probability p. `random`: a
uniformly random choice between a question from a small pool (about the dimension or not) and
the answer of a random reading of a random request of the same domain.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from archer_envs.clarify_qa.conversation import ANSWER, QUESTION, parse_observation
from archer_envs.clarify_qa.data import Reading, Request
from archer_envs.text_utils import mentions

AGENTS = ("always_answer", "always_ask", "ask_when_ambiguous", "random")
UNKNOWN_ANSWER = f"{ANSWER} I don't know."
OTHER_QUESTIONS = (
    f"{QUESTION} What do you mean?",
    f"{QUESTION} Why do you ask?",
    f"{QUESTION} Is this for work?",
)


def join_or(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def clarifying_question(request: Request) -> str:
    """The scripted question: names the dimension and every reading."""
    phrases = [r.phrase for r in request.readings]
    if not request.ambiguous:
        return f"{QUESTION} Do you mean {phrases[0]}?"
    return f"{QUESTION} Which {request.dimension} do you mean: {join_or(phrases)}?"


def answer(reading: Reading) -> str:
    return f"{ANSWER} {reading.answer}"


def revealed(request: Request, reply: str) -> Reading | None:
    """The reading a user's reply names (the longest phrase named, so "South Sudan" wins over
    "Sudan"), or None."""
    named = [r for r in request.readings if mentions(reply, [r.phrase])]
    return max(named, key=lambda r: len(r.phrase)) if named else None


class ScriptedAgent:
    def __init__(self, requests: Sequence[Request], policy: str, noise: float = 0.0, seed: int = 0):
        if policy not in AGENTS[:3]:
            raise ValueError(f"unknown policy {policy!r}: {', '.join(AGENTS[:3])}")
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.by_text = {r.text: r for r in requests}
        self.policy, self.noise = policy, noise
        self.rng = random.Random(seed)

    def _flip(self) -> bool:
        return self.noise > 0 and self.rng.random() < self.noise

    def wants_to_ask(self, request: Request) -> bool:
        if self.policy == "always_ask":
            return True
        if self.policy == "always_answer":
            return False
        return request.ambiguous != self._flip()

    def _answer(self, request: Request, believed: Reading) -> str:
        others = [r for r in request.readings if r is not believed]
        if others and self._flip():
            return answer(self.rng.choice(others))
        return answer(believed)

    def __call__(self, observation: str) -> str:
        conv = parse_observation(observation)
        request = self.by_text.get(conv.request)
        if request is None:
            return UNKNOWN_ANSWER
        if not conv.asked:
            if self.wants_to_ask(request):
                return clarifying_question(request)
            return self._answer(request, request.most_likely)
        believed = revealed(request, conv.last_reply) or request.most_likely
        return self._answer(request, believed)


class RandomAgent:
    def __init__(self, requests: Sequence[Request], seed: int = 0):
        self.by_text = {r.text: r for r in requests}
        self.by_domain: dict[str, list[Request]] = {}
        for r in requests:
            self.by_domain.setdefault(r.domain, []).append(r)
        self.all = list(requests)
        self.rng = random.Random(seed)

    def __call__(self, observation: str) -> str:
        request = self.by_text.get(parse_observation(observation).request)
        if self.rng.random() < 0.5:
            pool = list(OTHER_QUESTIONS) + ([clarifying_question(request)] if request else [])
            return self.rng.choice(pool)
        pool = self.by_domain[request.domain] if request else self.all
        return answer(self.rng.choice(self.rng.choice(pool).readings))
