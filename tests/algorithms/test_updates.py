"""The shared update steps: one optimizer step whatever the micro-batch split (on uneven
lengths), every trainable parameter moved, a non-finite loss dropping the step, and the
critic step's accumulation and train/eval mode."""

import copy

import pytest
import torch

from archer.algorithms.archer import critic_loss
from archer.algorithms.losses import ppo_clip_loss, weighted_logp_loss
from archer.algorithms.updates import critic_step, policy_step
from archer.config import CriticConfig
from archer.distributed.engine import TorchActorEngine
from archer.models.critic import build_critic, make_target
from archer.models.policy import Policy, Sampling


def rows_of(policy, n=8):
    """n utterances of uneven lengths (1 to 6 ids) on two different observations."""
    obs = ["Questions so far:\n" if i % 2 else "Is it alive? No.\n" for i in range(n)]
    gen = policy.generate(obs, Sampling(max_new_tokens=6), seeds=list(range(n)))
    # cut to 1..6 ids (a sampled prefix keeps its log-probs): uneven, or the tests prove nothing
    cut = [1 + (i * 5) % 6 for i in range(n)]
    ids = [a[: min(len(a), c)] for a, c in zip(gen.action_ids, cut, strict=True)]
    lps = [lp[: len(a)] for lp, a in zip(gen.logprobs, ids, strict=True)]
    assert len({len(a) for a in ids}) > 1
    return policy.batch(obs, ids, lps)


def one_step(tiny_policy, micro, loss_kind, kl):
    policy = Policy(copy.deepcopy(tiny_policy.model), tiny_policy.tokenizer,
                    max_context_tokens=tiny_policy.max_context_tokens, reserve=6)
    torch.manual_seed(0)
    ref = copy.deepcopy(tiny_policy.model).eval()
    with torch.no_grad():  # a reference that differs, so the KL term has a gradient
        for p in ref.parameters():
            p.add_(0.01 * torch.randn_like(p))
    rows = rows_of(policy)
    engine = TorchActorEngine(policy.model, lr=1e-2, batch_size=len(rows), micro_batch_size=micro,
                              grad_clip=0.0)
    # SGD with lr 1: the weights move by exactly the accumulated gradient (Adam's first update,
    # about lr * sign(g), would turn float noise in a near-zero gradient into a full step)
    engine.optimizer = torch.optim.SGD(engine._params, lr=1.0)
    adv = torch.linspace(-1.0, 1.0, len(rows))
    n_rows, n_tokens = float(len(rows)), float(rows.action_tokens)

    def loss(logp, sub, idx):
        if loss_kind == "reinforce":
            return weighted_logp_loss(logp, sub.action_mask, adv[idx], n_rows)
        # behaviour log-probs moved off the current ones, so ratios differ from 1
        return ppo_clip_loss(logp, sub.behaviour_logp + 0.3 * (sub.action_mask), sub.action_mask,
                             adv[idx], 0.2, n_tokens)

    m = policy_step(engine, policy, rows, loss, micro_batch_size=micro, ref=ref,
                    kl_coef=0.5 if kl else 0.0)
    return m, engine.get_grad_norm(), {k: v.clone() for k, v in policy.model.state_dict().items()}


@pytest.mark.parametrize("loss_kind", ["reinforce", "ppo"])
def test_one_by_eight_equals_eight_by_one_on_uneven_lengths(tiny_policy, loss_kind):
    m1, norm1, w1 = one_step(tiny_policy, 8, loss_kind, kl=True)
    m8, norm8, w8 = one_step(tiny_policy, 1, loss_kind, kl=True)
    assert norm1 == pytest.approx(norm8, rel=1e-4)
    for k in ("actor/loss", "actor/pg_loss", "actor/kl_ref"):
        assert m1[k] == pytest.approx(m8[k], rel=1e-4, abs=1e-6), k
    for k in w1:
        torch.testing.assert_close(w1[k], w8[k], rtol=1e-4, atol=1e-6)


def test_policy_step_moves_every_parameter_that_scores(tiny_policy):
    before = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    _, _, after = one_step(tiny_policy, 4, "reinforce", kl=False)
    unchanged = [k for k in after if torch.equal(after[k], before[k]) and "attn.bias" not in k
                 and "wpe" not in k]
    assert unchanged == []


def test_a_non_finite_micro_batch_drops_the_whole_step(tiny_policy):
    policy = Policy(copy.deepcopy(tiny_policy.model), tiny_policy.tokenizer,
                    max_context_tokens=tiny_policy.max_context_tokens, reserve=6)
    rows = rows_of(policy)
    engine = TorchActorEngine(policy.model, lr=1e-2, batch_size=8, micro_batch_size=4,
                              grad_clip=1.0)
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}

    def loss(logp, sub, idx):  # the second micro-batch is NaN
        w = torch.full((len(idx),), float("nan") if idx[0] >= 4 else 1.0)
        return weighted_logp_loss(logp, sub.action_mask, w, 8.0)

    with pytest.warns(RuntimeWarning, match="step skipped"):
        m = policy_step(engine, policy, rows, loss, micro_batch_size=4)
    assert m["actor/skipped"] == 1.0 and engine.global_steps == 0
    for k, v in policy.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_policy_step_refuses_a_split_the_engine_does_not_accumulate(tiny_policy):
    policy = Policy(copy.deepcopy(tiny_policy.model), tiny_policy.tokenizer, reserve=6)
    rows = rows_of(policy)
    engine = TorchActorEngine(policy.model, lr=1e-2, batch_size=8, micro_batch_size=8,
                              grad_clip=1.0)
    with pytest.raises(ValueError, match="engine accumulates 1"):
        policy_step(engine, policy, rows, lambda lp, s, i: (lp.sum(), {}), micro_batch_size=4)


def critic_batch():
    states = [f"Questions so far:\nIs it {w}? No.\n" for w in ("a cat", "red", "big", "wet")] * 2
    actions = ["Is it alive?", "Is it a tool?", "Is it food?", "Is it blue?"] * 2
    return (states, actions, [-1.0, 0.0, -1.0, 0.0, -1.0, -1.0, 0.0, 0.0],
            [s + "Is it? Yes.\n" for s in states], [False, True, False, False] * 2,
            ["Is it round?"] * 8)


def one_critic_step(micro):
    torch.manual_seed(0)
    corpus = [s for group in critic_batch()[:2] for s in group] * 3
    critic = build_critic(CriticConfig(hidden_dim=16, max_length=64), corpus, seed=0)
    target = make_target(critic)
    opt = torch.optim.SGD(critic.parameters(), lr=1.0)  # weights move by exactly the gradient
    m = critic_step(critic, target, opt, *critic_batch(), gamma=0.9, grad_clip=0.0,
                    min_q_for_v=False, micro_batch_size=micro, loss_fn=critic_loss)
    return m, critic


def test_critic_step_accumulates_one_mean_and_leaves_eval_mode():
    m8, c8 = one_critic_step(8)
    m3, c3 = one_critic_step(3)  # 3 + 3 + 2: uneven micro-batches
    assert m8["critic/loss"] == pytest.approx(m3["critic/loss"], rel=1e-5)
    assert m8["critic/grad_norm"] == pytest.approx(m3["critic/grad_norm"], rel=1e-4)
    for (n, a), (_, b) in zip(c8.named_parameters(), c3.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)
    # advantages and checks must not see dropout: the step leaves the critic in eval mode
    assert not c8.training and not any(mod.training for mod in c8.modules())


def test_entropy_bonus_is_the_mean_entropy_and_raises_it(tiny_policy):
    """score(entropy=True) gives -sum_v p log p at each action position (checked
    against a direct softmax); an entropy-only step (zero loss) raises the mean entropy, and
    the bonus is a whole-step mean (1 x 8 == 4 x 2)."""
    policy = Policy(copy.deepcopy(tiny_policy.model), tiny_policy.tokenizer,
                    max_context_tokens=tiny_policy.max_context_tokens, reserve=6)
    rows = rows_of(policy)
    scored = policy.score(rows, entropy=True)
    logp, ent = scored.logp, scored.entropy
    with torch.no_grad():
        logits = policy.model(input_ids=rows.input_ids, attention_mask=rows.attention_mask,
                              position_ids=rows.position_ids).logits.float()
    full = torch.log_softmax(logits[:, :-1], -1)  # position t predicts column t + 1
    direct = -(full.exp() * full).sum(-1)  # [B, T-1]
    mask = rows.action_mask[:, 1:].bool()
    torch.testing.assert_close(ent[:, 1:][mask], direct[mask], rtol=1e-5, atol=1e-5)
    assert torch.equal(ent[:, 1:][~mask], torch.zeros_like(ent[:, 1:][~mask]))
    assert torch.equal(logp, policy.token_logprobs(rows))

    def step(micro):
        p = Policy(copy.deepcopy(tiny_policy.model), tiny_policy.tokenizer,
                   max_context_tokens=tiny_policy.max_context_tokens, reserve=6)
        engine = TorchActorEngine(p.model, lr=1e-2, batch_size=len(rows),
                                  micro_batch_size=micro, grad_clip=0.0)
        engine.optimizer = torch.optim.SGD(engine._params, lr=1.0)
        m = policy_step(engine, p, rows, lambda lp, s, i: ((lp * 0).sum(), {}),
                        micro_batch_size=micro, entropy_coef=0.5)
        after = p.score(rows, entropy=True).entropy
        return m, after

    m8, after8 = step(8)
    m2, after2 = step(2)
    n = rows.action_mask.sum()
    assert m8["actor/entropy"] == pytest.approx(float((ent * rows.action_mask).sum() / n), rel=1e-5)
    assert m2["actor/entropy"] == pytest.approx(m8["actor/entropy"], rel=1e-5)
    assert float((after8 * rows.action_mask).sum() / n) > m8["actor/entropy"]
    torch.testing.assert_close(after2, after8, rtol=1e-4, atol=1e-5)
