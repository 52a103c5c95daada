"""What the spatial passes ask of a cascade again and again (each Einsum's
reads, the tensors it touches, its point and operation counts), computed
once per cascade. Counts that are polynomials in the shapes (the usual case)
are compiled to Python functions, exact on integers; any other count (a
predicate's projection, a `Kept` term) is evaluated by einsum_ir's own
`evaluate`. Only a cache: every value is what einsum_ir gives."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from einsum_ir import Cascade
from einsum_ir.analysis import einsum_ops, evaluate, points
from einsum_ir.analysis.points import Kept
from einsum_ir.ir import accesses, index_vars


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


@dataclass(frozen=True)
class Facts:
    reads: dict = field(hash=False)        # Einsum -> its read accesses
    touches: dict = field(hash=False)      # Einsum name -> tensors it writes or reads (views' inputs included)
    points: dict = field(hash=False)       # Einsum -> Count of its points
    ops: dict = field(hash=False)          # Einsum -> kind -> Count of its operations
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
    f = Facts(reads, touches, {e.name: Count(points(c, e)) for e in einsums},
              {e.name: {k: Count(v) for k, v in einsum_ops(c, e).items()} for e in einsums},
              {e.name: len(accesses(e.expr)) + (1 if e.reduced else 0) for e in einsums},
              {e.name: frozenset(v.upper() for v in e.iteration_vars) for e in einsums}, moves)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[id(c)] = (c, f)
    return f
