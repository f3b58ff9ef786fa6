#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs the project with its dev tools, once per pyproject change.
# Sourced by run.sh and test.sh; VENV is exported for them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CUSTOMLABELS_VENV:-$root/.venv}"
export VENV
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
[ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
stamp="$VENV/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $VENV (first run takes a few minutes)..." >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e "$root[dev]" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
