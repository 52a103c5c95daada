"""The soundness benchmark's fixed-seed sample (benchmarks/soundness.py runs
2000 designs by hand): 90 generated designs, nobody's by hand, through
every stage of attnc, each against an independent reference; not one wrong
answer and not one internal error. And the checks themselves fail on planted
bugs: a check that cannot fail would prove nothing."""
import numpy as np
import pytest

import attnc.soundness as sound
from einsum_ir.random_designs import FAMILIES, random_design

SEED, CHUNKS, PER_CHUNK = 7000, 9, 10           # 90 designs, in chunks the test workers share (the suite under 10 min)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_generated_designs_are_right_or_refused(chunk):
    for i in range(PER_CHUNK):
        seed = SEED + chunk * PER_CHUNK + i
        rep = sound.check_design(random_design(seed, FAMILIES[seed % len(FAMILIES)]))
        assert [o.stage for o in rep.outcomes] == list(sound.STAGES)
        assert not rep.mismatches, f"{rep.name}: " + "; ".join(f"[{o.stage}] {o.detail}" for o in rep.mismatches)


def test_spatial_invariants_over_the_shipped_mappings():
    outcomes = sound.check_spatial(seed=3, n=12)
    assert all(o.status in ("ok", "refused") for o in outcomes), [o.detail for o in outcomes]
    assert sum(o.status == "ok" for o in outcomes) >= 8


def _design(family, seed=1):
    d = random_design(seed, family)
    return d, d.cascade()


def test_the_executor_check_catches_a_wrong_executor(monkeypatch):
    import einsum_ir
    d, c = _design("softmax")
    orig = einsum_ir.execute

    def skewed(*a, **k):
        out = orig(*a, **k)
        return {n: v * 1.001 if v.dtype != bool else v for n, v in out.items()}
    monkeypatch.setattr(einsum_ir, "execute", skewed)
    status, detail = sound.check_executor(c, d.shapes)
    assert status == "mismatch" and "max error" in detail


def test_the_kernel_check_catches_a_wrong_kernel(monkeypatch):
    from codegen import runtime
    d = next(d for d in map(lambda s: random_design(s, "softmax"), range(50))
             if sound.check_kernel(d.cascade(), d.shapes)[0] == "ok")
    orig = runtime.FusedKernel.__call__
    monkeypatch.setattr(runtime.FusedKernel, "__call__", lambda self, **x: orig(self, **x) * 1.01)
    status, detail = sound.check_kernel(d.cascade(), d.shapes)
    assert status == "mismatch", detail


def test_the_pass_check_catches_a_count_too_low(monkeypatch):
    import importlib
    passes_mod = importlib.import_module("einsum_ir.analysis.passes")    # the package exports a function of that name
    c = None
    for s in range(30):
        d, c = _design("softmax", s)
        if sound.check_passes(c, d.shapes)[1].endswith("3 pass(es)"):
            break
    orig = passes_mod.passes

    def fewer(cascade, rank):
        r = orig(cascade, rank)
        return type(r)(**{**r.__dict__, "passes": r.passes - 1})
    monkeypatch.setattr(passes_mod, "passes", fewer)
    status, detail = sound.check_passes(c, d.shapes)
    assert status == "mismatch" and "too few" in detail


def test_the_gpu_model_check_catches_a_dropped_branch(monkeypatch):
    from einsum_ir.analysis.fused import FusedForm
    from pathlib import Path
    from einsum_ir import parse_file
    c = parse_file(Path(__file__).parents[1] / "codegen" / "designs" / "diff_attention.ein")
    shapes = dict(B=1, H=2, M=9, P=7, E=4, F=3)
    assert sound.check_gpu_model(c, shapes)[0] == "ok"
    orig = FusedForm.scores_in_pass
    monkeypatch.setattr(FusedForm, "scores_in_pass", lambda self, k: orig(self, k)[:1])   # the old bug
    status, detail = sound.check_gpu_model(c, shapes)
    assert status == "mismatch" and "tensor_flops" in detail


def test_refusals_group_by_reason_without_the_designs_names():
    from einsum_ir.errors import EinError
    a = sound._reason(EinError("rand-softmax-3 does not fit a fused attention kernel: QK1: reads S1[b, h, p] at ..."))
    b = sound._reason(EinError("rand-softmax-9 does not fit a fused attention kernel: QK7: reads S2[b, h, p] at ..."))
    assert a == b and a.startswith("fused: ")


def test_the_summary_table_counts_every_stage():
    s = sound.run(6, seed=11, stages=("parse", "executor"), progress=False, spatial_points=2)
    text = s.table()
    assert "| parse | 6 |" in text and "| executor |" in text and "Mismatches and internal errors: 0" in text
    assert np.isfinite(s.seconds)


@pytest.mark.parametrize("seed, stage, want", [
    (7065, "kernel", "refused"),      # values indexed by the query: KeyError('p') in the generator, now refused
    (7196, "gpu-model", "ok"),        # log(sigmoid(GT[h, p])) under m != p: counted per point, an upper bound
])
def test_findings_of_the_benchmark_stay_fixed(seed, stage, want):
    """Regressions found by benchmarks/soundness.py (docs/soundness.md, 'What it found')."""
    rep = sound.check_design(random_design(seed, FAMILIES[seed % len(FAMILIES)]), stages=(stage,))
    (o,) = [o for o in rep.outcomes if o.stage == stage]
    assert o.status == want, o.detail
    if want == "refused":
        assert "vary with the query variable" in o.detail


_MASKED_ROW_OP = """rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input GT[H, P]: f16
input MK[M, P]: bool
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where MK[m, p]
S[b, h, m, p] = QK[b, h, m, p] + log(sigmoid(GT[h, p])) where MK[m, p]
GM[b, h, p] = max[m] S[b, h, m, p] where MK[m, p]
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]) where MK[m, p]
SD[b, h, p] = SN[b, h, m, p] where MK[m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where MK[m, p]
AV[b, h, f, p] = SNV[b, h, f, p] / max(SD[b, h, p], 1e-30)
"""


def test_the_gpu_floor_of_an_unproved_projection_is_a_lower_bound(monkeypatch):
    """An operator whose hoisting the analysis cannot prove (a per-row
    log(sigmoid(GT[h, p])) under a data mask) is counted per point, an upper
    bound: the kernel computes it once per row, so the GPU check compared
    unlike things (a false mismatch). Its floor is the fewest tuples the
    points allow; a model charging less SFU work than that is still caught."""
    from einsum_ir import parse
    from einsum_ir.analysis.counts import einsum_ops
    from einsum_ir.shapes import resolve
    import simulator.gpu as gpu
    c = parse(_MASKED_ROW_OP)
    shapes = dict(B=1, H=2, P=8, E=4, F=4, density_MK=0.5)
    assert sound.check_gpu_model(c, shapes) == ("ok", "")
    pw = parse("rank M, P\ninput G[P]\ninput X[M, P]\nY[p] = exp(-G[p]) * X[m, p] "
               "where m <= p and (m == p or exp2(floor(log2(max(p - m, 1)))) == p - m)")
    for M, P in ((5, 6), (9, 4), (16, 16)):
        env = resolve(pw, dict(M=M, P=P))
        exact = len({p for p in range(P) for m in range(M) if m <= p and (p - m) & (p - m - 1) == 0})
        floor = sound._floor_ops(pw, pw.einsums[0], env)["exp"]
        assert 0 < floor <= exact < sound._evaluate(einsum_ops(pw, pw.einsums[0])["exp"], env)
    orig = gpu.predict_fused

    def no_row_ops(*a, **k):             # a model that forgets most of its SFU work (the per-key exp)
        pred = orig(*a, **k)
        pred.work["sfu_ops"] *= 0.25
        return pred
    monkeypatch.setattr(gpu, "predict_fused", no_row_ops)
    status, detail = sound.check_gpu_model(c, shapes)
    assert status == "mismatch" and "sfu_ops" in detail
