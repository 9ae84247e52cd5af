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
# PRECISIONS (default "fp32 bf16 int8 int8+bf16"), BATCH (default 32), MODEL (default paddle's; e.g.
# `arcforge export --arch mbf --random-init`'s, whose groups of two channels the loop also runs).
# DETECTORS=1 times the detectors of ../shared/models instead, in fp32: their depthwise convs have
# ReLU, which oneDNN fuses, and which the loop takes on fp32 data only.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-5}
cli="$build/bin/arcforge"
[ -x "$cli" ] || { echo "no $cli: build arcforge_cli first" >&2; exit 1; }
shared=${ARCFORGE_SHARED_DIR:-../shared}
model=${MODEL:-$shared/models/paddle_mobilefacenet128.onnx}
batch=${BATCH:-32}
precisions=${PRECISIONS:-"fp32 bf16 int8 int8+bf16"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
int8=${INT8_MODEL:-$tmp/paddle.int8.onnx}
if [ -z "${INT8_MODEL:-}" ] && [ "${DETECTORS:-0}" != 1 ]; then
  "$cli" quantize "$model" --calib "$shared/faces/insightface/small_lfw.bin" --out "$int8" \
    --keep-fp32 depthwise,last --mean 127.5 --std 128 --bgr --threads "$threads" > /dev/null 2>&1
fi

# shellcheck source=switch_ab_lib.sh
source bench/runtime/switch_ab_lib.sh

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $threads threads, $rounds rounds, $(date -u '+%F %H:%M UTC')"
if [ "${DETECTORS:-0}" = 1 ]; then
  models="$shared/models"
  echo "| model, precision | batch | loop | oneDNN (ReLU fused) | oneDNN / loop |"
  echo "| --- | --- | --- | --- | --- |"
  # file, input size (- for the file's own), batches
  for c in "scrfd_500m_bnkps 640x640 1 8" "scrfd_2.5g_bnkps 640x640 1" "yunet_n_320_320 - 1" "version-RFB-320 - 1"; do
    read -r file size batches <<< "$c"
    [ "$size" = - ] && size=""
    for b in $batches; do
      switch_ab_row "$file, " ARCFORGE_RUNTIME_DEPTHWISE "$models/$file.onnx" fp32 "$b" "$size"
    done
  done
  exit 0
fi
echo "| precision | batch | loop | oneDNN + PReLU pass | oneDNN / loop |"
echo "| --- | --- | --- | --- | --- |"
for precision in $precisions; do
  file=$model
  [[ $precision == int8* ]] && file=$int8
  for b in 1 "$batch"; do
    switch_ab_row "" ARCFORGE_RUNTIME_DEPTHWISE "$file" "$precision" "$b"
  done
done
