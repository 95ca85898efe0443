#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora under test/fuzz/corpus/ (committed; rerun only to change them).

Small valid inputs of each kind: safetensors files, tiny exported prom models (every op kind, both
ternary packings), configs with and without `base:` includes, PNG/JPEG images of the kinds the
decoder handles differently. Needs numpy and PIL (Debian python3-numpy, python3-pil).
"""
import io
import json
import os
import shutil
import struct

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    names = {np.float32: "F32", np.int8: "I8", np.uint8: "U8", np.int32: "I32", np.int64: "I64", np.float16: "F16"}
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        raw = a.tobytes()
        header[name] = {"dtype": names[a.dtype.type], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def pack_ternary(codes, packing):
    codes = codes.flatten()
    if packing == "2bit":
        out = np.zeros((len(codes) + 3) // 4, np.uint8)
        for i, c in enumerate(codes):
            out[i // 4] |= (1 if c == 1 else 2 if c == -1 else 0) << (2 * (i % 4))
    else:
        out = np.zeros((len(codes) + 4) // 5, np.uint8)
        for i, c in enumerate(codes):
            out[i // 5] += (int(c) + 1) * 3 ** (i % 5)
    return out


def int_model(packing):
    """stem 3x3 -> depthwise 3x3 stride 2 -> two ternary 1x1 -> add -> avgpool -> linear: every op kind."""
    rng = np.random.default_rng(1)
    acts = [(0.02, False, 3, 4, 4), (0.05, True, 4, 4, 4), (0.05, True, 4, 2, 2), (0.1, False, 4, 2, 2),
            (0.1, False, 4, 2, 2), (0.1, False, 4, 2, 2), (0.1, False, 4, 1, 1), (1.0, False, 2, 1, 1)]
    layers = [  # name, role, in, out, cin, cout, kernel, stride, padding, groups, ternary, relu6
        ("features.0.0", "stem", 0, 1, 3, 4, 3, 1, 1, 1, False, True),
        ("features.1.conv.0.0", "depthwise", 1, 2, 4, 4, 3, 2, 1, 4, False, True),
        ("features.1.conv.1", "pointwise_project", 2, 3, 4, 4, 1, 1, 0, 1, True, False),
        ("features.2.conv.0.0", "pointwise_expand", 3, 4, 4, 4, 1, 1, 0, 1, True, False),
    ]
    tensors, ops = {}, []
    for name, role, i, o, cin, cout, k, s, p, g, ternary, relu6 in layers:
        shape = [cout, cin // g, k, k]
        ops.append({"kind": "conv", "name": name, "input": i, "output": o, "role": role, "in_channels": cin,
                    "out_channels": cout, "kernel": k, "stride": s, "padding": p, "groups": g, "ternary": ternary,
                    "relu6": relu6, "acc_shift": 4, "weight_shape": shape,
                    "clamp_lo": 0 if acts[o][1] else -128, "clamp_hi": 255 if acts[o][1] else 127})
        if ternary:
            tensors[name + ".weight_ternary"] = pack_ternary(rng.integers(-1, 2, shape), packing)
        else:
            tensors[name + ".weight"] = rng.integers(-127, 128, shape).astype(np.int8)
        tensors[name + ".bias"] = rng.integers(-1000, 1000, [cout]).astype(np.int32)
        tensors[name + ".weight_scale"] = np.full([cout], 0.01, np.float32)
        tensors[name + ".multiplier"] = np.full([cout], 1 << 30, np.int32)
        tensors[name + ".right_shift"] = np.full([cout], 34, np.int32)
    ops.append({"kind": "add", "name": "", "input": 3, "input2": 4, "output": 5, "add_mult_a": 1 << 20,
                "add_mult_b": 1 << 20, "add_shift": 20})
    ops.append({"kind": "avgpool", "name": "", "input": 5, "output": 6})
    ops.append({"kind": "linear", "name": "classifier.1", "input": 6, "output": 7, "role": "classifier",
                "in_channels": 4, "out_channels": 2, "kernel": 1, "stride": 1, "padding": 0, "groups": 1,
                "ternary": False, "relu6": False, "acc_shift": 0, "weight_shape": [2, 4]})
    tensors["classifier.1.weight"] = rng.integers(-127, 128, [2, 4]).astype(np.int8)
    tensors["classifier.1.bias"] = np.array([5, -5], np.int32)
    tensors["classifier.1.weight_scale"] = np.full([2], 0.01, np.float32)
    tensors["classifier.1.output_scale"] = np.full([2], 0.001, np.float32)
    graph = {"arch": "mobilenet_v2", "classes": ["a", "b"], "input_size": 4,
             "preprocess": {"resize": 4, "crop": 4, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
             "ternary_packing": packing, "input": 0, "output": 7,
             "activations": [{"scale": a[0], "unsigned": a[1], "channels": a[2], "height": a[3], "width": a[4]}
                             for a in acts],
             "ops": ops}
    return safetensors(tensors, {"format": "prom-int-v2", "prom_version": "0.1.0",
                                 "graph": json.dumps(graph, separators=(",", ":"))})


def image(img, fmt, **options):
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    # safetensors
    write("fuzz_safetensors", "weights.safetensors",
          safetensors({"conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "bn.num_batches_tracked":
                       np.array(3, np.int64), "codes": np.array([-1, 0, 1, 2], np.int8)}, {"epoch": "1"}))
    write("fuzz_safetensors", "empty.safetensors", safetensors({}))
    write("fuzz_safetensors", "half.safetensors", safetensors({"h": np.ones([1, 2, 0], np.float16)}))
    for packing in ("2bit", "base3"):
        model = int_model(packing)
        write("fuzz_int_model", f"tiny_{packing}.prom", model)
        write("fuzz_safetensors", f"tiny_{packing}.prom", model)
    # configs: the shipped recipes (their bases resolve only from configs/, so they also exercise
    # "base not found"), and inputs that include the fuzz target's base.yaml and sub/nested.yaml
    for rel in ("fashion-mnist/mobilenetv2_fp32.yaml", "fashion-mnist/mobilenetv2_prom.yaml",
                "mobilenetv2_prom_imagenet.yaml", "policies/w8a8.yaml"):
        with open(os.path.join(ROOT, "configs", rel), "rb") as f:
            write("fuzz_config", os.path.basename(rel), f.read())
    write("fuzz_config", "with_base.yaml", b"base: base.yaml\nrun: {name: x, seed: 3}\ntrain: {epochs: 1}\n")
    write("fuzz_config", "with_bases.yaml",
          b"base: [sub/nested.yaml, base.yaml]\ndata:\n  synthetic: {enabled: true, classes: 10}\n"
          b"  mean: [0.5, 0.5, 0.5]\noptim: {name: adamw, lr: 1e-3}\n")
    write("fuzz_config", "minimal.yaml", b"model: {arch: mobilenet_v2, num_classes: 2}\n")
    # images: the libjpeg fast path (baseline, progressive, gray), what it leaves to OpenCV (CMYK),
    # and PNG (RGB, gray, alpha, 16-bit)
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, [6, 5, 3], dtype=np.uint8))
    write("fuzz_image_decode", "rgb.jpg", image(rgb, "JPEG", quality=80))
    write("fuzz_image_decode", "progressive.jpg", image(rgb, "JPEG", progressive=True))
    write("fuzz_image_decode", "gray.jpg", image(rgb.convert("L"), "JPEG"))
    write("fuzz_image_decode", "cmyk.jpg", image(rgb.convert("CMYK"), "JPEG"))
    write("fuzz_image_decode", "rgb.png", image(rgb, "PNG"))
    write("fuzz_image_decode", "gray.png", image(rgb.convert("L"), "PNG"))
    write("fuzz_image_decode", "rgba.png", image(rgb.convert("RGBA"), "PNG"))
    write("fuzz_image_decode", "gray16.png",
          image(Image.fromarray(np.arange(30, dtype=np.uint16).reshape(6, 5) * 2000), "PNG"))


if __name__ == "__main__":
    main()
