"""The policy trains on the tokens it sampled: generate -> ids + log-probs -> batch -> scores."""

import copy

import numpy as np
import pytest
import torch

from archer.config import GenerationConfig
from archer.models.policy import Policy, Sampling, TokenBatch

WORDS = ["cat", "dog", "car", "tree", "apple", "river", "chair", "lamp"]
OBSERVATIONS = [
    "Questions:\n" + "".join(f"Is it a {w}? No.\n" for w in WORDS[: i % 8]) for i in range(64)
]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def policy(tiny_policy):
    return tiny_policy


def biased(policy: Policy, bias: dict[int, float]) -> Policy:
    """A copy of `policy` whose logits get `bias[i]` added at token i (an untied head)."""
    model = copy.deepcopy(policy.model)
    head = torch.nn.Linear(model.config.n_embd, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        for token, b in bias.items():
            head.bias[token] = b
    model.lm_head = head
    return Policy(
        model,
        policy.tokenizer,
        max_context_tokens=policy.max_context_tokens,
        reserve=policy.reserve,
    )


class Recorder(torch.nn.Module):
    """Calls `model`; records (input length, logits length) of every forward, and the
    unpadded rows of the first one's input."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config
        self.calls: list[tuple[int, int]] = []
        self.first_rows: list[list[int]] = []

    def forward(self, **kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        if not self.calls:
            self.first_rows = [
                row[m.bool()[-row.shape[0] :]].tolist() for row, m in zip(ids, mask, strict=True)
            ]
        out = self.model(**kwargs)
        self.calls.append((ids.shape[1], out.logits.shape[1]))
        return out


def scored_ids(batch: TokenBatch) -> list[list[int]]:
    """The action ids of each row, read back from the batch."""
    return [
        ids[mask.bool()].tolist()
        for ids, mask in zip(batch.input_ids, batch.action_mask, strict=True)
    ]


def test_scores_are_those_of_the_sampled_ids(policy):
    gen = policy.generate(OBSERVATIONS, Sampling(max_new_tokens=32), seeds=list(range(64)))
    batch = policy.batch(OBSERVATIONS, gen.action_ids, gen.logprobs)
    logp = policy.token_logprobs(batch)  # [B, T]
    mismatches = sum(s != a for s, a in zip(scored_ids(batch), gen.action_ids, strict=True))
    assert mismatches == 0
    got = [row[mask.bool()].tolist() for row, mask in zip(logp, batch.action_mask, strict=True)]
    diff = max(
        abs(g - s)
        for gr, sr in zip(got, gen.logprobs, strict=True)
        for g, s in zip(gr, sr, strict=True)
    )
    assert diff < 1e-5
    assert torch.equal(batch.behaviour_logp != 0, batch.action_mask.bool())
    assert batch.action_tokens == sum(len(a) for a in gen.action_ids)
    assert torch.all(logp[batch.action_mask == 0] == 0)
    # What this fixes: re-encoding the text gives other ids for most random utterances.
    eos = policy.tokenizer.eos_token_id
    reencoded = [policy.action_ids_for(t) for t in gen.texts]
    assert sum(r != a for r, a in zip(reencoded, gen.action_ids, strict=True)) > 32
    assert eos not in [i for a in gen.action_ids for i in a[:-1]]


def test_stop_at_newline(policy):
    newline = policy.tokenizer.convert_tokens_to_ids("\u010a")  # byte-level "\n"
    nl_policy = biased(policy, {newline: 4.0})
    gen = nl_policy.generate(OBSERVATIONS[:16], Sampling(max_new_tokens=20), seeds=list(range(16)))
    newline_ids = set(policy._newline_ids.tolist())
    ended = [
        (ids, t) for ids, t in zip(gen.action_ids, gen.texts, strict=True) if ids[-1] in newline_ids
    ]
    assert any(len(ids) > 1 for ids, _ in ended)
    for ids, text in zip(gen.action_ids, gen.texts, strict=True):
        assert not newline_ids & set(ids[:-1]) and "\n" not in text
        stop = ids[-1] in newline_ids | {policy.tokenizer.eos_token_id}
        assert text == policy.tokenizer.decode(ids[:-1] if stop else ids, skip_special_tokens=True)
    # Without stop_on_newline a newline is one more token of the utterance.
    free = nl_policy.generate(
        OBSERVATIONS[:16], Sampling(max_new_tokens=20, stop_on_newline=False), seeds=list(range(16))
    )
    assert any("\n" in t for t in free.texts)


def test_stop_at_eos(policy):
    eos = policy.tokenizer.eos_token_id
    gen = biased(policy, {eos: 5.0}).generate(
        OBSERVATIONS[:16], Sampling(max_new_tokens=20), seeds=list(range(16))
    )
    ended = [ids for ids in gen.action_ids if ids[-1] == eos]
    assert len(ended) > 8 and any(len(ids) > 1 for ids in ended)
    assert all(eos not in ids[:-1] for ids in gen.action_ids)
    assert all("<|endoftext|>" not in t for t in gen.texts)


def test_length_cut_adds_no_stop_token(policy):
    stops = [policy.tokenizer.eos_token_id, *policy._newline_ids.tolist()]
    gen = biased(policy, dict.fromkeys(stops, -1e4)).generate(
        OBSERVATIONS[:8], Sampling(max_new_tokens=7), seeds=list(range(8))
    )
    assert [len(ids) for ids in gen.action_ids] == [7] * 8
    assert all(ids[-1] not in stops for ids in gen.action_ids)
    assert [len(lp) for lp in gen.logprobs] == [7] * 8
    assert gen.texts == [
        policy.tokenizer.decode(ids, skip_special_tokens=True) for ids in gen.action_ids
    ]


def test_temperature_is_scored_as_sampled(policy):
    gen = policy.generate(OBSERVATIONS[:16], Sampling(temperature=0.7), seeds=list(range(16)))
    batch = policy.batch(OBSERVATIONS[:16], gen.action_ids, gen.logprobs)
    at_07 = policy.token_logprobs(batch, temperature=0.7)
    at_1 = policy.token_logprobs(batch)
    assert (at_07 - batch.behaviour_logp).abs().max() < 1e-5
    assert (at_1 - batch.behaviour_logp).abs().max() > 1e-2
    greedy = policy.generate(OBSERVATIONS[:4], Sampling(temperature=0.0))
    g_batch = policy.batch(OBSERVATIONS[:4], greedy.action_ids, greedy.logprobs)
    assert (
        policy.token_logprobs(g_batch, temperature=0.0) - g_batch.behaviour_logp
    ).abs().max() < 1e-5


def test_long_history_gives_one_prompt_for_acting_and_scoring(policy):
    header = "Questions:\n"
    obs = header + "".join(f"Is it a {WORDS[i % 8]} number {i}? No.\n" for i in range(200))
    assert len(policy.encode_prompt(obs)) > policy.max_context_tokens
    recorder = Recorder(policy.model)
    actor = Policy(recorder, policy.tokenizer, max_context_tokens=256, reserve=32)
    gen = actor.generate([obs, "Questions:\n"], Sampling(max_new_tokens=32), seeds=[1, 2])
    seen = recorder.first_rows  # the prompts the prefill was given (shortest first)
    batch = policy.batch([obs, "Questions:\n"], gen.action_ids)
    scored = []
    for row in range(2):
        kept = batch.input_ids[row][batch.attention_mask[row].bool()].tolist()
        scored.append(kept[: len(kept) - len(gen.action_ids[row])])
    assert sorted(scored, key=len) == seen
    long_prompt = scored[0]
    assert len(long_prompt) == 256 - 32  # room = max_context_tokens - reserve
    assert long_prompt[: len(policy.encode_prompt(header))] == policy.encode_prompt(header)
    assert batch.input_ids.shape[1] <= policy.max_context_tokens


def test_a_rows_sample_depends_only_on_its_seed(policy):
    s = Sampling(max_new_tokens=16)
    alone = policy.generate([OBSERVATIONS[3]], s, seeds=[5])
    pair = policy.generate([OBSERVATIONS[7], OBSERVATIONS[3]], s, seeds=[9, 5])
    trio = policy.generate([OBSERVATIONS[3], OBSERVATIONS[1], OBSERVATIONS[6]], s, seeds=[5, 0, 2])
    assert pair.action_ids[1] == alone.action_ids[0] == trio.action_ids[0]
    assert pair.texts[1] == alone.texts[0]
    np.testing.assert_allclose(pair.logprobs[1], alone.logprobs[0], rtol=0, atol=1e-5)


def test_chunk_size_does_not_change_results(policy):
    s = Sampling(max_new_tokens=16)
    whole = policy.generate(OBSERVATIONS[:12], s, seeds=list(range(12)))
    chunked = policy.generate(OBSERVATIONS[:12], s, seeds=list(range(12)), chunk_size=5)
    assert chunked.action_ids == whole.action_ids and chunked.texts == whole.texts
    for a, b in zip(chunked.logprobs, whole.logprobs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_the_preallocated_kv_cache_samples_exactly_what_the_models_own_cache_does(
        policy, monkeypatch):
    """The sampling loop's cache writes keys and values in place; attention reads the same
    numbers as from transformers' growing DynamicCache, so ids and log-probs are bit-equal.
    (Distinct prompts: a repeated one is prefilled once, which changes float rounding.)"""
    import archer.models.policy as policy_module

    s = Sampling(max_new_tokens=16)
    cache = policy_module._preallocated_cache(policy.model.config, s.max_new_tokens)
    assert cache is not None  # this transformers has the layer API: the fast path is tested
    obs = OBSERVATIONS[:8] + [o + "Is it big? No.\n" for o in OBSERVATIONS[:4]]
    ours = policy.generate(obs, s, seeds=list(range(12)), chunk_size=5)
    monkeypatch.setattr(policy_module, "_preallocated_cache", lambda *_: None)
    theirs = policy.generate(obs, s, seeds=list(range(12)), chunk_size=5)
    assert ours.action_ids == theirs.action_ids and ours.logprobs == theirs.logprobs
    assert any(len(ids) == s.max_new_tokens for ids in ours.action_ids)  # the room is filled


def test_gpt2s_gelu_is_fused_and_computes_the_same_function():
    """Policy swaps GPT-2's five-op gelu_new for torch's one-kernel tanh GELU: same logits to
    float rounding, same state dict, same saved config."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.activations import NewGELUActivation

    from archer.models.policy import fuse_tanh_gelu

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=3,
                                       n_head=2)).eval()
    plain = copy.deepcopy(model)
    ids = torch.randint(0, 97, (4, 40))
    assert fuse_tanh_gelu(model) == 3
    assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    assert fuse_tanh_gelu(model) == 0  # idempotent
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, plain(ids).logits, rtol=0, atol=1e-5)
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert model.config.activation_function == "gelu_new"


def test_prefill_and_scoring_compute_only_the_logits_they_need(policy):
    recorder = Recorder(policy.model)
    actor = Policy(recorder, policy.tokenizer, max_context_tokens=256, reserve=32)
    gen = actor.generate(OBSERVATIONS[:6], Sampling(max_new_tokens=8), seeds=list(range(6)))
    prefill_in, prefill_logits = recorder.calls[0]
    assert prefill_in > 1 and prefill_logits == 1
    assert all(n == 1 for _, n in recorder.calls)
    recorder.calls.clear()
    batch = policy.batch(OBSERVATIONS[:6], gen.action_ids)
    policy.token_logprobs(batch, model=recorder)
    longest = max(len(a) for a in gen.action_ids)
    assert recorder.calls == [(batch.input_ids.shape[1], longest + 1)]
    assert longest + 1 < batch.input_ids.shape[1]


def test_batch_layout_by_hand(policy):
    p0, p1 = policy.prompt_ids("Questions:\n"), policy.prompt_ids("Is it a cat?")
    batch = policy.batch(
        ["Questions:\n", "Is it a cat?"], [[7, 8, 9], [5]], [[-1.0, -2.0, -3.0], [-4.0]]
    )
    width = max(len(p0) + 3, len(p1) + 1)
    assert batch.input_ids.shape == (2, width)
    assert batch.input_ids[0, width - len(p0) - 3 :].tolist() == p0 + [7, 8, 9]
    assert batch.input_ids[1, width - len(p1) - 1 :].tolist() == p1 + [5]
    assert batch.attention_mask.sum(-1).tolist() == [len(p0) + 3, len(p1) + 1]
    assert batch.position_ids[0, -1] == len(p0) + 2 and batch.position_ids[1, -1] == len(p1)
    assert batch.action_mask[0, -3:].tolist() == [1.0] * 3 and batch.action_mask[0].sum() == 3
    assert batch.action_mask[1, -1] == 1.0 and batch.action_mask[1].sum() == 1
    assert batch.behaviour_logp[0, -3:].tolist() == [-1.0, -2.0, -3.0]
    assert batch.behaviour_logp[1].tolist() == [0.0] * (width - 1) + [-4.0]
    assert len(batch) == 2 and batch.action_tokens == 4
    # One row alone loses the columns that only padded it.
    one = batch.select([1])
    assert one.input_ids.tolist() == [p1 + [5]] and one.behaviour_logp.tolist() == [
        [0.0] * len(p1) + [-4.0]
    ]
    assert one.position_ids.tolist() == [list(range(len(p1) + 1))]
    assert batch.select(slice(0, 2)).input_ids.shape == (2, width)
    full = policy.token_logprobs(batch)
    torch.testing.assert_close(policy.token_logprobs(one)[0, -1], full[1, -1], rtol=0, atol=1e-5)


def test_action_ids_for_and_the_reserve(policy):
    eos = policy.tokenizer.eos_token_id
    text = " Is it a cat?"
    assert policy.action_ids_for(text) == policy.encode_prompt(text) + [eos]
    long = policy.action_ids_for(" is it" * 100)
    assert len(long) == policy.reserve and long[-1] != eos
    with pytest.raises(ValueError, match="33 ids"):
        policy.batch(["Questions:\n"], [[5] * 33])
    with pytest.raises(ValueError, match="reserve=32"):
        policy.generate(["Questions:\n"], Sampling(max_new_tokens=33))
    with pytest.raises(ValueError, match="2 ids but 1 log-probs"):
        policy.batch(["Questions:\n"], [[5, 6]], [[-1.0]])
    assert policy.prompt_ids("") == [eos]


def test_sampling_from_config_and_fingerprint(policy):
    gen = GenerationConfig(max_new_tokens=12, temperature=0.8, top_p=0.9, stop_on_newline=False)
    assert Sampling.from_config(gen) == Sampling(12, 0.8, 0.9, False)
    assert Sampling.from_config(gen, greedy=True) == Sampling(12, 0.0, 0.9, False)
    same = Policy(policy.model, policy.tokenizer, max_context_tokens=256)
    assert same.fingerprint == policy.fingerprint and len(policy.fingerprint) == 16
    other = copy.deepcopy(policy.tokenizer)
    other.add_tokens(["zebra-stripes"])
    assert Policy(policy.model, other).fingerprint != policy.fingerprint


def test_top_p_samples_from_the_nucleus_but_stores_pi_t(policy):
    gen = policy.generate(OBSERVATIONS[:8], Sampling(top_p=1e-6), seeds=list(range(8)))
    greedy = policy.generate(OBSERVATIONS[:8], Sampling(temperature=0.0))
    assert gen.action_ids == greedy.action_ids  # a tiny nucleus keeps the top token alone
    batch = policy.batch(OBSERVATIONS[:8], gen.action_ids, gen.logprobs)
    assert (policy.token_logprobs(batch) - batch.behaviour_logp).abs().max() < 1e-5


def test_inverse_cdf_sample_draws_from_the_row_distribution():
    from archer.models.policy import inverse_cdf_sample

    torch.manual_seed(0)
    probs = torch.tensor([0.0, 0.2, 0.0, 0.5, 0.3, 0.0])
    n = 100_000
    draws = inverse_cdf_sample(probs.repeat(n, 1), torch.rand(n))
    freq = torch.bincount(draws, minlength=6).double() / n
    # 3 standard errors of a frequency near 0.5 over 1e5 draws: 3 * sqrt(0.25 / 1e5) = 0.0047
    assert torch.allclose(freq, probs.double(), atol=0.005)
    assert freq[[0, 2, 5]].sum() == 0  # zero-probability ids are never drawn
    # the edges: u = 0 takes the first id with p > 0 (1); u just below 1 the last one (4);
    # u = 0.2 sits on the boundary of the cumulative 0.2 and goes right, to id 3; u * total
    # rounded up to the total (u = 1 here) runs past the end and takes the last id with p > 0
    edges = inverse_cdf_sample(probs.repeat(4, 1), torch.tensor([0.0, 1 - 2**-24, 0.2, 1.0]))
    assert edges.tolist() == [1, 4, 3, 4]


def test_a_prefill_in_row_parts_samples_exactly_what_one_prefill_does(policy, monkeypatch):
    """The sampling loop prefills `PREFILL_ROWS` prompts per forward and joins their caches;
    each row's keys, values and logits are its own, so the ids equal one forward's over the
    whole chunk and the log-probs differ by float rounding only (a matmul's blocking depends on
    its row count, as with chunk_size)."""
    import archer.models.policy as policy_module

    s = Sampling(max_new_tokens=16)
    monkeypatch.setattr(policy_module, "PREFILL_ROWS", 3)  # 12 rows: parts of 3, 3, 3, 3
    parts = policy.generate(OBSERVATIONS[:12], s, seeds=list(range(12)), chunk_size=12)
    monkeypatch.setattr(policy_module, "PREFILL_ROWS", 5)  # 5, 5, 2: a short last part
    uneven = policy.generate(OBSERVATIONS[:12], s, seeds=list(range(12)), chunk_size=12)
    monkeypatch.setattr(policy_module, "PREFILL_ROWS", 64)  # one forward
    whole = policy.generate(OBSERVATIONS[:12], s, seeds=list(range(12)), chunk_size=12)
    assert parts.action_ids == whole.action_ids == uneven.action_ids
    for a, b, c in zip(parts.logprobs, whole.logprobs, uneven.logprobs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        np.testing.assert_allclose(c, b, rtol=0, atol=1e-5)
    assert any(len(ids) == s.max_new_tokens for ids in parts.action_ids)  # the room is filled


def test_rows_that_share_a_prompt_share_one_prefill_and_sample_from_their_own_seeds(policy):
    """A prompt repeated in a chunk (n samples of one state) is prefilled once and its cache
    and logits copied to its twins; each row still samples from its own seed, so every row
    equals that row sampled alone (ids exactly, log-probs to float rounding)."""
    obs = [OBSERVATIONS[i] for i in (3, 5, 3, 3, 0, 5, 7, 3)]
    s = Sampling(max_new_tokens=16)
    recorder = Recorder(policy.model)
    actor = Policy(recorder, policy.tokenizer, max_context_tokens=policy.max_context_tokens,
                   reserve=policy.reserve)
    shared = actor.generate(obs, s, seeds=list(range(8)))
    assert sorted(map(tuple, recorder.first_rows)) == sorted(
        {tuple(policy.prompt_ids(o)) for o in obs})  # one prefill row per distinct prompt
    for i, o in enumerate(obs):
        alone = policy.generate([o], s, seeds=[i])
        assert shared.action_ids[i] == alone.action_ids[0]
        np.testing.assert_allclose(shared.logprobs[i], alone.logprobs[0], rtol=0, atol=1e-5)
    twins = [shared.action_ids[i] for i in (0, 2, 3, 7)]  # one state, four seeds
    assert len({tuple(t) for t in twins}) > 1


def test_distinct_rows_tells_a_real_pad_id_from_padding():
    from archer.models.policy import distinct_rows

    pad = 0
    ids = torch.tensor([[pad, 4, 5], [pad, 4, 5], [7, 8, 9], [pad, 4, 5], [7, 8, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]])
    first, inverse = distinct_rows(ids, mask)
    assert first.tolist() == [0, 1, 2]  # rows 0 and 1 differ in their mask only
    assert inverse.tolist() == [0, 1, 2, 0, 2]
    assert torch.equal(ids[first][inverse], ids) and torch.equal(mask[first][inverse], mask)
    assert distinct_rows(ids[:3], mask[:3]) is None
