"""Pass 3 of the spatial model: traffic per level. For every tensor, the
bytes it moves between DRAM and the chip and between the global buffer and
the arrays, from which loops index it and where the mapping keeps it:

- DRAM: a tensor read in a leaf, kept under loop L, is fetched once per
  iteration of each loop at or outside L that does not index it
  (re-streaming); one kept across two readers' leaves is fetched once; a
  tensor produced and consumed in the same leaf moves nothing; outputs and
  DRAM intermediates are written likewise; a spilled fraction f adds f x
  size written and f x size read back by each reader outside the writer's
  leaf.
- Buffer: every fill and drain, and every read into the arrays (or write
  back) once per iteration of each loop that does not index the tensor and
  lies outside the innermost loop that does (inside it the element stays in
  the PE: a stationary operand, or a partial sum accumulated in place).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from math import prod

from mappers.mapping import Keep, Leaf, Where

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


def buffer_trips(n: Nest, t, leaf: Leaf):
    """Times the arrays read (or write back) t in a leaf: once per iteration
    of each loop that does not index t, except loops inside the innermost
    one that does, across which t's element stays in the PE."""
    relevant = [k for k, v in enumerate(leaf.loops) if n.indexes(t.ranks, v)]
    inner = relevant[-1] if relevant else -1
    return prod(n.extent(v) for k, v in enumerate(leaf.loops) if k < inner and not n.indexes(t.ranks, v))


def size_elems(n: Nest, t):
    """Every element of t (an iterative rank holds its initial value too)."""
    return prod(n.num.shape(r) + (1 if r in t.iterative else 0) for r in t.ranks)


def users(s: Space, t) -> tuple[list, list]:
    """(readers, writers) of t as (Einsum, leaf), Einsums the nest runs."""
    readers = [(e, s.mapping.leaf_of(e.name)) for e in s.einsums
               if any(s.base(a.tensor) == t.name for a in e.reads()) and s.mapping.leaf_of(e.name) is not None]
    writers = [(e, s.mapping.leaf_of(e.name)) for e in s.einsums
               if e.name == t.name and s.mapping.leaf_of(e.name) is not None]
    return readers, writers


def tensor_traffic(s: Space, n: Nest, t, word: int, kept: float, by_einsum: Counter) -> TensorCost:
    m = s.mapping
    level = m.keep_of(t.name)
    in_pe = level.where is Where.PE
    home = Home.DRAM if t.role in ("input", "output") or t.name in m.dram else Home.CHIP
    size = size_elems(n, t) * word
    readers, writers = users(s, t)
    d_read = d_write = b_read = b_write = n.num.zero
    counted = set()
    written_in = {id(lf) for _, lf in writers}
    for e, lf in readers:
        if id(lf) in written_in:
            continue                # produced and consumed in the same leaf: passed directly
        b_read += size * buffer_trips(n, t, lf) if not in_pe else 0
        if home is Home.DRAM:
            key = (level, lf.loops[:lf.loops.index(level.loop) + 1]) if level.loop in lf.loops else id(lf)
            if key in counted:
                continue            # kept across both readers: fetched once
            counted.add(key)
            r = size * restream(n, t, lf, level)
            d_read += r
            by_einsum[e.name] += r
    for e, lf in writers:
        w = size * restream(n, t, lf, level) if home is Home.DRAM else 0
        d_write += w
        by_einsum[e.name] += w
        if not in_pe:
            b_write += size * buffer_trips(n, t, lf)
    f = dict(m.spill).get(t.name)
    if home is Home.CHIP and f:
        far = [e for e, lf in readers if id(lf) not in written_in]
        extra_w, extra_r = f * size, f * size * len(far)
        d_write += extra_w
        d_read += extra_r
        for e, _ in writers:
            by_einsum[e.name] += extra_w
        for e in far:
            by_einsum[e.name] += extra_r / len(far)
    b_write += d_read if not in_pe or home is Home.DRAM else 0
    b_read += d_write if not in_pe or home is Home.DRAM else 0
    return TensorCost(t.name, level, home, kept, d_read, d_write, b_read, b_write)


def traffic(s: Space, n: Nest, word: int, kept: dict | None = None) -> Traffic:
    by_einsum: Counter = Counter()
    costs = tuple(tensor_traffic(s, n, t, word, (kept or {}).get(t.name, 0), by_einsum) for t in s.tensors)
    return Traffic(costs, by_einsum)
