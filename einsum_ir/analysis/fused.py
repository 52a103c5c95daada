"""The roles of a cascade's Einsums in a fused attention kernel.

A fused kernel gives each program one row tile: one coordinate of the batch
variables (b, h, ...) and a block of query positions p. It loops over tiles
of the key rank m and never stores anything indexed by both m and p. This
module reads those roles off the IR, so that the GPU model
(simulator.gpu) and the code generator (codegen.triton) work for any design
of the family without a line of per-design code:

- the score contraction: `S[.., m, p] = Q[.., e, p] * K[.., e, m]`;
- tile Einsums: element-wise over (m, p), recomputed per key tile; a scan
  along m (`cumsum[m, reverse, exclusive]`, stick-breaking's stick) is a
  tile Einsum too, computed per tile plus a running carry per row from the
  key tiles already walked, so its pass walks the keys in the scan's
  direction (`FusedForm.walk`: last to first for a suffix scan);
- reductions over m: `max`/`min`/`sum` of a tile expression (row
  statistics), or a value contraction `sum[m] W[.., m, p] * V[.., f, m]`;
- row Einsums: element-wise over (p[, f]) after or between reductions
  (normalisers, the epilogue);
- hoisted Einsums: no key rank and nothing that depends on it (a gate
  projection X W_g): computed before the kernel.

Passes. A reduction that reads a row statistic needs it final, so it runs in
a later pass over the keys, except in the online case: a sum whose terms are
homogeneous of degree one in exp(-G), where the normaliser G is computed
from max reductions of the same pass. Then the running sum is rescaled by
exp(G_old - G_new) whenever G grows (softmax's online form, derived, not
written by the user). Which statistics are normalisers and which sums are
rescaled, and why, is decided by einsum_ir.rewrites.derive, the functions
the online rewrite calls too (`Reduction.rescale` is its Rescale, whose
`why()` the rewrite prints); what the kernel does not generate of that
derivation (a power of exp(A - G), two normalisers in one term, a min)
runs in a later pass, the reason in `FusedForm.not_online`. A design that
does not fit gets a FusedFormError naming the Einsum and the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EinError
from ..ir import Access, Cascade, Einsum, Expr, Idx, Op, accesses, index_vars


class FusedFormError(EinError):
    """The cascade does not fit the fused attention kernel family."""


@dataclass(frozen=True)
class Reduction:
    """A reduction over the key rank, computed in pass `pass_`.

    `kind` is 'max', 'min', 'sum' or 'value' (a value contraction: `weight`
    times `value`, contracted over keys with tensor cores). `rescaled`: the
    terms carry exp(-G) of the pass's normaliser, so the running value is
    multiplied by exp(G_old - G_new) when G changes."""

    einsum: Einsum
    kind: str
    pass_: int
    rescaled_by: str | None = None    # the normaliser G whose growth rescales the running value
    weight: Expr | None = None        # the term (without V) of a value contraction
    value: Access | None = None       # the V access of a value contraction
    rescale: object = None            # the shared derivation's Rescale (einsum_ir.rewrites.derive): why it is exact

    @property
    def name(self) -> str:
        return self.einsum.name

    @property
    def rescaled(self) -> bool:
        return self.rescaled_by is not None


@dataclass(frozen=True)
class Score:
    """A score contraction `S[.., m, p] = Q[.., e, p] * K[.., e, m]`: one
    tensor-core product per tile. A design may have several over the same
    keys (differential attention); the kernel walks the keys once for all."""
    einsum: Einsum
    q: Access
    k: Access
    contracted: str = ""       # its head dimension's variable (MLA's rotary part: another than the first's)

    @property
    def name(self) -> str:
        return self.einsum.name


@dataclass(frozen=True)
class FusedForm:
    cascade: Cascade
    key: str                      # the key index variable (m)
    query: str | None             # the query index variable (p); None: one query (decode)
    batch: tuple[str, ...]        # the row tile's scalar coordinates (b, h)
    contracted: str               # the score contractions' variable (e)
    feature: str | None           # the value feature variable (f)
    scores: tuple[Score, ...]
    tile: tuple[Einsum, ...]
    reductions: tuple[Reduction, ...]
    rows: tuple[Einsum, ...]
    hoisted: tuple[Einsum, ...]
    normalisers: dict[int, tuple[str, ...]] = field(default_factory=dict)   # pass -> online normalisers G
    not_online: dict[str, str] = field(default_factory=dict)   # sum -> why it does not join its normaliser's pass

    @property
    def k(self) -> Access:
        """The first score's key operand (its indices say how heads share K)."""
        return self.scores[0].k

    def score(self, name: str) -> Score | None:
        return next((s for s in self.scores if s.name == name), None)

    @property
    def passes(self) -> int:
        return 1 + max((r.pass_ for r in self.reductions), default=0)

    def in_pass(self, k: int) -> list[Reduction]:
        return [r for r in self.reductions if r.pass_ == k]

    def tile_einsum(self, name: str) -> Einsum | None:
        s = self.score(name)
        if s is not None:
            return s.einsum
        return next((e for e in self.tile if e.name == name), None)

    def tile_deps(self, expr: Expr) -> list[Einsum]:
        """Tile Einsums (not scores) an expression needs, dependencies first."""
        return [t for t in self._tile_closure(expr) if self.score(t.name) is None]

    def scores_of(self, expr: Expr) -> list[Score]:
        """Score contractions an expression needs (directly or through tile Einsums)."""
        names = {t.name for t in self._tile_closure(expr)}
        return [s for s in self.scores if s.name in names]

    def _tile_closure(self, expr: Expr) -> list[Einsum]:
        out: list[Einsum] = []

        def visit(x: Expr):
            for a in accesses(x):
                t = self.tile_einsum(a.tensor)
                if t is not None and t not in out:
                    visit(t.expr)
                    if t.predicate is not None:
                        visit(t.predicate)
                    out.append(t)
        visit(expr)
        return out

    def scans_in_pass(self, k: int) -> list[Einsum]:
        """Tile Einsums of pass k that scan along the key rank: each carries
        a running value per row from one key tile to the next of the walk."""
        return [t for t in self.tile_einsums_in_pass(k) if t.scan is not None]

    def walk(self, k: int) -> str:
        """The order pass k visits its key tiles: 'reverse' (last to first)
        for a suffix scan over the keys, 'forward' for a prefix scan, 'any'
        (full tiles, then partial ones) when nothing is carried across tiles."""
        dirs = {"reverse" if t.scan.reverse else "forward" for t in self.scans_in_pass(k)}
        return dirs.pop() if len(dirs) == 1 else "any"

    @property
    def splittable(self) -> bool:
        """Can the keys be split among programs (split-KV)? One pass, and no
        scan carry (a carry runs through every key tile in order)."""
        return self.passes == 1 and all(self.walk(k) == "any" for k in range(self.passes))

    def pass_exprs(self, k: int) -> list[Expr]:
        """The terms and predicates that pass k evaluates per tile."""
        out = []
        for r in self.in_pass(k):
            out.append(r.einsum.expr)
            if r.einsum.predicate is not None:
                out.append(r.einsum.predicate)
        return out

    def scores_in_pass(self, k: int) -> list[Score]:
        """The score contractions pass k computes per tile (the generator emits
        these dot products and the GPU model charges exactly these)."""
        names = {s.name for x in self.pass_exprs(k) for s in self.scores_of(x)}
        return [s for s in self.scores if s.name in names]

    def tile_einsums_in_pass(self, k: int) -> list[Einsum]:
        """Tile Einsums pass k computes per tile, once each, dependencies first."""
        out: list[Einsum] = []
        for x in self.pass_exprs(k):
            for t in self.tile_deps(x):
                if t not in out:
                    out.append(t)
        return out

    def chain_to(self, g: str) -> list[Einsum]:
        """Row Einsums from the running maxima to the normaliser g, in order:
        recomputed per key tile while g is a running value."""
        rows = {e.name: e for e in self.rows}
        out: list[Einsum] = []

        def visit(n):
            if n in rows and rows[n] not in out:
                for a in rows[n].reads():
                    visit(a.tensor)
                out.append(rows[n])
        visit(g)
        return out

    def memory(self, a: Access) -> bool:
        """Is `a` read from memory (an input or a hoisted tensor) rather than
        computed in the kernel?"""
        return a.tensor not in {e.name for e in self.cascade.einsums} or a.tensor in {h.name for h in self.hoisted}

    def pass_loads(self, k: int) -> list[Access]:
        """Tensors in memory that pass k reads: per key tile where they carry
        the key, once per program where they do not."""
        exprs = [x for s in self.scores_in_pass(k) for x in (s.q, s.k)]
        for t in self.tile_einsums_in_pass(k) + [e for g in self.normalisers.get(k, ()) for e in self.chain_to(g)]:
            exprs += [t.expr] + ([t.predicate] if t.predicate is not None else [])
        exprs += self.pass_exprs(k)
        return list(dict.fromkeys(a for x in exprs for a in accesses(x) if self.memory(a)))

    def epilogue_loads(self) -> list[Access]:
        """Tensors in memory that the row Einsums read."""
        exprs = [x for e in self.rows for x in (e.expr, e.predicate) if x is not None]
        return list(dict.fromkeys(a for x in exprs for a in accesses(x) if self.memory(a)))

    def predicates(self, k: int) -> list[Expr | None]:
        """Predicates of everything the pass computes per tile (None: none)."""
        preds = []
        for r in self.in_pass(k):
            preds.append(r.einsum.predicate)
            for t in self._tile_closure(r.einsum.expr):   # scores included: their removed points are 0
                preds.append(t.predicate)
        return preds


def refused_by_both(c: Cascade, fused: FusedFormError, chunked: EinError) -> FusedFormError:
    """Both kernel families' reasons in one error, located where the likelier
    family points: the chunked generator's for a design with a recurrence
    (a state carried over chunks, which no fused kernel runs), else the
    fused generator's."""
    first = chunked if any(t.iterative for t in c.tensors) and chunked.loc is not None else fused
    return FusedFormError(f"{fused.message}\n  and {chunked.message}", first.loc, first.source)


def _fail(e: Einsum | None, why: str, c: Cascade) -> FusedFormError:
    where = f"{e.name}: " if e is not None else ""
    return FusedFormError(f"{c.name} does not fit a fused attention kernel: {where}{why}",
                          e.loc if e is not None else None, c.source)


def _factors(x: Expr) -> list[Expr]:
    if isinstance(x, Op) and x.name == "mul":
        return _factors(x.args[0]) + _factors(x.args[1])
    return [x]


def _plain(a: Access) -> bool:
    return all(isinstance(i, Idx) for i in a.indices)


def _score_candidates(c: Cascade):
    """Every contraction `S = Q * K` summed over one variable both operands
    carry, with its (q, k, key, query, contracted) readings."""
    for e in c.einsums:
        fs = _factors(e.expr)
        if (e.reduce != "sum" or len(e.reduced) != 1 or len(fs) != 2 or e.iterative_var or e.is_initial
                or not all(isinstance(f, Access) for f in fs)):
            continue
        (red,) = e.reduced
        a, b = fs
        va, vb = set(index_vars(a)), set(index_vars(b))
        if red not in va or red not in vb or e.predicate is not None and red in index_vars(e.predicate):
            continue                        # the kernel's tl.dot over e cannot skip terms of the sum
        # K has exactly one variable Q lacks (the key); of Q's own variables the
        # last is the query (none: decode) and the rest are batch (MQA's heads)
        for q, k in ((a, b), (b, a)):
            only_k = set(index_vars(k)) - set(index_vars(q))
            only_q = [v for v in index_vars(q) if v not in index_vars(k)]
            if len(only_k) == 1:
                yield e, q, k, next(iter(only_k)), (only_q[-1] if only_q else None), red


def _find_scores(c: Cascade):
    """The key variable (from the first score contraction whose key a later
    Einsum reduces) and every score contraction over the same keys."""
    found = None
    for e, q, k, key, query, red in _score_candidates(c):
        if any(key in x.reduced for x in c.einsums if x is not e):
            found = (e, key, query, red)
            break
    if found is None:
        raise _fail(None, "no score contraction S[.., m, p] = Q[.., e, p] * K[.., e, m] over one key variable m "
                          "that a later Einsum reduces", c)
    first, key, query, contracted = found
    batch = {v for v in first.output_vars if v not in (key, query)}
    scores: dict[str, Score] = {}
    for e, q, k, key2, query2, red in _score_candidates(c):
        if key2 != key or e.name in scores:
            continue
        if query2 != query or {v for v in e.output_vars if v not in (key, query)} != batch:
            continue        # not a score of the row tile (a bias shared across heads): an in-tile reduction
        if red in (key, query) or red in batch:
            continue
        scores[e.name] = Score(e, q, k, red)     # another head dimension (MLA's rotary part): its own tile width
    return tuple(scores.values()), key, query, contracted


def recognise(c: Cascade, env: dict | None = None) -> FusedForm:
    """The fused-kernel roles of `c`, or a FusedFormError saying which Einsum
    does not fit and why. A rank read at constant indices (branches stacked
    on a component rank) is unrolled first, which needs its extent in `env`."""
    from ..unroll import UnrollError, unroll_constant_indices
    for e in c.einsums:
        if e.iterative_var or e.is_initial:
            raise _fail(e, "an explicit recurrence; write the design without one (the 3-pass form) and "
                           "the generator derives the online form itself", c)
    if any(r.parent is not None for r in c.ranks):
        raise _fail(None, "partitioned ranks (tiles written by hand); write the unpartitioned form and "
                          "let the mapping choose the tiles", c)
    try:
        c = unroll_constant_indices(c, env)
    except UnrollError as err:
        raise FusedFormError(f"{c.name} does not fit a fused attention kernel: {err.message}", err.loc,
                             err.source) from None
    scores, key, query, contracted = _find_scores(c)
    score_names = {s.name for s in scores}
    batch = tuple(v for v in scores[0].einsum.output_vars if v not in (key, query))
    rowvars = set(batch) | ({query} if query else set())
    tilevars = rowvars | {key}
    inputs = {t.name for t in c.inputs} | {e.name for e in c.einsums if e.name not in score_names}

    # which tensors depend on the key rank (transitively)
    keyed = set(score_names)
    for e in c.einsums:
        if any(a.tensor in keyed for a in e.reads()):
            keyed.add(e.name)

    tile, rows, hoisted, reductions = [], [], [], []
    kinds: dict[str, str] = {n: "tile" for n in score_names}
    feature = None
    for e in c.einsums:
        if e.name in score_names:
            continue
        vars_ = set(e.iteration_vars)
        over_tile = key in vars_ and (query is None or query in vars_)
        if over_tile and e.reduced and key not in e.reduced and query not in e.reduced:
            # over keys x queries and reduced over other ranks: computed in the tile, never materialised
            tile.append(_in_tile_reduction(c, e, tilevars))
            kinds[e.name] = "tile"
            continue
        if e.name not in keyed and not (over_tile and not e.reduced):
            # never hoist anything over keys x queries: that is a tile
            hoisted.append(e)
            kinds[e.name] = "hoisted"
            continue
        if key in vars_ and not e.reduced:
            extra = vars_ - tilevars
            if extra:
                raise _fail(e, f"element-wise over the key rank but also over {', '.join(sorted(extra))}; "
                               "a tile holds only the query and key positions", c)
            if not _plain(e.output):
                raise _fail(e, "a tile tensor must be written at plain index variables", c)
            tile.append(e)
            kinds[e.name] = "tile"
            continue
        if e.reduced == (key,):
            red = _reduction(c, e, key, rowvars, tilevars, kinds, inputs, query)
            if red.kind == "value":
                f = next(v for v in index_vars(red.value) if v not in tilevars)
                if feature not in (None, f):
                    raise _fail(e, f"value contractions over two feature variables ({feature}, {f})", c)
                feature = f
            reductions.append(red)
            kinds[e.name] = "row"
            continue
        if e.reduced:
            others = [v for v in e.reduced if v != key]
            raise _fail(e, f"reduces over {', '.join(others)}" + (f" together with the key rank {key}"
                           if key in e.reduced else "") + "; a fused kernel reduces only over keys", c)
        if key in vars_:
            raise _fail(e, "uses the key rank in an unsupported way", c)
        rows.append(e)
        kinds[e.name] = "row"
    for e in tile + [r.einsum for r in reductions] + rows:
        if e.scan is not None and not (e in tile and e.scan.var == key):
            raise _fail(e, _scan_refusal(e, key, query), c)
    for e in tile + [r.einsum for r in reductions] + rows:
        for a in e.reads():
            if kinds.get(a.tensor) == "tile" and e in rows:
                raise _fail(e, f"reads the tile tensor {a.tensor} without reducing over the key rank", c)
            if kinds.get(a.tensor) in ("tile", "row") and a.indices != c.writers(a.tensor)[0].output.indices:
                # values live in registers at the program's own coordinates: a shifted,
                # transposed or constant index would read another program's value
                raise _fail(e, f"reads {a.tensor} at {a}, not at the indices it is written at "
                               f"({c.writers(a.tensor)[0].output}); a fused kernel holds it only there", c)
    if not tile and all(r.kind == "value" and isinstance(r.weight, Access) for r in reductions):
        raise _fail(reductions[0].einsum if reductions else scores[0].einsum,
                    f"the scores {scores[0].name} feed the value contraction with no map between: the product is "
                    "associative (linear attention), so a kernel over keys x queries is the wrong order", c)
    for t in c.outputs:
        if kinds.get(t.name) == "tile":
            raise _fail(c.writers(t.name)[0], "an output over both keys and queries; a fused kernel never "
                                              "stores the score matrix", c)
    form = FusedForm(c, key, query, batch, contracted, feature, scores, tuple(tile), tuple(reductions), tuple(rows),
                     tuple(hoisted))
    return _check_walks(_assign_passes(form))


def _scan_refusal(e: Einsum, key: str, query: str | None) -> str:
    """Why a scan inside the kernel is not generated. A scan along the keys
    of the tile is (a carry across the walk, `_check_walks`); one with no
    key x query tile (a running sum of gates along the keys, as forgetting
    attention's) is hoisted: computed before the kernel, O(n)."""
    s = e.scan
    where = "along the query rank" if s.var == query else f"along {s.var}"
    why = ("a program holds one tile of rows, so a scan across rows or batch coordinates would need the "
           "other programs' values; it is not generated (a scan along the key rank of the tile is)")
    return f"{s} {where} of ({', '.join(e.output_vars)}): {why}"


def _check_walks(form: FusedForm) -> FusedForm:
    """Scans along the keys of a tile run in the walk, each with a running
    carry per row: the walk of a pass has one direction (a suffix scan walks
    the key tiles from the last down), and a scan's terms must not read a
    statistic that is still running in the same walk (the carry would sum
    terms taken under different values of it)."""
    c = form.cascade
    for k in range(form.passes):
        scans = form.scans_in_pass(k)
        if len({t.scan.reverse for t in scans}) > 1:
            fwd = next(t for t in scans if not t.scan.reverse)
            rev = next(t for t in scans if t.scan.reverse)
            raise _fail(rev, f"{rev.scan} (a suffix scan) and {fwd.name}'s {fwd.scan} (a prefix scan) run in the "
                             "same walk over the keys; one walk visits the key tiles in one order (last to first "
                             "for a suffix scan, first to last for a prefix scan), so they are not generated "
                             "together", c)
        running = {r.name for r in form.in_pass(k)} | set(form.normalisers.get(k, ()))
        for t in scans:
            hit = _reads_running(form, t, running)
            if hit:
                raise _fail(t, f"{t.scan} along the keys reads {hit}, a statistic still running in the same walk "
                               "over the keys; its carry would add terms taken under different values of it", c)
    return form


def _reads_running(form: FusedForm, t: Einsum, running: set[str]) -> str | None:
    """The running statistic tile Einsum t reads (through tile Einsums), if any."""
    for x in [t.expr] + ([t.predicate] if t.predicate is not None else []):
        for a in accesses(x):
            if a.tensor in running:
                return a.tensor
            dep = form.tile_einsum(a.tensor)
            if dep is not None and form.score(dep.name) is None:
                hit = _reads_running(form, dep, running)
                if hit:
                    return hit
    return None


def _in_tile_reduction(c: Cascade, e: Einsum, tilevars: set) -> Einsum:
    """An Einsum over keys x queries reduced over other ranks (a second
    score over another head dimension, a bias reduced over features): the
    kernel loops over the reduced ranks inside each tile."""
    if not _plain(e.output) or set(e.output_vars) - tilevars:
        raise _fail(e, "an in-tile reduction must be written at plain index variables of the tile "
                       f"({', '.join(sorted(tilevars))})", c)
    if e.predicate is not None and set(index_vars(e.predicate)) & set(e.reduced):
        raise _fail(e, f"a predicate over the reduced rank{'s' * (len(e.reduced) > 1)} {', '.join(e.reduced)} "
                       "of an in-tile reduction; write the condition as a select in the map", c)
    return e


def _reduction(c, e, key, rowvars, tilevars, kinds, inputs, query=None) -> Reduction:
    if e.reduce in ("max", "min"):
        bad = set(e.iteration_vars) - tilevars
        if bad:
            raise _fail(e, f"a {e.reduce} reduction over keys also ranges over {', '.join(sorted(bad))}", c)
        return Reduction(e, e.reduce, 0)
    extra = set(e.iteration_vars) - tilevars
    if not extra:
        return Reduction(e, "sum", 0)
    def is_value(x):
        return (isinstance(x, Access) and x.tensor in inputs and key in index_vars(x)
                and len(set(index_vars(x)) - tilevars) == 1)
    vs = [x for x in accesses(e.expr) if is_value(x)]
    if query is not None and any(query in index_vars(x) for x in vs):
        # the kernel loads one (keys x features) value tile for every row of the program
        raise _fail(e, f"the values {next(x for x in vs if query in index_vars(x))} vary with the query "
                       f"variable {query}; a value contraction needs one value tile shared by every query "
                       "row (a tile term times V[.., f, m])", c)
    split = _split_value(e.expr, vs[0]) if len(vs) == 1 else None
    if split is None:
        raise _fail(e, "a sum over keys that is neither a row statistic nor a value contraction "
                       "(a tile term times one input V[.., f, m])", c)
    weight = split
    if set(index_vars(weight)) - tilevars:
        raise _fail(e, "the term multiplying the values depends on the feature variable", c)
    return Reduction(e, "value", 0, weight=weight, value=vs[0])


def _split_value(x: Expr, v: Access) -> Expr | None:
    """The weight W with x = W * v (einsum_ir.rewrites.algebra.split_factor,
    the test division deferral uses too)."""
    from ..rewrites.algebra import split_factor
    return split_factor(x, v)


def _assign_passes(form: FusedForm) -> FusedForm:
    """Each reduction's pass: after the statistics it reads are final,
    except a sum the shared online derivation (einsum_ir.rewrites.derive,
    the one the online rewrite uses) rescales by a normaliser of the
    previous pass, which joins that pass."""
    from ..rewrites.derive import running_normaliser
    c = form.cascade
    avail: dict[str, int] = {}        # statistic -> passes completed before it is final
    norm_pass: dict[str, int] = {}    # normaliser -> the pass whose walk holds it as a running value
    reds: list[Reduction] = []
    normalisers: dict[int, tuple[str, ...]] = {}
    not_online: dict[str, str] = {}
    by_name = {r.name: r for r in form.reductions}
    stats_read = _stats_reader(form, avail)
    for e in c.einsums:
        if e.name in by_name:
            r = by_name[e.name]
            term = e.expr if r.kind != "value" else r.weight
            deps = stats_read(term) | stats_read(e.predicate)
            pass_ = max((avail[d] for d in deps), default=0)
            rescale = None
            if r.kind in ("sum", "value") and pass_ > 0:
                rescale, why = _online(form, e, term, deps, pass_, avail, norm_pass, stats_read)
                if rescale is not None:
                    pass_ = pass_ - 1
                    g = rescale.normalisers[0]
                    if g not in normalisers.get(pass_, ()):
                        normalisers[pass_] = normalisers.get(pass_, ()) + (g,)
                elif why is not None:
                    not_online[e.name] = why
            reds.append(Reduction(e, r.kind, pass_, rescale.normalisers[0] if rescale else None, r.weight,
                                  r.value, rescale))
            avail[e.name] = pass_ + 1
            if r.kind in ("max", "min") and running_normaliser(e, form.key, deps) is None:
                norm_pass[e.name] = pass_
        elif e in form.rows:
            deps = {a.tensor for a in e.reads() if a.tensor in avail}
            avail[e.name] = max((avail[d] for d in deps), default=0)
            if _row_normaliser(deps, norm_pass):
                norm_pass[e.name] = norm_pass[next(iter(deps))]
    return FusedForm(**{**form.__dict__, "reductions": tuple(reds), "normalisers": normalisers,
                        "not_online": not_online})


def _row_normaliser(deps: set[str], norm_pass: dict[str, int]) -> bool:
    """The shared rule (rows made only of normalisers), over one walk: the
    normalisers it reads run in the same pass."""
    from ..rewrites.derive import row_normaliser
    return row_normaliser(deps, set(norm_pass)) and len({norm_pass[d] for d in deps}) == 1


def _stats_reader(form: FusedForm, avail: dict[str, int]):
    """stats_read(x): the statistics (keys of `avail`) x reads, directly or
    through tile Einsums (their where clauses included)."""
    def stats_read(x: Expr | None) -> set[str]:
        out: set[str] = set()
        for a in accesses(x) if x is not None else ():
            if a.tensor in avail:
                out.add(a.tensor)
            t = form.tile_einsum(a.tensor)
            if t is not None and form.score(a.tensor) is None:
                out |= stats_read(t.expr) | stats_read(t.predicate)
        return out
    return stats_read


def _online(form: FusedForm, e: Einsum, term: Expr, deps: set[str], pass_: int, avail, norm_pass, stats_read):
    """(the Rescale, None) when sum `e` joins pass pass_ - 1 by the shared
    derivation and the kernel generates its rescaling; else (None, why not),
    why being None when no normaliser of that pass was in question."""
    from ..rewrites.derive import Rescale, rescaling
    running = {d for d in deps if avail[d] == pass_}
    norms = {g for g, q in norm_pass.items() if q == pass_ - 1}
    if not running & norms:
        return None, None
    pred = stats_read(e.predicate)
    for t in form.tile_deps(term) + (form.tile_deps(e.predicate) if e.predicate is not None else []):
        pred |= stats_read(t.predicate)
    kind = {r.name: r.einsum.reduce for r in form.reductions}
    got = rescaling(e, form.key, term, running, pred & running, norms, _expander(form, running),
                    lambda g: kind.get(g, "row value"))
    if isinstance(got, str):
        return None, got
    return _kernel_rescales(form, got, norm_pass)


def _kernel_rescales(form: FusedForm, got, norm_pass) -> tuple:
    """The generated kernel's part of the online form: one normaliser per
    sum, degree 1, made of running maxima (its running value starts at
    -inf). The derivation's other cases (the online rewrite writes them)
    run the sum in the next pass instead, and say so."""
    (g, d), *more = got.degrees
    mins = [n for n in _chain_reductions(form, g) if n.einsum.reduce != "max"]
    if more:
        return None, (f"{got.why()}; the kernel rescales a running sum by one normaliser, not "
                      f"{', '.join(n for n, _ in got.degrees)}: it runs in a later pass")
    if d != 1:
        return None, (f"{got.why()}; the kernel rescales by exp(G_old - G_new), not its power {d}: it runs in a "
                      "later pass")
    if mins:
        return None, (f"{got.why()}; the kernel carries a normaliser made of running maxima, not the "
                      f"{mins[0].einsum.reduce} {mins[0].name}: it runs in a later pass")
    return got, None


def _chain_reductions(form: FusedForm, g: str) -> list[Reduction]:
    """The reductions normaliser g is made of (itself, or through rows)."""
    reds = {r.name: r for r in form.reductions}
    rows = {e.name: e for e in form.rows}
    out, todo, seen = [], [g], set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in reds:
            out.append(reds[n])
        elif n in rows:
            todo += [a.tensor for a in rows[n].reads()]
    return out


def _expander(form: FusedForm, running: set[str]):
    """Tile Einsums (not scores) as the kernel computes them, for
    exp_degree. A scan whose terms read no running statistic is a leaf
    (G-free); one whose terms do stands for that statistic, so no degree is
    defined (its carry would hold terms under an old G)."""
    reader = _stats_reader(form, {n: 0 for n in running})

    def expand(a: Access) -> Expr | None:
        t = form.tile_einsum(a.tensor)
        if t is None or form.score(a.tensor) is not None:
            return None
        if t.scan is not None:
            hit = sorted(reader(t.expr) | reader(t.predicate))
            return Access(hit[0], ()) if hit else None
        return t.expr
    return expand


__all__ = ["FusedForm", "FusedFormError", "Reduction", "Score", "recognise", "refused_by_both"]
