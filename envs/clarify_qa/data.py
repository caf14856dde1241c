"""ClarifyQA requests: the record types and the loader of `requests.json.gz`.

The bundled file is written by `generate_data.py` (a fixed seed reproduces it). A file of your
own in the same format works too (`ClarifyQAEnv(data_path=...)`): a JSON object (gzip or not)
with a list `requests`, each with `id`, `domain`, `text`, `dimension`, `keywords` and
`readings` (`phrase`, `answer`, `aliases`, `weight`).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REQUESTS_FILE = Path(__file__).resolve().with_name("requests.json.gz")


@dataclass(frozen=True)
class Reading:
    """One thing a request can mean."""

    phrase: str
    """What the user says to mean it ("brown rice"); the rule-based user's reply names it."""
    answer: str
    """The gold answer ("45 minutes")."""
    aliases: tuple[str, ...]
    """Other accepted spellings of the answer ("45", "1 hour")."""
    weight: float
    """How often a user who makes the request means this reading (the weights sum to 1)."""


@dataclass(frozen=True)
class Request:
    id: str
    domain: str
    text: str
    dimension: str
    """What the readings differ in ("kind of rice")."""
    keywords: tuple[str, ...]
    """Words that make a clarifying question about the dimension (the rule-based user)."""
    readings: tuple[Reading, ...]

    @property
    def ambiguous(self) -> bool:
        return len(self.readings) > 1

    @property
    def most_likely(self) -> Reading:
        """The reading with the largest weight (the first of equal ones)."""
        return max(self.readings, key=lambda r: r.weight)


def _read_json(path: Path) -> dict:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw.decode("utf-8"))


@lru_cache(maxsize=4)
def load_requests(path: str | None = None) -> tuple[Request, ...]:
    """Load (and cache) the requests; `path=None` reads the bundled file."""
    source = Path(path) if path else REQUESTS_FILE
    requests = []
    for r in _read_json(source)["requests"]:
        readings = tuple(
            Reading(x["phrase"], x["answer"], tuple(x.get("aliases", ())), float(x["weight"]))
            for x in r["readings"]
        )
        if not readings or any(x.weight <= 0 for x in readings):
            raise ValueError(f"{source}: request {r['id']!r} needs readings with weights > 0")
        total = sum(x.weight for x in readings)
        readings = tuple(Reading(x.phrase, x.answer, x.aliases, x.weight / total) for x in readings)
        requests.append(
            Request(r["id"], r["domain"], r["text"], r["dimension"], tuple(r["keywords"]), readings)
        )
    for field in ("id", "text"):
        values = [getattr(r, field) for r in requests]
        if len(set(values)) != len(values):
            raise ValueError(f"{source}: two requests have the same {field}")
    return tuple(requests)
