#!/usr/bin/env bash
# Check a Ray cluster before a long run: what it has, and whether a learner group of N ranks
# trains exactly like one rank there. Prints one JSON report (and writes it to $OUT/report.json).
#
#   RAY_ADDRESS=HEAD_IP:6379 bash launch/check_cluster.sh [N=2] [extra archer overrides]
#   e.g. ... check_cluster.sh 8 device=cuda cluster.gpus_per_learner=1 deepspeed.precision=bf16
#
# The check trains a tiny policy on Twenty Questions for 2 iterations twice (1 rank, then N
# ranks; the same seed and global batch) and reports the largest gap of the critic and actor
# metrics between the two, relative to max(|value|, 1): float noise (about 1e-6 in fp32;
# larger in bf16) means the group works; anything else is a bug to report with this output.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
N=${1:-2}
shift || true
OUT=${OUT:-runs/check_cluster}
mkdir -p "$OUT"
# 8 actor micro-batches and 8 critic micro-batches per step, so N may be 1, 2, 4 or 8.
COMMON=(train.iterations=2 train.eval_every=0 train.tensorboard=false eval.episodes=8
        collect.episodes=64 bc.epochs=1 rollout.num_workers=0 rollout.episodes_per_iter=16
        archer.warmup_iters=1 archer.critic.updates_per_iter=2 archer.actor.updates_per_iter=1
        archer.critic.batch_size=64 archer.critic.micro_batch_size=8
        archer.actor.batch_size=16 archer.actor.samples_per_state=4 deepspeed.micro_batch_size=8)
"$PY" - "$OUT" "$N" "${COMMON[@]}" "$@" <<'PYEOF'
import json, sys, time
from pathlib import Path

import ray

from archer import loop
from archer.config import load_config
from archer.distributed.rollout import ensure_ray

out, n, overrides = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
ensure_ray()
report = {"ray": ray.__version__, "resources": ray.cluster_resources(),
          "nodes": [{"ip": node["NodeManagerAddress"], "resources": node["Resources"]}
                    for node in ray.nodes() if node["Alive"]]}
runs, init = {}, []
for ranks in (1, n):  # the second run starts from the first one's warm start
    cfg = load_config(overrides=[*overrides, *init, f"output_dir={out / f'ranks{ranks}'}",
                                 f"cluster.learner_ranks={ranks}"])
    start = time.perf_counter()
    result = loop.run(cfg, progress=False, log=lambda *_: None, final_eval=False)
    runs[ranks] = {"seconds": round(time.perf_counter() - start, 1),
                   "last": result["history"][-1]}
    init = [f"train.init_policy={result['init_policy']}"]
keys = [k for k in runs[1]["last"] if k.startswith(("critic/", "actor/")) and
        not k.endswith("/skipped")]
# relative for values above 1, absolute below (a mean advantage is about 0 by construction)
gaps = {k: abs(runs[n]["last"][k] - runs[1]["last"][k]) / max(abs(runs[1]["last"][k]), 1.0)
        for k in keys}
report.update({"learner_ranks": n, "seconds": {r: v["seconds"] for r, v in runs.items()},
               "max_gap": max(gaps.values()), "worst_metric": max(gaps, key=gaps.get),
               "gaps": gaps})
(out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps(report, indent=1))
PYEOF
