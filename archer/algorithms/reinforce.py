"""Trajectory-level REINFORCE / GRPO: the single-turn RL baseline (ALGORITHMS.md).

The whole episode's agent utterances are one "response" with the episode's return R, and
every agent token of it carries the same advantage A = R - b: no critic, no per-turn credit.
log pi(episode) = sum_t log pi(a_t | s_t), each turn scored on the prompt it acted on (the ids
it sampled; environment text is context, never a target).

    loss = - (1/n) sum_episodes A_e * sum_{t in e} log pi(a_t | s_t)  (+ kl_coef * k3 KL)

with n the step's episodes (`normalize=episodes`) or its agent tokens (`tokens`). Baselines:
`group` (GRPO: (R - mean_g) / std_g over the iteration's episodes of one task id), `loo`
(RLOO: R minus the mean of the *other* episodes of its task id) and `running` (an exponential
moving average of earlier iterations' returns). Strictly on-policy: the iteration's episodes
are used for `minibatches` steps, then dropped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from archer.algorithms.api import (
    Acting,
    RunContext,
    engine_acting,
    load_reference,
    save_policy,
    save_reference,
    start_policy,
)
from archer.algorithms.losses import weighted_logp_loss
from archer.algorithms.parallel import is_writer
from archer.algorithms.updates import policy_step, turn_rows
from archer.config import ReinforceConfig
from archer.errors import CheckpointError
from archer.metrics import mean_metrics
from archer.models.policy import Policy, TokenBatch
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config

Metrics = dict[str, float]


# ---------------------------------------------------------------------------- losses
def _groups(keys: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    for key, idx in groups.items():
        if len(idx) < 2:
            raise ValueError(f"task id {key!r} has one episode: a group baseline needs >= 2 "
                             "episodes per task id (rollout.group_size), or baseline=running")
    return groups


def group_advantages(returns: torch.Tensor, keys: Sequence[str], scale_by_std: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """GRPO: (R_i - mean_g) / (std_g + eps) within each group g of equal `keys` ([N] -> [N]);
    std is the population one (ddof 0). Without `scale_by_std`, R_i - mean_g."""
    adv = torch.empty_like(returns)
    for idx in _groups(keys).values():
        r = returns[idx]  # [g]
        centred = r - r.mean()
        adv[idx] = centred / (r.std(unbiased=False) + eps) if scale_by_std else centred
    return adv


def loo_advantages(returns: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
    """RLOO: R_i - mean_{j != i in g} R_j = g / (g - 1) * (R_i - mean_g) ([N] -> [N])."""
    adv = torch.empty_like(returns)
    for idx in _groups(keys).values():
        r = returns[idx]  # [g]
        adv[idx] = r - (r.sum() - r) / (len(idx) - 1)  # minus the others' mean
    return adv


def running_baseline(b: float | None, returns: Sequence[float], decay: float) -> float:
    """The baseline after an iteration: its mean return the first time, then
    decay * b + (1 - decay) * mean(returns)."""
    mean = float(sum(returns) / len(returns))
    return mean if b is None else decay * b + (1.0 - decay) * mean


def reinforce_loss(token_logp: torch.Tensor, mask: torch.Tensor, row_advantages: torch.Tensor,
                   n: float) -> tuple[torch.Tensor, Metrics]:
    """- (1/n) sum_rows A_row * log pi(a_row | s_row): each turn row carries its episode's A,
    so the sum over an episode's rows is A_e * log pi(episode). [B, T], [B, T], [B]."""
    return weighted_logp_loss(token_logp, mask, row_advantages, n, prefix="reinforce")


# ------------------------------------------------------------------------- algorithm
class Reinforce:
    data = "online"

    def __init__(self, s: ReinforceConfig, policy: Policy, engine: Any,
                 ref: torch.nn.Module | None, temperature: float, seed: int):
        self.s, self.policy, self.engine, self.ref = s, policy, engine, ref
        self.temperature = temperature or 1.0
        self.baseline: float | None = None  # the running baseline
        self.version = 0
        self.rng = torch.Generator().manual_seed(seed)

    def advantages(self, episodes: list[Trajectory]) -> torch.Tensor:
        """A per episode ([N]) under `reinforce.baseline`."""
        returns = torch.tensor([t.episode_return for t in episodes], dtype=torch.float32)
        keys = [t.task_id for t in episodes]
        if self.s.baseline == "group":
            return group_advantages(returns, keys, self.s.scale_by_std)
        if self.s.baseline == "loo":
            return loo_advantages(returns, keys)
        return returns - (0.0 if self.baseline is None else self.baseline)

    def learn(self, new: list[Trajectory], iteration: int) -> Metrics:
        episodes = [t for t in new if t.turns]
        if not episodes:
            return {}
        adv = self.advantages(episodes)  # [N]
        # Steps take whole task groups, so a group's episodes are weighed against each other
        # within one step.
        by_task: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(episodes):
            by_task[t.task_id].append(i)
        groups = list(by_task.values())
        order = torch.randperm(len(groups), generator=self.rng).tolist()
        history = []
        for k in range(self.s.minibatches):
            chosen = [i for g in order[k :: self.s.minibatches] for i in groups[g]]
            step_eps = [episodes[i] for i in chosen]
            rows, owner = turn_rows(self.policy, step_eps)
            row_adv = adv[torch.tensor([chosen[e] for e in owner])]  # [B]
            n = float(len(step_eps)) if self.s.normalize == "episodes" else float(
                max(rows.action_tokens, 1))

            def loss(logp: torch.Tensor, sub: TokenBatch, idx: list[int],
                     row_adv: torch.Tensor = row_adv, n: float = n):
                return reinforce_loss(logp, sub.action_mask.to(logp.device),
                                      row_adv[idx].to(logp.device), n)

            m = policy_step(self.engine, self.policy, rows, loss, micro_batch_size=None,
                            temperature=self.temperature, ref=self.ref, kl_coef=self.s.kl_coef,
                            prefix="reinforce")
            history.append(m)
        self.policy.model.eval()
        self.baseline = running_baseline(self.baseline, [t.episode_return for t in episodes],
                                         self.s.running_decay)
        self.version += 1
        return mean_metrics(history) | {
            "reinforce/advantage_mean": float(adv.mean()),
            "reinforce/advantage_std": float(adv.std(unbiased=False)),
            "reinforce/running_baseline": float(self.baseline)}

    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    def save(self, directory: Path) -> None:
        save_policy(self.policy, self.engine, directory)
        save_reference(self.ref, directory)  # the KL anchor: the run's starting policy
        if is_writer():  # learner ranks hold the same counters and RNG
            (directory / "reinforce_state.json").write_text(json.dumps(
                {"baseline": self.baseline, "version": self.version}))
            torch.save(self.rng.get_state(), directory / "reinforce_rng.pt")

    def load(self, directory: Path) -> None:
        try:
            self.engine.load_checkpoint(directory / "engine")
            state = json.loads((directory / "reinforce_state.json").read_text())
            self.rng.set_state(torch.load(directory / "reinforce_rng.pt"))
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume REINFORCE from {directory}: {err}") from None
        self.baseline, self.version = state["baseline"], int(state["version"])
        self.policy.model = self.engine.module
        self.policy.model.eval()
        self.ref = load_reference(self.ref, directory, self.policy.device)


def build(cfg: Config, run: RunContext) -> Reinforce:
    """REINFORCE from `cfg.reinforce` and the policy at `run.init_policy` (the warm start).
    Its engine accumulates `reinforce.micro_batches` parts per step."""
    s = cfg.reinforce
    policy, engine, ref = start_policy(
        cfg, run, "REINFORCE", lr=s.lr, batch_size=cfg.deepspeed.micro_batch_size * s.micro_batches,
        grad_clip=s.grad_clip, kl_coef=s.kl_coef)
    return Reinforce(s, policy, engine, ref, cfg.generation.temperature, cfg.seed)
