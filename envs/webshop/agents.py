"""Scripted WebShop agents. Both read only the observation text (no env state), so one instance
can play many episodes in any order, in a batch.

`ExpertAgent`:
  1. search page: search the instruction's first 8 key terms (stop words, filler such as
     "looking", option-type words such as "color", and the price clause dropped);
  2. results page: open the listed item whose title shares the most key terms with the
     instruction among those within the price ceiling (ties: the higher ranked); if none on the
     page is affordable, go to the next page (up to page 3);
  3. item page: click, for each option type, the value the instruction names (the longest one
     if several do) unless it is already selected; then buy;
  4. description / features / reviews: go back to the item.
  With probability `noise` a turn is a random valid action instead (as `RandomAgent`).

`RandomAgent`: on the search page a random product-type search, elsewhere a uniformly random
clickable of the page.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from archer_envs.webshop.search import STOPWORDS, tokenize

BRACKETED = re.compile(r"\[([^\[\]]+)\]")
RESULT = re.compile(r"\[([^\[\]]+)\] \$([\d,]+(?:\.\d+)?)(?: to \$[\d,.]+)? (.*)")
OPTION = re.compile(r"Option (.+?)(?: \(selected: (.*)\))?: (\[.*)")
PRICE = re.compile(r"price lower than ([\d,]+(?:\.\d+)?) dollars")
_FILLER_TEXT = (
    "am looking find get like please buy search searching some pair set color colour size "
    "flavor scent style price lower than dollars"
)
FILLER = frozenset(_FILLER_TEXT.split())


@dataclass
class Page:
    instruction: str = ""
    kind: str = ""
    """search, results, item, description, features, reviews, bought (or "" if unknown)."""
    clickables: list[str] = field(default_factory=list)
    results: list[tuple[str, float, str]] = field(default_factory=list)
    """(item id, price, title) of each listed result."""
    options: list[tuple[str, list[str], str | None]] = field(default_factory=list)
    """(option type, values, selected value) on an item page."""
    page_no: int = 1


def parse_observation(obs: str) -> Page:
    """Read a WebShop observation back into its parts."""
    page = Page()
    lines = obs.splitlines()
    body: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("Instruction: ") and not page.instruction:
            page.instruction = line[len("Instruction: ") :]
        elif line.startswith("Page: "):
            header = line[len("Page: ") :]
            page.kind = header.split(" ", 1)[0]
            m = re.search(r", page (\d+) of \d+$", header)
            page.page_no = int(m.group(1)) if m else 1
            body = lines[i + 1 :]
            break
    for line in body:
        if page.kind == "search":
            break
        m = RESULT.fullmatch(line) if page.kind == "results" else None
        if m:
            page.results.append((m.group(1), float(m.group(2).replace(",", "")), m.group(3)))
        o = OPTION.fullmatch(line) if page.kind == "item" else None
        if o:
            page.options.append((o.group(1), BRACKETED.findall(o.group(3)), o.group(2)))
        if m or o or line.startswith("Buttons: "):
            page.clickables += BRACKETED.findall(line.split(" ", 1)[0] if m else line)
    return page


def price_ceiling(instruction: str) -> float:
    m = PRICE.search(instruction)
    return float(m.group(1).replace(",", "")) if m else float("inf")


def key_terms(instruction: str) -> list[str]:
    text = PRICE.sub("", instruction)
    terms = [t for t in tokenize(text) if t not in FILLER and t not in STOPWORDS]
    return list(dict.fromkeys(terms))


def names_value(instruction: str, value: str) -> bool:
    """Whether the instruction names an option value as a whole phrase ("8" is not in "8.5")."""
    pattern = rf"(?<![\w.]){re.escape(value.lower())}(?![\w]|\.\d)"
    return re.search(pattern, instruction.lower()) is not None


class RandomAgent:
    def __init__(self, queries: Sequence[str], seed: int = 0):
        if not queries:
            raise ValueError("RandomAgent needs at least one search query")
        self.queries = list(queries)
        self.rng = random.Random(seed)

    def __call__(self, observation: str) -> str:
        page = parse_observation(observation)
        if page.kind == "search" or not page.clickables:
            return f"search[{self.rng.choice(self.queries)}]"
        return f"click[{self.rng.choice(page.clickables)}]"


class ExpertAgent:
    def __init__(
        self,
        seed: int = 0,
        noise: float = 0.0,
        queries: Sequence[str] = ("item",),
        max_pages: int = 3,
        max_query_terms: int = 8,
    ):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.noise = noise
        self.max_pages = max_pages
        self.max_query_terms = max_query_terms
        self.rng = random.Random(seed)
        self.random = RandomAgent(queries, seed=seed + 1)

    def __call__(self, observation: str) -> str:
        if self.noise > 0 and self.rng.random() < self.noise:
            return self.random(observation)
        page = parse_observation(observation)
        if page.kind == "search":
            return f"search[{' '.join(key_terms(page.instruction)[: self.max_query_terms])}]"
        if page.kind == "results":
            return self._pick_result(page)
        if page.kind == "item":
            for _, values, selected in page.options:
                named = [v for v in values if names_value(page.instruction, v)]
                if named:
                    best = max(named, key=len)
                    if best != selected:
                        return f"click[{best}]"
            return "click[buy now]"
        if page.kind in ("description", "features", "reviews"):
            return "click[< prev]"
        return "click[back to search]"

    def _pick_result(self, page: Page) -> str:
        ceiling = price_ceiling(page.instruction)
        terms = set(key_terms(page.instruction))
        affordable = [(i, r) for i, r in enumerate(page.results) if r[1] <= ceiling]
        if not affordable:
            if "next >" in page.clickables and page.page_no < self.max_pages:
                return "click[next >]"
            if not page.results:
                return "click[back to search]"
            affordable = list(enumerate(page.results))
        _, best = max(affordable, key=lambda ir: (len(terms & set(tokenize(ir[1][2]))), -ir[0]))
        return f"click[{best[0]}]"
