"""Unrolling a component rank: the rewritten cascade means the same as the
original (checked by the executor on random inputs), and what cannot be
unrolled is refused with the reason."""
import numpy as np
import pytest

from einsum_ir import execute, parse, random_inputs
from einsum_ir.unroll import MAX_UNROLL, UnrollError, constant_indexed_ranks, unroll, unroll_constant_indices

CASES = [
    # a map per component, a sum and a max over the component, constant reads
    ("""rank C, M, P
input X[C, M, P]: f32
Y[c, p] = max[m] X[c, m, p] where m <= p + c
Z[p] = sum[c] Y[c, p] where c <= 1
W[p] = Z[p] + Y[0, p] - Y[C - 1, p]
""", dict(C=3, M=5, P=4), "W"),
    # a reduction over the component and the keys at once, predicate on both
    ("""rank C, M, P
input X[C, M, P]: f32
T[c, m, p] = exp(X[c, m, p])
S[p] = max[c, m] T[c, m, p] where m + c <= p
W[p] = S[p] * T[1, 0, p]
""", dict(C=2, M=4, P=5), "W"),
]


@pytest.mark.parametrize("text, shapes, out", CASES)
def test_unrolled_cascade_equals_the_original(text, shapes, out):
    c = parse(text)
    assert constant_indexed_ranks(c)[0] == "C"
    u = unroll(c, "C", shapes)
    assert "C" not in {r for t in u.tensors if t.role != "input" for r in t.ranks}
    for seed in range(3):
        x = random_inputs(c, shapes, seed=seed)
        np.testing.assert_allclose(execute(u, x, shapes)[out], execute(c, x, shapes)[out], rtol=1e-12)


def test_what_cannot_be_unrolled_is_refused():
    c = parse("""rank C, P
input X[C, P]: f32
Y[c, p] = X[c, p] * 2
Z[c, p] = Y[c, p] + Y[0, p]
""")
    with pytest.raises(UnrollError, match="the output Z carries it"):
        unroll(c, "C", dict(C=2, P=3))
    c = parse("""rank C, P
input X[C, P]: f32
Y[c, p] = X[c, p] * 2
Z[p] = Y[0, p]
""")
    with pytest.raises(UnrollError, match=f"over {MAX_UNROLL} components"):
        unroll(c, "C", dict(C=MAX_UNROLL + 1, P=3))
    with pytest.raises(UnrollError, match="give C's extent"):
        unroll_constant_indices(c, None)
