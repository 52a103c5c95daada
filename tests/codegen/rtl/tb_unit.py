"""cocotb bench for one generated Einsum unit: streams the points of a
vector file (written by the pytest side from the unit's Python model)
through the unit as fast as `ready` allows, checks every result bit for
bit, and writes the measured latencies and total cycles back."""
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


@cocotb.test()
async def stream_points(dut):
    spec = json.load(open(os.environ["ATTNC_VECTORS"]))
    ports, width = spec["ports"], spec["width"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.start.value, dut.first.value = 1, 0, 0
    for p in ports:
        getattr(dut, p["name"]).value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    points, pending, got, t = spec["points"], [], [], 0
    nxt = 0
    while len(got) < len(points):
        await FallingEdge(dut.clk)
        t += 1
        if int(dut.done.value):
            got.append((dut.y.value.to_signed(), int(dut.exists.value), t))
        if nxt < len(points) and int(dut.ready.value):
            vals, first = points[nxt]
            for p, v in zip(ports, vals):
                getattr(dut, p["name"]).value = v & ((1 << p["bits"]) - 1)
            dut.first.value = first
            dut.start.value = 1
            pending.append(t)
            nxt += 1
        else:
            dut.start.value = 0
        assert t < 1000 + 300 * len(points), "the unit stopped answering"
    bad = []
    for i, ((y, ex, tdone), exp, tstart) in enumerate(zip(got, spec["expect"], pending)):
        if [y, ex] != exp:
            bad.append(f"point {i} {points[i]}: RTL y={y} exists={ex}, model y={exp[0]} exists={exp[1]}")
    lat = sorted({tdone - tstart for (_, _, tdone), tstart in zip(got, pending)})
    json.dump({"latencies": lat, "total": got[-1][2] - pending[0], "mismatches": bad[:20], "n_bad": len(bad)},
              open(os.environ["ATTNC_RESULT"], "w"))
    assert not bad, f"{len(bad)} of {len(points)} points differ (width {width}): " + "; ".join(bad[:5])
