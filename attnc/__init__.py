"""attnc: a hardware-aware attention compiler and simulator.

The functions a user calls; the command line (`attnc.cli`) only formats them.
"""
from __future__ import annotations

from einsum_ir import Cascade, EinError, execute, load, parse, random_inputs
from einsum_ir.analysis import Analysis


def design(design: str | Cascade) -> Cascade:
    """A cascade from a library name, a `.ein` path, or a Cascade."""
    return design if isinstance(design, Cascade) else load(design)


def analyze(design_: str | Cascade, rank: str | None = None, inputs: dict | None = None,
            shapes: dict | None = None) -> Analysis:
    """Symbolic analysis of a design; `.at(shapes)` gives numbers. With
    `inputs` (arrays by name, e.g. `load_inputs("x.npz")`), a mask that reads
    tensors is counted exactly from their values (`Analysis.measured`)."""
    from einsum_ir.analysis import analyze as _analyze
    return _analyze(design(design_), rank, inputs, shapes)


def load_inputs(path: str) -> dict:
    """Arrays by input name from a `.npz` file (`numpy.savez`)."""
    from .inputs import load_inputs as _load
    return _load(path)


def compile(design_: str | Cascade, shapes: dict | None = None, hw: str = "h100", mapping=None,
            dtype: str = "bf16", inputs: dict | None = None):
    """A Triton kernel for the design, as a callable taking torch tensors by
    input name: a fused attention kernel, or for linear-time designs a
    chunked one. Without `mapping`, the GPU model's best mapping at `shapes`
    (which must then give every extent) on `hw`, with the block table of a
    mask that reads tensors taken from `inputs` where given (else bounded).
    The kernel builds its block table from the tensors at each call."""
    from codegen.runtime import compile_kernel
    c = design(design_)
    if mapping is None:
        from .gpu import kernel_mapping
        mapping = kernel_mapping(c, hw, shapes, dtype, inputs)[0]
    return compile_kernel(c, mapping, shapes)


__all__ = ["compile", "load_inputs", "Analysis", "Cascade", "EinError", "analyze", "design", "execute", "load", "parse", "random_inputs"]
