"""`attnc compile --target rtl`: files written with their headers; a design
with an operator that has no hardware form refused, naming it."""
from __future__ import annotations

from attnc.cli import main


def test_compile_rtl_writes_one_module_per_file(tmp_path, capsys):
    out = tmp_path / "rtl"
    assert main(["compile", "attention-1pass", "--target", "rtl", "--hw", "fusemax", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert "attnc_attention_1pass_pe_array.v" in files and any(f.endswith("_SLN.v") for f in files)
    for p in out.iterdir():
        text = p.read_text()
        assert text.count("\nmodule ") + text.startswith("module ") == 1
        assert "Design: attention-1pass" in text and "Mapping: binding" in text
    assert main(["compile", "attention-1pass", "--target", "rtl", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_compile_rtl_refuses_an_operator_without_hardware(tmp_path, capsys):
    assert main(["compile", "power-attention", "--target", "rtl", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "Einsum QK" in err and "log2" in err and "no hardware form" in err


def test_compile_rtl_dataflow_and_the_top(tmp_path, capsys):
    """--dataflow ws writes the weight-stationary array; --shape with a
    mapping small enough writes the controller and the top, whose header
    gives the schedule's cycles, the same as the Python schedule's."""
    from codegen.rtl import top
    from einsum_ir.execute import random_inputs
    from einsum_ir.library import load
    from hw_models import load_spatial
    from mappers.mapping import parse_mapping

    from .test_tile import ROOT
    text = (ROOT / "mappers/mappings/fusemax-binding.yaml").read_text()
    mfile = tmp_path / "small.yaml"
    mfile.write_text(text.replace("M0: 256", "M0: 2").replace("P0: 256", "P0: 2"))
    out = tmp_path / "rtl"
    shapes = ["B=1", "H=1", "E=2", "F=2", "M=4", "P=4"]
    assert main(["compile", "attention-1pass", "--target", "rtl", "--hw", "fusemax", "--dataflow", "ws",
                 "--mapping", str(mfile), "--out", str(out), "--shape", *shapes]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"attnc_attention_1pass_pe_array_ws.v", "attnc_attention_1pass_ctrl.v",
            "attnc_attention_1pass_top.v"} <= files and "attnc_attention_1pass_pe_array.v" not in files
    c, sh = load("attention-1pass"), dict(B=1, H=1, E=2, F=2, M=4, P=4, M0=2)
    m = parse_mapping(mfile.read_text())
    t = top.generate_top(c, random_inputs(c, sh, seed=1), sh, None, load_spatial("fusemax"), m, dataflow="ws")
    text = (out / "attnc_attention_1pass_top.v").read_text()
    assert f"{t.schedule.cycles} edges from start to done" in text and "Mapping: binding" in text
    assert "top attnc_attention_1pass_top" in capsys.readouterr().out
    assert main(["compile", "attention-1pass", "--target", "rtl", "--mapping", str(mfile), "--out",
                 str(tmp_path / "os"), "--shape", *shapes]) == 0          # output-stationary: the top uses the array
    text = (tmp_path / "os" / "attnc_attention_1pass_top.v").read_text()
    assert "attnc_attention_1pass_pe_array #(.R(2), .C(2))" in text
    assert "attnc_attention_1pass_pe_array.v" in {p.name for p in (tmp_path / "os").iterdir()}


def test_dataflow_goes_with_the_rtl_target(tmp_path, capsys):
    assert main(["compile", "attention-1pass", "--dataflow", "ws", "--shape", "B=1", "H=1", "E=4", "F=4",
                 "M=8", "P=8", "--out", str(tmp_path / "k.py")]) == 2
    assert "--dataflow" in capsys.readouterr().err
