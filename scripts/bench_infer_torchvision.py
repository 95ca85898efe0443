#!/usr/bin/python3
"""The torch.ao side of `prom-bench infer`: batch-1 latency of torchvision's int8 mobilenet_v2 under QNNPACK.

torchvision's quantizable mobilenet_v2 (quantize=False), eval, fuse_model(), the default qnnpack
qconfig, prepare, calibration on random data, convert; then the median of timed batch-1 forwards.
Prints one JSON object on stdout. Run by prom-bench with Debian's /usr/bin/python3.
"""
import argparse
import json
import time

import torch
import torchvision


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--calibration", type=int, default=4, help="random batches of 4 to calibrate observers")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    torch.backends.quantized.engine = "qnnpack"
    model = torchvision.models.quantization.mobilenet_v2(weights=None, quantize=False, num_classes=a.classes)
    model.eval()
    model.fuse_model()
    model.qconfig = torch.ao.quantization.get_default_qconfig("qnnpack")
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for _ in range(a.calibration):
            model(torch.randn(4, 3, a.size, a.size))
    torch.ao.quantization.convert(model, inplace=True)
    x = torch.randn(1, 3, a.size, a.size)
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            model(x)
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__, "engine": "qnnpack",
                      "ms": 1000.0 * times[len(times) // 2]}))


if __name__ == "__main__":
    main()
