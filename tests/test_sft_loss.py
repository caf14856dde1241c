import math
import subprocess
import sys

import pytest
import torch

from archer.algorithms.sft import bc_loss, update


def test_bc_loss_hand_computed():
    # One sequence [p, a1, a2] with vocabulary 3: token 0 is the prompt, 1 and 2 the action.
    # logits[0] = [0, 0, 0]      -> log p(a1 = 1) = -ln 3            (argmax 0: wrong)
    # logits[1] = [0, 0, ln 2]   -> log p(a2 = 2) = ln(2/4) = -ln 2  (argmax 2: right)
    # mean NLL over the 2 action tokens = (ln 3 + ln 2) / 2 = 0.895880
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, math.log(2)], [5.0, 5.0, 5.0]]])
    ids = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[0, 1, 1]])
    loss, metrics = bc_loss(logits, ids, mask)
    assert loss.item() == pytest.approx((math.log(3) + math.log(2)) / 2, abs=1e-6)
    assert metrics["sft/token_accuracy"] == pytest.approx(0.5)
    assert metrics["sft/tokens"] == 2


def test_bc_loss_is_a_token_mean_and_ignores_prompt_and_padding():
    # Row 2 has one action token with NLL ln 3; row 1 two tokens (ln 3, ln 2).
    # Token mean = (ln3 + ln2 + ln3) / 3, not the mean of the row means.
    logits = torch.zeros(2, 3, 3)
    logits[0, 1, 2] = math.log(2)
    ids = torch.tensor([[0, 1, 2], [0, 1, 0]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 0]])
    loss, _ = bc_loss(logits, ids, mask)
    assert loss.item() == pytest.approx((2 * math.log(3) + math.log(2)) / 3, abs=1e-6)
    # Changing prompt/padding logits changes nothing.
    logits[1, 2] = 100.0
    assert bc_loss(logits, ids, mask)[0].item() == pytest.approx(loss.item())


def test_update_changes_every_parameter(tiny_policy):
    import copy

    model = copy.deepcopy(tiny_policy.model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 100, (4, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "action_mask": (torch.arange(12) >= 6).long().expand(4, 12)}
    metrics = update(model, opt, batch, grad_clip=1.0)
    assert metrics["sft/skipped"] == 0.0
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def test_non_finite_loss_skips_the_step(tiny_policy):
    import copy

    model = copy.deepcopy(tiny_policy.model)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 100, (2, 8))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "action_mask": torch.ones_like(ids)}
    with pytest.warns(RuntimeWarning, match="step skipped"):
        metrics = update(model, opt, batch)
    assert metrics["sft/skipped"] == 1.0
    for n, p in model.named_parameters():
        assert torch.equal(p.isnan(), before[n].isnan())


def test_algorithms_import_neither_ray_nor_deepspeed():
    code = ("import sys, archer.algorithms, archer.algorithms.sft; "
            "bad = [m for m in ('ray', 'deepspeed') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
