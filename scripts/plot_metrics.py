#!/usr/bin/python3
"""Draws the training curves of one or several prom runs into one PNG.

    scripts/plot_metrics.py runs/a runs/b --out curves.png

Each argument is a run directory (holding metrics.jsonl) or a metrics.jsonl file. Panels: the
training loss per logging step, the evaluation top-1 (and top-5) per epoch, the learning rate, and
images/s. After a resume a run may log a step or an epoch twice; the last record wins. Needs
Debian's /usr/bin/python3 with python3-matplotlib.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    steps, epochs = {}, {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
            if r.get("kind") == "step":
                steps[r["iteration"]] = r
            elif r.get("kind") == "epoch":
                epochs[r["epoch"]] = r
    return [steps[k] for k in sorted(steps)], [epochs[k] for k in sorted(epochs)]


def label_of(path):
    path = path.rstrip("/")
    if path.endswith("metrics.jsonl"):
        path = os.path.dirname(path)
    return os.path.basename(path) or path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files")
    p.add_argument("--out", default="metrics.png", help="PNG to write (default: metrics.png)")
    p.add_argument("--title", default="", help="figure title")
    a = p.parse_args()

    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    (loss_ax, acc_ax), (lr_ax, speed_ax) = ax
    for run in a.runs:
        if not os.path.exists(run):
            sys.exit(f"{run}: not found")
        steps, epochs = load(run)
        name = label_of(run)
        color = None
        if steps:
            it = [s["iteration"] for s in steps]
            color = loss_ax.plot(it, [s["loss"] for s in steps], label=name, linewidth=0.8)[0].get_color()
            lr_ax.plot(it, [s["lr"] for s in steps], label=name)
            speed_ax.plot(it, [s["images_per_s"] for s in steps], label=name, linewidth=0.8)
        ev = [e for e in epochs if "eval_top1" in e]
        if ev:
            line, = acc_ax.plot([e["epoch"] for e in ev], [e["eval_top1"] for e in ev], marker="o", label=f"{name} top-1")
            acc_ax.plot([e["epoch"] for e in ev], [e["eval_top5"] for e in ev], linestyle="--", color=line.get_color(),
                        label=f"{name} top-5")
        if epochs:
            loss_ax.plot([e["iteration"] for e in epochs], [e["train_loss"] for e in epochs], marker="s",
                         linestyle="none", color=color, label=f"{name} epoch mean")
    loss_ax.set(title="training loss", xlabel="iteration")
    acc_ax.set(title="evaluation accuracy (%)", xlabel="epoch")
    lr_ax.set(title="learning rate", xlabel="iteration")
    speed_ax.set(title="images/s", xlabel="iteration")
    for axis in ax.flat:
        axis.grid(alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=8)
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()
