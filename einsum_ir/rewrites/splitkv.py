"""Split-KV: the keys split into chunks K -> K1 chunks of K0 keys, each
chunk reduced on its own (on its own SM), the chunks' partial results merged
by an associative combine (Flash-Decoding; the library's decode-split-kv):

- a max (min) statistic X: the chunk's LX[k1], combined X = max[k1] LX;
- a normaliser row G: the chunk's CG[k1] (G's expression on the chunk's
  statistics), and G itself on the combined ones;
- a sum S of exp(A - G)^d times G-free factors: the chunk's LS[k1] computed
  with CG[k1]; combined S = sum[k1] LS[k1] * exp(CG[k1] - G)^d, since
  exp(A - CG)^d * exp(CG - G)^d = exp(A - G)^d. The merge of two partials
  (max, then rescale and add) is associative and commutative, so the chunks
  may be merged in any grouping.
The Einsums after the reductions read the combined values under their
original names, unchanged.
"""
from __future__ import annotations

from ..ir import Access, Cascade, Einsum, Expr, Idx, Op
from .build import assemble_rewrite, at, finite, insert, partitioned
from .online import _Ctx, _needed_normalisers, stat_positions
from .walk import Walk

FORM = "split-kv"


def split_kv(c: Cascade, w: Walk, passes_before: int | None) -> tuple[Cascade, str, list[str]]:
    ranks, K1, K0 = partitioned(c, w.K)
    taken = {t.name for t in c.tensors} | {r.name for r in ranks}
    ctx = _Ctx(w, K1, K0, taken)
    stat_positions(w, ctx)
    needed = _needed_normalisers(w)
    for n in w.reductions:
        ctx.local[n] = ctx.name("L", n)
    for g in w.rows:
        if g in needed:
            ctx.local[g] = ctx.name("C", g)
    for g in sorted({g for d in w.degrees.values() for g in d}):
        ctx.safe[g] = ctx.name("S", g)

    def chunk(a: Access) -> Access:
        return at(ctx.local[a.tensor], insert(a.indices, ctx.pos[a.tensor], Idx(ctx.k1)))

    def read(a: Access) -> Access:
        """A statistic read by the chunk's terms: a normaliser's finite stand-in."""
        if a.tensor in ctx.safe:
            return at(ctx.safe[a.tensor], insert(a.indices, ctx.pos[a.tensor], Idx(ctx.k1)))
        return chunk(a)

    def stand_in(g: str) -> list[Einsum]:
        if g not in ctx.safe:
            return []
        out = ctx.w.c.writers(g)[0].output
        notes[ctx.safe[g]] = [f"{ctx.safe[g]} = the chunk's {g}, or 0 where it is infinite (no finite score in "
                              "the chunk): masked scores then add exp(-inf - 0) = 0, never exp(-inf + inf)"]
        return [Einsum(read(out), finite(chunk(out)))]

    einsums: list[Einsum] = []
    notes: dict[str, list[str]] = {}
    dtypes: dict[str, str] = {}
    for e in c.einsums:
        if e.name in w.hoisted:
            einsums.append(e)
        elif e.name in w.tiles:
            pred = None if e.predicate is None else ctx.retile(e.predicate, read)
            einsums.append(Einsum(ctx.retile(e.output, None), ctx.retile(e.expr, read), e.reduce, (), pred))
        elif e.name in w.reductions:
            einsums += _reduction(ctx, e, read, notes, dtypes)
            einsums[-1:-1] = stand_in(e.name)
        else:
            if e.name in ctx.local:
                body = ctx.retile(e.expr, chunk)
                einsums.append(Einsum(chunk(e.output), body))
                notes[ctx.local[e.name]] = [f"{ctx.local[e.name]}: the normaliser {e.name} of chunk {ctx.k1} alone "
                                            "(its expression on the chunk's statistics)"]
                einsums += stand_in(e.name)
            einsums.append(e)
    doc = [f"{c.name} split over the keys: {w.K} -> {K1} chunks of {K0} keys, each reduced on its own,",
           "the chunks' partial results merged by an associative combine (Flash-Decoding).",
           f"Written by `attnc rewrite {c.name} --to split-kv`; checked equal to {c.name} on random inputs.",
           "Algebra: max over all keys = max over the chunks of the chunks' maxima; a chunk's sum of",
           "exp(A - CG)^d * F computed with its own normaliser CG times exp(CG - G)^d is the same sum",
           "with the global G; merging (max, rescale, add) is associative and commutative.",
           f"The combine re-reads the {K1} partial results (not the keys): the pass analysis counts it as",
           f"a pass over {w.K}'s chunk positions."]
    out, text = assemble_rewrite(c, ranks, einsums, dtypes, f"{c.name}-split-kv", doc, notes, FORM)
    return out, text, doc


def _reduction(ctx: _Ctx, e: Einsum, read, notes, dtypes) -> list[Einsum]:
    w, n, k1 = ctx.w, e.name, ctx.k1
    L = ctx.local[n]
    dtypes[L] = w.c.tensor(n).dtype
    pos = ctx.pos[n]
    reduced = tuple(ctx.k0 if v == w.k else v for v in e.reduced)
    pred = None if e.predicate is None else ctx.retile(e.predicate, read)
    local = Einsum(at(L, insert(e.output.indices, pos, Idx(k1))), ctx.retile(e.expr, read), e.reduce, reduced, pred)
    part: Expr = at(L, insert(e.output.indices, pos, Idx(k1)))
    if e.reduce in ("max", "min"):
        notes[L] = [f"{L}: the {e.reduce} over chunk {k1}; {n} = {e.reduce} of the chunks' {e.reduce}ima"]
        return [local, Einsum(e.output, part, e.reduce, (k1,))]
    why = []
    for g, d in sorted(w.degrees[n].items()):
        gw = w.c.writers(g)[0].output
        cg = read(gw)
        f: Expr = Op("exp", (Op("sub", (cg, finite(gw))),))
        for _ in range(d):
            part = Op("mul", (part, f))
        why.append(f"exp({cg.tensor} - {g})" + (f"^{d}" if d > 1 else ""))
    notes[L] = [f"{L}: the sum over chunk {k1}" + (", with the chunk's own normaliser" if why else "")]
    notes[n] = [f"{n} = sum over the chunks of {L}" + (f" times {' * '.join(why)}: each chunk's terms "
                "move from the chunk's normaliser to the global one" if why else "")]
    if why:
        notes[n].append("(the global normaliser too is used as 0 where it is infinite, as in the chunks)")
    return [local, Einsum(e.output, part, "sum", (k1,))]


__all__ = ["split_kv"]
