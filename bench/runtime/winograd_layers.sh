#!/usr/bin/env bash
# Per-layer speed of the runtime's Winograd F(4x4, 3x3) convolutions (src/runtime/ops_conv_winograd.cpp)
# against oneDNN's direct kernel: one-convolution models (3x3, stride 1, bias and a per-channel PRelu,
# as in IResNet), the same binary with ARCFORGE_RUNTIME_WINOGRAD=all under each of its schedules
# (ARCFORGE_RUNTIME_WINOGRAD_SCHEDULE=per_thread, =chunked) and with =0, alternating, the best of
# ROUNDS medians each. "all" ignores the runtime's size thresholds, so the table shows where they
# should sit on this CPU; the last column is what the runtime picks by itself, read from a profiled
# run. Meaningful on x86-64 CPUs with AVX2 or AVX-512; elsewhere every column is oneDNN's.
#
#   bench/runtime/winograd_layers.sh [BUILD_DIR] [THREADS] [ROUNDS]
#
# SHAPES="channels:size:batch ..." replaces the list (square inputs, as many channels out as in).
# Needs /usr/bin/python3 with numpy and onnx (Debian python3-numpy, python3-onnx) to write the models.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
cli="$build/bin/arcforge"
[ -x "$cli" ] || { echo "no $cli: build arcforge_cli first" >&2; exit 1; }
shapes=${SHAPES:-"64:112:1 64:56:1 128:28:1 256:14:1 512:7:1 512:7:2 512:7:4 256:14:32 512:7:32 48:80:1 32:160:1 32:80:1 24:160:1 24:80:1"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

write_model() {  # path channels size
  /usr/bin/python3 - "$@" <<'PY'
import sys
import numpy as np
from onnx import TensorProto, helper, numpy_helper, save
path, c, hw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
inits = [numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "b"),
         numpy_helper.from_array(np.full((c, 1, 1), 0.25, np.float32), "slope")]
graph = helper.make_graph(
    [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
     helper.make_node("PRelu", ["c", "slope"], ["y"])], "conv",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, hw, hw])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, hw, hw])], inits)
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
PY
}

ms_per_batch() {  # method schedule model batch
  ARCFORGE_RUNTIME_WINOGRAD=$1 ARCFORGE_RUNTIME_WINOGRAD_SCHEDULE=$2 "$cli" bench-model "$3" --batch "$4" \
    --threads "$threads" --json | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["ms_per_batch"])'
}

choice() {  # model batch: the kernel the runtime picks by itself, from a profiled run
  "$cli" bench-model "$1" --batch "$2" --threads "$threads" --repeats 1 --warmup 0 --profile "$tmp/profile.json" \
    > /dev/null
  /usr/bin/python3 - "$tmp/profile.json" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))  # Chrome's trace format: a list of events
kernels = [e["args"]["kernel"] for e in events if e.get("ph") == "X" and e["name"] == "Conv_0"]
winograd = [k for k in kernels if k.startswith("winograd")]
print("Winograd, per thread" if any(k.endswith("per_thread") for k in winograd) else
      "Winograd, chunked" if winograd else "direct")
PY
}

min() { /usr/bin/python3 -c "print(min($1, $2))"; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads=$threads, $(date -u '+%F %H:%M') UTC," \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| channels | size | batch | tiles | per thread ms | chunked ms | direct ms | direct / best Winograd |" \
  "the runtime's choice |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for s in $shapes; do
  IFS=: read -r c hw n <<< "$s"
  model="$tmp/conv_${c}_${hw}.onnx"
  [ -f "$model" ] || write_model "$model" "$c" "$hw"
  best_t=1e9
  best_c=1e9
  best_d=1e9
  for ((r = 0; r < rounds; ++r)); do
    best_t=$(min "$best_t" "$(ms_per_batch all per_thread "$model" "$n")")
    best_c=$(min "$best_c" "$(ms_per_batch all chunked "$model" "$n")")
    best_d=$(min "$best_d" "$(ms_per_batch 0 "" "$model" "$n")")
  done
  tiles=$((n * ((hw + 3) / 4) * ((hw + 3) / 4)))
  printf "| %s | %sx%s | %s | %s | %.3f | %.3f | %.3f | %.2f | %s |\n" "$c" "$hw" "$hw" "$n" "$tiles" "$best_t" "$best_c" \
    "$best_d" "$(/usr/bin/python3 -c "print($best_d / min($best_t, $best_c))")" "$(choice "$model" "$n")"
done
