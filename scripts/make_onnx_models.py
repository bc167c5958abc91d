#!/usr/bin/env python3
"""Writes the small ONNX models the import tests read, and what they compute.

  scripts/make_onnx_models.py OUT_DIR

For each model: NAME.onnx, NAME.inputs.f32 (100 random inputs, NCHW, float32
little-endian) and NAME.embedding.f32 (the embedding of each, computed here
by a direct NumPy evaluation of the ONNX graph's semantics). Built with
onnx.helper (python3-onnx), so that neither the tests nor this script need
PyTorch; the weights are random with a fixed seed.

  niid_cnn   the NIID-Bench CNN: conv 6@5x5, ReLU, max pool 2, conv 16@5x5,
             ReLU, max pool 2, Flatten, Gemm 120, ReLU, Gemm 84, ReLU (the
             embedding), Gemm 10 and Softmax (the head), at 1x28x28
  mobile     a MobileNet-style block at 3x16x16: conv 3x3 stride 2 pads 1,
             BatchNormalization, Clip(0, 6), depthwise 3x3 (pads 1), BN,
             Clip, pointwise 1x1, BN, Relu, Add of a 1x1 shortcut,
             GlobalAveragePool (the embedding), Flatten, MatMul + Add, Softmax
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(2026)


def init(name, shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
    scale = scale if scale is not None else np.sqrt(2.0 / max(fan_in, 1))
    a = (rng.standard_normal(shape) * scale).astype(np.float32)
    return numpy_helper.from_array(a, name), a


def conv(x, w, b, stride=1, pads=(0, 0, 0, 0), group=1):
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (x.shape[2] - kh) // stride + 1
    ow = (x.shape[3] - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), np.float64)
    per = o // group
    for g in range(group):
        xs = x[:, g * i:(g + 1) * i]
        ws = w[g * per:(g + 1) * per]
        for y in range(kh):
            for z in range(kw):
                patch = xs[:, :, y:y + stride * oh:stride, z:z + stride * ow:stride]
                out[:, g * per:(g + 1) * per] += np.einsum("nchw,oc->nohw", patch, ws[:, :, y, z])
    return out + b.reshape(1, -1, 1, 1)


def maxpool(x, k):
    n, c, h, w = x.shape
    oh, ow = (h - k) // k + 1, (w - k) // k + 1
    return x[:, :, :oh * k, :ow * k].reshape(n, c, oh, k, ow, k).max(axis=(3, 5))


def bn(x, s, b, m, v, eps=1e-5):
    return (x - m.reshape(1, -1, 1, 1)) / np.sqrt(v.reshape(1, -1, 1, 1) + eps) * s.reshape(1, -1, 1, 1) + \
        b.reshape(1, -1, 1, 1)


def relu(x):
    return np.maximum(x, 0)


def niid_cnn():
    inits, arrays = [], {}
    for name, shape in [("c1w", (6, 1, 5, 5)), ("c1b", (6,)), ("c2w", (16, 6, 5, 5)), ("c2b", (16,)),
                        ("f1w", (120, 256)), ("f1b", (120,)), ("f2w", (84, 120)), ("f2b", (84,)),
                        ("f3w", (10, 84)), ("f3b", (10,))]:
        t, a = init(name, shape, 0.1 if len(shape) == 1 else None)
        inits.append(t)
        arrays[name] = a
    nodes = [
        helper.make_node("Conv", ["input", "c1w", "c1b"], ["c1"], kernel_shape=[5, 5], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Conv", ["p1", "c2w", "c2b"], ["c2"], kernel_shape=[5, 5], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], name="pool2"),
        helper.make_node("Flatten", ["p2"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "f1w", "f1b"], ["f1"], transB=1, name="fc1"),
        helper.make_node("Relu", ["f1"], ["r3"], name="relu3"),
        helper.make_node("Gemm", ["r3", "f2w", "f2b"], ["f2"], transB=1, name="fc2"),
        helper.make_node("Relu", ["f2"], ["embedding"], name="relu4"),
        helper.make_node("Gemm", ["embedding", "f3w", "f3b"], ["logits"], transB=1, name="fc3"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(nodes, "niid_cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               ["batch", 1, 28, 28])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
                              inits)
    x = rng.random((100, 1, 28, 28)).astype(np.float32)
    a = arrays
    h = maxpool(relu(conv(x, a["c1w"], a["c1b"])), 2)
    h = maxpool(relu(conv(h, a["c2w"], a["c2b"])), 2)
    h = h.reshape(100, -1)
    h = relu(h @ a["f1w"].T + a["f1b"])
    emb = relu(h @ a["f2w"].T + a["f2b"])
    return graph, x, emb


def mobile():
    inits, a = [], {}
    specs = [("c1w", (8, 3, 3, 3)), ("c1b", (8,)), ("dww", (8, 1, 3, 3)), ("pww", (12, 8, 1, 1)),
             ("scw", (12, 3, 1, 1)), ("hw", (12, 4)), ("hb", (4,))]
    for i in range(3):
        ch = 8 if i < 2 else 12
        specs += [(f"bn{i}s", (ch,)), (f"bn{i}b", (ch,)), (f"bn{i}m", (ch,)), (f"bn{i}v", (ch,))]
    for name, shape in specs:
        t, arr = init(name, shape, 0.1 if len(shape) == 1 else None)
        if name.endswith("v"):
            arr = (np.abs(arr) + 0.5).astype(np.float32)
            t = numpy_helper.from_array(arr, name)
        if name.endswith("s"):
            arr = (1.0 + arr).astype(np.float32)
            t = numpy_helper.from_array(arr, name)
        inits.append(t)
        a[name] = arr
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "six"))
    nodes = [
        # 16x16, k 3, stride 2, padding 1 on every side as PyTorch writes it
        # (not TFLite's SAME, which pads 0 before and 1 after).
        helper.make_node("Conv", ["input", "c1w", "c1b"], ["c1"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], name="stem"),
        helper.make_node("BatchNormalization", ["c1", "bn0s", "bn0b", "bn0m", "bn0v"], ["b1"], name="stem_bn"),
        helper.make_node("Clip", ["b1", "zero", "six"], ["a1"], name="stem_relu6"),
        helper.make_node("Conv", ["a1", "dww"], ["d1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8,
                         name="depthwise"),
        helper.make_node("BatchNormalization", ["d1", "bn1s", "bn1b", "bn1m", "bn1v"], ["b2"], name="dw_bn"),
        helper.make_node("Clip", ["b2", "zero", "six"], ["a2"], name="dw_relu6"),
        helper.make_node("Conv", ["a2", "pww"], ["pw"], kernel_shape=[1, 1], name="pointwise"),
        helper.make_node("BatchNormalization", ["pw", "bn2s", "bn2b", "bn2m", "bn2v"], ["b3"], name="pw_bn"),
        helper.make_node("Relu", ["b3"], ["a3"], name="pw_relu"),
        helper.make_node("Conv", ["input", "scw"], ["sc"], kernel_shape=[1, 1], strides=[2, 2], name="shortcut"),
        helper.make_node("Add", ["a3", "sc"], ["sum"], name="residual"),
        helper.make_node("GlobalAveragePool", ["sum"], ["embedding"], name="gap"),
        helper.make_node("Flatten", ["embedding"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "hw"], ["mm"], name="head"),
        helper.make_node("Add", ["mm", "hb"], ["logits"], name="head_bias"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(nodes, "mobile", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 4])], inits)
    x = rng.random((100, 3, 16, 16)).astype(np.float32)
    zero8 = np.zeros(8, np.float32)
    h = np.clip(bn(conv(x, a["c1w"], a["c1b"], 2, (1, 1, 1, 1)), a["bn0s"], a["bn0b"], a["bn0m"], a["bn0v"]), 0, 6)
    h = np.clip(bn(conv(h, a["dww"], zero8, 1, (1, 1, 1, 1), group=8), a["bn1s"], a["bn1b"], a["bn1m"], a["bn1v"]),
                0, 6)
    h = relu(bn(conv(h, a["pww"], np.zeros(12, np.float32)), a["bn2s"], a["bn2b"], a["bn2m"], a["bn2v"]))
    h = h + conv(x, a["scw"], np.zeros(12, np.float32), 2)
    emb = h.mean(axis=(2, 3))
    return graph, x, emb


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, make in [("niid_cnn", niid_cnn), ("mobile", mobile)]:
        graph, x, emb = make()
        model = helper.make_model(graph, producer_name="tinyfed make_onnx_models.py",
                                  opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7
        onnx.checker.check_model(model)
        onnx.save(model, os.path.join(out, name + ".onnx"))
        x.astype("<f4").tofile(os.path.join(out, name + ".inputs.f32"))
        emb.astype("<f4").tofile(os.path.join(out, name + ".embedding.f32"))
        print(f"{name}: {os.path.getsize(os.path.join(out, name + '.onnx'))} bytes, embedding {emb.shape[1:]}")


if __name__ == "__main__":
    main()
