"""`attnc sweep` (attnc/sweep.py): a grid through a Dask LocalCluster and a
local process pool gives the same rows, each row equal to the simulator
called directly; resumable; refusals recorded with their reason."""
from __future__ import annotations

import csv
import random

import pytest

import einsum_ir as ei
from attnc.sweep import FIELDS, TIMING, Options, Point, SweepError, grid, hardware, parse_lengths, run, \
    run_point
from mappers.mapping import load_mapping
from simulator.analytical import simulate

pytest.importorskip("distributed")


def _rows(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


def _cheap_grid():
    """512 points that simulate the hand mapping (a few ms each): workloads x lengths x arrays x buffers x bandwidths."""
    return grid(["attention-1pass"], ["fusemax"], parse_lengths("256..32K:x2"), arrays=(32, 64, 128, 256),
                buffers=(8 << 20, 16 << 20), bandwidths=(200.0, 400.0), mapping="fusemax-binding")


def test_dask_and_local_pool_give_identical_rows(tmp_path):
    points = _cheap_grid()
    assert len(points) >= 500
    a, b = tmp_path / "dask.csv", tmp_path / "pool.csv"
    ra = run(points, a, dask=True)                   # LocalCluster in this process (no network)
    rb = run(points, b, jobs=2)                      # two spawned worker processes
    assert ra["ran"] == rb["ran"] == len(points)
    rows_a, rows_b = _rows(a), _rows(b)
    assert rows_a == rows_b
    assert [tuple(r[f] for f in FIELDS[:9]) for r in rows_a] == [p.key() for p in points]   # grid order
    # a sample of rows against the simulator called directly (its own hardware built here)
    c, m = ei.load("attention-1pass"), load_mapping("fusemax-binding")
    for i in random.Random(0).sample(range(len(points)), 4):
        p, row = points[i], rows_a[i]
        H, E = {"BERT": (12, 64), "TrXL": (16, 64), "T5": (8, 64), "XLM": (16, 128)}[p.workload]
        rep = simulate(c, m, hardware(p), dict(B=64, H=H, E=E, F=E, M=p.length, P=p.length))
        assert row["status"] == "ok" and float(row["latency_cycles"]) == rep.latency_cycles
    # buffer and bandwidth really change the hardware
    hw = hardware(points[0])
    assert hw.buffer.capacity_bytes == points[0].buffer_bytes
    assert hw.dram.bandwidth_bytes_per_s == points[0].bandwidth_gib_s * 2 ** 30
    assert all(u.shape[0] == points[0].array for u in hw.units.values())


def test_resumes_without_recomputing(tmp_path):
    points = grid(["attention-1pass"], ["fusemax"], parse_lengths("1K..16K"), workloads=("BERT", "T5"),
                  mapping="fusemax-binding")
    out = tmp_path / "s.csv"
    first = run(points[:3], out)
    assert first == {"ran": 3, "skipped": 0, "refused": 0}
    again = run(points, out)
    assert again["ran"] == len(points) - 3 and again["skipped"] == 3
    full = tmp_path / "full.csv"
    run(points, full)
    assert _rows(out) == _rows(full)


def test_a_refused_point_is_a_row_with_its_reason(tmp_path):
    rows = run_point(Point("softcap", "fusemax", "BERT", 1024))
    assert rows["status"] == "refused" and "Einsum S" in rows["error"] and "tanh" in rows["error"]
    assert rows["latency_cycles"] == ""


def test_a_search_point_is_the_mappers_answer():
    p = Point("attention-1pass", "fusemax", "T5", 256, "latency", array=64)
    row = run_point(p, Options(budget=5_000))
    from mappers.spatial_search import search
    f = search(ei.load("attention-1pass"), hardware(p), dict(B=64, H=8, E=64, F=64, M=256, P=256),
               budget=5_000)
    assert float(row["latency_cycles"]) == f.report.latency_cycles
    assert (int(row["k0"]), int(row["q0"]), int(row["q1"])) == (f.candidate.k0, f.candidate.q0, f.candidate.q1)


@pytest.mark.parametrize("text, want", [("1K..1M", (1024, 4096, 16384, 65536, 262144, 1048576)),
                                        ("1K..8K:x2", (1024, 2048, 4096, 8192)), ("4K,1K,4K", (4096, 1024))])
def test_lengths(text, want):
    assert parse_lengths(text) == want


@pytest.mark.parametrize("text", ["1K..x", "8K..1K", "1K..4K:x1", "0", ""])
def test_bad_lengths_are_refused_by_name(text):
    with pytest.raises(SweepError, match="--lengths"):
        parse_lengths(text)


def test_a_csv_of_other_columns_is_refused(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(SweepError, match="not a sweep's"):
        run(grid(["attention-1pass"], ["fusemax"], (1024,), ("BERT",), mapping="fusemax-binding"), out)


def test_a_spec_file_through_the_command_line(tmp_path, capsys):
    from attnc.cli import main
    spec = tmp_path / "s.yaml"
    spec.write_text("designs: [attention-1pass]\nhw: fusemax\nlengths: [1K, 4K]\nworkloads: [T5]\n"
                    "buffers: [4M, 16M]\nmapping: fusemax-binding\n")
    out = tmp_path / "s.csv"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    rows = _rows(out)
    assert [(r["length"], r["buffer_bytes"]) for r in rows] == [("1024", str(4 << 20)), ("4096", str(4 << 20)),
                                                                 ("1024", str(16 << 20)), ("4096", str(16 << 20))]
    assert "4 points: 4 run" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    assert "0 run, 4 already in" in capsys.readouterr().out


def test_a_spec_with_an_unknown_key_is_refused_at_its_line(tmp_path):
    from attnc.sweep import load_spec
    from hw_models.schema import HardwareError
    spec = tmp_path / "bad.yaml"
    spec.write_text("designs: [attention-1pass]\nhw: fusemax\nlengths: 1K\narray: [16]\n")
    with pytest.raises(HardwareError, match="unknown key 'array'.*did you mean 'arrays'") as e:
        load_spec(str(spec))
    assert e.value.line == 4


def test_area_follows_the_array_and_buffer_of_the_point():
    """Fig. 12's x axis: the area model's PEs (every unit's array at the
    point's side) plus the buffer scaled to the point's capacity."""
    from hw_models import load_spatial
    base = load_spatial("fusemax")
    for side, buf in ((16, 0), (64, 1 << 20)):
        row = run_point(Point("attention-1pass", "fusemax", "BERT", 1024, array=side, buffer_bytes=buf,
                              mapping="fusemax-binding"))
        pes = sum(side ** len(u.shape) * u.area_um2_per_pe for u in base.units.values())
        buffer = base.buffer.area_um2 * (buf / base.buffer.capacity_bytes if buf else 1)
        assert float(row["area_mm2"]) == pytest.approx((pes + buffer) / 1e6, rel=1e-12)
    refused = run_point(Point("softcap", "fusemax", "BERT", 1024))
    assert float(refused["area_mm2"]) == pytest.approx(base.area_um2 / 1e6)
