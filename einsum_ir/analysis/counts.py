"""Operation counts by kind, per Einsum and in total, as sympy expressions.

Counts follow what a compiler does with loop-invariant code: each operator
of the map expression is evaluated once per distinct value of the index
variables it depends on (through its sub-expressions, tensor accesses and
coordinates used as values) over the Einsum's existing points, i.e. once per
point of the projection of the kept iteration space onto those variables
(`points.projected_points`). `exp(-GM[b, h, p])` inside an Einsum over f is
counted B*H*P times, not B*H*P*F. An operator that depends on no variable is
a constant, evaluated once per Einsum.

The reduction's own operation (the add of a sum, the max of a max) happens
once per existing point. A product is regrouped before it is counted: its
factors (through `*`, not `/`) are multiplied smallest first, repeatedly
the two partial products whose union of variables has the fewest
variables (ties broken by the variables' names and the printed factor),
so `(A*V)*B` and `(A*B)*V` count the same, and a sub-product that is
invariant in a reduced variable is hoisted. The last multiply of a summed
product that depends on every variable is one MAC per point (the multiply
and the add of a multiply-accumulate). Coordinate arithmetic inside access
indices and the predicate is addressing, not counted; a computed index
(`TB[h, bucket(m - p)]`, `ANC[p, clip(m - PL, 0, P - 1)]`) is work, counted
as a map's operators: its whole-number operators as 'int', floor( ) and
ceil( ) and their real-valued argument by their own kinds.

Where a projection is not proved exact (a mask tensor over a projected
variable, a condition that is no interval in it), the operator is counted
once per point, an upper bound, and the Einsum's notes say so.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import sympy

from ..ir import ROUNDING, Access, Cascade, Einsum, Expr, Idx, Op, computed_index, index_vars
from ..ops import KIND_UNITS, REDUCE_RULES, RULES, op_kind
from .points import Kept, points, projected_points

KINDS = tuple(KIND_UNITS)    # every operation kind (ops.py's table: an operator's kind must be in it)
_MUL_PRECEDENCE = RULES["mul"].precedence


@dataclass
class Step:
    """One operation of an Einsum: its kind, the variables it depends on,
    its printed expression, the step it feeds (an index into the list, or
    None) and whether it runs once per existing point (a reduction, a MAC)."""
    kind: str
    vars: frozenset
    text: str
    parent: int | None = None
    per_point: bool = False
    scan: bool = False      # the step of a scan: once per output element (counted, never a hoisting note)


def steps(e: Einsum) -> list[Step]:
    """The operations of `e`, products regrouped (module docstring)."""
    out: list[Step] = []
    tops, _, _ = _walk(e.expr, out)
    all_vars = frozenset(e.iteration_vars)
    if e.reduced:
        root = out[tops[0]] if len(tops) == 1 and out[tops[0]].kind == "mul" else None
        if (e.reduce == "sum" and root is not None and isinstance(e.expr, Op) and e.expr.name == "mul"
                and root.vars == all_vars):
            root.kind, root.per_point = "mac", True
        else:
            out.append(Step(REDUCE_RULES[e.reduce].kind, all_vars, f"{e.reduce} over {', '.join(e.reduced)}",
                            per_point=True))
            for t in tops:
                out[t].parent = len(out) - 1
    if e.scan is not None:
        # one add (or multiply) per element of the output: the scan is O(n)
        # along its rank, not the O(n^2) of a predicated sum over an alias
        feeds = [i for i, s in enumerate(out) if s.parent is None]
        out.append(Step(e.scan.kind, frozenset(e.output_vars), f"{e.scan}", scan=True))
        for t in feeds:
            out[t].parent = len(out) - 1
    return out


def _walk(x: Expr, out: list[Step], integer: bool = False):
    """-> (indices of the outermost steps of x, its variables, its text).
    `integer`: x is the whole-number part of a computed access index, whose
    operators count as integer work ('int'; floor( ) and ceil( ) as
    themselves, their real-valued argument as a map's)."""
    if isinstance(x, Access):        # a computed index is work (a plain one is addressing)
        tops = [t for i in x.indices if computed_index(i) for t in _walk(i, out, True)[0]]
        return tops, frozenset(index_vars(x)), str(x)
    if isinstance(x, Idx):
        return [], frozenset([x.name]), str(x)
    if not isinstance(x, Op):
        return [], frozenset(), str(x)
    if x.name == "mul" and not integer:
        return _product(x, out)
    real = not integer or x.name in ROUNDING
    subs = [_walk(a, out, not real) for a in x.args]
    tops = [t for s in subs for t in s[0]]
    vs = frozenset().union(*[s[1] for s in subs])
    kind = op_kind(x) if real else "int" if op_kind(x) is not None else None
    if kind is None:        # free (negation): its operands' steps stay outermost
        return tops, vs, str(x)
    out.append(Step(kind, vs, str(x)))
    for t in tops:
        out[t].parent = len(out) - 1
    return [len(out) - 1], vs, str(x)


def _factors(x: Expr) -> list[Expr]:
    if isinstance(x, Op) and x.name == "mul":
        return _factors(x.args[0]) + _factors(x.args[1])
    return [x]


def _product(x: Op, out: list[Step]):
    """Multiply the factors of x pairwise, the smallest union of variables first."""
    items = []
    for f in _factors(x):
        tops, vs, text = _walk(f, out)
        if isinstance(f, Op) and RULES[f.name].infix and RULES[f.name].precedence < _MUL_PRECEDENCE:
            text = f"({text})"
        items.append((tops, vs, text))
    key = lambda it: (len(it[1]), sorted(it[1]), it[2])  # noqa: E731
    while len(items) > 1:
        items.sort(key=key)
        i, j = min(((i, j) for i in range(len(items)) for j in range(i + 1, len(items))),
                   key=lambda ij: (len(items[ij[0]][1] | items[ij[1]][1]), ij))
        a, b = items[i], items[j]
        out.append(Step("mul", a[1] | b[1], f"{a[2]} * {b[2]}"))
        for t in a[0] + b[0]:
            out[t].parent = len(out) - 1
        items = [it for k, it in enumerate(items) if k not in (i, j)] + [([len(out) - 1], a[1] | b[1],
                                                                         f"{a[2]} * {b[2]}")]
    return items[0]


@dataclass(frozen=True)
class EinsumCount:
    """The operations of one Einsum by kind, and notes saying which
    operations were hoisted out of which variables, or why not."""
    ops: dict[str, sympy.Expr]
    notes: tuple[str, ...] = field(default=())


def count_einsum(c: Cascade, e: Einsum, n: sympy.Expr | None = None) -> EinsumCount:
    """Operations of `e` by kind; `n` is its point count when already known."""
    n = points(c, e) if n is None else n
    all_vars = frozenset(e.iteration_vars)
    found = steps(e)
    counts: dict[frozenset, tuple[sympy.Expr, str | None]] = {}
    ops: dict[str, sympy.Expr] = {}
    for s in found:
        if s.per_point or s.vars == all_vars:
            count = n
        else:
            if s.vars not in counts:
                counts[s.vars] = projected_points(c, e, s.vars)
            count = counts[s.vars][0]
        ops[s.kind] = ops.get(s.kind, 0) + count
    ops = {k: ops[k] for k in KINDS if k in ops}
    return EinsumCount(ops, tuple(_notes(e, found, counts, n)))


def _notes(e: Einsum, found: list[Step], counts: dict, n: sympy.Expr) -> list[str]:
    """One line per set of variables a group of operations does not depend on."""
    lines = []
    for vs, (count, why) in counts.items():
        group = [i for i, s in enumerate(found) if s.vars == vs and not s.per_point and not s.scan]
        if not group:
            continue
        outer = [found[i].text for i in group if found[i].parent not in group]
        missing = ", ".join(v for v in e.iteration_vars if v not in vs)
        what = "; ".join(outer) + (f" ({len(group)} operations)" if len(group) > len(outer) else "")
        if why is None:
            lines.append(f"{what} hoisted out of {missing}: counted {readable(count)}, not {readable(n)}")
        else:
            lines.append(f"not hoisted: {what} (invariant in {missing}) counted once per point, "
                         f"{readable(n)}: {why}")
    return lines


def einsum_ops(c: Cascade, e: Einsum, n: sympy.Expr | None = None) -> dict[str, sympy.Expr]:
    """Operations of `e` by kind; `n` is its point count when already known."""
    return count_einsum(c, e, n).ops


def einsum_key(e: Einsum) -> str:
    """The name `analyze` files an Einsum's figures under (`RM[0]` for an initial value)."""
    return f"{e.name}[0]" if e.is_initial else e.name


def hoisted(c: Cascade) -> dict[str, tuple[str, ...]]:
    """The hoisting notes of every Einsum that has some, by `einsum_key`."""
    out = {}
    for e in c.einsums:
        notes = count_einsum(c, e).notes
        if notes:
            out[einsum_key(e)] = notes
    return out


def ops_per_point(e: Einsum) -> Counter:
    """Operations one existing point of `e` performs when nothing is hoisted
    (every operator once per point): the per-point cost a point-by-point
    model (the simulators' compute time per point) charges."""
    per = Counter()
    _map_ops(e.expr, per)
    if e.reduced:
        if e.reduce == "sum" and isinstance(e.expr, Op) and e.expr.name == "mul":
            per["mul"] -= 1
            per["mac"] += 1
        else:
            per[REDUCE_RULES[e.reduce].kind] += 1
    if e.scan is not None:   # once per output element; per point is an upper bound when e also reduces
        per[e.scan.kind] += 1
    return Counter({k: v for k, v in per.items() if v})


def _map_ops(e: Expr, counter: Counter, integer: bool = False):
    if isinstance(e, Op):
        real = not integer or e.name in ROUNDING
        kind = op_kind(e) if real else "int" if op_kind(e) is not None else None
        if kind is not None:
            counter[kind] += 1
        for a in e.args:
            _map_ops(a, counter, not real)
    if isinstance(e, Access):      # a computed index is integer work (as `_walk`); plain indices are addressing
        for i in e.indices:
            if computed_index(i):
                _map_ops(i, counter, True)
    # numbers, symbols, coordinates: free


def readable(expr: sympy.Expr) -> sympy.Expr:
    """sympy.factor with each Kept(...) held as one opaque symbol: factoring
    through a window predicate's min/max terms costs seconds and shows nothing."""
    kepts = {k: sympy.Dummy(f"kept{i}") for i, k in enumerate(sympy.sympify(expr).atoms(Kept))}
    return sympy.factor(sympy.sympify(expr).xreplace(kepts)).xreplace({d: k for k, d in kepts.items()})


def total_ops(per_einsum) -> dict[str, sympy.Expr]:
    """Sum of per-Einsum op dicts, by kind (kinds with none are absent)."""
    total: dict[str, sympy.Expr] = {}
    for ops in per_einsum:
        for k, v in ops.items():
            total[k] = total.get(k, 0) + v
    return {k: readable(total[k]) for k in KINDS if k in total}


def flops_of(ops: dict[str, sympy.Expr]) -> sympy.Expr:
    """Arithmetic operations with a MAC counted as two."""
    return readable(sum((2 * v if k == "mac" else v) for k, v in ops.items()))


def op_counts(c: Cascade) -> dict[str, sympy.Expr]:
    """Total operations of the cascade by kind (kinds with none are absent)."""
    return total_ops(einsum_ops(c, e) for e in c.einsums)


def macs(c: Cascade) -> sympy.Expr:
    return op_counts(c).get("mac", sympy.Integer(0))


def flops(c: Cascade) -> sympy.Expr:
    """Arithmetic operations with a MAC counted as two."""
    return flops_of(op_counts(c))
