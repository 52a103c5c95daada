"""The algebra the rewrites rest on, shared with the fused kernel generator.

`exp_degree` is the recognition of "a sum whose terms are exp(A - G) times
G-free factors": the degree of a term in exp(-G). A running sum of terms of
degree d stays exact under a change of G from G_old to G_new when it is
multiplied by exp(G_old - G_new)^d (softmax's online form). The fused
generator (analysis/fused.py) asks the same question about a tile walk, so
it calls this function rather than keeping a second copy.
"""
from __future__ import annotations

from typing import Callable

from ..ir import Access, Expr, Idx, Num, Op, accesses

Expand = Callable[[Access], "Expr | None"]


def exp_degree(x: Expr, g: str, expand: Expand) -> int | None:
    """Degree of `x` in exp(-G) for the tensor `g`: 0 (independent of G),
    d >= 1 (a product of d factors exp(A - G) and G-free terms), None
    (anything else). `expand(a)` gives the defining expression of a tensor to
    look through (an element-wise tile tensor), or None to treat `a` as a
    leaf (G-free unless it is G itself)."""
    if isinstance(x, Num):
        return 0
    if isinstance(x, Access):
        if x.tensor == g:
            return None
        inner = expand(x)
        return 0 if inner is None else exp_degree(inner, g, expand)
    if not isinstance(x, Op):
        return 0
    if x.name == "exp":
        a = x.args[0]
        if isinstance(a, Op) and a.name == "sub" and isinstance(a.args[1], Access) and a.args[1].tensor == g:
            return 1 if exp_degree(a.args[0], g, expand) == 0 else None
    ds = [exp_degree(a, g, expand) for a in x.args]
    if None in ds:
        return None
    if x.name == "mul":
        return ds[0] + ds[1]
    if x.name == "div":
        return ds[0] if ds[1] == 0 else None
    if x.name == "neg":
        return ds[0]
    zero = [isinstance(a, Num) and a.value == 0 for a in x.args]
    if x.name in ("add", "sub"):
        live = [d for d, z in zip(ds, zero) if not z]
        return live[0] if len(set(live)) == 1 else None
    if x.name == "select":
        if ds[0] != 0:
            return None
        live = [d for d, z in zip(ds[1:], zero[1:]) if not z]
        return 0 if not live else live[0] if len(set(live)) == 1 else None
    return 0 if all(d == 0 for d in ds) else None


def split_factor(x: Expr, target: Access) -> Expr | None:
    """W with x = W * target, when `target` occurs once in `x`, as a factor of
    a product's numerator (through * / and unary -); else None."""
    if x == target:
        return Num(1.0)
    if not isinstance(x, Op) or x.name not in ("mul", "div", "neg"):
        return None
    if x.name == "neg":
        w = split_factor(x.args[0], target)
        return None if w is None else Op("neg", (w,))
    a, b = x.args
    in_a, in_b = target in accesses(a), target in accesses(b)
    one = Num(1.0)
    if in_a and not in_b:
        w = split_factor(a, target)
        return None if w is None else b if (w == one and x.name == "mul") else Op(x.name, (w, b))
    if in_b and not in_a and x.name == "mul":
        w = split_factor(b, target)
        return None if w is None else a if w == one else Op("mul", (a, w))
    return None


def quotient(x: Expr) -> tuple[list[Expr], list[Expr]]:
    """`x` as numerator and denominator factors: a * b / (c * d) ->
    ([a, b], [c, d]) (nested products and quotients flattened)."""
    if isinstance(x, Op) and x.name == "mul":
        n1, d1 = quotient(x.args[0])
        n2, d2 = quotient(x.args[1])
        return n1 + n2, d1 + d2
    if isinstance(x, Op) and x.name == "div":
        n1, d1 = quotient(x.args[0])
        n2, d2 = quotient(x.args[1])
        return n1 + d2, d1 + n2
    return [x], []


def product(fs: list[Expr]) -> Expr:
    """f1 * f2 * ... (1 for none)."""
    out: Expr | None = None
    for f in fs:
        out = f if out is None else Op("mul", (out, f))
    return Num(1.0) if out is None else out


def conj(a: Expr | None, b: Expr | None) -> Expr | None:
    """a and b, either may be absent (None: no predicate); equal ones once."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    return Op("and", (a, b))


def map_expr(x: Expr, fn: Callable[[Expr], "Expr | None"]) -> Expr:
    """`x` rebuilt top-down: where fn(node) gives an expression it replaces
    the node (not visited further); elsewhere the children are mapped."""
    y = fn(x)
    if y is not None:
        return y
    if isinstance(x, Access):
        return Access(x.tensor, tuple(map_expr(i, fn) for i in x.indices))
    if isinstance(x, Op):
        return Op(x.name, tuple(map_expr(a, fn) for a in x.args))
    return x


def rename_vars(x: Expr, names: dict[str, Expr]) -> Expr:
    """`x` with index variables replaced (access indices included)."""
    return map_expr(x, lambda n: names.get(n.name) if isinstance(n, Idx) else None)


def fresh(taken: set[str], *candidates: str) -> str:
    """The first candidate name not taken (then candidate + 2, 3, ...); the
    name is added to `taken`."""
    for c in candidates:
        if c not in taken:
            taken.add(c)
            return c
    k = 2
    while f"{candidates[0]}{k}" in taken:
        k += 1
    taken.add(f"{candidates[0]}{k}")
    return f"{candidates[0]}{k}"


__all__ = ["conj", "exp_degree", "fresh", "map_expr", "product", "quotient", "rename_vars", "split_factor"]
