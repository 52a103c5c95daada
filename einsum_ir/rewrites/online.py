"""The online (running-max) form: one pass over a partitioned key rank.

From a recurrence-free cascade whose normalisers are maxima of tile
expressions (walk.py), partition the keys K -> K1 tiles of K0 and carry
over the tiles k1:
- each max (min) statistic X as a running value
  RX[k1+1] = max(RX[k1], LX[k1]), LX[k1] = max over the tile of X's term;
- each normaliser row G made of them as RG[k1+1] (G's expression on the
  running statistics), and PG[k1] = exp(RG[k1] - RG[k1+1]);
- each sum S whose term is exp(A - G)^d times G-free factors as
  RS[k1+1] = LS[k1] + RS[k1] * PG[k1]^d, LS[k1] = the tile's sum with G
  replaced by RG[k1+1]: the terms already summed were computed with G_old,
  and exp(A - G_old)^d * exp(G_old - G_new)^d = exp(A - G_new)^d.
The last iterates RX[K1] are the full reductions, read by the epilogue.
"""
from __future__ import annotations

from ..ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, Sym, accesses
from .algebra import fresh, map_expr, rename_vars
from .build import assemble_rewrite, at, finite, insert, next_iter, partitioned, split_key
from .walk import Walk, plain_vars

FORM = "online"


class _Ctx:
    """Names and positions of the tiled form: where K1 goes in each statistic."""

    def __init__(self, w: Walk, outer: str, inner: str, taken: set[str]):
        self.w, self.K1, self.K0 = w, outer, inner
        self.k1, self.k0 = outer.lower(), inner.lower()
        self.key = split_key(w.k, self.k1, inner, self.k0)
        self.pos: dict[str, int] = {}
        self.taken = taken
        self.local: dict[str, str] = {}      # statistic -> its per-tile tensor
        self.run: dict[str, str] = {}        # statistic -> its running tensor
        self.safe: dict[str, str] = {}       # normaliser -> its finite stand-in per tile

    def in_walk(self, cur: Expr):
        """How the tile terms read a statistic: a normaliser through its
        finite stand-in, any other at the current iterate."""
        def read(a: Access) -> Access:
            if a.tensor in self.safe:
                return at(self.safe[a.tensor], insert(a.indices, self.pos[a.tensor], Idx(self.k1)))
            return stat_access(self, a, cur)
        return read

    def name(self, prefix: str, x: str) -> str:
        return fresh(self.taken, prefix + x, prefix + x + "_")

    def retile(self, x: Expr, stat_at) -> Expr:
        """x over (k1, k0): the key coordinate, tile tensors' key slot, and
        statistics read in the walk (`stat_at(access)` gives their value)."""
        w = self.w

        def fn(n: Expr):
            if isinstance(n, Idx) and n.name == w.k:
                return self.key
            if isinstance(n, Access) and n.tensor in w.tiles:
                idx: list[Expr] = []
                for i in n.indices:
                    idx += [Idx(self.k1), Idx(self.k0)] if i == Idx(w.k) else [self.retile(i, stat_at)]
                return Access(n.tensor, tuple(idx))
            if isinstance(n, Access) and (n.tensor in w.reductions or n.tensor in w.rows):
                return stat_at(n)
            return None
        return map_expr(x, fn)


def position(out: list[str], ref: list[str], marker: str) -> int:
    """Where the tile index goes among a statistic's output variables `out`:
    before the first one that follows `marker` in `ref` (so a value over
    (b, h, p) becomes (b, h, m1, p) as in the library's 1-pass form)."""
    if marker in ref:
        after = ref[ref.index(marker) + 1:]
        for n, v in enumerate(out):
            if v in after:
                return n
    return len(out)


def stat_positions(w: Walk, ctx: _Ctx) -> None:
    for e in w.c.einsums:
        out = plain_vars(e.output)
        if e.name in w.reductions:
            refs = [plain_vars_any(a) for a in accesses(e.expr) if Idx(w.k) in a.indices]
            ctx.pos[e.name] = min((position(out, ref, w.k) for ref in refs), default=len(out))
        elif e.name in w.rows:
            dep = next((a.tensor for a in e.reads() if a.tensor in ctx.pos), None)
            ref = [] if dep is None else insert(plain_vars(w.c.writers(dep)[0].output), ctx.pos[dep], "\0")
            ctx.pos[e.name] = position(out, ref, "\0")


def plain_vars_any(a: Access) -> list[str]:
    return [i.name if isinstance(i, Idx) else "" for i in a.indices]


def stat_access(ctx: _Ctx, a: Access, it: Expr) -> Access:
    """Statistic `a` read at iterate `it` of its running tensor."""
    name = ctx.run[a.tensor]
    return at(name, insert(a.indices, ctx.pos[a.tensor], it))


def identity(reduce: str) -> Num:
    return Num(float("-inf")) if reduce == "max" else Num(float("inf")) if reduce == "min" else Num(0.0)


def online(c: Cascade, w: Walk, passes_before: int | None) -> tuple[Cascade, str, list[str]]:
    """The 1-pass cascade of a recognised walk, its text, and the algebra."""
    ranks, K1, K0 = partitioned(c, w.K)
    taken = {t.name for t in c.tensors} | {r.name for r in ranks}
    ctx = _Ctx(w, K1, K0, taken)
    stat_positions(w, ctx)
    needed = _needed_normalisers(w)
    for n in list(w.reductions) + [g for g in w.rows if g in needed]:
        ctx.run[n] = ctx.name("R", n)
        if n in w.reductions:
            ctx.local[n] = ctx.name("L", n)
    prm: dict[str, str] = {}
    for g in sorted({g for d in w.degrees.values() for g in d}):
        prm[g] = ctx.name("P", g)
        ctx.safe[g] = ctx.name("S", g)
    cur = next_iter(ctx.k1)
    einsums: list[Einsum] = []
    notes: dict[str, list[str]] = {}
    dtypes: dict[str, str] = {}
    readers_of_rows = {a.tensor for e in w.rows.values() for a in e.reads()} | {t.name for t in c.outputs}
    for e in c.einsums:
        if e.name in w.hoisted:
            einsums.append(e)
        elif e.name in w.tiles:
            einsums.append(_tile(ctx, e, cur))
        elif e.name in w.reductions:
            einsums += _reduction(ctx, e, cur, prm, notes, dtypes)
            if e.name in prm:
                einsums += _rescale(ctx, e.output, e.name, prm[e.name], notes)
            if c.tensor(e.name).role == "output":
                einsums.append(Einsum(e.output, stat_access(ctx, e.output, Sym(K1))))
        else:
            if e.name in ctx.run:
                einsums += _running_row(ctx, e, cur, notes)
                if e.name in prm:
                    einsums += _rescale(ctx, e.output, e.name, prm[e.name], notes)
            if e.name in readers_of_rows or e.name not in ctx.run:
                einsums.append(_final_row(ctx, e))
    notes.setdefault(einsums[-1].name, []).append(
        f"the last iterates [{K1}] are the full reductions over {w.K}")
    doc = _doc(c, w, K1, K0, passes_before)
    out, text = assemble_rewrite(c, ranks, einsums, dtypes, f"{c.name}-online", doc, notes, FORM)
    return out, text, doc


def _needed_normalisers(w: Walk) -> set[str]:
    """Normaliser rows the walk needs as running values: those the sums'
    terms read, and the rows they are made of."""
    need = {g for d in w.degrees.values() for g in d if g in w.rows}
    todo = list(need)
    while todo:
        g = todo.pop()
        for a in w.rows[g].reads():
            if a.tensor in w.rows and a.tensor not in need:
                need.add(a.tensor)
                todo.append(a.tensor)
    return need


def _tile(ctx: _Ctx, e: Einsum, cur: Expr) -> Einsum:
    out = ctx.retile(e.output, None)
    expr = ctx.retile(e.expr, ctx.in_walk(cur))
    pred = None if e.predicate is None else ctx.retile(e.predicate, ctx.in_walk(cur))
    return Einsum(out, expr, e.reduce, (), pred)


def _reduction(ctx: _Ctx, e: Einsum, cur: Expr, prm, notes, dtypes) -> list[Einsum]:
    w, n = ctx.w, e.name
    pos, k1 = ctx.pos[n], ctx.k1
    L, R = ctx.local[n], ctx.run[n]
    dtypes[L] = dtypes[R] = w.c.tensor(n).dtype
    idx = list(e.output.indices)
    reduced = tuple(ctx.k0 if v == w.k else v for v in e.reduced)
    term = ctx.retile(e.expr, ctx.in_walk(cur))
    pred = None if e.predicate is None else ctx.retile(e.predicate, ctx.in_walk(cur))
    local = Einsum(at(L, insert(idx, pos, Idx(k1))), term, e.reduce, reduced, pred)
    init = Einsum(at(R, insert(idx, pos, Num(0))), identity(e.reduce))
    prev, here = at(R, insert(idx, pos, Idx(k1))), at(L, insert(idx, pos, Idx(k1)))
    if e.reduce in ("max", "min"):
        step = Op(e.reduce, (prev, here))
        notes[L] = [f"{n} = {e.reduce} over {w.k} of a term that reads no other statistic: the {e.reduce} of the "
                    f"tiles' {e.reduce}ima, carried as the running value {R} ({R}[0] = {identity(e.reduce)})"]
    else:
        scale: Expr = prev
        for g, d in w.rescales[n].degrees:
            gw = w.c.writers(g)[0].output.indices
            for _ in range(d):
                scale = Op("mul", (scale, at(prm[g], insert(gw, ctx.pos[g], Idx(k1)))))
        step = Op("add", (here, scale)) if w.degrees[n] else Op("add", (prev, here))
        notes[L] = [w.rescales[n].why()]        # the same text the fused kernel's rescaling carries
    return [local, init, Einsum(at(R, insert(idx, pos, next_iter(k1))), step)]


def _rescale(ctx: _Ctx, out: Access, g: str, name: str, notes) -> list[Einsum]:
    """SG[k1] = finite(RG[k1+1]), the normaliser the tile's terms use, and
    PG[k1] = exp(finite(RG[k1]) - SG[k1]), the factor between two tiles."""
    pos, k1 = ctx.pos[g], ctx.k1
    R, S = ctx.run[g], ctx.safe[g]
    old, new = at(R, insert(out.indices, pos, Idx(k1))), at(R, insert(out.indices, pos, next_iter(k1)))
    here = at(S, insert(out.indices, pos, Idx(k1)))
    notes[S] = [f"{S} = {g} so far, or 0 while it is still infinite (no finite score yet): the terms then add "
                f"exp(-inf - 0) = 0 for a masked score, never exp(-inf + inf); any finite stand-in is exact, "
                f"since the terms and the factor {name} use the same one"]
    notes[name] = [f"{name} = exp({g}_old - {g}_new): the factor that moves a running sum from the old "
                   f"normaliser {g} to the new one"]
    return [Einsum(here, finite(new)),
            Einsum(at(name, insert(out.indices, pos, Idx(k1))), Op("exp", (Op("sub", (finite(old), here)),)))]


def _running_row(ctx: _Ctx, e: Einsum, cur: Expr, notes) -> list[Einsum]:
    """A normaliser row G on the running statistics: RG[k1+1], RG[0] from
    the statistics' initial values."""
    w, pos = ctx.w, ctx.pos[e.name]
    R = ctx.run[e.name]

    def at_iter(it):
        return lambda n: stat_access(ctx, n, it) if isinstance(n, Access) and n.tensor in ctx.run else None
    init = map_expr(e.expr, lambda n: _initial(ctx, n))
    idx = list(e.output.indices)
    notes[R] = [f"{e.name} is made of running maxima only: {R}[{ctx.k1}+1] is {e.name}'s expression on their "
                f"current values"]
    return [Einsum(at(R, insert(idx, pos, Num(0))), init),
            Einsum(at(R, insert(idx, pos, next_iter(ctx.k1))), map_expr(e.expr, at_iter(cur)))]


def _initial(ctx: _Ctx, n: Expr) -> Expr | None:
    """A statistic's value before any key: the reduction's identity, or a
    row's expression on those."""
    w = ctx.w
    if not isinstance(n, Access):
        return None
    if n.tensor in w.reductions:
        return identity(w.reductions[n.tensor].reduce)
    if n.tensor in w.rows:
        row = w.rows[n.tensor]
        body = rename_vars(row.expr, dict(zip(plain_vars(row.output), n.indices)))
        return map_expr(body, lambda m: _initial(ctx, m))
    return None


def _final_row(ctx: _Ctx, e: Einsum) -> Einsum:
    """A row Einsum after the walk: each reduction read at its last iterate."""
    def fn(n):
        if isinstance(n, Access) and n.tensor in ctx.w.reductions:
            return stat_access(ctx, n, Sym(ctx.K1))
        return None
    pred = None if e.predicate is None else map_expr(e.predicate, fn)
    return Einsum(e.output, map_expr(e.expr, fn), e.reduce, e.reduced, pred)


def _doc(c: Cascade, w: Walk, K1: str, K0: str, passes_before) -> list[str]:
    before = f"{passes_before} passes" if passes_before else "its passes"
    norms = sorted(w.normalisers & ({g for d in w.degrees.values() for g in d}))
    lines = [f"{c.name} in the online (running-max) form: 1 pass over {w.K} instead of {before}.",
             f"Written by `attnc rewrite {c.name} --to online`; checked equal to {c.name} on random inputs.",
             f"{w.K} is partitioned into {K1} tiles of {K0} keys; each statistic over {w.K} is carried over",
             f"the tiles as a running value (an iterative rank {K1}+1).",
             "Algebra: max over all keys = max(max over the tiles before, max over this tile); a sum of",
             "exp(A - G)^d * F (F free of G) computed with an old G equals the same sum with the new G",
             "times exp(G_old - G_new)^d, so each running sum is rescaled when G grows"
             + (f" (G: {', '.join(norms)})." if norms else ".")]
    lines.append("A normaliser that is still -inf (no finite score yet) is used as 0, so masked scores add 0.")
    return lines


__all__ = ["online"]
