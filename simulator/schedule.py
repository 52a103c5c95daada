"""Pass 4 of the spatial model: overlap and the critical path. The units'
busy cycles and the DRAM time combine into a latency by the mapping's
overlap rule:

- `overlapped`: max(DRAM time, each unit's busy time);
- `phases`: the sum over phases of that maximum within the phase;
- `epochs`: max(epochs x critical path, DRAM time), where each Einsum
  contributes its busy cycles / epochs to an epoch and the path is the
  mapping's (or, unstated, every Einsum in sequence: an upper bound).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import prod

from einsum_ir import Cascade
from hw_models.spatial import SpatialArray
from mappers.mapping import Add, Mapping, Name, Overlap, check_critical_path

from .tiling import Nest


@dataclass(frozen=True)
class Schedule:
    latency_cycles: float
    epochs: int
    critical_path_cycles: float   # per epoch (epochs only)
    rule: str                     # how the latency was combined
    path: str                     # epochs: the expression used per epoch
    unit_busy_cycles: dict


def _overlap_node(m: Mapping):
    node = m.node.value.get("overlap") if isinstance(m.node.value, dict) else None
    return node if node is not None else m.node


def check_schedule(c: Cascade, m: Mapping, hw: SpatialArray, costs, by_einsum: Counter) -> None:
    """The overlap's names against the cascade: every Einsum with work on the
    critical path (or in exactly one phase), nothing there the cascade lacks."""
    bound = {ec.name: ec.unit for ec in costs}
    others = frozenset(e.name for e in c.einsums if not e.is_initial) - set(bound)
    if m.overlap is Overlap.EPOCHS and m.critical_path is not None:
        check_critical_path(m.critical_path, bound, set(hw.units), f"an Einsum of {c.name} bound to a unit",
                            optional=others)
    if m.overlap is not Overlap.PHASES:
        return
    node = _overlap_node(m)
    placed = Counter(n for ph in m.phases for n in ph)
    for n, k in placed.items():
        if n not in bound and n not in others:
            raise node.error(f"`phases` names {n}, which is not an Einsum of {c.name}")
        if k > 1:
            raise node.error(f"{n} is in {k} phases (its time would count {k} times)")
    for n in list(bound) + [n for n, b in by_einsum.items() if b]:
        if n not in placed:
            raise node.error(f"Einsum {n} is in no phase of `overlap.phases`: its "
                             f"{'busy time' if n in bound else 'DRAM traffic'} would be left out of the latency")


def unit_busy(costs) -> Counter:
    busy = Counter()
    for ec in costs:
        busy[ec.unit] += ec.busy_cycles
    return busy


def _phases(m: Mapping, costs, hw: SpatialArray, by_einsum: Counter) -> float:
    by_name = {ec.name: ec for ec in costs}
    latency = 0.0
    for ph in m.phases:
        unit_time = Counter()
        for n in ph:
            if n in by_name:
                unit_time[by_name[n].unit] += by_name[n].busy_cycles
        mem = sum(by_einsum[n] for n in ph) / hw.dram_bytes_per_cycle
        latency += max([mem] + list(unit_time.values()))
    return latency


def _epochs(m: Mapping, costs, n: Nest, hw: SpatialArray) -> tuple:
    """(epochs, cycles per epoch, rule, path)."""
    named = {ec.name for ec in costs}
    main = max(m.leaves, key=lambda lf: sum(1 for x in lf.run if x in named))
    epochs = prod(n.extent(v) for v in main.loops)
    per_epoch = {ec.name: ec.busy_cycles / epochs for ec in costs}
    per_epoch.update({f"fill_{u.name}": float(u.shape[0]) for u in hw.units.values()})
    cp = m.critical_path
    if cp is None:
        path = Add(tuple(Name(ec.name, m.node.loc) for ec in costs))
        rule = ("epochs: no critical_path stated; default: every Einsum in sequence "
                "(the sum over units of their busy time, an upper bound)")
    else:      # names checked by check_schedule: any other is an Einsum without work
        per_epoch.update({x: 0.0 for x in cp.einsums() if x not in per_epoch})
        path, rule = cp.expr, "epochs: the mapping's critical_path"
    return epochs, path.value(per_epoch), rule, str(path)


def latency(m: Mapping, costs, n: Nest, hw: SpatialArray, dram_cycles: float, by_einsum: Counter) -> Schedule:
    busy = unit_busy(costs)
    if m.overlap is Overlap.OVERLAPPED:
        return Schedule(max([dram_cycles] + list(busy.values())), 1, 0.0,
                        "overlapped: max of DRAM time and each unit's busy time", "", dict(busy))
    if m.overlap is Overlap.PHASES:
        return Schedule(_phases(m, costs, hw, by_einsum), 1, 0.0,
                        f"phases: sum over {len(m.phases)} phases of max(DRAM, each unit)", "", dict(busy))
    epochs, per, rule, path = _epochs(m, costs, n, hw)
    return Schedule(max(epochs * per, dram_cycles), epochs, per, rule, path, dict(busy))
