#!/usr/bin/env bash
# arcforge runtime fp32 vs ONNX Runtime (npm onnxruntime-node), side by side in one run, same thread
# count. Each pair is measured ROUNDS times alternately (so both see the same machine load) and the
# best median of each is kept. Prints a markdown table: ms per image and ratio ORT / arcforge.
#
#   bench/runtime/compare_ort.sh [BUILD_DIR] [THREADS] [ROUNDS]
# Models are read from ../shared/models (ARCFORGE_SHARED_DIR overrides the shared folder).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
shared=${ARCFORGE_SHARED_DIR:-../shared}
cli="$build/bin/arcforge"
node_script=tests/runtime/node/run_model.js
[ -x "$cli" ] || { echo "no $cli: build arcforge_cli first" >&2; exit 1; }
[ -d tests/runtime/node/node_modules/onnxruntime-node ] || scripts/setup-deploy-deps.sh

# model | HxW | batch
cases=(
  "paddle_mobilefacenet128.onnx|112x112|1"
  "paddle_mobilefacenet128.onnx|112x112|32"
  "scrfd_500m_bnkps.onnx|640x640|1"
  "scrfd_500m_bnkps.onnx|640x640|32"
)
# ARCFORGE_BENCH_CASES="model|HxW|batch;..." replaces the list.
if [ -n "${ARCFORGE_BENCH_CASES:-}" ]; then IFS=';' read -r -a cases <<< "$ARCFORGE_BENCH_CASES"; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads=$threads, $(date -u '+%F %H:%M UTC')," \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | input | batch | arcforge fp32 ms/image | ONNX Runtime fp32 ms/image | ORT / arcforge |"
echo "| --- | --- | --- | --- | --- | --- |"
for c in "${cases[@]}"; do
  IFS='|' read -r model hw batch <<< "$c"
  path="$shared/models/$model"
  h=${hw%x*}
  w=${hw#*x}
  best_ours=""
  best_ort=""
  for ((r = 0; r < rounds; ++r)); do
    ours=$("$cli" bench-model "$path" --batch "$batch" --threads "$threads" --input-size "$hw" --json |
      node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).ms_per_image))')
    ort=$(node "$node_script" "$path" "$tmp/out" "random:${batch}x3x${h}x${w}" --threads "$threads" --bench 10 |
      node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).median_ms/$batch))")
    best_ours=$(node -e "console.log(Math.min(${best_ours:-Infinity}, $ours))")
    best_ort=$(node -e "console.log(Math.min(${best_ort:-Infinity}, $ort))")
  done
  ratio=$(node -e "console.log(($best_ort / $best_ours).toFixed(2))")
  printf "| %s | %s | %s | %.2f | %.2f | %s |\n" "$model" "$hw" "$batch" "$best_ours" "$best_ort" "$ratio"
done
