"""attnc's generated Triton kernels against torch on the CUDA GPU at hand:
SDPA (torch.nn.functional.scaled_dot_product_attention) and FlexAttention
(torch.compile(flex_attention)), bf16, head_dim 128, 16 heads. Prefill at
lengths 4K, 8K and 16K with batch x length = 16K tokens for cab-self
(standard), cab-self-causal, alibi (causal + ALiBi), sliding-window (causal,
W = 1024) and gated-attention (sigmoid output gate from X W_g); decode: one
query token against a KV cache of 8K or 64K tokens, batch 1 and 8.

attnc's kernel at each point is the fastest of the GPU model's top 4 mappings
(codegen.autotune), checked against a float32 reference before it is timed
(max abs error < 2e-2), then timed as a user calls it: the FusedKernel
call with whatever host-side work it does (for designs with predicates or
hoisted Einsums that includes copying the inputs to the host). Every kernel
sees the same inputs: q already scaled by 1/sqrt(D) (attnc's designs have no
softmax scale; SDPA and Flex get scale=1.0), attnc's [B, H, D, N] operands
as transposed views of the [B, H, N, D] tensors. Baselines: SDPA for cab-self, cab-self-causal and decode;
Flex for alibi and sliding-window (SDPA would need an N x N bias or mask);
Flex followed by torch's own gate (flex+gate) for gated-attention, which is
also timed with SDPA (sdpa+gate). ratio_vs_baseline on attnc rows is the
baseline's time over attnc's (above 1: attnc is faster). Rows are written as
they finish, so a run cut short still leaves its results; decode runs first,
then the prefill lengths shortest first, and no kernel starts after
--time-limit seconds. Run: PYTHONPATH=. python benchmarks/triton_vs_torch.py
--out triton.csv [--quick]"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_timing import CudaTimer, compiled_flex_attention, first_line  # noqa: E402  (shared with gpu_attention.py)

COLUMNS = ("device", "design", "kernel", "batch", "heads", "q_len", "kv_len", "head_dim", "time_s", "tflops",
           "ratio_vs_baseline", "mapping", "max_err")
DESIGNS = ("cab-self", "cab-self-causal", "alibi", "sliding-window", "gated-attention", "decode")
PREFILL_DESIGNS = DESIGNS[:-1]
CAUSAL = {"cab-self-causal", "alibi", "sliding-window"}
# the kernels timed at each point, baselines first (cheapest first), attnc last
KERNELS = {"cab-self": ("sdpa", "flex", "attnc"),
           "cab-self-causal": ("sdpa", "flex", "attnc"),
           "alibi": ("flex", "attnc"),
           "sliding-window": ("flex", "attnc"),
           "gated-attention": ("sdpa+gate", "flex+gate", "attnc"),
           "decode": ("sdpa", "attnc")}
BASELINE = {"cab-self": "sdpa", "cab-self-causal": "sdpa", "decode": "sdpa",
            "alibi": "flex", "sliding-window": "flex", "gated-attention": "flex+gate"}
TOKENS = 16384             # batch x length at every prefill point
HEADS = 16
HEAD_DIM = 128
WINDOW = 1024
PREFILL_LENGTHS = (4096, 8192, 16384)
PREFILL_LENGTHS_QUICK = (4096,)
DECODE_KV = (8192, 65536)
DECODE_KV_QUICK = (8192,)
DECODE_BATCH = (1, 8)
TOLERANCE = 2e-2           # max abs error of attnc's bf16 output against the float32 reference
AUTOTUNE_TOP = 4
AUTOTUNE_REPS = 5         # autotune only ranks the mappings; the row's time is measured below, L2 flushed
REF_ELEMENTS = 1 << 27     # scores per chunk of the float32 reference (512 MiB)
DEVICE = "cuda"


def points(quick: bool) -> list[dict]:
    """Decode first (cheap, no compiles but attnc's), then prefill by length, shortest first, every design at
    a length before the next length, so a run cut short by the time limit still covers every design."""
    pts = [dict(design="decode", batch=b, heads=HEADS, q_len=1, kv_len=kv, head_dim=HEAD_DIM, window=None)
           for kv in (DECODE_KV_QUICK if quick else DECODE_KV) for b in DECODE_BATCH]
    for n in PREFILL_LENGTHS_QUICK if quick else PREFILL_LENGTHS:
        for d in PREFILL_DESIGNS:
            pts.append(dict(design=d, batch=TOKENS // n, heads=HEADS, q_len=n, kv_len=n, head_dim=HEAD_DIM,
                            window=WINDOW if d == "sliding-window" else None))
    return pts


def flops(design, batch, heads, q_len, kv_len, head_dim, window=None) -> float:
    """Two matmuls (QK^T and PV), 2 flops per multiply-add, over the (query, key) pairs the design keeps:
    all for cab-self, gated-attention (the gate's GEMM not counted) and decode; half for the causal designs;
    N*W - W*(W-1)/2 per head for the causal window (N >= W; N*(N+1)/2 when the window covers everything)."""
    if design == "sliding-window":
        if window is None or q_len != kv_len:
            raise ValueError("sliding-window: needs the window and q_len == kv_len")
        n, w = q_len, window
        pairs = n * w - w * (w - 1) // 2 if n >= w else n * (n + 1) // 2
        return 4 * batch * heads * pairs * head_dim
    total = 4 * batch * heads * q_len * kv_len * head_dim
    return total / 2 if design in CAUSAL else total


def shapes_for(point) -> dict:
    """Every extent of the attnc design at a point (the symbols autotune cannot read off the inputs: W)."""
    p = point
    d = p["head_dim"]
    if p["design"] == "decode":
        return dict(B=p["batch"], H=p["heads"], M=p["kv_len"], E=d, F=d)
    s = dict(B=p["batch"], H=p["heads"], P=p["q_len"], E=d, F=d)
    if p["design"] == "gated-attention":
        s.update(M=p["kv_len"], D=p["heads"] * d)
    if p["design"] == "sliding-window":
        s["W"] = p["window"]
    return s


def alibi_slopes(torch, heads, device=None):
    """ALiBi's geometric slopes 2^(-8(h+1)/H), float32."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)], dtype=torch.float32,
                        device=device)


def make_inputs(torch, point, dtype=None, device=DEVICE, seed=0) -> dict:
    """q, k, v in SDPA's [B, H, N, D] layout, q scaled by 1/sqrt(D) once for every kernel; plus the design's
    extras: slopes (alibi), window (sliding-window), x [B, H*D, N] and wg [H, D, H*D] (gated-attention; wg
    scaled by 1/sqrt(H*D) so the gate's pre-activations are about unit size)."""
    p = point
    dtype = dtype or torch.bfloat16
    g = torch.Generator(device=device).manual_seed(seed)
    b, h, n, m, d = p["batch"], p["heads"], p["q_len"], p["kv_len"], p["head_dim"]

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * scale).to(dtype)

    t = dict(q=randn(b, h, n, d, scale=1 / math.sqrt(d)), k=randn(b, h, m, d), v=randn(b, h, m, d))
    if p["design"] == "alibi":
        t["slopes"] = alibi_slopes(torch, h, device)
    if p["design"] == "sliding-window":
        t["window"] = p["window"]
    if p["design"] == "gated-attention":
        t["x"] = randn(b, h * d, n)
        t["wg"] = randn(h, d, h * d, scale=1 / math.sqrt(h * d))
    return t


def attnc_inputs(design, t) -> dict:
    """attnc's inputs by name: Q[B, H, E, P], K[B, H, E, M], V[B, H, F, M] as transposed views (the kernel
    reads strides); decode's Q[B, H, E] is the one query token."""
    q = t["q"][:, :, 0, :] if design == "decode" else t["q"].transpose(-1, -2)
    inp = dict(Q=q, K=t["k"].transpose(-1, -2), V=t["v"].transpose(-1, -2))
    if design == "alibi":
        inp["SLOPE"] = t["slopes"]
    if design == "gated-attention":
        inp.update(X=t["x"], WG=t["wg"])
    return inp


def attnc_output(design, out):
    """attnc's AV[B, H, F, P] (decode: AV[B, H, F]) in SDPA's [B, H, N, D] layout."""
    return out.unsqueeze(2) if design == "decode" else out.transpose(-1, -2)


def gate(torch, t, o):
    """gated-attention's output gate as torch computes it, separately: sigmoid(X W_g) * o."""
    return torch.sigmoid(torch.einsum("bdp,hfd->bhpf", t["x"], t["wg"])) * o


def reference(torch, design, t):
    """The design's output in float32, [B, H, N, D], computed in query chunks of explicit scores (masks and
    the ALiBi bias written out), independent of SDPA, Flex and attnc."""
    q, k, v = t["q"], t["k"].float(), t["v"].float()
    b, h, n, _ = q.shape
    m = k.shape[2]
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    kv_idx = torch.arange(m, device=q.device)
    chunk = max(1, min(n, REF_ELEMENTS // max(1, b * h * m)))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        q_idx = torch.arange(s, e, device=q.device)[:, None]
        sc = q[:, :, s:e].float() @ k.transpose(-1, -2)
        if design == "alibi":
            sc += t["slopes"].float().view(1, h, 1, 1) * (kv_idx[None, :] - q_idx).float()
        if design in CAUSAL:
            keep = kv_idx[None, :] <= q_idx
            if design == "sliding-window":
                keep &= q_idx - kv_idx[None, :] < t["window"]
            sc.masked_fill_(~keep, float("-inf"))
        out[:, :, s:e] = torch.softmax(sc, dim=-1) @ v
    if design == "gated-attention":
        out *= torch.sigmoid(torch.einsum("bdp,hfd->bhpf", t["x"].float(), t["wg"].float()))
    return out


def flex_mods(design, t):
    """Flex's (score_mod, mask_mod) for a design: ALiBi's bias slope[h] * (kv - q), the causal mask, the
    causal window; None where the design has none."""
    causal = None
    if design in CAUSAL:
        if design == "sliding-window":
            w = t["window"]

            def causal(b, h, q_idx, kv_idx):
                return (q_idx >= kv_idx) & (q_idx - kv_idx < w)
        else:
            def causal(b, h, q_idx, kv_idx):
                return q_idx >= kv_idx
    score = None
    if design == "alibi":
        slopes = t["slopes"]

        def score(s, b, h, q_idx, kv_idx):
            return s + slopes[h] * (kv_idx - q_idx)
    return score, causal


def baseline_fn(torch, kernel, design, t, flex=None, create_block_mask=None):
    """A no-argument callable for a torch baseline, returning [B, H, N, D]. `flex` is the flex_attention to
    call (torch.compile'd on the GPU; eager in the CPU tests)."""
    q, k, v = t["q"], t["k"], t["v"]
    gated = kernel.endswith("+gate")
    if kernel.startswith("sdpa"):
        if design in ("alibi", "sliding-window"):
            raise ValueError(f"{design}: no SDPA baseline (it would need an N x N bias or mask)")
        sdpa = torch.nn.functional.scaled_dot_product_attention
        causal = design in CAUSAL

        def attn():
            return sdpa(q, k, v, is_causal=causal, scale=1.0)
    else:
        if design == "decode":
            raise ValueError("decode: no Flex baseline")
        score, mask_mod = flex_mods(design, t)
        mask = None
        if mask_mod is not None:
            mask = create_block_mask(mask_mod, None, None, q.shape[2], k.shape[2], device=q.device)

        def attn():
            return flex(q, k, v, score_mod=score, block_mask=mask, scale=1.0)
    if gated:
        return lambda: gate(torch, t, attn())
    return attn


def max_err(torch, out, ref) -> float:
    return float((out.float() - ref).abs().max().item())


def hw_for(device_name: str) -> str:
    """attnc's GPU preset for the device torch reports (the H100's where none matches)."""
    name = device_name.upper()
    for key, hw in (("H200", "h200"), ("A100", "a100"), ("H100", "h100")):
        if key in name:
            return hw
    return "h100"


def label(point) -> str:
    p = point
    s = f"{p['design']} B={p['batch']} H={p['heads']} N={p['q_len']}x{p['kv_len']} D={p['head_dim']}"
    return s + (f" W={p['window']}" if p.get("window") else "")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="triton.csv", help="CSV to write (default triton.csv)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: prefill 4K only, decode KV 8K at batch 1 and 8")
    ap.add_argument("--designs", default=",".join(DESIGNS), metavar="A,B",
                    help=f"comma-separated subset of {','.join(DESIGNS)} (default all)")
    ap.add_argument("--time-limit", type=float, default=480.0, metavar="S",
                    help="start no kernel after S seconds (default 480: one 10-minute device call)")
    args = ap.parse_args(argv)
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = [d for d in args.designs if d not in DESIGNS]
    if unknown:
        ap.error(f"unknown design {unknown[0]!r}; choose from {', '.join(DESIGNS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    import torch
    if not torch.cuda.is_available():
        print("no CUDA GPU: this benchmark needs one; run it on a machine with an NVIDIA GPU "
              "(PYTHONPATH=. python benchmarks/triton_vs_torch.py --out triton.csv)", file=sys.stderr)
        return 2
    bench = _Bench(torch)
    pts = [p for p in points(args.quick) if p["design"] in args.designs]
    nruns = sum(len(KERNELS[p["design"]]) for p in pts)
    print(f"{bench.device} (attnc preset {bench.hw}): {bench.total_bytes / 2**30:.1f} GiB, torch {torch.__version__}, "
          f"{len(pts)} points, {nruns} runs, time limit {args.time_limit:.0f} s", flush=True)
    rows = []
    with open(args.out, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        f.flush()
        for i, p in enumerate(pts, start=1):
            tag = f"[{i}/{len(pts)}] {label(p)}"
            if time.perf_counter() - start > args.time_limit:
                print(f"{tag}: skip: past the time limit ({args.time_limit:.0f} s)", flush=True)
                continue
            try:
                t = make_inputs(torch, p)
            except Exception as e:
                print(f"{tag}: failed to make inputs: {type(e).__name__}: {first_line(e)}", flush=True)
                bench.release()
                continue
            try:
                ref = reference(torch, p["design"], t)
            except Exception as e:   # attnc's rows then go unchecked: say so and carry on
                print(f"{tag}: reference failed ({type(e).__name__}: {first_line(e)}): no max_err", flush=True)
                ref = None
            times = {}
            for kernel in KERNELS[p["design"]]:
                ktag = f"{tag} {kernel}"
                if time.perf_counter() - start > args.time_limit:
                    print(f"{ktag}: skip: past the time limit ({args.time_limit:.0f} s)", flush=True)
                    continue
                try:
                    secs, err, mapping, note = bench.run(kernel, p, t, ref)
                except Exception as e:  # a compile error, a wrong result or an out-of-memory: no row, go on
                    print(f"{ktag}: failed: {type(e).__name__}: {first_line(e)}", flush=True)
                    bench.release()
                    continue
                times[kernel] = secs
                fl = flops(p["design"], p["batch"], p["heads"], p["q_len"], p["kv_len"], p["head_dim"],
                           p["window"])
                tflops = fl / secs / 1e12
                base = times.get(BASELINE[p["design"]]) if kernel == "attnc" else None
                ratio = base / secs if base else None
                row = dict(p, kernel=kernel, time_s=secs, tflops=tflops, ratio=ratio, mapping=mapping, max_err=err)
                rows.append(row)
                out.writerow([bench.device, p["design"], kernel, p["batch"], p["heads"], p["q_len"], p["kv_len"],
                              p["head_dim"], f"{secs:.6e}", f"{tflops:.2f}",
                              "" if ratio is None else f"{ratio:.3f}", mapping,
                              "" if err is None else f"{err:.3e}"])
                f.flush()
                extra = "" if ratio is None else f"  {ratio:.2f}x {BASELINE[p['design']]}"
                print(f"{ktag}: {secs * 1e3:9.4f} ms {tflops:7.1f} TFLOP/s{extra}"
                      + ("" if err is None else f"  err {err:.2e}") + note, flush=True)
            del t, ref
            bench.release()
    print(f"\nwrote {len(rows)} rows to {args.out} in {time.perf_counter() - start:.0f} s\n", flush=True)
    if rows:
        print(summary(rows), flush=True)
    return 0


def summary(rows) -> str:
    """Every timed kernel, then attnc against each point's baseline."""
    from attnc.report import table

    def shape(r):
        return f"B={r['batch']} N={r['q_len']}x{r['kv_len']}"

    def opt(x, fmt):
        return "" if x is None else format(x, fmt)

    all_rows = [[r["design"], shape(r), r["kernel"], f"{r['time_s'] * 1e3:.4f}", f"{r['tflops']:.1f}",
                 opt(r["max_err"], ".2e"), r["mapping"]] for r in rows]
    by_point = {}
    for r in rows:
        by_point.setdefault((r["design"], r["batch"], r["q_len"], r["kv_len"]), {})[r["kernel"]] = r
    vs = []
    for (design, *_), ks in by_point.items():
        a, b = ks.get("attnc"), ks.get(BASELINE[design])
        if a is None and b is None:
            continue
        ratio = a["ratio"] if a else None
        vs.append([design, shape(a or b), BASELINE[design],
                   opt(b and b["time_s"] * 1e3, ".4f"), opt(a and a["time_s"] * 1e3, ".4f"),
                   opt(b and b["tflops"], ".1f"), opt(a and a["tflops"], ".1f"),
                   "" if ratio is None else f"{ratio:.2f}x"])
    return (table(["design", "shape", "kernel", "ms", "TFLOP/s", "max_err", "mapping"], all_rows,
                  align="lllrrrl")
            + "\n\nattnc vs baseline (ratio = baseline time / attnc time; above 1: attnc faster)\n"
            + table(["design", "shape", "baseline", "base ms", "attnc ms", "base TFLOP/s", "attnc TFLOP/s", "ratio"],
                    vs, align="lllrrrrr"))


class _Bench:
    """The GPU side: kernels and CUDA-event timing. Built only once a GPU is known to be there."""

    def __init__(self, torch):
        self.torch = torch
        self.device = torch.cuda.get_device_name()
        self.hw = hw_for(self.device)
        self.total_bytes = torch.cuda.get_device_properties(0).total_memory
        self.timer = CudaTimer(torch, DEVICE)
        self._flex = None

    def release(self):
        self.timer.release()

    def run(self, kernel, p, t, ref):
        """(median seconds per call, max abs error against the reference or None, attnc's mapping or '',
        a note): set up, check the first call's output, then time."""
        torch = self.torch
        design = p["design"]
        mapping, note = "", ""
        t0 = time.perf_counter()
        if kernel == "attnc":
            fn, mapping = self._attnc(design, p, t)
            note = f" (autotune {time.perf_counter() - t0:.1f} s: {mapping})"
        else:
            flex, block_mask = self._flex_api() if "flex" in kernel else (None, None)
            fn = baseline_fn(torch, kernel, design, t, flex, block_mask)
        first = fn()    # Flex compiles here at a new shape
        torch.cuda.synchronize()
        if "flex" in kernel:
            note = f" (first call {time.perf_counter() - t0:.1f} s)"
        err = None
        if ref is not None:
            err = max_err(torch, attnc_output(design, first) if kernel == "attnc" else first, ref)
            if kernel == "attnc" and not err < TOLERANCE:
                raise AssertionError(f"wrong result: max abs error {err:.3g} against the float32 reference "
                                     f"(tolerance {TOLERANCE}), mapping {mapping}")
        del first
        return self.timer.median_s(fn), err, mapping, note

    def _attnc(self, design, p, t):
        """The fastest of the model's top mappings (autotune); if tuning fails, the model's best alone."""
        inputs = attnc_inputs(design, t)
        shapes = {"W": p["window"]} if design == "sliding-window" else {}
        try:
            from codegen.autotune import autotune
            tuned = autotune(design, inputs, shapes, hw=self.hw, top=AUTOTUNE_TOP, reps=AUTOTUNE_REPS)
            kern, mapping = tuned.kernel, str(tuned.timings[0][0])
        except Exception as e:
            print(f"  attnc {design}: autotune failed ({type(e).__name__}: {first_line(e)}); "
                  f"compiling the model's best mapping alone", flush=True)
            import attnc
            kern = attnc.compile(design, shapes_for(p), hw=self.hw)
            mapping = str(kern.mapping)
        return (lambda: kern(**inputs)), mapping

    def _flex_api(self):
        torch = self.torch
        from torch.nn.attention.flex_attention import create_block_mask
        if self._flex is None:
            self._flex = compiled_flex_attention(torch)
        return self._flex, create_block_mask


if __name__ == "__main__":
    sys.exit(main())
