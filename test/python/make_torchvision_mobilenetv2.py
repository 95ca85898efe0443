#!/usr/bin/env python3
"""Reference for the MobileNetV2 cross-check: torchvision's mobilenet_v2 with a fixed seed, BN running
statistics moved away from their defaults, and its eval-mode logits for a fixed input.
Writes OUT_DIR/<case>_weights.safetensors (via scripts/import_torchvision.py) and OUT_DIR/<case>_io.safetensors."""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from import_torchvision import state_dict_arrays, write_safetensors  # noqa: E402

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
        model.eval()
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            logits = model(x)
        write_safetensors(os.path.join(out_dir, f"{name}_weights.safetensors"), state_dict_arrays(model))
        write_safetensors(os.path.join(out_dir, f"{name}_io.safetensors"),
                          {"input": x.numpy(), "logits": logits.numpy()},
                          {"width_mult": str(width), "num_classes": str(classes), "input_size": str(size)})
    print(f"torchvision {torchvision.__version__}: wrote {len(CASES)} reference cases to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1])
