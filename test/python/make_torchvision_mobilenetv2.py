#!/usr/bin/env python3
"""Reference for the MobileNetV2 cross-check: torchvision's mobilenet_v2 with a fixed seed, BN running
statistics moved away from their defaults, and its eval-mode logits for a fixed input.
Writes OUT_DIR/<case>_weights.safetensors and OUT_DIR/<case>_io.safetensors."""
import sys

import torch
import torchvision

from make_torchvision_networks import write_case  # test/python: beside this script

CASES = {  # name: (width_mult, num_classes, input size)
    "w100_c1000": (1.0, 1000, 224),
    "w075_c10": (0.75, 10, 96),
}


def main(out_dir):
    torch.set_num_threads(2)
    for name, (width, classes, size) in CASES.items():
        torch.manual_seed(0)
        model = torchvision.models.mobilenet_v2(num_classes=classes, width_mult=width)
        # Train-mode passes so BN running stats are not the trivial (0, 1).
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(4, 3, size, size) * 2 + 0.5)
        write_case(out_dir, name, model, size,
                   {"width_mult": str(width), "num_classes": str(classes), "input_size": str(size)})
    print(f"torchvision {torchvision.__version__}: wrote {len(CASES)} reference cases to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1])
