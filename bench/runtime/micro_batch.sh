#!/usr/bin/env bash
# Large batches in slices (Options::micro_batch, src/runtime/micro_batch.cpp): each case at batch
# BATCH with the runtime's choice, with the whole batch at once (--micro-batch -1) and at batch 1,
# alternating, the best of ROUNDS medians each, in ms per image. "per pass" is the runtime's choice
# of images per slice; "whole / choice" > 1 means the slices are faster.
#
#   bench/runtime/micro_batch.sh [BUILD_DIR] [THREADS] [ROUNDS]
#
# MODELS_DIR holds the models (default ../shared/models); CASES="file|HxW|precision ..." replaces
# the list (HxW "-" for a fixed input size); BATCH (default 32). r50.onnx, mbf.onnx and vit_t.onnx
# are `arcforge export --arch NAME --random-init --seed 0 --onnx DIR/NAME.onnx --no-verify`.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
cli="$build/bin/arcforge"
[ -x "$cli" ] || { echo "no $cli: build arcforge_cli first" >&2; exit 1; }
models=${MODELS_DIR:-../shared/models}
batch=${BATCH:-32}
cases=${CASES:-"scrfd_500m_bnkps.onnx|640x640|fp32 scrfd_500m_bnkps.onnx|640x640|bf16 paddle_mobilefacenet128.onnx|-|fp32 paddle_mobilefacenet128.onnx|-|bf16 mbf.onnx|-|fp32 r50.onnx|-|fp32 vit_t.onnx|-|fp32"}

ms_per_image() {  # file size precision batch micro_batch -> "ms per_pass"
  local extra=()
  [ "$2" != "-" ] && extra=(--input-size "$2")
  "$cli" bench-model "$models/$1" --batch "$4" --threads "$threads" --precision "$3" --micro-batch "$5" \
    "${extra[@]}" --json 2>/dev/null | /usr/bin/python3 -c \
    'import json, sys; d = json.load(sys.stdin); print(d["ms_per_image"], d["micro_batch"])'
}

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $threads threads, batch $batch, best of $rounds, $(date -u '+%F %H:%M UTC')"
echo "| model | input | precision | per pass | batch $batch whole | batch $batch, runtime's choice | batch 1 | whole / choice |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for c in $cases; do
  IFS='|' read -r file size precision <<<"$c"
  [ -f "$models/$file" ] || { echo "| $file | skipped: not in $models |"; continue; }
  best_whole=inf best_choice=inf best_one=inf per_pass=?
  for ((r = 0; r < rounds; r++)); do
    read -r t _ < <(ms_per_image "$file" "$size" "$precision" "$batch" -1)
    best_whole=$(/usr/bin/python3 -c "print(min(float('$best_whole'), $t))")
    read -r t per_pass < <(ms_per_image "$file" "$size" "$precision" "$batch" 0)
    best_choice=$(/usr/bin/python3 -c "print(min(float('$best_choice'), $t))")
    read -r t _ < <(ms_per_image "$file" "$size" "$precision" 1 0)
    best_one=$(/usr/bin/python3 -c "print(min(float('$best_one'), $t))")
  done
  /usr/bin/python3 -c "print('| $file | $size | $precision | $per_pass | %.2f | %.2f | %.2f | %.2f |' % ($best_whole, $best_choice, $best_one, $best_whole / $best_choice))"
done
