#!/usr/bin/python3
"""PyTorch peer for bench/models_bench and onnx_models_bench: the same
backbones, one thread, batch 1, timed the same way. models_bench's two shapes
int8 with the qnnpack engine (eager mode, input already quantized); the four
reference models of the ONNX import (scripts/export_onnx_models.py, the very
modules their files were exported from) in float32 and int8 (FX graph mode,
qnnpack, input quantization included). Prints one JSON object: median
microseconds per model.

Uses Debian's python3-torch (run with /usr/bin/python3)."""
import json
import statistics
import sys
import time

import os

import torch
import torch.nn as nn
import torch.ao.quantization as tq
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import export_onnx_models  # noqa: E402


class Cnn(nn.Module):
    """NIID-Bench CNN up to its embedding: conv 6@5x5, pool, conv 16@5x5, pool, FC 120, FC 84."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1, self.relu1 = nn.Conv2d(1, 6, 5), nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.relu2 = nn.Conv2d(6, 16, 5), nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1, self.relu3 = nn.Linear(256, 120), nn.ReLU()
        self.fc2, self.relu4 = nn.Linear(120, 84), nn.ReLU()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.relu4(self.fc2(self.relu3(self.fc1(x))))

    fuse = [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"], ["fc2", "relu4"]]


class DsCnn(nn.Module):
    """DS-CNN on 49x10: conv 64@10x4 stride 2 (SAME), 4 x (dw 3x3 + pw 1x1), global average pool."""

    def __init__(self, channels=64, blocks=4):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv, self.relu = nn.Conv2d(1, channels, (10, 4), stride=2, padding=(5, 1)), nn.ReLU()
        layers, self.fuse = [], [["conv", "relu"]]
        for i in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.ReLU(),
                       nn.Conv2d(channels, channels, 1), nn.ReLU()]
            self.fuse += [[f"blocks.{4 * i}", f"blocks.{4 * i + 1}"],
                          [f"blocks.{4 * i + 2}", f"blocks.{4 * i + 3}"]]
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.relu(self.conv(self.quant(x)))
        return self.pool(self.blocks(x))


def quantized(model, shape):
    model.eval()
    tq.fuse_modules(model, model.fuse, inplace=True)
    model.qconfig = tq.get_default_qconfig("qnnpack")
    tq.prepare(model, inplace=True)
    with torch.no_grad():
        for _ in range(16):
            model(torch.randn(1, *shape))
    tq.convert(model, inplace=True)
    return model


def quantized_fx(model, shape):
    model.eval()
    q = prepare_fx(model, tq.get_default_qconfig_mapping("qnnpack"), example_inputs=(torch.randn(1, *shape),))
    with torch.no_grad():
        for _ in range(16):
            q(torch.randn(1, *shape))
    return convert_fx(q)


def median_us(model, shape, repetitions, seconds):
    x = torch.randn(1, *shape)
    with torch.no_grad():
        for _ in range(50):
            model(x)
        medians = []
        for _ in range(repetitions):
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                model(x)
                n += 1
            medians.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(medians)


def main():
    torch.backends.quantized.engine = "qnnpack"
    torch.set_num_threads(1)
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    result = {"engine": "qnnpack", "threads": 1, "torch": torch.__version__,
              "cnn_us": median_us(quantized(Cnn(), (1, 28, 28)), (1, 28, 28), repetitions, 0.3),
              "dscnn_us": median_us(quantized(DsCnn(), (1, 49, 10)), (1, 49, 10), repetitions, 0.3)}
    for make in (export_onnx_models.niid_cnn, export_onnx_models.ds_cnn, export_onnx_models.mobilenet_v1_025,
                 export_onnx_models.resnet8):
        model, shape = make()
        backbone = model.backbone.eval()
        result[f"{make.__name__}_float_us"] = median_us(backbone, shape, repetitions, 0.3)
        result[f"{make.__name__}_int8_us"] = median_us(quantized_fx(backbone, shape), shape, repetitions, 0.3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
