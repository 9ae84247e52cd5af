#!/usr/bin/env python3
"""Times an ONNX model on OpenCV DNN (CPU, fp32), the way `arcforge bench-model` and
tests/runtime/node/run_model.js --bench time theirs: warm-up, then the median of repeated runs on a
seeded uniform [-1, 1) input. Prints one JSON object.

OpenCV 4.6's importer (Debian 12) cannot parse graphs whose input H and W are symbolic (SCRFD):
such a model is read through a copy with the input shape fixed to [N,3,H,W] (python3-onnx).

    opencv_dnn_bench.py MODEL.onnx --batch N --input-size HxW --threads T [--warmup 3] [--repeats 10]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np


def parse_hw(text):
    try:
        h, w = (int(side) for side in text.lower().split("x"))
    except ValueError:
        sys.exit(f"--input-size: expected HxW, got '{text}'")
    if h < 1 or w < 1:
        sys.exit(f"--input-size: sides must be positive, got '{text}'")
    return h, w


def read_net(path, shape):
    """cv2.dnn net of the model; a copy with the input fixed to `shape` when its H or W is symbolic."""
    try:
        import onnx
    except ImportError:
        return cv2.dnn.readNetFromONNX(path), "as is"
    model = onnx.load(path)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    dims = inputs[0].type.tensor_type.shape.dim
    if len(inputs) != 1 or len(dims) != 4 or all(d.HasField("dim_value") for d in dims[2:]):
        return cv2.dnn.readNetFromONNX(path), "as is"
    for d, value in zip(dims, shape):
        d.Clear()
        d.dim_value = value
    with tempfile.TemporaryDirectory() as tmp:
        fixed = os.path.join(tmp, "fixed.onnx")
        onnx.save(model, fixed)
        return cv2.dnn.readNetFromONNX(fixed), "input fixed to " + "x".join(map(str, shape))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--input-size", default="112x112")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.batch < 1 or args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        sys.exit("--batch, --threads, --repeats must be >= 1 and --warmup >= 0")
    h, w = parse_hw(args.input_size)

    cv2.setNumThreads(args.threads)
    net, read_as = read_net(args.model, (args.batch, 3, h, w))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    images = np.random.default_rng(7).uniform(-1.0, 1.0, (args.batch, 3, h, w)).astype(np.float32)
    net.setInput(images)
    outputs = net.getUnconnectedOutLayersNames()  # all outputs: SCRFD has nine

    start = time.perf_counter()
    net.forward(outputs)  # layer allocation and weight packing happen on the first run
    first_ms = (time.perf_counter() - start) * 1000.0
    for _ in range(args.warmup):
        net.forward(outputs)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        net.forward(outputs)
        times.append((time.perf_counter() - start) * 1000.0)
    median = statistics.median(times)
    print(json.dumps({"model": args.model, "engine": "opencv-dnn " + cv2.__version__, "batch": args.batch,
                      "threads": args.threads, "input_shape": list(images.shape),
                      "read_as": read_as, "ms_per_batch": median,
                      "ms_per_image": median / args.batch, "first_run_ms": first_ms, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
