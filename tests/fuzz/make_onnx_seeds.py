#!/usr/bin/python3
"""Writes the seed models of fuzz_onnx_loader and fuzz_model_load (tests/fuzz/corpus/<target>/): tiny
graphs that load and run, covering initializers in raw and typed fields, attributes of each kind,
Constant nodes, shape arithmetic and QDQ; and of fuzz_onnx_import: tiny face recognizers in the
layouts `arcforge import` reads (Conv/BN/PRelu blocks with a residual Add, Gemm or MatMul + Add
heads, Identity of a weight, a Constant weight, fp16 and double weights). Needs Debian's python3-onnx: /usr/bin/python3 tests/fuzz/make_onnx_seeds.py
"""
import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
OUTS = [os.path.join(CORPUS, t) for t in ("fuzz_onnx_loader", "fuzz_model_load")]


IMPORT_OUT = os.path.join(CORPUS, "fuzz_onnx_import")


def save(name, nodes, inputs, outputs, initializers=(), opset=13, outs=OUTS):
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    for out in outs:
        with open(os.path.join(out, name + ".onnx"), "wb") as f:
            f.write(model.SerializeToString())


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


rng = np.random.default_rng(0)
for out in OUTS:
    os.makedirs(out, exist_ok=True)

# Conv + BatchNorm + PRelu + pooling + Gemm: raw-data initializers, ints and float attributes.
w = numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
bn = [numpy_helper.from_array(np.ones(2, np.float32) * v, n) for v, n in
      [(1, "scale"), (0, "bias"), (0, "mean"), (1, "var")]]
slope = helper.make_tensor("slope", TensorProto.FLOAT, [2, 1, 1], [0.25, 0.25])  # typed float_data
fc = numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float32), "fc")
save("conv_bn_gemm", [
    helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
    helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], epsilon=1e-5),
    helper.make_node("PRelu", ["b", "slope"], ["p"]),
    helper.make_node("GlobalAveragePool", ["p"], ["g"]),
    helper.make_node("Flatten", ["g"], ["f"], axis=1),
    helper.make_node("Gemm", ["f", "fc"], ["y"], transB=0, alpha=1.0),
], [f32("x", [1, 1, 4, 4])], [f32("y", [1, 3])], [w, fc, slope] + bn)

# Shape arithmetic: Shape, Gather, Constant (value_ints, value tensor), Concat, Reshape, Cast.
save("shape_reshape", [
    helper.make_node("Shape", ["x"], ["s"]),
    helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.INT64, [], [0])),
    helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
    helper.make_node("Constant", [], ["minus1"], value_ints=[-1]),
    helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
    helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
    helper.make_node("Reshape", ["x", "shape"], ["r"]),
    helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT),
], [f32("x", ["N", 2, 3])], [f32("y", None)],
    [helper.make_tensor("axes", TensorProto.INT64, [1], [0])])

# QDQ around a convolution: int8 and uint8 raw initializers, int32 bias.
save("qdq_conv", [
    helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
    helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
    helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
    helper.make_node("Conv", ["xd", "wd", "bias"], ["y"], kernel_shape=[1, 1]),
], [f32("x", [1, 2, 2, 2])], [f32("y", [1, 2, 2, 2])], [
    numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
    numpy_helper.from_array(np.array(128, np.uint8), "xz"),
    numpy_helper.from_array(np.array([[[[3]], [[-2]]], [[[1]], [[4]]]], np.int8), "wq"),
    numpy_helper.from_array(np.array(0.1, np.float32), "ws"),
    numpy_helper.from_array(np.array(0, np.int8), "wz"),
    numpy_helper.from_array(np.array([1, -1], np.int32), "bias"),
])

# Elementwise and views: Resize with scales, Slice, Transpose, Softmax, Clip with a double constant.
save("resize_slice", [
    helper.make_node("Resize", ["x", "", "scales"], ["u"], mode="nearest"),
    helper.make_node("Slice", ["u", "starts", "ends", "sl_axes"], ["s"]),
    helper.make_node("Transpose", ["s"], ["t"], perm=[0, 1, 3, 2]),
    helper.make_node("Softmax", ["t"], ["m"], axis=-1),
    helper.make_node("Clip", ["m", "lo", "hi"], ["y"]),
], [f32("x", [1, 1, 2, 2])], [f32("y", None)], [
    numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    numpy_helper.from_array(np.array([0], np.int64), "starts"),
    numpy_helper.from_array(np.array([3], np.int64), "ends"),
    numpy_helper.from_array(np.array([2], np.int64), "sl_axes"),
    helper.make_tensor("lo", TensorProto.DOUBLE, [], [0.0]),
    numpy_helper.from_array(np.array(0.9, np.float32), "hi"),
])

# ---- fuzz_onnx_import: recognizers ----------------------------------------------------------------
os.makedirs(IMPORT_OUT, exist_ok=True)


def arr(name, shape, dtype=np.float32):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)


def bn_params(prefix, c):
    return [numpy_helper.from_array(np.full(c, v, np.float32), prefix + n)
            for v, n in [(1, "_s"), (0, "_b"), (0, "_m"), (1, "_v")]]


# IResNet-like: stem Conv-BN-PRelu, one block BN-Conv-BN-PRelu-Conv-BN + residual Add, then
# BN-Flatten-Gemm(transB)-BN, as arcface_torch exports it.
save("iresnet_block", [
    helper.make_node("Conv", ["x", "stem_w"], ["c0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("BatchNormalization", ["c0", "bn0_s", "bn0_b", "bn0_m", "bn0_v"], ["b0"]),
    helper.make_node("PRelu", ["b0", "slope0"], ["p0"]),
    helper.make_node("BatchNormalization", ["p0", "bn1_s", "bn1_b", "bn1_m", "bn1_v"], ["b1"]),
    helper.make_node("Conv", ["b1", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("BatchNormalization", ["c1", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["b2"]),
    helper.make_node("PRelu", ["b2", "slope1"], ["p1"]),
    helper.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
    helper.make_node("BatchNormalization", ["c2", "bn3_s", "bn3_b", "bn3_m", "bn3_v"], ["b3"]),
    helper.make_node("Conv", ["p0", "down_w"], ["d"], kernel_shape=[1, 1], strides=[2, 2]),
    helper.make_node("BatchNormalization", ["d", "bn4_s", "bn4_b", "bn4_m", "bn4_v"], ["db"]),
    helper.make_node("Add", ["b3", "db"], ["sum"]),
    helper.make_node("Flatten", ["sum"], ["f"], axis=1),
    helper.make_node("Dropout", ["f"], ["fd"]),
    helper.make_node("Gemm", ["fd", "fc_w", "fc_b"], ["e"], transB=1),
    helper.make_node("BatchNormalization", ["e", "bn5_s", "bn5_b", "bn5_m", "bn5_v"], ["y"]),
], [f32("x", ["N", 1, 4, 4])], [f32("y", ["N", 3])],
    [arr("stem_w", (2, 1, 3, 3)), arr("w1", (2, 2, 3, 3)), arr("w2", (2, 2, 3, 3)), arr("down_w", (2, 2, 1, 1)),
     helper.make_tensor("slope0", TensorProto.FLOAT, [2], [0.25, 0.25]), arr("slope1", (2, 1, 1)),
     arr("fc_w", (3, 8)), arr("fc_b", (3,))]
    + bn_params("bn0", 2) + bn_params("bn1", 2) + bn_params("bn2", 2) + bn_params("bn3", 2)
    + bn_params("bn4", 2) + bn_params("bn5", 3), outs=[IMPORT_OUT])

# PyTorch's Linear as MatMul + Add after a Reshape fed by shape arithmetic; a depthwise Conv with
# bias; an fp16 weight, a double bias, a Constant weight and an Identity of an initializer.
save("matmul_head", [
    helper.make_node("Constant", [], ["dw_w"], value=numpy_helper.from_array(
        rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "dw_value")),
    helper.make_node("Identity", ["dw_b0"], ["dw_b"]),
    helper.make_node("Conv", ["x", "dw_w", "dw_b"], ["c"], kernel_shape=[3, 3], group=2, pads=[1, 1, 1, 1]),
    helper.make_node("Shape", ["c"], ["s"]),
    helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
    helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
    helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
    helper.make_node("Reshape", ["c", "shape"], ["r"]),
    helper.make_node("MatMul", ["r", "mm_w"], ["m"]),
    helper.make_node("Add", ["m", "mm_b"], ["y"]),
], [f32("x", ["N", 2, 2, 2])], [f32("y", ["N", 4])],
    [arr("dw_b0", (2,)), arr("mm_w", (8, 4), np.float16), arr("mm_b", (4,), np.float64),
     helper.make_tensor("zero", TensorProto.INT64, [], [0]), helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
     helper.make_tensor("minus1", TensorProto.INT64, [1], [-1])], outs=[IMPORT_OUT])

# A one-block Vision Transformer as PyTorch's exporter writes arcface_torch's (4 tokens of width 4,
# 2 heads): norm1 and the final norm spelled out as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/
# Add (opset 11 style), norm2 as LayerNormalization, qkv as one MatMul split by Reshape, Transpose
# and Gather, the attention's Cast, Mul by a scale and Softmax, ReLU6 as Clip, the feature head's
# MatMuls and BatchNormalizations. Also a seed of the runtime's fuzzers (ReduceMean, Pow, Gather and
# Cast on run-time data, the LayerNorm and MatMul fusions).
def layer_norm_nodes(prefix, x, out):
    return [
        helper.make_node("ReduceMean", [x], [prefix + "_mean"], axes=[-1]),
        helper.make_node("Sub", [x, prefix + "_mean"], [prefix + "_d"]),
        helper.make_node("Constant", [], [prefix + "_two"], value=helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])),
        helper.make_node("Pow", [prefix + "_d", prefix + "_two"], [prefix + "_sq"]),
        helper.make_node("ReduceMean", [prefix + "_sq"], [prefix + "_var"], axes=[-1]),
        helper.make_node("Constant", [], [prefix + "_eps"], value=helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-5])),
        helper.make_node("Add", [prefix + "_var", prefix + "_eps"], [prefix + "_ve"]),
        helper.make_node("Sqrt", [prefix + "_ve"], [prefix + "_std"]),
        helper.make_node("Div", [prefix + "_d", prefix + "_std"], [prefix + "_n"]),
        helper.make_node("Mul", [prefix + "_n", prefix + ".weight"], [prefix + "_s"]),
        helper.make_node("Add", [prefix + "_s", prefix + ".bias"], [out]),
    ]


def int64s(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


save("vit_torch_layout", [
    helper.make_node("Conv", ["x", "patch.w", "patch.b"], ["pc"], kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Reshape", ["pc", "shape_ndt"], ["pr"]),
    helper.make_node("Transpose", ["pr"], ["pt"], perm=[0, 2, 1]),
    helper.make_node("Add", ["pt", "pos_embed"], ["x0"]),
] + layer_norm_nodes("norm1", "x0", "h1") + [
    helper.make_node("MatMul", ["h1", "qkv.w"], ["qkv"]),
    helper.make_node("Reshape", ["qkv", "shape_qkv"], ["qkv5"]),
    helper.make_node("Transpose", ["qkv5"], ["qkvt"], perm=[2, 0, 3, 1, 4]),
    helper.make_node("Gather", ["qkvt", "i0"], ["q0"], axis=0),
    helper.make_node("Gather", ["qkvt", "i1"], ["k0"], axis=0),
    helper.make_node("Gather", ["qkvt", "i2"], ["v0"], axis=0),
    helper.make_node("Cast", ["q0"], ["q"], to=TensorProto.FLOAT),
    helper.make_node("Cast", ["k0"], ["k"], to=TensorProto.FLOAT),
    helper.make_node("Cast", ["v0"], ["v"], to=TensorProto.FLOAT),
    helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
    helper.make_node("MatMul", ["q", "kt"], ["scores"]),
    helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
    helper.make_node("Softmax", ["scaled"], ["attn"], axis=3),
    helper.make_node("MatMul", ["attn", "v"], ["mixed"]),
    helper.make_node("Transpose", ["mixed"], ["merged"], perm=[0, 2, 1, 3]),
    helper.make_node("Reshape", ["merged", "shape_ntd"], ["tokens"]),
    helper.make_node("MatMul", ["tokens", "proj.w"], ["pm"]),
    helper.make_node("Add", ["proj.b", "pm"], ["proj"]),
    helper.make_node("Add", ["x0", "proj"], ["x1"]),
    helper.make_node("LayerNormalization", ["x1", "norm2.weight", "norm2.bias"], ["h2"], axis=-1, epsilon=1e-5),
    helper.make_node("MatMul", ["h2", "fc1.w"], ["f1m"]),
    helper.make_node("Add", ["fc1.b", "f1m"], ["f1"]),
    helper.make_node("Clip", ["f1", "zero_f", "six_f"], ["f1c"]),
    helper.make_node("MatMul", ["f1c", "fc2.w"], ["f2m"]),
    helper.make_node("Add", ["fc2.b", "f2m"], ["f2"]),
    helper.make_node("Add", ["x1", "f2"], ["x2"]),
] + layer_norm_nodes("norm", "x2", "hn") + [
    helper.make_node("Reshape", ["hn", "shape_flat"], ["flat"]),
    helper.make_node("MatMul", ["flat", "feature0.w"], ["e0"]),
    helper.make_node("BatchNormalization", ["e0"] + [n.name for n in bn_params("feature1", 4)], ["e1"], epsilon=2e-5),
    helper.make_node("MatMul", ["e1", "feature2.w"], ["e2"]),
    helper.make_node("BatchNormalization", ["e2"] + [n.name for n in bn_params("feature3", 3)], ["y"], epsilon=2e-5),
], [f32("x", ["N", 3, 4, 4])], [f32("y", ["N", 3])],
    [arr("patch.w", (4, 3, 2, 2)), arr("patch.b", (4,)), arr("pos_embed", (1, 4, 4)),
     arr("norm1.weight", (4,)), arr("norm1.bias", (4,)), arr("qkv.w", (4, 12)), arr("proj.w", (4, 4)),
     arr("proj.b", (4,)), arr("norm2.weight", (4,)), arr("norm2.bias", (4,)), arr("fc1.w", (4, 16)),
     arr("fc1.b", (16,)), arr("fc2.w", (16, 4)), arr("fc2.b", (4,)), arr("norm.weight", (4,)),
     arr("norm.bias", (4,)), arr("feature0.w", (16, 4)), arr("feature2.w", (4, 3)),
     helper.make_tensor("scale", TensorProto.FLOAT, [], [2 ** -0.5]),
     helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0]), helper.make_tensor("six_f", TensorProto.FLOAT, [], [6.0]),
     int64s("shape_ndt", [0, 4, -1]), int64s("shape_qkv", [-1, 4, 3, 2, 2]), int64s("shape_ntd", [-1, 4, 4]),
     int64s("shape_flat", [-1, 16]),
     helper.make_tensor("i0", TensorProto.INT64, [], [0]), helper.make_tensor("i1", TensorProto.INT64, [], [1]),
     helper.make_tensor("i2", TensorProto.INT64, [], [2])]
    + bn_params("feature1", 4) + bn_params("feature3", 3), opset=17, outs=OUTS + [IMPORT_OUT])

# Attention in arcforge's exporter's layout (q, k and v from their own MatMuls, [N, 4 tokens,
# 2 heads, 2]) with the scale computed from shapes, Div(scores, Sqrt(Cast(Gather(Shape(q))))): the
# runtime fuses it (optimize_attention.cpp) or, for shapes its kernel does not take, runs it as
# written.
save("attention_separate", [
    helper.make_node("MatMul", ["x", "q.w"], ["q"]),
    helper.make_node("MatMul", ["x", "k.w"], ["k"]),
    helper.make_node("MatMul", ["x", "v.w"], ["v"]),
    helper.make_node("Reshape", ["q", "heads"], ["q4"]),
    helper.make_node("Reshape", ["k", "heads"], ["k4"]),
    helper.make_node("Reshape", ["v", "heads"], ["v4"]),
    helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
    helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
    helper.make_node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
    helper.make_node("Shape", ["q4"], ["q_shape"]),
    helper.make_node("Gather", ["q_shape", "last"], ["head_dim"], axis=0),
    helper.make_node("Cast", ["head_dim"], ["head_dim_f"], to=TensorProto.FLOAT),
    helper.make_node("Sqrt", ["head_dim_f"], ["root"]),
    helper.make_node("MatMul", ["qh", "kt"], ["scores"]),
    helper.make_node("Div", ["scores", "root"], ["scaled"]),
    helper.make_node("Softmax", ["scaled"], ["attn"], axis=-1),
    helper.make_node("MatMul", ["attn", "vh"], ["mixed"]),
    helper.make_node("Transpose", ["mixed"], ["merged"], perm=[0, 2, 1, 3]),
    helper.make_node("Reshape", ["merged", "tokens"], ["y"]),
], [f32("x", ["N", 4, 4])], [f32("y", ["N", 4, 4])],
    [arr("q.w", (4, 4)), arr("k.w", (4, 4)), arr("v.w", (4, 4)), int64s("heads", [0, 4, 2, 2]),
     int64s("tokens", [0, 4, 4]), helper.make_tensor("last", TensorProto.INT64, [], [-1])], opset=17)

# Attention in timm's layout at opset 13: qkv [N, 4 tokens, 3, 2 heads, 2] taken apart by
# qkv.unbind(0), a Split into pieces of 1 and a Squeeze of each (the runtime's Split, and the
# attention fusion's unbind variant).
def unbind_nodes():
    return [
        helper.make_node("Transpose", ["qkv"], ["t"], perm=[2, 0, 3, 1, 4]),
        helper.make_node("Split", ["t", "ones"], ["t0", "t1", "t2"], axis=0),
        helper.make_node("Squeeze", ["t0", "axis0"], ["q"]),
        helper.make_node("Squeeze", ["t1", "axis0"], ["k"]),
        helper.make_node("Squeeze", ["t2", "axis0"], ["v"]),
    ]


save("attention_unbind", unbind_nodes() + [
    helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
    helper.make_node("MatMul", ["q", "kt"], ["scores"]),
    helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
    helper.make_node("Softmax", ["scaled"], ["attn"], axis=-1),
    helper.make_node("MatMul", ["attn", "v"], ["mixed"]),
    helper.make_node("Transpose", ["mixed"], ["y"], perm=[0, 2, 1, 3]),
], [f32("qkv", ["N", 4, 3, 2, 2])], [f32("y", ["N", 4, 2, 2])],
    [int64s("ones", [1, 1, 1]), int64s("axis0", [0]), helper.make_tensor("scale", TensorProto.FLOAT, [], [2 ** -0.5])])

# The same attention as torch 2 exports scaled_dot_product_attention (opset 14): the scale
# 1 / sqrt(head_dim) from Shape(q), q and k^T each multiplied by its square root before the product
# (the fusion rewrites that Shape to read qkv's).
save("attention_sdpa", unbind_nodes() + [
    helper.make_node("Shape", ["q"], ["q_shape"]),
    helper.make_node("Slice", ["q_shape", "minus1", "int64_max"], ["q_last"]),
    helper.make_node("Cast", ["q_last"], ["q_last_f"], to=TensorProto.FLOAT),
    helper.make_node("Sqrt", ["q_last_f"], ["q_root"]),
    helper.make_node("Div", ["one_f", "q_root"], ["scale"]),
    helper.make_node("Sqrt", ["scale"], ["root_q"]),
    helper.make_node("Sqrt", ["scale"], ["root_k"]),
    helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
    helper.make_node("Mul", ["q", "root_q"], ["q_scaled"]),
    helper.make_node("Mul", ["kt", "root_k"], ["kt_scaled"]),
    helper.make_node("MatMul", ["q_scaled", "kt_scaled"], ["scores"]),
    helper.make_node("Softmax", ["scores"], ["attn"], axis=-1),
    helper.make_node("MatMul", ["attn", "v"], ["mixed"]),
    helper.make_node("Transpose", ["mixed"], ["y"], perm=[0, 2, 1, 3]),
], [f32("qkv", ["N", 4, 3, 2, 2])], [f32("y", ["N", 4, 2, 2])],
    [int64s("ones", [1, 1, 1]), int64s("axis0", [0]), int64s("minus1", [-1]), int64s("int64_max", [2 ** 63 - 1]),
     helper.make_tensor("one_f", TensorProto.FLOAT, [1], [1.0])], opset=14)

# A convolution that runs as Winograd F(4x4, 3x3) on AVX2-level CPUs (32 channels each side, 9 tiles)
# with the post-ops its output transform applies: bias, PRelu per channel, the residual Add.
save("winograd_conv", [
    helper.make_node("Conv", ["x", "wg_w", "wg_b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("PRelu", ["c", "wg_slope"], ["p"]),
    helper.make_node("Add", ["p", "x"], ["y"]),
], [f32("x", ["N", 32, 12, 12])], [f32("y", ["N", 32, 12, 12])],
    [arr("wg_w", (32, 32, 3, 3)), arr("wg_b", (32,)), arr("wg_slope", (32, 1, 1))])

# A detector's heads: three 3x3 convolutions of one input with 2, 8 and 4 output channels. The
# optimiser merges the last two into one convolution and a Split (optimize_siblings.cpp); the first
# takes its Sigmoid as a post-op and stays apart.
save("sibling_heads", [
    helper.make_node("Conv", ["x", "hs_w", "hs_b"], ["s"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("Conv", ["x", "hb_w"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("Conv", ["x", "hk_w", "hk_b"], ["k"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("Sigmoid", ["s"], ["score"]),
], [f32("x", ["N", 8, 10, 10])], [f32("score", ["N", 2, 10, 10]), f32("b", ["N", 8, 10, 10]), f32("k", ["N", 4, 10, 10])],
    [arr("hs_w", (2, 8, 3, 3)), arr("hs_b", (2,)), arr("hb_w", (8, 8, 3, 3)), arr("hk_w", (4, 8, 3, 3)), arr("hk_b", (4,))])

# TensorFlow's "same" padding as exported: a zero Pad before a stride-2 convolution (folded into
# its padding, optimize_pad.cpp), and a reflect Pad with a crop (planned as a loop, ops_pad.cpp).
save("pad_conv", [
    helper.make_node("Pad", ["x", "pc_zero_pads"], ["zp"]),
    helper.make_node("Conv", ["zp", "pc_w"], ["c"], kernel_shape=[3, 3], strides=[2, 2]),
    helper.make_node("Pad", ["c", "pc_reflect_pads"], ["y"], mode="reflect"),
], [f32("x", ["N", 3, 9, 8])], [f32("y", ["N", 4, 6, 5])],
    [int64s("pc_zero_pads", [0, 0, 0, 0, 0, 0, 1, 1]), arr("pc_w", (4, 3, 3, 3)),
     int64s("pc_reflect_pads", [0, 0, 1, -1, 0, 0, 1, 2])])

for out in OUTS + [IMPORT_OUT]:
    print("wrote", out, sorted(os.listdir(out)))
