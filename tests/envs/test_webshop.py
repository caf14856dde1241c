import gzip
import json
from itertools import combinations

import archer_envs  # noqa: F401
import gymnasium as gym
import numpy as np
import pytest
from archer_envs.webshop import WebShopEnv, parse_observation
from archer_envs.webshop import generate_data as gen
from archer_envs.webshop.catalog import Goal, Product, load_bundled
from archer_envs.webshop.reward import compute_reward, fuzzy_match
from archer_envs.webshop.search import SearchIndex


@pytest.fixture(scope="module")
def env():
    return gym.make("archer/WebShop-v0").unwrapped


def play(env, actions, task_id):
    obs, _ = env.reset(options={"task_id": task_id})
    out = []
    for a in actions:
        out.append(env.step(a))
    return obs, out


def goal_task(env):
    """A held-out task whose goal product has at least two option types."""
    titles = [p.title for p in env.catalog.products]
    for tid in env.task_ids("eval"):
        goal = env.catalog.goal_by_id[tid]
        product = env.catalog.by_asin[goal.asin]
        if (
            len(product.options) >= 2
            and len(goal.options) == 2
            and titles.count(product.title) == 1
        ):
            return tid, goal
    raise AssertionError("no suitable task")


# ---------------------------------------------------------------------------- pages, actions
def test_pages_and_every_action_type():
    env = gym.make("archer/WebShop-v0", max_turns=30).unwrapped  # this tour takes 13 steps
    tid, goal = goal_task(env)
    product = env.catalog.by_asin[goal.asin]
    obs, _ = env.reset(options={"task_id": tid})
    assert obs.splitlines()[:2] == [f"Instruction: {goal.text}", "Page: search"]

    obs, r, term, trunc, info = env.step(f"search[{product.title}]")
    assert (r, term, trunc, info["page"]) == (0.0, False, False, "results")
    page = parse_observation(obs)
    assert page.kind == "results" and len(page.results) == 5 and page.page_no == 1
    assert page.results[0][0] == product.asin.lower()  # its own title finds it first
    assert "[back to search] [next >]" in obs and "[< prev]" not in obs

    obs, *_ = env.step("click[next >]")
    assert parse_observation(obs).page_no == 2 and "[< prev]" in obs
    obs, *_ = env.step("CLICK[< Prev]")  # case-insensitive
    assert parse_observation(obs).page_no == 1

    obs, *_, info = env.step(f"click[{product.asin.lower()}]")
    page = parse_observation(obs)
    assert info["page"] == "item" and page.kind == "item"
    assert f"Title: {product.title}" in obs and f"Price: {product.price_text}" in obs
    assert [name for name, _, _ in page.options] == [name for name, _ in product.options]
    for button in ("< prev", "back to search", "description", "features", "reviews", "buy now"):
        assert button in page.clickables

    for sub, text in (
        ("description", product.description),
        ("features", product.features[0]),
        ("reviews", product.reviews[0][1]),
    ):
        obs, *_, info = env.step(f"click[{sub}]")
        assert info["page"] == sub and text[:30] in obs
        assert obs.splitlines()[-1] == "Buttons: [< prev] [back to search]"
        obs, *_, info = env.step("click[< prev]")
        assert info["page"] == "item"

    obs, *_, info = env.step("click[< prev]")
    assert info["page"] == "results"
    obs, *_, info = env.step("click[back to search]")
    assert info["page"] == "search" and "Page: search" in obs


def test_options_and_buy_end_the_episode_with_the_reward(env):
    tid, goal = goal_task(env)
    product = env.catalog.by_asin[goal.asin]
    actions = [f"search[{product.title}]", f"click[{product.asin}]"]  # upper-case id works too
    actions += [f"click[{v}]" for v in goal.options]
    obs, steps = play(env, [*actions, "click[buy now]"], tid)
    item_obs = steps[-2][0]
    for value in goal.options:
        assert f"(selected: {value})" in item_obs
    obs, r, term, trunc, info = steps[-1]
    assert (r, term, trunc, info["success"]) == (1.0, True, False, True)
    assert info["purchased"] == product.asin and set(info["chosen_options"].values()) == set(
        goal.options
    )
    assert obs.splitlines()[-1] == "Reward: 1.000"
    with pytest.raises(RuntimeError):
        env.step("click[buy now]")

    # Buying without picking the options: partial reward, not a success.
    _, steps = play(env, actions[:2] + ["click[buy now]"], tid)
    _, r, term, _, info = steps[-1]
    n = len(goal.attributes) + len(goal.options) + 1
    assert term and not info["success"] and r == pytest.approx((n - len(goal.options)) / n)


def test_success_threshold_is_configurable():
    env = gym.make("archer/WebShop-v0", success_threshold=0.5).unwrapped
    tid, goal = goal_task(env)
    asin = goal.asin
    _, steps = play(
        env, [f"search[{env.catalog.by_asin[asin].title}]", f"click[{asin}]", "click[buy now]"], tid
    )
    _, r, term, _, info = steps[-1]
    assert term and 0.5 <= r < 1.0 and info["success"]
    with pytest.raises(ValueError, match="success_threshold"):
        WebShopEnv(success_threshold=0.0)


def test_invalid_actions_change_nothing_and_count_a_turn(env):
    tid = env.task_ids("eval")[0]
    env.reset(options={"task_id": tid})
    cases = [
        ("buy something", "is not an action"),
        ("click[buy now]", "nothing to click"),
        ("search[]", "empty search"),
    ]
    for action, reason in cases:
        obs, r, term, _, info = env.step(action)
        assert info["invalid_action"] and r == 0.0 and not term
        assert obs.startswith("Instruction: ") and reason in obs and "Page: search" in obs
    obs, *_ = env.step("search[yoga mat]")
    before = obs.split("\n", 1)[1]
    for action, reason in [
        ("search[tent]", "no search box"),
        ("click[b0nothere]", "not clickable"),
        ("click[< prev]", "not clickable"),
    ]:
        obs, r, term, _, info = env.step(action)
        assert info["invalid_action"] and reason in obs
        assert obs.split("\n", 2)[2] == before  # same page under the note
    assert info["turn"] == 7


def test_horizon_terminates_with_zero_reward():
    env = gym.make("archer/WebShop-v0", max_turns=3).unwrapped
    env.reset(seed=0)
    results = [env.step("search[yoga mat]"), env.step("click[next >]"), env.step("click[next >]")]
    assert [t[2] for t in results] == [False, False, True]
    _, r, term, trunc, info = results[-1]
    assert (r, term, trunc, info["success"]) == (0.0, True, False, False)
    assert gym.make("archer/WebShop-v0").unwrapped.max_turns == 10


def test_no_results_page(env):
    env.reset(options={"task_id": env.task_ids("eval")[0]})
    obs, *_, info = env.step("search[zzzz qqqq]")
    assert "no products match" in obs and obs.endswith("Buttons: [back to search]")


# ----------------------------------------------------------------------------------- reward
def product(**kw):
    base = dict(
        asin="B0GOAL0001",
        title="Lumora Clip In Natural Looking Hair Extensions",
        price=30.0,
        price_text="$30.00",
        category="beauty",
        query="hair extensions",
        product_category="Beauty › Hair Care › Extensions",
        description="",
        features=(),
        reviews=(),
        attributes=("clip in", "natural looking"),
        options=(("color", ("black", "jet black", "blonde")), ("size", ("16 inch", "18 inch"))),
    )
    return Product(**{**base, **kw})


def goal(**kw):
    base = dict(
        id="g",
        asin="B0GOAL0001",
        text="",
        attributes=("clip in", "natural looking"),
        options=("blonde", "18 inch"),
        price_upper=40.0,
    )
    return Goal(**{**base, **kw})


def test_reward_perfect_match():
    # (2 attributes + 2 options + price) / (2 + 2 + 1) = 5/5, r_type 1 (same product)
    b = compute_reward(product(), {"color": "blonde", "size": "18 inch"}, goal(), product())
    assert b.reward == 1.0 and b.r_type == 1.0 and b.title_score == 1.0


def test_reward_partial_match_fuzzy_exact_and_text_fallback():
    bought = product(
        asin="B0OTHER001",
        price=45.0,
        attributes=("clip-in",),
        features=("HEAT RESISTANT: safe up to 350F.",),
    )
    g = goal(attributes=("clip in", "heat resistant", "human hair"), options=("black", "18 inch"))
    b = compute_reward(bought, {"color": "jet black", "size": "16 inch"}, g, product())
    # attributes: "clip in" ~ "clip-in" (fuzzy 100), "heat resistant" in the features, "human
    #   hair" nowhere -> 2 of 3; options: "jet black" ~ "black" (token set 100) but size is
    #   exact and 16 inch != 18 inch -> 1 of 2; price 45 > 40 -> 0.
    # r = 1.0 * (2 + 1 + 0) / (3 + 2 + 1) = 3/6 = 0.5
    assert (b.attribute_matches, b.option_matches, b.price_ok) == (2, 1, False)
    assert b.reward == pytest.approx(0.5)


def test_reward_option_found_in_text_when_not_selectable():
    bought = product(
        asin="B0OTHER002",
        title="Lumora Black Clip In Natural Looking Hair Extensions",
        options=(("size", ("16 inch", "18 inch")),),
    )
    b = compute_reward(bought, {"size": "18 inch"}, goal(options=("black", "18 inch")), product())
    # "black" cannot be selected but the title says so -> 2 of 2 options; (2 + 2 + 1) / 5 = 1
    assert b.option_matches == 2 and b.reward == 1.0
    # but an option the product offers must be selected: "blonde" is offered, not chosen
    b = compute_reward(product(title="Blonde Clip In"), {}, goal(options=("blonde",)), product())
    assert b.option_matches == 0


def test_reward_type_factor():
    goal_product = product()  # content words: lumora clip natural looking hair extension (6)
    other = dict(
        asin="B0OTHER003",
        title="Velvetine Hair Dryer Brush",
        query="hair dryers",
        product_category="Beauty › Tools › Dryers",
        attributes=(),
        options=(),
    )
    # title score 1/6 ("hair") in [0.1, 0.2], other query, one shared category level
    # -> r_type 0.5; attributes 0 of 1, price ok: 0.5 * (0 + 0 + 1) / (1 + 0 + 1) = 0.25
    b = compute_reward(
        product(**other), {}, goal(attributes=("natural looking",), options=()), goal_product
    )
    assert b.title_score == pytest.approx(1 / 6) and b.r_type == 0.5
    assert not b.query_match and not b.category_match and b.reward == pytest.approx(0.25)
    # two shared category levels -> category match -> r_type 1: 1.0 * 1/2 = 0.5
    same_dept = product(**{**other, "product_category": "Beauty › Hair Care › Dryers"})
    b = compute_reward(
        same_dept, {}, goal(attributes=("natural looking",), options=()), goal_product
    )
    assert b.category_match and b.r_type == 1.0 and b.reward == pytest.approx(0.5)
    # no title word in common -> r_type 0 whatever else matches
    b = compute_reward(
        product(**{**other, "title": "Oakhurst Office Chair"}), {}, goal(options=()), goal_product
    )
    assert b.title_score == 0.0 and b.r_type == 0.0 and b.reward == 0.0


def test_fuzzy_threshold():
    assert fuzzy_match("navy blue", "blue")  # token subset: 100
    assert not fuzzy_match("for dry hair", "for curly hair")  # 84.6 <= 85


def test_every_bundled_goal_product_scores_one(env):
    cat = env.catalog
    for g in cat.goals:
        p = cat.by_asin[g.asin]
        chosen = {k: v for k, vs in p.options for v in vs if v in g.options}
        assert compute_reward(p, chosen, g, p).reward == 1.0, g.id


def test_bundled_pools_are_unambiguous_for_the_fuzzy_matcher():
    for cat in gen.CATEGORIES:
        for t in gen.TYPES[cat.name]:
            pool = [a for group in t.attrs for a in group.split("|")]
            for a, b in combinations(pool, 2):
                assert not fuzzy_match(a, b), (t.query, a, b)
            for name, values in t.options:
                if name != "size":
                    for a, b in combinations(values, 2):
                        assert not fuzzy_match(a, b), (t.query, a, b)


# ----------------------------------------------------------------------------------- search
def test_bm25_is_deterministic_with_ties_broken_by_id(env):
    index = SearchIndex(["b2", "a1", "c3", "a0"], ["red shoe", "red shoes", "blue hat", "red hat"])
    assert index.search("red shoes") == ["a1", "b2", "a0"]  # a1/b2 tie; hat only "red"
    assert index.search("nothing here") == []
    catalog = env.catalog
    fresh = SearchIndex(
        [p.asin for p in catalog.products],
        [" ".join([p.title, p.description, *p.attributes]) for p in catalog.products],
    )
    for q in ("yoga mat non slip", "black dress", "organic coffee beans whole bean", "shoes"):
        assert env.index.search(q) == fresh.search(q) == env.index.search(q)
    scores = env.index.scores("black dress")
    assert np.isfinite(scores).all() and scores.shape == (len(catalog.products),)


# ------------------------------------------------------------------------- original format
def write_original_sample(root):
    items = [
        {
            "asin": "B000000001",
            "name": "Acme Clip-In Hair Extensions [Natural Look]",
            "full_description": "Soft and natural looking hair.",
            "small_description": "Clip in, easy",
            "pricing": "$20.00$30.00",
            "category": "beauty",
            "query": "hair extensions",
            "product_category": "Beauty & Personal Care › Hair Care › Extensions",
            "customization_options": {
                "Color": [
                    {"value": "Black/Brown", "image": None},
                    {"value": "Blonde", "image": None},
                ],
                "Size": [{"value": "16 Inch"}, {"value": "18 Inch"}],
            },
            "images": [""],
        },
        {
            "asin": "B000000002",
            "name": "Acme Red Running Shoes",
            "full_description": "Fast.",
            "small_description": ["Lightweight", "Breathable"],
            "pricing": "$55.50",
            "category": "fashion",
            "query": "running shoes",
            "product_category": "Clothing › Shoes › Running",
            "customization_options": None,
            "images": [""],
        },
        {"asin": "B000000001", "name": "duplicate", "pricing": ""},
        {"asin": "nan", "name": "no asin", "pricing": ""},
    ]
    attrs = {
        "B000000001": {
            "attributes": ["natural looking", "clip in"],
            "instruction": "i want natural looking clip in hair extensions",
            "instruction_attributes": ["natural looking"],
        },
        "B000000002": {"attributes": ["lightweight"], "instruction": None},
    }
    human = {
        "B000000001": [
            {
                "instruction": "i need natural looking hair extensions.",
                "instruction_attributes": ["natural looking", "clip in"],
                "instruction_options": ["black/brown", "18 inch"],
            }
        ],
        "B000000002": [
            {
                "instruction": "red running shoes",
                "instruction_attributes": [],
                "instruction_options": [],
            },
            {
                "instruction": "lightweight running shoes",
                "instruction_attributes": ["lightweight"],
                "instruction_options": [],
            },
        ],
    }
    (root / "items_shuffle_1000.json").write_text(json.dumps(items))
    (root / "items_ins_v2_1000.json").write_text(json.dumps(attrs))
    (root / "items_human_ins.json").write_text(json.dumps(human))


def test_original_webshop_files(tmp_path):
    write_original_sample(tmp_path)
    env = WebShopEnv(data_dir=str(tmp_path), heldout_fraction=0.0)
    assert env.task_ids("all") == ["B000000001-0", "B000000002-1"]  # no-attribute goal skipped
    assert [p.asin for p in env.catalog.products] == ["B000000001", "B000000002"]
    p = env.catalog.by_asin["B000000001"]
    assert 20.0 <= p.price <= 30.0 and p.price_text == "$20.00 to $30.00"
    assert p.options == (("color", ("black | brown", "blonde")), ("size", ("16 inch", "18 inch")))
    assert p.title == "Acme Clip-In Hair Extensions (Natural Look)" and p.features == (
        "Clip in, easy",
    )
    g = env.catalog.goal_by_id["B000000001-0"]
    # price ceiling: the upper of two of $30, $40, $50, $60 (the first multiples of 10 above)
    assert g.price_upper in (40.0, 50.0, 60.0)
    assert (
        g.text
        == f"i need natural looking hair extensions, and price lower than {g.price_upper:.2f} dollars"
    )

    obs, _ = env.reset(options={"task_id": "B000000001-0"})
    assert obs.startswith("Instruction: i need natural looking")
    obs, *_ = env.step("search[hair extensions]")
    assert parse_observation(obs).results[0][0] == "b000000001"
    for a in ("click[b000000001]", "click[black | brown]", "click[18 inch]"):
        obs, *_ = env.step(a)
    _, r, term, _, info = env.step("click[buy now]")
    assert term and r == 1.0 and info["success"]

    synthetic = WebShopEnv(data_dir=str(tmp_path), goals="synthetic", heldout_fraction=0.0)
    ids = synthetic.task_ids("all")
    assert ids == [f"B000000001-{k}" for k in range(4)]  # 2 colors x 2 sizes; B..02 has none
    assert synthetic.catalog.goal_by_id[ids[1]].text.startswith(
        "i want natural looking clip in hair extensions with color: black | brown, and size: 18 inch"
    )
    with pytest.raises(ValueError, match="not both"):
        WebShopEnv(data_dir=str(tmp_path), products_path="x.json")


# ----------------------------------------------------------------------------------- agents
def run_agent(env, agent, tasks):
    rewards, successes = [], 0
    for tid in tasks:
        obs, _ = env.reset(options={"task_id": tid})
        while True:
            obs, r, term, trunc, info = env.step(agent(obs))
            if term or trunc:
                rewards.append(r)
                successes += info["success"]
                break
    return float(np.mean(rewards)), successes / len(tasks)


def test_expert_beats_random_on_heldout(env):
    tasks = env.task_ids("eval")[:100]
    expert_mean, expert_sr = run_agent(env, env.make_agent("expert", seed=0), tasks)
    random_mean, _ = run_agent(env, env.make_agent("random", seed=0), tasks)
    noisy_mean, _ = run_agent(env, env.make_agent("expert", seed=0, noise=0.2), tasks)
    assert expert_mean > 0.85 and expert_sr > 0.6
    assert random_mean < 0.1
    assert random_mean < noisy_mean < expert_mean


def test_agents_read_only_the_observation(env):
    expert = env.make_agent("expert")
    tid_a, tid_b = env.task_ids("eval")[:2]
    obs_a, _ = env.reset(options={"task_id": tid_a})
    first = expert(obs_a)
    env.reset(options={"task_id": tid_b})
    expert(env.step(expert(env.render()))[0])  # play another episode in between
    assert expert(obs_a) == first
    with pytest.raises(ValueError, match="expert, random"):
        env.make_agent("info_gain")


def test_observations_are_compact(env):
    expert = env.make_agent("expert")
    longest = 0
    for tid in env.task_ids("eval")[:30]:
        obs, _ = env.reset(options={"task_id": tid})
        while True:
            longest = max(longest, len(obs))
            obs, _, term, trunc, _ = env.step(expert(obs))
            if term or trunc:
                break
    assert longest < 1000


def test_corpus(env):
    lines = env.corpus()
    assert (
        "Buttons: [< prev] [back to search] [description] [features] [reviews] [buy now]" in lines
    )
    heldout = {env.catalog.goal_by_id[t].text for t in env.task_ids("eval")}
    assert not any(
        line[len("Instruction: ") :] in heldout
        for line in lines
        if line.startswith("Instruction: ")
    )


# ------------------------------------------------------------------------------- generation
def test_generation_is_reproducible(tmp_path):
    a = gen.generate(tmp_path / "a", n_products=120, n_instructions=60, seed=3)
    b = gen.generate(tmp_path / "b", n_products=120, n_instructions=60, seed=3)
    c = gen.generate(tmp_path / "c", n_products=120, n_instructions=60, seed=4)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != c[0].read_bytes()
    env = WebShopEnv(products_path=str(a[0]), instructions_path=str(a[1]))
    assert len(env.task_ids("all")) == 60 and len(env.catalog.products) == 120
    assert len({p.category for p in env.catalog.products}) == 13


def test_bundled_data_is_what_the_script_generates(tmp_path):
    cat = load_bundled()
    assert len(cat.products) >= 1000 and len(cat.goals) >= 500
    assert len({p.category for p in cat.products}) >= 10
    fresh = gen.generate(tmp_path)
    for path in fresh:
        bundled = gen.HERE / path.name
        assert gzip.decompress(bundled.read_bytes()) == gzip.decompress(path.read_bytes())


def test_product_ids_are_single_tokens_for_a_tiny_tokenizer(env):
    """A tokenizer built for WebShop keeps every product id, as pages show it, one token, and
    still round-trips any text exactly."""
    from archer.models.tiny import train_tokenizer

    ids = env.unwrapped.atomic_terms()
    assert len(ids) == len(set(ids)) == len(env.unwrapped.catalog.products)
    tok = train_tokenizer(env.unwrapped.corpus()[:2000], vocab_size=600, atomic=ids)
    obs, _ = env.reset(options={"task_id": env.unwrapped.task_ids("train")[0]})
    obs, *_ = env.step("search[tent]")
    shown = [line[1:11] for line in obs.splitlines() if line.startswith("[b")]
    assert shown and set(shown) <= set(ids)
    for text in (obs, f"click[{shown[0]}]"):
        enc = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(enc) == text
        pieces = [tok.decode([i]) for i in enc]
        assert all(s in pieces for s in shown if s in text)
    assert len(tok(f"click[{shown[0]}]", add_special_tokens=False)["input_ids"]) == 4
