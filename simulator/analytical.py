"""The analytical cost model of a cascade mapped onto a spatial array, as a
sequence of small pure passes, each a function of the earlier passes'
frozen results:

1. `tiling.space`, `tiling.tiling`: the iteration space (the mapping's
   variant, the shapes, placement checks) and its tiling (factor extents,
   `fit` against the global buffer, kept tiles);
2. `compute.compute`: points, cycles per point, PEs used, busy cycles;
3. `traffic.traffic`: DRAM and buffer bytes per tensor;
4. `schedule.latency`: the overlap rule and the critical path;
5. `energy.energy`: action counts x energy per action.

`simulate` runs them over Python numbers (`numbers.Numeric`); `formulas`
runs the same passes over sympy (`numbers.Symbolic`), so the formulas are
the model's rules, not a second derivation. Assumptions and sources:
docs/spatial.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from einsum_ir import Cascade
from hw_models.spatial import SpatialArray
from mappers.mapping import Mapping

from . import compute as _compute
from . import energy as _energy
from . import schedule as _schedule
from . import tiling as _tiling
from . import traffic as _traffic
from .compute import EinsumCost
from .invariants import InvariantError, check_invariants
from .numbers import Numeric, Symbolic
from .tiling import PE_LEVEL, STREAM, Nest, views
from .traffic import Home, TensorCost

__all__ = ["simulate", "formulas", "Report", "EinsumCost", "TensorCost", "InvariantError", "PE_LEVEL", "STREAM",
           "Nest", "views"]


@dataclass(frozen=True)
class Report:
    design: str
    hardware: str
    shapes: dict
    factors: dict               # factor -> extent
    latency_cycles: float
    latency_s: float
    dram_cycles: float
    epochs: int
    critical_path_cycles: float  # per epoch (epochs overlap only)
    einsums: tuple[EinsumCost, ...]
    tensors: tuple[TensorCost, ...]
    unit_busy_cycles: dict
    unit_utilisation: dict      # useful work / (PEs x latency)
    einsum_utilisation: dict    # per Einsum: its useful work on its unit / latency
    buffer_bytes: float
    buffer_capacity_bytes: float
    min_buffer_bytes: float     # with every `fit` factor at 1: the working set the dataflow needs
    energy_pj: dict = field(default_factory=dict)   # component -> pJ under `accounting` (energy.COMPONENTS)
    latency_rule: str = ""      # how the latency was combined, and which critical path (stated or default)
    critical_path: str = ""     # epochs: the expression used per epoch
    accounting: str = "physical"
    energies: dict = field(default_factory=dict)    # accounting name -> energy.Energy (both, from the same counts)
    bytes_rule: str = ""        # the byte-width rule as applied here (`bytes_rule`)
    dram_by_einsum: dict = field(default_factory=dict)   # Einsum -> DRAM bytes it moves (what `phases` charges)
    notes: tuple = ()           # what the compute pass assumed: folded constants, hoisted operations, masks

    @property
    def einsum_energy_pj(self) -> dict:
        """Einsum -> component -> pJ under the report's accounting."""
        return self.energies[self.accounting].by_einsum

    @property
    def tensor_energy_pj(self) -> dict:
        """Tensor -> component -> pJ under the report's accounting."""
        return self.energies[self.accounting].by_tensor

    def total_energy(self, accounting: str | None = None) -> float:
        return self.energies[accounting or self.accounting].total_pj

    @property
    def dram_bytes(self) -> float:
        return sum(t.dram_read_bytes + t.dram_write_bytes for t in self.tensors)

    @property
    def total_energy_pj(self) -> float:
        return sum(self.energy_pj.values())


def bytes_rule(c: Cascade, hw: SpatialArray, tensors) -> str:
    """The byte-width rule (simulator.traffic) in one line, with the types it
    applied: DRAM bytes at each DRAM tensor's declared type, on-chip bytes at
    the hardware's word."""
    from einsum_ir.analysis.sizes import declared_widths
    home = {tc.name for tc in tensors if tc.home is Home.DRAM or tc.dram_read_bytes or tc.dram_write_bytes}
    dram = declared_widths([t for t in c.tensors if t.name in home])
    return (f"in DRAM at each tensor's declared type ({dram or 'none'}); on the chip at {hw.name}'s "
            f"{hw.word_bytes}-byte word")


def _utilisation(hw: SpatialArray, costs, latency: float) -> tuple[dict, dict]:
    work = {}
    for ec in costs:
        work[ec.unit] = work.get(ec.unit, 0) + ec.work_cycles
    return ({u: work.get(u, 0) / latency if latency else 0.0 for u in hw.units},
            {ec.name: ec.work_cycles / latency if latency else 0.0 for ec in costs})


def simulate(c: Cascade, m: Mapping, hw: SpatialArray, shapes: dict, accounting: str | None = None) -> Report:
    """Latency, traffic, energy and utilisation of `c` mapped by `m` on `hw`;
    energy under `accounting` (default: the hardware's), the other kept
    beside it in `Report.energies`."""
    acct = _energy.accounting(accounting or hw.accounting)
    s = _tiling.space(c, m, hw, shapes)
    t = _tiling.tiling(s, hw)
    costs = _compute.compute(s, t.nest, hw)
    moved = _traffic.traffic(s, t.nest, hw.word_bytes, t.kept_bytes)
    dram_bytes = moved.dram_bytes
    dram_cycles = dram_bytes / hw.dram_bytes_per_cycle
    _schedule.check_schedule(c, s.mapping, hw, costs, moved.by_einsum)
    sch = _schedule.latency(s.mapping, costs, t.nest, hw, dram_cycles, moved.by_einsum)
    unit_util, einsum_util = _utilisation(hw, costs, sch.latency_cycles)
    energies = {a.name: _energy.energy(hw, costs, moved.tensors, a, s.mapping.uncharged)
                for a in _energy.ACCOUNTINGS.values()}
    report = Report(
        design=s.mapping.name, hardware=hw.name, shapes=dict(s.env), factors=t.factors,
        latency_cycles=sch.latency_cycles, latency_s=sch.latency_cycles / hw.clock_hz, dram_cycles=dram_cycles,
        epochs=sch.epochs, critical_path_cycles=sch.critical_path_cycles, einsums=costs, tensors=moved.tensors,
        unit_busy_cycles=sch.unit_busy_cycles, unit_utilisation=unit_util, einsum_utilisation=einsum_util,
        buffer_bytes=t.buffer_bytes, buffer_capacity_bytes=hw.buffer.capacity_bytes,
        min_buffer_bytes=t.min_buffer_bytes, energy_pj=energies[acct.name].by_component,
        latency_rule=sch.rule, critical_path=sch.path, accounting=acct.name, energies=energies,
        bytes_rule=bytes_rule(c, hw, moved.tensors), dram_by_einsum=dict(moved.by_einsum),
        notes=_compute.notes(s, t.nest, hw, costs))
    check_invariants(c, s.mapping, hw, s.env, report, moved.by_einsum)
    return report


def formulas(c: Cascade, m: Mapping, hw: SpatialArray) -> dict[str, sympy.Expr]:
    """The model's main figures as sympy expressions in the shape symbols and
    the mapping's factors (a `fit` factor stays a symbol, e.g. P1; a `rest`
    factor is ceiling(rank / the others)): busy cycles per Einsum (full
    tiles assumed), DRAM bytes per DRAM tensor and in total. The same passes
    as `simulate`, over sympy; the tests check they agree."""
    vs = views(c)
    einsums = tuple(e for e in c.einsums if not e.is_initial and e.name not in vs)
    from .facts import ops_per_point
    s = _tiling.Space(c, m, {}, vs, einsums, tuple(t for t in c.tensors if t.name not in vs),
                      {e.name: ops_per_point(e) for e in einsums})
    n = _tiling.nest(c, m, _tiling.symbolic_factors(m), Symbolic())
    out: dict[str, sympy.Expr] = {}
    for ec in _compute.compute(s, n, hw):
        out[f"busy_cycles[{ec.name}]"] = ec.busy_cycles
    moved = _traffic.traffic(s, n, hw.word_bytes)
    for tc in moved.tensors:
        if tc.home is Home.DRAM:
            out[f"dram_bytes[{tc.name}]"] = sympy.sympify(tc.dram_read_bytes + tc.dram_write_bytes)
    out["dram_bytes"] = sympy.sympify(moved.dram_bytes)
    return out
