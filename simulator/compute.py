"""Pass 2 of the spatial model: compute per unit. For each Einsum with
work, its exact point count (predicates applied), its PE cycles per point
on its unit, the PEs it keeps busy and its busy cycles:

    busy = points x cycles per point / PEs used x padding

where an array axis holds one factor of the leaf's `parfor` (a factor
smaller than the axis, or one the Einsum does not move along, leaves PEs
idle) and partial tiles still occupy whole rows (padding; the formulas
assume full tiles). Operations that depend on only some of the Einsum's
variables (a slope per head, an index expression of the query alone: a
`facts.Group`) are charged once per distinct value of those variables, on
the PEs of the axes that move along them; compile-time constants are
folded and charged nothing (`facts.fold`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import prod

from einsum_ir.ir import index_vars
from hw_models.spatial import SpatialArray

from .facts import facts
from .tiling import Nest, Space


@dataclass(frozen=True)
class EinsumCost:
    name: str
    unit: str
    points: int
    cycles_per_point: int
    pes_used: int
    busy_cycles: float          # the unit is occupied this long
    work_cycles: float          # points x cycles per point / all the unit's PEs: useful work
    ops: dict                   # operation kind -> count (points x per point)
    rf_reads: float             # PE register-file reads over all PEs: an operand each, and a reduction's accumulator
    rf_writes: float            # one result per point


def pes_used(s: Space, n: Nest, e, unit, its=None) -> tuple:
    """(PEs the Einsum keeps busy, padding factor of its partial tiles);
    `its`: the upper-case variables the work depends on (default: all the
    Einsum's)."""
    its = facts(s.cascade).its[e.name] if its is None else its
    used, pad = 1, 1
    for size, var in zip(unit.shape, s.mapping.leaf_of(e.name).axes(unit.name)):
        if not (n.ranks_of(var) & its):
            continue              # the Einsum does not move along this axis: one PE of it works
        used *= n.num.min(n.extent(var), size)
        root = n.root_of.get(var, var.upper())
        covered = prod(n.extent(f.lower()) for rank, parts in s.mapping.factors if rank == root for f, _ in parts)
        pad *= n.num.pad(covered, root)
    return used, pad


def grain(s: Space, n: Nest, e, unit) -> dict:
    """Predicate variable -> the extent of it the unit's axes hold at once (1
    along a temporal loop)."""
    out = {}
    axes = list(zip(unit.shape, s.mapping.leaf_of(e.name).axes(unit.name)))
    for v in index_vars(e.predicate):
        g = 1
        for size, var in axes:
            if v.upper() in n.ranks_of(var):
                g *= n.num.min(n.extent(var), size)
        out[v] = g
    return out


def visited(s: Space, n: Nest, e, unit) -> tuple:
    """(visited points / kept points of a masked Einsum at its tiles, or 1
    and why not known): simulator.skipping."""
    return n.num.visited(s.cascade, e, grain(s, n, e, unit))


def _parts(s: Space, e) -> list:
    """(variables, operations per instance, Count of instances) of each group,
    the per-point one first with the operations `s.ops` gives less the hoisted."""
    gs = facts(s.cascade).groups[e.name]
    main = Counter(s.ops[e.name])
    for g in gs[1:]:
        main.subtract(g.ops)
    return [(gs[0].vars, +main, gs[0].count)] + [(g.vars, g.ops, g.count) for g in gs[1:]]


def einsum_cost(s: Space, n: Nest, hw: SpatialArray, e) -> EinsumCost:
    unit = hw.unit(s.mapping.unit_of(e.name))
    piped = e.name in s.mapping.pipelined
    busy, work, ops, head = 0, 0, {}, None
    for vs, per, count in _parts(s, e):
        n_g = n.num.count(count)
        cpp = unit.cycles_per_point(per, pipelined=piped)
        used, pad = pes_used(s, n, e, unit, frozenset(v.upper() for v in vs))
        t = n_g * cpp / used
        if head is None and e.predicate is not None:
            t = t * visited(s, n, e, unit)[0]     # the per-point work of the tiles visited, masked points idle
        busy = busy + (t * pad if pad != 1 else t)
        work = work + n_g * cpp / unit.pes
        for k, c in per.items():
            if c:
                ops[k] = ops.get(k, 0) + n_g * c
        head = head or (n_g, cpp, used)
    n_points, cpp, used = head
    reads = facts(s.cascade).operands[e.name]
    return EinsumCost(e.name, unit.name, n_points, cpp, used, busy, work, ops, n_points * reads, n_points)


def compute(s: Space, n: Nest, hw: SpatialArray) -> tuple[EinsumCost, ...]:
    """The cost of every Einsum that performs operations."""
    return tuple(einsum_cost(s, n, hw, e) for e in s.einsums if s.ops[e.name])


def notes(s: Space, n: Nest, hw: SpatialArray, costs) -> tuple[str, ...]:
    """What the compute pass assumed, in words, for the report: constants
    folded, operations charged once per distinct value of fewer variables,
    and how masked points are charged."""
    f = facts(s.cascade)
    out = []
    for ec in costs:
        if f.folded[ec.name]:
            out.append(f"{ec.name}: {', '.join(f.folded[ec.name])} computed once at compile time, outside the array")
        for g in f.groups[ec.name][1:]:
            what = ", ".join(k for k, c in g.ops.items() if c)
            where = f"({', '.join(sorted(g.vars))})" if g.vars else "once"
            verb = "depend" if len([k for k, c in g.ops.items() if c]) > 1 else "depends"
            out.append(f"{ec.name}: {what} {verb} on {where} only: charged {n.num.count(g.count)} times, "
                       f"not once per point")
    by_name = {e.name: e for e in s.einsums}
    masked: dict = {}
    for ec in costs:
        e = by_name[ec.name]
        if e.predicate is not None:
            g = grain(s, n, e, hw.unit(ec.unit))
            factor, why = n.num.visited(s.cascade, e, g)
            masked.setdefault((str(e.predicate), why, tuple(g.items()), factor), []).append(ec.name)
    for (pred, why, g, factor), names in masked.items():
        where = f"where {pred} ({', '.join(names)})"
        if why is None:
            tile = " x ".join(f"{v} {x}" for v, x in g)
            out.append(f"{where}: a tile of {tile} with no kept point is skipped, one with some is computed "
                       f"whole (its masked points idle): {factor:.3g}x the kept points' time")
        else:
            out.append(f"{where}: only the kept points are charged, as if the array skipped masked points one "
                       f"by one (a lower bound; {why}); evaluating the predicate is addressing, not charged")
    return tuple(out)
