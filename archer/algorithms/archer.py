"""ArCHer: an utterance-level off-policy critic and a token-level policy-gradient actor.

Formulas (ALGORITHMS.md, Zhou et al. 2024):
- critic, per head i:  Q_i(s, a) -> r + gamma (1 - done) Vbar_i(s')
                       V_i(s)    -> Qbar_i(s, a~),  a~ ~ pi(.|s) a fresh utterance
- advantage:           A = sg[min(Q_1, Q_2)(s, a~) - min(V_1, V_2)(s)], the same for every token
- actor (REINFORCE):   - mean_batch A * log pi(a~|s)   (log pi summed over the utterance's tokens)
- actor (PPO):         - mean_tokens min(rho A, clip(rho, 1 - eps, 1 + eps) A)
- optional KL to a frozen reference policy, per token (the k3 estimator, always >= 0).

The loss functions are pure: tensors and floats in, `(loss, metrics)` out. The `update_*`
functions own backward, clipping and the optimizer or engine step. They take the actor engine
by its interface (`module`, `backward`, `step`, `zero_grad`), so this module imports neither
DeepSpeed nor Ray.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

Metrics = dict[str, float]


# ---------------------------------------------------------------------------- losses
def critic_loss(
    q1: torch.Tensor, q2: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor,
    target_v1_next: torch.Tensor, target_v2_next: torch.Tensor,
    target_q1_fresh: torch.Tensor, target_q2_fresh: torch.Tensor,
    reward: torch.Tensor, done: torch.Tensor, gamma: float, min_q_for_v: bool = False,
) -> tuple[torch.Tensor, Metrics]:
    """Double-Q TD loss plus the V regression on a fresh utterance; all inputs are [B].

    q_i, v_i:          online Q_i(s, a) on the buffer action and V_i(s)
    target_v_i_next:   Vbar_i(s') from the target critic
    target_q_i_fresh:  Qbar_i(s, a~) with a~ sampled from the current policy
    done:              1.0 where the episode terminated after a (no bootstrap)
    """
    not_done = 1.0 - done.float()  # [B]
    y1 = (reward + gamma * not_done * target_v1_next).detach()  # [B]
    y2 = (reward + gamma * not_done * target_v2_next).detach()  # [B]
    q_loss = F.mse_loss(q1, y1) + F.mse_loss(q2, y2)
    if min_q_for_v:
        t1 = t2 = torch.minimum(target_q1_fresh, target_q2_fresh).detach()  # [B]
    else:
        t1, t2 = target_q1_fresh.detach(), target_q2_fresh.detach()
    v_loss = F.mse_loss(v1, t1) + F.mse_loss(v2, t2)
    loss = q_loss + v_loss
    metrics = {
        "critic/loss": float(loss.detach()),
        "critic/q_loss": float(q_loss.detach()),
        "critic/v_loss": float(v_loss.detach()),
        "critic/q1_mean": float(q1.detach().mean()),
        "critic/q2_mean": float(q2.detach().mean()),
        "critic/v1_mean": float(v1.detach().mean()),
        "critic/td_target_mean": float(y1.mean()),
    }
    return loss, metrics


def utterance_advantage(
    q1: torch.Tensor, q2: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor
) -> torch.Tensor:
    """A = min(Q_1, Q_2)(s, a~) - min(V_1, V_2)(s), detached; all [B]."""
    return (torch.minimum(q1, q2) - torch.minimum(v1, v2)).detach()


def group_advantage(q1: torch.Tensor, q2: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out advantage within groups of utterances sampled for the same state:
    A_k = min(Q_1, Q_2)(s, a_k) - mean_{j != k} min(Q_1, Q_2)(s, a_j), detached.

    q1, q2: [B * K], the K = `group_size` utterances of each state consecutive -> [B * K].
    Errors of the critic that are the same for every action of a state cancel.
    """
    if group_size < 2:
        raise ValueError(f"a group baseline needs group_size >= 2, got {group_size}")
    if q1.numel() % group_size:
        raise ValueError(f"{q1.numel()} values do not split into groups of {group_size}")
    q = torch.minimum(q1, q2).detach().reshape(-1, group_size)  # [B, K]
    others = (q.sum(dim=1, keepdim=True) - q) / (group_size - 1)  # [B, K]
    return (q - others).reshape(-1)


def reinforce_loss(
    token_logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor
) -> tuple[torch.Tensor, Metrics]:
    """- mean over utterances of A * log pi(a|s).

    token_logp: [B, L] log pi of each utterance token (0 past the end)
    mask:       [B, L] 1 on the utterance's tokens
    advantages: [B]    one advantage per utterance, shared by its tokens
    """
    seq_logp = (token_logp * mask).sum(-1)  # [B]
    loss = -(advantages.detach() * seq_logp).mean()
    return loss, {"actor/pg_loss": float(loss.detach()),
                  "actor/logp_mean": float(seq_logp.detach().mean())}


def ppo_loss(
    token_logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
    advantages: torch.Tensor, clip_eps: float,
) -> tuple[torch.Tensor, Metrics]:
    """Clipped surrogate, a mean over all utterance tokens of the batch.

    token_logp, old_logp, mask: [B, L]; advantages: [B] (broadcast over the tokens)
    """
    ratio = torch.exp(token_logp - old_logp.detach())  # [B, L]
    adv = advantages.detach()[:, None]  # [B, 1]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)  # [B, L]
    n = mask.sum().clamp(min=1.0)
    loss = -(surrogate * mask).sum() / n
    clipped = ((ratio - 1).abs() > clip_eps).float() * mask  # [B, L]
    return loss, {"actor/pg_loss": float(loss.detach()),
                  "actor/clip_fraction": float(clipped.sum() / n),
                  "actor/ratio_mean": float(((ratio * mask).sum() / n).detach())}


def kl_penalty(
    token_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, Metrics]:
    """Token-mean k3 estimate of KL(pi || pi_ref) on sampled tokens: exp(d) - d - 1 with
    d = log pi_ref - log pi. Non-negative, unbiased, zero when the policies agree."""
    d = ref_logp.detach() - token_logp  # [B, L]
    k3 = torch.exp(d) - d - 1.0  # [B, L]
    kl = (k3 * mask).sum() / mask.sum().clamp(min=1.0)
    return kl, {"actor/kl_ref": float(kl.detach())}


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """Monte Carlo returns of one episode: G_t = r_t + gamma G_{t+1}, nothing after the end."""
    out, g = [], 0.0
    for r in reversed(list(rewards)):
        g = float(r) + gamma * g
        out.append(g)
    return out[::-1]


def explained_variance(pred: Sequence[float], target: Sequence[float]) -> float | None:
    """1 - Var[target - pred] / Var[target]: 1 for a perfect prediction, 0 for one no better
    than the target's mean, negative for a worse one. None when it is undefined (fewer than
    two values, or a constant target)."""
    p = torch.as_tensor(list(pred), dtype=torch.float64)
    t = torch.as_tensor(list(target), dtype=torch.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in length: {p.numel()} vs {t.numel()}")
    if t.numel() < 2 or float(t.var(unbiased=False)) == 0.0:
        return None
    return float(1.0 - (t - p).var(unbiased=False) / t.var(unbiased=False))


# ---------------------------------------------------------------------------- updates
class ActorEngine(Protocol):
    """What `update_actor` needs from the engine (DeepSpeed's or the plain torch one)."""

    module: torch.nn.Module

    def backward(self, loss: torch.Tensor) -> Any: ...
    def step(self) -> Any: ...
    def zero_grad(self) -> Any: ...


def _finite(metrics: Metrics, key: str) -> bool:
    return math.isfinite(metrics[key])


def update_critic(
    critic: torch.nn.Module, target: torch.nn.Module, optimizer: torch.optim.Optimizer,
    states: Sequence[str], actions: Sequence[str], rewards: Sequence[float],
    next_states: Sequence[str], dones: Sequence[bool], fresh_actions: Sequence[str],
    gamma: float, grad_clip: float = 1.0, min_q_for_v: bool = False,
) -> Metrics:
    """One critic step on a buffer batch; `fresh_actions` are a~ ~ pi(.|s) for the V target.
    A non-finite loss skips the step with a warning (`critic/skipped` = 1)."""
    device = next(critic.parameters()).device
    reward = torch.tensor(list(rewards), dtype=torch.float32, device=device)  # [B]
    done = torch.tensor(list(dones), dtype=torch.float32, device=device)  # [B]
    with torch.no_grad():
        tv1, tv2 = target.v(list(next_states))  # [B] each
        tq1, tq2 = target.q(list(states), list(fresh_actions))  # [B] each
    q1, q2, v1, v2 = critic(list(states), list(actions))
    loss, metrics = critic_loss(q1, q2, v1, v2, tv1, tv2, tq1, tq2, reward, done, gamma,
                                min_q_for_v)
    optimizer.zero_grad(set_to_none=True)
    if not _finite(metrics, "critic/loss"):
        warnings.warn("non-finite critic loss: step skipped", RuntimeWarning, stacklevel=2)
        return {**metrics, "critic/skipped": 1.0}
    loss.backward()
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(
            [p for p in critic.parameters() if p.requires_grad], grad_clip)
        metrics["critic/grad_norm"] = float(norm)
    optimizer.step()
    return {**metrics, "critic/skipped": 0.0}


def actor_advantages(
    critic: torch.nn.Module, states: Sequence[str], actions: Sequence[str],
    normalize: bool = False, group_size: int = 1,
) -> tuple[torch.Tensor, Metrics]:
    """Utterance advantages from the online critic (no gradient), [B]. With `group_size` K >= 2
    the batch is groups of K utterances for one state each (consecutive) and the baseline is
    the group's other utterances (`group_advantage`) instead of V."""
    with torch.no_grad():
        if group_size >= 2:
            q1, q2 = critic.q(list(states), list(actions))
            adv = group_advantage(q1, q2, group_size)
        else:
            q1, q2, v1, v2 = critic(list(states), list(actions))
            adv = utterance_advantage(q1, q2, v1, v2)
    metrics = {"actor/advantage_mean": float(adv.mean()), "actor/advantage_std": float(adv.std())
               if adv.numel() > 1 else 0.0}
    if normalize and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return adv, metrics


def update_actor(
    engine: ActorEngine, policy: Any, states: Sequence[str], actions: Sequence[str],
    advantages: torch.Tensor, loss_type: str = "reinforce", micro_batch_size: int | None = None,
    old_logp: torch.Tensor | None = None, old_mask: torch.Tensor | None = None,
    clip_eps: float = 0.2, ref_model: torch.nn.Module | None = None, kl_coef: float = 0.0,
) -> Metrics:
    """One actor optimizer step over `states` (split into micro-batches whose gradients the
    engine averages). `policy` tokenises and scores (`Policy.action_logprobs`) with the
    engine's module. For PPO, `old_logp`/`old_mask` are the [B, L] token log-probs of the
    sampled utterances under the acting policy. A non-finite micro-batch loss drops the
    whole step (gradients cleared, so the optimizer leaves the weights alone) with a warning.
    """
    if loss_type not in ("reinforce", "ppo"):
        raise ValueError(f"loss_type must be reinforce or ppo, got {loss_type!r}")
    if loss_type == "ppo" and old_logp is None:
        raise ValueError("the PPO actor loss needs old_logp")
    n = len(states)
    micro = micro_batch_size or n
    sums: dict[str, float] = {}
    skipped = False
    for start in range(0, n, micro):
        sl = slice(start, start + micro)
        logp, mask = policy.action_logprobs(list(states[sl]), list(actions[sl]), grad=True,
                                            model=engine)
        adv = advantages[sl].to(logp.device)
        if loss_type == "reinforce":
            loss, m = reinforce_loss(logp, mask, adv)
        else:
            assert old_logp is not None
            old = old_logp[sl, : logp.shape[1]].to(logp.device)
            loss, m = ppo_loss(logp, old, mask, adv, clip_eps)
        if kl_coef > 0 and ref_model is not None:
            with torch.no_grad():
                ref_logp, _ = policy.action_logprobs(list(states[sl]), list(actions[sl]),
                                                     model=ref_model)
            kl, km = kl_penalty(logp, ref_logp.to(logp.device), mask)
            loss = loss + kl_coef * kl
            m.update(km)
        m["actor/loss"] = float(loss.detach())
        if skipped or not math.isfinite(m["actor/loss"]):
            if not skipped:
                warnings.warn("non-finite actor loss: step skipped", RuntimeWarning, stacklevel=2)
                engine.zero_grad()
            skipped = True
        else:
            engine.backward(loss)
        engine.step()  # the engine applies the optimizer at the accumulation boundary
        if skipped:
            engine.zero_grad()
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v
    chunks = math.ceil(n / micro)
    metrics = {k: v / chunks for k, v in sums.items()}
    metrics["actor/skipped"] = 1.0 if skipped else 0.0
    return metrics
