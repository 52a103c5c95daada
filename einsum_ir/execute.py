"""The reference executor: the living definition of what a cascade means.

Each Einsum is evaluated over its iteration space by numpy broadcasting (one
array axis per index variable). Points removed by the `where` predicate, or
lying past the end of a partitioned rank (m1*M0 + m0 >= M), do not exist:
they take no part in the reduction, and an output point with no existing
points gets the reduction's identity (0 for sum and for plain maps, -inf for
max, +inf for min). Recurrences run step by step over their iterative rank.
A sum of products is contracted with `np.einsum` instead of materialising
the whole iteration space; that is the only shortcut.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import numpy as np

from .errors import ExecutionError, ShapeError
from .graph import schedule
from .ir import ROUNDING, Access, Cascade, Einsum, Expr, Idx, Num, Op, Sym, offset_of, rank_of, walk
from .parser import MAX_INDEX_LITERAL
from .ops import BITWISE_OPS, INTEGER_DTYPES, REDUCE_RULES, RULES
from .printer import format_expr
from .shapes import resolve


MAX_ELEMENTS = 2 ** 28
"""Most elements the reference executor puts in one array (a tensor, or the
iteration space of an Einsum it cannot contract): 2 GiB in float64. The
executor is the ground truth for small shapes; past this it would exhaust
memory or run for hours, so it refuses and says which array is too big."""


def _too_big(n: int, what: str, dims: str, loc=None, source=None):
    if n > MAX_ELEMENTS:
        raise ShapeError(f"{what} would hold {n:,} elements ({dims}); the reference executor holds at most "
                         f"{MAX_ELEMENTS:,} (2**28) in one array: run it at smaller shapes", loc, source)


@dataclass
class _Space:
    """The iteration space of one Einsum evaluation: each variable's range
    [start, stop) and its axis in the broadcast grid."""
    vars: list[str]
    ranges: dict[str, tuple[int, int]]

    def axis_shape(self, v: str) -> tuple[int, ...]:
        shape = [1] * len(self.vars)
        lo, hi = self.ranges[v]
        shape[self.vars.index(v)] = hi - lo
        return tuple(shape)

    def coords(self, v: str) -> np.ndarray:
        lo, hi = self.ranges[v]
        return np.arange(lo, hi).reshape(self.axis_shape(v))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.ranges[v][1] - self.ranges[v][0] for v in self.vars)


class _Evaluator:
    def __init__(self, c: Cascade, env: dict, arrays: dict, dtype):
        self.c, self.env, self.arrays, self.dtype = c, env, arrays, dtype

    def fail(self, msg, node, einsum):
        loc = getattr(node, "loc", None) or einsum.loc
        raise ExecutionError(msg + ("" if loc else f"\n  in: {einsum}"), loc, self.c.source)

    # expressions over the grid ------------------------------------------------
    def index(self, e: Expr, space: _Space, zeros: list | None = None, domain=None, einsum: Einsum | None = None):
        """Integer value of an index expression, broadcast over the grid. A
        divisor that is 0 somewhere raises, or, given `zeros`, is recorded
        there as (node, where) and replaced by 1, for the caller to judge
        against the points that exist. A gather (a tensor read, `OFF[DOC[p]]`)
        is bounds-checked at the points of `domain` (None: everywhere)."""
        if isinstance(e, Num):
            return np.int64(e.value)
        if isinstance(e, Sym):
            return np.int64(self.env[e.name])
        if isinstance(e, Idx):
            return space.coords(e.name)
        if isinstance(e, Access):
            return self.gather(e, space, domain, einsum)
        if isinstance(e, Op) and e.name in ROUNDING:
            return self.rounded(e, space, domain, einsum)
        if isinstance(e, Op):
            args = [self.index(a, space, zeros, domain, einsum) for a in e.args]
            if e.name not in ("and", "or", "not"):   # a condition used as a number is 1 or 0
                args = [a if (e.name == "select" and k == 0) or np.asarray(a).dtype != bool
                        else np.asarray(a, dtype=np.int64) for k, a in enumerate(args)]
            if e.name == "pow":                      # a whole exponent >= 0 (the validator): exact in int64
                return np.power(np.asarray(args[0], dtype=np.int64), np.asarray(args[1], dtype=np.int64))
            if e.name in ("floordiv", "mod") and np.any(np.asarray(args[1]) == 0):
                if zeros is None:
                    raise ExecutionError(f"division by zero in the index {format_expr(e, True)}", e.loc,
                                         self.c.source)
                zeros.append((e, np.asarray(args[1]) == 0))
                args[1] = np.where(np.asarray(args[1]) == 0, 1, args[1])
            if e.name in BITWISE_OPS:
                return self.bitwise(e, args, None)
            return RULES[e.name].numpy(*args)
        raise TypeError(e)

    def rounded(self, e: Op, space: _Space, domain, einsum: Einsum):
        """floor( ) or ceil( ) in an index: its argument evaluated as a value
        (a real number, in the executor's dtype, as in a map), then made
        whole; a non-finite result at a point that exists is an error there
        (never clipped), and past the int64 range too."""
        v = np.asarray(RULES[e.name].numpy(self.value(e.args[0], space, domain, einsum)), dtype=np.float64)
        live = np.ones(np.shape(v), dtype=bool) if domain is None else np.broadcast_to(
            domain, np.broadcast_shapes(np.shape(domain), np.shape(v)))
        v = np.broadcast_to(v, live.shape)
        bad = live & ~(np.isfinite(v) & (np.abs(v) <= MAX_INDEX_LITERAL))
        if np.any(bad):
            at = np.argwhere(bad)[0]
            self.fail(f"the computed index {format_expr(e, True)} = {float(v[tuple(at)])!r} in Einsum {einsum.name} "
                      f"is not a finite whole number of at most 2**53, at {_point_text(space, live.shape, at)}",
                      e, einsum)
        return np.where(live, v, 0).astype(np.int64)

    def value(self, e: Expr, space: _Space, domain, einsum: Einsum):
        """Value of `e` over the grid. `domain` (None: everywhere) marks the
        points where it is needed: reads are bounds-checked there only. The
        right side of `and` / `or` is needed only where the left side does
        not decide the result."""
        if isinstance(e, Num):
            return self.dtype.type(e.value)
        if isinstance(e, Sym):
            return self.dtype.type(self.env[e.name])
        if isinstance(e, Idx):
            return space.coords(e.name).astype(self.dtype)
        if isinstance(e, Access):
            return self.read(e, space, domain, einsum)
        if isinstance(e, Op):
            if e.name in ("and", "or") and _reads_tensor(e.args[1]):
                left = np.asarray(self.value(e.args[0], space, domain, einsum), dtype=bool)
                undecided = left if e.name == "and" else ~left
                right = self.value(e.args[1], space, undecided if domain is None else domain & undecided, einsum)
                return RULES[e.name].numpy(left, right)
            args = [self.value(a, space, domain, einsum) for a in e.args]
            if e.name in ("div", "floordiv", "mod") and not _reads_tensor(e.args[1]):
                self.nonzero_divisor(e, args[1], domain, space)
            if e.name not in ("and", "or", "not"):   # a condition where a number is wanted is 1 or 0
                args = [a if (e.name == "select" and k == 0) or np.asarray(a).dtype != bool
                        else np.asarray(a, dtype=self.dtype) for k, a in enumerate(args)]
            if e.name in BITWISE_OPS:
                return self.bitwise(e, args, domain).astype(self.dtype)
            if e.name == "div" and self.c.empty_rows == "0":
                return zero_quotient(*args)
            if e.name == "sub" and self.c.empty_rows == "0":
                return zero_difference(*args)
            return RULES[e.name].numpy(*args)
        raise TypeError(e)

    def bitwise(self, e: Op, args, domain):
        """A bitwise operator on the points that exist (elsewhere its operands
        may be anything, e.g. a masked read): a fraction or an out-of-range
        shift count there is an error at the operator."""
        if domain is not None:
            args = [np.where(domain, a, 0) for a in args]
        try:
            return np.asarray(RULES[e.name].numpy(*args))
        except ValueError as x:
            raise ExecutionError(f"{x} in {format_expr(e)}", e.loc, self.c.source) from None

    def nonzero_divisor(self, e: Op, d, domain, space: _Space):
        """A divisor made of coordinates, symbols and numbers (`m % (p - m)`)
        that is 0 at an existing point is an error there, as in an index; a
        tensor value divided by 0 follows IEEE arithmetic (x/0 = inf, 0/0 = NaN)."""
        zero = np.asarray(d) == 0
        if domain is not None:
            zero = zero & domain
        if np.any(zero):
            shape = np.shape(zero)
            at = np.argwhere(zero)[0]
            raise ExecutionError(f"division by zero: the divisor {format_expr(e.args[1])} of "
                                 f"{format_expr(e, True)} is 0 at {_point_text(space, shape, at)}",
                                 e.loc, self.c.source)

    def read(self, a: Access, space: _Space, domain, einsum: Einsum):
        array = self.arrays[a.tensor]
        idx = []
        for pos, i in enumerate(a.indices):
            zeros: list = []
            k = np.asarray(self.index(i, space, zeros, domain, einsum))
            k = k.astype(np.int64) if k.dtype == bool else k      # a condition as an index is 0 or 1
            for op, where in zeros:              # a zero divisor matters only at a point that exists
                live = where if domain is None else where & domain
                if np.any(live):
                    at = np.argwhere(np.broadcast_to(live, np.broadcast_shapes(live.shape, space.shape)))[0]
                    self.fail(f"division by zero in the index {format_expr(op, True)} of {a}, at "
                              f"{_point_text(space, space.shape, at)}", op, einsum)
            n = array.shape[pos]
            bad = (k < 0) | (k >= n)
            if np.any(bad):
                if domain is None or np.any(bad & domain):
                    self.out_of_bounds(a, pos, k, domain, space, einsum)
                k = np.clip(k, 0, n - 1)  # only points that do not exist are clipped
            idx.append(k)
        if not idx:
            return array[()]
        return array[tuple(np.broadcast_arrays(*idx))] if len(idx) > 1 else array[idx[0]]

    def gather(self, g: Access, space: _Space, domain, einsum: Einsum):
        """The elements of an index tensor as coordinates. Its reads are
        bounds-checked where the points exist; a value there that is not a
        whole number (an i32 tensor computed by a float expression) is an
        error naming the tensor and the point. Where no point exists the
        value is 0: the enclosing read clips only there."""
        v = np.asarray(self.read(g, space, domain, einsum), dtype=np.float64)
        live = np.ones(np.shape(v), dtype=bool) if domain is None else np.broadcast_to(
            domain, np.broadcast_shapes(np.shape(domain), np.shape(v)))
        v = np.broadcast_to(v, live.shape)
        bad = live & ~(np.isfinite(v) & (np.floor(v) == v))
        if np.any(bad):
            at = np.argwhere(bad)[0]
            self.fail(f"the gathered index {g} = {float(v[tuple(at)])!r} in Einsum {einsum.name} is not a whole "
                      f"number, at {_point_text(space, live.shape, at)} (an index tensor holds integers; "
                      "random_inputs draws whole numbers for an input declared with a domain, e.g. "
                      f"`input {g.tensor}[...]: i32 in [0, 7]`)", g, einsum)
        return np.where(live, v, 0).astype(np.int64)

    def out_of_bounds(self, a: Access, pos: int, k, domain, space: _Space, einsum: Einsum):
        """Raise, naming the access, the rank, and for each side that is
        overrun the extreme value of the index and one existing point that
        reaches it."""
        n = self.arrays[a.tensor].shape[pos]
        shape = np.broadcast_shapes(np.shape(k), np.shape(domain) if domain is not None else ())
        kb = np.broadcast_to(k, shape)
        live = np.ones(shape, dtype=bool) if domain is None else np.broadcast_to(domain, shape)
        found = []
        for side, bad, pick in (("past the end", (kb >= n) & live, np.max), ("below 0", (kb < 0) & live, np.min)):
            if np.any(bad):
                worst = int(pick(kb[bad]))
                at = np.argwhere(bad & (kb == worst))[0]
                text = format_expr(a.indices[pos], True)
                value = f"{text} = {worst}" if text != str(worst) else f"the constant {worst}"
                found.append(f"{value} is {side}, at {_point_text(space, shape, at)}")
        rank = self.c.tensor(a.tensor).ranks[pos]
        gathered = _reads_tensor(a.indices[pos])   # the data gave the index: say whose Einsum, never clip
        self.fail(f"index out of range: {a} at rank {pos + 1} ({rank}) of {a.tensor}, which takes values in "
                  f"[0, {n - 1}]: " + "; and ".join(found)
                  + (f" (a gathered index, in Einsum {einsum.name})" if gathered else ""), a, einsum)

    # one Einsum -----------------------------------------------------------------
    def coord(self, rank: str, space: _Space):
        """Coordinate along `rank` over the grid: its own variable, or, for a
        rank partitioned further, outer * inner extent + inner (recursively);
        None where the grid does not determine it."""
        if rank.lower() in space.vars:
            return space.coords(rank.lower())
        outer = next((r.name for r in self.c.ranks if r.parent == rank and r.part == "outer"), None)
        if outer is None:
            return None
        inner = self.c.inner_of(outer)
        co, ci = self.coord(outer, space), self.coord(inner, space)
        return None if co is None or ci is None else co * self.env[inner] + ci

    def mask(self, e: Einsum, space: _Space):
        conds = []
        for r in self.c.ranks:
            if r.part == "outer":
                # m1*M0 + m0 < M, with m0 itself composed when M0 is partitioned again
                inner = self.c.inner_of(r.name)
                co, ci = self.coord(r.name, space), self.coord(inner, space)
                if co is not None and ci is not None:
                    conds.append(co * self.env[inner] + ci < self.env[r.parent])
        inside = None  # the points inside every partitioned rank
        for c in conds:
            inside = c if inside is None else inside & c
        if e.predicate is None:
            return inside
        # the predicate is evaluated (and its reads checked) only inside
        pred = np.asarray(self.value(e.predicate, space, inside, e), dtype=bool)
        return pred if inside is None else inside & pred

    def run(self, e: Einsum, ranges: dict[str, tuple[int, int]]):
        space = _Space(e.iteration_vars, {v: ranges.get(v, (0, self.env[rank_of(v)]))
                                          for v in e.iteration_vars})
        red = REDUCE_RULES[e.reduce]
        if e.reduce != "sum" or not e.reduced or e.predicate is not None:
            _too_big(int(np.prod([float(n) for n in space.shape])), f"the iteration space of {e.name}",
                     " x ".join(f"{v}={n}" for v, n in zip(space.vars, space.shape)), e.loc, self.c.source)
        with np.errstate(all="ignore"):
            mask = self.mask(e, space)
            result = self.contract(e, space, mask)
            if result is None:
                val = np.broadcast_to(self.value(e.expr, space, mask, e), space.shape)
                if mask is not None:
                    val = np.where(mask, val, red.identity)
                axes = tuple(space.vars.index(v) for v in e.reduced)
                result = red.numpy(val, axis=axes, keepdims=True) if axes else val
            if e.scan is not None:
                result = self.scan(e, space, mask, result)
        self.write(e, space, result)

    def scan(self, e: Einsum, space: _Space, mask, result):
        """The running sum or product along the scanned axis. A position whose
        points are all removed contributes the scan's identity (0, or 1 to a
        product), not the reduction's 0."""
        s = e.scan
        if space.ranges[s.var] != (0, self.env[rank_of(s.var)]):
            self.fail(f"{e.name} scans over {s.var} but is evaluated one {s.var} at a time (a recurrence)",
                      s, e)
        axis = space.vars.index(s.var)
        result = np.array(np.broadcast_to(result, [space.shape[i] if i == axis else n
                                                   for i, n in enumerate(np.shape(result))]), dtype=self.dtype)
        if mask is not None:
            axes = tuple(space.vars.index(v) for v in e.reduced)
            exists = np.broadcast_to(mask, space.shape)
            exists = exists.any(axis=axes, keepdims=True) if axes else exists
            result = np.where(exists, result, s.identity)
        return scan_array(result, axis, s.op, s.reverse, s.exclusive)

    def contract(self, e: Einsum, space: _Space, mask):
        """Sum of a product of factors: np.einsum, never the whole grid."""
        if e.reduce != "sum" or not e.reduced:
            return None
        factors, stack = [], [e.expr]
        while stack:
            x = stack.pop()
            if isinstance(x, Op) and x.name == "mul":
                stack.extend(x.args)
            else:
                factors.append(x)
        arrays = [np.asarray(self.value(f, space, mask, e), dtype=self.dtype) for f in factors]
        if mask is not None:
            arrays.append(np.asarray(mask, dtype=self.dtype))
        if not all(np.all(np.isfinite(a)) for a in arrays):
            return None  # inf * 0 at removed points would poison the sum
        letters = {v: chr(ord("a") + i) for i, v in enumerate(space.vars)}
        ops, specs = [], []
        for a in arrays:
            a = np.asarray(a)
            if a.ndim == 0:
                a = a.reshape((1,) * len(space.vars))
            keep = [i for i, n in enumerate(a.shape) if n != 1]
            ops.append(a.reshape([a.shape[i] for i in keep]))
            specs.append("".join(letters[space.vars[i]] for i in keep))
        present = set("".join(specs))
        out_vars = [v for v in space.vars if v not in e.reduced and letters[v] in present]
        out = np.einsum(",".join(specs) + "->" + "".join(letters[v] for v in out_vars), *ops, optimize=True)
        if mask is not None and not np.all(np.isfinite(out)):
            return None  # finite factors whose product overflows at a removed point: inf * 0
        # back onto the grid: size-1 axes for reduced and absent variables
        shape = [space.shape[i] if v in out_vars else 1 for i, v in enumerate(space.vars)]
        return np.broadcast_to(out.reshape(shape), [1 if v in e.reduced else n
                                                    for v, n in zip(space.vars, space.shape)])

    def write(self, e: Einsum, space: _Space, result):
        out = self.arrays[e.name]
        # result has one axis per grid variable (reduced ones of size 1)
        order = []
        where = []
        for i in e.output.indices:
            if isinstance(i, Num):
                where.append(int(i.value))
                continue
            v, off = offset_of(i)
            lo, hi = space.ranges[v]
            where.append(slice(lo + off, hi + off))
            order.append(space.vars.index(v))
        rest = [k for k in range(len(space.vars)) if k not in order]
        result = np.transpose(result, order + rest)
        result = result.reshape(result.shape[:len(order)])
        out[tuple(where)] = result


def scan_array(x: np.ndarray, axis: int, op: str, reverse: bool, exclusive: bool) -> np.ndarray:
    """np.cumsum / np.cumprod along `axis`; `reverse` runs from the end
    (a suffix scan), `exclusive` shifts by one and starts at the identity."""
    fn = np.cumsum if op == "cumsum" else np.cumprod
    x = np.flip(x, axis) if reverse else x
    y = fn(x, axis=axis)
    if exclusive:
        first = np.full_like(np.take(y, [0], axis=axis), 0.0 if op == "cumsum" else 1.0)
        y = np.concatenate([first, np.take(y, np.arange(y.shape[axis] - 1), axis=axis)], axis=axis)
    return np.flip(y, axis) if reverse else y


def zero_quotient(a, b):
    """a / b under `empty rows = 0`: 0 / 0 is 0 (IEEE: NaN), everything else
    IEEE's quotient; so a row with no visible key, whose normaliser and
    numerator are both sums over no point, ends as 0."""
    q = np.divide(a, b)
    return np.where((np.asarray(a) == 0) & (np.asarray(b) == 0), 0.0, q)


def zero_difference(a, b):
    """a - b under `empty rows = 0`: (-inf) - (-inf) is -inf (IEEE: NaN), the
    difference of two maxima over no point (a one-pass recurrence's
    correction exp(RM[m1] - RM[m1 + 1]) of an empty row is then 0)."""
    d = np.subtract(a, b)
    return np.where((np.asarray(a) == -np.inf) & (np.asarray(b) == -np.inf), -np.inf, d)


def _reads_tensor(e: Expr) -> bool:
    return any(isinstance(n, Access) for n in walk(e))


def _point_text(space: _Space, shape: tuple, at) -> str:
    """`p=3, m=0`: coordinates of the grid point `at` of an array of `shape`
    broadcast over the grid; an axis of length 1 there takes its first value."""
    at = [0] * (len(space.vars) - len(shape)) + list(at)
    full = [1] * (len(space.vars) - len(shape)) + list(shape)
    return ", ".join(f"{v}={space.ranges[v][0] + (int(j) if n > 1 else 0)}"
                     for v, j, n in zip(space.vars, at, full))


def _as_array(x, dtype):
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x if x.dtype == bool else x.astype(dtype)


def execute(c: Cascade, inputs: dict, shapes: dict | None = None, dtype="float64",
            keep: str = "outputs", check_domains: bool = False) -> dict[str, np.ndarray]:
    """Run a cascade in numpy. `inputs` maps each input tensor to an array
    (numpy or torch) with the declared rank order; `shapes` gives symbols not
    implied by the inputs (tile sizes, window widths). Returns the outputs
    (`keep="all"`: every tensor). `check_domains=True` first checks every
    input against its declared domain (`input G[..]: f32 in (0, 1)`)."""
    try:
        ok = np.dtype(dtype).kind == "f"
    except TypeError:
        ok = False
    if not ok:  # the reductions' identities (-inf, +inf) need a float
        raise ExecutionError(f"dtype {dtype!r} is not a floating-point type (use e.g. 'float64' or 'float32')")
    dtype = np.dtype(dtype)
    if inputs is None:
        inputs = {}
    if not hasattr(inputs, "keys"):
        raise ExecutionError(f"inputs must map input names to arrays, got {type(inputs).__name__}")
    names = {t.name for t in c.inputs}
    unknown = [k for k in inputs if k not in names]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        raise ShapeError(f"{unknown[0]} is not an input of {c.name}"
                         + (f" (did you mean {hint[0]}?)" if hint else f"; its inputs are {', '.join(sorted(names))}"))
    missing = [t.name for t in c.inputs if t.name not in inputs]
    if missing:
        raise ShapeError(f"missing input{'s' * (len(missing) > 1)}: {', '.join(missing)}")
    env = resolve(c, shapes, inputs)
    if check_domains:
        _check_domains(c, inputs)
    for t in c.tensors:
        shape = [env[r] + (1 if r in t.iterative else 0) for r in t.ranks]
        _too_big(int(np.prod([float(n) for n in shape])), f"tensor {t.name}",
                 " x ".join(f"{r}={n}" for r, n in zip(t.ranks, shape)), t.loc, c.source)
    arrays = {}
    for t in c.tensors:
        if t.role == "input":
            try:
                arrays[t.name] = _as_array(inputs[t.name], dtype)
            except (TypeError, ValueError):
                raise ShapeError(f"input {t.name} is not an array of numbers") from None
        else:
            shape = tuple(env[r] + (1 if r in t.iterative else 0) for r in t.ranks)
            arrays[t.name] = np.zeros(shape, dtype=bool if t.dtype == "bool" else dtype)
    ev = _Evaluator(c, env, arrays, dtype)
    for step in schedule(c):
        if step.var is None:
            ev.run(c.einsums[step.einsums[0]], {})
            continue
        for r in range(env[rank_of(step.var)]):
            for i in step.einsums:
                ev.run(c.einsums[i], {step.var: (r, r + 1)})
    if keep == "all":
        return arrays
    return {t.name: arrays[t.name] for t in c.outputs}


def random_inputs(c: Cascade, shapes: dict, seed: int = 0, dtype="float64") -> dict[str, np.ndarray]:
    """Standard-normal inputs (bool inputs: fair coin flips) at the given
    shapes; an input with a declared domain is drawn inside it (see
    `_into_domain`), from the same random stream, so the other inputs are the
    same with or without it."""
    env = resolve(c, shapes)
    for t in c.inputs:
        shape = [env[r] + (1 if r in t.iterative else 0) for r in t.ranks]
        _too_big(int(np.prod([float(n) for n in shape])), f"input {t.name}",
                 " x ".join(f"{r}={n}" for r, n in zip(t.ranks, shape)), t.loc, c.source)
    rng = np.random.default_rng(seed)
    out = {}
    for t in c.inputs:
        shape = tuple(env[r] + (1 if r in t.iterative else 0) for r in t.ranks)
        if t.dtype == "bool":
            out[t.name] = rng.random(shape) < 0.5
        elif t.domain is None and t.dtype in INTEGER_DTYPES:
            out[t.name] = _whole_numbers(rng.standard_normal(shape), index_bounds(c, env).get(t.name, _SMALL), dtype)
        elif t.domain is None:
            out[t.name] = rng.standard_normal(shape).astype(dtype)
        else:
            out[t.name] = _into_domain(rng.standard_normal(shape), t, np.dtype(dtype), c)
    return out


_SMALL = 4
"""An integer input without a domain holds whole numbers in [0, n): n is the
extent of the rank it indexes where it is a whole index (a page table, a
KV-head table), else 4 (a few document or segment ids); anything else needs
a domain."""


def index_bounds(c: Cascade, env: dict) -> dict[str, int]:
    """For each tensor read as a whole index of a rank, the smallest extent
    of the ranks it indexes."""
    bounds: dict[str, int] = {}
    for e in c.einsums:
        parts = [e.output, e.expr] + ([e.predicate] if e.predicate is not None else [])
        for a in (x for part in parts for x in walk(part) if isinstance(x, Access)):
            for r, i in zip(c.tensor(a.tensor).ranks, a.indices):
                if isinstance(i, Access) and r in env:
                    bounds[i.tensor] = min(bounds.get(i.tensor, env[r]), int(env[r]))
    return bounds


def _whole_numbers(z: np.ndarray, n: int, dtype) -> np.ndarray:
    """Standard-normal draws mapped to whole numbers spread over [0, n)."""
    u = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0))) if z.size else z
    return np.minimum(np.floor(u * n), n - 1).astype(dtype)


_SIGNIFICAND = {"f64": 53, "f32": 24, "tf32": 11, "f16": 11, "bf16": 8, "f8": 4}
"""Significant bits of each element type, and its smallest normal number:
the values drawn for an input with a domain are numbers of its declared
type, so a kernel that loads an f16 gate as f16 sees the value the executor
does, still inside the domain (0.9999 would round to 1.0 in f16)."""
_TINY = {"f64": 2.0 ** -1022, "f32": 2.0 ** -126, "tf32": 2.0 ** -126, "bf16": 2.0 ** -126, "f16": 2.0 ** -14,
         "f8": 2.0 ** -6}


def _round_bits(x, bits: int):
    """`x` rounded (half to even) to `bits` significant bits."""
    m, e = np.frexp(x)
    return np.ldexp(np.round(m * 2.0 ** bits) / 2.0 ** bits, e)


def _first_inside(v: float, closed: bool, up: bool, bits: int, tiny: float) -> float:
    """The number of `bits` precision nearest to the end `v` of a domain on its
    inside (above v for a lower end, `up`); `v` itself if closed and exact."""
    r = float(_round_bits(v, bits))
    if (closed and r == v) or (up and r > v) or (not up and r < v):
        return r
    if r == 0:
        return tiny if up else -tiny
    m, e = math.frexp(r)
    ulp = 2.0 ** (e - bits)
    if abs(m) == 0.5 and (r > 0) != up:  # stepping towards 0 from a power of two: the spacing halves
        ulp /= 2
    return r + ulp if up else r - ulp


def _into_domain(z: np.ndarray, t, dtype: np.dtype, c: Cascade) -> np.ndarray:
    """Standard-normal draws mapped into t's domain: onto (lo, hi) through a
    logistic (as a sigmoid gate is), onto a half-line as lo + exp(z) (or
    hi - exp(z)); then made numbers of the coarser of t's type and `dtype`
    that lie inside. Integer types (i32, i8) get whole numbers of the domain."""
    d = t.domain
    u = 1.0 / (1.0 + np.exp(-z))
    if t.dtype in INTEGER_DTYPES:
        lo, hi = d.integer_ends()
        if math.isfinite(d.lo) and math.isfinite(d.hi):
            x = lo + np.minimum(np.floor(u * (hi - lo + 1)), hi - lo)
        else:
            x = lo + np.floor(np.exp(z)) if math.isfinite(d.lo) else hi - np.floor(np.exp(z))
        return x.astype(dtype)
    bits = min(_SIGNIFICAND.get(t.dtype, 11), np.finfo(dtype).nmant + 1)
    tiny = max(_TINY.get(t.dtype, 2.0 ** -14), float(np.finfo(dtype).tiny))
    lo = d.lo if math.isinf(d.lo) else _first_inside(d.lo, d.lo_closed, True, bits, tiny)
    hi = d.hi if math.isinf(d.hi) else _first_inside(d.hi, d.hi_closed, False, bits, tiny)
    if lo > hi:
        raise ShapeError(f"the domain {d} of input {t.name} holds no {t.dtype} number (it is narrower than the "
                         "type's spacing there)", t.loc, c.source)
    with np.errstate(over="ignore"):
        if math.isfinite(d.lo) and math.isfinite(d.hi):
            x = d.lo * (1 - u) + d.hi * u
        elif math.isfinite(d.lo):
            x = d.lo + np.exp(z)
        elif math.isfinite(d.hi):
            x = d.hi - np.exp(z)
        else:
            x = z
    # lo and hi are numbers of `bits` precision: rounding after the clip stays between them
    return _round_bits(np.clip(x, lo, hi), bits).astype(dtype)


def check_domains(c: Cascade, inputs: dict) -> None:
    """Raise ShapeError if an input holds a value outside its declared domain
    (NaN included), naming the tensor, the first such element and the domain."""
    for t in c.inputs:
        if t.domain is None or t.name not in inputs:
            continue
        x = _as_array(inputs[t.name], np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.asarray(t.domain.contains(x), dtype=bool)
        if np.any(bad):
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            where = ", ".join(f"{r.lower()}={i}" for r, i in zip(t.ranks, at))
            raise ShapeError(f"input {t.name} has {float(x[at])!r} at [{where}], outside its declared domain "
                             f"{t.domain} ({int(bad.sum())} of {bad.size} elements are outside)", t.loc, c.source)


_check_domains = check_domains  # execute's parameter of the same name hides the function there
