#!/usr/bin/env python3
"""The torchvision side of `prom-bench loader`: ImageFolder + DataLoader (PIL) over the same files,
with the same preset and worker count. One warm-up epoch (file cache, worker start), then --epochs
timed epochs; prints one JSON line with the best rates:
  {"images": N, "images_per_s": wall-clock rate, "images_per_cpu_s": images per CPU-second of this
   process and its workers together (robust to other jobs on a shared machine)}.

  bench_torchvision_loader.py --dir DIR --preset train|eval --workers N --batch-size B
"""
import argparse
import json
import os
import resource
import time

import torch
import torchvision.datasets as datasets
import torchvision.transforms as T

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def cpu_seconds(worker_pids):
    """CPU time of this process plus its DataLoader workers (user + system)."""
    total = resource.getrusage(resource.RUSAGE_SELF)
    t = total.ru_utime + total.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in worker_pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        t += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return t


def worker_init(_):
    torch.set_num_threads(1)  # one core per worker, as prom's pool threads


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--preset", choices=["train", "eval"], required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.preset == "train":
        tf = T.Compose([T.RandomResizedCrop(a.crop), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    else:
        tf = T.Compose([T.Resize(a.resize), T.CenterCrop(a.crop), T.ToTensor(), T.Normalize(MEAN, STD)])
    ds = datasets.ImageFolder(a.dir, tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=a.preset == "train",
                                         num_workers=a.workers, persistent_workers=a.workers > 0,
                                         worker_init_fn=worker_init)
    for _ in loader:  # warm-up
        pass
    best = {"images": 0, "images_per_s": 0.0, "images_per_cpu_s": 0.0}
    for _ in range(a.epochs):
        pids = [w.pid for w in loader._iterator._workers] if a.workers > 0 else []
        n, t0, c0 = 0, time.perf_counter(), cpu_seconds(pids)
        for images, _ in loader:
            n += images.shape[0]
        s, c = time.perf_counter() - t0, cpu_seconds(pids) - c0
        best["images"] = n
        best["images_per_s"] = max(best["images_per_s"], n / s)
        best["images_per_cpu_s"] = max(best["images_per_cpu_s"], n / max(c, 1e-9))
    print(json.dumps(best))

if __name__ == "__main__":
    main()
