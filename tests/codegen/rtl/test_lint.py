"""`verilator --lint-only -Wall` (with the waivers of codegen/rtl/lint.vlt)
on every file generated for the designs the unit tests use, both array
dataflows, several formats and array sizes: no warning at all."""
from __future__ import annotations

import pytest

from codegen.rtl import generate
from codegen.rtl.fixed import Fmt
from codegen.rtl.lint import CONFIG, have_verilator, lint
from einsum_ir import parse
from einsum_ir.library import load

from .test_units import CUSTOM

pytestmark = pytest.mark.skipif(not have_verilator(), reason="verilator not installed (scripts/setup.sh installs it)")

CASES = [("attention-1pass", "os", Fmt(32, 16), (4, 4)), ("softcap", "ws", Fmt(24, 10), (3, 5)),
         ("alibi", "os", Fmt(16, 8), (1, 3)), ("sliding-window", "ws", Fmt(32, 16), (2, 1)),
         ("gated-attention", "os", Fmt(20, 8), (2, 2)), ("test-only", "ws", Fmt(32, 16), (4, 2))]


@pytest.mark.parametrize("name, dataflow, fmt, size", CASES, ids=[c[0] for c in CASES])
def test_generated_files_lint_clean(name, dataflow, fmt, size):
    c = parse(CUSTOM, name="test-only") if name == "test-only" else load(name)
    d = generate(c, fmt=fmt, rows=size[0], cols=size[1], dataflow=dataflow)
    found = lint(d.files)
    assert set(found) == set(d.files)
    bad = {f: w for f, w in found.items() if w}
    assert not bad, bad


def test_lint_reports_a_real_warning():
    """The check can fail: a width mismatch the generator never writes is reported."""
    text = "module attnc_bad (input wire [7:0] a, output wire [3:0] y);\n  assign y = a;\nendmodule\n"
    found = lint({"attnc_bad.v": text})
    assert any("WIDTH" in w for w in found["attnc_bad.v"])


def test_every_waiver_has_a_reason():
    lines = CONFIG.read_text().splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("lint_off"):
            assert lines[i - 1].startswith("//"), f"lint.vlt line {i + 1}: a waiver without its reason above it"


def test_the_top_lints_clean():
    """The top (memories, lanes, micro-programs) with the mapping's schedule and without one."""
    from codegen.rtl import top
    from einsum_ir.execute import random_inputs

    from .test_top import binding_top
    c = parse(CUSTOM, name="test-only")
    shapes = dict(B=1, H=1, E=2, F=2, M=4, P=3, W=1)
    for t in (binding_top(2, 2, 4, 2, 2), top.generate_top(c, random_inputs(c, shapes, seed=2), shapes, lanes=2)):
        found = lint(t.files, tops=[f"{t.name}.v"])
        assert found == {f"{t.name}.v": []}, found
