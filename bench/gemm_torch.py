#!/usr/bin/env python3
"""torch.matmul in bf16 on the shapes of bench/gemm_bench.cpp (fwd x w^T, dx = g w, dw = g^T x)."""
import sys
import time

import torch

iters = int(sys.argv[1]) if len(sys.argv) > 1 else 20
shapes = [("qkv", 16384, 1024, 3072), ("o", 16384, 1024, 1024), ("gate/up", 16384, 1024, 2048),
          ("down", 16384, 2048, 1024), ("head", 16384, 1024, 32000)]
print(f"{'torch':8s} {'M':>6s} {'K':>6s} {'N':>6s} | {'fwd ms':>9s} {'TFLOP/s':>8s} | {'dx ms':>9s} "
      f"{'TFLOP/s':>8s} | {'dw ms':>9s} {'TFLOP/s':>8s}")
for name, M, K, N in shapes:
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    g = torch.randn(M, N, device="cuda", dtype=torch.bfloat16)
    out = []
    for fn in (lambda: x @ w.t(), lambda: g @ w, lambda: g.t() @ x):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3 / iters
        out.append((ms, 2 * M * K * N / ms * 1e-9))
    print(f"{name:8s} {M:6d} {K:6d} {N:6d} | " + " | ".join(f"{ms:9.3f} {tf:8.1f}" for ms, tf in out))
