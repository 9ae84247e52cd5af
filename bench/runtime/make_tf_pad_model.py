#!/usr/bin/python3
"""Writes a MobileNetV1-style network (width 0.5, 128-d embedding, random weights: speed only) as
Keras exports it: every stride-2 convolution reads a Pad (ZeroPadding2D: one row and column at the
bottom and right) instead of padding itself. With --mode constant the runtime folds each Pad into
its convolution (src/runtime/optimize_pad.cpp); --mode reflect keeps the same graph with Pads that
cannot fold, so the pair measures what the fold saves.

  /usr/bin/python3 bench/runtime/make_tf_pad_model.py OUT.onnx [--mode constant|reflect]

Needs Debian's python3-onnx and python3-numpy (bench time only; nothing at run time).
"""
import argparse

import numpy as np
from onnx import TensorProto, helper, numpy_helper

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--mode", default="constant", choices=["constant", "reflect"])
args = parser.parse_args()

rng = np.random.default_rng(0)
nodes, inits = [], []


def weight(name, shape):
    fan_in = int(np.prod(shape[1:]))
    inits.append(numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name))
    return name


def conv(x, name, out_c, in_c, k, stride, group=1):
    """Conv + bias + Relu; stride 2 reads a bottom/right Pad, stride 1 pads itself."""
    src = x
    pads = [k // 2] * 4
    if stride == 2:
        pad_name = name + "_pads"
        inits.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), pad_name))
        src = name + "_padded"
        nodes.append(helper.make_node("Pad", [x, pad_name], [src], mode=args.mode))
        pads = [0, 0, 0, 0]
    bias = name + "_bias"
    inits.append(numpy_helper.from_array((0.1 * rng.standard_normal(out_c)).astype(np.float32), bias))
    nodes.append(helper.make_node("Conv", [src, weight(name + "_w", (out_c, in_c // group, k, k)), bias],
                                  [name + "_c"], kernel_shape=[k, k], strides=[stride, stride], pads=pads,
                                  group=group))
    nodes.append(helper.make_node("Relu", [name + "_c"], [name + "_r"]))
    return name + "_r"


x = conv("x", "stem", 16, 3, 3, 2)
channels = 16
for i, (stride, out_c) in enumerate([(1, 32), (2, 64), (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (1, 256),
                                     (2, 512), (1, 512)]):
    x = conv(x, f"dw{i}", channels, channels, 3, stride, group=channels)
    x = conv(x, f"pw{i}", out_c, channels, 1, 1)
    channels = out_c
nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"]))
nodes.append(helper.make_node("Gemm", ["flat", weight("fc_w", (128, channels)), "fc_b"], ["embedding"], transB=1))
inits.append(numpy_helper.from_array(np.zeros(128, np.float32), "fc_b"))

inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])]
outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 128])]
graph = helper.make_graph(nodes, "tf_pad_mobilenet", inputs, outputs, inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
with open(args.out, "wb") as f:
    f.write(model.SerializeToString())
print("wrote", args.out, "mode", args.mode, "pads", sum(n.op_type == "Pad" for n in nodes))
