"""Guess My City: the city table, the oracle (closed and open answers, no leaks), the agents."""

import importlib.util

import gymnasium as gym
import pytest

import archer_envs  # noqa: F401
from archer_envs.guess_my_city.env import CITIES_FILE, KNOWN_FOR, OPEN_QUESTIONS, load_cities
from archer_envs.guess_my_city.oracle import CityOracle
from archer_envs.text_utils import mentions

CITIES = load_cities()


def test_table_size_and_fields():
    assert len(CITIES) >= 80
    assert len({c.continent for c in CITIES}) >= 5
    assert {c.capital for c in CITIES} == {True, False} and {c.coastal for c in CITIES} == {True, False}
    assert all(c.features and c.language and c.climate for c in CITIES)
    spec = importlib.util.spec_from_file_location("vc", CITIES_FILE.with_name("validate_cities.py"))
    vc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vc)
    assert vc.main(CITIES_FILE) == 0


def by_name(name):
    return next(c for c in CITIES if c.city == name)


@pytest.mark.parametrize("question, expected", [
    ("Is it a capital city?", "Yes."),
    ("Is it on the coast?", "No."),
    ("Is it in Europe?", "Yes."),
    ("Is it in Asia?", "No."),
    ("Do people there speak French?", "Yes."),
    ("Does it have more than 5 million people?", "Yes."),
    ("Does it have less than 1 million people?", "No."),
    ("Does it have more than 20 million people?", "Its metro area has over 10 million people."),
    ("Is it in the southern hemisphere?", "No."),
    ("What continent is it on?", "It is in Europe."),
    ("What country is it in?", "It is in France."),
    ("Can you juggle?", "I can't answer that."),
])
def test_oracle_answers_about_paris(question, expected):
    oracle = CityOracle(list(CITIES))
    assert oracle("Paris", question) == expected


def test_oracle_never_leaks_the_city_name():
    oracle = CityOracle(list(CITIES))
    env = gym.make("archer/GuessMyCity-v0").unwrapped
    questions = OPEN_QUESTIONS + [KNOWN_FOR, "What landmarks does it have?"] + env.closed_questions()
    for c in CITIES:
        for q in questions:
            answer = oracle(c.city, q)
            assert not mentions(answer, (c.city, *c.aliases)), (c.city, q, answer)


def test_guess_and_wrong_guess():
    env = gym.make("archer/GuessMyCity-v0").unwrapped
    env.reset(options={"task_id": "Paris"})
    _, r, term, _, info = env.step("Is it Rome?")
    assert (r, term, info["answer"]) == (-1.0, False, "No.")
    _, r, term, _, info = env.step("Is the city Paris?")
    assert (r, term, info["success"]) == (0.0, True, True)


def test_info_gain_expert_solves_every_city():
    env = gym.make("archer/GuessMyCity-v0").unwrapped
    agent = env.make_agent("info_gain")
    turns = []
    for city in env.task_ids("all"):
        obs, _ = env.reset(options={"task_id": city})
        for t in range(1, 21):
            obs, _, term, _, info = env.step(agent(obs))
            if term:
                break
        assert info["success"], city
        turns.append(t)
    assert sum(turns) / len(turns) < 12
