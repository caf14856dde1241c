"""String helpers shared by the word-game envs and their oracles."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_PUNCT = re.compile(r"[^\w\s'-]+", re.UNICODE)


def normalize(text: str) -> str:
    """Lowercase, drop punctuation (keeping apostrophes and hyphens inside words), collapse spaces."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def mentions(text: str, phrases: Iterable[str]) -> bool:
    """True if any phrase occurs in `text` as whole words (case- and punctuation-insensitive)."""
    padded = f" {normalize(text)} "
    return any(f" {normalize(p)} " in padded for p in phrases if normalize(p))


def redact(text: str, phrases: Iterable[str], replacement: str = "[redacted]") -> str:
    """Replace every whole-word, case-insensitive occurrence of any phrase with `replacement`."""
    for phrase in sorted(phrases, key=len, reverse=True):
        if phrase.strip():
            pattern = re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)", re.IGNORECASE)
            text = pattern.sub(replacement, text)
    return text


def parse_history(observation: str, header: str) -> list[tuple[str, str]]:
    """Split a "question answer" history (one turn a line, after `header`) into pairs.

    The question is everything up to and including the last '?' of the line; the rest is the
    answer. Lines without a '?' are kept whole as questions with an empty answer.
    """
    body = observation[len(header) :] if observation.startswith(header) else observation
    pairs = []
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        cut = line.rfind("?")
        if cut < 0:
            pairs.append((line, ""))
        else:
            pairs.append((line[: cut + 1].strip(), line[cut + 1 :].strip()))
    return pairs


class PhraseIndex:
    """Which keys (secret words, cities) a text names, by any of their aliases; cached per text.

    The scripted agents ask "what would the env answer?" for every candidate and question, so
    this sits on a hot path: each text is normalised once and each alias once, not per pair.
    """

    def __init__(self, aliases: dict[str, Iterable[str]]):
        self._phrases = {
            key: tuple(f" {n} " for n in (normalize(a) for a in names) if n)
            for key, names in aliases.items()
        }
        self.named = lru_cache(maxsize=131072)(self._named)

    def _named(self, text: str) -> frozenset[str]:
        padded = f" {normalize(text)} "
        return frozenset(k for k, ps in self._phrases.items() if any(p in padded for p in ps))
