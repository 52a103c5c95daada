"""The fixed-point model of whole cascades against the float reference
executor (the tolerance docs/rtl.md states), and the RTL's cycles against
the spatial simulator's for the same tile and mapping at several array
sizes and tile shapes."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from codegen.rtl import generate, pe_array, tile
from codegen.rtl.fixed import Fmt
from einsum_ir import execute, parse
from einsum_ir.execute import random_inputs
from einsum_ir.library import load
from hw_models.spatial import parse_spatial
from mappers.mapping import parse_mapping
from simulator.analytical import simulate

from .sim import run_cocotb
from .test_units import CUSTOM
from .vectors import operand, unit_spec

ROOT = Path(__file__).resolve().parents[3]
TOLERANCE = 1e-3            # |fixed - float| <= TOLERANCE * max(1, max |float|), Q16.16, standard-normal inputs

CASES = [("attention-1pass", dict(B=1, H=2, E=8, F=8, M=20, P=6, M0=8)),
         ("attention-1pass", dict(B=1, H=1, E=16, F=4, M=33, P=5, M0=16)),
         ("softcap", dict(B=1, H=1, E=8, F=4, P=12)),
         ("alibi", dict(B=1, H=2, E=8, F=4, P=10)),
         ("sliding-window", dict(B=1, H=1, E=8, F=4, P=12, W=4)),
         ("gated-attention", dict(B=1, H=1, E=8, F=4, M=10, P=6, D=5)),
         ("test-only", dict(B=1, H=1, E=8, F=4, M=9, P=7, W=3))]


@pytest.mark.parametrize("name, shapes", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_fixed_point_model_within_tolerance_of_reference(name, shapes):
    c = parse(CUSTOM, name="test-only") if name == "test-only" else load(name)
    ins = random_inputs(c, shapes, seed=3)
    if "CAP" in ins:
        ins["CAP"] = np.array(5.0)
    ref = execute(c, ins, shapes)
    got = tile.run(c, ins, shapes, Fmt(32, 16))
    for k, v in got.items():
        r = ref[k]
        assert np.all(np.isfinite(r))
        err = np.max(np.abs(v - r))
        assert err <= TOLERANCE * max(1.0, float(np.max(np.abs(r)))), f"{name} {k}: error {err}"


def test_a_coarse_format_is_visibly_worse():
    """The tolerance is the format's, not a loose bound: Q8.8 misses it."""
    c, shapes = load("attention-1pass"), dict(B=1, H=1, E=8, F=8, M=16, P=4, M0=8)
    ins = random_inputs(c, shapes, seed=4)
    err = np.max(np.abs(tile.run(c, ins, shapes, Fmt(16, 8))["AV"] - execute(c, ins, shapes)["AV"]))
    assert err > TOLERANCE


def _scaled(rows: int, cols: int):
    """FuseMax's hardware and +Binding mapping with a rows x cols array and rows x cols tiles."""
    hw_text = (ROOT / "hw_models/presets/fusemax.yaml").read_text()
    hw_text = hw_text.replace("shape: [256, 256]", f"shape: [{rows}, {cols}]").replace("shape: [256]", f"shape: [{cols}]")
    m_text = (ROOT / "mappers/mappings/fusemax-binding.yaml").read_text()
    m_text = m_text.replace("M0: 256", f"M0: {rows}").replace("P0: 256", f"P0: {cols}")
    return parse_spatial(hw_text), parse_mapping(m_text)


SIZES = [(2, 2, 4, 2), (3, 4, 8, 2), (4, 2, 6, 3)]      # rows, cols, E (= F), key/query tiles per side


@pytest.mark.parametrize("rows, cols, e, n", SIZES, ids=[f"{r}x{c}-E{e}-{n}tiles" for r, c, e, n in SIZES])
def test_cycles_equal_the_simulators(tmp_path, rows, cols, e, n):
    c = load("attention-1pass")
    hw, m = _scaled(rows, cols)
    shapes = dict(B=1, H=1, E=e, F=e, M=rows * n, P=cols * n)
    report = simulate(c, m, hw, shapes)
    design = generate(c, hw, m, Fmt(24, 10))
    costs = {ec.name: ec for ec in report.einsums}
    for name, ec in costs.items():
        u = design.units[name]
        assert u.cycles_per_point == ec.cycles_per_point, name
        # each PE runs points / PEs used back to back: the simulator's busy cycles
        assert ec.points / ec.pes_used * u.ii == pytest.approx(ec.busy_cycles), name
    # measured: the 2D array streams the n*n score tiles back to back (II = E)
    tiles = n * n
    rng = random.Random(rows + cols + e)
    fmt = design.fmt
    ab = [([[operand(rng, fmt) for _ in range(e)] for _ in range(rows)],
           [[operand(rng, fmt) for _ in range(cols)] for _ in range(e)]) for _ in range(tiles)]
    spec = {"rows": rows, "cols": cols, "width": fmt.width, "tiles": ab,
            "expect": [pe_array.model(fmt, a, b) for a, b in ab]}
    prefix = "attnc_attention_1pass"
    files = {k: v for k, v in design.files.items() if k.startswith(f"{prefix}_pe")}
    res = run_cocotb(tmp_path / "array", files, f"{prefix}_pe_array", "tb_array", spec)
    assert res["edges"] == costs["BQK"].busy_cycles + pe_array.fill_cycles(rows, cols)
    # measured: one 1D PE runs its share of PRM's points back to back
    u, ec = design.units["PRM"], costs["PRM"]
    n_points = int(ec.points / ec.pes_used)
    res = run_cocotb(tmp_path / "prm", {f"{u.name}.v": u.verilog}, u.name, "tb_unit", unit_spec(u, n_points, 7))
    assert res["total"] == ec.busy_cycles + 1          # + the input register
