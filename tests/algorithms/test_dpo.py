"""DPO on logged episodes: pair construction, the loss against hand values, and learnability
against BC (its own starting point) on the same data."""

import math

import pytest
import torch
import user_envs  # noqa: F401
from conftest import OFFLINE_THRICE
from resume import assert_resumes_exactly

from archer import loop
from archer.algorithms.dpo import dpo_loss, dpo_pairs, episode_sums
from archer.buffer.dataset import DatasetError
from archer.config import ConfigError, load_config

QUIET = {"progress": False, "log": lambda *_: None}


def test_pairs_match_best_with_worst_within_a_task_id():
    # task a: returns 3, 1, 2, 0 (episodes 0, 1, 2, 4) -> ranked 0, 2, 1, 4 -> (0, 4), (2, 1)
    # task b: 5, 5 (episodes 3, 5): equal -> no pair; task c: one episode -> none;
    # an episode without a task id is never paired
    returns = [3, 1, 2, 5, 0, 5, 9, 7]
    tasks = ["a", "a", "a", "b", "a", "b", "c", None]
    assert dpo_pairs(returns, tasks) == [(0, 4), (2, 1)]
    # an odd group leaves its median out: 2, 1, 0 -> (0, 2)
    assert dpo_pairs([2, 1, 0], ["t", "t", "t"]) == [(0, 2)]


def test_dpo_loss_hand_values():
    # pair 1: chosen log pi - ref = -1 - (-2) = 1, rejected -3 - (-2) = -1 -> margin 2
    # pair 2: chosen -2 - (-1) = -1, rejected -1 - (-1) = 0 -> margin -1
    # beta 0.5: logits 1.0 and -0.5; loss = mean(-log sigmoid) = (0.313262 + 0.974077) / 2
    chosen = torch.tensor([-1.0, -2.0], requires_grad=True)
    loss, m = dpo_loss(chosen, torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -1.0]),
                       torch.tensor([-2.0, -1.0]), beta=0.5)
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 2
    assert loss.item() == pytest.approx(expected) == pytest.approx(0.6436695)
    assert m["dpo/accuracy"] == 0.5 and m["dpo/margin"] == pytest.approx(0.5)
    loss.backward()
    # d/d chosen_p = -(1/P) beta sigmoid(-logit_p): -0.25 * 0.268941, -0.25 * 0.622459
    assert chosen.grad.tolist() == pytest.approx([-0.0672353, -0.1556148], abs=1e-6)


def test_dpo_loss_shares_of_single_pairs_add_up_to_the_whole_step():
    # A micro-batch of whole pairs adds its pairs' terms over the step's pair count, so the
    # two one-pair shares of the pairs above are (0.313262 + 0.974077) / 2 between them.
    args = [torch.tensor(v) for v in ([-1.0, -2.0], [-3.0, -1.0], [-2.0, -1.0], [-2.0, -1.0])]
    whole, wm = dpo_loss(*args, beta=0.5)
    shares = [dpo_loss(*(a[k : k + 1] for a in args), beta=0.5, n_pairs=2) for k in range(2)]
    assert shares[0][0].item() == pytest.approx(math.log1p(math.exp(-1.0)) / 2)
    assert sum(s[0].item() for s in shares) == pytest.approx(whole.item())
    for key in wm:
        assert sum(s[1][key] for s in shares) == pytest.approx(wm[key]), key


def test_episode_sums_add_every_turn_of_an_episode():
    logp = torch.tensor([[-1.0, -2.0], [0.0, -3.0], [-0.5, -0.5]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    # rows 0 and 2 belong to episode 0, row 1 to episode 1: -3 - 0.5, -3
    assert episode_sums(logp, mask, torch.tensor([0, 1, 0]), 2).tolist() == [-3.5, -3.0]


def _cfg(tmp, data, algo, *extra):
    return load_config(overrides=[*OFFLINE_THRICE, f"algo={algo}", f"data.path={data}",
                                  f"output_dir={tmp / algo}", *extra])


def test_dpo_improves_on_the_bc_policy_it_starts_from(tmp_path, coin_thrice):
    """BC on every coin-flip episode plays yes three times about 1/8 of the time; DPO from that
    policy, on pairs of a successful and a failed episode of the same task id, must beat it."""
    data, start, before = coin_thrice
    dpo = loop.run(_cfg(tmp_path, data, "dpo", f"train.init_policy={start}",
                        "train.iterations=6", "dpo.lr=1e-3", "dpo.beta=0.5"), **QUIET)
    after = dpo["after"]["eval/return_sample"]
    print("bc", before, "dpo", after, "dpo start", dpo["before"]["eval/return_sample"])
    assert dpo["before"]["eval/return_sample"] == pytest.approx(before, abs=0.15)
    assert after > before + 0.3, (before, after)
    assert dpo["history"][-1]["dpo/accuracy"] > 0.5  # the chosen episodes are preferred


def test_dpo_needs_a_starting_policy_and_pairs(tmp_path, coin_thrice):
    data, start, _ = coin_thrice
    with pytest.raises(ConfigError, match="train.init_policy: algo=dpo starts from a policy"):
        _cfg(tmp_path, data, "dpo", "train.iterations=1")
    one = tmp_path / "one.jsonl"
    one.write_text(data.read_text().splitlines()[0] + "\n")  # one episode: no pair
    with pytest.raises(DatasetError, match="no \\(chosen, rejected\\) pair"):
        loop.run(_cfg(tmp_path, one, "dpo", "train.iterations=1", f"train.init_policy={start}"),
                 **QUIET)


def test_dpo_resumes_exactly(tmp_path, coin_thrice):
    data, start, _ = coin_thrice
    assert_resumes_exactly(tmp_path, lambda out: [
        *OFFLINE_THRICE, "algo=dpo", f"data.path={data}", f"output_dir={out}",
        f"train.init_policy={start}", "dpo.batch_size=4"], ("dpo/",))
