"""attnc: a hardware-aware attention compiler and simulator.

The functions a user calls; the command line (`attnc.cli`) only formats them.
"""
from __future__ import annotations

from einsum_ir import Cascade, EinError, execute, load, parse, random_inputs
from einsum_ir.analysis import Analysis


def design(design: str | Cascade) -> Cascade:
    """A cascade from a library name, a `.ein` path, or a Cascade."""
    return design if isinstance(design, Cascade) else load(design)


def analyze(design_: str | Cascade, rank: str | None = None) -> Analysis:
    """Symbolic analysis of a design; `.at(shapes)` gives numbers."""
    from einsum_ir.analysis import analyze as _analyze
    return _analyze(design(design_), rank)


__all__ = ["Analysis", "Cascade", "EinError", "analyze", "design", "execute", "load", "parse", "random_inputs"]
