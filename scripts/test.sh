#!/usr/bin/env bash
# The test command: sets up .venv, then lint (ruff), types (mypy) and the tests (pytest).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k split`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy" converters plugin sync_service
"$VENV/bin/pytest" -q "$@"
