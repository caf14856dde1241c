"""The shared update steps: the only callers of backward() and of an optimizer or engine step.

- `sample`: fresh utterances from the policy, in chunks (memory bounded), with whole weights.
Under a learner group every step is planned the same on all ranks and each runs its share of
the micro-batches (and of the fresh samples), their gradients summed: `archer.algorithms.parallel`.
- `policy_step`: one optimizer step of a policy loss over any rows, split into micro-batches.
  Normalisers are taken over the whole step before the split, so 1 x 8 == 8 x 1.
- `critic_step`: one step of ArCHer's double critic on a buffer batch, in micro-batches that
  accumulate one mean.
A non-finite loss drops the whole step with a warning (`<prefix>/skipped` = 1); the loop counts
those against train.max_nonfinite.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from archer.algorithms import parallel
from archer.algorithms.losses import kl_k3
from archer.memory import release_free_memory
from archer.metrics import COUNTS, count
from archer.models.policy import Generation, Policy, Sampling, Scores, TokenBatch
from archer.rollout.collector import ActingRule, act_utterances
from archer.types import Trajectory

Metrics = dict[str, float]
PolicyLoss = Callable[[torch.Tensor, TokenBatch, list[int]], tuple[torch.Tensor, Metrics]]
"""(token_logp [b, T] of the micro-batch, its rows, their indices in the step) -> (loss, metrics).
The loss is a partial sum over the micro-batch divided by a whole-step normaliser."""
AuxLoss = Callable[[Scores, TokenBatch, list[int]], tuple[torch.Tensor, Metrics]]
"""(the micro-batch's scores: token log-probs and hidden [b, K, H], the LM head's input at the
last K columns; its rows; their indices in the step) -> (loss share, metrics): a loss on the
same forward as the policy's (a value head on the policy; ILQL's heads)."""


def sample(policy: Policy, engine: Any, observations: Sequence[str], sampling: Sampling,
           chunk_size: int, seeds: Sequence[int] | None = None,
           chooser: ActingRule | None = None) -> Generation:
    """Fresh utterances for `observations`, `chunk_size` rows per forward, under
    `engine.gathered_parameters()` (the whole weights under ZeRO-3, else a no-op; no engine:
    a frozen policy), acting through `chooser` if given (CHAI's reranking; see
    `act_utterances`). Under several learner ranks each samples its share of the rows (each
    row from its own seed, so the split does not change them) and all ranks get every row
    back, in order."""
    obs = list(observations)
    size = parallel.world()[1]
    if size > 1 and seeds is None:
        raise ValueError("fresh samples split over learner ranks need a seed per row")
    mine = parallel.split_rows(len(obs))
    with engine.gathered_parameters() if engine is not None else contextlib.nullcontext():
        gen = act_utterances(policy, [obs[i] for i in mine], sampling,
                             seeds=None if seeds is None else [int(seeds[i]) for i in mine],
                             chunk_size=chunk_size, chooser=chooser)
    if size == 1:
        return gen
    rows = parallel.gather(list(zip(gen.texts, gen.action_ids, gen.logprobs, strict=True)))
    return Generation(texts=[r[0] for r in rows], action_ids=[r[1] for r in rows],
                      logprobs=[r[2] for r in rows])


def draw_seeds(n: int) -> list[int]:
    """`n` row seeds for fresh samples, from torch's global RNG (the same on every learner
    rank, and saved with the run's RNG state)."""
    return torch.randint(0, 2**62, (n,)).tolist()


def turn_rows(policy: Policy, episodes: list[Trajectory], behaviour: bool = False,
              ) -> tuple[TokenBatch, list[int]]:
    """Every agent turn of `episodes` as one row (its prompt + the ids it sampled, with their
    stored log-probs when `behaviour`), in episode then turn order, and each row's episode."""
    obs, ids, logps, owner = [], [], [], []
    for e, traj in enumerate(episodes):
        if traj.tokenizer not in (None, policy.fingerprint):
            raise ValueError(f"episode {traj.task_id!r} was sampled with tokenizer "
                             f"{traj.tokenizer}, the policy's is {policy.fingerprint}")
        for turn in traj.turns:
            if not turn.action_ids:
                raise ValueError(f"a turn of episode {traj.task_id!r} has no sampled ids: "
                                 "online episodes must come from the policy")
            obs.append(turn.observation)
            if behaviour and not turn.logprobs:
                raise ValueError(f"a turn of episode {traj.task_id!r} has no stored log-probs")
            ids.append(list(turn.action_ids))
            logps.append(list(turn.logprobs or []))
            owner.append(e)
    return policy.batch(obs, ids, logps if behaviour else None), owner


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def _by_length(rows: TokenBatch) -> list[int]:
    """The rows' indices from shortest to longest (stable): a micro-batch is cut to its
    longest row, so rows of similar length share one."""
    return sorted(range(len(rows)), key=lambda i: int(rows.attention_mask[i].sum()))


def group_parts(rows: TokenBatch, groups: Sequence[int], count: int) -> list[list[int]]:
    """`rows` in `count` micro-batches of whole groups (`groups[i]`: row i's group, 0..G-1),
    near-even in groups, each micro-batch's rows in `_by_length` order."""
    n_groups = max(groups) + 1 if len(groups) else 0
    if n_groups < count:
        raise ValueError(f"{n_groups} groups of rows cannot fill {count} micro-batches")
    of = {g: k for k, part in enumerate(parallel.even_parts(n_groups, count)) for g in part}
    parts: list[list[int]] = [[] for _ in range(count)]
    for i in _by_length(rows):
        parts[of[int(groups[i])]].append(i)
    return parts


def policy_step(
    engine: Any, policy: Policy, rows: TokenBatch, loss: PolicyLoss | None, *,
    micro_batch_size: int | None, temperature: float = 1.0,
    ref: torch.nn.Module | None = None, kl_coef: float = 0.0, prefix: str = "actor",
    train_mode: bool = False, entropy_coef: float = 0.0, aux_loss: AuxLoss | None = None,
    groups: Sequence[int] | None = None,
) -> Metrics:
    """One optimizer step of `loss` (+ kl_coef x the k3 KL to `ref`, - entropy_coef x the
    mean entropy of pi_T over the step's action tokens, + `aux_loss` on the scores and hidden
    states of the same forward: a value head on the policy) over `rows`. `loss` None: the
    step's loss is `aux_loss` alone (ILQL's, which needs the hidden states for every term).

    The engine averages the gradients of its `gradient_accumulation_steps` micro-batches, so
    each micro-batch loss (already a share of the whole-step loss) is scaled by that count;
    `rows` must split into exactly that many micro-batches of `micro_batch_size`; with None
    they are split into that many near-equal parts (steps whose row count varies, e.g. the
    turns of a set of episodes); `groups` (with `micro_batch_size` None) gives each row's
    group, and the micro-batches hold whole groups (`group_parts`), for a loss whose terms
    each need all the rows of a group (DPO's pairs, each the turns of two episodes; ILQL's
    episodes, whose turns bootstrap from the next). RL steps score in eval mode (no
    dropout: the scored distribution is the one that acted); `train_mode` keeps dropout on
    (BC, as a regulariser).
    """
    # Micro-batches of rows of similar length (each is cut to its longest row); the loss is
    # normalised over the whole step, so which rows share a micro-batch does not matter.
    gas = int(engine.gradient_accumulation_steps)
    _, ranks = parallel.world()
    total = gas * ranks  # micro-batches of the whole step, over all ranks
    on_ranks = f" on each of {ranks} learner ranks" if ranks > 1 else ""
    if groups is not None:
        if micro_batch_size is not None:
            raise ValueError("policy_step takes groups or a micro_batch_size, not both")
        parts = group_parts(rows, groups, total)
    else:
        if micro_batch_size is None and len(rows) < total:
            raise ValueError(f"{len(rows)} rows cannot fill the engine's {gas} micro-batches"
                             f"{on_ranks}")
        split = (_chunks(len(rows), micro_batch_size) if micro_batch_size is not None
                 else parallel.even_parts(len(rows), total))
        by_length = _by_length(rows)
        parts = [[by_length[i] for i in part] for part in split]
    if len(parts) != total:
        raise ValueError(f"{len(rows)} rows in micro-batches of {micro_batch_size} make "
                         f"{len(parts)} micro-batches, but the engine accumulates {gas}"
                         f"{on_ranks}")
    n_tokens = max(rows.action_tokens, 1)
    sums: Metrics = {}
    skipped = False
    step_id = COUNTS["gradient_steps"]
    engine.module.train(train_mode)
    for k, idx in parallel.my_share(list(enumerate(parts))):
        sub = rows.select(idx)
        with parallel.part_rng(step_id, k, getattr(engine, "device", None)):
            scored = policy.score(sub, model=engine, temperature=temperature, grad=True,
                                  entropy=entropy_coef > 0, hidden=aux_loss is not None)
        logp, ent = scored.logp, scored.entropy
        value, m = loss(logp, sub, idx) if loss is not None else (logp.new_zeros(()), {})
        if aux_loss is not None:
            assert scored.hidden is not None
            extra, am = aux_loss(scored, sub, idx)
            value = value + extra
            m.update(am)
        if ent is not None:
            ent_sum = (ent * sub.action_mask.to(ent.device)).sum() / n_tokens  # its share
            value = value - entropy_coef * ent_sum
            m[f"{prefix}/entropy"] = float(ent_sum.detach())
        if kl_coef > 0 and ref is not None:
            with torch.no_grad():
                ref_logp = policy.token_logprobs(sub, model=ref, temperature=temperature)
            kl, km = kl_k3(logp, ref_logp.to(logp.device), sub.action_mask.to(logp.device),
                           n_tokens, prefix)
            value = value + kl_coef * kl
            m.update(km)
        m[f"{prefix}/loss"] = float(value.detach())
        if skipped or not parallel.all_finite(math.isfinite(m[f"{prefix}/loss"])):
            if not skipped:
                warnings.warn(f"non-finite {prefix} loss: step skipped", RuntimeWarning,
                              stacklevel=2)
                engine.zero_grad()
            skipped = True
        else:
            engine.backward(value * total)  # the engine divides by gas and averages over ranks
        engine.step()  # the engine applies the optimizer at the accumulation boundary
        if skipped:
            engine.zero_grad()
        for key, v in m.items():
            sums[key] = sums.get(key, 0.0) + v
    sums = parallel.sum_metrics(sums)  # every rank's shares of the step
    sums[f"{prefix}/skipped"] = 1.0 if skipped else 0.0
    count("gradient_steps", 0 if skipped else 1)
    norm = engine.get_grad_norm() if not skipped else None
    if norm is not None:
        sums[f"{prefix}/grad_norm"] = float(norm)
    release_free_memory()  # the step's activations and gradients (archer.memory)
    return sums


def critic_step(
    critic: torch.nn.Module, target: torch.nn.Module, optimizer: torch.optim.Optimizer,
    states: Sequence[str], actions: Sequence[str], rewards: Sequence[float],
    next_states: Sequence[str], dones: Sequence[bool], fresh_actions: Sequence[str], *,
    gamma: float, grad_clip: float, min_q_for_v: bool, micro_batch_size: int,
    loss_fn: Callable[..., tuple[torch.Tensor, Metrics]],
) -> Metrics:
    """One critic step on a buffer batch; `fresh_actions` are a~ ~ pi(.|s) for the V target.

    Micro-batches of `micro_batch_size` transitions (of similar lengths) each add (their size /
    batch) x their mean loss, so the accumulated gradient is the whole batch's mean. The critic trains in train
    mode and is left in eval mode (advantages and checks must not see dropout); the target is
    always in eval mode.
    """
    device = next(critic.parameters()).device
    n = len(states)
    target.eval()

    def part_loss(idx: list[int]) -> tuple[torch.Tensor, Metrics]:
        s, a, r, s2, d, f = ([xs[i] for i in idx] for xs in (
            states, actions, rewards, next_states, dones, fresh_actions))
        reward = torch.tensor(r, dtype=torch.float32, device=device)  # [b]
        done = torch.tensor(d, dtype=torch.float32, device=device)  # [b]
        with torch.no_grad():
            tv1, tv2 = target.v(s2)  # [b] each
            tq1, tq2 = target.q(s, f)  # [b] each
        q1, q2, v1, v2 = critic(s, a)
        loss, m = loss_fn(q1, q2, v1, v2, tv1, tv2, tq1, tq2, reward, done, gamma, min_q_for_v)
        share = len(idx) / n
        return loss * share, {k: v * share for k, v in m.items()}

    # Micro-batches of transitions of similar length (the encoder pads each forward to its
    # longest text; random draws from a buffer mix 20-token and 512-token histories): each
    # part's loss is its share of the whole batch's mean, so the partition does not change it.
    by_length = sorted(range(n), key=lambda i: len(states[i]) + len(next_states[i]))
    parts = [[by_length[i] for i in part] for part in _chunks(n, micro_batch_size)]
    return module_step(critic, optimizer, parts, part_loss, grad_clip=grad_clip,
                       prefix="critic")


def module_step(
    module: torch.nn.Module, optimizer: torch.optim.Optimizer, parts: Sequence[Any],
    loss: Callable[[Any], tuple[torch.Tensor, Metrics]], *, grad_clip: float, prefix: str,
) -> Metrics:
    """One optimizer step of a plain torch module (a value model) over micro-batches `parts`:
    `loss(part)` returns that part's share of the step's loss (normalised over the whole step),
    so the accumulated gradient is the step's. A non-finite loss skips the step."""
    optimizer.zero_grad(set_to_none=True)
    module.train()
    sums: Metrics = {}
    step_id = COUNTS["gradient_steps"]
    device = next(module.parameters()).device
    try:
        for k, part in parallel.my_share(list(enumerate(parts))):
            with parallel.part_rng(step_id, k, device):
                value, m = loss(part)
            if not parallel.all_finite(math.isfinite(float(value.detach()))):
                optimizer.zero_grad(set_to_none=True)
                warnings.warn(f"non-finite {prefix} loss: step skipped", RuntimeWarning,
                              stacklevel=2)
                return {**sums, f"{prefix}/skipped": 1.0}
            value.backward()
            for key, v in m.items():
                sums[key] = sums.get(key, 0.0) + v
    finally:
        module.eval()
    params = [p for p in module.parameters() if p.requires_grad]
    parallel.sum_gradients(params)  # learner ranks: the whole step's gradient on every rank
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    optimizer.step()
    count("gradient_steps")
    release_free_memory()
    return {**parallel.sum_metrics(sums), f"{prefix}/grad_norm": float(norm),
            f"{prefix}/skipped": 0.0}
