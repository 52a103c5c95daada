"""A second, independent evaluator of a Cascade: slow, plain, obviously right.

It exists to check the numpy executor (`einsum_ir.execute`), so it shares
nothing with it but the IR: its own operator table (Python floats and `math`),
its own extent resolution, its own order of evaluation. Every tensor element
is computed on demand, once, by visiting each point of its Einsum's iteration
space with `itertools.product` and folding the reduction by hand; a recurrence
is then just a chain of such demands (`RD[m1+1]` asks for `SPD[m1]`, which asks
for `RD[m1]`), so no schedule is needed, and a true cycle shows up as an
element that asks for itself.

Meaning, as in docs/notation.md:
- a point exists when every partition it spans has `outer*inner + inner' < parent`
  and the `where` predicate holds; removed points are not evaluated at all;
- the identity of an empty reduction is 0 for sum and plain maps, -inf for max
  (`max[]` included), +inf for min;
- `/` and `-` follow IEEE (x / 0 = +-inf, 0 / 0 = NaN, -inf - -inf = NaN),
  except that under `empty rows = 0` a quotient 0 / 0 is 0 and a
  difference (-inf) - (-inf) is -inf;
- `/` in an access index (and in a rank definition) is floor division of
  integers, `//` and `%` in values floor like Python;
- `and` / `or` evaluate their right side only where the left side does not
  decide (a read guarded by `p - m < N and T[p - m]` is never out of range);
  both branches of `select` are evaluated at every existing point;
- an access out of bounds at an existing point is an error.

For tiny shapes only: `evaluate` refuses (OracleTooLarge) above `limit` points.
"""
from __future__ import annotations

import itertools
import math
import sys
from fractions import Fraction
from functools import partial

import numpy as np

from .errors import ExecutionError, ShapeError
from .ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, Sym, walk
from .printer import format_expr

DEFAULT_LIMIT = 200_000


class OracleError(ExecutionError):
    """The oracle cannot give an answer (a cycle, an unwritten element, ...)."""


class OracleTooLarge(OracleError):
    """The shapes have too many points for a Python loop evaluator."""


class OracleBoundsError(OracleError):
    """An access out of its tensor's bounds at an existing point."""


# ------------------------------------------------------------------ operators

def _div(a, b):
    if b != 0:
        return a / b
    if a == 0 or a != a:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _floordiv(a, b):
    return a // b if b != 0 else _div(a, b)


def _mod(a, b):
    return a % b if b != 0 else math.nan


def _exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _exp2(x):
    try:
        return 2.0 ** x
    except OverflowError:
        return math.inf


def _logarithm(fn, x):
    if x != x or x < 0:
        return math.nan
    return -math.inf if x == 0 else fn(x)


def _sqrt(x):
    return math.nan if (x != x or x < 0) else math.sqrt(x)


def _sigmoid(x):
    if x != x:
        return x
    if x >= 0:
        return 1.0 / (1.0 + _exp(-x))
    z = _exp(x)
    return z / (1.0 + z)


def _rounded(fn, x):
    """floor or ceil as numpy's: a zero result keeps its argument's sign
    (ceil(-0.5) = -0.0, as 1 / it = -inf shows)."""
    if not math.isfinite(x):
        return x
    r = float(fn(x))
    return math.copysign(r, x) if r == 0 else r


_floor, _ceil = partial(_rounded, math.floor), partial(_rounded, math.ceil)


def _max(a, b):
    if a != a or b != b:
        return math.nan
    return a if a >= b else b


def _min(a, b):
    if a != a or b != b:
        return math.nan
    return a if a <= b else b


def _pow(a, b):
    """C99's pow (numpy's): a negative base to a fraction is NaN, 0 ^ -1 inf."""
    a, b = float(a), float(b)
    odd = b.is_integer() and b % 2 == 1
    if a < 0 and math.isfinite(b) and not b.is_integer():
        return math.nan                     # numpy's, also for a = -inf (where C99 gives inf)
    try:
        return math.pow(a, b)
    except OverflowError:
        return -math.inf if (a < 0 and odd) else math.inf
    except ValueError:
        if a == 0:
            return math.copysign(math.inf, a) if odd else math.inf
        return math.nan


def _guarded(fn, x):
    """`fn` from math, NaN where math refuses (sin(inf), log1p(-2)), inf past the range (expm1(1000))."""
    if x != x:
        return x
    try:
        return fn(x)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


def _log1p(x):
    return -math.inf if x == -1 else _guarded(math.log1p, x)


def _softplus(x):
    """max(x, 0) + log(1 + e^-|x|): no overflow, no loss at either end."""
    return x if x != x else max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _logsigmoid(x):
    return x if x != x else min(x, 0.0) - math.log1p(math.exp(-abs(x)))


def _whole(x) -> int:
    """A bitwise operand: a whole number that fits in a 64-bit integer (the
    executor's int64; Python's integers would not overflow where it does)."""
    if not (isinstance(x, bool) or (isinstance(x, (int, float)) and math.isfinite(x) and float(x).is_integer())):
        raise ValueError(f"a bitwise operand is not an integer: {x}")
    if not -2 ** 63 <= int(x) < 2 ** 63:
        raise ValueError(f"a bitwise operand does not fit in a 64-bit integer: {x}")
    return int(x)


def _shifted(a: int, s: int, left: bool) -> int:
    """a << s or a >> s on 64-bit integers, refused where int64 would wrap."""
    if not 0 <= s <= 62:
        raise ValueError(f"a shift count must lie in 0..62, got {s}")
    if left and not -2 ** 63 <= a << s < 2 ** 63:
        raise ValueError(f"{a} << {s} does not fit in a 64-bit integer")
    return a << s if left else a >> s


def _bits(fn, a, b):
    return float(fn(_whole(a), _whole(b)))


# name -> function of Python floats / bools. `and` and `or` are listed for
# completeness; the evaluator short-circuits them itself.
VALUE_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": _div,
    "floordiv": _floordiv,
    "mod": _mod,
    "neg": lambda a: -a,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "and": lambda a, b: a and b,
    "or": lambda a, b: a or b,
    "not": lambda a: not a,
    "exp": _exp,
    "exp2": _exp2,
    "log": partial(_logarithm, math.log),
    "log2": partial(_logarithm, math.log2),
    "sqrt": _sqrt,
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
    "abs": abs,
    "floor": _floor,
    "ceil": _ceil,
    "max": _max,
    "min": _min,
    "clip": lambda x, lo, hi: _min(_max(x, lo), hi),
    "select": lambda c, a, b: a if c else b,
    "pow": _pow,
    "sin": partial(_guarded, math.sin), "cos": partial(_guarded, math.cos), "tan": partial(_guarded, math.tan),
    "erf": math.erf, "softplus": _softplus, "logsigmoid": _logsigmoid, "log1p": _log1p,
    "expm1": partial(_guarded, math.expm1),
    "band": partial(_bits, lambda a, b: a & b), "bor": partial(_bits, lambda a, b: a | b),
    "xor": partial(_bits, lambda a, b: a ^ b),
    "shl": partial(_bits, lambda a, b: _shifted(a, b, True)),
    "shr": partial(_bits, lambda a, b: _shifted(a, b, False)),
}

# integer arithmetic of access indices and rank definitions
INDEX_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b,
    "div": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "neg": lambda a: -a,
    "band": lambda a, b: a & b,
    "bor": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "shl": lambda a, b: _index_shift(a, b, True),
    "shr": lambda a, b: _index_shift(a, b, False),
    # computed indices (docs/notation.md): conditions are 0 or 1, and whole numbers stay Python ints
    "lt": lambda a, b: int(a < b), "le": lambda a, b: int(a <= b), "gt": lambda a, b: int(a > b),
    "ge": lambda a, b: int(a >= b), "eq": lambda a, b: int(a == b), "ne": lambda a, b: int(a != b),
    "and": lambda a, b: int(bool(a) and bool(b)), "or": lambda a, b: int(bool(a) or bool(b)),
    "not": lambda a: int(not a), "select": lambda c, a, b: a if c else b,
    "min": min, "max": max, "clip": lambda x, lo, hi: min(max(x, lo), hi), "abs": abs,
    "pow": lambda a, b: a ** b,
}


def _index_shift(a: int, b: int, left: bool) -> int:
    try:
        return _shifted(a, b, left)
    except ValueError as err:
        raise OracleError(str(err)) from None

# reduction: (identity, fold)
def _sum(acc, x):
    return acc + x


REDUCTIONS = {"sum": (0.0, _sum), "max": (-math.inf, _max), "min": (math.inf, _min)}


# ------------------------------------------------------------------ extents

def _int_expr(e: Expr, env: dict, what: str, exact: bool = False) -> int | Fraction:
    """An integer expression over shape symbols (and, given `env`, variables).
    `exact`: an extent's `/`, exact division (a Fraction where it is not whole,
    refused by `extents` as the notation says), not an index's floor."""
    if isinstance(e, Num):
        if not float(e.value).is_integer():
            raise OracleError(f"{what}: {e} is not an integer")
        return int(e.value)
    if isinstance(e, (Sym, Idx)):
        v = env[e.name]
        if not float(v).is_integer():
            raise OracleError(f"{what}: {e.name} = {v} is not an integer")
        return int(v)
    if isinstance(e, Op) and e.name in INDEX_OPS:
        args = [_int_expr(a, env, what, exact) for a in e.args]
        if e.name in ("floordiv", "div", "mod") and args[1] == 0:
            raise OracleError(f"{what}: division by zero in {format_expr(e, True)}")
        if exact and e.name == "div":
            return Fraction(args[0]) / args[1]
        return INDEX_OPS[e.name](*args)
    raise OracleError(f"{what}: {e} is not integer arithmetic")


def _symbols(c: Cascade) -> set[str]:
    """Every shape symbol a value is needed for: all ranks, and every symbol
    named in an expression."""
    names = {r.name for r in c.ranks}
    exprs = [x for e in c.einsums for x in (e.output, e.expr, e.predicate) if x is not None]
    exprs += [r.definition for r in c.ranks if r.definition is not None]
    for x in exprs:
        names |= {n.name for n in walk(x) if isinstance(n, Sym)}
    return names


def _set(env: dict, name: str, value, why: str):
    if name in env and env[name] != value:
        raise ShapeError(f"conflicting shapes: {name} = {env[name]}, but {why} gives {value}")
    env[name] = value


def _from_inputs(c: Cascade, env: dict, arrays: dict):
    for t in c.inputs:
        shape = arrays[t.name].shape
        if len(shape) != len(t.ranks):
            raise ShapeError(f"input {t.name} has {len(shape)} dimensions, its declaration "
                             f"[{', '.join(t.ranks)}] {len(t.ranks)}")
        for r, n in zip(t.ranks, shape):
            _set(env, r, n - 1 if r in t.iterative else n, f"input {t.name}")


def extents(c: Cascade, shapes: dict | None, arrays: dict) -> dict:
    """Value of every symbol: given, read off the inputs, or derived
    (`rank KH = H / G`, `rank J = M0`, `M1 = ceil(M / M0)`), until nothing changes."""
    env = dict(shapes or {})
    _from_inputs(c, env, arrays)
    ranks = {r.name: r for r in c.ranks}
    progress = True
    while progress:
        progress = False
        for r in c.ranks:
            if r.definition is not None:
                need = {n.name for n in walk(r.definition) if isinstance(n, Sym)}
                if need <= env.keys():
                    value, why = _int_expr(r.definition, env, f"rank {r.name}", exact=True), f"{r.name} = {r.definition}"
                else:
                    continue
            elif r.part == "outer":
                inner = next(x.name for x in c.ranks if x.parent == r.parent and x.part == "inner")
                if r.parent not in env or inner not in env:
                    continue
                if not env[inner] >= 1:
                    raise ShapeError(f"tile size {inner} = {env[inner]} must be a positive integer")
                value, why = -(-int(env[r.parent]) // int(env[inner])), f"{r.name} = ceil({r.parent} / {inner})"
            else:
                continue
            if r.name not in env:
                progress = True
            _set(env, r.name, value, why)
    missing = sorted(_symbols(c) - env.keys())
    if missing:
        raise ShapeError(f"the oracle needs a value for {', '.join(missing)}")
    for name in ranks:
        v = env[name]
        if not float(v).is_integer() or v < 1:
            raise ShapeError(f"extent of rank {name} is {float(v):g}, not a positive integer")
        env[name] = int(v)
    return env


# ------------------------------------------------------------------ the evaluator

def _variables(e: Einsum) -> list[str]:
    """Index variables of the output, then of the map, then of the predicate."""
    seen: dict[str, None] = {}
    for part in (e.output, e.expr, e.predicate):
        if part is not None:
            for n in walk(part):
                if isinstance(n, Idx):
                    seen.setdefault(n.name)
    return list(seen)


def _where(e: Einsum, point: dict) -> str:
    return ", ".join(f"{v}={point[v]}" for v in _variables(e) if v in point)


class _Oracle:
    def __init__(self, c: Cascade, env: dict, arrays: dict):
        self.c, self.env, self.data = c, env, arrays
        self.done = {name: np.zeros(a.shape, dtype=np.int8) for name, a in arrays.items()}
        for t in c.inputs:
            self.done[t.name][...] = 2
        # (parent, outer, inner) of every partition
        self.partitions = [(r.parent, r.name, next(x.name for x in c.ranks
                                                   if x.parent == r.parent and x.part == "inner"))
                           for r in c.ranks if r.part == "outer"]

    def fail(self, cls, msg: str, node, e: Einsum):
        loc = getattr(node, "loc", None) or e.loc
        raise cls(f"{msg}\n  in: {e}", loc, self.c.source)

    # which Einsum writes an element, at which output point --------------------
    def writer(self, name: str, idx: tuple):
        for e in self.c.einsums:
            if e.output.tensor != name:
                continue
            point = self.match(e, idx)
            if point is not None:
                return e, point
        raise OracleError(f"no Einsum writes {name}[{', '.join(map(str, idx))}]")

    def match(self, e: Einsum, idx: tuple):
        point = {}
        for i, k in zip(e.output.indices, idx):
            if isinstance(i, Num):
                if k != int(i.value):
                    return None
            elif isinstance(i, Idx):
                point[i.name] = k
            else:  # v + 1
                v = i.args[0].name
                if k < 1:
                    return None
                point[v] = k - 1
        return point

    # existence of a point -------------------------------------------------------
    def coordinate(self, rank: str, point: dict):
        if rank.lower() in point:
            return point[rank.lower()]
        for parent, outer, inner in self.partitions:
            if parent == rank:
                co, ci = self.coordinate(outer, point), self.coordinate(inner, point)
                return None if co is None or ci is None else co * self.env[inner] + ci
        return None

    def inside(self, point: dict) -> bool:
        """False past the end of a partitioned rank."""
        for parent, outer, inner in self.partitions:
            co, ci = self.coordinate(outer, point), self.coordinate(inner, point)
            if co is not None and ci is not None and co * self.env[inner] + ci >= self.env[parent]:
                return False
        return True

    # elements -------------------------------------------------------------------
    def element(self, name: str, idx: tuple):
        state = self.done[name][idx]
        if state == 2:
            return self.data[name][idx]
        if state == 1:
            raise OracleError(f"{name}[{', '.join(map(str, idx))}] depends on itself")
        self.done[name][idx] = 1
        e, point = self.writer(name, idx)
        self.data[name][idx] = self.reduce(e, point) if e.scan is None else self.scan(e, point)
        self.done[name][idx] = 2
        return self.data[name][idx]

    def scan(self, e: Einsum, point: dict):
        """A scan element: the Einsum's reduction at each position of the
        prefix (or suffix) of the scanned index, folded by + or *; a position
        with no existing point contributes the scan's identity."""
        s = e.scan
        k, n = point[s.var], self.env[s.var.upper()]
        if s.reverse:
            positions = range(n - 1, k if s.exclusive else k - 1, -1)
        else:
            positions = range(0, k if s.exclusive else k + 1)
        acc = 0.0 if s.op == "cumsum" else 1.0
        for j in positions:
            found = []
            term = self.reduce(e, dict(point, **{s.var: j}), found)
            if not found:
                term = 0.0 if s.op == "cumsum" else 1.0
            acc = acc + term if s.op == "cumsum" else acc * term
        return acc

    def reduce(self, e: Einsum, point: dict, found: list | None = None):
        identity, fold = REDUCTIONS[e.reduce]
        acc = identity
        reduced = [v for v in _variables(e) if v not in point]
        ranges = [range(self.env[v.upper()]) for v in reduced]
        for values in itertools.product(*ranges):
            p = dict(point, **dict(zip(reduced, values)))
            if not self.inside(p):
                continue
            if e.predicate is not None and not self.value(e.predicate, p, e):
                continue
            if found is not None:
                found.append(True)
            acc = fold(acc, self.value(e.expr, p, e))
        return acc

    # expressions ------------------------------------------------------------------
    def value(self, x: Expr, p: dict, e: Einsum):
        if isinstance(x, Num):
            return float(x.value)
        if isinstance(x, Sym):
            return float(self.env[x.name])
        if isinstance(x, Idx):
            return float(p[x.name])
        if isinstance(x, Access):
            return self.read(x, p, e)
        if x.name == "and":
            return bool(self.value(x.args[0], p, e)) and bool(self.value(x.args[1], p, e))
        if x.name == "or":
            return bool(self.value(x.args[0], p, e)) or bool(self.value(x.args[1], p, e))
        fn = VALUE_OPS.get(x.name)
        if fn is None:
            self.fail(OracleError, f"the oracle has no rule for operator {x.name}", x, e)
        if x.name == "div" and self.c.empty_rows == "0":      # `empty rows = 0`: 0 / 0 is 0
            a, b = (self.value(y, p, e) for y in x.args)
            return 0.0 if a == 0 and b == 0 else _div(a, b)
        if x.name == "sub" and self.c.empty_rows == "0":      # and (-inf) - (-inf) is -inf
            a, b = (self.value(y, p, e) for y in x.args)
            return -math.inf if a == -math.inf and b == -math.inf else a - b
        try:
            return fn(*(self.value(a, p, e) for a in x.args))
        except ValueError as err:       # a bitwise operand that is no integer, a shift out of range
            self.fail(OracleError, f"{err} in {format_expr(x)}", x, e)

    def index(self, i: Expr, p: dict, e: Einsum, what: str) -> int:
        """An access index at point p: integer arithmetic of coordinates and
        symbols (`_int_expr`), where a tensor read (a gather, `OFF[DOC[p]]`)
        is read like any element, bounds-checked, and must be whole."""
        if not any(isinstance(n, Access) or isinstance(n, Op) and n.name in ("floor", "ceil") for n in walk(i)):
            return _int_expr(i, p | self.env, what)
        if isinstance(i, Op) and i.name in ("floor", "ceil"):     # a real number made whole
            v = self.value(i.args[0], p, e)
            v = math.floor(v) if i.name == "floor" and math.isfinite(v) else math.ceil(v) if math.isfinite(v) else v
            if not math.isfinite(v):
                raise OracleError(f"{what}: the computed {format_expr(i, True)} = {v} is not a finite whole number")
            return int(v)
        if isinstance(i, Access):
            v = self.read(i, p, e)
            if not (math.isfinite(v) and float(v).is_integer()):
                raise OracleError(f"{what}: the gathered {i} = {v} in {e.output.tensor} is not a whole number")
            return int(v)
        if isinstance(i, Op) and i.name in INDEX_OPS:
            args = [self.index(x, p, e, what) for x in i.args]
            if i.name in ("floordiv", "div", "mod") and args[1] == 0:
                raise OracleError(f"{what}: division by zero in {format_expr(i, True)}")
            return INDEX_OPS[i.name](*args)
        raise OracleError(f"{what}: {i} is not integer arithmetic")

    def read(self, a: Access, p: dict, e: Einsum):
        decl = self.c.tensor(a.tensor)
        shape = self.data[a.tensor].shape
        idx = []
        for pos, i in enumerate(a.indices):
            text = format_expr(i, True)
            try:
                k = self.index(i, p, e, f"index {text} of {a}")
            except OracleError as err:
                if isinstance(err, OracleBoundsError):   # a gather's own read, already located
                    raise
                self.fail(OracleError, err.message, a, e)
            if not 0 <= k < shape[pos]:
                side = "below 0" if k < 0 else f"past the end (size {shape[pos]})"
                self.fail(OracleBoundsError,
                          f"{e.output.tensor}: {a} is out of bounds at rank {pos + 1} ({decl.ranks[pos]}): "
                          f"{text} = {k}, {side}, at {_where(e, p)}", a, e)
            idx.append(k)
        v = self.element(a.tensor, tuple(idx))
        return bool(v) if decl.dtype == "bool" else float(v)


# ------------------------------------------------------------------ entry point

def _arrays(c: Cascade, inputs: dict) -> dict:
    names = {t.name for t in c.inputs}
    for k in inputs:
        if k not in names:
            raise ShapeError(f"{k} is not an input of {c.name}")
    out = {}
    for t in c.inputs:
        if t.name not in inputs:
            raise ShapeError(f"missing input {t.name}")
        x = np.asarray(inputs[t.name])
        out[t.name] = x.astype(bool) if t.dtype == "bool" else x.astype(np.float64)
    return out


def count_points(c: Cascade, env: dict) -> int:
    """Points of every iteration space, before predicates and partition ends."""
    return sum(math.prod(env[v.upper()] for v in _variables(e)) for e in c.einsums)


def evaluate(c: Cascade, inputs: dict, shapes: dict | None = None,
             limit: int = DEFAULT_LIMIT) -> dict[str, np.ndarray]:
    """Every tensor of `c` (inputs included, float64 or bool), computed point by
    point. Raises OracleTooLarge above `limit` points, OracleBoundsError for
    an access out of bounds at an existing point."""
    arrays = _arrays(c, inputs)
    env = extents(c, shapes, arrays)
    total = count_points(c, env)
    if total > limit:
        raise OracleTooLarge(f"{c.name} has {total} points at these shapes, over the oracle's limit of "
                             f"{limit}; the oracle is a Python loop for tiny shapes")
    for t in c.tensors:
        if t.role != "input":
            shape = tuple(env[r] + (1 if r in t.iterative else 0) for r in t.ranks)
            arrays[t.name] = np.zeros(shape, dtype=bool if t.dtype == "bool" else np.float64)
    oracle = _Oracle(c, env, arrays)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        for t in c.tensors:
            for idx in np.ndindex(arrays[t.name].shape):
                oracle.element(t.name, idx)
    finally:
        sys.setrecursionlimit(old)
    return arrays


__all__ = ["DEFAULT_LIMIT", "OracleBoundsError", "OracleError", "OracleTooLarge", "VALUE_OPS",
           "count_points", "evaluate", "extents"]
