"""WebShop (Yao et al. 2022) in text mode, offline: search a catalog, open products, pick
options, buy; the reward scores how well the bought item matches the instruction.

Pages and actions (every clickable appears in square brackets on its page):
- search: `search[query]` (BM25 over the catalog), the only action there;
- results (`results_per_page` items of the top `max_results`): `click[<item id>]`,
  `click[next >]`, `click[< prev]` (previous results page), `click[back to search]`;
- item: `click[<option value>]`, `click[description]`, `click[features]`, `click[reviews]`,
  `click[< prev]` (back to the results), `click[back to search]`, `click[buy now]`;
- description / features / reviews: `click[< prev]` (back to the item), `click[back to search]`.

An action that is not valid on the page (bad syntax, an unknown clickable, a search outside the
search page) changes nothing, counts a turn, and the next observation says why. Every
observation starts with the instruction. "buy now" ends the episode with the WebShop reward
(see `reward.py`); `info["success"]` is reward >= `success_threshold` (1.0: a perfect match,
WebShop's success rate). Running out of turns (`max_turns`, 10) ends it with reward 0 and
`terminated=True` (the limit is a rule of the task).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from archer_envs.core import TextEnv
from archer_envs.webshop.agents import ExpertAgent, RandomAgent, key_terms
from archer_envs.webshop.catalog import Catalog, Goal, Product, load_bundled, load_original
from archer_envs.webshop.reward import compute_reward
from archer_envs.webshop.search import SearchIndex

ACTION = re.compile(r"(search|click)\s*\[(.*)\]", re.IGNORECASE | re.DOTALL)
BACK_TO_SEARCH, NEXT, PREV, BUY = "back to search", "next >", "< prev", "buy now"
SUBPAGES = ("description", "features", "reviews")
ITEM_BUTTONS = (PREV, BACK_TO_SEARCH, *SUBPAGES, BUY)


@lru_cache(maxsize=8)
def search_index(catalog: Catalog) -> SearchIndex:
    """The BM25 index of a catalog (built once per catalog and process)."""
    return SearchIndex(
        [p.asin for p in catalog.products],
        [" ".join([p.title, p.description, *p.attributes]) for p in catalog.products],
    )


def buttons(names: list[str] | tuple[str, ...]) -> str:
    return "Buttons: " + " ".join(f"[{n}]" for n in names)


def clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3].rstrip() + "..."


@dataclass
class _State:
    page: str = "search"
    query: str = ""
    results: list[str] = field(default_factory=list)
    page_no: int = 1
    asin: str | None = None
    chosen: dict[str, str] = field(default_factory=dict)


class WebShopEnv(TextEnv):
    def __init__(
        self,
        data_dir: str | None = None,
        goals: str = "human",
        products_file: str = "items_shuffle_1000.json",
        attributes_file: str = "items_ins_v2_1000.json",
        human_file: str = "items_human_ins.json",
        products_path: str | None = None,
        instructions_path: str | None = None,
        max_turns: int = 10,
        heldout_fraction: float = 0.2,
        results_per_page: int = 5,
        max_results: int = 50,
        success_threshold: float = 1.0,
        max_text_chars: int = 400,
        max_title_chars: int = 80,
        max_action_chars: int = 300,
        render_mode: str | None = None,
    ):
        """data_dir: a folder with the original WebShop files (`products_file`,
        `attributes_file`, `human_file`; `goals` "human" or "synthetic"); None uses the bundled
        catalog, or bundled-format files at `products_path` / `instructions_path`."""
        super().__init__(
            max_turns=max_turns,
            heldout_fraction=heldout_fraction,
            max_action_chars=max_action_chars,
            horizon_terminates=True,
            render_mode=render_mode,
        )
        if results_per_page < 1 or max_results < 1:
            raise ValueError("results_per_page and max_results must be >= 1")
        if not 0.0 < success_threshold <= 1.0:
            raise ValueError(f"success_threshold must be in (0, 1], got {success_threshold}")
        if data_dir is not None:
            if products_path or instructions_path:
                raise ValueError(
                    "pass data_dir (original files) or products_path/"
                    "instructions_path (bundled format), not both"
                )
            self.catalog = load_original(
                str(data_dir), products_file, attributes_file, human_file, goals
            )
            self._split_name = f"WebShop-{goals}"
        else:
            self.catalog = load_bundled(products_path, instructions_path)
            self._split_name = "WebShop"
        self.index = search_index(self.catalog)
        self.results_per_page = results_per_page
        self.max_results = max_results
        self.success_threshold = success_threshold
        self.max_text_chars = max_text_chars
        self.max_title_chars = max_title_chars
        self._by_lower = {p.asin.lower(): p.asin for p in self.catalog.products}
        self._goal: Goal | None = None
        self._state = _State()

    @property
    def split_name(self) -> str:
        return self._split_name

    def all_task_ids(self) -> list[str]:
        return [g.id for g in self.catalog.goals]

    @property
    def goal(self) -> Goal | None:
        return self._goal

    # ------------------------------------------------------------------------ episode hooks
    def _begin(self, task_id: str) -> str:
        self._goal = self.catalog.goal_by_id[task_id]
        self._state = _State()
        return self._render()

    def _turn(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        error = self._apply(action)
        info: dict[str, Any] = {"page": self._state.page, "invalid_action": error is not None}
        if self._state.page == "done":
            assert self._goal is not None and self._state.asin is not None
            bought = self.catalog.by_asin[self._state.asin]
            breakdown = compute_reward(
                bought, self._state.chosen, self._goal, self.catalog.by_asin[self._goal.asin]
            )
            info.update(
                purchased=bought.asin,
                chosen_options=dict(self._state.chosen),
                reward_detail=breakdown.as_dict(),
                success=breakdown.reward >= self.success_threshold,
            )
            return self._render(reward=breakdown.reward), breakdown.reward, True, info
        note = f"Invalid action: {error}" if error else None
        return self._render(note=note), 0.0, False, info

    # --------------------------------------------------------------------------- actions
    def clickables(self) -> list[str]:
        """The names `click[...]` accepts on the current page (lower case)."""
        s = self._state
        if s.page == "results":
            names = [BACK_TO_SEARCH]
            if s.page_no > 1:
                names.append(PREV)
            if s.page_no < self._n_pages():
                names.append(NEXT)
            return names + [a.lower() for a in self._page_items()]
        if s.page == "item":
            assert s.asin is not None
            values = [v for _, vs in self.catalog.by_asin[s.asin].options for v in vs]
            return [*ITEM_BUTTONS, *dict.fromkeys(values)]
        if s.page in SUBPAGES:
            return [PREV, BACK_TO_SEARCH]
        return []

    def _apply(self, action: str) -> str | None:
        """Apply one action to the page state; return why it is invalid, or None."""
        m = ACTION.fullmatch(action.strip())
        if m is None and not action:
            return "empty action."
        if m is None:
            return f"{clip(action, 60)!r} is not an action; use search[query] or click[name]."
        kind, arg = m.group(1).lower(), " ".join(m.group(2).split())
        s = self._state
        if kind == "search":
            if s.page != "search":
                return f"there is no search box on this page; click[{BACK_TO_SEARCH}] first."
            if not arg:
                return "empty search query."
            s.query = arg.lower()
            s.results = self.index.search(s.query, self.max_results)
            s.page, s.page_no = "results", 1
            return None
        if s.page == "search":
            return "nothing to click on the search page; use search[query]."
        name = arg.lower()
        if name not in self.clickables():
            return f"{clip(arg, 60)!r} is not clickable on this page."
        if name == BACK_TO_SEARCH:
            self._state = _State()
        elif s.page == "results":
            if name == NEXT:
                s.page_no += 1
            elif name == PREV:
                s.page_no -= 1
            else:
                s.page, s.asin, s.chosen = "item", self._by_lower[name], {}
        elif s.page == "item":
            if name == PREV:
                s.page = "results"
            elif name == BUY:
                s.page = "done"
            elif name in SUBPAGES:
                s.page = name
            else:
                assert s.asin is not None
                for option_type, values in self.catalog.by_asin[s.asin].options:
                    if name in values:
                        s.chosen[option_type] = name
                        break
        else:  # description / features / reviews
            s.page = "item"
        return None

    # ------------------------------------------------------------------------- rendering
    def _n_pages(self) -> int:
        return max(1, math.ceil(len(self._state.results) / self.results_per_page))

    def _page_items(self) -> list[str]:
        start = (self._state.page_no - 1) * self.results_per_page
        return self._state.results[start : start + self.results_per_page]

    def _render(self, note: str | None = None, reward: float | None = None) -> str:
        assert self._goal is not None
        lines = [f"Instruction: {self._goal.text}"]
        if note:
            lines.append(note)
        s = self._state
        if s.page == "search":
            lines += ["Page: search", "Type search[your query] to find products."]
        elif s.page == "results":
            lines += self._render_results()
        elif s.page == "done":
            assert s.asin is not None
            chosen = ", ".join(f"{k}: {v}" for k, v in s.chosen.items()) or "no options"
            lines += [f"Page: bought {s.asin.lower()} ({chosen})", f"Reward: {reward:.3f}"]
        else:
            assert s.asin is not None
            product = self.catalog.by_asin[s.asin]
            if s.page == "item":
                lines += self._render_item(product)
            else:
                lines += [
                    f"Page: {s.page} of {s.asin.lower()}",
                    self._render_subpage(product),
                    buttons(self.clickables()),
                ]
        return "\n".join(lines)

    def _render_results(self) -> list[str]:
        s = self._state
        if not s.results:
            return [
                f'Page: results for "{s.query}": no products match.',
                buttons(self.clickables()),
            ]
        lines = [f'Page: results for "{s.query}", page {s.page_no} of {self._n_pages()}']
        for asin in self._page_items():
            p = self.catalog.by_asin[asin]
            lines.append(f"[{asin.lower()}] {p.price_text} {clip(p.title, self.max_title_chars)}")
        names = [n for n in self.clickables() if n in (BACK_TO_SEARCH, PREV, NEXT)]
        return [*lines, buttons(names)]

    def _render_item(self, product: Product) -> list[str]:
        lines = [
            f"Page: item {product.asin.lower()}",
            f"Title: {clip(product.title, 3 * self.max_title_chars)}",
            f"Price: {product.price_text}",
        ]
        for option_type, values in product.options:
            chosen = self._state.chosen.get(option_type)
            label = f"Option {option_type}" + (f" (selected: {chosen})" if chosen else "")
            lines.append(f"{label}: " + " ".join(f"[{v}]" for v in values))
        return [*lines, buttons(ITEM_BUTTONS)]

    def _render_subpage(self, product: Product) -> str:
        page = self._state.page
        if page == "description":
            text = product.description or "No description."
        elif page == "features":
            text = "\n".join(f"- {f}" for f in product.features) or "No features listed."
        else:
            text = "\n".join(f"- {score}/5: {body}" for score, body in product.reviews)
            text = text or "No reviews yet."
        return clip(text, self.max_text_chars)

    # ----------------------------------------------------------------- scripted agents
    def _queries(self) -> list[str]:
        return sorted({p.query for p in self.catalog.products if p.query}) or ["item"]

    def make_agent(self, name: str, seed: int = 0, noise: float = 0.0) -> Any:
        """Scripted agents. "expert": searches the instruction's key terms, opens the
        best-matching affordable result, picks the options the instruction names, buys; with
        probability `noise` it takes a random valid action instead. "random": a random valid
        action (a random product-type search on the search page). Both read only the
        observation."""
        if name == "expert":
            return ExpertAgent(seed=seed, noise=noise, queries=self._queries())
        if name == "random":
            return RandomAgent(self._queries(), seed=seed)
        raise ValueError(f"unknown scripted agent {name!r} for WebShop: expert, random")

    def atomic_terms(self) -> list[str]:
        """Product ids: a policy clicks an item by copying its id from the results page, and a
        tokenizer trained for this env keeps each id one token (`archer sft` does)."""
        return [p.asin.lower() for p in self.catalog.products]  # as pages show them

    def corpus(self) -> list[str]:
        """Text this env can produce or expect: used to train a tokenizer offline."""
        lines = [
            "Page: search",
            "Type search[your query] to find products.",
            buttons(ITEM_BUTTONS),
            buttons([BACK_TO_SEARCH, PREV, NEXT]),
            "Invalid action: ",
            "Reward: 1.000",
            "No reviews yet.",
        ]
        lines += [f"click[{n}]" for n in (*ITEM_BUTTONS, NEXT)]
        for p in self.catalog.products:
            lines += [
                p.title,
                f"[{p.asin.lower()}] {p.price_text}",
                f"click[{p.asin.lower()}]",
                p.description,
                *p.features,
            ]
            lines += [f"Option {k}: " + " ".join(f"[{v}]" for v in vs) for k, vs in p.options]
        train = [g for g in self.catalog.goals if g.id in set(self.task_ids("train"))]
        lines += [f"Instruction: {g.text}" for g in train]
        lines += [f"search[{' '.join(key_terms(g.text)[:8])}]" for g in train]
        lines += [f"search[{q}]" for q in self._queries()]
        return lines
