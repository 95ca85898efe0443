#!/usr/bin/python3
"""The torchvision side of `prom-bench train`: ms per training step of torchvision's mobilenet_v2.

Same step as prom's: forward, cross-entropy (not read back: prom's step reads nothing either),
backward, SGD (momentum 0.9, weight decay 4e-5), on random data, in both memory formats (prom-bench
compares with the faster, named in "faster_format"). On --device cuda each step ends with a
synchronize (as prom's side does), and --amp bf16|fp16 runs the forward under torch.autocast, fp16
with torch's GradScaler (prom's train.amp). Prints one JSON object on stdout. Run by prom-bench
with Debian's /usr/bin/python3 (python3-torch, python3-torchvision), with prom's tcmalloc in
LD_PRELOAD. bench_qat_torchvision.py reuses time_steps().
"""
import argparse
import json
import time

import torch
import torchvision


def time_steps(model, batch, size, classes, warmup, iters, channels_last, device="cpu", amp="off"):
    """Median ms of one SGD step of `model` (in train mode) on random data."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    x = torch.randn(batch, 3, size, size).to(device=device, memory_format=fmt)
    y = torch.randint(0, classes, (batch,)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = None
    if amp == "fp16":  # torch.amp.GradScaler since torch 2.3; torch.cuda.amp's before
        scaler = torch.amp.GradScaler(device) if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + iters):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        sync()
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
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off")
    return p


def run(make_model, extra=None):
    """Parses prom-bench's arguments, times make_model(classes) in both formats, prints JSON."""
    a = arguments().parse_args()
    torch.set_num_threads(a.threads)
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__, "device": a.device, "amp": a.amp,
           **(extra or {})}
    for name, cl in (("contiguous_ms", False), ("channels_last_ms", True)):
        torch.manual_seed(0)
        out[name] = time_steps(make_model(a.classes), a.batch, a.size, a.classes, a.warmup, a.iters, cl,
                               a.device, a.amp)
    out["faster_format"] = "channels_last" if out["channels_last_ms"] < out["contiguous_ms"] else "contiguous"
    print(json.dumps(out))


def float_model(classes):
    model = torchvision.models.mobilenet_v2(num_classes=classes)
    model.train()
    return model


if __name__ == "__main__":
    run(float_model)
