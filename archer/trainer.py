"""The online trainer: ArCHer, phase by phase.

One iteration (DESIGN.md, "Data flow"):
  1. collect   `rollout.episodes_per_iter` episodes with the current policy (in-process or on
               Ray rollout workers), stamped with the policy version;
  2. buffer    their utterance-level transitions go into the replay buffer;
  3. critic    `critic.updates_per_iter` steps on buffer samples, the target critic Polyak-
               averaged after each;
  4. actor     after `actor.warmup_iters` iterations, `actor.updates_per_iter` steps of the
               DeepSpeed actor on fresh utterances for buffer states; then the new weights
               are pushed to the workers under a new version number;
  5. eval      every `train.eval_every` iterations (`train.eval_episodes` episodes) and after
               the last one (`eval.episodes`), greedy and sampled returns on the held-out tasks;
  6. save      every `train.save_every` iterations, an atomic checkpoint that `train.resume`
               continues from (same iteration, buffer, RNG, optimizer and engine state).
Every phase is timed (`time/<phase>_s` in metrics.jsonl and TensorBoard).
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from archer.algorithms import archer as archer_algo
from archer.buffer.replay import ReplayBuffer
from archer.config import Config
from archer.errors import CheckpointError, NonFiniteError
from archer.evaluation import evaluate
from archer.models.critic import DoubleCritic, build_critic, make_target, polyak_update
from archer.models.policy import Policy
from archer.offline import seed_everything, tokenizer_corpus, warm_start
from archer.rollout.envs import env_info
from archer.rollout.seeds import episode_seeds

CHECKPOINT = "checkpoint"


@dataclass
class TrainState:
    """What a checkpoint holds besides the models, the optimizers and the buffer."""

    iteration: int = 0
    policy_version: int = 0
    episodes: int = 0
    nonfinite: int = 0
    kl_coef: float = 0.0
    task_rng: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ builders
def _critic_corpus(cfg: Config, env_corpus: list[str], log=print) -> list[str]:
    """Text for the tiny critic's tokenizer: the env's own corpus when it has one, else the
    warm-start data under output_dir. The env's corpus comes first so that a run does not
    depend on whether its SFT start was trained here or given as train.init_policy."""
    if env_corpus:
        return env_corpus
    data_dir = Path(cfg.output_dir) / "data"
    trajectories = []
    if data_dir.is_dir():
        from archer.buffer.dataset import read_trajectories

        for f in sorted(data_dir.glob("*.jsonl")):
            trajectories += read_trajectories(f)
    if trajectories:
        return tokenizer_corpus(trajectories)
    log(f"warning: {cfg.env.id} has no corpus() and {data_dir} holds no episodes: the tiny "
        "critic's tokenizer falls back to bytes")
    return ["empty"]


def _make_collector(cfg: Config, policy: Policy, policy_dir: Path):
    if cfg.rollout.num_workers == 0:
        from archer.rollout.collector import InProcessCollector

        return InProcessCollector(cfg, policy)
    from archer.distributed.rollout import RayCollector

    return RayCollector(cfg, policy_dir, cfg.rollout.num_workers)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def draw_tasks(rng: np.random.Generator, tasks: list[str] | None, n: int) -> list[str | None]:
    """`n` training task ids drawn uniformly with `rng`; for an env without task ids (None),
    n Nones: each episode is then drawn by the env from its reset seed."""
    if tasks is None:
        return [None] * n
    return [tasks[int(i)] for i in rng.integers(len(tasks), size=n)]


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    def __init__(self, cfg: Config, progress: bool = True, log=print):
        self.cfg, self.progress, self.log = cfg, progress, log
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        ckpt = self.out / CHECKPOINT
        if cfg.train.resume:
            _check_checkpoint(ckpt)
            policy_dir = ckpt / "policy"
        else:
            policy_dir = Path(cfg.train.init_policy) if cfg.train.init_policy else warm_start(
                cfg, progress=progress, log=log)
        # Again: training the warm start here draws on the global RNGs, a cached or given one
        # does not, and the run must not depend on which happened.
        seed_everything(cfg.seed)
        self.init_dir = policy_dir
        self.policy = Policy.from_pretrained(policy_dir, cfg.device, cfg.model.max_context_tokens)
        self.ref_model = None
        if cfg.actor.kl_coef > 0:
            # The KL anchor is the run's starting policy; a resumed run reads it back.
            ref_dir = ckpt / "reference_policy"
            if cfg.train.resume and ref_dir.is_dir():
                from transformers import AutoModelForCausalLM

                self.ref_model = AutoModelForCausalLM.from_pretrained(str(ref_dir)).to(cfg.device)
            else:
                if cfg.train.resume:
                    log(f"warning: {ckpt} has no reference_policy/ (written with kl_coef=0?); "
                        "the KL reference is the checkpointed policy")
                self.ref_model = copy.deepcopy(self.policy.model)
            self.ref_model.eval().requires_grad_(False)

        info = env_info(cfg.env.id, cfg.env.kwargs)
        self.train_tasks = info.tasks(cfg.rollout.split)  # None: episodes drawn by seed
        self.heldout = info.has_heldout
        corpus = None  # text for a new tiny critic's tokenizer
        if not cfg.train.resume and cfg.critic.encoder == "tiny":
            corpus = _critic_corpus(cfg, info.corpus, log)

        # ---- critic and its target
        if cfg.train.resume:
            self.critic = DoubleCritic.from_pretrained(ckpt / "critic", device=cfg.device)
            self.target = DoubleCritic.from_pretrained(ckpt / "target_critic", device=cfg.device)
            self.target.requires_grad_(False).eval()
        else:
            self.critic = build_critic(cfg.critic, corpus, cfg.device, cfg.seed)
            self.target = make_target(self.critic)
        self.critic_opt = torch.optim.AdamW(
            [p for p in self.critic.parameters() if p.requires_grad], lr=cfg.critic.lr)

        # ---- the actor engine (DeepSpeed, or plain torch when deepspeed.enabled is false)
        from archer.distributed.engine import build_actor_engine

        self.engine = build_actor_engine(self.policy.model, cfg.deepspeed, lr=cfg.actor.lr,
                                         batch_size=cfg.actor.utterances_per_step,
                                         grad_clip=cfg.actor.grad_clip, device=cfg.device)
        self.policy.model = self.engine.module
        self.policy.model.eval()  # no dropout: scoring must match acting

        self.buffer = ReplayBuffer(cfg.buffer.capacity, seed=cfg.seed)
        self.task_rng = np.random.default_rng(cfg.seed)
        self.state = TrainState(kl_coef=cfg.actor.kl_coef)
        if cfg.train.resume:
            self._load(ckpt)
        self.collector = _make_collector(cfg, self.policy, policy_dir)
        if cfg.train.resume:
            self._push_weights()
        self.metrics_file = self.out / "metrics.jsonl"
        self.tb = None
        if cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tb"))

    # ------------------------------------------------------------------------ phases
    def collect(self) -> dict[str, float]:
        cfg = self.cfg
        n = cfg.rollout.episodes_per_iter
        tasks = draw_tasks(self.task_rng, self.train_tasks, n)
        # Episode seeds are unique over the run (the "train" stream of the seed plan), so no
        # two episodes share a sampling stream and none is an eval or scripted-data seed.
        seeds = episode_seeds(cfg.seed, "train", n, start=self.state.episodes)
        trajectories = self.collector.collect(tasks, seeds)
        self.state.episodes += n
        critic_check = self.critic_check(trajectories)  # before the critic sees them
        added = self.buffer.add_trajectories(trajectories, self.state.iteration)
        returns = [t.episode_return for t in trajectories]
        return {
            "rollout/return_mean": float(np.mean(returns)),
            "rollout/return_std": float(np.std(returns)),
            "rollout/success_rate": float(np.mean([t.success for t in trajectories])),
            "rollout/turns_mean": float(np.mean([t.length for t in trajectories])),
            "rollout/env_errors": float(sum(t.error is not None for t in trajectories)),
            "rollout/transitions_added": float(added),
            "rollout/episodes_total": float(self.state.episodes),
            **{k: float(v) for k, v in getattr(self.collector, "last_stats", {}).items()},
            **critic_check,
        }

    def critic_check(self, trajectories: list) -> dict[str, float]:
        """How well the critic predicts the discounted Monte Carlo returns of episodes it has
        not trained on: explained variance of min V(s) and of min Q(s, a) (the heads the actor
        uses), and the mean of min Q - G (> 0: optimistic). Only episodes whose return is
        complete count (`Trajectory.return_complete`: not truncated, no env error)."""
        states, actions, returns = [], [], []
        for t in (t for t in trajectories if t.return_complete):
            states += [turn.observation for turn in t.turns]
            actions += [turn.action for turn in t.turns]
            returns += archer_algo.discounted_returns([turn.reward for turn in t.turns],
                                                      self.cfg.critic.gamma)
        if len(returns) < 2:
            return {}
        was_training = self.critic.training
        self.critic.eval()
        try:
            with torch.no_grad():
                q1, q2, v1, v2 = self.critic(states, actions)
        finally:
            self.critic.train(was_training)
        q = torch.minimum(q1, q2).tolist()
        v = torch.minimum(v1, v2).tolist()
        out = {"critic/q_minus_return": float(np.mean(np.subtract(q, returns)))}
        for name, pred in (("v", v), ("q", q)):
            ev = archer_algo.explained_variance(pred, returns)
            if ev is not None:
                out[f"critic/explained_var_{name}"] = ev
        return out

    def _sample_utterances(self, states: list[str]) -> tuple[list[str], list[list[float]]]:
        g = self.cfg.generation
        with self.engine.gathered_parameters():  # whole weights under ZeRO-3, else a no-op
            texts, logprobs = self.policy.generate(
                states, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                top_p=g.top_p, stop_on_newline=g.stop_on_newline, return_logprobs=True)
        return texts, logprobs

    def critic_phase(self) -> dict[str, float]:
        c = self.cfg.critic
        history = []
        for _ in range(c.updates_per_iter):
            batch = self.buffer.sample(c.batch_size)
            states = [t.observation for t in batch]
            fresh, _ = self._sample_utterances(states)
            m = archer_algo.update_critic(
                self.critic, self.target, self.critic_opt, states, [t.action for t in batch],
                [t.reward for t in batch], [t.next_observation for t in batch],
                [t.done for t in batch], fresh, gamma=c.gamma, grad_clip=c.grad_clip,
                min_q_for_v=c.min_q_for_v)
            polyak_update(self.target, self.critic, c.tau)
            self._count_nonfinite(m["critic/skipped"])
            history.append(m)
        return _mean(history)

    def actor_phase(self) -> dict[str, float]:
        a = self.cfg.actor
        history = []
        for _ in range(a.updates_per_iter):
            states = [t.observation for t in self.buffer.sample(a.batch_size)
                      for _ in range(a.samples_per_state)]
            actions, _ = self._sample_utterances(states)
            adv, adv_metrics = archer_algo.actor_advantages(
                self.critic, states, actions, a.normalize_advantages,
                group_size=a.samples_per_state if a.baseline == "group" else 1)
            old_logp = old_mask = None
            if a.loss == "ppo":
                old_logp, old_mask = self.policy.action_logprobs(states, actions)
            m = archer_algo.update_actor(
                self.engine, self.policy, states, actions, adv, loss_type=a.loss,
                micro_batch_size=self.cfg.deepspeed.micro_batch_size, old_logp=old_logp,
                old_mask=old_mask, clip_eps=a.clip_eps, ref_model=self.ref_model,
                kl_coef=self.state.kl_coef)
            self._count_nonfinite(m["actor/skipped"])
            history.append({**m, **adv_metrics, "actor/kl_coef": self.state.kl_coef})
        self.policy.model.eval()
        if a.target_kl > 0:
            self.state.kl_coef = adapt_kl_coef(self.state.kl_coef,
                                               float(np.mean([h["actor/kl_ref"] for h in history])),
                                               a.target_kl)
        self.state.policy_version += 1
        self._push_weights()
        return _mean(history)

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        cfg = copy.deepcopy(self.cfg)
        cfg.eval.episodes = episodes or self.cfg.train.eval_episodes
        out = {}
        for decoding in ("greedy", "sample"):
            cfg.eval.decoding = decoding
            with self.engine.gathered_parameters():
                summary, _ = evaluate(cfg, policy=self.policy, progress=False)
            out[f"eval/return_{decoding}"] = summary["return_mean"]
            out[f"eval/return_{decoding}_sem"] = summary["return_sem"]
            out[f"eval/success_{decoding}"] = summary["success_rate"]
        return out

    # -------------------------------------------------------------------------- loop
    def train(self) -> list[dict[str, float]]:
        cfg = self.cfg
        start = self.state.iteration
        history: list[dict[str, float]] = []
        bar = tqdm(range(start, cfg.train.iterations), initial=start, total=cfg.train.iterations,
                   desc="archer", unit="it", disable=not self.progress)
        for it in bar:
            self.state.iteration = it
            timings: dict[str, float] = {}
            metrics: dict[str, float] = {"iteration": float(it)}
            with _timed(timings, "collect"):
                metrics.update(self.collect())
            metrics.update(self.buffer.stats(it))
            with _timed(timings, "critic"):
                metrics.update(self.critic_phase())
            if it >= cfg.actor.warmup_iters and cfg.actor.updates_per_iter > 0:
                with _timed(timings, "actor"):
                    metrics.update(self.actor_phase())
            last = it + 1 == cfg.train.iterations
            if last or (cfg.train.eval_every and (it + 1) % cfg.train.eval_every == 0):
                with _timed(timings, "eval"):  # the final one with eval.episodes
                    metrics.update(self.evaluate(cfg.eval.episodes if last else None))
            self.state.iteration = it + 1
            if last or (cfg.train.save_every and (it + 1) % cfg.train.save_every == 0):
                with _timed(timings, "save"):
                    self.save()
            metrics.update({f"time/{k}_s": v for k, v in timings.items()})
            metrics["time/iteration_s"] = sum(timings.values())
            metrics["policy_version"] = float(self.state.policy_version)
            self._log_metrics(metrics)
            history.append(metrics)
            bar.set_postfix(ret=f"{metrics['rollout/return_mean']:.2f}",
                            q=f"{metrics.get('critic/q1_mean', 0.0):.2f}",
                            ev_q=f"{metrics.get('critic/explained_var_q', float('nan')):.2f}")
        bar.close()
        return history

    def close(self) -> None:
        self.collector.close()
        if self.tb is not None:
            self.tb.close()

    # ------------------------------------------------------------------- checkpoints
    def save(self) -> Path:
        """Write the whole training state to output_dir/checkpoint, atomically: everything
        goes to a temp dir that replaces the old checkpoint only when complete."""
        final = self.out / CHECKPOINT
        tmp = self.out / (CHECKPOINT + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with self.engine.gathered_parameters():
            self.policy.save_pretrained(tmp / "policy")
        if self.ref_model is not None:  # the KL anchor stays the run's starting policy
            self.ref_model.save_pretrained(tmp / "reference_policy")
        self.critic.save_pretrained(tmp / "critic")
        self.target.save_pretrained(tmp / "target_critic")
        self.engine.save_checkpoint(tmp / "engine")
        torch.save(self.critic_opt.state_dict(), tmp / "critic_optimizer.pt")
        self.buffer.save(tmp / "buffer.jsonl.gz")
        state = copy.copy(self.state)
        state.task_rng = self.task_rng.bit_generator.state
        torch.save({"train_state": asdict(state), "rng": _rng_state(),
                    "config": asdict(self.cfg)}, tmp / "trainer_state.pt")
        (tmp / "COMPLETE").write_text(json.dumps({"iteration": self.state.iteration}))
        old = self.out / (CHECKPOINT + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def _load(self, ckpt: Path) -> None:
        try:
            blob = torch.load(ckpt / "trainer_state.pt", weights_only=False)
            self.engine.load_checkpoint(ckpt / "engine")
            self.critic_opt.load_state_dict(torch.load(ckpt / "critic_optimizer.pt"))
            self.buffer = ReplayBuffer.load(ckpt / "buffer.jsonl.gz")
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume from {ckpt}: {err}") from None
        self.policy.model = self.engine.module
        self.policy.model.eval()
        self.state = TrainState(**blob["train_state"])
        if self.cfg.actor.target_kl == 0:  # a fixed weight follows the config
            self.state.kl_coef = self.cfg.actor.kl_coef
        self.task_rng.bit_generator.state = self.state.task_rng
        _set_rng_state(blob["rng"])
        self.log(f"resumed from {ckpt} at iteration {self.state.iteration} "
                 f"({len(self.buffer)} transitions in the buffer)")

    # ----------------------------------------------------------------------- helpers
    def _cpu_state_dict(self) -> dict[str, torch.Tensor]:
        # Under ZeRO-3 the gathered tensors are released when the block ends: copy them.
        copy_out = getattr(self.engine, "zero_stage", 0) == 3
        with self.engine.gathered_parameters():
            return {k: v.detach().to("cpu").clone() if copy_out else v.detach().to("cpu")
                    for k, v in self.policy.model.state_dict().items()}

    def _push_weights(self) -> None:
        """Hand the updated actor to the collector under the next version number."""
        if getattr(self.collector, "policy", None) is self.policy:
            self.collector.set_version(self.state.policy_version)  # it acts with our model
        else:
            self.collector.set_weights(self._cpu_state_dict(), self.state.policy_version)

    def _count_nonfinite(self, skipped: float) -> None:
        if skipped:
            self.state.nonfinite += 1
            if self.state.nonfinite > self.cfg.train.max_nonfinite:
                raise NonFiniteError(
                    f"{self.state.nonfinite} non-finite losses (train.max_nonfinite="
                    f"{self.cfg.train.max_nonfinite}): stopping; lower actor.lr / critic.lr")

    def _log_metrics(self, metrics: dict[str, float]) -> None:
        with open(self.metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.tb is not None:
            step = int(metrics["iteration"])
            for k, v in metrics.items():
                if k != "iteration":
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()


def adapt_kl_coef(coef: float, kl: float, target: float) -> float:
    """One step of the adaptive KL controller: x2 above 1.5 x target, /2 below target / 1.5,
    kept within [1e-4, 100]."""
    if kl > 1.5 * target:
        coef *= 2.0
    elif kl < target / 1.5:
        coef /= 2.0
    return min(max(coef, 1e-4), 100.0)


def _check_checkpoint(ckpt: Path) -> None:
    if not ckpt.is_dir():
        raise CheckpointError(f"train.resume=true but there is no checkpoint at {ckpt}")
    if not (ckpt / "COMPLETE").is_file():
        raise CheckpointError(f"checkpoint {ckpt} is incomplete or corrupt (no COMPLETE marker)")


class _timed:
    def __init__(self, sink: dict[str, float], name: str):
        self.sink, self.name = sink, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.sink[self.name] = time.perf_counter() - self.t0


def _mean(history: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for h in history for k in h}
    out = {k: float(np.mean([h[k] for h in history if k in h])) for k in keys}
    for k in keys:  # counters add up over the phase
        if k.endswith("/skipped"):
            out[k] = float(sum(h.get(k, 0.0) for h in history))
    return out


def train(cfg: Config, progress: bool = True, log=print) -> dict[str, Any]:
    """Run ArCHer from `cfg`; return the evaluation of the starting and the trained policy."""
    trainer = Trainer(cfg, progress=progress, log=log)
    try:
        before = None
        if not cfg.train.resume:
            before = trainer.evaluate(cfg.eval.episodes)
            trainer._log_metrics({"iteration": -1.0, **before})
        history = trainer.train()
        if history:  # the last iteration evaluated with eval.episodes
            after = {k: v for k, v in history[-1].items() if k.startswith("eval/")}
        else:  # resumed at the end: nothing left to train
            after = trainer.evaluate(cfg.eval.episodes)
    finally:
        trainer.close()
    return {"before": before, "after": after, "history": history,
            "init_policy": str(trainer.init_dir), "heldout": trainer.heldout}
