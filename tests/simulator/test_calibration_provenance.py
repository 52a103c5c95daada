"""A calibrated preset records the command and data that fitted it, and
re-running that command reproduces its constants (issue 19: re-running
`attnc calibrate` on the published data gave 0.589, the preset said 0.5636)."""
import hashlib
import re
import shlex
from pathlib import Path

import pytest

from attnc.cli import main
from hw_models import load_gpu
from simulator.calibrate import provenance, write_preset

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ROOT / "hw_models" / "presets" / "gpu"
DATA = "benchmarks/published/h100_attention.csv"


def rerun(cmd: str, out: Path, monkeypatch) -> dict:
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(cmd)[1:] + ["--out", str(out), "--force"]) == 0
    return dict(load_gpu(str(out)).efficiency)


def test_a_calibrated_preset_is_reproduced_by_its_recorded_command(tmp_path, monkeypatch, capsys):
    first = tmp_path / "first.yaml"
    monkeypatch.chdir(ROOT)
    assert main(["calibrate", DATA, "--kernel", "flash-attention-2", "--fit", "fused_tensor",
                 "--start", "fused_tensor=0.5", "--out", str(first)]) == 0
    record = first.read_text().splitlines()[0]
    cmd = provenance(first)
    assert cmd.startswith(f"attnc calibrate {DATA} --hw h100 --fit fused_tensor --start fused_tensor=0.5")
    assert hashlib.sha256((ROOT / DATA).read_bytes()).hexdigest()[:16] in record     # the data named is the data used
    again = rerun(cmd, tmp_path / "again.yaml", monkeypatch)
    assert again == dict(load_gpu(str(first)).efficiency)
    assert again["fused_tensor"] != 0.5                                              # it did fit
    assert provenance(tmp_path / "again.yaml") == cmd


def test_shipped_presets_with_a_record_are_reproduced(tmp_path, monkeypatch):
    """A shipped preset written by `attnc calibrate` carries its command; re-running it gives its
    constants. (The shipped GPU presets are fitted across GPUs by benchmarks/gpu_validate.py, whose
    header says so; a preset re-calibrated on measured runs must keep its record reproducible.)"""
    recorded = [p for p in sorted(PRESETS.glob("*.yaml")) if provenance(p)]
    for p in recorded:
        assert rerun(provenance(p), tmp_path / p.name, monkeypatch) == dict(load_gpu(str(p)).efficiency)
    unrecorded = [p for p in sorted(PRESETS.glob("*.yaml")) if p not in recorded]
    for p in unrecorded:
        assert "gpu_validate.py" in p.read_text().split("\nname:")[0], f"{p.name} says nowhere where its constants come from"


def test_write_preset_replaces_an_earlier_record(tmp_path):
    src = tmp_path / "a.yaml"
    src.write_text("# calibration: `attnc calibrate old.csv --hw h100`\n" + (PRESETS / "h100.yaml").read_text())
    gpu = load_gpu(str(src)).with_efficiency(fused_tensor=0.5)
    write_preset(src, gpu, tmp_path / "b.yaml", "`attnc calibrate x.csv --hw a.yaml` on 1 point")
    text = (tmp_path / "b.yaml").read_text()
    assert len(re.findall("^# calibration: ", text, re.M)) == 1
    assert provenance(tmp_path / "b.yaml") == "attnc calibrate x.csv --hw a.yaml"
    assert load_gpu(str(tmp_path / "b.yaml")).efficiency["fused_tensor"] == 0.5


def test_start_must_name_a_fitted_constant(tmp_path, capsys):
    code = main(["calibrate", str(ROOT / DATA), "--out", str(tmp_path / "x.yaml"), "--fit", "fused_tensor",
                 "--start", "latency_ns=5"])
    assert code == 2 and "latency_ns" in capsys.readouterr().err


def test_write_preset_keeps_a_comment_after_a_value(tmp_path):
    """A value with a comment after it (h100's derived mma) is replaced and
    the comment kept, still valid YAML."""
    from hw_models.gpu import load_gpu
    from simulator.calibrate import write_preset
    src = Path(__file__).resolve().parents[2] / "hw_models" / "presets" / "gpu" / "h100.yaml"
    assert "  mma: 0.4386                     # not fitted" in src.read_text()
    out = tmp_path / "h.yaml"
    write_preset(src, load_gpu("h100").with_efficiency(mma=0.5, fused_tensor=0.5), out, "test")
    text = out.read_text()
    assert "  mma: 0.5                     # not fitted" in text and "  fused_tensor: 0.5" in text
    g = load_gpu(out)
    assert g.efficiency["mma"] == 0.5 and g.efficiency["fused_tensor"] == 0.5
