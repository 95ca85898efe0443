#!/usr/bin/python3
"""Draws the energy-accuracy Pareto frontier of prom runs into one PNG.

    scripts/plot_pareto.py runs/fp32 runs/prom runs/w8a8 ... --out pareto.png

Each argument is a run directory of prom-train. Its top-1 is the best eval_top1 in its
metrics.jsonl. A quantized run (quant.enabled in its config.yaml) also needs RUN_DIR/energy.json,
the output of

    prom-eval --report energy --json --model RUN.prom --config CONFIG > RUN_DIR/energy.json

(exact counts from the exported model): its energy per image is plotted on a log scale, once under
the honest count (filled circles) and once under the paper-like convention (open squares). A float
run is plotted at the fp16 and fp32 energies of the same network (from any quantized run's report)
as the baselines. The frontier joins the runs no other run beats on both axes (honest count).
Needs Debian's /usr/bin/python3 with python3-matplotlib and python3-yaml.
Bad input (a missing or unreadable file, a metrics file without evaluations): one line naming the
file, exit 1.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from plot_metrics import load as load_metrics  # noqa: E402  (this script's folder is on sys.path)


class BadInput(Exception):
    pass


def best_top1(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise BadInput(f"{path}: not found (is {run_dir} a prom-train run directory?)")
    _, epochs = load_metrics(path)  # exits with "PATH:LINE: not JSON" on a damaged line
    evaluated = [r["eval_top1"] for r in epochs if isinstance(r.get("eval_top1"), (int, float))]
    if not evaluated:
        raise BadInput(f"{path}: no epoch record with eval_top1 (the run has not evaluated yet)")
    return max(evaluated)


def is_quantized(run_dir):
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise BadInput(f"{path}: not found (is {run_dir} a prom-train run directory?)")
    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise BadInput(f"{path}: not YAML ({str(e).splitlines()[0]})")
    quant = config.get("quant") or {}
    return bool(quant.get("enabled", False))


def energy_of(run_dir):
    path = os.path.join(run_dir, "energy.json")
    if not os.path.isfile(path):
        raise BadInput(f"{path}: not found (write it with prom-eval --report energy --json --model RUN.prom "
                       f"--config CONFIG > {path})")
    try:
        with open(path) as f:
            report = json.load(f)
        total = report["total"]
        return {"honest": total["energy_pj"] / 1e6, "paper": report["paper_like"]["energy_pj"] / 1e6,
                "fp16": total["fp16_energy_pj"] / 1e6, "fp32": total["fp32_energy_pj"] / 1e6}
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: not JSON ({e.msg})")
    except (KeyError, TypeError) as e:
        raise BadInput(f"{path}: not a prom-eval --report energy --json report (missing {e})")


def frontier(points):
    """The points no other point beats on both axes (lower energy and higher top-1), by energy."""
    best = []
    for energy, top1, name in sorted(points):
        if not best or top1 > best[-1][1]:
            best.append((energy, top1, name))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="prom-train run directories")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--title", default="Energy per image against top-1")
    args = parser.parse_args()
    try:
        quantized, floats = [], []
        for run in args.runs:
            if not os.path.isdir(run):
                raise BadInput(f"{run}: not a directory")
            name = os.path.basename(os.path.normpath(run))
            top1 = best_top1(run)
            (quantized if is_quantized(run) else floats).append((name, top1, run))
        if not quantized:
            raise BadInput("no quantized run among the arguments: the fp16/fp32 baselines come from a quantized "
                           "run's energy.json")
        energies = {run: energy_of(run) for _, _, run in quantized}
    except (BadInput, OSError) as e:
        print(f"plot_pareto: {e}", file=sys.stderr)
        return 1

    fig, ax = plt.subplots(figsize=(7.5, 5))
    honest = [(energies[run]["honest"], top1, name) for name, top1, run in quantized]
    ax.scatter([e for e, _, _ in honest], [t for _, t, _ in honest], marker="o", color="tab:blue",
               label="prom, honest count", zorder=3)
    ax.scatter([energies[run]["paper"] for _, _, run in quantized], [t for _, t, _ in quantized], marker="s",
               facecolors="none", edgecolors="tab:blue", label="prom, paper-like count", zorder=3)
    for energy, top1, name in honest:
        ax.annotate(name, (energy, top1), textcoords="offset points", xytext=(5, 4), fontsize=8)
    line = frontier(honest)
    ax.plot([e for e, _, _ in line], [t for _, t, _ in line], color="tab:blue", alpha=0.5, zorder=2)
    reference = energies[quantized[0][2]]
    for name, top1, _ in floats:
        for key, color in (("fp16", "tab:red"), ("fp32", "tab:gray")):
            ax.scatter([reference[key]], [top1], marker="*", s=120, color=color, zorder=3,
                       label=f"{key} baseline ({name})")
    ax.set_xscale("log")
    ax.set_xlabel("energy per image (uJ, log scale)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(args.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = args.out + ".tmp.png"
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, args.out)  # nothing half-written under the name asked for
    except OSError as e:
        print(f"plot_pareto: {args.out}: cannot write ({e.strerror})", file=sys.stderr)
        return 1
    for energy, top1, name in sorted(honest):
        run = next(r for n, _, r in quantized if n == name)
        print(f"{name}: top-1 {top1:.2f}%, {energy:.3f} uJ honest, {energies[run]['paper']:.3f} uJ paper-like")
    for name, top1, _ in floats:
        print(f"{name}: top-1 {top1:.2f}%, fp16 {reference['fp16']:.3f} uJ, fp32 {reference['fp32']:.3f} uJ")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
