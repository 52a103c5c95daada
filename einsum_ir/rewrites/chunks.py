"""Split-KV of a design written with its recurrence (attention-1pass, or the
output of `--to online`): the tiles k1 of the key rank are grouped into S
chunks of T = K1 / S tiles (k1 = s * T + t); each chunk runs the design's
own recurrence over its tiles from the initial values, and the chunks' last
iterates are merged by the associative combine each recurrence admits:

- a running max (min) X[t+1] = max(X[t], L): max over the chunks;
- a value made of running maxima only, G[t+1] = f(X[t+1], ..): f of the
  merged maxima;
- a rescaled sum X[t+1] = L + X[t] * exp(a(t) - b(t+1)), where b is a(t)
  one iterate on and L's terms are exp(A - b) times b-free factors:
  sum over the chunks of X_s * exp(a_s - a), a_s the chunk's last a, a the
  merged one;
- a running sum X[t+1] = X[t] + L: sum over the chunks.
Anything else is refused with the tensor and the reason.
"""
from __future__ import annotations

from ..ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, Rank, Sym, accesses, offset_of
from .algebra import exp_degree, fresh, map_expr, rename_vars
from .build import assemble_rewrite, finite
from .walk import RewriteError, plain_vars

FORM = "split-kv"


def _fail(c: Cascade, e: Einsum | None, why: str) -> RewriteError:
    where = f"{e.name}: " if e is not None else ""
    return RewriteError(f"cannot rewrite {c.name} to the split-kv form: {where}{why}",
                        e.loc if e is not None else None, c.source)


class _Rec:
    """The recurrence over the tiles k1 and how to merge its chunks."""

    def __init__(self, c: Cascade, K1: str):
        self.c, self.K1, self.k1 = c, K1, K1.lower()
        self.walk = [e for e in c.einsums if self.k1 in e.iteration_vars or e.iterative_var == self.k1]
        self.walk_names = {e.name for e in self.walk}
        self.iterative = {t.name for t in c.tensors if K1 in t.iterative}
        self.steps = {e.name: e for e in c.einsums if e.iterative_var == self.k1}
        self.inits = {e.name: e for e in c.einsums if e.is_initial and e.name in self.iterative}
        self.kind: dict[str, tuple] = {}

    def slot(self, name: str) -> int:
        return self.c.tensor(name).ranks.index(self.K1)

    def step_row(self, name: str) -> Einsum | None:
        """A per-tile map over k1 (not over the tile's keys): PRM, SPD."""
        ws = self.c.writers(name)
        if name in self.iterative or len(ws) != 1 or ws[0].reduced or name not in self.walk_names:
            return None
        return ws[0] if self.K1 in self.c.tensor(name).ranks else None

    def inline(self, x: Expr) -> Expr:
        def fn(n):
            if isinstance(n, Access) and self.step_row(n.tensor) is not None:
                row = self.step_row(n.tensor)
                return self.inline(rename_vars(row.expr, dict(zip(plain_vars(row.output), n.indices))))
            return None
        return map_expr(x, fn)

    def at(self, a: Access, shift: int | None) -> bool:
        """Is `a` an iterate of a recurrence at k1 (+ shift)?"""
        if a.tensor not in self.iterative:
            return False
        o = offset_of(a.indices[self.slot(a.tensor)])
        return o is not None and o[0] == self.k1 and (shift is None or o[1] == shift)

    def shift(self, x: Expr) -> Expr:
        """x one iterate back: iterates at k1+1 read at k1."""
        def fn(n):
            if isinstance(n, Access) and self.at(n, 1):
                idx = list(n.indices)
                idx[self.slot(n.tensor)] = Idx(self.k1)
                return Access(n.tensor, tuple(idx))
            return None
        return map_expr(x, fn)


def _check_masks(r: _Rec) -> None:
    """A where clause can leave a chunk's first tiles without a key; a
    rescaling exp(G(t) - G(t+1)) is then NaN while G is still -inf, unless
    G is used through a finite stand-in (the online rewrite's SG)."""
    pred = next((e for e in r.walk if e.predicate is not None), None)
    if pred is None:
        return
    for name, kind in r.kind.items():
        if kind[0] == "sum" and not _finite_form(kind[1]):
            raise _fail(r.c, r.steps[name], f"{pred.name}'s where clause can leave a chunk's first tiles without "
                        f"a key, and {name}'s rescaling exp({kind[1]} - ...) is then NaN (its normaliser is -inf); "
                        "split the recurrence-free design, or its --to online form, which guards the normaliser")


def _finite_form(a: Expr) -> bool:
    """Is a the finite stand-in `select(abs(x) < inf, x, 0)` of some x? (A
    guard such as `select(x < inf, x, 0)` lets -inf through.)"""
    return isinstance(a, Op) and a.name == "select" and a == finite(a.args[1])


def _split_add(x: Expr, own) -> tuple[Expr, Expr] | None:
    """x = L + own * P (either order): (L, P); own * P as a product."""
    if not (isinstance(x, Op) and x.name == "add"):
        return None
    for a, b in (x.args, x.args[::-1]):
        if isinstance(b, Op) and b.name == "mul":
            for p, q in (b.args, b.args[::-1]):
                if own(p) and not any(own(n) for n in accesses(q)) and not any(own(n) for n in accesses(a)):
                    return a, q
        if own(b) and not any(own(n) for n in accesses(a)):
            return a, Num(1.0)
    return None


def classify(r: _Rec) -> None:
    """r.kind[X]: ('max', op) | ('derived', f) | ('sum', L, a, d) | ('plain',)."""
    c = r.c
    for name, e in r.steps.items():
        def own(n, name=name):
            return isinstance(n, Access) and n.tensor == name and r.at(n, 0)
        f = r.inline(e.expr)
        init = r.inits[name].expr
        if isinstance(f, Op) and f.name in ("max", "min") and any(own(a) for a in f.args):
            other = [a for a in f.args if not own(a)]
            ident = Num(float("-inf")) if f.name == "max" else Num(float("inf"))
            if len(other) != 1 or any(own(n) for n in accesses(other[0])) or init != ident:
                raise _fail(c, e, f"a {f.name} recurrence that is not {name}[t+1] = {f.name}({name}[t], L) "
                            f"from {ident}")
            r.kind[name] = ("max", f.name)
            continue
        if not any(own(n) for n in accesses(f)):
            if any(isinstance(n, Access) and (r.at(n, 0) or (n.tensor in r.walk_names and
                   n.tensor not in r.iterative and r.step_row(n.tensor) is None)) for n in accesses(f)):
                raise _fail(c, e, f"{name} reads per-tile values or previous iterates without reading itself: "
                            "not a value made of running maxima")
            r.kind[name] = ("derived", f)
            continue
        got = _split_add(f, own)
        if got is None or init != Num(0.0):
            raise _fail(c, e, f"{name}'s recurrence is neither a running max, a running sum nor a rescaled "
                        "running sum L + X[t] * exp(a(t) - a(t+1)) from 0")
        L, P = got
        r.kind[name] = ("plain",) if P == Num(1.0) else _rescaled(r, e, L, P)


def _rescaled(r: _Rec, e: Einsum, L: Expr, P: Expr) -> tuple:
    c = r.c
    P0 = _one_level(r, P)
    d, fac = 0, None
    for f in _factors(P0):
        if not (isinstance(f, Op) and f.name == "exp" and isinstance(f.args[0], Op) and f.args[0].name == "sub"):
            raise _fail(c, e, f"the factor {f} rescaling {e.name} is not exp(a - b)")
        if fac not in (None, f):
            raise _fail(c, e, f"{e.name} is rescaled by two different factors")
        fac, d = f, d + 1
    a, b = (r.inline(x) for x in fac.args[0].args)
    if r.shift(b) != a:
        raise _fail(c, e, f"the rescaling exp({a} - {b}) of {e.name} is not exp(G(t) - G(t+1)) of one value G")
    # the tensor the new terms subtract: G(t+1) itself, or a per-tile row holding it (SGM = finite(RGM[m1+1]))
    names = [b.tensor] if isinstance(b, Access) else \
        [w.name for w in r.walk if r.step_row(w.name) is not None and r.inline(w.output) == b]
    for g in names:
        def expand(x: Access, g=g):
            w = c.writers(x.tensor)
            return w[0].expr if (len(w) == 1 and x.tensor in r.walk_names and x.tensor not in r.iterative
                                 and x.tensor != g) else None
        if exp_degree(L, g, expand) == d:
            return ("sum", a, d)
    raise _fail(c, e, f"the new terms of {e.name} are not exp(A - G)^{d} times G-free factors for its "
                f"normaliser G = {b}, so a chunk's sum cannot be moved to another normaliser")


def _one_level(r: _Rec, x: Expr) -> Expr:
    """x with per-tile rows inlined until an exp(...) factor shows."""
    if isinstance(x, Access) and r.step_row(x.tensor) is not None:
        row = r.step_row(x.tensor)
        return _one_level(r, rename_vars(row.expr, dict(zip(plain_vars(row.output), x.indices))))
    if isinstance(x, Op) and x.name == "mul":
        return Op("mul", tuple(_one_level(r, a) for a in x.args))
    return x


def _factors(x: Expr) -> list[Expr]:
    if isinstance(x, Op) and x.name == "mul":
        return _factors(x.args[0]) + _factors(x.args[1])
    return [x]


def split_recurrence(c: Cascade, K: str) -> tuple[Cascade, str, list[str]] | None:
    """The split-KV form of a design with a recurrence over K's tiles, or
    None when it has none."""
    outer = next((x.name for x in c.ranks if x.parent == K and x.part == "outer"), None)
    if outer is None or not any(outer in t.iterative for t in c.tensors):
        return None
    r = _Rec(c, outer)
    for e in r.walk:
        if r.k1 in e.reduced or (not e.is_initial and outer not in c.tensor(e.name).ranks):
            raise _fail(c, e, f"reduces over the tiles {r.k1} outside the recurrence; the split needs every "
                        f"value over {outer} carried by a recurrence")
    for t in c.tensors:
        if t.iterative - {outer}:
            raise _fail(c, c.writers(t.name)[0], f"a recurrence over {', '.join(sorted(t.iterative - {outer}))}")
    classify(r)
    taken = {x.name for x in c.ranks} | {t.name for t in c.tensors}
    S, T = fresh(taken, f"{K}S", f"{K}_S"), fresh(taken, f"{K}T", f"{K}_T")
    _check_masks(r)
    # T tiles per chunk (free), S = ceil(K1 / T) chunks: only the last chunk can end in tiles past
    # the keys (their points do not exist: a tile that adds nothing), and every chunk starts with keys
    count = Op("floordiv", (Op("sub", (Op("add", (Sym(outer), Sym(T))), Num(1))), Sym(T)))
    ranks = c.ranks + (Rank(T), Rank(S, definition=count))
    ch = _Chunker(r, S, T, c.inner_of(outer), K)
    einsums = [ch.einsum(e) if e.name in r.walk_names else e for e in c.einsums]
    combined: dict[str, str] = {}
    merge: list[Einsum] = []
    notes: dict[str, list[str]] = {}
    for e in c.einsums:
        if e.name not in r.walk_names:
            for a in accesses(e.expr) + (accesses(e.predicate) if e.predicate is not None else []):
                if a.tensor in r.iterative:
                    _combine(ch, a.tensor, combined, merge, taken, notes)
                elif a.tensor in r.walk_names:
                    raise _fail(c, e, f"reads {a.tensor}, a per-tile value, after the walk")
    tail = [ch.epilogue(e, combined) for e in einsums if e.name not in r.walk_names]
    body = [e for e in einsums if e.name in r.walk_names]
    doc = [f"{c.name} split over the keys: the {outer} tiles of {K} are grouped into {S} = ceil({outer} / {T}) chunks",
           f"of {T} tiles; each chunk runs {c.name}'s recurrence from its initial values,",
           "and the chunks' last iterates are merged by the combine each recurrence admits (Flash-Decoding).",
           f"Written by `attnc rewrite {c.name} --to split-kv`; checked equal to {c.name} on random inputs.",
           "Algebra: a running max merges by max; a sum rescaled by exp(G(t) - G(t+1)) whose new terms are",
           "exp(A - G) times G-free factors holds, at a chunk's end, its terms with the chunk's G; times",
           "exp(G_chunk - G) they are the terms with the merged G, so the merge is a sum (associative)."]
    out, text = assemble_rewrite(c, ranks, body + merge + tail, {}, f"{c.name}-split-kv", doc, notes, FORM)
    return out, text, doc


class _Chunker:
    """k1 -> (s, t): tiles of the walk numbered within their chunk."""

    def __init__(self, r: _Rec, S: str, T: str, K0: str, K: str):
        self.r, self.S, self.T, self.K0, self.K = r, S, T, K0, K
        self.s, self.t, self.k0 = S.lower(), T.lower(), K0.lower()
        self.tile = Op("add", (Op("mul", (Idx(self.s), Sym(T))), Idx(self.t)))

    def index(self, x: Expr) -> Expr:
        r = self

        def fn(n):
            if isinstance(n, Idx) and n.name == r.r.k1:
                return r.tile
            if isinstance(n, Access) and n.tensor in r.r.walk_names and r.r.K1 in r.r.c.tensor(n.tensor).ranks:
                return r.access(n)
            return None
        return map_expr(x, fn)

    def access(self, a: Access) -> Access:
        slot = self.r.c.tensor(a.tensor).ranks.index(self.r.K1)
        i = a.indices[slot]
        o = offset_of(i)
        if isinstance(i, Num) and i.value == 0:
            pair = [Idx(self.s), Num(0)]
        elif o is not None and o[0] == self.r.k1:
            pair = [Idx(self.s), Idx(self.t) if o[1] == 0 else Op("add", (Idx(self.t), Num(1)))]
        else:
            raise _fail(self.r.c, None, f"{a} reads the tiles of {self.r.K1} at {i}, not at the current tile")
        idx = [self.index(x) for x in a.indices]
        return Access(a.tensor, tuple(idx[:slot] + pair + idx[slot + 1:]))

    def einsum(self, e: Einsum) -> Einsum:
        pred = None if e.predicate is None else self.index(e.predicate)
        if self.r.k1 in e.iteration_vars and self.k0 in e.iteration_vars:
            key = Op("add", (Op("mul", (self.tile, Sym(self.K0))), Idx(self.k0)))
            inside = Op("lt", (key, Sym(self.K)))       # the past-the-end keys of the last tile
            pred = inside if pred is None else Op("and", (pred, inside))
        return Einsum(self.access(e.output), self.index(e.expr), e.reduce, e.reduced, pred)

    def final(self, a: Access, combined: dict[str, str] | None) -> Access:
        """An iterate at the chunk's end (combined None) or merged."""
        slot = self.r.c.tensor(a.tensor).ranks.index(self.r.K1)
        idx = list(a.indices)
        if combined is None:
            return Access(a.tensor, tuple(idx[:slot] + [Idx(self.s), Sym(self.T)] + idx[slot + 1:]))
        return Access(combined[a.tensor], tuple(idx[:slot] + idx[slot + 1:]))

    def epilogue(self, e: Einsum, combined: dict[str, str]) -> Einsum:
        def fn(n):
            if isinstance(n, Access) and n.tensor in combined:
                return self.final(n, combined)
            return None
        pred = None if e.predicate is None else map_expr(e.predicate, fn)
        return Einsum(e.output, map_expr(e.expr, fn), e.reduce, e.reduced, pred)


def _combine(ch: _Chunker, name: str, combined: dict, merge: list, taken: set, notes: dict) -> None:
    """The merge of the chunks' last iterates of `name` (and what it needs)."""
    if name in combined:
        return
    r = ch.r
    kind = r.kind.get(name)
    if kind is None:
        raise _fail(r.c, None, f"{name} is read after the walk but is not a recurrence the split recognises")
    step = r.steps[name]
    out_idx = [i for k, i in enumerate(step.output.indices) if k != r.slot(name)]
    out_idx = [Idx(offset_of(i)[0]) for i in out_idx]
    last = ch.final(Access(name, tuple(Idx(offset_of(i)[0]) if not isinstance(i, Num) else i
                                        for i in step.output.indices)), None)

    def at_end(x: Expr, merged: bool) -> Expr:
        def fn(n):
            if isinstance(n, Access) and n.tensor in r.iterative and r.at(n, None):
                if merged:
                    _combine(ch, n.tensor, combined, merge, taken, notes)
                return ch.final(n, combined if merged else None)
            return None
        return map_expr(x, fn)
    cname = fresh(taken, "C" + name, "C" + name + "_")
    if kind[0] == "max":
        value, red, why = last, kind[1], f"the {kind[1]} of the chunks' running {kind[1]}ima"
    elif kind[0] == "plain":
        value, red, why = last, "sum", "the sum of the chunks' running sums"
    elif kind[0] == "derived":
        value, red, why = at_end(kind[1], True), "sum", f"{name}'s expression on the merged values"
    else:
        _, a, d = kind
        f = Op("exp", (Op("sub", (at_end(a, False), at_end(a, True))),))
        value, red = last, "sum"
        for _ in range(d):
            value = Op("mul", (value, f))
        why = (f"sum over the chunks of {name} times exp(G_chunk - G)" + (f"^{d}" if d > 1 else "")
               + ": each chunk's terms moved to the merged normaliser")
    combined[name] = cname
    reduce = () if kind[0] == "derived" else (ch.s,)
    merge.append(Einsum(Access(cname, tuple(out_idx)), value, red if reduce else "sum", reduce))
    notes[cname] = [f"{cname}: {why}"]


__all__ = ["classify", "split_recurrence"]
