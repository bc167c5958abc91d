#!/usr/bin/env python3
"""Writes the small ONNX models the import tests read, and what they compute.

  scripts/make_onnx_models.py OUT_DIR

For each model: NAME.onnx and NAME.embedding.f32 (float32 little-endian:
the embedding of each of 100 inputs, computed here by a direct NumPy
evaluation of the ONNX graph's semantics). The inputs are not stored: value
i of the NCHW batch is ((i * 2654435761) mod 2^32) / 2^32, which the test
computes the same way. Built with onnx.helper (python3-onnx), so that
neither the tests nor this script need PyTorch; the weights are random with
a fixed seed.

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


def inputs(shape):
    i = np.arange(int(np.prod(shape)), dtype=np.uint64)
    return (((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32).astype(np.float32).reshape(
        shape)


def depthwise(x, w, b, stride=1, pads=(0, 0, 0, 0)):
    n, c, h, wd = x.shape
    _, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (x.shape[2] - kh) // stride + 1
    ow = (x.shape[3] - kw) // stride + 1
    out = np.zeros((n, c, oh, ow), np.float64)
    for y in range(kh):
        for z in range(kw):
            out += x[:, :, y:y + stride * oh:stride, z:z + stride * ow:stride] * w[:, 0, y, z].reshape(1, c, 1, 1)
    return out + b.reshape(1, -1, 1, 1)


class Builder:
    """Nodes, weights and a NumPy evaluation side by side."""

    def __init__(self, x):
        self.nodes, self.inits, self.x, self.k = [], [], {"input": x.astype(np.float64)}, 0

    def name(self, base):
        self.k += 1
        return f"{base}{self.k}"

    def weight(self, shape, scale=None):
        t, a = init(self.name("w"), shape, scale)
        self.inits.append(t)
        return t.name, a

    def conv(self, x, out_c, k, stride=1, pads=(0, 0, 0, 0), group=1, bias=True):
        in_c = self.x[x].shape[1]
        wn, w = self.weight((out_c, in_c // group, k[0], k[1]))
        ins = [x, wn]
        b = np.zeros(out_c, np.float32)
        if bias:
            bn_, b = self.weight((out_c,), 0.1)
            ins.append(bn_)
        y = self.name("conv")
        self.nodes.append(helper.make_node("Conv", ins, [y], kernel_shape=list(k), strides=[stride, stride],
                                           pads=list(pads), group=group, name=y))
        if group == 1:
            self.x[y] = conv(self.x[x], w, b, stride, pads)
        else:
            self.x[y] = depthwise(self.x[x], w, b, stride, pads)
        return y

    def bn(self, x):
        c = self.x[x].shape[1]
        names, arrays = [], []
        for kind in "sbmv":
            n, a = self.weight((c,), 0.1)
            if kind == "s":
                a = (1.0 + a).astype(np.float32)
            if kind == "v":
                a = (np.abs(a) + 0.5).astype(np.float32)
            self.inits[-1] = numpy_helper.from_array(a, n)
            names.append(n)
            arrays.append(a)
        y = self.name("bn")
        self.nodes.append(helper.make_node("BatchNormalization", [x] + names, [y], name=y))
        self.x[y] = bn(self.x[x], *arrays)
        return y

    def relu(self, x):
        y = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [y], name=y))
        self.x[y] = relu(self.x[x])
        return y

    def add(self, a, b):
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y], name=y))
        self.x[y] = self.x[a] + self.x[b]
        return y

    def avgpool(self, x, k, out="embedding"):
        self.nodes.append(helper.make_node("AveragePool", [x], [out], kernel_shape=list(k), strides=list(k),
                                           name="avgpool"))
        n, c, h, w = self.x[x].shape
        self.x[out] = self.x[x][:, :, :h // k[0] * k[0], :w // k[1] * k[1]].reshape(
            n, c, h // k[0], k[0], w // k[1], k[1]).mean(axis=(3, 5))
        return out

    def gap(self, x, out="embedding"):
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [out], name="gap"))
        self.x[out] = self.x[x].mean(axis=(2, 3), keepdims=True)
        return out

    def head(self, x, classes):
        """Flatten, Gemm, Softmax: the part after the embedding."""
        self.nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1, name="flatten"))
        features = int(np.prod(self.x[x].shape[1:]))
        wn, _ = self.weight((classes, features))
        bn_, _ = self.weight((classes,), 0.1)
        self.nodes.append(helper.make_node("Gemm", ["flat", wn, bn_], ["logits"], transB=1, name="fc"))
        self.nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"))

    def graph(self, name, shape, classes):
        return helper.make_graph(self.nodes, name,
                                 [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1] + list(shape[1:]))],
                                 [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, classes])],
                                 self.inits)


def resnet8():
    """MLPerf Tiny image classification: ResNet-8 at 3x32x32, 10 classes."""
    x = inputs((100, 3, 32, 32))
    g = Builder(x)
    t = g.relu(g.bn(g.conv("input", 16, (3, 3), 1, (1, 1, 1, 1))))
    for out_c, stride in [(16, 1), (32, 2), (64, 2)]:
        y = g.relu(g.bn(g.conv(t, out_c, (3, 3), stride, (1, 1, 1, 1))))
        y = g.bn(g.conv(y, out_c, (3, 3), 1, (1, 1, 1, 1)))
        shortcut = t if stride == 1 else g.conv(t, out_c, (1, 1), stride)
        t = g.relu(g.add(y, shortcut))
    g.avgpool(t, (8, 8))
    g.head("embedding", 10)
    return g.graph("resnet8", x.shape, 10), x, g.x["embedding"].reshape(100, -1)


def ds_cnn():
    """MLPerf Tiny keyword spotting: DS-CNN (small) on 1x49x10 MFCCs, 12 classes."""
    x = inputs((100, 1, 49, 10))
    g = Builder(x)
    # Keras' padding="same" for a 10x4 kernel at stride 2, as PyTorch pads it.
    t = g.relu(g.bn(g.conv("input", 64, (10, 4), 2, (4, 1, 5, 1))))
    for _ in range(4):
        t = g.relu(g.bn(g.conv(t, 64, (3, 3), 1, (1, 1, 1, 1), group=64, bias=False)))
        t = g.relu(g.bn(g.conv(t, 64, (1, 1), 1, bias=False)))
    g.avgpool(t, (25, 5))
    g.head("embedding", 12)
    return g.graph("ds_cnn", x.shape, 12), x, g.x["embedding"].reshape(100, -1)


def mobilenet_v1():
    """MLPerf Tiny visual wake words: MobileNetV1 width 0.25 at 3x96x96, 2 classes."""
    x = inputs((100, 3, 96, 96))
    g = Builder(x)
    t = g.relu(g.bn(g.conv("input", 8, (3, 3), 2, (1, 1, 1, 1), bias=False)))
    for out_c, stride in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1),
                          (128, 1), (128, 1), (256, 2), (256, 1)]:
        c = g.x[t].shape[1]
        t = g.relu(g.bn(g.conv(t, c, (3, 3), stride, (1, 1, 1, 1), group=c, bias=False)))
        t = g.relu(g.bn(g.conv(t, out_c, (1, 1), 1, bias=False)))
    g.gap(t)
    g.head("embedding", 2)
    return g.graph("mobilenet_v1_025", x.shape, 2), x, g.x["embedding"].reshape(100, -1)


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
    x = inputs((100, 1, 28, 28))
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
    x = inputs((100, 3, 16, 16))
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
    for name, make in [("niid_cnn", niid_cnn), ("mobile", mobile), ("resnet8", resnet8), ("ds_cnn", ds_cnn),
                       ("mobilenet_v1_025", mobilenet_v1)]:
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
