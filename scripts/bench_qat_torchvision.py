#!/usr/bin/python3
"""The torch.ao side of `prom-bench train --qat`: ms per eager-mode QAT training step.

torchvision's quantizable mobilenet_v2 (quantize=False), train mode, fuse_model(is_qat=True),
the default fbgemm QAT qconfig, prepare_qat; then the same step as bench_train_torchvision.py.
Prints one JSON object on stdout. Run by prom-bench with Debian's /usr/bin/python3.
"""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train_torchvision import run  # noqa: E402


def qat_model(classes):
    # The fbgemm QAT qconfig as the brief says; fake quantization during training does not use the
    # quantized engine (Debian's torch has no FBGEMM engine: qnnpack, onednn only).
    model = torchvision.models.quantization.mobilenet_v2(weights=None, quantize=False, num_classes=classes)
    model.train()
    model.fuse_model(is_qat=True)
    model.qconfig = torch.ao.quantization.get_default_qat_qconfig("fbgemm")
    torch.ao.quantization.prepare_qat(model, inplace=True)
    return model


if __name__ == "__main__":
    run(qat_model, {"qconfig": "fbgemm"})
