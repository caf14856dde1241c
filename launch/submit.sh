#!/usr/bin/env bash
# Submit `archer train` to a running Ray cluster as a Ray job (needs `ray[default]`, the
# dashboard's job server, on the head):
#
#   RAY_DASHBOARD=http://HEAD_IP:8265 bash launch/submit.sh cluster.learner_ranks=8 ...
#
# The arguments are `archer train` overrides. The checkout is uploaded as the job's working
# directory (launch/runtime_env.yaml); `--no-wait` returns at once, `ray job logs -f ID` follows.
set -euo pipefail
cd "$(dirname "$0")/.."
RAY=${RAY:-.venv/bin/ray}
: "${RAY_DASHBOARD:?set RAY_DASHBOARD=http://HEAD_IP:8265}"
exec "$RAY" job submit --address "$RAY_DASHBOARD" --runtime-env launch/runtime_env.yaml \
  --no-wait -- python -m archer.cli train "$@"
