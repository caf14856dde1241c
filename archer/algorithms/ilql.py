"""ILQL: implicit language Q-learning on logged episodes (Snell et al. 2022, arXiv 2206.11871;
ALGORITHMS.md).

Every agent token is an action; the state before it is the prompt and the utterance so far.
On the hidden state h(s) that the policy's LM head reads sit two Q heads over the vocabulary,
Q_1, Q_2: h -> R^|V|, their Polyak targets Q̄_1, Q̄_2, and a V head. A turn's reward sits on
the last token of its utterance; the successor of that token is the state before the next
utterance's first token (environment text is part of the state, never an action), as in
token PPO's GAE. The last turn of a terminated episode is done (no bootstrap); a truncated
one bootstraps from V of its final observation. With y = r + gamma (1 - done) sg V(s'):

    Q loss     sum_i (Q_i(s, a) - y)^2
    V loss     |tau - 1[u < 0]| u^2,            u = sg min_i Q̄_i(s, a) - V(s)   (expectile)
    CQL        sum_i logsumexp_a' Q_i(s, a') - Q_i(s, a)                  x cql_weight
    AWAC       - w log pi(a|s),  w = 1, or exp(awac_beta (min Q̄ - V)) capped   x awac_weight

each averaged over the step's agent tokens, one backward through the policy and its heads.
With awac_beta = 0 the last term is plain BC and the LM head stays pi_bc, which value-guided
decoding builds on:

    logits'(a|s) = log pi_bc(a|s) + beta (min_i Q̄_i(s, a) - V(s)),   then top-k, then sampling

(`guided_logits`; `ValueGuide` applies it inside `Policy.generate`). The run acts that way
(`ilql.decoding=guided`) or with the LM head alone (`policy`); `archer eval --decoding ilql
--beta B` decodes any saved ILQL policy with its heads. The heads are saved beside the
policy's HF export in HF format: `<checkpoint>/ilql_heads/{config.json, model.safetensors}`.

One loop iteration is one pass over the dataset's episodes in shuffled steps of `batch_size`
episodes, with BC's learning-rate schedule; the targets move by `polyak` after every step. A
token's successor state may be in the next turn's row, so a step is cut into micro-batches of
whole episodes (`policy_step(groups=)`), each adding its tokens' terms over the step's token count:
in the driver one micro-batch (all the step's turns in one forward), in a learner group
`batch_size / deepspeed.micro_batch_size` of them, split over the ranks.
"""

from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from archer.algorithms import parallel
from archer.algorithms.api import Acting, RunContext
from archer.algorithms.bc import (
    check_last_step,
    check_tokenizer,
    load_scheduled,
    offline_engine,
    save_scheduled,
    schedule,
    turn_ids,
)
from archer.algorithms.updates import policy_step
from archer.buffer.dataset import DatasetError, iter_located
from archer.errors import CheckpointError
from archer.metrics import mean_metrics
from archer.models.policy import Policy, Scores, TokenBatch, attach_head
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config, ILQLConfig

Metrics = dict[str, float]
HEADS = "ilql_heads"
"""The heads' attribute on the policy model, and their directory beside the saved policy."""


# ----------------------------------------------------------------------------- heads
def _mlp(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, out))


class ILQLHeads(nn.Module):
    """Q_1, Q_2 (hidden -> one value per vocabulary token) and V (hidden -> one value), each a
    two-layer MLP of width 2H, as in the reference code."""

    def __init__(self, hidden_size: int, vocab_size: int):
        super().__init__()
        self.hidden_size, self.vocab_size = int(hidden_size), int(vocab_size)
        self.q1, self.q2 = _mlp(self.hidden_size, self.vocab_size), _mlp(self.hidden_size,
                                                                        self.vocab_size)
        self.v = _mlp(self.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden [..., H] -> Q_1 [..., V], Q_2 [..., V], V [...], in float32."""
        h = hidden.float()
        return self.q1(h), self.q2(h), self.v(h).squeeze(-1)


def make_targets(heads: ILQLHeads) -> nn.ModuleDict:
    """Frozen copies of the Q heads (Q̄_1, Q̄_2), outside the engine: only `polyak_update`
    moves them."""
    targets = nn.ModuleDict({"q1": copy.deepcopy(heads.q1), "q2": copy.deepcopy(heads.q2)})
    return targets.eval().requires_grad_(False)


@torch.no_grad()
def polyak_update(targets: nn.ModuleDict, heads: ILQLHeads, rate: float) -> None:
    """target <- (1 - rate) target + rate source, for Q̄_1 <- Q_1 and Q̄_2 <- Q_2."""
    for name in ("q1", "q2"):
        for t, s in zip(targets[name].parameters(), getattr(heads, name).parameters(),
                        strict=True):
            t.mul_(1.0 - rate).add_(s.detach().to(t.dtype), alpha=rate)


def save_heads(directory: Path, heads: ILQLHeads, targets: nn.ModuleDict,
               tokenizer: str) -> None:
    """The heads in HF format: `config.json` (sizes, the tokenizer's fingerprint) and
    `model.safetensors` (q1.*, q2.*, v.*, target_q1.*, target_q2.*)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    for name in ("q1", "q2"):
        state.update({f"target_{name}.{k}": v.detach().cpu().contiguous()
                      for k, v in targets[name].state_dict().items()})
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(
        {"model_type": "archer_ilql_heads", "hidden_size": heads.hidden_size,
         "vocab_size": heads.vocab_size, "tokenizer": tokenizer}, indent=2) + "\n")


def load_heads(directory: Path) -> tuple[ILQLHeads, nn.ModuleDict, str]:
    """(heads, targets, tokenizer fingerprint) saved by `save_heads`; a missing or broken
    directory is a CheckpointError naming it."""
    from safetensors.torch import load_file

    try:
        config = json.loads((directory / "config.json").read_text())
        state = load_file(str(directory / "model.safetensors"))
        heads = ILQLHeads(config["hidden_size"], config["vocab_size"])
        heads.load_state_dict({k: v for k, v in state.items() if not k.startswith("target_")})
        targets = make_targets(heads)
        for name in ("q1", "q2"):
            prefix = f"target_{name}."
            targets[name].load_state_dict(
                {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"cannot load ILQL heads from {directory} (expected "
                              f"config.json and model.safetensors, written by algo=ilql): "
                              f"{err}") from None
    return heads.eval(), targets, str(config.get("tokenizer"))


# ---------------------------------------------------------------------------- losses
def expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """|tau - 1[u < 0]| u^2, elementwise: weight tau above 0, 1 - tau below."""
    return torch.where(u < 0, 1.0 - tau, tau) * u.square()


def ilql_loss(q1_all: torch.Tensor, q2_all: torch.Tensor, tq1_all: torch.Tensor,
              tq2_all: torch.Tensor, v: torch.Tensor, next_v: torch.Tensor,
              actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
              logp: torch.Tensor, n: float, *, gamma: float, expectile: float,
              cql_weight: float, awac_weight: float, awac_beta: float = 0.0,
              awac_max_weight: float = 100.0) -> tuple[torch.Tensor, Metrics]:
    """ILQL's loss over N agent tokens, summed and divided by `n` (the step's token count).

    q*_all [N, V] the Q heads at each token's state, tq*_all the targets' (no gradient), v
    [N] V(s), next_v [N] V(s') (taken without gradient here), actions [N] the token ids,
    rewards and dones [N], logp [N] log pi(a|s)."""
    a = actions[:, None]
    q1, q2 = q1_all.gather(-1, a).squeeze(-1), q2_all.gather(-1, a).squeeze(-1)  # [N]
    with torch.no_grad():
        tq = torch.minimum(tq1_all.gather(-1, a), tq2_all.gather(-1, a)).squeeze(-1)  # [N]
        y = rewards + gamma * (1.0 - dones) * next_v.detach()  # [N]
    q_loss = ((q1 - y).square() + (q2 - y).square()).sum() / n
    v_loss = expectile_loss(tq - v, expectile).sum() / n
    cql = ((torch.logsumexp(q1_all, -1) - q1) + (torch.logsumexp(q2_all, -1) - q2)).sum() / n
    if awac_beta > 0:
        w = torch.exp(awac_beta * (tq - v.detach())).clamp(max=awac_max_weight)  # [N]
    else:
        w = torch.ones_like(logp)
    awac = -(w.detach() * logp).sum() / n
    loss = q_loss + v_loss + cql_weight * cql + awac_weight * awac
    return loss, {"ilql/q_loss": float(q_loss.detach()), "ilql/v_loss": float(v_loss.detach()),
                  "ilql/cql": float(cql.detach()), "ilql/awac": float(awac.detach()),
                  "ilql/q_mean": float(q1.detach().sum() / n),
                  "ilql/v_mean": float(v.detach().sum() / n),
                  "ilql/advantage_mean": float((tq - v.detach()).sum() / n)}


def guided_logits(logits: torch.Tensor, tq1: torch.Tensor, tq2: torch.Tensor,
                  v: torch.Tensor, beta: float, top_k: int) -> torch.Tensor:
    """Value-guided decoding: log_softmax(logits) + beta (min(tq1, tq2) - v) over [B, V],
    then every token below the row's k-th largest is -inf."""
    out = torch.log_softmax(logits.float(), -1) + beta * (torch.minimum(tq1, tq2)
                                                          - v[:, None]).float()
    if top_k < out.shape[-1]:
        kth = out.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
        out = out.masked_fill(out < kth, float("-inf"))
    return out


class ValueGuide:
    """ILQL's acting rule (an `archer.models.policy.Guide`): `guided_logits` with the target
    Q heads and V. Pickled to rollout workers whole; it moves its heads to the policy's
    device on first use."""

    def __init__(self, heads: ILQLHeads, targets: nn.ModuleDict, beta: float, top_k: int):
        self.q1 = copy.deepcopy(targets["q1"]).cpu().eval().requires_grad_(False)
        self.q2 = copy.deepcopy(targets["q2"]).cpu().eval().requires_grad_(False)
        # V is the engine's: a fresh copy of its values (whole when gathered under ZeRO-3)
        self.v = _mlp(heads.hidden_size, 1).eval().requires_grad_(False)
        self.v.load_state_dict({k: t.detach().float().cpu().clone()
                                for k, t in heads.v.state_dict().items()})
        self.beta, self.top_k = float(beta), int(top_k)

    @torch.no_grad()
    def adjust(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        device = hidden.device
        if next(self.v.parameters()).device != device:
            self.q1, self.q2, self.v = self.q1.to(device), self.q2.to(device), self.v.to(device)
        h = hidden.float()
        return guided_logits(logits, self.q1(h), self.q2(h), self.v(h).squeeze(-1), self.beta,
                             self.top_k)


def load_guide(directory: Path, beta: float, top_k: int, policy: Policy | None = None,
               ) -> ValueGuide:
    """The `ValueGuide` of the heads saved at `directory`; with `policy`, heads trained with
    another tokenizer are a CheckpointError."""
    heads, targets, tokenizer = load_heads(directory)
    if policy is not None and tokenizer != policy.fingerprint:
        raise CheckpointError(f"the ILQL heads at {directory} were trained with tokenizer "
                              f"{tokenizer}, the policy's is {policy.fingerprint}")
    return ValueGuide(heads, targets, beta, top_k)


# ------------------------------------------------------------------- the transitions
@dataclass(frozen=True)
class Episode:
    """One logged episode as ILQL's rows: each turn (observation, action ids, reward), then
    how it ended."""

    turns: list[tuple[str, list[int], float]]
    terminated: bool
    final_observation: str


def ilql_episodes(policy: Policy, located: list[tuple[str, Trajectory]]) -> list[Episode]:
    """Every episode with at least one turn; a turn that carries sampled ids trains on them,
    others on `encode(action) + eos` (an empty utterance is eos alone: the turn stays, so the
    episode's rewards and successors stay in order). Sampled ids of another tokenizer are a
    DatasetError naming the episode's file and line."""
    episodes = []
    for where, traj in located:
        if not traj.turns:
            continue
        check_tokenizer(policy, traj, where)
        turns = [(t.observation, turn_ids(policy, t), float(t.reward)) for t in traj.turns]
        episodes.append(Episode(turns, bool(traj.turns[-1].terminated),
                                traj.final_observation))
    return episodes


@dataclass
class StepRows:
    """A step's rows: every turn of its episodes in order, then one row per truncated episode
    (its final observation and a dummy eos) whose first state bootstraps that episode."""

    batch: TokenBatch
    reward: list[float]
    """Per row: the reward on its last token (0 for a bootstrap row)."""
    next_row: list[int]
    """Per row: the row whose first state follows its last token, -1 when none."""
    terminal: list[bool]
    """Per row: its last token ends the episode (no bootstrap)."""
    real: list[bool]
    """Per row: a logged turn (False: a bootstrap row, never a training target)."""
    episode: list[int]
    """Per row: its episode's index in the step (a bootstrap row's is its episode's)."""

    def target_tokens(self) -> int:
        """The step's training targets: the agent tokens of its logged turns."""
        per_row = self.batch.action_mask.sum(-1).tolist()
        return int(sum(n for n, real in zip(per_row, self.real, strict=True) if real))


def step_rows(policy: Policy, episodes: list[Episode]) -> StepRows:
    obs, ids, reward, next_row, terminal, real, owner = [], [], [], [], [], [], []
    finals: list[tuple[int, str]] = []  # (row of a truncated episode's last turn, final obs)
    for e, ep in enumerate(episodes):
        first = len(obs)
        for k, (o, a, r) in enumerate(ep.turns):
            last = k == len(ep.turns) - 1
            obs.append(o)
            ids.append(a)
            reward.append(r)
            next_row.append(-1 if last else first + k + 1)
            terminal.append(last and ep.terminated)
            real.append(True)
            owner.append(e)
        if not ep.terminated:
            finals.append((len(obs) - 1, ep.final_observation))
    eos = policy.tokenizer.eos_token_id
    for row, final in finals:
        next_row[row] = len(obs)
        obs.append(final)
        ids.append([eos])
        reward.append(0.0)
        next_row.append(-1)
        terminal.append(False)
        real.append(False)
        owner.append(owner[row])
    return StepRows(policy.batch(obs, ids), reward, next_row, terminal, real, owner)


def token_transitions(lengths: list[int], reward: list[float], next_row: list[int],
                      terminal: list[bool], real: list[bool],
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows' agent tokens flattened row by row (tokens in order): for each, the index of
    its successor token (-1: none), its reward and done flag, and whether it is a training
    target. Inside an utterance the successor is the next token (reward 0); after a row's
    last token it is the first token of `next_row`, with the row's reward, done when
    `terminal`."""
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    total = starts[-1]
    succ = torch.arange(1, total + 1)
    rewards, dones = torch.zeros(total), torch.zeros(total)
    targets = torch.zeros(total, dtype=torch.bool)
    for row, n in enumerate(lengths):
        last = starts[row] + n - 1
        succ[last] = starts[next_row[row]] if next_row[row] >= 0 else -1
        rewards[last] = reward[row]
        dones[last] = float(terminal[row])
        targets[starts[row] : last + 1] = real[row]
    return succ, rewards, dones, targets


# ------------------------------------------------------------------------- algorithm
class ILQL:
    data = "offline"

    def __init__(self, s: ILQLConfig, policy: Policy, engine: Any, targets: nn.ModuleDict,
                 episodes: list[Episode], epochs: int, seed: int):
        if not episodes:
            raise DatasetError("the dataset has no episode with a turn to learn from")
        self.s, self.policy, self.engine, self.targets = s, policy, engine, targets
        self.episodes = episodes
        self.steps_per_epoch = math.ceil(len(episodes) / s.batch_size)
        self.scheduler = schedule(engine.base_optimizer, s.warmup_steps,
                                  self.steps_per_epoch * epochs)
        self.rng = random.Random(seed)
        self.version = 0
        check_last_step(len(episodes), s.batch_size, engine, "episodes", "ilql")
        self._refresh_guide()

    @property
    def heads(self) -> ILQLHeads:
        return getattr(self.policy.model, HEADS)

    def _loss(self, step: StepRows):
        s = self.s
        n = float(max(step.target_tokens(), 1))  # the whole step's: micro-batches add shares

        def loss(scores: Scores, sub: TokenBatch, idx: list[int]) -> tuple[torch.Tensor, Metrics]:
            assert scores.hidden is not None
            hs = scores.hidden[:, :-1]  # [b, L, H]: the state before each of the last L columns
            width = hs.shape[1]
            mask = sub.action_mask[:, -width:].bool().to(hs.device)  # [b, L]
            lengths = mask.sum(-1).tolist()
            position = {row: k for k, row in enumerate(idx)}  # step row -> sub row
            succ, rewards, dones, targets = token_transitions(
                lengths, [step.reward[r] for r in idx],
                [position[step.next_row[r]] if step.next_row[r] >= 0 else -1 for r in idx],
                [step.terminal[r] for r in idx], [step.real[r] for r in idx])
            h = hs[mask]  # [N, H], row by row
            q1_all, q2_all, v = self.heads(h)
            with torch.no_grad():
                tq1_all, tq2_all = self.targets["q1"](h.float()), self.targets["q2"](h.float())
            dev = v.device
            succ = succ.to(dev)
            next_v = torch.where(succ >= 0, v.detach()[succ.clamp(min=0)], 0.0)  # [N]
            keep = targets.to(dev)
            actions = sub.input_ids[:, -width:].to(dev)[mask]  # [N]
            logp = scores.logp[:, -width:][mask]  # [N]
            return ilql_loss(q1_all[keep], q2_all[keep], tq1_all[keep], tq2_all[keep], v[keep],
                             next_v[keep], actions[keep], rewards.to(dev)[keep],
                             dones.to(dev)[keep], logp[keep], n,
                             gamma=s.gamma, expectile=s.expectile, cql_weight=s.cql_weight,
                             awac_weight=s.awac_weight, awac_beta=s.awac_beta,
                             awac_max_weight=s.awac_max_weight)

        return loss

    def learn(self, new: list[Trajectory], iteration: int) -> Metrics:
        order = list(range(len(self.episodes)))
        self.rng.shuffle(order)
        history = []
        for start in range(0, len(order), self.s.batch_size):
            step = step_rows(self.policy, [self.episodes[e]
                                           for e in order[start : start + self.s.batch_size]])
            m = policy_step(self.engine, self.policy, step.batch, None, micro_batch_size=None,
                            groups=step.episode, prefix="ilql", aux_loss=self._loss(step))
            if not m.get("ilql/skipped"):
                with self.engine.gathered_parameters(self.heads):  # the Q heads, under ZeRO-3
                    polyak_update(self.targets, self.heads, self.s.polyak)
            self.scheduler.step()
            history.append({**m, "ilql/lr": self.scheduler.get_last_lr()[0]})
        self.policy.model.eval()
        self.version += 1
        self._refresh_guide()
        return mean_metrics(history) | {"ilql/steps": float(len(history)),
                                        "progress/dataset_episodes": float(len(self.episodes))}

    def _refresh_guide(self) -> None:
        """The acting rule of the current heads (`ilql.decoding=guided`; else None), built when
        they change (at the start, after learn and load: points every learner rank passes
        together, as reading V under ZeRO-3 is a collective)."""
        self._guide: ValueGuide | None = None
        if self.s.decoding == "guided":  # the same on every rank (the config's)
            with self.engine.gathered_parameters(self.heads.v):
                self._guide = ValueGuide(self.heads, self.targets, self.s.beta, self.s.top_k)

    def acting(self) -> Acting:
        return Acting(policy=self.policy, version=self.version,
                      gathered=self.engine.gathered_parameters, chooser=self._guide,
                      chooser_version=self.version, buckets=self.engine.weight_buckets)

    def save(self, directory: Path) -> None:
        save_scheduled(directory, "ilql", self.policy, self.engine, self.scheduler, self.rng,
                       self.version)
        with self.engine.gathered_parameters(self.heads):
            if parallel.is_writer():  # learner ranks hold the same heads
                save_heads(directory / HEADS, self.heads, self.targets, self.policy.fingerprint)

    def load(self, directory: Path) -> None:
        self.version = load_scheduled(directory, "ilql", "ILQL", self.policy, self.engine,
                                      self.scheduler, self.rng)
        _, targets, _ = load_heads(directory / HEADS)
        self.targets.load_state_dict(targets.state_dict())
        self._refresh_guide()


def build(cfg: Config, run: RunContext) -> ILQL:
    """ILQL on `cfg.data.path` from the policy at `run.init_policy`, else `model.path`, else a
    tiny model with a tokenizer trained on the data; the heads are attached to the policy
    model before its engine (`offline_engine`) is built, so they train with it."""
    from archer.models.builders import build_policy

    s = cfg.ilql
    assert cfg.data.path is not None  # Config checks it for the offline algorithms
    located = list(iter_located(cfg.data.path))
    if not located:
        raise DatasetError(f"dataset {cfg.data.path} holds no episodes")
    policy = build_policy(cfg, [t for _, t in located], run.init_policy)
    episodes = ilql_episodes(policy, located)
    lm_head = policy.model.get_output_embeddings()
    torch.manual_seed(cfg.seed)  # the heads' initialisation: a run is reproducible
    heads = ILQLHeads(int(lm_head.weight.shape[1]), int(lm_head.weight.shape[0]))
    attach_head(policy.model, HEADS, heads.to(cfg.device))
    targets = make_targets(heads)
    engine = offline_engine(cfg, policy, lr=s.lr, batch_size=s.batch_size,
                            grad_clip=s.grad_clip, weight_decay=s.weight_decay)
    return ILQL(s, policy, engine, targets, episodes, cfg.train.iterations, cfg.seed)
