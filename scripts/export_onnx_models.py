#!/usr/bin/python3
"""Exports the four reference models of the ONNX import with PyTorch, and
what PyTorch computes for them.

  /usr/bin/python3 scripts/export_onnx_models.py OUT_DIR

Needs Debian's python3-torch (not needed by the tests, which read the files
this writes). For each model: NAME.onnx (torch.onnx.export, opset 13, eval
mode) and NAME.embedding.f32, PyTorch's own embedding of each of 100 inputs
(float32 little-endian). The graph has two outputs: "probabilities" (the
head) and "embedding" (what the head reads), so that the import can be
pointed at the embedding by name. The inputs are not stored: value i of the
NCHW batch is ((i * 2654435761) mod 2^32) / 2^32, which the test computes
the same way. Weights are PyTorch's default initialization with a fixed
seed; batch-norm statistics are random, so that folding them matters.

  niid_cnn          NIID-Bench CNN, 1x28x28: conv 6@5x5, pool, conv 16@5x5,
                    pool, FC 120, FC 84 (embedding), FC 10
  ds_cnn            MLPerf Tiny keyword spotting DS-CNN (small), 1x49x10:
                    Keras-style SAME padding of the 10x4 stride-2 stem as an
                    explicit ZeroPad2d (an ONNX Pad), 4 depthwise-separable
                    blocks with batch norm, average pool, FC 12
  mobilenet_v1_025  MLPerf Tiny visual wake words: MobileNetV1 width 0.25 at
                    3x96x96, ReLU6, global average pool, FC 2
  resnet8           MLPerf Tiny image classification ResNet-8, 3x32x32:
                    three residual stacks (16, 32, 64), 1x1 stride-2
                    shortcuts, average pool 8, FC 10
  NAME_int8         each backbone quantized by PyTorch (eager mode, qnnpack,
                    calibrated on the 100 inputs) and exported as QDQ;
                    NAME_int8.embedding.u8 holds PyTorch's uint8 embedding
"""
import copy
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


def randomize_batch_norm(model, generator):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
            m.weight.data.copy_(1.0 + 0.1 * torch.randn(c, generator=generator))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=generator))


class WithHead(nn.Module):
    """A backbone and a linear head: returns (probabilities, embedding)."""

    def __init__(self, backbone, features, classes):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(features, classes)

    def forward(self, x):
        embedding = torch.flatten(self.backbone(x), 1)
        return torch.softmax(self.head(embedding), dim=1), embedding


def niid_cnn():
    return WithHead(
        nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()), 84, 10), (1, 28, 28)


def conv_bn_relu(in_c, out_c, kernel, stride=1, padding=0, groups=1, relu=nn.ReLU):
    return [nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(out_c), relu()]


def ds_cnn():
    # Keras' padding="same" for a 10x4 kernel at stride 2 on 49x10 pads
    # 4 above, 5 below and 1 on each side: PyTorch needs a ZeroPad2d for it.
    layers = [nn.ZeroPad2d((1, 1, 4, 5)), nn.Conv2d(1, 64, (10, 4), 2), nn.BatchNorm2d(64), nn.ReLU()]
    for _ in range(4):
        layers += conv_bn_relu(64, 64, 3, padding=1, groups=64) + conv_bn_relu(64, 64, 1)
    layers.append(nn.AvgPool2d((25, 5)))
    return WithHead(nn.Sequential(*layers), 64, 12), (1, 49, 10)


def mobilenet_v1_025():
    layers = conv_bn_relu(3, 8, 3, 2, 1, relu=nn.ReLU6)
    c = 8
    for out_c, stride in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1),
                          (128, 1), (128, 1), (256, 2), (256, 1)]:
        layers += conv_bn_relu(c, c, 3, stride, 1, groups=c, relu=nn.ReLU6)
        layers += conv_bn_relu(c, out_c, 1, relu=nn.ReLU6)
        c = out_c
    layers.append(nn.AdaptiveAvgPool2d(1))
    return WithHead(nn.Sequential(*layers), 256, 2), (3, 96, 96)


class ResidualStack(nn.Module):

    def __init__(self, in_c, out_c, stride):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(in_c, out_c, 3, stride, 1),
                                  nn.Conv2d(out_c, out_c, 3, 1, 1, bias=False), nn.BatchNorm2d(out_c))
        self.shortcut = nn.Identity() if stride == 1 and in_c == out_c else nn.Conv2d(in_c, out_c, 1, stride)
        # A plain add and ReLU in float; quantized, an int8 add.
        self.add, self.relu = nn.quantized.FloatFunctional(), nn.ReLU()

    def forward(self, x):
        return self.relu(self.add.add(self.body(x), self.shortcut(x)))


def resnet8():
    backbone = nn.Sequential(*conv_bn_relu(3, 16, 3, 1, 1), ResidualStack(16, 16, 1), ResidualStack(16, 32, 2),
                             ResidualStack(32, 64, 2), nn.AvgPool2d(8))
    return WithHead(backbone, 64, 10), (3, 32, 32)


def inputs(n, shape):
    i = np.arange(n * int(np.prod(shape)), dtype=np.uint64)
    v = ((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32
    return torch.from_numpy(v.astype(np.float32).reshape((n,) + shape))


def fusable_groups(seq):
    """Names of the Conv(+BatchNorm)(+ReLU) runs of a Sequential, which eager
    mode fuses into one quantized conv."""
    names = [n for n, _ in seq.named_children()]
    kinds = [type(m) for _, m in seq.named_children()]
    groups, i = [], 0
    while i < len(names):
        j = i + 1
        if kinds[i] is nn.Conv2d:
            if j < len(names) and kinds[j] is nn.BatchNorm2d:
                j += 1
            if j < len(names) and kinds[j] is nn.ReLU:
                j += 1
        if j - i > 1:
            groups.append(names[i:j])
        i = j
    return groups


class Quantizable(nn.Module):
    """A backbone between QuantStub and DeQuantStub for PyTorch's eager-mode
    int8 (qnnpack). A leading ZeroPad2d runs in float, before the QuantStub:
    torch.onnx cannot export a Pad of a quantized tensor, and zeros quantize
    to the zero point the conv pads with anyway."""

    def __init__(self, backbone):
        super().__init__()
        layers = list(backbone.children())
        self.pad = layers.pop(0) if isinstance(layers[0], nn.ZeroPad2d) else nn.Identity()
        self.quant, self.body, self.dequant = QuantStub(), nn.Sequential(*layers), DeQuantStub()

    def forward(self, x):
        return self.dequant(torch.flatten(self.body(self.quant(self.pad(x))), 1))


def export_quantized(name, float_model, shape, out):
    """NAME_int8.onnx (QuantizeLinear/DequantizeLinear around each op, as
    torch.onnx writes an eager-quantized model) and NAME_int8.embedding.u8:
    PyTorch's own uint8 embedding of the 100 inputs (int_repr). The float
    model is copied, not changed. ReLU6 becomes a ReLU whose output grid is
    fixed to [0, 6] (scale 6/255, zero point 0): the same function in int8,
    and torch.onnx cannot export a quantized ReLU6. Dense layers keep their
    ReLU apart (torch.onnx cannot export a fused quantized linear_relu)."""
    tq = torch.ao.quantization
    torch.backends.quantized.engine = "qnnpack"
    model = Quantizable(copy.deepcopy(float_model.backbone)).eval()
    model.qconfig = tq.get_default_qconfig("qnnpack")
    six = tq.QConfig(activation=tq.FixedQParamsObserver.with_args(scale=6.0 / 255, zero_point=0, dtype=torch.quint8,
                                                                  quant_min=0, quant_max=255),
                     weight=model.qconfig.weight)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        relu6 = {n for n, m in seq.named_children() if isinstance(m, nn.ReLU6)}
        for n in relu6:
            setattr(seq, n, nn.ReLU().eval())
        groups = fusable_groups(seq)
        tq.fuse_modules(seq, groups, inplace=True)
        for group in groups:
            if group[-1] in relu6:
                getattr(seq, group[0]).qconfig = six
                relu6.remove(group[-1])
        assert not relu6, f"{name}: a ReLU6 after something other than a conv"
    tq.prepare(model, inplace=True)
    x = inputs(100, shape)
    with torch.no_grad():
        model(x)  # calibration on the test's inputs
    tq.convert(model, inplace=True)
    captured = []
    model.dequant.register_forward_hook(lambda module, args, result: captured.append(args[0].int_repr()))
    with torch.no_grad():
        model(x)
    path = os.path.join(out, name + "_int8.onnx")
    torch.onnx.export(model, torch.zeros((1,) + shape), path, opset_version=13, input_names=["input"],
                      output_names=["embedding"])
    captured[0].numpy().astype(np.uint8).tofile(os.path.join(out, name + "_int8.embedding.u8"))
    print(f"{name}_int8: {os.path.getsize(path)} bytes, uint8 embedding {tuple(captured[0].shape[1:])}")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(2026)
    generator = torch.Generator().manual_seed(2026)
    for name, make in [("niid_cnn", niid_cnn), ("ds_cnn", ds_cnn), ("mobilenet_v1_025", mobilenet_v1_025),
                       ("resnet8", resnet8)]:
        model, shape = make()
        randomize_batch_norm(model, generator)
        model.eval()
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(model, torch.zeros((1,) + shape), path, opset_version=13, input_names=["input"],
                          output_names=["probabilities", "embedding"], do_constant_folding=True)
        with torch.no_grad():
            embedding = model(inputs(100, shape))[1]
        embedding.numpy().astype("<f4").tofile(os.path.join(out, name + ".embedding.f32"))
        print(f"{name}: {os.path.getsize(path)} bytes, embedding {tuple(embedding.shape[1:])} (PyTorch "
              f"{torch.__version__})")
        export_quantized(name, model, shape, out)


if __name__ == "__main__":
    main()
