"""Offline ArCHer: ArCHer's utterance-level double critic trained IQL-style on a dataset, and
an AWR actor on the dataset's utterances (ALGORITHMS.md; the ArCHer paper's offline variant).

    critic, per head i:  Q_i(s, a) -> r + gamma (1 - done) Vbar_i(s')        (as ArCHer)
                         V_i(s)    -> expectile_tau of min(Qbar_1, Qbar_2)(s, a)   on the
                                      dataset's own action a: no utterance is sampled
    actor (AWR):         - (1/B) sum_b w_b log pi(a_b | s_b),  w = min(exp(beta A), max_weight)
                         A = min(Q_1, Q_2)(s, a) - min(V_1, V_2)(s)        (online critic)

The expectile (tau 0.9) makes V an optimistic estimate of the best in-data action's value, so
A > 0 marks the dataset's better utterances; the actor clones those more. Everything stays on
the data's actions: no generation at training time at all.

One loop iteration: `critic.updates_per_iter` critic steps on transitions sampled from the
dataset, then (after `warmup_iters` iterations) `actor.updates_per_iter` AWR steps. In a
learner group every rank samples the same batches (the store's seeded RNG); each runs its
share of a critic step's micro-batches (`critic_step`) and of an AWR step's
(`actor.batch_size / deepspeed.micro_batch_size`, `policy_step`). The policy
starts from `train.init_policy` (or `model.path`), else from a tiny model built on the data,
as BC does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from archer.algorithms.api import RunContext
from archer.algorithms.archer import ArCHer, utterance_advantage
from archer.algorithms.bc import check_tokenizer, offline_engine, turn_ids
from archer.algorithms.ilql import expectile_loss
from archer.algorithms.losses import weighted_logp_loss
from archer.algorithms.updates import critic_step, policy_step
from archer.buffer.dataset import DatasetError, iter_located
from archer.buffer.store import EpisodeStore
from archer.errors import CheckpointError
from archer.metrics import mean_metrics
from archer.models.critic import build_critic, make_target, polyak_update
from archer.models.policy import Policy, Sampling, TokenBatch

if TYPE_CHECKING:
    from archer.config import Config, OfflineArcherConfig

Metrics = dict[str, float]


# ---------------------------------------------------------------------------- losses
def iql_critic_loss(
    q1: torch.Tensor, q2: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor,
    target_v1_next: torch.Tensor, target_v2_next: torch.Tensor,
    target_q1_data: torch.Tensor, target_q2_data: torch.Tensor,
    reward: torch.Tensor, done: torch.Tensor, gamma: float, expectile: float,
) -> tuple[torch.Tensor, Metrics]:
    """ArCHer's double-Q TD loss, and each V head's expectile regression toward
    min(Qbar_1, Qbar_2)(s, a) on the dataset's action; all inputs [B], means over B."""
    not_done = 1.0 - done.float()
    y1 = (reward + gamma * not_done * target_v1_next).detach()
    y2 = (reward + gamma * not_done * target_v2_next).detach()
    q_loss = F.mse_loss(q1, y1) + F.mse_loss(q2, y2)
    t = torch.minimum(target_q1_data, target_q2_data).detach()  # [B]
    v_loss = expectile_loss(t - v1, expectile).mean() + expectile_loss(t - v2, expectile).mean()
    loss = q_loss + v_loss
    return loss, {"critic/loss": float(loss.detach()), "critic/q_loss": float(q_loss.detach()),
                  "critic/v_loss": float(v_loss.detach()),
                  "critic/q1_mean": float(q1.detach().mean()),
                  "critic/v1_mean": float(v1.detach().mean()),
                  "critic/td_target_mean": float(y1.mean())}


def awr_weights(adv: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """w = min(exp(beta A), max_weight), detached; [B] -> [B]."""
    return torch.exp(beta * adv.detach()).clamp(max=max_weight)


# ------------------------------------------------------------------------- algorithm
class OfflineArCHer(ArCHer):
    data = "offline"

    def __init__(self, s: OfflineArcherConfig, policy: Policy, engine: Any, critic: Any,
                 target: Any, store: EpisodeStore, device: str):
        # ArCHer's state, without its sampling, reference or KL (nothing is generated here)
        self.o, self.s, self.policy, self.engine = s, s, policy, engine
        self.critic, self.target, self.store, self.device = critic, target, store, device
        self.sampling, self.ref, self.kl_coef, self.micro_batch_size = Sampling(), None, 0.0, 1
        self.critic_opt = self._critic_optimizer()
        self.version = 0

    def _per_iter(self, steps: int | None, batch_size: int) -> int:
        """`steps`, or None: one pass over the dataset's turns in batches of `batch_size`."""
        return steps if steps is not None else -(-len(self.store) // batch_size)

    def learn(self, new: list, iteration: int) -> Metrics:
        m = self._iql_critic_phase()
        if iteration >= self.o.warmup_iters:
            m.update(self._awr_phase())
        return m | {"progress/dataset_turns": float(len(self.store))}

    def _iql_critic_phase(self) -> Metrics:
        c = self.o.critic
        history = []
        for _ in range(c.updates_per_iter):
            tr = [r.transition for r in self.store.sample_turns(c.batch_size)]
            actions = [x.action for x in tr]  # the V target's actions: the dataset's own
            history.append(critic_step(
                self.critic, self.target, self.critic_opt, [x.observation for x in tr], actions,
                [x.reward for x in tr], [x.next_observation for x in tr], [x.done for x in tr],
                actions, gamma=c.gamma, grad_clip=c.grad_clip, min_q_for_v=True,
                micro_batch_size=c.micro_batch_size,  # a[10] is gamma; min_q_for_v is implied
                loss_fn=lambda *a: iql_critic_loss(*a[:11], self.o.expectile)))
            polyak_update(self.target, self.critic, c.tau)
        return mean_metrics(history)

    def _awr_phase(self) -> Metrics:
        a = self.o.actor
        history = []
        for _ in range(self._per_iter(a.updates_per_iter, a.batch_size)):
            refs = self.store.sample_turns(a.batch_size)
            states = [r.turn.observation for r in refs]
            ids = [turn_ids(self.policy, r.turn) for r in refs]
            self.critic.eval()
            with torch.no_grad():
                q1, q2, v1, v2 = self.critic(states, [r.turn.action for r in refs])
            adv = utterance_advantage(q1, q2, v1, v2).cpu()
            w = awr_weights(adv, a.beta, a.max_weight)
            rows = self.policy.batch(states, ids)
            n = float(len(rows))

            def loss(logp: torch.Tensor, sub: TokenBatch, idx: list[int], w=w, n=n):
                return weighted_logp_loss(logp, sub.action_mask.to(logp.device),
                                          w[idx].to(logp.device), n, prefix="actor")

            m = policy_step(self.engine, self.policy, rows, loss, micro_batch_size=None)
            history.append({**m, "actor/advantage_mean": float(adv.mean()),
                            "actor/awr_weight_mean": float(w.mean()),
                            "actor/awr_weight_max": float(w.max())})
        self.policy.model.eval()
        self.version += 1
        return mean_metrics(history)

    def load(self, directory: Path) -> None:
        try:
            self.engine.load_checkpoint(directory / "engine")
            self._load_critic(directory)
            state = json.loads((directory / "archer_state.json").read_text())
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume offline ArCHer from {directory}: {err}") from None
        self.policy.model = self.engine.module
        self.policy.model.eval()
        self.version = int(state["version"])


def build(cfg: Config, run: RunContext) -> OfflineArCHer:
    """Offline ArCHer on `cfg.data.path`: every episode in the store (it holds the whole
    dataset), the critic from `cfg.critic`, the policy from `run.init_policy`, else
    `model.path`, else a tiny model with a tokenizer trained on the data."""
    from archer.models.builders import build_policy, tokenizer_corpus

    s = cfg.offline_archer
    assert cfg.data.path is not None  # Config checks it for the offline algorithms
    located = list(iter_located(cfg.data.path))
    trajectories = [t for _, t in located if t.turns]
    if not trajectories:
        raise DatasetError(f"dataset {cfg.data.path} holds no episode with a turn")
    policy = build_policy(cfg, trajectories, run.init_policy)
    for where, traj in located:
        check_tokenizer(policy, traj, where)
    engine = offline_engine(cfg, policy, lr=s.actor.lr, batch_size=s.actor.batch_size,
                            grad_clip=s.actor.grad_clip)
    critic = build_critic(cfg.critic, run.corpus or tokenizer_corpus(trajectories), cfg.device,
                          cfg.seed)
    target = make_target(critic)
    critic.eval()
    store = EpisodeStore(None, cfg.seed)  # the whole dataset, never evicted
    store.add(trajectories, 0)
    return OfflineArCHer(s, policy, engine, critic, target, store, cfg.device)
