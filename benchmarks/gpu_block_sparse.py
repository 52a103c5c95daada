"""Issue 22's block-sparse bound, measured (needs a CUDA GPU): document masks
of several document lengths in one 8K sequence, run by FlexAttention and by
attnc's generated kernel, each against its own unmasked run; and what the
GPU model predicts for the same kernel. For each: time / (unmasked time x
fraction of key tiles visited) at the kernel's tiles (FlexAttention's
128 x 128 blocks; the generated kernel's mapping). The model puts 512-token
documents near 1.8x and 2K-token ones near 1.2x (docs/flex.md, Findings 7,
benchmarks/block_sparse_bound.py); this is the measurement that would
confirm or correct it.

    python benchmarks/gpu_block_sparse.py [--out FILE.csv] [--time-limit S]

Prints a CSV (kernel, document length, ms, unmasked ms, fraction visited,
ratio, predicted ratio); stops at the time limit and keeps what it has.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

N, HEADS, DIM = 8192, 16, 64
LENGTHS = (256, 512, 1024, 2048, 4096)
COLUMNS = ["kernel", "doc_len", "ms", "unmasked_ms", "visited", "ratio", "predicted_ratio"]


def fraction_visited(doc: np.ndarray, bm: int, bn: int) -> float:
    """Key tiles a row tile of a causal document mask visits / all key tiles."""
    p = np.arange(len(doc))
    keep = (doc[:, None] == doc[None, :]) & (p[None, :] <= p[:, None])
    rows, cols = -(-len(doc) // bm), -(-len(doc) // bn)
    pad = np.zeros((rows * bm, cols * bn), bool)
    pad[:len(doc), :len(doc)] = keep
    return float(pad.reshape(rows, bm, cols, bn).any(axis=(1, 3)).mean())


def predicted_ratio(kernel, env: dict, doc: np.ndarray, hw: str) -> float:
    from attnc.gpu import recognise
    from hw_models.gpu import load_gpu
    from scripts.flex_table import unmasked
    from simulator.gpu import predict_fused
    gpu = load_gpu(hw)
    m = kernel._mapping_for(env)
    sparse = predict_fused(kernel.program, m, gpu, env, {"DOC": doc[None]})
    dense = predict_fused(recognise(unmasked(kernel.cascade, ("DOC",)), env), m, gpu, env)
    seen = sparse.parts["tiles_full"] + sparse.parts["tiles_partial"]
    return sparse.time_s / (dense.time_s * seen / (seen + sparse.parts["tiles_skipped"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_block_sparse.csv")
    ap.add_argument("--time-limit", type=float, default=150.0)
    a = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("gpu_block_sparse: needs a CUDA GPU", file=sys.stderr)
        return 2
    import einsum_ir as ei
    from attnc import compile as attnc_compile
    from cuda_timing import CudaTimer, compiled_flex_attention, first_line
    from torch.nn.attention.flex_attention import create_block_mask
    timer, flex, start = CudaTimer(torch), compiled_flex_attention(torch), time.perf_counter()
    name = torch.cuda.get_device_name(0)
    hw = "h200" if "H200" in name else "h100" if "H100" in name else "a100"
    design = ei.load(str(ROOT / "tests" / "flex" / "corpus" / "document.ein"))
    q, k, v = (torch.randn(1, HEADS, N, DIM, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    rows = []
    dense_flex = timer.median_s(lambda: flex(q, k, v))
    for length in LENGTHS:
        if time.perf_counter() - start > a.time_limit:
            print(f"doc {length}: skip: past the time limit", flush=True)
            break
        doc = (np.arange(N) // length).astype(np.int32)
        d = torch.tensor(doc, device="cuda")
        mask = create_block_mask(lambda b, h, qi, ki: (d[qi] == d[ki]) & (ki <= qi), None, None, N, N, device="cuda")
        ms = timer.median_s(lambda: flex(q, k, v, block_mask=mask))
        frac = fraction_visited(doc, 128, 128)
        rows.append(["flex_attention", length, ms * 1e3, dense_flex * 1e3, frac, ms / (dense_flex * frac), ""])
        try:
            shapes = dict(B=1, H=HEADS, P=N, E=DIM, F=DIM)
            kern = attnc_compile(design, shapes, hw=hw, inputs={"DOC": doc[None]}, dtype="bf16")
            dense_kern = attnc_compile(ei.parse("\n".join(
                ln for ln in str(design).replace(" where vis", "").splitlines()
                if not ln.startswith(("mask vis", "input DOC")))), shapes, mapping=kern.mapping, dtype="bf16")
            qt, kt, vt = (x.transpose(2, 3).contiguous() for x in (q, k, v))      # [B, H, E, P]
            dt = torch.tensor(doc[None], device="cuda")
            ms_k = timer.median_s(lambda: kern(Q=qt, K=kt, V=vt, DOC=dt))
            ms_d = timer.median_s(lambda: dense_kern(Q=qt, K=kt, V=vt))
            env = ei.resolve(design, shapes, {"DOC": doc[None]})
            m = kern._mapping_for(env)
            frac_k = fraction_visited(doc, m.block_m, m.block_n)
            rows.append(["attnc", length, ms_k * 1e3, ms_d * 1e3, frac_k, ms_k / (ms_d * frac_k),
                         predicted_ratio(kern, env, doc, hw)])
        except Exception as e:      # a benchmark keeps what it measured and says what failed
            print(f"attnc doc {length}: failed: {first_line(e)}", flush=True)
    with open(a.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    for r in rows:
        print(",".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
