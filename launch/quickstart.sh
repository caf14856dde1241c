#!/usr/bin/env bash
# Set up (if needed) and run the main job on this machine's CPU. Extra arguments are
# `key=value` config overrides passed to `archer quickstart`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/archer quickstart "$@"
