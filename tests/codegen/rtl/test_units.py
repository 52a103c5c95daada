"""Every Einsum unit of the 1-pass cascade, four library designs with
different score maps, masks and epilogues, and a design written only for
this test: generated, simulated under Icarus with cocotb on thousands of
random points, compared bit for bit with the Python model; the measured
latency and throughput are the unit's formula."""
from __future__ import annotations

import pytest

from codegen.rtl.fixed import Fmt
from codegen.rtl.unit import build_unit
from einsum_ir import parse
from einsum_ir.library import load

from .sim import run_cocotb
from .vectors import unit_spec

N_POINTS = 2000

# written for this test only: a shifted-window mask with a coordinate bias,
# clip and a sigmoid-gated epilogue with min, abs and an exp2
CUSTOM = """
rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input Keep[B, M]: bool
input T[H]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where Keep[b, m]
S[b, h, m, p] = clip(QK[b, h, m, p] * 0.25 - abs(p - m) * T[h], -20, 20) where Keep[b, m] and p - m >= -W
GM[b, h, p] = max[m] S[b, h, m, p] where Keep[b, m] and p - m >= -W
SN[b, h, m, p] = exp2(S[b, h, m, p] - GM[b, h, p]) where Keep[b, m] and p - m >= -W
SD[b, h, p] = SN[b, h, m, p] where Keep[b, m] and p - m >= -W
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where Keep[b, m] and p - m >= -W
AV[b, h, f, p] = select(SD[b, h, p] > 0, SNV[b, h, f, p] / SD[b, h, p] * sigmoid(min(T[h], 3)), 0)
"""


def designs():
    out = [load(n) for n in ("attention-1pass", "softcap", "alibi", "sliding-window", "gated-attention")]
    return out + [parse(CUSTOM, name="test-only-design")]


CASES = [(c, e) for c in designs() for e in c.einsums if not e.is_initial]


@pytest.mark.parametrize("c, e", CASES, ids=[f"{c.name}-{e.name}" for c, e in CASES])
def test_unit_bit_exact_and_cycles(tmp_path, c, e):
    fmt = Fmt(24, 10) if len(e.name) % 2 else Fmt(32, 16)
    u = build_unit(c, e, fmt)
    res = run_cocotb(tmp_path, {f"{u.name}.v": u.verilog}, u.name, "tb_unit", unit_spec(u, N_POINTS, seed=len(CASES)))
    assert res["n_bad"] == 0
    assert res["latencies"] == [u.latency]
    assert res["total"] == N_POINTS * u.ii + 1      # back to back: the simulator's busy cycles + the input register
