"""`attnc compile DESIGN --target rtl`: the files of `generate` written to a
directory, with the mapping given, else the library's mapping for the
design on that hardware (the +Binding one where there are several), else
none (every Einsum on the 1D array at the hardware's operation costs)."""
from __future__ import annotations

from pathlib import Path

from einsum_ir.errors import EinError

from . import generate
from .fixed import Fmt


def library_mapping(design: str, hw_name: str):
    """The library's mapping of `design` on `hw_name`, or None."""
    from mappers.mapping import load_mapping, mapping_names
    found = [m for m in (load_mapping(n) for n in mapping_names()) if m.cascade == design and m.hardware == hw_name]
    found.sort(key=lambda m: (m.name != "binding", m.name))
    return found[0] if found else None


def compile_rtl(design: str, hw_name: str, mapping_file: str | None, out: str | None, force: bool,
                fmt: Fmt | None = None) -> int:
    import einsum_ir as ei
    from hw_models import load_spatial
    from mappers.mapping import load_mapping
    c = ei.load(design)
    hw = load_spatial(hw_name)
    mapping = load_mapping(mapping_file) if mapping_file else library_mapping(c.name, hw.name)
    rtl = generate(c, hw, mapping, fmt)
    d = Path(out or f"{c.name}_rtl")
    if d.exists() and not d.is_dir():
        raise EinError(f"--out {d} is a file; --target rtl writes a directory of Verilog files")
    existing = [str(d / n) for n in rtl.files if (d / n).exists()]
    if existing and not force:
        raise EinError(f"{existing[0]} and {len(existing) - 1} more already exist; pass --force to overwrite"
                       if len(existing) > 1 else f"{existing[0]} already exists; pass --force to overwrite")
    d.mkdir(parents=True, exist_ok=True)
    for name, text in rtl.files.items():
        (d / name).write_text(text)
    how = f"mapping {mapping.name}" if mapping is not None else "no mapping (every Einsum on the 1D array)"
    print(f"{c.name}: {len(rtl.files)} Verilog modules for {hw.name}, {how}, {rtl.fmt.name}, "
          f"{rtl.rows} x {rtl.cols} PE array")
    for e, u in rtl.units.items():
        print(f"  {u.name}: {e} on {rtl.binding[e]}, {u.cycles_per_point} cycles per point")
    print(f"wrote {d}/")
    return 0
