#!/usr/bin/python3
"""The torch.ao side of `prom-bench train --qat`: ms per eager-mode QAT training step, in the fastest
configuration this torch offers on this machine.

torchvision's quantizable mobilenet_v2 (quantize=False), train mode, fuse_model(is_qat=True), each
backend's default QAT qconfig (fbgemm, onednn, qnnpack; the quantized engine set to that backend
where this torch has it), prepare_qat; then the same step as bench_train_torchvision.py, in both
memory formats (on --device cuda, on the GPU: fake quantization runs there too, the qconfigs differ
in their observers only). Reports every (qconfig, format) pair ("<qconfig>_<format>_ms") and the fastest
("qconfig", "format", "ms"). Prints one JSON object on
stdout. Run by prom-bench with Debian's /usr/bin/python3 (LD_PRELOAD: prom's tcmalloc).
"""
import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train_torchvision import arguments, time_steps  # noqa: E402

BACKENDS = ("fbgemm", "onednn", "qnnpack")


def qat_model(classes, backend):
    model = torchvision.models.quantization.mobilenet_v2(weights=None, quantize=False, num_classes=classes)
    model.train()
    model.fuse_model(is_qat=True)
    model.qconfig = torch.ao.quantization.get_default_qat_qconfig(backend)
    torch.ao.quantization.prepare_qat(model, inplace=True)
    return model


def main():
    p = arguments()
    p.add_argument("--qconfigs", default=",".join(BACKENDS), help="comma-separated backends to try")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    engines = torch.backends.quantized.supported_engines
    # One flat JSON object (prom-bench parses from the last "{" it sees): "<qconfig>_<format>_ms".
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__, "device": a.device}
    best = None
    for backend in a.qconfigs.split(","):
        # Fake quantization runs float kernels, but set the engine that goes with the qconfig
        # wherever this torch has it, as a user of that qconfig would.
        if backend in engines:
            torch.backends.quantized.engine = backend
        out[backend + "_engine"] = backend if backend in engines else "none"
        for fmt, cl in (("contiguous", False), ("channels_last", True)):
            torch.manual_seed(0)
            ms = time_steps(qat_model(a.classes, backend), a.batch, a.size, a.classes, a.warmup, a.iters, cl,
                            a.device, a.amp)
            out["%s_%s_ms" % (backend, fmt)] = ms
            if best is None or ms < best[2]:
                best = (backend, fmt, ms)
    out.update({"qconfig": best[0], "format": best[1], "ms": best[2],
                "contiguous_ms": out[best[0] + "_contiguous_ms"], "channels_last_ms": out[best[0] + "_channels_last_ms"]})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
