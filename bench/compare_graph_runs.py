#!/usr/bin/env python3
"""Eager against CUDA-graph training runs (scripts/device-check.sh, section `graphs`).

usage: compare_graph_runs.py GRAPHS.jsonl RUNS_DIR
GRAPHS.jsonl holds `train --json` lines, each preceded on its line by "<name> <eager|graph> ";
RUNS_DIR/graph_<name>_<eager|graph>/metrics.jsonl are the runs' logs. For each name: images/s of
both, their ratio, peak memory, skipped steps, and the largest relative difference between the
losses logged at the same steps (the graph replays the eager step's kernels, so they should agree
to rounding; a real divergence means the captured step is not the eager one).
"""
import json
import os
import sys

runs = {}
for line in open(sys.argv[1]):
    parts = line.strip().split(" ", 2)
    if len(parts) >= 2:  # a run that failed has its name and mode and nothing else
        runs.setdefault(parts[0], {})[parts[1]] = json.loads(parts[2]) if len(parts) == 3 else {}


def losses(name, mode):
    path = os.path.join(sys.argv[2], f"graph_{name}_{mode}", "metrics.jsonl")
    out = {}
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            if "loss" in r:
                out[r["step"]] = r["loss"]
    return out


print("| run | eager img/s | graph img/s | graph / eager | eager peak MiB | graph peak MiB | skipped (eager, graph) "
      "| max loss rel. diff | verdict |")
print("|---|---|---|---|---|---|---|---|---|")
for name, pair in sorted(runs.items()):
    e, g = pair.get("eager", {}), pair.get("graph", {})
    ei, gi = e.get("images_per_s"), g.get("images_per_s")
    le, lg = losses(name, "eager"), losses(name, "graph")
    common = sorted(set(le) & set(lg))
    diff = max((abs(lg[s] - le[s]) / max(abs(le[s]), 1e-12) for s in common), default=float("nan"))
    verdict = "run failed" if not (ei and gi) else "ok" if common and diff < 1e-3 and e.get("skipped_steps") == g.get("skipped_steps") else "DIFFERS"
    ratio = f"{gi / ei:.2f}" if ei and gi else "-"
    fmt = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "-"
    print(f"| {name} | {fmt(ei)} | {fmt(gi)} | {ratio} | {fmt(e.get('peak_device_memory_mb'))} "
          f"| {fmt(g.get('peak_device_memory_mb'))} | {e.get('skipped_steps', '-')}, {g.get('skipped_steps', '-')} "
          f"| {diff:.2e} ({len(common)} steps) | {verdict} |")
