"""cocotb bench for a whole cascade through its RTL units: runs the
operations of `tile.run`'s trace one after another, each unit reading its
operands from what the units produced before (the bench is the buffer),
and writes the outputs and the edges taken back."""
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


@cocotb.test()
async def run_cascade(dut):
    spec = json.load(open(os.environ["ATTNC_VECTORS"]))
    units = spec["units"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for u in units.values():
        getattr(dut, f"{u['id']}_start").value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    store = {(t, tuple(i)): v for t, i, v in spec["store"]}
    t = 0
    for op in spec["ops"]:
        u = units[op["einsum"]]
        p = u["id"]
        vals = [store[(s, tuple(i))] for s, i in op["src"]] + op["args"]
        for (port, bits), v in zip(u["ports"], vals):
            getattr(dut, f"{p}_{port}").value = v & ((1 << bits) - 1)
        getattr(dut, f"{p}_first").value = op["first"]
        getattr(dut, f"{p}_start").value = 1
        await FallingEdge(dut.clk)
        t += 1
        getattr(dut, f"{p}_start").value = 0
        while not int(getattr(dut, f"{p}_done").value):
            await FallingEdge(dut.clk)
            t += 1
            assert t < spec["limit"], f"unit {op['einsum']} never finished"
        store[(op["einsum"], tuple(op["dst"]))] = getattr(dut, f"{p}_y").value.to_signed()
    out = [[n, i, store.get((n, tuple(i)))] for n, i, _ in spec["expect"]]
    json.dump({"edges": t, "outputs": out}, open(os.environ["ATTNC_RESULT"], "w"))
