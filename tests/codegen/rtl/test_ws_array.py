"""The weight-stationary PE array at several sizes: tiles of varying row
counts (some shorter than the weight load, so the spacing is R) and
contraction lengths K <= R, bit-exact against the same model as the
output-stationary array (`pe_array.model`), and the measured edges equal to
`pe_array.ws_cycles`."""
from __future__ import annotations

import random

import pytest

from codegen.rtl import pe_array
from codegen.rtl.fixed import Fmt

from .sim import run_cocotb
from .vectors import operand

SIZES = [(2, 2, Fmt(16, 8)), (3, 4, Fmt(24, 10)), (4, 3, Fmt(32, 16)), (1, 4, Fmt(16, 6)), (5, 1, Fmt(20, 8))]


@pytest.mark.parametrize("rows, cols, fmt", SIZES, ids=[f"{r}x{c}-{f.name}" for r, c, f in SIZES])
def test_ws_array_bit_exact_and_cycles(tmp_path, rows, cols, fmt):
    rng = random.Random(rows * 10 + cols)
    tiles, outputs = [], 0
    while outputs < 2000:                                   # thousands of outputs per size
        n, k = rng.randint(1, 2 * rows + 3), rng.randint(1, rows)
        tiles.append(([[operand(rng, fmt) for _ in range(k)] for _ in range(n)],
                      [[operand(rng, fmt) for _ in range(cols)] for _ in range(k)]))
        outputs += n * cols
    ns = [len(a) for a, _ in tiles]
    spec = {"rows": rows, "cols": cols, "width": fmt.width, "tiles": tiles,
            "spacing": [pe_array.ws_initiation_interval(rows, n) for n in ns],
            "expect": [pe_array.model(fmt, a, b) for a, b in tiles]}
    pe = pe_array.ws_pe_verilog("attnc_test_pe_ws", fmt, ["test"])
    top = pe_array.ws_array_verilog("attnc_test_pe_array_ws", "attnc_test_pe_ws", fmt, rows, cols, ["test"])
    res = run_cocotb(tmp_path, {"attnc_test_pe_ws.v": pe, "attnc_test_pe_array_ws.v": top},
                     "attnc_test_pe_array_ws", "tb_ws", spec)
    assert res["n_bad"] == 0
    assert res["edges"] == pe_array.ws_cycles(rows, cols, ns)


def test_ws_spacing_is_the_weight_load_or_the_stream():
    """Hand-derived: 3 rows of weights on a 4-row array take 4 edges; 9 A rows take 9."""
    assert pe_array.ws_initiation_interval(4, 3) == 4 and pe_array.ws_initiation_interval(4, 9) == 9
    assert pe_array.ws_initiation_interval(1, 1) == 2
    # one tile of N rows: the weight write, N rows, then R + C - 2 edges of skew
    assert pe_array.ws_cycles(3, 5, [7]) == 1 + 7 + 3 + 5 - 2
