#!/usr/bin/env bash
# arcforge fp32 / bf16 / int8 / int8+bf16 against ONNX Runtime (fp32 model, and the same QDQ model) on
# paddle MobileFaceNet-128, alternating ROUNDS times and keeping each one's best median. The int8
# model is made here with `arcforge quantize` (mse, calibrated on small_lfw.bin, depthwise and last
# conv kept in fp32) unless INT8_MODEL names one. Prints a markdown table of ms per image.
#
#   bench/runtime/compare_precisions.sh [BUILD_DIR] [THREADS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
shared=${ARCFORGE_SHARED_DIR:-../shared}
cli="$build/bin/arcforge"
node_script=tests/runtime/node/run_model.js
model="$shared/models/paddle_mobilefacenet128.onnx"
[ -x "$cli" ] || { echo "no $cli: build arcforge_cli first" >&2; exit 1; }
[ -d tests/runtime/node/node_modules/onnxruntime-node ] || scripts/setup-deploy-deps.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
int8=${INT8_MODEL:-$tmp/mbf.int8.onnx}
if [ -z "${INT8_MODEL:-}" ]; then
  "$cli" quantize "$model" --calib "$shared/faces/insightface/small_lfw.bin" --out "$int8" \
    --keep-fp32 depthwise,last --mean 127.5 --std 128 --bgr --threads "$threads" > /dev/null 2>&1
fi
json_field() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).$1))"; }
ours() {  # file precision batch
  "$cli" bench-model "$1" --precision "$2" --batch "$3" --threads "$threads" --json | json_field ms_per_image
}
ort() {  # file batch
  node "$node_script" "$1" "$tmp/out" "random:${2}x3x112x112" --threads "$threads" --bench 20 | json_field median_ms |
    node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(Number(s)/$2))"
}
min() { node -e "console.log(Math.min(${1:-Infinity}, $2))"; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads=$threads, $(date -u '+%F %H:%M UTC')," \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| batch | arcforge fp32 | arcforge bf16 | arcforge int8 | arcforge int8+bf16 | ORT fp32 | ORT int8 (same QDQ file) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for batch in 1 32; do
  f=""; b=""; i=""; ib=""; o=""; oq=""
  for ((r = 0; r < rounds; ++r)); do
    f=$(min "$f" "$(ours "$model" fp32 "$batch")")
    b=$(min "$b" "$(ours "$model" bf16 "$batch")")
    i=$(min "$i" "$(ours "$int8" int8 "$batch")")
    ib=$(min "$ib" "$(ours "$int8" int8+bf16 "$batch")")
    o=$(min "$o" "$(ort "$model" "$batch")")
    oq=$(min "$oq" "$(ort "$int8" "$batch")")
  done
  printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n" "$batch" "$f" "$b" "$i" "$ib" "$o" "$oq"
done
echo
echo "(ms per image, best median of $rounds rounds)"
