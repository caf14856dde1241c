"""kill -9 the driver of an ArCHer run at random points, resume it, and check that it lost nothing.

Run through scripts/chaos.sh. Every run here is a real `archer train` process (real Ray rollout
workers, the real DeepSpeed actor) on Twenty Questions (subset) with tiny models:

1. the start: scripted episodes and BC, once (every run below starts from it);
2. the references: straight runs of 1, 2, ... N iterations, a checkpoint after each, and the
   fingerprint of each one's checkpoint (iteration, episodes, a hash of the replay buffer, the
   next critic batch the buffer's RNG would draw, hashes of the policy and critic weights);
3. the scenarios: a run to N iterations killed by SIGKILL at a point drawn at random (with
   --seed) among the hits of a crash point (archer/faults.py: during collection, after a
   critic step, after an actor step, while a checkpoint is written, between the checkpoint's
   two renames), or at a random moment from outside (`kill -9` after a time drawn between the
   1-iteration and the N-iteration reference's wall times). Then `train.resume=true` to N.

A scenario passes when (a) the checkpoint the resume starts from is complete and equal to the
reference's checkpoint at the same iteration (the same iteration, buffer, next batch and
weights), (b) the resumed run's metrics for every iteration it ran equal the reference's
(times excluded) and (c) its final checkpoint equals the reference's at N. A kill before the
first checkpoint leaves nothing to resume: the scenario then checks that `train.resume=true`
fails with a clear error and that a fresh start reproduces the reference.

Prints one table row per scenario and writes <out>/chaos.json; exits 1 if any scenario fails.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's archer, whatever the environment has installed
EPISODES, ENVS_PER_WORKER = 8, 4  # two collection chunks per iteration
CRITIC_STEPS, ACTOR_STEPS, WARMUP = 3, 1, 1
CRITIC_BATCH = 16
SCENARIOS = ("collect", "critic_step", "actor_step", "checkpoint_write", "checkpoint_swap",
             "outside")


def volatile(key: str) -> bool:
    """Metric keys that measure time, not state (time/*, *_s, *_per_s): not compared."""
    return key.startswith("time/") or key.endswith("_s")


def overrides(out: Path, start: Path, iterations: int) -> list[str]:
    return [
        "env.id=archer/TwentyQuestionsSubset-v0", f"output_dir={out}",
        f"train.init_policy={start}", f"train.iterations={iterations}", "train.save_every=1",
        "train.eval_every=0", "train.eval_start=false", "train.tensorboard=false",
        "eval.episodes=4", "rollout.num_workers=1", f"rollout.episodes_per_iter={EPISODES}",
        f"rollout.envs_per_worker={ENVS_PER_WORKER}", "generation.max_new_tokens=12",
        "critic.encoder=tiny", "critic.hidden_dim=32",
        f"archer.critic.batch_size={CRITIC_BATCH}",
        f"archer.critic.updates_per_iter={CRITIC_STEPS}", "archer.actor.batch_size=8",
        f"archer.actor.updates_per_iter={ACTOR_STEPS}", f"archer.warmup_iters={WARMUP}",
        "archer.actor.samples_per_state=1", "archer.actor.baseline=v",
        "deepspeed.micro_batch_size=8",
        "cluster.learner_ranks=0", "seed=0",
    ]


def hits_per_run(point: str, iterations: int) -> int:
    """How many times a straight run of `iterations` reaches `point`."""
    chunks = EPISODES // ENVS_PER_WORKER
    trained = max(iterations - WARMUP, 0)  # the actor waits for the warm-up iterations
    return {"collect": chunks * iterations, "critic_step": CRITIC_STEPS * iterations,
            "actor_step": ACTOR_STEPS * trained, "checkpoint_write": iterations,
            "checkpoint_swap": iterations - 1}[point]


# ------------------------------------------------------------------------ processes
def train(over: list[str], log: Path, crash: str | None = None,
          kill_after_s: float | None = None) -> int:
    """One `archer train` process; its return code (-9 when it was SIGKILLed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ARCHER_CRASH_AT", None)
    if crash:
        env["ARCHER_CRASH_AT"] = crash
    with open(log, "a") as f:
        proc = subprocess.Popen([sys.executable, "-m", "archer.cli", "train", *over],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if kill_after_s is not None:
            try:
                proc.wait(timeout=kill_after_s)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        return proc.wait()


def make_start(out: Path) -> Path:
    """Scripted episodes and a short BC: a tiny policy that plays, but not well."""
    import archer_envs  # noqa: F401

    from archer.config import load_config
    from archer.evaluation import collect
    from archer.warm_start import train_bc

    policy = out / "sft"
    if (policy / "config.json").is_file():
        return policy
    cfg = load_config(overrides=["env.id=archer/TwentyQuestionsSubset-v0", "collect.noise=0.3",
                                 "collect.episodes=60", "bc.epochs=2", "model.vocab_size=512",
                                 "model.max_context_tokens=256", f"output_dir={out}"])
    collect(cfg, out / "data.jsonl", progress=False)
    return Path(train_bc(cfg, out / "data.jsonl", policy, progress=False,
                         log=lambda *_: None)["policy"])


# ---------------------------------------------------------------------- fingerprints
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _tensors(path: Path) -> str:
    import torch
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for file in sorted(path.rglob("*.safetensors")):
        for k, v in sorted(load_file(file).items()):
            h.update(k.encode())
            h.update(v.contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(ckpt: Path) -> dict[str, object]:
    """What a resume from `ckpt` continues with."""
    import torch

    from archer.buffer.store import EpisodeStore

    loop = torch.load(ckpt / "loop_state.pt", weights_only=False)["loop_state"]
    store = ckpt / "store"
    episodes = gzip.decompress((store / "episodes.jsonl.gz").read_bytes()) if (
        store / "episodes.jsonl.gz").exists() else b""
    nxt = [(r.episode.seed, r.t) for r in EpisodeStore.load(store).sample_turns(CRITIC_BATCH)]
    return {"iteration": loop["iteration"], "episodes": loop["episodes"],
            "buffer": _sha(episodes + (store / "store.json").read_bytes()),
            "next_batch": _sha(json.dumps(nxt).encode()),
            "policy": _tensors(ckpt / "policy"), "critic": _tensors(ckpt / "critic")}


def resumable(out: Path) -> Path | None:
    """The checkpoint `train.resume=true` would start from (archer.checkpoint.resolve)."""
    from archer.checkpoint import resolve
    from archer.errors import CheckpointError

    try:
        return resolve(out / "checkpoint")
    except CheckpointError:
        return None


def rows(out: Path) -> dict[int, dict[str, float]]:
    """metrics.jsonl by iteration, the last row of an iteration logged twice winning."""
    by_iter = {}
    path = out / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        row = json.loads(line)
        by_iter[int(row["iteration"])] = {k: v for k, v in row.items()
                                          if not volatile(k)}
    return by_iter


# ------------------------------------------------------------------------ scenarios
def scenario(name: str, out: Path, start: Path, n: int, refs: dict, ref_rows: dict,
             walls: dict[int, float], rng: random.Random) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log = out / "train.log"
    if name == "outside":
        # after a straight 1-iteration run's whole time (start-up, an iteration, its
        # checkpoint) and before an N-iteration run's: somewhere in iterations 2..N
        at = round(rng.uniform(walls[1], walls[n]), 1)
        where, rc = f"kill -9 after {at} s", train(overrides(out, start, n), log,
                                                    kill_after_s=at)
    else:
        hit = rng.randint(1, hits_per_run(name, n))
        where, rc = f"{name} #{hit}", train(overrides(out, start, n), log, crash=f"{name}:{hit}")
    killed = rc == -signal.SIGKILL
    logged = sorted(i for i in rows(out) if i >= 0)
    ckpt = resumable(out)
    result: dict[str, object] = {"scenario": name, "killed_at": where, "killed": killed,
                                 "iterations_logged": len(logged)}
    if ckpt is None:  # killed before the first checkpoint
        refused = train([*overrides(out, start, n), "train.resume=true"], log)
        result.update(resumed_from=None, resume_refused=refused == 2,
                      start_ok=True, resume_rc=train(overrides(out, start, n), log))
    else:
        got = fingerprint(ckpt)
        k = int(got["iteration"])
        result.update(resumed_from=k, start_ok=got == refs[k],
                      resume_rc=train([*overrides(out, start, n), "train.resume=true"], log))
    again = rows(out)
    # every row, the killed run's included: what it logged before the kill must be right too
    result["rows_equal"] = all(again.get(i) == ref_rows[i] for i in range(n))
    final = resumable(out)
    result["final_equal"] = final is not None and fingerprint(final) == refs[n]
    result["ok"] = bool(result["start_ok"] and result["resume_rc"] == 0 and result["rows_equal"]
                        and result["final_equal"] and result.get("resume_refused", True))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "chaos")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill points")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, from {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    names = [s for s in args.scenarios.split(",") if s]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or args.iterations < 2:
        parser.error(f"unknown scenarios {unknown}" if unknown else "--iterations must be >= 2")
    n, rng, out = args.iterations, random.Random(args.seed), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"chaos: {n} iterations per run, kill points drawn with --seed {args.seed}, in {out}",
          flush=True)
    start = make_start(out / "start")
    refs, ref_rows, walls = {}, {}, {}
    for k in range(1, n + 1):  # straight runs, never resumed
        ref = out / f"reference-{k}"
        shutil.rmtree(ref, ignore_errors=True)
        ref.mkdir(parents=True)
        t0 = time.perf_counter()
        rc = train(overrides(ref, start, k), ref / "train.log")
        if rc != 0:
            print(f"reference run of {k} iterations failed (rc {rc}): see {ref}/train.log")
            return 1
        refs[k] = fingerprint(ref / "checkpoint")
        ref_rows, walls[k] = rows(ref), time.perf_counter() - t0
    print(f"references: {n} straight runs of 1..{n} iterations, "
          f"{', '.join(f'{w:.0f}' for w in walls.values())} s", flush=True)
    results = []
    header = ("scenario", "killed at", "SIGKILL", "rows before", "resumed from", "checkpoint = ref",
              "rows = ref", "final = ref", "ok")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    for name in names:
        r = scenario(name, out / name, start, n, refs, ref_rows, walls, rng)
        results.append(r)
        start_note = "none: resume refused, fresh start" if r["resumed_from"] is None else (
            f"iteration {r['resumed_from']}")
        cells = (name, r["killed_at"], r["killed"], r["iterations_logged"], start_note,
                 r["start_ok"], r["rows_equal"], r["final_equal"],
                 "PASS" if r["ok"] else "FAIL")
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    (out / "chaos.json").write_text(json.dumps({"iterations": n, "seed": args.seed,
                                                "references": refs, "scenarios": results},
                                               indent=1))
    failed = [r["scenario"] for r in results if not r["ok"]]
    print(f"{len(results) - len(failed)} of {len(results)} scenarios lost nothing"
          + (f"; FAILED: {', '.join(failed)} (logs under {out})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
