"""The IR of extended Einsums: immutable nodes that compare by structure.

`str(node)` prints valid `.ein` text (see `printer.py`), so the printer is the
first debugger. Source locations ride along for error messages but take no
part in equality or hashing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator

from .errors import Loc
from .ops import DEFAULT_DTYPE

_LOC = dict(default=None, compare=False, repr=False, hash=False)


# ---------------------------------------------------------------- expressions

class Expr:
    """Base of expression nodes. Arithmetic and ordering operators build nodes
    (the Python builder API); `==` stays structural equality."""

    def _op(self, name, *others):
        return Op(name, (self, *map(as_expr, others)))

    def __add__(self, o): return self._op("add", o)
    def __radd__(self, o): return as_expr(o)._op("add", self)
    def __sub__(self, o): return self._op("sub", o)
    def __rsub__(self, o): return as_expr(o)._op("sub", self)
    def __mul__(self, o): return self._op("mul", o)
    def __rmul__(self, o): return as_expr(o)._op("mul", self)
    def __truediv__(self, o): return self._op("div", o)
    def __rtruediv__(self, o): return as_expr(o)._op("div", self)
    def __floordiv__(self, o): return self._op("floordiv", o)
    def __mod__(self, o): return self._op("mod", o)
    def __pow__(self, o): return self._op("pow", o)
    def __rpow__(self, o): return as_expr(o)._op("pow", self)
    def __lshift__(self, o): return self._op("shl", o)
    def __rshift__(self, o): return self._op("shr", o)
    def __neg__(self): return Op("neg", (self,))
    def __lt__(self, o): return self._op("lt", o)
    def __le__(self, o): return self._op("le", o)
    def __gt__(self, o): return self._op("gt", o)
    def __ge__(self, o): return self._op("ge", o)
    def __and__(self, o): return self._op("and", o)     # logic, as `and` in the text (bitwise: builder.bitand)
    def __or__(self, o): return self._op("or", o)
    def __invert__(self): return Op("not", (self,))

    def __str__(self) -> str:
        from .printer import format_expr
        return format_expr(self)


@dataclass(frozen=True)
class Num(Expr):
    """A numeric constant (`inf` included)."""
    value: float
    loc: Loc | None = field(**_LOC)


@dataclass(frozen=True)
class Sym(Expr):
    """A shape symbol (a rank's extent such as `M`, or a free one such as `W`)."""
    name: str
    loc: Loc | None = field(**_LOC)


@dataclass(frozen=True)
class Idx(Expr):
    """An index variable (`m` ranges over rank `M`); in a map expression its
    coordinate value."""
    name: str
    loc: Loc | None = field(**_LOC)


@dataclass(frozen=True)
class Access(Expr):
    """An element of a tensor: `K[b, h / G, e, m]`."""
    tensor: str
    indices: tuple[Expr, ...]
    loc: Loc | None = field(**_LOC)


@dataclass(frozen=True)
class Op(Expr):
    """An operator applied to arguments; `name` is a key of `ops.RULES`."""
    name: str
    args: tuple[Expr, ...]
    loc: Loc | None = field(**_LOC)

    def __bool__(self):
        # `a < b < c` in the builder would silently drop `a < b`.
        raise TypeError(f"the expression {self} has no truth value; combine conditions with & | ~")


def as_expr(x) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool):
        raise TypeError("booleans are not expressions; write a comparison")
    if isinstance(x, (int, float)):
        return Num(x)
    raise TypeError(f"cannot use {x!r} in an expression")


def walk(e: Expr) -> Iterator[Expr]:
    """All nodes of an expression, parents first, access indices included."""
    yield e
    if isinstance(e, Access):
        for i in e.indices:
            yield from walk(i)
    elif isinstance(e, Op):
        for a in e.args:
            yield from walk(a)


def substitute(e: Expr, values: dict[str, Expr]) -> Expr:
    """`e` with each index variable named in `values` replaced (let-expansion)."""
    if isinstance(e, Idx):
        return values.get(e.name, e)
    if isinstance(e, Access):
        return Access(e.tensor, tuple(substitute(i, values) for i in e.indices), loc=e.loc)
    if isinstance(e, Op):
        return Op(e.name, tuple(substitute(a, values) for a in e.args), loc=e.loc)
    return e


def index_vars(e: Expr) -> list[str]:
    """Index variables in order of first appearance."""
    seen: dict[str, None] = {}
    for n in walk(e):
        if isinstance(n, Idx):
            seen.setdefault(n.name)
    return list(seen)


ROUNDING = ("floor", "ceil")
"""The functions that make a real number an index (docs/notation.md,
Computed indices): inside an access index their argument is a real-valued
expression (`/` divides exactly there), everywhere else an index is whole."""

ADDRESSING = frozenset({"add", "sub", "mul", "floordiv", "mod", "neg", "band", "bor", "xor", "shl", "shr"})
"""Operators of plain index arithmetic (addressing); an index using any other
(a comparison, select, min, max, clip, abs, floor, ceil) is *computed*."""


def computed_index(e: Expr) -> bool:
    """Does the access index `e` compute (an operator outside ADDRESSING, its
    own gathers' indices not counted)? Such an index may leave its tensor
    anywhere, like a gather: every stage bounds-checks or refuses it."""
    if isinstance(e, Op):
        return e.name not in ADDRESSING or any(computed_index(a) for a in e.args)
    return False


def integer_nodes(e: Expr) -> Iterator[Expr]:
    """The nodes of an access index evaluated in whole numbers: all but the
    arguments of floor and ceil (real-valued), an inner access's indices
    included (each is an index again)."""
    yield e
    if isinstance(e, Access):
        for i in e.indices:
            yield from integer_nodes(i)
    elif isinstance(e, Op):
        for a in e.args:
            if e.name in ROUNDING:
                yield from (n for x in walk(a) if isinstance(x, Access) for i in x.indices
                            for n in integer_nodes(i))
            else:
                yield from integer_nodes(a)


def conjuncts(pred: Expr | None) -> list[Expr]:
    """The terms of a predicate's top-level `and`, left to right (none for no
    predicate)."""
    if pred is None:
        return []
    if isinstance(pred, Op) and pred.name == "and":
        return conjuncts(pred.args[0]) + conjuncts(pred.args[1])
    return [pred]


def accesses(e: Expr) -> list[Access]:
    return [n for n in walk(e) if isinstance(n, Access)]


def rank_of(var: str) -> str:
    """Index variable `m1` ranges over rank `M1`."""
    return var.upper()


def var_of(rank: str) -> str:
    return rank.lower()


def offset_of(index: Expr) -> tuple[str, int] | None:
    """`m1` -> ('m1', 0), `m1 + 1` -> ('m1', 1); other forms -> None."""
    if isinstance(index, Idx):
        return index.name, 0
    if (isinstance(index, Op) and index.name == "add" and isinstance(index.args[0], Idx)
            and isinstance(index.args[1], Num) and index.args[1].value == 1):
        return index.args[0].name, 1
    return None


# ---------------------------------------------------------------- declarations

@dataclass(frozen=True)
class Rank:
    """A named dimension. Its extent is the shape symbol of the same name.

    - a free rank (`rank M`) gets its extent from the user's shapes;
    - a derived rank (`rank KH = H / G`) has `definition`;
    - the parts of a partition (`partition M -> M1, M0`) have `parent` = 'M'
      and `part` 'outer' (extent ceil(M / M0)) or 'inner' (the tile size M0,
      free); coordinates relate as m = m1 * M0 + m0.
    """
    name: str
    definition: Expr | None = None
    parent: str | None = None
    part: str | None = None
    loc: Loc | None = field(**_LOC)
    implicit: bool = field(default=False, compare=False)
    """Created by the language, not written: the second H of `PRE[H, H]` (rank
    H2 = H) or the literal extent of `INTV[NI, 2]` (rank _2 = 2). The printer
    writes the declaration as the user did and no `rank` line for it."""


def literal_rank(n: int) -> str:
    """The rank a literal extent `2` in a declaration stands for: `_2`, a name
    no user can write (index variables start with a letter)."""
    return f"_{n}"


def repeat_rank(rank: str, k: int) -> str:
    """The alias rank of the k-th (k >= 2) occurrence of `rank` in one
    declaration: H -> H2, H3; M1 -> M1_2 (a digit would run into the count)."""
    return f"{rank}_{k}" if rank[-1].isdigit() else f"{rank}{k}"


@dataclass(frozen=True)
class Domain:
    """The values an input takes: an interval with open or closed ends
    (`in (0, 1)`, `> 0` is (0, inf)). `random_inputs` draws inside it and
    `execute(check_domains=True)` checks the inputs against it."""
    lo: float = -math.inf
    hi: float = math.inf
    lo_closed: bool = False
    hi_closed: bool = False

    def contains(self, x):
        """Elementwise membership (numpy arrays or scalars)."""
        above = (x >= self.lo) if self.lo_closed else (x > self.lo)
        below = (x <= self.hi) if self.hi_closed else (x < self.hi)
        return above & below

    def integer_ends(self) -> tuple[float, float]:
        """The least and greatest integers inside (an infinite end stays infinite)."""
        lo, hi = self.lo, self.hi
        if math.isfinite(lo):
            lo = math.ceil(lo) if self.lo_closed or not float(lo).is_integer() else lo + 1
        if math.isfinite(hi):
            hi = math.floor(hi) if self.hi_closed or not float(hi).is_integer() else hi - 1
        return lo, hi

    def __str__(self) -> str:
        from .printer import format_domain
        return format_domain(self)


@dataclass(frozen=True)
class Mask:
    """`mask causal = m <= p`: a named condition. Uses are expanded where they
    are written (the IR's predicates hold the condition itself, so every
    analysis sees plain predicates); the printer writes the name back."""
    name: str
    condition: Expr
    loc: Loc | None = field(**_LOC)


@dataclass(frozen=True)
class TensorDecl:
    """A tensor: ordered ranks, element type, and role (input, output, or
    intermediate `tensor`). An iterative rank (listed in `iterative`) holds
    extent + 1 iterates, 0 .. extent."""
    name: str
    ranks: tuple[str, ...]
    dtype: str = DEFAULT_DTYPE
    role: str = "tensor"
    iterative: frozenset[str] = frozenset()
    loc: Loc | None = field(**_LOC)
    domain: Domain | None = None


SCAN_OPS = ("cumsum", "cumprod")
"""The scans: `cumsum[p]` (+) and `cumprod[p]` (*), each with the flags
`exclusive` and `reverse` (docs/notation.md, Scans)."""

SCAN_FLAGS = ("reverse", "exclusive")


@dataclass(frozen=True)
class Scan:
    """`cumsum[p, reverse, exclusive]`: after the Einsum's reduction (over
    the indices absent from the output), a running sum or product along the
    output index `var`. Prefix (`y[p] = x[0] + .. + x[p]`) or suffix
    (`reverse`: x[p] + .. + x[P-1]); `exclusive` leaves out x[p] itself
    (y[0] = 0, or 1 for a product). The output keeps `var`: a scan is a map
    over the rank whose every element depends on a whole prefix or suffix."""
    op: str
    var: str
    reverse: bool = False
    exclusive: bool = False
    loc: Loc | None = field(**_LOC)

    @property
    def identity(self) -> float:
        return 0.0 if self.op == "cumsum" else 1.0

    @property
    def kind(self) -> str:
        """The operation kind of one scan step (docs/analysis.md, Scans)."""
        return "add" if self.op == "cumsum" else "mul"

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(f for f, on in (("reverse", self.reverse), ("exclusive", self.exclusive)) if on)

    def __str__(self) -> str:
        return f"{self.op}[{', '.join((self.var,) + self.flags)}]"


@dataclass(frozen=True)
class Einsum:
    """`output = reduce[reduced] expr where predicate`.

    The iteration space is every index variable that appears; the ones absent
    from the output are reduced with `reduce`. An output index `m1 + 1` makes
    the Einsum iterative over m1; an output index `0` makes it the initial
    value of an iterative tensor.
    """
    output: Access
    expr: Expr
    reduce: str = "sum"
    reduced: tuple[str, ...] = ()
    predicate: Expr | None = None
    loc: Loc | None = field(**_LOC)
    scan: Scan | None = None
    """A scan along an output index, applied after the reduction (`reduce`
    is then "sum" over `reduced`, the other indices absent from the output)."""

    @property
    def name(self) -> str:
        return self.output.tensor

    @property
    def output_vars(self) -> list[str]:
        return index_vars(self.output)

    @property
    def iteration_vars(self) -> list[str]:
        seen: dict[str, None] = {}
        parts = [self.output, self.expr] + ([self.predicate] if self.predicate is not None else [])
        for part in parts:
            for v in index_vars(part):
                seen.setdefault(v)
        return list(seen)

    @property
    def iterative_var(self) -> str | None:
        """The variable v of an output index `v + 1`, if any."""
        for i in self.output.indices:
            o = offset_of(i)
            if o and o[1] == 1:
                return o[0]
        return None

    @property
    def is_initial(self) -> bool:
        return any(isinstance(i, Num) for i in self.output.indices)

    def reads(self) -> list[Access]:
        """Tensor accesses of the map expression and the predicate."""
        found = accesses(self.expr)
        if self.predicate is not None:
            found += accesses(self.predicate)
        return found

    def __str__(self) -> str:
        from .printer import format_einsum
        return format_einsum(self)


@dataclass(frozen=True)
class Cascade:
    """An ordered list of Einsums over declared ranks and tensors.

    Built only through `assemble` (parser or builder), which infers what the
    text leaves implicit and validates the whole; so every Cascade is valid.
    """
    ranks: tuple[Rank, ...]
    tensors: tuple[TensorDecl, ...]
    einsums: tuple[Einsum, ...]
    name: str = field(default="cascade", compare=False)
    doc: str = field(default="", compare=False, repr=False)
    source: str | None = field(default=None, compare=False, repr=False)
    empty_rows: str = "nan"
    """`empty rows = 0 | nan` (docs/notation.md, Empty rows): under "0" a
    quotient 0 / 0 in a map is 0 and a difference (-inf) - (-inf) is -inf,
    so a row with no visible key ends as 0 (FlexAttention's convention);
    under "nan" both are IEEE's NaN."""
    masks: tuple[Mask, ...] = field(default=(), compare=False, repr=False)
    """Named masks, for printing: their conditions are already in the
    predicates, so two cascades that differ only in naming are equal."""

    # lookups -------------------------------------------------------------
    def rank(self, name: str) -> Rank:
        for r in self.ranks:
            if r.name == name:
                return r
        raise KeyError(name)

    def tensor(self, name: str) -> TensorDecl:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def has_tensor(self, name: str) -> bool:
        return any(t.name == name for t in self.tensors)

    @property
    def inputs(self) -> list[TensorDecl]:
        return [t for t in self.tensors if t.role == "input"]

    @property
    def outputs(self) -> list[TensorDecl]:
        return [t for t in self.tensors if t.role == "output"]

    def writers(self, tensor: str) -> list[Einsum]:
        return [e for e in self.einsums if e.name == tensor]

    def readers(self, tensor: str) -> list[Einsum]:
        return [e for e in self.einsums if any(a.tensor == tensor for a in e.reads())]

    def parts(self, root: str) -> list[str]:
        """A rank and all ranks partitioned out of it, recursively."""
        out = [root]
        for r in self.ranks:
            if r.parent is not None and r.parent in out:
                out.append(r.name)
        return out

    def inner_of(self, outer: str) -> str:
        """The tile-size rank partitioned out beside `outer` (M0 for M1)."""
        parent = self.rank(outer).parent
        return next(x.name for x in self.ranks if x.parent == parent and x.part == "inner")

    def root(self, rank: str) -> str:
        r = self.rank(rank)
        return self.root(r.parent) if r.parent else rank

    def replace(self, **changes) -> "Cascade":
        return replace(self, **changes)

    def __str__(self) -> str:
        from .printer import format_cascade
        return format_cascade(self)
