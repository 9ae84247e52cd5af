#!/usr/bin/env bash
# Cosine of each precision's embeddings to fp32's on real faces, for any recognizer and its QDQ
# file (e.g. compare_all.sh's random-weight r50, whose accuracy cannot be measured but whose
# numerical fidelity can): 300 LFW deep-funneled photos, the square [50,200)x[46,196) scaled to
# 112x112 (as PrecisionAccuracy does), RGB, (x - 127.5) / 127.5, through `arcforge infer` in fp32,
# bf16 (MODEL), int8 and int8+bf16 (INT8_MODEL). Prints min and mean cosine per mode.
#
#   bench/runtime/precision_cosines.sh BUILD_DIR MODEL.onnx INT8_MODEL.onnx
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$1 model=$2 int8=$3
shared=${ARCFORGE_SHARED_DIR:-../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$shared/faces/lfw/images" "$tmp/faces.npy" <<'PY'
import os, sys
import cv2, numpy as np
root, out = sys.argv[1], sys.argv[2]
files = [os.path.join(root, n, f) for n in sorted(os.listdir(root)) for f in sorted(os.listdir(os.path.join(root, n)))]
files = files[::max(1, len(files) // 300)][:300]
faces = []
for f in files:
    img = cv2.resize(cv2.imread(f)[46:196, 50:200], (112, 112), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    faces.append(((img.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1))
np.save(out, np.stack(faces))
PY
cli="$build/bin/arcforge"
"$cli" infer "$model" --input "$tmp/faces.npy" --output "$tmp/fp32.npy" > /dev/null
"$cli" infer "$model" --precision bf16 --input "$tmp/faces.npy" --output "$tmp/bf16.npy" > /dev/null
"$cli" infer "$int8" --precision int8 --input "$tmp/faces.npy" --output "$tmp/int8.npy" > /dev/null
"$cli" infer "$int8" --precision int8+bf16 --input "$tmp/faces.npy" --output "$tmp/int8+bf16.npy" > /dev/null
/usr/bin/python3 - "$tmp" <<'PY'
import sys
import numpy as np
d = sys.argv[1]
def unit(name):
    e = np.load(f"{d}/{name}.npy").astype(np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)
ref = unit("fp32")
print(f"{ref.shape[0]} LFW faces, cosine to fp32:")
for mode in ["bf16", "int8", "int8+bf16"]:
    c = (unit(mode) * ref).sum(axis=1)
    print(f"  {mode:10s} min {c.min():.5f} mean {c.mean():.5f}")
PY
