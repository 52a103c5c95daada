"""The simulator's fill and drain of an `epochs` mapping
(`simulator.events.epoch_pipeline`) against the generated top: the top's
cycles are (epochs - 1) x L + the latency of one epoch, and the simulator
predicts them from the blocks' own latency formulas (codegen.rtl.top's
hand-off, codegen.rtl.unit's II, codegen.rtl.pe_array's skew), not from
the top's schedule. The top's cycles are measured under Icarus in
test_top.py; here they are the schedule's (`Schedule.cycles`, what the
bench measures)."""
from __future__ import annotations

import pytest

from codegen.rtl import top
from codegen.rtl.fixed import Fmt
from einsum_ir import parse
from einsum_ir.execute import random_inputs
from einsum_ir.library import load
from hw_models import load_spatial
from hw_models.schema import HardwareError
from hw_models.spatial import parse_spatial
from mappers.mapping import load_mapping, parse_mapping
from simulator.analytical import simulate
from simulator.events import epoch_pipeline

from .test_tile import ROOT

CHAIN = """
rank P
input X[P]: f16
A[p] = X[p] * X[p]
B[p] = exp(A[p])
C[p] = B[p] + A[p]
"""

CHAIN_MAPPING = """
name: chain
cascade: chain
hardware: fusemax
factors:
  P: {P1: rest, P0: 2}
nest:
  - for: [p1]
    parfor: {pe1d: [p0]}
    run: [A, B, C]
binding: {A: pe1d, B: pe1d, C: pe1d}
keep: {X: stream, A: stream, B: stream, C: stream}
overlap:
  kind: epochs
  critical_path: A + B + C
"""


def fusemax(rows: int, cols: int, mapping: str = "fusemax-binding", exp_cycles: int | None = None,
            key_loop_inside: bool = False):
    """FuseMax's hardware and a library mapping scaled to a rows x cols array
    with rows x cols tiles; optionally a native exp unit, or the key loop
    inside the query loop with no critical path stated (every Einsum in sequence)."""
    hw_text = (ROOT / "hw_models/presets/fusemax.yaml").read_text()
    hw_text = hw_text.replace("shape: [256, 256]", f"shape: [{rows}, {cols}]")
    hw_text = hw_text.replace("shape: [256]", f"shape: [{cols}]")
    if exp_cycles:
        hw_text = hw_text.replace("exp: {as: {mac: 6}}", f"exp: {{cycles: {exp_cycles}, energy_pj: 1.0}}")
    m_text = (ROOT / f"mappers/mappings/{mapping}.yaml").read_text()
    m_text = m_text.replace("M0: 256", f"M0: {rows}").replace("P0: 256", f"P0: {cols}")
    if key_loop_inside:
        m_text = m_text.replace("for: [m1, p1]", "for: [p1, m1]")
        m_text = "\n".join(ln for ln in m_text.splitlines() if "critical_path:" not in ln)
    return parse_spatial(hw_text), parse_mapping(m_text)


def one_pass(rows, cols, shapes, **kw):
    return (load("attention-1pass"), *fusemax(rows, cols, **kw), dict(shapes, M0=rows))


def chain():
    return parse(CHAIN, name="chain"), fusemax(2, 2)[0], parse_mapping(CHAIN_MAPPING), dict(P=8)


# designs and mappings besides +Binding at the three array sizes (test_top.py): name -> (cascade, hw, mapping, shapes)
CONFIGS = {
    "binding 2x2, B = H = 2": lambda: one_pass(2, 2, dict(B=2, H=2, E=4, F=4, M=4, P=4)),
    "binding 2x2, E = 4, F = 2": lambda: one_pass(2, 2, dict(B=1, H=1, E=4, F=2, M=4, P=4)),
    "binding 3x4, a 2-cycle exp unit": lambda: one_pass(3, 4, dict(B=1, H=1, E=6, F=6, M=6, P=8), exp_cycles=2),
    "architecture 2x2 (fill_pe2d on the path)": lambda: one_pass(2, 2, dict(B=1, H=1, E=4, F=4, M=4, P=4),
                                                              mapping="fusemax-architecture"),
    "architecture 3x4": lambda: one_pass(3, 4, dict(B=1, H=1, E=6, F=6, M=6, P=8), mapping="fusemax-architecture"),
    "binding 2x2, key loop inside, no critical path": lambda: one_pass(2, 2, dict(B=1, H=1, E=4, F=4, M=8, P=4),
                                                                     key_loop_inside=True),
    "chain": chain,
}


def config_top(name: str, seed: int = 4):
    c, hw, m, shapes = CONFIGS[name]()
    t = top.generate_top(c, random_inputs(c, shapes, seed=seed), shapes, Fmt(24, 10), hw, m,
                         name="attnc_top_" + "".join(ch if ch.isalnum() else "_" for ch in name))
    return t, epoch_pipeline(c, m, hw, shapes)


def test_hand_derived_chain():
    """A -> B -> C on the 1D array, 2 PEs, 8 points in 4 epochs. A (mul)
    takes 1 cycle per point, B (exp as 6 MACs) 6, C (add) 1: L = 8. By the
    top's convention (docs/rtl.md): epoch e starts at edge 1 + 8e; A issues
    there, its result is readable 1 + 3 edges later (the hand-off), so B
    issues at 1 + 8e + 4; B's result is readable 6 + 3 later, so C issues at
    1 + 8e + 13 and its result is written 1 + 2 after that, 8e + 17; in the
    last epoch (e = 3) at 41, done at 42: 43 edges counted from edge 0, the
    analytical 4 x 8 plus a fill and drain of 42 - 32 = 10."""
    c, hw, m, shapes = chain()
    p = epoch_pipeline(c, m, hw, shapes)
    assert (p.epochs, p.period) == (4, 8)
    assert {x: s.start for x, s in p.stages.items()} == {"A": 0, "B": 4, "C": 13}
    assert {x: s.offset for x, s in p.stages.items()} == {"A": 0, "B": 1, "C": 7}
    assert p.fill_drain_cycles == 10 and p.latency_cycles == 42 and p.rtl_cycles == 43 and p.exact


@pytest.mark.parametrize("name", list(CONFIGS))
def test_predicted_cycles_equal_the_tops(name):
    """Other designs, mappings and hardware tables: the prediction equals
    the top's cycles, and each Einsum of the epochs' leaf opens its window
    where the top's schedule opens it."""
    t, p = config_top(name)
    assert p.exact, p.caveats
    assert (p.epochs, p.period) == (t.plan.epochs, t.plan.length)
    assert p.rtl_cycles == t.schedule.cycles
    assert p.latency_cycles == t.plan.epochs * t.plan.length + p.fill_drain_cycles
    for x, s in p.stages.items():
        if s.leaf == 0:
            assert (s.start, s.window) == t.schedule.windows[x], x


def test_the_formulas_are_shared(monkeypatch):
    """A slower RAM write (one edge more per hand-off) changes the top's
    schedule and the prediction alike: both read `top.write_edge`."""
    t, p = config_top("architecture 2x2 (fill_pe2d on the path)")
    before = (t.schedule.cycles, p.rtl_cycles)      # Schedule.cycles reads write_edge when asked
    slow = top.write_edge
    monkeypatch.setattr(top, "write_edge", lambda issue, ii, extra=0: slow(issue, ii, extra) + 1)
    t2, p2 = config_top("architecture 2x2 (fill_pe2d on the path)")
    assert t2.schedule.cycles == p2.rtl_cycles > before[1] == before[0]


def test_a_window_that_spills_is_a_caveat():
    """SLNV's 3 x 2 outputs of 2 points over 4 PEs take 4 cycles, its share
    of the epoch 3: the top spills it into the next epoch's window, which
    the pipeline does not model; it says so (and it is then off)."""
    c, hw, m, shapes = one_pass(2, 2, dict(B=1, H=1, E=5, F=3, M=6, P=2))
    p = epoch_pipeline(c, m, hw, shapes)
    assert not p.exact and any(cv.startswith("SLNV:") and "spills" in cv for cv in p.caveats)
    t = top.generate_top(c, random_inputs(c, shapes, seed=1), shapes, Fmt(24, 10), hw, m)
    assert t.schedule.cycles != p.rtl_cycles


def test_a_partial_tile_is_a_caveat():
    c, hw, m, shapes = one_pass(4, 2, dict(B=1, H=1, E=4, F=4, M=7, P=4))
    assert any("M = 7 is not a multiple" in cv for cv in epoch_pipeline(c, m, hw, shapes).caveats)


@pytest.mark.parametrize("n, most", [(4096, 0.04), (16384, 0.003)])
def test_large_workloads(n, most):
    """FuseMax at n x n tokens: the fill and drain (the 256 x 256 array's
    skew of 510, the hand-offs, LM and SLD's 256 points per output on one
    PE each, the last AV) is the same few epochs at every length, exposed
    once: 3.7% of 4K's 256 epochs, 0.24% of 16K's 4096; the analytical
    latency (epochs x L) does not include it."""
    c, hw, m = load("attention-1pass"), load_spatial("fusemax"), load_mapping("fusemax-binding")
    shapes = dict(B=1, H=1, E=64, F=64, M=n, P=n)
    r, p = simulate(c, m, hw, shapes), epoch_pipeline(c, m, hw, shapes)
    assert p.exact and p.stages["BQK"].fill == 256 + 256 - 2 and p.stages["LM"].window == 256
    assert r.latency_cycles == r.epochs * r.critical_path_cycles == p.epochs * p.period
    assert 510 < p.fill_drain_cycles < most * r.latency_cycles


def test_only_epochs_have_a_pipeline():
    c, m = load("attention-1pass"), load_mapping("fusemax-cascade")
    with pytest.raises(HardwareError, match="overlap overlapped"):
        epoch_pipeline(c, m, load_spatial("flat"), dict(B=1, H=1, E=64, F=64, M=1024, P=1024))
