"""CHAI: the reranking rule by hand, acting through a chooser (ids and log-probs of the kept
candidate), and learnability through the loop on SayYes with the actor frozen."""

import pytest
import torch
import user_envs  # noqa: F401
from resume import assert_resumes_exactly

from archer import loop
from archer.algorithms.chai import CriticChooser, best_candidates
from archer.config import ConfigError, load_config
from archer.models.policy import Sampling
from archer.rollout.collector import act_utterances, candidate_seed

QUIET = {"progress": False, "log": lambda *_: None}


def test_best_candidates_hand_values():
    # two states, k = 3; min(Q1, Q2) per candidate: [1, 2, 0] and [5, -1, 5]
    q1 = torch.tensor([1.0, 4.0, 0.0, 5.0, -1.0, 6.0])
    q2 = torch.tensor([3.0, 2.0, 9.0, 7.0, 8.0, 5.0])
    assert best_candidates(q1, q2, 3).tolist() == [1, 0]  # a tie goes to the first candidate
    with pytest.raises(ValueError, match="groups of 4"):
        best_candidates(q1, q2, 4)


class KeepLast:
    """Keeps the last of its candidates."""

    candidates = 3

    def __init__(self):
        self.seen = []

    def choose(self, observations, utterances):
        self.seen.append((list(observations), list(utterances)))
        return [self.candidates - 1] * (len(observations) // self.candidates)


def test_acting_through_a_chooser_keeps_the_candidate_it_picks(tiny_policy):
    obs = ["Questions:\nIs it a cat? No.\n", "Questions:\n"]
    seeds = [11, 12]
    chooser = KeepLast()
    out = act_utterances(tiny_policy, obs, Sampling(max_new_tokens=8), seeds=seeds,
                         chooser=chooser)
    # the chooser saw each observation 3 times, with its 3 candidates
    seen_obs, seen_utts = chooser.seen[0]
    assert seen_obs == [obs[0]] * 3 + [obs[1]] * 3 and len(seen_utts) == 6
    # the kept candidate is what candidate 2 of that row's seed samples on its own: same ids,
    # the same log-probs (up to float noise: the batches differ in size)
    direct = tiny_policy.generate(obs, Sampling(max_new_tokens=8),
                                  seeds=[candidate_seed(s, 2) for s in seeds])
    assert out.action_ids == direct.action_ids and out.texts == direct.texts
    for got, want in zip(out.logprobs, direct.logprobs, strict=True):
        assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5)
    assert out.texts == [seen_utts[2], seen_utts[5]]


def test_a_chooser_that_returns_nonsense_is_a_clear_error(tiny_policy):
    class Bad(KeepLast):
        def choose(self, observations, utterances):
            return [7]

    with pytest.raises(ValueError, match="chooser returned"):
        act_utterances(tiny_policy, ["Questions:\n"], Sampling(max_new_tokens=4), seeds=[1],
                       chooser=Bad())


def test_config_checks_candidates():
    with pytest.raises(ConfigError, match="chai.candidates: must be >= 1"):
        load_config(overrides=["algo=chai", "chai.candidates=0"])


def _overrides(tmp, init):
    return [
        "env.id=user_envs:SayYes-v0", f"output_dir={tmp}", f"train.init_policy={init}",
        "algo=chai", "rollout.num_workers=0", "rollout.episodes_per_iter=16",
        "rollout.envs_per_worker=16", "model.max_context_tokens=64",
        "generation.max_new_tokens=4", "train.eval_every=0", "train.tensorboard=false",
        "eval.episodes=64", "buffer.capacity=2000", "critic.hidden_dim=32",
        "chai.critic.batch_size=32", "chai.critic.updates_per_iter=10",
    ]


def test_chai_learns_to_say_yes_with_a_frozen_actor(tmp_path, coin_start):
    """The coin-flip start says yes half the time; once the critic ranks "yes" above "no",
    the best of 5 candidates is "yes" unless all five are "no" (1 - 0.5^5 = 0.97)."""
    init = coin_start["SayYes-v0"]
    cfg = load_config(overrides=[*_overrides(tmp_path, init), "train.iterations=5"])
    result = loop.run(cfg, **QUIET)
    before, after = result["before"]["eval/return_sample"], result["after"]["eval/return_sample"]
    print("sampled return before / after:", before, after)
    assert after > before + 0.25 and after > 0.85, (before, after)
    last = result["history"][-1]
    assert last["policy_version"] == 0.0  # the actor never moved
    assert last["critic/skipped"] == 0.0
    # the reranker's ranking is the critic's: Q(yes) well above Q(no)
    from archer.models.critic import DoubleCritic

    target = DoubleCritic.from_pretrained(f"{result['checkpoint']}/target_critic").eval()
    with torch.no_grad():
        q1, q2 = target.q(["Answer yes or no.\n"] * 2, ["yes", "no"])
    q = torch.minimum(q1, q2)
    assert q[0] - q[1] > 0.5, q
    from safetensors.torch import load_file

    start = load_file(f"{init}/model.safetensors")
    saved = load_file(f"{result['checkpoint']}/policy/model.safetensors")
    assert all(torch.equal(start[k], saved[k]) for k in start)


def test_chai_resumes_exactly(tmp_path, coin_start):
    assert_resumes_exactly(tmp_path, lambda out: [
        *_overrides(out, coin_start["SayYes-v0"]), "chai.critic.updates_per_iter=2"],
        ("critic/",))


def test_critic_chooser_ranks_by_min_q(tiny_policy):
    class Fixed(torch.nn.Module):
        def eval(self):
            return self

        def q(self, states, actions):
            q = torch.tensor([len(a) for a in actions], dtype=torch.float32)
            return q, q + 1.0

    chooser = CriticChooser(Fixed(), candidates=2)
    assert chooser.choose(["s"] * 4, ["a", "bbb", "cc", "c"]) == [1, 0]
