#!/usr/bin/env bash
# The GPU machine check (CUDA, CMake, ninja and Python PyTorch 2.x there; nothing else, no network).
# Builds the training side against that PyTorch's libtorch, checks CUDA against CPU numerics for
# every backbone and margin, trains mbf and r50 in fp32/bf16/fp16 on a fixed random batch (the
# training step alone, as arcface_torch's synthetic loader) and on rendered `synth` faces, runs the
# same models in the PyTorch Python recipe (bench/pytorch_train_bench.py) in the same call, measures
# the bf16 matrix-product rate for model FLOPs utilisation, and prints a table last.
# Run from the repository root with the carried .debs in .debs/ (scripts/fetch-device-debs.sh).
# Results go to $OUT (or ./device-out).
set -uo pipefail
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
STEPS=${STEPS:-40}
BATCH=${BATCH:-128}
CLASSES=${CLASSES:-10000}
# Sections to run after the build: check (CUDA vs CPU numerics), throughput (arcforge, with the
# matrix-product rate), phases (r50 bf16 with log.phase_timing, inside throughput), pytorch (the
# Python recipe), sweep (bench/synth_demo_sweep.sh, not default).
# augment (CPU vs CUDA rows of augment-preview for four option sets), pfc (Partial FC with
# PFC_CLASSES classes at sample rates 0.1 and 1.0), dist (`train --nproc 2` on CPU tensors: c10d
# Gloo as built against this libtorch; with two or more GPUs also one NCCL rank per GPU), sync
# (log.sync_check on synth, fp16, Partial FC and augmented folder training: no host sync inside a
# step), graphs (train.cuda_graph against eager on r50 bf16, mbf bf16 and mbf fp16: images/s
# and the logged losses side by side, then r50 bf16 replayed under log.sync_check), verdict
# (train.deferred_verdict off against on, the same runs), cpu (not
# default: CPU training fp32 vs bf16 on the host CPU next to PyTorch, bench/run_train_bench.sh:
# issue 2's "bf16 on AMX >= 2x fp32" where it has AMX).
SECTIONS=${SECTIONS:-graphs verdict check augment sync throughput phases pytorch pfc dist}
ARCHS=${ARCHS:-mbf r50}
PRECISIONS=${PRECISIONS:-fp32 bf16 fp16}
PFC_CLASSES=${PFC_CLASSES:-1000000}
# A section starts only if this many seconds of BUDGET_S (from the start) are left for it, so
# that what ran is written under $OUT before the call's time limit.
BUDGET_S=${BUDGET_S:-100000}
want() { [[ " $SECTIONS " == *" $1 "* ]] && (( BUDGET_S - SECONDS > ${2:-30} )); }
log() { echo "[device-check $(date +%T) +${SECONDS}s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
PYTHON=${PYTHON:-python3}
TORCH_PREFIX=$($PYTHON -c 'import torch; print(torch.utils.cmake_prefix_path)')
$PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/gpu.txt"

# Header-only libraries and the image codecs from the carried Debian packages.
PREFIX=$PWD/.prefix
mkdir -p "$PREFIX"
for deb in .debs/*.deb; do dpkg -x "$deb" "$PREFIX"; done
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
# The -dev packages' .so symlinks point at the runtime packages' files, unpacked beside them.
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

log "configure + build (training side only)"
# PyTorch's wheel ships c10d's headers but not gloo's: Debian's (carried) compile against them,
# and the gloo code itself is the copy inside libtorch_cpu, so Debian's libgloo is not linked.
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DARCFORGE_DEPLOY=OFF -DARCFORGE_TESTS=OFF \
  -DARCFORGE_GLOO_INCLUDE_DIR="$PREFIX/usr/include" -DARCFORGE_GLOO_LIBRARY=ARCFORGE_GLOO_LIBRARY-NOTFOUND \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include" \
  -DCMAKE_LIBRARY_PATH="$LIBDIR" > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
if ! cmake --build build-gpu --target arcforge_cli -j "$(nproc)" > "$OUT/build.log" 2>&1; then
  # The CPU kernels link the wheel's libgomp (train/CMakeLists.txt); if that is what failed, build
  # them serial rather than lose the run.
  grep -qi "gomp" "$OUT/build.log" && cmake -B build-gpu -DARCFORGE_TORCH_OPENMP=OFF >> "$OUT/configure.log" 2>&1 \
    && log "build failed on libgomp: again with ARCFORGE_TORCH_OPENMP=OFF" \
    && cmake --build build-gpu --target arcforge_cli -j "$(nproc)" >> "$OUT/build.log" 2>&1 \
    || { grep -E "error" -A5 "$OUT/build.log" | head -80; exit 1; }
fi
CLI=build-gpu/bin/arcforge
log "build done; CPU kernels' OpenMP: $(grep -o 'CPU kernels [^:]*' "$OUT/configure.log" | tail -1), loaded: $(ldd $CLI | grep -o 'libgomp[^ ]*' | sort -u | tr '\n' ' ')"

if want pfc 120; then
  log "Partial FC: $PFC_CLASSES classes, r50 bf16, batch $BATCH"
  : > "$OUT/pfc.jsonl"
  for rate in 0.1 1.0; do
    timeout 150 $CLI train --device cuda --arch r50 --precision bf16 --steps 30 --batch "$BATCH" \
      --out "runs/pfc_$rate" --set data.dataset=synthetic --set data.num_identities="$PFC_CLASSES" \
      --set dist.sample_rate="$rate" --set eval.pairs=0 --set log.every=10 --set checkpoint.every=0 --json \
      2> "$OUT/pfc_$rate.log" | tee -a "$OUT/pfc.jsonl" || tail -5 "$OUT/pfc_$rate.log"
    rm -rf "runs/pfc_$rate"  # gigabytes of class centres
  done
fi
if want check; then
  log "CUDA vs CPU numerics"
  timeout 120 $CLI check-device | tee "$OUT/check-device.txt"
fi
if want augment 90; then
  log "augmentation: CPU vs CUDA"
  ALL="--preset article --set shift_p=0.6 --set downup_p=0.6 --set blur_p=0.6 --set gray_p=0.3 --set color_p=0.6
       --set erase_p=0.6 --set rotate_p=0.6 --set scale_p=0.6 --set erase_area_max=0.2 --set erase_aspect_min=0.3"
  i=0
  for args in "--preset article" "--preset dali" "$ALL --set erase_fill=noise" \
              "$ALL --set erase_fill=mean --set max_rotate_deg=40 --set blur_sigma_max=3"; do
    i=$((i+1))
    for dev in cpu cuda; do
      # shellcheck disable=SC2086
      timeout 60 $CLI augment-preview $args --count 32 --variants 3 --seed 7 --threads 4 --device $dev \
        --out "$OUT/augment${i}_$dev.png" --npy "$OUT/augment${i}_$dev.npy" --json > /dev/null
    done
    $PYTHON -c "
import numpy as np
a = np.load('$OUT/augment${i}_cpu.npy'); b = np.load('$OUT/augment${i}_cuda.npy'); d = np.abs(a - b)
print('augment set $i', a.shape, 'max |cpu-cuda| =', d.max(), 'mean', d.mean(), 'ok' if d.max() < 1e-4 else 'FAIL')
" | tee -a "$OUT/augment.txt"
    rm -f "$OUT/augment${i}_cpu.npy" "$OUT/augment${i}_cuda.npy" "$OUT/augment${i}_cpu.png"
  done
fi
if want sync 90; then
  # log.sync_check: from the second step on, any host-device synchronisation inside a step other than
  # the finiteness verdict fails the run with the backtrace of the call (PyTorch's sync debug mode).
  log "host syncs inside the step (log.sync_check)"
  : > "$OUT/sync.jsonl"
  sync_train() {  # name, then train options
    local name=$1; shift
    TORCH_SHOW_CPP_STACKTRACES=1 timeout 90 $CLI train --device cuda --steps 8 --batch "$BATCH" --out "runs/sync_$name" \
      --set eval.pairs=0 --set log.every=4 --set checkpoint.every=0 --set log.sync_check=true --json "$@" \
      2> "$OUT/sync_$name.log" | tee -a "$OUT/sync.jsonl" \
      || { echo "sync check $name FAILED"; grep -m1 -B2 -A30 -i "synchroniz\|error" "$OUT/sync_$name.log"; }
  }
  sync_train r50_bf16_synth --arch r50 --precision bf16 --set data.dataset=synth
  sync_train mbf_fp16_synthetic --arch mbf --precision fp16 --set data.dataset=synthetic
  sync_train r50_bf16_pfc_100k --arch r50 --precision bf16 --set data.dataset=synthetic \
    --set data.num_identities=100000 --set dist.sample_rate=0.1
  $CLI synth-export runs/sync_folder --identities 40 --samples 8 > /dev/null \
    && sync_train mbf_bf16_folder_article --arch mbf --precision bf16 --set data.dataset=folder \
         --set data.path=runs/sync_folder --set augment.preset=article --set augment.erase_p=0.5
fi
# Two ways of issuing the same steps, side by side on the same data and seeds: the logged losses
# must agree to rounding (bench/compare_train_runs.py). name base variant, then per mode its options.
variant_runs() {  # section base variant base_options variant_options
  local section=$1 base=$2 variant=$3 base_opts=$4 variant_opts=$5
  : > "$OUT/$section.jsonl"
  for run in "r50 bf16" "mbf bf16" "mbf fp16"; do
    set -- $run
    for mode in "$base" "$variant"; do
      local opts=$base_opts; [[ $mode == "$variant" ]] && opts=$variant_opts
      printf '%s %s ' "$1_$2" "$mode" >> "$OUT/$section.jsonl"
      # shellcheck disable=SC2086
      timeout 120 $CLI train --device cuda --arch "$1" --precision "$2" --steps "$STEPS" --batch "$BATCH" \
        --out "runs/${section}_$1_$2_$mode" --set data.dataset=synthetic --set data.num_identities="$CLASSES" \
        --set eval.pairs=0 --set log.every=5 --set checkpoint.every=0 $opts --json \
        2> "$OUT/${section}_$1_$2_$mode.log" >> "$OUT/$section.jsonl" \
        || { echo >> "$OUT/$section.jsonl"; tail -5 "$OUT/${section}_$1_$2_$mode.log"; }
    done
  done
  $PYTHON bench/compare_train_runs.py "$OUT/$section.jsonl" "$base" "$variant" | tee "$OUT/$section.md"
}
if want graphs 90; then
  # fp16 also exercises skipped steps and loss-scale changes under a graph.
  log "CUDA graphs (train.cuda_graph) against eager"
  variant_runs graphs eager graph "--set train.cuda_graph=false" "--set train.cuda_graph=true"
  TORCH_SHOW_CPP_STACKTRACES=1 timeout 90 $CLI train --device cuda --arch r50 --precision bf16 --steps 8 --batch "$BATCH" \
    --out runs/graph_sync --set data.dataset=synth --set eval.pairs=0 --set checkpoint.every=0 \
    --set train.cuda_graph=true --set log.sync_check=true --json 2> "$OUT/graph_sync.log" | tee -a "$OUT/graphs.md" \
    || { echo "graph sync check FAILED"; grep -m1 -B2 -A30 -i "synchroniz\\|error" "$OUT/graph_sync.log"; }
fi
if want verdict 60; then
  # The skip decision read by the host every step against kept on the GPU (the CUDA default).
  log "train.deferred_verdict off against on"
  variant_runs verdict read_each_step deferred "--set train.deferred_verdict=off" "--set train.deferred_verdict=on"
fi
if want sweep; then
  log "make-demo settings sweep on synth"
  bash bench/synth_demo_sweep.sh "$CLI" runs/sweep | tee "$OUT/sweep.txt"
fi
if want throughput 60 || want pytorch 60; then

log "bf16 matrix-product rate"
PEAK=$($PYTHON bench/matmul_peak.py) && echo "$PEAK TFLOP/s" | tee "$OUT/peak.txt"
echo "{" > "$OUT/macs.json"
for arch in $ARCHS; do
  printf '"%s": %s,\n' "$arch" "$($CLI model-info "$arch" --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["macs"])')" >> "$OUT/macs.json"
done
echo '"_": 0}' >> "$OUT/macs.json"

log "training throughput (batch $BATCH, $CLASSES classes, $STEPS steps)"
: > "$OUT/train.jsonl"
train() {  # arch precision dataset
  timeout 120 $CLI train --device cuda --arch "$1" --precision "$2" --steps "$STEPS" --batch "$BATCH" \
    --out "runs/gpu_$1_$2_$3" --set data.dataset="$3" --set data.num_identities="$CLASSES" \
    --set eval.pairs=0 --set model.embedding_size=512 --set log.every=10 --json \
    2> "$OUT/train_$1_$2_$3.log" | tee -a "$OUT/train.jsonl" || tail -5 "$OUT/train_$1_$2_$3.log"
}
for arch in $ARCHS; do
  want throughput || break
  for precision in $PRECISIONS; do train "$arch" "$precision" synthetic; done
  train "$arch" bf16 synth
done

if want phases 40; then
  # Where an r50 bf16 step's time goes (log.phase_timing: synchronises after each phase, so slower):
  # host close to done = the GPU waits for kernel launches; done well above host = kernel-bound.
  log "r50 bf16 step phases"
  timeout 90 $CLI train --device cuda --arch r50 --precision bf16 --steps 20 --batch "$BATCH" \
    --out runs/gpu_phases --set data.dataset=synthetic --set data.num_identities="$CLASSES" \
    --set eval.pairs=0 --set model.embedding_size=512 --set log.every=10 --set log.phase_timing=true --json \
    2> "$OUT/phases.log" | tee "$OUT/phases.json" || tail -5 "$OUT/phases.log"
fi

log "PyTorch Python recipe, same models and head"
: > "$OUT/pytorch.jsonl"
for arch in $ARCHS; do
  for precision in $PRECISIONS; do
    want pytorch 20 || break
    timeout 120 $PYTHON bench/pytorch_train_bench.py --device cuda --arch "$arch" --precision "$precision" \
      --steps "$STEPS" --batch "$BATCH" --classes "$CLASSES" | tee -a "$OUT/pytorch.jsonl"
  done
done

log "summary"
$PYTHON bench/summarize_train_bench.py "$OUT/train.jsonl" "$OUT/pytorch.jsonl" "$OUT/macs.json" "${PEAK:-0}" \
  | tee "$OUT/summary.md"
fi

if want dist 60; then
  log "two ranks on c10d Gloo (CPU tensors), this libtorch"
  timeout 90 $CLI train --nproc 2 --device cpu --arch mbf --steps 3 --batch 8 --out runs/dist2 \
    --set data.num_identities=21 --set eval.pairs=0 --set model.embedding_size=64 --set dist.timeout_s=30 \
    --set log.every=1 --json 2> "$OUT/dist.log" | tee "$OUT/dist.jsonl" || tail -5 "$OUT/dist.log"
  head -1 runs/dist2/metrics.jsonl | tee -a "$OUT/dist.jsonl"
  GPUS=$(nvidia-smi -L | wc -l)
  if (( GPUS >= 2 )) && want dist 90; then
    # NCCL over every GPU (one rank each), r50 bf16; the log is kept whole: PyTorch 2.x warns at
    # exit when a NCCL process group was not shut down (C10dGroup's destructor should prevent it).
    log "$GPUS ranks on NCCL, one GPU each"
    timeout 150 $CLI train --nproc "$GPUS" --device cuda --arch r50 --precision bf16 --steps 30 --batch "$BATCH" \
      --out runs/nccl --set data.dataset=synthetic --set data.num_identities="$CLASSES" --set eval.pairs=0 \
      --set log.every=10 --set dist.timeout_s=60 --json 2> "$OUT/nccl.log" | tee "$OUT/nccl.jsonl" || tail -20 "$OUT/nccl.log"
    head -1 runs/nccl/metrics.jsonl | tee -a "$OUT/nccl.jsonl"
    grep -i -E "destroy_process_group|shutdown|leak" "$OUT/nccl.log" | head -5 || echo "no NCCL shutdown warning"
  fi
fi

if want cpu 120; then
  log "CPU training on the host CPU: $(lscpu | sed -n 's/^Model name: *//p'), AMX: $(grep -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  OUT="$OUT/cpu" PY=$PYTHON THREADS=${CPU_THREADS:-2} STEPS=${CPU_STEPS:-4} \
    timeout $((BUDGET_S - SECONDS > 30 ? BUDGET_S - SECONDS - 20 : 10)) bash bench/run_train_bench.sh build-gpu \
    | tee "$OUT/cpu_train.md"
fi
