"""The Python builder API: the same IR as the `.ein` text, from Python.

    cb = CascadeBuilder("attention-3pass")
    B, H, M, P, E, F = cb.ranks("B H M P E F")
    b, h, m, p, e, f = indices("b h m p e f")
    Q, K, V = cb.input("Q", "B H E P"), cb.input("K", "B H E M"), cb.input("V", "B H F M")
    QK, GM = cb.tensors("QK GM")
    cb.einsum(QK[b, h, m, p], Q[b, h, e, p] * K[b, h, e, m])
    cb.einsum(GM[b, h, p], QK[b, h, m, p], reduce="max")
    ...
    cascade = cb.build()          # validated; equal to the parsed text

Both paths end in `assemble`, so whatever the text can say, the builder says
with the same meaning and the same errors.
"""
from __future__ import annotations

import math

from .assemble import assemble
from .ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, Rank, Scan, Sym, TensorDecl, as_expr
from .ops import DEFAULT_DTYPE, RULES
from .parser import EMPTY_ROWS, EmptyRowsStmt, PartitionStmt, RankStmt

inf = Num(math.inf)


def indices(names: str) -> tuple[Idx, ...]:
    """Index variables: indices("b h m p")."""
    return tuple(Idx(n) for n in names.split())


def _apply(name: str, *args) -> Op:
    """Operator `name` on built expressions, its arity checked here, where a
    Python caller gets a TypeError, not a validation error later."""
    if len(args) != RULES[name].arity:
        raise TypeError(f"{name} takes {RULES[name].arity} arguments, got {len(args)}")
    return Op(name, tuple(as_expr(a) for a in args))


def _call(name):
    """The builder function for an operator (its work in `_apply`, a
    module function, so a mutation test sees which tests call it)."""
    def f(*args):
        return _apply(name, *args)
    f.__name__ = name
    return f


exp, exp2, log, sqrt = _call("exp"), _call("exp2"), _call("log"), _call("sqrt")
sigmoid, tanh, clip, select = _call("sigmoid"), _call("tanh"), _call("clip"), _call("select")
abs_, maximum, minimum = _call("abs"), _call("max"), _call("min")
sin, cos, tan, erf = _call("sin"), _call("cos"), _call("tan"), _call("erf")
softplus, logsigmoid, log1p, expm1 = _call("softplus"), _call("logsigmoid"), _call("log1p"), _call("expm1")
floor, ceil = _call("floor"), _call("ceil")      # in an index: a real number made whole (docs/notation.md)
# bitwise: `a << s`, `a >> s` and `x ** y` (the text's `^`) are operators; `&` and `|` on expressions stay
# the logic `and` / `or`, so the text's `&`, `|` are these functions
bitand, bitor, xor = _call("band"), _call("bor"), _call("xor")


def eq(a, b) -> Op:
    return Op("eq", (as_expr(a), as_expr(b)))


def ne(a, b) -> Op:
    return Op("ne", (as_expr(a), as_expr(b)))


class TensorRef:
    """A tensor by name; indexing it gives an access expression."""

    def __init__(self, name: str):
        self.name = name

    def __getitem__(self, idx) -> Access:
        if not isinstance(idx, tuple):
            idx = (idx,)
        return Access(self.name, tuple(as_expr(i) for i in idx))

    def __repr__(self):
        return f"TensorRef({self.name})"


def _dims(spec: str) -> tuple[tuple[str, ...], frozenset[str]]:
    ranks, iterative = [], set()
    for d in spec.replace(",", " ").split():
        if d.endswith("+1"):
            d = d[:-2]
            iterative.add(d)
        ranks.append(d)
    return tuple(ranks), frozenset(iterative)


class CascadeBuilder:
    def __init__(self, name: str = "cascade", doc: str = ""):
        self.name, self.doc = name, doc
        self.statements: list = []

    # ranks ---------------------------------------------------------------
    def ranks(self, names: str) -> tuple[Sym, ...]:
        """Free ranks; returns their extent symbols."""
        out = []
        for n in names.replace(",", " ").split():
            self.statements.append(RankStmt(Rank(n)))
            out.append(Sym(n))
        return tuple(out)

    def rank(self, name: str, definition) -> Sym:
        """A derived rank, e.g. rank("KH", H / G)."""
        self.statements.append(RankStmt(Rank(name, as_expr(definition))))
        return Sym(name)

    def partition(self, parent: str, outer: str, inner: str) -> tuple[Sym, Sym]:
        self.statements.append(PartitionStmt(parent, outer, inner, None))
        return Sym(outer), Sym(inner)

    # tensors ---------------------------------------------------------------
    def _decl(self, role, name, dims, dtype, domain=None):
        ranks, iterative = _dims(dims)
        self.statements.append(TensorDecl(name, ranks, dtype, role, iterative, domain=domain))
        return TensorRef(name)

    def input(self, name: str, dims: str, dtype: str = DEFAULT_DTYPE, domain=None) -> TensorRef:
        """`dims` as in the text ("B H H" repeats H, "NI 2" is a literal
        extent); `domain` an `ir.Domain` (`Domain(0, 1)`: in (0, 1))."""
        return self._decl("input", name, dims, dtype, domain)

    def mask(self, name: str, condition) -> Expr:
        """`mask name = condition`; returns the condition, to use in `where=`
        (the printer writes it back by name)."""
        from .ir import Mask
        cond = as_expr(condition)
        self.statements.append(Mask(name, cond))
        return cond

    def output(self, name: str, dims: str, dtype: str = DEFAULT_DTYPE) -> TensorRef:
        return self._decl("output", name, dims, dtype)

    def tensor(self, name: str, dims: str, dtype: str = DEFAULT_DTYPE) -> TensorRef:
        """Declare an intermediate explicitly (usually inferred from its Einsum)."""
        return self._decl("tensor", name, dims, dtype)

    def tensors(self, names: str) -> tuple[TensorRef, ...]:
        """Handles for tensors whose declarations are inferred from their Einsums."""
        return tuple(TensorRef(n) for n in names.replace(",", " ").split())

    # einsums ---------------------------------------------------------------
    def einsum(self, output: Access, expr, reduce: str = "sum", over=None, where: Expr | None = None,
               scan: Scan | None = None):
        """output = reduce[over] expr where predicate. `over` lists the reduced
        index variables (checked); None infers them. `scan=Scan("cumsum", "p",
        reverse=True)` is `cumsum[p, reverse]` (docs/notation.md, Scans)."""
        reduced = None if over is None else tuple(v.name if isinstance(v, Idx) else v for v in over)
        self.statements.append(Einsum(output, as_expr(expr), reduce, reduced, where, scan=scan))

    def empty_rows(self, value: str):
        """`empty rows = 0 | nan` (docs/notation.md, Empty rows)."""
        if str(value) not in EMPTY_ROWS:
            from .errors import ValidationError
            raise ValidationError(f"empty rows takes 0 or nan, not {value!r}")
        self.statements.append(EmptyRowsStmt(str(value), None))

    def build(self) -> Cascade:
        return assemble(self.statements, name=self.name, doc=self.doc)
