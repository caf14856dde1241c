"""ClarifyQA's answer score and reward.

    correctness = exact:  1 if normalize(answer) equals normalize(gold) for the gold answer or
                          one of its aliases, else 0
                  fuzzy:  the best token F1 between normalize(answer) and normalize(gold or alias)
    reward      = max(0, correctness - question_cost) if the agent asked its question, else
                  correctness                                        (always in [0, 1])

`normalize` lower-cases, drops the articles a/an/the and every punctuation mark except a
decimal point between digits and a minus sign before a number ("-1.1"), and removes thousands
separators ("1,048,576" -> "1048576"). Success is the exact criterion in both modes.
"""

from __future__ import annotations

import re
from collections import Counter

from archer_envs.clarify_qa.data import Reading

MATCH_MODES = ("exact", "fuzzy")
ARTICLES = frozenset({"a", "an", "the"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_KEPT = re.compile(r"(?<=\d)\.(?=\d)|(?<![\w.])-(?=\d)")
_MARK = re.compile(r"[^\w\s]|_")


def normalize_answer(text: str) -> str:
    text = text.lower().replace("\u2212", "-")
    text = _THOUSANDS.sub("", text)
    kept = {m.start() for m in _KEPT.finditer(text)}
    text = "".join(ch if i in kept or not _MARK.fullmatch(ch) else " " for i, ch in enumerate(text))
    return " ".join(t for t in text.split() if t not in ARTICLES)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD-style token F1 of two already normalised strings."""
    pred, ref = prediction.split(), gold.split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def golds(reading: Reading) -> list[str]:
    return [normalize_answer(g) for g in (reading.answer, *reading.aliases)]


def exact_match(answer: str, reading: Reading) -> bool:
    return normalize_answer(answer) in golds(reading)


def correctness(answer: str, reading: Reading, match: str = "exact") -> float:
    """How right `answer` is for the intended reading, in [0, 1]."""
    if match == "exact":
        return float(exact_match(answer, reading))
    if match == "fuzzy":
        pred = normalize_answer(answer)
        return max(token_f1(pred, g) for g in golds(reading))
    raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")


def answer_reward(score: float, asked: bool, question_cost: float) -> float:
    """The answer turn's reward: the correctness less the question's cost, clipped at 0."""
    return max(0.0, score - question_cost) if asked else score
