"""Refit and Swift (offline reward-weighted fine-tuning): their weights and loss against hand
values, the errors a bad dataset gets, and learnability against BC on the same logged data."""

import json

import pytest
import torch
import user_envs  # noqa: F401
from conftest import OFFLINE_THRICE

from archer import loop
from archer.algorithms.losses import weighted_logp_loss
from archer.algorithms.refit import refit_weights
from archer.algorithms.swift import swift_weights
from archer.buffer.dataset import DatasetError
from archer.config import ConfigError, load_config

QUIET = {"progress": False, "log": lambda *_: None}


def test_refit_weights_map_returns_into_the_unit_interval():
    # Twenty Questions returns -20..-1 with shift 20, scale 0.05: -20 -> 0, -4 -> 0.8, -1 -> 0.95
    w = refit_weights([-20.0, -4.0, -1.0], ["a", "b", "c"], shift=20.0, scale=0.05)
    assert w == pytest.approx([0.0, 0.8, 0.95])
    with pytest.raises(DatasetError, match=r"^b: return -4 .* = -4, outside \[0, 1\]"):
        refit_weights([0.5, -4.0], ["a", "b"], shift=0.0, scale=1.0)
    with pytest.raises(DatasetError, match="outside"):  # above 1 is refused too
        refit_weights([2.0], ["a"], shift=0.0, scale=1.0)
    assert refit_weights([-4.0], ["a"], 0.0, 0.5, allow_negative=True) == [-2.0]


def test_swift_standardises_within_task_groups():
    # task a: returns 1, 0 -> mean 0.5, std 0.5 -> +1, -1
    # task b: 3, 3 -> std 0: nothing to prefer -> 0, 0
    # task c: 2, alone -> the dataset's statistics: returns 1, 0, 3, 3, 2: mean 1.8,
    #         std sqrt((0.64 + 3.24 + 1.44 + 1.44 + 0.04) / 5) = sqrt(1.36) = 1.16619
    #         -> (2 - 1.8) / 1.16619 = 0.171499
    # no task id (None): alone as well -> (0 - 1.8) / 1.16619... with the None episode the
    # dataset is 1, 0, 3, 3, 2, 0: mean 1.5, std sqrt((0.25+2.25+2.25+2.25+0.25+2.25)/6) =
    #         sqrt(1.58333) = 1.25831 -> c: 0.5 / 1.25831 = 0.397360, None: -1.5 / 1.25831
    w, alone = swift_weights([1, 0, 3, 3, 2], ["a", "a", "b", "b", "c"])
    assert w == pytest.approx([1.0, -1.0, 0.0, 0.0, 0.171499], abs=1e-6) and alone == 1
    w, alone = swift_weights([1, 0, 3, 3, 2, 0], ["a", "a", "b", "b", "c", None])
    assert w[4:] == pytest.approx([0.397360, -1.192079], abs=1e-6) and alone == 2
    w, _ = swift_weights([5, 5], ["x", "y"])  # every return equal: nothing to prefer
    assert w == [0.0, 0.0]


def test_reward_weighted_loss_hand_values():
    # Refit's loss is weighted_logp_loss with each turn carrying its episode's weight and the
    # step's episode count as the normaliser
    # two turns of episode 1 (w = 0.5), one of episode 2 (w = 1.0); N = 2 episodes
    # log pi summed per row: -1.0 (two tokens -0.4, -0.6), -2.0, -0.5
    # loss = -(0.5 * -1.0 + 0.5 * -2.0 + 1.0 * -0.5) / 2 = 1.0
    logp = torch.tensor([[-0.4, -0.6], [0.0, -2.0], [0.0, -0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    loss, m = weighted_logp_loss(logp, mask, torch.tensor([0.5, 0.5, 1.0]), 2.0, prefix="refit")
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-0.25, -0.25])  # -w / N on its tokens
    assert logp.grad[1, 0].item() == 0.0  # not an action token
    assert "refit/pg_loss" in m


# ------------------------------------------------------------------- through the loop
def _run(tmp, data, algo, *extra):
    cfg = load_config(overrides=[*OFFLINE_THRICE, f"algo={algo}", f"data.path={data}",
                                 f"output_dir={tmp / algo}", "train.iterations=10", *extra])
    return loop.run(cfg, **QUIET)


def test_refit_and_swift_beat_bc_on_the_same_logged_data(tmp_path, coin_thrice):
    """From the same tiny model built on the data: BC clones the coin (about 1/8 succeed);
    Refit weights the successful episodes 1 and the rest 0, Swift pushes the failures below
    the task's mean, so both learn to say yes three times."""
    data, _, bc = coin_thrice
    after = {algo: _run(tmp_path, data, algo)["after"]["eval/return_sample"]
             for algo in ("refit", "swift")}
    print("bc", bc, after)
    assert bc < 0.4
    assert after["refit"] > bc + 0.3
    assert after["swift"] > bc + 0.3


def test_refit_refuses_returns_outside_the_unit_interval_naming_the_line(tmp_path, coin_thrice):
    lines = coin_thrice[0].read_text().splitlines()
    bad = json.loads(lines[2])
    bad["turns"][-1]["reward"] = -3.0
    bad["return"] = -3.0
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join([*lines[:2], json.dumps(bad), *lines[3:]]) + "\n")
    with pytest.raises(DatasetError, match=rf"{data}, line 3: return -3 gives the Refit weight"):
        _run(tmp_path, data, "refit")
    # shifted and scaled into [0, 1] it trains
    assert _run(tmp_path, data, "refit", "refit.reward_shift=3", "refit.reward_scale=0.25",
                "train.iterations=1")["history"]


def test_offline_methods_need_a_dataset():
    for algo in ("refit", "swift"):
        with pytest.raises(ConfigError, match=f"algo={algo} learns offline from a dataset"):
            load_config(overrides=[f"algo={algo}"])


def test_a_last_step_that_cannot_fill_its_micro_batches_is_refused():
    """BC's and Refit's steps are cut into the engine's micro-batches (4 here), each of which
    needs a row: a last step of 1-3 items per epoch is refused, naming the keys to change."""
    from types import SimpleNamespace

    from archer.algorithms.bc import check_last_step

    engine = SimpleNamespace(gradient_accumulation_steps=4)
    for count in (16, 20, 23):  # last steps of 0 (none), 4 and 7 items
        check_last_step(count, 8, engine, "episodes", "refit")
    with pytest.raises(DatasetError, match=r"17 episodes leave a last step of 1 .* 4 micro-"
                                           r"batches.*refit.batch_size or deepspeed"):
        check_last_step(17, 8, engine, "episodes", "refit")
