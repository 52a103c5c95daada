"""cocotb bench for tops (several side by side in one build, ports
prefixed t0_, t1_, ...): for each in turn, loads the inputs and initial
values through its memory port, pulses start, counts the edges to done,
reads the outputs back through the same port."""
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


async def run_one(dut, p: str, spec: dict) -> dict:
    sig = lambda n: getattr(dut, f"{p}_{n}")  # noqa: E731
    mask = (1 << spec["width"]) - 1
    for mem, addr, v in spec["preload"]:
        sig("ld_we").value, sig("ld_mem").value, sig("ld_addr").value, sig("ld_data").value = 1, mem, addr, v & mask
        await FallingEdge(dut.clk)
    sig("ld_we").value = 0
    sig("start").value = 1
    t = 0
    while True:
        await FallingEdge(dut.clk)           # edge t has passed
        sig("start").value = 0
        if int(sig("done").value):
            break
        t += 1
        assert t < spec["limit"], f"top {p} never finished"
    assert not int(sig("fault").value), f"top {p}: a unit was started while not ready"
    out = []
    for mem, addr in spec["read"]:
        sig("rd_mem").value, sig("rd_addr").value = mem, addr
        await FallingEdge(dut.clk)
        out.append(sig("rd_data").value.to_signed())
    return {"edges": t + 1, "outputs": out}


@cocotb.test()
async def run_tops(dut):
    with open(os.environ["ATTNC_VECTORS"]) as f:
        spec = json.load(f)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for i, _ in enumerate(spec["tops"]):
        for n in ("start", "ld_we", "ld_mem", "ld_addr", "ld_data", "rd_mem", "rd_addr"):
            getattr(dut, f"t{i}_{n}").value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    results = [await run_one(dut, f"t{i}", s) for i, s in enumerate(spec["tops"])]
    with open(os.environ["ATTNC_RESULT"], "w") as f:
        json.dump({"results": results}, f)
