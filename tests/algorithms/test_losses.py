"""The shared policy losses against hand-computed values (arithmetic in the comments). Every loss
is a sum over its rows divided by a whole-step normaliser `n`."""

import math

import pytest
import torch

from archer.algorithms.losses import kl_k3, nll_loss, ppo_clip_loss, weighted_logp_loss

T = torch.tensor


def test_weighted_logp_loss_hand_computed():
    # Row 0: tokens logp [-1, -2] (sum -3), w = 2 ; row 1: one token logp -0.5 (pad ignored), w = -1
    # loss = -(2 * -3 + -1 * -0.5) / 2 = -(-6 + 0.5) / 2 = 2.75
    logp = T([[-1.0, -2.0], [-0.5, -9.0]])
    mask = T([[1.0, 1.0], [1.0, 0.0]])
    loss, m = weighted_logp_loss(logp, mask, T([2.0, -1.0]), n=2)
    assert loss.item() == pytest.approx(2.75)
    assert m["actor/logp_mean"] == pytest.approx((-3 - 0.5) / 2)
    # the same rows as two micro-batches, each normalised by the step's 2 rows, add up
    l0, _ = weighted_logp_loss(logp[:1], mask[:1], T([2.0]), n=2)  # -(-6)/2 = 3
    l1, _ = weighted_logp_loss(logp[1:], mask[1:], T([-1.0]), n=2)  # -(0.5)/2 = -0.25
    assert (l0 + l1).item() == pytest.approx(2.75)


def test_nll_loss_is_the_token_mean():
    # tokens -1, -2, -0.5 over 3 action tokens: (1 + 2 + 0.5) / 3
    loss, m = nll_loss(T([[-1.0, -2.0], [-0.5, -9.0]]), T([[1.0, 1.0], [1.0, 0.0]]), n_tokens=3)
    assert loss.item() == pytest.approx(3.5 / 3) and m["bc/nll"] == pytest.approx(3.5 / 3)


def test_ppo_clip_loss_hand_computed():
    # eps 0.2. Row 0 (A = 1): ratios e^0.5 = 1.6487 (clipped to 1.2) and e^0 = 1
    #   -> min(1.6487, 1.2) = 1.2 and 1.0
    # Row 1 (A = -1): ratio e^-0.5 = 0.6065 -> min(-0.6065, -0.8) = -0.8 ; its 2nd token is padding
    # loss = -(1.2 + 1.0 - 0.8) / 3 = -0.466667 ; clipped tokens: 2 of 3
    old = T([[-1.0, -1.0], [-1.0, -1.0]])
    new = T([[-0.5, -1.0], [-1.5, 5.0]])
    mask = T([[1.0, 1.0], [1.0, 0.0]])
    loss, m = ppo_clip_loss(new, old, mask, T([1.0, -1.0]), 0.2, n_tokens=3)
    assert loss.item() == pytest.approx(-(1.2 + 1.0 - 0.8) / 3, abs=1e-6)
    assert m["actor/clip_fraction"] == pytest.approx(2 / 3)


def test_ppo_clipped_tokens_get_no_gradient():
    # Token 0: ratio e^0.5 > 1.2 with A = 1 -> the clipped branch (constant 1.2 A) wins: no gradient.
    # Token 1: ratio 1 -> d/dlogp of -(rho A)/n = -rho A / n = -1/2.
    # Token 2 (row 1, A = -1): ratio e^-0.5 < 0.8 -> min(rho A, 0.8 A) = 0.8 A is clipped: no gradient.
    new = T([[-0.5, -1.0], [-1.5, 0.0]], requires_grad=True)
    old = T([[-1.0, -1.0], [-1.0, 0.0]])
    mask = T([[1.0, 1.0], [1.0, 0.0]])
    loss, m = ppo_clip_loss(new, old, mask, T([1.0, -1.0]), 0.2, n_tokens=2)
    loss.backward()
    assert m["actor/clip_fraction"] > 0
    assert new.grad.flatten().tolist() == pytest.approx([0.0, -0.5, 0.0, 0.0])


def test_kl_k3():
    # d = ref - logp = [0, ln 2] -> k3 = [0, 2 - ln2 - 1] ; sum over 2 tokens / n = 2
    logp = T([[-1.0, -1.0 - math.log(2)]])
    ref = T([[-1.0, -1.0]])
    kl, m = kl_k3(logp, ref, torch.ones(1, 2), n_tokens=2)
    assert kl.item() == pytest.approx((1 - math.log(2)) / 2)
    assert m["actor/kl_ref"] == pytest.approx((1 - math.log(2)) / 2)
    assert kl_k3(ref, ref, torch.ones(1, 2), n_tokens=2)[0].item() == 0.0
