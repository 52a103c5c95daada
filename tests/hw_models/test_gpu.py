"""GPU presets load with datasheet and measured values; bad files get
errors at their line."""
import re

import pytest

from hw_models import HardwareError, gpu_names, load_gpu, parse_gpu
from hw_models.gpu import GPU_PRESETS


def test_presets_carry_the_reference_figures():
    assert gpu_names() == ["a100", "a100-pcie", "h100", "h200"]
    h100 = load_gpu("h100")
    assert (h100.sms, h100.l2_bytes, h100.smem_per_sm) == (132, 50e6, 228 * 1024)
    assert h100.tensor_peak("bf16") == 989e12 and h100.hbm_bytes_per_s == 3.35e12
    assert h100.bandwidth == 3.0e12                  # measured, preferred to the datasheet
    assert h100.sfu_ops_per_s == pytest.approx(16 * 132 * 1.98e9)
    assert load_gpu("a100").bandwidth == pytest.approx(2.04e12 * 0.9)   # no measurement: datasheet x efficiency
    assert load_gpu("h200").hbm_bytes_per_s == 4.8e12


def _with(change: str, old: str) -> str:
    """The preset's text with `old` (a literal, or `re:` and a pattern) replaced once."""
    text = (GPU_PRESETS / "h100.yaml").read_text()
    pattern = old[3:] if old.startswith("re:") else re.escape(old)
    out, n = re.subn(pattern, change, text, count=1)
    assert n == 1, old
    return out


@pytest.mark.parametrize("change, old, message", [
    ("sms: -4", "sms: 132", "sms: must be positive"),
    ("  fused_tensor: 1.7", r"re:  fused_tensor: [0-9.]+", "fused_tensor is a fraction"),   # fitted values:
    ("  ws_overlap: 1.5", r"re:  ws_overlap: [0-9.]+", "ws_overlap is a fraction"),         # whatever they are now
    ("smem_per_block: 300 KiB", "smem_per_block: 227 KiB", "more than the SM has"),
    ("smem_per_sn: 228 KiB", "smem_per_sm: 228 KiB", "did you mean 'smem_per_sm'"),
    ("clock: fast", "clock: 1.98 GHz", "expected a number"),
])
def test_invalid_descriptions(change, old, message):
    with pytest.raises(HardwareError, match=message) as e:
        parse_gpu(_with(change, old), "my.yaml")
    assert "my.yaml:" in e.value.render()


def test_unknown_preset_suggests():
    with pytest.raises(HardwareError, match="did you mean 'h100'"):
        load_gpu("h10")
    with pytest.raises(HardwareError, match="no tensor-core rate for f8"):
        load_gpu("a100").tensor_peak("f8")
