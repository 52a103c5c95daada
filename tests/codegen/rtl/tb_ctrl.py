"""cocotb bench for the controller: pulses `start`, records every cycle's
issue strobes with the loop indices beside them, and the edge `done` is
seen; the pytest side compares them with the simulator's schedule."""
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


@cocotb.test()
async def run_epochs(dut):
    spec = json.load(open(os.environ["ATTNC_VECTORS"]))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.start.value = 1, 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    dut.start.value, t, issued, done_t = 1, 0, [], None
    while done_t is None:
        await FallingEdge(dut.clk)
        dut.start.value = 0
        t += 1
        idx = [int(getattr(dut, f"i_{v}").value) for v in spec["loops"]]
        for x in spec["issue"]:
            if int(getattr(dut, f"go_{x}").value):
                issued.append([x, idx, t])
        if int(dut.done.value):
            done_t = t
        assert t < spec["limit"], "the controller never finished"
    json.dump({"edges": done_t, "issued": issued}, open(os.environ["ATTNC_RESULT"], "w"))
