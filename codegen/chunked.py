"""Triton source for a chunked, linear-time kernel, generated from the IR.

The structure comes from einsum_ir.analysis.chunked (batch coordinates,
loops over the sequence in chunks, states, element-wise Einsums to
substitute); this module turns it into code. Every value is a register
tile whose axes are a subset of the form's axes, always in the same order,
so element-wise code only broadcasts (`x[:, None]`) and never transposes.
A reduction is
- a `tl.dot` when it is a sum of a product that splits into two sides,
  [a, c] and [c, b], over one contracted axis c (both sides zeroed where c
  is out of range, so padding never leaks NaN or inf into the sum);
- a `tl.cumsum` when it is a prefix sum (`sum[j] X[.., j] where j <= m0`,
  the cumulative gates of GLA);
- otherwise a masked broadcast product reduced with tl.sum / tl.max / tl.min.
A sum over the loop's own token accumulates across chunks; a recurrence over
the chunk index is a loop-carried state (`st_X`, and `st_X_new` for the
value after this chunk's step).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from einsum_ir.analysis.chunk_program import (MAX_REGISTER_AXIS, ChunkLoop, ChunkProgram, Step,  # noqa: F401
                                              chunk_program, factors, in_range, point_masks)
from einsum_ir.analysis.chunked import ChunkedForm, ChunkedFormError
from einsum_ir.analysis.tile_program import integer_expr
from einsum_ir.ir import Access, Einsum, Expr, Idx, Num, Op, Sym, conjuncts, index_vars, rank_of, substitute, walk
from mappers.gpu_mapping import GPUMapping

from .names import Identifiers, check_source, comment_text
from .triton import (_CMP, PRELUDE, _has_gather, _nonneg, _reads, index_template, number_codes,
                     op_template, zero_quotient)

VERSION = "1"
_IDENT = {"sum": "0.0", "max": 'float("-inf")', "min": 'float("inf")'}
_DOT_T = {"bf16": "tl.bfloat16", "f16": "tl.float16"}


@dataclass
class ChunkedSource:
    """Generated source and what the launcher needs to call it."""
    text: str
    form: ChunkedForm
    mapping: GPUMapping
    blocks: dict[str, int]        # BLOCK_<axis> constexprs
    tensors: list[str]            # read by the kernel (inputs and hoisted), in argument order
    outputs: list[str]
    symbols: list[str]
    digest: str = ""
    program: ChunkProgram | None = None   # what the kernel runs: the GPU model charges this same object
    gathers: list = field(default_factory=list)   # the access of each gather site: the kernel flags site k + 1
                                                  # in `gather_err` when its index leaves the tensor


V = tuple[str, tuple[str, ...]]   # generated code and its axes


def _disagree(s: Step, what: str) -> RuntimeError:
    """The renderer met a value the program did not describe: an internal
    error (never a silently different kernel)."""
    return RuntimeError(f"internal error: the chunk program and the chunked generator disagree on {what} of "
                        f"{s.name} ({s.role}, {s.how})")


class ChunkedGenerator:
    """Renders a ChunkProgram step by step: what runs (the walk, each step's
    role and reduction, the register blocks) is the program's; this class
    decides only how each step is written."""

    def __init__(self, program: ChunkProgram, mapping: GPUMapping, env: dict):
        self.p = program
        self.f, self.c, self.m, self.env = program.form, program.cascade, mapping, env
        self.pos = {a: i for i, a in enumerate(program.axes)}
        self.loop_vars = {lp.var for lp in self.f.loops if lp.var not in lp.axes}
        self.blocks: dict[str, int] = dict(program.blocks)
        self.lines: list[str] = []
        self.ind = 1
        self.scopes: list[dict[str, str]] = [{}]     # generated code -> temporary, per loop body
        self.values: dict[str, V] = {}              # materialised tensors visible here
        self.new_state: dict[str, V] = {}           # X[m1 + 1] after this chunk's step
        self.loop: str | None = None                # the current loop variable
        self.current: Einsum | None = None          # the Einsum being generated (for messages)
        self.bools = frozenset(t.name for t in self.c.tensors if t.dtype == "bool")   # loads that are conditions
        self.tmp = 0
        self.ident = Identifiers()           # (kind, design name) -> identifier in the kernel
        self.read = list(program.reads)
        self.extents = frozenset(r.name for r in self.c.ranks)   # symbols known >= 1 (floor // and % bare)
        self.gathers: list = []                    # accesses of the bounds-checked gathered loads
        self.flagging: set = set()                 # gathered loads whose check is being rendered

    # -- emit helpers -----------------------------------------------------------------
    def out(self, line: str = ""):
        self.lines.append("    " * self.ind + line if line else "")

    def let(self, code: str, prefix: str = "x") -> str:
        """Bind `code` to a temporary once per loop body (common subexpressions)."""
        for scope in reversed(self.scopes):
            if code in scope:
                return scope[code]
        name = f"{prefix}{self.tmp}"
        self.tmp += 1
        self.out(f"{name} = {code}")
        self.scopes[-1][code] = name
        return name

    def sorted_axes(self, axes) -> tuple[str, ...]:
        return tuple(sorted(set(axes), key=self.pos.__getitem__))

    def expand(self, v: V, target: tuple[str, ...]) -> str:
        code, axes = v
        if axes == target or not axes:
            return code
        if not code.isidentifier():
            code = f"({code})"
        return f"{code}[{', '.join(':' if a in axes else 'None' for a in target)}]"

    def full(self, v: V, target: tuple[str, ...]) -> str:
        """`v` broadcast to the whole tile over `target`."""
        if v[1] == target or not target:
            return v[0]
        shape = ", ".join(f"BLOCK_{a.upper()}" for a in target)
        if not v[1]:
            return f"({v[0]} + tl.zeros(({shape},), tl.float32))"
        return f"tl.broadcast_to({self.expand(v, target)}, ({shape},))"

    def combine(self, fmt: str, args: list[V]) -> V:
        axes = self.sorted_axes(a for _, ax in args for a in ax)
        return fmt.format(*[self.expand(a, axes) for a in args]), axes

    def t(self, tensor: str) -> str:
        return self.ident("t", tensor)

    def sym(self, name: str) -> str:
        return self.ident("sym", name)

    # -- coordinates ------------------------------------------------------------------
    def var(self, v: str) -> V:
        f = self.f
        if v in f.batch or v in self.loop_vars:
            return self.ident("c", v), ()
        if v == f.root:
            return f"({self.ident('c', self.loop)} * {self.sym(rank_of(f.inner))} + offs_{f.inner})", (f.inner,)
        if v in self.pos:
            return f"offs_{v}", (v,)
        raise ChunkedFormError(f"{self.c.name}: {v} has no place in the chunked kernel")

    def index(self, e: Expr) -> V:
        if isinstance(e, Num):
            return str(int(e.value)), ()
        if isinstance(e, Sym):
            return self.sym(e.name), ()
        if isinstance(e, Idx):
            return self.var(e.name)
        if isinstance(e, Access):            # a gather: the index tensor's elements as int32 coordinates
            return self.load(e, gather=True)
        if isinstance(e, Op) and (t := index_template(e, self.extents)) is not None:
            return self.combine(t, [self.index(x) for x in e.args])
        if isinstance(e, Op):
            raise ChunkedFormError(f"the chunked kernel does not compute the index {e} ({e.name} in an index: the "
                                   "fused kernel does; the chunked one takes + - * // % min max and bitwise "
                                   "operators of coordinates, and gathers)", getattr(e, "loc", None), self.c.source)
        raise ChunkedFormError(f"cannot index with {e}", getattr(e, "loc", None), self.c.source)

    def cond(self, e: Expr) -> V:
        if isinstance(e, Op) and e.name in ("and", "or"):
            return self.combine(f"({{}} {'&' if e.name == 'and' else '|'} {{}})", [self.cond(x) for x in e.args])
        if isinstance(e, Op) and e.name == "not":
            c = self.cond(e.args[0])
            return f"({c[0]} == 0)", c[1]
        if isinstance(e, Op) and e.name in _CMP and all(integer_expr(a) for a in e.args):
            return self.combine(f"({{}} {_CMP[e.name]} {{}})", [self.index(x) for x in e.args])
        return self.value(e)

    # -- values -------------------------------------------------------------------------
    def value(self, e: Expr) -> V:
        if isinstance(e, Num):
            v = e.value
            return ('float("inf")' if v == float("inf") else 'float("-inf")' if v == float("-inf")
                    else repr(float(v))), ()
        if isinstance(e, Sym):
            return f"({self.sym(e.name)} + 0.0)", ()
        if isinstance(e, Idx):
            code, axes = self.var(e.name)
            return f"({code} + 0.0)", axes
        if isinstance(e, Access):
            return self.access(e)
        assert isinstance(e, Op)
        if e.name == "exp":
            return self.combine("tl.exp2({} * LOG2E)", [self.value(e.args[0])])
        if e.name in ("and", "or", "not") or e.name in _CMP and all(integer_expr(a) for a in e.args):
            return self.cond(e)
        if e.name in ("div", "sub") and self.c.empty_rows == "0":
            return self.combine(zero_quotient(e), [self.value(x) for x in e.args])
        t = op_template(e)
        if t is not None:
            args = [self.value(x) for x in e.args]
            codes = number_codes(e, [a[0] for a in args], self.bools)
            return self.combine(t, [(code, a[1]) for code, a in zip(codes, args)])
        raise ChunkedFormError(f"no Triton form for operator {e.name}", e.loc, self.c.source)

    def access(self, a: Access) -> V:
        if a.tensor in self.f.inline:
            return self.substituted(self.f.inline[a.tensor], a)
        if a.tensor in self.values or a.tensor in self.new_state:
            return self.materialised(a)
        if a.tensor in self.read:
            return self.load(a)
        w = self.c.writers(a.tensor)
        raise ChunkedFormError(f"{self.c.name}: {a.tensor} is read before it is computed here",
                               w[0].loc if w else None, self.c.source)

    def substituted(self, e: Einsum, a: Access) -> V:
        """An element-wise Einsum evaluated at the reader's indices."""
        binding = {i.name: x for i, x in zip(e.output.indices, a.indices)}
        body = substitute(e.expr, binding)
        conds = [substitute(p, binding) for p in self.masks(e)]
        v = self.value(body)
        for p in conds:
            v = self.combine(f"tl.where({{}}, {{}}, {_IDENT[e.reduce]})", [self.cond(p), v])
        return self.let(v[0]), v[1]

    def materialised(self, a: Access) -> V:
        """A reduction, state or accumulator read at plain coordinates of this
        chunk: its axes renamed to the reader's variables."""
        f = self.f
        e = next(w for w in self.c.writers(a.tensor) if not w.is_initial)
        code, axes = self.values.get(a.tensor, (None, ()))
        rename = {}
        for mine, theirs in zip(e.output.indices, a.indices):
            if isinstance(mine, Op):                  # the state's m1 + 1: X[m1] is st_X, X[m1 + 1] is st_X_new
                step = self._loop_step(theirs)
                if step == 1 and a.tensor in self.new_state:
                    code, axes = self.new_state[a.tensor]
                elif step == 0 and self.loop is not None:
                    pass
                elif self.loop is None and theirs == Sym(rank_of(mine.args[0].name)):
                    pass                                  # after the loop: st_X is the last iterate
                else:
                    raise self._far(a, e)
                continue
            v = mine.name
            if v in f.batch:
                if theirs != mine:
                    raise self._far(a, e)
                continue
            if v in self.loop_vars:
                if self._loop_step(theirs) != 0:
                    raise self._far(a, e)
                continue
            if v == f.root:                           # held on the m0 axis: the reader says which position
                x = self._chunk_position(theirs)
                if x is None:
                    raise self._far(a, e)
                rename[f.inner] = x
            elif v in self.pos:
                if isinstance(theirs, Idx) and theirs.name in self.pos and self.blocks[theirs.name] == self.blocks[v]:
                    rename[v] = theirs.name
                elif self._inner_of_root(theirs):
                    rename[v] = f.inner
                else:
                    raise self._far(a, e)
            else:
                raise self._far(a, e)
        new_axes = tuple(rename.get(x, x) for x in axes)
        if len(set(new_axes)) != len(new_axes):
            raise self._far(a, e)
        want = self.sorted_axes(new_axes)
        if want != new_axes:
            perm = [new_axes.index(x) for x in want]
            code = f"tl.trans({code})" if len(perm) == 2 else f"tl.permute({code}, {tuple(perm)})"
        return code, want

    def _loop_step(self, x: Expr) -> int | None:
        """0 for the current chunk (m1, m / M0), 1 for the next (m1 + 1, m / M0 + 1), else None."""
        if self.loop is None:
            return None
        if x == Idx(self.loop) or self._outer_of_root(x):
            return 0
        if (isinstance(x, Op) and x.name == "add" and x.args[1] == Num(1)
                and (x.args[0] == Idx(self.loop) or self._outer_of_root(x.args[0]))):
            return 1
        return None

    def _chunk_position(self, x: Expr) -> str | None:
        """The chunk axis of a position of m in the current chunk: m itself
        (its m0), or a chunk start (m1 * M0, m / M0 * M0) plus a chunk axis (m0,
        j = M0, m % M0); anything else (m1 * M0 + m0 + 1) is None."""
        f = self.f
        if x == Idx(f.root):
            return f.inner
        if self.loop is None or not (isinstance(x, Op) and x.name == "add"):
            return None
        for base, off in (x.args, x.args[::-1]):
            if not (isinstance(base, Op) and base.name == "mul" and Sym(rank_of(f.inner)) in base.args):
                continue
            start = base.args[0] if base.args[1] == Sym(rank_of(f.inner)) else base.args[1]
            if self._loop_step(start) != 0:
                continue
            if self._inner_of_root(off):
                return f.inner
            if isinstance(off, Idx) and off.name in f.token_axes() and self.blocks[off.name] == self.blocks[f.inner]:
                return off.name
        return None

    def _outer_of_root(self, x: Expr) -> bool:
        f = self.f
        return (f.root is not None and isinstance(x, Op) and x.name in ("div", "floordiv")
                and x.args[0] == Idx(f.root) and x.args[1] == Sym(rank_of(f.inner)))

    def _inner_of_root(self, x: Expr) -> bool:
        f = self.f
        return (f.root is not None and isinstance(x, Op) and x.name == "mod"
                and x.args[0] == Idx(f.root) and x.args[1] == Sym(rank_of(f.inner)))

    def _far(self, a: Access, e: Einsum) -> ChunkedFormError:
        where = self.current
        return ChunkedFormError(f"{self.c.name}: {where.name if where else ''} reads {e.name} away from the current "
                                f"chunk ({a} after substitution); a chunked kernel holds one chunk (and the state) "
                                "at a time", where.loc if where else a.loc, self.c.source)

    def load(self, a: Access, gather: bool = False) -> V:
        """A tile of a tensor in memory, fp32 (`gather`: an index tensor's
        tile as int32, 0 where masked, so the gathered load's mask decides)."""
        t = self.c.tensor(a.tensor) if self.c.has_tensor(a.tensor) else None
        if not a.indices:
            return self.let(f"tl.load({self.t(a.tensor)}).to(tl.float32)", "ld"), ()
        offs, masks, read_masks = [], [], []
        for d, i in enumerate(a.indices):
            ic = self.index(i)
            offs.append((f"{ic[0]} * {self.t(a.tensor)}_s{d}", ic[1]))
            plain = isinstance(i, Idx) and (i.name in self.f.batch or i.name in self.loop_vars) \
                and t is not None and rank_of(i.name) == t.ranks[d]
            if not plain:                       # h / G, m1 + 1, a chunk position: may fall outside
                bounds = ([(f"({ic[0]} >= 0)", ic[1])] if not _nonneg(i) else []) + \
                    [(f"({ic[0]} < {self.t(a.tensor)}_n{d})", ic[1])]
                masks += bounds
                read_masks += bounds if _reads(i) else []
        ptr = self.combine(f"{self.t(a.tensor)} + " + " + ".join("{}" for _ in offs), offs)
        if masks:
            mask = self.combine(" & ".join("{}" for _ in masks), masks)
            axes = self.sorted_axes(ptr[1] + mask[1])
            mcode = self.expand(mask, axes)
            if axes and any(not m[1] for m in masks):     # a scalar bound (h // G < KH) on a tile: Triton's
                shape = ", ".join(f"BLOCK_{x.upper()}" for x in axes)     # interpreter wants a tile of int1
                mcode = f"(tl.broadcast_to({mcode}, ({shape},)) != 0)"
            ld = f"tl.load({self.expand(ptr, axes)}, mask={mcode}, other=0"
        else:
            axes, ld = ptr[1], f"tl.load({ptr[0]}"
        if masks and (gather or any(_reads(i) for i in a.indices)):
            # a gathered index out of range where the position exists (its other indices in range, as a
            # partial last chunk's padding is not): an error; the padding is only masked
            rest = [m_ for m_ in masks if m_ not in read_masks]
            self._flag_gather(a, self.combine(" & ".join("{}" for _ in read_masks), read_masks)
                              if read_masks and not gather else mask, rest if read_masks and not gather else [])
        if gather:
            return self.let(ld + ").to(tl.int32)", "ld"), axes
        if t is not None and t.dtype == "bool":
            return self.let(ld + ") != 0", "ld"), axes
        return self.let(ld + (".0" if masks else "") + ").to(tl.float32)", "ld"), axes

    def _flag_gather(self, a: Access, mask: V, exists: list | None = None):
        """Where the load's coordinates are in range of their ranks but its
        address (given by data) is not, record the site in `gather_err`: the
        launcher raises (a gather is never clipped)."""
        if a in self.flagging:
            return
        live = []
        for v in dict.fromkeys(v for i in a.indices for v in index_vars(i)):
            if v not in self.f.batch and v not in self.loop_vars:
                code, axes = self.var(v)
                live.append((f"({code} < {self.sym(rank_of(v))})", axes))
        self.flagging.add(a)
        try:
            live += self._exists_at_load(a) + list(exists or [])
        finally:
            self.flagging.discard(a)
        bad = self.combine(" & ".join(["{}"] * len(live) + ["({} == 0)"]), live + [mask])
        name = self.let(bad[0], "gbad")
        self.out(f"tl.store(gather_err + {name}.to(tl.int32) * 0, {len(self.gathers) + 1}, "
                 f"mask={name}.to(tl.int32) != 0)")
        self.gathers.append(a)

    def _exists_at_load(self, a: Access) -> list[V]:
        """Where a point reading `a` can exist (as the fused generator's
        `_exists_at_load`): per reading Einsum, the conjuncts of its predicate
        this chunk's coordinates decide; [] when some reader has none."""
        terms = []
        for e in self.c.einsums:
            if a not in e.reads():
                continue
            conj = []
            for x in conjuncts(e.predicate):
                if a in list(walk(x)):
                    continue
                try:
                    conj.append(self.cond(x))
                except ChunkedFormError:          # a coordinate this chunk does not hold
                    continue
            if not conj:
                return []
            terms.append(self.combine(" & ".join(["({} != 0)"] * len(conj)), conj))
        return [self.combine(" | ".join(["({})"] * len(terms)), terms)] if terms else []

    # -- Einsums ------------------------------------------------------------------------
    def masks(self, e: Einsum) -> list[Expr]:
        """What limits e's points (the program's rule): its predicate and the partition bound."""
        return point_masks(self.f, e, self.loop)

    def einsum(self, s: Step) -> V:
        """The chunk's value of the step's Einsum, reduced the way the program says."""
        e = self.current = s.einsum
        if s.how == "dot":
            v = self.dot(s)
        elif s.how == "cumsum":
            v = self.prefix_sum(s)
        elif s.how == "scan":
            v = self.scan(s)
        else:
            v = self.value(e.expr)
            for p in s.conds:
                v = self.combine(f"tl.where({{}}, {{}}, {_IDENT[e.reduce]})", [self.cond(p), v])
            if s.how == "reduce":
                axes = self.sorted_axes(v[1] + s.reduced)
                code = self.full(v, axes)
                op = {"sum": "tl.sum", "max": "tl.max", "min": "tl.min"}[e.reduce]
                for r in sorted(s.reduced, key=lambda x: -axes.index(x)):
                    code = f"{op}({code}, axis={axes.index(r)})"
                    axes = tuple(x for x in axes if x != r)
                v = self.let(code), axes
        full = s.role in ("accumulate", "state", "init")      # broadcast to the step's whole tile
        if (not set(v[1]) <= set(s.axes)) if full else v[1] != s.axes:
            raise _disagree(s, f"axes ({', '.join(v[1])})")
        return v

    def dot(self, s: Step) -> V:
        """sum[c] X[a, c] * Y[c, b] as tl.dot, with the program's split of the factors and masks."""
        d = s.dot
        a, b, c = d.a, d.b, d.c
        vals = [self.value(x) for x in factors(s.einsum.expr)]
        conds = [self.cond(p) for p in s.conds]

        def side(vs, idx, allowed):
            if any(not set(vs[i][1]) <= allowed for i in idx):
                raise _disagree(s, "the sides of its dot")
            return [vs[i] for i in idx]
        sides = {a: side(vals, d.left, {a, c}), b: side(vals, d.right, {b, c}), "post": side(vals, d.post, {a, b})}
        mask = {a: side(conds, d.mask_left, {a, c}), b: side(conds, d.mask_right, {b, c}),
                "post": side(conds, d.mask_post, {a, b})}
        ok = in_range(self.f, self.blocks, self.env, c)
        okc = [self.cond(ok)] if ok is not None else []
        operands = []
        for sd in (a, b):
            prod = sides[sd][0]
            for v in sides[sd][1:]:
                prod = self.combine("({} * {})", [prod, v])
            for m in mask[sd] + okc:
                prod = self.combine("tl.where({}, {}, 0.0)", [m, prod])
            order = (sd, c) if sd == a else (c, sd)
            tile = self.full(prod, self.sorted_axes(order))
            if self.sorted_axes(order) != order:
                tile = f"tl.trans({tile})"
            operands.append(tile)
        if self.m.dtype in _DOT_T:
            x, y = (f"({o}).to({_DOT_T[self.m.dtype]})" for o in operands)
            code = f"tl.dot({x}, {y})"
        else:
            code = f"tl.dot({operands[0]}, {operands[1]}, input_precision=\"ieee\")"
        v = (self.let(code), (a, b))
        for p in sides["post"]:
            v = self.combine("({} * {})", [v, p])
        for m in mask["post"]:
            v = self.combine("tl.where({}, {}, 0.0)", [m, v])
        return v

    def prefix_sum(self, s: Step) -> V:
        """sum[j] X[.., j] where j <= m0: a cumulative sum along j, read at m0."""
        c, o, k = s.prefix.c, s.prefix.o, s.prefix.bound
        conds = list(s.conds)
        v = self.value(s.einsum.expr)
        rest = [self.cond(q) for q in conds[:k] + conds[k + 1:]]
        for q in rest:
            if c in q[1]:
                v = self.combine("tl.where({}, {}, 0.0)", [q, v])
        axes = self.sorted_axes(v[1] + (c,))
        x = self.let(self.full(v, axes))
        code = f"tl.cumsum({x}, axis={axes.index(c)})"
        renamed = tuple(o if ax == c else ax for ax in axes)
        code, axes = self.let(code), renamed
        want = self.sorted_axes(axes)
        if want != axes:
            perm = [axes.index(ax) for ax in want]
            code = f"tl.trans({code})" if len(perm) == 2 else f"tl.permute({code}, {tuple(perm)})"
        out = (code, want)
        for q in rest:
            if c not in q[1]:
                out = self.combine("tl.where({}, {}, 0.0)", [q, out])
        return out

    def scan(self, s: Step) -> V:
        """`cumsum[m0, reverse]` inside the chunk: tl.cumsum (tl.cumprod) along
        the chunk axis, removed and padded points set to the identity first."""
        sc = s.einsum.scan
        ident = "0.0" if sc.op == "cumsum" else "1.0"
        v = self.value(s.einsum.expr)
        for p in s.conds:
            v = self.combine(f"tl.where({{}}, {{}}, {ident})", [self.cond(p), v])
        x = self.let(f"({self.full(v, s.axes)}) * 1.0")
        fn = "tl.cumsum" if sc.op == "cumsum" else "tl.cumprod"
        rev = ", reverse=True" if sc.reverse else ""
        return self.let(f"{fn}({x}, axis={s.axes.index(sc.var)}{rev})"), s.axes

    # -- the kernel ---------------------------------------------------------------------
    def generate(self) -> ChunkedSource:
        f, c = self.f, self.c
        symbols = sorted(self.env)
        params = []
        for t in self.read + [x.name for x in c.outputs]:
            n = len(c.tensor(t).ranks)
            base = self.t(t)
            params += [base] + [f"{base}_s{d}" for d in range(n)] + [f"{base}_n{d}" for d in range(n)]
        params += [self.sym(s) for s in symbols] + (["gather_err"] if _has_gather(c) else [])
        params += [f"BLOCK_{a.upper()}: tl.constexpr" for a in f.axes]
        self.lines, self.ind = [], 0
        self.out("@triton.jit")
        self.out("def attnc_chunked(")
        self.out("        " + ",\n        ".join(params) + "):")
        self.ind = 1
        self.out("pid_b = tl.program_id(0)")
        rest = "pid_b"
        for i, v in enumerate(reversed(f.batch)):
            self.out(f"{self.ident('c', v)} = {rest} % {self.sym(rank_of(v))}")
            self.out(f"rest{i} = {rest} // {self.sym(rank_of(v))}")
            rest = f"rest{i}"
        tokens = f.token_axes()
        for a in f.axes:
            if not (a in tokens and not f.partitioned):
                self.out(f"offs_{a} = tl.arange(0, BLOCK_{a.upper()})")
        for lp in self.p.loops:
            self.emit_loop(lp)
            for s in lp.after:
                self.emit(s)
        text = self.header() + "\n".join(self.lines) + "\n"
        check_source(text, c.name)
        src = ChunkedSource(text, f, self.m, {f"BLOCK_{a.upper()}": n for a, n in self.blocks.items()},
                            list(self.read), [x.name for x in c.outputs], symbols, program=self.p)
        src.digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        src.gathers = list(self.gathers)
        return src

    def emit_loop(self, lp: ChunkLoop):
        """One walk of the program: its states' initial values, the chunk loop
        running the program's steps in order, its accumulators final after it."""
        f = self.f
        self.out()
        self.out(f"# ---- loop over {lp.var}" + (f" (chunks of {rank_of(f.inner)})" if f.partitioned else
                                               f" in chunks of BLOCK_{lp.var.upper()}"))
        self.loop = lp.var
        for s in lp.states:
            v = self.einsum(s)                    # the initial value writes the state's own tensor
            self.out(f"{self.ident('st', s.name)} = {self.state_tile(v, s.axes)}")
            self.values[s.name] = (self.ident("st", s.name), s.axes)
        for s in lp.accumulators:
            shape = ", ".join(f"BLOCK_{a.upper()}" for a in s.axes)
            acc_name = self.ident("acc", s.name)
            self.out(f"{acc_name} = tl.full(({shape},), {_IDENT[s.einsum.reduce]}, tl.float32)" if s.axes
                     else f"{acc_name} = {_IDENT[s.einsum.reduce]}")
        if f.partitioned:
            self.out(f"for {self.ident('c', lp.var)} in range(0, {self.sym(rank_of(lp.var))}):")
        else:
            t = lp.var
            self.out(f"for start_{t} in range(0, {self.sym(rank_of(t))}, BLOCK_{t.upper()}):")
        self.ind += 1
        self.scopes.append({})
        if not f.partitioned:
            self.out(f"offs_{lp.var} = start_{lp.var} + tl.arange(0, BLOCK_{lp.var.upper()})")
        inner = []
        for s in lp.steps:
            if s.role == "accumulate":
                v = self.einsum(s)
                comb = {"sum": "{0} + {1}", "max": "tl.maximum({0}, {1})",
                        "min": "tl.minimum({0}, {1})"}[s.einsum.reduce]
                acc_name = self.ident("acc", s.name)
                self.out(f"{acc_name} = " + comb.format(acc_name, self.full(v, s.axes)))
            elif s.role == "state":
                v = self.einsum(s)
                self.out(f"{self.ident('stn', s.name)} = {self.state_tile(v, s.axes)}")
                self.new_state[s.name] = (self.ident("stn", s.name), s.axes)
            else:
                self.emit(s)
                inner.append(s.name)
        for s in lp.states:
            self.out(f"{self.ident('st', s.name)} = {self.ident('stn', s.name)}")
        self.scopes.pop()
        self.ind -= 1
        for name in inner:
            self.values.pop(name, None)
        self.new_state = {}
        for s in lp.accumulators:
            self.values[s.name] = (self.ident("acc", s.name), s.axes)
        self.loop = None

    def state_tile(self, v: V, axes: tuple[str, ...]) -> str:
        """A loop-carried value: fp32, the same full shape in every iteration."""
        if not axes:
            return f"({v[0]} + 0.0)"
        shape = ", ".join(f"BLOCK_{a.upper()}" for a in axes)
        return f"({self.expand(v, axes)} + tl.zeros(({shape},), tl.float32))"

    def emit(self, s: Step):
        """A per-chunk (or after-loop) value, stored if it is the output."""
        v = self.einsum(s)
        name = self.ident("v", s.name)
        self.out(f"{name} = {v[0]}")
        self.values[s.name] = (name, v[1])
        if s.role == "output":
            self.store(s.einsum, (name, v[1]))

    def store(self, e: Einsum, v: V):
        offs, masks = [], []
        for d, i in enumerate(e.output.indices):
            ic = self.index(i)
            offs.append((f"{ic[0]} * {self.t(e.name)}_s{d}", ic[1]))
            if not (isinstance(i, Idx) and (i.name in self.f.batch or i.name in self.loop_vars)):
                masks.append((f"({ic[0]} < {self.t(e.name)}_n{d})", ic[1]))
        ptr = self.combine(" + ".join("{}" for _ in offs), offs)
        axes = self.sorted_axes(ptr[1] + v[1])
        mask = self.combine(" & ".join("{}" for _ in masks), masks) if masks else None
        line = (f"tl.store({self.t(e.name)} + {self.expand(ptr, axes)}, "
                f"{self.full(v, axes)}.to({self.t(e.name)}.dtype.element_ty)")
        if mask:
            line += f", mask={self.expand(mask, axes)}"
        self.out(line + ")")

    def header(self) -> str:
        c, f = self.c, self.f
        lines = [f"# Generated by attnc (codegen.chunked v{VERSION}) from the design {comment_text(c.name)}.",
                 "# Change the design (.ein), not this file: it is regenerated from it.",
                 f"# One program per ({', '.join(f.batch)}); "
                 + "; ".join(f"a loop over {lp.var} with chunk axes {', '.join(lp.axes)}"
                             + (f", states {', '.join(s.name for _, s in lp.states)}" if lp.states else "")
                             for lp in f.loops) + ".",
                 "# Registers: " + ", ".join(f"BLOCK_{a.upper()}={n}" for a, n in self.blocks.items())
                 + f"; tensor-core operands {self.m.dtype}.",
                 self.ident.header(),
                 "# The cascade:"]
        lines += ["#   " + comment_text(ln) for ln in str(c).splitlines() if ln.strip()]
        return "\n".join(lines + PRELUDE)


def generate(program: ChunkProgram | ChunkedForm, mapping: GPUMapping, env: dict) -> ChunkedSource:
    """Triton source of the chunked kernel: `program` rendered (a ChunkedForm
    is first made into its program at `env` and the mapping's chunk)."""
    if isinstance(program, ChunkedForm):
        program = chunk_program(program, env, mapping.block_n)
    return ChunkedGenerator(program, mapping, env).generate()


__all__ = ["ChunkedSource", "generate"]
