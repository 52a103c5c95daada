"""Regenerate the generated parts of docs/zoo.md (the summary table and one
section per design) and, with --plot, docs/zoo-growth.png, from the library
and attnc's own analysis. The prose around the generated blocks is written by
hand and kept. tests/docs/test_zoo_doc.py fails when docs/zoo.md is stale.

Run: python scripts/build_zoo_doc.py [--plot]
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import einsum_ir as ei  # noqa: E402
from scripts.doc_blocks import fill as fill_blocks  # noqa: E402
from attnc.compare import ZOO_SHAPE, compare, plot_growth, shapes_for  # noqa: E402
from attnc.report import human  # noqa: E402
from einsum_ir.parser import header_comment  # noqa: E402

DOC = ROOT / "docs" / "zoo.md"
PLOT = ROOT / "docs" / "zoo-growth.png"

# The sixteen families, in its order; each design appears once.
GROUPS = [
    ("Softmax attention: the foundation cascades",
     ["attention-naive", "attention-3pass", "attention-3pass-deferred", "attention-2pass", "attention-1pass"]),
    ("1. The CAB taxonomy", ["cab-self", "cab-self-causal", "cab-cross", "cab-cross-causal"]),
    ("2. Generalized Neighborhood Attention", ["sliding-window", "gna-1d", "gna-2d"]),
    ("3. Attention with bias", ["alibi", "relative-bias", "dense-bias", "flashbias-lowrank"]),
    ("4. Gated attention", ["gated-attention"]),
    ("5. Clipped softmax", ["clipped-softmax"]),
    ("6. Soft-capping and attention sinks", ["softcap", "sink-logit", "sink-tokens"]),
    ("7. Linear attention, Lightning Attention, TransNormer",
     ["linear-attention", "linear-attention-causal", "lightning-attention", "transnormer-decay"]),
    ("8. Gated Linear Attention", ["gla-recurrent", "gla-chunkwise"]),
    ("9. GQA and MQA", ["gqa", "mqa"]),
    ("10. Decode and split-KV decode", ["decode", "decode-split-kv", "paged-attention"]),
    ("11. Streaming heads", ["streaming-heads"]),
    ("12. Block-sparse and PowerAttention", ["block-sparse", "power-attention"]),
    ("13. Agent Attention", ["agent-attention"]),
    ("14. Attention as an RNN (Aaren)", ["aaren"]),
    ("15. Mixture-of-Head attention", ["moh-attention"]),
    ("16. Softmax-free attention", ["sigmoid-attention", "relu-attention"]),
    ("17. Scans: forgetting gates and stick-breaking", ["forgetting-attention", "stick-breaking"]),
]
# The designs drawn in docs/zoo-growth.png: one per distinct growth law.
PLOTTED = ["attention-1pass", "cab-self-causal", "sliding-window", "gna-1d", "dense-bias",
           "flashbias-lowrank", "streaming-heads", "power-attention", "block-sparse", "linear-attention",
           "lightning-attention", "agent-attention", "aaren"]
PLOT_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)


def body(name: str) -> str:
    """The cascade without its header comment."""
    text = ei.library.path(name).read_text()
    lines = text.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).rstrip() + "\n"


def anchor(name: str) -> str:
    return f"#{name}"


def summary_table(rows) -> str:
    out = ["| design | passes | MACs | other ops | min footprint | compulsory traffic | flop/byte |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r.values
        other = sum(x for k, x in v["ops"].items() if k != "mac")
        out.append(f"| [{r.design}]({anchor(r.design)}) | {v['passes'][r.rank]} over {r.rank} "
                   f"| {human(v['ops'].get('mac', 0))} | {human(other)} | {human(v['footprint_bytes'], 'B')} "
                   f"| {human(v['traffic']['total_bytes'], 'B')} | {v['intensity']:.3g} |")
    return "\n".join(out)


def section(row, analysis) -> str:
    name, v = row.design, row.values
    c = analysis.cascade
    doc = header_comment(ei.library.path(name).read_text()).strip()
    shape = " ".join(f"{k}={x}" for k, x in v["shapes"].items())
    p = analysis.passes[row.rank]
    why = "; ".join(str(s) for s in p.chain) or "every reduction over it fits in one traversal"
    ops = ", ".join(f"{k} {human(x)}" for k, x in v["ops"].items())
    live = ", ".join(v["footprint_live"])
    return "\n".join([
        f"### {name}",
        "",
        doc,
        "",
        "```ein",
        body(name).rstrip(),
        "```",
        "",
        f"At {shape}:",
        "",
        f"- passes over {row.rank}: **{p.passes}** ({why})",
        f"- operations: {ops}; {human(v['flops'])} flops",
        f"- minimum live footprint: {human(v['footprint_bytes'], 'B')} (live: {live})",
        f"- compulsory traffic: {human(v['traffic']['total_bytes'], 'B')}; "
        f"intensity {v['intensity']:.3g} flop/byte",
        f"- {len(c.einsums)} Einsums; `attnc analyze {name} --shape ...` gives every figure as a formula",
    ])


def flashbias_table() -> str:
    """dense-bias against flashbias-lowrank at the stated shape, several R."""
    out = ["| design | R | MACs | adds | compulsory traffic | min footprint |", "|---|---|---|---|---|---|"]
    for r in compare(["dense-bias"], ZOO_SHAPE, lengths=()) + [
            row for rank in (4, 8, 16, 64) for row in compare(["flashbias-lowrank"], dict(ZOO_SHAPE, R=rank),
                                                                lengths=())]:
        v = r.values
        out.append(f"| {r.design} | {v['shapes'].get('R', '-')} | {human(v['ops'].get('mac', 0))} "
                   f"| {human(v['ops'].get('add', 0))} | {human(v['traffic']['total_bytes'], 'B')} "
                   f"| {human(v['footprint_bytes'], 'B')} |")
    return "\n".join(out)


def generated_blocks() -> dict[str, str]:
    from einsum_ir.analysis import analyze
    names = [n for _, group in GROUPS for n in group]
    missing = sorted(set(ei.library.names()) - set(names))
    if missing:
        raise SystemExit(f"library designs not placed in a group of {__file__}: {', '.join(missing)}")
    rows = compare(names, ZOO_SHAPE, lengths=())
    by_name = {r.design: r for r in rows}
    sections = []
    for title, group in GROUPS:
        sections.append(f"## {title}")
        for n in group:
            sections.append(section(by_name[n], analyze(ei.library.load(n))))
    return {"summary": summary_table(rows), "flashbias": flashbias_table(), "designs": "\n\n".join(sections)}


def fill(text: str, blocks: dict[str, str]) -> str:
    return fill_blocks(text, blocks, DOC)


def main(argv: list[str]) -> int:
    DOC.write_text(fill(DOC.read_text(), generated_blocks()))
    print(f"wrote {DOC.relative_to(ROOT)}")
    if "--plot" in argv:
        shape = dict(ZOO_SHAPE)
        rows = compare(PLOTTED, shape, lengths=PLOT_LENGTHS)
        plot_growth(rows, str(PLOT))
        print(f"wrote {PLOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
