"""Integer inputs without a domain are drawn as whole numbers: in range of the
rank they index where they are a whole index, else a few small ids, so a
design with a head table or document ids runs on random inputs."""
import numpy as np

import einsum_ir as ei

DESIGN = """
rank B, H, M, P, E, F, KH
input Q[B, H, E, P]: f32
input K[B, KH, E, M]: f32
input V[B, KH, F, M]: f32
input KVH[H]: i32
input DQ[P]: i32
input DK[M]: i32
S[b, h, m, p] = Q[b, h, e, p] * K[b, KVH[h], e, m] where DQ[p] == DK[m]
O[b, h, f, p] = S[b, h, m, p] * V[b, KVH[h], f, m]
"""


def test_integer_inputs_are_whole_and_in_range_of_what_they_index():
    c = ei.parse(DESIGN)
    shapes = dict(B=1, H=16, KH=3, M=40, P=40, E=2, F=2)
    for seed in range(5):
        x = ei.random_inputs(c, shapes, seed=seed)
        for name, hi in (("KVH", 3), ("DQ", 4), ("DK", 4)):
            v = x[name]
            assert np.array_equal(v, np.floor(v)) and v.min() >= 0 and v.max() < hi, (name, v)
        out = ei.execute(c, x)["O"]
        # the executor reads K through the table: recompute with plain numpy
        kk, vv = x["K"][:, x["KVH"].astype(int)], x["V"][:, x["KVH"].astype(int)]
        s = np.einsum("bhep,bhem->bhmp", x["Q"], kk) * (x["DQ"][None, :] == x["DK"][:, None])
        np.testing.assert_allclose(out, np.einsum("bhmp,bhfm->bhfp", s, vv), rtol=1e-12, atol=1e-12)


def test_the_draws_spread_over_the_range():
    c = ei.parse(DESIGN)
    x = ei.random_inputs(c, dict(B=1, H=300, KH=3, M=300, P=300, E=1, F=1), seed=0)
    assert set(np.unique(x["KVH"])) == {0, 1, 2} and set(np.unique(x["DQ"])) == {0, 1, 2, 3}
