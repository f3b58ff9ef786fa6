#!/usr/bin/env bash
# The test command: sets up .venv, then lint (ruff), types (mypy) and the tests (pytest).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k split`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh
# The console's browser test drives Debian's chromium (no browser download); install it when missing.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy" converters plugin sync_service
"$VENV/bin/pytest" -q "$@"
