"""einsum_ir: attention designs as cascades of extended Einsums.

The IR (`ir`), its text form (`parser`, `printer`), the Python builder
(`builder`), the verifier (`validate`), the numpy reference executor
(`execute`), the symbolic analyses (`analysis`) and the design library
(`library`).
"""
from .errors import EinError, ExecutionError, Loc, ParseError, ShapeError, ValidationError
from .ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, Rank, Sym, TensorDecl
from .parser import parse, parse_file
from .printer import format_cascade
from .execute import execute, random_inputs
from .shapes import resolve
from . import library


def load(name_or_path: str) -> Cascade:
    """A library design by name, or a `.ein` file by path."""
    from pathlib import Path
    if name_or_path.endswith(".ein") or "/" in name_or_path or Path(name_or_path).exists():
        return parse_file(name_or_path)
    return library.load(name_or_path)


def print_cascade(c: Cascade) -> str:
    return format_cascade(c)


__all__ = [
    "Access", "Cascade", "EinError", "Einsum", "ExecutionError", "Expr", "Idx", "Loc", "Num", "Op",
    "ParseError", "Rank", "ShapeError", "Sym", "TensorDecl", "ValidationError", "execute", "format_cascade",
    "library", "load", "parse", "parse_file", "print_cascade", "random_inputs", "resolve",
]
