"""The controller generated from FuseMax's +Binding mapping, scaled to
several array sizes and tile counts: under cocotb it issues every Einsum
once per epoch, with the loop indices of the nest's order, never books a
unit twice at once, and takes the analytical simulator's latency (epochs x
critical path) plus the start register; lint clean."""
from __future__ import annotations

import itertools

import pytest

from attnc.cli import main
from codegen.rtl import generate
from codegen.rtl.controller import controller_verilog, plan
from codegen.rtl.fixed import RTLError
from codegen.rtl.lint import have_verilator, lint
from einsum_ir.library import load
from hw_models import load_spatial
from mappers.mapping import load_mapping
from simulator.analytical import simulate

from .sim import run_cocotb
from .test_tile import _scaled

SIZES = [(2, 2, 4, 2, 2), (3, 4, 6, 3, 2), (4, 2, 8, 2, 3)]     # rows, cols, E = F, key tiles, query tiles


@pytest.mark.parametrize("rows, cols, e, nm, np_", SIZES, ids=[f"{r}x{c}-E{e}-{m}x{p}" for r, c, e, m, p in SIZES])
def test_controller_sequences_the_nest_in_the_simulators_cycles(tmp_path, rows, cols, e, nm, np_):
    c = load("attention-1pass")
    hw, m = _scaled(rows, cols)
    shapes = dict(B=1, H=1, E=e, F=e, M=rows * nm, P=cols * np_)
    design = generate(c, hw, m)
    p = plan(c, m, hw, shapes, design.units)
    report = simulate(c, m, hw, shapes)
    assert report.latency_cycles == report.epochs * report.critical_path_cycles     # compute-bound here
    assert [v for v, _ in p.loops] == ["b", "h", "p2", "m1", "p1"] and dict(p.loops)["m1"] == nm
    name = "attnc_attention_1pass_ctrl"
    spec = {"loops": [v for v, _ in p.loops], "issue": [x for x, _, _ in p.issue], "limit": 10 * p.cycles + 50}
    res = run_cocotb(tmp_path, {f"{name}.v": controller_verilog(name, p, ["test"])}, name, "tb_ctrl", spec)
    assert res["edges"] == report.latency_cycles + 1 == p.cycles
    order = list(itertools.product(*[range(n) for _, n in p.loops]))      # the nest, outermost first
    L = int(report.critical_path_cycles)
    for x, s, k in p.issue:
        got = [(idx, t) for name_, idx, t in res["issued"] if name_ == x]
        assert [tuple(i) for i, _ in got] == order, x                  # once per epoch, in the nest's order
        assert [t for _, t in got] == [ep * L + s + 1 for ep in range(len(order))], x
    unit = {ec.name: ec.unit for ec in report.einsums}
    for u in set(unit.values()):                                       # a unit runs one Einsum at a time
        spans = sorted((s, s + k) for x, s, k in p.issue if unit.get(x) == u)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (u, spans)
    if have_verilator():
        assert lint({f"{name}.v": controller_verilog(name, p, ["test"])}) == {f"{name}.v": []}


def test_a_fractional_share_is_refused():
    c = load("attention-1pass")
    hw, m = _scaled(2, 2)
    with pytest.raises(RTLError, match="not a whole number of cycles"):
        plan(c, m, hw, dict(B=1, H=1, E=3, F=3, M=4, P=4))          # AV: 3 x 2 / 2 over 4 epochs


def test_compile_with_shapes_writes_the_controller(tmp_path, capsys):
    out = tmp_path / "rtl"
    assert main(["compile", "attention-1pass", "--target", "rtl", "--out", str(out), "--mapping", "fusemax-binding",
                 "--shape", "B=1", "H=1", "E=64", "F=64", "M=1024", "P=1024"]) == 0
    text = (out / "attnc_attention_1pass_ctrl.v").read_text()
    report = simulate(load("attention-1pass"), load_mapping("fusemax-binding"), load_spatial("fusemax"),
                      dict(B=1, H=1, E=64, F=64, M=1024, P=1024))
    assert f"{int(report.latency_cycles) + 1} edges from start to done" in text and "Mapping: binding" in text


def test_controller_of_a_mapping_the_mapper_found(tmp_path):
    """Not the library's nest: the spatial mapper's best mapping at these
    shapes (its own loop order and critical path) sequenced the same way."""
    from mappers.spatial_search import search
    c = load("attention-1pass")
    hw, _ = _scaled(2, 2)
    shapes = dict(B=1, H=1, E=4, F=4, M=8, P=4)
    m = search(c, hw, shapes, budget=500).mapping          # a small search: any mapping it finds will do
    report = simulate(c, m, hw, shapes)
    p = plan(c, m, hw, shapes, generate(c, hw, m).units)
    name = "attnc_attention_1pass_ctrl"
    spec = {"loops": [v for v, _ in p.loops], "issue": [x for x, _, _ in p.issue], "limit": 10 * p.cycles + 50}
    res = run_cocotb(tmp_path, {f"{name}.v": controller_verilog(name, p, ["test"])}, name, "tb_ctrl", spec)
    assert res["edges"] == report.latency_cycles + 1
    assert sorted({x for x, _, _ in res["issued"]}) == sorted(x for x, _, _ in p.issue)
