"""Pass 2 of the spatial model: compute per unit. For each Einsum with
work, its exact point count (predicates applied), its PE cycles per point
on its unit, the PEs it keeps busy and its busy cycles:

    busy = points x cycles per point / PEs used x padding

where an array axis holds one factor of the leaf's `parfor` (a factor
smaller than the axis, or one the Einsum does not move along, leaves PEs
idle) and partial tiles still occupy whole rows (padding; the formulas
assume full tiles)."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

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


def pes_used(s: Space, n: Nest, e, unit) -> tuple:
    """(PEs the Einsum keeps busy, padding factor of its partial tiles)."""
    its = facts(s.cascade).its[e.name]
    used, pad = 1, 1
    for size, var in zip(unit.shape, s.mapping.leaf_of(e.name).axes(unit.name)):
        if not (n.ranks_of(var) & its):
            continue              # the Einsum does not move along this axis: one PE of it works
        used *= n.num.min(n.extent(var), size)
        root = n.root_of.get(var, var.upper())
        covered = prod(n.extent(f.lower()) for rank, parts in s.mapping.factors if rank == root for f, _ in parts)
        pad *= n.num.pad(covered, root)
    return used, pad


def einsum_cost(s: Space, n: Nest, hw: SpatialArray, e) -> EinsumCost:
    ops = s.ops[e.name]
    unit = hw.unit(s.mapping.unit_of(e.name))
    n_points = n.num.count(facts(s.cascade).points[e.name])
    cpp = unit.cycles_per_point(ops, pipelined=e.name in s.mapping.pipelined)
    used, pad = pes_used(s, n, e, unit)
    busy = n_points * cpp / used
    if pad != 1:
        busy = busy * pad
    reads = facts(s.cascade).operands[e.name]
    return EinsumCost(e.name, unit.name, n_points, cpp, used, busy, n_points * cpp / unit.pes,
                      {k: n_points * c for k, c in ops.items() if c}, n_points * reads, n_points)


def compute(s: Space, n: Nest, hw: SpatialArray) -> tuple[EinsumCost, ...]:
    """The cost of every Einsum that performs operations."""
    return tuple(einsum_cost(s, n, hw, e) for e in s.einsums if s.ops[e.name])
