"""Hostile hardware and mapping YAML (issue 17, items 3 and 4): alias bombs,
values that contain themselves, deep nesting, huge or non-UTF-8 files and
numbers that are not finite or not plausible are errors at their place,
found in bounded time; nothing but plain data is ever constructed."""
from __future__ import annotations

import time

import pytest

from hw_models import load_gpu, load_spatial
from hw_models.gpu import GPU_PRESETS, parse_gpu
from hw_models.schema import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, HardwareError, load

H100 = (GPU_PRESETS / "h100.yaml").read_text()


def with_value(text: str, key: str, value: str) -> str:
    lines = text.split("\n")
    i = next(i for i, ln in enumerate(lines) if ln.startswith(f"{key}:"))
    lines[i] = f"{key}: {value}"
    return "\n".join(lines)


def line_of(text: str, key: str) -> int:
    return next(i for i, ln in enumerate(text.split("\n"), 1) if ln.startswith(f"{key}:"))


def alias_bomb(levels: int) -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    names = "abcdefghijklmnop"
    for p, c in zip(names, names[1:levels]):
        lines.append(f"{c}: &{c} [{', '.join('*' + p for _ in range(9))}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly():
    t0 = time.perf_counter()
    with pytest.raises(HardwareError, match=f"more than {MAX_YAML_NODES} values"):
        load(alias_bomb(9), "bomb.yaml")           # 9**9 = 387 million values once expanded
    assert time.perf_counter() - t0 < 5


def test_a_few_aliases_are_still_allowed():
    node = load("base: &b {x: 1, y: 2}\nuse: *b\n", "ok.yaml")
    assert node.value["use"].value["y"].value == 2


@pytest.mark.parametrize("text", ["&a [*a]\n", "a: &x {b: *x}\n", "a: &x [1, [2, *x]]\n"])
def test_a_value_that_contains_itself_is_located(text):
    with pytest.raises(HardwareError, match="contains itself") as e:
        load(text, "self.yaml")
    assert e.value.loc.file == "self.yaml" and e.value.loc.line == 1


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 5000])
def test_deep_nesting_is_refused(depth):
    with pytest.raises(HardwareError, match="nested too deeply"):
        load("[" * depth + "]" * depth + "\n", "deep.yaml")
    keys = min(depth, 900)
    block = "".join("  " * i + f"k{i}:\n" for i in range(keys)) + "  " * keys + "v\n"
    with pytest.raises(HardwareError, match="nested too deeply|indented too deeply"):
        load(block, "deep.yaml")
    t0 = time.perf_counter()
    with pytest.raises(HardwareError, match="indented too deeply"):
        load("- " * 2000 + "x\n", "dashes.yaml")          # compact nested sequences
    assert time.perf_counter() - t0 < 1


def test_nesting_at_the_limit_is_fine():
    d = MAX_YAML_DEPTH
    assert load("[" * d + "]" * d + "\n", "ok.yaml") is not None


def test_file_size_is_bounded(tmp_path):
    with pytest.raises(HardwareError, match="larger than"):
        load_gpu("/dev/zero")
    f = tmp_path / "big.yaml"
    f.write_text("x: " + "y" * MAX_YAML_BYTES + "\n")
    with pytest.raises(HardwareError, match="larger than"):
        load_gpu(f)


def test_non_utf8_is_located(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_bytes(H100.encode()[:40] + b"\xff" + H100.encode()[40:])
    with pytest.raises(HardwareError, match="not valid UTF-8") as e:
        load_gpu(f)
    assert e.value.loc.line == H100[:40].count("\n") + 1


def test_python_tags_construct_nothing(tmp_path):
    marker = tmp_path / "pwned"
    text = with_value(H100, "name", f"!!python/object/apply:os.system ['touch {marker}']")
    with pytest.raises(HardwareError) as e:
        parse_gpu(text, "tag.yaml")
    assert not marker.exists() and e.value.loc.line == line_of(text, "name")


@pytest.mark.parametrize("value, words", [
    (".nan", "finite"), (".inf", "finite"), ("-.inf", "finite"), ("1e999 GHz", "finite"),
    ("1e-300 MHz", "not a plausible value"), ("1e300", "not a plausible value"), ("-1 GHz", "positive"),
    ("0", "positive"), ("abc", "expected a number"), ("[]", "expected a number")])
def test_clock_values_are_checked_where_written(value, words):
    text = with_value(H100, "clock", value)
    with pytest.raises(HardwareError, match=words) as e:
        parse_gpu(text, "clock.yaml")
    assert (e.value.loc.file, e.value.loc.line) == ("clock.yaml", line_of(text, "clock"))


def test_counts_must_be_exact_integers():
    with pytest.raises(HardwareError, match="too large for a count"):
        parse_gpu(with_value(H100, "sms", "1e20"), "sms.yaml")
    with pytest.raises(HardwareError, match="whole number"):
        parse_gpu(with_value(H100, "sms", "132.5"), "sms.yaml")


def test_efficiency_fractions_stay_within_0_1():
    text = H100.replace("fused_tensor:", "fused_tensor: 1.5 #", 1)
    with pytest.raises(HardwareError, match="above 1"):
        parse_gpu(text, "eff.yaml")


def test_spatial_presets_refuse_non_finite_numbers(tmp_path):
    from hw_models.spatial import parse_spatial
    text = (GPU_PRESETS.parent / "fusemax.yaml").read_text()
    bad = with_value(text, "clock", ".nan")
    with pytest.raises(HardwareError, match="finite"):
        parse_spatial(bad, "s.yaml")
    assert load_spatial("fusemax").clock_hz > 0
