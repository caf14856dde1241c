"""Offline ArCHer (IQL critic + AWR actor) and offline AGRO: the losses against hand values,
and learnability against BC on the same logged data."""

import math

import pytest
import torch
import user_envs  # noqa: F401
from conftest import OFFLINE_THRICE

from archer import loop
from archer.algorithms.offline_archer import awr_weights, iql_critic_loss
from archer.config import ConfigError, load_config

QUIET = {"progress": False, "log": lambda *_: None}


def test_iql_critic_loss_hand_values():
    # Q targets as ArCHer's: y = r + 0.9 (1 - done) Vbar(s') = [1 + 0.9 * 2, 0 + 0] = [2.8, 0]
    # Q loss = mean((3 - 2.8)^2, (0.5 - 0)^2) + mean((2.8 - 2.8)^2, (0 - 0)^2)
    #        = (0.04 + 0.25) / 2 + 0 = 0.145
    # V targets: min Qbar(s, a) on the dataset action = [min(1, 2), min(0, -1)] = [1, -1]
    # V1 = [0.5, 0.0]: u = [0.5, -1] -> tau 0.9: (0.9 * 0.25 + 0.1 * 1) / 2 = 0.1625
    # V2 = [2.0, -1.5]: u = [-1, 0.5] -> (0.1 * 1 + 0.9 * 0.25) / 2 = 0.1625
    loss, m = iql_critic_loss(
        torch.tensor([3.0, 0.5]), torch.tensor([2.8, 0.0]), torch.tensor([0.5, 0.0]),
        torch.tensor([2.0, -1.5]), torch.tensor([2.0, 5.0]), torch.tensor([2.0, 5.0]),
        torch.tensor([1.0, 0.0]), torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]),
        torch.tensor([0.0, 1.0]), 0.9, 0.9)
    assert m["critic/q_loss"] == pytest.approx(0.145)
    assert m["critic/v_loss"] == pytest.approx(0.1625 + 0.1625)
    assert loss.item() == pytest.approx(0.145 + 0.325)


def test_awr_weights_are_capped_exponentials():
    # beta 2: exp(2 * [-1, 0, 0.5, 3]) = [0.135335, 1, 2.718282, 403.43] -> cap 20
    w = awr_weights(torch.tensor([-1.0, 0.0, 0.5, 3.0]), 2.0, 20.0)
    assert w.tolist() == pytest.approx([math.exp(-2), 1.0, math.e, 20.0])


def test_offline_archer_beats_bc_on_the_same_logged_data(tmp_path, coin_thrice):
    """From a tiny model on the coin-flip data (BC on it: about 1/8), the IQL critic learns
    that only yes after yes pays, and AWR clones the yes turns."""
    data, _, bc = coin_thrice
    run = loop.run(load_config(overrides=[
        *OFFLINE_THRICE, "algo=offline_archer", f"data.path={data}",
        f"output_dir={tmp_path}", "train.iterations=6", "critic.hidden_dim=16",
        "offline_archer.critic.updates_per_iter=20", "offline_archer.actor.beta=10",
        "train.eval_start=false"]), **QUIET)
    after = run["after"]["eval/return_sample"]
    print("bc", bc, "offline archer", after)
    assert after > bc + 0.5, (bc, after)
    # train.eval_start=false: the untrained start is not evaluated (no "start" row)
    assert run["before"] is None and run["history"][0]["iteration"] == 0.0


def test_offline_agro_improves_on_the_bc_policy_it_starts_from(tmp_path, coin_thrice):
    """AGRO's loss on the logged episodes (grouped by task id), from the BC policy that is also
    its reference."""
    data, start, bc = coin_thrice
    run = loop.run(load_config(overrides=[
        *OFFLINE_THRICE, "algo=agro", "agro.offline=true", f"data.path={data}",
        f"train.init_policy={start}", f"output_dir={tmp_path}", "train.iterations=6",
        "agro.groups_per_step=2"]), **QUIET)
    after = run["after"]["eval/return_sample"]
    print("bc", bc, "offline agro", after, run["history"][-1]["agro/log_ratio_mean"])
    assert run["before"]["eval/return_sample"] == pytest.approx(bc, abs=0.15)
    assert after > bc + 0.1, (bc, after)
    assert run["history"][-1]["agro/ungrouped"] == 0  # 8 task ids, each logged many times


def test_offline_agro_needs_its_reference_and_data(tmp_path):
    with pytest.raises(ConfigError, match="agro.offline=true starts from a policy"):
        load_config(overrides=["algo=agro", "agro.offline=true", "data.path=d.jsonl"])
    with pytest.raises(ConfigError, match="data.path: algo=agro learns offline"):
        load_config(overrides=["algo=agro", "agro.offline=true", "train.init_policy=p"])
