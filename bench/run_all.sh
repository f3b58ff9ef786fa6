#!/usr/bin/env bash
# Every benchmark in turn (about 40 minutes on 2 cores), then one table of all targets (bench/report.py).
# Run on a quiet machine: the figures are wall-clock times. Extra arguments go to bench_sync.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh
"$VENV/bin/python" bench/bench_core.py
"$VENV/bin/python" bench/bench_publish.py
"$VENV/bin/python" bench/bench_sync.py "$@"
exec "$VENV/bin/python" bench/report.py
