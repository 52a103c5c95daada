"""Pass 3 of the spatial model: traffic per level. For every tensor, the
bytes it moves between DRAM and the chip, between the global buffer and the
arrays, and through a staging register file between two arrays, from which
loops index it, where the mapping keeps it and which unit uses it:

- Trips: an array reads (or writes back) a tensor once per iteration of
  each loop of the leaf that does not index it and lies outside the
  innermost loop that does (inside it the element stays in the PE: a
  stationary operand, or a partial sum accumulated in place); a `reread`
  tensor is not held: once per iteration of every loop that does not index it.
- Kept in the buffer under loop L: filled from DRAM once per iteration of
  each loop at or outside L that does not index it (re-streaming; once
  across readers that share those loops); read by every reader outside its
  writer's leaf, by a reader of an earlier iterate (a recurrence's carried
  state) and by a reader on another unit, each access x trips; written
  access x trips, and a partial sum read back on every trip but the first;
  an output drained to DRAM once per fill-level iteration.
- `stream` (or not kept) and in DRAM: straight between DRAM and the PEs,
  access x trips, written straight to DRAM; staged in the buffer (one fill,
  a read per reader) only when several Einsums of one leaf read it.
- On chip and not kept (PE registers): nothing, except a value passed from
  one array to another in its writer's leaf, written once to the staging
  register file and read by each reader there.
- Spill: a fraction f of an on-chip tensor is written to DRAM (f x size)
  and read back by each reader outside its writer's leaf.

An access counts the elements it touches: an iterative rank its steps when
the access moves along it (RNV[m1], RNV[m1+1]), one iterate when it reads a
fixed one (RNV[M1]).

Bytes (the byte-width rule, one for every command; docs/spatial.md): an
element in DRAM takes its tensor's declared type (`input Q[...]: f32` is 4
bytes, as `attnc analyze` counts it); on the chip (buffer, staging register
file, PEs) it takes the hardware's word (`word_bytes`), the width its
datapath converts every value to.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from math import prod

from einsum_ir.ir import index_vars, offset_of
from einsum_ir.ops import DTYPE_BYTES
from mappers.mapping import Keep, Leaf

from .facts import facts
from .tiling import Nest, Space


class Home(str, Enum):
    """Where a tensor's whole lives: DRAM (inputs, outputs, `dram`
    intermediates) or the chip."""

    DRAM = "dram"
    CHIP = "chip"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TensorCost:
    name: str
    keep: Keep                  # the loop it is kept under, `stream`, or PE registers
    home: Home
    buffer_bytes: float         # occupancy of its kept tile(s)
    dram_read_bytes: float
    dram_write_bytes: float
    buffer_read_bytes: float
    buffer_write_bytes: float
    staging_read_bytes: float = 0.0     # through the staging register file between two arrays
    staging_write_bytes: float = 0.0


@dataclass(frozen=True)
class Traffic:
    tensors: tuple[TensorCost, ...]
    by_einsum: dict             # Einsum -> DRAM bytes it moves (what `phases` charges to its phase)

    @property
    def dram_bytes(self):
        return sum(t.dram_read_bytes + t.dram_write_bytes for t in self.tensors)


def restream(n: Nest, t, leaf: Leaf, level: Keep):
    """Fetches of t's tile in `leaf`: the loops at or outside its keep level that do not index it."""
    loops = leaf.loops[:leaf.loops.index(level.loop) + 1] if level.in_buffer else leaf.loops
    return prod(n.extent(v) for v in loops if not n.indexes(t.ranks, v))


def buffer_trips(n: Nest, t, leaf: Leaf, reread: bool = False):
    """Times an array reads (or writes back) t in a leaf: once per iteration
    of each loop that does not index t, except loops inside the innermost
    one that does, across which t's element stays in the PE (unless t is
    re-read at every use)."""
    relevant = [k for k, v in enumerate(leaf.loops) if n.indexes(t.ranks, v)]
    inner = len(leaf.loops) if reread else (relevant[-1] if relevant else -1)
    return prod(n.extent(v) for k, v in enumerate(leaf.loops) if k < inner and not n.indexes(t.ranks, v))


def size_elems(n: Nest, t):
    """Every element of t (an iterative rank holds its initial value too)."""
    return prod(n.num.shape(r) + (1 if r in t.iterative else 0) for r in t.ranks)


def accessed(n: Nest, t, a, moves=None):
    """Elements of t one access touches over the whole run: an iterative rank
    counts its steps where the access moves along it, one iterate where it
    names a fixed one; a view's access touches all of its input."""
    if not t.iterative or a.tensor != t.name:
        return prod(n.num.shape(r) for r in t.ranks)
    moving = moves.get(id(a)) if moves else None
    moving = moving if moving is not None else tuple(bool(index_vars(i)) for i in a.indices)
    return prod((n.num.shape(r) if mv else 1) if r in t.iterative else n.num.shape(r)
                for r, mv in zip(t.ranks, moving))


def _previous_iterate(s: Space, t, a) -> bool:
    """A read of the iterate before the one its writer writes (RM[m1] beside RM[m1 + 1])."""
    if not t.iterative:
        return False
    w = next((e for e in s.einsums if e.name == t.name), None)
    v = w.iterative_var if w is not None else None
    return bool(v) and v in index_vars(a) and not any(offset_of(i) == (v, 1) for i in a.indices)


def users(s: Space, t) -> tuple[list, list]:
    """(reads, writes) of t as (Einsum, leaf, access), for Einsums the nest runs."""
    run = [(e, s.mapping.leaf_of(e.name)) for e in s.einsums if s.mapping.leaf_of(e.name) is not None]
    einsum_reads = facts(s.cascade).reads
    reads = [(e, lf, a) for e, lf in run for a in einsum_reads[e.name] if s.base(a.tensor) == t.name]
    writes = [(e, lf, e.output) for e, lf in run if e.name == t.name]
    return reads, writes


@dataclass(frozen=True)
class _Tensor:
    """What the read and write rules need to know about one tensor."""

    t: object
    level: Keep
    home: Home
    size: object                # elements, the initial iterate included
    word: int                   # bytes of an element on the chip: the hardware's word
    dram_word: int              # bytes of an element in DRAM: the tensor's declared type
    reread: bool
    writer_leaves: tuple
    writer_unit: str | None


def _local_read(s: Space, n: Nest, x: _Tensor, e, a, acc: Counter, staged: set) -> None:
    """A read in the writer's leaf of the iterate just written: passed
    directly, through the buffer when it is kept there and the reader is on
    another unit, through the staging register file when it is not."""
    unit = s.mapping.unit_of(e.name)
    if unit is None or x.writer_unit is None or unit == x.writer_unit:
        return
    words = accessed(n, x.t, a, facts(s.cascade).moves) * x.word
    if x.level.in_buffer:
        acc["buffer_read"] += words * buffer_trips(n, x.t, s.mapping.leaf_of(e.name), x.reread)
    elif x.home is Home.CHIP:
        acc["staging_read"] += words
        if x.t.name not in staged:
            staged.add(x.t.name)
            acc["staging_write"] += words


def _reads(s: Space, n: Nest, x: _Tensor, reads: list, acc: Counter, by_einsum: Counter) -> None:
    fetched, per_leaf = set(), Counter(id(lf) for e, lf, a in reads if id(lf) not in x.writer_leaves)
    staged: set = set()
    for e, lf, a in reads:
        if id(lf) in x.writer_leaves and not _previous_iterate(s, x.t, a):
            _local_read(s, n, x, e, a, acc, staged)
            continue
        trips = buffer_trips(n, x.t, lf, x.reread)
        elems = accessed(n, x.t, a, facts(s.cascade).moves) * trips
        if x.level.in_buffer:
            acc["buffer_read"] += elems * x.word
            key = (x.level.loop, lf.loops[:lf.loops.index(x.level.loop) + 1])
            if x.home is Home.DRAM and key not in fetched:      # kept across readers that share it: fetched once
                fetched.add(key)
                fill = x.size * restream(n, x.t, lf, x.level)
                acc["dram_read"] += fill * x.dram_word
                acc["buffer_write"] += fill * x.word
                by_einsum[e.name] += fill * x.dram_word
        elif x.home is Home.DRAM:
            if id(lf) not in fetched:                          # one fetch per leaf, staged if shared
                fetched.add(id(lf))
                acc["dram_read"] += elems * x.dram_word
                by_einsum[e.name] += elems * x.dram_word
                if per_leaf[id(lf)] > 1:
                    acc["buffer_write"] += elems * x.word
            if per_leaf[id(lf)] > 1:
                acc["buffer_read"] += elems * x.word


def _writes(s: Space, n: Nest, x: _Tensor, writes: list, acc: Counter, by_einsum: Counter) -> None:
    for e, lf, a in writes:
        trips = buffer_trips(n, x.t, lf)
        elems = accessed(n, x.t, a, facts(s.cascade).moves)
        if x.level.in_buffer:
            acc["buffer_write"] += elems * x.word * trips
            acc["buffer_read"] += elems * x.word * (trips - 1)   # partial sums read back on every trip but the first
            if x.home is Home.DRAM:
                drain = x.size * restream(n, x.t, lf, x.level)
                acc["buffer_read"] += drain * x.word
                acc["dram_write"] += drain * x.dram_word
                by_einsum[e.name] += drain * x.dram_word
        elif x.home is Home.DRAM:
            acc["dram_write"] += elems * trips * x.dram_word
            by_einsum[e.name] += elems * trips * x.dram_word


def _spill(s: Space, x: _Tensor, reads: list, writes: list, acc: Counter, by_einsum: Counter) -> None:
    f = dict(s.mapping.spill).get(x.t.name)
    if x.home is not Home.CHIP or not f:
        return
    far = [e for e, lf, a in reads if id(lf) not in x.writer_leaves]
    spilt = f * x.size * x.dram_word
    acc["dram_write"] += spilt
    acc["dram_read"] += spilt * len(far)
    for e, _, _ in writes:
        by_einsum[e.name] += spilt
    for e in far:
        by_einsum[e.name] += spilt


def tensor_traffic(s: Space, n: Nest, t, word: int, kept, by_einsum: Counter) -> TensorCost:
    m = s.mapping
    reads, writes = users(s, t)
    home = Home.DRAM if t.role in ("input", "output") or t.name in m.dram else Home.CHIP
    x = _Tensor(t, m.keep_of(t.name), home, size_elems(n, t), word, DTYPE_BYTES[t.dtype], t.name in m.reread,
                tuple(id(lf) for _, lf, _ in writes), m.unit_of(t.name))
    acc: Counter = Counter()
    _reads(s, n, x, reads, acc, by_einsum)
    _writes(s, n, x, writes, acc, by_einsum)
    _spill(s, x, reads, writes, acc, by_einsum)
    return TensorCost(t.name, x.level, home, kept, acc["dram_read"], acc["dram_write"], acc["buffer_read"],
                      acc["buffer_write"], acc["staging_read"], acc["staging_write"])


def traffic(s: Space, n: Nest, word: int, kept: dict | None = None) -> Traffic:
    by_einsum: Counter = Counter()
    costs = tuple(tensor_traffic(s, n, t, word, (kept or {}).get(t.name, 0), by_einsum) for t in s.tensors)
    return Traffic(costs, by_einsum)
