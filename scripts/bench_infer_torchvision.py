#!/usr/bin/python3
"""The torch.ao side of `prom-bench infer`: latency per batch (1, or --batch N) of torchvision's int8
mobilenet_v2 under the onednn and qnnpack quantized engines, and of the fp32 model as frozen
TorchScript.

For each engine this torch has: torchvision's quantizable mobilenet_v2 (quantize=False), eval,
fuse_model(), that engine's default qconfig, prepare, calibration on random data, convert; then the
median of timed forwards of one batch with torch.backends.quantized.engine set to it, with the input
in NCHW and in channels_last (the faster is reported, and named). TorchScript: torchvision's
fp32 mobilenet_v2 traced, frozen and optimized for inference, NCHW and channels_last (the faster). Prints one flat JSON
object on stdout ("<engine>_ms", null where this torch lacks the engine; "engine" and "ms": the
faster engine; "torchscript_fp32_ms"). --engines and --skip-torchscript narrow it to what prom-bench's
later rounds (--rounds) time again. Run by prom-bench with Debian's /usr/bin/python3
(LD_PRELOAD: prom's tcmalloc).
"""
import argparse
import json
import time

import torch
import torchvision

ENGINES = ("onednn", "qnnpack")


def median_ms(model, x, a):
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            model(x)
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    times.sort()
    return 1000.0 * times[len(times) // 2]


def torchscript_fp32_ms(a):
    """torchvision's fp32 mobilenet_v2 traced, frozen and optimized for inference; the faster of NCHW
    and channels_last: (ms, format)."""
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=a.classes).eval()
    x = torch.randn(a.batch, 3, a.size, a.size)
    results = []
    for fmt, memory_format in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        m = model.to(memory_format=memory_format)
        xf = x.contiguous(memory_format=memory_format)
        with torch.no_grad():
            scripted = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, xf)))
        results.append((median_ms(scripted, xf, a), fmt))
    return min(results)


def int8_latency_ms(engine, a):
    """The faster of NCHW and channels_last input: (ms, format)."""
    torch.manual_seed(0)
    torch.backends.quantized.engine = engine
    model = torchvision.models.quantization.mobilenet_v2(weights=None, quantize=False, num_classes=a.classes)
    model.eval()
    model.fuse_model()
    model.qconfig = torch.ao.quantization.get_default_qconfig(engine)
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for _ in range(a.calibration):
            model(torch.randn(4, 3, a.size, a.size))
    torch.ao.quantization.convert(model, inplace=True)
    x = torch.randn(a.batch, 3, a.size, a.size)
    formats = {"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
    return min((median_ms(model, v, a), k) for k, v in formats.items())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--calibration", type=int, default=4, help="random batches of 4 to calibrate observers")
    p.add_argument("--engines", default=",".join(ENGINES), help="quantized engines to time, comma-separated")
    p.add_argument("--skip-torchscript", action="store_true", help="do not time the TorchScript fp32 model")
    a = p.parse_args()
    engines = [e for e in a.engines.split(",") if e]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise SystemExit("--engines: unknown engine %s (known: %s)" % (", ".join(unknown), ", ".join(ENGINES)))
    torch.set_num_threads(a.threads)
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    for engine in ENGINES:
        if engine not in engines:
            out[engine + "_ms"], out[engine + "_format"] = None, None
            continue
        ms, fmt = int8_latency_ms(engine, a) if engine in torch.backends.quantized.supported_engines else (None, None)
        out[engine + "_ms"], out[engine + "_format"] = ms, fmt
    measured = [e for e in ENGINES if out[e + "_ms"] is not None]
    if not measured:
        raise SystemExit("no quantized engine among %s in this torch (it has %s)"
                         % (", ".join(ENGINES), ", ".join(torch.backends.quantized.supported_engines)))
    best = min(measured, key=lambda e: out[e + "_ms"])
    out.update({"engine": best, "ms": out[best + "_ms"]})
    if not a.skip_torchscript:
        out["torchscript_fp32_ms"], out["torchscript_fp32_format"] = torchscript_fp32_ms(a)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
