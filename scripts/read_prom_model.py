#!/usr/bin/env python3
"""Read a prom integer model (.prom, safetensors) with numpy only, and run its layers the way
prom's integer engine does, so a third party can deploy a PROM model without prom.

  read_prom_model.py MODEL                         # summary of the graph
  read_prom_model.py MODEL --check-layer NAME --io IO.safetensors
      # IO holds 'input' (int16 codes [C,H,W]) and 'output' (the engine's codes for that layer);
      # recomputes the layer and exits 0 when every value matches exactly.

Format (docs/model-format.md): tensors '<layer>.weight' (int8) or '<layer>.weight_ternary' (uint8,
2-bit codes 00=0 01=+1 10=-1, four per byte, first weight in the low bits; or base-3, five per
byte), '<layer>.bias' (int32, in 2^-acc_shift accumulator steps), '<layer>.multiplier' and
'<layer>.shift' (int32, TFLite-style fixed point); metadata 'graph' (JSON) lists the ops in order.
"""
import argparse
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        tensors[name] = np.frombuffer(body[b:end], dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<")).reshape(e["shape"])
    return tensors, meta


def unpack_ternary(packed, count, packing):
    packed = packed.astype(np.int64)
    if packing == "2bit":
        bits = np.stack([(packed >> (2 * k)) & 3 for k in range(4)], axis=1).reshape(-1)[:count]
        if (bits == 3).any():
            raise ValueError("invalid 2-bit code")
        return np.where(bits == 1, 1, np.where(bits == 2, -1, 0)).astype(np.int8)
    digits = np.stack([(packed // 3 ** k) % 3 for k in range(5)], axis=1).reshape(-1)[:count]
    return (digits - 1).astype(np.int8)


def load(path):
    tensors, meta = read_safetensors(path)
    if meta.get("format") != "prom-int-v1":
        raise ValueError(f"{path}: not a prom-int-v1 model")
    graph = json.loads(meta["graph"])
    for op in graph["ops"]:
        if op["kind"] in ("conv", "linear"):
            name, shape = op["name"], op["weight_shape"]
            if op["ternary"]:
                w = unpack_ternary(tensors[name + ".weight_ternary"], int(np.prod(shape)), graph["ternary_packing"])
            else:
                w = tensors[name + ".weight"]
            op["weight"] = w.reshape(shape).astype(np.int64)
            op["bias"] = tensors[name + ".bias"].astype(np.int64)
            if op["kind"] == "conv":
                op["multiplier"] = tensors[name + ".multiplier"].astype(np.int64)
                op["shift"] = tensors[name + ".shift"].astype(np.int64)
    return graph


# gemmlowp / TFLite fixed point, elementwise on int64 arrays.
def rounding_doubling_high_mul(a, b):
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = ab + nudge
    return np.where(q >= 0, q // (1 << 31), -((-q) // (1 << 31)))  # C++ division truncates toward zero


def rounding_divide_by_pot(x, e):
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.clip(x * (1 << left), -2 ** 31, 2 ** 31 - 1)
    return rounding_divide_by_pot(rounding_doubling_high_mul(x, multiplier), right)


def run_conv(op, graph, x):
    """x: int codes [C, H, W] -> output codes [C_out, H_out, W_out]."""
    out_act = graph["activations"][op["output"]]
    k, s, p, g = op["kernel"], op["stride"], op["padding"], op["groups"]
    w = op["weight"]
    c_in, h, wd = x.shape
    xp = np.zeros((c_in, h + 2 * p, wd + 2 * p), dtype=np.int64)
    xp[:, p:p + h, p:p + wd] = x
    ho, wo = out_act["height"], out_act["width"]
    cin_g, cout_g = c_in // g, op["out_channels"] // g
    acc = np.zeros((op["out_channels"], ho, wo), dtype=np.int64)
    for co in range(op["out_channels"]):
        grp = co // cout_g
        for ci in range(cin_g):
            for ky in range(k):
                for kx in range(k):
                    patch = xp[grp * cin_g + ci, ky:ky + s * ho:s, kx:kx + s * wo:s]
                    acc[co] += w[co, ci, ky, kx] * patch
    acc = acc * (1 << op["acc_shift"]) + op["bias"][:, None, None]
    y = multiply_by_quantized_multiplier(acc, op["multiplier"][:, None, None], op["shift"][:, None, None])
    lo = 0 if (op["relu6"] or out_act["unsigned"]) else -128
    hi = 255 if out_act["unsigned"] else 127
    if op["relu6"]:
        hi = min(hi, int(np.floor(6.0 / out_act["scale"] + 0.5)))
    return np.clip(y, lo, hi)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--check-layer")
    ap.add_argument("--io")
    a = ap.parse_args()
    graph = load(a.model)
    if not a.check_layer:
        print(f"{graph['arch']}: {len(graph['ops'])} ops, {len(graph['classes'])} classes, input {graph['input_size']}")
        for op in graph["ops"]:
            extra = ""
            if op["kind"] in ("conv", "linear"):
                extra = f" {'ternary' if op['ternary'] else 'int8'} {op['weight_shape']}"
            print(f"  {op['kind']:8s} {op['name']:24s}{extra}")
        return 0
    op = next((o for o in graph["ops"] if o["name"] == a.check_layer and o["kind"] == "conv"), None)
    if op is None:
        print(f"no conv layer named {a.check_layer}", file=sys.stderr)
        return 2
    io, _ = read_safetensors(a.io)
    y = run_conv(op, graph, io["input"].astype(np.int64))
    expected = io["output"].astype(np.int64).reshape(y.shape)
    diff = int((y != expected).sum())
    print(f"layer {a.check_layer}: {y.size} output codes, {diff} differ from prom's engine")
    return 0 if diff == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
