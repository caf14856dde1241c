"""AGRO: any-generation reward optimisation (Tang et al. 2025; ALGORITHMS.md).

Objective: max E[R] - beta KL(pi || pi_ref), pi_ref the frozen starting policy. At its optimum
the regularised reward R - beta log(pi / pi_ref) is the same for every generation of a prompt,
whoever produced it, so episodes of any origin can enter the same estimator. Here a prompt is
a task id and a generation is a whole episode's agent utterances (trajectory level, as
`reinforce`). For the episodes y_1..y_n of one task id (this iteration's, plus replayed ones of
the same task id from earlier iterations):

    s_i  = R_i - beta * sg[log pi(y_i) - log pi_ref(y_i)]      (sums over the agent tokens)
    b    = mean_j s_j                     (agro.baseline=mean)  or the mean of the others (loo)
    loss = - (1/n) sum_i (s_i - b) log pi(y_i)

No importance ratios and no clipping. On this iteration's episodes alone the expected gradient
is that of E[R] - beta KL(pi || pi_ref) (tests/algorithms/test_agro.py checks it exactly on a
toy distribution); replayed episodes change the weighting of the estimator, not its fixed
point. A task id with a single episode has no baseline: its episode gets advantage 0 (counted
in `agro/ungrouped`), so play each task id several times (`rollout.group_size`) or replay.

Where we chose (docs/algorithms.md): the per-token temperature of scoring is
generation.temperature; replayed episodes are drawn uniformly from the episodes of the same task
id collected in earlier iterations, `replay_ratio` of them per episode of this iteration.
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
from archer.buffer.store import EpisodeStore
from archer.config import AgroConfig
from archer.errors import CheckpointError
from archer.metrics import mean_metrics
from archer.models.policy import Policy, TokenBatch
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config

Metrics = dict[str, float]


# ---------------------------------------------------------------------------- losses
def regularised_rewards(returns: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                        beta: float) -> torch.Tensor:
    """s = R - beta * (log pi(y) - log pi_ref(y)), detached: [N] x 3 -> [N] (sequence sums)."""
    return (returns - beta * (logp - ref_logp)).detach()


def agro_advantages(scores: torch.Tensor, keys: Sequence[str], baseline: str = "mean",
                    ) -> tuple[torch.Tensor, int]:
    """s_i - b per task-id group ([N] -> [N]): b the group's mean s (`mean`) or the mean of the
    group's other episodes (`loo`). Episodes alone in their group get 0; returns how many."""
    if baseline not in ("mean", "loo"):
        raise ValueError(f"baseline must be mean or loo, got {baseline!r}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    adv = torch.zeros_like(scores)
    alone = 0
    for idx in groups.values():
        s = scores[idx]  # [g]
        if len(idx) < 2:
            alone += 1
            continue
        b = s.mean() if baseline == "mean" else (s.sum() - s) / (len(idx) - 1)
        adv[idx] = s - b
    return adv, alone


def agro_loss(token_logp: torch.Tensor, mask: torch.Tensor, row_advantages: torch.Tensor,
              n: float) -> tuple[torch.Tensor, Metrics]:
    """- (1/n) sum_rows (s - b)_row * log pi(a_row | s_row); each turn row carries its
    episode's s - b, so an episode's rows sum to (s_i - b) log pi(y_i). [B, T], [B, T], [B]."""
    return weighted_logp_loss(token_logp, mask, row_advantages, n, prefix="agro")


def episode_logps(policy: Policy, rows: TokenBatch, owner: list[int], n: int, model: Any,
                  temperature: float, chunk: int = 64) -> torch.Tensor:
    """log pi(y_e) for each of `n` episodes: its rows' action log-probs summed -> [n]. Rows are
    scored `chunk` at a time, sorted by length (memory stays bounded)."""
    order = sorted(range(len(rows)), key=lambda i: int(rows.attention_mask[i].sum()))
    per_row = torch.zeros(len(rows), dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, len(order), chunk):
            idx = order[start : start + chunk]
            lp = policy.token_logprobs(rows.select(idx), model=model, temperature=temperature)
            per_row[torch.tensor(idx)] = lp.sum(-1).float().cpu()
    out = torch.zeros(n, dtype=torch.float32)
    out.index_add_(0, torch.tensor(owner), per_row)
    return out


# ------------------------------------------------------------------------- algorithm
class AGRO:
    data = "online"

    def __init__(self, s: AgroConfig, policy: Policy, engine: Any, ref: torch.nn.Module,
                 store: EpisodeStore, temperature: float, seed: int):
        self.s, self.policy, self.engine, self.ref, self.store = s, policy, engine, ref, store
        self.temperature = temperature or 1.0
        self.version = 0
        self.rng = torch.Generator().manual_seed(seed)

    def replayed(self, episodes: list[Trajectory]) -> list[Trajectory]:
        """`replay_ratio` earlier episodes per new one, of the same task ids (uniformly)."""
        if self.s.replay_ratio <= 0 or len(self.store) == 0:
            return []
        counts: dict[str, int] = defaultdict(int)
        for t in episodes:
            counts[t.task_id] += 1
        pool = self.store.by_task()
        out = []
        for task, count in counts.items():
            earlier = pool.get(task, [])
            want = min(len(earlier), round(self.s.replay_ratio * count))
            if want:
                pick = torch.randperm(len(earlier), generator=self.rng)[:want].tolist()
                out += [earlier[i] for i in pick]
        return out

    def learn(self, new: list[Trajectory], iteration: int) -> Metrics:
        fresh = [t for t in new if t.turns]
        if not fresh:
            return {}
        old = self.replayed(fresh)
        m = self.update(fresh, old, self.s.minibatches)
        self.store.add(fresh, iteration)
        return m

    def update(self, fresh: list[Trajectory], old: list[Trajectory], steps: int) -> Metrics:
        """`steps` optimizer steps on the episodes `fresh + old`, each on a share of the task-id
        groups (a group's episodes are weighed against each other)."""
        episodes = fresh + old
        rows, owner = turn_rows(self.policy, episodes)
        with self.engine.gathered_parameters():
            logp = episode_logps(self.policy, rows, owner, len(episodes), self.engine.module,
                                 self.temperature)
        ref_logp = self.reference_logps(episodes, rows, owner)
        returns = torch.tensor([t.episode_return for t in episodes], dtype=torch.float32)
        scores = regularised_rewards(returns, logp, ref_logp, self.s.beta)
        keys = [t.task_id for t in episodes]
        adv, alone = agro_advantages(scores, keys, self.s.baseline)
        by_task: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            by_task[key].append(i)
        groups = list(by_task.values())
        order = torch.randperm(len(groups), generator=self.rng).tolist()
        rows_of: dict[int, list[int]] = defaultdict(list)  # episode -> its rows, in turn order
        for r, e in enumerate(owner):
            rows_of[e].append(r)
        history = []
        for k in range(min(steps, len(groups))):
            chosen = [i for g in order[k :: steps] for i in groups[g]]
            idx = [r for e in chosen for r in rows_of[e]]
            step_rows = rows.select(idx)  # the scored rows, not a second turn_rows
            row_adv = adv[torch.tensor([owner[r] for r in idx])]  # [B]
            n = float(len(chosen))

            def loss(lp: torch.Tensor, sub: TokenBatch, idx: list[int],
                     row_adv: torch.Tensor = row_adv, n: float = n):
                return agro_loss(lp, sub.action_mask.to(lp.device),
                                 row_adv[idx].to(lp.device), n)

            history.append(policy_step(self.engine, self.policy, step_rows, loss,
                                       micro_batch_size=None, temperature=self.temperature,
                                       prefix="agro"))
        self.policy.model.eval()
        self.version += 1
        log_ratio = logp - ref_logp
        return mean_metrics(history) | {
            "agro/score_mean": float(scores.mean()),
            "agro/advantage_std": float(adv.std(unbiased=False)),
            "agro/log_ratio_mean": float(log_ratio[: len(fresh)].mean()),  # ~ KL(pi || ref)
            "agro/replayed": float(len(old)),
            "agro/ungrouped": float(alone)}

    def reference_logps(self, episodes: list[Trajectory], rows: TokenBatch, owner: list[int],
                        ) -> torch.Tensor:
        """log pi_ref(y) of each episode -> [n]."""
        return episode_logps(self.policy, rows, owner, len(episodes), self.ref, self.temperature)

    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    def save(self, directory: Path) -> None:
        save_policy(self.policy, self.engine, directory)
        save_reference(self.ref, directory)
        if not is_writer():  # learner ranks hold the same store, counters and RNG
            return
        self.store.save(directory / "store")
        (directory / "agro_state.json").write_text(json.dumps({"version": self.version}))
        torch.save(self.rng.get_state(), directory / "agro_rng.pt")

    def load(self, directory: Path) -> None:
        try:
            self.engine.load_checkpoint(directory / "engine")
            self.store = EpisodeStore.load(directory / "store")
            state = json.loads((directory / "agro_state.json").read_text())
            self.rng.set_state(torch.load(directory / "agro_rng.pt"))
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume AGRO from {directory}: {err}") from None
        self.version = int(state["version"])
        self.policy.model = self.engine.module
        self.policy.model.eval()
        loaded = load_reference(self.ref, directory, self.policy.device)
        assert loaded is not None
        self.ref = loaded


class OfflineAGRO(AGRO):
    """AGRO on a dataset (`agro.offline`): every iteration is one pass over the logged episodes
    in steps of `agro.groups_per_step` task ids, the same loss and reference as online. The
    dataset's utterances are scored as `encode(text) + eos` (or their sampled ids). Their
    log pi_ref never changes: it is computed once."""

    data = "offline"

    def __init__(self, *args: Any, dataset: list[Trajectory]):
        super().__init__(*args)
        self.dataset = dataset
        self._ref_logp: torch.Tensor | None = None

    def learn(self, new: list[Trajectory], iteration: int) -> Metrics:
        groups = len({t.task_id for t in self.dataset})
        steps = -(-groups // self.s.groups_per_step)
        return self.update(self.dataset, [], steps) | {
            "progress/dataset_episodes": float(len(self.dataset))}

    def reference_logps(self, episodes: list[Trajectory], rows: TokenBatch, owner: list[int],
                        ) -> torch.Tensor:
        if self._ref_logp is None:
            self._ref_logp = super().reference_logps(episodes, rows, owner)
        return self._ref_logp


def offline_episodes(policy: Policy, located: list[tuple[str, Trajectory]]) -> list[Trajectory]:
    """The dataset's episodes with a task id and at least one turn, every turn with token ids
    (its sampled ones, else `encode(action) + eos`); sampled ids of another tokenizer are a
    DatasetError naming the episode's file and line."""
    from dataclasses import replace

    from archer.algorithms.bc import check_tokenizer, turn_ids
    from archer.buffer.dataset import DatasetError

    out = []
    for where, traj in located:
        if not traj.turns or traj.task_id is None:
            continue
        check_tokenizer(policy, traj, where)
        turns = [replace(t, action_ids=turn_ids(policy, t)) for t in traj.turns]
        out.append(replace(traj, turns=turns, tokenizer=policy.fingerprint))
    if not out:
        raise DatasetError("the dataset has no episode with a task id and a turn: AGRO's "
                           "baseline is per task id")
    return out


def build(cfg: Config, run: RunContext) -> AGRO:
    """AGRO from `cfg.agro` and the policy at `run.init_policy`, which is also the frozen
    reference; replayed episodes come from a store of `buffer.capacity` turns. With
    `agro.offline` it learns from `data.path` instead (`OfflineAGRO`)."""
    s = cfg.agro
    # kl_coef=1 only asks start_policy for the frozen reference: the KL is in the reward here.
    policy, engine, ref = start_policy(
        cfg, run, "AGRO", lr=s.lr, batch_size=cfg.deepspeed.micro_batch_size * s.micro_batches,
        grad_clip=s.grad_clip, kl_coef=1.0)
    assert ref is not None
    args = (s, policy, engine, ref, EpisodeStore(cfg.buffer.capacity, cfg.seed),
            cfg.generation.temperature, cfg.seed)
    if s.offline:
        from archer.buffer.dataset import iter_located

        assert cfg.data.path is not None  # Config checks it for an offline run
        return OfflineAGRO(*args, dataset=offline_episodes(policy, list(iter_located(
            cfg.data.path))))
    return AGRO(*args)
