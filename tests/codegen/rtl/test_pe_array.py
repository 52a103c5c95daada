"""The output-stationary PE array at several sizes and contraction lengths:
bit-exact against its model on random tiles streamed back to back, and its
measured edges equal to its latency formula."""
from __future__ import annotations

import random

import pytest

from codegen.rtl import pe_array
from codegen.rtl.fixed import Fmt

from .sim import run_cocotb
from .vectors import operand

SIZES = [(2, 2, 3, Fmt(16, 8)), (3, 4, 8, Fmt(24, 10)), (4, 3, 5, Fmt(32, 16)), (1, 4, 6, Fmt(16, 6)),
         (5, 5, 2, Fmt(20, 8))]


@pytest.mark.parametrize("rows, cols, k, fmt", SIZES, ids=[f"{r}x{c}-K{k}-{f.name}" for r, c, k, f in SIZES])
def test_array_bit_exact_and_cycles(tmp_path, rows, cols, k, fmt):
    rng = random.Random(rows * 100 + cols * 10 + k)
    n_tiles = max(3, 2000 // (rows * cols))          # thousands of outputs per size
    tiles = [([[operand(rng, fmt) for _ in range(k)] for _ in range(rows)],
              [[operand(rng, fmt) for _ in range(cols)] for _ in range(k)]) for _ in range(n_tiles)]
    spec = {"rows": rows, "cols": cols, "width": fmt.width, "tiles": tiles,
            "expect": [pe_array.model(fmt, a, b) for a, b in tiles]}
    pe = pe_array.pe_verilog("attnc_test_pe", fmt, ["test"])
    top = pe_array.array_verilog("attnc_test_pe_array", "attnc_test_pe", fmt, rows, cols, ["test"])
    res = run_cocotb(tmp_path, {"pe.v": pe, "pe_array.v": top}, "attnc_test_pe_array", "tb_array", spec)
    assert res["n_bad"] == 0
    # measured from the falling edge that drives the first step: edges up to the last output, inclusive
    assert res["edges"] == pe_array.cycles(rows, cols, k, n_tiles)


def test_model_is_the_exact_product_without_saturation():
    """An independent reference: with small operands nothing saturates, so each
    output is the sum of rounded products, computed here with plain integers."""
    fmt, rng = Fmt(32, 8), random.Random(5)
    a = [[rng.randint(-4000, 4000) for _ in range(7)] for _ in range(3)]
    b = [[rng.randint(-4000, 4000) for _ in range(2)] for _ in range(7)]
    want = [[sum((a[r][j] * b[j][c] + 128) >> 8 for j in range(7)) for c in range(2)] for r in range(3)]
    assert pe_array.model(fmt, a, b) == want
