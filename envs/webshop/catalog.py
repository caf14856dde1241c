"""Products and shopping instructions: the bundled catalog and the original WebShop files.

Both sources load into the same two record types, `Product` and `Goal`, and are cached per path
(a process builds each catalog and its search index once, however many envs it makes).

Bundled (default): `products.json.gz` and `instructions.json.gz` beside this file, written by
`generate_data.py`.

Original WebShop data (princeton-nlp/WebShop, `setup.sh` downloads it into `data/`):
- `items_shuffle_1000.json` / `items_shuffle.json`: a list of scraped products with `asin`,
  `name`, `full_description`, `small_description` (bullet points), `pricing` ("$12.99" or
  "$10.99$15.99"), `customization_options` ({name: [{"value": ...}, ...]}), `category`,
  `query`, `product_category` ("A › B › C");
- `items_ins_v2_1000.json` / `items_ins_v2.json`: {asin: {"attributes": [...], "instruction":
  str, "instruction_attributes": [...]}} (the synthetic goals);
- `items_human_ins.json`: {asin: [{"instruction": str, "instruction_attributes": [...],
  "instruction_options": [...]}, ...]} (the human-written goals the paper evaluates on).
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PRODUCTS_FILE = HERE / "products.json.gz"
INSTRUCTIONS_FILE = HERE / "instructions.json.gz"
PRICE_RANGE = [10.0 * i for i in range(1, 100)]
NO_PRICE_LIMIT = 1_000_000.0


@dataclass(frozen=True)
class Product:
    asin: str
    title: str
    price: float
    """The price the reward compares with the goal's ceiling."""
    price_text: str
    """The price as shown ("$12.99", or "$10.99 to $15.99" for original items with a range)."""
    category: str
    query: str
    product_category: str
    description: str
    features: tuple[str, ...]
    reviews: tuple[tuple[int, str], ...]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    """Option types in display order, each with its values (lower case)."""

    @property
    def options_dict(self) -> dict[str, tuple[str, ...]]:
        return dict(self.options)


@dataclass(frozen=True)
class Goal:
    id: str
    asin: str
    """The product the instruction was written from."""
    text: str
    attributes: tuple[str, ...]
    options: tuple[str, ...]
    """Goal option values (untyped, as in WebShop's human goals)."""
    price_upper: float
    """Price ceiling; `NO_PRICE_LIMIT` when the instruction names none."""


@dataclass(eq=False)
class Catalog:
    """Products and goals of one source; compared and hashed by identity (one per source)."""

    products: list[Product]
    goals: list[Goal]
    source: str

    def __post_init__(self) -> None:
        self.by_asin = {p.asin: p for p in self.products}
        self.goal_by_id = {g.id: g for g in self.goals}
        if len(self.by_asin) != len(self.products):
            raise ValueError(f"{self.source}: duplicate product ids")
        if len(self.goal_by_id) != len(self.goals):
            raise ValueError(f"{self.source}: duplicate instruction ids")
        missing = [g.id for g in self.goals if g.asin not in self.by_asin]
        if missing:
            raise ValueError(f"{self.source}: instructions {missing[:5]} name unknown products")
        if not self.goals:
            raise ValueError(f"{self.source}: no instructions")


def clean_text(text: Any) -> str:
    """One line, no square brackets (brackets mark clickables in observations)."""
    text = str(text or "").replace("[", "(").replace("]", ")")
    return " ".join(text.split())


def normalize_option(value: str) -> str:
    """Option values as WebShop's text mode shows them: lower case, "/" read as " | "."""
    return " ".join(str(value).strip().replace("/", " | ").lower().split())


def price_text(price: float) -> str:
    return f"${price:.2f}"


# ------------------------------------------------------------------------------ bundled
def _read_json(path: Path) -> Any:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def load_bundled(products_path: str | None = None, instructions_path: str | None = None) -> Catalog:
    ppath = Path(products_path) if products_path else PRODUCTS_FILE
    ipath = Path(instructions_path) if instructions_path else INSTRUCTIONS_FILE
    products = [
        Product(
            asin=r["asin"],
            title=clean_text(r["title"]),
            price=float(r["price"]),
            price_text=price_text(float(r["price"])),
            category=r["category"],
            query=r["query"],
            product_category=r["product_category"],
            description=clean_text(r["description"]),
            features=tuple(clean_text(f) for f in r["features"]),
            reviews=tuple((int(v["score"]), clean_text(v["body"])) for v in r["reviews"]),
            attributes=tuple(r["attributes"]),
            options=tuple(
                (k.lower(), tuple(normalize_option(v) for v in vs))
                for k, vs in r["options"].items()
            ),
        )
        for r in _read_json(ppath)["products"]
    ]
    goals = [
        Goal(
            id=r["id"],
            asin=r["asin"],
            text=clean_text(r["text"]),
            attributes=tuple(r["attributes"]),
            options=tuple(normalize_option(v) for v in r["options"].values()),
            price_upper=float(r["price_upper"]),
        )
        for r in _read_json(ipath)["instructions"]
    ]
    return Catalog(products, goals, f"bundled catalog {ppath.name}")


# ----------------------------------------------------------------------------- original
def _parse_pricing(pricing: Any) -> list[float]:
    """ "$12.99" -> [12.99]; "$10.99$15.99" or "$10.99 - $15.99" -> [10.99, 15.99]; [] -> [100.0]."""
    if isinstance(pricing, (int, float)):
        return [float(pricing)]
    if isinstance(pricing, list):
        values = [float(p) for p in pricing]
    else:
        values = []
        for part in str(pricing or "").split("$")[1:]:
            digits = re.sub(r"[^\d.]", "", part)
            if digits:
                values.append(float(digits))
    return values[:2] or [100.0]


def _original_product(raw: dict, attributes: dict[str, Any]) -> Product:
    asin = raw["asin"]
    pricing = _parse_pricing(raw.get("pricing"))
    if len(pricing) == 1:
        price, shown = pricing[0], price_text(pricing[0])
    else:
        # WebShop draws a price uniformly from the range when it loads; we draw it from a
        # generator seeded by the ASIN so the price is the same in every run.
        price = round(random.Random(asin).uniform(pricing[0], pricing[1]), 2)
        shown = f"{price_text(pricing[0])} to {price_text(pricing[1])}"
    bullets = raw.get("small_description") or []
    if not isinstance(bullets, list):
        bullets = [bullets]
    options = []
    for name, contents in (raw.get("customization_options") or {}).items():
        if not contents:
            continue
        values = [normalize_option(c["value"] if isinstance(c, dict) else c) for c in contents]
        options.append((name.lower(), tuple(dict.fromkeys(v for v in values if v))))
    reviews = raw.get("Reviews") or raw.get("reviews") or []
    return Product(
        asin=asin,
        title=clean_text(raw.get("name") or raw.get("Title")),
        price=price,
        price_text=shown,
        category=str(raw.get("category", "")),
        query=str(raw.get("query", "")).lower().strip(),
        product_category=str(raw.get("product_category", "")),
        description=clean_text(raw.get("full_description") or raw.get("Description")),
        features=tuple(clean_text(b) for b in bullets if b),
        reviews=tuple(
            (
                int(float(r.get("score", r.get("stars", 0)) or 0)),
                clean_text(r.get("body", r.get("review", ""))),
            )
            for r in reviews
            if isinstance(r, dict)
        ),
        attributes=tuple(attributes.get(asin, {}).get("attributes") or ()),
        options=tuple((k, v) for k, v in options if v),
    )


def _goal_price(product: Product, rng: random.Random) -> tuple[float, str]:
    """WebShop's price ceiling: the upper of two of the first four multiples of $10 above."""
    above = [p for p in PRICE_RANGE if p > product.price][:4]
    if len(above) < 2:
        return NO_PRICE_LIMIT, ""
    upper = max(rng.sample(above, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


@lru_cache(maxsize=4)
def load_original(
    data_dir: str,
    products_file: str = "items_shuffle_1000.json",
    attributes_file: str = "items_ins_v2_1000.json",
    human_file: str = "items_human_ins.json",
    goals: str = "human",
) -> Catalog:
    """Load the original WebShop files from `data_dir`.

    goals="human": one goal per human instruction of a loaded product (skipping those with no
    attributes), task id "<asin>-<k>". goals="synthetic": one goal per option combination of
    each product with a synthetic instruction, task id "<asin>-<k>", text "<instruction> with
    <option>: <value>, and ...". Price ceilings follow WebShop's rule, drawn from a generator
    seeded by the task id (WebShop draws them from the global RNG).
    """
    if goals not in ("human", "synthetic"):
        raise ValueError(f"goals must be 'human' or 'synthetic', got {goals!r}")
    root = Path(data_dir)
    raw_products = _read_json(root / products_file)
    attr_path = root / attributes_file
    attributes = _read_json(attr_path) if attr_path.exists() else {}
    products: list[Product] = []
    seen: set[str] = set()
    for raw in raw_products:
        asin = str(raw.get("asin", ""))
        if asin in ("", "nan") or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        products.append(_original_product(raw, attributes))
    goal_list: list[Goal] = []
    if goals == "human":
        human = _read_json(root / human_file)
        for product in products:
            for k, ins in enumerate(human.get(product.asin, [])):
                attrs = tuple(ins.get("instruction_attributes") or ())
                if not attrs:
                    continue
                tid = f"{product.asin}-{k}"
                upper, suffix = _goal_price(product, random.Random(tid))
                goal_list.append(
                    Goal(
                        id=tid,
                        asin=product.asin,
                        text=clean_text(str(ins["instruction"]).strip().strip(".") + suffix),
                        attributes=attrs,
                        options=tuple(
                            normalize_option(v) for v in ins.get("instruction_options") or ()
                        ),
                        price_upper=upper,
                    )
                )
    else:
        for product in products:
            info = attributes.get(product.asin) or {}
            if not info.get("instruction"):
                continue
            upper, suffix = _goal_price(product, random.Random(product.asin))
            names = sorted(product.options_dict)
            combos = itertools.product(*(product.options_dict[n] for n in names))
            for k, combo in enumerate(combos):
                opts = ", and ".join(f"{n}: {v}" for n, v in zip(names, combo, strict=True))
                goal_list.append(
                    Goal(
                        id=f"{product.asin}-{k}",
                        asin=product.asin,
                        text=clean_text(
                            info["instruction"] + (f" with {opts}" if opts else "") + suffix
                        ),
                        attributes=tuple(info.get("instruction_attributes") or ()),
                        options=tuple(combo),
                        price_upper=upper,
                    )
                )
    return Catalog(products, goal_list, f"WebShop data in {root} ({goals} goals)")
