#!/usr/bin/env bash
# The main job, for now: sets up .venv and runs the bundled sample through the core:
# Label Studio export -> Ground Truth manifest -> validation -> train/test split.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh
out="${1:-out/sample}"
mkdir -p "$out"
cl="$VENV/bin/customlabels"
samples=plugin/samples
"$cl" convert ls-to-manifest "$samples/tasks.json" -o "$out/dataset.manifest" \
  --label-config "$samples/label_config.xml" --image-meta "$samples/image_meta.jsonl" --job-name labeling-job/demo
"$cl" split "$out/dataset.manifest" --train-out "$out/train.manifest" --test-out "$out/test.manifest" --seed 7
"$cl" validate "$out/train.manifest" --test "$out/test.manifest" --output-dir "$out/validation" \
  --image-meta "$samples/image_meta.jsonl" || true
echo
echo "manifest: $out/dataset.manifest"
cat "$out/dataset.manifest"
