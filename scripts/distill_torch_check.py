#!/usr/bin/python3
"""Distillation on Fashion-MNIST in PyTorch alone, as a check on what
`tinyfed backbone distill` can be expected to gain: a stronger teacher than
tinyfed's cnn (two 3x3 convs of 32 and 64 filters, dropout, FC 128; about
93% on validation) and a student trained from scratch and by Hinton's
distillation at a few temperatures and soft weights, all on 54,000 training
images, measured on the other 6,000 (a fixed permutation; the test split is
not read). Needs python3-torch; about 8 minutes on two cores.

  /usr/bin/python3 scripts/distill_torch_check.py mlp|cnn
"""
import gzip
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist/"


def idx(path):
    b = gzip.open(path).read()
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(b[3])]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * b[3]).reshape(dims)


def accuracy(net, x, y):
    net.eval()
    with torch.no_grad():
        return 100 * (net(x).argmax(1) == y).float().mean().item()


def train(net, x, epochs, lr, loss):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    n = len(x)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * ((n + 63) // 64))
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(n, generator=g)
        for i in range(0, n, 64):
            b = order[i:i + 64]
            opt.zero_grad()
            loss(net(x[b]), b).backward()
            opt.step()
            sched.step()
    return net


def student(kind):
    torch.manual_seed(3)
    if kind == "mlp":  # tinyfed's mlp (32, 16)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                             nn.Linear(16, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))  # tinyfed's cnn (NIID-Bench)


def main():
    kind = sys.argv[1]
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = idx(FMNIST + "train-images-idx3-ubyte.gz").astype(np.float32) / 255
    y = idx(FMNIST + "train-labels-idx1-ubyte.gz").astype(np.int64)
    perm = np.random.default_rng(1).permutation(len(x))
    tr, va = perm[:54000], perm[54000:]
    xt, yt = torch.tensor(x[tr]).unsqueeze(1), torch.tensor(y[tr])
    xv, yv = torch.tensor(x[va]).unsqueeze(1), torch.tensor(y[va])
    mean, std = xt.mean(), xt.std()
    xt, xv = (xt - mean) / std, (xv - mean) / std
    hard = lambda out, b: F.cross_entropy(out, yt[b])
    teacher = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.3),
                            nn.Linear(64 * 49, 128), nn.ReLU(), nn.Linear(128, 10))
    train(teacher, xt, 5, 0.05, hard)
    print(f"teacher {accuracy(teacher, xv, yv):.2f}%", flush=True)
    teacher.eval()
    with torch.no_grad():
        soft = torch.cat([teacher(xt[i:i + 1000]) for i in range(0, len(xt), 1000)])
    print(f"{kind} from scratch {accuracy(train(student(kind), xt, 12, 0.02, hard), xv, yv):.2f}%", flush=True)
    for t, a in [(1, 0.5), (2, 0.5), (4, 0.7), (2, 0.9)]:
        def distill(out, b, t=t, a=a):
            kl = F.kl_div(F.log_softmax(out / t, 1), F.softmax(soft[b] / t, 1), reduction="batchmean")
            return a * t * t * kl + (1 - a) * F.cross_entropy(out, yt[b])
        net = train(student(kind), xt, 12, 0.02, distill)
        print(f"{kind} distilled at temperature {t}, soft weight {a}: {accuracy(net, xv, yv):.2f}%", flush=True)


if __name__ == "__main__":
    main()
