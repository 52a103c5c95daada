"""The top of every library design at tiny shapes, all in one cocotb run
(not a test: about a minute; docs/rtl.md, The top, reports its result).

    TRITON_INTERPRET=1 .venv/bin/python -m tests.codegen.rtl.library_tops

Each design gets the shapes below for the symbols it uses (a symbol the
cascade derives from others is dropped); a design the generator refuses is
listed with the reason. The tops that generate run side by side: outputs
compared bit for bit with the fixed-point model, edges with the schedule."""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from codegen.rtl import top
from codegen.rtl.fixed import Fmt
from codegen.rtl.unit import _ident
from einsum_ir.errors import EinError
from einsum_ir.execute import random_inputs
from einsum_ir.library import load, names
from einsum_ir.shapes import resolve, symbols_used

SHAPES = dict(B=1, H=2, E=2, F=2, M=4, P=3, D=2, W=2, M0=2, G=2, K=2, N=2, R=2, C=2, T=4, S=2, L=2, KH=1, J=2,
              NS=1, HS=1, HO=1, TOPK=1, PB=2, MB=2, TK=2, TQ=2, DL=1, ST=1, NP=2, BS=2, DLY=1, STY=1, WY=1, DLX=1,
              STX=1, WX=1, PY=2, PX=2, MY=2, MX=2)


def shapes_for(c) -> dict:
    """SHAPES for the symbols `c` uses, without those it derives (rank M = P)."""
    out = {k: v for k, v in SHAPES.items() if k in symbols_used(c)}
    for _ in range(len(out)):
        try:
            resolve(c, out)
            break
        except EinError as e:
            m = re.search(r"conflicting shapes: (\w+) =", e.message)
            if not m:
                break
            out.pop(m.group(1))
    return out


def main() -> int:
    from .test_top import expected, run_tops
    tops, refused = [], []
    for n in names():
        c = load(n)
        try:
            shapes = shapes_for(c)
            tops.append(top.generate_top(c, random_inputs(c, shapes, seed=1), shapes, Fmt(32, 16), lanes=2,
                                         name=f"attnc_top_{_ident(n)}"))
        except EinError as e:
            refused.append((n, e.message.splitlines()[0]))
    with tempfile.TemporaryDirectory(prefix="attnc_F_tops_") as d:
        results = run_tops(Path(d), tops)
    bad = [t.name for t, r in zip(tops, results) if r["outputs"] != expected(t) or r["edges"] != t.schedule.cycles]
    for t, r in zip(tops, results):
        print(f"{t.name}: {len(t.schedule.ops)} operations, {r['edges']} edges, "
              f"{'bit-exact' if r['outputs'] == expected(t) else 'DIFFERENT'}")
    for n, why in refused:
        print(f"refused {n}: {why}")
    print(f"{len(tops)} tops, {len(bad)} wrong; {len(refused)} designs refused")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
