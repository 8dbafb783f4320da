"""PyTorch's causal scaled_dot_product_attention in the shapes of coil_attention_bench, so that coil's
attention timings are ratios from one run on one GPU.

bf16, H heads of dim D, TOKENS tokens per call, T from 1K to 32K (B = TOKENS / T); q, k, v, dO are
(B, T, H, D) tensors viewed as (B, H, T, D), the layout of a fused QKV projection (and of coil's op).
Backends: torch's default choice, cuDNN (SDPBackend.CUDNN_ATTENTION) and FlashAttention-2
(SDPBackend.FLASH_ATTENTION). Timing as in coil_attention_bench: CUDA events around each call, after
warm-up calls, median of --iters; fwd under no_grad; fwd+bwd = sdpa + backward(dO), grads dropped
between calls. FLOPs: fwd = 4 B H T^2 D / 2, fwd+bwd = 3.5 x fwd.

    python3 bench/attention_torch.py [--coil coil.csv] [--iters 20] [--warmup 3]

With --coil (the --csv output of coil_attention_bench) it prints coil's times beside torch's and the
ratios coil / torch-cuDNN and coil / torch-default (below 1: coil is faster); the ratios use coil's
kernel-level fwd+bwd ("coil f+b"); "autograd" is coil's fwd+bwd through its autograd engine.
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, between, warmup, iters):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(warmup):
        fn()
        between()
    times = []
    for _ in range(iters):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
        between()
    return statistics.median(times)


def time_backend(backend, q, k, v, do, leaves, warmup, iters):
    """(fwd ms, fwd+bwd ms) with `backend` (None: torch's default choice); None where it cannot run."""
    def call():
        if backend is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def fwd():
        with torch.no_grad():
            call()

    def fwd_bwd():
        call().backward(do)

    def drop_grads():
        for t in leaves:
            t.grad = None

    try:
        return (median_ms(fwd, lambda: None, warmup, iters), median_ms(fwd_bwd, drop_grads, warmup, iters))
    except RuntimeError as e:  # the backend does not take this shape / build
        print(f"  ({backend}: {str(e).splitlines()[0][:100]})")
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coil", help="CSV written by coil_attention_bench --csv")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--lengths", default="1024,2048,4096,8192,16384,32768")
    args = ap.parse_args()

    coil = {}
    if args.coil:
        for line in open(args.coil):
            f = line.strip().split(",")
            coil[int(f[0])] = (float(f[4]), float(f[5]), float(f[8]) if len(f) > 8 else float("nan"))

    dev = torch.cuda.get_device_name(0)
    print(f"device: {dev}; torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    H, D = args.heads, args.dim
    backends = {"default": None, "cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}
    gen = torch.Generator(device="cuda").manual_seed(2026)
    rows = []
    for T in [int(t) for t in args.lengths.split(",")]:
        B = args.tokens // T

        def draw(grad):
            x = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=gen)
            return x.requires_grad_(grad).transpose(1, 2)  # (B, H, T, D) view of (B, T, H, D)

        q, k, v, do = draw(True), draw(True), draw(True), draw(False)
        # .grad lives on the leaves; the transposed views are what sdpa sees.
        leaves = [t._base if t._base is not None else t for t in (q, k, v)]
        res = {}
        for name, b in backends.items():
            r = time_backend(b, q, k, v, do, leaves, args.warmup, args.iters)
            for t in leaves:
                t.grad = None
            res[name] = r
        rows.append((T, B, res))
        del q, k, v, do, leaves
        torch.cuda.empty_cache()

    def tflops(T, B, ms, factor):
        return factor * 4.0 * B * H * T * T * D / 2.0 / (ms * 1e-3) / 1e12

    fmt = lambda r, i: f"{r[i]:8.3f}" if r else "     n/a"
    print(f"\ncausal bf16 SDPA, H={H} D={D}, {args.tokens} tokens per call, median of {args.iters} (ms)")
    head = f"{'T':>6} {'B':>3} |" + "".join(f" {n + ' fwd':>13} {n + ' f+b':>13} |" for n in backends)
    if coil:
        head += f" {'coil fwd':>9} {'coil f+b':>9} {'autograd':>9} | {'f+b/cudnn':>9} {'f+b/dflt':>9} {'fwd/cudnn':>9}"
    print(head)
    for T, B, res in rows:
        line = f"{T:>6} {B:>3} |" + "".join(f" {fmt(res[n], 0):>13} {fmt(res[n], 1):>13} |" for n in backends)
        if T in coil:
            cf, cfb, cag = coil[T]
            ratio = lambda a, r, i: f"{a / r[i]:9.3f}" if r else "      n/a"
            line += f" {cf:9.3f} {cfb:9.3f} {cag:9.3f} | {ratio(cfb, res['cudnn'], 1)} {ratio(cfb, res['default'], 1)}" \
                    f" {ratio(cf, res['cudnn'], 0)}"
        print(line)
    print("\nTFLOP/s (fwd / fwd+bwd):")
    for T, B, res in rows:
        parts = [f"{n} {tflops(T, B, res[n][0], 1):.0f}/{tflops(T, B, res[n][1], 3.5):.0f}" if res[n] else f"{n} n/a"
                 for n in backends]
        if T in coil:
            parts.append(f"coil {tflops(T, B, coil[T][0], 1):.0f}/{tflops(T, B, coil[T][1], 3.5):.0f}")
        print(f"  T={T:>5}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
