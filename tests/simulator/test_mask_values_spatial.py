"""The spatial model's tile skipping for masks that read tensors: with the
tensors' values (attnc's --inputs) a tile with no kept point is skipped and
one with some is computed whole, counted here against plain loops over the
tiles; without them the kept points are charged and the report says why."""
import numpy as np
import pytest

import einsum_ir as ei
from simulator.skipping import mask_values, visited_factor

DATA_MASK = """rank M, P, E
input Q[E, P]: f16
input K[E, M]: f16
input MK[M, P]: f16
output S[M, P]: f16
S[m, p] = Q[e, p] * K[e, m] where MK[m, p] > 0 and m <= p
"""

DOCUMENT = """rank B, P, E
rank M = P
input Q[B, E, P]: f16
input K[B, E, M]: f16
input DOC[B, P]: i32
output S[B, M, P]: f16
S[b, m, p] = Q[b, e, p] * K[b, e, m] where DOC[b, p] == DOC[b, m] and m <= p
"""


def by_loops(keep: np.ndarray, grains: tuple) -> float:
    """Visited / kept points, tile by tile (edge tiles clipped)."""
    visited = 0
    for start in np.ndindex(*[-(-n // g) for n, g in zip(keep.shape, grains)]):
        sl = tuple(slice(i * g, (i + 1) * g) for i, g in zip(start, grains))
        if keep[sl].any():
            visited += keep[sl].size
    return visited / keep.sum()


def test_without_values_the_kept_points_are_charged_and_the_tensor_named():
    c = ei.parse(DATA_MASK, name="data-mask")
    assert visited_factor(c, c.einsums[0], dict(M=64, P=64, E=8), {"m": 16, "p": 16}) == \
        (1.0, "the predicate reads MK, whose values are not given (--inputs)")


@pytest.mark.parametrize("grain", [(16, 16), (8, 32), (64, 5)])
def test_with_values_a_tile_without_a_kept_point_is_skipped(grain):
    c = ei.parse(DATA_MASK, name="data-mask")
    rng = np.random.default_rng(1)
    mk = (rng.random((60, 60)) < 0.02).astype(np.float16)
    mk[:20, :20] = 1                           # one dense corner, the rest sparse
    keep = (mk > 0) & (np.arange(60)[:, None] <= np.arange(60)[None, :])     # [m, p]
    with mask_values({"MK": mk}):
        factor, why = visited_factor(c, c.einsums[0], dict(M=60, P=60, E=8), {"m": grain[0], "p": grain[1]})
    assert why is None
    assert factor == pytest.approx(by_loops(keep, grain))
    assert factor > 1


def test_a_document_mask_is_tiled_per_sequence():
    """Three variables (b, p, m): b is not an axis of the array (a grain of
    1), so each sequence's documents are tiled on their own."""
    c = ei.parse(DOCUMENT, name="document")
    rng = np.random.default_rng(2)
    doc = np.sort(rng.integers(0, 5, size=(3, 70)), axis=1).astype(np.int32)
    p = np.arange(70)
    keep = (doc[:, :, None] == doc[:, None, :]) & (p[None, None, :] <= p[None, :, None])    # [b, p, m]
    with mask_values({"DOC": doc}):
        factor, why = visited_factor(c, c.einsums[0], dict(B=3, P=70, M=70, E=8), {"p": 16, "m": 16})
    assert why is None
    assert factor == pytest.approx(by_loops(keep, (1, 16, 16)))


def test_new_values_give_a_new_count_and_leaving_the_context_forgets_them():
    c = ei.parse(DATA_MASK, name="data-mask")
    env, grain = dict(M=32, P=32, E=8), {"m": 16, "p": 16}
    one = np.zeros((32, 32), np.float16)
    one[0, 31] = 1                                   # one kept point: one tile of 256 points
    many = one.copy()
    many[20, 20] = 1                                 # and one more in another tile
    with mask_values({"MK": one}):
        assert visited_factor(c, c.einsums[0], env, grain) == (256.0, None)
    with mask_values({"MK": many}):
        assert visited_factor(c, c.einsums[0], env, grain) == (256.0, None)     # 512 points for 2 kept
    many[21, 21] = 1
    with mask_values({"MK": many}):
        assert visited_factor(c, c.einsums[0], env, grain) == (512 / 3, None)
    assert visited_factor(c, c.einsums[0], env, grain)[1].startswith("the predicate reads MK")


def test_a_predicate_over_a_computed_tensor_is_charged_its_kept_points_and_says_why():
    c = ei.parse("""rank M, P, E
input Q[E, P]: f16
input K[E, M]: f16
input MK[M, P]: f16
output S[M, P]: f16
T[m, p] = MK[m, p] * 2
S[m, p] = Q[e, p] * K[e, m] where T[m, p] > 0
""", name="computed-mask")
    with mask_values({"MK": np.ones((8, 8), np.float16)}):
        assert visited_factor(c, c.einsums[1], dict(M=8, P=8, E=8), {"m": 4, "p": 4}) == \
            (1.0, "the predicate reads T, computed by the cascade")


def test_a_bool_mask_given_as_bytes_keeps_every_nonzero_point():
    """A bool mask read from an image-style file (0 and 255, uint8) keeps
    the same points as the bool array: three kept points, [0, 31] in one
    16 x 16 tile and [20, 20], [21, 21] in another: 2 x 256 visited / 3 kept."""
    c = ei.parse("""rank M, P, E
input Q[E, P]: f16
input K[E, M]: f16
input MK[M, P]: bool
output S[M, P]: f16
S[m, p] = Q[e, p] * K[e, m] where MK[m, p]
""", name="bool-mask")
    env, grain = dict(M=32, P=32, E=8), {"m": 16, "p": 16}
    keep = np.zeros((32, 32), bool)
    keep[0, 31] = keep[20, 20] = keep[21, 21] = True
    for given in (keep, keep.astype(np.uint8) * 255, keep * 3.0):
        with mask_values({"MK": given}):
            assert visited_factor(c, c.einsums[0], env, grain) == (2 * 256 / 3, None)


def test_a_grid_too_large_to_evaluate_is_charged_its_kept_points_and_says_its_size():
    c = ei.parse(DATA_MASK, name="data-mask")
    with mask_values({"MK": np.ones((8, 8), np.float16)}):
        got = visited_factor(c, c.einsums[0], dict(M=1 << 14, P=1 << 13, E=8), {"m": 16, "p": 16})
    assert got == (1.0, "its grid of 134,217,728 points is too large to evaluate")


def test_a_masks_grid_is_evaluated_once_for_the_same_shapes_and_values(monkeypatch):
    """A mapping search asks for the same mask's grid thousands of times:
    it is evaluated once per (cascade, predicate, shapes, values) and then
    reused; new values are evaluated afresh."""
    import simulator.skipping as S
    calls = []
    real = S._Evaluator

    class Counting(real):
        def __init__(self, *a, **kw):
            calls.append(1)
            super().__init__(*a, **kw)
    monkeypatch.setattr(S, "_Evaluator", Counting)
    c = ei.parse(DATA_MASK, name="data-mask")
    env, mk = dict(M=32, P=32, E=8), np.eye(32, dtype=np.float16)
    with mask_values({"MK": mk}):
        first = visited_factor(c, c.einsums[0], env, {"m": 16, "p": 16})
        assert visited_factor(c, c.einsums[0], env, {"m": 8, "p": 8}) != first      # another grain, the same grid
    assert len(calls) == 1
    with mask_values({"MK": mk[::-1].copy()}):
        visited_factor(c, c.einsums[0], env, {"m": 16, "p": 16})
    assert len(calls) == 2
