#!/usr/bin/env python3
"""Measures the GPU's dense bf16 matrix-product rate (TFLOP/s), the denominator of model FLOPs
utilisation in scripts/device-check.sh. Prints one number."""
import time

import torch

n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(5):
    a @ b
torch.cuda.synchronize()
reps = 50
t0 = time.perf_counter()
for _ in range(reps):
    a @ b
torch.cuda.synchronize()
print(f"{2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12:.1f}")
