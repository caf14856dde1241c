"""Print the offline tables of docs/algorithms.md from `scripts/offline_table.sh`'s runs:
per env and method, the greedy and sampled return after training, mean and range over seeds.

usage: python scripts/offline_summary.py [RUNS_DIR]      (default runs/offline)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ENVS = {"20q": "Twenty Questions (subset)", "cqs": "ClarifyQA (subset)",
        "cq": "ClarifyQA (held-out requests)"}
METHODS = [  # (row label, run folder, or an evaluation: the start, ILQL's LM head alone)
    ("the start (20q only: the seed's main-job warm start)", "start"),
    ("BC (SFT) on all episodes", "bc"),
    ("filtered BC (BC on the successful / best episodes)", "bc_success"),
    ("DPO", "dpo"),
    ("Refit", "refit"),
    ("Swift", "swift"),
    ("Swift from the BC policy, lr 1e-4 (ClarifyQA only)", "swift_sft"),
    ("ILQL, LM head alone (no value guidance)", "ilql_lm_head"),
    ("ILQL, value-guided decoding, beta 4 (sampled only)", "ilql_beta4"),
    ("ILQL, value-guided decoding, beta 16", "ilql"),
    ("offline ArCHer (IQL critic + AWR)", "offline_archer"),
    ("offline AGRO", "agro"),
]


def result(run: Path, method: str) -> tuple[float, float] | None:
    """(greedy, sampled) return after training, or None when the run is missing."""
    if method in ("start", "ilql_lm_head", "ilql_beta4"):
        f = run / f"{method}.json"
        if not f.is_file():
            return None
        lines = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if method == "ilql_beta4":  # sampled only
            return float("nan"), lines[0]["return_mean"]
        return lines[0]["return_mean"], lines[1]["return_mean"]
    f = run / method / "train_results.json"
    if not f.is_file():
        return None
    after = json.loads(f.read_text())["after"]
    return after["eval/return_greedy"], after["eval/return_sample"]


def cell(values: list[float]) -> str:
    if any(v != v for v in values):  # not measured (nan)
        return "—"
    mean = sum(values) / len(values)
    return f"{mean:.2f} ({min(values):.2f} to {max(values):.2f})" if len(values) > 1 else (
        f"{mean:.2f}")


def main(root: Path) -> None:
    for env, title in ENVS.items():
        runs = sorted(root.glob(f"{env}-s*"))
        if not runs:
            continue
        print(f"\n{title}: {len(runs)} seed(s) ({', '.join(r.name for r in runs)})\n")
        print("| method | greedy, mean (range) | sampled, mean (range) | seeds |")
        print("|---|---|---|---:|")
        for label, method in METHODS:
            got = [r for r in (result(run, method) for run in runs) if r is not None]
            if got:
                print(f"| {label} | {cell([g for g, _ in got])} | {cell([s for _, s in got])} "
                      f"| {len(got)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/offline"))
