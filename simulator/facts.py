"""What the spatial passes ask of a cascade again and again (each Einsum's
reads, the tensors it touches, its point and operation counts), computed
once per cascade. Counts that are polynomials in the shapes (the usual case)
are compiled to Python functions, exact on integers; any other count (a
predicate's projection, a `Kept` term) is evaluated by einsum_ir's own
`evaluate`. A cache of what einsum_ir gives, under the array's one rule of
its own (`fold`): a subexpression of shapes and numbers alone (`sqrt(E)`,
`KW // 2`) is a compile-time constant, computed once outside the array, and
the operations that vary with only some of an Einsum's variables (a slope
per head, an index expression of the query alone) are `Group`s counted once
per distinct value of those variables."""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

import sympy

from einsum_ir import Cascade
from einsum_ir.analysis import evaluate, points
from einsum_ir.analysis.counts import ops_per_point as _ops_per_point
from einsum_ir.analysis.counts import steps
from einsum_ir.analysis.points import Kept, projected_points
from einsum_ir.ir import Access, Einsum, Idx, Op, Sym, accesses, index_vars, walk
from einsum_ir.ops import RULES, op_kind


class Count:
    """A count expression, evaluated fast where that is exact."""

    def __init__(self, expr):
        self.expr = sympy.sympify(expr)
        syms = sorted(self.expr.free_symbols, key=lambda s: s.name)
        self.names = [s.name for s in syms]
        self.terms = None            # [(integer coefficient, exponents)] of an integer polynomial
        if not self.expr.atoms(Kept) and all(s.name.isupper() for s in syms) and self.expr.is_polynomial(*syms):
            poly = sympy.Poly(self.expr, *syms) if syms else None
            if poly is None and self.expr.is_Integer:
                self.terms = [(int(self.expr), ())]
            elif poly is not None and all(c.is_Integer for c in poly.coeffs()):
                self.terms = [(int(c), k) for k, c in poly.terms()]

    def __call__(self, env: dict):
        if self.terms is None or any(n not in env for n in self.names):
            return evaluate(self.expr, env)
        values = [int(env[n]) for n in self.names]
        total = 0
        for coeff, powers in self.terms:
            for v, k in zip(values, powers):
                coeff *= v ** k
            total += coeff
        return total


def _constant(x) -> bool:
    """No tensor element and no coordinate: a value of the shapes alone."""
    return not any(isinstance(n, (Access, Idx)) for n in walk(x))


def _fold(x, found: list):
    """x with its constant subexpressions folded into symbols; the result is
    only counted (never reported), so it keeps no source locations."""
    if not isinstance(x, Op):
        return x
    if _constant(x):
        if any(isinstance(n, Op) and op_kind(n) for n in walk(x)):
            found.append(str(x))
            return Sym(f"({x})")
        return x
    if x.name in ("mul", "div"):
        return _fold_product(x, found)
    return Op(x.name, tuple(_fold(a, found) for a in x.args))


def _factors(x, out: list, consts: list) -> None:
    """The factors of a product through `*` and a division by a constant
    (a multiply by its reciprocal); the constant ones apart, as
    (expression, whether it divides)."""
    if isinstance(x, Op) and x.name == "mul":
        for a in x.args:
            _factors(a, out, consts)
    elif isinstance(x, Op) and x.name == "div" and _constant(x.args[1]):
        _factors(x.args[0], out, consts)
        consts.append((x.args[1], True))
    elif _constant(x):
        consts.append((x, False))
    else:
        out.append(x)


def _constant_text(consts) -> str:
    """`8 / H`, `0.5 / sqrt(E)`, `1 / (E * H)`: the folded product as written."""
    show = [f"({k})" if isinstance(k, Op) and RULES[k.name].infix else str(k) for k, _ in consts]
    num = " * ".join(t for t, (_, d) in zip(show, consts) if not d) or "1"
    den = [t for t, (_, d) in zip(show, consts) if d]
    return num if not den else f"{num} / {den[0]}" if len(den) == 1 else f"{num} / ({' * '.join(den)})"


def _fold_product(x, found: list):
    """A product with its constant factors multiplied into one, at compile
    time (a division by a constant included); nothing to fold: as it is."""
    varying, consts = [], []
    _factors(x, varying, consts)
    work = len(consts) > 1 or any(d or any(isinstance(n, Op) and op_kind(n) for n in walk(k)) for k, d in consts)
    if not work:
        return Op(x.name, tuple(_fold(a, found) for a in x.args))
    text = _constant_text(consts)
    found.append(text)
    out = Sym(f"({text})")
    for f in reversed(varying):
        out = Op("mul", (_fold(f, found), out))
    return out


def fold(e: Einsum) -> tuple[Einsum, tuple[str, ...]]:
    """(`e` with its compile-time constants folded, the folded subexpressions
    as written). A real compiler computes `sqrt(E)` once, on the host, and a
    division by it becomes a multiply: the array is charged, and a unit must
    perform, only what varies with the index variables."""
    found: list[str] = []
    expr = _fold(e.expr, found)
    if not found:
        return e, ()
    return dataclasses.replace(e, expr=expr), tuple(dict.fromkeys(found))


def ops_per_point(e: Einsum) -> Counter:
    """The operations one point of `e` performs on the array when nothing
    varying is hoisted: einsum_ir's `ops_per_point` of the folded Einsum."""
    return _ops_per_point(fold(e)[0])


@dataclass(frozen=True)
class Group:
    """Operations that depend on the variables `vars` only, performed once per
    distinct value of them (`count`: a Count); the Einsum's per-point
    operations are the group of all its variables."""
    vars: frozenset
    ops: Counter
    count: object


def groups(c: Cascade, e: Einsum) -> tuple[Group, ...]:
    """The operations of `e` on the array by the variables they depend on, the
    per-point group first (einsum_ir.analysis.counts: `steps`, `projected_points`)."""
    every = frozenset(e.iteration_vars)
    by: dict[frozenset, Counter] = {every: Counter()}
    for st in steps(fold(e)[0]):
        vs = every if st.per_point else st.vars
        by.setdefault(vs, Counter())[st.kind] += 1
    return tuple(Group(vs, ops, Count(points(c, e) if vs == every else projected_points(c, e, vs)[0]))
                 for vs, ops in by.items())


@dataclass(frozen=True)
class Facts:
    reads: dict = field(hash=False)        # Einsum -> its read accesses
    touches: dict = field(hash=False)      # Einsum name -> tensors it writes or reads (views' inputs included)
    points: dict = field(hash=False)       # Einsum -> Count of its points
    ops: dict = field(hash=False)          # Einsum -> kind -> Count of its operations on the array (`groups`)
    groups: dict = field(hash=False)       # Einsum -> its `Group`s, the per-point one first
    folded: dict = field(hash=False)       # Einsum -> the compile-time constants `fold` took out of it
    operands: dict = field(hash=False)     # Einsum -> register reads per point (operands, a reduction's accumulator)
    its: dict = field(hash=False)          # Einsum -> upper-case names of its iteration variables
    moves: dict = field(hash=False)        # id(access) -> per index, whether it names an index variable


_CACHE: dict[int, tuple[Cascade, Facts]] = {}


def facts(c: Cascade) -> Facts:
    hit = _CACHE.get(id(c))
    if hit is not None and hit[0] is c:
        return hit[1]
    einsums = [e for e in c.einsums if not e.is_initial]
    views = {e.name: e.expr.tensor for e in einsums
             if hasattr(e.expr, "tensor") and not e.reduced and e.scan is None}   # a scan is work, not a view
    reads = {e.name: tuple(e.reads()) for e in einsums}
    touches = {}
    for e in c.einsums:
        names = {a.tensor for w in c.writers(e.name) for a in [w.output] + list(w.reads())}
        touches[e.name] = frozenset(names | {views.get(n, n) for n in names})
    moves = {id(a): tuple(bool(index_vars(i)) for i in a.indices)
             for e in einsums for a in list(reads[e.name]) + [e.output]}
    grouped = {e.name: groups(c, e) for e in einsums}
    f = Facts(reads, touches, {e.name: Count(points(c, e)) for e in einsums},
              {n: _total(gs) for n, gs in grouped.items()}, grouped, {e.name: fold(e)[1] for e in einsums},
              {e.name: len(accesses(e.expr)) + (1 if e.reduced else 0) for e in einsums},
              {e.name: frozenset(v.upper() for v in e.iteration_vars) for e in einsums}, moves)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[id(c)] = (c, f)
    return f


def _total(gs) -> dict:
    """Kind -> Count of the operations of all the groups."""
    total: dict = {}
    for g in gs:
        for k, n in g.ops.items():
            total[k] = total.get(k, 0) + n * g.count.expr
    return {k: Count(v) for k, v in total.items() if v != 0}
