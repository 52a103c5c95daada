"""Tensor values given by the user (`--inputs FILE.npz`, `inputs=` in
Python): what a mask that reads tensors needs to be counted exactly, to
classify the tiles of its block table, and what fixes the extents."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from einsum_ir import Cascade
from einsum_ir.errors import ShapeError


def load_inputs(path: str) -> dict:
    """Arrays by name from a `.npz` file (numpy.savez); object arrays
    (pickles) are refused, as is a file that is not an npz archive."""
    p = Path(path)
    if not p.is_file():
        raise ShapeError(f"--inputs {path}: no such file")
    try:
        with np.load(p, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ShapeError(f"--inputs {path}: a single array, not an .npz archive of named arrays "
                                 "(write it with numpy.savez(path, DOC=..., ...))")
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ShapeError(f"--inputs {path}: not a readable .npz archive of arrays ({e})") from None


def check_inputs(c: Cascade, inputs: dict) -> dict:
    """`inputs` restricted to checked names: each one an input of `c`
    (others are an error naming the inputs); some of them may be missing
    (their extents then come from --shape)."""
    names = {t.name for t in c.inputs}
    unknown = sorted(set(inputs) - names)
    if unknown:
        raise ShapeError(f"{unknown[0]} (in the inputs) is not an input of {c.name}; its inputs are "
                         f"{', '.join(sorted(names))}")
    return dict(inputs)




def with_inputs(c: Cascade, shapes: dict, inputs: dict | None, densities: bool = True) -> dict:
    """`shapes` completed from `inputs`: the extents the arrays give (for
    the free symbols the user could have written) and, with `densities`, the
    exact density of each mask that reads tensors (a Fraction; one given in
    `shapes` as well is an error)."""
    if not inputs:
        return dict(shapes)
    from einsum_ir.analysis.density import density_values
    from einsum_ir.shapes import resolve

    from .compare import free_symbols
    check_inputs(c, inputs)
    env = resolve(c, shapes, inputs)
    out = dict(shapes)
    out.update({k: env[k] for k in free_symbols(c) if k in env and k not in shapes})
    if densities:
        values = density_values(c, env, inputs)
        twice = sorted(set(values) & set(shapes))
        if twice:
            raise ShapeError(f"{twice[0]} is counted from the inputs; do not give it in --shape as well")
        out.update(values)
    return out


__all__ = ["check_inputs", "load_inputs", "with_inputs"]
