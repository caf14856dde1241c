"""Token-level PPO: the single-turn RL baseline of the ArCHer paper (ALGORITHMS.md).

Every agent token is an action. A token value model V predicts, at each agent token, the value
of the state before it (the prompt and the utterance so far). The reward of a turn sits on the
last token of its utterance. GAE (gamma, lambda) runs over the episode's agent tokens only:
environment text is skipped, so the successor of an utterance's last token is the state before
the next utterance's first token. A terminated episode ends with value 0; a truncated one (a
time limit, an env error) bootstraps from V of its last state, the final observation.

    A_k = delta_k + gamma lambda A_{k+1},  delta_k = r_k + gamma V_{k+1} - V_k,   R_k = A_k + V_k
    policy: - (1/n_tokens) sum min(rho A, clip(rho, 1 - eps, 1 + eps) A)   (+ kl_coef x k3 KL
            - entropy_coef x the mean entropy of pi_T over the step's agent tokens)
    value:    (1/n_tokens) sum 0.5 max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)

Strictly on-policy: an iteration's turns are used for `epochs` passes of `minibatches` steps
(policy and value each), against the behaviour log-probs stored at sampling, then dropped.

The value model (`ppo.value_model`): `separate`, a copy of the start policy's transformer with
a scalar head and its own optimizer (`ppo.value_lr`); or `shared`, a scalar head on the
policy's own last hidden state, trained in the policy's step on
policy loss + `ppo.value_coef` x value loss (one backward, one optimizer, one gradient clip).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from archer.algorithms.api import (
    Acting,
    RunContext,
    engine_acting,
    load_reference,
    save_policy,
    save_reference,
    start_policy,
)
from archer.algorithms.losses import clipped_value_loss, ppo_clip_loss
from archer.algorithms.parallel import even_parts, is_writer
from archer.algorithms.updates import module_step, policy_step, turn_rows
from archer.config import TokenPPOConfig
from archer.errors import CheckpointError
from archer.metrics import mean_metrics
from archer.models.policy import Policy, Scores, TokenBatch
from archer.types import Trajectory

if TYPE_CHECKING:
    from archer.config import Config

Metrics = dict[str, float]
HEAD_FILE = "value_head.pt"


# ---------------------------------------------------------------------------- losses
def token_gae(rewards: Sequence[float], lengths: Sequence[int], values: torch.Tensor,
              last_value: float, terminated: bool, gamma: float, lam: float,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over one episode's agent tokens. `rewards[t]` is turn t's reward, placed on the last
    of its `lengths[t]` tokens; `values` [K] (K = sum lengths) are V before each token, in
    order. The value after the last token is 0 when `terminated`, else `last_value` (V of the
    final observation). Returns (advantages [K], returns = advantages + values [K])."""
    k = int(sum(lengths))
    if values.shape != (k,):
        raise ValueError(f"{k} agent tokens but values of shape {tuple(values.shape)}")
    r = torch.zeros(k, dtype=torch.float32)
    ends = torch.tensor(lengths).cumsum(0) - 1  # index of each turn's last token
    r[ends] = torch.tensor(list(rewards), dtype=torch.float32)
    v = values.detach().float()
    next_v = torch.cat([v[1:], torch.tensor([0.0 if terminated else float(last_value)])])
    adv = torch.zeros(k)
    running = 0.0
    for i in range(k - 1, -1, -1):
        delta = r[i] + gamma * next_v[i] - v[i]
        running = float(delta) + gamma * lam * running
        adv[i] = running
    return adv, adv + v


# ----------------------------------------------------------------------- value model
class TokenValueModel(nn.Module):
    """A transformer (without an LM head) and a scalar head: `forward(batch)` [B, T] gives, at
    each column, V of the state before that column's token (the hidden state one column left),
    so it lines up with `batch.action_mask`; column 0 gets 0."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(int(backbone.config.hidden_size), 1)
        # values start near 0; not exactly 0, so the backbone gets gradient from the first step
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        device = self.head.weight.device
        hidden = self.backbone(input_ids=batch.input_ids.to(device),
                               attention_mask=batch.attention_mask.to(device),
                               position_ids=batch.position_ids.to(device)).last_hidden_state
        v = self.head(hidden).squeeze(-1).float()  # [B, T]: V after each column's token
        return nn.functional.pad(v[:, :-1], (1, 0))  # [B, T]: V before each column's token

    def save_pretrained(self, path: Path) -> None:
        self.backbone.save_pretrained(str(path / "backbone"))
        torch.save(self.head.state_dict(), path / HEAD_FILE)

    @classmethod
    def from_pretrained(cls, path: Path, device: str) -> TokenValueModel:
        from transformers import AutoModel

        model = cls(AutoModel.from_pretrained(str(path / "backbone")))
        model.head.load_state_dict(torch.load(path / HEAD_FILE, weights_only=True))
        return model.to(device).eval()


SHARED_HEAD = "value_head"
"""The submodule name of the shared value head on the policy model."""


class SharedValueHead(nn.Module):
    """A scalar head on the policy's own hidden states (value_model=shared). `forward(hidden,
    width)` takes the hidden states the LM head reads at a batch's last K columns ([B, K, H],
    `Policy.score(hidden=True)`) and gives [B, width]: at each of the last K - 1 columns, V of
    the state before that column's token (the hidden state one column left); 0 elsewhere.
    The last K - 1 columns hold every action token, so this lines up with `action_mask`."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=1e-3)  # values start near 0, as the separate
        nn.init.zeros_(self.linear.bias)  # model's

    def forward(self, hidden: torch.Tensor, width: int) -> torch.Tensor:
        v = self.linear(hidden[:, :-1]).squeeze(-1).float()  # [B, K-1]
        return nn.functional.pad(v, (width - v.shape[1], 0))  # [B, width]


def _cut(x: torch.Tensor, width: int) -> torch.Tensor:
    """The last `width` columns: a `TokenBatch.select` drops leading columns only (rows end at
    the last column), so per-token tensors of the whole batch line up this way."""
    return x[:, x.shape[1] - width :]


# ------------------------------------------------------------------------- algorithm
class TokenPPO:
    data = "online"

    def __init__(self, s: TokenPPOConfig, policy: Policy, engine: Any,
                 value: TokenValueModel | None, ref: torch.nn.Module | None, temperature: float,
                 seed: int, device: str):
        """`value` is the separate value model, None with value_model=shared (the head is
        then `policy.model.value_head`)."""
        self.s, self.policy, self.engine, self.value, self.ref = s, policy, engine, value, ref
        self.temperature = temperature or 1.0
        self.device = device
        self.value_opt = (None if value is None else
                          torch.optim.AdamW(value.parameters(), lr=s.value_lr, weight_decay=0.0))
        self.rng = torch.Generator().manual_seed(seed)
        self.version = 0

    @property
    def shared(self) -> bool:
        return self.value is None

    def _predict(self, rows: TokenBatch) -> torch.Tensor:
        """V [B, T] before each column's token, from the value model in use (no gradient)."""
        if self.value is not None:
            return self.value(rows)
        hidden = self.policy.score(rows, temperature=self.temperature, hidden=True).hidden
        assert hidden is not None
        return getattr(self.policy.model, SHARED_HEAD)(hidden, rows.input_ids.shape[1])

    @torch.no_grad()
    def _values(self, rows: TokenBatch) -> torch.Tensor:
        """V_old [B, T] of all rows, in micro-batches."""
        out = torch.zeros(rows.input_ids.shape, dtype=torch.float32)
        for idx in even_parts(len(rows), min(len(rows), self.s.micro_batches)):
            sub = rows.select(idx)
            out[idx, out.shape[1] - sub.input_ids.shape[1]:] = self._predict(sub).cpu()
        return out

    def advantages(self, episodes: list[Trajectory], rows: TokenBatch, owner: list[int],
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(advantages, returns, old values), each [B, T] on the rows' action tokens."""
        old_v = self._values(rows)
        mask = rows.action_mask.bool()
        truncated = [e for e, t in enumerate(episodes) if not t.turns[-1].terminated]
        last = {e: 0.0 for e in range(len(episodes))}
        if truncated:  # V(s_T): the value before a (dummy) token after the final observation
            eos = self.policy.tokenizer.eos_token_id
            finals = self.policy.batch([episodes[e].final_observation for e in truncated],
                                       [[eos]] * len(truncated))
            v_final = self._values(finals)[:, -1]  # [n_truncated]
            last.update({e: float(v) for e, v in zip(truncated, v_final, strict=True)})
        adv, ret = torch.zeros_like(old_v), torch.zeros_like(old_v)
        for e, traj in enumerate(episodes):
            mine = [r for r, o in enumerate(owner) if o == e]  # its turns, in order
            token_v = torch.cat([old_v[r][mask[r]] for r in mine])
            a, g = token_gae([t.reward for t in traj.turns], [int(mask[r].sum()) for r in mine],
                             token_v, last[e], traj.turns[-1].terminated, self.s.gamma,
                             self.s.lam)
            offset = 0
            for r in mine:
                n = int(mask[r].sum())
                adv[r, mask[r]] = a[offset : offset + n]
                ret[r, mask[r]] = g[offset : offset + n]
                offset += n
        if self.s.normalize_advantages:
            flat = adv[mask]
            adv[mask] = (flat - flat.mean()) / (flat.std(unbiased=False) + 1e-8)
        return adv, ret, old_v

    def learn(self, new: list[Trajectory], iteration: int) -> Metrics:
        episodes = [t for t in new if t.turns]
        if not episodes:
            return {}
        rows, owner = turn_rows(self.policy, episodes, behaviour=True)
        adv, ret, old_v = self.advantages(episodes, rows, owner)
        mask = rows.action_mask.bool()
        explained = 1.0 - float((ret[mask] - old_v[mask]).var() / ret[mask].var().clamp(min=1e-8))
        history = []
        for _ in range(self.s.epochs):
            order = torch.randperm(len(rows), generator=self.rng)
            for idx in order.chunk(self.s.minibatches):
                idx_list = idx.tolist()
                step = rows.select(idx_list)
                width = step.input_ids.shape[1]
                s_adv, s_ret, s_old = (_cut(x[idx], width) for x in (adv, ret, old_v))
                n = float(max(step.action_tokens, 1))

                def loss(logp: torch.Tensor, sub: TokenBatch, i: list[int], s_adv=s_adv,
                         n=n):
                    assert sub.behaviour_logp is not None
                    a = _cut(s_adv[i], logp.shape[1]).to(logp.device)
                    return ppo_clip_loss(logp, sub.behaviour_logp.to(logp.device),
                                         sub.action_mask.to(logp.device), a, self.s.clip_eps,
                                         n, prefix="ppo")

                def value_loss(v: torch.Tensor, sub: TokenBatch, part: list[int],
                               s_ret=s_ret, s_old=s_old, n=n) -> tuple[torch.Tensor, Metrics]:
                    t = v.shape[1]  # v [b, t]: V before each column's token
                    return clipped_value_loss(
                        v, _cut(s_old[part], t).to(v.device), _cut(s_ret[part], t).to(v.device),
                        sub.action_mask.to(v.device), self.s.value_clip, n)

                def shared_value_loss(scores: Scores, sub: TokenBatch, part: list[int],
                                      value_loss=value_loss) -> tuple[torch.Tensor, Metrics]:
                    head = getattr(self.policy.model, SHARED_HEAD)
                    assert scores.hidden is not None
                    v_loss, vm = value_loss(head(scores.hidden, sub.input_ids.shape[1]), sub,
                                            part)
                    return self.s.value_coef * v_loss, vm

                m = policy_step(self.engine, self.policy, step, loss, micro_batch_size=None,
                                temperature=self.temperature, ref=self.ref,
                                kl_coef=self.s.kl_coef, prefix="ppo",
                                entropy_coef=self.s.entropy_coef,
                                aux_loss=shared_value_loss if self.shared else None)
                if self.value is not None:
                    assert self.value_opt is not None
                    value = self.value

                    def separate_loss(part: list[int], step=step, value_loss=value_loss,
                                      value=value) -> tuple[torch.Tensor, Metrics]:
                        sub = step.select(part)
                        return value_loss(value(sub), sub, part)

                    parts = even_parts(len(step), min(len(step), self.s.micro_batches))
                    m.update(module_step(value, self.value_opt, parts, separate_loss,
                                         grad_clip=self.s.grad_clip, prefix="value"))
                history.append(m)
        self.policy.model.eval()
        self.version += 1
        return mean_metrics(history) | {
            "ppo/advantage_mean_raw": float(ret[mask].sub(old_v[mask]).mean()),
            "value/explained_var": explained,
            "ppo/agent_tokens": float(mask.sum())}

    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    def save(self, directory: Path) -> None:
        """The policy (its HF export without the shared head; the engine checkpoint holds the
        head and its optimizer state), the reference, the separate value model if any."""
        save_policy(self.policy, self.engine, directory)
        save_reference(self.ref, directory)  # the KL anchor: the run's starting policy
        if not is_writer():  # learner ranks hold the same value model, counters and RNG
            return
        state: dict[str, Any] = {"rng": self.rng.get_state()}
        if self.value is not None:
            assert self.value_opt is not None
            (directory / "value").mkdir(parents=True, exist_ok=True)
            self.value.save_pretrained(directory / "value")
            state["optimizer"] = self.value_opt.state_dict()
        torch.save(state, directory / "ppo_state.pt")
        (directory / "ppo_state.json").write_text(json.dumps(
            {"version": self.version, "value_model": self.s.value_model}))

    def load(self, directory: Path) -> None:
        try:
            saved = json.loads((directory / "ppo_state.json").read_text())
            kind = saved.get("value_model", "separate")
            if kind != self.s.value_model:
                raise ValueError(f"the checkpoint's value model is {kind!r}, the config's "
                                 f"ppo.value_model is {self.s.value_model!r}")
            self.engine.load_checkpoint(directory / "engine")
            state = torch.load(directory / "ppo_state.pt", weights_only=False)
            if self.value is not None:
                self.value = TokenValueModel.from_pretrained(directory / "value", self.device)
                self.value_opt = torch.optim.AdamW(self.value.parameters(), lr=self.s.value_lr,
                                                   weight_decay=0.0)
                self.value_opt.load_state_dict(state["optimizer"])
            self.rng.set_state(state["rng"])
            self.version = int(saved["version"])
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume PPO from {directory}: {err}") from None
        self.policy.model = self.engine.module
        self.policy.model.eval()
        self.ref = load_reference(self.ref, directory, self.device)


def build(cfg: Config, run: RunContext) -> TokenPPO:
    """Token PPO from `cfg.ppo` and the policy at `run.init_policy`. The value model: that
    policy's transformer (loaded without its LM head) with a near-zero scalar head
    (`separate`), or a near-zero scalar head on the policy itself (`shared`)."""
    from transformers import AutoConfig, AutoModel

    s = cfg.ppo
    heads = None
    if s.value_model == "shared":
        width = AutoConfig.from_pretrained(str(run.init_policy)).get_text_config().hidden_size
        heads = {SHARED_HEAD: SharedValueHead(int(width))}
    policy, engine, ref = start_policy(
        cfg, run, "PPO", lr=s.lr, batch_size=cfg.deepspeed.micro_batch_size * s.micro_batches,
        grad_clip=s.grad_clip, kl_coef=s.kl_coef, heads=heads)
    value = None
    if s.value_model == "separate":
        value = TokenValueModel(AutoModel.from_pretrained(str(run.init_policy)))
        value = value.to(cfg.device).eval()
    return TokenPPO(s, policy, engine, value, ref, cfg.generation.temperature, cfg.seed,
                    cfg.device)
