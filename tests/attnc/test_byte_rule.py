"""One byte-width rule for every command (issue 19): a tensor in DRAM takes
its declared element type, as `attnc analyze` counts it; on a spatial
array's chip it takes the hardware's word. Checked against hand formulas
and against the same design declared at the hardware's width."""
import re

import pytest

import einsum_ir as ei
import hw_models as hw
from attnc.cli import main
from einsum_ir.analysis import analyze, evaluate
from einsum_ir.ops import DTYPE_BYTES
from mappers.mapping import load_mapping
from simulator.analytical import formulas, simulate

FUSEMAX = hw.load_spatial("fusemax")          # a 2-byte word
BINDING = load_mapping("fusemax-binding")
SHAPES = dict(B=1, H=2, M=512, P=512, E=64, F=32)
TYPES = {"Q": "f32", "K": "f16", "V": "bf16", "AV": "f32"}


def _retyped(types: dict, name: str) -> ei.Cascade:
    """attention-1pass with the element types of some tensors changed."""
    text = str(ei.library.load("attention-1pass"))
    for t, d in types.items():
        text, n = re.subn(rf"^((?:input|output|tensor) {t}\[[^\]]*\]): \w+$", rf"\1: {d}", text, flags=re.M)
        assert n == 1, t
    return ei.parse(text, name=name)


def test_dram_bytes_take_the_declared_type_chip_bytes_the_word():
    mixed = simulate(_retyped(TYPES, "mixed"), BINDING, FUSEMAX, SHAPES)
    base = simulate(_retyped({t: "f16" for t in TYPES}, "base"), BINDING, FUSEMAX, SHAPES)
    got, ref = {t.name: t for t in mixed.tensors}, {t.name: t for t in base.tensors}
    for name, d in TYPES.items():
        scale = DTYPE_BYTES[d] / FUSEMAX.word_bytes
        assert got[name].dram_read_bytes == ref[name].dram_read_bytes * scale
        assert got[name].dram_write_bytes == ref[name].dram_write_bytes * scale
        assert got[name].buffer_read_bytes == ref[name].buffer_read_bytes      # on chip: the word
        assert got[name].buffer_bytes == ref[name].buffer_bytes
    # hand formulas (Q read once, AV written once on FuseMax at P2 = 1)
    B, H, P, E, F = (SHAPES[k] for k in "BHPEF")
    assert got["Q"].dram_read_bytes == B * H * E * P * 4
    assert got["AV"].dram_write_bytes == B * H * F * P * 4
    assert mixed.dram_bytes == sum(t.dram_read_bytes + t.dram_write_bytes for t in mixed.tensors)
    # never below what analyze calls compulsory (at 2 bytes a word, f32 Q and AV were counted at half of it)
    floor = evaluate(analyze(_retyped(TYPES, "mixed")).traffic["total_bytes"], dict(mixed.shapes))
    assert mixed.dram_bytes >= floor


def test_simulate_and_analyze_count_an_f32_tensor_alike():
    """The issue's case: an f32 design's Q and AV are 4 bytes a word in
    `simulate --formulas`, in `simulate` and in `analyze` alike."""
    c = _retyped({t: "f32" for t in TYPES}, "all-f32")
    r = simulate(c, BINDING, FUSEMAX, SHAPES)
    f = formulas(c, BINDING.for_shapes(r.shapes), FUSEMAX)
    sizes = {k: evaluate(v, dict(r.shapes)) for k, v in analyze(c).sizes.items()}
    by_name = {t.name: t for t in r.tensors}
    env = dict(r.shapes, **r.factors)
    assert evaluate(f["dram_bytes[Q]"], env) == by_name["Q"].dram_read_bytes == sizes["Q"]
    assert evaluate(f["dram_bytes[AV]"], env) == by_name["AV"].dram_write_bytes == sizes["AV"]
    assert evaluate(f["dram_bytes"], env) == pytest.approx(r.dram_bytes)


def test_both_outputs_state_the_rule(tmp_path, capsys):
    path = tmp_path / "G_f32.ein"
    path.write_text(str(_retyped({t: "f32" for t in TYPES}, "all-f32")))
    shape = ["--shape", "B=1", "H=1", "E=64", "F=64", "M=512", "P=512"]
    assert main(["simulate", str(path), "--mapping", "fusemax-binding", "--formulas", *shape]) == 0
    out = capsys.readouterr().out
    assert "in DRAM at each tensor's declared type (Q, K, V, AV: f32, 4 B)" in out
    assert "on the chip at fusemax's 2-byte word" in out
    assert "dram_bytes[Q] = 4*B*E*H*P" in out
    assert main(["analyze", str(path), *shape, "M0=256"]) == 0
    out = capsys.readouterr().out
    assert "bytes at each tensor's declared type: Q, K, V, AV: f32, 4 B" in out


def test_formulas_with_json_is_one_json_document(capsys):
    """`simulate --formulas --json` used to print the formulas before the
    JSON (stdout no longer parsed); they go inside it, with the byte rule."""
    import json
    args = ["simulate", "--mapping", "fusemax-binding", "--formulas", "--json",
            "--shape", "B=1", "H=1", "E=64", "F=64", "M=512", "P=512"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["formulas"]["dram_bytes[Q]"] == "2*B*E*H*P"
    assert "declared type" in data["bytes_rule"]
