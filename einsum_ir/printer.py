"""IR -> `.ein` text. The output parses back to an equal IR: parse(print(c)) == c."""
from __future__ import annotations

import math

from .ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, Rank, Sym, TensorDecl
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
        if r.infix is None:
            return f"{e.name}({', '.join(format_expr(a, index) for a in e.args)})"
        if r.arity == 1:
            inner = format_expr(e.args[0], index)
            if _prec(e.args[0]) < r.precedence:
                inner = f"({inner})"
            return f"{r.infix}{' ' if r.infix.isalpha() else ''}{inner}"
        left, right = (format_expr(a, index) for a in e.args)
        non_assoc = r.precedence == RULES["lt"].precedence
        if _prec(e.args[0]) < r.precedence or (non_assoc and _prec(e.args[0]) == r.precedence):
            left = f"({left})"
        if _prec(e.args[1]) <= r.precedence:
            right = f"({right})"
        sym = "/" if (index and e.name == "floordiv") else r.infix
        return f"{left} {sym} {right}"
    raise TypeError(f"not an expression node: {e!r}")


def format_einsum(e: Einsum) -> str:
    text = f"{format_expr(e.output)} = "
    if e.reduced or e.reduce != "sum":
        text += f"{e.reduce}[{', '.join(e.reduced)}] "
    text += format_expr(e.expr)
    if e.predicate is not None:
        text += f" where {format_expr(e.predicate)}"
    return text


def format_decl(t: TensorDecl) -> str:
    dims = ", ".join(r + ("+1" if r in t.iterative else "") for r in t.ranks)
    return f"{t.role} {t.name}[{dims}]: {t.dtype}"


def format_ranks(ranks: tuple[Rank, ...]) -> list[str]:
    lines: list[str] = []
    free: list[str] = []

    def flush():
        if free:
            lines.append("rank " + ", ".join(free))
            free.clear()

    for r in ranks:
        if r.parent is None and r.definition is None:
            free.append(r.name)
            continue
        flush()
        if r.definition is not None:
            lines.append(f"rank {r.name} = {format_expr(r.definition, True)}")
        elif r.part == "outer":
            inner = next(x.name for x in ranks if x.parent == r.parent and x.part == "inner")
            lines.append(f"partition {r.parent} -> {r.name}, {inner}")
    flush()
    return lines


def format_cascade(c: Cascade) -> str:
    lines = [("# " + d).rstrip() for d in c.doc.splitlines()] if c.doc else []
    if lines:
        lines.append("")
    lines += format_ranks(c.ranks)
    lines.append("")
    lines += [format_decl(t) for t in c.tensors]
    lines.append("")
    lines += [format_einsum(e) for e in c.einsums]
    return "\n".join(lines) + "\n"
