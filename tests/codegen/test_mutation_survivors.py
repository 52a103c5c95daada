"""Behaviour that mutation testing (scripts/mutation.sh codegen) found
unchecked, now checked against the reference executor."""
import numpy as np
import torch

from codegen.runtime import FusedKernel
from einsum_ir import execute, parse, random_inputs
from mappers.gpu_mapping import GPUMapping

# Causal cross attention shifted by 10: rows p < 10 see no key at all, and
# with the keys split three ways most rows see no key in the later splits.
SHIFTED = """
rank B, H, P, M, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p] where m + 10 <= p
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where m + 10 <= p
SD[b, h, p] = SN[b, h, m, p] where m + 10 <= p
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where m + 10 <= p
AV[b, h, f, p] = select(SD[b, h, p] > 0, SNV[b, h, f, p] / max(SD[b, h, p], 1e-30), -1)
"""


def test_split_kv_rows_that_see_no_key():
    """Split-KV: a split in which a row sees no key contributes nothing (its
    running max is -inf, and exp(-inf - -inf) would be NaN), and a row that
    sees no key in any split ends as the design's select says (-1)."""
    c = parse(SHIFTED, "shifted.ein")
    shapes = dict(B=1, H=1, P=24, M=40, E=16, F=8)
    inp = random_inputs(c, shapes, seed=3, dtype="float32")
    ref = execute(c, inp, shapes, dtype="float64")["AV"]
    got = FusedKernel(c, GPUMapping(16, 16, splits=3, dtype="f32"), shapes)(
        **{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    p = np.arange(shapes["P"])
    assert np.all(ref[..., p < 10] == -1) and not np.isnan(ref).any()   # the premise, by the predicate
    assert not np.isnan(got).any()
    assert np.all(got[..., p < 10] == -1)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
