"""The closed vocabulary of operators in map expressions and predicates.

Each operator has one rule, kept here next to its name: how it is written,
its numpy meaning (the reference executor uses nothing else), its sympy
meaning (for symbolic predicates), and which kind of operation it counts as.
Adding an operator means adding one row; a missing rule is an error, never a
silent default.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
import math
from typing import Callable

import numpy as np
import sympy


@dataclass(frozen=True)
class OpRule:
    name: str
    arity: int
    numpy: Callable
    sympy: Callable
    kind: str | None          # operation kind for op counts; None: free (no arithmetic)
    infix: str | None = None  # symbol when written infix; None: written as a call
    precedence: int = 100     # binding strength of the infix form (higher binds tighter)
    group: str = "elementwise"
    right_assoc: bool = False  # `a ^ b ^ c` is `a ^ (b ^ c)`


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x):
    """log(1 + e^x) without overflow (x = 1000 gives 1000) or loss (x = -100 gives e^-100)."""
    x = np.asarray(x, dtype=np.result_type(x, np.float16))
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _logsigmoid(x):
    """log(sigmoid(x)) = -softplus(-x), exact for large |x| (-100 gives -100, 100 gives -e^-100)."""
    x = np.asarray(x, dtype=np.result_type(x, np.float16))
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf(x):
    """numpy has no erf: Python's math.erf, elementwise (correctly rounded to double)."""
    x = np.asarray(x)
    ft = np.result_type(x, np.float16)
    return _erf_scalar(x.astype(np.float64)).astype(ft)


def _pow(a, b):
    """x ^ y as numpy's float power: a negative base with a non-integer
    exponent is NaN, 0 ^ 0 is 1, 0 ^ -1 is inf. Integer operands are raised
    as floats (numpy refuses an integer to a negative integer power)."""
    a, b = np.asarray(a), np.asarray(b)
    ft = np.result_type(a, b, np.float16)
    a, b = a.astype(ft), b.astype(ft)
    with np.errstate(invalid="ignore"):
        fraction = (a < 0) & np.isfinite(b) & (b != np.floor(b))
        # numpy's fast path for 0.5 is sqrt, so (-inf) ^ 0.5 is NaN but (-inf) ^ 1.5 inf: one rule here
        return np.where(fraction, np.array(np.nan, ft), np.power(a, b))


def as_int(x):
    """Operands of a bitwise operator as int64: the validator proves them
    integers (coordinates, symbols, integer tensors); a value that is not
    whole here is an error, never truncated."""
    x = np.asarray(x)
    if x.dtype.kind in "iub":
        return x.astype(np.int64)
    if not np.all(np.isfinite(x) & (x == np.floor(x))):
        bad = x[~(np.isfinite(x) & (x == np.floor(x)))].flat[0]
        raise ValueError(f"a bitwise operand is not an integer: {bad}")
    outside = (x >= 2.0 ** 63) | (x < -2.0 ** 63)       # the cast below would wrap them
    if np.any(outside):
        raise ValueError(f"a bitwise operand does not fit in a 64-bit integer: {x[outside].flat[0]}")
    return x.astype(np.int64)


# Operators bound with functools.partial, not built as closures, so that
# each call runs these module functions (and a mutation test sees which
# tests reach them).
def _bitwise(fn, a, b):
    return fn(as_int(a), as_int(b))


def _shift(left: bool, a, s):
    """Shifts of int64 by 0..62 bits: `a << s` is a * 2^s, `a >> s` is floor(a / 2^s)."""
    a, s = as_int(a), as_int(s)
    if np.any((s < 0) | (s > 62)):
        raise ValueError(f"a shift count must lie in 0..62, got {s[(s < 0) | (s > 62)].flat[0]}")
    if left:                # a * 2^s must fit: int64 would wrap it silently
        a, s = np.broadcast_arrays(a, s)
        hi = np.right_shift(np.int64(2 ** 63 - 1), s)
        bad = (a > hi) | (a < -hi - 1)
        if np.any(bad):
            raise ValueError(f"{a[bad].flat[0]} << {s[bad].flat[0]} does not fit in a 64-bit integer")
    return np.left_shift(a, s) if left else np.right_shift(a, s)


class _IntFn(sympy.Function):
    """A bitwise operator in sympy: evaluated on integers, kept unevaluated
    (an integer-valued function) on symbols."""
    is_integer = True
    _op = None

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            v = cls._op(int(a), int(b))
            return None if v is None else sympy.Integer(v)
        return None


# `_imp_`: the numpy meaning sympy.lambdify uses (point counts evaluate predicates on grids)
class BitAnd(_IntFn):
    _op = staticmethod(lambda a, b: a & b)
    _imp_ = staticmethod(partial(_bitwise, np.bitwise_and))


class BitOr(_IntFn):
    _op = staticmethod(lambda a, b: a | b)
    _imp_ = staticmethod(partial(_bitwise, np.bitwise_or))


class BitXor(_IntFn):
    _op = staticmethod(lambda a, b: a ^ b)
    _imp_ = staticmethod(partial(_bitwise, np.bitwise_xor))


class ShiftLeft(_IntFn):
    _op = staticmethod(lambda a, b: a << b if 0 <= b <= 62 else None)
    _imp_ = staticmethod(partial(_shift, True))


class ShiftRight(_IntFn):
    _op = staticmethod(lambda a, b: a >> b if 0 <= b <= 62 else None)
    _imp_ = staticmethod(partial(_shift, False))


def as_number_sympy(x):
    """A condition used as a number is 1 where it holds, 0 elsewhere."""
    if isinstance(x, (sympy.logic.boolalg.Boolean, sympy.core.relational.Relational)):
        return sympy.Piecewise((1, x), (0, True))
    return x


# Precedence levels of the infix forms, lowest first (bitwise below + - as in
# Python, so `m & 3 == 0` is `(m & 3) == 0`; `^` above unary minus: -x^2 = -(x^2)).
OR, AND, NOT, CMP, BOR, BAND, SHIFT, ADD, MUL, NEG, POW = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11

RULES: dict[str, OpRule] = {r.name: r for r in [
    # arithmetic
    OpRule("add", 2, np.add, lambda a, b: a + b, "add", "+", ADD),
    OpRule("sub", 2, np.subtract, lambda a, b: a - b, "add", "-", ADD),
    OpRule("mul", 2, np.multiply, lambda a, b: a * b, "mul", "*", MUL),
    OpRule("div", 2, np.divide, lambda a, b: a / b, "divide", "/", MUL),
    OpRule("floordiv", 2, np.floor_divide, lambda a, b: sympy.floor(a / b), "divide", "//", MUL),
    OpRule("mod", 2, np.mod, lambda a, b: sympy.Mod(a, b), "divide", "%", MUL),
    OpRule("neg", 1, np.negative, lambda a: -a, None, "-", NEG),
    OpRule("pow", 2, _pow, lambda a, b: a ** b, "pow", "^", POW, right_assoc=True),
    # bitwise, on integers only (validate.py checks the operands)
    OpRule("band", 2, partial(_bitwise, np.bitwise_and), BitAnd, "int", "&", BAND, "bitwise"),
    OpRule("bor", 2, partial(_bitwise, np.bitwise_or), BitOr, "int", "|", BOR, "bitwise"),
    OpRule("xor", 2, partial(_bitwise, np.bitwise_xor), BitXor, "int", group="bitwise"),
    OpRule("shl", 2, partial(_shift, True), ShiftLeft, "int", "<<", SHIFT, "bitwise"),
    OpRule("shr", 2, partial(_shift, False), ShiftRight, "int", ">>", SHIFT, "bitwise"),
    # comparison and logic (the vocabulary of predicates and select conditions)
    OpRule("lt", 2, np.less, sympy.Lt, "compare", "<", CMP, "compare"),
    OpRule("le", 2, np.less_equal, sympy.Le, "compare", "<=", CMP, "compare"),
    OpRule("gt", 2, np.greater, sympy.Gt, "compare", ">", CMP, "compare"),
    OpRule("ge", 2, np.greater_equal, sympy.Ge, "compare", ">=", CMP, "compare"),
    OpRule("eq", 2, np.equal, sympy.Eq, "compare", "==", CMP, "compare"),
    OpRule("ne", 2, np.not_equal, sympy.Ne, "compare", "!=", CMP, "compare"),
    OpRule("and", 2, np.logical_and, sympy.And, "logic", "and", AND, "logic"),
    OpRule("or", 2, np.logical_or, sympy.Or, "logic", "or", OR, "logic"),
    OpRule("not", 1, np.logical_not, sympy.Not, "logic", "not", NOT, "logic"),
    # functions
    OpRule("exp", 1, np.exp, sympy.exp, "exp", group="transcendental"),
    OpRule("exp2", 1, np.exp2, lambda a: 2 ** a, "exp", group="transcendental"),
    OpRule("log", 1, np.log, sympy.log, "log", group="transcendental"),
    OpRule("log2", 1, np.log2, lambda a: sympy.log(a, 2), "log", group="transcendental"),
    OpRule("sqrt", 1, np.sqrt, sympy.sqrt, "sqrt", group="transcendental"),
    OpRule("sigmoid", 1, _sigmoid, lambda a: 1 / (1 + sympy.exp(-a)), "sigmoid", group="transcendental"),
    OpRule("tanh", 1, np.tanh, sympy.tanh, "tanh", group="transcendental"),
    OpRule("sin", 1, np.sin, sympy.sin, "trig", group="transcendental"),
    OpRule("cos", 1, np.cos, sympy.cos, "trig", group="transcendental"),
    OpRule("tan", 1, np.tan, sympy.tan, "tan", group="transcendental"),
    OpRule("erf", 1, _erf, sympy.erf, "erf", group="transcendental"),
    OpRule("softplus", 1, _softplus, lambda a: sympy.log(1 + sympy.exp(a)), "softplus", group="transcendental"),
    OpRule("logsigmoid", 1, _logsigmoid, lambda a: -sympy.log(1 + sympy.exp(-a)), "softplus",
          group="transcendental"),
    OpRule("log1p", 1, np.log1p, lambda a: sympy.log(1 + a), "log1p", group="transcendental"),
    OpRule("expm1", 1, np.expm1, lambda a: sympy.exp(a) - 1, "expm1", group="transcendental"),
    OpRule("abs", 1, np.abs, sympy.Abs, "abs"),
    OpRule("floor", 1, np.floor, sympy.floor, "abs"),
    OpRule("ceil", 1, np.ceil, sympy.ceiling, "abs"),
    OpRule("max", 2, np.maximum, sympy.Max, "max", group="associative"),
    OpRule("min", 2, np.minimum, sympy.Min, "max", group="associative"),
    OpRule("clip", 3, lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
          lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi), "max"),
    OpRule("select", 3, np.where, lambda c, a, b: sympy.Piecewise((a, c), (b, True)), "select"),
]}

# Names usable in call syntax `name(args)`.
FUNCTIONS = {n for n, r in RULES.items() if r.infix is None}
BINARY_INFIX = {r.infix: n for n, r in RULES.items() if r.infix and r.arity == 2}
COMPARISONS = {n for n, r in RULES.items() if r.group == "compare"}
BOOLEAN_OPS = COMPARISONS | {"and", "or", "not"}
BITWISE_OPS = {n for n, r in RULES.items() if r.group == "bitwise"}

# What one operation of each kind costs, in operations of a GPU's units:
# "sfu" (special-function unit: exp2, log2, rcp, sin, cos, sqrt), "fp32"
# (vector FP32/FMA) and "int" (integer ALU). These follow the Triton forms
# codegen renders (e.g. softplus = max(x, 0) + log1p(exp(-|x|)): an exp, a
# log and a divide on the SFU, five FP32 operations). Every kind an operator
# or reduction can have is listed; a consumer meeting any other kind refuses.
KIND_UNITS: dict[str, dict[str, int]] = {
    "mac": {"fp32": 1}, "add": {"fp32": 1}, "mul": {"fp32": 1}, "divide": {"sfu": 1}, "max": {"fp32": 1},
    "exp": {"sfu": 1}, "log": {"sfu": 1}, "sqrt": {"sfu": 1}, "sigmoid": {"sfu": 1}, "tanh": {"sfu": 1},
    "abs": {"fp32": 1}, "compare": {"fp32": 1}, "select": {"fp32": 1}, "logic": {"fp32": 1},
    "pow": {"sfu": 2, "fp32": 1},           # exp2(y * log2 |x|), sign fixed up
    "trig": {"sfu": 1},                     # sin, cos
    "tan": {"sfu": 3},                      # sin / cos
    "erf": {"sfu": 1, "fp32": 12},          # a rational approximation and one exp
    "softplus": {"sfu": 3, "fp32": 5},      # max(x, 0) + log1p(exp(-|x|))
    "log1p": {"sfu": 2, "fp32": 4},         # log(u) * x / (u - 1), u = 1 + x
    "expm1": {"sfu": 3, "fp32": 4},         # (u - 1) * x / log(u), u = exp(x)
    "int": {"int": 1},                      # bitwise and shifts (and integer index arithmetic)
}


@dataclass(frozen=True)
class ReduceRule:
    """A reduction operator: its identity (the value of an empty reduction,
    and of a point that a predicate removes) and the kind it counts as."""

    name: str
    identity: float
    numpy: Callable
    kind: str


REDUCE_RULES: dict[str, ReduceRule] = {r.name: r for r in [
    ReduceRule("sum", 0.0, np.sum, "add"),
    ReduceRule("max", -np.inf, np.max, "max"),
    ReduceRule("min", np.inf, np.min, "max"),
]}

# Byte width of each element type, used by size and traffic analyses.
DTYPE_BYTES = {"f64": 8, "f32": 4, "tf32": 4, "f16": 2, "bf16": 2, "f8": 1, "i32": 4, "i8": 1, "bool": 1}
INTEGER_DTYPES = ("i32", "i8")          # whole numbers: indices, ids, lengths (bool is its own type)
DEFAULT_DTYPE = "f16"


_UNCOSTED = ({r.kind for r in RULES.values() if r.kind} | {r.kind for r in REDUCE_RULES.values()}) - set(KIND_UNITS)
if _UNCOSTED:
    raise RuntimeError(f"operation kinds without a cost row in KIND_UNITS: {sorted(_UNCOSTED)}")


def op_kind(node) -> str | None:
    """The kind one evaluation of an operator node counts as: its rule's,
    except a power by a whole literal that the generators write as
    arithmetic (`x ^ 2` is x * x, `x ^ -1` is 1 / x, `x ^ 1` and `x ^ 0`
    cost nothing)."""
    if node.name == "pow" and type(node.args[1]).__name__ == "Num" and float(node.args[1].value).is_integer():
        return {2: "mul", -1: "divide", 1: None, 0: None}.get(int(node.args[1].value), "pow")
    return RULES[node.name].kind
