"""The new operators (sin, cos, tan, erf, softplus, logsigmoid, log1p, expm1,
`^`, bitwise `&` `|` xor `<<` `>>`, conditions as 0/1 numbers) in generated
kernels, run by Triton's interpreter against the reference executor: in a
fused softmax design's score map, mask and GELU-gated epilogue, and in a
chunked linear-attention design's feature maps and epilogue."""
import numpy as np
import pytest
import torch

from codegen.runtime import ChunkedKernel, FusedKernel, compile_kernel
from codegen.triton import PRELUDE
from einsum_ir import execute, parse, random_inputs
from mappers.gpu_mapping import GPUMapping

MAPPING = GPUMapping(32, 32, dtype="f32")
MASK = "(m & 7) != 3 and m <= p"

SCORE = ("QK[b, h, m, p] / 4 + 0.5 * sin(QK[b, h, m, p]) - 0.25 * cos(p - m) + 0.1 * tan(QK[b, h, m, p] / 8)"
         " + 0.3 * erf(QK[b, h, m, p]) + 0.2 * softplus(QK[b, h, m, p]) + 0.1 * logsigmoid(QK[b, h, m, p])"
         " + 0.2 * log1p(abs(QK[b, h, m, p])) - 0.1 * expm1(-abs(QK[b, h, m, p]))"
         " - 0.05 * abs(QK[b, h, m, p]) ^ 1.5 + 0.01 * QK[b, h, m, p] ^ 2 + 0.01 * 2 ^ QK[b, h, m, p]"
         " + 0.2 * ((p < 20) == (m < 20)) + 0.05 * (m & 3) ^ 2 + 0.1 * (xor(p, m) >> 1 & 1)"
         " - 0.3 * ((p < 9) - (m < 9)) + 0.1 * (m << 1 | 1) / P")

FUSED = f"""
rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input G[B, H, F, P]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
S[b, h, m, p] = {SCORE} where {MASK}
GM[b, h, p] = max[m] S[b, h, m, p] where {MASK}
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]) where {MASK}
SD[b, h, p] = SN[b, h, m, p] where {MASK}
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where {MASK}
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p] * (0.5 * G[b, h, f, p] * (1 + erf(G[b, h, f, p] / sqrt(2)))) \
+ softplus(G[b, h, f, p]) ^ -1 + 0.1 * sin(G[b, h, f, p]) ^ 2 + (p & 1) * logsigmoid(G[b, h, f, p])
"""

LINEAR = """
rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input G[B, H, F, P]: f16
PK[b, h, e, m] = max(K[b, h, e, m], 0) ^ 2 + 0.1 * softplus(K[b, h, e, m]) + 0.01 * (m & 3) + 0.1 * ((m < 5) - (e < 3))
PQ[b, h, e, p] = expm1(abs(Q[b, h, e, p])) + log1p(abs(Q[b, h, e, p])) + 0.1 * sin(Q[b, h, e, p]) ^ 2 \
+ 0.2 * (xor(p, e) >> 1 & 1)
KV[b, h, e, f] = PK[b, h, e, m] * V[b, h, f, m]
KS[b, h, e] = PK[b, h, e, m]
NUM[b, h, f, p] = PQ[b, h, e, p] * KV[b, h, e, f]
DEN[b, h, p] = PQ[b, h, e, p] * KS[b, h, e]
AV[b, h, f, p] = 0.5 * G[b, h, f, p] * (1 + erf(G[b, h, f, p] / sqrt(2))) * NUM[b, h, f, p] / (DEN[b, h, p] + 1) \
+ logsigmoid(G[b, h, f, p]) * cos(G[b, h, f, p]) - tan(G[b, h, f, p] / 4) ^ 3 + 2 ^ G[b, h, f, p] + ((p | 2) << 1) / P
"""


def _compare(kernel_out, ref):
    o = kernel_out.double().numpy()
    assert np.isfinite(ref).all() and np.isfinite(o).all()
    err = np.abs(o - ref).max() / np.abs(ref).max()
    assert err <= 1e-4, f"max relative error {err:.2e}"


def test_fused_kernel_with_every_new_operator_in_score_mask_and_epilogue():
    c = parse(FUSED, "new-ops-fused.ein")
    shapes = dict(B=1, H=1, P=45, E=16, F=8)
    inp = random_inputs(c, shapes, seed=0, dtype="float32")
    ref = execute(c, inp, shapes, dtype="float64")["AV"]
    k = FusedKernel(c, MAPPING, shapes)
    _compare(k(**{n: torch.tensor(v) for n, v in inp.items()}), ref)


def test_chunked_kernel_with_the_new_operators_in_feature_maps_and_epilogue():
    c = parse(LINEAR, "new-ops-linear.ein")
    shapes = dict(B=1, H=2, P=45, M=70, E=12, F=20)
    inp = random_inputs(c, shapes, seed=1, dtype="float32")
    ref = execute(c, inp, shapes, dtype="float64")["AV"]
    k = compile_kernel(c, MAPPING, shapes)
    assert isinstance(k, ChunkedKernel)
    _compare(k(**{n: torch.tensor(v) for n, v in inp.items()}), ref)


def _helpers():
    """The generated files' helper functions, compiled once for the interpreter."""
    import importlib.util
    import tempfile
    from pathlib import Path
    text = "\n".join(PRELUDE) + """
@triton.jit
def apply(x_ptr, y_ptr, o_ptr, N: tl.constexpr, OP: tl.constexpr):
    i = tl.arange(0, N)
    x = tl.load(x_ptr + i)
    y = tl.load(y_ptr + i)
    if OP == 0:
        r = _softplus(x)
    elif OP == 1:
        r = _logsigmoid(x)
    elif OP == 2:
        r = _log1p(x)
    elif OP == 3:
        r = _expm1(x)
    elif OP == 4:
        r = _tan(x)
    else:
        r = _pow(x, y)
    tl.store(o_ptr + i, r)
"""
    path = Path(tempfile.mkdtemp(prefix="b_helpers_")) / "b_helpers.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("b_helpers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def helpers():
    return _helpers()


@pytest.mark.parametrize("op, ref", [
    (0, lambda x, y: np.logaddexp(0, x)), (1, lambda x, y: -np.logaddexp(0, -x)),
    (2, lambda x, y: np.log1p(x)), (3, lambda x, y: np.expm1(x)), (4, lambda x, y: np.tan(x)),
    (5, lambda x, y: np.where((x < 0) & (np.floor(y) != y), np.nan, np.power(x, y)))])
def test_kernel_helpers_are_stable_where_naive_forms_fail(helpers, op, ref):
    """float32 kernels at |x| = 100 and at tiny x: softplus(100) = 100 (not
    inf), softplus(-100) = e^-100 (not 0), log1p(1e-10) = 1e-10 (not 0);
    pow with negative bases and special exponents as the executor."""
    x = np.array([-100.0, -30.0, -2.5, -1e-10, 0.0, 1e-10, 0.7, 3.0, 30.0, 100.0, -8.0, -2.0, 0.0, 2.0, 1.0, -1.0],
                 np.float32)
    y = np.array([2.0, 3.0, 0.5, 2.0, 0.0, -1.0, 1.5, -2.0, 0.0, 1.0, 1 / 3, 3.0, -1.0, 0.5, np.nan, 2.0],
                 np.float32)
    if op == 2:
        x = np.abs(x)
    if op == 3:
        x = np.clip(x, -80, 80)
    if op == 4:
        x = np.clip(x, -1.5, 1.5)
    out = torch.empty(16)
    helpers.apply[(1,)](torch.tensor(x), torch.tensor(y), out, N=16, OP=op)
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64), y.astype(np.float64))
    got = out.double().numpy()
    assert np.array_equal(np.isnan(got), np.isnan(want)), (got, want)
    ok = ~np.isnan(want)
    # e^-100 is a float32 subnormal (steps of 1.4e-45): compared at float32's rounding
    np.testing.assert_allclose(got[ok], want.astype(np.float32)[ok], rtol=2e-5, atol=1.5e-45)


def test_a_shift_past_the_kernels_32_bits_is_refused_not_wrapped():
    from einsum_ir import EinError
    c = parse(FUSED.replace("0.1 * (m << 1 | 1) / P", "0.1 * (m << 31 | 1) / P"), "wide-shift.ein")
    shapes = dict(B=1, H=1, P=20, E=16, F=8)
    inp = random_inputs(c, shapes, seed=0, dtype="float32")
    with pytest.raises(EinError, match=r"shift count 31 .*32-bit"):
        FusedKernel(c, MAPPING, shapes)(**{n: torch.tensor(v) for n, v in inp.items()})


def test_kernel_power_keeps_ieee_signs_and_infinite_exponents(helpers):
    """The power helper agrees with numpy where the sign of zero and infinite
    exponents decide: (-0) ^ -1 = -inf, (-0) ^ 0.5 = 0, (-1) ^ inf = 1,
    (-inf) ^ 3 = -inf (the executor's rule: a negative base to a finite
    fraction is NaN)."""
    x = np.array([-0.0, -0.0, -0.0, -1.0, -1.0, -np.inf, -np.inf, -0.5, -2.0, -0.0, 0.0, np.inf, -3.0, 0.5,
                  -np.inf, 2.0], np.float32)
    y = np.array([-1.0, -2.0, 0.5, np.inf, -np.inf, 3.0, 2.0, np.inf, -np.inf, -3.0, -1.0, -1.0, 3.0, -np.inf,
                  -1.0, np.inf], np.float32)
    out = torch.empty(16)
    helpers.apply[(1,)](torch.tensor(x), torch.tensor(y), out, N=16, OP=5)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(all="ignore"):
        want = np.where((x64 < 0) & np.isfinite(y64) & (np.floor(y64) != y64), np.nan, np.power(x64, y64))
    got = out.double().numpy()
    assert np.array_equal(np.isnan(got), np.isnan(want)), (got, want)
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-6)
