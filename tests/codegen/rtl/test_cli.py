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
