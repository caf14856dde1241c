#!/usr/bin/env bash
# Set up (if needed) and run the tests. Without arguments: the default suite (no slow,
# distributed or gpu tests), then the distributed lane (real Ray and DeepSpeed ranks; a few
# minutes). Extra arguments go to one pytest run instead, e.g. `scripts/test.sh -m slow`,
# `scripts/test.sh -m ""` (everything) or `scripts/test.sh tests/bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
exec .venv/bin/python -m pytest -m "distributed and not slow and not gpu"
