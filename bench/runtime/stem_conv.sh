#!/usr/bin/env bash
# arcforge's stem loop (docs/runtime.md, "The stem loop") against oneDNN's reorder of the planar
# input and its convolution (ARCFORGE_RUNTIME_STEM=0): the detectors of ../shared/models and paddle
# MobileFaceNet-128 in fp32 and bf16, the two alternating within each of ROUNDS rounds. Prints the
# median ms per image of each and "oneDNN / loop" (> 1: the loop is faster), the median of the
# per-round ratios.
#
#   bench/runtime/stem_conv.sh [BUILD_DIR] [THREADS] [ROUNDS]
#
# PRECISIONS (default "fp32 bf16"; bf16 rows only where the CPU runs bf16 natively).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-5}
cli="$build/bin/arcforge"
[ -x "$cli" ] || { echo "no $cli: build arcforge_cli first" >&2; exit 1; }
models="${ARCFORGE_SHARED_DIR:-../shared}/models"
precisions=${PRECISIONS:-"fp32 bf16"}
grep -q avx512_bf16 /proc/cpuinfo || precisions=${precisions//bf16/}

# shellcheck source=switch_ab_lib.sh
source bench/runtime/switch_ab_lib.sh

# file, input size (- for the file's own), batches
cases=(
  "scrfd_500m_bnkps.onnx 640x640 1 8"
  "scrfd_2.5g_bnkps.onnx 640x640 1"
  "yunet_n_320_320.onnx - 1"
  "version-RFB-320.onnx - 1"
  "paddle_mobilefacenet128.onnx - 1 32"
)
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $threads threads, $rounds rounds, $(date -u '+%F %H:%M UTC')"
echo "| model, precision | batch | loop | oneDNN reorder + conv | oneDNN / loop |"
echo "| --- | --- | --- | --- | --- |"
for c in "${cases[@]}"; do
  read -r file size batches <<< "$c"
  [ "$size" = - ] && size=""
  for precision in $precisions; do
    for b in $batches; do
      switch_ab_row "${file%.onnx}, " ARCFORGE_RUNTIME_STEM "$models/$file" "$precision" "$b" "$size"
    done
  done
done
