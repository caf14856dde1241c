"""DPO on logged episodes (Rafailov et al. 2023; the Refit/Swift paper's baseline,
ALGORITHMS.md): pairs of a higher- and a lower-return episode of the same task id, against a
frozen reference (the starting policy).

    loss = - (1/P) sum_pairs log sigmoid(beta [(log pi(y_w) - log pi_ref(y_w))
                                               - (log pi(y_l) - log pi_ref(y_l))])

where log pi(y) sums the log-probs of every agent token of the episode (all its utterances;
environment text is never scored). Pairs (`dpo_pairs`): within each task id, episodes sorted
by return, the best with the worst, the second best with the second worst, and so on; a pair
whose returns are equal is dropped (nothing to prefer), and so is a task id logged once. Each
episode is in at most one pair per epoch.

The loss is a sum over pairs (each pair's term needs the whole of its two episodes), so a step
is cut into micro-batches of whole pairs, each adding its pairs' terms over the step's pair
count: in the driver one micro-batch of `dpo.batch_size` pairs, in a learner group
`dpo.batch_size / deepspeed.micro_batch_size` micro-batches of pairs shared over the ranks.
The reference log-probs are taken per micro-batch, on the rank that runs it.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from archer.algorithms.agro import episode_logps
from archer.algorithms.api import Acting, RunContext, engine_acting, save_policy
from archer.algorithms.bc import Example, check_last_step, offline_engine, turn_examples
from archer.algorithms.updates import policy_step
from archer.buffer.dataset import DatasetError, read_trajectories
from archer.errors import CheckpointError
from archer.metrics import mean_metrics
from archer.models.policy import Policy, TokenBatch
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config, DPOConfig

Metrics = dict[str, float]


# ---------------------------------------------------------------------------- losses
def dpo_pairs(returns: Sequence[float], task_ids: Sequence[str | None]) -> list[tuple[int, int]]:
    """(chosen, rejected) episode indices: per task id, sorted by return (ties by index),
    the k-th best with the k-th worst while the chosen's return is higher."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, task in enumerate(task_ids):
        if task is not None:
            groups[task].append(i)
    pairs = []
    for task in sorted(groups):
        ranked = sorted(groups[task], key=lambda i: (-float(returns[i]), i))
        for k in range(len(ranked) // 2):
            win, lose = ranked[k], ranked[-1 - k]
            if float(returns[win]) > float(returns[lose]):
                pairs.append((win, lose))
    return pairs


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, n_pairs: int | None = None,
             ) -> tuple[torch.Tensor, Metrics]:
    """Sum over pairs of -log sigmoid(beta (margin)) / `n_pairs` (None: the P given, so the
    mean); all inputs [P], sequence log-probs. With `n_pairs` the step's pair count, the loss
    and metrics of a micro-batch are its shares of the step's."""
    n = float(n_pairs if n_pairs is not None else logp_chosen.numel())
    chosen = logp_chosen - ref_chosen.detach()  # [P]
    rejected = logp_rejected - ref_rejected.detach()  # [P]
    logits = beta * (chosen - rejected)  # [P]
    loss = -F.logsigmoid(logits).sum() / n
    return loss, {"dpo/loss": float(loss.detach()),
                  "dpo/accuracy": float((logits.detach() > 0).float().sum() / n),
                  "dpo/margin": float((chosen - rejected).detach().sum() / n),
                  "dpo/chosen_reward": float(beta * chosen.detach().sum() / n),
                  "dpo/rejected_reward": float(beta * rejected.detach().sum() / n)}


def episode_sums(logp: torch.Tensor, mask: torch.Tensor, owner: torch.Tensor,
                 n_episodes: int) -> torch.Tensor:
    """Per-episode sums of the rows' action log-probs: logp, mask [B, T], owner [B] -> [E]."""
    rows = (logp * mask).sum(-1)  # [B]
    return torch.zeros(n_episodes, dtype=rows.dtype, device=rows.device).index_add(
        0, owner.to(rows.device), rows)


# ------------------------------------------------------------------------- algorithm
class DPO:
    data = "offline"

    def __init__(self, s: DPOConfig, policy: Policy, engine: Any, ref: torch.nn.Module,
                 episodes: list[list[Example]], pairs: list[tuple[int, int]], seed: int):
        if not pairs:
            raise DatasetError("dpo: the dataset has no task id with two episodes of different "
                               "returns, so no (chosen, rejected) pair")
        self.s, self.policy, self.engine, self.ref = s, policy, engine, ref
        self.episodes, self.pairs = episodes, pairs
        self.rng = random.Random(seed)
        self.version = 0

    def _rows(self, chosen: list[tuple[int, int]]) -> tuple[TokenBatch, torch.Tensor]:
        """The agent turns of the step's episodes (chosen ones first, then rejected), and
        each row's episode slot: slot p is pair p's chosen, P + p its rejected."""
        slots = [w for w, _ in chosen] + [lose for _, lose in chosen]
        turns = [(slot, ex) for slot, e in enumerate(slots) for ex in self.episodes[e]]
        rows = self.policy.batch([o for _, (o, _) in turns], [a for _, (_, a) in turns])
        return rows, torch.tensor([slot for slot, _ in turns])

    def learn(self, new: list[Trajectory], iteration: int) -> Metrics:
        order = list(range(len(self.pairs)))
        self.rng.shuffle(order)
        history = []
        for start in range(0, len(order), self.s.batch_size):
            chosen = [self.pairs[i] for i in order[start : start + self.s.batch_size]]
            p = len(chosen)
            rows, owner = self._rows(chosen)

            def loss(logp: torch.Tensor, sub: TokenBatch, idx: list[int], owner=owner,
                     p=p) -> tuple[torch.Tensor, Metrics]:
                slots = owner[idx]
                ep = episode_sums(logp, sub.action_mask.to(logp.device), slots, 2 * p)
                ref = episode_logps(self.policy, sub, slots.tolist(), 2 * p, self.ref,
                                    temperature=1.0).to(logp.device)  # [2P], no gradient
                mine = torch.unique(slots % p).to(logp.device)  # this part's pairs
                return dpo_loss(ep[mine], ep[p + mine], ref[mine], ref[p + mine], self.s.beta,
                                n_pairs=p)

            history.append(policy_step(self.engine, self.policy, rows, loss,
                                       micro_batch_size=None, groups=(owner % p).tolist(),
                                       prefix="dpo"))  # micro-batches of whole pairs
        self.policy.model.eval()
        self.version += 1
        return mean_metrics(history) | {"dpo/pairs": float(len(self.pairs)),
                                        "dpo/steps": float(len(history))}

    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    def save(self, directory: Path) -> None:
        save_policy(self.policy, self.engine, directory)
        self.ref.save_pretrained(directory / "reference_policy")
        torch.save({"rng": self.rng.getstate()}, directory / "dpo_state.pt")
        (directory / "dpo_state.json").write_text(json.dumps({"version": self.version}))

    def load(self, directory: Path) -> None:
        from transformers import AutoModelForCausalLM

        try:
            self.engine.load_checkpoint(directory / "engine")
            self.rng.setstate(torch.load(directory / "dpo_state.pt", weights_only=False)["rng"])
            self.version = int(json.loads((directory / "dpo_state.json").read_text())["version"])
            ref = AutoModelForCausalLM.from_pretrained(str(directory / "reference_policy"))
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume DPO from {directory}: {err}") from None
        self.ref = ref.to(self.policy.device).eval().requires_grad_(False)
        self.policy.model = self.engine.module


def build(cfg: Config, run: RunContext) -> DPO:
    """DPO on `cfg.data.path` from the policy at `run.init_policy` (else `model.path`), which
    is also the frozen reference: DPO moves a policy relative to where it starts, so it needs
    one (typically the SFT of the same data)."""
    import copy

    s = cfg.dpo
    path = run.init_policy if run.init_policy is not None else cfg.model.path
    assert path is not None  # Config requires train.init_policy or model.path for dpo
    assert cfg.data.path is not None  # Config checks it for the offline algorithms
    trajectories = read_trajectories(cfg.data.path)
    policy = Policy.from_pretrained(path, cfg.device, cfg.model.max_context_tokens,
                                    reserve=cfg.generation.max_new_tokens)
    ref = copy.deepcopy(policy.model).eval().requires_grad_(False)
    engine = offline_engine(cfg, policy, lr=s.lr, batch_size=s.batch_size, grad_clip=s.grad_clip)
    policy.model.eval()
    episodes = [turn_examples(policy, [t]) for t in trajectories]
    keep = [i for i, ex in enumerate(episodes) if ex]
    pairs = dpo_pairs([trajectories[i].episode_return for i in keep],
                      [trajectories[i].task_id for i in keep])
    check_last_step(len(pairs), s.batch_size, engine, "pairs", "dpo")
    return DPO(s, policy, engine, ref, [episodes[i] for i in keep], pairs, cfg.seed)
