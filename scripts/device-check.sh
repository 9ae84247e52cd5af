#!/usr/bin/env bash
# The GPU machine check (CUDA, CMake, ninja and Python PyTorch 2.x there; nothing else, no network).
# Builds the training side against that PyTorch's libtorch, checks CUDA against CPU numerics for
# every backbone and margin, trains mbf and r50 on synth in fp32/bf16/fp16, runs the same models in
# the PyTorch Python recipe (bench/pytorch_train_bench.py) for comparison, and prints a table last.
# Run from the repository root with the header-only .debs carried in .debs/ (scripts/fetch-device-debs.sh).
# Results go to $OUT (or ./device-out).
set -uo pipefail
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
STEPS=${STEPS:-40}
BATCH=${BATCH:-128}
CLASSES=${CLASSES:-10000}
log() { echo "[device-check $(date +%T)] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
PYTHON=${PYTHON:-python3}
TORCH_PREFIX=$($PYTHON -c 'import torch; print(torch.utils.cmake_prefix_path)')
$PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/gpu.txt"

# Header-only dependencies (nlohmann-json, CLI11, toml++) from the carried Debian packages.
PREFIX=$PWD/.prefix
mkdir -p "$PREFIX"
for deb in .debs/*.deb; do dpkg -x "$deb" "$PREFIX"; done

log "configure + build (training side only)"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DARCFORGE_DEPLOY=OFF -DARCFORGE_TESTS=OFF \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include" \
  > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
cmake --build build-gpu --target arcforge_cli -j "$(nproc)" > "$OUT/build.log" 2>&1 \
  || { grep -E "error" -A5 "$OUT/build.log" | head -80; exit 1; }
CLI=build-gpu/bin/arcforge
log "build done"

log "CUDA vs CPU numerics"
$CLI check-device | tee "$OUT/check-device.txt"

log "training throughput (batch $BATCH, $CLASSES classes, $STEPS steps)"
: > "$OUT/train.jsonl"
for arch in mbf r50; do
  for precision in fp32 bf16 fp16; do
    $CLI train --device cuda --arch "$arch" --precision "$precision" --steps "$STEPS" --batch "$BATCH" \
      --out "runs/gpu_${arch}_${precision}" --set data.num_identities="$CLASSES" --set eval.pairs=0 \
      --set model.embedding_size=512 --set log.every=10 --json 2> "$OUT/train_${arch}_${precision}.log" \
      | tee -a "$OUT/train.jsonl" || tail -5 "$OUT/train_${arch}_${precision}.log"
  done
done

log "PyTorch Python recipe, same models and head"
[ -n "${SKIP_PYTORCH:-}" ] && [ -f "$SKIP_PYTORCH" ] && cp "$SKIP_PYTORCH" "$OUT/pytorch.jsonl"
[ -n "${SKIP_PYTORCH:-}" ] || : > "$OUT/pytorch.jsonl"
for arch in $([ -n "${SKIP_PYTORCH:-}" ] || echo mbf r50); do
  for precision in fp32 bf16 fp16; do
    $PYTHON bench/pytorch_train_bench.py --device cuda --arch "$arch" --precision "$precision" \
      --steps "$STEPS" --batch "$BATCH" --classes "$CLASSES" | tee -a "$OUT/pytorch.jsonl"
  done
done

log "summary"
$PYTHON bench/summarize_train_bench.py "$OUT/train.jsonl" "$OUT/pytorch.jsonl" | tee "$OUT/summary.md"
