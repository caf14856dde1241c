"""Policy losses shared by the methods, pure: tensors and floats in, `(loss, metrics)` out.

Every loss is a *sum* over the rows it is given divided by a normaliser `n` that the caller
takes over the whole optimizer step (rows, or action tokens, of all its micro-batches). The
micro-batch losses of a step then add up to the step's loss, however the step is split (1 x 8 ==
8 x 1), and so do the metrics, which are partial sums too.

token_logp, old_logp, ref_logp and mask are [B, T] (mask 1.0 on the action tokens only);
per-row weights are [B].
"""

from __future__ import annotations

import torch

Metrics = dict[str, float]


def weighted_logp_loss(
    token_logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, n: float,
    prefix: str = "actor",
) -> tuple[torch.Tensor, Metrics]:
    """- (1/n) sum_rows w_i * log pi(a_i|s_i), log pi summed over the utterance's tokens.

    With w = A and n = rows it is ArCHer's REINFORCE actor; with w = 1 and n = tokens, BC.
    """
    seq_logp = (token_logp * mask).sum(-1)  # [B]
    loss = -(weights.detach() * seq_logp).sum() / n
    return loss, {f"{prefix}/pg_loss": float(loss.detach()),
                  f"{prefix}/logp_mean": float(seq_logp.detach().sum() / n)}


def nll_loss(
    token_logp: torch.Tensor, mask: torch.Tensor, n_tokens: float, prefix: str = "bc"
) -> tuple[torch.Tensor, Metrics]:
    """Token-mean negative log-likelihood of the action tokens: - (1/n) sum mask * log pi."""
    loss = -(token_logp * mask).sum() / n_tokens
    return loss, {f"{prefix}/nll": float(loss.detach())}


def ppo_clip_loss(
    token_logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
    advantages: torch.Tensor, clip_eps: float, n_tokens: float, prefix: str = "actor",
) -> tuple[torch.Tensor, Metrics]:
    """- (1/n) sum_tokens min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = pi / pi_old per token.

    old_logp are the behaviour log-probs (stored when the tokens were sampled); advantages are
    [B] (shared by a row's tokens) or [B, T] (one per token). A token whose ratio is clipped on
    the side the advantage pushes gets no gradient.
    """
    ratio = torch.exp(token_logp - old_logp.detach())  # [B, T]
    adv = advantages.detach()
    adv = adv[:, None] if adv.dim() == 1 else adv  # [B, 1] or [B, T]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)  # [B, T]
    loss = -(surrogate * mask).sum() / n_tokens
    clipped = ((ratio - 1).abs() > clip_eps).float() * mask  # [B, T]
    return loss, {f"{prefix}/pg_loss": float(loss.detach()),
                  f"{prefix}/clip_fraction": float(clipped.sum() / n_tokens),
                  f"{prefix}/ratio_mean": float(((ratio * mask).sum() / n_tokens).detach())}


def kl_k3(
    token_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, n_tokens: float,
    prefix: str = "actor",
) -> tuple[torch.Tensor, Metrics]:
    """Token-mean k3 estimate of KL(pi || pi_ref) on tokens sampled from pi: exp(d) - d - 1 with
    d = log pi_ref - log pi. Non-negative, zero when the policies agree; as a loss its gradient
    is that of KL(pi_ref || pi) (ALGORITHMS.md, KL penalty)."""
    d = ref_logp.detach() - token_logp  # [B, T]
    k3 = torch.exp(d) - d - 1.0  # [B, T]
    kl = (k3 * mask).sum() / n_tokens
    return kl, {f"{prefix}/kl_ref": float(kl.detach())}


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
    clip: float, n_tokens: float, prefix: str = "value",
) -> tuple[torch.Tensor, Metrics]:
    """(1/n) sum_tokens 0.5 max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2), all [B, T];
    clip = 0 drops the clipped term (plain 0.5 (V - R)^2)."""
    returns, old_values = returns.detach(), old_values.detach()
    err = (values - returns) ** 2  # [B, T]
    if clip > 0:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        err = torch.maximum(err, (clipped - returns) ** 2)
    loss = 0.5 * (err * mask).sum() / n_tokens
    return loss, {f"{prefix}/loss": float(loss.detach()),
                  f"{prefix}/mean": float(((values * mask).sum() / n_tokens).detach())}
