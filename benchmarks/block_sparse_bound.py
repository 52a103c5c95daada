"""How close the GPU model's block-sparse predictions come to issue 22's
bound (time <= 1.5 x unmasked time x the fraction of key tiles visited),
and what keeps them from it: for document masks of several document
lengths, and for the corpus patterns over the bound (docs/flex.md,
Findings 7), the ratio as modelled, then with each program's cost outside
its tiles removed (`program_cycles` = 0), then with the memory round trips
removed too (latency 1 ns). What is left at the end is the tiles
themselves: a partial tile evaluates its mask at every point, and the
programs' unequal lengths fill the last wave unevenly. Each ratio divides
by the unmasked design at the same mapping and the same constants.

    .venv/bin/python benchmarks/block_sparse_bound.py [--out FILE.md] [--plot FILE.png]

A minute or two on one core; prints a markdown table, and with --plot draws
the document rows (docs/flex-block-sparse.png).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import einsum_ir as ei  # noqa: E402
from attnc.gpu import map_design, recognise  # noqa: E402
from hw_models.gpu import load_gpu  # noqa: E402
from scripts.flex_table import BASE, CORPUS, SHAPES, mask_values, unmasked  # noqa: E402
from simulator.gpu import predict_fused  # noqa: E402

VARIANTS = ((2585, 600), (0, 600), (0, 1))        # (program_cycles, latency_ns): as fitted, then without each


def ratio(c, dense, env, values, m, gpu) -> tuple[float, float]:
    """(sparse time / (unmasked time x fraction visited), fraction) at mapping m."""
    sp = predict_fused(recognise(c, env), m, gpu, env, values or None)
    de = predict_fused(recognise(dense, env), m, gpu, env)
    seen = sp.parts["tiles_full"] + sp.parts["tiles_partial"]
    frac = seen / (seen + sp.parts["tiles_skipped"])
    return sp.time_s / (de.time_s * frac), frac


def row(label: str, c, shapes: dict, values: dict) -> tuple[str, list[float]]:
    gpu = load_gpu("h100")
    env = ei.resolve(c, shapes, values or None)
    best = map_design(c, "h100", shapes, "bf16", top=1, inputs=values or None).best[0]
    m = best.mapping
    dense = unmasked(c, tuple(values))
    rs = []
    for pc, lat in VARIANTS:
        r, frac = ratio(c, dense, env, values, m, gpu.with_efficiency(program_cycles=pc, latency_ns=lat))
        rs.append(r)
    seen = best.parts["tiles_full"] + best.parts["tiles_partial"]
    per_prog = seen / best.parts["programs"]
    part = best.parts["tiles_partial"] / seen
    return (f"| {label} | {m.block_m}x{m.block_n} | {per_prog:.1f} | {part:.2f} | {frac:.3f} | "
            + " | ".join(f"{r:.2f}" for r in rs) + " |"), rs


def plot(lengths: list[int], ratios: list[list[float]], path: str) -> None:
    """The document rows: ratio against document length, one line per variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    labels = ("as modelled", "without program_cycles", "and without round trips")
    for i, lab in enumerate(labels):
        ax.plot(lengths, [r[i] for r in ratios], marker="o", label=lab)
    ax.axhline(1.5, color="grey", linestyle="--", linewidth=1)
    ax.text(lengths[-1], 1.52, "issue 22's bound", ha="right", va="bottom", color="grey", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(x) for x in lengths])
    ax.set_xlabel("document length (tokens; 8K tokens, 16 heads of 64, H100 bf16)")
    ax.set_ylabel("time / (unmasked x key tiles visited)")
    ax.set_title("Document masks: what keeps short documents over 1.5x", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def documents(n: int, length: int) -> np.ndarray:
    """Document ids over n positions, documents of `length` tokens."""
    return (np.arange(n) // length).astype(np.int32)[None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the table here")
    ap.add_argument("--plot", help="also draw the document rows here (.png)")
    a = ap.parse_args(argv)
    head = ("| pattern (H100, bf16, 16 heads of 64) | tiles | key tiles per program | partial | visited "
            "| ratio as modelled | without program_cycles | and without round trips |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    doc, lengths, ratios, n = ei.load(str(CORPUS / "document.ein")), [256, 512, 1024, 2048, 4096], [], 8192
    for length in lengths:
        line, rs = row(f"document, {n // length} documents of {length} in {n}", doc,
                       dict(BASE, P=n), {"DOC": documents(n, length)})
        lines.append(line)
        ratios.append(rs)
    for name in ("document", "natten-morton", "natten-tiled", "global-sliding-window"):
        c = ei.load(str(CORPUS / f"{name}.ein"))
        s = SHAPES.get(name, BASE)
        lines.append(row(f"`{name}` (docs/flex.md's shape)", c, s, mask_values(name, s))[0])
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    if a.plot:
        plot(lengths, ratios, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
