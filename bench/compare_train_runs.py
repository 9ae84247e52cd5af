#!/usr/bin/env python3
"""Two variants of the same training runs side by side (scripts/device-check.sh, sections `graphs`
and `verdict`).

usage: compare_train_runs.py RUNS.jsonl BASE VARIANT
RUNS.jsonl holds `train --json` lines, each preceded on its line by "<name> <mode> " (a run that
failed has its name and mode and nothing else). For each name: images/s of the BASE and VARIANT
modes, their ratio, peak memory, skipped steps, and the largest relative difference between the
losses their metrics logs hold for the same steps. The variants change how a step is issued, not
what it computes, so the losses should agree to rounding; "DIFFERS" means they do not.
"""
import json
import os
import sys

path, base, variant = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
for line in open(path):
    parts = line.strip().split(" ", 2)
    if len(parts) >= 2:
        runs.setdefault(parts[0], {})[parts[1]] = json.loads(parts[2]) if len(parts) == 3 else {}


def losses(run):
    out = {}
    metrics = run.get("metrics")
    if metrics and os.path.exists(metrics):
        for line in open(metrics):
            r = json.loads(line)
            if "loss" in r:
                out[r["step"]] = r["loss"]
    return out


fmt = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "-"
print(f"| run | {base} img/s | {variant} img/s | {variant} / {base} | {base} peak MiB | {variant} peak MiB "
      f"| skipped ({base}, {variant}) | max loss rel. diff | verdict |")
print("|---|---|---|---|---|---|---|---|---|")
for name, pair in sorted(runs.items()):
    b, v = pair.get(base, {}), pair.get(variant, {})
    bi, vi = b.get("images_per_s"), v.get("images_per_s")
    lb, lv = losses(b), losses(v)
    common = sorted(set(lb) & set(lv))
    diff = max((abs(lv[s] - lb[s]) / max(abs(lb[s]), 1e-12) for s in common), default=float("nan"))
    if not (bi and vi):
        verdict = "run failed"
    else:
        verdict = "ok" if common and diff < 1e-3 and b.get("skipped_steps") == v.get("skipped_steps") else "DIFFERS"
    ratio = f"{vi / bi:.2f}" if bi and vi else "-"
    print(f"| {name} | {fmt(bi)} | {fmt(vi)} | {ratio} | {fmt(b.get('peak_device_memory_mb'))} "
          f"| {fmt(v.get('peak_device_memory_mb'))} | {b.get('skipped_steps', '-')}, {v.get('skipped_steps', '-')} "
          f"| {diff:.2e} ({len(common)} steps) | {verdict} |")
