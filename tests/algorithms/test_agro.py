"""AGRO: the regularised reward and its per-task baseline by hand, the exact reduction to
KL-regularised policy gradient on a toy distribution, and learnability through the loop."""

import pytest
import torch
import user_envs  # noqa: F401
from resume import assert_resumes_exactly

from archer import loop
from archer.algorithms.agro import agro_advantages, agro_loss, regularised_rewards
from archer.config import ConfigError, load_config

QUIET = {"progress": False, "log": lambda *_: None}


def test_regularised_rewards_and_baselines_by_hand():
    # s = R - beta (log pi - log pi_ref), beta 0.5:
    #   1 - 0.5 (-2 + 1) = 1.5;  0 - 0.5 (-1 + 3) = -1;  2 - 0.5 (0 - 0) = 2;  4 - 0.5 (-4 + 2) = 5
    s = regularised_rewards(torch.tensor([1.0, 0.0, 2.0, 4.0]),
                            torch.tensor([-2.0, -1.0, 0.0, -4.0]),
                            torch.tensor([-1.0, -3.0, 0.0, -2.0]), beta=0.5)
    assert s.tolist() == [1.5, -1.0, 2.0, 5.0]
    keys = ["a", "a", "b", "c"]
    # mean: group a mean 0.25 -> 1.25, -1.25; b and c are alone -> 0 (and counted)
    adv, alone = agro_advantages(s, keys, "mean")
    assert adv.tolist() == [1.25, -1.25, 0.0, 0.0] and alone == 2
    # loo over a group of three: 1.5 - (-1 + 2) / 2 = 1, -1 - (1.5 + 2) / 2 = -2.75,
    # 2 - (1.5 - 1) / 2 = 1.75
    adv, alone = agro_advantages(s[:3], ["a"] * 3, "loo")
    assert torch.allclose(adv, torch.tensor([1.0, -2.75, 1.75])) and alone == 0


def test_agro_loss_by_hand():
    # rows' log pi: -1 - 2 = -3 and -0.5 (padding after); loss = -(2 * -3 + -1 * -0.5) / 2 = 2.75
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, _ = agro_loss(logp, mask, torch.tensor([2.0, -1.0]), n=2.0)
    assert loss.item() == pytest.approx(2.75)


def test_on_policy_agro_is_kl_regularised_policy_gradient_exactly():
    """pi = softmax(theta) = (0.1, 0.2, 0.3, 0.4) over four 'episodes' of one task id; a sample
    of 10 with counts 1, 2, 3, 4 has exactly pi's frequencies, so the AGRO gradient on it (mean
    baseline, 1/n) is the expectation of the estimator: it must equal the gradient of
    J = E_pi[R] - beta KL(pi || pi_ref), computed by autograd."""
    beta = 0.3
    reward = torch.tensor([1.0, -2.0, 0.5, 3.0])
    ref_logp = torch.log_softmax(torch.tensor([0.3, -0.2, 1.0, 0.1]), -1)
    theta = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).requires_grad_()

    pi = torch.softmax(theta, -1)
    J = (pi * reward).sum() - beta * (pi * (torch.log(pi) - ref_logp)).sum()
    (grad_j,) = torch.autograd.grad(J, theta)

    ys = torch.tensor([0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    logp = torch.log_softmax(theta, -1)[ys]  # [10]
    s = regularised_rewards(reward[ys], logp, ref_logp[ys], beta)
    adv, _ = agro_advantages(s, ["task"] * 10, "mean")
    loss, _ = agro_loss(logp[:, None], torch.ones(10, 1), adv, n=10.0)
    (grad_agro,) = torch.autograd.grad(loss, theta, retain_graph=True)
    assert torch.allclose(-grad_agro, grad_j, atol=1e-6), (grad_agro, grad_j)
    # without the KL term it is plain REINFORCE with a mean baseline: not J's gradient
    adv0, _ = agro_advantages(regularised_rewards(reward[ys], logp, ref_logp[ys], 0.0),
                              ["task"] * 10)
    (grad_pg,) = torch.autograd.grad(agro_loss(logp[:, None], torch.ones(10, 1), adv0, 10.0)[0],
                                     theta)
    assert not torch.allclose(-grad_pg, grad_j, atol=1e-3)


def test_config_checks_agro():
    with pytest.raises(ConfigError, match="agro.baseline: must be one of"):
        load_config(overrides=["algo=agro", "agro.baseline=group"])
    with pytest.raises(ConfigError, match="agro.minibatches: must be <= the groups"):
        load_config(overrides=["algo=agro", "agro.minibatches=64"])


def _overrides(tmp, init, iterations):
    return [
        "env.id=user_envs:SayYes-v0", f"output_dir={tmp}", f"train.init_policy={init}",
        "algo=agro", "rollout.num_workers=0", "rollout.episodes_per_iter=16",
        "rollout.envs_per_worker=16", "rollout.group_size=4", "model.max_context_tokens=64",
        "generation.max_new_tokens=4", "deepspeed.micro_batch_size=8", "train.eval_every=0",
        "train.tensorboard=false", "eval.episodes=64", "buffer.capacity=2000",
        "agro.lr=1e-3", "agro.beta=0.05", f"train.iterations={iterations}",
    ]


def test_agro_learns_to_say_yes_from_new_and_replayed_episodes(tmp_path, coin_start):
    cfg = load_config(overrides=_overrides(tmp_path, coin_start["SayYes-v0"], 8))
    result = loop.run(cfg, **QUIET)
    before, after = result["before"]["eval/return_sample"], result["after"]["eval/return_sample"]
    print("sampled return before / after:", before, after)
    assert after > before + 0.3, (before, after)
    hist = result["history"]
    assert hist[0]["agro/replayed"] == 0.0  # nothing stored yet
    # 0.5 per new episode of a task id seen before (8 task ids: by iteration 4 most are)
    replayed = [h["agro/replayed"] for h in hist]
    assert all(0 < r <= 8 for r in replayed[1:]) and replayed[-1] >= 6, replayed
    assert hist[-1]["agro/ungrouped"] == 0.0 and hist[-1]["agro/skipped"] == 0.0


def test_agro_resumes_exactly(tmp_path, coin_start):
    assert_resumes_exactly(tmp_path, lambda out: _overrides(out, coin_start["SayYes-v0"], 3),
                           ("agro/",))
