"""IR -> `.ein` text. The output parses back to an equal IR: parse(print(c)) == c."""
from __future__ import annotations

import math

from dataclasses import replace

from .ir import ROUNDING, Access, Cascade, Domain, Einsum, Expr, Idx, Num, Op, Rank, Sym, TensorDecl, repeat_rank, walk
from .ops import NEG, RULES


def _num(v) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v.is_integer() and abs(v) < 1e16:
            return f"{v:.1f}"
        return repr(v)
    return str(v)


def _prec(e: Expr) -> int:
    if isinstance(e, Op) and RULES[e.name].infix is not None:
        return RULES[e.name].precedence
    if isinstance(e, Num) and (e.value < 0):
        return NEG
    return 100


def format_expr(e: Expr, index: bool = False) -> str:
    """`index=True` prints an access index, where `/` is integer division."""
    if isinstance(e, Num):
        return _num(e.value)
    if isinstance(e, (Sym, Idx)):
        return e.name
    if isinstance(e, Access):
        return f"{e.tensor}[{', '.join(format_expr(i, True) for i in e.indices)}]"
    if isinstance(e, Op):
        r = RULES[e.name]
        if r.infix is None:       # floor( ) and ceil( ) in an index take a real number: `/` divides there
            return f"{e.name}({', '.join(format_expr(a, index and e.name not in ROUNDING) for a in e.args)})"
        if r.arity == 1:
            inner = format_expr(e.args[0], index)
            if _prec(e.args[0]) < r.precedence:
                inner = f"({inner})"
            return f"{r.infix}{' ' if r.infix.isalpha() else ''}{inner}"
        left, right = (format_expr(a, index) for a in e.args)
        non_assoc = r.precedence == RULES["lt"].precedence
        if _prec(e.args[0]) < r.precedence or ((non_assoc or r.right_assoc) and _prec(e.args[0]) == r.precedence):
            left = f"({left})"
        if _prec(e.args[1]) < r.precedence or (not r.right_assoc and _prec(e.args[1]) == r.precedence):
            right = f"({right})"
        sym = "/" if (index and e.name == "floordiv") else r.infix
        return f"{left} {sym} {right}"
    raise TypeError(f"not an expression node: {e!r}")


def format_einsum(e: Einsum) -> str:
    text = f"{format_expr(e.output)} = "
    if e.scan is not None:   # the other indices absent from the output are summed, as always
        text += f"{e.scan} "
    elif e.reduced or e.reduce != "sum":
        text += f"{e.reduce}[{', '.join(e.reduced)}] "
    text += format_expr(e.expr)
    if e.predicate is not None:
        text += f" where {format_expr(e.predicate)}"
    return text


def format_decl(t: TensorDecl, ranks: dict[str, Rank] | None = None) -> str:
    """`ranks` (name -> Rank) lets the ranks the language made print as the
    user wrote them: `PRE[H, H]` for PRE[H, H2], `INTV[NI, 2]` for INTV[NI, _2]."""
    names: list[str] = []
    for r in t.ranks:
        rank = (ranks or {}).get(r)
        if rank is not None and rank.implicit and isinstance(rank.definition, Num):
            names.append(str(int(rank.definition.value)))
            continue
        if rank is not None and rank.implicit and isinstance(rank.definition, Sym):
            base = rank.definition.name
            if repeat_rank(base, names.count(base) + 1) == r and base in names:
                names.append(base)
                continue
        names.append(r)
    dims = ", ".join(n + ("+1" if r in t.iterative else "") for n, r in zip(names, t.ranks))
    domain = "" if t.domain is None else f" {format_domain(t.domain)}"
    return f"{t.role} {t.name}[{dims}]: {t.dtype}{domain}"


def format_domain(d: Domain) -> str:
    """`in (0, 1)`; a half-line as its bound: `> 0`, `<= 1`."""
    if math.isinf(d.hi) and not math.isinf(d.lo):
        return f"{'>=' if d.lo_closed else '>'} {_bound(d.lo)}"
    if math.isinf(d.lo) and not math.isinf(d.hi):
        return f"{'<=' if d.hi_closed else '<'} {_bound(d.hi)}"
    return f"in {'[' if d.lo_closed else '('}{_bound(d.lo)}, {_bound(d.hi)}{']' if d.hi_closed else ')'}"


def _bound(v: float) -> str:
    """A domain's end: an integer without `.0`."""
    return str(int(v)) if math.isfinite(v) and float(v).is_integer() and abs(v) < 1e16 else _num(float(v))


def fold_masks(e: Expr, masks: list[tuple[Expr, str]], used: set[str]) -> Expr:
    """`e` with each occurrence of a named mask's condition replaced by the
    mask's name (an Idx that prints as the name); the names put in are added
    to `used`. The outermost match wins, the first mask among equal ones."""
    for cond, name in masks:
        if e is cond or e == cond:
            used.add(name)
            return Idx(name)
    if isinstance(e, Op):
        return Op(e.name, tuple(fold_masks(a, masks, used) for a in e.args), loc=e.loc)
    return e


def format_ranks(ranks: tuple[Rank, ...]) -> list[str]:
    lines: list[str] = []
    free: list[str] = []

    def flush():
        if free:
            lines.append("rank " + ", ".join(free))
            free.clear()

    for r in ranks:
        if r.implicit:  # written in a declaration (`PRE[H, H]`, `INTV[NI, 2]`)
            continue
        if r.parent is None and r.definition is None:
            free.append(r.name)
            continue
        flush()
        if r.definition is not None:
            lines.append(f"rank {r.name} = {format_expr(r.definition)}")   # `/` exact, `//` floor
        elif r.part == "outer":
            inner = next(x.name for x in ranks if x.parent == r.parent and x.part == "inner")
            lines.append(f"partition {r.parent} -> {r.name}, {inner}")
    flush()
    return lines


def format_cascade(c: Cascade) -> str:
    lines = [("# " + d).rstrip() for d in c.doc.splitlines()] if c.doc else []
    if lines:
        lines.append("")
    if c.empty_rows != "nan":       # the default is not written
        lines += [f"empty rows = {c.empty_rows}", ""]
    lines += format_ranks(c.ranks)
    lines.append("")
    ranks = {r.name: r for r in c.ranks}
    lines += [format_decl(t, ranks) for t in c.tensors]
    lines.append("")
    lines += _format_masks(c)
    return "\n".join(lines) + "\n"


def _foldable(e: Einsum, table: list[tuple[Expr, str]]) -> list[tuple[Expr, str]]:
    """The masks `e` may name: those whose index variables are all written in
    its output or value (the parser refuses a mask whose coordinate is only
    in the predicate, `C[p] = 1 where causal`, so such a use prints inline)."""
    written = {n.name for part in (e.output, e.expr) for n in walk(part) if isinstance(n, Idx)}
    return [(cond, name) for cond, name in table
            if {n.name for n in walk(cond) if isinstance(n, Idx)} <= written]


def _format_masks(c: Cascade) -> list[str]:
    """Mask definitions (those still used) and the Einsums that use them, by name."""
    table = [(m.condition, m.name) for m in c.masks]
    used: set[str] = set()
    einsums = [e if not table else replace(
        e, expr=fold_masks(e.expr, _foldable(e, table), used),
        predicate=None if e.predicate is None else fold_masks(e.predicate, _foldable(e, table), used))
        for e in c.einsums]
    bodies = {}
    for k, m in enumerate(c.masks):  # a mask written with earlier masks is printed with them
        bodies[m.name] = fold_masks(m.condition, table[:k], set())
    for m in reversed(c.masks):
        if m.name in used:
            fold_masks(m.condition, table[:c.masks.index(m)], used)
    lines = [f"mask {m.name} = {format_expr(bodies[m.name])}" for m in c.masks if m.name in used]
    return lines + ([""] if lines else []) + [format_einsum(e) for e in einsums]
