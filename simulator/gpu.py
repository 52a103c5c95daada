"""A tile-level model of attention kernels on a GPU (docs/gpu.md).

Fused (one program per row tile, a loop over key tiles, FlashAttention-2
class): per visited key tile, tensor-core time for the score and value
contractions, SFU time for the transcendental functions, fp32 vector time
for the rest of the element-wise work (more on partial tiles, which evaluate
the predicate); tiles the predicate empties are skipped. Within a block the
three run one after another (the kernel class's efficiency constant absorbs
what overlap there is). Programs are list-scheduled onto SMs x blocks per SM
in launch order, so wave quantisation and the causal triangle's imbalance
come out of the schedule. HBM traffic: Q once per program, K/V once per head
per wave of its programs while L2 holds the tiles in flight (else once per
program), outputs once;
time is at least the bytes over the bandwidth, and a program cannot stream
faster than its bytes in flight per memory latency, nor faster than an
SM's load path. Split-KV adds a combine kernel. The unfused model
runs QK^T, softmax and PV as three kernels through HBM; the chunked linear
model is the cost of linearising the same shapes.
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from einsum_ir.analysis.counts import ops_per_point
from einsum_ir.analysis.fused import FusedForm
from einsum_ir.analysis.tiles import EMPTY, FULL, PARTIAL, cell_counts, classify
from einsum_ir.ir import Op, walk
from einsum_ir.ops import DTYPE_BYTES
from hw_models.gpu import GPU
from mappers.gpu_mapping import GPUMapping, footprint, head_group, padded

SFU_KINDS = ("exp", "log", "sqrt", "sigmoid", "tanh", "divide")


@dataclass
class Prediction:
    """A predicted kernel (or kernel sequence) time and what bounds it."""

    kind: str                     # fused | unfused | linear-chunked
    time_s: float
    flops: float                  # useful FLOPs: 2 (E + F) per kept (query, key) point
    hbm_bytes: float
    binding: str                  # tensor cores | SFU | fp32 vector | HBM | occupancy/waves | launch
    peak_flops: float
    parts: dict[str, float] = field(default_factory=dict)     # seconds (or counts) by term
    mapping: GPUMapping | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def tflops(self) -> float:
        return self.flops / self.time_s / 1e12

    @property
    def fraction_of_peak(self) -> float:
        return self.flops / self.time_s / self.peak_flops

    def as_dict(self) -> dict:
        return {"kind": self.kind, "time_s": self.time_s, "tflops": self.tflops,
                "fraction_of_peak": self.fraction_of_peak, "binding": self.binding, "hbm_bytes": self.hbm_bytes,
                "flops": self.flops, "mapping": str(self.mapping) if self.mapping else None,
                "parts": self.parts, "notes": self.notes}


# ------------------------------------------------------------------ work per tile

@dataclass(frozen=True)
class TileWork:
    """Work of one (row tile, key tile) step, per pass."""
    tensor_flops: float
    sfu_full: float
    fp32_full: float
    sfu_partial: float
    fp32_partial: float
    row_fp32: float       # per row per tile: online rescaling
    row_sfu: float


def _pass_ops(form: FusedForm, k: int) -> tuple[Counter, Counter, int]:
    """Element-wise op counts per tile point (all points; partial tiles' extra)
    and the number of value contractions of pass k: the tile Einsums and
    scores the generator emits for the pass (FusedForm.tile_einsums_in_pass,
    scores_in_pass), each once per tile."""
    per, extra = Counter(), Counter()
    nvalue = 0
    for t in form.tile_einsums_in_pass(k) + [s.einsum for s in form.scores_in_pass(k)]:
        if form.score(t.name) is None:
            per.update(ops_per_point(t))
        if t.predicate is not None:
            _count(t.predicate, extra)
            extra["select"] += 1
    for r in form.in_pass(k):
        o = ops_per_point(r.einsum)
        if r.kind == "value":
            nvalue += 1
            o.pop("mac", None)
            per["convert"] += 1         # P to 16 bit for the MMA
        per.update(o)
        if r.einsum.predicate is not None:
            _count(r.einsum.predicate, extra)
            extra["select"] += 1
    return per, extra, nvalue


def _count(e, counter: Counter):
    from einsum_ir.ops import RULES
    for n in walk(e):
        if isinstance(n, Op) and RULES[n.name].kind:
            counter[RULES[n.name].kind] += 1


def tile_work(form: FusedForm, k: int, m: GPUMapping, env: dict) -> TileWork:
    per, extra, nvalue = _pass_ops(form, k)
    e = env[form.contracted.upper()]
    f = env[form.feature.upper()] if form.feature else 0
    pts = m.block_m * m.block_n
    sfu = sum(v for kk, v in per.items() if kk in SFU_KINDS)
    fp = sum(v for kk, v in per.items() if kk not in SFU_KINDS)
    sfu_x = sum(v for kk, v in extra.items() if kk in SFU_KINDS)
    fp_x = sum(v for kk, v in extra.items() if kk not in SFU_KINDS)
    rescaled = [r for r in form.in_pass(k) if r.rescaled]
    norms = len(form.normalisers.get(k, ()))
    row_fp = sum(f if r.kind == "value" else 1 for r in rescaled) + 2 * norms
    nscore = len(form.scores_in_pass(k))
    return TileWork(tensor_flops=2.0 * pts * (nscore * padded(e) + (padded(f) * nvalue if f else 0)),
                    sfu_full=sfu * pts, fp32_full=fp * pts,
                    sfu_partial=(sfu + sfu_x) * pts, fp32_partial=(fp + fp_x) * pts,
                    row_fp32=row_fp * m.block_m, row_sfu=norms * m.block_m)


# ------------------------------------------------------------------ the fused model

def _schedule(durations: np.ndarray, slots: int) -> float:
    """Makespan of programs issued in order onto `slots` identical slots."""
    if len(durations) == 0:
        return 0.0
    uniq = np.unique(durations)
    if len(uniq) == 1:
        return float(-(-len(durations) // slots) * uniq[0])
    heap = [0.0] * min(slots, len(durations))
    for d in durations:
        t = heapq.heappop(heap)
        heapq.heappush(heap, t + float(d))
    return max(heap)


def predict_fused(form: FusedForm, m: GPUMapping, gpu: GPU, env: dict, inputs: dict | None = None,
                  counts=None, skip_empty: bool = True) -> Prediction:
    """Time of the fused kernel(s) for `form` under mapping `m` at shapes `env`.
    `skip_empty=False` models a kernel that visits every key tile (masking
    the empty ones), as a kernel without a block table would."""
    fp = footprint(form, m, env, gpu)
    eff = gpu.efficiency
    peak = gpu.tensor_peak(m.dtype)
    sm_tensor = eff["fused_tensor"] * peak / gpu.sms
    sm_sfu = gpu.sfu_ops_per_s / gpu.sms
    sm_fp32 = gpu.fp32_ops_per_s / gpu.sms
    b = DTYPE_BYTES[m.dtype]
    e = env[form.contracted.upper()]
    f = env[form.feature.upper()] if form.feature else 0
    rows = 1 if form.query is None else env[form.query.upper()]
    heads = int(np.prod([env[v.upper()] for v in form.batch]))
    g = head_group(form)
    pack = min(m.pack_heads, int(env[g])) if g else 1
    row_tiles = -(-rows // m.block_m) if pack == 1 else -(-rows * pack // m.block_m)
    programs_per_head = row_tiles
    head_blocks = heads // pack if heads % pack == 0 else heads
    slots = gpu.sms * fp.blocks_per_sm
    latency = eff["latency_ns"] * 1e-9

    total_time, hbm, parts = 0.0, 0.0, Counter()
    tiles_seen = Counter()
    useful_flops = 0.0
    for k in range(form.passes):
        cc = counts[k] if counts is not None else cell_counts(form, k, env, inputs)
        cls = classify(cc, m.block_m if rows > 1 else 16, m.block_n)     # [..batch.., row tiles, key tiles]
        kept = float(cc.any.sum()) * heads / max(1, int(np.prod(cc.any.shape[:-2])))
        useful_flops += kept * 2.0 * (e * len(form.scores_in_pass(k))
                                      + f * sum(r.kind == "value" for r in form.in_pass(k)))
        if pack > 1:   # packed heads: the same key tiles for every packed row (decode / no mask)
            cls = cls[..., :1, :].repeat(row_tiles, axis=-2)
        cls = cls.reshape(-1, cls.shape[-2], cls.shape[-1])
        if not skip_empty:
            cls = np.where(cls == EMPTY, PARTIAL, cls)
        nfull = (cls == FULL).sum(-1).astype(float)
        npart = (cls == PARTIAL).sum(-1).astype(float)
        tiles_seen["full"] += float(nfull.sum()) * head_blocks / cls.shape[0]
        tiles_seen["partial"] += float(npart.sum()) * head_blocks / cls.shape[0]
        tiles_seen["empty"] += float((cls == EMPTY).sum()) * head_blocks / cls.shape[0]
        w = tile_work(form, k, m, env)
        t_full = w.tensor_flops / sm_tensor + w.sfu_full / sm_sfu + w.fp32_full / sm_fp32 \
            + w.row_fp32 / sm_fp32 + w.row_sfu / sm_sfu
        t_part = w.tensor_flops / sm_tensor + w.sfu_partial / sm_sfu + w.fp32_partial / sm_fp32 \
            + w.row_fp32 / sm_fp32 + w.row_sfu / sm_sfu
        nscore = len(form.scores_in_pass(k))
        nvalue = sum(r.kind == "value" for r in form.in_pass(k))
        kv_tile = m.block_n * (e * nscore + f * nvalue) * b
        # split-KV: each row tile's key tiles divided among `splits` programs
        s = m.splits
        n_vis = nfull + npart                                      # [heads', row tiles]
        work = (nfull * t_full + npart * t_part)
        prog_work = np.repeat(work[..., None] / s, s, axis=-1)
        prog_tiles = np.repeat(n_vis[..., None] / s, s, axis=-1)
        q_bytes = m.block_m * e * b
        occ = fp.blocks_per_sm
        # a program streams K/V at most at its bytes in flight (the pipeline
        # stages) per memory latency; the prologue (Q in) and the epilogue
        # (outputs out) cost a round trip each, hidden by co-resident blocks
        prog_bw = min(m.stages * kv_tile / latency, gpu.sm_load_bytes_per_clock * gpu.clock_hz / occ)
        occ = fp.blocks_per_sm
        dur = np.maximum(prog_work * occ, prog_tiles * kv_tile / prog_bw) + 2 * latency
        # launch order: head-major, row tiles, splits (the grid's x axis fastest)
        dur_all = np.tile(dur.reshape(-1), max(1, head_blocks // dur.shape[0]))
        makespan = _schedule(dur_all, slots)
        # HBM: the programs of a head run together (launched one after another)
        # and read the same K/V tiles within a short window, so K/V come from
        # HBM once per head per wave of its programs, as long as L2 holds what
        # all slots stream in that window (their pipeline stages); else once per program
        kv_head = env[form.key.upper()] * (e * nscore + f * nvalue) * b
        waves_per_head = -(-programs_per_head * s // slots)
        if slots * m.stages * kv_tile <= gpu.l2_bytes:
            kv_hbm = head_blocks * kv_head * waves_per_head
        else:
            kv_hbm = float(prog_tiles.sum()) * head_blocks / n_vis.shape[0] * kv_tile
        out_bytes = heads * rows * f * b
        pass_bytes = heads * rows * e * b * nscore + kv_hbm + (out_bytes if k == form.passes - 1 else 0)
        hbm += pass_bytes
        t = max(makespan, pass_bytes / gpu.bandwidth)
        parts["tensor_s"] += float((n_vis * w.tensor_flops / sm_tensor).sum()) * head_blocks / n_vis.shape[0] / gpu.sms
        parts["sfu_s"] += float((nfull * (w.sfu_full + w.row_sfu) + npart * (w.sfu_partial + w.row_sfu)).sum()) \
            * head_blocks / n_vis.shape[0] / sm_sfu / gpu.sms
        parts["fp32_s"] += float((nfull * (w.fp32_full + w.row_fp32) + npart * (w.fp32_partial + w.row_fp32)).sum()) \
            * head_blocks / n_vis.shape[0] / sm_fp32 / gpu.sms
        parts["hbm_s"] += pass_bytes / gpu.bandwidth
        parts["schedule_s"] += makespan
        total_time += t + eff["launch_us"] * 1e-6
        parts["launch_s"] += eff["launch_us"] * 1e-6
        if s > 1:   # combine kernel: read the partials (F values and the statistics, fp32), write O
            partial_bytes = heads * rows * s * (f + 2) * 4
            t_c = partial_bytes / gpu.bandwidth + 2 * latency
            total_time += t_c + eff["launch_us"] * 1e-6
            hbm += 2 * partial_bytes
            parts["combine_s"] += t_c + eff["launch_us"] * 1e-6
            parts["launch_s"] += eff["launch_us"] * 1e-6
    flops = useful_flops
    ideal = max(parts["tensor_s"] + parts["sfu_s"] + parts["fp32_s"], parts["hbm_s"])
    pred = Prediction("fused", total_time, flops, hbm, "", peak, dict(parts), m)
    pred.parts.update({"blocks_per_sm": fp.blocks_per_sm, "smem_bytes": fp.smem_bytes,
                       "regs_per_thread": fp.regs_per_thread, "tiles_full": tiles_seen["full"],
                       "tiles_partial": tiles_seen["partial"], "tiles_skipped": tiles_seen["empty"]})
    pred.binding = _binding(parts, ideal, total_time)
    return pred


def _binding(parts: Counter, ideal: float, total: float) -> str:
    if parts["launch_s"] > 0.5 * total:
        return "launch"
    if parts["schedule_s"] > 1.15 * ideal and parts["schedule_s"] >= parts["hbm_s"]:
        return "occupancy/waves"
    terms = {"tensor cores": parts["tensor_s"], "SFU": parts["sfu_s"], "fp32 vector": parts["fp32_s"],
             "HBM": parts["hbm_s"]}
    return max(terms, key=terms.get)


# ------------------------------------------------------------------ the unfused model

def _kernel(flops: float, sfu: float, fp32: float, bytes_: float, gpu: GPU, peak: float, tensor_eff: float):
    compute = flops / (tensor_eff * peak) + sfu / gpu.sfu_ops_per_s + fp32 / gpu.fp32_ops_per_s
    return max(compute, bytes_ / gpu.bandwidth) + gpu.efficiency["launch_us"] * 1e-6, compute, bytes_ / gpu.bandwidth


def predict_unfused(form: FusedForm, gpu: GPU, env: dict, dtype: str = "bf16") -> Prediction:
    """QK^T GEMM, a softmax kernel, PV GEMM, with the score and probability
    matrices through HBM (16 bit). GEMMs do not skip masked tiles."""
    b = DTYPE_BYTES[dtype]
    peak = gpu.tensor_peak(dtype)
    e = env[form.contracted.upper()]
    f = env[form.feature.upper()] if form.feature else 0
    rows = 1 if form.query is None else env[form.query.upper()]
    cols = env[form.key.upper()]
    heads = int(np.prod([env[v.upper()] for v in form.batch]))
    ns = len(form.scores)                                            # score GEMMs
    nv = max(1, sum(r.kind == "value" for r in form.reductions))     # value GEMMs
    n = heads * rows * cols
    eff = gpu.efficiency["gemm_tensor"]
    traffic = (ns * (heads * (rows + cols) * e * b + n * b), (ns + nv) * n * b,
               nv * (n * b + heads * rows * f * b) + heads * cols * f * b)
    t1, c1, m1 = _kernel(2.0 * n * e * ns, 0, 0, traffic[0], gpu, peak, eff)
    t2, c2, m2 = _kernel(0, n * ns, 4.0 * n * ns, traffic[1], gpu, peak, eff)
    t3, c3, m3 = _kernel(2.0 * n * f * nv, 0, 0, traffic[2], gpu, peak, eff)
    counts = cell_counts(form, 0, env) if form.query is not None else None
    kept = float(counts.any.sum()) * heads / max(1, int(np.prod(counts.any.shape[:-2]))) if counts else n
    parts = {"qk_s": t1, "softmax_s": t2, "pv_s": t3}
    mem = m1 + m2 + m3
    comp = c1 + c2 + c3
    binding = "HBM" if mem > comp else "tensor cores"
    return Prediction("unfused", t1 + t2 + t3, 2.0 * (e * ns + f * nv) * kept, float(sum(traffic)), binding, peak,
                      parts)


# ------------------------------------------------------------------ chunked linear attention

def predict_linear_chunked(env: dict, form: FusedForm, gpu: GPU, chunk: int = 64, dtype: str = "bf16",
                           causal: bool = True) -> Prediction:
    """The same shapes, linearised: per chunk of C queries, intra-chunk
    QK^T and its product with V (C x C, masked), the inter-chunk term Q S
    and the state update S += K^T V (E x F), in one kernel streaming Q, K, V
    once."""
    b = DTYPE_BYTES[dtype]
    peak = gpu.tensor_peak(dtype)
    e = env[form.contracted.upper()]
    f = env[form.feature.upper()] if form.feature else e
    rows = 1 if form.query is None else env[form.query.upper()]
    heads = int(np.prod([env[v.upper()] for v in form.batch]))
    if rows < chunk:   # decode: read and update the E x F state (fp32) per head
        flops = heads * rows * 4.0 * e * f
        bytes_ = heads * (rows * (2 * e + 2 * f) * b + 2 * e * f * 4)
    else:
        chunks = -(-rows // chunk)
        flops = heads * chunks * (2.0 * chunk * chunk * (e + f) + 4.0 * chunk * e * f)
        bytes_ = heads * rows * (2 * e + 2 * f) * b
    chunks = max(1, -(-rows // chunk))
    t, comp, mem = _kernel(flops, 0, heads * chunks * chunk * chunk, bytes_, gpu, peak,
                           gpu.efficiency["fused_tensor"])
    return Prediction("linear-chunked", t, flops, bytes_, "HBM" if mem > comp else "tensor cores", peak,
                      {"compute_s": comp, "hbm_s": mem})


__all__ = ["Prediction", "TileWork", "predict_fused", "predict_linear_chunked", "predict_unfused", "tile_work"]
