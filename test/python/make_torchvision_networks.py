#!/usr/bin/env python3
"""Reference for the cross-check of prom's other networks (MobileNetV3 Small/Large, MNASNet,
EfficientNet-B0) against torchvision: for each case, torchvision's model with a fixed seed and
random BatchNorm statistics and affine parameters and unit-gain linear layers, and its eval-mode logits for a fixed input;
and, for every builder, the parameter count and the convolution + linear multiply-accumulates at
224 px / 1000 classes, counted on torchvision's own modules with forward hooks.
Writes OUT_DIR/<case>_weights.safetensors, OUT_DIR/<case>_io.safetensors and OUT_DIR/counts.json."""
import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from import_torchvision import build, state_dict_arrays, write_safetensors  # noqa: E402

CASES = {  # name: (builder, width_mult, num_classes, input size)
    "v3_small_c1000": ("mobilenet_v3_small", 1.0, 1000, 224),
    "v3_large_w075_c10": ("mobilenet_v3_large", 0.75, 10, 96),
    "mnasnet1_0_c1000": ("mnasnet1_0", 1.0, 1000, 224),
    "mnasnet0_5_c10": ("mnasnet0_5", 1.0, 10, 96),
    "efficientnet_b0_c1000": ("efficientnet_b0", 1.0, 1000, 224),
}
COUNTED = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
           "mnasnet1_3", "efficientnet_b0"]


def randomize(model):
    """BatchNorm statistics and affine parameters away from their defaults (1, 0, 0, 1); linear layers
    at unit gain, so that logits are O(1) and the 1e-4 tolerance is a tight one (torchvision's
    initialisation gives MobileNetV3 logits of about 0.03)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, m.in_features ** -0.5)
                m.bias.normal_(0, 0.1)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)


def conv_linear_macs(model, size):
    """Multiply-accumulates of every Conv2d and Linear for one image, from the shapes torch computes."""
    total = [0]

    def conv_hook(m, inputs, out):
        total[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inputs, out):
        total[0] += m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear_hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return total[0]


def write_case(out_dir, name, model, size, metadata):
    """The model's weights and its eval-mode logits (stochastic depth and dropout off) for a fixed input."""
    model.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = model(x)
    write_safetensors(os.path.join(out_dir, f"{name}_weights.safetensors"), state_dict_arrays(model))
    write_safetensors(os.path.join(out_dir, f"{name}_io.safetensors"), {"input": x.numpy(), "logits": logits.numpy()},
                      metadata)


def main(out_dir):
    torch.set_num_threads(2)
    for name, (arch, width, classes, size) in CASES.items():
        torch.manual_seed(0)
        model = build(torchvision, arch, None, classes, width)
        randomize(model)
        write_case(out_dir, name, model, size,
                   {"arch": arch, "width_mult": str(width), "num_classes": str(classes), "input_size": str(size)})
    counts = {}
    for arch in COUNTED:
        model = build(torchvision, arch, None, 1000, 1.0)
        counts[arch] = {"params": sum(p.numel() for p in model.parameters()), "macs": conv_linear_macs(model, 224)}
    with open(os.path.join(out_dir, "counts.json"), "w") as f:
        json.dump(counts, f, indent=1)
    print(f"torchvision {torchvision.__version__}: wrote {len(CASES)} reference cases and the counts of "
          f"{len(COUNTED)} builders to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1])
