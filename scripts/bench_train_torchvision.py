#!/usr/bin/python3
"""The torchvision side of `prom-bench train`: ms per training step of torchvision's mobilenet_v2.

Same step as prom's: forward, cross-entropy (not read back: prom's step reads nothing either),
backward, SGD (momentum 0.9, weight decay 4e-5), on random data, in both memory formats (prom-bench
compares with the faster, named in "faster_format"). Prints one JSON object on stdout. Run by
prom-bench with Debian's /usr/bin/python3 (python3-torch, python3-torchvision), with prom's tcmalloc
in LD_PRELOAD. bench_qat_torchvision.py reuses time_steps().
"""
import argparse
import json
import time

import torch
import torchvision


def time_steps(model, batch, size, classes, warmup, iters, channels_last):
    """Median ms of one SGD step of `model` (in train mode) on random data."""
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
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1000.0 * times[len(times) // 2]


def arguments():
    """The arguments prom-bench passes (bench_qat_torchvision.py adds its own)."""
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    return p


def run(make_model, extra=None):
    """Parses prom-bench's arguments, times make_model(classes) in both formats, prints JSON."""
    a = arguments().parse_args()
    torch.set_num_threads(a.threads)
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__, **(extra or {})}
    for name, cl in (("contiguous_ms", False), ("channels_last_ms", True)):
        torch.manual_seed(0)
        out[name] = time_steps(make_model(a.classes), a.batch, a.size, a.classes, a.warmup, a.iters, cl)
    out["faster_format"] = "channels_last" if out["channels_last_ms"] < out["contiguous_ms"] else "contiguous"
    print(json.dumps(out))


def float_model(classes):
    model = torchvision.models.mobilenet_v2(num_classes=classes)
    model.train()
    return model


if __name__ == "__main__":
    run(float_model)
