"""Every online method on archer/EarlyChoice-v0, where only the first of four answers counts
and the reward comes at the end (credit assignment: envs/diagnostics.py).

One start for all: a tiny policy cloned from the 50/50 `coin` agent (200 episodes). Each
method then trains for `--iterations` iterations of 16 episodes (in-process collection), and
the sampled return of 128 evaluation episodes is printed before and after, per seed, then as
mean and range over the seeds. Settings per method are below (METHODS); they are the ones the
tiny-env learnability tests use.

    python benchmarks/credit_assignment.py                       # 7 rows, 3 seeds, 10 its
    python benchmarks/credit_assignment.py --methods archer ppo --seeds 0
    python benchmarks/credit_assignment.py --quick               # 1 seed, 1 iteration (tests)

Prints a markdown table: method, the sampled return after (mean, min, max), its change.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import archer_envs  # noqa: F401  (registers archer/EarlyChoice-v0)

from archer import loop
from archer.config import load_config
from archer.evaluation import collect
from archer.warm_start import train_bc

ENV = "archer/EarlyChoice-v0"
COMMON = [f"env.id={ENV}", "model.vocab_size=300", "model.max_context_tokens=96",
          "generation.max_new_tokens=4", "rollout.num_workers=0",
          "rollout.episodes_per_iter=16", "rollout.envs_per_worker=16",
          "deepspeed.micro_batch_size=8", "train.eval_every=0", "train.tensorboard=false",
          "buffer.capacity=4000", "critic.hidden_dim=32"]
METHODS = {
    # the settings of the three-turn learnability test (tests/test_archer.py), with the
    # critic's default pair features (critic.q_input=pair)
    "archer": ["archer.warmup_iters=2", "archer.critic.batch_size=32",
               "archer.critic.updates_per_iter=10", "archer.critic.lr=3e-3",
               "archer.critic.gamma=0.9", "archer.actor.batch_size=16",
               "archer.actor.updates_per_iter=2", "archer.actor.lr=5e-4",
               "archer.actor.baseline=v", "archer.actor.samples_per_state=1",
               "archer.actor.kl_coef=0"],
    "ppo": ["ppo.lr=3e-4", "ppo.value_lr=1e-3", "ppo.kl_coef=0"],
    "reinforce": ["reinforce.baseline=loo", "rollout.group_size=4", "reinforce.lr=1e-3",
                  "reinforce.kl_coef=0"],
    "filtered_bc": ["filtered_bc.lr=1e-3", "filtered_bc.percentile=50",
                    "filtered_bc.batch_size=16"],
    # the same with the paper's concat critic input (the default before 2026-12-01)
    "archer+concat": ["archer.warmup_iters=2", "archer.critic.batch_size=32",
                      "archer.critic.updates_per_iter=10", "archer.critic.lr=3e-3",
                      "archer.critic.gamma=0.9", "archer.actor.batch_size=16",
                      "archer.actor.updates_per_iter=2", "archer.actor.lr=5e-4",
                      "archer.actor.baseline=v", "archer.actor.samples_per_state=1",
                      "archer.actor.kl_coef=0", "critic.q_input=concat"],
    # measured with the concat critic input (the default then): pinned to reproduce it
    "chai": ["chai.critic.batch_size=32", "chai.critic.updates_per_iter=10",
             "chai.critic.lr=3e-3", "chai.critic.gamma=0.9", "critic.q_input=concat"],
    "agro": ["rollout.group_size=4", "agro.lr=1e-3", "agro.beta=0.05"],
}


def start(tmp: Path, seed: int, episodes: int = 200, epochs: int = 10) -> str:
    cfg = load_config(overrides=[*COMMON, "collect.agent=coin", f"collect.episodes={episodes}",
                                 f"bc.epochs={epochs}", f"seed={seed}", f"output_dir={tmp}"])
    collect(cfg, tmp / "d.jsonl", progress=False)
    return train_bc(cfg, tmp / "d.jsonl", tmp / "sft", progress=False,
                    log=lambda *_: None)["policy"]


def run(method: str, init: str, out: Path, seed: int, iterations: int, episodes: int,
        ) -> tuple[float, float]:
    algo = method.split("+")[0]  # "archer+concat" is algo=archer with other settings
    cfg = load_config(overrides=[*COMMON, *METHODS[method], f"algo={algo}", f"seed={seed}",
                                 f"output_dir={out}", f"train.init_policy={init}",
                                 f"train.iterations={iterations}", f"eval.episodes={episodes}"])
    result = loop.run(cfg, progress=False, log=lambda *_: None)
    return result["before"]["eval/return_sample"], result["after"]["eval/return_sample"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=128, help="evaluation episodes")
    parser.add_argument("--quick", action="store_true",
                        help="seed 0, 1 iteration, 16 evaluation episodes, a 2-epoch start")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.iterations, args.episodes = [0], 1, 16
    rows = {m: [] for m in args.methods}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            init = start(Path(tmp) / f"start{seed}", seed,
                         *((64, 2) if args.quick else (200, 10)))
            for method in args.methods:
                before, after = run(method, init, Path(tmp) / f"{method}{seed}", seed,
                                    args.iterations, args.episodes)
                rows[method].append((before, after))
                print(f"seed {seed} {method}: sampled return {before:.3f} -> {after:.3f}",
                      flush=True)
    print(f"\n{ENV}: {args.iterations} iterations x 16 episodes, seeds {args.seeds}, "
          f"{args.episodes} evaluation episodes (sampled)\n")
    print("| method | start | after (mean) | after (min) | after (max) | change (mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    for method, pairs in rows.items():
        b = statistics.mean(p[0] for p in pairs)
        a = [p[1] for p in pairs]
        print(f"| {method} | {b:.3f} | {statistics.mean(a):.3f} | {min(a):.3f} | {max(a):.3f} "
              f"| {statistics.mean(a) - b:+.3f} |")


if __name__ == "__main__":
    main()
