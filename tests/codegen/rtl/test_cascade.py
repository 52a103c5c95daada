"""Whole cascades through their RTL units under cocotb: every operation of
the fixed-point model's trace run by the generated unit, each reading what
the units produced before (several key tiles, the running max, sum and
weighted sum carried across them), the outputs bit-exact with
`codegen.rtl.tile.run`; the edges are the units' latencies summed (the
bench issues one operation at a time)."""
from __future__ import annotations

import numpy as np
import pytest

from codegen.rtl import generate, tile
from codegen.rtl.fixed import Fmt
from codegen.rtl.unit import _ident
from einsum_ir import parse
from einsum_ir.execute import random_inputs
from einsum_ir.library import load
from hw_models import load_spatial
from mappers.mapping import load_mapping

from .sim import run_cocotb
from .test_units import CUSTOM

CASES = [("attention-1pass", dict(B=1, H=1, E=4, F=3, M=8, P=3, M0=4), Fmt(32, 16)),     # 2 key tiles
         ("attention-1pass", dict(B=1, H=1, E=3, F=2, M=11, P=2, M0=4), Fmt(24, 10)),    # 3, the last partial
         ("test-only", dict(B=1, H=1, E=3, F=2, M=6, P=4, W=2), Fmt(32, 16))]


@pytest.mark.parametrize("name, shapes, fmt", CASES, ids=[f"{n}-M{s['M']}" for n, s, _ in CASES])
def test_whole_cascade_bit_exact(tmp_path, name, shapes, fmt):
    c = parse(CUSTOM, name="test-only") if name == "test-only" else load(name)
    hw, m = (load_spatial("fusemax"), load_mapping("fusemax-binding")) if name != "test-only" else (None, None)
    ins = random_inputs(c, shapes, seed=11)
    trace, ints = [], {}
    want = tile.run(c, ins, shapes, fmt, hw, m, trace=trace, ints=ints)
    d = generate(c, hw, m, fmt, rows=2, cols=2)
    units = {e: {"id": _ident(e), "ports": [[p, 1 if t == "bool" else fmt.width] for p, _, t in u.operands]
                 + [[p, 32] for p, _ in u.coords + u.syms]} for e, u in d.units.items()}
    written, store = set(), {}
    for op in trace:                       # what is read before any unit wrote it: inputs, initial values
        for t, i in op["src"]:
            if (t, i) not in written:
                store[(t, i)] = int(ints[t][i])
        written.add((op["einsum"], op["dst"]))
    expect = [[o.name, list(i), fmt.from_float(float(v))] for o in c.outputs for i, v in np.ndenumerate(want[o.name])]
    latency = sum(d.units[op["einsum"]].latency for op in trace)
    spec = {"units": units, "ops": [dict(op, dst=list(op["dst"])) for op in trace],
            "store": [[t, list(i), v] for (t, i), v in store.items()], "expect": expect, "limit": 2 * latency + 100}
    top = "attnc_cascade_top"
    files = {f"{u.name}.v": u.verilog for u in d.units.values()}
    files[f"{top}.v"] = tile.units_verilog(d, top)
    res = run_cocotb(tmp_path, files, top, "tb_cascade", spec)
    assert [o[2] for o in res["outputs"]] == [e[2] for e in expect]
    assert res["edges"] == latency
    for e in c.einsums:                    # the running values crossed several key tiles
        if e.iterative_var and not e.is_initial:
            j = next(k for k, i in enumerate(e.output.indices) if e.iterative_var in str(i))
            assert len({op["dst"][j] for op in trace if op["einsum"] == e.name}) >= 2, e.name
