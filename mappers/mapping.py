"""A mapping of a cascade onto a spatial array, as data (a YAML file):

- `factors`: how each rank is split, outermost factor first, with each
  factor's extent (a number, `rest` for what is left, `fit` for the largest
  divisor whose tiles still fit in the global buffer);
- `nest`: the loop nest, a tree of `for` loops (temporal, outermost first)
  whose leaves `run` Einsums, with a `parfor` per unit saying which factors
  lie along that unit's array axes;
- `binding`: which unit runs each Einsum (and `pipelined` Einsums, whose
  operations use different PE stages and so issue once per cycle);
- `keep`: the loop under which a tile of a tensor stays in the global buffer
  (`stream`: not kept, re-read at every use); intermediates not listed live in
  PE registers; `dram` lists intermediates that go through DRAM, `spill` the
  fraction of an on-chip tensor that does not fit and goes to DRAM;
- `overlap`: how the units' work combines into latency: `phases` (in
  sequence; within a phase compute and memory overlap), `overlapped` (one
  phase), or `epochs` (software-pipelined tiles with a stated critical path).

Nothing here is specific to a paper's design: FuseMax, FLAT and the unfused
baseline are different files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hw_models.schema import HardwareError, Node, load, load_named

MAPPINGS = Path(__file__).parent / "mappings"
OVERLAP_KINDS = ("phases", "overlapped", "epochs")


@dataclass(frozen=True)
class Leaf:
    """Einsums run together under `loops` (temporal, outermost first), with
    each unit's array axes holding the factors in `spatial[unit]`."""

    loops: tuple[str, ...]
    spatial: tuple[tuple[str, tuple[str, ...]], ...]
    run: tuple[str, ...]
    node: Node

    def axes(self, unit: str) -> tuple[str, ...]:
        return dict(self.spatial).get(unit, ())


@dataclass(frozen=True)
class Mapping:
    name: str
    doc: str
    cascade: str
    hardware: str
    factors: tuple[tuple[str, tuple[tuple[str, object], ...]], ...]   # rank -> ((factor, extent|'rest'|'fit'), ...)
    leaves: tuple[Leaf, ...]
    binding: tuple[tuple[str, str], ...]
    pipelined: frozenset[str]
    keep: tuple[tuple[str, str], ...]
    dram: frozenset[str]
    spill: tuple[tuple[str, float], ...]
    overlap: str
    phases: tuple[tuple[str, ...], ...]
    critical_path: str
    node: Node
    variants: tuple[tuple[tuple[tuple[str, tuple[int, ...]], ...], Node], ...] = ()

    def for_shapes(self, shapes: dict) -> "Mapping":
        """The mapping with the first variant whose `when` matches `shapes`
        applied (a design whose configuration depends on the workload, as
        FLAT's does on the sequence length)."""
        for when, node in self.variants:
            if all(shapes.get(k) in vals for k, vals in when):
                merged = dict(self.node.value)
                merged.update({k: v for k, v in node.value.items() if k != "when"})
                merged.pop("variants", None)
                return from_node(Node(merged, self.node.loc, self.node.path, self.node.source))
        return self

    def unit_of(self, einsum: str) -> str | None:
        return dict(self.binding).get(einsum)

    def leaf_of(self, einsum: str) -> Leaf | None:
        return next((lf for lf in self.leaves if einsum in lf.run), None)

    def with_changes(self, **changes) -> "Mapping":
        from dataclasses import replace
        return replace(self, **changes)


def mapping_names() -> list[str]:
    return sorted(p.stem for p in MAPPINGS.glob("*.yaml"))


def load_mapping(name_or_path) -> Mapping:
    return from_node(load_named(name_or_path, MAPPINGS, "mapping", "mappings"))


def parse_mapping(text: str, file: str = "<mapping>") -> Mapping:
    return from_node(load(text, file))


def from_node(root: Node) -> Mapping:
    top = root.mapping(required=("name", "cascade", "hardware", "nest", "binding", "overlap"),
                       optional=("doc", "factors", "keep", "dram", "spill", "pipelined", "variants"))
    factors = []
    for rank, spec in (top["factors"].items() if "factors" in top else []):
        parts = []
        for f, ext in spec.items():
            if ext.value in ("rest", "fit"):
                parts.append((f, ext.value))
            else:
                parts.append((f, ext.integer()))
        if sum(1 for _, e in parts if e == "rest") > 1:
            raise spec.error("at most one factor of a rank can be `rest`")
        factors.append((rank, tuple(parts)))
    leaves: list[Leaf] = []
    _walk_nest(top["nest"], (), leaves)
    seen: dict[str, Node] = {}
    for lf in leaves:
        for e in lf.run:
            if e in seen:
                raise lf.node.error(f"Einsum {e} runs in two places of the nest")
            seen[e] = lf.node
    binding = tuple((e, u.string()) for e, u in top["binding"].items())
    ov = top["overlap"].mapping(required=("kind",), optional=("phases", "critical_path"))
    kind = ov["kind"].string()
    if kind not in OVERLAP_KINDS:
        raise ov["kind"].error(f"unknown overlap kind {kind!r}; expected one of {', '.join(OVERLAP_KINDS)}")
    phases = tuple(tuple(x.string() for x in ph.list()) for ph in ov["phases"].list()) if "phases" in ov else ()
    if kind == "phases" and not phases:
        raise ov["kind"].error("overlap kind `phases` needs `phases`: a list of lists of Einsum names")
    if kind == "epochs" and "critical_path" not in ov:
        raise ov["kind"].error("overlap kind `epochs` needs `critical_path`, an expression over Einsum names")
    keep = tuple((t, v.string()) for t, v in top["keep"].items()) if "keep" in top else ()
    spill = tuple((t, v.number(allow_zero=True)) for t, v in top["spill"].items()) if "spill" in top else ()
    for (t, f), (_, node) in zip(spill, top["spill"].items() if "spill" in top else []):
        if f > 1:
            raise node.error(f"a spilled fraction is at most 1, got {f}")
    variants = []
    for v in (top["variants"].list() if "variants" in top else []):
        spec = v.mapping(required=("when",), optional=("factors", "nest", "keep", "dram", "spill", "pipelined",
                                                       "overlap", "binding"))
        when = tuple((k, tuple(x.integer() for x in (c.list() if isinstance(c.value, list) else [c])))
                     for k, c in spec["when"].items())
        variants.append((when, v))
    return Mapping(
        variants=tuple(variants),
        name=top["name"].string(), doc=top["doc"].string() if "doc" in top else "",
        cascade=top["cascade"].string(), hardware=top["hardware"].string(),
        factors=tuple(factors), leaves=tuple(leaves), binding=binding,
        pipelined=frozenset(x.string() for x in top["pipelined"].list()) if "pipelined" in top else frozenset(),
        keep=keep, dram=frozenset(x.string() for x in top["dram"].list()) if "dram" in top else frozenset(),
        spill=spill, overlap=kind, phases=phases,
        critical_path=ov["critical_path"].string() if "critical_path" in ov else "", node=root)


def _names(node: Node) -> tuple[str, ...]:
    if isinstance(node.value, list):
        return tuple(x.string() for x in node.list())
    return (node.string(),)


def _walk_nest(node: Node, outer: tuple[str, ...], leaves: list[Leaf]) -> None:
    for item in node.list():
        it = item.mapping(optional=("for", "body", "parfor", "run"))
        loops = outer + (_names(it["for"]) if "for" in it else ())
        if "body" in it:
            if "run" in it or "parfor" in it:
                raise item.error("a nest entry has either a `body` (inner loops) or `run` (Einsums), not both")
            _walk_nest(it["body"], loops, leaves)
            continue
        if "run" not in it:
            raise item.error("a nest entry needs `body` or `run`")
        spatial = tuple((u, _names(axes)) for u, axes in it["parfor"].items()) if "parfor" in it else ()
        leaves.append(Leaf(loops, spatial, _names(it["run"]), item))
