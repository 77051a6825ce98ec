"""Checks vLLM's CPU int8 GEMM (the W8A8 `int-quantized` path) against exact integer math.

On x86 without AMX, vLLM's CPUInt8ScaledMMLinearKernel runs oneDNN's u8 x s8 matmul. Without
AVX-512 VNNI that product is built from vpmaddubsw, which adds each pair of adjacent u8 x s8
products in int16 with saturation, so large activation codes times large weight codes are clipped
before the int32 accumulation. This script runs vLLM's own ops (create_onednn_scaled_mm,
onednn_scaled_int8_quant, onednn_scaled_mm, float32 output) on per-channel int8 codes of a Gaussian
weight and on full-range codes, and compares them with (a) the exact int32 product and (b) the
saturating-pairs model: (x + 128) as u8 times w, adjacent pairs summed and clamped to
[-32768, 32767], minus the 128 * sum(w) compensation. It prints one JSON line; "saturates" is true
when vLLM's result is the saturating model (to float rounding) and not the exact product.

Run with vLLM's venv (scripts/vllm-venv): scripts/check-vllm calls it.
usage: vllm_int8_gemm.py [out.json]
"""
import json
import sys

import torch


def codes(kind, n, k, g):
    if kind == "full-range":
        return torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    w = torch.randn(n, k, generator=g)  # per output channel absmax codes, as our int8 export
    return torch.round(w * (127 / w.abs().amax(1, keepdim=True))).to(torch.int8)


def probe(kind, k=576, n=576, m=16, seed=0):
    from vllm import _custom_ops as ops

    g = torch.Generator().manual_seed(seed)
    w = codes(kind, n, k, g)
    ws = torch.rand(n, 1, generator=g) * 0.01 + 1e-3
    x = (torch.randn(m, k, generator=g) * 3).to(torch.bfloat16)
    handler = ops.create_onednn_scaled_mm(w.t(), ws, torch.float32, True, False)
    xq, xs, _ = ops.onednn_scaled_int8_quant(x, None, None, True)
    out = torch.empty(m, n, dtype=torch.float32)
    ops.onednn_scaled_mm(handler, xq, out, xs, None, None, None)
    scale = xs.double().view(-1, 1) * ws.double().view(1, -1)
    exact = (xq.double() @ w.double().t()) * scale
    prod = (xq.long() + 128).view(m, 1, k // 2, 2) * w.long().view(1, n, k // 2, 2)
    pairs = prod.sum(-1)
    saturated = pairs.clamp(-32768, 32767).sum(-1)
    model = (saturated - 128 * w.long().sum(1).view(1, n)).double() * scale
    top = exact.abs().max().item()
    return {
        "codes": kind,
        "max_rel_err_vs_exact": (out.double() - exact).abs().max().item() / top,
        "max_rel_err_vs_saturating": (out.double() - model).abs().max().item() / top,
        "saturated_pairs": (pairs.abs() > 32767).double().mean().item(),
    }


def main():
    rows = [probe("gaussian"), probe("full-range")]
    exact = all(r["max_rel_err_vs_exact"] < 1e-5 for r in rows)
    saturates = not exact and all(r["max_rel_err_vs_saturating"] < 1e-5 for r in rows)
    out = {"check": "vllm_int8_gemm", "exact": exact, "saturates": saturates,
           "amx": bool(torch.cpu._is_amx_tile_supported()), "probes": rows}
    line = json.dumps(out)
    print(line)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
