"""`attnc map DESIGN --hw fusemax`: the spatial mapper from the command
line (docs/mapper.md). The best mapping is written as a mapping file that
`attnc simulate --mapping FILE` reads, with its exact report and how far
it is from two bounds no mapping can beat: the compulsory DRAM traffic at
full bandwidth, and the operations at the peak of the cheapest units."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import einsum_ir as ei


def is_spatial(hw: str) -> bool:
    """A spatial-array preset, or a YAML file that describes one (a GPU file has no `units`)."""
    from hw_models.spatial import preset_names
    if hw in preset_names():
        return True
    p = Path(hw)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        from hw_models.schema import load_file     # bounded: size, depth and alias expansion limits
        top = load_file(p).value
        return isinstance(top, dict) and "units" in top
    return False


@dataclass(frozen=True)
class Bounds:
    dram_cycles: float        # compulsory bytes / DRAM bytes per cycle
    compute_cycles: float     # every Einsum on its cheapest unit, all units busy all the time

    @property
    def cycles(self) -> float:
        return max(self.dram_cycles, self.compute_cycles)


def bounds(c, hw, env: dict) -> Bounds:
    """Lower bounds of any mapping's latency on `hw` at the resolved shapes `env`."""
    from einsum_ir.analysis import compulsory_traffic, evaluate
    from simulator.facts import facts
    dram = float(evaluate(compulsory_traffic(c)["total_bytes"], env)) / hw.dram_bytes_per_cycle
    f = facts(c)
    least, total = 0.0, 0.0
    for name, kinds in f.ops.items():
        counts = {k: v(env) for k, v in kinds.items()}
        if not any(counts.values()):
            continue
        per_unit = []
        for unit in hw.units.values():
            if not unit.missing([k for k, n in counts.items() if n]):
                per_unit.append(sum(n * unit.ops[k].cycles for k, n in counts.items() if n) / unit.pes)
        if per_unit:
            least = max(least, min(per_unit))
            total += min(per_unit)
    return Bounds(dram, max(least, total / len(hw.units)))


def map_spatial(design: str, hw_name: str, shapes: dict, objective: str = "latency", method: str = "fused",
                seed: int = 0, budget: int | None = None, progress: bool = False, inputs: dict | None = None):
    """The spatial mapper's best mapping of `design` on `hw_name`; `inputs`:
    tensor values that give extents and the exact densities of masks that
    read tensors (attnc.inputs.with_inputs)."""
    from hw_models import load_spatial
    from mappers.spatial_search import search
    from simulator.skipping import mask_values

    from .inputs import with_inputs
    c = ei.load(design)
    shapes = with_inputs(c, shapes, inputs)
    hw = load_spatial(hw_name)
    with mask_values(inputs):          # masks that read tensors: their tiles classified from the values
        found = search(c, hw, shapes, objective, method, seed, budget, progress)
    return c, hw, found, bounds(c, hw, found.report.shapes)


def render_spatial_map(c, hw, found, b: Bounds, written: str | None) -> str:
    from .report import human, render_simulation
    r = found.report
    lines = [f"{c.name} on {hw.name}: best of {found.evaluated:,} mappings by {found.method} search "
             f"({found.objective}) in {found.seconds:.1f} s"]
    if written:
        lines.append(f"mapping written to {written} (attnc simulate {c.name} --mapping {written} --hw {hw.name} "
                     f"--shape ...)")
    lines += ["", render_simulation(r), "",
              "Distance to the bounds (no mapping can be faster than either)",
              f"  compulsory DRAM traffic at full bandwidth: {human(b.dram_cycles)} cycles "
              f"(latency is {r.latency_cycles / b.dram_cycles:.2f}x)" if b.dram_cycles else "",
              f"  operations at the peak of the cheapest units: {human(b.compute_cycles)} cycles "
              f"(latency is {r.latency_cycles / b.compute_cycles:.2f}x)" if b.compute_cycles else ""]
    if found.front:
        lines += ["", "Pareto front (latency cycles, buffer bytes, k0, q0, q1):"]
        lines += [f"  {lat:.6g}  {buf:.0f}  {k0} {q0} {q1}" for lat, buf, k0, q0, q1 in found.front[:20]]
    if not written:
        lines += ["", "mapping file:", found.text]
    return "\n".join(x for x in lines if x is not None)


def spatial_json(c, hw, found, b: Bounds) -> dict:
    import dataclasses
    return {"design": c.name, "hardware": hw.name, "method": found.method, "objective": found.objective,
            "evaluated": found.evaluated, "seconds": found.seconds, "mapping": found.text,
            "report": dataclasses.asdict(found.report),
            "bounds": {"dram_cycles": b.dram_cycles, "compute_cycles": b.compute_cycles},
            "pareto": [list(p) for p in found.front]}
