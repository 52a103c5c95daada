"""Triton source for a fused attention kernel, generated from the IR.

The roles come from einsum_ir.analysis.fused (scores, tile Einsums,
reductions with their passes and online form, row Einsums); this module
only turns them into code. Every element-wise part is printed from the IR's
own expression, so a new score map, mask or epilogue needs no generator
change. A program owns BLOCK_M query rows of one batch coordinate and runs,
per pass, two loops over key tiles taken from a block table: full tiles (no
mask work) and partial tiles (bounds and predicates applied); empty tiles
are never visited. With split-KV, programs own a share of the key tiles and
a combine kernel merges their partial statistics.

Numerics follow the best kernels: fp32 statistics and accumulators, exp as
exp2 with log2(e) folded in, the normaliser replaced by 0 where it is still
-inf (fully masked rows stay defined, and end as the design's epilogue
says).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from einsum_ir.analysis.fused import FusedForm, FusedFormError
from einsum_ir.analysis.tile_program import (PassProgram, TileProgram, axes_of, integer_expr, reciprocal_divisor,
                                              tile_program)
from einsum_ir.ir import (ROUNDING, Access, Expr, Idx, Num, Op, Sym, accesses, computed_index, conjuncts, index_vars,
                          rank_of, walk)
from einsum_ir.ops import BOOLEAN_OPS
from mappers.gpu_mapping import GPUMapping, padded

from .names import GeneratedCodeError, Identifiers, check_source, comment_text  # noqa: F401

VERSION = "2"
WIDE_ELEMENTS = 2 ** 31     # a tensor with this many elements or more is addressed with 64-bit offsets
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_BIN = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}
# imports, LOG2E and the reference's floor division and modulo, at the top of every generated file
PRELUDE = ["", "import triton", "import triton.language as tl", "", "LOG2E = tl.constexpr(1.4426950408889634)",
           "", "", "@triton.jit", "def _floordiv(a, b):", "    # floor division (the reference's), not C's truncation",
           "    q = a // b", "    return tl.where((q * b != a) & ((a < 0) != (b < 0)), q - 1, q)", "", "",
           "@triton.jit", "def _mod(a, b):", "    return a - _floordiv(a, b) * b", "", ""] + [
    # values (float, or int promoted): numpy's np.mod and np.floor_divide exactly, with Triton's `%` being
    # C's fmod; a quotient is rounded to the nearest integer, so an inexact `/` cannot move it
    "@triton.jit", "def _vmod(a, b):", "    a = a * 1.0", "    b = b * 1.0", "    r = a % b",
    "    return tl.where((r != 0) & ((r < 0) != (b < 0)), r + b, r)", "", "",
    "@triton.jit", "def _vfloordiv(a, b):", "    a = a * 1.0", "    b = b * 1.0", "    r = a % b",
    "    d = (a - r) / b", "    d = tl.where((r != 0) & ((r < 0) != (b < 0)), d - 1.0, d)", "    f = tl.floor(d)",
    "    f = tl.where(d - f > 0.5, f + 1.0, f)", "    f = tl.where(d == 0, 0.0 * (a / b), f)",
    "    return tl.where(b == 0, a / b, f)", "", "",
    # `empty rows = 0`: a quotient 0 / 0 is 0 (docs/notation.md, Empty rows)
    # nested selects, not `&`: the interpreter refuses `&` of a scalar and a tile (`X / M`, `X - log(M)`)
    "@triton.jit", "def _div00(a, b):", "    q = a / b", "    return tl.where(b == 0, tl.where(a == 0, 0.0, q), q)", "", "",
    # `empty rows = 0`: (-inf) - (-inf) is -inf, the difference of two maxima over no point
    "@triton.jit", "def _sub00(a, b):", "    d = a - b",
    "    return tl.where(a == float(\"-inf\"), tl.where(b == float(\"-inf\"), float(\"-inf\"), d), d)", "", ""]
_FN = {"exp2": "tl.exp2", "log": "tl.log", "log2": "tl.log2", "sqrt": "tl.sqrt", "abs": "tl.abs",
       "floor": "tl.floor", "ceil": "tl.ceil", "sigmoid": "tl.sigmoid", "sin": "tl.sin", "cos": "tl.cos", "erf": "tl.erf",
       "tan": "_tan", "log1p": "_log1p", "expm1": "_expm1", "softplus": "_softplus", "logsigmoid": "_logsigmoid"}
# The new operators' stable forms (libdevice's tan, log1p, expm1 and pow do not run in the interpreter):
# log1p and expm1 by Goldberg's and Kahan's corrections, softplus = max(x, 0) + log1p(exp(-|x|)), and
# x ^ y = exp2(y log2 |x|) with numpy's signs (a negative base to a fraction is NaN, 0 ^ 0 is 1).
PRELUDE = PRELUDE + [
    "@triton.jit", "def _tan(x):", "    return tl.sin(x) / tl.cos(x)", "", "",
    "@triton.jit", "def _log1p(x):", "    u = 1.0 + x", "    d = u - 1.0",
    "    r = tl.log(u) * (x / tl.where(d == 0.0, 1.0, d))",
    "    return tl.where(d == 0.0, x, tl.where(u == float('inf'), u, r))", "", "",
    "@triton.jit", "def _expm1(x):", "    u = tl.exp(x)", "    lu = tl.log(u)",
    "    r = (u - 1.0) * (x / tl.where(lu == 0.0, 1.0, lu))", "    r = tl.where(u == 1.0, x, r)",
    "    r = tl.where(u - 1.0 == -1.0, -1.0, r)", "    return tl.where(u == float('inf'), u, r)", "", "",
    "@triton.jit", "def _softplus(x):", "    return tl.maximum(x, 0.0) + _log1p(tl.exp(-tl.abs(x)))", "", "",
    "@triton.jit", "def _logsigmoid(x):", "    return tl.minimum(x, 0.0) - _log1p(tl.exp(-tl.abs(x)))", "", "",
    "@triton.jit", "def _pow(a, b):", "    a = a * 1.0", "    b = b * 1.0", "    whole = tl.floor(b) == b",
    "    odd = whole & (b - 2.0 * tl.floor(b * 0.5) == 1.0)", "    m = tl.exp2(b * tl.log2(tl.abs(a)))",
    "    neg = tl.where(a < 0.0, -1.0, 1.0 / a) < 0.0",      # -0.0 counts as negative for the sign
    "    r = tl.where(neg, tl.where(odd, -m, m), m)",          # nested: `&` of a scalar and a tile fails
    "    r = tl.where(a < 0.0, tl.where(whole, r, float('nan')), r)",
    "    r = tl.where(a == -1.0, tl.where(tl.abs(b) == float('inf'), 1.0, r), r)",   # IEEE: (-1) ^ inf = 1
    "    return tl.where(b == 0.0, 1.0, tl.where(a == 1.0, 1.0, r))", "", ""]
_WALKS = {"reverse": "from the last down", "forward": "from the first up"}
_INT = "tl.cast({}, tl.int32)"      # a bitwise operand in a float expression: whole, so exact in int32
_BITS = {"band": "&", "bor": "|", "xor": "^", "shl": "<<", "shr": ">>"}


@dataclass
class KernelSource:
    """Generated source and what the launcher needs to call it."""
    text: str
    form: FusedForm
    mapping: GPUMapping
    block_e: int
    block_f: int
    tensors: list[str]            # read by the kernel (inputs and hoisted), in argument order
    outputs: list[str]
    symbols: list[str]
    splits: int
    partials: list[tuple[str, str]] = field(default_factory=list)   # (name, 'row' | 'feature') per split statistic
    program: TileProgram | None = None   # what the kernel runs: the GPU model charges this same object
    blocks: dict = field(default_factory=dict)   # tile widths of other score head dimensions (BLOCK_E1, ...)
    digest: str = ""
    gathers: list = field(default_factory=list)  # (access, dim) per gather site: the kernel flags site k + 1
                                                 # in `gather_err` when its index leaves the tensor (runtime raises)
    tma: list = field(default_factory=list)      # tensors loaded through TMA descriptors (mapping.tma)


class _Ctx:
    """Axes of the values being computed: a subset of (p, m), (p, f), (p, e), (e, m), (m, f), (p,)."""

    def __init__(self, axes: tuple[str, ...]):
        self.axes = axes

    def var(self, v: str) -> str:
        if v not in self.axes:
            raise KeyError(v)
        if len(self.axes) == 1:
            return f"offs_{v}"
        return f"offs_{v}[:, None]" if self.axes.index(v) == 0 else f"offs_{v}[None, :]"

    def expand(self, code: str, axes: tuple[str, ...]) -> str:
        """A value with `axes` (a subsequence of this context's) broadcast here."""
        if axes == self.axes or not axes:
            return code
        if len(self.axes) == 2 and len(axes) == 1:
            return f"{code}[:, None]" if axes[0] == self.axes[0] else f"{code}[None, :]"
        raise ValueError(f"cannot broadcast {axes} to {self.axes}")


class Generator:
    """Renders a TileProgram statement by statement; it decides nothing about
    what runs (that is the program's), only how each statement is written."""

    def __init__(self, program: TileProgram, mapping: GPUMapping, env: dict):
        self.p = program
        self.f = form = program.form
        self.c = form.cascade
        self.m = mapping
        self.env = env
        self.lines: list[str] = []
        self.ind = 1
        self.loads: dict = {}
        self.values: dict[str, tuple[str, tuple[str, ...]]] = {}   # tensor -> (code, axes)
        self.read: list[str] = []
        self.role = {self.f.query: "p", self.f.key: "m", self.f.contracted: "e"}
        if self.f.feature:
            self.role[self.f.feature] = "f"
        self.role.pop(None, None)
        self.dims: dict[str, str] = {}      # another score head dimension's variable -> its axis (e1, e2, ...)
        for sc in self.f.scores:
            if sc.contracted not in self.role:
                self.dims[sc.contracted] = self.role[sc.contracted] = f"e{len(self.dims) + 1}"
        self.ident = Identifiers()           # (kind, design name) -> identifier in the kernel
        self.active: dict[str, str] = {}     # online normaliser G -> its running value * LOG2E in code
        self.q_tiles: dict[str, str] = {}    # score -> its query tile variable
        for t in self.c.inputs:
            self.read.append(t.name)
        for e in self.f.hoisted:
            self.read.append(e.name)
        self.wide = wide_tensors(self.c, env)   # addressed with 64-bit offsets
        # GQA / MQA: `pack` query heads of one key head as rows of the program (TileProgram.packing)
        self.pack = program.pack_count(mapping.pack_heads, env)
        self.packed = program.packing.var if self.pack > 1 else None
        self.descs: dict = {}                   # (K or V access, axes) -> (descriptor, dims) when mapping.tma
        self.tma_tensors: list[str] = []        # tensors loaded through descriptors (the runtime checks their layout)
        self.full_tile = False                  # rendering the full-tile loop: K/V loads need no mask
        self.loop_vars: set[str] = set()        # reduced variables of an in-tile reduction being rendered
        self.bools = frozenset(t.name for t in self.c.tensors if t.dtype == "bool")   # loads that are conditions
        self.extents = frozenset(r.name for r in self.c.ranks)   # symbols known >= 1 (floor // and % bare)
        self.gathers: list = []                 # (access, dim) of each bounds-checked gathered load
        self.flagging: set = set()              # gathered loads whose check is being rendered (no re-entry)
        self.index_oks: list[str] = []          # the finiteness checks of the floor( )s of the index being rendered
        self.index_names: list[str] = []        # the variables computed indices are bound to (ix0, ixr1, ...)

    # -- emit helpers ---------------------------------------------------------------
    def out(self, line: str = ""):
        self.lines.append("    " * self.ind + line if line else "")

    def sym(self, name: str) -> str:
        return self.ident("sym", name)

    def t(self, tensor: str) -> str:
        return self.ident("t", tensor)

    def r(self, name: str) -> str:
        return self.ident("r", name)

    def coord(self, var: str) -> str:
        return self.ident("c", var)

    # -- index and value expressions -------------------------------------------------
    def index(self, e: Expr, ctx: _Ctx) -> str:
        if isinstance(e, Num):
            return str(int(e.value))
        if isinstance(e, Sym):
            return self.sym(e.name)
        if isinstance(e, Idx):
            if e.name == self.packed:
                return self._head_rows(ctx)
            if e.name in self.f.batch or e.name in self.loop_vars:
                return self.coord(e.name)
            return ctx.var(self.role[e.name])
        if self._packed_group(e):
            # the key head of the packed heads: pack divides the group, so one value for the program
            return f"(({self.coord(self.packed + '_blk')} * {self.pack}) // {self.sym(self.p.packing.group)})"
        if isinstance(e, Access) and not self.f.memory(e):   # a gather through a value computed in the tile
            v = self.value(e, ctx)                            # (T5's buckets): a whole number in int32 range,
            ok = f"(({v}) == tl.floor({v})) & (tl.abs({v}) < 2147483647.0)"   # else -1, which the gathered
            return f"tl.where({ok}, ({v}), -1.0).to(tl.int32)"                  # load flags (the executor names it)
        if isinstance(e, Access):            # a gather: the index tensor's tile, as int32 coordinates
            return self.load(e, ctx, raw="int")
        if isinstance(e, Op) and (t := index_template(e, self.extents)) is not None:
            return t.format(*[self.index(x, ctx) for x in e.args])
        if isinstance(e, Op) and e.name in ROUNDING:      # a real number made whole (T5's log buckets)
            r = f"ixr{len(self.index_names)}"
            self.index_names.append(r)
            self.out(f"{r} = tl.{e.name}({self.value(e.args[0], ctx)})")
            self.index_oks.append(f"(({r}) == ({r})) & (tl.abs({r}) < 2147483647.0)")   # finite, in int32
            return f"tl.where({self.index_oks[-1]}, {r}, 0.0).to(tl.int32)"
        if isinstance(e, Op) and (t := _COMPUTED_INDEX.get(e.name)) is not None:
            return t.format(*[self.index(x, ctx) for x in e.args])
        raise FusedFormError(f"cannot index with {e}", getattr(e, "loc", None), self.c.source)

    def index_code(self, i: Expr, ctx: _Ctx) -> str:
        """An access index; where a floor( ) or ceil( ) in it is not finite or
        past int32 the index is -1, out of range, which the load flags."""
        saved, self.index_oks = self.index_oks, []
        try:
            code = self.index(i, ctx)
            code = f"tl.where({' & '.join(self.index_oks)}, {code}, -1)" if self.index_oks else code
        finally:
            self.index_oks = saved
        if not computed_index(i):
            return code
        name = f"ix{len(self.index_names)}"          # computed once: the address, its mask and its check use it
        self.index_names.append(name)
        self.out(f"{name} = {code}")
        return name

    def load(self, a: Access, ctx: _Ctx, raw: bool | str = False) -> str:
        """A tile of an input; fp32 unless `raw` (a tensor-core operand keeps
        its type; "int": an index tensor's tile, int32 coordinates of a
        gather, 0 where masked, so the gathered load's own mask decides)."""
        key = (a, ctx.axes, raw)
        if key in self.loads:
            return self.loads[key]
        t = self.c.tensor(a.tensor) if self.c.has_tensor(a.tensor) else None
        name = f"ld{len(self.loads)}_{a.tensor}"
        if not a.indices:
            self.out(f"{name} = tl.load({self.t(a.tensor)}).to(tl.float32)")
        else:
            offs, masks = [], []
            for d, i in enumerate(a.indices):
                code = self.index_code(i, ctx)
                offs.append(self._offset(a.tensor, code, d))
                if self._in_bounds(a.tensor, d, i):
                    continue
                if isinstance(i, Idx) and i.name in self.loop_vars:
                    continue        # an in-tile reduction's bare coordinate loops over its own rank
                if any(v not in self.f.batch for v in index_vars(i)) or _reads(i) or computed_index(i):
                    if not isinstance(i, Idx):                                      # are in range, not data
                        masks.append(f"({code} >= 0)")
                    masks.append(f"({code} < {self.t(a.tensor)}_n{d})")
            ptr = f"{self.t(a.tensor)} + " + " + ".join(offs)
            if masks and not any(v in self.role and v not in self.loop_vars for x in a.indices for v in index_vars(x)):
                masks.append(f"({ctx.var(ctx.axes[0])} >= 0)")   # scalar conditions only: give the mask a shape,
                ptr += f" + 0 * {ctx.var(ctx.axes[0])}"          # and the address the same (OFF[DOC[M - 1]])
            elif masks and any((_reads(i) or computed_index(i)) and not any(v in self.role for v in index_vars(i))
                               for i in a.indices):
                masks += [f"({ctx.var(ax)} >= 0)" for ax in ctx.axes]   # a scalar gather (K[b, KVH[h], ..]) in a
                                                                        # full tile: the mask takes the tile's shape
            mask = " & ".join(masks) if masks else None
            self._flag_gather(a, ctx, masks, raw == "int")
            if mask and any(_reads(i) or computed_index(i) for i in a.indices):
                mask = f"(({mask}).to(tl.int32) != 0)"    # the interpreter refuses a scalar-and-tile int1 mask
            if raw == "int":
                self.out(f"{name} = tl.load({ptr}" + (f", mask={mask}, other=0" if mask else "") + ").to(tl.int32)")
            elif t is not None and t.dtype == "bool":
                self.out(f"{name} = tl.load({ptr}" + (f", mask={mask}, other=0" if mask else "") + ") != 0")
            else:
                self.out(f"{name} = tl.load({ptr}" + (f", mask={mask}, other=0.0" if mask else "")
                         + (")" if raw else ").to(tl.float32)"))
        self.loads[key] = name
        return name

    def _flag_gather(self, a: Access, ctx: _Ctx, masks: list[str], of_index: bool):
        """A load whose address comes from data (a gathered dimension), or of
        an index tensor: where the point is in range of the tile's ranks but
        the address is out of the tensor, the masked load would read 0, so
        the kernel records the site in `gather_err` and the launcher raises
        (never a silently clipped gather)."""
        if not masks or not (of_index or any(_reads(i) or computed_index(i) for i in a.indices)) or a in self.flagging:
            return
        live = []
        for v in dict.fromkeys(v for i in a.indices for v in index_vars(i)):
            role = self.role.get(v)
            if role in ctx.axes and v not in self.loop_vars:
                live.append(f"({ctx.var(role)} < {self.sym(rank_of(v))})")
        self.flagging.add(a)
        try:
            exists = self._exists_at_load(a, ctx)
        finally:
            self.flagging.discard(a)
        live += [exists] if exists else []
        bad = f"gbad{len(self.gathers)}"
        self.out(f"{bad} = " + " & ".join(live + [f"(({' & '.join(masks)}) == 0)"]))
        self.out(f"tl.store(gather_err + {bad}.to(tl.int32) * 0, {len(self.gathers) + 1}, "
                 f"mask={bad}.to(tl.int32) != 0)")     # the interpreter refuses a mask of a scalar-and-tile int1
        self.gathers.append((a, None))

    def _exists_at_load(self, a: Access, ctx: _Ctx) -> str | None:
        """Where a point reading `a` can exist, by the conditions the load's
        coordinates decide: for each Einsum reading `a`, the conjuncts of its
        predicate over this tile's axes and batch coordinates (`m < LEN[b]`
        for a paged cache whose unused pages are -1); None when some reader
        has no such condition. Other conditions are not applied (the check is
        then stricter than the executor's, never looser)."""
        terms = []
        for e in self.c.einsums:
            if a not in e.reads():
                continue
            conj = [x for x in conjuncts(e.predicate) if a not in list(walk(x)) and all(
                v in self.f.batch or (self.role.get(v) in ctx.axes and v not in self.loop_vars)
                for v in index_vars(x))]
            if not conj:
                return None
            terms.append(" & ".join(f"({self.cond(x, ctx)} != 0)" for x in conj))
        return "(" + " | ".join(f"({t})" for t in terms) + ")" if terms else None

    def _offset(self, tensor: str, code: str, d: int) -> str:
        """One dimension's term of an address: 64-bit where the tensor can
        exceed 2^31 elements (a 32-bit product would wrap)."""
        if tensor in self.wide:
            return f"({code}).to(tl.int64) * {self.t(tensor)}_s{d}"
        return f"{code} * {self.t(tensor)}_s{d}"

    def _in_bounds(self, tensor: str, d: int, i) -> bool:
        """Whether dimension d of `tensor`, indexed by `i`, needs no bounds
        check in the full-tile loop: a full tile has every (query, key) point
        in range (the block table says so), and the contracted and feature
        axes are whole when their extent is the block's."""
        if not self.full_tile or not isinstance(i, Idx) or i.name not in self.role:
            return False
        rank = rank_of(i.name)
        if self.c.tensor(tensor).ranks[d] != rank:
            return False
        role = self.role[i.name]
        if role in ("p", "m"):
            return True
        return int(self.env.get(rank, -1)) == padded(int(self.env.get(rank, 1)))

    def cond(self, e: Expr, ctx: _Ctx) -> str:
        """A predicate: comparisons of coordinates in integer arithmetic (exact,
        no casts); anything else through `value`."""
        if isinstance(e, Op) and e.name in ("and", "or"):
            return f"({self.cond(e.args[0], ctx)} {'&' if e.name == 'and' else '|'} {self.cond(e.args[1], ctx)})"
        if isinstance(e, Op) and e.name == "not":
            return f"({self.cond(e.args[0], ctx)} == 0)"
        if isinstance(e, Op) and e.name in _CMP and all(integer_expr(a) for a in e.args):
            a, b = (self.index(x, ctx) for x in e.args)
            return f"({a} {_CMP[e.name]} {b})"
        return self.value(e, ctx)

    def value(self, e: Expr, ctx: _Ctx) -> str:
        if isinstance(e, Num):
            v = e.value
            if v == float("inf"):
                return 'float("inf")'
            if v == float("-inf"):
                return 'float("-inf")'
            return repr(float(v))
        if isinstance(e, Sym):
            return self.sym(e.name)
        if isinstance(e, Idx):
            if e.name == self.packed:
                return self._head_rows(ctx)
            if e.name in self.f.batch or e.name in self.loop_vars:
                return self.coord(e.name)
            return f"{ctx.var(self.role[e.name])}.to(tl.float32)"
        if isinstance(e, Access):
            if e.tensor in self.values:
                code, axes = self.values[e.tensor]
                return ctx.expand(code, axes)
            return self.load(e, ctx)
        assert isinstance(e, Op)
        if integer_expr(e) and axes_of(self.f, e) and self._int_bound(e) < 2 ** 31:
            # coordinates in integer arithmetic (exact, floor // and %), one value per row / key / point
            return f"({self.index(e, ctx)}).to(tl.float32)"
        if e.name == "select":
            a, b = (self.value(x, ctx) for x in e.args[1:])
            return f"tl.where({self.cond(e.args[0], ctx)}, {a}, {b})"
        if e.name == "div" and reciprocal_divisor(self.f, e.args[1]) and axes_of(self.f, e.args[0]):
            # a divisor uniform over the tile: inverted once, a multiply per point
            return f"({self.value(e.args[0], ctx)} * (1.0 / {self.value(e.args[1], ctx)}))"
        if e.name == "exp":
            a = e.args[0]
            if (isinstance(a, Op) and a.name == "sub" and isinstance(a.args[1], Access)
                    and a.args[1].tensor in self.active):
                g2 = self.active[a.args[1].tensor]
                return f"tl.exp2({self.value(a.args[0], ctx)} * LOG2E - {ctx.expand(g2, ('p',))})"
            return f"tl.exp2({self.value(a, ctx)} * LOG2E)"
        if e.name in ("div", "sub") and self.c.empty_rows == "0":
            return zero_quotient(e).format(*[self.value(x, ctx) for x in e.args])
        t = op_template(e)
        if t is not None:
            return t.format(*number_codes(e, [self.value(x, ctx) for x in e.args], self.bools))
        raise FusedFormError(f"no Triton form for operator {e.name}", e.loc, self.c.source)

    def _int_bound(self, e: Expr) -> float:
        """A bound on |e| at these shapes: an integer expression is rendered in
        int32 only below 2**31 (beyond, the float form: no silent wrap)."""
        if isinstance(e, Num):
            return abs(e.value)
        if isinstance(e, (Idx, Sym)):
            return float(self.env.get(rank_of(e.name) if isinstance(e, Idx) else e.name, float("inf")))
        b = [self._int_bound(a) for a in e.args]
        if e.name == "mul":
            return b[0] * b[1]
        if e.name in ("add", "sub", "bor", "xor"):
            return b[0] + b[1]
        if e.name == "shl":
            return b[0] * 2.0 ** min(b[1], 64)
        return max(b)          # // % neg max min and shifts right: no larger than an operand

    def axes_of(self, vars_: list[str]) -> tuple[str, ...]:
        roles = [self.role[v] for v in vars_ if v in self.role]
        return tuple(r for r in ("p", "m", "e", "f") if r in roles)

    def row_axes(self, e) -> tuple[str, ...]:
        ax = self.axes_of(e.output_vars)
        return ("p",) + tuple(a for a in ax if a != "p")

    # -- the kernel -------------------------------------------------------------------
    def generate(self) -> KernelSource:
        f, m = self.f, self.m
        be = padded(self.env[rank_of(f.contracted)])
        bf = padded(self.env[rank_of(f.feature)]) if f.feature else 16
        splits = m.splits if f.splittable else 1
        symbols = sorted(k for k in self.env)
        params = self._io_params() + [self.sym(s) for s in symbols]
        for k in range(f.passes):
            params += [f"bt{k}_full_cnt", f"bt{k}_full_idx", f"bt{k}_part_cnt", f"bt{k}_part_idx", f"bt{k}_bs",
                       f"bt{k}_ks"]
            if self.p.uses_mask_table(k, self.pack):     # the partial tiles' keep masks, and each list's first
                params += [f"bt{k}_mt", f"bt{k}_mtb"]
        params.append("launch_order")
        partials = self._partials() if splits > 1 else []
        if splits > 1:
            params += ["part_ptr", "part_ts"]
        if _has_gather(self.c):
            params += ["gather_err"]        # int32[1]: the first gather site found out of range (passed by name)
        params += ["BLOCK_M: tl.constexpr", "BLOCK_N: tl.constexpr", "BLOCK_E: tl.constexpr",
                   "BLOCK_F: tl.constexpr", "SPLITS: tl.constexpr"]
        params += [f"BLOCK_{ax.upper()}: tl.constexpr" for ax in self.dims.values()]
        self.lines = []
        self.ind = 0
        self.out("@triton.jit")
        self.out(f"def {self.kernel_name}(")
        self.out("        " + ",\n        ".join(params) + "):")
        self.ind = 1
        self._prologue()
        for pp in self.p.passes:
            self._rows(pp.rows)
            self._pass(pp, splits)
        if splits > 1:
            self._store_partials(partials)
        else:
            self._epilogue()
        kernel = "\n".join(self.lines)
        combine = self._combine(partials, symbols) if splits > 1 else ""
        text = self._header(be, bf, splits) + kernel + "\n" + combine
        check_source(text, self.c.name)
        src = KernelSource(text, f, m, be, bf, list(self.read), [x.name for x in self.c.outputs], symbols, splits,
                           partials, program=self.p)
        src.blocks = {f"BLOCK_{ax.upper()}": padded(self.env[rank_of(v)]) for v, ax in self.dims.items()}
        src.digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        src.gathers = list(self.gathers)
        src.tma = list(dict.fromkeys(self.tma_tensors))
        return src

    kernel_name = "attnc_fused"

    def _tensor_params(self, t: str, n: int) -> list[str]:
        base = self.t(t)
        return [base] + [f"{base}_s{d}" for d in range(n)] + [f"{base}_n{d}" for d in range(n)]

    def _header(self, be, bf, splits) -> str:
        c = self.c
        lines = [f"# Generated by attnc (codegen.triton v{VERSION}) from the design {comment_text(c.name)}.",
                 "# Change the design (.ein), not this file: it is regenerated from it.",
                 f"# Mapping: {self.m}; BLOCK_E={be}, BLOCK_F={bf}; {self.f.passes} pass(es) over the keys"
                 + (f", online normaliser {', '.join(g for gs in self.f.normalisers.values() for g in gs)}"
                    if self.f.normalisers else "")
                 + (f"; split-KV into {splits} with a combine kernel" if splits > 1 else "")
                 + "".join(f"; pass {pp.index} walks the key tiles {_WALKS[pp.walk]}, carrying "
                           + ", ".join(str(sc.einsum.scan) for sc in pp.scans)
                           for pp in self.p.passes if pp.walk != "any") + ".",
                 "# Roles: query " + (self.f.query or "(none: decode)") + f", key {self.f.key}, "
                 f"contracted {self.f.contracted}, feature {self.f.feature}; batch {', '.join(self.f.batch)}.",
                 self.ident.header(),
                 "# The cascade:"]
        lines += ["#   " + comment_text(ln) for ln in str(c).splitlines() if ln.strip()]
        return "\n".join(lines + PRELUDE)

    def _coordinates(self, ordered: bool = False):
        """The program's row tile and batch coordinates (both kernels). The
        fused kernel's: launch index i runs program launch_order[i] (most key
        tiles first: the short programs fill the last wave; the GPU model
        schedules in the same order, einsum_ir.analysis.tiles.launch_order)."""
        if ordered:
            self.out("pid_l = tl.load(launch_order + tl.program_id(1) * tl.num_programs(0) + tl.program_id(0))")
            self.out("pid_m = pid_l % tl.num_programs(0)")
            self.out("pid_b = pid_l // tl.num_programs(0)")
        else:
            self.out("pid_m = tl.num_programs(0) - 1 - tl.program_id(0)")
            self.out("pid_b = tl.program_id(1)")
        rest = "pid_b"
        for i, v in enumerate(reversed(self.f.batch)):
            self.out(f"{self._batch_coord(v)} = {rest} % {self._batch_extent(v)}")
            self.out(f"rest{i} = {rest} // {self._batch_extent(v)}")
            rest = f"rest{i}"
        rows = self.sym(rank_of(self.f.query)) if self.f.query else "1"
        if self.packed:
            self._packed_rows(rows)
        else:
            self.out("offs_p = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)")
            self.out(f"row_ok = offs_p < {rows}")
        self.out("offs_f = tl.arange(0, BLOCK_F)")

    def _packed_rows(self, rows: str):
        """GQA / MQA: row r of the packed row space is query r // pack of head
        block x pack + r % pack (the heads of one key head fastest); rows
        past the end are clamped to the last (computed, never stored), so
        every load stays in range and a full tile stays full."""
        n = self.pack
        self.out(f"# {n} query heads of one key head packed as rows: r = query x {n} + head in the block")
        self.out("offs_r = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)")
        self.out(f"row_ok = offs_r < {rows} * {n}")
        self.out(f"offs_rc = tl.minimum(offs_r, {rows} * {n} - 1)")
        self.out(f"offs_p = offs_rc // {n}")
        self.out(f"{self.coord(self.packed)} = {self.coord(self.packed + '_blk')} * {n} + offs_rc % {n}")

    def _packed_group(self, e: Expr) -> bool:
        """Is `e` the key head of the packed heads (`h / G`)?"""
        return bool(self.packed) and isinstance(e, Op) and e.name in ("div", "floordiv") \
            and isinstance(e.args[0], Idx) and e.args[0].name == self.packed and isinstance(e.args[1], Sym) \
            and e.args[1].name == self.p.packing.group

    def _batch_coord(self, v: str) -> str:
        """The program's coordinate of batch variable v (the head block of packed heads)."""
        return self.coord(v + "_blk") if v == self.packed else self.coord(v)

    def _batch_extent(self, v: str) -> str:
        return f"({self.sym(rank_of(v))} // {self.pack})" if v == self.packed else self.sym(rank_of(v))

    def _head_rows(self, ctx: _Ctx) -> str:
        """The packed head coordinate: one per row, so only where rows are an axis."""
        if "p" not in ctx.axes:
            raise FusedFormError(f"packed heads: {self.packed} is read where the rows are not an axis "
                                 f"({', '.join(ctx.axes)}); only the query side may read it per head",
                                 None, self.c.source)
        return ctx.expand(self.coord(self.packed), ("p",))

    def _io_params(self) -> list[str]:
        """Pointer, strides and extents of every tensor read, then of every output."""
        params = []
        for t in self.read + [x.name for x in self.c.outputs]:
            params += self._tensor_params(t, len(self.c.tensor(t).ranks))
        return params

    def _prologue(self):
        f = self.f
        self._coordinates(ordered=True)
        self.out("pid_s = tl.program_id(2)")
        self.out("offs_e = tl.arange(0, BLOCK_E)")
        self.out("# the query tiles, loaded once")
        for ax in self.dims.values():
            self.out(f"offs_{ax} = tl.arange(0, BLOCK_{ax.upper()})")
        for i, sc in enumerate(f.scores):
            ax = self.role[sc.contracted]
            q = self.load(sc.q, _Ctx(("p", ax)), raw=True)
            self.q_tiles[sc.name] = f"q{i}"
            self.out(f"q{i} = tl.broadcast_to({q}, (BLOCK_M, BLOCK_{ax.upper()}))")
        self.loads = {}
        if self.m.tma:
            self._descriptors()

    # -- TMA: K and V tiles through tensor descriptors (mapping.tma) ---------------------
    def _tma_dims(self, a: Access, axes: tuple[str, ...]) -> list | None:
        """Per dimension of `a`'s tensor, what a descriptor load's offset is:
        ('axis', ax) for a tile axis read whole at its plain variable, ('at',
        code) for a coordinate uniform over the program; None when the load
        cannot go through a descriptor (2 to 5 dimensions, plain indices,
        each tile axis once): it stays a pointer load."""
        t = self.c.tensor(a.tensor)
        if not 2 <= len(a.indices) <= 5:
            return None
        dims, seen = [], []
        for d, i in enumerate(a.indices):
            if isinstance(i, Idx) and self.role.get(i.name) in axes and i.name not in self.f.batch:
                if t.ranks[d] != rank_of(i.name) or self.role[i.name] in seen:
                    return None
                seen.append(self.role[i.name])
                dims.append(("axis", self.role[i.name]))
            elif not _reads(i) and all(v in self.f.batch for v in index_vars(i)) and (
                    self.packed not in index_vars(i) or self._packed_group(i)):
                dims.append(("at", i))          # batch coordinates only: one value for the program
            else:
                return None
        return dims if sorted(seen) == sorted(axes) else None

    def _descriptors(self):
        """One descriptor per K / V operand, made once per program."""
        self.descs = {}
        for pp in self.p.passes:
            ops = [(sc.k, (self.role[sc.contracted], "m")) for sc in pp.scores]
            ops += [(r.value, ("m", "f")) for r in pp.values]
            for a, axes in ops:
                dims = self._tma_dims(a, axes)
                if dims is None or (a, axes) in self.descs:
                    continue
                base, n = self.t(a.tensor), len(dims)
                block = ", ".join(f"BLOCK_{'N' if x == 'm' else x.upper()}" if kind == "axis" else "1"
                                  for kind, x in dims)
                name = f"desc{len(self.descs)}_{a.tensor}"
                self.out(f"{name} = tl.make_tensor_descriptor({base}, shape=[{', '.join(f'{base}_n{d}' for d in range(n))}], "
                         f"strides=[{', '.join([f'{base}_s{d}' for d in range(n - 1)] + ['1'])}], "
                         f"block_shape=[{block}])")         # last stride 1: TMA needs it static (runtime checks)
                self.descs[(a, axes)] = (name, dims)
                self.tma_tensors.append(a.tensor)

    def kv_load(self, a: Access, ctx: _Ctx) -> str:
        """A K or V tile (a tensor-core operand, its own type): through its
        descriptor where there is one (out-of-range rows and columns read 0,
        as a masked load's `other=0`), else a pointer load."""
        hit = self.descs.get((a, ctx.axes)) if self.m.tma else None
        if hit is None:
            return self.load(a, ctx, raw=True)
        key = (a, ctx.axes, "tma")
        if key in self.loads:
            return self.loads[key]
        name, dims = hit
        offs = [("start_n" if x == "m" else "0") if kind == "axis" else self.index(x, ctx) for kind, x in dims]
        order = tuple(x for kind, x in dims if kind == "axis")
        shape = ", ".join(f"BLOCK_{'N' if x == 'm' else x.upper()}" for x in order)
        code = f"{name}.load([{', '.join(offs)}]).reshape(({shape}))"
        if order != ctx.axes:
            code = f"tl.trans({code})"
        ld = f"ld{len(self.loads)}_{a.tensor}"
        self.out(f"{ld} = {code}")
        self.loads[key] = ld
        return ld

    def _rows(self, rows):
        """Row Einsums whose inputs are final before a pass."""
        self.loads = {}     # loads made inside a loop are not visible after it
        for e in rows:
            self._row(e)

    def _row(self, e):
        axes = self.row_axes(e)
        ctx = _Ctx(axes)
        code = self.value(e.expr, ctx)
        if e.predicate is not None:
            code = f"tl.where({self.cond(e.predicate, ctx)}, {code}, {_removed(e)})"
        name = self.r(e.name)
        self.out(f"{name} = {code}")
        self.values[e.name] = (name, axes)

    def _pass(self, pp: PassProgram, splits: int):
        k, reds = pp.index, pp.init
        gs = [n.name for n in pp.normalise]
        self.out()
        self.out(f"# ---- pass {k}: " + ", ".join(f"{r.name} ({r.kind}{', rescaled' if r.rescaled else ''})"
                                                   for r in reds))
        for r in reds:
            if r.kind == "value":
                self.out(f"{self.r(r.name)} = tl.zeros((BLOCK_M, BLOCK_F), dtype=tl.float32)")
            else:
                ident = {"max": 'float("-inf")', "min": 'float("inf")', "sum": "0.0"}[r.kind]
                self.out(f"{self.r(r.name)} = tl.full((BLOCK_M,), {ident}, dtype=tl.float32)")
            self.values[r.name] = (self.r(r.name), ("p", "f") if r.kind == "value" else ("p",))
        for g in gs:        # the normaliser the sums are relative to (0 for -inf), and its raw running value
            self.out(f"{self.ident('gs', g)} = tl.zeros((BLOCK_M,), dtype=tl.float32)")
            self.out(f"{self.ident('gr', g)} = tl.full((BLOCK_M,), float(\"-inf\"), dtype=tl.float32)")
        self.pass_index = k
        self.out(f"bt_off = {self._batch_linear()} * bt{k}_bs + pid_m * bt{k}_ks")
        self.out(f"cnt_off = {self._batch_linear()} * (bt{k}_bs // bt{k}_ks) + pid_m")
        if pp.walk != "any":
            self._ordered_walk(pp)
            return
        for partial in (False, True):
            kind = "part" if partial else "full"
            self.out(f"n_{kind} = tl.load(bt{k}_{kind}_cnt + cnt_off)")
            self.out(f"lo_{kind} = n_{kind} * pid_s // SPLITS")
            self.out(f"hi_{kind} = n_{kind} * (pid_s + 1) // SPLITS")
            if partial and self.p.uses_mask_table(k, self.pack):
                self.out(f"mt_first = tl.load(bt{k}_mtb + cnt_off)")
            self.out(f"for i in range(lo_{kind}, hi_{kind}):   # {'partial' if partial else 'full'} key tiles")
            self.ind += 1
            self.out(f"start_n = tl.load(bt{k}_{kind}_idx + bt_off + i) * BLOCK_N")
            self.out("offs_m = start_n + tl.arange(0, BLOCK_N)")
            self._tile_body(pp, partial)
            self.ind -= 1

    def _ordered_walk(self, pp: PassProgram):
        """A pass that carries scans over the keys visits its key tiles in one
        order (TileProgram's `walk`): the block table's full and partial
        lists, each ascending, merged tile by tile from the last down
        (reverse) or the first up; each tile runs the full or the partial
        body. Empty tiles are never visited: the scans' terms are the
        identity there (a tile is empty only where every predicate of the
        pass, the scans' own included, removes every point)."""
        k, rev = pp.index, pp.walk == "reverse"
        for sc in pp.scans:
            ident = "0.0" if sc.op == "cumsum" else "1.0"
            self.out(f"{self.ident('cy', sc.name)} = tl.full((BLOCK_M,), {ident}, dtype=tl.float32)")
        for kind in ("full", "part"):
            self.out(f"n_{kind} = tl.load(bt{k}_{kind}_cnt + cnt_off)")
            self.out(f"j_{kind} = n_{kind} - 1" if rev else f"j_{kind} = n_{kind} * 0")
        self.out(f"for i in range(0, n_full + n_part):   # key tiles {_WALKS[pp.walk]}, in one order")
        self.ind += 1
        for kind in ("full", "part"):    # this list's next tile, or past the end of the walk
            at = f"tl.maximum(j_{kind}, 0)" if rev else f"tl.minimum(j_{kind}, bt{k}_ks - 1)"
            ok, none = (f"j_{kind} >= 0", "-1") if rev else (f"j_{kind} < n_{kind}", f"bt{k}_ks")
            self.out(f"t_{kind} = tl.where({ok}, tl.load(bt{k}_{kind}_idx + bt_off + {at}), {none})")
        self.out(f"is_part = t_part {'>' if rev else '<'} t_full")
        step = "- 1" if rev else "+ 1"
        self.out(f"j_part = tl.where(is_part, j_part {step}, j_part)")
        self.out(f"j_full = tl.where(is_part, j_full, j_full {step})")
        self.out(f"start_n = tl.{'maximum' if rev else 'minimum'}(t_full, t_part) * BLOCK_N")
        self.out("offs_m = start_n + tl.arange(0, BLOCK_N)")
        for partial in (True, False):
            self.out("if is_part:" if partial else "else:")
            self.ind += 1
            self._tile_body(pp, partial)
            self.ind -= 1
        self.ind -= 1

    def _scan_tile(self, e, term: str, ctx: _Ctx, partial: bool):
        """A scan along the keys in the walk (ScanCarry): the term with removed
        and padded points at the identity, its tile-local scan, the carry
        combined in, then the carry takes the tile's total. The result is
        not masked: at a removed point it holds the running value, as the
        executor's scan does."""
        s, name, carry = e.scan, self.ident("v", e.name), self.ident("cy", e.name)
        ident = "0.0" if s.op == "cumsum" else "1.0"
        if partial and e in self.masked:
            term = f"tl.where({self._keep(e, ctx, partial)}, {term}, {ident})"
        x = f"sx_{name}"
        self.out(f"{x} = tl.broadcast_to(({term}) * 1.0, (BLOCK_M, BLOCK_N))")
        rev = ", reverse=True" if s.reverse else ""
        col = "tl.arange(0, BLOCK_N)"
        self.out(f"si_{name} = tl.{s.op}({x}, 1{rev})")
        local = f"si_{name}"
        if s.exclusive:
            # the inclusive scan at the previous key of the scan's order (exact: no `- x`, which is NaN
            # where x is infinite, no division), the identity at its first key
            first, prev = ("BLOCK_N - 1", f"tl.minimum({col} + 1, BLOCK_N - 1)") if s.reverse else \
                ("0", f"tl.maximum({col} - 1, 0)")
            local = (f"tl.where({col}[None, :] == {first}, {ident}, tl.gather(si_{name}, "
                     f"tl.broadcast_to({prev}[None, :], (BLOCK_M, BLOCK_N)), 1))")
        comb = "+" if s.op == "cumsum" else "*"
        self.out(f"{name} = {carry}[:, None] {comb} {local}")
        if s.op == "cumsum":
            self.out(f"{carry} = {carry} + tl.sum({x}, 1)")
        else:   # the tile's product: the inclusive scan at the tile's last key in the scan's order
            last = "0" if s.reverse else "BLOCK_N - 1"
            self.out(f"{carry} = {carry} * tl.sum(tl.where({col}[None, :] == {last}, si_{name}, 0.0), 1)")
        self.values[e.name] = (name, ("p", "m"))

    def _batch_linear(self) -> str:
        code = "0"
        for v in self.f.batch:
            code = f"({code} * {self._batch_extent(v)} + {self._batch_coord(v)})"
        return code

    def _tile_body(self, pp: PassProgram, partial: bool):
        self.full_tile = not partial
        try:
            self._tile_statements(pp, partial)
        finally:
            self.full_tile = False

    def _tile_statements(self, pp: PassProgram, partial: bool):
        f = self.f
        self.loads = {}
        self.preds = {}
        self.masked = set(pp.masked)
        saved = dict(self.values)
        tile = _Ctx(("p", "m"))
        prec = ", input_precision=\"ieee\"" if self.m.dtype in ("f32",) else ""
        keep = "row_ok[:, None] & (offs_m[None, :] < " + self.sym(rank_of(f.key)) + ")"
        if partial:
            self.out(f"inb = {keep}")
        # the score contractions this pass reads: one tensor-core product each
        for i, sc in enumerate(pp.scores):
            ax = self.role[sc.contracted]
            kt = self.kv_load(sc.k, _Ctx((ax, "m")))
            self.out(f"s{i} = tl.dot({self.q_tiles[sc.name]}, tl.broadcast_to({kt}, (BLOCK_{ax.upper()}, BLOCK_N)){prec})")
            self._tile_value(sc.einsum, f"s{i}", tile, partial)
        # 1. tile Einsums that read no statistic of the pass, then the max/min reductions
        for t in pp.early:
            self._tile_einsum(t, tile, partial)
        for r in pp.maxima:
            term = self.value(r.einsum.expr, tile)
            ident = 'float("-inf")' if r.kind == "max" else 'float("inf")'
            mask = self._keep(r.einsum, tile, partial)
            if mask:
                term = f"tl.where({mask}, {term}, {ident})"
            op = "tl.max" if r.kind == "max" else "tl.min"
            comb = "tl.maximum" if r.kind == "max" else "tl.minimum"
            self.out(f"{self.r(r.name)} = {comb}({self.r(r.name)}, {op}({term}, 1))")
        # 2. each normaliser from the running maxima; rescale what was summed under its old value
        self.active = {}
        chained = []
        for n in pp.normalise:
            g = n.name
            for e in n.chain:
                self._row(e)
            chained += n.chain
            gcode = self.values[g][0]
            # the sums are relative to g_new, 0 while G is still -inf (a -inf score then adds exp(-inf) = 0,
            # not exp(-inf - -inf) = NaN: G's final value may be finite); alpha rescales what was summed
            # under the previous G, from its raw value: exp2(-inf) = 0 while that was -inf (nothing summed),
            # never an overflow exp(0 - G) = inf times the empty sums
            self.out(f"g_new = tl.where({gcode} == float(\"-inf\"), 0.0, {gcode})")
            g_safe, g_raw, g_log2 = self.ident("gs", g), self.ident("gr", g), self.ident("gl", g)
            self.out(f"alpha = tl.exp2(({g_raw} - g_new) * LOG2E)")
            for r in n.rescaled:
                if r.rescale is not None:     # the online rewrite's justification, from the same derivation
                    self.out(f"# {r.rescale.why()}")
                self.out(f"{self.r(r.name)} = {self.r(r.name)} * alpha" + ("[:, None]" if r.kind == "value" else ""))
            self.out(f"{g_safe} = g_new")
            self.out(f"{g_raw} = {gcode}")
            self.out(f"{g_log2} = {g_safe} * LOG2E")
        for e in chained:
            self.values.pop(e.name, None)
        for n in pp.normalise:
            self.values[n.name] = (self.ident("gs", n.name), ("p",))
            self.active[n.name] = self.ident("gl", n.name)
        # 3. tile Einsums that read this pass's normalisers, then the sums and value products
        for t in pp.late:
            self._tile_einsum(t, tile, partial)
        for r in pp.sums:
            mask = self._keep(r.einsum, tile, partial)
            if r.kind == "sum":
                term = self.value(r.einsum.expr, tile)
                if mask:
                    term = f"tl.where({mask}, {term}, 0.0)"
                self.out(f"{self.r(r.name)} += tl.sum({term}, 1)")
            else:
                w = self.value(r.weight, tile)
                if mask:
                    w = f"tl.where({mask}, {w}, 0.0)"
                vt = self.kv_load(r.value, _Ctx(("m", "f")))
                vdt = f"{self.t(r.value.tensor)}.dtype.element_ty"
                self.out(f"{self.r(r.name)} += tl.dot(({w}).to({vdt}), tl.broadcast_to({vt}, (BLOCK_N, BLOCK_F)){prec})")
        self.active = {}
        # tile values do not outlive the tile; running statistics do
        self.values = dict(saved)

    def _keep(self, e, ctx: _Ctx, partial: bool) -> str | None:
        """The mask of a partial tile for Einsum e: in bounds and its predicate
        (each distinct predicate computed once per tile)."""
        if not partial or e not in self.masked:
            return None             # full tile, or what it reads is already masked (TileProgram.masked)
        if e.predicate is None:
            return "inb"
        if e.predicate not in self.preds:
            name = f"keep{len(self.preds)}"
            k = self.pass_index
            if self.p.uses_mask_table(k, self.pack):     # read, not computed: in bounds and kept (tiles.mask_tiles)
                self.out(f"{name} = tl.load(bt{k}_mt + (mt_first + i).to(tl.int64) * (BLOCK_M * BLOCK_N) "
                         "+ tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]) != 0")
            else:
                self.out(f"{name} = inb & {self.cond(e.predicate, ctx)}")
            self.preds[e.predicate] = name
        return self.preds[e.predicate]

    def _tile_value(self, e, code: str, ctx: _Ctx, partial: bool):
        name = self.ident("v", e.name)
        if partial and e in self.masked:
            code = f"tl.where({self._keep(e, ctx, partial)}, {code}, {_removed(e)})"
        self.out(f"{name} = {code}")
        self.values[e.name] = (name, ("p", "m"))

    def _tile_einsum(self, e, ctx: _Ctx, partial: bool):
        code = self._in_tile_reduction(e, ctx) if e.reduced else self.value(e.expr, ctx)
        if e.scan is not None:
            self._scan_tile(e, code, ctx, partial)
        else:
            self._tile_value(e, code, ctx, partial)

    def _in_tile_reduction(self, e, ctx: _Ctx) -> str:
        """A tile Einsum reduced over other ranks (a second score over another
        head dimension, a bias reduced over features): a loop over the reduced
        coordinates inside the tile, accumulating in registers."""
        acc = f"acc_{self.ident('v', e.name)}"
        ident = {"sum": "0.0", "max": 'float("-inf")', "min": 'float("inf")'}[e.reduce]
        self.out(f"{acc} = tl.full((BLOCK_M, BLOCK_N), {ident}, dtype=tl.float32)")
        loads, self.loads = self.loads, dict(self.loads)      # loads inside the loop stay there
        for v in e.reduced:
            self.out(f"for {self.coord(v)} in range(0, {self.sym(rank_of(v))}):")
            self.ind += 1
        self.loop_vars |= set(e.reduced)
        term = self.value(e.expr, ctx)
        comb = {"sum": f"{acc} + {term}", "max": f"tl.maximum({acc}, {term})",
                "min": f"tl.minimum({acc}, {term})"}[e.reduce]
        self.out(f"{acc} = {comb}")
        self.loop_vars -= set(e.reduced)
        self.ind -= len(e.reduced)
        self.loads = loads
        return acc

    def _epilogue(self):
        self.out()
        self.out("# ---- epilogue: row Einsums, then the outputs")
        self.loads = {}
        for e in self.p.epilogue:
            self._row(e)
        self._stores()

    def _stores(self):
        for t in self.c.outputs:
            code, axes = self.values[t.name]
            e = self.c.writers(t.name)[0]
            ctx = _Ctx(axes)
            offs, masks = [], []
            for d, i in enumerate(e.output.indices):
                ic = self.index(i, ctx)
                offs.append(self._offset(t.name, ic, d))
                if not (isinstance(i, Idx) and i.name in self.f.batch):
                    masks.append(f"({ic} < {self.t(t.name)}_n{d})")
            masks.append(ctx.expand("row_ok", ("p",)))
            if not any(isinstance(i, Idx) and self.role.get(i.name) == "p" for i in e.output.indices):
                offs.append(ctx.expand("(offs_p * 0)", ("p",)))    # decode: every row writes the same place
            val = code if axes == ctx.axes else ctx.expand(code, axes)
            self.out(f"tl.store({self.t(t.name)} + {' + '.join(offs)}, {val}.to({self.t(t.name)}.dtype.element_ty), "
                     f"mask={' & '.join(masks)})")

    # -- split-KV ----------------------------------------------------------------------
    def _partials(self) -> list[tuple[str, str]]:
        out = [(r.name, "feature" if r.kind == "value" else "row") for r in self.f.reductions]
        out += [(("norm", g), "row") for g in self.f.normalisers.get(0, ())]
        return out

    def _store_partials(self, partials):
        """Each split writes its statistics: [row tile program, split, BLOCK_M(, BLOCK_F)] fp32."""
        self.out()
        self.out("# ---- this split's statistics, merged by the combine kernel")
        self.out(f"prog = {self._batch_linear()} * tl.num_programs(0) + pid_m")
        self.out("base = part_ptr + (prog * SPLITS + pid_s) * part_ts")
        off = 0
        for name, kind in partials:
            src = self.ident("gr", name[1]) if isinstance(name, tuple) else self.r(name)   # raw: -inf if none
            if kind == "row":
                self.out(f"tl.store(base + {off} + tl.arange(0, BLOCK_M), {src})")
                off_inc = "BLOCK_M"
            else:
                self.out(f"tl.store(base + {off} + tl.arange(0, BLOCK_M)[:, None] * BLOCK_F + offs_f[None, :], {src})")
                off_inc = "BLOCK_M * BLOCK_F"
            off = f"{off} + {off_inc}" if off else off_inc

    def _combine(self, partials, symbols) -> str:
        f = self.f
        self.lines = []
        self.loads = {}
        self.ind = 0
        params = self._io_params() + [self.sym(s) for s in symbols] + ["part_ptr", "part_ts"] + (
            ["gather_err"] if _has_gather(self.c) else []) + ["BLOCK_M: tl.constexpr", "BLOCK_F: tl.constexpr",
                                                              "SPLITS: tl.constexpr"]
        self.out("@triton.jit")
        self.out("def attnc_combine(")
        self.out("        " + ",\n        ".join(params) + "):")
        self.ind = 1
        self._coordinates()
        self.out(f"prog = {self._batch_linear()} * tl.num_programs(0) + pid_m")
        offsets, off = {}, "0"
        for name, kind in partials:
            offsets[name] = off
            off = f"{off} + {'BLOCK_M' if kind == 'row' else 'BLOCK_M * BLOCK_F'}"
        gs = f.normalisers.get(0, ())
        self.values = {}
        reds = {r.name: r for r in f.reductions}
        # merged maxima first, then the normaliser, then the rescaled sums
        for name, kind in partials:
            if name in reds and reds[name].kind in ("max", "min"):
                comb = "tl.maximum" if reds[name].kind == "max" else "tl.minimum"
                ident = 'float("-inf")' if reds[name].kind == "max" else 'float("inf")'
                rn = self.r(name)
                self.out(f"{rn} = tl.full((BLOCK_M,), {ident}, dtype=tl.float32)")
                self.out("for sp in range(SPLITS):")
                self.out(f"    {rn} = {comb}({rn}, tl.load(part_ptr + (prog * SPLITS + sp) * part_ts + "
                         f"{offsets[name]} + tl.arange(0, BLOCK_M)))")
                self.values[name] = (rn, ("p",))
        for g in gs:
            for e in self.f.chain_to(g):
                self._row(e)
            gcode = self.values[g][0]
            self.out(f"{self.ident('gf', g)} = tl.where({gcode} == float(\"-inf\"), 0.0, {gcode})")
        for name, kind in partials:
            if name not in reds or reds[name].kind in ("max", "min"):
                continue
            r = reds[name]
            shape = "(BLOCK_M,)" if kind == "row" else "(BLOCK_M, BLOCK_F)"
            rn = self.r(name)
            self.out(f"{rn} = tl.zeros({shape}, dtype=tl.float32)")
            self.out("for sp in range(SPLITS):")
            base = "part_ptr + (prog * SPLITS + sp) * part_ts"
            if kind == "row":
                ld = f"tl.load({base} + {offsets[name]} + tl.arange(0, BLOCK_M))"
            else:
                ld = (f"tl.load({base} + {offsets[name]} + tl.arange(0, BLOCK_M)[:, None] * BLOCK_F"
                      " + offs_f[None, :])")
            if r.rescaled:
                g = r.rescaled_by
                self.out(f"    g_s = tl.load({base} + {offsets[('norm', g)]} + tl.arange(0, BLOCK_M))")
                scale = f"tl.exp2((g_s - {self.ident('gf', g)}) * LOG2E)" + ("[:, None]" if kind == "feature" else "")
                self.out(f"    {rn} += {ld} * {scale}")
            else:
                self.out(f"    {rn} += {ld}")
            self.values[name] = (rn, ("p", "f") if kind == "feature" else ("p",))
        self.loads = {}
        for e in f.rows:
            if e.name not in self.values:
                self._row(e)
        self._stores()
        return "\n\n" + "\n".join(self.lines) + "\n"


def _removed(e) -> str:
    """What a map Einsum holds at a point its predicate removes: the identity
    of its reduction (0; -inf for `max[]`, +inf for `min[]`)."""
    return {"max": 'float("-inf")', "min": 'float("inf")'}.get(e.reduce, "0.0")


def _shift_fits(e: Op):
    """Kernels compute coordinates in int32: a literal shift count past 30
    would wrap or be undefined where the executor (int64) is exact."""
    if e.name in ("shl", "shr") and isinstance(e.args[1], Num) and not 0 <= e.args[1].value <= 30:
        raise FusedFormError(f"shift count {e.args[1]} in {e}: kernels shift 32-bit integers (counts 0..30); "
                             "the reference executor takes 0..62", e.loc)


def op_template(e: Op) -> str | None:
    """`value_template` of `e`, with `x ^ n` for a whole literal |n| <= 4 as
    a product (exact, any sign of x; numpy's 0 ^ -1 = inf, x ^ 0 = 1)."""
    _shift_fits(e)
    if e.name == "pow" and isinstance(e.args[1], Num) and float(e.args[1].value).is_integer() \
            and abs(e.args[1].value) <= 4:
        n = int(e.args[1].value)
        if n == 0:
            return "tl.where(({0}) == ({0}), 1.0, 1.0)"
        prod = " * ".join(["({0})"] * abs(n))
        return f"({prod})" if n > 0 else f"(1.0 / ({prod}))"
    return value_template(e.name)


def number_codes(e: Op, codes: list[str], bools=frozenset()) -> list[str]:
    """The operands' code where `e` wants numbers: a condition is 1.0 or 0.0
    (Triton's int1 arithmetic wraps: (a < b) - (c < d) would be 1, not -1).
    `bools`: the bool tensors, whose loads are conditions too."""
    if e.name in ("and", "or", "not"):
        return codes
    out = []
    for k, (a, code) in enumerate(zip(e.args, codes)):
        cond = (isinstance(a, Op) and a.name in BOOLEAN_OPS) or (isinstance(a, Access) and a.tensor in bools)
        out.append(f"({code}).to(tl.float32)" if cond and not (e.name == "select" and k == 0) else code)
    return out


def value_template(op: str) -> str | None:
    """Triton code of a value operator, `{}` standing for its arguments
    (shared by both generators). `%` and `//` floor as numpy does, for
    float and integer operands alike (Triton's own `%` is C's fmod)."""
    if op in ("mod", "floordiv"):
        return "_vmod({}, {})" if op == "mod" else "_vfloordiv({}, {})"
    if op in _BIN or op in _CMP:
        return f"({{}} {_BIN.get(op) or _CMP[op]} {{}})"
    if op in _FN:
        return f"{_FN[op]}(({{}}) * 1.0)"
    if op in _BITS:
        return f"({_INT} {_BITS[op]} {_INT}).to(tl.float32)"
    if op == "pow":
        return "_pow({}, {})"
    return {"and": "({} & {})", "or": "({} | {})", "not": "({} == 0)",
            "neg": "(-{})", "tanh": "(2.0 * tl.sigmoid(2.0 * ({})) - 1.0)", "max": "tl.maximum({}, {})",
            "min": "tl.minimum({}, {})", "clip": "tl.minimum(tl.maximum({}, {}), {})",
            "select": "tl.where({}, {}, {})"}.get(op)


def zero_quotient(e: Op) -> str:
    """Triton code of the quotient or difference `e` under `empty rows = 0`,
    where 0 / 0 is 0 and (-inf) - (-inf) is -inf, `{0}` and `{1}` standing for
    its operands (shared by both generators); a literal operand other than 0
    (a finite one) cannot make 0 / 0 ((-inf) - (-inf))."""
    num, den = e.args
    if e.name == "sub":                   # (-inf) - (-inf) is -inf; a finite literal cannot make it
        finite = any(isinstance(x, Num) and abs(x.value) != float("inf") for x in e.args)
        return "({0} - {1})" if finite else "_sub00({0}, {1})"
    if isinstance(den, Num) or isinstance(num, Num) and num.value != 0:
        return "({0} / {1})"
    if isinstance(num, Num):              # 0 / b: 0, or NaN for a NaN divisor
        return "tl.where({1} != {1}, {1}, 0.0)"
    return "_div00({0}, {1})"


def index_template(e: Op, ranks=frozenset()) -> str | None:
    """Triton code of an integer index operator (floor semantics for // and %:
    Triton's truncate, so they are used bare only for a dividend known >= 0
    and a divisor known > 0; `ranks`: symbols that are extents, so >= 1)."""
    if e.name in ("floordiv", "div", "mod"):
        bare = _nonneg(e.args[0], ranks) and _positive(e.args[1], ranks)
        if e.name == "mod":
            return "({} % {})" if bare else "_mod({}, {})"
        return "({} // {})" if bare else "_floordiv({}, {})"
    if e.name in _BIN:
        return f"({{}} {_BIN[e.name]} {{}})"
    if e.name in _BITS:                 # int32: a shift count lies in 0..31 in a kernel
        _shift_fits(e)
        return f"({{}} {_BITS[e.name]} {{}})"
    return {"neg": "(-{})", "max": "tl.maximum({}, {})", "min": "tl.minimum({}, {})"}.get(e.name)




def _nonneg(e: Expr, ranks=frozenset()) -> bool:
    """Known non-negative: coordinates, extents (symbols in `ranks`; any other
    shape symbol may be negative), numbers >= 0, and their sums, products and
    floor quotients and remainders by a positive divisor."""
    if isinstance(e, Idx):
        return True
    if isinstance(e, Sym):
        return e.name in ranks
    if isinstance(e, Num):
        return e.value >= 0
    if isinstance(e, Op) and e.name in ("floordiv", "div", "mod"):
        return _positive(e.args[1], ranks) and (e.name == "mod" or _nonneg(e.args[0], ranks))
    return isinstance(e, Op) and e.name in ("add", "mul") and all(_nonneg(a, ranks) for a in e.args)


def _positive(e: Expr, ranks=frozenset()) -> bool:
    """Known > 0: numbers > 0, extents, and their sums and products."""
    if isinstance(e, Sym):
        return e.name in ranks
    if isinstance(e, Num):
        return e.value > 0
    return isinstance(e, Op) and e.name in ("add", "mul") and all(_positive(a, ranks) for a in e.args)


def _reads(e: Expr) -> bool:
    return any(isinstance(n, Access) for n in walk(e))


# computed indices (docs/notation.md) in int32: conditions are 0 or 1
_COMPUTED_INDEX = {**{n: f"({{}} {c} {{}}).to(tl.int32)" for n, c in _CMP.items()},
                   "and": "((({}) != 0) & (({}) != 0)).to(tl.int32)", "or": "((({}) != 0) | (({}) != 0)).to(tl.int32)",
                   "not": "(({}) == 0).to(tl.int32)", "select": "tl.where(({}) != 0, {}, {})",
                   "clip": "tl.minimum(tl.maximum({}, {}), {})", "abs": "tl.abs({})"}


def _has_gather(c) -> bool:
    """Does an access index of `c` read a tensor (`OFF[DOC[p]]`) or compute
    (`TB[h, bucket(m - p)]`)? Either may leave its tensor: the kernel flags it."""
    return any(_reads(i) or computed_index(i) for e in c.einsums for a in e.reads() for i in a.indices)


def wide_tensors(c, env: dict) -> frozenset:
    """Tensors of `c` with WIDE_ELEMENTS or more elements at `env` (every
    tensor when an extent is unknown: 64-bit is always right)."""
    out = set()
    for t in c.tensors:
        n = 1
        for r in t.ranks:
            n *= int(env.get(r, WIDE_ELEMENTS))
        if n >= WIDE_ELEMENTS:
            out.add(t.name)
    return frozenset(out)


def generate(program: TileProgram | FusedForm, mapping: GPUMapping, env: dict) -> KernelSource:
    """Triton source of the fused kernel (and the split-KV combine kernel) for
    a tile program (or the program of a fused form)."""
    if isinstance(program, FusedForm):
        program = tile_program(program)
    return Generator(program, mapping, env).generate()


__all__ = ["KernelSource", "generate"]
