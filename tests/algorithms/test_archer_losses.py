"""ArCHer losses against hand-computed values (arithmetic in the comments)."""

import subprocess
import sys

import pytest
import torch

from archer.algorithms.archer import (
    critic_loss,
    discounted_returns,
    explained_variance,
    group_advantage,
    utterance_advantage,
)

T = torch.tensor


def test_critic_loss_hand_computed():
    # Two transitions, gamma 0.5. Row 0 not done, row 1 done.
    # y1 = r + 0.5 (1 - done) Vbar1(s') = [1 + 0.5*2, -1 + 0] = [2, -1]
    # y2 = [1 + 0.5*4, -1] = [3, -1]
    # Q1 = [1, -1] -> mse1 = ((1-2)^2 + 0) / 2 = 0.5 ; Q2 = [3, 1] -> mse2 = (0 + 4) / 2 = 2
    # V targets per head: Qbar1(s, a~) = [0, 2], Qbar2 = [1, 0]
    # V1 = [0, 0] -> (0 + 4)/2 = 2 ; V2 = [0, 0] -> (1 + 0)/2 = 0.5
    # total = 0.5 + 2 + 2 + 0.5 = 5
    loss, m = critic_loss(
        q1=T([1.0, -1.0]), q2=T([3.0, 1.0]), v1=T([0.0, 0.0]), v2=T([0.0, 0.0]),
        target_v1_next=T([2.0, 7.0]), target_v2_next=T([4.0, 9.0]),
        target_q1_fresh=T([0.0, 2.0]), target_q2_fresh=T([1.0, 0.0]),
        reward=T([1.0, -1.0]), done=T([0.0, 1.0]), gamma=0.5)
    assert loss.item() == pytest.approx(5.0)
    assert m["critic/q_loss"] == pytest.approx(2.5) and m["critic/v_loss"] == pytest.approx(2.5)
    # min_q_for_v: both V heads regress on min(Qbar1, Qbar2) = [0, 0] -> V loss 0.
    loss, m = critic_loss(T([1.0, -1.0]), T([3.0, 1.0]), T([0.0, 0.0]), T([0.0, 0.0]),
                          T([2.0, 7.0]), T([4.0, 9.0]), T([0.0, 2.0]), T([1.0, 0.0]),
                          T([1.0, -1.0]), T([0.0, 1.0]), 0.5, min_q_for_v=True)
    assert m["critic/v_loss"] == pytest.approx(0.0) and loss.item() == pytest.approx(2.5)


def test_critic_loss_gradients_do_not_reach_targets():
    tv = T([1.0], requires_grad=True)
    q = T([0.0], requires_grad=True)
    loss, _ = critic_loss(q, q, q, q, tv, tv, tv, tv, T([0.0]), T([0.0]), 0.9)
    loss.backward()
    assert tv.grad is None and q.grad is not None


def test_advantage_is_min_q_minus_min_v():
    # min(Q) = [1, -2], min(V) = [0.5, -3] -> A = [0.5, 1]
    adv = utterance_advantage(T([1.0, -1.0]), T([2.0, -2.0]), T([0.5, 0.0]), T([1.0, -3.0]))
    assert adv.tolist() == pytest.approx([0.5, 1.0])


def test_group_advantage_is_leave_one_out_within_each_state():
    # Two states, three utterances each; min(Q1, Q2) = [1, 2, 6 | -1, -1, -4]
    # state 0: 1 - (2+6)/2 = -3 ; 2 - (1+6)/2 = -1.5 ; 6 - (1+2)/2 = 4.5
    # state 1: -1 - (-1-4)/2 = 1.5 ; 1.5 ; -4 - (-1-1)/2 = -3
    q1 = T([1.0, 2.0, 7.0, -1.0, 0.0, -4.0])
    q2 = T([3.0, 2.0, 6.0, -1.0, -1.0, 5.0])
    adv = group_advantage(q1, q2, 3)
    assert adv.tolist() == pytest.approx([-3.0, -1.5, 4.5, 1.5, 1.5, -3.0])
    # a critic error shared by every action of a state cancels
    shifted = group_advantage(q1 + T([10.0] * 3 + [-7.0] * 3), q2 + T([10.0] * 3 + [-7.0] * 3), 3)
    assert shifted.tolist() == pytest.approx(adv.tolist())
    with pytest.raises(ValueError, match="group_size >= 2"):
        group_advantage(q1, q2, 1)
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantage(q1, q2, 4)


def test_algorithms_import_neither_ray_nor_deepspeed():
    code = ("import sys, archer.algorithms.archer, archer.algorithms.bc, archer.loop; "
            "bad = [m for m in ('ray', 'deepspeed') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_discounted_returns_by_hand():
    # G2 = 0, G1 = -1 + 0.5 * 0 = -1, G0 = -1 + 0.5 * -1 = -1.5
    assert discounted_returns([-1.0, -1.0, 0.0], 0.5) == [-1.5, -1.0, 0.0]
    assert discounted_returns([2.0], 0.9) == [2.0]
    assert discounted_returns([], 0.9) == []


def test_explained_variance_by_hand():
    target = [1.0, 2.0, 3.0, 4.0]  # variance 1.25
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance([2.5] * 4, target) == pytest.approx(0.0)  # the mean
    # residuals -3, -1, 1, 3: variance 5 -> 1 - 5 / 1.25 = -3
    assert explained_variance([4.0, 3.0, 2.0, 1.0], target) == pytest.approx(-3.0)
    # a constant offset is invisible to explained variance (the trainer logs the bias apart)
    assert explained_variance([2.0, 3.0, 4.0, 5.0], target) == pytest.approx(1.0)
    assert explained_variance([1.0, 1.0], [3.0, 3.0]) is None  # constant target
    assert explained_variance([1.0], [2.0]) is None
    with pytest.raises(ValueError, match="length"):
        explained_variance([1.0, 2.0], [1.0, 2.0, 3.0])
