"""The verifier of the cascade IR. Every Cascade passes through it when built;
tests run it again after every transformation. Errors name the construct and
where it is."""
from __future__ import annotations

import difflib
import math

from .errors import ValidationError
from .ir import (ADDRESSING, ROUNDING, SCAN_FLAGS, SCAN_OPS, Access, Cascade, Einsum, Expr, Idx, Num, Op, Sym,
                 integer_nodes, offset_of, rank_of, walk)
from .parser import MAX_INDEX_LITERAL
from .ops import BITWISE_OPS, BOOLEAN_OPS, DTYPE_BYTES, INTEGER_DTYPES, REDUCE_RULES, RULES

_INDEX_OPS = ADDRESSING | BOOLEAN_OPS | {"select", "min", "max", "clip", "abs", "pow"} | set(ROUNDING)
_UPPER_RANK = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
# Ranks whose index variable would be a keyword of the notation: the printed
# cascade would not parse back (`Y[inf]` even parses, as the constant inf).
_KEYWORD_RANKS = {"SUM", "MAX", "MIN", "NOT", "INF"}


MAX_RANKS = 64
"""Most ranks a cascade declares (library designs use under 20): every
analysis runs once per root rank."""
MAX_VARS = 24
"""Most index variables in one Einsum or ranks of one tensor: the executor
gives each its own array axis (numpy allows 32 to 64, and np.einsum one
letter each)."""
MAX_EINSUMS = 256
"""Most Einsums in a cascade (library designs have under 40)."""


def _reads_tensor(e: Expr) -> bool:
    return any(isinstance(n, Access) for n in walk(e))


def _natural(e: Expr) -> bool:
    """Whole and >= 0 by its form (an exponent that keeps `x ^ n` an integer):
    numbers >= 0, coordinates, shape symbols, and + * ^ & | xor << >> of them."""
    if isinstance(e, Num):
        return float(e.value).is_integer() and e.value >= 0
    if isinstance(e, (Idx, Sym)):
        return True
    return isinstance(e, Op) and e.name in ("add", "mul", "pow", "band", "bor", "xor", "shl", "shr") and all(
        _natural(a) for a in e.args)


def alias_root(ranks: dict, name: str) -> str:
    """The rank (or shape symbol) that `name` is an alias of, following
    `rank J = X` definitions (a bare name) to the end: two ranks with the
    same root have the same extent by definition."""
    seen = {name}
    while name in ranks and isinstance(ranks[name].definition, Sym) and ranks[name].definition.name not in seen:
        name = ranks[name].definition.name
        seen.add(name)
    return name


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


class _Checker:
    def __init__(self, c: Cascade):
        self.c = c
        self.ranks = {r.name: r for r in c.ranks}
        self.tensors = {t.name: t for t in c.tensors}


    def same_extent(self, a: str, b: str) -> bool:
        """A bare index variable of rank a may index rank b when both are
        aliases of one rank (`rank J = M0`; the repeated P2 of `DIST[B, P, P]`
        and `rank M = P`): the same range by definition, so aliases are
        transitive. Ranks that merely happen to be equal in extent are not."""
        return alias_root(self.ranks, a) == alias_root(self.ranks, b)

    def fail(self, msg: str, node=None, einsum: Einsum | None = None):
        loc = getattr(node, "loc", None) or (einsum.loc if einsum is not None else None)
        if loc is None and einsum is not None:
            msg += f"\n  in: {einsum}"
        raise ValidationError(msg, loc, self.c.source)

    # ranks and declarations ---------------------------------------------------
    def sizes_ok(self):
        """Bounds on the size of the cascade, so that no stage runs for long on
        a design that is merely large (each limit is far above real designs)."""
        c = self.c
        if len(c.ranks) > MAX_RANKS:
            self.fail(f"the cascade declares {len(c.ranks)} ranks; at most {MAX_RANKS} are allowed", c.ranks[MAX_RANKS])
        if len(c.einsums) > MAX_EINSUMS:
            self.fail(f"the cascade has {len(c.einsums)} Einsums; at most {MAX_EINSUMS} are allowed",
                      c.einsums[MAX_EINSUMS], c.einsums[MAX_EINSUMS])
        for t in c.tensors:
            if len(t.ranks) > MAX_VARS:
                self.fail(f"tensor {t.name} has {len(t.ranks)} ranks; at most {MAX_VARS} are allowed", t)
        for e in c.einsums:
            if len(e.iteration_vars) > MAX_VARS:
                self.fail(f"{e.name} iterates over {len(e.iteration_vars)} index variables; at most {MAX_VARS} "
                          "are allowed (the executor gives each an array axis)", e.output, e)

    def ranks_ok(self):
        for r in self.c.ranks:
            if any(ch not in _UPPER_RANK for ch in r.name):
                self.fail(f"rank name {r.name} must be upper case (its index variable is {r.name.lower()})", r)
            if r.name in _KEYWORD_RANKS:
                self.fail(f"rank name {r.name} is not allowed: its index variable {r.name.lower()} "
                          "is a keyword of the notation", r)
            if r.name in self.tensors:
                self.fail(f"{r.name} names both a rank and a tensor", self.tensors[r.name])
            if r.definition is not None:
                for n in walk(r.definition):
                    if isinstance(n, (Idx, Access)):
                        self.fail(f"the extent of rank {r.name} may use only shape symbols and numbers", n)
                    if isinstance(n, Op) and n.name not in ("add", "sub", "mul", "div", "floordiv", "mod", "neg"):
                        self.fail(f"the extent of rank {r.name} uses {n.name}; an extent is an integer "
                                  "expression of shape symbols and numbers (+ - * / %)", n)
                    if isinstance(n, Op):
                        self.no_zero_divisor(n, None)
                    if isinstance(n, Num) and (abs(n.value) > MAX_INDEX_LITERAL or not float(n.value).is_integer()):
                        self.fail(f"the extent of rank {r.name} uses {n.value}: extents use integers up to 2**53",
                                  n)
                    if isinstance(n, Sym) and n.name in self.tensors:
                        self.fail(f"the extent of rank {r.name} names tensor {n.name}; "
                                  "it may use only shape symbols and numbers", n)
                if r.name in {n.name for n in walk(r.definition) if isinstance(n, Sym)}:
                    self.fail(f"the extent of rank {r.name} is defined in terms of itself", r)
            if r.parent == r.name:
                self.fail(f"rank {r.name} cannot be partitioned into itself", r)
            if r.parent is not None and r.parent not in self.ranks:
                self.fail(f"rank {r.name} is a part of {r.parent}, which is not declared", r)
            if r.parent is not None and r.part not in ("outer", "inner"):
                self.fail(f"rank {r.name} is part {r.part!r} of {r.parent}; a partition has an outer and an "
                          "inner part", r)
        self.no_rank_cycle()
        for t in self.c.tensors:
            if t.dtype not in DTYPE_BYTES:
                self.fail(f"unknown element type {t.dtype!r} of {t.name}; known: {', '.join(DTYPE_BYTES)}", t)
            if t.role not in ("input", "output", "tensor"):
                self.fail(f"unknown role {t.role!r} of {t.name}", t)
            if len(set(t.ranks)) != len(t.ranks):
                self.fail(f"tensor {t.name} lists a rank twice: {', '.join(t.ranks)}", t)
            for r in t.ranks:
                if r not in self.ranks:
                    self.fail(f"tensor {t.name} uses undeclared rank {r}", t)
            for r in t.iterative:
                if r not in t.ranks:
                    self.fail(f"tensor {t.name}: iterative rank {r} is not one of its ranks", t)
            if t.domain is not None:
                self.domain_ok(t)

    def domain_ok(self, t):
        """A domain is declared on an input of numbers and is a non-empty
        interval whose closed ends are finite (the parser checks the same at
        its place; this covers the builder)."""
        d = t.domain
        if t.role != "input":
            self.fail(f"{t.name} is not an input: a domain ({d}) is declared on inputs only", t)
        if t.dtype == "bool":
            self.fail(f"input {t.name} is bool: a domain ({d}) is for numbers", t)
        if (d.lo_closed and math.isinf(d.lo)) or (d.hi_closed and math.isinf(d.hi)) or d.lo != d.lo or d.hi != d.hi:
            self.fail(f"the domain of {t.name} has a closed infinite or NaN end: {d}", t)
        if not (d.lo < d.hi or (d.lo == d.hi and d.lo_closed and d.hi_closed)):
            self.fail(f"the domain of {t.name} is empty: {d}", t)
        if t.dtype in INTEGER_DTYPES and math.isfinite(d.lo) and math.isfinite(d.hi):
            lo, hi = d.integer_ends()
            if lo > hi:
                self.fail(f"the domain {d} of {t.name} holds no {t.dtype} value (no integer lies in it)", t)

    def masks_ok(self):
        """Each named mask is a condition and does not take the name
        of an index variable (a use of it would read as the mask)."""
        variables = {r.name.lower(): r.name for r in self.c.ranks}
        for m in self.c.masks:
            if m.name in variables:
                self.fail(f"mask '{m.name}' has the name of the index variable of rank {variables[m.name]}; "
                          "choose another name", m)
            if self.kind(m.condition, None) != "bool":
                self.fail(f"mask '{m.name}' must be a condition (a comparison, and/or/not, or a bool tensor), "
                          f"got {m.condition}", m.condition)

    def masks_used(self):
        """Each named mask is used (checked after the Einsums, so that a
        misspelt use is reported at its place, not as an unused mask)."""
        conditions = [x for e in self.c.einsums for p in (e.expr, e.predicate) if p is not None for x in walk(p)]
        for m in self.c.masks:
            if not any(x is m.condition or x == m.condition for x in conditions):
                self.fail(f"mask '{m.name}' is never used (write `where {m.name}` on the Einsums it restricts, "
                          "or remove it)", m)

    def unknown_variable(self, e: Idx, einsum: Einsum):
        """An index variable with no rank: a misspelt mask (`where causl`), a
        mask used above its definition, or a misspelt index variable."""
        masks = {m.name: m for m in self.c.masks}
        if e.name in masks:
            self.fail(f"mask '{e.name}' is used before its definition (at {masks[e.name].loc}); define a mask "
                      "above the Einsums that use it", e, einsum)
        close = difflib.get_close_matches(e.name, sorted(masks), n=1)
        if close:
            self.fail(f"unknown name '{e.name}': neither a mask nor the index variable of a rank "
                      f"(did you mean '{close[0]}'? the mask defined at {masks[close[0]].loc})", e, einsum)
        self.fail(f"index variable {e.name} has no rank {rank_of(e.name)}" + _suggest(rank_of(e.name), self.ranks),
                  e, einsum)

    def no_rank_cycle(self):
        """Derived extents that depend on each other (`rank A = B * 2, B = A + 1`)
        have no value; say so here rather than as missing shapes later."""
        uses = {r.name: [n.name for n in walk(r.definition) if isinstance(n, Sym) and n.name in self.ranks]
                for r in self.c.ranks if r.definition is not None}
        done: set[str] = set()
        for start, first in uses.items():
            path, stack = [start], [iter(first)]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    done.add(path.pop())
                    stack.pop()
                elif nxt in path:
                    cycle = path[path.index(nxt):] + [nxt]
                    self.fail(f"the extents of ranks {', '.join(sorted(set(cycle)))} are defined in terms of "
                              f"each other: {' -> '.join(cycle)}", self.ranks[cycle[0]])
                elif nxt in uses and nxt not in done:
                    path.append(nxt)
                    stack.append(iter(uses[nxt]))

    # expressions --------------------------------------------------------------
    def kind(self, e: Expr, einsum: Einsum) -> str:
        """'num' or 'bool'; checks every node below on the way."""
        if isinstance(e, Num):
            return "num"
        if isinstance(e, Idx):
            if rank_of(e.name) not in self.ranks:
                self.unknown_variable(e, einsum)
            return "num"
        if isinstance(e, Sym):
            if e.name in self.tensors:
                self.fail(f"{e.name} is a tensor: index it, e.g. {e.name}[...]", e, einsum)
            return "num"
        if isinstance(e, Access):
            self.access(e, einsum)
            return "bool" if self.tensors[e.tensor].dtype == "bool" else "num"
        if isinstance(e, Op):
            rule = RULES.get(e.name)
            if rule is None:
                self.fail(f"unknown operator {e.name}", e, einsum)
            if len(e.args) != rule.arity:
                self.fail(f"{e.name} takes {rule.arity} arguments, got {len(e.args)}", e, einsum)
            kinds = [self.kind(a, einsum) for a in e.args]
            self.no_zero_divisor(e, einsum)
            if e.name in ("and", "or", "not"):
                want = ["bool"] * len(kinds)
            elif e.name == "select":
                want = ["bool", "num", "num"]
            else:
                want = ["num"] * len(kinds)
            for a, k, w in zip(e.args, kinds, want):
                if w == "bool" and k != w:   # a condition where a number is wanted is 0 or 1
                    self.fail(f"{e.name} expects a condition here, got a number: {a}", a, einsum)
            if e.name in BITWISE_OPS:
                self.integer_operands(e, einsum)
            return "bool" if e.name in BOOLEAN_OPS else "num"
        self.fail(f"not an expression: {e!r}", None, einsum)

    def integer_operands(self, e: Op, einsum: Einsum):
        """Bitwise operators take integers only: a float operand (a float
        tensor, a quotient, a transcendental) has no bits to combine."""
        for pos, a in enumerate(e.args):
            if not self.is_integer(a):
                sign = RULES[e.name].infix or f"{e.name}(...)"
                self.fail(f"`{sign}` in {einsum.name} takes integers; operand {pos + 1}, {a}, is not one "
                          "(integers are coordinates, shape symbols, whole numbers, i32/i8/bool tensors, "
                          "conditions, and + - * // % abs min max of them)", a, einsum)

    def is_integer(self, e: Expr) -> bool:
        """Whether `e` is integer-valued by its form (the typing rule of docs/notation.md)."""
        if isinstance(e, Num):
            return float(e.value).is_integer()
        if isinstance(e, (Idx, Sym)):
            return True
        if isinstance(e, Access):
            return self.tensors[e.tensor].dtype in INTEGER_DTYPES + ("bool",)
        if not isinstance(e, Op):
            return False
        if e.name in BOOLEAN_OPS or e.name in BITWISE_OPS or e.name in ROUNDING:
            return True
        if e.name == "select":
            return all(self.is_integer(a) for a in e.args[1:])
        if e.name == "pow":
            return self.is_integer(e.args[0]) and _natural(e.args[1])
        return e.name in ("add", "sub", "mul", "neg", "floordiv", "mod", "abs", "max", "min", "clip") and all(
            self.is_integer(a) for a in e.args)

    def no_zero_divisor(self, e: Op, einsum: Einsum):
        """`x / 0`, `m % (2 - 2)`: a divisor that is 0 whatever the shapes is an
        error here, at its place (one that depends on shapes is checked when
        they are given: shapes.check_divisors)."""
        from .shapes import _const
        if e.name in ("div", "floordiv", "mod") and _const(e.args[1], {}) == 0:
            sign = {"div": "/", "floordiv": "//", "mod": "%"}[e.name]
            self.fail(f"division by zero: the divisor of `{sign}` is always 0", e.args[1], einsum)

    def fixed_divisors(self, e: Einsum):
        """In a predicate of coordinates, a divisor is a number or a shape
        expression (`(p - m) % D`), not one of coordinates: the analyses
        evaluate these expressions over whole iteration spaces and could not
        say where `m % (p - m)` divides by zero. A predicate that reads a
        tensor is data, evaluated by the executor alone, which locates a zero
        divisor of coordinates where it meets one, as it does in indices."""
        places = [(e.predicate, "the `where` clause")] if e.predicate is not None and not _reads_tensor(
            e.predicate) else []
        for x, where in places:
            for n in walk(x):
                if isinstance(n, Op) and n.name in ("div", "floordiv", "mod") and not _reads_tensor(n.args[1]):
                    bad = next((d for d in walk(n.args[1]) if isinstance(d, Idx)), None)
                    if bad is not None:
                        sign = {"div": "/", "floordiv": "//", "mod": "%"}[n.name]
                        self.fail(f"the divisor of `{sign}` in {where} uses {bad}: a divisor there must be a "
                                  "number or shape symbols (a coordinate divisor may be 0 at some point)",
                                  n.args[1], e)

    def access(self, a: Access, einsum: Einsum):
        t = self.tensors.get(a.tensor)
        if t is None:
            self.fail(f"undefined tensor {a.tensor}" + _suggest(a.tensor, self.tensors), a, einsum)
        if len(a.indices) != len(t.ranks):
            self.fail(f"{a.tensor} has {len(t.ranks)} rank{'s' * (len(t.ranks) != 1)} "
                      f"[{', '.join(t.ranks)}] but is indexed with {len(a.indices)}", a, einsum)
        for pos, (i, r) in enumerate(zip(a.indices, t.ranks)):
            self.index_ok(i, a, einsum)
            # a literal extent (`INTV[NI, 2]`) bounds a literal index where it is written
            extent = self.ranks[r].definition if r in self.ranks and self.ranks[r].implicit else None
            if isinstance(i, Num) and isinstance(extent, Num) and not 0 <= i.value < extent.value:
                self.fail(f"index {i} of {a.tensor} is out of range: its rank {pos + 1} has the literal extent "
                          f"{extent.value} (indices 0 to {extent.value - 1})", i, einsum)
            if isinstance(i, Idx) and not self.same_extent(rank_of(i.name), r):
                self.fail(f"rank mismatch: {a.tensor}'s rank {pos + 1} is {r}, indexed by {i.name} "
                          f"(rank {rank_of(i.name)})", i, einsum)

    def index_ok(self, i: Expr, a: Access, einsum: Einsum):
        """An access index is a whole number by its form: coordinates, shape
        symbols, whole numbers, gathers, and + - * // % bitwise, comparisons
        and and/or/not (0/1), select, min, max, clip, abs, x ^ n of them, and
        floor( ) or ceil( ) of any real-valued expression (docs/notation.md,
        Computed indices)."""
        for n in walk(i):
            if isinstance(n, Access) and n is not a:
                self.gather_ok(n, a, einsum)
        for n in integer_nodes(i):
            if isinstance(n, Op) and n.name not in _INDEX_OPS:
                self.fail(f"index {i} of {a.tensor} uses {n.name} outside floor( ) and ceil( ): an index is a "
                          f"whole number; make a real-valued part whole with floor(...) or ceil(...)"
                          + (" (in an index `/` is floor division; inside floor( ) it divides exactly)"
                             if n.name == "div" else ""), n, einsum)
            if isinstance(n, Num) and not float(n.value).is_integer():
                self.fail(f"index {i} of {a.tensor} uses {n.value}, which is not a whole number (a fraction "
                          "belongs inside floor( ) or ceil( ))", n, einsum)
            if isinstance(n, Num) and abs(n.value) > MAX_INDEX_LITERAL:
                self.fail(f"index {i} of {a.tensor}: {n.value:.6g} is too large for an index "
                          f"(at most 2**53)", n, einsum)
        self.kind(i, einsum)          # every node: ranks, arities, conditions where conditions are wanted
        if not self.is_integer(i):
            self.fail(f"index {i} of {a.tensor} is not a whole number by its form (an exponent must be a whole "
                      "number >= 0 in an index)", i, einsum)

    def gather_ok(self, g: Access, a: Access, einsum: Einsum):
        """A gather (`OFF[DOC[p]]`, `K[.., PAGE[b, m // PS] * PS + m % PS]`):
        a tensor read inside an index gives a coordinate, so it must hold
        integers (i32 or i8) and have no iterative rank (an index names one
        element, not an iterate of a recurrence). Its own indices are checked
        as any access's, gathers in them included."""
        t = self.tensors.get(g.tensor)
        if t is None:
            self.fail(f"undefined tensor {g.tensor}" + _suggest(g.tensor, self.tensors), g, einsum)
        if t.dtype not in INTEGER_DTYPES:
            self.fail(f"a gather reads {g.tensor} inside an index of {a.tensor}: an index tensor must hold "
                      f"integers (i32 or i8), but {g.tensor} is {t.dtype}", g, einsum)
        if t.iterative:
            self.fail(f"a gather reads {g.tensor} inside an index of {a.tensor}, but {g.tensor} has the "
                      f"iterative rank{'s' * (len(t.iterative) > 1)} {', '.join(sorted(t.iterative))}; "
                      "an index tensor is a plain tensor", g, einsum)
        self.access(g, einsum)

    # einsums ----------------------------------------------------------------
    def einsum(self, e: Einsum):
        t = self.tensors.get(e.name)
        if t is None:
            self.fail(f"undefined tensor {e.name}", e.output, e)
        if t.role == "input":
            self.fail(f"{e.name} is an input; it cannot be written by an Einsum", e.output, e)
        if e.reduce not in REDUCE_RULES:
            self.fail(f"unknown reduction {e.reduce!r}; use sum, max or min", e, e)
        self.access(e.output, e)
        out_vars, special = [], 0
        for pos, (i, r) in enumerate(zip(e.output.indices, t.ranks)):
            o = offset_of(i)
            if isinstance(i, Num):
                if r not in t.iterative or i.value != 0:
                    self.fail(f"{e.name}[...{i}...]: a constant output index is allowed only as 0, "
                              f"the initial value of an iterative rank (declare {r}+1)", i, e)
                special += 1
                continue
            if o is None:
                self.fail(f"output index {i} of {e.name} must be an index variable, `v + 1` or 0", i, e)
            v, off = o
            if not self.same_extent(rank_of(v), r):
                self.fail(f"rank mismatch: {e.name}'s rank {pos + 1} is {r}, written with index {v}", i, e)
            if off == 1:
                if r not in t.iterative:
                    self.fail(f"{e.name} is written at {v}+1 but rank {r} of {e.name} is not iterative "
                              f"(declare {e.name}[..., {r}+1, ...])", i, e)
                special += 1
            if v in out_vars:
                self.fail(f"index {v} appears twice in the output of {e.name}", i, e)
            out_vars.append(v)
        if special > 1:
            self.fail(f"{e.name}: at most one output index may be iterative (v+1) or initial (0)", e.output, e)
        if t.iterative and special == 0:
            self.fail(f"{e.name} has an iterative rank; write it as {e.name}[..., v+1, ...] "
                      f"or give its initial value {e.name}[..., 0, ...]", e.output, e)
        self.fixed_divisors(e)
        if self.kind(e.expr, e) != "num":
            self.fail(f"the value of {e.name} is a condition; use select(cond, a, b), a number times it "
                      "(a condition is 1 or 0 as a number), or put it in a `where` clause", e.expr, e)
        if e.predicate is not None and self.kind(e.predicate, e) != "bool":
            self.fail(f"the `where` clause of {e.name} must be a condition (a comparison, and/or/not, "
                      f"or a bool tensor), got {e.predicate}", e.predicate, e)
        iteration = e.iteration_vars
        if len(set(e.reduced)) != len(e.reduced):
            twice = next(v for v in e.reduced if e.reduced.count(v) > 1)
            self.fail(f"{e.name} lists {twice} twice in its reduction [{', '.join(e.reduced)}]", e, e)
        for v in e.reduced:
            if v not in iteration:
                self.fail(f"{e.name} reduces over {v}, which is not in its iteration space", e, e)
            if v in out_vars:
                self.fail(f"{e.name} reduces over {v}, which is in its output", e, e)
        missing = [v for v in iteration if v not in out_vars and v not in e.reduced]
        if missing:
            self.fail(f"{e.name}: index {missing[0]} is absent from the output but not reduced", e, e)
        if e.scan is not None:
            self.scan_ok(e, out_vars)

    def scan_ok(self, e: Einsum, out_vars: list[str]):
        """A scan runs along a plain output index of a plain Einsum: not the
        initial value or the step of a recurrence, nor over a rank a read
        iterates (the scan needs the whole fiber, a recurrence gives one
        element per step)."""
        s = e.scan
        if s.op not in SCAN_OPS or any(f not in SCAN_FLAGS for f in s.flags):
            self.fail(f"unknown scan {s.op!r}; use cumsum or cumprod", s, e)
        if e.reduce != "sum":
            self.fail(f"{e.name}: a scan sums the other reduced indices; {e.reduce} cannot be combined with {s}",
                      s, e)
        if e.is_initial or e.iterative_var is not None:
            self.fail(f"{e.name}: a scan ({s}) cannot write an iterate or an initial value of a recurrence", s, e)
        if s.var not in out_vars:
            self.fail(f"{e.name} scans over {s.var}, which is not an index of its output "
                      f"({', '.join(out_vars) or 'none'}); a scan keeps the index it runs along", s, e)
        for a in e.reads():
            t = self.tensors.get(a.tensor)
            for i, r in zip(a.indices, t.ranks if t else ()):
                if r in t.iterative and s.var in {n.name for n in walk(i) if isinstance(n, Idx)}:
                    self.fail(f"{e.name} scans over {s.var} and reads the iterates {a} of a recurrence over it; "
                              "a scan needs the whole fiber (read the last iterate, or write the recurrence "
                              "without the scan)", a, e)

    def writers(self):
        by_tensor: dict[str, list[Einsum]] = {}
        for e in self.c.einsums:
            by_tensor.setdefault(e.name, []).append(e)
        for name, ws in by_tensor.items():
            inits = [w for w in ws if w.is_initial]
            main = [w for w in ws if not w.is_initial]
            if len(main) > 1:
                self.fail(f"tensor {name} is written by more than one Einsum "
                          f"(also at {main[0].loc or main[0]})", main[1], main[1])
            if len(inits) > 1:
                self.fail(f"tensor {name} has more than one initial value", inits[1], inits[1])
            if inits and not main:
                self.fail(f"{name} has an initial value but no Einsum that iterates it", inits[0], inits[0])
            t = self.tensors[name]
            if t.iterative and main and not inits:
                self.fail(f"iterative rank without an initial value: {name} is iterated over "
                          f"{', '.join(sorted(t.iterative))}; declare e.g. "
                          f"{name}[{', '.join('0' if r in t.iterative else r.lower() for r in t.ranks)}] = 0",
                          main[0], main[0])
        for t in self.c.tensors:
            if t.role != "input" and t.name not in by_tensor:
                self.fail(f"tensor {t.name} is declared but no Einsum computes it", t)
        read = {a.tensor for e in self.c.einsums for a in e.reads()}
        for t in self.c.inputs:
            if t.name not in read:
                self.fail(f"input {t.name} is never read", t)

    def outputs(self):
        if not self.c.outputs:
            last = self.c.einsums[-1]  # somewhere to point: the last Einsum written
            self.fail("the cascade has no output: every tensor it computes is read again "
                      "(declare one with `output NAME[...]`)", last, last)


def validate(c: Cascade) -> None:
    """Raise ValidationError if the cascade is ill-formed; return None if valid."""
    from .graph import schedule

    if not c.einsums:
        raise ValidationError("the cascade has no Einsums", None, c.source)
    chk = _Checker(c)
    chk.sizes_ok()
    chk.ranks_ok()
    chk.masks_ok()
    for e in c.einsums:
        chk.einsum(e)
    chk.masks_used()
    chk.writers()
    schedule(c)  # raises on a cycle that no iterative rank carries
    chk.outputs()
