"""`attnc rtl-stats`: Yosys's cell counts for generated modules, beside the
area model's figure per PE of the unit each module is bound to."""
from __future__ import annotations

import pytest

from attnc.cli import main
from codegen.rtl import generate
from codegen.rtl.fixed import Fmt
from codegen.rtl.stats import have_yosys, rtl_stats
from einsum_ir.library import load
from hw_models import load_spatial
from mappers.mapping import load_mapping

pytestmark = pytest.mark.skipif(not have_yosys(), reason="yosys not installed (scripts/setup.sh installs it)")


def _write(tmp_path, keep):
    hw = load_spatial("fusemax")
    d = generate(load("attention-1pass"), hw, load_mapping("fusemax-binding"), Fmt(8, 4), rows=2, cols=2)
    for name, text in d.files.items():
        if name.endswith(keep):
            (tmp_path / name).write_text(text)
    return hw


def test_cells_per_module_beside_the_area_model(tmp_path):
    hw = _write(tmp_path, ("_pe.v", "_pe_array.v", "_RM.v"))
    rows = {s.module.rsplit("_", 1)[-1]: s for s in rtl_stats(str(tmp_path), array=(2, 3))}
    pe, arr, rm = rows["pe"], rows["array"], rows["RM"]
    assert pe.bound == arr.bound == "pe2d" and rm.bound == "pe1d"       # the mapping binds RM to the 1D array
    assert pe.area_um2_per_pe == hw.unit("pe2d").area_um2_per_pe
    assert rm.area_um2_per_pe == hw.unit("pe1d").area_um2_per_pe
    # the flattened 2 x 3 array is six PEs and its skew registers: more than six PEs, per PE about one
    assert arr.pes == 6 and arr.cells > 6 * pe.cells and arr.cells_per_pe < 1.5 * pe.cells
    # a running max (compare, select) is far smaller than a MAC with rounding and saturation
    assert 0 < rm.cells < pe.cells


def test_cli_prints_the_table(tmp_path, capsys):
    _write(tmp_path, ("_RM.v",))
    assert main(["rtl-stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "attnc_attention_1pass_e7_RM" in out and "pe1d" in out and "25,335" in out


def test_a_timeout_is_reported_not_guessed(tmp_path):
    _write(tmp_path, ("_pe.v",))
    (s,) = rtl_stats(str(tmp_path), timeout=0.01)
    assert s.cells is None and s.cells_per_pe is None


def test_bad_arguments_refused(tmp_path, capsys):
    assert main(["rtl-stats", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["rtl-stats", str(tmp_path)]) == 2
    assert "no .v files" in capsys.readouterr().err
    assert main(["rtl-stats", str(tmp_path), "--array", "0x4"]) == 2
    assert "--array" in capsys.readouterr().err
