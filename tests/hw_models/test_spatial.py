"""Spatial-array descriptions: the presets load with the reference's figures
derived correctly, and every kind of bad description is an error at its
line and column."""
import pytest

import hw_models as hw

GOOD = """\
name: tiny
clock: 1 GHz
word_bytes: 2
units:
  pe2d:
    shape: [4, 4]
    ops:
      mac: {cycles: 1, energy_pj: 2.0}
      add: {cycles: 1, energy_pj: 1.0}
      exp: {as: {mac: 3, add: 1}}
    register_file: {read_pj: 0.1, write_pj: 0.1}
    area_um2_per_pe: 100
global_buffer:
  capacity: 64 KiB
  row_bits: 128
  read_pj_per_row: 10
  write_pj_per_row: 12
  area_um2: 5000
dram: {bandwidth: 8 GiB/s, pj_per_bit: 4}
"""


def test_presets_load_and_compose_exp_from_macs():
    fm = hw.load_spatial("fusemax")
    exp = fm.unit("pe2d").ops["exp"]
    assert exp.cycles == 6 * fm.unit("pe2d").ops["mac"].cycles
    assert exp.energy_pj == pytest.approx(6 * 17.1645)
    # exp(a - b): the exp and the subtraction in sequence, 7 PE cycles (the reference's rule)
    assert fm.unit("pe2d").cycles_per_point({"exp": 1, "add": 1}) == 7
    flat = hw.load_spatial("flat")
    assert flat.unit("pe1d").ops["exp"].cycles == 1
    assert flat.unit("pe1d").cycles_per_point({"exp": 1, "add": 1}, pipelined=True) == 1
    assert fm.buffer.capacity_bytes == 16 * 2 ** 20 and flat.buffer.capacity_bytes == 32 * 2 ** 20
    assert fm.buffer.row_bytes == 512
    assert fm.dram.bandwidth_bytes_per_s == 400 * 2 ** 30
    assert fm.unit("pe2d").pes == 65536 and fm.unit("pe1d").pes == 256
    # the paper: FuseMax is 6.4% smaller than FLAT
    assert fm.area_um2 / flat.area_um2 == pytest.approx(1 - 0.064, abs=1e-4)


def test_a_user_description_parses():
    a = hw.parse_spatial(GOOD, "tiny.yaml")
    assert a.unit("pe2d").ops["exp"].cycles == 4
    assert a.unit("pe2d").ops["exp"].energy_pj == pytest.approx(7.0)
    assert a.buffer.capacity_bytes == 65536 and a.buffer.row_bytes == 16
    assert a.area_um2 == 16 * 100 + 5000


@pytest.mark.parametrize("old,new,message,line", [
    ("capacity: 64 KiB", "capacity: -64", "global_buffer.capacity: must be positive", 14),
    ("      add: {cycles: 1, energy_pj: 1.0}", "      add: {cycles: 1}", "ops.add: missing energy_pj", 9),
    ("  row_bits: 128", "  row_bit: 128", "unknown key 'row_bit' (did you mean 'row_bits'?)", 15),
    ("      exp: {as: {mac: 3, add: 1}}", "      exp: {as: {max: 3}}", "composed of max", 10),
    ("    shape: [4, 4]", "    shape: [4, 4, 4]", "1D or 2D", 6),
    ("  row_bits: 128", "  row_bits: 100", "whole number of bytes", 15),
    ("clock: 1 GHz", "clock: 1 GHzz", "unknown unit 'GHzz'", 2),
    ("      mac: {cycles: 1, energy_pj: 2.0}", "      macc: {cycles: 1, energy_pj: 2.0}",
     "did you mean 'mac'", 8),
    ("dram: {bandwidth: 8 GiB/s, pj_per_bit: 4}", "dram: {bandwidth: 8 GiB/s}", "dram: missing pj_per_bit", 19),
])
def test_bad_descriptions_are_errors_at_their_line(old, new, message, line):
    assert old in GOOD
    with pytest.raises(hw.HardwareError) as e:
        hw.parse_spatial(GOOD.replace(old, new), "tiny.yaml")
    assert message in str(e.value)
    assert e.value.loc.file == "tiny.yaml" and e.value.loc.line == line


def test_unit_without_an_operation_says_which():
    a = hw.parse_spatial(GOOD, "tiny.yaml")
    with pytest.raises(hw.HardwareError, match="pe2d cannot perform divide"):
        a.unit("pe2d").cycles_per_point({"divide": 1})
    with pytest.raises(hw.HardwareError, match="no unit 'pe1d'"):
        a.unit("pe1d")


def test_unknown_preset_suggests_one():
    with pytest.raises(hw.HardwareError, match="did you mean 'fusemax'"):
        hw.load_spatial("fusmax")


def test_staging_register_file_and_accounting_are_read():
    fm = hw.load_spatial("fusemax")
    assert fm.staging.read_pj == pytest.approx(2.194) and fm.staging.write_pj == pytest.approx(1.906)
    assert hw.load_spatial("flat").staging is None
    assert fm.buffer.read_pj_per_row / (fm.buffer.row_bytes // fm.word_bytes) == pytest.approx(48.88, abs=0.01)
    a = hw.parse_spatial(GOOD + "accounting: evaluation\n", "tiny.yaml")
    assert a.accounting == "evaluation" and hw.parse_spatial(GOOD, "tiny.yaml").accounting == "physical"
    with pytest.raises(hw.HardwareError, match="unknown accounting 'evaluations'") as e:
        hw.parse_spatial(GOOD + "accounting: evaluations\n", "tiny.yaml")
    assert e.value.loc.line == GOOD.count("\n") + 1
