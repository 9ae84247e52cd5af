#!/usr/bin/env python3
"""Joins arcforge `train --json` lines with pytorch_train_bench.py lines into a Markdown table.

usage: summarize_train_bench.py ARCFORGE.jsonl PYTORCH.jsonl [MACS.json PEAK_TFLOPS]
Memory: on CUDA the peak allocated GPU memory, on the CPU the process's peak resident memory (both
sides measure it the same way: getrusage, which counts the Python interpreter on PyTorch's side).
MACS.json maps arch -> multiply-accumulates per 112x112 image (from `arcforge model-info --json`);
with it and the measured bf16 matrix-product rate, the table adds model FLOPs utilisation:
images/s x 3 (forward + backward) x 2 x MACs / peak.
"""
import json
import sys


def load(path):
    rows = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows[(r["arch"], r["precision"], r.get("dataset", "synthetic"))] = r
    return rows


ours, theirs = load(sys.argv[1]), load(sys.argv[2])
macs = json.load(open(sys.argv[3])) if len(sys.argv) > 3 else {}
peak = float(sys.argv[4]) * 1e12 if len(sys.argv) > 4 else 0.0
fmt = lambda v, d=1: f"{v:.{d}f}" if isinstance(v, (int, float)) else "-"


def memory_mb(row):  # GPU allocated on CUDA, process RSS on the CPU
    return row.get("peak_device_memory_mb") or row.get("peak_host_memory_mb")


print("| arch | precision | data | arcforge img/s | PyTorch img/s | ratio | arcforge MFU | arcforge peak MiB "
      "| PyTorch peak MiB | arcforge final loss | skipped |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(set(ours) | {k for k in theirs}):
    a = ours.get(key, {})
    p = theirs.get((key[0], key[1], "synthetic"), {}) if key[2] == "synthetic" else {}
    ai, pi = a.get("images_per_s"), p.get("images_per_s")
    ratio = f"{ai / pi:.2f}" if ai and pi else "-"
    mfu = f"{100 * ai * 6 * macs[key[0]] / peak:.1f}%" if ai and peak and key[0] in macs else "-"
    print(f"| {key[0]} | {key[1]} | {key[2]} | {fmt(ai)} | {fmt(pi)} | {ratio} | {mfu} "
          f"| {fmt(memory_mb(a), 0)} | {fmt(memory_mb(p), 0)} "
          f"| {fmt(a.get('final_loss'), 3)} | {a.get('skipped_steps', '-')} |")

# bf16 over fp32 for each side (issue 2's CPU target: bf16 at least 2x fp32 where the CPU has AMX).
speedups = []
for (arch, precision, data), a in sorted(ours.items()):
    if precision != "bf16" or (arch, "fp32", data) not in ours:
        continue
    fp32 = ours[(arch, "fp32", data)]["images_per_s"]
    line = f"{arch} {data}: arcforge bf16/fp32 {a['images_per_s'] / fp32:.2f}x" if fp32 else ""
    p16, p32 = theirs.get((arch, "bf16", data)), theirs.get((arch, "fp32", data))
    if line and p16 and p32 and p32.get("images_per_s"):
        line += f", PyTorch bf16/fp32 {p16['images_per_s'] / p32['images_per_s']:.2f}x"
    if line:
        speedups.append(line)
if speedups:
    print()
    print("; ".join(speedups))
