"""Throughput: rollout tokens/s and episodes/s, in-process vs Ray rollout workers.

    python benchmarks/throughput.py                 # 64 episodes, in-process / 1 / 2 workers
    python benchmarks/throughput.py --episodes 256 --workers 1 2 4
    python benchmarks/throughput.py --quick         # a few seconds of rollouts, for CI

A tiny random GPT-2 policy (tokenizer trained on the env's own text) plays
archer/TwentyQuestionsSubset-v0; it never wins, so every episode runs to the turn limit and
the numbers measure the machinery (generation, env steps, Ray dispatch), not the policy. Each
measurement is one function returning a `Row`; worker start-up and a warm-up collection are
left out of the timing. Rows are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from archer.config import Config, load_config
from archer.models.policy import Policy
from archer.models.tiny import build_tiny_policy, train_tokenizer
from archer.rollout.collector import InProcessCollector
from archer.rollout.envs import env_info, make_env

ENV_ID = "archer/TwentyQuestionsSubset-v0"


@dataclass
class Row:
    setup: str
    episodes: int
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.seconds


@dataclass
class Workload:
    cfg: Config
    policy: Policy
    policy_dir: str
    task_ids: list[str]
    seeds: list[int]


def build_workload(episodes: int, envs_per_worker: int, max_new_tokens: int, tmp: str) -> Workload:
    cfg = load_config(
        overrides=[
            f"env.id={ENV_ID}",
            f"output_dir={tmp}",
            f"rollout.envs_per_worker={envs_per_worker}",
            f"generation.max_new_tokens={max_new_tokens}",
        ]
    )
    env = make_env(ENV_ID)
    tokenizer = train_tokenizer(env.unwrapped.corpus(), vocab_size=cfg.model.vocab_size)
    model = build_tiny_policy(tokenizer, cfg.model.size, cfg.model.max_context_tokens, seed=0)
    policy = Policy(
        model, tokenizer, max_context_tokens=cfg.model.max_context_tokens,
        reserve=cfg.generation.max_new_tokens,
    )
    policy_dir = os.path.join(tmp, "policy")
    policy.save_pretrained(policy_dir)
    pool = env_info(ENV_ID, env=env).tasks("train")
    env.close()
    task_ids = [pool[i % len(pool)] for i in range(episodes)]
    return Workload(cfg, policy, policy_dir, task_ids, list(range(episodes)))


def timed_collect(collector, work: Workload, setup: str) -> Row:
    """Warm up on one chunk, then time one collection of the whole workload."""
    chunk = work.cfg.rollout.envs_per_worker
    collector.collect(work.task_ids[:chunk], work.seeds[:chunk])
    trajectories = collector.collect(work.task_ids, work.seeds)
    stats = collector.last_stats
    return Row(setup, len(trajectories), int(stats["rollout/tokens"]), stats["rollout/time_s"])


def measure_in_process(work: Workload) -> Row:
    collector = InProcessCollector(work.cfg, work.policy)
    try:
        return timed_collect(collector, work, "in-process")
    finally:
        collector.close()


def measure_ray(work: Workload, num_workers: int) -> Row:
    from archer.distributed.rollout import RayCollector, ensure_ray

    ensure_ray()
    collector = RayCollector(work.cfg, work.policy_dir, num_workers)
    try:
        collector.set_weights(work.policy.model.state_dict(), 0)
        return timed_collect(collector, work, f"ray x{num_workers}")
    finally:
        collector.close()


def format_table(rows: Sequence[Row]) -> str:
    lines = [
        "| setup | episodes | tokens | time (s) | tokens/s | episodes/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.setup} | {r.episodes} | {r.tokens} | {r.seconds:.2f} | "
            f"{r.tokens_per_s:.0f} | {r.episodes_per_s:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64, help="episodes per measurement")
    parser.add_argument("--envs-per-worker", type=int, default=16, help="envs stepped together")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest utterance")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="Ray worker counts (none: in-process only)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the in-process collector (default: torch's)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="8 episodes, 4 envs per worker, 8-token utterances"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.envs_per_worker, args.max_new_tokens = 8, 4, 8
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = build_workload(args.episodes, args.envs_per_worker, args.max_new_tokens, tmp)
        rows = [measure_in_process(work)]
        rows += [measure_ray(work, n) for n in args.workers]
    print(
        f"rollout throughput on {ENV_ID}: {args.episodes} episodes, "
        f"{args.envs_per_worker} envs per worker, <= {args.max_new_tokens} tokens per utterance; "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads in-process, "
        f"1 per Ray worker; load average {os.getloadavg()[0]:.1f}"
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
