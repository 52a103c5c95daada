"""Tensor sizes, compulsory off-chip traffic and operational intensity.

Compulsory traffic is the floor that every schedule pays: each input read
once from memory, each output written once, nothing else. Intensity is
flops (a MAC = 2) per compulsory byte.
"""
from __future__ import annotations

from math import prod

import sympy

from ..ir import Cascade, TensorDecl
from ..ops import DTYPE_BYTES
from ..sym import shape_symbol
from .counts import flops


def elements(t: TensorDecl) -> sympy.Expr:
    return prod((shape_symbol(r) + (1 if r in t.iterative else 0) for r in t.ranks), start=sympy.Integer(1))


def size_bytes(t: TensorDecl) -> sympy.Expr:
    return elements(t) * DTYPE_BYTES[t.dtype]


def declared_widths(tensors) -> str:
    """`Q, K, V: f32, 4 B; AV: f16, 2 B`: the element types of `tensors`,
    grouped, for the line that states the byte-width rule (a tensor in
    memory takes its declared type; docs/analysis.md) in every output."""
    groups: dict = {}
    for t in tensors:
        groups.setdefault(t.dtype, []).append(t.name)
    return "; ".join(f"{', '.join(ns)}: {d}, {DTYPE_BYTES[d]} B" for d, ns in groups.items())


def tensor_sizes(c: Cascade) -> dict[str, sympy.Expr]:
    """Bytes of every tensor."""
    return {t.name: size_bytes(t) for t in c.tensors}


def compulsory_traffic(c: Cascade) -> dict[str, sympy.Expr]:
    """Bytes read (inputs) and written (outputs) by any schedule at least."""
    read = sum((size_bytes(t) for t in c.inputs), sympy.Integer(0))
    written = sum((size_bytes(t) for t in c.outputs), sympy.Integer(0))
    return {"read_bytes": read, "written_bytes": written, "total_bytes": read + written}


def intensity(c: Cascade) -> sympy.Expr:
    """Flops per byte of compulsory traffic."""
    return flops(c) / compulsory_traffic(c)["total_bytes"]
