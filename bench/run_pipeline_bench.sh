#!/usr/bin/env bash
# The face pipeline end to end (decode -> SCRFD-500m at 640 -> align every face -> paddle
# MobileFaceNet-128) on ../shared/faces/deepface, arcforge next to "the same pipeline on ONNX Runtime"
# (ORT's model times, measured by pipeline_bench after each of its rounds with run_model.js --bench at
# the same thread count, x the calls arcforge made, + arcforge's non-model stages). Prints a markdown
# table, each precision with full-size and reduced decoding; see bench/pipeline_bench.cpp for what
# each stage covers.
#
#   bench/run_pipeline_bench.sh [BUILD_DIR] [THREADS] [ROUNDS] [PRECISIONS]
#   e.g. bench/run_pipeline_bench.sh build 2 3 fp32,bf16
# Builds the pipeline_bench target (EXCLUDE_FROM_ALL, needs ARCFORGE_DEPLOY=ON) in BUILD_DIR.
# ARCFORGE_SHARED_DIR overrides ../shared. On a loaded machine compare with OMP_WAIT_POLICY=passive:
# libgomp's spinning threads can make THREADS > 1 several times slower (see docs/results.md).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
precisions=${4:-fp32,bf16}
shared=${ARCFORGE_SHARED_DIR:-$(cd .. && pwd)/shared}
[ -d "$shared/faces/deepface" ] || { echo "no $shared/faces/deepface (set ARCFORGE_SHARED_DIR)" >&2; exit 1; }
[ -d tests/runtime/node/node_modules/onnxruntime-node ] || scripts/setup-deploy-deps.sh
cmake --build "$build" --target pipeline_bench -j 1 > /dev/null
echo "lscpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads=$threads, $(date -u '+%F %H:%M UTC')"
"$build/bench/pipeline_bench" --photos "$shared/faces/deepface" \
  --detector "$shared/models/scrfd_500m_bnkps.onnx" --recognizer "$shared/models/paddle_mobilefacenet128.onnx" \
  --spec "bgr,mean=127.5,std=128" --threads "$threads" --rounds "$rounds" --precision "$precisions" \
  --ort-script tests/runtime/node/run_model.js --reduced
