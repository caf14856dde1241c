"""The one loop every algorithm runs in: collect -> learn -> sync -> eval -> save -> log.

    setup      output dir, seeds, the starting policy (warm start, train.init_policy, or the
               checkpoint on resume), the algorithm (`algorithms.build`), the collector
    collect    online only: `rollout.episodes_per_iter` episodes of the acting policy, on tasks
               drawn (seeded) from the train split, each with its own episode seed
    learn      `algo.learn(new, iteration)`: the algorithm's own schedule, timed by itself
    sync       hand the acting weights to the collector when their version moved
    eval       every `train.eval_every` iterations (`train.eval_episodes` episodes) and after the
               last (`eval.episodes`): greedy and sampled returns on the eval split
    save       every `train.save_every` iterations and after the last: one atomic checkpoint
               (the algorithm's parts, the loop's counters and RNGs) that train.resume continues
    log        one JSON line per iteration (metrics.jsonl, TensorBoard), phases as time/<phase>_s

The loop knows nothing about critics, buffers or epochs; an algorithm knows nothing about Ray.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from archer import algorithms, checkpoint
from archer.algorithms.api import Acting, Algorithm, RunContext
from archer.config import Config, ConfigError
from archer.errors import CheckpointError, DistributedError, LearnerGroupError, NonFiniteError
from archer.metrics import COUNTS, MetricsLogger, timed
from archer.rollout.envs import env_info
from archer.rollout.seeds import seed_everything

CHECKPOINT = "checkpoint"
LOOP_STATE = "loop_state.pt"


@dataclass
class LoopState:
    """What a checkpoint holds besides the algorithm's own parts."""

    iteration: int = 0
    episodes: int = 0
    """Online episodes collected so far (the x-axis of sample efficiency)."""
    nonfinite: int = 0
    turns: int = 0
    """Agent turns of those episodes."""
    tokens: int = 0
    """Policy tokens generated for learning: the rollouts' and the learner's own samples
    (ArCHer's fresh utterances), evaluation excluded."""
    gradient_steps: int = 0
    """Optimizer steps of every model the algorithm trains."""
    wall_s: float = 0.0
    """Seconds spent collecting, learning and syncing (evaluation and checkpoints excluded)."""
    task_rng: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def refuse_multi_rank() -> None:
    """One process learns today: a torchrun / deepspeed launch would run identical copies."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise DistributedError(
            f"WORLD_SIZE={world}: a multi-rank launch (torchrun, deepspeed --num_gpus N) would "
            "run identical copies of the whole run. Launch one process and let it start the "
            "learner ranks on Ray: cluster.learner_ranks=N (docs/scaling.md).")


# ---------------------------------------------------------------------------- set-up
def _init_policy(cfg: Config, ckpt: Path, progress: bool, log) -> Path | None:
    if cfg.train.resume:
        return checkpoint.resolve(ckpt) / "policy"
    if cfg.train.init_policy:
        return Path(cfg.train.init_policy)
    if algorithms.is_offline(cfg):  # they start without a warm start
        return None  # built from model.path or a tiny model
    from archer.warm_start import warm_start

    return warm_start(cfg, progress=progress, log=log)


def _critic_corpus(cfg: Config, env_corpus: list[str], log) -> list[str]:
    """Text for a tiny critic's tokenizer: the env's own corpus when it has one, else the
    warm-start data under output_dir. The env's corpus comes first so that a run does not
    depend on whether its SFT start was trained here or given as train.init_policy."""
    if cfg.critic.encoder != "tiny":
        return []
    if env_corpus:
        return env_corpus
    from archer.buffer.dataset import read_trajectories
    from archer.models.builders import tokenizer_corpus

    data_dir = Path(cfg.output_dir) / "data"
    trajectories = [t for f in sorted(data_dir.glob("*.jsonl")) for t in read_trajectories(f)] if (
        data_dir.is_dir()) else []
    if trajectories:
        return tokenizer_corpus(trajectories)
    log(f"warning: {cfg.env.id} has no corpus() and {data_dir} holds no episodes: the tiny "
        "critic's tokenizer falls back to bytes")
    return ["empty"]


def _open_collector(cfg: Config, acting: Acting, policy_dir: Path):
    if cfg.rollout.num_workers == 0:
        from archer.rollout.collector import InProcessCollector

        return InProcessCollector(cfg, acting.policy)
    from archer.distributed.rollout import RayCollector

    return RayCollector(cfg, policy_dir, cfg.rollout.num_workers,
                        num_cpus_per_worker=cfg.rollout.num_cpus_per_worker,
                        num_gpus_per_worker=cfg.rollout.num_gpus_per_worker)


def _sync(collector: Any, acting: Acting) -> None:
    """Hand the acting weights, and the chooser if any, to the collector under their
    versions."""
    if acting.chooser is not None and collector.chooser_version != acting.chooser_version:
        collector.set_chooser(acting.chooser, acting.chooser_version)
    if collector.version == acting.version:
        return
    if getattr(collector, "policy", None) is acting.policy:
        collector.set_version(acting.version)  # it acts with our model, updated in place
        return
    from archer.models.policy import acting_state_dict

    # Under ZeRO-3 the gathered tensors are released when the block ends: copy them.
    with acting.gathered():
        state = {k: v.detach().to("cpu").clone()
                 for k, v in acting_state_dict(acting.policy.model).items()}
    collector.set_weights(state, acting.version)


def evaluate(cfg: Config, acting: Acting, episodes: int) -> dict[str, float]:
    """Greedy and sampled returns of the acting policy on `cfg.eval.split` (through its
    chooser, if it has one: `archer.evaluation.evaluate`)."""
    from archer.evaluation import evaluate as play

    cfg = copy.deepcopy(cfg)
    cfg.eval.episodes = episodes
    out = {}
    for decoding in ("greedy", "sample"):
        cfg.eval.decoding = decoding
        with acting.gathered():
            summary, _ = play(cfg, policy=acting.policy, progress=False, chooser=acting.chooser)
        out[f"eval/return_{decoding}"] = summary["return_mean"]
        out[f"eval/return_{decoding}_sem"] = summary["return_sem"]
        out[f"eval/success_{decoding}"] = summary["success_rate"]
    return out


def _due(it: int, every: int, total: int) -> bool:
    return it + 1 == total or bool(every and (it + 1) % every == 0)


# ------------------------------------------------------------------------------ run
def run(cfg: Config, progress: bool = True, log=print, final_eval: bool = True) -> dict[str, Any]:
    """Train `cfg.algo` from `cfg`; return the evaluation before and after, the history of
    metrics, the starting policy and whether the env has held-out tasks.

    When a learner rank dies (`LearnerGroupError`), the run restarts its group from the last
    checkpoint, up to `cluster.max_learner_restarts` times; the resumed part continues exactly
    (the history returned is then the resumed part's, and `before` the first part's)."""
    restarts, before = 0, None
    while True:
        try:
            result = _run(cfg, progress, log, final_eval)
            result["before"] = result["before"] or before
            result["learner_restarts"] = restarts
            return result
        except LearnerGroupError as err:
            ckpt = Path(cfg.output_dir) / CHECKPOINT
            if restarts >= cfg.cluster.max_learner_restarts or not ckpt.is_dir():
                raise
            restarts += 1
            before = before or _first_row(Path(cfg.output_dir))
            log(f"{err}\nrestarting the learner group from {ckpt} "
                f"({restarts} of cluster.max_learner_restarts={cfg.cluster.max_learner_restarts})")
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, resume=True))


def _first_row(out: Path) -> dict[str, float] | None:
    """The start's evaluation (the -1 row of metrics.jsonl), if the run logged one."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("iteration") == -1.0:
            return {k: v for k, v in row.items() if k.startswith("eval/")}
    return None


def _run(cfg: Config, progress: bool, log, final_eval: bool) -> dict[str, Any]:
    refuse_multi_rank()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    seed_everything(cfg.seed)
    init = _init_policy(cfg, ckpt, progress, log)
    # Again: a warm start trained here draws on the global RNGs, a cached or given one does
    # not, and the run must not depend on which happened.
    seed_everything(cfg.seed)
    info = env_info(cfg.env.id, cfg.env.kwargs)
    corpus = _critic_corpus(cfg, info.corpus, log)
    ctx = RunContext(out=out, init_policy=init, corpus=corpus, resume=cfg.train.resume, log=log)
    algo: Algorithm = _build(cfg, ctx)
    try:
        state, task_rng, train_tasks, collector = _prepare(cfg, algo, info, init, ckpt, log)
    except BaseException:
        _close(algo)
        raise
    logger = MetricsLogger(out, cfg.train.tensorboard)
    history: list[dict[str, float]] = []
    before = after = None
    try:
        if collector is not None:  # resumed weights; an acting rule before the first episode
            _sync(collector, algo.acting())
        if final_eval and not cfg.train.resume and cfg.train.eval_start:
            # the start is the starting policy itself, without an acting rule on top (CHAI's
            # untrained reranker): every method's "before" row is the same policy
            before = evaluate(cfg, dataclasses.replace(algo.acting(), chooser=None),
                              cfg.eval.episodes)
            logger.log({"iteration": -1.0, **before, **_progress_keys(state)})
        bar = tqdm(range(state.iteration, cfg.train.iterations), initial=state.iteration,
                   total=cfg.train.iterations, desc=cfg.algo, unit="it", disable=not progress)
        for it in bar:
            t: dict[str, float] = {}
            m: dict[str, float] = {"iteration": float(it)}
            # ---- collect (online only)
            new = []
            if collector is not None:
                with timed(t, "collect"):
                    new = _collect(collector, cfg, state, task_rng, train_tasks)
                m.update(_rollout_metrics(new, state, collector))
                m.update(logp_gap(algo.acting(), new, cfg.generation.temperature))
            # ---- learn
            before_counts = dict(COUNTS)
            with timed(t, "learn"):
                m.update(algo.learn(new, it))
            _count_nonfinite(state, m, cfg.train.max_nonfinite)
            # ---- sync
            if collector is not None:
                with timed(t, "sync"):
                    _sync(collector, algo.acting())
            m.update(_progress(state, new, m, before_counts, t))
            # ---- eval, save, log
            last = it + 1 == cfg.train.iterations
            if (final_eval or not last) and _due(it, cfg.train.eval_every, cfg.train.iterations):
                with timed(t, "eval"):  # the final one with eval.episodes
                    m.update(evaluate(cfg, algo.acting(),
                                      cfg.eval.episodes if last else cfg.train.eval_episodes))
            state.iteration = it + 1
            if _due(it, cfg.train.save_every, cfg.train.iterations):
                with timed(t, "save"):
                    _save(ckpt, cfg, algo, state, task_rng)
            m.update({f"time/{k}_s": v for k, v in t.items()})
            m["time/iteration_s"] = sum(t.values())
            m["policy_version"] = float(algo.acting().version)
            logger.log(m)
            history.append(m)
            bar.set_postfix({k.split("/")[-1]: f"{m[k]:.2f}" for k in (
                "rollout/return_mean", "critic/q1_mean", "bc/nll") if k in m})
        bar.close()
        if final_eval:
            if history and "eval/return_greedy" in history[-1]:
                after = {k: v for k, v in history[-1].items() if k.startswith("eval/")}
            else:  # resumed at the end: nothing left to train
                after = evaluate(cfg, algo.acting(), cfg.eval.episodes)
    finally:
        if collector is not None:
            collector.close()
        _close(algo)
        logger.close()
    return {"before": before, "after": after, "history": history,
            "init_policy": None if init is None else str(init), "heldout": info.has_heldout,
            "heldout_note": info.heldout_note(cfg.eval.split), "checkpoint": str(ckpt)}


def _prepare(cfg: Config, algo: Algorithm, info: Any, init: Path | None, ckpt: Path, log,
             ) -> tuple[LoopState, np.random.Generator, list[str] | None, Any]:
    """The loop's state (resumed from `ckpt` under train.resume), task RNG, training task ids
    and collector (None offline)."""
    state = LoopState()
    task_rng = np.random.default_rng(cfg.seed)
    if cfg.train.resume:
        state = _load(checkpoint.resolve(ckpt), cfg, algo, task_rng, log)
    online = algo.data == "online"
    train_tasks = info.tasks(cfg.rollout.split) if online else None
    if online and cfg.rollout.group_size > 1 and not train_tasks:
        raise ConfigError(f"rollout.group_size={cfg.rollout.group_size} plays each task id "
                          f"several times, but {cfg.env.id} has no task ids (its episodes are "
                          "drawn by seed): use rollout.group_size=1 (reinforce.baseline=running)")
    if online and init is None:
        raise CheckpointError(f"algo={cfg.algo} collects online and needs a starting policy")
    collector = _open_collector(cfg, algo.acting(), init) if online and init else None
    if hasattr(collector, "sample") and hasattr(algo, "use_sampler"):
        algo.use_sampler(collector.sample)  # e.g. ArCHer's fresh samples on the workers
    if hasattr(collector, "worker_handles") and hasattr(algo, "use_workers"):
        algo.use_workers(collector.worker_handles)  # a learner group's ranks ask them
    return state, task_rng, train_tasks, collector


def _close(algo: Algorithm) -> None:
    """Stops what an algorithm runs outside this process (a learner group's ranks)."""
    close = getattr(algo, "close", None)
    if close is not None:
        close()


def _build(cfg: Config, ctx: RunContext) -> Algorithm:
    """The algorithm in this process, or (cluster.learner_ranks >= 1) a group of its ranks."""
    if cfg.cluster.learner_ranks == 0:
        return algorithms.build(cfg, ctx)
    from archer.distributed.learner import LearnerGroup

    return LearnerGroup(cfg, ctx)


# ------------------------------------------------------------------------- phases
def _collect(collector: Any, cfg: Config, state: LoopState, task_rng: np.random.Generator,
             train_tasks: list[str] | None) -> list:
    from archer.rollout.seeds import episode_seed

    n, k = cfg.rollout.episodes_per_iter, cfg.rollout.group_size
    if train_tasks:  # n / k task ids, each played k times (a group)
        drawn = task_rng.integers(len(train_tasks), size=n // k)
        tasks: list[str | None] = [train_tasks[int(i)] for i in drawn for _ in range(k)]
    else:  # an env without task ids: the episode seed picks the episode
        tasks = [None] * n
    # Episode seeds are unique over the run and disjoint from evaluation's.
    seeds = [episode_seed(cfg.seed, "train", state.episodes + i) for i in range(n)]
    trajectories = collector.collect(tasks, seeds)
    state.episodes += n
    return trajectories


def _progress(state: LoopState, new: list, m: dict[str, float], before: dict[str, int],
              t: dict[str, float]) -> dict[str, float]:
    """Advance the run's work counters by this iteration's and return them as progress/*."""
    state.turns += sum(traj.length for traj in new)
    state.tokens += int(m.get("rollout/tokens", 0)) + (
        COUNTS["generated_tokens"] - before["generated_tokens"])
    state.gradient_steps += COUNTS["gradient_steps"] - before["gradient_steps"]
    state.wall_s += sum(t.values())
    return _progress_keys(state)


def _progress_keys(state: LoopState) -> dict[str, float]:
    """The x-axes of a learning curve (`archer bench`): online episodes, their turns, policy tokens generated for learning, optimizer steps and
    training seconds, each counted from the start of the run (resumes included)."""
    return {"progress/env_episodes": float(state.episodes), "progress/env_turns": float(state.turns),
            "progress/policy_tokens": float(state.tokens),
            "progress/gradient_steps": float(state.gradient_steps),
            "progress/wall_s": state.wall_s}


def _rollout_metrics(new: list, state: LoopState, collector: Any) -> dict[str, float]:
    returns = [t.episode_return for t in new]
    return {
        "rollout/return_mean": float(np.mean(returns)),
        "rollout/return_std": float(np.std(returns)),
        "rollout/success_rate": float(np.mean([t.success for t in new])),
        "rollout/turns_mean": float(np.mean([t.length for t in new])),
        "rollout/env_errors": float(sum(t.error is not None for t in new)),
        "rollout/episodes_total": float(state.episodes),
        **{k: float(v) for k, v in collector.last_stats.items()},
    }


def logp_gap(acting: Acting, new: list, temperature: float, limit: int = 64,
             rows_per_forward: int = 8) -> dict[str, float]:
    """`rollout/logp_mismatch_max`: the largest |stored - recomputed| log-prob over up to
    `limit` sampled turns of episodes played by the acting weights of now, rescored by the
    learner (the ids are the stored ones). A gap beyond float noise means the learner does not
    train the distribution that acted (a tokenizer, prompt or temperature mismatch).

    Scored `rows_per_forward` turns at a time: the log-softmax over the vocabulary at every
    action position is the memory (64 turns of 32 ids over GPT-2's 50,257 ids held about 1.3 GB
    of logits and their copies in one forward)."""
    turns = [(turn.observation, turn.action_ids, turn.logprobs) for t in new
             if t.policy_version == acting.version for turn in t.turns
             if turn.action_ids and turn.logprobs][:limit]
    if not turns:
        return {}
    policy = acting.policy
    gap = 0.0
    with acting.gathered(), torch.no_grad():
        for start in range(0, len(turns), rows_per_forward):
            part = turns[start : start + rows_per_forward]
            rows = policy.batch([o for o, _, _ in part], [a for _, a, _ in part],
                                [lp for _, _, lp in part])
            logp = policy.token_logprobs(rows, temperature=temperature)
            assert rows.behaviour_logp is not None
            gap = max(gap, float(((logp - rows.behaviour_logp).abs() * rows.action_mask).max()))
    return {"rollout/logp_mismatch_max": gap}


def _count_nonfinite(state: LoopState, m: dict[str, float], limit: int) -> None:
    skipped = int(sum(v for k, v in m.items() if k.endswith("/skipped")))
    if skipped:
        state.nonfinite += skipped
        if state.nonfinite > limit:
            raise NonFiniteError(
                f"{state.nonfinite} non-finite losses (train.max_nonfinite={limit}): stopping; "
                "lower the learning rates (archer.actor.lr, archer.critic.lr, bc.lr)")


# --------------------------------------------------------------------- checkpoints
def _save(ckpt: Path, cfg: Config, algo: Algorithm, state: LoopState,
          task_rng: np.random.Generator) -> None:
    def write(tmp: Path) -> None:
        algo.save(tmp)
        saved = dataclasses.replace(state, task_rng=dict(task_rng.bit_generator.state),
                                    rng=_rng_state())
        torch.save({"loop_state": asdict(saved), "config": asdict(cfg)}, tmp / LOOP_STATE)

    checkpoint.save(ckpt, write, {"iteration": state.iteration, "algo": cfg.algo})


def _load(ckpt: Path, cfg: Config, algo: Algorithm, task_rng: np.random.Generator,
          log) -> LoopState:
    saved_algo = checkpoint.meta(ckpt).get("algo", "archer")
    if saved_algo != cfg.algo:
        raise CheckpointError(f"checkpoint {ckpt} was written by algo={saved_algo}, this run is "
                              f"algo={cfg.algo}")
    try:
        blob = torch.load(ckpt / LOOP_STATE, weights_only=False)
        state = LoopState(**blob["loop_state"])
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"cannot resume from {ckpt}: {err}") from None
    algo.load(ckpt)
    task_rng.bit_generator.state = state.task_rng
    _set_rng_state(state.rng)
    log(f"resumed from {ckpt} at iteration {state.iteration}")
    return state
