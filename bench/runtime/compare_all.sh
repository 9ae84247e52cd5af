#!/usr/bin/env bash
# Every CPU engine on the same models, side by side in one run, same thread count: ONNX Runtime
# fp32 and int8 (npm onnxruntime-node, on the QDQ file `arcforge quantize` writes), OpenCV DNN fp32,
# libtorch fp32 (the trainable backbone itself, `arcforge bench-torch`), and arcforge's runtime fp32,
# bf16, int8 and int8+bf16 (`arcforge bench-model`). For each case the engines run ROUNDS times, one after the
# other, the starting engine rotating each round so that all see the same machine load; each keeps
# its best median. Every engine: 3 warm-up runs, then the median of REPEATS timed runs (20 at
# batch 1, 5 above; BENCH_REPEATS overrides) on a seeded uniform [-1, 1) input.
# Prints a machine line and one markdown table (ms per image; ORT fp32 / engine in brackets).
#
#   bench/runtime/compare_all.sh [BUILD_DIR] [THREADS] [ROUNDS]
#
# Models: ../shared/models/paddle_mobilefacenet128.onnx and scrfd_500m_bnkps.onnx
# (ARCFORGE_SHARED_DIR overrides the shared folder), and r50/mbf/vit_t exported here with random weights
# (`arcforge export --random-init`). BENCH_MODELS_DIR keeps the exported and quantized files between
# runs (default: a temporary folder). ARCFORGE_BENCH_CASES="model|HxW|batch;..." replaces the case
# list (model: paddle, r50, mbf, vit_t or scrfd). Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
shared=${ARCFORGE_SHARED_DIR:-../shared}
cli="$build/bin/arcforge"
node_script=tests/runtime/node/run_model.js
opencv_script=bench/runtime/opencv_dnn_bench.py
calib="$shared/faces/insightface/small_lfw.bin"
[ -x "$cli" ] || { echo "no $cli: build arcforge_cli (training + deployment build) first" >&2; exit 1; }
"$cli" bench-torch --help > /dev/null 2>&1 || { echo "$cli has no bench-torch: it needs -DARCFORGE_TRAIN=ON" >&2; exit 1; }
[ -d tests/runtime/node/node_modules/onnxruntime-node ] || scripts/setup-deploy-deps.sh

# OpenCV DNN is a benchmark-only dependency: Debian's python3-opencv (and python3-onnx, to fix
# SCRFD's symbolic input size, which OpenCV 4.6 cannot import). They land in /usr/bin/python3,
# which may not be the python3 on PATH (pyenv).
python=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c "import cv2, onnx" > /dev/null 2>&1; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  echo "compare_all: installing python3-opencv python3-onnx (benchmark only)" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-opencv python3-onnx > /dev/null
  python=/usr/bin/python3
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
models=${BENCH_MODELS_DIR:-$tmp/models}
mkdir -p "$models"

# name -> fp32 file, int8 file ("" = skipped), libtorch arch ("" = not a trainable backbone).
model_file() {
  case $1 in
    paddle) echo "$shared/models/paddle_mobilefacenet128.onnx" ;;
    scrfd) echo "$shared/models/scrfd_500m_bnkps.onnx" ;;
    r50 | mbf | vit_t) echo "$models/$1.onnx" ;;
    *) echo "unknown model '$1' (paddle, r50, mbf, vit_t, scrfd)" >&2; exit 1 ;;
  esac
}
# SCRFD has no int8 file: calibration feeds aligned 112x112 faces, not the 640x640 scenes a
# detector sees, so its activation ranges would be wrong.
int8_file() { case $1 in scrfd) echo "" ;; *) echo "$models/$1.int8.onnx" ;; esac; }
torch_arch() { case $1 in r50 | mbf | vit_t) echo "$1" ;; *) echo "" ;; esac; }

prepare() {  # name: export (random weights, seed 0) and quantize when the files are missing
  local name=$1 fp32 int8
  fp32=$(model_file "$name")
  int8=$(int8_file "$name")
  [ -f "$fp32" ] || [ -n "$(torch_arch "$name")" ] || { echo "no $fp32" >&2; exit 1; }
  if [ ! -f "$fp32" ]; then
    echo "compare_all: exporting $name" >&2
    "$cli" export --arch "$name" --random-init --onnx "$fp32" --threads "$threads" > /dev/null
  fi
  if [ -n "$int8" ] && [ ! -f "$int8" ]; then
    echo "compare_all: quantizing $name" >&2
    local pre=()  # paddle's pre-processing (BGR, (x - 127.5) / 128); the exports carry a sidecar
    [ "$name" = paddle ] && pre=(--mean 127.5 --std 128 --bgr)
    # CNNs: convolutions, depthwise and last kept in fp32. vit_t: its Gemms too (the patch
    # embedding is its only convolution), the last Gemm (the embedding) kept.
    local what=(--keep-fp32 depthwise,last)
    [ "$name" = vit_t ] && what=(--ops Conv,Gemm --keep-fp32 last)
    "$cli" quantize "$fp32" --calib "$calib" --out "$int8" "${what[@]}" "${pre[@]}" \
      --threads "$threads" > /dev/null
  fi
}

cases=(
  "paddle|112x112|1" "paddle|112x112|32"
  "r50|112x112|1" "r50|112x112|32"
  "mbf|112x112|1" "mbf|112x112|32"
  "vit_t|112x112|1" "vit_t|112x112|32"
  "scrfd|640x640|1" "scrfd|640x640|8"
)
if [ -n "${ARCFORGE_BENCH_CASES:-}" ]; then IFS=';' read -r -a cases <<< "$ARCFORGE_BENCH_CASES"; fi

json_field() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).$1))"; }
log="$tmp/errors.log"

# One measurement: prints ms per image, or nothing when the engine failed (its stderr goes to $log).
measure() {  # engine name batch hw repeats
  local engine=$1 name=$2 batch=$3 hw=$4 repeats=$5 file
  file=$(model_file "$name")
  case $engine in
    ort_fp32 | ort_int8)
      [ "$engine" = ort_int8 ] && file=$(int8_file "$name")
      node "$node_script" "$file" "$tmp/out" "random:${batch}x3x${hw%x*}x${hw#*x}" --threads "$threads" \
        --bench "$repeats" 2>> "$log" | json_field median_ms | node -e \
        "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(Number(s)/$batch))" ;;
    opencv)
      "$python" "$opencv_script" "$file" --batch "$batch" --input-size "$hw" --threads "$threads" \
        --repeats "$repeats" 2>> "$log" | json_field ms_per_image ;;
    torch)
      "$cli" bench-torch --arch "$(torch_arch "$name")" --batch "$batch" --threads "$threads" --repeats "$repeats" \
        --json 2>> "$log" | json_field ms_per_image ;;
    ours_fp32 | ours_bf16 | ours_int8 | ours_int8+bf16)
      [[ "$engine" = ours_int8* ]] && file=$(int8_file "$name")
      "$cli" bench-model "$file" --precision "${engine#ours_}" --batch "$batch" --threads "$threads" \
        --input-size "$hw" --repeats "$repeats" --json 2>> "$log" | json_field ms_per_image ;;
  esac
}

columns=(ort_fp32 ort_int8 opencv torch ours_fp32 ours_bf16 ours_int8 ours_int8+bf16)
applies() {  # engine name
  case $1 in
    ort_int8 | ours_int8 | ours_int8+bf16) [ -n "$(int8_file "$2")" ] ;;
    torch) [ -n "$(torch_arch "$2")" ] ;;
    *) true ;;
  esac
}

for c in "${cases[@]}"; do prepare "${c%%|*}"; done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
for c in "${cases[@]}"; do
  IFS='|' read -r name hw batch <<< "$c"
  repeats=${BENCH_REPEATS:-$([ "$batch" -eq 1 ] && echo 20 || echo 5)}
  engines=()
  for e in "${columns[@]}"; do applies "$e" "$name" && engines+=("$e"); done
  declare -A best=()
  for ((r = 0; r < rounds; ++r)); do
    for ((k = 0; k < ${#engines[@]}; ++k)); do
      e=${engines[$(((k + r) % ${#engines[@]}))]}
      ms=$(measure "$e" "$name" "$batch" "$hw" "$repeats" || true)
      echo "compare_all: $name $hw batch $batch round $((r + 1)) $e: ${ms:-failed} ms/image" >&2
      [[ "$ms" =~ ^[0-9.e+-]+$ ]] || continue
      best[$e]=$(node -e "console.log(Math.min(${best[$e]:-Infinity}, $ms))")
    done
  done
  row="| $(basename "$(model_file "$name")") | $hw | $batch |"
  for e in "${columns[@]}"; do
    if ! applies "$e" "$name"; then
      row+=" n/a |"
    elif [ -z "${best[$e]:-}" ]; then
      row+=" failed |"
    elif [ "$e" = ort_fp32 ]; then
      row+=" $(printf %.2f "${best[$e]}") |"
    elif [ -z "${best[ort_fp32]:-}" ]; then
      row+=" $(printf %.2f "${best[$e]}") |"
    else
      row+=" $(node -e "console.log(${best[$e]}.toFixed(2) + ' (' + (${best[ort_fp32]} / ${best[$e]}).toFixed(2) + 'x)')") |"
    fi
  done
  rows+=("$row")
  unset best
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads=$threads, $(date -u '+%F %H:%M UTC')," \
  "load average before: $load_before, after: $load_after, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}," \
  "rounds=$rounds"
echo
echo "| model | input | batch | ORT fp32 | ORT int8 | OpenCV DNN fp32 | libtorch fp32 | arcforge fp32 | arcforge bf16 | arcforge int8 | arcforge int8+bf16 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "ms per image, best median of $rounds rounds (3 warm-ups, then ${BENCH_REPEATS:-20} timed runs at batch 1, ${BENCH_REPEATS:-5} above);" \
  "(Nx) = ORT fp32 / engine, above 1 is faster than ONNX Runtime fp32. r50, mbf and vit_t: random weights" \
  "(arcforge export --random-init, seed 0; libtorch runs the same network). int8: QDQ file from" \
  "arcforge quantize (small_lfw.bin, depthwise and last conv kept fp32), ORT and arcforge on the same file;" \
  "int8+bf16: the same file, its kept convolutions (depthwise excepted) and Gemm head in bf16;" \
  "vit_t int8: its Gemms and patch convolution (--ops Conv,Gemm --keep-fp32 last)." \
  "n/a: libtorch only runs arcforge's own backbones; SCRFD has no int8 (face calibration does not fit a" \
  "detector) and runs batch 8, not 32."
if [ -s "$log" ]; then
  echo
  echo "errors (last lines):"
  tail -n 5 "$log"
fi
