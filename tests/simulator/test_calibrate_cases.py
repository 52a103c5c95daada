"""simulator.calibrate on small inputs: the published-measurement CSV read
into cases, the tiles each kernel class is modelled with, which constants a
set of cases can pin down, and the multi-GPU fit and its cross-validation
run end to end on two tiny cases. (The mutation run of `simulator` found
these reached by no test in tests/simulator; docs/benchmarks.md.)"""
import dataclasses
import math
from types import SimpleNamespace

import pytest

from hw_models import load_gpu
from mappers.gpu_mapping import GPUMapping
from simulator.calibrate import (COLUMNS, GPU_PRESET, MEASURED_COLUMNS, MODEL_CLASS, RANGES, CalibrationError,
                                 Error, Fold, class_mapping, cross_validate, fit_many, fittable, predict_case,
                                 read_results, render_cv)

HEADER = ",".join(MEASURED_COLUMNS)
ROWS = ["H100 SXM5 80GB,flash-attention-2,FA2,1,2,2,256,256,64,causal,30.0",
        "A100 80GB PCIe,cudnn,FA2-class sm80,1,4,2,128,512,64,causal-br,25.5",
        "H100 SXM5 80GB,triton,Triton (Hopper),2,2,1,256,256,128,none,40.0"]


def _csv(tmp_path, rows, name="m.csv"):
    path = tmp_path / name
    path.write_text("# published measurements\n\n" + HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def test_the_measured_csv_is_read_by_its_columns(tmp_path):
    """The measured format (a kclass column) is recognised; comment and
    blank lines are skipped; each row becomes a case at its GPU preset and
    model class, the GQA design at its shapes (bottom-right causal for both
    causal masks), its time in seconds."""
    cases = read_results(_csv(tmp_path, ROWS))
    assert len(cases) == 3
    for c, line in zip(cases, ROWS):
        gpu, kernel, kclass, b, h, kvh, q, kv, d, mask, us = line.split(",")
        assert c.row["device"] == GPU_PRESET[gpu] and c.row["model_class"] == MODEL_CLASS[kclass]
        assert c.design == ("gqa" if mask == "none" else "gqa-causal-br")
        assert c.env == dict(B=int(b), H=int(h), G=int(h) // int(kvh), P=int(q), M=int(kv), E=int(d), F=int(d))
        assert all(type(v) is int for v in c.env.values()), c.env           # shapes are whole numbers
        assert c.measured_s == pytest.approx(float(us) * 1e-6)
        assert c.row["time_s"] == c.measured_s and (c.row["kclass"], c.row["mask"]) == (kclass, mask)
        assert c.row["dtype"] == "bf16"                   # the published measurements are all bf16
        assert {k: c.row[k] for k in ("batch", "heads", "kv_heads", "q_len", "kv_len", "head_dim", "causal")} == \
            dict(batch=int(b), heads=int(h), kv_heads=int(kvh), q_len=int(q), kv_len=int(kv), head_dim=int(d),
                 causal=int(mask != "none"))
    assert [c.row["kernel"] for c in read_results(_csv(tmp_path, ROWS), ["triton"])] == ["triton"]


@pytest.mark.parametrize("bad,message", [
    ("H100 SXM5 80GB,fa2,FA2,1,2,2,256,512,64,causal,30.0", "causal \\(q == kv\\)"),
    ("H100 SXM5 80GB,fa2,FA2,1,2,2,512,256,64,causal-br,30.0", "causal-br \\(q <= kv\\)"),
    ("H100 SXM5 80GB,fa2,FA2,1,2,2,256,256,64,sliding,30.0", "mask must be"),
    ("B200,fa2,FA2,1,2,2,256,256,64,none,30.0", "unknown gpu 'B200'"),
    ("H100 SXM5 80GB,fa2,FA4,1,2,2,256,256,64,none,30.0", "unknown kclass 'FA4'"),
    ("H100 SXM5 80GB,fa2,FA2,1,3,2,256,256,64,none,30.0", "H a multiple of KVH"),
    ("H100 SXM5 80GB,fa2,FA2,1,0,1,256,256,64,none,30.0", "shapes must be positive"),
    ("H100 SXM5 80GB,fa2,FA2,1,2,2,256,256,64,none,0", "time and shapes must be positive"),
])
def test_a_bad_measured_row_is_refused_with_its_row_number(tmp_path, bad, message):
    with pytest.raises(CalibrationError, match="data row 2: .*" + message):
        read_results(_csv(tmp_path, [ROWS[0], bad]))


@pytest.mark.parametrize("d", [64, 128, 256])
def test_each_kernel_class_runs_its_published_tiles(d):
    """class_mapping's documented tiles: FlashAttention-2 128 x 128 at head
    dim 64, 128 x 64 above, 4 warps (8 at 256), 2 stages; Triton's tutorial
    128 x 128 at 64, 128 x 64 above, 8 warps, 3 stages; Hopper
    warp-specialised 128 x 128 (x 64 at 256), 8 warps, 2 stages."""
    want = {"fa2": GPUMapping(128, 128 if d <= 64 else 64, 8 if d > 128 else 4, 2, 1, 1, "bf16"),
            "triton": GPUMapping(128, 128 if d <= 64 else 64, 8, 3, 1, 1, "bf16"),
            "hopper-ws": GPUMapping(128, 128 if d <= 128 else 64, 8, 2, 1, 1, "bf16")}
    for kclass, m in want.items():
        assert class_mapping(kclass, d) == m
    with pytest.raises(CalibrationError, match="no mapping for kernel class 'FA2'"):
        class_mapping("FA2", d)
    for kclass in want:
        assert class_mapping(kclass, d, "f16") == dataclasses.replace(want[kclass], dtype="f16")


def test_the_constants_the_cases_can_pin_down(tmp_path):
    """fused_tensor and program_cycles always; serial_overlap with an FA2 or
    Triton case, ws_overlap with a warp-specialised one; no path fraction
    (H100's mma is derived from A100's, never fitted)."""
    cases = read_results(_csv(tmp_path, ROWS))
    assert fittable(cases) == ["fused_tensor", "program_cycles", "serial_overlap"]
    ws = read_results(_csv(tmp_path, [ROWS[1], ROWS[2].replace("Triton (Hopper)", "Hopper warp-specialised")],
                           "ws.csv"))
    assert fittable(ws) == ["fused_tensor", "program_cycles", "serial_overlap", "ws_overlap"]


def _loss(cases, gpus):
    return sum(math.log(predict_case(c, gpus[c.row["device"]]).time_s / c.measured_s) ** 2 for c in cases)


def test_fit_many_never_raises_the_loss_and_stays_in_range(tmp_path):
    """One round, one golden-section step per constant, on two cases: each
    constant is taken only if it lowers the log-error loss, so the loss
    never rises, and every fitted value lies in its RANGES interval."""
    cases = read_results(_csv(tmp_path, ROWS[:2]))
    gpus = {"h100": load_gpu("h100"), "a100-pcie": load_gpu("a100-pcie")}
    fitted = fit_many(cases, gpus, rounds=1, steps=1)
    assert _loss(cases, fitted) <= _loss(cases, gpus)
    for name in fittable(cases):             # shared: every GPU holds the same value, in its range
        lo, hi = RANGES[name]
        assert lo <= fitted["h100"].efficiency[name] == fitted["a100-pcie"].efficiency[name] <= hi


@pytest.mark.parametrize("lo,hi,at", [(0.0, 1.0, 0.3), (100.0, 3000.0, 2999.0), (-2.0, 5.0, -1.5)])
def test_the_golden_section_search_finds_a_parabolas_minimum(lo, hi, at):
    """(v - at)^2 on [lo, hi]: 40 narrowings by 0.618 leave an interval
    of (hi - lo) x 0.618^40, about 4e-9 of it; the loss is evaluated 42 times."""
    from simulator.calibrate import _golden
    seen = []

    def loss(v):
        seen.append(v)
        return (v - at) ** 2
    assert _golden(loss, lo, hi, 40) == pytest.approx(at, abs=1e-7 * (hi - lo))
    assert len(seen) == 42 and all(lo <= v <= hi for v in seen)


def test_cross_validation_predicts_each_group_from_a_fit_without_it(tmp_path):
    """Leaving one GPU out: a fold per GPU, holding exactly that GPU's
    cases, each predicted (time > 0) by constants fitted on the others."""
    cases = read_results(_csv(tmp_path, ROWS[:2]))
    gpus = {"h100": load_gpu("h100"), "a100-pcie": load_gpu("a100-pcie")}
    folds = cross_validate(cases, gpus, by=("device",), rounds=1, steps=1)
    assert sorted(f.held_out for f in folds) == ["a100-pcie", "h100"]
    for f in folds:
        assert [e.case.row["device"] for e in f.errors] == [f.held_out]
        assert all(e.predicted_s > 0 and math.isfinite(e.relative) for e in f.errors)
        assert "fused_tensor" in "".join(f.constants)
    with pytest.raises(CalibrationError, match="needs two groups"):
        cross_validate(cases[:1], gpus, by=("device",), rounds=1, steps=1)


@pytest.mark.parametrize("header, missing", [
    ("device,kernel,dtype,batch,heads", "columns"),
    (",".join(c for c in COLUMNS if c != "time_s"), "column time_s"),
])
def test_a_results_file_without_its_columns_names_them(tmp_path, header, missing):
    """benchmarks/gpu_attention.py's results format: the missing columns
    (one, or several: "columns") and the columns expected."""
    path = tmp_path / "r.csv"
    path.write_text(header + "\n")
    with pytest.raises(CalibrationError, match=rf"r\.csv: missing {missing}\b.*\(expected {','.join(COLUMNS)}\)"):
        read_results(path)


def test_the_cross_validation_table_by_hand():
    """Two folds leaving a GPU out (h100 errors +10%, -30%; a100 +20%) and
    one leaving a class out (h100 +50%), one by kernel: one table per grouping, each with
    only its folds' errors, grouped by GPU and class."""
    def err(device, rel):
        return Error(SimpleNamespace(row=dict(device=device, kernel="flash", kclass="FA2"), measured_s=1.0), 1.0 + rel)
    folds = [Fold("device", "h100", [err("h100", 0.1), err("h100", -0.3)], {}),
             Fold("device", "a100", [err("a100", 0.2)], {}),
             Fold("kclass", "FA2", [err("h100", 0.5)], {}),
             Fold("kernel", "flash", [err("a100", -0.1)], {})]
    head = ["| GPU | kernel class | points | median abs error | worst | median signed |", "|---|---|---|---|---|---|"]
    assert render_cv(folds).splitlines() == [
        "**leave one GPU out**", "", *head,
        "| a100 | FA2 | 1 | 20.0% | 20.0% | +20.0% |",
        "| h100 | FA2 | 2 | 20.0% | 30.0% | +10.0% |", "",
        "**leave one kernel class out**", "", *head,
        "| h100 | FA2 | 1 | 50.0% | 50.0% | +50.0% |", "",
        "**kernel**", "", *head,                      # a grouping of cross_validate's `by` without a title
        "| a100 | FA2 | 1 | 10.0% | 10.0% | -10.0% |"]


def test_each_case_is_labelled_by_kernel_mask_and_shapes(tmp_path):
    """The label the reports print: kernel, mask (or decode for one query),
    batch, heads / KV heads, queries x keys, head dimension; a results file
    of benchmarks/gpu_attention.py has no mask column: causal or full."""
    assert [c.label for c in read_results(_csv(tmp_path, ROWS))] == [
        "flash-attention-2 causal B=1 H=2/2 N=256x256 D=64",
        "cudnn causal-br B=1 H=4/2 N=128x512 D=64",
        "triton none B=2 H=2/1 N=256x256 D=128"]
    runs = tmp_path / "runs.csv"
    runs.write_text(",".join(COLUMNS) + "\n" + "h100,fa2,bf16,1,8,2,1,4096,128,0,2e-5,0\n"
                    "h100,fa2,bf16,2,4,4,512,512,64,1,3e-5,0\nh100,fa2,bf16,2,4,4,512,1024,64,0,3e-5,0\n")
    assert [c.label for c in read_results(runs)] == ["fa2 decode B=1 H=8/2 N=1x4096 D=128",
                                                     "fa2 causal B=2 H=4/4 N=512x512 D=64",
                                                     "fa2 full B=2 H=4/4 N=512x1024 D=64"]


def test_a_prefill_row_runs_its_classs_tiles_in_head_major_order(tmp_path):
    """A published prefill row is predicted with its kernel class's tiles
    and overlap, programs launched head by head (as published kernels
    launch), over the design's exact cell counts."""
    from einsum_ir import library as lib
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.shapes import resolve
    from simulator.gpu import predict_fused
    case = read_results(_csv(tmp_path, ROWS))[2]                   # Triton (Hopper), no mask, head dim 128
    h100 = load_gpu("h100")
    form = recognise(lib.load("gqa"))
    env = resolve(form.cascade, case.env)
    want = predict_fused(form, GPUMapping(128, 64, 8, 3, 1, 1, "bf16"), h100, env, kclass="triton",
                         order="head-major")
    assert predict_case(case, h100).time_s == pytest.approx(want.time_s, rel=1e-12)
    other = predict_fused(form, GPUMapping(128, 64, 8, 3, 1, 1, "bf16"), h100, env, kclass="fa2",
                          order="head-major")
    assert other.time_s != want.time_s                     # the class matters here


def test_a_decode_row_is_searched_at_its_own_dtype_and_designs_are_parsed_once():
    """A decode row (one query) of a results file in f32: the best mapping
    in f32, not in bf16. The GQA designs are parsed and recognised once,
    then shared by every case."""
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.shapes import resolve
    from mappers.gpu_search import shortlist
    from simulator import calibrate
    from simulator.calibrate import Case
    h100 = load_gpu("h100")
    row = dict(device="h100", kernel="k", dtype="f32", batch=1, heads=8, kv_heads=2, q_len=1, kv_len=1024,
               head_dim=64, causal=0)
    env = dict(B=1, H=8, G=4, P=1, M=1024, E=64, F=64)
    calibrate._FORMS.clear()
    got = predict_case(Case(row, "gqa", env, 1.0), h100)
    form, program = calibrate._FORMS["gqa"]
    assert program.form is form and form.cascade.name == "gqa"
    assert calibrate._form("gqa") == (form, program)
    want = shortlist(recognise(form.cascade), h100, resolve(form.cascade, env), "f32", top=1)[0]
    assert got.mapping.dtype == "f32" and got.time_s == pytest.approx(want.time_s, rel=1e-12)
    generated = calibrate._form("gqa-causal-br")[0]
    assert generated.cascade.name == "gqa-causal-br" and generated.passes == 1


def test_a_folds_constants_are_the_shared_ones_and_the_paths_per_gpu():
    from simulator.calibrate import _constants
    gpus = {"h100": load_gpu("h100"), "a100-pcie": load_gpu("a100-pcie")}
    got = _constants(gpus)
    names = ("fused_tensor", "serial_overlap", "ws_overlap", "mma", "wgmma")
    assert got == {f"{g}.{k}": gpus[g].efficiency[k] for g in gpus for k in names if k in gpus[g].efficiency}
    assert {"h100.wgmma", "h100.mma", "a100-pcie.mma", "h100.fused_tensor"} <= set(got)


def test_a_row_without_a_dtype_is_predicted_in_bf16(tmp_path):
    """A results row whose dtype is empty is taken as bf16, the dtype of
    every published measurement: the same prediction as the row in bf16."""
    runs = tmp_path / "runs.csv"
    runs.write_text(",".join(COLUMNS) + "\n" + "h100,fa2,,1,8,2,1,1024,64,0,2e-5,0\n"
                    "h100,fa2,bf16,1,8,2,1,1024,64,0,2e-5,0\nh100,fa2,,1,4,4,256,256,64,1,2e-5,0\n"
                    "h100,fa2,bf16,1,4,4,256,256,64,1,2e-5,0\nh100,fa2,f32,1,4,4,256,256,64,1,2e-5,0\n")
    h100 = load_gpu("h100")
    got = [predict_case(c, h100) for c in read_results(runs)]
    assert got[0].time_s == got[1].time_s and got[0].mapping.dtype == "bf16"
    assert got[2].time_s == got[3].time_s and got[2].mapping.dtype == "bf16"
    assert got[4].mapping.dtype == "f32" and got[4].time_s != got[3].time_s


def test_fit_many_recovers_a_known_constant(tmp_path):
    """Times made by the model itself with fused_tensor = 0.4 on both GPUs
    (four prefill rows): the fit, from the presets, finds 0.4 again, and
    predicts the rows back within 1%."""
    import dataclasses
    from simulator.calibrate import median_abs, validate
    gpus = {"h100": load_gpu("h100"), "a100-pcie": load_gpu("a100-pcie")}
    truth = {g: x.with_efficiency(fused_tensor=0.4) for g, x in gpus.items()}
    rows = [ROWS[0], ROWS[2], "A100 80GB PCIe,fa2,FA2-class sm80,1,4,4,1024,1024,64,causal,1.0",
            "H100 SXM5 80GB,fa2,FA2,2,8,8,2048,2048,128,none,1.0"]
    cases = [dataclasses.replace(c, measured_s=predict_case(c, truth[c.row["device"]]).time_s)
             for c in read_results(_csv(tmp_path, rows))]
    fitted = fit_many(cases, gpus, rounds=2, steps=14)
    assert {g: x.efficiency["fused_tensor"] for g, x in fitted.items()} == pytest.approx(
        {"h100": 0.4, "a100-pcie": 0.4}, abs=0.01)
    for g in gpus:
        assert median_abs(validate([c for c in cases if c.row["device"] == g], fitted[g])) < 0.01
