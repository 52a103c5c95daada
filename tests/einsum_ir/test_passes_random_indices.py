"""The pass analysis on reads at positions computed from m, in designs
nobody wrote by hand (benchmarks/pass_fuzz.py; this is its fixed-seed
sample): random cascades over M (whole or in tiles) whose Einsums read
inputs and each other at `m - 1`, `m // 2`, `(m + 1) // 2`, `M - 1 - m`,
`m * 2`, ..., with reductions over M read back, each against the
traversal simulator at two shapes. The analysis never says fewer passes
than a traversal needs, never calls streamable what is not, and is exact
on all but a few (where it cannot prove a position never after m's tile,
it holds: one pass more)."""
import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pass_fuzz.py"
_spec = importlib.util.spec_from_file_location("pass_fuzz", SCRIPT)
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


def test_the_sample_is_varied():
    texts = [fuzz.random_cascade(s)[0] for s in range(80)]
    assert len(set(texts)) >= 76
    assert sum("partition" in t for t in texts) in range(25, 56)
    for ix in fuzz.INDICES:
        assert sum(f"[{ix}, p]" in t for t in texts) >= 3, ix


@pytest.mark.parametrize("block", range(4))
def test_never_fewer_passes_than_a_traversal_needs(block):
    outcomes = [fuzz.compare(s) for s in range(block * 20, block * 20 + 20)]
    assert "wrong" not in outcomes
    assert outcomes.count("exact") >= 17, outcomes


def test_the_script_reports_a_wrong_answer(monkeypatch, capsys):
    """A pass analysis that says one pass fewer is caught, with its cascade."""
    real = fuzz.passes
    monkeypatch.setattr(fuzz, "passes", lambda c, r: type("R", (), {"passes": max(0, (real(c, r).passes or 1) - 1)}))
    assert fuzz.main(["--n", "5", "--seed", "0"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\bwrong [1-5]\b", out.splitlines()[0]) and "\nwrong at seed " in out
