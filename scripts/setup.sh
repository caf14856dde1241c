#!/usr/bin/env bash
# Create ./.venv and install archer with its dev tools. Idempotent: re-running after a change to
# pyproject.toml reinstalls, otherwise it returns at once.
#
#   ARCHER_TORCH   the torch requirement to install first (default: torch==2.13.0, the CPU build
#                  these machines carry). On a CUDA machine install your CUDA torch first, e.g.
#                  ARCHER_TORCH="torch --index-url https://download.pytorch.org/whl/cu128".
#   PYTHON         interpreter used to create the venv (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_REQ=${ARCHER_TORCH:-torch==2.13.0}
VENV=.venv
STAMP=$VENV/.archer-installed

want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first, so nothing below pulls a multi-GB CUDA build on a CPU machine.
# shellcheck disable=SC2086
$PIP install -q $TORCH_REQ
# DeepSpeed ships as an sdist whose setup.py imports torch: build it against the torch above
# (no isolated build env) and compile no ops ahead of time.
DS_BUILD_OPS=0 $PIP install -q --no-build-isolation "deepspeed>=0.15"
$PIP install -q -e ".[dev]"
echo "$want" > "$STAMP"
