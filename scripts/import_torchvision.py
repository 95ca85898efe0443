#!/usr/bin/env python3
"""Write torchvision's float weights of a network prom builds (mobilenet_v2, mobilenet_v3_small,
mobilenet_v3_large, mnasnet0_5/0_75/1_0/1_3, efficientnet_b0) to a safetensors file with
torchvision's key names, the format `model.init:` and prom's weight loader read. This is how
ImageNet-pretrained weights come into prom. Runs with any Python that has torch + torchvision (Debian: /usr/bin/python3 with
python3-torch and python3-torchvision). Needs no safetensors package: the format is written here.

  import_torchvision.py --out mobilenet_v2_imagenet.safetensors --weights IMAGENET1K_V1  # pretrained
  import_torchvision.py --out mnv2_random.safetensors --num-classes 10 --seed 0          # random init
  import_torchvision.py --out mnv2.safetensors --state-dict mobilenet_v2-b0353104.pth   # a local .pth
  import_torchvision.py --arch efficientnet_b0 --out effnet_b0.safetensors --state-dict efficientnet_b0_rwightman-3dd342df.pth
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

DTYPES = {
    np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16",
    np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL",
}


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> numpy array. Written in name order, header padded to 8 bytes, atomically."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype not in DTYPES:
            raise ValueError(f"{name}: unsupported dtype {a.dtype}")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def state_dict_arrays(model):
    return {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}


ARCHS = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
         "mnasnet1_3", "efficientnet_b0"]


def build(torchvision, arch, weights, num_classes, width_mult):
    """torchvision's builder for `arch`; width_mult only where the builder takes it."""
    builder = getattr(torchvision.models, arch)
    if weights:
        return builder(weights=weights)
    kwargs = {"num_classes": num_classes}
    if arch.startswith("mobilenet"):
        kwargs["width_mult"] = width_mult
    elif width_mult != 1.0:
        raise SystemExit(f"--width-mult: {arch} fixes its width in torchvision")
    return builder(**kwargs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mobilenet_v2", choices=ARCHS, help="torchvision builder name")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--weights", default=None,
                   help="torchvision weights enum name, e.g. IMAGENET1K_V1 or IMAGENET1K_V2 (downloads via torch hub)")
    p.add_argument("--state-dict", default=None, help="a local .pth state dict of the torchvision network")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="seed for a random initialisation")
    a = p.parse_args()

    import torch
    import torchvision

    torch.manual_seed(a.seed)
    weights = torchvision.models.get_model_weights(a.arch)[a.weights] if a.weights else None
    model = build(torchvision, a.arch, weights, a.num_classes, a.width_mult)
    if a.state_dict:
        model.load_state_dict(torch.load(a.state_dict, map_location="cpu"))
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    meta = {"arch": a.arch, "source": "torchvision " + torchvision.__version__,
            "num_classes": str(classifier.out_features), "width_mult": str(a.width_mult),
            "weights": a.weights or (a.state_dict and os.path.basename(a.state_dict)) or f"random seed {a.seed}"}
    write_safetensors(a.out, state_dict_arrays(model), meta)
    print(f"wrote {a.out}: {sum(v.numel() for v in model.parameters()):,} parameters")


if __name__ == "__main__":
    sys.exit(main())
