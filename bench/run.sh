#!/usr/bin/env bash
# Run every benchmark once and write bench/RESULTS.md (machine line + table).
# Usage: bash bench/run.sh [--only copy tokens import merchants deferrable triggerer]
# (triggerer also writes bench/RESULTS-triggerer.md; for other sizes or trigger classes run
# bench/triggerer.py directly: see its --help)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_env.sh
venv=$(make_env 3.3)
"$venv/bin/python" bench/run.py "$@" --markdown bench/RESULTS.md
