"""The top under cocotb: one run of a whole tile computation (several key
tiles, several query tiles) through the RAMs, the lanes of every Einsum's
unit and their sequencers; outputs bit-exact with the fixed-point model
(`tile.run`), edges from start to done equal to the schedule's cycles; with
FuseMax's +Binding mapping, the Einsums issue inside the controller's
epoch windows and the measured edges are set beside the simulator's."""
from __future__ import annotations

import re

import numpy as np
import pytest

from codegen.rtl import top
from codegen.rtl.fixed import Fmt, RTLError
from einsum_ir import parse
from einsum_ir.execute import random_inputs
from einsum_ir.library import load

from .sim import run_cocotb
from .test_tile import _scaled
from .test_units import CUSTOM


def wrapper(tops: list) -> str:
    """A test module holding several tops side by side (ports t0_*, t1_*, ...): one build, one run."""
    ports, body = ["input wire clk", "input wire rst"], []
    for i, t in enumerate(tops):
        w = top.interface(t.schedule, t.design.fmt)
        sizes = {"ld_mem": w["mem"], "rd_mem": w["mem"], "ld_addr": w["addr"], "rd_addr": w["addr"],
                 "ld_data": w["data"], "start": 1, "ld_we": 1}
        ports += [f"input wire [{n - 1}:0] t{i}_{k}" for k, n in sizes.items()]
        ports += [f"output wire [{w['data'] - 1}:0] t{i}_rd_data", f"output wire t{i}_busy", f"output wire t{i}_done",
                  f"output wire t{i}_fault"]
        conns = [f".{k}(t{i}_{k})" for k in [*sizes, "rd_data", "busy", "done", "fault"]]
        body.append(f"  {t.name} u{i} (.clk(clk), .rst(rst), {', '.join(conns)});")
    return "\n".join(["module attnc_tops (", ",\n".join(f"  {p}" for p in ports), ");", *body, "endmodule", ""])


def run_tops(tmp_path, tops: list) -> list[dict]:
    """Every top in one cocotb run: edges and outputs of each."""
    files = {"attnc_tops.v": wrapper(tops)}
    def code(text: str) -> list[str]:  # headers and parameter defaults differ (each top sets R and C)
        return [re.sub(r"(parameter integer \w+) = \d+", r"\1", ln) for ln in text.splitlines()
                if not ln.startswith("//")]
    for t in tops:
        for k, v in t.files.items():
            assert code(files.setdefault(k, v)) == code(v), f"two different modules in {k}"
    spec = {"tops": []}
    for t in tops:
        s = t.schedule
        mems = list(s.memories)
        spec["tops"].append({"width": t.design.fmt.width, "limit": 2 * s.cycles + 100,
                             "preload": [[mems.index(m), a, v] for m, a, v in s.preload],
                             "read": [[mems.index(o), int(i)] for o, arr in t.outputs.items()
                                      for i in range(arr.size)]})
    return run_cocotb(tmp_path, files, "attnc_tops", "tb_top", spec)["results"]


def expected(t: top.Top) -> list[int]:
    return [int(v) for arr in t.outputs.values() for v in np.asarray(arr).reshape(-1)]


SIZES = [(2, 2, 4, 2, 2), (3, 4, 6, 2, 2), (4, 2, 8, 2, 3)]     # rows, cols, E = F, key tiles, query tiles


def binding_case(rows, cols, e, nm, np_, bh=1):
    """(cascade, hardware, mapping, shapes): the 1-pass cascade on FuseMax
    +Binding scaled to a rows x cols array (batch and heads `bh`)."""
    c = load("attention-1pass")
    hw, m = _scaled(rows, cols)
    return c, hw, m, dict(B=bh, H=bh, E=e, F=e, M=rows * nm, P=cols * np_, M0=rows)


def binding_top(rows, cols, e, nm, np_, seed=5, fmt=Fmt(24, 10), bh=1):
    c, hw, m, shapes = binding_case(rows, cols, e, nm, np_, bh)
    return top.generate_top(c, random_inputs(c, shapes, seed=seed), shapes, fmt, hw, m,
                            name=f"attnc_top_{rows}x{cols}")


def in_windows(t: top.Top) -> None:
    """Every Einsum of the epochs' leaf issues epoch k's points inside its
    window of epoch k: the controller's offset moved by the skew, as long as
    the simulator's share (or one output's points, where the mapping reduces
    across PEs), on at most the simulator's PEs for it."""
    s, p = t.schedule, t.plan
    share = {x: k for x, _, k in p.issue}
    for op in s.ops:
        if op.einsum in s.main:
            epoch = int(np.ravel_multi_index(p.epoch_key(op.einsum, op.pt), [n for _, n in p.loops]))
            start = top.BASE + epoch * p.length + s.windows[op.einsum][0]
            assert start <= op.issue < start + s.windows[op.einsum][1], (op.einsum, op.pt, op.issue)
    for x in s.main:
        longest = max(sum(1 for o in s.ops if o.einsum == x and o.dst == d) for d in {o.dst for o in s.ops
                                                                                      if o.einsum == x})
        assert s.windows[x][1] == max(share[x], longest * s.ii[x]), x


PIPELINED = ["architecture 2x2 (fill_pe2d on the path)", "binding 2x2, key loop inside, no critical path", "chain"]


def test_one_run_per_array_size_bit_exact_at_the_schedules_cycles(tmp_path):
    """Three array sizes, each a whole tile computation (2 key tiles, 2 or 3
    query tiles) in one run: outputs bit-exact with the fixed-point model,
    the edges from start to done the schedule's; the schedule keeps every
    Einsum in its epoch windows; its cycles are the simulator's epochs x L
    + 1 plus the skew and the tail (docs/rtl.md). In the same run, other
    mappings (test_pipeline.CONFIGS); every top's measured edges are the
    simulator's prediction (`simulator.events.epoch_pipeline`) exactly."""
    from simulator.events import epoch_pipeline
    from .test_pipeline import config_top
    tops = [binding_top(*size) for size in SIZES]
    predicted = [epoch_pipeline(c, m, hw, shapes) for c, hw, m, shapes in (binding_case(*size) for size in SIZES)]
    for name in PIPELINED:
        t, p = config_top(name)
        tops.append(t)
        predicted.append(p)
    for t, (rows, cols, *_) in zip(tops, SIZES):        # the score tiles on the generated systolic array
        assert list(t.schedule.arrays) == ["BQK"] and t.files[f"{t.name}.v"].count(f".R({rows}), .C({cols})") == 1
        assert f"{t.name}_ctrl c_ctl" in t.files[f"{t.name}.v"] and f"{t.name}_ctrl.v" in t.files
    results = run_tops(tmp_path, tops)
    for t, p, res in zip(tops, predicted, results):
        assert res["outputs"] == expected(t), t.name
        assert p.exact and res["edges"] == t.schedule.cycles == p.rtl_cycles, (t.name, p.caveats)
    for t, res in zip(tops[:len(SIZES)], results):
        in_windows(t)
        parts = t.schedule.parts()
        assert parts["epochs"] == t.plan.cycles
        assert parts["epochs"] + parts["skew"] + parts["tail"] == t.schedule.cycles


@pytest.mark.parametrize("rows, cols, e, np_, nm", [(2, 2, 4, 2, 4), (3, 4, 6, 2, 3)])
def test_each_epoch_costs_the_simulators_cycles(rows, cols, e, np_, nm):
    """cycles = (epochs - 1) x L + the latency of one epoch, the latency the
    same for 2 and more key tiles, and for 2 batches x 2 heads: an epoch adds
    the simulator's L exactly."""
    a, b, d = (binding_top(rows, cols, e, 2, np_), binding_top(rows, cols, e, nm, np_),
               binding_top(rows, cols, e, 2, np_, bh=2))
    assert b.plan.epochs == a.plan.epochs * nm // 2 and d.plan.epochs == 4 * a.plan.epochs
    assert a.schedule.parts()["latency"] == b.schedule.parts()["latency"] == d.schedule.parts()["latency"]
    from simulator.events import epoch_pipeline
    for t, (nm_, bh) in zip((a, b, d), ((2, 1), (nm, 1), (2, 2))):
        assert t.schedule.cycles == (t.plan.epochs - 1) * t.plan.length + t.schedule.parts()["latency"]
        c, hw, m, shapes = binding_case(rows, cols, e, nm_, np_, bh)
        assert epoch_pipeline(c, m, hw, shapes).rtl_cycles == t.schedule.cycles     # the simulator predicts it


OTHERS = [("softcap", dict(B=1, H=1, E=3, F=2, P=5), 2, Fmt(32, 16)),              # tanh score map, causal
          ("alibi", dict(B=1, H=2, E=2, F=2, P=4), 1, Fmt(32, 16)),                # coordinate bias, two heads
          ("sliding-window", dict(B=1, H=1, E=2, F=3, P=6, W=2), 3, Fmt(32, 16)),  # window predicate, select
          ("gated-attention", dict(B=1, H=1, E=2, F=2, M=4, P=3, D=2), 2, Fmt(32, 16)),   # sigmoid gate
          ("test-only", dict(B=1, H=1, E=2, F=2, M=5, P=3, W=1), 3, Fmt(32, 16))]  # bool mask, clip, exp2, min


def test_other_designs_one_run_bit_exact(tmp_path):
    """No mapping: every Einsum on 1 to 3 lanes, as soon as possible; all in one run."""
    tops = []
    for name, shapes, lanes, fmt in OTHERS:
        c = parse(CUSTOM, name="test-only") if name == "test-only" else load(name)
        ins = random_inputs(c, shapes, seed=9)
        if "CAP" in ins:
            ins["CAP"] = np.array(2.0)                 # softcap: tanh saturates for some scores
        tops.append(top.generate_top(c, ins, shapes, fmt, lanes=lanes))
        assert max(tops[-1].schedule.lanes.values()) == lanes
    for t, res in zip(tops, run_tops(tmp_path, tops)):
        assert res["outputs"] == expected(t), t.name
        assert res["edges"] == t.schedule.cycles, t.name


def test_a_read_before_its_write_is_refused():
    """Schedule.check is independent of the scheduler: an operation moved
    before its operand is written (or two on one lane within an II) is an error."""
    t = binding_top(2, 2, 4, 2, 2)
    s = t.schedule
    lm = next(op for op in s.ops if op.einsum == "LM")
    made = max(s.write_edge(op) for op in s.ops if (op.einsum, op.dst) == lm.srcs[0])
    keep, lm.issue = lm.issue, made
    with pytest.raises(RTLError, match="reads BQK"):
        s.check()
    lm.issue = keep
    s.check()
    rm = [op for op in s.ops if op.einsum == "RM" and op.lane == 0][:2]
    rm[1].issue = rm[0].issue
    with pytest.raises(RTLError, match="lane 0: issues at edges"):
        s.check()
