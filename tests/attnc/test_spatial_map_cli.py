"""`attnc map` on a spatial preset writes a mapping file that `attnc
simulate` reads to the same latency; `simulate` without --mapping maps
first; a design no unit can run is refused naming the Einsum."""
from __future__ import annotations

import re

from attnc.cli import main

SHAPE = ["--shape", "B=2", "H=2", "E=64", "F=64", "M=2048", "P=2048"]


def _latency(text: str) -> str:
    return re.search(r"latency\s+(\S+ \S+)", text).group(1)


def test_map_writes_a_file_simulate_reads(tmp_path, capsys):
    out = tmp_path / "best.yaml"
    assert main(["map", "attention-1pass", "--hw", "fusemax", "--budget", "20000", "--out", str(out)] + SHAPE) == 0
    mapped = capsys.readouterr().out
    assert "Distance to the bounds" in mapped and out.exists()
    assert main(["simulate", "attention-1pass", "--mapping", str(out), "--hw", "fusemax"] + SHAPE) == 0
    assert _latency(capsys.readouterr().out) == _latency(mapped)


def test_simulate_without_mapping_maps_first(capsys):
    assert main(["simulate", "attention-3pass", "--hw", "flat"] + SHAPE) == 0
    assert "latency" in capsys.readouterr().out


def test_unrunnable_design_is_refused_by_einsum_and_operation(capsys):
    assert main(["map", "softcap", "--hw", "fusemax"] + SHAPE) == 2
    err = capsys.readouterr().err
    assert "Einsum S" in err and "tanh" in err
