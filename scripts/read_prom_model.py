#!/usr/bin/env python3
"""Read a prom integer model (.prom, safetensors) with numpy only, and run it the way prom's
integer engine does, so a third party can deploy a PROM model without prom.

  read_prom_model.py MODEL                         # summary of the graph
  read_prom_model.py MODEL --check-layer NAME --io IO.safetensors
      # IO holds 'input' (int16 codes [C,H,W]) and 'output' (the engine's codes for that layer);
      # recomputes the layer and exits 0 when every value matches exactly.
  read_prom_model.py MODEL --check-model IO.safetensors
      # IO holds 'input' (codes [N,C,H,W]) and 'logits' (the engine's int32 logits [N,classes]);
      # runs the whole graph and exits 0 when every logit matches exactly.
  read_prom_model.py --check-arithmetic CASES.safetensors
      # CASES holds random inputs and prom's results for each arithmetic function (lib/quant/arithmetic.h);
      # exits 0 when this file's mirror computes the same integers.

Format (docs/model-format.md): tensors '<layer>.weight' (int8) or '<layer>.weight_ternary' (uint8,
2-bit codes 00=0 01=+1 10=-1, four per byte, first weight in the low bits; or base-3, five per
byte), '<layer>.bias' (int32, in 2^-acc_shift accumulator steps), '<layer>.multiplier' and
'<layer>.right_shift' (int32 fixed point), v3: '<layer>.table' (int32 [256], activation lookup);
metadata 'graph' (JSON) lists the ops in order (v3 adds 'mul', squeeze-and-excitation scaling).
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
    if meta.get("format") not in ("prom-int-v2", "prom-int-v3"):
        raise ValueError(f"{path}: format is {meta.get('format')!r}, expected prom-int-v2 or prom-int-v3")
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
                op["right_shift"] = tensors[name + ".right_shift"].astype(np.int64)
            if "activation" in op:  # v3: hardswish, sigmoid, ... as a table on the pre-activation codes
                op["table"] = tensors[name + ".table"].astype(np.int64)
    return graph


# ---- the arithmetic of lib/quant/arithmetic.h, elementwise on int64 arrays ----
# One rounding rule: to nearest, ties to even, applied once.

def rounding_shift_right(x, shift):
    x = np.asarray(x, dtype=np.int64)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), x.shape)
    s = np.clip(shift, 1, 62)
    q = x >> s
    rem = x & ((np.int64(1) << s) - 1)
    half = np.int64(1) << (s - 1)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    out = q + up
    out = np.where(shift <= 0, x, out)
    return np.where(shift >= 63, 0, out)


def divide_round_half_even(num, den):
    q, r = np.divmod(np.asarray(num, dtype=np.int64), den)  # floor division, r >= 0
    return q + ((2 * r > den) | ((2 * r == den) & ((q & 1) == 1)))


def requantize(acc, acc_shift, bias, multiplier, right_shift, lo, hi):
    v = np.asarray(acc, dtype=np.int64) * (1 << acc_shift) + bias
    return np.clip(rounding_shift_right(v * multiplier, right_shift), lo, hi)


def add_requantize(a, b, mult_a, mult_b, shift, lo, hi):
    t = np.asarray(a, dtype=np.int64) * mult_a + np.asarray(b, dtype=np.int64) * mult_b
    return np.clip(rounding_shift_right(t, shift), lo, hi)


def mul_requantize(x, g, multiplier, right_shift, lo, hi):
    return requantize(np.asarray(x, dtype=np.int64) * g, 0, 0, multiplier, right_shift, lo, hi)


def quantize_to_code(x, inv_scale, lo, hi):
    r = np.rint(np.asarray(x, dtype=np.float32) * np.float32(inv_scale))  # float32 product, ties to even
    return np.clip(np.nan_to_num(r, nan=lo), lo, hi).astype(np.int64)


def conv_acc(op, x, out_act):
    """Integer accumulators of a (grouped) convolution: x codes [C, H, W] -> [C_out, H_out, W_out]."""
    k, s, p, g = op["kernel"], op["stride"], op["padding"], op["groups"]
    w = op["weight"]
    c_in, h, wd = x.shape
    xp = np.zeros((c_in, h + 2 * p, wd + 2 * p), dtype=np.int64)
    xp[:, p:p + h, p:p + wd] = x
    ho, wo = out_act["height"], out_act["width"]
    c_out = op["out_channels"]
    acc = np.zeros((g, c_out // g, ho, wo), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, ky:ky + s * ho:s, kx:kx + s * wo:s].reshape(g, c_in // g, ho, wo)
            acc += np.einsum("goi,gihw->gohw", w[:, :, ky, kx].reshape(g, c_out // g, c_in // g), patch)
    return acc.reshape(c_out, ho, wo)


def run_conv(op, graph, x):
    out_act = graph["activations"][op["output"]]
    acc = conv_acc(op, x, out_act)
    y = requantize(acc, op["acc_shift"], op["bias"][:, None, None], op["multiplier"][:, None, None],
                   op["right_shift"][:, None, None], op["clamp_lo"], op["clamp_hi"])
    return op["table"][y + 128] if "table" in op else y


def run_model(graph, x):
    """codes [C, H, W] of the input -> int64 logits [classes]."""
    acts = {graph["input"]: x.astype(np.int64)}
    for op in graph["ops"]:
        out_act = graph["activations"][op["output"]]
        if op["kind"] == "conv":
            y = run_conv(op, graph, acts[op["input"]])
        elif op["kind"] == "add":
            lo, hi = (0, 255) if out_act["unsigned"] else (-128, 127)
            y = add_requantize(acts[op["input"]], acts[op["input2"]], op["add_mult_a"], op["add_mult_b"],
                               op["add_shift"], lo, hi)
        elif op["kind"] == "mul":  # squeeze-and-excitation: features [C, H, W] times the gate [C, 1, 1]
            lo, hi = (0, 255) if out_act["unsigned"] else (-128, 127)
            y = mul_requantize(acts[op["input"]], acts[op["input2"]].reshape(-1, 1, 1), op["mul_multiplier"],
                               op["mul_shift"], lo, hi)
        elif op["kind"] == "avgpool":
            a = acts[op["input"]]
            y = divide_round_half_even(a.reshape(a.shape[0], -1).sum(1), a.shape[1] * a.shape[2])[:, None, None]
        else:  # linear
            acc = op["weight"] @ acts[op["input"]].reshape(-1)
            y = acc * (1 << op["acc_shift"]) + op["bias"]
        acts[op["output"]] = y
    return acts[graph["output"]]


def check_arithmetic(path):
    t, _ = read_safetensors(path)
    i64 = {k: v.astype(np.int64) for k, v in t.items() if v.dtype != np.float32}
    results = {
        "requantize": requantize(i64["rq_acc"], int(i64["rq_acc_shift"][0]), i64["rq_bias"], i64["rq_multiplier"],
                                 i64["rq_right_shift"], i64["rq_lo"], i64["rq_hi"]),
        "add": add_requantize(i64["add_a"], i64["add_b"], i64["add_mult_a"], i64["add_mult_b"], i64["add_shift"],
                              -128, 127),
        "divide": divide_round_half_even(i64["div_num"], i64["div_den"]),
        "shift": rounding_shift_right(i64["shift_x"], i64["shift_n"]),
        "quantize": quantize_to_code(t["q_x"], t["q_inv"][0], -128, 127),
    }
    bad = 0
    for name, got in results.items():
        diff = int((got != i64[name + "_expected"]).sum())
        print(f"{name}: {got.size} cases, {diff} differ from prom")
        bad += diff
    return 0 if bad == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--check-layer")
    ap.add_argument("--io")
    ap.add_argument("--check-model")
    ap.add_argument("--check-arithmetic")
    a = ap.parse_args()
    if a.check_arithmetic:
        return check_arithmetic(a.check_arithmetic)
    if not a.model:
        ap.error("MODEL is required")
    graph = load(a.model)
    if a.check_model:
        io, _ = read_safetensors(a.check_model)
        logits = np.stack([run_model(graph, x) for x in io["input"].astype(np.int64)])
        diff = int((logits != io["logits"].astype(np.int64)).sum())
        print(f"model: {logits.size} logits over {len(logits)} images, {diff} differ from prom's engine")
        return 0 if diff == 0 else 1
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
