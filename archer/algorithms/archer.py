"""ArCHer: an utterance-level off-policy critic and a token-level policy-gradient actor.

Formulas (ALGORITHMS.md, Zhou et al. 2024):
- critic, per head i:  Q_i(s, a) -> r + gamma (1 - done) Vbar_i(s')
                       V_i(s)    -> Qbar_i(s, a~),  a~ ~ pi(.|s) a fresh utterance
- advantage:           A = sg[min(Q_1, Q_2)(s, a~) - min(V_1, V_2)(s)], the same for every token
- actor (REINFORCE):   - mean_batch A * log pi(a~|s)   (log pi summed over the utterance's tokens)
- actor (PPO):         - mean_tokens min(rho A, clip(rho, 1 - eps, 1 + eps) A)
- optional KL to a frozen reference policy, per token (the k3 estimator, always >= 0).

Per iteration (`ArCHer.learn`): check the critic on the new episodes (before it sees them),
store them, `archer.critic.updates_per_iter` critic steps (all their fresh utterances sampled in
one batched call: the policy does not change during the phase), then, after
`archer.warmup_iters` iterations, `archer.actor.updates_per_iter` actor updates, each on freshly
sampled utterances: one step for REINFORCE, `epochs` x `minibatches` steps for PPO against the
behaviour log-probs stored at sampling.

The loss functions here and in `archer.algorithms.losses` are pure; the steps are
`archer.algorithms.updates`. This module imports neither DeepSpeed nor Ray (the engine is built
by `archer.distributed.engine`, imported when `build` runs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from archer.algorithms.api import (
    Acting,
    RunContext,
    engine_acting,
    load_reference,
    save_policy,
    save_reference,
    start_policy,
)
from archer.algorithms.losses import ppo_clip_loss, weighted_logp_loss
from archer.algorithms.parallel import is_writer
from archer.algorithms.updates import critic_step, draw_seeds, policy_step, sample
from archer.buffer.store import EpisodeStore
from archer.config import ArcherConfig
from archer.errors import CheckpointError
from archer.faults import crash_point
from archer.metrics import mean_metrics, timed
from archer.models.critic import DoubleCritic, build_critic, make_target, polyak_update
from archer.models.policy import Generation, Policy, Sampling, TokenBatch
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config

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




def adapt_kl_coef(coef: float, kl: float, target: float) -> float:
    """One step of the adaptive KL controller: x2 above 1.5 x target, /2 below target / 1.5,
    kept within [1e-4, 100]."""
    if kl > 1.5 * target:
        coef *= 2.0
    elif kl < target / 1.5:
        coef /= 2.0
    return min(max(coef, 1e-4), 100.0)


# ---------------------------------------------------------------------------- the method
class ArCHer:
    data = "online"

    def __init__(self, s: ArcherConfig, policy: Policy, engine: Any, critic: DoubleCritic,
                 target: DoubleCritic, store: EpisodeStore, sampling: Sampling,
                 micro_batch_size: int, ref: torch.nn.Module | None, device: str,
                 generation_batch: int = 64):
        self.s, self.policy, self.engine = s, policy, engine
        self.critic, self.target, self.store, self.sampling = critic, target, store, sampling
        self.micro_batch_size, self.ref, self.device = micro_batch_size, ref, device
        self.generation_batch = generation_batch
        self.critic_opt = self._critic_optimizer()
        self.kl_coef = s.actor.kl_coef
        self.version = 0
        self.sampler: Any = None  # `use_sampler`: the rollout workers' fresh samples

    def use_sampler(self, sampler: Any) -> None:
        """The loop offers its rollout workers' `sample(observations, seeds, version)`; the
        critic phase uses it under archer.fresh_samples=rollout."""
        if self.s.fresh_samples == "rollout":
            self.sampler = sampler

    def _critic_optimizer(self) -> torch.optim.Optimizer:
        c = self.s.critic
        return torch.optim.AdamW([p for p in self.critic.parameters() if p.requires_grad],
                                 lr=c.lr, weight_decay=c.weight_decay)

    # ------------------------------------------------------------------------ learn
    def learn(self, new: list[Trajectory], iteration: int) -> dict[str, float]:
        t: dict[str, float] = {}
        with timed(t, "critic_check"):
            m = self.critic_check(new)  # before the critic trains on them
        m["rollout/transitions_added"] = float(self.store.add(new, iteration))
        m.update(self.store.stats(iteration))
        with timed(t, "critic"):
            m.update(self._critic_phase())
        if iteration >= self.s.warmup_iters and self.s.actor.updates_per_iter > 0:
            with timed(t, "actor"):
                m.update(self._actor_phase())
        return m | {f"time/{k}_s": v for k, v in t.items()}

    def critic_check(self, trajectories: list[Trajectory]) -> dict[str, float]:
        """How well the critic predicts the discounted Monte Carlo returns of episodes it has
        not trained on: explained variance of min V(s) and of min Q(s, a) (the heads the actor
        uses), and the mean of min Q - G (> 0: optimistic). Only episodes whose return is
        complete count (`Trajectory.return_complete`: not truncated, no env error)."""
        states, actions, returns = [], [], []
        for traj in (t for t in trajectories if t.return_complete):
            states += [turn.observation for turn in traj.turns]
            actions += [turn.action for turn in traj.turns]
            returns += discounted_returns([turn.reward for turn in traj.turns],
                                          self.s.critic.gamma)
        if len(returns) < 2:
            return {}
        self.critic.eval()
        with torch.no_grad():
            q1, q2, v1, v2 = self.critic(states, actions)
        q = torch.minimum(q1, q2).tolist()
        v = torch.minimum(v1, v2).tolist()
        out = {"critic/q_minus_return": float(np.mean(np.subtract(q, returns)))}
        for name, pred in (("v", v), ("q", q)):
            ev = explained_variance(pred, returns)
            if ev is not None:
                out[f"critic/explained_var_{name}"] = ev
        return out

    def _critic_phase(self) -> dict[str, float]:
        c = self.s.critic
        if c.updates_per_iter == 0:
            return {}
        batches = [self.store.sample_turns(c.batch_size) for _ in range(c.updates_per_iter)]
        states = [r.turn.observation for batch in batches for r in batch]
        # One batched call for the whole phase: every fresh utterance comes from the same weights.
        fresh = self._fresh(states)
        history = []
        for k, batch in enumerate(batches):
            tr = [r.transition for r in batch]
            m = critic_step(
                self.critic, self.target, self.critic_opt, [x.observation for x in tr],
                [x.action for x in tr], [x.reward for x in tr],
                [x.next_observation for x in tr], [x.done for x in tr],
                fresh[k * c.batch_size : (k + 1) * c.batch_size], gamma=c.gamma,
                grad_clip=c.grad_clip, min_q_for_v=c.min_q_for_v,
                micro_batch_size=c.micro_batch_size, loss_fn=critic_loss)
            crash_point("critic_step")
            polyak_update(self.target, self.critic, c.tau)
            history.append(m)
        return mean_metrics(history)

    def _fresh(self, states: list[str]) -> list[str]:
        """a~ ~ pi(.|s) for the V targets: one sampled utterance per state, each from its own
        seed (so learner ranks or rollout workers can split them)."""
        seeds = draw_seeds(len(states))
        if self.sampler is not None:  # the workers hold this version's weights
            return self.sampler(states, seeds, self.version).texts
        return self.sample_here(states, seeds).texts

    def sample_here(self, states: list[str], seeds: list[int]) -> Generation:
        """Fresh utterances from the learner's own weights, split over its ranks if several."""
        return sample(self.policy, self.engine, states, self.sampling, self.generation_batch,
                      seeds=seeds)

    def _actor_phase(self) -> dict[str, float]:
        a = self.s.actor
        history = []
        for _ in range(a.updates_per_iter):
            states = [r.turn.observation for r in self.store.sample_turns(a.batch_size)
                      for _ in range(a.samples_per_state)]
            gen = sample(self.policy, self.engine, states, self.sampling, self.generation_batch,
                         seeds=draw_seeds(len(states)))
            self.critic.eval()
            adv, adv_metrics = actor_advantages(
                self.critic, states, gen.texts, a.normalize_advantages,
                group_size=a.samples_per_state if a.baseline == "group" else 1)
            rows = self.policy.batch(states, gen.action_ids, gen.logprobs)
            for m in self._actor_steps(rows, adv):
                history.append({**m, **adv_metrics, "actor/kl_coef": self.kl_coef})
        self.policy.model.eval()
        if a.target_kl > 0:
            kl = float(np.mean([h["actor/kl_ref"] for h in history if "actor/kl_ref" in h]))
            self.kl_coef = adapt_kl_coef(self.kl_coef, kl, a.target_kl)
        self.version += 1
        return mean_metrics(history)

    def _actor_steps(self, rows: TokenBatch, adv: torch.Tensor) -> list[dict[str, float]]:
        """REINFORCE: one step on the samples. PPO: `epochs` passes, each in `minibatches`
        steps over a fresh permutation, the ratio taken against the behaviour log-probs."""
        a = self.s.actor
        out = []
        for _ in range(a.passes):
            order = (torch.randperm(len(rows)) if a.passes * a.steps_per_pass > 1
                     else torch.arange(len(rows)))
            for idx in order.chunk(a.steps_per_pass):
                sub, sub_adv = rows.select(idx.tolist()), adv[idx]
                out.append(policy_step(
                    self.engine, self.policy, sub, self._loss(sub, sub_adv),
                    micro_batch_size=self.micro_batch_size,
                    temperature=self.sampling.temperature or 1.0, ref=self.ref,
                    kl_coef=self.kl_coef))
                crash_point("actor_step")
        return out

    def _loss(self, step_rows: TokenBatch, adv: torch.Tensor):
        """The step's loss on a micro-batch, normalised over the whole step."""
        a = self.s.actor
        n_rows, n_tokens = float(len(step_rows)), float(max(step_rows.action_tokens, 1))

        def loss(logp: torch.Tensor, sub: TokenBatch, idx: list[int]):
            mask = sub.action_mask.to(logp.device)
            weights = adv[idx].to(logp.device)  # [b]
            if a.loss == "reinforce":
                return weighted_logp_loss(logp, mask, weights, n_rows)
            assert sub.behaviour_logp is not None
            return ppo_clip_loss(logp, sub.behaviour_logp.to(logp.device), mask, weights,
                                 a.clip_eps, n_tokens)

        return loss

    # ------------------------------------------------------------------------ acting
    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    # --------------------------------------------------------------------- save, load
    def save(self, directory: Path) -> None:
        save_policy(self.policy, self.engine, directory)
        save_reference(self.ref, directory)  # the KL anchor: the run's starting policy
        if is_writer():  # learner ranks hold the same critic, store and counters
            self._save_critic(directory)
            (directory / "archer_state.json").write_text(json.dumps(
                {"kl_coef": self.kl_coef, "version": self.version}))

    def _save_critic(self, directory: Path) -> None:
        """The critic, its target, its optimizer and the replay store."""
        self.critic.save_pretrained(directory / "critic")
        self.target.save_pretrained(directory / "target_critic")
        torch.save(self.critic_opt.state_dict(), directory / "critic_optimizer.pt")
        self.store.save(directory / "store")

    def _load_critic(self, directory: Path) -> None:
        """What `_save_critic` wrote (raises OSError, ValueError, KeyError, RuntimeError)."""
        self.critic = DoubleCritic.from_pretrained(directory / "critic", device=self.device)
        self.target = DoubleCritic.from_pretrained(directory / "target_critic",
                                                   device=self.device)
        self.critic_opt = self._critic_optimizer()
        self.critic_opt.load_state_dict(torch.load(directory / "critic_optimizer.pt"))
        self.store = EpisodeStore.load(directory / "store")
        self.target.requires_grad_(False).eval()
        self.critic.eval()

    def load(self, directory: Path) -> None:
        try:
            self.engine.load_checkpoint(directory / "engine")
            self._load_critic(directory)
            state = json.loads((directory / "archer_state.json").read_text())
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume ArCHer from {directory}: {err}") from None
        self.policy.model = self.engine.module
        self.policy.model.eval()
        self.version = int(state["version"])
        # an adaptive weight continues; a fixed one follows the config
        self.kl_coef = float(state["kl_coef"]) if self.s.actor.target_kl > 0 else (
            self.s.actor.kl_coef)
        self.ref = load_reference(self.ref, directory, self.device)


def build(cfg: Config, run: RunContext) -> ArCHer:
    """ArCHer from `cfg.archer` (the schedule), `cfg.critic` (the critic model) and the policy
    at `run.init_policy`. On resume the reference policy is read back by `load`."""
    s = cfg.archer
    policy, engine, ref = start_policy(cfg, run, "ArCHer", lr=s.actor.lr,
                                       batch_size=s.actor.rows_per_step,
                                       grad_clip=s.actor.grad_clip, kl_coef=s.actor.kl_coef)
    critic = build_critic(cfg.critic, run.corpus or None, cfg.device, cfg.seed)
    target = make_target(critic)
    critic.eval()
    return ArCHer(s, policy, engine, critic, target, EpisodeStore(cfg.buffer.capacity, cfg.seed),
                  Sampling.from_config(cfg.generation), cfg.deepspeed.micro_batch_size, ref,
                  cfg.device, cfg.generation.batch_size)
