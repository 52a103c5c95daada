"""The numbers of docs/flex.md, computed: for each FlexAttention variant of
tests/flex/corpus at a realistic shape (one sequence of 4K tokens, 16 heads
of 64, bf16 on an H100), what attnc's analyses, GPU model and spatial
mapper say; and the same for designs FlexAttention cannot express. It
rewrites the blocks between `<!-- BEGIN generated:NAME -->` and
`<!-- END generated:NAME -->` in docs/flex.md and keeps the prose.

Run: python scripts/flex_table.py [--no-spatial] [--only NAME ...] [--spatial-only NAME ...]
(several minutes: the spatial mapper searches each design; --no-spatial
leaves that column as it is in the file)."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import einsum_ir as ei  # noqa: E402
from attnc import analyze  # noqa: E402
from scripts.doc_blocks import fill as fill_blocks  # noqa: E402
from attnc.gpu import map_design, recognise  # noqa: E402
from hw_models.gpu import load_gpu  # noqa: E402
from simulator.gpu import predict_fused  # noqa: E402
from attnc.report import human  # noqa: E402
from einsum_ir.errors import EinError  # noqa: E402
from einsum_ir.shapes import symbols_used  # noqa: E402

DOC = ROOT / "docs" / "flex.md"
CORPUS = ROOT / "tests" / "flex" / "corpus"
BEYOND = ROOT / "tests" / "flex" / "beyond"
N = 4096
BASE = dict(B=1, H=16, P=N, E=64, F=64)
CANVAS = dict(B=1, H=16, E=64, F=64, CH=64, CW=64, KH=13, KW=13)

# The shape of each variant: the base, with the variant's own symbols at values its users pick.
SHAPES = {
    "causal-bottom-right": dict(BASE, P=1024, M=N),                     # a chunk of 1K queries on a 4K cache
    "sliding-window": dict(BASE, W=1024), "sliding-window-bidirectional": dict(BASE, W=512),
    "dilated-sliding-window": dict(BASE, W=1024, D=4), "prefix-lm": dict(BASE, PL=1024),
    "global-sliding-window": dict(BASE, W=256), "attention-sink": dict(BASE, NS=4, W=1024),
    "block-causal": dict(BASE, BS=512), "natten-1d": dict(BASE, KS=513),
    "natten-2d": CANVAS, "natten-tiled": dict(CANVAS, TH=8, TW=8), "natten-morton": CANVAS,
    "sliding-tile-2d": dict(CANVAS, TH=8, TW=8, KH=24, KW=24, NT=256),
    "block-diffusion": {**{k: v for k, v in BASE.items() if k != "P"}, "N": N // 2, "BS": 16},
    "jetspec-training": dict(BASE, P=1024, PL=N - 1024, BS=16), "tree-causal": dict(BASE, P=64, PL=N - 64),
    "softcap": dict(BASE, CAP=50), "softcap-sliding-window": dict(BASE, CAP=50, W=1024),
    "t5-bias": dict(BASE, NBK=32, MD=128), "sandwich": dict(BASE, NF=64), "graphormer": dict(BASE, ND=16),
    "latent-rope": dict(BASE, E=128, F=128, R=64),
}
CROSS = dict(BASE, M=N)                 # designs with their own key rank M
BEYOND_SHAPES = {"gated-attention": dict(CROSS, D=1024), "clipped-softmax": CROSS, "sink-logit": BASE,
                 "differential": dict(BASE, LAM=0.8), "talking-heads": CROSS, "sigmoid-attention": CROSS,
                 "stick-breaking": BASE, "linear-attention": CROSS,
                 "lightning-attention": dict(B=1, H=16, E=64, F=64, M=N, M0=64)}


def documents(rng, n, docs):
    """Sorted document ids over n positions, `docs` documents of random lengths."""
    ids = np.zeros(n, np.int32)
    for cut in np.sort(rng.choice(np.arange(1, n), docs - 1, replace=False)):
        ids[cut:] += 1
    return ids


def offsets(ids):
    return np.searchsorted(ids, np.arange(ids.max() + 2)).astype(np.int32)


def mask_values(name, s):
    """The tensors a data-dependent mask reads, at the doc's shape (seed 0)."""
    rng = np.random.default_rng(0)
    n = s.get("P", N)
    if name == "prefix-lm-per-sequence":
        return {"PRE": np.array([1536], np.int32)}
    if name == "document":
        return {"DOC": documents(rng, n, 8)[None]}
    if name == "document-offsets":
        ids = documents(rng, n, 8)
        return {"DOC": ids, "OFF": offsets(ids)[:-1]}
    if name == "shared-prefix":         # two prompts of 1K, each followed by three answers
        lengths = [1024, 341, 341, 342, 1024, 341, 341, 342]
        ids = np.repeat(np.arange(8), lengths).astype(np.int32)
        return {"DOC": ids, "OFF": offsets(ids), "PD": np.array([0, 0, 0, 0, 4, 4, 4, 4], np.int32)}
    if name == "global-sliding-window":
        return {"G": np.isin(np.arange(n), rng.choice(n, 16, replace=False))}
    if name == "key-padding":
        return {"LEN": np.array([3000], np.int32)}
    if name == "tree-causal":
        parent = [-1] + [int(rng.integers(max(0, i - 4), i)) for i in range(1, n)]
        anc = np.eye(n, dtype=bool)
        for node in range(1, n):
            anc[node] |= anc[parent[node]]
        return {"ANC": anc}
    return {}


def unmasked(c, reads):
    """The same design without its mask (`mask vis` and its uses; the tensors
    only the mask read): the dense baseline of a block-sparse variant."""
    lines = [ln for ln in str(c).splitlines()
             if not ln.startswith("mask vis") and not any(ln.startswith(f"input {t}[") for t in reads)]
    return ei.parse("\n".join(lines).replace(" where vis", ""))


def us(t):
    return f"{t * 1e6:,.0f} µs" if t >= 1e-4 else f"{t * 1e6:,.1f} µs"


def gpu_columns(c, shapes, values):
    """(best prediction, fraction of key tiles visited, the unmasked design's
    best prediction, and its prediction at the masked design's mapping: the
    same kernel without the mask, which the fraction of key tiles scales)."""
    r = map_design(c, "h100", shapes, "bf16", top=1, inputs=values or None)
    b = r.best[0]
    b.kernel_passes = r.form.passes
    seen = b.parts["tiles_full"] + b.parts["tiles_partial"]
    frac = seen / (seen + b.parts["tiles_skipped"])
    has_mask = any(ln.startswith("mask vis") for ln in str(c).splitlines())
    if has_mask:
        d = unmasked(c, tuple(values))
        used = set(symbols_used(d))
        env = ei.resolve(c, shapes, values or None)
        denv = {k: v for k, v in env.items() if k in used}
        dense = map_design(d, "h100", denv, "bf16", top=1).best[0]
        same = predict_fused(recognise(d, ei.resolve(d, denv)), b.mapping, load_gpu("h100"), ei.resolve(d, denv))
    else:
        dense = same = b
    return b, frac, dense, same


def spatial_column(path: Path, shapes: dict, values: dict) -> str:
    """The spatial mapper's latency on the FuseMax array, or its refusal (the
    model folds `sqrt(E)` and other shape constants itself)."""
    from attnc.spatial_map import map_spatial
    try:
        _, _, found, _ = map_spatial(str(path), "fusemax", shapes, inputs=values or None)
    except EinError as e:
        return "refused: " + refusal(str(e).splitlines()[0])
    return f"{found.report.latency_s * 1e6:,.0f} µs"


def refusal(msg: str) -> str:
    """The reason of a spatial refusal, short."""
    lacks = re.search(r"no unit performs ([^(]*)", msg)
    if lacks:
        return "no unit performs " + lacks.group(1).strip()
    gather = re.search(r"reads (.*?) through the gather", msg)
    if gather:
        return f"a gather ({gather.group(1)})".replace("|", "\\|")
    computed = re.search(r"reads (.*?) at the computed index", msg)
    if computed:
        return f"a computed index ({computed.group(1)})".replace("|", "\\|")
    return re.sub(r"^.*?error: ", "", msg)[:100].replace("|", "\\|")


def corpus_row(name: str, spatial: bool, old: dict) -> list[str]:
    path = CORPUS / f"{name}.ein"
    c = ei.load(str(path))
    shapes = SHAPES.get(name, BASE)
    values = mask_values(name, shapes)
    a = analyze(c, inputs=values or None, shapes=shapes)
    at = a.at(shapes)
    env = at["shapes"]
    kept = at["points"]["SN"] / (env["B"] * env["H"] * env["P"] * env["M"])
    b, frac, dense, same = gpu_columns(c, shapes, values)
    ratio = b.time_s / (same.time_s * frac)
    sp = spatial_column(path, shapes, values) if spatial else old.get(name, "-")
    passes = at["passes"].get("M")
    return [f"`{name}`", "not streamable" if passes is None else str(passes), str(b.kernel_passes),
            f"{kept:.3f}", human(at["footprint_bytes"], "B"), tiles(b.mapping), us(b.time_s), b.binding,
            f"{frac:.3f}", us(dense.time_s), f"{ratio:.2f}", sp]


def tiles(m) -> str:
    """BLOCK_M x BLOCK_N, and the split-KV count where there is one."""
    return f"{m.block_m}x{m.block_n}" + (f", {m.splits} splits" if getattr(m, "splits", 1) > 1 else "")


def beyond_row(name: str) -> list[str]:
    path = BEYOND / f"{name}.ein"
    c = ei.load(str(path)) if path.exists() else ei.load(name)
    shapes = BEYOND_SHAPES[name]
    at = analyze(c, shapes=shapes).at(shapes)
    try:
        r = map_design(c, "h100", shapes, "bf16", top=1)
        b = r.best[0]
        kernel = "fused" if r.unfused is not None else "chunked"
        gpu = [kernel, tiles(b.mapping) if kernel == "fused" else str(b.mapping), us(b.time_s), b.binding]
    except EinError as e:
        why = re.sub(r"^.*?error: ", "", str(e).splitlines()[0]).split("; ")[0]
        gpu = ["none", why.replace(f"{c.name} does not fit a fused attention kernel: ", "").replace("|", "\\|"),
               "-", "-"]
    ranks = at["passes"]
    seq = ranks.get("M", ranks.get("P", "-"))
    return [f"`{name}`", "not streamable" if seq is None else str(seq), human(at["footprint_bytes"], "B"), *gpu]


def variant_row(name: str) -> list[str]:
    """What the variant is (its first comment sentence), and its mask and score as written."""
    c = ei.load(str(CORPUS / f"{name}.ein"))
    text = (CORPUS / f"{name}.ein").read_text()
    doc = " ".join(ln[1:].strip() for ln in text.splitlines() if ln.startswith("#"))
    first = doc.split("Source: ")[0].split(". ")[0]
    mask = next((ln.split("=", 1)[1].strip() for ln in text.splitlines() if ln.startswith("mask vis")), "")
    score = next((ln.split("=", 1)[1].split(" where ")[0].strip() for ln in text.splitlines()
                  if ln.startswith("S[")), "")
    source = doc.split("Source: ")[-1].rstrip(".") if "Source: " in doc else "-"
    cell = lambda x: f"`{x}`".replace("|", "\\|") if x else "-"  # noqa: E731
    assert c.name
    return [f"`{name}`", first.rstrip("."), cell(mask), cell(score if score != "QK[b, h, m, p] / sqrt(E)" else ""),
            source.replace("|", "\\|")]


# The block-sparse patterns issue 22 holds to "within 1.5x of unmasked x visited, never above unmasked".
BLOCK_SPARSE = ["natten-1d", "natten-2d", "natten-tiled", "natten-morton", "sliding-tile-2d", "document",
                "document-offsets", "sliding-window", "sliding-window-bidirectional", "dilated-sliding-window",
                "softcap-sliding-window", "attention-sink", "global-sliding-window"]


def micros(cell: str) -> float:
    return float(cell.split()[0].replace(",", ""))


def sparse_summary(rows) -> str:
    """The block-sparse rows against issue 22's bound, as a list."""
    out = []
    for r in rows:
        name = r[0].strip("`")
        if name not in BLOCK_SPARSE:
            continue
        ratio, time_us, dense_us = float(r[10]), micros(r[6]), micros(r[9])
        verdict = "within 1.5x" if ratio <= 1.5 else "**over 1.5x**"
        above = f", **above the unmasked {r[9]}**" if time_us > dense_us else ""
        out.append(f"- `{name}`: {r[6]} for {r[8]} of the key tiles, {ratio:.2f}x proportional: {verdict}{above}")
    n_over = sum("over" in x for x in out)
    return f"{n_over} of {len(out)} block-sparse patterns are over the bound:\n\n" + "\n".join(out)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


CORPUS_HEADER = ["variant", "passes over M (as written)", "kernel passes", "kept", "min. footprint", "best tiles",
                 "H100 (model)", "bound by", "key tiles visited", "unmasked", "time / (unmasked at these tiles x visited)", "FuseMax array (model)"]
VARIANT_HEADER = ["variant", "what", "mask `vis` (where)", "score S (beyond Q K^T / sqrt(E))", "source"]
BEYOND_HEADER = ["design", "passes", "min. footprint", "kernel", "tiles / chunk", "H100 (model)", "bound by"]


def old_spatial(text: str) -> dict:
    """The spatial column already in the file, by variant (kept by --no-spatial)."""
    out = {}
    for line in text.splitlines():
        cells = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(cells) == len(CORPUS_HEADER) and cells[0].startswith("`"):
            out[cells[0].strip("`")] = cells[-1]
    return out


def fill(text: str, blocks: dict[str, str]) -> str:
    return fill_blocks(text, blocks, DOC)


def spatial_only(names: list[str]) -> int:
    """Rewrite the spatial cell of `names` in the corpus table, nothing else
    (the file is read again after the slow part, so edits meanwhile stay)."""
    cells = {}
    for name in names:
        t0 = time.time()
        shapes = SHAPES.get(name, BASE)
        cells[name] = spatial_column(CORPUS / f"{name}.ein", shapes, mask_values(name, shapes))
        print(f"{name}: {cells[name]} ({time.time() - t0:.1f} s)", file=sys.stderr)
    text = DOC.read_text()
    rows = []
    for line in text.splitlines():
        row = [x.strip() for x in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(row) == len(CORPUS_HEADER):
            name = row[0].strip("`")
            rows.append(row[:-1] + [cells.get(name, row[-1])])
    DOC.write_text(fill(text, {"corpus": table(CORPUS_HEADER, rows)}))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-spatial", action="store_true", help="keep the spatial column as it is in the file")
    ap.add_argument("--only", nargs="*", help="recompute these variants only (the other rows are kept)")
    ap.add_argument("--spatial-only", nargs="+", metavar="NAME",
                    help="recompute only the spatial column of these variants (every other cell is kept)")
    args = ap.parse_args(argv)
    text = DOC.read_text()
    old = old_spatial(text)
    old_rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines()
                if line.startswith("| `") and len(line.split("|")) == len(CORPUS_HEADER) + 2}
    if args.spatial_only:
        return spatial_only(args.spatial_only)
    rows = []
    for name in sorted(p.stem for p in CORPUS.glob("*.ein")):
        if args.only is not None and name not in args.only and name in old_rows:
            rows.append([x.strip() for x in old_rows[name].strip().strip("|").split("|")])
            continue
        t0 = time.time()
        rows.append(corpus_row(name, not args.no_spatial, old))
        print(f"{name}: {time.time() - t0:.1f} s", file=sys.stderr)
    blocks = {"corpus": table(CORPUS_HEADER, rows), "sparse": sparse_summary(rows),
              "beyond": table(BEYOND_HEADER, [beyond_row(n) for n in BEYOND_SHAPES]),
              "variants": table(VARIANT_HEADER, [variant_row(n) for n in sorted(p.stem for p in CORPUS.glob("*.ein"))])}
    DOC.write_text(fill(text, blocks))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
