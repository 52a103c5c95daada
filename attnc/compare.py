"""Side-by-side comparison of designs: what each costs at one shape, and how
footprint and work grow with the sequence length. Every figure comes from
`einsum_ir.analysis`; this module only chooses shapes and collects rows."""
from __future__ import annotations

from dataclasses import dataclass, field

from einsum_ir import Cascade, EinError, ShapeError
from einsum_ir.shapes import symbols_used

# Symbols that stand for a sequence length (keys M, queries P); a sweep sets
# every one of them that a design leaves free.
SEQUENCE_SYMBOLS = ("M", "P")
DEFAULT_LENGTHS = (512, 1024, 2048, 4096, 8192)

# The shape docs/zoo.md states its analyses at: a 32-head, 4K-token prefill
# with head dim 128 (Llama-2-7B-like); each design takes the symbols it uses.
# gna-2d lays the 4K tokens out as 64 x 64; decode and the chunked forms use
# M0 = 256-key chunks.
ZOO_SHAPE = dict(B=1, H=32, P=4096, M=4096, E=128, F=128, W=512, ST=1, DL=1, M0=256, G=4, NS=4, HS=16,
                 TQ=128, TK=128, density_BM=0.25, R=8, D=4096, N=49, TOPK=8,
                 PY=64, PX=64, WY=13, WX=13, STY=1, STX=1, DLY=1, DLX=1,
                 NP=1024, BS=16, density_live=0.75)     # paged KV: a pool of 1024 blocks of 16, 3/4 of M live


def free_symbols(c: Cascade) -> list[str]:
    """The symbols a user gives a value to: not derived, not a tile count."""
    bound = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    return [s for s in symbols_used(c) if s not in bound]


# Defaults a comparison may assume when a design needs a symbol the shared
# list lacks: self-attention, keys and queries the same sequence (M = P).
DEFAULTS = (("M", "P"), ("P", "M"))


@dataclass
class DesignShapes:
    """One design's share of a shared `--shape` list."""
    values: dict                  # the symbols it uses (densities of its bool tensors included)
    assumed: dict                 # symbol -> the symbol whose value it took (M -> P)
    missing: list                 # symbols it needs that neither the list nor a default gives
    ignored: list                 # symbols of the list it does not use


def design_shapes(c: Cascade, shapes: dict) -> DesignShapes:
    """Split the shared list for `c`: what it uses, what it takes by a stated
    default, what it lacks, what it ignores."""
    free = free_symbols(c)
    values, assumed = {}, {}
    for s in free:
        if s in shapes:
            values[s] = shapes[s]
        else:
            src = next((b for a, b in DEFAULTS if a == s and b in shapes), None)
            if src is not None:
                values[s], assumed[s] = shapes[src], src
    from einsum_ir.analysis.density import data_densities
    named = data_densities(c)          # densities of masks that read tensors (docs/analysis.md)
    values.update({k: v for k, v in shapes.items() if k.startswith("density_") and (c.has_tensor(k[8:]) or k in named)})
    missing = [s for s in free if s not in values]
    ignored = [k for k in shapes if k not in values]
    return DesignShapes(values, assumed, missing, ignored)


def shapes_for(c: Cascade, shapes: dict) -> dict:
    """The part of a shared `--shape` list that this design uses (with the
    stated defaults); a symbol it needs and the list lacks is an error naming
    the design and the symbol."""
    ds = design_shapes(c, shapes)
    if ds.missing:
        raise ShapeError(missing_line(c.name, ds.missing))
    return ds.values


def missing_line(name: str, missing: list) -> str:
    return f"{name} needs a value for {', '.join(missing)} (pass e.g. --shape {missing[0]}=...)"


def shape_notes(cascades: list, shapes: dict) -> list[str]:
    """The lines a comparison prints about its shapes: defaults assumed per
    design, and each symbol some designs ignore, listed once."""
    parts = [(c.name, design_shapes(c, shapes)) for c in cascades]
    notes = [f"{name}: {s} not given; {s} = {src} = {shapes[src]:g} assumed (self-attention)"
             for name, ds in parts for s, src in ds.assumed.items()]
    for k in shapes:
        users = [n for n, ds in parts if k in ds.values or k in ds.assumed.values()]
        if not users:
            notes.append(f"{k}: used by no design compared; ignored")
            continue
        if len(users) < len(parts):
            notes.append(f"{k}: used by {', '.join(users)} only; ignored for "
                         + ", ".join(n for n, _ in parts if n not in users))
    return notes


@dataclass
class Row:
    design: str
    rank: str
    values: dict                      # Analysis.at(...) of the design
    sweep: dict = field(default_factory=dict)   # length -> (ops, flops, footprint bytes)
    swept: tuple[str, ...] = ()       # the sequence symbols the sweep set
    assumed: dict = field(default_factory=dict)  # symbol -> the symbol whose value it took (M -> P)


def compare(designs: list, shapes: dict, lengths=DEFAULT_LENGTHS, progress: bool = False) -> list[Row]:
    """One Row per design at `shapes`, plus its growth over `lengths`
    (the sequence symbols M and P set to each length)."""
    from . import analyze, design as load_design
    from tqdm import tqdm

    rows = []
    cascades = [load_design(d) for d in designs]
    names = [c.name for c in cascades]
    if len(set(names)) != len(names):
        raise EinError(f"a design is named twice: {', '.join(names)}")
    steps = tqdm(total=len(cascades) * (1 + len(lengths)), desc="analysing", unit="point",
                 disable=not progress, leave=False)
    for c in cascades:
        a = analyze(c)
        row = Row(c.name, a.rank, a.at(shapes_for(c, shapes)), assumed=design_shapes(c, shapes).assumed)
        steps.update()
        row.swept = tuple(s for s in SEQUENCE_SYMBOLS if s in free_symbols(c))
        for n in lengths if row.swept else ():
            v = a.at(shapes_for(c, dict(shapes, **{s: n for s in row.swept})))
            row.sweep[n] = (sum(v["ops"].values()), v["flops"], v["footprint_bytes"])
            steps.update()
        steps.update(0 if row.swept else len(lengths))
        rows.append(row)
    steps.close()
    return rows


def lengths_around(shapes: dict, only_given: bool = False) -> list[int]:
    """The sweep's default lengths: 1/8x to 8x the sequence length the
    `--shape` gives (P, else M), in powers of 2; with `only_given`, just
    that length (the plot marks it), or [] when neither is given."""
    n = next((int(shapes[s]) for s in ("P", "M") if s in shapes), None)
    if only_given:
        return [n] if n else []
    if not n:
        return list(DEFAULT_LENGTHS)
    return sorted({max(1, round(n * 2.0 ** k)) for k in range(-3, 4)})


def growth_table(rows: list[Row]) -> list[dict]:
    """The plotted numbers, one record per design and length."""
    return [dict(design=r.design, length=n, operations=ops, flops=fl, footprint_bytes=fp)
            for r in rows for n, (ops, fl, fp) in sorted(r.sweep.items())]


def _tokens(v, _pos=None) -> str:
    """An axis label for a length: 512, 8K, 1M."""
    for div, suffix in ((2 ** 20, "M"), (2 ** 10, "K")):
        if v >= div and v % div == 0:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def plot_growth(rows: list[Row], path: str, marked=()) -> str:
    """Footprint and operation count against sequence length, log-log, one
    line per design (a dotted line at each `marked` length, the --shape's);
    the numbers go to PATH.csv beside it. Returns the CSV's path."""
    import csv
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_fp, ax_ops) = plt.subplots(1, 2, figsize=(12, 4.6))
    colours = plt.get_cmap("tab10").colors
    for i, r in enumerate(x for x in rows if x.sweep):
        ns = sorted(r.sweep)
        style = dict(color=colours[i % 10], linestyle=("-", "--", ":", "-.")[i // 10 % 4],
                     marker="os^vD"[i // 10 % 5], markersize=4, label=r.design)
        ax_ops.plot(ns, [r.sweep[n][0] for n in ns], **style)
        ax_fp.plot(ns, [max(r.sweep[n][2], 1) for n in ns], **style)
    for ax, what in ((ax_fp, "minimum live footprint (bytes)"), (ax_ops, "operations, all kinds (count)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_tokens))
        ax.set_xlabel("sequence length (tokens, M = P)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        for n in marked:
            ax.axvline(n, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"--shape: {n:,}", (n, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8, color="grey")
    fig.legend(*ax_ops.get_legend_handles_labels(), loc="center right", fontsize=8, title="design")
    fig.suptitle("Growth with sequence length (attnc analysis)")
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    data = Path(path).with_suffix(".csv")
    records = growth_table(rows)
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, ["design", "length", "operations", "flops", "footprint_bytes"])
        w.writeheader()
        w.writerows(records)
    return str(data)
