"""Division deferral: move a division by a row normaliser past the sum that
contracts the divided tensor.

    A[.., m, p] = N / D[.., p]          (D constant in m)
    Z[.., f, p] = sum[m] W * A[.., m, p]
 => ZN[.., f, p] = sum[m] W * N
    Z[.., f, p]  = ZN[.., f, p] / D[.., p]

because sum_m W_m * N_m / D = (sum_m W_m * N_m) / D when D does not depend
on m. Z no longer needs D before its sum, so the pass that completes D and
the pass that reads A merge (3-pass softmax -> 2 passes, FuseMax Sec. 4.2).
A where clause on Z or A restricts the new sum to both; a row of Z with no
point left is 0 in the original, so the quotient is taken only where the
row has a point (a max of 1 over its where clause, -inf when empty).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, accesses, index_vars
from .algebra import conj, fresh, map_expr, product, quotient, rename_vars, split_factor
from .build import assemble_rewrite
from .walk import RewriteError, plain_vars

FORM = "deferred"


@dataclass(frozen=True)
class Deferral:
    a: Einsum | None     # the Einsum that divides (None: the sum's own term divides)
    reader: Einsum       # the sum that contracts it
    parts: tuple         # (sign, the reader's term with a piece's numerator for A, its divisor or None)
    predicate: Expr | None

    @property
    def divisor(self) -> str:
        return ", ".join(str(d) for _, _, d in self.parts if d is not None)


def pieces(x: Expr) -> list[tuple[int, Expr]]:
    """x as a signed sum of pieces: a/D1 - c * b/D2 -> [(1, a/D1), (-1, c * b/D2)]."""
    if isinstance(x, Op) and x.name in ("add", "sub"):
        right = pieces(x.args[1])
        return pieces(x.args[0]) + [(s if x.name == "add" else -s, p) for s, p in right]
    if isinstance(x, Op) and x.name == "neg":
        return [(-s, p) for s, p in pieces(x.args[0])]
    return [(1, x)]


def _candidate(c: Cascade, a: Einsum, r: Einsum) -> Deferral | str:
    """The deferral of a's division past r, or why it does not apply."""
    num, den = quotient(a.expr)
    if r.reduce != "sum" or not r.reduced:
        return f"{r.name} reads {a.name} without summing it ({f'a {r.reduce} reduction' if r.reduced else 'a map'})"
    uses = [x for x in accesses(r.expr) if x.tensor == a.name]
    if len(uses) != 1 or (r.predicate is not None and any(x.tensor == a.name for x in accesses(r.predicate))):
        return f"{r.name} reads {a.name} {len(uses)} times (a deferral needs it once, as a factor)"
    use = uses[0]
    if not all(isinstance(i, Idx) for i in use.indices):
        return f"{r.name} reads {use}, not at plain index variables"
    w = split_factor(r.expr, use)
    if w is None:
        return (f"{a.name} enters {r.name} other than as a factor of a product ({r.expr}), so the division "
                "does not commute with the sum")
    names = dict(zip(plain_vars(a.output), use.indices))
    parts, divisors = [], []
    for sign, piece in pieces(a.expr):
        num, den = quotient(piece)
        den = [rename_vars(x, names) for x in den]
        divisors += den
        moved = [x for x in den if not set(index_vars(x)) & set(r.reduced) and _computed(c, x)]
        kept = [x for x in den if x not in moved]
        inner = product([rename_vars(x, names) for x in num])
        if kept:
            inner = Op("div", (inner, product(kept)))
        term = map_expr(r.expr, lambda x, inner=inner: inner if x == use else None)
        parts.append((sign, term, product(moved) if moved else None))
    if all(d is None for _, _, d in parts):
        return (f"every divisor of {a.name} ({', '.join(map(str, divisors))}) depends on {', '.join(r.reduced)}, "
                f"the ranks {r.name} sums over")
    pred = conj(r.predicate, None if a.predicate is None else rename_vars(a.predicate, names))
    return Deferral(a, r, tuple(parts), pred)


def _computed(c: Cascade, x: Expr) -> bool:
    """Does x read a tensor some Einsum computes (a divisor worth deferring;
    a constant or an input is not waited for)?"""
    return any(c.writers(a.tensor) for a in accesses(x))


def _in_place(c: Cascade, r: Einsum) -> Deferral | None:
    """A sum whose own term divides by a row value constant in the summed
    ranks: Z = sum[m] X / D -> ZN = sum[m] X, Z = ZN / D."""
    if r.reduce != "sum" or not r.reduced or r.iterative_var or r.is_initial:
        return None
    num, den = quotient(r.expr)
    moved = [x for x in den if not set(index_vars(x)) & set(r.reduced) and _computed(c, x)]
    if not moved:
        return None
    kept = [x for x in den if x not in moved]
    term = product(num) if not kept else Op("div", (product(num), product(kept)))
    return Deferral(None, r, ((1, term, product(moved)),), r.predicate)


def _enclosing_call(x: Expr, call: str | None = None) -> str | None:
    """The function a division sits in (clip in clip(N / D, 0, 1)), if any."""
    if isinstance(x, Op):
        if x.name == "div" and call is not None:
            return call
        inner = call if x.name in ("mul", "div", "add", "sub", "neg") else x.name
        for a in x.args:
            found = _enclosing_call(a, inner)
            if found is not None:
                return found
    return None


def find(c: Cascade) -> tuple[Deferral | None, list[str]]:
    """The first deferral that applies, and why the others do not."""
    why: list[str] = []
    for r in c.einsums:
        d = _in_place(c, r)
        if d is not None:
            return d, why
    for a in c.einsums:
        if a.reduced or a.iterative_var or a.is_initial:
            continue
        readers = c.readers(a.name)
        if not any(quotient(p)[1] for _, p in pieces(a.expr)):
            inside = _enclosing_call(a.expr)
            if readers and inside is not None:
                why.append(f"{a.name} divides inside {inside}(...), not as a factor of its value, so the "
                           "division does not commute with a sum over it")
            continue
        if not readers:
            why.append(f"{a.name} divides but no Einsum sums it (it is the last step already)")
        for r in readers:
            got = _candidate(c, a, r)
            if isinstance(got, Deferral):
                return got, why
            why.append(f"{a.name} -> {r.name}: {got}")
    return None, why


def apply(c: Cascade, d: Deferral, taken: set[str], notes: dict[str, list[str]]) -> list[Einsum]:
    """c's Einsums with one deferral applied."""
    r = d.reader
    out = [x for x in c.einsums if x is not r]
    at_r = c.einsums.index(r)
    added, value, names = [], None, []
    for k, (sign, term, divisor) in enumerate(d.parts):
        n = fresh(taken, r.name + "N" + (str(k + 1) if len(d.parts) > 1 else ""), r.name + "_N")
        names.append(n)
        added.append(Einsum(Access(n, r.output.indices), term, "sum", r.reduced, d.predicate))
        v: Expr = Access(n, r.output.indices)
        if divisor is not None:
            v = Op("div", (v, divisor))
        value = (v if sign > 0 else Op("neg", (v,))) if value is None else Op("add" if sign > 0 else "sub", (value, v))
    red = [v for v in r.reduced if d.predicate is not None and v in index_vars(d.predicate)]
    if red:
        ne = fresh(taken, r.name + "E", r.name + "_E")
        keep = [i for i in r.output.indices if i.name in index_vars(d.predicate)]
        added.insert(0, Einsum(Access(ne, tuple(keep)), Num(1.0), "max", tuple(red), d.predicate))
        value = Op("select", (Op("gt", (Access(ne, tuple(keep)), Num(0.0))), value, Num(0.0)))
        notes[ne] = [f"{ne} = 1 where the row of {r.name} has a point left by the where clause, -inf where it has "
                     f"none (there {r.name} was an empty sum, 0, and stays 0)"]
    added.append(Einsum(r.output, value))
    what = (f"{r.name} = sum[{', '.join(r.reduced)}] (... * {d.a.name}) and {d.a.name} = N / {d.divisor}"
            if d.a is not None else f"{r.name} = sum[{', '.join(r.reduced)}] W * N / {d.divisor}")
    notes[names[0]] = [f"division deferred: {what}; {d.divisor} does not depend on {', '.join(r.reduced)}, so",
                       f"sum(W * N / D) = sum(W * N) / D: sum first ({', '.join(names)}), divide once per row"
                       + (" (a sum of quotients: one sum per quotient, by linearity)" if len(d.parts) > 1 else "")]
    out[at_r:at_r] = added
    if d.a is None:
        return out
    others = [x for x in out if any(y.tensor == d.a.name for y in x.reads())]
    if not others and c.tensor(d.a.name).role != "output":
        out = [x for x in out if x.name != d.a.name]
    return out


def defer(c: Cascade, passes_before: int | None = None) -> tuple[Cascade, str, list[str], int]:
    """Every applicable deferral, applied until none is left; refused with the
    reasons when none applies."""
    d, why = find(c)
    if d is None:
        raise RewriteError(f"cannot rewrite {c.name} to the deferred form: no division by a normaliser "
                           "constant in the summed rank feeds a sum"
                           + ("; " + "; ".join(why) if why else " (no Einsum divides a tensor that a sum reads)"),
                           None, c.source)
    taken = {t.name for t in c.tensors} | {r.name for r in c.ranks}
    notes: dict[str, list[str]] = {}
    count = 0
    cur = c
    while d is not None:
        einsums = apply(cur, d, taken, notes)
        count += 1
        cur = _loose(cur, einsums)
        d, _ = find(cur)
    doc = [f"{c.name} with the division deferred past the value sum ({count} deferral{'s' * (count > 1)}).",
           f"Written by `attnc rewrite {c.name} --to deferred`; checked equal to {c.name} on random inputs.",
           "Algebra: sum over m of W * N / D = (sum over m of W * N) / D when D is constant in m, so the",
           "sum no longer waits for D: the pass that completes D and the pass that divides merge."]
    out, text = assemble_rewrite(c, c.ranks, list(cur.einsums), {}, f"{c.name}-deferred", doc, notes, FORM)
    return out, text, doc, count


def _loose(c: Cascade, einsums: list[Einsum]) -> Cascade:
    """An unvalidated cascade over `einsums`, for finding the next deferral
    (only its Einsums and declarations are read)."""
    from .build import decl_for
    names = {t.name for t in c.tensors}
    extra = tuple(decl_for(e, "f16", "tensor") for e in einsums if e.name not in names and not e.is_initial)
    return c.replace(einsums=tuple(einsums), tensors=c.tensors + extra)


__all__ = ["Deferral", "defer", "find"]
