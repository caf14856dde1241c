"""Rollout workers on Ray: the same collection as `InProcessCollector`, across processes.

Each `RolloutWorker` actor holds a policy (loaded once from a checkpoint directory) and its own
batch of envs, and plays whole chunks of episodes with `archer.rollout.collector.rollout_chunk`.
`RayCollector` pushes weights to every worker (one `ray.put` per push, shared by all of them),
hands chunks to whichever worker is free, and puts the results back in task order. Because
every utterance is sampled from its own (episode seed, turn) stream, the trajectories equal the
in-process collector's for the same seeds and weights, however the chunks were spread.

A worker that dies (its process crashed, was killed, or ran out of memory) is replaced by a
fresh one that gets the current weights; the chunk it was playing is played again from scratch,
and a chunk's trajectories are accepted once, whole, so nothing is lost or duplicated. After
`rollout.max_restarts` replacements the collector gives up with a RuntimeError. An env that
raises is not a worker death: `run_episodes` ends that episode with `error` set.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError, WorkerCrashedError

from archer.algorithms.parallel import even_parts
from archer.config import Config
from archer.faults import crash_point
from archer.metrics import count
from archer.models.policy import Generation, Policy, Sampling
from archer.rollout.batched import BatchedTextEnvs
from archer.rollout.collector import ActingRule, Chunk, plan_chunks, rollout_chunk, rollout_stats
from archer.types import Trajectory

WORKER_DEATH = (RayActorError, WorkerCrashedError)
"""Errors that mean a worker process is gone (ActorDiedError and ActorUnavailableError are
RayActorErrors); any other error raised by a worker is a bug and propagates."""


def ensure_ray(num_cpus: int | None = None, log_to_driver: bool = False) -> None:
    """Start a local Ray instance once (a no-op when Ray is already initialised).

    `num_cpus` defaults to the CPUs Ray detects (2 on a CI machine). With RAY_ADDRESS set, the
    driver joins that cluster instead and `num_cpus` is the cluster's business. Workers run the
    driver's interpreter; they get the driver's own import path entries (the repo, `tests/`, a
    user's env module directory: whatever is on `sys.path` outside the Python installation) in
    PYTHONPATH, so an env id like "user_envs:GuessNumber-v0" imports in workers exactly as it
    does in the driver. Worker logs stay in Ray's session log directory unless
    `log_to_driver`; worker errors reach the driver as exceptions either way.
    """
    if ray.is_initialized():
        return
    pythonpath = os.pathsep.join(_driver_import_paths())
    kwargs: dict[str, Any] = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": num_cpus}
    ray.init(
        include_dashboard=False,
        log_to_driver=log_to_driver,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
        **kwargs,
    )


def _driver_import_paths() -> list[str]:
    """Directories on the driver's `sys.path` that are not part of the Python installation."""
    install = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = []
    for entry in sys.path:
        path = Path(entry or os.getcwd()).resolve()
        inside = any(path == root or root in path.parents for root in install)
        if path.is_dir() and not inside and str(path) not in paths:
            paths.append(str(path))
    return paths


@ray.remote(num_cpus=1)
class RolloutWorker:
    """One rollout process: a policy loaded from `policy_dir` and `rollout.envs_per_worker`
    envs. Torch uses `num_threads` intra-op threads (the worker's CPU reservation, 1 by
    default): more would oversubscribe the cores Ray gave the other workers and the driver."""

    def __init__(self, cfg: Config, policy_dir: str, num_threads: int = 1):
        torch.set_num_threads(num_threads)
        self.cfg = cfg
        if cfg.rollout.backend == "hf":
            self.policy = Policy.from_pretrained(
                policy_dir,
                device=cfg.device,
                max_context_tokens=cfg.model.max_context_tokens,
                reserve=cfg.generation.max_new_tokens,
            )
        else:  # the weights live in the engine; the policy keeps tokens and prompts
            from archer.rollout.vllm_backend import open_engine

            self.policy = Policy.for_engine(policy_dir, open_engine(cfg, policy_dir),
                                            cfg.model.max_context_tokens,
                                            cfg.generation.max_new_tokens)
        self.envs = BatchedTextEnvs(cfg.env.id, cfg.rollout.envs_per_worker, cfg.env.kwargs)
        self.version = 0
        self.chooser: ActingRule | None = None

    def set_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        engine = self.policy.token_engine
        if engine is None:
            self.policy.model.load_state_dict(state_dict)
        else:  # through the engine's own weight-transfer path, a bucket at a time
            from archer.rollout.vllm_backend import state_buckets

            engine.update_weights(
                state_buckets(state_dict, int(self.cfg.cluster.weight_bucket_mb * 2**20)),
                version)
        self.version = version

    def engine_stats(self) -> dict[str, int]:
        """The token engine's weight pushes and buckets so far ({} under rollout.backend=hf)."""
        engine = self.policy.token_engine
        return {} if engine is None else {"version": engine.version,
                                          "pushes": getattr(engine, "pushes", -1),
                                          "buckets": getattr(engine, "buckets_received", -1)}

    def set_chooser(self, chooser: ActingRule | None) -> None:
        self.chooser = chooser

    def rollout(self, chunk: Chunk) -> list[Trajectory]:
        return rollout_chunk(self.policy, self.envs, chunk, self.cfg.generation, self.version,
                             chooser=self.chooser)

    def sample(self, observations: list[str], seeds: list[int], version: int,
               ) -> tuple[Generation, int]:
        """One fresh utterance per observation from its own seed, with the weights of
        `version` (a worker holding others refuses); and the tokens it generated."""
        if version != self.version:
            raise ValueError(f"asked for samples of policy version {version}, this worker "
                             f"holds version {self.version}")
        from archer import metrics  # this process's counters (Ray may pickle this class by
        # value, with a copy of the module's globals)

        before = metrics.COUNTS["generated_tokens"]
        gen = self.policy.generate(observations, Sampling.from_config(self.cfg.generation),
                                   seeds=seeds, chunk_size=self.cfg.generation.batch_size)
        return gen, metrics.COUNTS["generated_tokens"] - before

    def ping(self) -> int:
        """The version of the weights this worker acts with."""
        return self.version


class RayCollector:
    """Collects episodes on `num_workers` Ray rollout workers (`rollout.num_workers > 0`).

    Workers start from the policy checkpoint in `policy_dir` (version 0) and act with the
    weights of the latest `set_weights`. Each reserves `num_cpus_per_worker` CPUs and
    `num_gpus_per_worker` GPUs; Ray hides GPUs from a worker that reserves none, so a CUDA
    `cfg.device` needs `num_gpus_per_worker > 0` (a fraction lets workers share a GPU).
    """

    def __init__(
        self,
        cfg: Config,
        policy_dir: str | os.PathLike[str],
        num_workers: int,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float = 0.0,
        start_timeout_s: float = 300.0,
    ):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if cfg.device.startswith("cuda") and num_gpus_per_worker <= 0:
            raise ValueError(
                f"device is {cfg.device!r} but num_gpus_per_worker is {num_gpus_per_worker}: "
                "Ray hides GPUs from workers that reserve none; pass num_gpus_per_worker > 0 "
                f"(1 / {num_workers} to share one GPU) or set device=cpu"
            )
        ensure_ray()
        self.cfg = cfg
        self.policy_dir = str(policy_dir)
        self.version = 0
        self.restarts = 0
        self.last_stats: dict[str, float] = {}
        self._weights: ray.ObjectRef | None = None  # the latest pushed state dict
        self._chooser: ray.ObjectRef | None = None  # the latest pushed chooser
        self.chooser_version = -1  # none pushed yet
        self._options = {"num_cpus": num_cpus_per_worker, "num_gpus": num_gpus_per_worker}
        self._threads = max(1, int(num_cpus_per_worker))
        self._workers = [self._spawn() for _ in range(num_workers)]
        try:
            ray.get([w.ping.remote() for w in self._workers], timeout=start_timeout_s)
        except GetTimeoutError:
            self.close()
            raise RuntimeError(
                f"{num_workers} rollout workers did not start within {start_timeout_s:.0f} s; "
                f"each needs {self._options} and Ray has {ray.available_resources()} free"
            ) from None
        except WORKER_DEATH as err:
            self.close()
            raise RuntimeError(f"a rollout worker failed to start: {err}") from err

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def set_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        """Push weights to every worker; returns once all of them act with `version`."""
        cpu_state = {k: v.detach().cpu() for k, v in state_dict.items()}
        self._weights = ray.put(cpu_state)
        self.version = version
        self._push("set_weights", self._weights, version)  # a replacement starts with them

    def set_chooser(self, chooser: ActingRule | None, version: int) -> None:
        """Push an acting rule (pickled once, shared by every worker); returns once all of
        them act through it."""
        self._chooser = ray.put(chooser)
        self.chooser_version = version
        self._push("set_chooser", self._chooser)  # a replacement starts with it

    def _push(self, method: str, *args: Any) -> None:
        """Call `method(*args)` on every worker and wait for all; a worker found dead is
        replaced (`_spawn` gives the replacement the latest weights and chooser)."""
        pending = [(i, getattr(w, method).remote(*args)) for i, w in enumerate(self._workers)]
        for i, acked in pending:
            try:
                ray.get(acked)
            except WORKER_DEATH as err:
                self._replace(i, err)

    def collect(self, task_ids: Sequence[str], seeds: Sequence[int]) -> list[Trajectory]:
        """Play episode (task_ids[i], seeds[i]) for every i; trajectories in task order."""
        start = time.perf_counter()
        chunks = plan_chunks(task_ids, seeds, self.cfg.rollout.envs_per_worker)
        results: dict[int, list[Trajectory]] = {}
        queue = deque(range(len(chunks)))  # chunk indices still to play
        idle = deque(range(len(self._workers)))  # worker indices free to take one
        running: dict[ray.ObjectRef, tuple[int, int]] = {}  # ref -> (worker, chunk)
        started: dict[ray.ObjectRef, float] = {}  # ref -> when it was handed out
        limit = self.cfg.rollout.chunk_timeout_s
        while queue or running:
            while queue and idle:
                worker, chunk = idle.popleft(), queue.popleft()
                ref = self._workers[worker].rollout.remote(chunks[chunk])
                running[ref], started[ref] = (worker, chunk), time.perf_counter()
            wait_s = None
            if limit > 0:
                wait_s = max(0.0, min(started.values()) + limit - time.perf_counter())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=wait_s)
            if not ready:  # the oldest chunk overran: its worker is hung, replace it
                hung = min(started, key=started.__getitem__)
                worker, chunk = running.pop(hung)
                del started[hung]
                self._replace(worker, TimeoutError(
                    f"chunk {chunks[chunk]} took longer than rollout.chunk_timeout_s={limit:g}"))
                queue.appendleft(chunk)
                idle.append(worker)
                continue
            finished = ready[0]
            worker, chunk = running.pop(finished)
            del started[finished]
            try:
                played: list[Trajectory] = ray.get(finished)
            except WORKER_DEATH as err:
                self._replace(worker, err)
                queue.appendleft(chunk)  # played again from scratch
            else:
                _check_chunk(chunks[chunk], played)
                results[chunk] = played
                crash_point("collect")
            idle.append(worker)
        trajectories = [t for i in range(len(chunks)) for t in results[i]]
        self.last_stats = rollout_stats(trajectories, time.perf_counter() - start, self.restarts)
        return trajectories

    def sample(self, observations: Sequence[str], seeds: Sequence[int], version: int,
               ) -> Generation:
        """Fresh utterances for `observations` (row i from `seeds[i]`) with the pushed weights
        of `version`, in one request split evenly over the workers; a part whose worker dies
        is sampled again on its replacement. The tokens count as this process's."""
        if version != self.version:
            raise ValueError(f"fresh samples of policy version {version} asked of workers "
                             f"holding version {self.version}")
        obs, row_seeds = list(observations), [int(x) for x in seeds]
        k = len(self._workers)
        parts = even_parts(len(obs), k)
        results: dict[int, Generation] = {}
        while len(results) < k:
            refs = {i: self._workers[i].sample.remote([obs[j] for j in parts[i]],
                                                      [row_seeds[j] for j in parts[i]], version)
                    for i in range(k) if i not in results}
            for i, ref in refs.items():
                try:
                    results[i], tokens = ray.get(ref)
                except WORKER_DEATH as err:
                    self._replace(i, err)  # the replacement gets the same weights
                else:
                    count("generated_tokens", tokens)
        return Generation(texts=[t for i in range(k) for t in results[i].texts],
                          action_ids=[a for i in range(k) for a in results[i].action_ids],
                          logprobs=[lp for i in range(k) for lp in results[i].logprobs])

    def worker_handles(self) -> list[Any]:
        """The current workers' actor handles (a replaced worker's successor included), for
        learner ranks that ask them for fresh samples themselves (`WorkerSampler`)."""
        return list(self._workers)

    def ping(self) -> list[int]:
        """The weights version each worker acts with (raises if one is dead)."""
        return ray.get([w.ping.remote() for w in self._workers])

    def close(self) -> None:
        """Kill the workers (Ray itself keeps running for whoever else uses it)."""
        for worker in self._workers:
            _kill(worker)
        self._workers = []
        self._weights = self._chooser = None

    def _spawn(self) -> ray.actor.ActorHandle:
        worker = RolloutWorker.options(**self._options).remote(  # type: ignore[attr-defined]
            self.cfg, self.policy_dir, self._threads
        )
        if self._weights is not None:  # queued before any chunk on this actor
            worker.set_weights.remote(self._weights, self.version)
        if self._chooser is not None:
            worker.set_chooser.remote(self._chooser)
        return worker

    def _replace(self, index: int, err: BaseException) -> None:
        self.restarts += 1
        if self.restarts > self.cfg.rollout.max_restarts:
            raise RuntimeError(
                f"rollout worker {index} failed and {self.restarts - 1} workers were already "
                f"replaced (rollout.max_restarts={self.cfg.rollout.max_restarts}); giving up. "
                f"Last error: {err}"
            ) from err
        _kill(self._workers[index])
        self._workers[index] = self._spawn()


def _check_chunk(chunk: Chunk, trajectories: list[Trajectory]) -> None:
    got = [(t.task_id if task is not None else None, t.seed)  # None: the env drew the task
           for t, (task, _) in zip(trajectories, chunk, strict=False)]
    if len(trajectories) != len(chunk) or got != list(chunk):
        raise RuntimeError(f"a rollout worker returned episodes {got} for chunk {chunk}")


def _kill(worker: ray.actor.ActorHandle) -> None:
    with contextlib.suppress(Exception):  # already dead, or Ray is shutting down
        ray.kill(worker, no_restart=True)


class WorkerSampler:
    """The rollout workers' fresh samples as a learner rank asks for them (ArCHer with
    archer.fresh_samples=rollout and a learner group): each rank sends its share of the rows
    (`parallel.split_rows`), split evenly over the workers, and the ranks gather every row in
    order. Rows whose worker is gone or holds another version are sampled by the ranks
    together instead (`fallback`, a collective: the learner's own sampler, which gives the
    same utterance from the same seed and weights under rollout.backend=hf); `fell_back`
    counts them."""

    def __init__(self, workers: Sequence[Any], fallback: Any):
        self.workers, self.fallback, self.fell_back = list(workers), fallback, 0

    def __call__(self, observations: Sequence[str], seeds: Sequence[int], version: int,
                 ) -> Generation:
        from archer.algorithms import parallel

        obs, row_seeds = list(observations), [int(x) for x in seeds]
        mine = parallel.split_rows(len(obs))
        parts = [[mine[j] for j in part] for part in even_parts(len(mine), len(self.workers))]
        refs = [(part, w.sample.remote([obs[i] for i in part], [row_seeds[i] for i in part],
                                       version)) for part, w in zip(parts, self.workers,
                                                                    strict=True) if part]
        rows: list[tuple[int, str, list[int], list[float]]] = []
        failed: list[int] = []
        for part, ref in refs:
            try:
                gen, tokens = ray.get(ref)
            except (*WORKER_DEATH, ray.exceptions.RayTaskError):
                failed += part  # dead, or holding other weights: sampled below
                continue
            count("generated_tokens", tokens)
            rows += _indexed(part, gen)
        rows = parallel.gather(rows)
        failed = sorted(parallel.gather(failed))
        if failed:  # every rank takes part (a collective under ZeRO-3)
            self.fell_back += len(failed)
            rows += _indexed(failed, self.fallback([obs[i] for i in failed],
                                                   [row_seeds[i] for i in failed]))
        rows.sort(key=lambda r: r[0])
        if [r[0] for r in rows] != list(range(len(obs))):
            raise RuntimeError("fresh samples: rows lost between the workers and the ranks")
        return Generation(texts=[r[1] for r in rows], action_ids=[r[2] for r in rows],
                          logprobs=[r[3] for r in rows])


def _indexed(index: list[int], gen: Generation) -> list[tuple[int, str, list[int], list[float]]]:
    """(row index, text, ids, log-probs) of each row of `gen`, row k being `index[k]`."""
    return [(i, t, a, lp) for i, t, a, lp in zip(index, gen.texts, gen.action_ids, gen.logprobs,
                                                  strict=True)]
