"""Trajectory-level REINFORCE / GRPO and filtered BC: their losses against hand-computed values,
their config errors, and learnability through the loop on the tiny yes/no envs."""

import pytest
import torch
import user_envs  # noqa: F401
from resume import assert_resumes_exactly

from archer import loop
from archer.algorithms.filtered_bc import filter_episodes, return_threshold
from archer.algorithms.reinforce import (
    group_advantages,
    loo_advantages,
    reinforce_loss,
    running_baseline,
)
from archer.algorithms.updates import turn_rows
from archer.config import ConfigError, load_config
from archer.models.policy import Policy, Sampling
from archer.types import Trajectory, Turn

QUIET = {"progress": False, "log": lambda *_: None}
KEYS = ["a", "a", "b", "b", "b"]
RETURNS = torch.tensor([1.0, 3.0, 0.0, 3.0, 6.0])


def test_group_advantages_hand_values():
    # group a: mean 2, population std 1        -> (1-2)/1, (3-2)/1 = -1, 1
    # group b: mean 3, std sqrt((9+0+9)/3)=sqrt 6 -> -3/2.4495, 0, 3/2.4495 = -1.2247, 0, 1.2247
    adv = group_advantages(RETURNS, KEYS, eps=0.0)
    assert torch.allclose(adv, torch.tensor([-1.0, 1.0, -1.224745, 0.0, 1.224745]), atol=1e-5)
    # without the std: R - mean_g = -1, 1, -3, 0, 3
    assert torch.allclose(group_advantages(RETURNS, KEYS, scale_by_std=False),
                          torch.tensor([-1.0, 1.0, -3.0, 0.0, 3.0]))
    # a group whose returns are all equal carries no signal: 0, not 0/0
    assert torch.equal(group_advantages(torch.tensor([2.0, 2.0]), ["x", "x"]), torch.zeros(2))


def test_loo_advantages_hand_values():
    # a: 1 - 3 = -2, 3 - 1 = 2;  b: 0 - (3+6)/2 = -4.5, 3 - (0+6)/2 = 0, 6 - (0+3)/2 = 4.5
    assert torch.allclose(loo_advantages(RETURNS, KEYS),
                          torch.tensor([-2.0, 2.0, -4.5, 0.0, 4.5]))


@pytest.mark.parametrize("fn", [group_advantages, loo_advantages])
def test_a_group_of_one_is_a_clear_error(fn):
    with pytest.raises(ValueError, match="task id 'c' has one episode"):
        fn(torch.tensor([1.0, 2.0, 3.0]), ["a", "a", "c"])


def test_running_baseline_hand_values():
    assert running_baseline(None, [1.0, 3.0], 0.9) == 2.0  # the first iteration's mean
    assert running_baseline(2.0, [5.0], 0.9) == pytest.approx(0.9 * 2.0 + 0.1 * 5.0)  # 2.3


def test_reinforce_loss_hand_values():
    # rows: seq log-probs -1-2 = -3 and -0.5 (the second row's 2nd position is padding)
    # loss = -(2 * -3 + -1 * -0.5) / 2 = -(-6 + 0.5) / 2 = 2.75
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, m = reinforce_loss(logp, mask, torch.tensor([2.0, -1.0]), n=2.0)
    assert loss.item() == pytest.approx(2.75)
    loss.backward()
    # d loss / d logp = -A / n on action tokens, 0 on padding
    assert torch.equal(logp.grad, torch.tensor([[-1.0, -1.0], [0.5, 0.0]]))
    assert m["reinforce/logp_mean"] == pytest.approx((-3 - 0.5) / 2)


def test_return_threshold_and_filter():
    assert return_threshold([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    # 90th percentile of 0..9 with linear interpolation: 0.9 * 9 = 8.1
    assert return_threshold([float(i) for i in range(10)], 90) == pytest.approx(8.1)
    eps = [Trajectory("e", str(i), [Turn("o", "a", float(i), True, False)])
           for i in range(5)]
    kept, threshold = filter_episodes(eps, 50)
    assert threshold == 2.0 and [t.task_id for t in kept] == ["2", "3", "4"]


def test_config_refuses_a_group_of_one_and_uneven_groups():
    with pytest.raises(ConfigError, match="rollout.group_size: must be >= 2 for reinforce"):
        load_config(overrides=["algo=reinforce"])
    with pytest.raises(ConfigError, match="rollout.group_size: must divide episodes_per_iter"):
        load_config(overrides=["algo=reinforce", "rollout.group_size=3"])
    cfg = load_config(overrides=["algo=reinforce", "reinforce.baseline=running"])
    assert cfg.rollout.group_size == 1


def test_turn_rows_score_exactly_the_sampled_episode(tmp_path):
    """The rows of an episode are its turns' prompts + sampled ids: scored again, their log-probs
    sum to the episode's stored log pi (the trajectory-level response)."""
    from archer.models.tiny import build_tiny_policy, train_tokenizer

    tok = train_tokenizer(["Answer yes or no.\n", "yes", "no"] * 20, 300)
    policy = Policy(build_tiny_policy(tok, "tiny", 64, 0), tok, "cpu", 64, reserve=4)
    obs = ["Answer yes or no.\n", "Answer yes or no.\nyes\n", "Answer yes or no.\nyes\nno\n"]
    gen = policy.generate(obs, Sampling(max_new_tokens=4), seeds=[1, 2, 3])
    turns = [Turn(o, t, 0.0, False, False, action_ids=i, logprobs=lp)
             for o, t, i, lp in zip(obs, gen.texts, gen.action_ids, gen.logprobs, strict=True)]
    traj = Trajectory("e", "0", turns, tokenizer=policy.fingerprint)
    rows, owner = turn_rows(policy, [traj])
    assert owner == [0, 0, 0]
    logp = policy.token_logprobs(rows)
    stored = sum(sum(lp) for lp in gen.logprobs)
    assert float((logp * rows.action_mask).sum()) == pytest.approx(stored, abs=1e-4)
    other = Trajectory("e", "0", turns, tokenizer="another-tokenizer")
    with pytest.raises(ValueError, match="tokenizer"):
        turn_rows(policy, [other])


# --------------------------------------------------------------------- learnability
def _overrides(tmp, init, env):
    return [
        f"env.id=user_envs:{env}", f"output_dir={tmp}", f"train.init_policy={init}",
        "rollout.num_workers=0", "rollout.episodes_per_iter=16", "rollout.envs_per_worker=16",
        "model.max_context_tokens=64", "generation.max_new_tokens=4",
        "deepspeed.micro_batch_size=8", "train.eval_every=0", "train.tensorboard=false",
        "eval.episodes=64", "buffer.capacity=2000",
    ]


@pytest.mark.parametrize("env,variant,iterations", [
    ("SayYes-v0", ["reinforce.baseline=group", "rollout.group_size=4"], 8),
    ("SayYes-v0", ["reinforce.baseline=running"], 8),
    # the reward only after three turns: the episode's return is every turn's credit
    ("SayYesThrice-v0", ["reinforce.baseline=loo", "rollout.group_size=4",
                         "rollout.episodes_per_iter=32"], 12),
], ids=["grpo", "running", "rloo-three-turns"])
def test_reinforce_learns(tmp_path, coin_start, env, variant, iterations):
    cfg = load_config(overrides=[*_overrides(tmp_path, coin_start[env], env), "algo=reinforce",
                                 "reinforce.lr=1e-3", "reinforce.kl_coef=0",
                                 f"train.iterations={iterations}", *variant])
    result = loop.run(cfg, **QUIET)
    before, after = result["before"]["eval/return_sample"], result["after"]["eval/return_sample"]
    print("sampled return before / after:", before, after)
    assert after > before + 0.3, (before, after)
    last = result["history"][-1]
    assert last["policy_version"] == float(iterations)
    assert last["reinforce/skipped"] == 0.0


def test_filtered_bc_learns_to_say_yes(tmp_path, coin_start):
    cfg = load_config(overrides=[*_overrides(tmp_path, coin_start["SayYes-v0"], "SayYes-v0"),
                                 "algo=filtered_bc", "filtered_bc.lr=1e-3",
                                 "filtered_bc.percentile=50", "filtered_bc.batch_size=16",
                                 "train.iterations=6"])
    result = loop.run(cfg, **QUIET)
    before, after = result["before"]["eval/return_sample"], result["after"]["eval/return_sample"]
    print("sampled return before / after:", before, after)
    assert after > before + 0.25, (before, after)
    last = result["history"][-1]
    assert last["filtered_bc/threshold"] >= 0.5  # only "yes" episodes are kept by the end
    assert last["filtered_bc/stored_episodes"] == 6 * 16


def test_group_size_needs_task_ids(tmp_path, coin_start):
    cfg = load_config(overrides=[*_overrides(tmp_path, coin_start["SayYes-v0"], "SayYes-v0"),
                                 "env.id=examples.guess_number:GuessMyNumber-v0", "algo=reinforce",
                                 "rollout.group_size=4", "train.iterations=1"])
    with pytest.raises(ConfigError, match="has no task ids"):
        loop.run(cfg, **QUIET)


@pytest.mark.parametrize("algo,extra", [
    ("reinforce", ["reinforce.baseline=running", "reinforce.kl_coef=0.5"]),
    ("filtered_bc", ["filtered_bc.percentile=50", "filtered_bc.batch_size=16"]),
])
def test_resume_continues_exactly(tmp_path, coin_start, algo, extra):
    """The running baseline, the store, the RNGs and the optimizer come back."""
    assert_resumes_exactly(tmp_path, lambda out: [
        *_overrides(out, coin_start["SayYes-v0"], "SayYes-v0"), f"algo={algo}", *extra],
        (f"{algo}/",))
