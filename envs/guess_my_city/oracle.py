"""Rule-based oracle for Guess My City.

Closed questions ("Is it a capital?", "Is it in Europe?", "Do people speak Spanish there?",
"Does it have more than 5 million people?") get "Yes." or "No."; open questions ("What continent
is it on?", "What is the climate like?", "What is it known for?") get a short sentence. Every
answer passes through a filter that redacts the city's name and aliases, so the oracle never
leaks the secret (a country named like its city, such as Singapore, is redacted too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from archer_envs.text_utils import mentions, normalize, redact

YES, NO, UNKNOWN = "Yes.", "No.", "I can't answer that."
BANDS = {  # metro population band -> [low, high) in millions
    "under 1 million": (0.0, 1.0),
    "1 to 5 million": (1.0, 5.0),
    "5 to 10 million": (5.0, 10.0),
    "over 10 million": (10.0, float("inf")),
}
_MORE_THAN = re.compile(r"(?:more|over|bigger|larger|greater) than (\d+(?:\.\d+)?) million")
_LESS_THAN = re.compile(r"(?:less|fewer|under|smaller) than (\d+(?:\.\d+)?) million")
_OPEN_WORDS = ("what", "which", "how", "where", "tell", "describe")


@dataclass(frozen=True)
class City:
    city: str
    aliases: tuple[str, ...]
    country: str
    continent: str
    hemisphere: str
    east_west: str
    coastal: bool
    capital: bool
    population_band: str
    language: str
    climate: str
    features: tuple[str, ...]


def country_phrase(country: str) -> str:
    """ "the United States", "the Netherlands", but "Japan"."""
    first = country.split()[0].lower()
    if first in ("united", "democratic", "czech", "dominican") or country.endswith("s"):
        return f"the {country}"
    return country


class CityOracle:
    """`answer(secret_city, question) -> str` over a table of `City` records."""

    def __init__(self, cities: list[City]):
        self.cities = {c.city: c for c in cities}
        self.continents = sorted({c.continent for c in cities}, key=len, reverse=True)
        self.countries = sorted({c.country for c in cities}, key=len, reverse=True)
        self.languages = sorted({c.language for c in cities}, key=len, reverse=True)
        self.climates = sorted({c.climate for c in cities}, key=len, reverse=True)
        # Scripted agents ask about every (candidate, question) pair: answers are cached.
        self._cached = lru_cache(maxsize=262144)(self._redacted_answer)

    def __call__(self, secret: str, question: str) -> str:
        return self._cached(secret, question)

    def _redacted_answer(self, secret: str, question: str) -> str:
        city = self.cities[secret]
        return redact(self._answer(city, question), (city.city, *city.aliases), "that city")

    def _answer(self, c: City, question: str) -> str:
        q = normalize(question)
        if not q:
            return UNKNOWN
        is_open = q.split()[0] in _OPEN_WORDS
        if is_open:
            return self._open(c, q)
        return self._closed(c, q)

    @staticmethod
    def _open(c: City, q: str) -> str:
        if "continent" in q:
            return f"It is in {c.continent}."
        if "country" in q:
            return f"It is in {country_phrase(c.country)}."
        if "language" in q or "speak" in q:
            return f"People there mainly speak {c.language}."
        if "climate" in q or "weather" in q:
            return f"It has a {c.climate} climate."
        if "hemisphere" in q:
            return f"It is in the {c.hemisphere} and {c.east_west} hemispheres."
        if "people" in q or "population" in q or "how big" in q:
            return f"Its metro area has {c.population_band} people."
        if "landmark" in q or "else" in q:
            return f"It has {c.features[1 % len(c.features)]}."
        if "known for" in q or "famous" in q or "notable" in q:
            return f"It is known for {c.features[0]}."
        return UNKNOWN

    def _closed(self, c: City, q: str) -> str:
        def yn(value: bool) -> str:
            return YES if value else NO

        if "capital" in q:
            return yn(c.capital)
        if any(w in q.split() for w in ("coast", "coastal", "ocean", "sea", "beach", "seaside")):
            return yn(c.coastal)
        for side in ("northern", "southern"):
            if side in q:
                return yn(c.hemisphere == side)
        for side in ("eastern", "western"):
            if side in q:
                return yn(c.east_west == side)
        for m, above in ((_MORE_THAN.search(q), True), (_LESS_THAN.search(q), False)):
            if m:
                low, high = BANDS[c.population_band]
                x = float(m.group(1))
                if low >= x:
                    return yn(above)
                if high <= x:
                    return yn(not above)
                return f"Its metro area has {c.population_band} people."
        # The longest value named wins, so "South Africa" is a country, not the continent.
        named = [
            (len(value), value == actual)
            for values, actual in (
                (self.continents, c.continent),
                (self.countries, c.country),
                (self.languages, c.language),
                (self.climates, c.climate),
            )
            for value in values
            if mentions(q, [value])
        ]
        return yn(max(named)[1]) if named else UNKNOWN
