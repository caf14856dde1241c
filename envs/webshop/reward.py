"""WebShop's purchase reward (Yao et al. 2022, section 3.1 and `goal.py` of the original code).

    r = r_type * (|U_att ∩ Y_att| + |U_opt ∩ Y_opt| + 1[y_price <= u_price])
               / (|U_att| + |U_opt| + 1)

U is the goal (instruction attributes, options and price ceiling), Y the bought product with the
options the agent clicked.

- Attributes: a goal attribute is matched when some product attribute has a rapidfuzz
  `token_set_ratio` above 85 with it (after lower-casing and punctuation removal), or else when it appears as a phrase in the product's
  title, features or description (as in the original).
- Options: a goal option is matched when some chosen option value matches it: exactly for the
  option type "size" (where "8" and "8.5" are close strings but different sizes), by
  `token_set_ratio` > 85 otherwise. If the product offers no value matching it at all, it is
  matched when it appears as a phrase in the title, features or description (an item that only
  comes in black is black).
- r_type, the product-type factor: query match (same search query as the goal product),
  category match (at least two levels of the " › " category path shared) and a title score,
  the fraction of the goal product's title words found in the bought title. r_type = 1 if any
  of the three holds (title score > 0.2); else 0.5; and whatever the rest, 0.1 if the title
  score is below 0.1 and 0 if it is 0.

Differences from the original code, all deliberate:
- the original's title score counts nouns found by spaCy's en_core_web_lg tagger; here it counts
  content words (lower case, letters only, stop words dropped, plurals folded), so no model is
  needed. Content words include adjectives, so scores run a little higher than with nouns;
- the original counts matches from the purchased options' side and can count one option found
  only in the text; here each goal option is counted once, so |U_opt ∩ Y_opt| <= |U_opt|;
- text fallbacks match whole words ("red" is not found in "shredded"), the original used raw
  substrings; and there is no colour-name normalisation table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from archer_envs.webshop.catalog import Goal, Product
from archer_envs.webshop.search import STOPWORDS, fold
from rapidfuzz import fuzz, utils

FUZZY_THRESHOLD = 85.0
EXACT_MATCH_OPTIONS = frozenset({"size"})
WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class RewardBreakdown:
    reward: float
    r_type: float
    attribute_matches: int
    n_attributes: int
    option_matches: int
    n_options: int
    price_ok: bool
    query_match: bool
    category_match: bool
    title_score: float

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def fuzzy_match(a: str, b: str) -> bool:
    """token_set_ratio > 85 after lower-casing and turning punctuation into spaces (the
    preprocessing `thefuzz`, which the original used, applies by default)."""
    return fuzz.token_set_ratio(a, b, processor=utils.default_process) > FUZZY_THRESHOLD


def has_phrase(text: str, phrase: str) -> bool:
    phrase = phrase.strip().lower()
    return (
        bool(phrase)
        and re.search(rf"(?<![\w]){re.escape(phrase)}(?![\w]|\.\d)", text.lower()) is not None
    )


def product_text(product: Product) -> str:
    return " ".join([product.title, *product.features, product.description])


def title_words(title: str) -> set[str]:
    return {fold(w) for w in WORD.findall(title.lower()) if len(w) > 1 and w not in STOPWORDS}


def category_levels(product: Product) -> set[str]:
    return {x.strip().lower() for x in product.product_category.split("›") if x.strip()}


def type_reward(bought: Product, goal_product: Product) -> tuple[float, bool, bool, float]:
    """(r_type, query_match, category_match, title_score) of buying `bought` for a goal written
    from `goal_product`."""
    query_match = bool(goal_product.query) and bought.query == goal_product.query
    category_match = len(category_levels(bought) & category_levels(goal_product)) >= 2
    wanted = title_words(goal_product.title)
    title_score = len(title_words(bought.title) & wanted) / len(wanted) if wanted else 0.2
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, query_match, category_match, title_score


def attribute_matches(bought: Product, goal_attributes: Iterable[str]) -> int:
    text = product_text(bought)
    return sum(
        any(fuzzy_match(p, g) for p in bought.attributes) or has_phrase(text, g)
        for g in goal_attributes
    )


def _value_matches(option_type: str, value: str, goal_option: str) -> bool:
    if option_type in EXACT_MATCH_OPTIONS:
        return value == goal_option
    return fuzzy_match(value, goal_option)


def option_matches(bought: Product, chosen: Mapping[str, str], goal_options: Iterable[str]) -> int:
    text = product_text(bought)
    n = 0
    for g in goal_options:
        selectable = any(_value_matches(k, v, g) for k, vs in bought.options for v in vs)
        chosen_ok = any(_value_matches(k, v, g) for k, v in chosen.items())
        n += chosen_ok or (not selectable and has_phrase(text, g))
    return n


def compute_reward(
    bought: Product, chosen: Mapping[str, str], goal: Goal, goal_product: Product
) -> RewardBreakdown:
    r_type, query_match, category_match, title_score = type_reward(bought, goal_product)
    n_att = attribute_matches(bought, goal.attributes)
    n_opt = option_matches(bought, chosen, goal.options)
    price_ok = bought.price <= goal.price_upper
    total = (n_att + n_opt + int(price_ok)) / (len(goal.attributes) + len(goal.options) + 1)
    return RewardBreakdown(
        reward=r_type * total,
        r_type=r_type,
        attribute_matches=n_att,
        n_attributes=len(goal.attributes),
        option_matches=n_opt,
        n_options=len(goal.options),
        price_ok=price_ok,
        query_match=query_match,
        category_match=category_match,
        title_score=title_score,
    )
