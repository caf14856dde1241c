import gzip
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import archer_envs  # noqa: F401
import gymnasium as gym
import numpy as np
import pytest
from archer_envs.clarify_qa import ClarifyQAEnv, Reading, classify, make_user
from archer_envs.clarify_qa import generate_data as gen
from archer_envs.clarify_qa.data import REQUESTS_FILE, load_requests
from archer_envs.clarify_qa.env import ALREADY_ASKED, SAY_SOMETHING
from archer_envs.clarify_qa.reward import (
    answer_reward,
    correctness,
    normalize_answer,
    token_f1,
)
from archer_envs.clarify_qa.users import API_KEY_ENV, OFF_TOPIC_REPLY, EndpointUser

RICE = "cooking-000"  # "How long does it take to cook rice?": white 18, brown 45, wild 50 min


@pytest.fixture(scope="module")
def env():
    return gym.make("archer/ClarifyQA-v0").unwrapped


def reset_with_intent(env, task_id, phrase):
    """Reset `task_id` with the first seed whose hidden intent is `phrase`."""
    for seed in range(500):
        env.reset(seed=seed, options={"task_id": task_id})
        if env.intent.phrase == phrase:
            return env.render()
    raise AssertionError(f"no seed below 500 draws {phrase!r}")


def play(env, agent, seed, task_id=None):
    obs, _ = env.reset(seed=seed, options={"task_id": task_id} if task_id else None)
    ret = 0.0
    while True:
        obs, r, term, trunc, info = env.step(agent(obs))
        ret += r
        if term or trunc:
            return ret, info


# --------------------------------------------------------------------------------- reward
def test_normalisation():
    assert normalize_answer("The Atlanta.") == "atlanta"
    assert normalize_answer("1,048,576 Bytes") == normalize_answer("1048576 bytes")
    assert normalize_answer("-1.1 degrees Celsius") == "-1.1 degrees celsius"
    assert normalize_answer("-1.1 degrees Celsius") != normalize_answer("1.1 degrees Celsius")
    assert normalize_answer("2023-01-22") == "2023 01 22"  # a hyphen between digits goes
    assert normalize_answer("System.out.println()") == "system out println"


def test_reward_arithmetic_exact_fuzzy_and_question_cost():
    brown = Reading("brown rice", "45 minutes", ("45",), 1.0)
    assert correctness("45 Minutes!", brown, "exact") == 1.0
    assert correctness("45", brown, "exact") == 1.0  # an alias
    assert correctness("about 45 minutes", brown, "exact") == 0.0
    # fuzzy: "about 45 minutes" vs "45 minutes": 2 common tokens, P = 2/3, R = 2/2,
    #   F1 = 2 * (2/3) * 1 / (2/3 + 1) = 0.8; vs the alias "45": P = 1/3, R = 1, F1 = 0.5 -> 0.8
    assert correctness("about 45 minutes", brown, "fuzzy") == pytest.approx(0.8)
    # "50 minutes" vs "45 minutes": 1 common token, P = R = 1/2, F1 = 0.5 (a wrong reading's
    #   answer keeps partial credit under fuzzy)
    assert correctness("50 minutes", brown, "fuzzy") == pytest.approx(0.5)
    assert token_f1("", "45 minutes") == 0.0
    # cost: 0.8 - 0.25 = 0.55; 0.1 - 0.25 < 0 -> clipped to 0; without a question no cost
    assert answer_reward(0.8, asked=True, question_cost=0.25) == pytest.approx(0.55)
    assert answer_reward(0.1, asked=True, question_cost=0.25) == 0.0
    assert answer_reward(1.0, asked=False, question_cost=0.25) == 1.0


def test_reward_through_the_env():
    env = gym.make("archer/ClarifyQA-v0", match="fuzzy", question_cost=0.25).unwrapped
    reset_with_intent(env, RICE, "brown rice")
    obs, r, term, _, info = env.step("Question: Which kind of rice?")
    assert (r, term) == (0.0, False) and info["answer"] == "I mean brown rice."
    _, r, term, _, info = env.step("Answer: about 45 minutes")
    # correctness 0.8 (F1 above) - cost 0.25 = 0.55; success is exact match: not exact
    assert term and r == pytest.approx(0.55) and info["correctness"] == pytest.approx(0.8)
    assert info["success"] is False and info["asked"] is True

    reset_with_intent(env, RICE, "brown rice")
    _, r, term, _, info = env.step("45 minutes")  # a bare answer, no question: no cost
    assert term and r == 1.0 and info["success"] and info["kind"] == "answer"

    reset_with_intent(env, RICE, "brown rice")
    env.step("Question: Which kind?")
    _, r, *_ = env.step("Answer: 18 minutes")  # white rice's answer: F1 0.5 - 0.25
    assert r == pytest.approx(0.25)

    exact = gym.make("archer/ClarifyQA-v0", question_cost=0.25).unwrapped
    reset_with_intent(exact, RICE, "white rice")
    exact.step("Question: What type of rice?")
    _, r, *_, info = exact.step("Answer: 18 minutes")
    assert r == pytest.approx(0.75) and info["success"]  # 1 - 0.25
    with pytest.raises(ValueError, match="match"):
        ClarifyQAEnv(match="f1")
    with pytest.raises(ValueError, match="question_cost"):
        ClarifyQAEnv(question_cost=1.5)


# ------------------------------------------------------------------------ grammar, turns
def test_grammar():
    assert classify("Answer: 45 minutes") == ("answer", "45 minutes")
    assert classify("answer: is it 45?") == ("answer", "is it 45?")  # the prefix wins
    assert classify("Question: Brown or white") == ("question", "Brown or white")
    assert classify("Do you mean brown rice?") == ("question", "Do you mean brown rice?")
    assert classify("45 minutes") == ("answer", "45 minutes")
    assert classify("   ") == ("empty", "")


def test_the_user_answers_from_the_hidden_intent(env):
    request = env.by_id[RICE]
    for reading in request.readings:
        obs = reset_with_intent(env, RICE, reading.phrase)
        assert reading.phrase not in obs  # the intent is hidden
        obs, *_, info = env.step("Question: What kind of rice do you mean?")
        assert info["answer"] == f"I mean {reading.phrase}."
        assert obs.splitlines()[-1] == f"User: I mean {reading.phrase}."
    reset_with_intent(env, RICE, "wild rice")
    *_, info = env.step("Question: Is it raining where you are?")  # not about the dimension
    assert info["answer"] == OFF_TOPIC_REPLY
    reset_with_intent(env, RICE, "wild rice")
    *_, info = env.step("Could you clarify?")  # a generic request for clarification
    assert info["answer"] == "I mean wild rice."


def test_the_intent_is_drawn_by_the_reset_seed_with_the_weights(env):
    counts = {r.phrase: 0 for r in env.by_id[RICE].readings}
    for seed in range(300):
        env.reset(seed=seed, options={"task_id": RICE})
        counts[env.intent.phrase] += 1
    env.reset(seed=7, options={"task_id": RICE})
    first = env.intent
    env.reset(seed=7, options={"task_id": RICE})
    assert env.intent == first  # the same seed, the same intent
    # weights 0.6 / 0.3 / 0.1 over 300 draws: each count within 4 standard deviations
    for reading in env.by_id[RICE].readings:
        sd = math.sqrt(300 * reading.weight * (1 - reading.weight))
        assert abs(counts[reading.phrase] - 300 * reading.weight) < 4 * sd, counts


def test_one_question_then_the_turn_limit(env):
    reset_with_intent(env, RICE, "brown rice")
    obs, r, term, trunc, info = env.step("Question: Which rice?")
    assert not term and not info["invalid_action"]
    obs, r, term, trunc, info = env.step("Question: Are you sure?")  # a second question
    # the default limit is 2 turns: the second question is invalid and ends the episode at 0
    assert info["invalid_action"] and term and not trunc and r == 0.0 and not info["success"]
    assert obs.splitlines()[-1] == f"User: {ALREADY_ASKED}"
    with pytest.raises(RuntimeError):
        env.step("Answer: 45 minutes")

    three = gym.make("archer/ClarifyQA-v0", max_turns=3).unwrapped
    reset_with_intent(three, RICE, "brown rice")
    three.step("Question: Which rice?")
    _, r, term, _, info = three.step("Which rice again?")
    assert info["invalid_action"] and not term and r == 0.0 and "answer" not in info
    _, r, term, _, info = three.step("Answer: 45 minutes")
    assert term and r == 1.0 and info["success"] and info["turn"] == 3

    one = gym.make("archer/ClarifyQA-v0", max_turns=1).unwrapped
    one.reset(seed=0, options={"task_id": RICE})
    _, r, term, _, info = one.step("Question: Which rice?")  # no turn left to answer
    assert term and r == 0.0 and not info["success"]


def test_malformed_actions_do_not_raise(env):
    for action, invalid in [
        ("", True),
        ("   ", True),
        ("x" * 100_000, False),
        ("two\nlines", False),
        ("Question:", False),
        ("Answer:", False),
        ("???", False),
        ("User: I mean brown rice.", False),
    ]:
        env.reset(seed=0, options={"task_id": RICE})
        obs, r, term, trunc, info = env.step(action)
        assert info["invalid_action"] is invalid, action
        assert 0.0 <= r <= 1.0 and env.observation_space.contains(obs)
    env.reset(seed=0, options={"task_id": RICE})
    obs, _, term, _, info = env.step("")
    assert not term and obs.splitlines()[-2:] == ["Agent: (nothing)", f"User: {SAY_SOMETHING}"]
    *_, info = env.step("Question: Which rice?")  # an empty turn does not use up the question
    assert not info["invalid_action"] and info["answer"].startswith("I mean")


# -------------------------------------------------------------------------------- agents
def returns(env, name, noise, seeds):
    agent = env.make_agent(name, seed=0, noise=noise)
    return np.array([play(env, agent, s)[0] for s in seeds])


def paired_margin(a, b):
    """Mean of a - b (same seeds, so the same requests and intents) in standard errors."""
    d = a - b
    return d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))


def test_agents_quality_order(env):
    seeds = range(400)
    ask, when, direct = (
        returns(env, n, 0.0, seeds) for n in ("always_ask", "ask_when_ambiguous", "always_answer")
    )
    # Without noise an agent that asks is always right, and ask_when_ambiguous answers the
    # unambiguous requests directly, rightly; always_answer is right with the probability of
    # the most likely reading: its mean return estimates the mean of those probabilities.
    assert ask.min() == when.min() == 1.0
    expected = np.mean([_request(env, s).most_likely.weight for s in seeds])
    assert abs(direct.mean() - expected) < 4 * direct.std(ddof=1) / math.sqrt(len(seeds))
    assert paired_margin(when, direct) > 4

    # With noise 0.2 (wrong answers, and for ask_when_ambiguous flipped decisions) the order is
    # strict: always_ask > ask_when_ambiguous > always_answer.
    seeds = range(3000)
    ask, when, direct = (
        returns(env, n, 0.2, seeds) for n in ("always_ask", "ask_when_ambiguous", "always_answer")
    )
    assert paired_margin(ask, when) > 3 and paired_margin(when, direct) > 3


def _request(env, seed):
    env.reset(seed=seed)
    return env.request


def test_a_question_cost_reverses_always_ask_and_ask_when_ambiguous():
    env = gym.make("archer/ClarifyQA-v0", question_cost=0.2).unwrapped
    seeds = range(300)
    ask = returns(env, "always_ask", 0.0, seeds)
    when = returns(env, "ask_when_ambiguous", 0.0, seeds)
    ambiguous = np.array([_request(env, s).ambiguous for s in seeds])
    # always_ask pays 0.2 on every episode: 1 - 0.2; ask_when_ambiguous only on ambiguous ones
    assert np.allclose(ask, 0.8)
    assert np.allclose(when, np.where(ambiguous, 0.8, 1.0))
    assert when.mean() > ask.mean()


def test_agents_read_only_the_observation(env):
    agent = env.make_agent("always_ask")
    obs_a = reset_with_intent(env, RICE, "brown rice")
    obs_a, *_ = env.step(agent(obs_a))
    play(env, agent, seed=3, task_id="travel-000")  # another episode in between
    assert agent(obs_a) == "Answer: 45 minutes"
    with pytest.raises(ValueError, match="always_answer"):
        env.make_agent("info_gain")
    with pytest.raises(ValueError, match="noise"):
        env.make_agent("always_ask", noise=1.5)


# --------------------------------------------------------------------------- data, splits
def test_bundled_data():
    requests = load_requests()
    assert len(requests) >= 500 and len({r.domain for r in requests}) >= 10
    n_ambiguous = sum(r.ambiguous for r in requests)
    assert len(requests) / 2 < n_ambiguous < len(requests)  # mostly ambiguous, not all
    for r in requests:
        assert math.isclose(sum(x.weight for x in r.readings), 1.0, abs_tol=1e-3), r.id
        assert r.text.endswith("?") and r.keywords
        assert len({x.phrase for x in r.readings}) == len(r.readings), r.id


def test_the_generator_reproduces_the_bundled_file(tmp_path):
    fresh = gen.generate(tmp_path)
    # the JSON inside, byte for byte (gzip's own bytes can differ between zlib builds)
    assert gzip.decompress(fresh.read_bytes()) == gzip.decompress(REQUESTS_FILE.read_bytes())
    other = gen.generate(tmp_path / "seed1", seed=1)
    assert gzip.decompress(other.read_bytes()) != gzip.decompress(fresh.read_bytes())
    env = ClarifyQAEnv(data_path=str(other))
    assert len(env.task_ids("all")) == len(
        json.loads(gzip.decompress(other.read_bytes()))["requests"]
    )


def test_heldout_split_is_disjoint_and_deterministic(env):
    train, heldout = env.task_ids("train"), env.task_ids("eval")
    assert not set(train) & set(heldout) and set(train) | set(heldout) == set(env.task_ids("all"))
    assert len(heldout) == round(0.2 * len(env.task_ids("all")))
    other = ClarifyQAEnv()
    assert other.task_ids("train") == train and other.task_ids("eval") == heldout
    corpus = set(env.corpus())
    assert not any(f"User: {env.by_id[t].text}" in corpus for t in heldout)
    assert all(f"User: {env.by_id[t].text}" in corpus for t in train)
    assert env.atomic_terms() == ["Question:", "Answer:"]


# ---------------------------------------------------------------------- simulated users
def test_a_fake_callable_user_works_through_the_same_interface():
    calls = []

    def user(request, intent, question):
        calls.append((request.id, question))
        return f"Oh, {intent.phrase}, sorry.\nignored second line"

    env = gym.make("archer/ClarifyQA-v0", user=user).unwrapped
    reset_with_intent(env, RICE, "wild rice")
    agent = env.make_agent("always_ask")
    obs, *_, info = env.step(agent(env.render()))
    assert info["answer"] == "Oh, wild rice, sorry." and calls[0][0] == RICE
    assert calls[0][1].startswith("Which kind of rice do you mean")  # "Question:" stripped
    _, r, term, _, info = env.step(agent(obs))  # the agent reads the free-form reply
    assert term and r == 1.0 and info["success"]


def test_model_user_options_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="user model directory"):
        make_user(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(FileNotFoundError):
        gym.make("archer/ClarifyQA-v0", user=f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="base URL"):
        make_user("endpoint:some-model")
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(RuntimeError, match=API_KEY_ENV):
        make_user("endpoint:some-model", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="unknown user"):
        make_user("chatbot")
    monkeypatch.setenv(API_KEY_ENV, "secret-123")
    user = make_user("endpoint:some-model", base_url="http://127.0.0.1:9/v1")
    assert isinstance(user, EndpointUser) and "secret-123" not in repr(user)
    request = load_requests()[0]
    with pytest.raises(RuntimeError, match="failed"):  # nothing listens on port 9
        user(request, request.readings[0], "Which one?")


class _ChatHandler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers["Authorization"], body))
        reply = {"choices": [{"message": {"content": "  I mean brown rice.  \n"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_endpoint_user_against_a_local_fake_server(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(API_KEY_ENV, "k")
        base = f"http://127.0.0.1:{server.server_port}/v1"
        env = gym.make("archer/ClarifyQA-v0", user="endpoint:tiny-chat", user_base_url=base)
        env = env.unwrapped
        reset_with_intent(env, RICE, "brown rice")
        *_, info = env.step("Question: Which rice?")
    finally:
        server.shutdown()
        thread.join()
    assert info["answer"] == "I mean brown rice."
    path, auth, body = _ChatHandler.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["model"] == "tiny-chat"
    prompt = body["messages"][0]["content"]
    assert "How long does it take to cook rice?" in prompt and "brown rice" in prompt


def test_hf_model_user_with_a_tiny_local_model(tmp_path, env):
    from archer.models.tiny import build_tiny_policy, train_tokenizer

    tokenizer = train_tokenizer(env.corpus()[:400], vocab_size=300)
    build_tiny_policy(tokenizer, "tiny", max_positions=512, seed=0).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    hf = gym.make("archer/ClarifyQA-v0", user=f"hf:{tmp_path}").unwrapped
    hf.user.max_new_tokens = 8
    hf.reset(seed=0, options={"task_id": RICE})
    obs, _, term, _, info = hf.step("Question: Which rice?")
    # a random model says something: one clean line, whatever it is
    assert not term and isinstance(info["answer"], str) and "\n" not in info["answer"]
    assert obs.splitlines()[-1] == f"User: {info['answer']}"


def test_the_subset_keeps_two_domains_without_a_heldout_split():
    env = gym.make("archer/ClarifyQASubset-v0").unwrapped
    assert {r.domain for r in env.requests} == {"cooking", "sports"}
    assert len(env.requests) == 58  # 35 cooking + 23 sports requests in the bundled data
    assert not env.has_heldout and env.task_ids("eval") == env.task_ids("train")
    with pytest.raises(ValueError, match=r"unknown ClarifyQA domain\(s\) \['cookery'\]"):
        ClarifyQAEnv(domains=["cooking", "cookery"])
