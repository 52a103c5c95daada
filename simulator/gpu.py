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
from einsum_ir.analysis.fused import FusedForm, FusedFormError
from einsum_ir.analysis.tile_program import (KEY, POINT, ROW, UNIFORM, PassProgram, TileProgram, packed_tile_classes,
                                              scan_work, statement_ops, tile_program, walk_notes)
from einsum_ir.analysis.tiles import EMPTY, FULL, PARTIAL, cell_counts, classify, launch_order, over_batch
from einsum_ir.ir import Access, Op, index_vars, rank_of, walk
from einsum_ir.ops import DTYPE_BYTES, INTEGER_DTYPES, KIND_UNITS, REDUCE_RULES
from hw_models.gpu import GPU
from hw_models.schema import HardwareError
from mappers.gpu_mapping import GPUMapping, footprint, padded

SFU_KINDS = tuple(k for k, u in KIND_UNITS.items() if "sfu" in u)   # kinds that use the SFU at all
_GPU_KINDS = {"convert": {"fp32": 1}}      # the model's own: P to 16 bit for the MMA


def kind_units(kind: str) -> dict[str, int]:
    """SFU, FP32 and integer operations one operation of `kind` costs
    (einsum_ir.ops.KIND_UNITS); a kind with no row is refused, never
    charged as something else."""
    units = KIND_UNITS.get(kind) or _GPU_KINDS.get(kind)
    if units is None:
        raise ValueError(f"the GPU model has no cost for operation kind {kind!r} (add it to einsum_ir.ops.KIND_UNITS)")
    return units


@dataclass
class Prediction:
    """A predicted kernel (or kernel sequence) time and what bounds it."""

    kind: str                     # fused | unfused | linear-chunked
    time_s: float
    flops: float                  # useful FLOPs: 2 (E + F) per kept (query, key) point, per score / value product
    hbm_bytes: float
    binding: str                  # tensor cores | SFU | fp32 vector | HBM | occupancy/waves | launch
    peak_flops: float
    parts: dict[str, float] = field(default_factory=dict)     # seconds (or counts) by term
    mapping: GPUMapping | None = None
    notes: list[str] = field(default_factory=list)
    work: dict[str, float] = field(default_factory=dict)     # tensor_flops, sfu_ops, fp32_ops, hbm_bytes charged
    program: object = field(default=None, repr=False)        # the TileProgram charged (fused kernels)
    kclass: object = None                                    # the KernelClass assumed (fused kernels)

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
                "kernel_class": self.kclass.name if self.kclass else None,
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
    int_full: float = 0.0       # integer ALU operations (index arithmetic, integer predicates)
    int_partial: float = 0.0


def _program(x) -> TileProgram:
    """The tile program to charge: the kernel's own, or a fused form's."""
    return x if isinstance(x, TileProgram) else tile_program(x)


def _pass_ops(pp: PassProgram, form: FusedForm, env: dict, table: bool = False) -> tuple[Counter, Counter, int]:
    """Operations of one tile step of a pass as (kind, axes) -> count, for
    every tile and the partial tiles' extra, and the number of value
    contractions: each statement of the program once, each distinct
    predicate once (the kernel computes `keep = inb & predicate` once per
    tile and every masked statement selects with it), or, where the pass
    reads its masks from a table (`table`), one compare per point; full
    tiles evaluate no predicate."""
    per, extra = Counter(), Counter()
    nvalue = 0
    for t in pp.tile_einsums:
        # an in-tile reduction: its term and the combine once per reduced coordinate
        n = int(np.prod([env[rank_of(v)] for v in t.reduced])) if t.reduced else 1
        per.update({k: v * n for k, v in statement_ops(form, t.expr).items()})
        if t.reduced:
            per[REDUCE_RULES[t.reduce].kind, POINT] += n
    for r in pp.init:
        if r.kind == "value":
            nvalue += 1
            per.update(statement_ops(form, r.weight))
            per["convert", POINT] += 1          # P to 16 bit for the MMA
        else:
            per.update(statement_ops(form, r.einsum.expr))
            per[REDUCE_RULES[r.kind].kind, POINT] += 1
    per.update(scan_work(pp))                   # scans along the keys: local scan, carry, walk order
    extra["compare", KEY] += 1                  # inb: the tile's bounds
    extra["logic", POINT] += 1
    for pred in pp.predicates:
        if table:
            extra["compare", POINT] += 1        # keep = mask byte != 0 (bounds included)
            continue
        extra.update(statement_ops(form, pred, cond=True))
        extra["logic", POINT] += 1              # keep = inb & predicate
    extra["select", POINT] += len(pp.masked)
    return per, extra, nvalue


def _weigh(counter: Counter, m: GPUMapping) -> tuple[float, float, float]:
    """(SFU, fp32, integer) operations of one tile: each counted at the size
    of its axes (a point, a row, a key; a scalar once)."""
    size = {POINT: m.block_m * m.block_n, ROW: m.block_m, KEY: m.block_n, UNIFORM: 1}
    sfu = fp = it = 0.0
    for (kind, axes), v in counter.items():
        n = v * size[axes]
        u = kind_units(kind)
        sfu, fp, it = sfu + n * u.get("sfu", 0), fp + n * u.get("fp32", 0), it + n * u.get("int", 0)
    return sfu, fp, it


def tile_work(program, k: int, m: GPUMapping, env: dict) -> TileWork:
    """Work of one (row tile, key tile) step of pass k of `program` (a
    TileProgram, or a FusedForm whose program is taken)."""
    program = _program(program)
    form, pp = program.form, program.passes[k]
    per, extra, nvalue = _pass_ops(pp, form, env, program.uses_mask_table(k, program.pack_count(m.pack_heads, env)))
    f = env[form.feature.upper()] if form.feature else 0
    pts = m.block_m * m.block_n
    sfu, fp, it = _weigh(per, m)
    sfu_x, fp_x, it_x = _weigh(extra, m)
    rescaled = [r for n in pp.normalise for r in n.rescaled]
    norms = len(pp.normalise)
    row_fp = sum(f if r.kind == "value" else 1 for r in rescaled) + 2 * norms
    nscore = len(pp.scores)
    dims = sum(padded(env[s.contracted.upper()]) for s in pp.scores)    # each score its own head dimension
    return TileWork(tensor_flops=2.0 * pts * (dims + (padded(f) * nvalue if f else 0)),
                    sfu_full=sfu, fp32_full=fp, sfu_partial=sfu + sfu_x, fp32_partial=fp + fp_x,
                    row_fp32=row_fp * m.block_m, row_sfu=norms * m.block_m, int_full=it, int_partial=it + it_x)


# ------------------------------------------------------------------ the fused model

def _schedule(alone: np.ndarray, share: np.ndarray, sms: int, per_sm: int, stall: float = 0.0) -> float:
    """Makespan of programs issued in order onto `sms` SMs of `per_sm` slots.
    A program that starts while u programs are unfinished shares its SM with
    about min(per_sm, ceil(u / sms)) - 1 others: it takes max(alone, that
    many x share). So a launch of fewer programs than SMs, or a partial last
    wave, is not charged for co-residents it does not have. `stall`: each
    program's memory round trips (its first load, its last store), waited
    once: co-resident programs of a wave start and stall together, so a
    program takes stall + max(alone, co x share) (not co x (share +
    stall): one program's wait is not the SM's work). The published
    kernels' short sequences (FlashAttention-2 at 512 tokens) support it
    over both a wait hidden by the co-residents and one charged per
    co-resident (docs/benchmarks.md)."""
    n = len(alone)
    if n == 0:
        return 0.0
    slots = sms * per_sm
    if np.ptp(alone) == 0 and np.ptp(share) == 0:        # equal programs: by waves
        t, left = 0.0, n
        while left > 0:
            k = min(slots, left)
            co = min(per_sm, -(-left // sms))
            t += stall + max(float(alone[0]), co * float(share[0]))
            left -= k
        return t
    heap: list[float] = [0.0] * min(slots, n)
    pop, push = heapq.heappop, heapq.heappush
    for i, (a, s) in enumerate(zip(alone.tolist(), share.tolist())):
        now = pop(heap)
        unfinished = n - i + min(i, len(heap))       # this and later ones, plus the others still running
        co = min(per_sm, max(1, -(-unfinished // sms)))
        push(heap, now + stall + max(a, co * s))
    return max(heap)


@dataclass(frozen=True)
class Traffic:
    """Bytes of one program, from the tensors the form says the kernel loads
    (FusedForm.pass_loads, epilogue_loads) and stores: what the generated
    kernel moves, not a fixed Q/K/V/O formula."""
    key_tile: float        # per key tile, operands indexed by the key only (K, V): shared by a head's programs via L2
    pair_tile: float       # per key tile, operands over keys and queries (a dense bias): each program its own
    key_head: float        # the key-only operands of one head, all keys
    program: float         # per program, operands without the key (Q tiles, gates, per-head scalars)


def _elements(form: FusedForm, a, env: dict, rows: int, keys: int) -> float:
    """Elements of access `a` that one program touches with `rows` query
    positions and `keys` key positions: its distinct index tuples. The
    ranks indexed by the key take `keys` values together, however many
    there are (a paged cache's block and slot, BT[m // BS] and m % BS);
    a rank indexed by the key and the query alone (p - m) a band of rows +
    keys - 1; ranks indexed by the query, `rows` together; the others their
    extent (batch variables: one value)."""
    t = form.cascade.tensor(a.tensor)
    key_ranks, on_query, n = [], False, 1.0     # key_ranks: whether each rank the key indexes holds the query too
    for r, i in zip(t.ranks, a.indices):
        vs = set(index_vars(i))
        if form.key in vs:
            key_ranks.append(form.query in vs)
        elif form.query is not None and form.query in vs:
            on_query = True
        elif vs - set(form.batch):
            n *= env[r]
    if key_ranks:
        n *= keys * rows if on_query else keys + (rows - 1 if any(key_ranks) else 0)
    elif on_query:
        n *= rows
    return n


def traffic(program, k: int, m: GPUMapping, env: dict) -> Traffic:
    program = _program(program)
    form = program.form
    rows = m.block_m if form.query is not None else 1
    key_tile = pair_tile = key_head = 0.0
    for a in program.passes[k].loads:
        if form.key not in index_vars(a):
            continue
        ab = element_bytes(form.cascade, a.tensor, m.dtype)
        if form.query is not None and form.query in index_vars(a):
            pair_tile += _elements(form, a, env, rows, m.block_n) * ab
        else:
            key_tile += _elements(form, a, env, rows, m.block_n) * ab
            key_head += _elements(form, a, env, rows, env[form.key.upper()]) * ab
    once = sum(_elements(form, a, env, rows, 0) * element_bytes(form.cascade, a.tensor, m.dtype)
               for a in _program_loads(program))
    return Traffic(key_tile, pair_tile, key_head, once)


def element_bytes(c, tensor: str, dtype: str) -> int:
    """Bytes a kernel mapped at `dtype` loads per element of `tensor`: an
    integer or bool tensor (a gather's PAGE or block table, a document id
    DOC, a length LEN) at its declared width, any other at the mapping's
    float width. The gathered tile itself (K rows of scattered pages) is
    charged as plain loads of its elements: docs/gpu.md, Gathers."""
    declared = c.tensor(tensor).dtype
    return DTYPE_BYTES[declared if declared in INTEGER_DTYPES + ("bool",) else dtype]


def _program_loads(program: TileProgram) -> list:
    """Operands without the key, loaded once per program (all passes)."""
    loads = [a for pp in program.passes for a in pp.loads] + list(program.epilogue_loads)
    return list(dict.fromkeys(a for a in loads if program.form.key not in index_vars(a)))


def row_work(program: TileProgram, env: dict) -> Counter:
    """Operations of the program's row Einsums (before the passes and in the
    epilogue) per query row; the normaliser chains, once per row per key
    tile, are `chain_work`."""
    form = program.form
    out = Counter()
    for e in [e for pp in program.passes for e in pp.rows] + list(program.epilogue):
        per = ops_per_point(e)
        n = int(np.prod([env[v.upper()] for v in e.output_vars if v not in form.batch and v != form.query]))
        for kind, v in per.items():
            out[kind] += v * n
    return out


def chain_work(pp: PassProgram) -> Counter:
    out = Counter()
    for n in pp.normalise:
        for e in n.chain:
            out.update(ops_per_point(e))
    return out


def _split_counts(counter: Counter) -> tuple[float, float]:
    """(SFU, fp32) operations of a counter."""
    sfu = sum(v * kind_units(kk).get("sfu", 0) for kk, v in counter.items())
    rest = sum(v * (kind_units(kk).get("fp32", 0) + kind_units(kk).get("int", 0)) for kk, v in counter.items())
    return float(sfu), float(rest)


@dataclass
class _Grid:
    """The launch: programs, their packing and the slots they run on."""
    rows: int
    heads: int
    pack: int
    row_tiles: int
    head_blocks: int
    slots: int
    blocks_per_sm: int
    pack_var: str | None = None       # the batch variable whose heads are packed


def _grid(program: TileProgram, m: GPUMapping, gpu: GPU, env: dict, blocks_per_sm: int) -> _Grid:
    """The generated kernel's launch: with packed heads (the program's
    `pack_count`, refused if the design cannot pack them) a program owns
    BLOCK_M rows of (query, head of the group) and there are heads / pack
    head blocks."""
    form = program.form
    rows = 1 if form.query is None else env[form.query.upper()]
    heads = int(np.prod([env[v.upper()] for v in form.batch]))
    try:
        pack = program.pack_count(m.pack_heads, env)
    except FusedFormError as e:
        raise HardwareError(e.message) from None
    row_tiles = -(-rows * pack // m.block_m)
    return _Grid(rows, heads, pack, row_tiles, heads // pack, gpu.sms * blocks_per_sm, blocks_per_sm,
                 program.packing.var if program.packing is not None and pack > 1 else None)


_CLASSIFIED: dict = {}


def _classify(cc, bm: int, bn: int) -> np.ndarray:
    """classify(), remembered per counts object and tile shape (a search or
    a fit predicts the same shapes under many mappings and constants)."""
    key = (id(cc), bm, bn)
    hit = _CLASSIFIED.get(key)
    if hit is not None and hit[0] is cc:
        return hit[1]
    if len(_CLASSIFIED) > 256:
        _CLASSIFIED.clear()
    cls = classify(cc, bm, bn)
    cls.setflags(write=False)
    _CLASSIFIED[key] = (cc, cls)
    return cls


def _tile_classes(form, k, m, env, inputs, counts, grid: _Grid, skip_empty: bool, unknown: set | None = None):
    """Per (head block, row tile): full and partial key tiles visited, the
    empty ones, the kept points of the pass (whole problem) and the partial
    tiles of the distinct tables (the batch coordinates the mask reads: what
    a mask table holds); the classes are the kernel's block table's (the
    same cell counts, cached by the mask's values). Tensors the mask reads
    whose values are missing are added to `unknown`."""
    cc = counts[k] if counts is not None else cell_counts(form, k, env, inputs)
    if unknown is not None:
        unknown.update(cc.unknown)
    if grid.pack > 1:   # packed heads: the kernel's block table of packed row tiles
        cls = packed_tile_classes(cc, m.block_m, m.block_n, grid.pack, grid.rows)
    else:
        cls = _classify(cc, m.block_m if grid.rows > 1 else 16, m.block_n)    # [..batch.., row tiles, key tiles]
    kept = float(cc.any.sum()) * grid.heads / max(1, int(np.prod(cc.any.shape[:-2])))
    distinct_partial = float((cls == PARTIAL).sum()) if skip_empty else 0.0
    cls = cls[None] if not cc.batch else \
        over_batch(cls, cc.batch, form.batch, _head_block_extents(form, env, grid))
    if not skip_empty:
        cls = np.where(cls == EMPTY, PARTIAL, cls)
    return (cls == FULL).sum(-1).astype(float), (cls == PARTIAL).sum(-1).astype(float), \
        float((cls == EMPTY).sum()), kept, distinct_partial


def _head_block_extents(form, env: dict, grid: _Grid) -> dict:
    """Each batch variable's extent in the launch: the packed one over its packs."""
    return {v: env[v.upper()] // (grid.pack if v == grid.pack_var else 1) for v in form.batch}


@dataclass(frozen=True)
class KernelClass:
    """How a fused kernel is built, which sets how its work overlaps:
    `serial`: softmax then MMAs in the same warps (FlashAttention-2, Triton's
    tutorial, the generated kernel); co-resident blocks hide part of one's
    softmax under another's MMAs. `warp-specialised` (Hopper: FlashAttention-3,
    cuDNN): producer warps load by TMA, two consumer warpgroups ping-pong so
    one's softmax runs under the other's (and the next tile's) MMAs.
    `path`: the matrix instruction (mma on any GPU, wgmma on Hopper; `auto`:
    wgmma where the GPU has it, as Triton compiles)."""
    name: str
    overlap: str          # serial | warp-specialised
    path: str             # mma | wgmma | auto
    doc: str

    def path_on(self, gpu: GPU) -> str:
        return ("wgmma" if gpu.has_wgmma else "mma") if self.path == "auto" else self.path


KERNEL_CLASSES = {
    "triton": KernelClass("triton", "serial", "auto",
                          "FA2-class, serial softmax, wgmma on Hopper / mma elsewhere (the generated Triton kernel)"),
    "fa2": KernelClass("fa2", "serial", "mma", "FlashAttention-2 class: serial softmax, mma.sync on every GPU"),
    "hopper-ws": KernelClass("hopper-ws", "warp-specialised", "wgmma",
                             "Hopper warp-specialised (FlashAttention-3 / cuDNN class): TMA loads, softmax "
                             "overlapped with the next tile's wgmma"),
}


def kernel_class(name: str | KernelClass) -> KernelClass:
    if isinstance(name, KernelClass):
        return name
    if name not in KERNEL_CLASSES:
        raise HardwareError(f"unknown kernel class {name!r}; known: {', '.join(KERNEL_CLASSES)}")
    return KERNEL_CLASSES[name]


@dataclass(frozen=True)
class _Rates:
    """One SM's rates for a kernel class and mapping."""
    tensor: float         # FLOP/s the class's MMAs reach on the path
    smem: float           # bytes/s of shared memory
    sfu: float
    fp32: float
    int: float            # 32-bit integer lanes
    issue: float          # thread instructions the schedulers issue
    path: str

    def alu_s(self, fp32: float, int_ops: float) -> float:
        """Time of FP32 and integer work on one SM: separate pipes that share
        the issue slots (GPU.int_ops_per_clock_per_sm)."""
        return max(fp32 / self.fp32, int_ops / self.int, (fp32 + int_ops) / self.issue)


def _rates(gpu: GPU, m: GPUMapping, kc: KernelClass) -> _Rates:
    path = kc.path_on(gpu)
    tensor = gpu.efficiency["fused_tensor"] * gpu.path_fraction(path) * gpu.tensor_peak(m.dtype) / gpu.sms
    return _Rates(tensor, gpu.smem_bytes_per_clock * gpu.clock_hz, gpu.sfu_ops_per_s / gpu.sms,
                  gpu.fp32_ops_per_s / gpu.sms, gpu.int_ops_per_s / gpu.sms, gpu.issue_per_s / gpu.sms, path)


def smem_operand_bytes(program: TileProgram, k: int, m: GPUMapping, env: dict, path: str) -> float:
    """Shared-memory bytes the MMAs of one tile step read. mma.sync: every
    warp reads the whole K and V tiles (warps split the rows), so more warps
    over the same rows read more; wgmma: each warpgroup (4 warps, at least
    64 rows) reads them once, and the Q tile too (its A operand from shared
    memory)."""
    form, pp = program.form, program.passes[k]
    b = DTYPE_BYTES[m.dtype]
    e = sum(padded(env[s.contracted.upper()]) for s in pp.scores)     # the scores' head dimensions together
    f = padded(env[form.feature.upper()]) if form.feature else 0
    kv = m.block_n * (e + f * sum(r.kind == "value" for r in pp.init)) * b
    if path == "mma":
        return m.warps * kv
    # warpgroups split the rows first (64 each), then the columns: a row split
    # reads K and V again, a column split reads the Q tile again
    groups = max(1, m.warps // 4)
    rows = max(1, min(groups, m.block_m // 64))
    return rows * kv + (groups // rows) * m.block_m * e * b


def streams(m: GPUMapping, path: str) -> int:
    """Instruction streams of one block that run independently of each
    other within a tile step: with mma.sync every warp (its own rows), with
    wgmma every warpgroup (4 warps)."""
    return m.warps if path == "mma" else max(1, m.warps // 4)


def _tile_times(w_tensor: float, smem: float, sfu: float, fp32: float, int_ops: float, r: _Rates, gpu: GPU,
                kc: KernelClass, own: int = 0, per_sm: int = 1, stages: int = 0) -> tuple[float, float]:
    """(alone, share): a tile step's time for a program alone on its SM, and
    the SM time it takes when it shares the SM with others. A serial kernel
    hides part of the shorter of its MMA and softmax time under the longer
    only where another instruction stream has MMAs to issue meanwhile: of
    the fitted most (serial_overlap) it reaches 1 - 1/c with c streams on
    the SM (`own` per block, streams(); alone c = own, shared c = own x
    per_sm). A warp-specialised kernel overlaps by design (ws_overlap). With
    `stages` K/V tiles in flight, a load has stages - 1 steps to arrive;
    memory latency taken as exponential with mean L (latency_ns), a step
    waits L exp(-(stages - 1) t / L) on average, which the other streams
    fill when shared (`stages` needs `own`). `own` = 0: the fitted overlap;
    `stages` = 0: no stall (the chunked model passes neither)."""
    t_mma = max(w_tensor / r.tensor, smem / r.smem)
    t_vec = sfu / r.sfu + r.alu_s(fp32, int_ops)
    lo, hi = min(t_mma, t_vec), max(t_mma, t_vec)
    ov = gpu.efficiency["ws_overlap" if kc.overlap == "warp-specialised" else "serial_overlap"]
    if kc.overlap != "warp-specialised" and own:
        ov_alone, ov_share = ov * (1 - 1 / own), ov * (1 - 1 / (own * per_sm))
    else:
        ov_alone = ov_share = ov
    alone, share = hi + (1 - ov_alone) * lo, hi + (1 - ov_share) * lo
    if stages:
        lat = gpu.efficiency["latency_ns"] * 1e-9
        alone += lat * float(np.exp(-(stages - 1) * alone / lat))
        share += lat * float(np.exp(-(stages - 1) * share / lat)) / (own * per_sm)
    return alone, share


def _pass_time(program: TileProgram, k, m, gpu, env, grid: _Grid, nfull, npart, parts: Counter, work: Counter,
               edge_s: float = 0.0, kc: KernelClass = KERNEL_CLASSES["triton"],
               order: np.ndarray | None = None, table_tiles: float = 0.0) -> tuple[float, float]:
    """(time, HBM bytes) of pass k's kernel; adds its parts and work. `edge_s`:
    each program's once-per-row work (the epilogue), run on its own SM.
    `order`: the launch order over [head blocks x row tiles] (launch_order);
    None: head by head, row tiles last first. `table_tiles`: the partial
    tiles of the distinct mask tables, read once from HBM where the pass
    reads its masks (each program streams its own through L2)."""
    latency = gpu.efficiency["latency_ns"] * 1e-9
    r = _rates(gpu, m, kc)
    w = tile_work(program, k, m, env)
    smem = smem_operand_bytes(program, k, m, env, r.path)
    chain_sfu, chain_fp = (x * m.block_m for x in _split_counts(chain_work(program.passes[k])))
    sfu_f, fp_f = w.sfu_full + w.row_sfu + chain_sfu, w.fp32_full + w.row_fp32 + chain_fp
    sfu_p, fp_p = w.sfu_partial + w.row_sfu + chain_sfu, w.fp32_partial + w.row_fp32 + chain_fp
    own = streams(m, r.path)
    alone_f, share_f = _tile_times(w.tensor_flops, smem, sfu_f, fp_f, w.int_full, r, gpu, kc, own,
                                   grid.blocks_per_sm, m.stages)
    alone_p, share_p = _tile_times(w.tensor_flops, smem, sfu_p, fp_p, w.int_partial, r, gpu, kc, own,
                                   grid.blocks_per_sm, m.stages)
    tr = traffic(program, k, m, env)
    tile_bytes = tr.key_tile + tr.pair_tile
    s = m.splits
    n_vis = nfull + npart                                      # [heads', row tiles]
    scale = grid.head_blocks / n_vis.shape[0]                  # table rows -> all head blocks
    alone = (nfull * alone_f + npart * alone_p) / s            # one program (one split of a row tile)
    share = (nfull * share_f + npart * share_p) / s
    prog_tiles = n_vis / s
    # a program streams its tiles at most at its bytes in flight (the pipeline
    # stages) per memory latency, and at most at its share of the SM's load
    # path; the prologue and the epilogue cost a round trip each
    prog_bw = min(m.stages * max(tile_bytes, 1.0) / latency, gpu.sm_load_bytes_per_clock * gpu.clock_hz)
    mask_bytes = m.block_m * m.block_n if program.uses_mask_table(k, grid.pack) else 0
    stream = (prog_tiles * tile_bytes + npart / s * mask_bytes) / prog_bw
    reps = max(1, grid.head_blocks // alone.shape[0])
    if order is None:          # head by head, row tiles last first
        order = launch_order(np.zeros((alone.shape[0] * reps, alone.shape[1])))
    seq = lambda x: np.tile(np.tile(x, (reps, 1)).reshape(-1)[order], s)     # splits outermost (grid z)
    fixed = gpu.efficiency["program_cycles"] / gpu.clock_hz     # each program's work outside its tiles
    each_alone, each_share = seq(np.maximum(alone, stream)) + edge_s, seq(np.maximum(share, stream)) + edge_s
    makespan = _schedule(each_alone + fixed, each_share + fixed, gpu.sms, grid.blocks_per_sm, stall=2 * latency)
    # what program_cycles and the round trips cost: the same schedule without them
    parts["fixed_s"] += makespan - _schedule(each_alone, each_share, gpu.sms, grid.blocks_per_sm)
    parts["key_tiles_per_program"] += float(prog_tiles.mean())
    pass_bytes = _pass_hbm(tr, m, gpu, grid, float(prog_tiles.sum()) * scale) + table_tiles * mask_bytes
    tiles_full, tiles_part = float(nfull.sum()) * scale, float(npart.sum()) * scale
    tiles = tiles_full + tiles_part
    work["tensor_flops"] += tiles * w.tensor_flops
    work["sfu_ops"] += tiles_full * sfu_f + tiles_part * sfu_p
    work["fp32_ops"] += tiles_full * fp_f + tiles_part * fp_p
    work["int_ops"] += tiles_full * w.int_full + tiles_part * w.int_partial
    work["smem_bytes"] += tiles * smem
    parts["tensor_s"] += tiles * max(w.tensor_flops / r.tensor, smem / r.smem) / gpu.sms
    parts["sfu_s"] += (tiles_full * sfu_f + tiles_part * sfu_p) / r.sfu / gpu.sms
    parts["fp32_s"] += (tiles_full * r.alu_s(fp_f, w.int_full) + tiles_part * r.alu_s(fp_p, w.int_partial)) / gpu.sms
    parts["schedule_s"] += makespan
    return makespan, pass_bytes


def _pass_hbm(tr: Traffic, m: GPUMapping, gpu: GPU, grid: _Grid, tiles_all: float) -> float:
    """HBM bytes of a pass's operands. The programs of a head run together
    and read the same key tiles within a short window, so key-only operands
    come from HBM once per head per wave of its programs while L2 holds what
    all slots stream in that window; else once per program. Pair operands:
    each program its own tiles."""
    waves_per_head = -(-grid.row_tiles * m.splits // grid.slots)
    if grid.slots * m.stages * tr.key_tile <= gpu.l2_bytes:
        key_hbm = grid.head_blocks * tr.key_head * waves_per_head
    else:
        key_hbm = tiles_all * tr.key_tile
    return key_hbm + tiles_all * tr.pair_tile


def _combine_time(program: TileProgram, m: GPUMapping, gpu: GPU, env: dict, grid: _Grid, parts: Counter) -> tuple:
    """Split-KV: each split's running statistics (fp32) written, read back
    and merged. Every program of every split stores whole tiles, padding
    included: BLOCK_M rows of each statistic and normaliser, BLOCK_M x
    BLOCK_F of each value accumulator (codegen.triton, _store_partials)."""
    form, pp = program.form, program.passes[0]
    f = padded(env[form.feature.upper()]) if form.feature else 0
    per_row = sum(f if r.kind == "value" else 1 for r in pp.init) + len(pp.normalise)
    partial_bytes = grid.head_blocks * grid.row_tiles * m.splits * m.block_m * per_row * 4
    t = partial_bytes / gpu.bandwidth + 2 * gpu.efficiency["latency_ns"] * 1e-9 + gpu.efficiency["combine_us"] * 1e-6
    parts["combine_s"] += t
    parts["launch_s"] += gpu.efficiency["combine_us"] * 1e-6
    return t, 2.0 * partial_bytes


def _epilogue_s(program: TileProgram, m: GPUMapping, gpu: GPU, env: dict) -> float:
    """One program's row Einsums (its BLOCK_M rows) on one SM."""
    sfu, fp = _split_counts(row_work(program, env))
    return m.block_m * (sfu / (gpu.sfu_ops_per_s / gpu.sms) + fp / (gpu.fp32_ops_per_s / gpu.sms))


def _edges(program: TileProgram, m: GPUMapping, gpu: GPU, env: dict, grid: _Grid, parts: Counter,
           work: Counter) -> tuple:
    """Once-per-row work and bytes: the epilogue's row Einsums (their time is
    in the last pass's programs), the query-side loads and the stores; and the
    hoisted Einsums, run before the kernel."""
    from einsum_ir.analysis.counts import einsum_ops
    from einsum_ir.analysis.evaluate import evaluate
    form = program.form
    b = DTYPE_BYTES[m.dtype]
    programs = grid.head_blocks * grid.row_tiles * m.splits
    sfu, fp = _split_counts(row_work(program, env))
    rows_all = grid.heads * grid.rows
    work["sfu_ops"] += sfu * rows_all
    work["fp32_ops"] += fp * rows_all
    parts["epilogue_s"] += sfu * rows_all / gpu.sfu_ops_per_s + fp * rows_all / gpu.fp32_ops_per_s
    out_bytes = sum(float(np.prod([env[r] for r in o.ranks])) for o in form.cascade.outputs) * b
    loads = programs / m.splits * traffic(program, 0, m, env).program
    hoisted = Counter()
    for e in form.hoisted:
        for kind, v in einsum_ops(form.cascade, e).items():
            hoisted[kind] += float(evaluate(v, env))
    h_sfu, h_fp = _split_counts(Counter({k: v for k, v in hoisted.items() if k != "mac"}))
    work["tensor_flops"] += 2.0 * hoisted["mac"]
    work["sfu_ops"] += h_sfu
    work["fp32_ops"] += h_fp
    h_reads = {a.tensor for e in form.hoisted for a in e.reads()} - {e.name for e in form.hoisted}
    h_bytes = sum(float(np.prod([env[r] for r in form.cascade.tensor(t).ranks]))
                  for t in h_reads | {e.name for e in form.hoisted}) * b
    t_h = (2.0 * hoisted["mac"] / (gpu.efficiency["gemm_tensor"] * gpu.tensor_peak(m.dtype))
           + h_sfu / gpu.sfu_ops_per_s + h_fp / gpu.fp32_ops_per_s)
    parts["hoisted_s"] += t_h
    return t_h, out_bytes + loads + 2 * h_bytes


LAUNCH_ORDERS = ("longest-first", "head-major")


def predict_fused(program, m: GPUMapping, gpu: GPU, env: dict, inputs: dict | None = None,
                  counts=None, skip_empty: bool = True, kclass: str | KernelClass = "triton",
                  order: str = "longest-first") -> Prediction:
    """Time of the fused kernel(s) under mapping `m` at shapes `env`, for a
    TileProgram (the kernel's own: `FusedKernel.program`) or a FusedForm
    (whose program is taken). `skip_empty=False` models a kernel that visits
    every key tile (masking the empty ones), as a kernel without a block
    table would. The work it charges (Prediction.work) is the program's,
    statement by statement: the object the generator renders. `kclass`: how
    the kernel is built (KERNEL_CLASSES; the generated kernel is `triton`).
    `order`: the programs' launch order: `longest-first` as the generated
    kernel (tiles.launch_order), or `head-major` (head by head, row tiles
    last first), as published kernels launch."""
    program, kc = _program(program), _runnable(kclass, m, gpu, order)
    form = program.form
    if m.splits > 1 and not form.splittable:    # a carried scan or several passes: the kernel runs unsplit
        m = m.with_changes(splits=1)
    fp = footprint(form, m, env, gpu)
    grid = _grid(program, m, gpu, env, fp.blocks_per_sm)
    f = env[form.feature.upper()] if form.feature else 0
    launch = gpu.efficiency["launch_us"] * 1e-6
    total_time, hbm, parts, work, tiles_seen, useful = 0.0, 0.0, Counter(), Counter(), Counter(), 0.0
    unknown: set = set()
    classes = [_tile_classes(form, k, m, env, inputs, counts, grid, skip_empty, unknown)
               for k in range(len(program.passes))]
    # longest first: by the key tiles of all passes, as the kernel's block table counts them
    launched = launch_order(sum(np.tile(nf + npt, (grid.head_blocks // nf.shape[0], 1))
                                for nf, npt, *_ in classes)) if order == "longest-first" else None
    for k, pp in enumerate(program.passes):
        nfull, npart, nempty, kept, distinct = classes[k]
        useful += kept * 2.0 * (sum(env[s.contracted.upper()] for s in pp.scores) + f * len(pp.values))
        scale = grid.head_blocks / nfull.shape[0]
        tiles_seen.update(full=float(nfull.sum()) * scale, partial=float(npart.sum()) * scale, empty=nempty * scale)
        last = k == len(program.passes) - 1
        t, pass_bytes = _pass_time(program, k, m, gpu, env, grid, nfull, npart, parts, work,
                                   _epilogue_s(program, m, gpu, env) if last else 0.0, kc, launched, distinct)
        if k == 0:
            t_edge, edge_bytes = _edges(program, m, gpu, env, grid, parts, work)
            t, pass_bytes = t + t_edge, pass_bytes + edge_bytes
        hbm += pass_bytes
        parts["hbm_s"] += pass_bytes / gpu.bandwidth
        total_time += max(t, pass_bytes / gpu.bandwidth) + launch
        parts["launch_s"] += launch
        if m.splits > 1:
            t_c, c_bytes = _combine_time(program, m, gpu, env, grid, parts)
            total_time, hbm = total_time + t_c, hbm + c_bytes
    work["hbm_bytes"] = hbm
    pred = Prediction("fused", total_time, useful, hbm, "", gpu.tensor_peak(m.dtype), dict(parts), m)
    pred.kclass, pred.work, pred.program = kc, dict(work), program
    pred.parts.update({"blocks_per_sm": fp.blocks_per_sm, "smem_bytes": fp.smem_bytes,
                       "regs_per_thread": fp.regs_per_thread, "pack_heads": grid.pack,
                       "programs": grid.head_blocks * grid.row_tiles * m.splits, "tiles_full": tiles_seen["full"],
                       "tiles_partial": tiles_seen["partial"], "tiles_skipped": tiles_seen["empty"]})
    pred.binding = _binding(parts, max(parts["tensor_s"] + parts["sfu_s"] + parts["fp32_s"], parts["hbm_s"]),
                            total_time)
    pred.notes += _placement_notes(program, env) + _unknown_notes(unknown) + _fixed_cost_notes(pred.parts, total_time)
    if m.tma:
        pred.notes.append("K and V through TMA descriptors: charged as the same bytes as pointer loads (no "
                          "measurement yet tells them apart)")
    return pred


def _runnable(kclass, m: GPUMapping, gpu: GPU, order: str) -> KernelClass:
    """The kernel class, after checking the GPU has what it and the mapping use."""
    if order not in LAUNCH_ORDERS:
        raise ValueError(f"launch order {order!r}: one of {', '.join(LAUNCH_ORDERS)}")
    kc = kernel_class(kclass)
    if kc.path_on(gpu) == "wgmma" and not gpu.has_wgmma:
        raise HardwareError(f"kernel class {kc.name} needs wgmma; {gpu.name} has none (Hopper only)")
    if m.tma and not gpu.has_wgmma:
        raise HardwareError(f"mapping {m}: TMA (tensor descriptors) needs a Hopper GPU; {gpu.name} has none")
    return kc


def _fixed_cost_notes(parts: dict, total: float) -> list[str]:
    """Why a block-sparse or short-sequence kernel is not proportional to
    its tiles, where that is most of the answer (docs/flex.md, Findings 7)."""
    if parts.get("fixed_s", 0.0) < 0.2 * total:
        return []
    return [f"each program visits {parts['key_tiles_per_program']:.1f} key tiles on average; what each pays outside "
            f"them (program_cycles and two memory round trips, fitted to published short-sequence measurements) "
            f"is {parts['fixed_s'] * 1e6:,.1f} of the {total * 1e6:,.1f} us: longer rows of visited tiles "
            f"(longer sequences, documents or windows) amortise it"]


def _unknown_notes(unknown) -> list[str]:
    """What a prediction without a mask's values assumes (tiles.py)."""
    if not unknown:
        return []
    names = ", ".join(sorted(unknown))
    return [f"the mask reads {names}: without {'its' if len(unknown) == 1 else 'their'} values every key tile "
            "the index-only conditions keep is counted as visited and partial, an upper bound; give the values "
            "(inputs=, --inputs FILE.npz) for the block table the kernel builds"]


def _placement_notes(program: TileProgram, env: dict) -> list[str]:
    """What runs outside the tile walk, and the reductions inside it: the
    hoisted Einsums (materialised before the kernel, never over keys x
    queries; charged in hoisted_s) and the in-tile reductions (a loop per tile)."""
    form, notes = program.form, []
    for e in form.hoisted:
        t = form.cascade.tensor(e.name)
        n = float(np.prod([env[r] for r in t.ranks]))
        notes.append(f"materialised before the kernel: {e.name}[{', '.join(t.ranks)}], {n:,.0f} elements "
                     f"({n * 4 / 2 ** 20:,.1f} MiB fp32), charged as hoisted work and traffic")
    for t in {x for pp in program.passes for x in pp.tile_einsums if x.reduced}:
        trips = int(np.prod([env[rank_of(v)] for v in t.reduced]))
        notes.append(f"computed in the tile walk: {t.name}, a {t.reduce} over {', '.join(t.reduced)} "
                     f"({trips} steps per tile, vector work)")
    return notes + walk_notes(program)


def _binding(parts: Counter, ideal: float, total: float) -> str:
    if parts["launch_s"] > 0.5 * total:
        return "launch"
    if parts["schedule_s"] > 1.15 * ideal and parts["schedule_s"] >= parts["hbm_s"]:
        return "occupancy/waves"
    # the units run one after another within a tile: HBM binds only when it outlasts them together
    compute = {"tensor cores": parts["tensor_s"], "SFU": parts["sfu_s"], "fp32 vector": parts["fp32_s"]}
    return "HBM" if parts["hbm_s"] >= sum(compute.values()) else max(compute, key=compute.get)


# ------------------------------------------------------------------ the unfused model

def _kernel(flops: float, sfu: float, fp32: float, bytes_: float, gpu: GPU, peak: float, tensor_eff: float):
    compute = flops / (tensor_eff * peak) + sfu / gpu.sfu_ops_per_s + fp32 / gpu.fp32_ops_per_s
    return max(compute, bytes_ / gpu.bandwidth) + gpu.efficiency["launch_us"] * 1e-6, compute, bytes_ / gpu.bandwidth


def predict_unfused(form: FusedForm, gpu: GPU, env: dict, dtype: str = "bf16",
                    inputs: dict | None = None) -> Prediction:
    """QK^T GEMM, a softmax kernel, PV GEMM, with the score and probability
    matrices through HBM (16 bit). GEMMs do not skip masked tiles. `inputs`:
    the values of tensors the mask reads (its kept points; else an upper bound)."""
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
    e = sum(env[s.contracted.upper()] for s in form.scores) / ns     # mean head dimension of the score GEMMs
    traffic = (ns * (heads * (rows + cols) * e * b + n * b), (ns + nv) * n * b,
               nv * (n * b + heads * rows * f * b) + heads * cols * f * b)
    t1, c1, m1 = _kernel(2.0 * n * e * ns, 0, 0, traffic[0], gpu, peak, eff)
    t2, c2, m2 = _kernel(0, n * ns, 4.0 * n * ns, traffic[1], gpu, peak, eff)
    t3, c3, m3 = _kernel(2.0 * n * f * nv, 0, 0, traffic[2], gpu, peak, eff)
    counts = cell_counts(form, 0, env, inputs)       # decode too: one row, the keys a mask keeps
    kept = float(counts.any.sum()) * heads / max(1, int(np.prod(counts.any.shape[:-2]))) if counts else n
    parts = {"qk_s": t1, "softmax_s": t2, "pv_s": t3}
    mem = m1 + m2 + m3
    comp = c1 + c2 + c3
    binding = "HBM" if mem > comp else "tensor cores"
    return Prediction("unfused", t1 + t2 + t3, 2.0 * (e * ns + f * nv) * kept, float(sum(traffic)), binding, peak,
                      parts, notes=_unknown_notes(counts.unknown if counts else ()))


# ------------------------------------------------------------------ chunked linear attention

def predict_linear_chunked(env: dict, form: FusedForm, gpu: GPU, chunk: int = 64, dtype: str = "bf16") -> Prediction:
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
                           gpu.efficiency["fused_tensor"] * gpu.path_fraction("mma"))
    return Prediction("linear-chunked", t, flops, bytes_, "HBM" if mem > comp else "tensor cores", peak,
                      {"compute_s": comp, "hbm_s": mem})


# ------------------------------------------------------------------ chunked kernels (their own program)

@dataclass(frozen=True)
class ChunkWork:
    """Work of one chunk of a walk of a ChunkProgram (or of the steps run
    once per program): tensor-core flops of its dots and the SFU, fp32 and
    integer operations of everything else, each at its tile's size."""
    tensor_flops: float
    sfu: float
    fp32: float
    int_ops: float
    dots: int
    cumsums: int


def _chunk_expr_ops(program, x, loop: str | None, out: Counter):
    """Operator kinds of an expression as the chunked kernel evaluates it:
    an element-wise Einsum read is its body substituted (and a select per
    condition of its mask), evaluated again where it is read."""
    from einsum_ir.analysis.chunk_program import point_masks
    from einsum_ir.ir import Access, substitute
    from einsum_ir.ops import op_kind
    if isinstance(x, Op):
        kind = op_kind(x)
        if kind:
            out[kind] += 1
        for y in x.args:
            _chunk_expr_ops(program, y, loop, out)
    elif isinstance(x, Access) and x.tensor in program.inline:
        e = program.inline[x.tensor]
        binding = {i.name: v for i, v in zip(e.output.indices, x.indices)}
        _chunk_expr_ops(program, substitute(e.expr, binding), loop, out)
        for p in point_masks(program.form, e, loop):
            _chunk_expr_ops(program, substitute(p, binding), loop, out)
            out["select"] += 1


def _tile(program, axes) -> int:
    n = 1
    for a in set(axes):
        n *= program.blocks[a]
    return n


def step_work(program, s, loop: str | None) -> tuple[float, Counter]:
    """(tensor flops, operations by kind) of one step at its tiles: a dot's
    sides at [a, c] and [c, b], its product at [a, b]; a reduction over its
    whole tile (result axes and reduced axes); an accumulator's combine at
    its tile."""
    from einsum_ir.analysis.chunk_program import factors
    ops, e = Counter(), s.einsum

    def add(x, n: int, select: bool = False):
        one = Counter()
        _chunk_expr_ops(program, x, loop, one)
        one["select"] += select
        for kind, v in one.items():
            ops[kind] += v * n
    if s.how == "dot":
        d, fs = s.dot, factors(e.expr)
        tensor = 2.0 * _tile(program, (d.a, d.b, d.c))
        for idx, midx, axes in ((d.left, d.mask_left, (d.a, d.c)), (d.right, d.mask_right, (d.c, d.b)),
                                (d.post, d.mask_post, (d.a, d.b))):
            n = _tile(program, axes)
            for i in idx:
                add(fs[i], n)
            ops["mul"] += max(0, len(idx) - 1) * n
            for i in midx:
                add(s.conds[i], n, select=True)
        return tensor, ops
    n = _tile(program, s.axes + s.reduced)
    add(e.expr, n)
    for p in s.conds:
        add(p, n, select=True)
    if s.how in ("reduce", "cumsum"):
        ops[REDUCE_RULES[e.reduce].kind] += n
    if s.how == "scan":         # tl.cumsum (tl.cumprod) along the chunk axis: one add (multiply) per element
        ops[e.scan.kind] += n
    if s.role == "accumulate":
        ops[REDUCE_RULES[e.reduce].kind] += _tile(program, s.axes)
    return 0.0, ops


def chunk_work(program, k: int | None) -> ChunkWork:
    """Work of one chunk of walk k of `program`; k = None: the steps each
    program runs once (the states' initial values and the Einsums after each
    walk)."""
    if k is None:
        parts = [(s, lp.var) for lp in program.loops for s in lp.states] + \
                [(s, None) for lp in program.loops for s in lp.after]
    else:
        parts = [(s, program.loops[k].var) for s in program.loops[k].steps]
    tensor, ops = 0.0, Counter()
    for s, loop in parts:
        t, o = step_work(program, s, loop)
        tensor += t
        ops.update(o)
    sfu = fp = it = 0.0
    for kind, v in ops.items():
        u = kind_units(kind)
        sfu, fp, it = sfu + v * u.get("sfu", 0), fp + v * u.get("fp32", 0), it + v * u.get("int", 0)
    steps = [s for s, _ in parts]
    return ChunkWork(tensor, sfu, fp, it, sum(s.how == "dot" for s in steps), sum(s.how == "cumsum" for s in steps))


def chunk_loads(program, k: int | None) -> list:
    """Loads of walk k (each distinct access once per chunk) or, k = None, of
    the steps run once per program."""
    if k is None:
        steps = [s for lp in program.loops for s in lp.states + lp.after]
    else:
        steps = list(program.loops[k].steps)
    return list({ld.access: ld for s in steps for ld in s.loads}.values())


def chunk_traffic(program, m: GPUMapping, env: dict) -> tuple[float, float]:
    """(bytes one program reads, bytes its largest chunk reads): tiles that
    move with the chunk once per chunk, the rest once per walk (cached)."""
    b = DTYPE_BYTES[m.dtype]
    total = peak = 0.0
    for k, lp in enumerate(program.loops):
        loads = chunk_loads(program, k)
        moving = sum(ld.elements for ld in loads if ld.per_chunk) * b
        total += lp.trips * moving + sum(ld.elements for ld in loads if not ld.per_chunk) * b
        peak = max(peak, moving)
    total += sum(ld.elements for ld in chunk_loads(program, None)) * b
    return total, peak


def _chunk_registers(program, m: GPUMapping) -> int:
    """32-bit registers per thread: the states and accumulators live across
    the walk, and about two step tiles at a time."""
    from mappers.gpu_mapping import REG_OVERHEAD
    live = sum(_tile(program, s.axes) for lp in program.loops for s in lp.states + lp.accumulators)
    biggest = max((_step_tile(program, s) for s in program.steps), default=0)
    return -(-(live + 2 * biggest) // (32 * m.warps)) + REG_OVERHEAD


def _step_tile(program, s) -> int:
    """Register elements of a step's largest tile: a dot's operands and
    result; a masked reduction's broadcast tile (result and reduced axes)."""
    if s.how == "dot":
        d = s.dot
        return max(_tile(program, (d.a, d.c)), _tile(program, (d.c, d.b)), _tile(program, (d.a, d.b)))
    return _tile(program, s.axes + s.reduced)


def _hoisted_cost(c, hoisted, m: GPUMapping, gpu: GPU, env: dict, parts: Counter, work: Counter) -> tuple:
    """(time, HBM bytes) of the Einsums hoisted before the kernel: their
    analysis counts, run as GEMMs and vector work, inputs and results through HBM."""
    from einsum_ir.analysis.counts import einsum_ops
    from einsum_ir.analysis.evaluate import evaluate
    ops = Counter()
    for e in hoisted:
        for kind, v in einsum_ops(c, e).items():
            ops[kind] += float(evaluate(v, env))
    sfu = fp = 0.0
    for kind, v in ops.items():
        if kind != "mac":
            u = kind_units(kind)
            sfu, fp = sfu + v * u.get("sfu", 0), fp + v * (u.get("fp32", 0) + u.get("int", 0))
    work["tensor_flops"] += 2.0 * ops["mac"]
    work["sfu_ops"] += sfu
    work["fp32_ops"] += fp
    names = {e.name for e in hoisted}
    touched = ({a.tensor for e in hoisted for a in e.reads()} - names) | names
    nbytes = sum(float(np.prod([env[r] for r in c.tensor(t).ranks])) for t in touched) * DTYPE_BYTES[m.dtype]
    t = (2.0 * ops["mac"] / (gpu.efficiency["gemm_tensor"] * gpu.tensor_peak(m.dtype))
         + sfu / gpu.sfu_ops_per_s + fp / gpu.fp32_ops_per_s)
    parts["hoisted_s"] += t
    return t, 2 * nbytes if hoisted else 0.0


def predict_chunked(program, m: GPUMapping, gpu: GPU, env: dict, kclass: str | KernelClass = "triton") -> Prediction:
    """Time of a chunked linear-time kernel from its ChunkProgram (the object
    codegen.chunked renders: `ChunkedKernel.program_for(env)`). One program per
    batch coordinate walks its loops: per chunk the walk's work (`chunk_work`)
    on one SM, at least its bytes at the program's streaming rate; programs
    list-scheduled onto the SMs (waves); HBM: every program's loads, the
    output once, hoisted Einsums before."""
    from einsum_ir.analysis.chunk_program import batch_programs
    from mappers.gpu_mapping import MAX_REGS_PER_THREAD
    kc = kernel_class(kclass)
    r = _rates(gpu, m, kc)
    latency = gpu.efficiency["latency_ns"] * 1e-9
    parts, notes = Counter(), []
    per_prog, alone = Counter(), 0.0
    for k, lp in enumerate(list(program.loops) + [None]):
        w = chunk_work(program, k if lp is not None else None)
        n = lp.trips if lp is not None else 1
        t, _ = _tile_times(w.tensor_flops, 0.0, w.sfu, w.fp32, w.int_ops, r, gpu, kc)
        alone += n * t
        for key, v in (("tensor_flops", w.tensor_flops), ("sfu_ops", w.sfu), ("fp32_ops", w.fp32),
                       ("int_ops", w.int_ops)):
            per_prog[key] += n * v
    nprog = batch_programs(program, env)
    prog_bytes, chunk_bytes = chunk_traffic(program, m, env)
    prog_bw = min(m.stages * max(chunk_bytes, 1.0) / latency, gpu.sm_load_bytes_per_clock * gpu.clock_hz)
    each = max(alone, prog_bytes / prog_bw) + 2 * latency
    regs = _chunk_registers(program, m)
    threads = 32 * m.warps
    if regs > MAX_REGS_PER_THREAD:
        notes.append(f"about {regs} registers per thread: the kernel spills (more warps, or smaller chunks)")
    per_sm = max(1, min(gpu.registers_per_sm // (min(regs, MAX_REGS_PER_THREAD) * threads),
                        gpu.max_threads_per_sm // threads, gpu.max_blocks_per_sm))
    makespan = _schedule(np.full(nprog, each), np.full(nprog, each), gpu.sms, per_sm)
    work = Counter({key: nprog * v for key, v in per_prog.items()})
    out_bytes = sum(float(np.prod([env[x] for x in o.ranks])) for o in program.cascade.outputs) * DTYPE_BYTES[m.dtype]
    t_h, h_bytes = _hoisted_cost(program.cascade, _before_kernel(program), m, gpu, env, parts, work)
    hbm = nprog * prog_bytes + out_bytes + h_bytes
    work["hbm_bytes"] = hbm
    launch = gpu.efficiency["launch_us"] * 1e-6
    total = max(makespan, (hbm - h_bytes) / gpu.bandwidth) + launch + t_h
    parts.update({"tensor_s": work["tensor_flops"] / (r.tensor * gpu.sms), "sfu_s": work["sfu_ops"] / (r.sfu * gpu.sms),
                  "fp32_s": r.alu_s(work["fp32_ops"], work["int_ops"]) / gpu.sms, "hbm_s": hbm / gpu.bandwidth,
                  "schedule_s": makespan, "launch_s": launch})
    useful = nprog * sum(lp.trips * _useful_dot_flops(program, lp.steps, env) for lp in program.loops) \
        + nprog * _useful_dot_flops(program, [s for lp in program.loops for s in lp.states + lp.after], env)
    pred = Prediction("chunked", total, useful, hbm, "", gpu.tensor_peak(m.dtype), dict(parts), m, notes)
    pred.work, pred.program, pred.kclass = dict(work), program, kc
    pred.parts.update({"programs": nprog, "blocks_per_sm": per_sm, "regs_per_thread": regs,
                       "waves": -(-nprog // (gpu.sms * per_sm))})
    pred.binding = _binding(parts, max(parts["tensor_s"] + parts["sfu_s"] + parts["fp32_s"], parts["hbm_s"]), total)
    return pred


def _before_kernel(program) -> list:
    """The hoisted Einsums and the element-wise ones they read (the runtime
    evaluates those too, before the kernel), in cascade order."""
    need, stack = set(), [a.tensor for h in program.hoisted for a in h.reads()]
    while stack:
        t = stack.pop()
        if t in program.inline and t not in need:
            need.add(t)
            stack += [a.tensor for a in program.inline[t].reads()]
    names = need | {h.name for h in program.hoisted}
    return [e for e in program.cascade.einsums if e.name in names]


def _useful_dot_flops(program, steps, env: dict) -> float:
    """2 x the MACs of the dots at the extents (no padding): a chunk's token
    axes at their block, the others at their rank's extent."""
    from einsum_ir.ir import rank_of
    tokens = program.form.token_axes()
    total = 0.0
    for s in steps:
        if s.how == "dot":
            n = 2.0
            for a in (s.dot.a, s.dot.b, s.dot.c):
                n *= program.blocks[a] if a in tokens else min(program.blocks[a], int(env[rank_of(a)]))
            total += n
    return total


__all__ = ["KERNEL_CLASSES", "KernelClass", "Prediction", "TileWork", "kernel_class", "smem_operand_bytes", "ChunkWork", "chunk_loads", "chunk_traffic", "chunk_work", "predict_chunked", "predict_fused", "predict_linear_chunked", "predict_unfused", "tile_work"]
