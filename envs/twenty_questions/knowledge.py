"""The Twenty Questions knowledge base: words, aliases, categories and yes/no attributes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from archer_envs.text_utils import normalize

KNOWLEDGE_FILE = Path(__file__).with_name("knowledge.json")


@dataclass(frozen=True)
class Attribute:
    id: str
    question: str
    paraphrases: tuple[str, ...]


@dataclass(frozen=True)
class Word:
    word: str
    aliases: tuple[str, ...]
    category: str
    attributes: dict[str, bool]


@dataclass(frozen=True)
class KnowledgeBase:
    attributes: tuple[Attribute, ...]
    words: tuple[Word, ...]
    subset: tuple[str, ...]

    def word(self, name: str) -> Word:
        for w in self.words:
            if w.word == name:
                return w
        raise KeyError(f"unknown word {name!r}")

    def question_index(self) -> dict[str, str]:
        """Normalised question text (canonical and paraphrases) -> attribute id."""
        index: dict[str, str] = {}
        for attr in self.attributes:
            for q in (attr.question, *attr.paraphrases):
                index[normalize(q)] = attr.id
        return index


@lru_cache(maxsize=4)
def load_knowledge(path: str | None = None) -> KnowledgeBase:
    """Load (and cache) the knowledge base from JSON; `path=None` uses the bundled file."""
    raw = json.loads(Path(path or KNOWLEDGE_FILE).read_text(encoding="utf-8"))
    attributes = tuple(
        Attribute(a["id"], a["question"], tuple(a.get("paraphrases", []))) for a in raw["attributes"]
    )
    words = tuple(
        Word(w["word"], tuple(w["aliases"]), w["category"], dict(w["attributes"]))
        for w in raw["words"]
    )
    ids = {a.id for a in attributes}
    for w in words:
        missing = ids - set(w.attributes)
        if missing:
            raise ValueError(f"{path or KNOWLEDGE_FILE}: word {w.word!r} lacks {sorted(missing)}")
    return KnowledgeBase(attributes, words, tuple(raw.get("subset", [])))
