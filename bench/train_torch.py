#!/usr/bin/env python3
"""The PyTorch side of `coil bench train`: the same small models, the same step, on the same GPU.

The step: forward and loss under bf16 autocast, backward, clip_grad_norm_(1.0), AdamW (fused, fp32
master weights = the fp32 parameters), on random tokens; median step time over --steps timed steps
after --warmup. Models (spec/models.md): the Llama-2 layout of section 1 (RMSNorm, untied head,
SwiGLU MLP) with
  softmax  RoPE (interleaved pairs, theta 1e4) + F.scaled_dot_product_attention(is_causal=True)
  2mamba   conv 2 on qkv, softplus A-mask, squared scaled scores, SM norm, written as the masked
           quadratic form with plain tensor ops (what a PyTorch user writes without a kernel)
Modes: eager, and torch.compile (default options). FLOPs per token for MFU: 6 N + 6 L T C for
softmax (causal products), 6 N for 2mamba, as coil's trainer/metrics.cpp counts them.

  python3 bench/train_torch.py --model softmax --batch 8 --seq 2048 --mode eager compile
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def rope(x, theta=10000.0):
    # x (B, T, H, D): channels (2i, 2i+1) rotate by t * theta^(-2i/D)
    B, T, H, D = x.shape
    inv = theta ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    ang = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    xf = x.float().view(B, T, H, D // 2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.view(B, T, H, D).to(x.dtype)


class Softmax(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.h, C // self.h).unbind(2)
        q, k = rope(q), rope(k)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True)
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class TwoMamba(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.conv = nn.Conv1d(3 * d, 3 * d, 2, groups=3 * d, padding=1)
        self.wa = nn.Linear(d, h, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        D = C // self.h
        qkv = self.conv(self.qkv(x).transpose(1, 2))[..., :T].transpose(1, 2)
        q, k, v = qkv.reshape(B, T, 3, self.h, D).permute(2, 0, 3, 1, 4)  # (B, H, T, D) each
        a = -F.softplus(self.wa(x).float()).transpose(1, 2)  # (B, H, T)
        acs = a.cumsum(-1)
        u = (q @ k.transpose(-1, -2)).float() * (D ** -0.5)
        mask = torch.ones(T, T, device=x.device, dtype=torch.bool).tril()
        w = (u * u) * torch.exp((acs[..., :, None] - acs[..., None, :]).masked_fill(~mask, -1e30))
        y = (w.to(v.dtype) @ v).float() / w.sum(-1, keepdim=True).clamp_min(1e-8)
        return self.o(y.to(x.dtype).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, mixer, d, h, hidden):
        super().__init__()
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.mixer = Softmax(d, h) if mixer == "softmax" else TwoMamba(d, h)
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        x = x + self.mixer(self.n1(x))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class LM(nn.Module):
    def __init__(self, mixer, vocab=32000, d=1024, layers=20, heads=16, hidden=2048):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(mixer, d, heads, hidden) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids, targets):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def run(mixer, mode, batch, seq, steps, warmup, peak):
    torch.manual_seed(0)
    dev = "cuda"
    model = LM(mixer).to(dev)
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    ids = torch.randint(0, 32000, (batch, seq + 1), device=dev)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for s in range(warmup + steps):
        if s == warmup:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_v = loss.item()
        torch.cuda.synchronize()
        if s >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    tok_s = batch * seq / (med * 1e-3)
    flops = 6 * n + (6 * 20 * seq * 1024 if mixer == "softmax" else 0)
    return {"bench": "train_torch", "model": f"{mixer}-small", "mode": mode, "params": n,
            "batch": batch, "seq": seq, "step_ms": med, "tokens_per_s": tok_s,
            "mfu": flops * tok_s / (peak * 1e12), "peak_bytes": torch.cuda.max_memory_allocated(),
            "loss": loss_v}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["softmax", "2mamba"], default="softmax")
    ap.add_argument("--mode", nargs="+", choices=["eager", "compile"], default=["eager"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    print(f"{'model':22s} {'mode':8s} {'params':>8s} {'B':>5s} {'T':>6s} {'step ms':>10s} "
          f"{'tokens/s':>11s} {'MFU':>6s} {'peak mem':>10s} {'loss':>9s}")
    for mode in a.mode:
        try:
            r = run(a.model, mode, a.batch, a.seq, a.steps, a.warmup, a.peak_tflops)
        except torch.OutOfMemoryError:
            print(f"{a.model + '-small':22s} {mode:8s} out of memory")
            torch.cuda.empty_cache()
            continue
        print(f"{r['model']:22s} {mode:8s} {r['params'] / 1e6:7.1f}M {a.batch:5d} {a.seq:6d} "
              f"{r['step_ms']:10.2f} {r['tokens_per_s']:11.0f} {100 * r['mfu']:5.1f}% "
              f"{r['peak_bytes'] / 2**30:6.2f} GiB {r['loss']:9.4f}")
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(r) + "\n")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
