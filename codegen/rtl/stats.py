"""`attnc rtl-stats DIR`: Yosys's cell count for every generated module
(`synth -flatten -top M; stat`), beside the area model's assumption for the
hardware unit the module is bound to (hw_models: area_um2_per_pe). Arrays
are synthesised at a small size (`--array R x C`, Verilog parameters R, C)
and reported per PE too; a module that takes longer than `--timeout` is
reported as such, never guessed."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from einsum_ir.errors import EinError


@dataclass
class ModuleStats:
    file: str
    module: str
    bound: str                 # the hardware unit (pe2d, pe1d) from the file's header
    cells: int | None          # None: timed out
    pes: int                   # PEs in the synthesised module (R x C for an array, else 1)
    area_um2_per_pe: float | None
    note: str = ""

    @property
    def cells_per_pe(self) -> float | None:
        return None if self.cells is None else self.cells / self.pes


def have_yosys() -> bool:
    return shutil.which("yosys") is not None


def _header(text: str, key: str) -> str | None:
    m = re.search(rf"^// {key}: (\S+)", text, re.M)
    return m.group(1) if m else None


def synth_cells(d: Path, name: str, files: dict[str, str], params: dict[str, int], timeout: float) -> int | None:
    """Cells of module `name` (its file and the files it instantiates), flattened; None on timeout."""
    text = files[name]
    top = Path(name).stem
    deps = [n for n in files if n != name and re.search(rf"\b{re.escape(Path(n).stem)}\b", text)]
    reads = "; ".join(f"read_verilog {d / n}" for n in [*deps, name])
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items() if re.search(rf"parameter integer {k}\b", text))
    script = f"{reads}; " + (f"chparam {chparam} {top}; " if chparam else "") + \
        f"synth -flatten -top {top}; tee -q -o {d / 'stat.txt'} stat"
    try:
        r = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        raise EinError(f"yosys failed on {name}: {(r.stderr or r.stdout).strip()[-400:]}")
    found = re.findall(r"Number of cells:\s+(\d+)", (d / "stat.txt").read_text())
    if not found:
        raise EinError(f"yosys printed no cell count for {name}")
    return int(found[-1])


def rtl_stats(directory: str, hw_name: str | None = None, array: tuple[int, int] = (2, 2),
              timeout: float = 120.0) -> list[ModuleStats]:
    if not have_yosys():
        raise EinError("attnc rtl-stats needs Yosys (`apt-get install yosys`; scripts/setup.sh installs it)")
    src = Path(directory)
    if not src.is_dir():
        raise EinError(f"{directory} is not a directory of generated Verilog (attnc compile --target rtl --out DIR)")
    files = {p.name: p.read_text() for p in sorted(src.glob("*.v"))}
    if not files:
        raise EinError(f"{directory} holds no .v files")
    from hw_models import load_spatial
    out = []
    with tempfile.TemporaryDirectory(prefix="attnc_yosys_") as d:
        for name, text in files.items():
            (Path(d) / name).write_text(text)
        for name, text in files.items():
            bound = _header(text, "Bound to") or "?"
            hw = hw_name or _header(text, "Hardware")
            area = None
            if hw and hw != "default":
                spatial = load_spatial(hw)
                area = spatial.unit(bound).area_um2_per_pe if bound in spatial.units else None
            is_array = re.search(r"parameter integer R\b", text) is not None
            cells = synth_cells(Path(d), name, files, {"R": array[0], "C": array[1]}, timeout)
            out.append(ModuleStats(name, Path(name).stem, bound, cells, array[0] * array[1] if is_array else 1, area,
                                   f"at R x C = {array[0]} x {array[1]}" if is_array else ""))
    return out


def render(rows: list[ModuleStats], timeout: float) -> str:
    lines = [f"{'module':<44} {'unit':<5} {'cells':>8} {'cells/PE':>9} {'area model um2/PE':>18}  note"]
    for s in rows:
        cells = f"{s.cells:,}" if s.cells is not None else "timeout"
        per = f"{s.cells_per_pe:,.0f}" if s.cells_per_pe is not None else "-"
        area = f"{s.area_um2_per_pe:,.0f}" if s.area_um2_per_pe is not None else "-"
        note = s.note if s.cells is not None else f"yosys ran past {timeout:g} s"
        lines.append(f"{s.module:<44} {s.bound:<5} {cells:>8} {per:>9} {area:>18}  {note}")
    lines.append("cells: Yosys's generic gate-level cells (synth -flatten); the area model's figure is per PE of "
                 "the unit the module is bound to (hw_models preset).")
    return "\n".join(lines)


def cmd_rtl_stats(args) -> int:
    m = re.fullmatch(r"(\d+)x(\d+)", args.array)
    if not m or not (1 <= int(m.group(1)) <= 64 and 1 <= int(m.group(2)) <= 64):
        raise EinError(f"--array {args.array}: give ROWSxCOLS, each 1 to 64 (e.g. 2x2)")
    rows = rtl_stats(args.dir, args.hw, (int(m.group(1)), int(m.group(2))), args.timeout)
    print(render(rows, args.timeout))
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("rtl-stats", help="Yosys cell counts of generated RTL beside the area model",
                       description="Synthesise every module in DIR (written by attnc compile --target rtl) "
                                   "with Yosys and report its cells beside the area model's um2 per PE "
                                   "(docs/rtl.md). Needs yosys.")
    s.add_argument("dir", metavar="DIR", help="directory of generated Verilog")
    s.add_argument("--hw", default=None, help="spatial hardware for the area model (default: the files' header)")
    s.add_argument("--array", default="2x2", help="size the PE arrays are synthesised at (default 2x2)")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds per module (default 120)")
    s.set_defaults(func=cmd_rtl_stats)
