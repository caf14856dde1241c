#!/usr/bin/env bash
# kill -9 the driver of an ArCHer run at random points (during collection, a critic step, an
# actor step, a checkpoint write, or from outside at a random moment), resume each with
# train.resume=true, and print a table of whether anything was lost. A few minutes on 2 cores.
#   bash scripts/chaos.sh [--seed S] [--iterations N] [--scenarios collect,critic_step,...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec .venv/bin/python scripts/chaos.py "$@"
