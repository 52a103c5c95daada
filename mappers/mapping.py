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
  phase), or `epochs` (software-pipelined tiles with a critical path, parsed
  here into a tree of sums, maxima and coefficients and checked against the
  binding; without one, the safe default: every Einsum in sequence).

Nothing here is specific to a paper's design: FuseMax, FLAT and the unfused
baseline are different files.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path

from einsum_ir.errors import Loc
from hw_models.schema import HardwareError, Node, load, load_named

MAPPINGS = Path(__file__).parent / "mappings"


class Overlap(str, Enum):
    """How the units' work combines into latency."""

    PHASES = "phases"            # lists of Einsums in sequence; within a phase compute and memory overlap
    OVERLAPPED = "overlapped"    # everything overlaps
    EPOCHS = "epochs"            # software-pipelined tiles with a critical path per epoch

    def __str__(self) -> str:
        return self.value


OVERLAP_KINDS = tuple(k.value for k in Overlap)


class Where(str, Enum):
    """Where a tensor lives on chip."""

    LOOP = "loop"                # a tile kept in the global buffer under a loop of the nest
    STREAM = "stream"            # not kept: between DRAM and the PEs, staged only for reuse within a leaf
    PE = "pe"                    # an intermediate not listed in `keep`: PE registers

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Keep:
    """A tensor's `keep` entry: a loop of the nest, `stream`, or PE registers."""

    where: Where
    loop: str | None = None

    @property
    def in_buffer(self) -> bool:
        return self.where is Where.LOOP

    def __str__(self) -> str:
        return self.loop if self.where is Where.LOOP else self.where.value


IN_PE = Keep(Where.PE)
STREAMED = Keep(Where.STREAM)


def keep_of(text: str) -> Keep:
    return STREAMED if text == Where.STREAM.value else Keep(Where.LOOP, text)


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
    keep: tuple[tuple[str, Keep], ...]
    dram: frozenset[str]
    spill: tuple[tuple[str, float], ...]
    overlap: Overlap
    phases: tuple[tuple[str, ...], ...]
    critical_path: "CriticalPath | None"   # epochs only; None: the default (every Einsum in sequence)
    node: Node
    variants: tuple[tuple[tuple[tuple[str, tuple[int, ...]], ...], Node], ...] = ()
    changed: tuple[tuple[str, object], ...] = ()     # fields set by with_changes: they outlive a variant
    reread: frozenset[str] = frozenset()     # operands re-read from the buffer at every use, not held in PEs
    uncharged: frozenset[str] = frozenset()  # operation kinds the evaluation's accounting leaves uncharged
    fit_budget: float | None = None          # bytes `fit` factors may fill (default: the whole buffer)
    _variant_cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def for_shapes(self, shapes: dict) -> "Mapping":
        """The mapping with the first variant whose `when` matches `shapes`
        applied (a design whose configuration depends on the workload, as
        FLAT's does on the sequence length). Fields set in code by
        `with_changes` are kept over the variant's."""
        for i, (when, node) in enumerate(self.variants):
            if all(shapes.get(k) in vals for k, vals in when):
                if i not in self._variant_cache:
                    merged = from_node(_merged(self.node, node))
                    self._variant_cache[i] = merged.with_changes(**dict(self.changed)) if self.changed else merged
                return self._variant_cache[i]
        return self

    def unit_of(self, einsum: str) -> str | None:
        return dict(self.binding).get(einsum)

    def leaf_of(self, einsum: str) -> Leaf | None:
        return next((lf for lf in self.leaves if einsum in lf.run), None)

    def keep_of(self, tensor: str) -> Keep:
        return dict(self.keep).get(tensor, IN_PE)

    def with_changes(self, **changes) -> "Mapping":
        """A copy with fields replaced; a `critical_path` given as text is
        parsed (its names are checked against the cascade by `simulate`), an
        overlap kind or a keep level as text is typed."""
        from dataclasses import replace
        if isinstance(changes.get("critical_path"), str):
            changes["critical_path"] = parse_critical_path(changes["critical_path"])
        if "overlap" in changes:
            changes["overlap"] = Overlap(changes["overlap"])
        if "keep" in changes:
            changes["keep"] = tuple((t, k if isinstance(k, Keep) else keep_of(k)) for t, k in changes["keep"])
        changes.pop("changed", None)
        return replace(self, **changes, changed=tuple({**dict(self.changed), **changes}.items()),
                       _variant_cache={})


def _merged(root: Node, variant: Node) -> Node:
    """The mapping's top level with a variant's keys replacing its own."""
    merged = dict(root.value)
    merged.update({k: v for k, v in variant.value.items() if k != "when"})
    merged.pop("variants", None)
    return Node(merged, root.loc, root.path, root.source)


def mapping_names() -> list[str]:
    return sorted(p.stem for p in MAPPINGS.glob("*.yaml"))


def load_mapping(name_or_path) -> Mapping:
    return from_node(load_named(name_or_path, MAPPINGS, "mapping", "mappings"))


def parse_mapping(text: str, file: str = "<mapping>") -> Mapping:
    return from_node(load(text, file))


KEYS = ("doc", "factors", "keep", "dram", "spill", "pipelined", "variants", "reread", "uncharged_in_evaluation",
        "fit_budget")
VARIANT_KEYS = ("factors", "nest", "keep", "dram", "spill", "pipelined", "overlap", "binding", "reread")


def _factors(top: dict) -> tuple:
    factors = []
    for rank, spec in (top["factors"].items() if "factors" in top else []):
        parts = tuple((f, ext.value if ext.value in ("rest", "fit") else ext.integer()) for f, ext in spec.items())
        if sum(1 for _, e in parts if e == "rest") > 1:
            raise spec.error("at most one factor of a rank can be `rest`")
        factors.append((rank, parts))
    return tuple(factors)


def _strings(top: dict, key: str) -> frozenset[str]:
    return frozenset(x.string() for x in top[key].list()) if key in top else frozenset()


def _spill(top: dict) -> tuple:
    out = []
    for t, node in (top["spill"].items() if "spill" in top else []):
        f = node.number(allow_zero=True)
        if f > 1:
            raise node.error(f"a spilled fraction is at most 1, got {f}")
        out.append((t, f))
    return tuple(out)


def _variants(root: Node, top: dict) -> tuple:
    variants = []
    for v in (top["variants"].list() if "variants" in top else []):
        spec = v.mapping(required=("when",), optional=VARIANT_KEYS)
        when = tuple((k, tuple(x.integer() for x in (c.list() if isinstance(c.value, list) else [c])))
                     for k, c in spec["when"].items())
        variants.append((when, v))
    for _, v in variants:
        from_node(_merged(root, v))     # each variant is checked at load, as the mapping itself
    return tuple(variants)


def _uncharged(top: dict) -> frozenset[str]:
    from hw_models.spatial import OP_KINDS
    for x in (top["uncharged_in_evaluation"].list() if "uncharged_in_evaluation" in top else []):
        if x.string() not in OP_KINDS:
            hint = difflib.get_close_matches(x.string(), OP_KINDS, n=1)
            raise x.error(f"{x.string()!r} is not an operation kind" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    return _strings(top, "uncharged_in_evaluation")


def from_node(root: Node) -> Mapping:
    top = root.mapping(required=("name", "cascade", "hardware", "nest", "binding", "overlap"), optional=KEYS)
    leaves: list[Leaf] = []
    _walk_nest(top["nest"], (), leaves)
    seen: dict[str, Node] = {}
    for lf in leaves:
        for e in lf.run:
            if e in seen:
                raise lf.node.error(f"Einsum {e} runs in two places of the nest")
            seen[e] = lf.node
    binding = tuple((e, u.string()) for e, u in top["binding"].items())
    kind, phases, critical_path = _overlap(top["overlap"], dict(binding), leaves)
    keep = tuple((t, keep_of(v.string())) for t, v in top["keep"].items()) if "keep" in top else ()
    m = Mapping(
        variants=_variants(root, top),
        name=top["name"].string(), doc=top["doc"].string() if "doc" in top else "",
        cascade=top["cascade"].string(), hardware=top["hardware"].string(),
        factors=_factors(top), leaves=tuple(leaves), binding=binding, pipelined=_strings(top, "pipelined"),
        keep=keep, dram=_strings(top, "dram"), spill=_spill(top), overlap=kind, phases=phases,
        critical_path=critical_path, node=root, reread=_strings(top, "reread"), uncharged=_uncharged(top),
        fit_budget=top["fit_budget"].number("bytes") if "fit_budget" in top else None)
    known = library_pair(m.cascade, m.hardware)
    if known is not None:
        check_names(m, *known)
    return m


@lru_cache(maxsize=32)
def library_pair(cascade: str, hardware: str):
    """(cascade, hardware) when both name library entries, else None: a
    mapping is checked against them at load where they are known."""
    import einsum_ir as ei
    from einsum_ir.library import names as library_names
    from hw_models.spatial import load_spatial, preset_names
    if cascade not in library_names() or hardware not in preset_names():
        return None
    return ei.library.load(cascade), load_spatial(hardware)


def _at(m: Mapping, *path: str) -> Node:
    """The node at `path` in the mapping's file (the root when it is not there)."""
    node = m.node
    for key in path:
        if not isinstance(node.value, dict) or key not in node.value:
            return node
        node = node.value[key]
    return node


def _hint(name: str, known) -> str:
    found = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""


def check_names(m: Mapping, c, hw) -> None:
    """Every name of the mapping against the cascade `c` and the hardware
    `hw`, at the line and column where it is written: bound and run Einsums,
    units, loop variables, kept, streamed, spilled and re-read tensors."""
    einsums = {e.name for e in c.einsums}
    tensors = {t.name for t in c.tensors}
    for e, u in m.binding:
        node = _at(m, "binding", e)
        if e not in einsums:
            raise HardwareError(f"binding: {e} is not an Einsum of {c.name}{_hint(e, einsums)}",
                                node.key_loc, node.source)
        if u not in hw.units:
            raise node.error(f"unit {u!r} is not a unit of {hw.name} ({', '.join(hw.units)}){_hint(u, hw.units)}")
    _check_nest(m, c, hw, einsums)
    for key in ("keep", "spill"):
        for t, _ in (m.keep if key == "keep" else m.spill):
            if t not in tensors:
                node = _at(m, key, t)
                raise HardwareError(f"{key}: {t} is not a tensor of {c.name}{_hint(t, tensors)}",
                                    node.key_loc, node.source)
    for key, names in (("dram", m.dram), ("reread", m.reread), ("pipelined", m.pipelined)):
        for t in names - (tensors | einsums):
            raise _at(m, key).error(f"{t} is not a tensor or Einsum of {c.name}{_hint(t, tensors | einsums)}")
    used = {n: _used(c, n) for lf in m.leaves for n in lf.run}
    for t, k in m.keep:
        users = [lf for lf in m.leaves if any(t in used[n] for n in lf.run)]
        for lf in users:
            if k.in_buffer and k.loop not in lf.loops:
                raise _at(m, "keep", t).error(f"{t} is kept under loop {k.loop}, which does not enclose the "
                                              f"Einsums {', '.join(lf.run)} that use it")


def _used(c, einsum: str) -> set[str]:
    """The tensors `einsum` writes or reads (directly or through a view of an input)."""
    from einsum_ir.ir import Access
    views = {e.name: e.expr.tensor for e in c.einsums
             if isinstance(e.expr, Access) and not e.reduced and e.scan is None}   # a scan computes
    names = {a.tensor for e in c.writers(einsum) for a in [e.output] + e.reads()}
    return names | {views[x] for x in names if x in views}


def _check_nest(m: Mapping, c, hw, einsums: set) -> None:
    """Run Einsums exist; parfor units exist; loop variables are ranks or factors."""
    variables = {r.name.lower() for r in c.ranks} | {f.lower() for _, parts in m.factors for f, _ in parts}
    for lf in m.leaves:
        for n in lf.run:
            if n not in einsums:
                raise lf.node.error(f"runs {n}, which is not an Einsum of {c.name}{_hint(n, einsums)}")
        for u, axes in lf.spatial:
            if u not in hw.units:
                raise lf.node.error(f"parfor names unit {u!r}, which {hw.name} does not have "
                                    f"({', '.join(hw.units)}){_hint(u, hw.units)}")
        for v in lf.loops + tuple(a for _, axes in lf.spatial for a in axes):
            if v not in variables:
                raise lf.node.error(f"loop variable {v} is neither a rank of {c.name} nor a factor in "
                                    f"`factors`{_hint(v, variables)}")


def _overlap(node: Node, binding: dict[str, str], leaves: list[Leaf]):
    """(kind, phases, critical path) of `overlap`, checked against the binding:
    every name a bound Einsum (a phase may also list an Einsum the nest runs),
    none twice, every bound Einsum placed."""
    ov = node.mapping(required=("kind",), optional=("phases", "critical_path"))
    kind = ov["kind"].string()
    if kind not in OVERLAP_KINDS:
        raise ov["kind"].error(f"unknown overlap kind {kind!r}; expected one of {', '.join(OVERLAP_KINDS)}")
    kind = Overlap(kind)
    for key, needs in (("phases", "phases"), ("critical_path", "epochs")):
        if key in ov and kind != needs:
            raise ov[key].error(f"`{key}` is used only with overlap kind `{needs}`, not `{kind}`")
    phases = _phases(ov["phases"], binding, leaves) if "phases" in ov else ()
    if kind == "phases" and not phases:
        raise ov["kind"].error("overlap kind `phases` needs `phases`: a list of lists of Einsum names")
    cp = None
    if "critical_path" in ov:
        cp = _critical_path_of(ov["critical_path"])
        units = set(binding.values()) | {u for lf in leaves for u, _ in lf.spatial}
        run = {e for lf in leaves for e in lf.run} - set(binding)
        check_critical_path(cp, binding, units, "an Einsum in `binding`", unbound=run)
    return kind, phases, cp


def _phases(node: Node, binding: dict[str, str], leaves: list[Leaf]) -> tuple[tuple[str, ...], ...]:
    run = {e for lf in leaves for e in lf.run}
    seen: set[str] = set()
    out = []
    for ph in node.list():
        names = []
        for x in ph.list():
            e = x.string()
            if e not in binding and e not in run:
                hint = difflib.get_close_matches(e, sorted(binding), n=1)
                raise x.error(f"phase names {e}, which is neither bound in `binding` nor run in the nest"
                              + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            if e in seen:
                raise x.error(f"{e} is in two phases (its time would count twice)")
            seen.add(e)
            names.append(e)
        out.append(tuple(names))
    missing = [e for e in binding if e not in seen]
    if missing:
        one = len(missing) == 1
        raise node.error(f"{', '.join(missing)} {'is' if one else 'are'} bound but in no phase: "
                         f"{'its' if one else 'their'} time would be left out of the latency")
    return tuple(out)


def _critical_path_of(node: Node) -> CriticalPath:
    """Parse a critical_path scalar, locating its first character in the
    file (after the quote of a quoted scalar) so errors point at a column."""
    text = node.string()
    line = node.source.split("\n")[node.loc.line - 1] if node.source else ""
    col = node.loc.column
    if line[col - 1:].startswith(text):
        return parse_critical_path(text, node.loc, node.source)
    if line[col - 1:col] in ("'", '"') and line[col:].startswith(text):
        return parse_critical_path(text, Loc(node.loc.file, node.loc.line, col + 1), node.source)
    # a folded or escaped scalar: columns in the text are not columns in the file; name the scalar
    return parse_critical_path(text, node.loc, node.source, columns=False)


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


# ------------------------------------------------------------------ the critical path
#
# Grammar (whitespace ignored):
#   path  := term ('+' term)*
#   term  := atom ('*' atom)*        at most one atom that is not a number; the numbers' product is
#                                    a coefficient >= 1 (or, with no other atom, a constant >= 0 cycles)
#   atom  := NUMBER | NAME | 'max' '(' path (',' path)* ')' | '(' path ')'
# A NAME is a bound Einsum (its busy cycles per epoch) or fill_<unit> (the unit's first dimension).
# No subtraction, division, min or coefficient below 1: with sums and maxima of non-negative times
# only, and no unit in two branches of one max, the path is never below any unit's busy time.

@dataclass(frozen=True)
class Name:
    name: str
    loc: Loc

    def value(self, env: dict) -> float:
        return float(env[self.name])

    def children(self) -> tuple:
        return ()

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Num:
    number: float

    def value(self, env: dict) -> float:
        return self.number

    def children(self) -> tuple:
        return ()

    def __str__(self) -> str:
        return f"{self.number:g}"


@dataclass(frozen=True)
class Add:
    terms: tuple

    def value(self, env: dict) -> float:
        return sum(t.value(env) for t in self.terms)

    def children(self) -> tuple:
        return self.terms

    def __str__(self) -> str:
        return " + ".join(str(t) for t in self.terms)


@dataclass(frozen=True)
class Max:
    args: tuple
    loc: Loc

    def value(self, env: dict) -> float:
        return max(a.value(env) for a in self.args)

    def children(self) -> tuple:
        return self.args

    def __str__(self) -> str:
        return f"max({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class Scale:
    factor: float
    arg: object

    def value(self, env: dict) -> float:
        return self.factor * self.arg.value(env)

    def children(self) -> tuple:
        return (self.arg,)

    def __str__(self) -> str:
        inner = f"({self.arg})" if isinstance(self.arg, Add) else str(self.arg)
        return f"{self.factor:g} * {inner}"


@dataclass(frozen=True)
class CriticalPath:
    """A parsed critical path: its text, its tree, and where it was written
    (for errors naming the offending name at its column)."""

    text: str
    expr: object
    loc: Loc
    source: str | None = field(default=None, repr=False)

    def names(self) -> tuple[Name, ...]:
        out, todo = [], [self.expr]
        while todo:
            n = todo.pop(0)
            if isinstance(n, Name):
                out.append(n)
            todo[:0] = list(n.children())
        return tuple(out)

    def einsums(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.names() if not n.name.startswith(FILL))

    def fills(self) -> tuple[str, ...]:
        """The units whose fill/drain the path states as exposed."""
        return tuple(n.name[len(FILL):] for n in self.names() if n.name.startswith(FILL))

    def value(self, env: dict) -> float:
        return self.expr.value(env)

    def error(self, message: str, loc: Loc | None = None) -> HardwareError:
        return HardwareError(f"overlap.critical_path: {message}", loc or self.loc, self.source)

    def __str__(self) -> str:
        return str(self.expr)


FILL = "fill_"
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>[-+*/(),])|(?P<bad>\S))")
_WHY = {"-": "subtraction could take the path below a unit's busy time",
        "/": "division could take the path below a unit's busy time (a coefficient must be at least 1)"}


def parse_critical_path(text: str, loc: Loc | None = None, source: str | None = None,
                        columns: bool = True) -> CriticalPath:
    """Parse `text` into a CriticalPath; `loc` is where its first character is
    (errors point at the offending token's column; with `columns` false, at
    `loc` itself)."""
    loc = loc or Loc("<critical_path>", 1, 1)
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:        # only trailing whitespace is left
            break
        kind = m.lastgroup
        at = Loc(loc.file, loc.line, loc.column + m.start(kind)) if columns else loc
        tokens.append((kind, m.group(kind), at))
        pos = m.end()
    cp = CriticalPath(text, None, loc, source)
    end = Loc(loc.file, loc.line, loc.column + len(text.rstrip())) if columns else loc
    parser = _Parser(tokens, cp, end)
    expr = parser.path()
    if parser.i < len(tokens):
        parser.fail(tokens[parser.i], "expected + or the end")
    return CriticalPath(text, expr, loc, source)


class _Parser:
    """Recursive descent over the tokens of a critical path."""

    def __init__(self, tokens, cp: CriticalPath, end: Loc):
        self.tokens, self.i, self.cp, self.end = tokens, 0, cp, end

    def peek(self, value=None):
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        return tok if tok is not None and (value is None or tok[1] == value) else None

    def fail(self, tok, expected: str):
        if tok is None:
            raise self.cp.error(f"{self.cp.text!r} ends early: {expected}",
                                self.end)
        kind, value, at = tok
        if value in _WHY:
            raise self.cp.error(f"{value!r} is not allowed: {_WHY[value]}; a critical path is a sum of "
                                f"Einsum names, numbers, coefficients >= 1 and max(...)", at)
        raise self.cp.error(f"unexpected {value!r} ({expected}); a critical path may use only names, numbers, "
                            f"+, * and max(...)", at)

    def take(self, value: str, expected: str):
        tok = self.peek(value)
        if tok is None:
            self.fail(self.peek(), expected)
        self.i += 1
        return tok

    def path(self):
        terms = [self.term()]
        while self.peek("+"):
            self.i += 1
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else Add(tuple(terms))

    def term(self):
        first = self.peek()
        factor, inner = 1.0, None
        for atom in self._atoms():
            if isinstance(atom, Num):
                factor *= atom.number
            elif inner is not None:
                raise self.cp.error("a product of two times is not a time: multiply by numbers only", first[2])
            else:
                inner = atom
        if inner is None:
            return Num(factor)
        if factor < 1:
            raise self.cp.error(f"coefficient {factor:g} is below 1: it would count {inner} for less than "
                                f"its busy time", first[2])
        return inner if factor == 1 else Scale(factor, inner)

    def _atoms(self):
        yield self.atom()
        while self.peek("*"):
            self.i += 1
            yield self.atom()

    def atom(self):
        tok = self.peek()
        if tok is None:
            self.fail(None, "expected a name, a number, max(...) or (")
        kind, value, at = tok
        self.i += 1
        if kind == "num":
            return Num(float(value))
        if kind == "name" and self.peek("("):
            if value != "max":
                why = ("min could take the path below a unit's busy time" if value == "min"
                       else "the only function is max(...)")
                raise self.cp.error(f"{value}(...) is not allowed: {why}", at)
            self.i += 1
            args = [self.path()]
            while self.peek(","):
                self.i += 1
                args.append(self.path())
            self.take(")", "expected , or ) closing max(")
            return Max(tuple(args), at)
        if kind == "name":
            return Name(value, at)
        if value == "(":
            inner = self.path()
            self.take(")", "expected ) or +")
            return inner
        self.i -= 1
        self.fail(tok, "expected a name, a number, max(...) or (")


def check_critical_path(cp: CriticalPath, bound: dict[str, str], fill_units, context: str,
                        optional=frozenset(), unbound=frozenset()) -> None:
    """Every Einsum of `bound` (name -> unit) named exactly once, nothing else
    named but `optional` Einsums and fill_<unit> for `fill_units`, and no unit
    in two branches of one max (a unit runs one Einsum at a time). Together
    these make the path an upper bound of every unit's busy time."""
    seen: dict[str, Name] = {}
    for n in cp.names():
        if n.name in seen:
            raise cp.error(f"names {n.name} twice (its time would count twice; factor it out of the sum or "
                           f"max, or write a coefficient)", n.loc)
        seen[n.name] = n
        if n.name.startswith(FILL) and n.name[len(FILL):] in fill_units:
            continue
        if n.name in unbound:
            raise cp.error(f"names {n.name}, which the nest runs but `binding` binds to no unit", n.loc)
        if n.name not in bound and n.name not in optional:
            known = sorted(bound) + [FILL + u for u in sorted(fill_units)]
            hint = difflib.get_close_matches(n.name, known, n=1)
            raise cp.error(f"names {n.name}, which is not {context} (or fill_<unit> for one of its units: "
                           f"{', '.join(sorted(fill_units)) or 'none'})"
                           + (f"; did you mean {hint[0]!r}?" if hint else ""), n.loc)
    missing = [e for e in bound if e not in seen]
    if missing:
        raise cp.error(f"does not name {', '.join(f'{e} (on {bound[e]})' for e in missing)}: every "
                       f"{context.removeprefix('an ')} must be on the path, or its busy time is left out of the "
                       f"latency")
    _units_below(cp, cp.expr, bound)


def _units_below(cp: CriticalPath, node, bound: dict[str, str]) -> dict[str, str]:
    """unit -> one Einsum on it under `node`; a max whose branches share a unit is an error."""
    if isinstance(node, Name):
        return {bound[node.name]: node.name} if node.name in bound else {}
    out: dict[str, str] = {}
    for child in node.children():
        below = _units_below(cp, child, bound)
        if isinstance(node, Max):
            for unit, e in below.items():
                if unit in out:
                    raise cp.error(f"{out[unit]} and {e} both run on {unit} but are in different branches of "
                                   f"{node}: a unit runs one Einsum at a time, so their times add", node.loc)
        for unit, e in below.items():
            out.setdefault(unit, e)
    return out
