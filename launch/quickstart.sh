#!/usr/bin/env bash
# Set up (if needed) and run the main job on this machine's CPU: `archer train` with its
# defaults (an SFT warm start on scripted Twenty Questions data, then ArCHer with Ray rollout
# workers and the DeepSpeed actor). Extra arguments are `key=value` config overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/archer train "$@"
