#!/usr/bin/env bash
# The main job: sets up .venv, then runs `customlabels up`: Label Studio, an S3 store, Redis, the sync
# service and a worker on this machine, with a demo project; Ctrl-C stops them, the data stays in
# ./.customlabels. Arguments go to `customlabels up` (e.g. --detach, --ls-port 8081).
#
#   bash scripts/run.sh --sample [OUT]   instead runs the bundled sample through the core only:
#                                        Label Studio export -> manifest -> split -> validation
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh
cl="$VENV/bin/customlabels"

if [ "${1:-}" = "--sample" ]; then
  out="${2:-out/sample}"
  mkdir -p "$out"
  samples=plugin/samples
  "$cl" convert ls-to-manifest "$samples/tasks.json" -o "$out/dataset.manifest" \
    --label-config "$samples/label_config.xml" --image-meta "$samples/image_meta.jsonl" --job-name labeling-job/demo
  "$cl" split "$out/dataset.manifest" --train-out "$out/train.manifest" --test-out "$out/test.manifest" --seed 7
  "$cl" validate "$out/train.manifest" --test "$out/test.manifest" --output-dir "$out/validation" \
    --image-meta "$samples/image_meta.jsonl" || true
  echo
  echo "manifest: $out/dataset.manifest"
  cat "$out/dataset.manifest"
  exit 0
fi

# `up` installs Label Studio (pip) and the S3 store (npm) itself; Node.js and, when no Redis answers,
# redis-server come from the system: install them when missing and we may (root with apt-get).
missing=()
command -v node >/dev/null && command -v npm >/dev/null || [ -n "${CUSTOMLABELS_S3_ENDPOINT:-}" ] || missing+=(nodejs npm)
command -v redis-server >/dev/null || "$VENV/bin/python" -c \
  'import os, redis, sys; sys.exit(0 if redis.Redis.from_url(os.environ.get("CUSTOMLABELS_REDIS_URL") or "redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping() else 1)' \
  2>/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (Debian packages)..." >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "note: customlabels up needs ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
  fi
fi
exec "$cl" up "$@"
