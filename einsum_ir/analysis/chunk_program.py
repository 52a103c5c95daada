"""The tile program of a chunked, linear-time kernel: what runs, in order,
derived once from a ChunkedForm at given extents, and immutable.

The chunked generator (codegen.chunked) renders it step by step and the GPU
model (simulator.gpu.predict_chunked) charges it step by step; neither reads
the cascade's roles on its own, so what runs and what is predicted cannot
differ. A program owns one coordinate of the batch variables:

    for each loop (a walk over the sequence in chunks):
        states   the recurrences' initial values, before the walk
        walk     `trips` chunks; per chunk, in cascade order, each step is
                   value       a per-chunk tensor (stored if it is the output)
                   accumulate  a sum (max, min) over the loop's own token,
                               combined across chunks, final after the walk
                   state       a recurrence's next iterate (`st_X_new`)
                 and each step says how its reduction runs: `map` (none),
                 `dot` (tl.dot, with the factors of each side), `cumsum`
                 (a prefix sum along a chunk axis) or `reduce` (a masked
                 broadcast product reduced with tl.sum / max / min)
        after    Einsums with no token variable that read the walk's results

`loads` list the tensors in memory each part reads, with the register axes
of each load and its elements (per chunk in the walk, once otherwise);
hoisted Einsums run before the kernel; element-wise Einsums (`inline`) are
substituted where they are read. Register axes have fixed `blocks` (padded
extents, the chunk size): these decide which products are tensor-core dots,
so the program is made for one set of extents.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

from ..ir import Access, Einsum, Expr, Idx, Op, Sym, conjuncts, index_vars, rank_of, substitute
from .chunked import ChunkedForm, ChunkedFormError

MAX_REGISTER_AXIS = 256          # a register axis held whole (E, F, a query block)


def padded(n: int) -> int:
    """A register axis of n elements: the next power of two, at least 16
    (the same rule as mappers.gpu_mapping.padded, which this package cannot import)."""
    return max(16, 1 << (int(n) - 1).bit_length())


@dataclass(frozen=True)
class Dot:
    """sum[c] X[a, c] * Y[c, b] on tensor cores: which factors (and which
    conditions) go to the [a, c] side, the [c, b] side, and after the dot."""
    a: str
    b: str
    c: str
    left: tuple[int, ...]
    right: tuple[int, ...]
    post: tuple[int, ...]
    mask_left: tuple[int, ...]
    mask_right: tuple[int, ...]
    mask_post: tuple[int, ...]


@dataclass(frozen=True)
class Prefix:
    """sum[c] X[.., c] where c <= o: a cumulative sum along c, read at o;
    `bound` is the index of that condition among the step's conditions."""
    c: str
    o: str
    bound: int


@dataclass(frozen=True)
class Load:
    """A tile of a tensor in memory, as read after substitution."""
    access: Access
    axes: tuple[str, ...]
    elements: int               # elements of the tile (padded blocks)
    per_chunk: bool             # its address moves with the chunk


@dataclass(frozen=True)
class Step:
    """One Einsum computed by the kernel: its role, output register axes,
    the conditions that limit its points, and how its reduction runs."""
    einsum: Einsum
    role: str                   # value | output | accumulate | state | init
    axes: tuple[str, ...]       # register axes of the result (accumulators and states: the full output axes)
    conds: tuple[Expr, ...]     # its predicate, the partition bound, padding of reduced register axes
    how: str                    # map | dot | cumsum | reduce | scan (an Einsum's own cumsum[m0])
    reduced: tuple[str, ...] = ()        # reduced register axes
    dot: Dot | None = None
    prefix: Prefix | None = None
    loads: tuple[Load, ...] = ()

    @property
    def name(self) -> str:
        return self.einsum.name


@dataclass(frozen=True)
class ChunkLoop:
    var: str                    # the chunk index m1, or the token variable
    axes: tuple[str, ...]       # the chunk's own register axes
    trips: int                  # chunks walked
    states: tuple[Step, ...]    # initial values (role init), before the walk
    steps: tuple[Step, ...]     # per chunk, in order
    after: tuple[Step, ...]     # after the walk

    @property
    def accumulators(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.role == "accumulate")


@dataclass(frozen=True)
class ChunkProgram:
    form: ChunkedForm
    batch: tuple[str, ...]
    axes: tuple[str, ...]                 # every register axis, in a fixed order
    blocks: MappingProxyType              # axis -> BLOCK size
    loops: tuple[ChunkLoop, ...]
    hoisted: tuple[Einsum, ...]
    inline: MappingProxyType              # element-wise Einsums by name, substituted where read
    reads: tuple[str, ...]                # tensors the kernel reads from memory (inputs, then hoisted)

    @property
    def cascade(self):
        return self.form.cascade

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step in program order (states, walk, after; per loop)."""
        return tuple(s for lp in self.loops for s in lp.states + lp.steps + lp.after)


# ------------------------------------------------------------------ axes

def factors(x: Expr) -> list[Expr]:
    if isinstance(x, Op) and x.name == "mul":
        return factors(x.args[0]) + factors(x.args[1])
    return [x]


def point_masks(form: ChunkedForm, e: Einsum, loop: str | None) -> list[Expr]:
    """What limits e's points: its predicate and the partition bound m1 * M0 + m0 < M."""
    out = conjuncts(e.predicate)
    its = set(e.iteration_vars)
    if form.partitioned and (form.root in its or form.inner in its and loop in its):
        m = Idx(form.root) if form.root in its else Op("add", (Op("mul", (Idx(loop), Sym(rank_of(form.inner)))),
                                                              Idx(form.inner)))
        out.append(Op("lt", (m, Sym(rank_of(form.root)))))
    return out


class _Axes:
    """The register axes of each value, as the generator forms them: an
    element-wise value has the union of its operands' axes, a load the axes
    of its indices, a materialised value its writer's axes renamed to the
    reader's. Loads met on the way are recorded."""

    def __init__(self, form: ChunkedForm, blocks: dict, reads: set[str]):
        self.f, self.blocks, self.reads = form, blocks, reads
        self.pos = {a: i for i, a in enumerate(form.axes)}
        self.loop_vars = {lp.var for lp in form.loops if lp.var not in lp.axes}
        self.held: dict[str, tuple[str, ...]] = {}
        self.loop: str | None = None
        self.loads: list[Load] = []

    def sort(self, axes) -> tuple[str, ...]:
        return tuple(sorted(set(axes), key=self.pos.__getitem__))

    def var(self, v: str) -> tuple[str, ...]:
        f = self.f
        if v in f.batch or v in self.loop_vars:
            return ()
        if v == f.root:
            return (f.inner,)
        if v in self.pos:
            return (v,)
        raise ChunkedFormError(f"{f.cascade.name}: {v} has no place in the chunked kernel")

    def of(self, x: Expr) -> tuple[str, ...]:
        if isinstance(x, Idx):
            return self.var(x.name)
        if isinstance(x, Access):
            return self.access(x)
        if isinstance(x, Op):
            return self.sort(a for y in x.args for a in self.of(y))
        return ()

    def index_axes(self, a: Access) -> tuple[str, ...]:
        return self.sort(ax for i in a.indices for ax in self.of(i))

    def access(self, a: Access) -> tuple[str, ...]:
        f = self.f
        if a.tensor in f.inline:
            e = f.inline[a.tensor]
            binding = {i.name: x for i, x in zip(e.output.indices, a.indices)}
            parts = [substitute(e.expr, binding)] + [substitute(p, binding) for p in point_masks(f, e, self.loop)]
            return self.sort(ax for p in parts for ax in self.of(p))
        if a.tensor in self.held:
            return self.renamed(a)
        axes = self.index_axes(a)
        if a.tensor in self.reads:
            moves = any(v == self.loop or v == f.root or v in f.token_axes()
                        for i in a.indices for v in _vars(i))
            n = 1
            for ax in axes:
                n *= self.blocks[ax]
            self.loads.append(Load(a, axes, n, moves))
        return axes

    def renamed(self, a: Access) -> tuple[str, ...]:
        """A materialised value read here: each of its writer's register axes
        becomes the reader's axis at that position (the generator refuses the
        reads that have none)."""
        f = self.f
        writer = next(w for w in f.cascade.writers(a.tensor) if not w.is_initial)
        rename = {}
        for mine, theirs in zip(writer.output.indices, a.indices):
            if not isinstance(mine, Idx):
                continue
            own = f.inner if mine.name == f.root else mine.name if mine.name in self.pos else None
            got = self.of(theirs)
            if own is not None and len(got) == 1:
                rename[own] = got[0]
        return self.sort(rename.get(x, x) for x in self.held[a.tensor])


def _vars(i: Expr) -> set[str]:
    return set(index_vars(i))


# ------------------------------------------------------------------ steps

def in_range(form: ChunkedForm, blocks: dict, env: dict, axis: str) -> Expr | None:
    """Padding of a register axis, or the tail of a token chunk."""
    if axis in form.token_axes():
        return None if form.partitioned else Op("lt", (Idx(axis), Sym(rank_of(axis))))
    if blocks[axis] != int(env[rank_of(axis)]):
        return Op("lt", (Idx(axis), Sym(rank_of(axis))))
    return None


def _dot(ax: _Axes, e: Einsum, c: str, outa: tuple[str, ...], conds: list[Expr]) -> Dot | None:
    """The tensor-core split of sum[c] X[a, c] * Y[c, b], if there is one."""
    if len(outa) != 2 or min(ax.blocks[x] for x in outa + (c,)) < 16:
        return None
    a, b = outa

    def side(axes):
        s = set(axes)
        return a if s <= {a, c} else b if s <= {b, c} else "post" if s <= {a, b} else None
    fs = [side(ax.of(x)) for x in factors(e.expr)]
    ms = []
    for p in conds:
        s = set(ax.of(p))
        ms.append("post" if s <= {a, b} and c not in s else a if s <= {a, c} else b if s <= {b, c} else None)
    if None in fs or None in ms or a not in fs or b not in fs:
        return None
    pick = lambda xs, k: tuple(i for i, s in enumerate(xs) if s == k)     # noqa: E731
    return Dot(a, b, c, pick(fs, a), pick(fs, b), pick(fs, "post"), pick(ms, a), pick(ms, b), pick(ms, "post"))


def _prefix(ax: _Axes, e: Einsum, c: str, outa: tuple[str, ...], conds: list[Expr]) -> Prefix | None:
    """sum[j] X[.., j] where j <= m0 as a cumulative sum: only the inclusive
    form (an exclusive one as cumsum - x is inf - inf = NaN where x is
    infinite); j < m0 takes the masked reduction."""
    for k, p in enumerate(conds):
        if not (isinstance(p, Op) and p.name == "le" and p.args[0] == Idx(c)
                and isinstance(p.args[1], Idx) and p.args[1].name in outa):
            continue
        o = p.args[1].name
        if o in ax.of(e.expr) or ax.blocks[o] != ax.blocks[c]:
            continue
        rest = conds[:k] + conds[k + 1:]
        if any(o in ax.of(q) for q in rest if c in ax.of(q)):
            continue
        return Prefix(c, o, k)
    return None


def _step(ax: _Axes, e: Einsum, role: str, env: dict) -> Step:
    """How e runs in the current loop (ax.loop), with the axes of its result."""
    f = ax.f
    start = len(ax.loads)
    outa = ax.sort(a for i in e.output.indices if isinstance(i, Idx) for a in ax.var(i.name))
    red = [v for v in e.reduced if v in ax.pos]
    conds = point_masks(f, e, ax.loop) + [p for v in red if (p := in_range(f, ax.blocks, env, v)) is not None]
    if e.scan is not None:
        return _scan_step(ax, e, role, env, conds, start)
    how, dot, prefix = ("reduce" if red else "map"), None, None
    if e.reduce == "sum" and len(red) == 1:
        dot = _dot(ax, e, red[0], outa, conds)
        prefix = None if dot else _prefix(ax, e, red[0], outa, conds)
        how = "dot" if dot else "cumsum" if prefix else how
    ax.loads = ax.loads[:start]          # the trials above may have read factors: record each load once
    inner = ax.sort(x for p in [e.expr] + conds for x in ax.of(p))
    if how == "dot":
        axes = outa
    elif how == "cumsum":
        rest = [q for k, q in enumerate(conds) if k != prefix.bound]
        with_c = ax.sort(set(ax.of(e.expr)) | {x for q in rest if prefix.c in ax.of(q) for x in ax.of(q)}
                         | {prefix.c})
        axes = ax.sort([prefix.o if x == prefix.c else x for x in with_c]
                       + [x for q in rest if prefix.c not in ax.of(q) for x in ax.of(q)])
    else:
        axes = tuple(x for x in inner if x not in red)
    if role in ("accumulate", "state", "init"):
        axes = outa
    return Step(e, role, axes, tuple(conds), how, tuple(red), dot, prefix, tuple(dict.fromkeys(ax.loads[start:])))


def _blocks(form: ChunkedForm, env: dict, block_n: int) -> dict:
    """BLOCK size per register axis: the chunk size of a partitioned design
    (a power of two, at least 16), `block_n` tokens of an unpartitioned one,
    padded extents for the rest (at most MAX_REGISTER_AXIS)."""
    c, blocks = form.cascade, {}
    chunk_axes = form.token_axes()
    for a in form.axes:
        if form.partitioned and a in chunk_axes:
            n = int(env[rank_of(form.inner)])
            if n < 16 or n & (n - 1):
                raise ChunkedFormError(f"{c.name}: the chunk size {rank_of(form.inner)} = {n} must be a "
                                       "power of two, at least 16 (a Triton tile)")
            blocks[a] = n
        elif a in chunk_axes:
            blocks[a] = block_n
        else:
            n = int(env[rank_of(a)])
            if padded(n) > MAX_REGISTER_AXIS:
                raise ChunkedFormError(
                    f"{c.name}: {rank_of(a)} = {n} is held whole in each program's registers "
                    f"(at most {MAX_REGISTER_AXIS}); a chunked kernel walks only "
                    + ", ".join(rank_of(lp.var) for lp in form.loops) + " in chunks")
            blocks[a] = padded(n)
    return blocks


def _scan_step(ax: _Axes, e: Einsum, role: str, env: dict, conds: list[Expr], start: int) -> Step:
    """`cumsum[m0]` inside one chunk: tl.cumsum (tl.cumprod) along the chunk
    axis, its points outside the predicate, the partition and the register
    padding set to the identity first. Inclusive only: an exclusive scan as
    cumsum - x is inf - inf = NaN where x is infinite (write it as a
    predicated sum over j < m0, a masked reduction)."""
    f, sc = ax.f, e.scan
    if sc.exclusive:
        raise ChunkedFormError(f"{f.cascade.name}: {e.name}: {sc} inside the chunked kernel: an exclusive scan is "
                               "not generated (cumsum - x is NaN where x is infinite); write the sum over "
                               f"j < {sc.var} as a predicated reduction", e.loc, f.cascade.source)
    if e.reduced:
        raise ChunkedFormError(f"{f.cascade.name}: {e.name}: {sc} of a reduction over {', '.join(e.reduced)} is "
                               "not generated in the chunked kernel; reduce in an Einsum of its own first",
                               e.loc, f.cascade.source)
    pad = in_range(f, ax.blocks, env, sc.var)
    conds = conds + ([pad] if pad is not None else [])
    axes = ax.sort(set(x for p in [e.expr] + conds for x in ax.of(p)) | set(ax.var(sc.var)))
    return Step(e, role, axes, tuple(conds), "scan", (), None, None, tuple(dict.fromkeys(ax.loads[start:])))


def _loop(ax: _Axes, k: int, env: dict, block_n: int) -> ChunkLoop:
    f = ax.f
    lp = f.loops[k]
    ax.loop = lp.var
    trips = int(env[rank_of(lp.var)]) if f.partitioned else -(-int(env[rank_of(lp.var)]) // block_n)
    states = []
    for init, step in lp.states:
        held = ax.sort(a for i in step.output.indices if isinstance(i, Idx) for a in ax.var(i.name))
        states.append(replace(_step(ax, init, "init", env), axes=held))     # the state's full tile
        ax.held[step.name] = held
    steps, inner = [], []
    for e in lp.einsums:
        role = ("accumulate" if e.reduced and lp.var in e.reduced else "state" if e.iterative_var else
                "output" if f.cascade.tensor(e.name).role == "output" else "value")
        s = _step(ax, e, role, env)
        steps.append(s)
        if role in ("value", "output"):
            ax.held[e.name] = s.axes
            inner.append(e.name)
    for name in inner:                   # per-chunk values do not outlive the walk
        ax.held.pop(name, None)
    for s in steps:
        if s.role == "accumulate":
            ax.held[s.name] = s.axes
    ax.loop = None
    after = []
    for e in f.after[k]:
        s = _step(ax, e, "output" if f.cascade.tensor(e.name).role == "output" else "value", env)
        after.append(s)
        ax.held[e.name] = s.axes
    return ChunkLoop(lp.var, lp.axes, trips, tuple(states), tuple(steps), tuple(after))


def chunk_program(form: ChunkedForm, env: dict, block_n: int = 64) -> ChunkProgram:
    """The chunked kernel's program for `form` at extents `env`; `block_n`:
    tokens per chunk of an unpartitioned design (a partitioned one has M0)."""
    blocks = _blocks(form, env, block_n)
    c = form.cascade
    reads = tuple(t.name for t in c.inputs) + tuple(e.name for e in form.hoisted)
    ax = _Axes(form, blocks, set(reads))
    loops = tuple(_loop(ax, k, env, block_n) for k in range(len(form.loops)))
    return ChunkProgram(form, form.batch, form.axes, MappingProxyType(dict(blocks)), loops, form.hoisted,
                        MappingProxyType(dict(form.inline)), reads)


def batch_programs(program: ChunkProgram, env: dict) -> int:
    """Programs launched: one per coordinate of the batch variables."""
    n = 1
    for v in program.batch:
        n *= int(env[rank_of(v)])
    return n


__all__ = ["ChunkLoop", "ChunkProgram", "Dot", "Load", "MAX_REGISTER_AXIS", "Prefix", "Step", "batch_programs",
           "chunk_program", "factors", "in_range", "point_masks"]
