"""Scripted agents for question-asking games. An agent is any callable `observation -> action`.

`InfoGainAgent` rebuilds its belief from the observation alone (no hidden state), so one
instance can play many episodes, in any order, in a batch:
  1. parse the question/answer history;
  2. keep the candidates whose expected answers agree with every answer seen;
  3. with probability `noise` ask a random question; otherwise, if one candidate is left (or no
     question can split the rest), guess it; else ask the question whose answers over the
     remaining candidates have the highest entropy (the most informative one), looking at
     `last_resort` questions only when no regular question splits the candidates.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence


class InfoGainAgent:
    def __init__(
        self,
        candidates: Sequence[str],
        questions: Sequence[str],
        expected_answer: Callable[[str, str], str],
        guess: Callable[[str], str],
        parse: Callable[[str], list[tuple[str, str]]],
        noise: float = 0.0,
        seed: int = 0,
        noise_questions: Sequence[str] | None = None,
        last_resort: Sequence[str] = (),
    ):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.candidates = list(candidates)
        self.questions = list(questions)
        self.expected_answer = expected_answer
        self.guess = guess
        self.parse = parse
        self.noise = noise
        self.noise_questions = list(noise_questions or questions)
        self.last_resort = list(last_resort)
        self.rng = random.Random(seed)

    def remaining(self, observation: str) -> list[str]:
        history = self.parse(observation)
        return [
            c
            for c in self.candidates
            if all(self.expected_answer(c, q) == a for q, a in history)
        ]

    def _entropy(self, question: str, pool: list[str]) -> float:
        counts = Counter(self.expected_answer(c, question) for c in pool)
        n = len(pool)
        return -sum(k / n * math.log2(k / n) for k in counts.values())

    def __call__(self, observation: str) -> str:
        if self.noise > 0 and self.rng.random() < self.noise:
            return self.rng.choice(self.noise_questions)
        pool = self.remaining(observation) or list(self.candidates)
        if len(pool) == 1:
            return self.guess(pool[0])
        asked = {q for q, _ in self.parse(observation)}
        best_q, best_h = None, 0.0
        for questions in (self.questions, self.last_resort):
            for q in questions:
                if q in asked:
                    continue
                h = self._entropy(q, pool)
                if h > best_h + 1e-12:
                    best_q, best_h = q, h
            if best_q is not None:
                break
        if best_q is None:
            return self.guess(pool[0])
        return best_q


class RandomQuestionAgent:
    """Asks a uniformly random question from a fixed pool (which may include guesses)."""

    def __init__(self, pool: Sequence[str], seed: int = 0):
        if not pool:
            raise ValueError("RandomQuestionAgent needs a non-empty question pool")
        self.pool = list(pool)
        self.rng = random.Random(seed)

    def __call__(self, observation: str) -> str:
        return self.rng.choice(self.pool)
