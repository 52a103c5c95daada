"""The closed vocabulary of operators in map expressions and predicates.

Each operator has one rule, kept here next to its name: how it is written,
its numpy meaning (the reference executor uses nothing else), its sympy
meaning (for symbolic predicates), and which kind of operation it counts as.
Adding an operator means adding one row; a missing rule is an error, never a
silent default.
"""
from __future__ import annotations

from dataclasses import dataclass
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


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _rule(name, arity, np_fn, sp_fn, kind, infix=None, prec=100, group="elementwise"):
    return OpRule(name, arity, np_fn, sp_fn, kind, infix, prec, group)


# Precedence levels of the infix forms, lowest first.
OR, AND, NOT, CMP, ADD, MUL, NEG = 1, 2, 3, 4, 5, 6, 7

RULES: dict[str, OpRule] = {r.name: r for r in [
    # arithmetic
    _rule("add", 2, np.add, lambda a, b: a + b, "add", "+", ADD),
    _rule("sub", 2, np.subtract, lambda a, b: a - b, "add", "-", ADD),
    _rule("mul", 2, np.multiply, lambda a, b: a * b, "mul", "*", MUL),
    _rule("div", 2, np.divide, lambda a, b: a / b, "divide", "/", MUL),
    _rule("floordiv", 2, np.floor_divide, lambda a, b: sympy.floor(a / b), "divide", "//", MUL),
    _rule("mod", 2, np.mod, lambda a, b: sympy.Mod(a, b), "divide", "%", MUL),
    _rule("neg", 1, np.negative, lambda a: -a, None, "-", NEG),
    # comparison and logic (the vocabulary of predicates and select conditions)
    _rule("lt", 2, np.less, sympy.Lt, "compare", "<", CMP, "compare"),
    _rule("le", 2, np.less_equal, sympy.Le, "compare", "<=", CMP, "compare"),
    _rule("gt", 2, np.greater, sympy.Gt, "compare", ">", CMP, "compare"),
    _rule("ge", 2, np.greater_equal, sympy.Ge, "compare", ">=", CMP, "compare"),
    _rule("eq", 2, np.equal, sympy.Eq, "compare", "==", CMP, "compare"),
    _rule("ne", 2, np.not_equal, sympy.Ne, "compare", "!=", CMP, "compare"),
    _rule("and", 2, np.logical_and, sympy.And, "logic", "and", AND, "logic"),
    _rule("or", 2, np.logical_or, sympy.Or, "logic", "or", OR, "logic"),
    _rule("not", 1, np.logical_not, sympy.Not, "logic", "not", NOT, "logic"),
    # functions
    _rule("exp", 1, np.exp, sympy.exp, "exp", group="transcendental"),
    _rule("exp2", 1, np.exp2, lambda a: 2 ** a, "exp", group="transcendental"),
    _rule("log", 1, np.log, sympy.log, "log", group="transcendental"),
    _rule("log2", 1, np.log2, lambda a: sympy.log(a, 2), "log", group="transcendental"),
    _rule("sqrt", 1, np.sqrt, sympy.sqrt, "sqrt", group="transcendental"),
    _rule("sigmoid", 1, _sigmoid, lambda a: 1 / (1 + sympy.exp(-a)), "sigmoid", group="transcendental"),
    _rule("tanh", 1, np.tanh, sympy.tanh, "tanh", group="transcendental"),
    _rule("abs", 1, np.abs, sympy.Abs, "abs"),
    _rule("floor", 1, np.floor, sympy.floor, "abs"),
    _rule("max", 2, np.maximum, sympy.Max, "max", group="associative"),
    _rule("min", 2, np.minimum, sympy.Min, "max", group="associative"),
    _rule("clip", 3, lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
          lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi), "max"),
    _rule("select", 3, np.where, lambda c, a, b: sympy.Piecewise((a, c), (b, True)), "select"),
]}

# Names usable in call syntax `name(args)`.
FUNCTIONS = {n for n, r in RULES.items() if r.infix is None}
BINARY_INFIX = {r.infix: n for n, r in RULES.items() if r.infix and r.arity == 2}
COMPARISONS = {n for n, r in RULES.items() if r.group == "compare"}
BOOLEAN_OPS = COMPARISONS | {"and", "or", "not"}


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
DEFAULT_DTYPE = "f16"


def rule(name: str) -> OpRule:
    try:
        return RULES[name]
    except KeyError:
        raise KeyError(f"no rule for operator {name!r}") from None
