#!/usr/bin/env python3
"""Writes the hand-built ONNX models the import tests read for the ops
PyTorch's reference models do not write, and what they compute.

  scripts/make_onnx_models.py OUT_DIR

The four reference models come from PyTorch (scripts/export_onnx_models.py).
These are built with onnx.helper (python3-onnx) and evaluated by NumPy:
NAME.onnx and NAME.embedding.f32 (float32 little-endian, the embedding
of each of 100 inputs). The inputs are not stored: value i of the NCHW batch
is ((i * 2654435761) mod 2^32) / 2^32, which the test computes the same way.

  mobile     a MobileNet-style block at 3x16x16: conv 3x3 stride 2 pads 1,
             BatchNormalization, Clip(0, 6) with initializer bounds,
             depthwise 3x3 (pads 1), BN, Clip, pointwise 1x1, BN, Relu, Add
             of a 1x1 shortcut, GlobalAveragePool (the embedding), Flatten,
             MatMul + Add, Softmax
  grouped    at 4x12x10: a Pad (pads from a Constant node) before a
             grouped conv (2 groups, stride 2), a depthwise conv with
             multiplier 2, and PyTorch's x.view(x.size(0), -1) (Shape,
             Gather, Unsqueeze, Concat, Reshape) as the embedding, Gemm head
  fire       SqueezeNet's fire module at 3x16x16: conv 3x3 stride 2, MaxPool,
             a 1x1 squeeze, 1x1 and 3x3 expands, a Concat of the channels of
             both expands and the squeeze (three inputs), a 1x1 conv,
             GlobalAveragePool (the embedding), Flatten, Gemm head
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


def bn(x, s, b, m, v, eps=1e-5):
    return (x - m.reshape(1, -1, 1, 1)) / np.sqrt(v.reshape(1, -1, 1, 1) + eps) * s.reshape(1, -1, 1, 1) + \
        b.reshape(1, -1, 1, 1)


def relu(x):
    return np.maximum(x, 0)


def inputs(shape):
    i = np.arange(int(np.prod(shape)), dtype=np.uint64)
    return (((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32).astype(np.float32).reshape(
        shape)


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
    x = inputs((100, 3, 16, 16))
    zero8 = np.zeros(8, np.float32)
    h = np.clip(bn(conv(x, a["c1w"], a["c1b"], 2, (1, 1, 1, 1)), a["bn0s"], a["bn0b"], a["bn0m"], a["bn0v"]), 0, 6)
    h = np.clip(bn(conv(h, a["dww"], zero8, 1, (1, 1, 1, 1), group=8), a["bn1s"], a["bn1b"], a["bn1m"], a["bn1v"]),
                0, 6)
    h = relu(bn(conv(h, a["pww"], np.zeros(12, np.float32)), a["bn2s"], a["bn2b"], a["bn2m"], a["bn2v"]))
    h = h + conv(x, a["scw"], np.zeros(12, np.float32), 2)
    emb = h.mean(axis=(2, 3))
    return graph, x, emb


def grouped():
    inits, a = [], {}
    for name, shape in [("g1w", (8, 2, 3, 3)), ("g1b", (8,)), ("g2w", (16, 1, 3, 3)), ("g2b", (16,)),
                        ("hw", (4, 16 * 6 * 5)), ("hb", (4,))]:
        t, arr = init(name, shape, 0.1 if len(shape) == 1 else None)
        inits.append(t)
        a[name] = arr
    ints = lambda name, v: helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(
        np.array(v, np.int64), name))
    nodes = [
        # The pads as a constant node, not an initializer: [N, C, H, W] begins, then ends.
        ints("pads", [0, 0, 1, 2, 0, 0, 1, 0]),
        helper.make_node("Pad", ["input", "pads"], ["padded"], mode="constant", name="pad"),
        helper.make_node("Conv", ["padded", "g1w", "g1b"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], group=2,
                         name="grouped"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "g2w", "g2b"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8,
                         name="depthwise_x2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        # x.view(x.size(0), -1) as PyTorch writes it.
        helper.make_node("Shape", ["r2"], ["shape"], name="shape"),
        ints("zero", 0),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0, name="gather"),
        ints("axes", [0]),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsqueeze"),
        ints("minus_one", [-1]),
        helper.make_node("Concat", ["n1", "minus_one"], ["view"], axis=0, name="concat"),
        helper.make_node("Reshape", ["r2", "view"], ["embedding"], name="reshape"),
        helper.make_node("Gemm", ["embedding", "hw", "hb"], ["logits"], transB=1, name="head"),
    ]
    graph = helper.make_graph(nodes, "grouped", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, 4, 12, 10])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    x = inputs((100, 4, 12, 10))
    h = relu(conv(np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 0))), a["g1w"], a["g1b"], 2, group=2))
    h = relu(conv(h, a["g2w"], a["g2b"], 1, (1, 1, 1, 1), group=8))
    # The embedding's values in the order tinyfed holds the map: HWC.
    return graph, x, h.transpose(0, 2, 3, 1).reshape(100, -1)


def fire():
    inits, a = [], {}
    for name, shape in [("c1w", (8, 3, 3, 3)), ("c1b", (8,)), ("sw", (4, 8, 1, 1)), ("sb", (4,)),
                        ("e1w", (8, 4, 1, 1)), ("e1b", (8,)), ("e3w", (8, 4, 3, 3)), ("e3b", (8,)),
                        ("mw", (12, 20, 1, 1)), ("mb", (12,)), ("hw", (3, 12)), ("hb", (3,))]:
        t, arr = init(name, shape, 0.1 if len(shape) == 1 else None)
        inits.append(t)
        a[name] = arr
    node = helper.make_node
    nodes = [
        node("Conv", ["input", "c1w", "c1b"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             name="stem"),
        node("Relu", ["c1"], ["r1"], name="relu1"),
        node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        node("Conv", ["p1", "sw", "sb"], ["s"], kernel_shape=[1, 1], name="squeeze"),
        node("Relu", ["s"], ["rs"], name="relu_squeeze"),
        node("Conv", ["rs", "e1w", "e1b"], ["e1"], kernel_shape=[1, 1], name="expand1x1"),
        node("Relu", ["e1"], ["re1"], name="relu_expand1x1"),
        node("Conv", ["rs", "e3w", "e3b"], ["e3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="expand3x3"),
        node("Relu", ["e3"], ["re3"], name="relu_expand3x3"),
        node("Concat", ["re1", "re3", "rs"], ["joined"], axis=1, name="concat"),
        node("Conv", ["joined", "mw", "mb"], ["m"], kernel_shape=[1, 1], name="mix"),
        node("Relu", ["m"], ["rm"], name="relu_mix"),
        node("GlobalAveragePool", ["rm"], ["pooled"], name="gap"),
        node("Flatten", ["pooled"], ["embedding"], axis=1, name="flatten"),
        node("Gemm", ["embedding", "hw", "hb"], ["logits"], transB=1, name="head"),
    ]
    graph = helper.make_graph(nodes, "fire", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                           [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], inits)
    x = inputs((100, 3, 16, 16))
    h = relu(conv(x, a["c1w"], a["c1b"], 2, (1, 1, 1, 1)))
    h = h.reshape(100, 8, 4, 2, 4, 2).max(axis=(3, 5))
    sq = relu(conv(h, a["sw"], a["sb"]))
    joined = np.concatenate([relu(conv(sq, a["e1w"], a["e1b"])), relu(conv(sq, a["e3w"], a["e3b"], 1, (1, 1, 1, 1))),
                             sq], axis=1)
    return graph, x, relu(conv(joined, a["mw"], a["mb"])).mean(axis=(2, 3))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, make in [("mobile", mobile), ("grouped", grouped), ("fire", fire)]:
        graph, x, emb = make()
        model = helper.make_model(graph, producer_name="tinyfed make_onnx_models.py",
                                  opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7
        onnx.checker.check_model(model)
        onnx.save(model, os.path.join(out, name + ".onnx"))
        emb.astype("<f4").tofile(os.path.join(out, name + ".embedding.f32"))
        print(f"{name}: {os.path.getsize(os.path.join(out, name + '.onnx'))} bytes, embedding {emb.shape[1:]}")


if __name__ == "__main__":
    main()
