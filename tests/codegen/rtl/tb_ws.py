"""cocotb bench for the weight-stationary PE array: loads each tile's
weights one row per edge just in time (row k of tile j+1 at s_{j+1} + k - 1)
while the previous tile streams, streams the A rows, checks every output row
bit for bit against the model's, and writes the measured edges (first weight
write .. last output row registered) back."""
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


def pack(values, bits):
    word = 0
    for i, v in enumerate(values):
        word |= (v & ((1 << bits) - 1)) << (i * bits)
    return word


def plan(spec):
    """{edge: (weight write or None, A row or None)} from the tiles and the spacing."""
    R, C = spec["rows"], spec["cols"]
    writes, rows, s = {}, {}, 1
    for j, (a, b) in enumerate(spec["tiles"]):
        for k in range(R):
            writes[s + k - 1] = (k, b[k] if k < len(b) else [0] * C)
        for i, arow in enumerate(a):
            rows[s + i] = (arow + [0] * (R - len(arow)), i == 0)
        s += spec["spacing"][j]
    return writes, rows


@cocotb.test()
async def stream_tiles(dut):
    spec = json.load(open(os.environ["ATTNC_VECTORS"]))
    R, C, W = spec["rows"], spec["cols"], spec["width"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.valid.value, dut.first.value, dut.w_we.value = 1, 0, 0, 0
    dut.a_row.value, dut.w_row.value, dut.w_k.value = 0, 0, 0
    for _ in range(R + C + 2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    writes, rows = plan(spec)
    want = sum(len(a) for a, _ in spec["tiles"])
    got, t, last_t = [], -1, None
    end = max(max(writes), max(rows))
    while len(got) < want:
        await FallingEdge(dut.clk)
        t += 1
        if int(dut.y_valid.value):
            y = int(dut.y_row.value)
            got.append([((y >> (c * W)) & ((1 << W) - 1)) - ((y >> (c * W + W - 1) & 1) << W) for c in range(C)])
            last_t = t
        w = writes.get(t)
        dut.w_we.value = int(w is not None)
        if w is not None:
            dut.w_k.value, dut.w_row.value = w[0], pack(w[1], W)
        a = rows.get(t)
        dut.valid.value = int(a is not None)
        if a is not None:
            dut.a_row.value, dut.first.value = pack(a[0], W), int(a[1])
        assert t < 10 * (end + R + C + 10), "the array stopped answering"
    expect = [row for y in spec["expect"] for row in y]
    bad = [f"output row {i}: RTL {g}, model {e}" for i, (g, e) in enumerate(zip(got, expect)) if g != e]
    json.dump({"edges": last_t - 0, "n_bad": len(bad), "mismatches": bad[:20]}, open(os.environ["ATTNC_RESULT"], "w"))
    assert not bad, f"{len(bad)} output rows differ: " + "; ".join(bad[:5])
