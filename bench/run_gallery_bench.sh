#!/usr/bin/env bash
# VectorIndex (flat, int8, hnsw, ivfpq) next to the same FAISS indexes used directly, on synthetic
# 512-d face-like embeddings (see bench/gallery_bench.cpp for what is measured and how). Runs with
# OMP_NUM_THREADS=2 and OMP_WAIT_POLICY=passive (libgomp's spinning threads distort timings on a
# shared machine), names the machine, and writes bench/out/gallery_bench.{md,json}.
#
#   bench/run_gallery_bench.sh [BUILD_DIR] [SIZES] [KINDS] [extra gallery_bench options...]
#   e.g. bench/run_gallery_bench.sh build 10k,100k flat,int8,hnsw,ivfpq
#        GALLERY_BENCH_NAME=gallery_bench_1m bench/run_gallery_bench.sh build 1m flat,int8,ivfpq
# --skip-faiss KINDS leaves out the FAISS-direct side of those kinds (e.g. hnsw at 1M, whose scalar
# build takes hours); --hnsw-large-from N is passed through to gallery_bench (see its --help).
# Builds the gallery_bench target (EXCLUDE_FROM_ALL, needs ARCFORGE_DEPLOY=ON) in BUILD_DIR.
# GALLERY_BENCH_NAME changes the output file names (default gallery_bench).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
sizes=${2:-10k,100k}
kinds=${3:-flat,int8,hnsw,ivfpq}
shift $(( $# < 3 ? $# : 3 ))
name=${GALLERY_BENCH_NAME:-gallery_bench}
mkdir -p bench/out
cmake --build "$build" --target gallery_bench -j 1 > /dev/null
{
  echo "lscpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads=2, OMP_WAIT_POLICY=passive, $(date -u '+%F %H:%M UTC')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine slows both sides alike)"
  echo
  OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive "$build/bench/gallery_bench" --sizes "$sizes" --kinds "$kinds" \
    --json "bench/out/$name.json" "$@"
  echo
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "bench/out/$name.md"
