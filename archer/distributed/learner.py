"""A learner group: `cluster.learner_ranks` DeepSpeed ranks of one algorithm, as Ray actors.

Every rank builds the same algorithm from the same config and seed, gets the same episodes,
and so holds the same replay buffer, RNG streams and weights. The shared update steps split
each step's micro-batches (and fresh samples) over the ranks and sum their gradients
(`archer.algorithms.parallel`): the actor's through its DeepSpeed engine, the critic's with
one all-reduce per step. W ranks therefore take the same steps as one rank, faster.

To the loop a `LearnerGroup` is just another algorithm (`learn`, `acting`, `save`, `load`).
The driver keeps a copy of the acting policy for rollouts and evaluation, refreshed from
rank 0 through Ray's object store whenever the policy's version changes. An algorithm whose
policy is frozen (`frozen_policy`, CHAI) exports no weights; one that acts through a chooser
(CHAI's critic reranking) has rank 0's chooser copied to the driver whenever its version
changes.

The ranks are one failure domain: if one dies, the others would wait in a collective, so the
group is torn down at once with `LearnerGroupError`; the loop then restarts the group from the
last checkpoint (`cluster.max_learner_restarts` times).

Set-up follows the usual pattern of Ray learner groups: reserve every rank's bundle in one
placement group (no rank starts before all can), ask rank 0 for its node's address and a free
port, then start all ranks with MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE and LOCAL_RANK=0
(Ray gives each actor its own GPUs).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from archer.algorithms.api import Acting, RunContext
from archer.config import Config
from archer.errors import DistributedError, LearnerGroupError
from archer.types import Trajectory

RNG_FILE = "learner_rng.pt"
"""Beside the algorithm's files: the ranks' RNG state (the same on every rank)."""


class PlacementError(DistributedError):
    """The cluster cannot hold the learner group's bundles."""


def _chooser_version(acting: Acting) -> int | None:
    """The version of the algorithm's chooser; None when it acts without one."""
    return acting.chooser_version if acting.chooser is not None else None


@ray.remote
class LearnerRank:
    """One rank: a process-group member that builds and trains the algorithm."""

    def __init__(self, rank: int, world: int, num_threads: int):
        torch.set_num_threads(max(1, num_threads))
        self.rank, self.world = rank, world
        self.algo: Any = None

    def address(self) -> tuple[str, int]:
        """This node's address and a free port on it (asked of rank 0)."""
        from archer.distributed.engine import free_port

        return ray.util.get_node_ip_address(), free_port("")

    def setup(self, cfg: Config, run: RunContext, master: tuple[str, int], backend: str,
              timeout_s: float) -> dict[str, Any]:
        import torch.distributed as dist

        from archer import algorithms
        from archer.rollout.seeds import seed_everything

        os.environ.update(MASTER_ADDR=master[0], MASTER_PORT=str(master[1]),
                          RANK=str(self.rank), WORLD_SIZE=str(self.world), LOCAL_RANK="0")
        dist.init_process_group(backend=backend, init_method="env://", rank=self.rank,
                                world_size=self.world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        from archer.algorithms import parallel

        parallel.join_group()
        seed_everything(cfg.seed)
        self.algo = algorithms.build(cfg, run)
        acting = self.algo.acting()
        if acting.buckets is None and not getattr(self.algo, "frozen_policy", False):
            raise ValueError(f"algo={cfg.algo} does not act through an actor engine "
                             "(engine_acting), whose weights a learner group exports")
        return {"data": self.algo.data, "version": acting.version,
                "exports": acting.buckets is not None,
                "chooser_version": _chooser_version(acting),
                "node": ray.get_runtime_context().get_node_id()}

    def learn(self, new: list[Trajectory], iteration: int,
              workers: list[Any] | None = None) -> dict[str, Any]:
        from archer.metrics import COUNTS

        if workers is not None:  # this iteration's rollout workers sample the fresh utterances
            from archer.distributed.rollout import WorkerSampler

            self.algo.use_sampler(WorkerSampler(workers, self.algo.sample_here))
        before = dict(COUNTS)
        metrics = self.algo.learn(new, iteration)
        counts = {k: COUNTS[k] - before[k] for k in COUNTS}
        acting = self.algo.acting()
        return {"metrics": metrics, "counts": counts, "version": acting.version,
                "chooser_version": _chooser_version(acting)}

    def chooser(self) -> Any:
        """The acting rule on top of the policy (CHAI's `CriticChooser`), pickled whole by
        Ray; every rank holds the same one."""
        return self.algo.acting().chooser

    def export(self, bucket_bytes: int) -> list[ray.ObjectRef]:
        """The acting weights as object-store refs of buckets of at most `bucket_bytes`
        (rank 0's; the other ranks only join the per-bucket gathers ZeRO-3 needs), so neither
        this rank nor the driver ever holds a second whole copy."""
        from archer.models.policy import head_prefixes

        acting = self.algo.acting()
        refs = []
        for bucket in acting.buckets(bucket_bytes, head_prefixes(acting.policy.model)):
            if self.rank == 0:
                refs.append(ray.put(bucket))
            del bucket
        return refs

    def save(self, directory: str) -> None:
        self.algo.save(Path(directory))
        if self.rank == 0:
            torch.save({"torch": torch.get_rng_state()}, Path(directory) / RNG_FILE)

    def load(self, directory: str) -> int:
        self.algo.load(Path(directory))
        state = torch.load(Path(directory) / RNG_FILE, weights_only=False)
        torch.set_rng_state(state["torch"])
        acting = self.algo.acting()
        return {"version": acting.version,
                "chooser_version": _chooser_version(acting)}


class LearnerGroup:
    """The driver's handle on the ranks; satisfies `archer.algorithms.api.Algorithm`."""

    def __init__(self, cfg: Config, run: RunContext):
        from archer.distributed.engine import _resolve_backend
        from archer.distributed.rollout import ensure_ray
        from archer.models.policy import Policy

        c = cfg.cluster
        self.cfg, self.world = cfg, c.learner_ranks
        self.timeout_s = c.rendezvous_timeout_s
        self.bucket_bytes = int(c.weight_bucket_mb * 2**20)
        ensure_ray()
        bundle: dict[str, float] = {"CPU": c.cpus_per_learner}
        if c.gpus_per_learner > 0:
            bundle["GPU"] = c.gpus_per_learner
        self.pg = placement_group([dict(bundle) for _ in range(self.world)],
                                  strategy=c.placement_strategy, name="archer-learners")
        if not self.pg.wait(timeout_seconds=c.placement_timeout_s):
            remove_placement_group(self.pg)
            raise PlacementError(
                f"could not place {self.world} learner rank(s) of {bundle} each "
                f"({c.placement_strategy}) within cluster.placement_timeout_s="
                f"{c.placement_timeout_s:g}; the cluster has {ray.cluster_resources()} "
                f"({ray.available_resources()} free): lower cluster.learner_ranks, "
                "cluster.cpus_per_learner or cluster.gpus_per_learner, or add nodes")
        self.ranks = [
            LearnerRank.options(
                num_cpus=c.cpus_per_learner, num_gpus=c.gpus_per_learner,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self.pg, placement_group_bundle_index=i),
            ).remote(i, self.world, int(c.cpus_per_learner))
            for i in range(self.world)]
        try:
            master = self._get([self.ranks[0].address.remote()], "address")[0]
            info = self._get([r.setup.remote(cfg, run, master, _resolve_backend(
                cfg.deepspeed, cfg.device), self.timeout_s) for r in self.ranks], "setup")
        except BaseException:
            self.close()
            raise
        self.data = info[0]["data"]
        self.version = info[0]["version"]
        self.exports = info[0]["exports"]
        """Whether the ranks train the acting weights (else the policy is frozen: CHAI)."""
        self.nodes = [i["node"] for i in info]
        """The Ray node id each rank runs on, by rank."""
        self._workers: Any = None  # `use_workers`: the rollout workers' current handles
        self.policy = Policy.from_pretrained(run.init_policy, cfg.device,
                                             cfg.model.max_context_tokens,
                                             reserve=cfg.generation.max_new_tokens)
        self.chooser: Any = None  # rank 0's acting rule, when the algorithm acts through one
        self.chooser_version: int | None = None
        if info[0]["chooser_version"] is not None:
            self._pull_chooser(info[0]["chooser_version"])

    # ------------------------------------------------------------------ Algorithm
    def learn(self, new: list[Trajectory], iteration: int) -> dict[str, float]:
        from archer.metrics import COUNTS

        ref = ray.put(new)
        workers = self._workers() if self._workers is not None else None
        out = self._get([r.learn.remote(ref, iteration, workers) for r in self.ranks], "learn")
        # every rank took the same steps; the fresh samples were split, so their tokens add up
        COUNTS["gradient_steps"] += out[0]["counts"]["gradient_steps"]
        COUNTS["generated_tokens"] += sum(o["counts"]["generated_tokens"] for o in out)
        if out[0]["version"] != self.version:
            self._pull(out[0]["version"])
        if out[0]["chooser_version"] != self.chooser_version:
            self._pull_chooser(out[0]["chooser_version"])
        return {**out[0]["metrics"], "learner/ranks": float(self.world),
                "learner/nodes": float(len(set(self.nodes)))}

    def use_workers(self, handles: Any) -> None:
        """The loop offers its Ray rollout workers (a function returning their current
        handles); under archer.fresh_samples=rollout the ranks ask them for the critic's
        fresh samples."""
        if self.cfg.algo == "archer" and self.cfg.archer.fresh_samples == "rollout":
            self._workers = handles

    def acting(self) -> Acting:
        return Acting(policy=self.policy, version=self.version, chooser=self.chooser,
                      chooser_version=self.chooser_version or 0)

    def save(self, directory: Path) -> None:
        self._get([r.save.remote(str(directory)) for r in self.ranks], "save")

    def load(self, directory: Path) -> None:
        state = self._get([r.load.remote(str(directory)) for r in self.ranks], "load")[0]
        self._pull(state["version"])
        if state["chooser_version"] is not None:
            self._pull_chooser(state["chooser_version"])

    def close(self) -> None:
        for rank in getattr(self, "ranks", []):
            ray.kill(rank, no_restart=True)
        self.ranks = []
        if getattr(self, "pg", None) is not None:
            remove_placement_group(self.pg)
            self.pg = None

    # ------------------------------------------------------------------ helpers
    def _pull(self, version: int) -> None:
        """The driver's acting copy takes rank 0's weights through the object store, one
        bucket (`cluster.weight_bucket_mb`) at a time. A frozen policy has none to take."""
        if not self.exports:
            if version != self.version:
                raise LearnerGroupError(f"the ranks' frozen acting policy moved to version "
                                        f"{version} (from {self.version})")
            return
        refs = self._get([r.export.remote(self.bucket_bytes) for r in self.ranks], "export")[0]
        model = self.policy.model
        expected = {n for n, _ in model.named_parameters()} | {
            n for n, _ in model.named_buffers() if n in model.state_dict()}
        seen: set[str] = set()
        for ref in refs:
            bucket = ray.get(ref)
            unexpected = model.load_state_dict(bucket, strict=False).unexpected_keys
            if unexpected:
                raise LearnerGroupError(f"rank 0 exported weights the policy does not have: "
                                        f"{unexpected[:5]}")
            seen |= set(bucket)
            del bucket
        if expected - seen:
            raise LearnerGroupError(f"rank 0's export missed {sorted(expected - seen)[:5]}")
        self.policy.model.eval()
        self.version = version

    def _pull_chooser(self, version: int) -> None:
        """The driver's acting rule becomes rank 0's (through the object store, whole: CHAI's
        target critic)."""
        self.chooser = self._get([self.ranks[0].chooser.remote()], "chooser")[0]
        self.chooser_version = version

    def _get(self, futures: list[Any], what: str) -> list[Any]:
        """Every rank's result, in rank order. The first rank to die (or an error raised in
        one) tears the whole group down at once: the others would wait in a collective."""
        index = {f: i for i, f in enumerate(futures)}
        pending, results = list(futures), {}
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=self.timeout_s)
            if not done:
                self.close()
                raise LearnerGroupError(
                    f"learner ranks {sorted(index[f] for f in pending)} did not finish "
                    f"{what} within cluster.rendezvous_timeout_s={self.timeout_s:g}; the "
                    "group was stopped: resume from the last checkpoint (train.resume=true)")
            try:
                results[index[done[0]]] = ray.get(done[0])
            except (RayActorError, GetTimeoutError) as err:
                self.close()
                raise self._died(index[done[0]], what, err) from None
            except Exception:
                # A collective that failed in one rank is most often another rank's death
                # (gloo reports a closed connection first): name the death when there is one.
                dead = self._first_death(pending, index)
                self.close()
                if dead is not None:
                    raise self._died(*dead, what) from None
                raise
        return [results[i] for i in range(len(futures))]

    @staticmethod
    def _first_death(pending: list[Any], index: dict[Any, int], wait_s: float = 5.0,
                     ) -> tuple[int, BaseException] | None:
        """(rank, error) of a pending call whose rank died within `wait_s`, else None."""
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=wait_s)
        for ref in ready:
            try:
                ray.get(ref)
            except (RayActorError, GetTimeoutError) as err:
                return index[ref], err
            except Exception:  # another rank's own error: keep looking
                continue
        return None

    @staticmethod
    def _died(rank: int, what: str, err: BaseException) -> LearnerGroupError:
        return LearnerGroupError(
            f"learner rank {rank} died during {what} ({type(err).__name__}); the group was "
            "stopped: resume from the last checkpoint (train.resume=true)")
