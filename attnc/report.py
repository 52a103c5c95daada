"""Plain-text tables for the command line. Formatting only: every number
comes from the analysis object."""
from __future__ import annotations

import sympy

from einsum_ir.analysis import Analysis


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(r):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)).rstrip()
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def human(n: float, unit: str = "") -> str:
    """1.23 G, 4.00 MiB: readable magnitudes."""
    if unit == "B":
        for u, s in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
            if abs(n) >= s:
                return f"{n / s:.2f} {u}"
        return f"{n:.0f} B"
    for u, s in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= s:
            return f"{n / s:.3g} {u}"
    return f"{n:.4g}" if isinstance(n, float) else str(n)


def sym(expr) -> str:
    return sympy.sstr(expr)


def render_analysis(a: Analysis, values: dict | None) -> str:
    from einsum_ir.analysis.counts import hoisted
    c = a.cascade
    out = [f"{c.name}: {len(c.einsums)} Einsums, {len(c.tensors)} tensors"]
    if c.doc:
        from einsum_ir.library import first_sentence
        out.append("  " + first_sentence(c.doc))
    if values:
        from einsum_ir.shapes import shown_shapes
        out.append("  at " + " ".join(f"{k}={v}" for k, v in shown_shapes(values["shapes"]).items()))
    out.append("")

    out += _density_lines(a, values)

    out.append("Passes over each rank")
    rows = []
    for r, p in a.passes.items():
        why = "; ".join(p.explain()) or ("one traversal suffices: no Einsum re-reads a fiber after a reduction "
                                          "over it" if p.passes == 1 else "-")
        rows.append([r, p.passes if p.passes is not None else "not streamable", why])
    out.append(table(["rank", "passes", "why"], rows, "lrl"))
    out.append("")

    out.append("Operations by kind")
    rows = []
    for k, v in a.ops.items():
        row = [k, sym(v)]
        if values:
            row.append(human(values["ops"][k]))
        rows.append(row)
    flop_row = ["flops (mac = 2)", sym(a.flops)] + ([human(values["flops"])] if values else [])
    rows.append(flop_row)
    out.append(table(["kind", "count"] + (["value"] if values else []), rows, "llr"))
    out.append("")

    out.append("Operations per Einsum")
    rows = []
    for name, d in a.einsum_ops.items():
        if not d:
            continue
        ops = ", ".join(f"{k} {sym(v)}" for k, v in d.items())
        row = [name, ops]
        if values:
            row.append(human(sum(values["einsum_ops"][name].values())))
        rows.append(row)
    out.append(table(["Einsum", "operations"] + (["total"] if values else []), rows, "llr"))
    out.append("")
    notes = [f"  {n}: {line}" for n, lines in hoisted(c).items() for line in lines]
    if notes:
        out += ["Hoisted out of loops (counted once per distinct value of their variables)"] + notes + [""]

    out.append(f"Minimum live footprint (one traversal of {a.rank} per pass, inputs read once)")
    if values:
        out.append(f"  {human(values['footprint_bytes'], 'B')} at the worst point, live: "
                   + ", ".join(values["footprint_live"]))
    worst = [f"  {sym(b)}   [{', '.join(n)}]" for b, n in a.footprint.candidates]
    out.append("  bytes = max of:")
    out += ["  " + w for w in worst]
    out.append("")

    out.append("Compulsory off-chip traffic (inputs read once, outputs written once)")
    from einsum_ir.analysis.sizes import declared_widths
    out.append("  bytes at each tensor's declared type: " + declared_widths(c.inputs + c.outputs))
    rows = [[k, sym(v)] + ([human(values["traffic"][k], "B")] if values else []) for k, v in a.traffic.items()]
    out.append(table(["", "bytes"] + (["value"] if values else []), rows, "llr"))
    intensity = f"Operational intensity: {sym(a.intensity)} flop/byte"
    if values:
        intensity += f" = {values['intensity']:.4g}"
    out.append(intensity)
    out.append("")

    out.append("Tensors")
    rows = []
    from einsum_ir.shapes import literal_extents
    lit = literal_extents(c)          # INTV[NI, 2] as declared, not [NI, _2]
    for t in c.tensors:
        row = [t.name, t.role, "[" + ", ".join(str(lit.get(r, r)) + ("+1" if r in t.iterative else "")
                                               for r in t.ranks) + "]",
               t.dtype, sym(a.sizes[t.name])]
        if values:
            row.append(human(values["sizes"][t.name], "B"))
        rows.append(row)
    out.append(table(["tensor", "role", "ranks", "dtype", "bytes"] + (["value"] if values else []), rows,
                     "lllllr"))
    return "\n".join(out)


def _density_lines(a: Analysis, values: dict | None) -> list[str]:
    """The named densities of masks that read tensors, with their values
    (counted from the inputs, or given with --shape) where known."""
    if not a.densities:
        return []
    measured = a.measured.get("densities", {})
    rows = []
    for name, meaning in a.densities.items():
        v = (values or {}).get("shapes", {}).get(name)
        how = "" if v is None else f"{float(v):.6g}" + (f" (= {v}, from the inputs)" if name in measured else "")
        rows.append([name, meaning] + ([how] if values else []))
    return ["Masks that read tensors (their kept points are data: each count below carries its density)",
            table(["density", "meaning"] + (["value"] if values else []), rows, "lll"), ""]


def analysis_json(a: Analysis, values: dict | None) -> dict:
    from einsum_ir.analysis.counts import hoisted
    from einsum_ir.ops import DTYPE_BYTES
    c = a.cascade
    data = {
        "design": c.name,
        "sequence_rank": a.rank,
        "passes": {r: {"passes": p.passes, "einsum_pass": p.einsum_pass, "why": [str(s) for s in p.chain]}
                   for r, p in a.passes.items()},
        "ops": {k: sym(v) for k, v in a.ops.items()},
        "flops": sym(a.flops),
        "einsum_ops": {n: {k: sym(v) for k, v in d.items()} for n, d in a.einsum_ops.items()},
        "footprint_bytes": sym(a.footprint.bytes),
        "traffic": {k: sym(v) for k, v in a.traffic.items()},
        "intensity": sym(a.intensity),
        "tensor_bytes": {k: sym(v) for k, v in a.sizes.items()},
        "element_bytes": {t.name: DTYPE_BYTES[t.dtype] for t in c.tensors},   # the declared types (the byte rule)
        "hoisted": hoisted(c),
        "densities": {k: {"meaning": m, **({"value": str(a.measured["densities"][k]), "counted_from": "inputs"}
                                            if k in a.measured.get("densities", {}) else {})}
                      for k, m in a.densities.items()},
    }
    if values:
        data["values"] = values
    return data


def render_simulation(r) -> str:
    """A simulator.analytical.Report as tables."""
    from einsum_ir.shapes import shown_shapes
    out = [f"{r.design} on {r.hardware}: " + " ".join(f"{k}={v}" for k, v in shown_shapes(r.shapes).items()),
           "  tiles: " + " ".join(f"{k}={v}" for k, v in r.factors.items()), ""]
    bound = "memory" if r.latency_cycles <= r.dram_cycles * (1 + 1e-9) else "compute"
    out.append(f"latency      {r.latency_s * 1e3:.4g} ms ({human(r.latency_cycles)} cycles, {bound}-bound"
               + (f"; {r.epochs} epochs x {r.critical_path_cycles:.4g} cycles" if r.critical_path_cycles else "")
               + ")")
    if r.latency_rule:
        out.append(f"  rule       {r.latency_rule}")
    out.append(f"DRAM         {human(r.dram_bytes, 'B')} ({human(r.dram_cycles)} cycles at full bandwidth)")
    if r.bytes_rule:
        out.append(f"  bytes      {r.bytes_rule}")
    out.append(f"buffer       {human(r.buffer_bytes, 'B')} of {human(r.buffer_capacity_bytes, 'B')}")
    total = r.total_energy_pj
    out.append(f"energy       {total / 1e12:.4g} J, {r.accounting} accounting ("
               + ", ".join(f"{k} {v / total:.1%}" for k, v in r.energy_pj.items() if v) + ")")
    others = [a for a in r.energies if a != r.accounting]
    for a in others:
        out.append(f"  {a:<10} {r.total_energy(a) / 1e12:.4g} J")
    out.append("utilisation  " + ", ".join(f"{u} {x:.3f}" for u, x in r.unit_utilisation.items()))
    out.append("")
    out.append(table(["Einsum", "unit", "points", "cycles/point", "PEs used", "busy cycles", "utilisation"],
                     [[e.name, e.unit, human(e.points), e.cycles_per_point, e.pes_used, human(e.busy_cycles),
                       f"{r.einsum_utilisation[e.name]:.3f}"] for e in r.einsums]))
    if getattr(r, "notes", ()):
        out += ["", "Compute as charged"] + [f"  {x}" for x in r.notes]
    out.append("")
    out.append(table(["tensor", "kept", "in", "buffer", "DRAM read", "DRAM written", "buffer read", "buffer written"],
                     [[t.name, str(t.keep), str(t.home), human(t.buffer_bytes, "B"), human(t.dram_read_bytes, "B"),
                       human(t.dram_write_bytes, "B"), human(t.buffer_read_bytes, "B"),
                       human(t.buffer_write_bytes, "B")] for t in r.tensors
                      if t.buffer_bytes or t.dram_read_bytes or t.dram_write_bytes or t.buffer_read_bytes
                      or t.buffer_write_bytes]))
    out += ["", f"Energy by component ({r.accounting} accounting, pJ)"]
    out.append(_energy_table(r))
    return "\n".join(out)


def _energy_table(r) -> str:
    from simulator.energy import COMPONENTS
    used = [c for c in COMPONENTS if r.energy_pj.get(c)]
    rows = [[f"Einsum {n}"] + [human(parts[c]) if parts.get(c) else "" for c in used]
            for n, parts in r.einsum_energy_pj.items()]
    rows += [[f"tensor {n}"] + [human(parts[c]) if parts.get(c) else "" for c in used]
             for n, parts in r.tensor_energy_pj.items() if any(parts.values())]
    rows.append(["total"] + [human(r.energy_pj[c]) for c in used])
    return table([""] + [c.replace("_", " ") for c in used], rows)


def simulation_json(r) -> dict:
    """A Report as plain JSON data: every field, typed values as their text,
    energy by component, per Einsum and per tensor under each accounting."""
    import dataclasses
    data = {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "energies"}
    data["einsums"] = [dataclasses.asdict(e) for e in r.einsums]
    data["tensors"] = [{**dataclasses.asdict(t), "keep": str(t.keep), "home": str(t.home)} for t in r.tensors]
    data["dram_bytes"] = r.dram_bytes
    data["total_energy_pj"] = r.total_energy_pj
    data["energies"] = {a: {"total_pj": e.total_pj, "by_component": e.by_component, "by_einsum": e.by_einsum,
                            "by_tensor": e.by_tensor} for a, e in r.energies.items()}
    return data
