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
    """Where a phases error is located: the file's `overlap` entry (every
    mapping, the mapper's included, is loaded from YAML, where it is
    required)."""
    return m.node.value["overlap"]


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


# ------------------------------------------------------------------ the timeline (attnc simulate --plot)

@dataclass(frozen=True)
class Bar:
    """One Einsum (or a unit's exposed fill, or DRAM traffic) occupying a
    unit from `start` to `end` cycles; `critical` when it lies on the path
    that sets the latency."""
    unit: str                     # a unit of the hardware, or "dram"
    name: str                     # an Einsum, fill_<unit>, or "DRAM" (the DRAM time)
    epoch: int                    # the epoch (epochs rule) or phase (phases rule) it belongs to; 0 otherwise
    start: float
    end: float
    critical: bool


def _place(node, t0: float, per: dict, out: list) -> tuple[float, list]:
    """Lay out one epoch's critical-path expression from t0: a sum in
    sequence, a max's branches side by side (on different units, as the
    mapping rules require). Returns (end, the indices in `out` of the bars on
    the longest branches)."""
    from mappers.mapping import Add, Max, Name, Num, Scale
    if isinstance(node, Name):
        out.append((node.name, t0, t0 + per.get(node.name, 0.0)))
        return t0 + per.get(node.name, 0.0), [len(out) - 1]
    if isinstance(node, Num):
        return t0 + node.number, []
    if isinstance(node, Add):
        crit = []
        for term in node.terms:
            t0, c = _place(term, t0, per, out)
            crit += c
        return t0, crit
    if isinstance(node, Max):            # every branch as long as the longest is on the critical path
        branches = [_place(a, t0, per, out) for a in node.args]
        end = max(b[0] for b in branches)
        return end, [i for b in branches if b[0] == end for i in b[1]]
    if isinstance(node, Scale):
        end, crit = _place(node.arg, t0, per, out)
        return t0 + node.factor * (end - t0), crit
    raise TypeError(node)


def _epoch_bars(m: Mapping, costs, hw: SpatialArray, sch: Schedule, dram_cycles: float, shown: int) -> list[Bar]:
    unit_of = {ec.name: ec.unit for ec in costs}
    unit_of.update({f"fill_{u}": u for u in hw.units})
    per = {ec.name: ec.busy_cycles / sch.epochs for ec in costs}
    per.update({f"fill_{u.name}": float(u.shape[0]) for u in hw.units.values()})
    if m.critical_path is not None:
        path = m.critical_path.expr
    else:
        path = Add(tuple(Name(ec.name, m.node.loc) for ec in costs))
    placed: list = []
    _, crit = _place(path, 0.0, per, placed)
    dram = dram_cycles / sch.epochs
    bars = []
    for k in range(min(sch.epochs, shown)):
        t = k * sch.critical_path_cycles
        bars += [Bar(unit_of[n], n, k, t + s, t + e, i in crit and dram <= sch.critical_path_cycles)
                 for i, (n, s, e) in enumerate(placed) if e > s]
        if dram:
            bars.append(Bar("dram", "DRAM", k, t, t + dram, dram > sch.critical_path_cycles))
    return bars


def _stacked(groups: list, costs, hw: SpatialArray, dram: list) -> list[Bar]:
    """Overlapped and phases: in each group (all Einsums, or one phase) every
    unit runs its Einsums back to back and DRAM its transfers, side by side;
    the group lasts as long as its longest row, which is critical."""
    bars, t0 = [], 0.0
    for k, names in enumerate(groups):
        rows: dict = {}
        for ec in costs:
            if ec.name in names and ec.busy_cycles:
                rows.setdefault(ec.unit, []).append((ec.name, ec.busy_cycles))
        if dram[k]:
            rows["dram"] = [("DRAM", dram[k])]
        longest = max(rows, key=lambda u: sum(c for _, c in rows[u]), default=None)
        for unit, items in rows.items():
            t = t0
            for name, cycles in items:
                bars.append(Bar(unit, name, k, t, t + cycles, unit == longest))
                t += cycles
        t0 += max((sum(c for _, c in items) for items in rows.values()), default=0.0)
    return bars


def timeline(m: Mapping, costs, hw: SpatialArray, sch: Schedule, dram_cycles: float, by_einsum: dict,
             shown_epochs: int = 3) -> list[Bar]:
    """Which Einsum occupies which unit when, by the schedule's own rule
    (docs/spatial.md): `epochs`: the critical path laid out in each of the
    first `shown_epochs` epochs (every epoch is the same); `overlapped`: each
    unit's Einsums back to back beside the DRAM time; `phases`: the same per
    phase, one phase after another. The bars on the path that sets the
    latency are marked critical."""
    if m.overlap is Overlap.EPOCHS:
        return _epoch_bars(m, costs, hw, sch, dram_cycles, shown_epochs)
    if m.overlap is Overlap.PHASES:
        groups = [set(ph) for ph in m.phases]
        dram = [sum(by_einsum.get(n, 0.0) for n in ph) / hw.dram_bytes_per_cycle for ph in m.phases]
        return _stacked(groups, costs, hw, dram)
    return _stacked([{ec.name for ec in costs}], costs, hw, [dram_cycles])
