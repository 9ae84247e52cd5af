#!/usr/bin/env bash
# CPU training throughput, arcforge next to the PyTorch Python recipe (bench/pytorch_train_bench.py,
# Debian python3-torch) in the same run: mbf and r50 (ARCHS="mbf r50 vit_t" adds the ViT), batch 64,
# 10k classes, fp32 and bf16.
# Usage: bench/run_train_bench.sh [build-dir]   (THREADS, STEPS, BATCH, CLASSES, ARCHS, PRECISIONS)
set -euo pipefail
BUILD=${1:-build}
THREADS=${THREADS:-2}
STEPS=${STEPS:-8}
BATCH=${BATCH:-64}
CLASSES=${CLASSES:-10000}
ARCHS=${ARCHS:-"mbf r50"}
PRECISIONS=${PRECISIONS:-"fp32 bf16"}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
PY=${PY:-/usr/bin/python3}  # the GPU machine passes its own PyTorch's python
$PY -c "import torch" 2>/dev/null || { echo "needs Debian's python3-torch: apt-get install python3-torch"; exit 1; }
TCMALLOC=${TCMALLOC:-/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4}
[ -f "$TCMALLOC" ] || TCMALLOC=""
: > "$OUT/arcforge.jsonl"
: > "$OUT/pytorch.jsonl"
for arch in $ARCHS; do
  for precision in $PRECISIONS; do
    # Warm-up steps are excluded from throughput by both sides (arcforge: the first 3 of a run).
    "$BUILD/bin/arcforge" train --device cpu --threads "$THREADS" --arch "$arch" --precision "$precision" \
      --steps $((STEPS + 3)) --batch "$BATCH" --out "$OUT/run_${arch}_${precision}" \
      --set data.dataset=synthetic --set data.num_identities="$CLASSES" --set eval.pairs=0 \
      --set checkpoint.every=0 --json \
      2>/dev/null | tee -a "$OUT/arcforge.jsonl"
    # Both sides with tcmalloc (arcforge links it): glibc malloc's page faults cost ~10x on this VM.
    LD_PRELOAD=$TCMALLOC $PY bench/pytorch_train_bench.py --device cpu --threads "$THREADS" --arch "$arch" --precision "$precision" \
      --steps "$STEPS" --warmup 3 --batch "$BATCH" --classes "$CLASSES" | tee -a "$OUT/pytorch.jsonl"
  done
done
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads, AMX: $(grep -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
$PY bench/summarize_train_bench.py "$OUT/arcforge.jsonl" "$OUT/pytorch.jsonl"
