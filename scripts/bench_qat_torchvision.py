#!/usr/bin/python3
"""The torch.ao side of `prom-bench train --qat`: ms per eager-mode QAT training step.

torchvision's quantizable mobilenet_v2 (quantize=False), train mode, fuse_model(is_qat=True),
the default fbgemm QAT qconfig, prepare_qat; then forward, cross-entropy, backward, SGD (momentum
0.9, weight decay 4e-5) on random data, in both memory formats. Prints one JSON object on stdout.
Run by prom-bench with Debian's /usr/bin/python3 (python3-torch, python3-torchvision).
"""
import argparse
import json
import time

import torch
import torchvision


def bench(batch, size, classes, threads, warmup, iters, channels_last):
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    # The fbgemm QAT qconfig as the brief says; fake quantization during training does not use the
    # quantized engine (Debian's torch has no FBGEMM engine: qnnpack, onednn only).
    model = torchvision.models.quantization.mobilenet_v2(weights=None, quantize=False, num_classes=classes)
    model.train()
    model.fuse_model(is_qat=True)
    model.qconfig = torch.ao.quantization.get_default_qat_qconfig("fbgemm")
    torch.ao.quantization.prepare_qat(model, inplace=True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    x = torch.randn(batch, 3, size, size).to(memory_format=fmt)
    y = torch.randint(0, classes, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.item()  # as prom's step, which reads the loss every step
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1000.0 * times[len(times) // 2]  # median, ms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__, "qconfig": "fbgemm"}
    for name, cl in (("contiguous_ms", False), ("channels_last_ms", True)):
        out[name] = bench(a.batch, a.size, a.classes, a.threads, a.warmup, a.iters, cl)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
