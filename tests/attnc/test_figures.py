"""The figures of `attnc map --plot` (roofline) and `attnc simulate --plot`
(timeline): files written, the data file's numbers equal to the model's,
the roofs where the GPU preset puts them, the critical path marked where a
hand derivation puts it."""
import csv
import json
from collections import defaultdict

import pytest

import einsum_ir as ei
import hw_models as hw
from attnc.cli import main
from attnc.gpu import distinct, map_design
from mappers.mapping import load_mapping
from simulator.analytical import simulate

PNG = b"\x89PNG"
GPU_SHAPE = dict(B=1, H=2, P=256, E=64, F=64)
SPATIAL_SHAPE = dict(B=1, H=1, M=512, P=512, E=64, F=64)


def _shape_args(shapes: dict) -> list:
    return ["--shape", *[f"{k}={v}" for k, v in shapes.items()]]


def test_roofline_file_and_data_equal_the_model(tmp_path, capsys):
    plot = tmp_path / "roof.png"
    assert main(["map", "cab-self-causal", *_shape_args(GPU_SHAPE), "--plot", str(plot)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert plot.read_bytes()[:4] == PNG
    data = json.loads((tmp_path / "roof.json").read_text())
    r = map_design("cab-self-causal", "h100", GPU_SHAPE)
    gpu = hw.load_gpu("h100")
    assert data["roofs"]["compute_flops_per_s"] == gpu.tensor_peak("bf16")
    assert data["roofs"]["hbm_bytes_per_s"] == gpu.hbm_bytes_per_s
    want = [p for p, _, _ in distinct(r.best)] + [r.unfused, r.linear]
    assert [p["kind"] for p in data["points"]] == ["fused"] * (len(want) - 2) + ["unfused", "other-algorithm"]
    for got, p in zip(data["points"], want):
        assert got["time_s"] == pytest.approx(p.time_s, rel=1e-12)
        assert got["flops"] == p.flops and got["hbm_bytes"] == p.hbm_bytes
        assert got["intensity_flop_per_byte"] == pytest.approx(p.flops / p.hbm_bytes)
        # every prediction under both roofs (what a roofline asserts)
        assert got["flops_per_s"] <= data["roofs"]["compute_flops_per_s"] * (1 + 1e-9)
        assert got["hbm_bytes"] / got["time_s"] <= data["roofs"]["hbm_bytes_per_s"] * (1 + 1e-9)
    assert [p["best"] for p in data["points"]].count(True) == 1 and data["points"][0]["best"]
    assert "not this design" in data["points"][-1]["label"]


def _bars(path) -> list[dict]:
    rows = list(csv.DictReader(open(path)))
    for b in rows:
        b["start"], b["end"], b["critical"] = float(b["start_cycles"]), float(b["end_cycles"]), b["critical"] == "1"
    return rows


def test_timeline_critical_path_by_hand(tmp_path, capsys):
    """fusemax-binding at M = P = 512 (tests/simulator/test_analytical.py):
    per epoch max(BQK + LM, RD + RNV + AV) + RM + max(SLN + SLD, PRM + SPD)
    + max(SLNV, SPNV) = max(64 + 1, 1 + 64 + 32) + 1 + max(8, 8) + max(64, 64)
    = 170 cycles; on the path: the 1D array's RD, RNV, AV, then RM, then both
    tied branches; not BQK or LM."""
    plot = tmp_path / "t.png"
    assert main(["simulate", "--mapping", "fusemax-binding", *_shape_args(SPATIAL_SHAPE), "--plot", str(plot)]) == 0
    capsys.readouterr()
    assert plot.read_bytes()[:4] == PNG
    bars = _bars(tmp_path / "t.csv")
    first = [b for b in bars if b["epoch"] == "0"]
    critical = {b["einsum"] for b in first if b["critical"]}
    assert critical == {"RD", "RNV", "AV", "RM", "SLN", "SLD", "PRM", "SPD", "SLNV", "SPNV"}
    assert max(b["end"] for b in first) == 170
    m, fm = load_mapping("fusemax-binding"), hw.load_spatial("fusemax")
    r = simulate(ei.load(m.cascade), m, fm, SPATIAL_SHAPE)
    busy = {e.name: e.busy_cycles for e in r.einsums}
    for b in first:                                    # each Einsum its busy cycles / epochs, on its unit
        if b["unit"] != "dram":
            assert b["end"] - b["start"] == pytest.approx(busy[b["einsum"]] / r.epochs)
            assert b["unit"] == next(e.unit for e in r.einsums if e.name == b["einsum"])
    _no_overlap_per_unit(bars)


def _no_overlap_per_unit(bars) -> None:
    rows = defaultdict(list)
    for b in bars:
        rows[b["unit"]].append((b["start"], b["end"]))
    for spans in rows.values():
        spans.sort()
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("mapping", ["unfused", "flat"])
def test_timeline_phases_and_overlapped_end_at_the_latency(mapping, tmp_path):
    """The critical rows of a phases or overlapped schedule add up to the
    model's latency; every unit's bars add up to its busy time."""
    from attnc.figures import plot_timeline
    m = load_mapping(mapping)
    spatial = hw.load_spatial(m.hardware)
    r = simulate(ei.load(m.cascade), m, spatial, SPATIAL_SHAPE)
    plot_timeline(m, spatial, r, str(tmp_path / "t.png"))
    bars = _bars(tmp_path / "t.csv")
    ends = defaultdict(float)
    for b in bars:
        if b["critical"]:
            ends[b["epoch"]] = max(ends[b["epoch"]], b["end"])
    assert max(ends.values()) == pytest.approx(r.latency_cycles)
    for u, want in r.unit_busy_cycles.items():
        assert sum(b["end"] - b["start"] for b in bars if b["unit"] == u) == pytest.approx(want)
    _no_overlap_per_unit(bars)


def test_plot_refusals(tmp_path, capsys):
    shape = _shape_args(SPATIAL_SHAPE)
    assert main(["simulate", "--mapping", "flat", *shape, "--plot", str(tmp_path / "t.txt")]) == 2
    assert "must end in .png, .pdf or .svg" in capsys.readouterr().err
    (tmp_path / "t.csv").write_text("")
    assert main(["simulate", "--mapping", "flat", *shape, "--plot", str(tmp_path / "t.png")]) == 2
    assert "t.csv exists; pass --force" in capsys.readouterr().err
    assert main(["map", "attention-1pass", "--hw", "fusemax", *shape, "--plot", str(tmp_path / "r.png")]) == 2
    assert "spatial array" in capsys.readouterr().err
