"""Unrolling a small rank into separate tensors: a cascade -> cascade rewrite.

A design may stack branches on a component rank of small extent (C = 2 for
the two softmax maps of differential attention) and combine them by reading
an intermediate at constant indices (`SNV[b, h, 0, f, p]`, `SNV[b, h, 1, f, p]`).
A fused kernel owns one coordinate of every batch rank, so it cannot read
another coordinate's running statistics; unrolled, the components become
separate tensors (`SNV_C0`, `SNV_C1`) that one program computes side by side,
each Einsum over c becomes one Einsum per component, and a reduction over c
becomes an explicit sum (max, min) of its components.

Inputs keep the rank (they are read at constant indices, which any kernel
can load). The result means the same as the original, point for point; the
tests check it with the executor.
"""
from __future__ import annotations

import numpy as np

from .errors import EinError
from .ir import Access, Cascade, Einsum, Expr, Num, Op, Sym, TensorDecl, index_vars, substitute, walk
from .ops import RULES
from .validate import validate

MAX_UNROLL = 8        # components; a larger rank is a batch rank, not a set of branches
_IDENT = {"sum": 0.0, "max": float("-inf"), "min": float("inf")}
_COMBINE = {"sum": "add", "max": "max", "min": "min"}


class UnrollError(EinError):
    """The rank cannot be unrolled (too large, on an output, indexed by a variable elsewhere)."""


def constant_indexed_ranks(c: Cascade) -> list[str]:
    """Ranks at which some Einsum reads an intermediate at an index with no
    index variable (a constant): those a fused kernel must unroll."""
    inputs = {t.name for t in c.inputs}
    found: list[str] = []
    for e in c.einsums:
        for a in e.reads():
            if a.tensor in inputs:
                continue
            t = c.tensor(a.tensor)
            for r, i in zip(t.ranks, a.indices):
                if not index_vars(i) and r not in found and r not in t.iterative:   # not a last-iterate read
                    found.append(r)
    return found


def _const(i: Expr, env: dict, what: str, e: Einsum, c: Cascade) -> int:
    """Value of an index expression without index variables or tensor reads,
    with the executor's integer rules (any operator: max, abs, shifts, ...)."""
    v = _value(i, env)
    if v is None or not float(v).is_integer():
        raise UnrollError(f"{e.name}: {what} is indexed by {i}, which is not a constant whole number once the rank "
                          "is unrolled", getattr(i, "loc", None) or e.loc, c.source)
    return int(v)


def _value(i: Expr, env: dict):
    """A number, or None where the expression reads a coordinate or a tensor,
    or divides by zero."""
    if isinstance(i, Num):
        return i.value
    if isinstance(i, Sym):
        return env.get(i.name)
    if not isinstance(i, Op):
        return None
    args = [_value(a, env) for a in i.args]
    if any(a is None for a in args) or (i.name in ("div", "floordiv", "mod") and args[1] == 0):
        return None
    whole = [np.int64(a) if float(a).is_integer() else np.float64(a) for a in args]
    with np.errstate(all="ignore"):
        return float(RULES[i.name].numpy(*whole))


class _Unroller:
    def __init__(self, c: Cascade, rank: str, n: int, env: dict):
        self.c, self.rank, self.n, self.env = c, rank, n, env
        self.var = rank.lower()
        self.split = {t.name: t.ranks.index(rank) for t in c.tensors if t.role != "input" and rank in t.ranks}
        names = {t.name for t in c.tensors}
        for t, pos in self.split.items():
            decl = c.tensor(t)
            if decl.role == "output":
                raise UnrollError(f"cannot unroll {rank}: the output {t} carries it", decl.loc, c.source)
            for k in range(n):
                if self.part(t, k) in names:
                    raise UnrollError(f"cannot unroll {rank}: the name {self.part(t, k)} is taken", decl.loc, c.source)

    def part(self, tensor: str, k: int) -> str:
        return f"{tensor}_{self.rank}{k}"

    def rename(self, x: Expr, e: Einsum) -> Expr:
        """Accesses of split tensors -> their component tensors."""
        if isinstance(x, Access):
            idx = tuple(self.rename(i, e) for i in x.indices)
            if x.tensor not in self.split:
                return Access(x.tensor, idx, loc=x.loc)
            pos = self.split[x.tensor]
            k = _const(idx[pos], self.env, f"{x.tensor}'s rank {self.rank}", e, self.c)
            if not 0 <= k < self.n:
                raise UnrollError(f"{e.name}: {x} reads component {k} of {self.rank}, which has {self.n}",
                                  x.loc or e.loc, self.c.source)
            return Access(self.part(x.tensor, k), idx[:pos] + idx[pos + 1:], loc=x.loc)
        if isinstance(x, Op):
            return Op(x.name, tuple(self.rename(a, e) for a in x.args), loc=x.loc)
        return x

    def einsums(self, e: Einsum) -> list[Einsum]:
        if e.scan is not None and e.scan.var == self.var:
            raise UnrollError(f"{e.name} scans ({e.scan}) along {self.rank}, the rank read at constant indices; "
                              "its components cannot be unrolled apart", e.loc, self.c.source)
        if self.var not in e.iteration_vars:
            return [Einsum(self.rename(e.output, e), self.rename(e.expr, e), e.reduce, e.reduced,
                           None if e.predicate is None else self.rename(e.predicate, e), loc=e.loc, scan=e.scan)]
        comps = []
        for k in range(self.n):
            at = {self.var: Num(k)}
            pred = None if e.predicate is None else self.rename(substitute(e.predicate, at), e)
            comps.append((self.rename(substitute(e.output, at), e), self.rename(substitute(e.expr, at), e), pred))
        if self.var not in e.reduced:
            return [Einsum(o, x, e.reduce, e.reduced, p, loc=e.loc, scan=e.scan) for o, x, p in comps]
        return [self.folded(e, comps)]

    def folded(self, e: Einsum, comps) -> Einsum:
        """A reduction over the unrolled variable: one Einsum over the rest,
        its map the reduction of the components (each under its predicate)."""
        uses_var = e.predicate is not None and self.var in index_vars(e.predicate)
        terms = [x if not uses_var else Op("select", (p, x, Num(_IDENT[e.reduce]))) for _, x, p in comps]
        expr = terms[0]
        for t in terms[1:]:
            expr = Op(_COMBINE[e.reduce], (expr, t))
        pred = comps[0][2]
        if uses_var:
            for _, _, p in comps[1:]:
                pred = Op("or", (pred, p))
        rest = tuple(v for v in e.reduced if v != self.var)
        # with nothing left to reduce, `max[]`/`min[]` keep the identity of a removed point
        return Einsum(comps[0][0], expr, e.reduce, rest, pred, loc=e.loc, scan=e.scan)

    def run(self) -> Cascade:
        tensors = []
        for t in self.c.tensors:
            if t.name in self.split:
                ranks = tuple(r for r in t.ranks if r != self.rank)
                tensors += [TensorDecl(self.part(t.name, k), ranks, t.dtype, t.role, t.iterative, loc=t.loc,
                                       domain=t.domain)
                            for k in range(self.n)]
            else:
                tensors.append(t)
        einsums = [x for e in self.c.einsums for x in self.einsums(e)]
        return Cascade(self.c.ranks, tuple(tensors), tuple(einsums), name=self.c.name, doc=self.c.doc,
                       source=self.c.source, empty_rows=self.c.empty_rows)


def unroll(c: Cascade, rank: str, env: dict) -> Cascade:
    """`c` with rank `rank` (extent `env[rank]`) unrolled into components."""
    n = int(env[rank])
    if n > MAX_UNROLL:
        raise UnrollError(f"cannot unroll {rank}: extent {n} is over {MAX_UNROLL} components; read it at "
                          "index variables, not constants, so that it stays a batch rank")
    for e in c.einsums:
        if e.iterative_var or e.is_initial:
            raise UnrollError(f"cannot unroll {rank} in a cascade with recurrences ({e.name})", e.loc, c.source)
    out = _Unroller(c, rank, n, env).run()
    validate(out)
    return out


def _reads_tensor(i: Expr) -> bool:
    return any(isinstance(n, Access) for n in walk(i))


def check_constant_reads(c: Cascade, env: dict) -> None:
    """Every read at a constant index lies inside its tensor (a kernel loads it
    with no bounds mask)."""
    for e in c.einsums:
        for a in e.reads():
            t = c.tensor(a.tensor)
            for pos, (r, i) in enumerate(zip(t.ranks, a.indices)):
                if index_vars(i) or r in t.iterative or r not in env or _reads_tensor(i):
                    continue          # a gather's index is checked where it is read (bounds-checked gathers)
                k = _const(i, env, f"{a.tensor}'s rank {r}", e, c)
                if not 0 <= k < int(env[r]):
                    raise UnrollError(f"{e.name}: {a} reads index {k} of {a.tensor}'s rank {pos + 1} ({r}), "
                                      f"which has {int(env[r])} elements", a.loc or e.loc, c.source)


def unroll_constant_indices(c: Cascade, env: dict | None) -> Cascade:
    """`c` with every rank read at constant indices unrolled; `c` itself when
    there is none. Needs the ranks' extents."""
    if env is not None:
        check_constant_reads(c, env)
    for rank in constant_indexed_ranks(c):
        if env is None or rank not in env:
            raise UnrollError(f"{c.name} reads intermediates at constant indices of rank {rank}: give {rank}'s "
                              "extent so that its components can be unrolled", None, c.source)
        c = unroll(c, rank, env)
    return c


__all__ = ["MAX_UNROLL", "UnrollError", "check_constant_reads", "constant_indexed_ranks", "unroll",
           "unroll_constant_indices"]
