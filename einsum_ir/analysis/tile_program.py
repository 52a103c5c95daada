"""The tile program of a fused attention kernel: what runs, in order, derived
once from the IR and immutable.

The Triton generator (codegen.triton) renders it statement by statement, and
the GPU model (simulator.gpu) charges it statement by statement; neither reads
the cascade's roles on its own, so what runs and what is predicted cannot
differ. A program owns one row tile (BLOCK_M queries of one batch coordinate):

    for each pass k:
        rows     Einsums over the rows whose inputs are final before the pass
        init     running statistics at their identities
        walk     for each key tile in the block table:
                     scores   one tensor-core product per score contraction the pass reads
                     early    tile Einsums that read no statistic of this pass
                     maxima   max/min reductions
                     normalise  per online normaliser G: its chain of row Einsums
                              from the running maxima, then the rescale of the sums
                              that carry exp(-G)
                     late     tile Einsums that read this pass's normalisers
                     sums     sum reductions and value products (tensor cores)
    epilogue     the remaining row Einsums, then the stores

A pass whose tile Einsums scan along the keys (`ScanCarry`) walks its key
tiles in one order, `walk`: 'reverse' (last to first) for a suffix scan,
'forward' for a prefix scan, merging the block table's full and partial
lists; each scan keeps a running carry per row across the walk. Other
passes walk full tiles, then partial ones ('any').

`loads` lists the tensors in memory each pass reads (per key tile where they
carry the key, once per program where not).
"""
from __future__ import annotations

from dataclasses import dataclass

from collections import Counter

from ..ir import ROUNDING, Access, Einsum, Expr, Idx, Num, Op, Sym, accesses, walk
from ..ops import KIND_UNITS, RULES, op_kind
from .fused import FusedForm, FusedFormError, Reduction, Score


@dataclass(frozen=True)
class Normalise:
    """An online normaliser: recomputed per tile from the running maxima
    (`chain`), and the running values rescaled by exp(G_old - G_new)."""
    name: str
    chain: tuple[Einsum, ...]
    rescaled: tuple[Reduction, ...]


@dataclass(frozen=True)
class ScanCarry:
    """A scan along the keys inside the walk (`Z = cumsum[m, reverse,
    exclusive] X where ..`): per key tile, the term x (removed and padded
    points set to the identity), its tile-local scan along the keys, and the
    result `carry (+ or *) local scan` (exclusive: the local scan at the
    previous key); then the carry takes in the tile's total. The carry, one value per row,
    starts at the identity and holds the keys already walked: those after
    the tile in a reverse walk (a suffix scan), before it in a forward one."""
    einsum: Einsum

    @property
    def op(self) -> str:
        return self.einsum.scan.op

    @property
    def reverse(self) -> bool:
        return self.einsum.scan.reverse

    @property
    def exclusive(self) -> bool:
        return self.einsum.scan.exclusive

    @property
    def name(self) -> str:
        return self.einsum.name

    def ops(self) -> Counter:
        """What the kernel does per tile beyond computing the term, as
        (kind, axes) -> count (codegen.triton renders exactly these): the
        local inclusive scan, for an exclusive scan its value at the
        previous key (a gather and a select, exact where x is infinite or
        zero), combining with the carry, the tile's total (a sum: a row sum
        of x; a product: the inclusive scan at the tile's last key, a select
        and a row sum) and the carry's update."""
        kind = self.einsum.scan.kind
        out: Counter = Counter()
        out[kind, POINT] += 2                         # the local scan; carry (+ or *) local
        out[kind, ROW] += 1                           # carry (+ or *)= total
        out["select", POINT] += 2 * self.exclusive    # the previous key's value, the first key's identity
        out["int", KEY] += 2 * self.exclusive         # the previous key's column
        out["add", POINT] += 1                        # the total's row sum
        out["select", POINT] += self.op == "cumprod"  # ... of the last key's inclusive product
        return out


# a walk in one order merges the two ascending lists of the block table (full
# and partial key tiles): per tile two scalar loads' guards, the choice, the
# two cursors' updates and the tile's start, in scalar integer arithmetic
WALK_MERGE_INT = 7


def scan_work(pp: "PassProgram") -> Counter:
    """Operations of one tile step that a pass's scans over the keys add
    (the GPU model charges these with the tile's statements)."""
    out: Counter = Counter()
    for sc in pp.scans:
        out.update(sc.ops())
    if pp.walk != "any":
        out["int", UNIFORM] += WALK_MERGE_INT
    return out


def walk_notes(program: "TileProgram") -> list[str]:
    """What a carried walk is, in words (the GPU model's notes)."""
    out = []
    for pp in program.passes:
        for sc in pp.scans:
            order = "from the last down" if pp.walk == "reverse" else "from the first up"
            excl = "exclusive: the scan at the previous key, a gather; " if sc.exclusive else ""
            out.append(f"a scan carried in the walk: {sc.name} = {sc.einsum.scan} along the keys; pass {pp.index} "
                       f"visits its key tiles {order} (full and partial ones merged in key order), each tile a "
                       f"tl.{sc.op} of its terms plus a running value per row ({excl}charged per tile: "
                       "ScanCarry.ops)")
    return out


@dataclass(frozen=True)
class PassProgram:
    index: int
    rows: tuple[Einsum, ...]
    init: tuple[Reduction, ...]
    scores: tuple[Score, ...]
    early: tuple[Einsum, ...]
    maxima: tuple[Reduction, ...]
    normalise: tuple[Normalise, ...]
    late: tuple[Einsum, ...]
    sums: tuple[Reduction, ...]
    loads: tuple[Access, ...]
    predicates: tuple[Expr, ...] = ()     # distinct predicates a partial tile evaluates, once each
    masked: tuple[Einsum, ...] = ()       # statements a partial tile masks with a select (see _masked)
    walk: str = "any"                     # key tile order: 'forward' | 'reverse' (scans carried) | 'any'
    scans: tuple[ScanCarry, ...] = ()     # scans along the keys, each with its carry (in `early`)
    mask_table: bool = False              # partial tiles read their keep mask from a table (_mask_table_pays)

    @property
    def tile_einsums(self) -> tuple[Einsum, ...]:
        return self.early + self.late

    @property
    def values(self) -> tuple[Reduction, ...]:
        return tuple(r for r in self.sums if r.kind == "value")


@dataclass(frozen=True)
class HeadPacking:
    """Query heads that share their keys and values (GQA, MQA), packable as
    rows of one program: `var` (h) is a batch coordinate that every operand
    over the keys reads only as `var / group` (GQA's `K[b, h / G, e, m]`) or
    not at all (MQA: the group is var's whole rank). A packed program owns
    `pack` consecutive heads of one group and BLOCK_M rows of the packed
    row space r = p x pack + g (the group's heads fastest), so K and V are
    loaded once for all of them; the generator renders it and the GPU model
    charges the same grid and block table (`packed_tile_classes`)."""
    var: str
    rank: str
    group: str            # the symbol dividing var in the key operands, or var's rank (MQA)

    def size(self, env: dict) -> int:
        return int(env[self.group])


@dataclass(frozen=True)
class TileProgram:
    form: FusedForm
    passes: tuple[PassProgram, ...]
    epilogue: tuple[Einsum, ...]
    epilogue_loads: tuple[Access, ...]
    packing: HeadPacking | None = None
    pack_refusal: str = ""          # why query heads cannot be packed (when packing is None)

    @property
    def cascade(self):
        return self.form.cascade

    def pack_count(self, pack: int, env: dict) -> int:
        """The heads a program packs for a mapping's `pack_heads`: 1, or a
        divisor of the group; anything else is refused with the reason (never
        run unpacked while the model charges packed, or the reverse)."""
        if pack == 1:
            return 1
        if self.packing is None:
            raise FusedFormError(f"pack_heads={pack}: {self.cascade.name} cannot pack query heads: "
                                 f"{self.pack_refusal}")
        g = self.packing.size(env)
        if g % pack:
            raise FusedFormError(f"pack_heads={pack} does not divide the group of query heads that share a key "
                                 f"head in {self.cascade.name} ({self.packing.group} = {g})")
        return pack

    def uses_mask_table(self, k: int, pack: int) -> bool:
        """Does pass k read its partial tiles' keep masks from a table (built
        with the block tables, codegen.runtime) rather than evaluate the
        predicate? Not with packed heads, whose rows interleave queries."""
        return self.passes[k].mask_table and pack == 1


# a predicate that costs at least this many operations per point is read from a table instead: one
# byte per point (bounds included), whose address add, load and compare cost about three (the GPU
# model charges the compare per point and the bytes; a predicate under twice that is computed)
MASK_TABLE_MIN_OPS = 6


def _mask_table_pays(form: FusedForm, preds: tuple, walk: str) -> bool:
    """One predicate per pass, walked in any order (a scan's ordered walk
    indexes its partial tiles differently), costing MASK_TABLE_MIN_OPS or
    more per point: neighborhood masks over a 2D grid, dilated windows."""
    if walk != "any" or len(preds) != 1:
        return False
    ops = statement_ops(form, preds[0], cond=True)
    return sum(v * sum(KIND_UNITS[kind].values()) for (kind, ax), v in ops.items() if ax == POINT) \
        >= MASK_TABLE_MIN_OPS


def _rows_before(form: FusedForm, k: int, done: set[str]) -> tuple[Einsum, ...]:
    """Row Einsums (cascade order) whose inputs are final before pass k and
    that are not computed yet."""
    avail = {r.name: r.pass_ + 1 for r in form.reductions}
    rows = {e.name for e in form.rows}
    out = []
    for e in form.rows:
        if e.name in done:
            continue
        deps = [a.tensor for a in e.reads() if a.tensor in avail or a.tensor in rows]
        if all(avail.get(d, 0) <= k for d in deps) and all(d in done for d in deps if d in rows):
            out.append(e)
            done.add(e.name)
    return tuple(out)


def _reads_pass_statistics(form: FusedForm, t: Einsum, names: set[str]) -> bool:
    """Does tile Einsum t read (through other tile Einsums) a statistic of the pass?"""
    for x in [t.expr] + ([t.predicate] if t.predicate is not None else []):
        for a in accesses(x):
            if a.tensor in names:
                return True
            dep = form.tile_einsum(a.tensor)
            if dep is not None and form.score(dep.name) is None and _reads_pass_statistics(form, dep, names):
                return True
    return False


def _pass_program(form: FusedForm, k: int, done: set[str]) -> PassProgram:
    rows = _rows_before(form, k, done)
    reds = tuple(form.in_pass(k))
    names = {r.name for r in reds} | set(form.normalisers.get(k, ()))
    tiles = form.tile_einsums_in_pass(k)
    late = tuple(t for t in tiles if _reads_pass_statistics(form, t, names))
    norms = tuple(Normalise(g, tuple(form.chain_to(g)), tuple(r for r in reds if r.rescaled_by == g))
                  for g in form.normalisers.get(k, ()))
    scores = tuple(form.scores_in_pass(k))
    masked = _masked(form, [s.einsum for s in scores] + list(tiles), list(reds))
    preds = tuple(dict.fromkeys(e.predicate for e in masked if e.predicate is not None))
    return PassProgram(k, rows, reds, scores, tuple(t for t in tiles if t not in late),
                       tuple(r for r in reds if r.kind in ("max", "min")), norms, late,
                       tuple(r for r in reds if r.kind not in ("max", "min")), tuple(form.pass_loads(k)), preds,
                       masked, form.walk(k), tuple(ScanCarry(t) for t in form.scans_in_pass(k)),
                       _mask_table_pays(form, preds, form.walk(k)))


def _removed_value(e: Einsum) -> float:
    """What a tile value holds where its predicate removes a point."""
    return {"max": float("-inf"), "min": float("inf")}.get(e.reduce, 0.0)


def _masked(form: FusedForm, values: list[Einsum], reds: list[Reduction]) -> tuple[Einsum, ...]:
    """The statements a partial tile must mask (`tl.where(keep, x, removed)`).
    A reduction whose term is a masked tile value V that already holds the
    reduction's identity where V's predicate (the same as the reduction's,
    or the reduction has none) removes a point needs no mask of its own.
    A tile value needs its mask only if a reader relies on its removed
    points: a reduction that dropped its mask for it, or a statement with
    another predicate; a reader with the same predicate overrides them.
    A scan along the keys always masks its term (removed and padded points
    add the identity to the carry), never its result: at a removed point
    it holds the running value, as in the executor, so no reader relies on
    it holding the identity there."""
    by_name = {v.name: v for v in values}
    relied: set[str] = set()
    masked_reds = []
    for r in reds:
        term = r.weight if r.kind == "value" else r.einsum.expr
        v = by_name.get(term.tensor) if isinstance(term, Access) else None
        ident = {"max": float("-inf"), "min": float("inf")}.get(r.kind, 0.0)
        if (v is not None and v.predicate is not None and v.scan is None and _removed_value(v) == ident
                and r.einsum.predicate in (None, v.predicate)):
            relied.add(v.name)
        else:
            masked_reds.append(r.einsum)
        _rely(r.einsum, r.einsum.expr, by_name, relied)
    for v in reversed(values):                  # readers after what they read
        if v.predicate is not None and v.name in relied or v.scan is not None:
            _rely(v, v.expr, by_name, relied)
        else:
            _rely(v, v.expr, by_name, relied, only_other=True)
    return tuple(v for v in values if v.predicate is not None and v.name in relied or v.scan is not None) \
        + tuple(masked_reds)


def _rely(reader: Einsum, x: Expr, by_name: dict, relied: set, only_other: bool = False):
    """Mark the tile values `reader` reads with another predicate than its own."""
    for a in accesses(x):
        v = by_name.get(a.tensor)
        if v is not None and v.predicate != reader.predicate:
            relied.add(v.name)
    if reader.predicate is not None and not only_other:
        for a in accesses(reader.predicate):
            if a.tensor in by_name:
                relied.add(a.tensor)


def tile_program(form: FusedForm) -> TileProgram:
    """The fused kernel's program for `form` (see the module docstring)."""
    done: set[str] = set()
    passes = tuple(_pass_program(form, k, done) for k in range(form.passes))
    epilogue = tuple(e for e in form.rows if e.name not in done)
    packing, why = head_packing(form)
    return TileProgram(form, passes, epilogue, tuple(form.epilogue_loads()), packing, why)


# ------------------------------------------------------------------ GQA / MQA head packing

def head_packing(form: FusedForm) -> tuple[HeadPacking | None, str]:
    """(the packable head coordinate, '') or (None, why not): the innermost
    batch variable the query operands read plainly and every operand over
    the keys reads only divided by one symbol, or not at all."""
    from ..ir import rank_of
    c = form.cascade
    if any(isinstance(n, Access) for e in c.einsums for a in e.reads() for i in a.indices for n in walk(i)):
        return None, "it gathers (an index reads a tensor); packing is not generated for gathers"
    key_side = [a for e in c.einsums for a in e.reads() if form.key in _vars(a) and c.has_tensor(a.tensor)
                and any(t.name == a.tensor for t in c.inputs)]
    query_side = [s.q for s in form.scores]
    why = "every query head reads its own keys and values (no K access indexed h / G, none without h)"
    for v in reversed(form.batch):
        groups = {_divisor(i, v) for a in key_side for i in a.indices if v in _vars_of(i)}
        if None in groups or len(groups) > 1 or not all(v in _vars(q) for q in query_side):
            continue
        if any(v in _vars_of(p) for k in range(form.passes) for p in form.predicates(k) if p is not None):
            return None, f"the mask reads {v} (each head its own block table)"
        return HeadPacking(v, rank_of(v), groups.pop() if groups else rank_of(v)), ""
    return None, why


def _vars_of(x: Expr) -> set[str]:
    return {n.name for n in walk(x) if isinstance(n, Idx)}


def _vars(a: Access) -> set[str]:
    return set().union(*[_vars_of(i) for i in a.indices]) if a.indices else set()


def _divisor(i: Expr, v: str) -> str | None:
    """G when index `i` is `v / G` or `v // G` (G a symbol); else None."""
    if isinstance(i, Op) and i.name in ("div", "floordiv") and isinstance(i.args[0], Idx) \
            and i.args[0].name == v and isinstance(i.args[1], Sym):
        return i.args[1].name
    return None


def packed_tile_classes(cc, block_m: int, block_n: int, pack: int, rows: int):
    """EMPTY / PARTIAL / FULL per (packed row tile, key tile), leading batch
    axes kept: packed tile t holds rows r in [t x BLOCK_M, (t + 1) x BLOCK_M)
    of r = p x pack + g, so queries p from r // pack; its class joins the
    16-row cells those queries fall in (FULL only if every one is, EMPTY
    only if every one is). Rows past rows x pack are clamped to the last
    query by the kernel, so they add no class of their own."""
    import numpy as np
    from .tiles import CELL, EMPTY, FULL, PARTIAL, classify
    cls = classify(cc, CELL if cc.rows > 1 else block_m, block_n)      # [..., cells, key tiles]
    ntiles = -(-rows * pack // block_m)
    r0 = np.arange(ntiles) * block_m
    r1 = np.minimum(r0 + block_m, rows * pack) - 1
    c0, c1 = (r0 // pack) // CELL, (r1 // pack) // CELL
    if cc.rows == 1:
        c0, c1 = np.zeros_like(c0), np.zeros_like(c1)
    span = (c1 - c0 + 1)[:, None]

    def inside(hit):            # cells of each tile's range that are `hit`
        cum = np.concatenate([np.zeros_like(hit[..., :1, :], dtype=np.int64), np.cumsum(hit, axis=-2)], axis=-2)
        return cum[..., c1 + 1, :] - cum[..., c0, :]
    out = np.full(cls.shape[:-2] + (ntiles, cls.shape[-1]), PARTIAL, np.int8)
    out[inside(cls == FULL) == span] = FULL
    out[inside(cls == EMPTY) == span] = EMPTY
    return out


# ------------------------------------------------------------------ what a statement costs per tile
#
# The kernel computes each subexpression at the shape of its operands, with
# Triton's broadcasting: `p // W` once per query row, `m % W` once per key,
# `p - m` per point, `KW // 2` or `sqrt(E)` once (a scalar). So an operation
# is charged at its axes: POINT (block_m x block_n), ROW, KEY or UNIFORM.
# Comparisons of integer expressions in a predicate, and integer expressions
# of coordinates in a map, run in integer arithmetic ('int'); a divisor that
# is uniform over the tile is inverted once and multiplied ('mul').

UNIFORM, ROW, KEY, POINT = frozenset(), frozenset("p"), frozenset("m"), frozenset("pm")
INT_OPS = frozenset({"add", "sub", "mul", "floordiv", "mod", "neg", "max", "min"})
_LOGIC = frozenset({"and", "or", "not"})


def integer_expr(x: Expr) -> bool:
    """Coordinates, symbols and whole numbers combined by integer operators
    (the generator evaluates these in integer arithmetic)."""
    if isinstance(x, (Idx, Sym)):
        return True
    if isinstance(x, Num):
        return float(x.value).is_integer()
    return (isinstance(x, Op) and (x.name in INT_OPS or RULES[x.name].kind == "int")
            and all(integer_expr(a) for a in x.args))


def axes_of(form: FusedForm, x: Expr) -> frozenset:
    """The tile axes a value varies over: 'p' (query rows), 'm' (keys)."""
    if isinstance(x, Idx):
        return KEY if x.name == form.key else ROW if x.name == form.query else UNIFORM
    if isinstance(x, Access):
        if form.tile_einsum(x.tensor) is not None:
            return POINT
        return frozenset().union(*[axes_of(form, i) for i in x.indices]) if x.indices else UNIFORM
    if isinstance(x, Op):
        return frozenset().union(*[axes_of(form, a) for a in x.args])
    return UNIFORM


def statement_ops(form: FusedForm, x: Expr, cond: bool = False) -> Counter:
    """Operations of one evaluation of `x` over a tile, as (kind, axes) ->
    count, following how the generator renders it (a predicate if `cond`)."""
    out: Counter = Counter()
    _ops(form, x, out, "cond" if cond else "value")
    return out


def _ops(form: FusedForm, x: Expr, out: Counter, mode: str) -> frozenset:
    if isinstance(x, Access):
        for i in x.indices:
            if isinstance(i, (Op, Access)):
                _ops(form, i, out, "int")          # address arithmetic, a gather's own address included
        return axes_of(form, x)
    if not isinstance(x, Op):
        return axes_of(form, x)
    if mode == "value" and integer_expr(x) and axes_of(form, x):
        mode = "int"
    if mode == "cond" and x.name in _LOGIC:
        ax = frozenset().union(*[_ops(form, a, out, "cond") for a in x.args])
        out["logic", ax] += 1
        return ax
    if mode == "cond" and RULES[x.name].group == "compare" and all(integer_expr(a) for a in x.args):
        ax = frozenset().union(*[_ops(form, a, out, "int") for a in x.args])
        out["int", ax] += 1
        return ax
    if mode == "int" and x.name in ROUNDING:       # floor( ) in an index: of a real-valued argument
        ax = _ops(form, x.args[0], out, "value")
        out[op_kind(x), ax] += 1
        return ax
    if mode == "int":
        ax = frozenset().union(*[_ops(form, a, out, "int") for a in x.args])
        if RULES[x.name].kind is not None:
            out["int", ax] += 1
        return ax
    if x.name == "select":
        ax = _ops(form, x.args[0], out, "cond")
        ax = ax.union(*[_ops(form, a, out, "value") for a in x.args[1:]])
        out["select", ax] += 1
        return ax
    modes = ["cond" if mode == "cond" and RULES[x.name].group in ("compare", "logic") else "value"] * len(x.args)
    axs = [_ops(form, a, out, m) for a, m in zip(x.args, modes)]
    ax = frozenset().union(*axs)
    kind = op_kind(x)
    if x.name == "div" and reciprocal_divisor(form, x.args[1]) and axs[1] != ax:
        out["divide", axs[1]] += 1                 # the reciprocal, once per divisor value
        kind = "mul"
    if kind is not None:
        out[kind, ax] += 1
    return ax


def reciprocal_divisor(form: FusedForm, d: Expr) -> bool:
    """A divisor the generator inverts once and multiplies by: shape
    symbols, numbers and batch coordinates (the same for every point of the
    tile; no tensor value, so no subnormal whose reciprocal overflows)."""
    return not any(isinstance(n, Access) or isinstance(n, Idx) and n.name in (form.key, form.query)
                   for n in walk(d))


__all__ = ["HeadPacking", "INT_OPS", "KEY", "Normalise", "head_packing", "packed_tile_classes", "POINT", "PassProgram", "ROW", "TileProgram", "UNIFORM", "axes_of",
           "integer_expr", "reciprocal_divisor", "ScanCarry", "scan_work", "statement_ops", "tile_program",
           "WALK_MERGE_INT", "walk_notes"]
