"""What must hold for any cascade, mapping and hardware (docs/spatial.md),
checked on every report: a violation is a bug of the model, raised as an
InvariantError, never returned as a number."""
from __future__ import annotations

from collections import Counter

from .facts import facts


class InvariantError(AssertionError):
    """An internal error: the model produced a number that breaks one of its
    invariants. Never a user's mistake; never ignored."""


EPS = 1e-9


def _fail(r, what: str):
    raise InvariantError(f"internal error: {what} ({r.design} on {r.hardware} at {r.shapes})")


def check_time(r, hw) -> None:
    """Latency at least every unit's busy time and the DRAM time; utilisation in [0, 1]."""
    lat = r.latency_cycles
    for u, b in r.unit_busy_cycles.items():
        if b > lat * (1 + EPS):
            _fail(r, f"latency {lat:.6g} cycles is below {u}'s busy time {b:.6g}")
    for u, x in list(r.unit_utilisation.items()) + list(r.einsum_utilisation.items()):
        if not 0 <= x <= 1 + EPS:
            _fail(r, f"utilisation of {u} is {x:.6g}, outside [0, 1]")
    if lat < r.dram_bytes / hw.dram_bytes_per_cycle * (1 - EPS):
        _fail(r, f"latency {lat:.6g} cycles is below the DRAM time {r.dram_bytes / hw.dram_bytes_per_cycle:.6g}")


def check_attribution(r, by_einsum) -> None:
    attributed = sum(by_einsum.values())
    if abs(attributed - r.dram_bytes) > EPS * max(1.0, r.dram_bytes):
        _fail(r, f"DRAM bytes attributed to Einsums ({attributed:.6g}) differ from the tensors' "
                 f"({r.dram_bytes:.6g})")


def check_work(c, m, hw, env, r) -> None:
    """Every Einsum with operations busy at least its operations / the unit's peak."""
    floor = Counter()
    ops = {n: {k: v(env) for k, v in kinds.items()} for n, kinds in facts(c).ops.items()}
    costed = {ec.name for ec in r.einsums}
    for n, counts in ops.items():
        if n not in costed and any(counts.values()):
            _fail(r, f"{n} performs {', '.join(k for k, v in counts.items() if v)} but has no busy time")
    for ec in r.einsums:
        unit = hw.unit(ec.unit)
        cycles = [n * unit.ops[k].cycles for k, n in ops[ec.name].items() if n]
        least = (max(cycles, default=0) if ec.name in m.pipelined else sum(cycles)) / unit.pes
        if ec.busy_cycles < least * (1 - EPS):
            _fail(r, f"{ec.name} is busy {ec.busy_cycles:.6g} cycles on {ec.unit}, below its operations / the "
                     f"unit's peak ({least:.6g})")
        floor[ec.unit] += least
    for u, least in floor.items():
        if r.unit_busy_cycles.get(u, 0.0) < least * (1 - EPS):
            _fail(r, f"{u} is busy {r.unit_busy_cycles.get(u, 0.0):.6g} cycles, below its Einsums' operations / "
                     f"its peak ({least:.6g})")


def check_invariants(c, m, hw, env, r, by_einsum) -> None:
    check_time(r, hw)
    check_attribution(r, by_einsum)
    check_work(c, m, hw, env, r)
