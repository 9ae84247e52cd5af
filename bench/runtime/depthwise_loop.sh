#!/usr/bin/env bash
# arcforge's depthwise loop (docs/runtime.md, "The depthwise loop") against oneDNN's depthwise kernel
# and its separate PReLU pass (ARCFORGE_RUNTIME_DEPTHWISE=0): paddle MobileFaceNet-128 at each
# precision, batch 1 and BATCH, the two alternating within each of ROUNDS rounds. Prints the median
# ms per image of each and "oneDNN / loop" (> 1: the loop is faster), the median of the per-round
# ratios.
#
#   bench/runtime/depthwise_loop.sh [BUILD_DIR] [THREADS] [ROUNDS]
#
# The int8 file is made here as compare_precisions.sh makes it (INT8_MODEL=FILE uses that one);
# PRECISIONS (default "fp32 bf16 int8 int8+bf16"), BATCH (default 32).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-5}
cli="$build/bin/arcforge"
[ -x "$cli" ] || { echo "no $cli: build arcforge_cli first" >&2; exit 1; }
shared=${ARCFORGE_SHARED_DIR:-../shared}
model="$shared/models/paddle_mobilefacenet128.onnx"
batch=${BATCH:-32}
precisions=${PRECISIONS:-"fp32 bf16 int8 int8+bf16"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
int8=${INT8_MODEL:-$tmp/paddle.int8.onnx}
if [ -z "${INT8_MODEL:-}" ]; then
  "$cli" quantize "$model" --calib "$shared/faces/insightface/small_lfw.bin" --out "$int8" \
    --keep-fp32 depthwise,last --mean 127.5 --std 128 --bgr --threads "$threads" > /dev/null 2>&1
fi

ms_per_image() {  # file precision batch depthwise(1/0)
  ARCFORGE_RUNTIME_DEPTHWISE=$4 "$cli" bench-model "$1" --precision "$2" --batch "$3" --threads "$threads" \
    --json 2>/dev/null | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["ms_per_image"])'
}

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $threads threads, $rounds rounds, $(date -u '+%F %H:%M UTC')"
echo "| precision | batch | loop | oneDNN + PReLU pass | oneDNN / loop |"
echo "| --- | --- | --- | --- | --- |"
for precision in $precisions; do
  file=$model
  [[ $precision == int8* ]] && file=$int8
  for b in 1 "$batch"; do
    loop=() onednn=()
    for ((r = 0; r < rounds; r++)); do
      loop+=("$(ms_per_image "$file" "$precision" "$b" 1)")
      onednn+=("$(ms_per_image "$file" "$precision" "$b" 0)")
    done
    /usr/bin/python3 - "$precision" "$b" "${loop[*]}" "${onednn[*]}" <<'PY'
import statistics, sys
precision, batch, loop, onednn = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
loop, onednn = [float(v) for v in loop], [float(v) for v in onednn]
ratio = statistics.median(o / l for l, o in zip(loop, onednn))
print(f"| {precision} | {batch} | {statistics.median(loop):.3f} | {statistics.median(onednn):.3f} | {ratio:.3f} |")
PY
  done
done
