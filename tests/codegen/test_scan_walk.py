"""Scans along the keys inside the fused kernel's tile walk (issue 18): the
walk visits the key tiles in the scan's order (last to first for a suffix
scan) and carries, per row, the scan of the tiles already walked. Each
design runs in Triton's interpreter against the reference executor and, for
stick-breaking and the designs written here, against an independent torch
implementation taken from the definitions (products and sums over j pair
by pair, no scan). Lengths are not multiples of the tiles; several tile
shapes. Also: the tile program's walk and carries, the GPU model's charge
of the scan (hand-derived), and what stays refused, with the reason."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from codegen.runtime import FusedKernel
from einsum_ir import execute, library, parse, random_inputs
from einsum_ir.analysis.fused import FusedFormError, recognise
from einsum_ir.analysis.tile_program import WALK_MERGE_INT, tile_program
from einsum_ir.shapes import resolve
from mappers.gpu_mapping import GPUMapping

DT = torch.float64
HEAD = """rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
S[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where {mask}
"""
# stick-breaking served from the first key: A_pm = beta_pm prod_{j < m} (1 - beta_pj), m <= p
PREFIX_STICKS = HEAD.format(mask="m <= p") + """
Z[b, h, m, p] = cumsum[m, exclusive] -softplus(S[b, h, m, p]) where m <= p
A[b, h, m, p] = exp(logsigmoid(S[b, h, m, p]) + Z[b, h, m, p]) where m <= p
AV[b, h, f, p] = A[b, h, m, p] * V[b, h, f, m] where m <= p
"""
# stick-breaking with the product written directly (cumprod, no logs)
PRODUCT_STICKS = HEAD.format(mask="m < p") + """
Z[b, h, m, p] = cumprod[m, reverse, exclusive] (1 - sigmoid(S[b, h, m, p])) where m < p
AV[b, h, f, p] = sigmoid(S[b, h, m, p]) * Z[b, h, m, p] * V[b, h, f, m] where m < p
"""
# an inclusive prefix product: A_pm = beta_pm prod_{j <= m} (1 - beta_pj), m <= p
PREFIX_PRODUCT = HEAD.format(mask="m <= p") + """
Z[b, h, m, p] = cumprod[m] (1 - sigmoid(S[b, h, m, p])) where m <= p
AV[b, h, f, p] = sigmoid(S[b, h, m, p]) * Z[b, h, m, p] * V[b, h, f, m] where m <= p
"""
# a contextual position (CoPE-like): pos_pm = sum_{m <= j <= p} sigmoid(s_pj), a suffix sum, as a
# logit penalty of a causal softmax: the reverse walk with the online normaliser in the same walk
CONTEXT_POSITION = HEAD.format(mask="m <= p") + """
G[b, h, m, p] = cumsum[m, reverse] sigmoid(S[b, h, m, p]) where m <= p
T[b, h, m, p] = S[b, h, m, p] - 0.5 * G[b, h, m, p] where m <= p
GM[b, h, p] = max[m] T[b, h, m, p] where m <= p
SN[b, h, m, p] = exp(T[b, h, m, p] - GM[b, h, p]) where m <= p
SD[b, h, p] = SN[b, h, m, p] where m <= p
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where m <= p
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""
TILES = [GPUMapping(16, 16, dtype="f32"), GPUMapping(32, 16, dtype="f32"), GPUMapping(16, 32, dtype="f32")]


def qkv(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    b, h, p, e, f = (shapes[k] for k in "BHPEF")
    return (torch.randn(b, h, e, p, generator=g, dtype=DT), torch.randn(b, h, e, p, generator=g, dtype=DT),
            torch.randn(b, h, f, p, generator=g, dtype=DT))


def pairs(Q, K):
    """beta[b, h, p, j] = sigmoid(q_p . k_j) and the coordinates p, m, j as [p, m, j] grids."""
    L = Q.shape[-1]
    beta = torch.sigmoid(torch.einsum("bhep,bhej->bhpj", Q, K))
    p, m, j = (torch.arange(L).view(*s) for s in ((L, 1, 1), (1, L, 1), (1, 1, L)))
    return beta, p, m, j


def sticks(beta, keep_j, keep_m):
    """A[b, h, p, m] = beta_pm * prod over j with keep_j[p, m, j] of (1 - beta_pj), where keep_m[p, m]."""
    factors = torch.where(keep_j, 1 - beta[:, :, :, None, :], torch.ones((), dtype=DT))
    return beta * factors.prod(dim=-1) * keep_m.to(DT)


def stick_breaking_ref(Q, K, V):
    """Tan et al. 2024, Eq. 2-3: a_pm = sigmoid(s_pm) prod_{m < j < p} (1 - sigmoid(s_pj)), keys m < p."""
    beta, p, m, j = pairs(Q, K)
    A = sticks(beta, (m < j) & (j < p), m[..., 0] < p[..., 0])
    return torch.einsum("bhpm,bhfm->bhfp", A, V).numpy()


def prefix_sticks_ref(Q, K, V):
    beta, p, m, j = pairs(Q, K)
    A = sticks(beta, (j < m) & (j <= p), m[..., 0] <= p[..., 0])
    return torch.einsum("bhpm,bhfm->bhfp", A, V).numpy()


def prefix_product_ref(Q, K, V):
    beta, p, m, j = pairs(Q, K)
    A = sticks(beta, (j <= m) & (j <= p), m[..., 0] <= p[..., 0])
    return torch.einsum("bhpm,bhfm->bhfp", A, V).numpy()


def context_position_ref(Q, K, V):
    beta, p, m, j = pairs(Q, K)
    pos = (beta[:, :, :, None, :] * ((m <= j) & (j <= p)).to(DT)).sum(-1)        # [b, h, p, m]
    logits = torch.einsum("bhep,bhem->bhpm", Q, K) - 0.5 * pos
    w = torch.softmax(logits.masked_fill(~(m[..., 0] <= p[..., 0]), -torch.inf), dim=-1)
    return torch.einsum("bhpm,bhfm->bhfp", w, V).numpy()


def run(c, shapes, mapping, inputs):
    k = FusedKernel(c, mapping, shapes)
    return k, k(**{n: torch.tensor(np.asarray(v, np.float32)) for n, v in inputs.items()}).double().numpy()


def close(out, ref, tol=1e-4):
    assert np.all(np.isfinite(out))
    err = np.abs(out - ref).max() / np.abs(ref).max()
    assert err <= tol, err


SHAPES = dict(B=1, H=2, P=37, E=16, F=8)


@pytest.mark.parametrize("mapping", TILES, ids=str)
def test_stick_breaking_runs_as_one_reverse_walk_and_matches_the_paper(mapping):
    c = library.load("stick-breaking")
    Q, K, V = qkv(SHAPES, 1)
    inputs = dict(Q=Q.numpy(), K=K.numpy(), V=V.numpy())
    k, out = run(c, SHAPES, mapping, inputs)
    pp, = k.program.passes                               # one walk over the keys, from the last tile down
    assert pp.walk == "reverse" and [s.name for s in pp.scans] == ["Z"]
    close(out, execute(c, inputs, SHAPES)["AV"])
    close(out, stick_breaking_ref(Q, K, V))


# the exclusive product's scan of pairs runs element by element in the interpreter: a smaller shape
SMALL = dict(SHAPES, H=1, P=21)


@pytest.mark.parametrize("text, ref, walk, shapes", [
    (PREFIX_STICKS, prefix_sticks_ref, "forward", SHAPES), (PRODUCT_STICKS, stick_breaking_ref, "reverse", SMALL),
    (PREFIX_PRODUCT, prefix_product_ref, "forward", SHAPES),
    (CONTEXT_POSITION, context_position_ref, "reverse", SHAPES)],
    ids=["prefix-sum", "suffix-product", "prefix-product", "suffix-sum-under-softmax"])
def test_designs_written_here_match_their_definitions(text, ref, walk, shapes):
    c = parse(text, "scan_walk.ein")
    Q, K, V = qkv(shapes, 2)
    inputs = dict(Q=Q.numpy(), K=K.numpy(), V=V.numpy())
    k, out = run(c, shapes, TILES[0] if shapes is SMALL else TILES[1], inputs)
    assert [pp.walk for pp in k.program.passes] == [walk]
    close(out, execute(c, inputs, shapes)["AV"])
    close(out, ref(Q, K, V))


def test_the_online_normaliser_and_the_scan_share_one_walk():
    """CONTEXT_POSITION: the max, the rescaled sums and the suffix scan in one
    pass; the scan's terms read no running statistic, so nothing is rescaled
    under it."""
    pp, = tile_program(recognise(parse(CONTEXT_POSITION, "x.ein"))).passes
    assert [n.name for n in pp.normalise] == ["GM"] and [s.name for s in pp.scans] == ["G"]


def test_a_scan_of_a_previous_pass_statistic_walks_in_the_later_pass():
    """The terms exp(S - GM) read GM, final after pass 0: the scan runs in pass
    1 (reverse), and the sum that reads it is not moved into pass 0's online
    form (its carry would hold terms under an old GM)."""
    c = parse(HEAD.format(mask="m <= p") + """
GM[b, h, p] = max[m] S[b, h, m, p] where m <= p
Z[b, h, m, p] = cumsum[m, reverse, exclusive] exp(S[b, h, m, p] - GM[b, h, p]) where m <= p
AV[b, h, f, p] = exp(S[b, h, m, p] - GM[b, h, p]) / (1 + Z[b, h, m, p]) * V[b, h, f, m] where m <= p
""", "x.ein")
    shapes = dict(SHAPES, P=29)
    inputs = random_inputs(c, shapes, seed=4, dtype="float32")
    k, out = run(c, shapes, TILES[0], inputs)
    assert [pp.walk for pp in k.program.passes] == ["any", "reverse"]
    close(out, execute(c, inputs, shapes)["AV"])


def test_a_scan_with_no_mask_takes_the_keys_the_reduction_leaves_out():
    """Z sums over every key (no predicate), AV only over m <= p: the walk
    skips no tile (the keys past p still add to the suffix), and a partial
    tile's padding past M adds nothing."""
    c = parse(HEAD.format(mask="m <= p") + """
Z[b, h, m, p] = cumsum[m, reverse] sigmoid(S[b, h, m, p])
AV[b, h, f, p] = exp(-Z[b, h, m, p]) * V[b, h, f, m] where m <= p
""", "x.ein")
    inputs = random_inputs(c, SHAPES, seed=5, dtype="float32")
    k, out = run(c, SHAPES, TILES[2], inputs)
    assert None in k.form.predicates(0)                 # a pass with an unmasked statement skips nothing
    close(out, execute(c, inputs, SHAPES)["AV"])


@pytest.mark.parametrize("walk, w", [("reverse", 40), ("forward", 47)])
def test_a_window_skips_empty_tiles_and_interleaves_partial_and_full_ones(walk, w):
    """A causal window: far-left key tiles are empty (never visited) and each
    row tile's visited tiles are partial at both edges with full ones
    between, so the merged walk alternates between the table's two lists."""
    scan = "cumsum[m, reverse, exclusive]" if walk == "reverse" else "cumsum[m, exclusive]"
    mask = f"m <= p and p - m <= {w}"
    c = parse(HEAD.format(mask=mask) + f"""
Z[b, h, m, p] = {scan} -softplus(S[b, h, m, p]) where {mask}
AV[b, h, f, p] = exp(logsigmoid(S[b, h, m, p]) + Z[b, h, m, p]) * V[b, h, f, m] where {mask}
""", "x.ein")
    shapes = dict(SHAPES, H=1, P=90)
    inputs = random_inputs(c, shapes, seed=6, dtype="float32")
    k, out = run(c, shapes, TILES[0], inputs)
    assert k.program.passes[0].walk == walk
    (full_cnt, _, part_cnt, _), _, kt = k.tables(resolve(c, shapes), None, "cpu")[0]
    assert int((full_cnt + part_cnt).max()) < kt and int(full_cnt.max()) >= 1     # skipped tiles, and full ones
    close(out, execute(c, inputs, shapes)["AV"])


def test_split_kv_is_not_used_for_a_walk_that_carries_a_scan():
    """The carry runs through every key tile in order: a split mapping runs
    (and is predicted) unsplit."""
    c = library.load("stick-breaking")
    shapes = dict(SHAPES, P=20)
    inputs = random_inputs(c, shapes, seed=7, dtype="float32")
    k, out = run(c, shapes, GPUMapping(16, 16, splits=4, dtype="f32"), inputs)
    assert not k.form.splittable and k.source(resolve(c, shapes)).splits == 1
    close(out, execute(c, inputs, shapes)["AV"])
    from hw_models.gpu import load_gpu
    from simulator.gpu import predict_fused
    env = resolve(c, dict(B=1, H=2, P=512, E=64, F=64))
    split, whole = (predict_fused(k.program, GPUMapping(64, 64, splits=s), load_gpu("h100"), env) for s in (4, 1))
    assert split.mapping.splits == 1 and split.time_s == whole.time_s


def test_the_gpu_model_charges_the_scan_hand_derived():
    """Per tile, an exclusive suffix sum costs 3 adds per point (the local
    scan, the carry, the tile's total), 2 selects (the previous key's value,
    the first key's 0), one add per row (the carry's update), 2 integer
    operations per key (the previous key's column), and the walk's merge 7
    scalar integer operations: the model's work with the scans minus the
    same program without them."""
    from hw_models.gpu import load_gpu
    from simulator.gpu import predict_fused, tile_work
    c = library.load("stick-breaking")
    env = resolve(c, dict(B=1, H=4, P=1000, E=64, F=64))
    program = tile_program(recognise(c))
    bare = replace(program, passes=tuple(replace(pp, scans=(), walk="any") for pp in program.passes))
    m = GPUMapping(64, 32)
    w, w0 = tile_work(program, 0, m, env), tile_work(bare, 0, m, env)
    assert w.fp32_full - w0.fp32_full == 5 * 64 * 32 + 64
    assert w.fp32_partial - w0.fp32_partial == 5 * 64 * 32 + 64
    assert w.int_full - w0.int_full == WALK_MERGE_INT + 2 * 32
    h100 = load_gpu("h100")
    pred, pred0 = predict_fused(program, m, h100, env), predict_fused(bare, m, h100, env)
    tiles = pred.parts["tiles_full"] + pred.parts["tiles_partial"]
    extra = pred.work["fp32_ops"] - pred0.work["fp32_ops"]      # the merge's integer work may issue as fp32 slots
    assert tiles * (5 * 64 * 32 + 64) <= extra <= tiles * (5 * 64 * 32 + 64 + 2 * (WALK_MERGE_INT + 2 * 32))
    assert pred.time_s > pred0.time_s and pred.parts["tiles_skipped"] > 0
    assert any(n.startswith("a scan carried in the walk: Z = cumsum[m, reverse, exclusive] along the keys; pass 0 "
                            "visits its key tiles from the last down") for n in pred.notes)


def test_opposite_scans_in_one_walk_are_refused_by_name():
    c = parse(HEAD.format(mask="m < p") + """
Z[b, h, m, p] = cumsum[m, reverse] sigmoid(S[b, h, m, p]) where m < p
Y[b, h, m, p] = cumsum[m] sigmoid(S[b, h, m, p]) where m < p
AV[b, h, f, p] = exp(-Z[b, h, m, p] - Y[b, h, m, p]) * V[b, h, f, m] where m < p
""", "x.ein")
    with pytest.raises(FusedFormError, match=r"Z: cumsum\[m, reverse\] \(a suffix scan\) and Y's cumsum\[m\]") as e:
        recognise(c)
    assert e.value.loc.line == 8


def test_a_scan_along_the_query_rank_stays_refused():
    c = parse(HEAD.format(mask="m <= p") + """
Z[b, h, m, p] = cumsum[p] sigmoid(S[b, h, m, p]) where m <= p
AV[b, h, f, p] = Z[b, h, m, p] * V[b, h, f, m] where m <= p
""", "x.ein")
    with pytest.raises(FusedFormError, match=r"Z: cumsum\[p\] along the query rank .*other programs' values"):
        recognise(c)


@pytest.mark.parametrize("op, term", [("cumsum", "log(select(S[b, h, m, p] > 1, 0, sigmoid(S[b, h, m, p])))"),
                                      ("cumprod", "select(S[b, h, m, p] > 1, 0, 1.5 - sigmoid(S[b, h, m, p]))")],
                         ids=["infinite-terms", "zero-factors"])
@pytest.mark.parametrize("flags", ["reverse, exclusive", "exclusive"])
def test_exclusive_scans_are_exact_where_a_term_is_infinite_or_zero(op, term, flags):
    """An exclusive scan leaves x out without arithmetic on it: `inclusive
    - x` would be NaN where x = -inf (log 0), `inclusive / x` where x = 0."""
    comb = "exp(Z[b, h, m, p])" if op == "cumsum" else "Z[b, h, m, p]"
    c = parse(HEAD.format(mask="m <= p") + f"""
Z[b, h, m, p] = {op}[m, {flags}] {term} where m <= p
AV[b, h, f, p] = {comb} * sigmoid(S[b, h, m, p]) * V[b, h, f, m] where m <= p
""", "x.ein")
    inputs = random_inputs(c, SMALL, seed=8, dtype="float32")
    ref = execute(c, inputs, SMALL)["AV"]
    assert np.all(np.isfinite(ref))
    _, out = run(c, SMALL, TILES[0], inputs)
    close(out, ref)


def test_the_mapping_search_offers_no_split_for_a_carried_walk():
    """Few programs (one short sequence) would make the search try split-KV,
    which a carried walk cannot use: it is not offered (a prediction with
    splits would be of a kernel that does not run)."""
    from hw_models.gpu import load_gpu
    from mappers.gpu_search import candidates
    h100 = load_gpu("h100")
    for name, split in (("stick-breaking", False), ("cab-self-causal", True)):
        form = recognise(library.load(name))
        env = resolve(form.cascade, dict(B=1, H=2, P=1024, E=64, F=64))
        assert any(m.splits > 1 for m in candidates(form, h100, env)) == split, name


DECODE = """rank B, H, M, E, F
input Q[B, H, E]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
S[b, h, m] = Q[b, h, e] * K[b, h, e, m]
Z[b, h, m] = cumsum[m, reverse, exclusive] -softplus(S[b, h, m])
AV[b, h, f] = exp(logsigmoid(S[b, h, m]) + Z[b, h, m]) * V[b, h, f, m]
"""
GQA = """rank B, H, P, E, F
rank M = P
rank KH = H / G
input Q[B, H, E, P]: f32
input K[B, KH, E, M]: f32
input V[B, KH, F, M]: f32
S[b, h, m, p] = Q[b, h, e, p] * K[b, h / G, e, m] where m < p
Z[b, h, m, p] = cumsum[m, reverse, exclusive] -softplus(S[b, h, m, p]) where m < p
AV[b, h, f, p] = exp(logsigmoid(S[b, h, m, p]) + Z[b, h, m, p]) * V[b, h / G, f, m] where m < p
"""


@pytest.mark.parametrize("text, shapes, mapping", [
    (DECODE, dict(B=1, H=2, M=40, E=16, F=8), TILES[0]),
    (GQA, dict(B=1, H=4, G=2, P=30, E=16, F=8), GPUMapping(16, 16, pack_heads=2, dtype="f32"))],
    ids=["decode", "gqa-packed"])
def test_a_carried_walk_for_one_query_and_for_packed_heads(text, shapes, mapping):
    """Decode (one query: the scan over the keys alone, still a tile of the
    walk since it reads the scores) and GQA with two query heads packed as
    rows of one program (each row its own carry)."""
    c = parse(text, "x.ein")
    inputs = random_inputs(c, shapes, seed=9, dtype="float32")
    k, out = run(c, shapes, mapping, inputs)
    assert k.program.passes[0].walk == "reverse"
    close(out, execute(c, inputs, shapes)["AV"])


NESTED = HEAD.format(mask="m <= p").replace("rank B, H, P, E, F", "rank B, H, P, E, F, D") + """input W[H, D]: f32
Z1[b, h, m, p] = cumsum[m, reverse] sigmoid(S[b, h, m, p]) where m <= p
Z2[b, h, m, p] = cumsum[m, reverse, exclusive] 0.1 * Z1[b, h, m, p] where m <= p
AV[b, h, f, p] = exp(-Z2[b, h, m, p] * W[h, 0]) * V[b, h, f, m] where m <= p
"""
IN_TILE = HEAD.format(mask="m <= p").replace("rank B, H, P, E, F", "rank B, H, P, E, F, D") + """input W[H, D]: f32
Z[b, h, m, p] = cumsum[m] W[h, d] * sigmoid(S[b, h, m, p] + d) where m <= p
AV[b, h, f, p] = exp(-0.1 * Z[b, h, m, p]) * V[b, h, f, m] where m <= p
"""


@pytest.mark.parametrize("text, walk", [(NESTED, "reverse"), (IN_TILE, "forward")], ids=["nested", "in-tile-sum"])
def test_a_scan_of_a_scan_and_a_scan_after_an_in_tile_reduction(text, walk):
    """Z2 scans Z1 (both carried in one reverse walk, Z1 first); Z sums over
    d inside the tile, then scans along the keys."""
    c = parse(text, "x.ein")
    shapes = dict(B=1, H=2, P=37, E=16, F=8, D=3)
    inputs = random_inputs(c, shapes, seed=10, dtype="float32")
    k, out = run(c, shapes, TILES[0], inputs)
    assert [pp.walk for pp in k.program.passes] == [walk]
    close(out, execute(c, inputs, shapes)["AV"])
