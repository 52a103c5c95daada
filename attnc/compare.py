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
                 PY=64, PX=64, WY=13, WX=13, STY=1, STX=1, DLY=1, DLX=1)


def free_symbols(c: Cascade) -> list[str]:
    """The symbols a user gives a value to: not derived, not a tile count."""
    bound = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    return [s for s in symbols_used(c) if s not in bound]


def shapes_for(c: Cascade, shapes: dict) -> dict:
    """The part of a shared `--shape` list that this design uses; a symbol it
    needs and the list lacks is an error naming the design and the symbol."""
    free = free_symbols(c)
    missing = [s for s in free if s not in shapes]
    if missing:
        raise ShapeError(f"{c.name} needs a value for {', '.join(missing)} "
                         f"(pass e.g. --shape {missing[0]}=...)")
    out = {s: shapes[s] for s in free}
    out.update({k: v for k, v in shapes.items() if k.startswith("density_") and c.has_tensor(k[8:])})
    return out


@dataclass
class Row:
    design: str
    rank: str
    values: dict                      # Analysis.at(...) of the design
    sweep: dict = field(default_factory=dict)   # length -> (ops, flops, footprint bytes)
    swept: tuple[str, ...] = ()       # the sequence symbols the sweep set


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
        row = Row(c.name, a.rank, a.at(shapes_for(c, shapes)))
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


def plot_growth(rows: list[Row], path: str) -> None:
    """Footprint and operation count against sequence length, log-log, one
    line per design."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fp, ax_ops) = plt.subplots(1, 2, figsize=(12, 4.6))
    colours = plt.get_cmap("tab10").colors
    for i, r in enumerate(x for x in rows if x.sweep):
        ns = sorted(r.sweep)
        style = dict(color=colours[i % 10], linestyle=("-", "--", ":", "-.")[i // 10 % 4],
                     marker="os^vD"[i // 10 % 5], markersize=4, label=r.design)
        ax_ops.plot(ns, [r.sweep[n][0] for n in ns], **style)
        ax_fp.plot(ns, [max(r.sweep[n][2], 1) for n in ns], **style)
    for ax, what in ((ax_fp, "minimum live footprint (bytes)"), (ax_ops, "operations (all kinds)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (M = P)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*ax_ops.get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.suptitle("Growth with sequence length (attnc analysis)")
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
