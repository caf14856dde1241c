"""BM25 product search (the `bm25s` library) with a deterministic ranking.

Each product is indexed as the text of its title, description and attributes. Text is lower
cased, split into letter/digit runs ("33.8" and "4wd" stay whole), English stop words are
dropped, and a light plural folding maps "shoes" -> "shoe", "batteries" -> "battery",
"boxes" -> "box", so a query in the singular finds titles in the plural. Results are the
products with a positive score, best first, ties broken by product id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import bm25s
import numpy as np

TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_STOPWORDS_TEXT = (
    "a an and are as at be but by d for from has have i in into is it its ll m me my need of "
    "on or our re s so such t that the their then there these they this to ve was want we "
    "were which will with would you your"
)
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def fold(word: str) -> str:
    """Light plural folding (not a full stemmer): enough for catalog nouns."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    return [fold(t) for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]


class SearchIndex:
    def __init__(self, ids: Sequence[str], texts: Sequence[str]):
        if len(ids) != len(texts):
            raise ValueError("one text per product id")
        self.ids = list(ids)
        self.bm25 = bm25s.BM25()
        self.bm25.index([tokenize(t) or [""] for t in texts], show_progress=False)
        # Rank of each id in sorted order: the tie-breaker of `search`.
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)
        self._id_rank = np.empty(len(self.ids), dtype=np.int64)
        self._id_rank[order] = np.arange(len(self.ids))

    def scores(self, query: str) -> np.ndarray:
        tokens = [t for t in tokenize(query) if t in self.bm25.vocab_dict]
        if not tokens:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)

    def search(self, query: str, k: int = 50) -> list[str]:
        """Ids of the (at most) `k` best products with a positive score."""
        scores = self.scores(query)
        order = np.lexsort((self._id_rank, -scores))
        return [self.ids[i] for i in order[:k] if scores[i] > 0]
