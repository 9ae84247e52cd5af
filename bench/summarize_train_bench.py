#!/usr/bin/env python3
"""Joins arcforge `train --json` lines with pytorch_train_bench.py lines into a Markdown table."""
import json
import sys


def load(path):
    rows = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows[(r["arch"], r["precision"])] = r
    return rows


ours, theirs = load(sys.argv[1]), load(sys.argv[2])
print("| arch | precision | arcforge img/s | PyTorch img/s | ratio | arcforge peak MiB | PyTorch peak MiB | arcforge final loss |")
print("|---|---|---|---|---|---|---|---|")
for key in sorted(set(ours) | set(theirs)):
    a, p = ours.get(key, {}), theirs.get(key, {})
    ai, pi = a.get("images_per_s"), p.get("images_per_s")
    ratio = f"{ai / pi:.2f}" if ai and pi else "-"
    fmt = lambda v, d=1: f"{v:.{d}f}" if isinstance(v, (int, float)) else "-"
    print(f"| {key[0]} | {key[1]} | {fmt(ai)} | {fmt(pi)} | {ratio} | {fmt(a.get('peak_device_memory_mb'), 0)} "
          f"| {fmt(p.get('peak_device_memory_mb'), 0)} | {fmt(a.get('final_loss'), 3)} |")
