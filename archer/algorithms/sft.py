"""BC / SFT: negative log-likelihood of the agent's tokens; environment text is never a target."""

from __future__ import annotations

import math
import warnings

import torch


def bc_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, action_mask: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean NLL over action tokens.

    logits:      [B, T, V] next-token logits for `input_ids`
    input_ids:   [B, T]    prompt tokens then utterance tokens (then padding)
    action_mask: [B, T]    1 where the token belongs to the agent's utterance, else 0
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
    targets = input_ids[:, 1:]  # [B, T-1]
    mask = action_mask[:, 1:].to(logp.dtype)  # [B, T-1]
    token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    n_tokens = mask.sum().clamp(min=1.0)
    loss = -(token_logp * mask).sum() / n_tokens
    correct = (logp.argmax(-1) == targets).to(logp.dtype) * mask  # [B, T-1]
    metrics = {
        "sft/nll": float(loss.detach()),
        "sft/token_accuracy": float(correct.sum() / n_tokens),
        "sft/tokens": float(mask.sum()),
    }
    return loss, metrics


def update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    grad_clip: float = 1.0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, float]:
    """One BC step. A non-finite loss skips the step (with a warning) and reports it."""
    model.train()
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits  # [B, T, V]
    loss, metrics = bc_loss(logits, batch["input_ids"], batch["action_mask"])
    optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(metrics["sft/nll"]):
        warnings.warn("non-finite BC loss: step skipped", RuntimeWarning, stacklevel=2)
        return {**metrics, "sft/skipped": 1.0}
    loss.backward()
    if grad_clip > 0:
        metrics["sft/grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
        metrics["sft/lr"] = scheduler.get_last_lr()[0]
    return {**metrics, "sft/skipped": 0.0}
