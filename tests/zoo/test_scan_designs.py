"""The library's scan designs (forgetting attention, stick-breaking attention)
against independent torch implementations written from the papers' formulas:
the bias and the stick products are built pair by pair (a sum or product over
j for every (p, m)), never by a scan. Also: op counts linear in the scanned
rank (hand-derived), and the pass counts with their explanations."""
import numpy as np
import pytest
import sympy
import torch

import einsum_ir as ei
from einsum_ir.analysis.counts import op_counts
from einsum_ir.analysis.evaluate import evaluate
from einsum_ir.analysis.passes import passes

B, H, E, F = 2, 3, 5, 4
DT = torch.float64


def qkv(L, seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, n, L, generator=g, dtype=DT) for n in (E, E, F))


def forgetting_ref(Q, K, V, f):
    """Lin et al. 2025, Eq. 4-6: o_p = sum_{m <= p} softmax_m(q_p . k_m + D_pm) v_m,
    D_pm = sum_{m < j <= p} log f_j, built as an explicit sum over j per pair."""
    L = Q.shape[-1]
    j, m, p = (torch.arange(L).view(*s) for s in ((L, 1, 1), (1, L, 1), (1, 1, L)))
    between = ((m < j) & (j <= p)).to(DT)                        # [j, m, p]
    D = torch.einsum("bhj,jmp->bhpm", torch.log(f), between)
    logits = torch.einsum("bhep,bhem->bhpm", Q, K) + D
    causal = torch.arange(L).view(1, L) <= torch.arange(L).view(L, 1)   # [p, m]: m <= p
    w = torch.softmax(logits.masked_fill(~causal, -torch.inf), dim=-1)
    return torch.einsum("bhpm,bhfm->bhfp", w, V)


def stick_breaking_ref(Q, K, V):
    """Tan et al. 2024, Eq. 2-3: A_pm = beta_pm * prod_{m < j < p} (1 - beta_pj),
    beta = sigmoid(q_p . k_m), keys m < p; the product taken over j directly."""
    L = Q.shape[-1]
    beta = torch.sigmoid(torch.einsum("bhep,bhem->bhpm", Q, K))            # [b, h, p, j]
    p, m, j = (torch.arange(L).view(*s) for s in ((L, 1, 1), (1, L, 1), (1, 1, L)))
    between = (m < j) & (j < p)                                          # [p, m, j]
    factors = torch.where(between, 1 - beta[:, :, :, None, :], torch.ones((), dtype=DT))
    A = beta * factors.prod(dim=-1) * (m[..., 0] < p[..., 0]).to(DT)    # [b, h, p, m]
    return torch.einsum("bhpm,bhfm->bhfp", A, V)


def close(out, expected, tol=1e-9):
    expected = expected.numpy()
    assert np.all(np.isfinite(out))
    err = np.abs(out - expected).max() / max(np.abs(expected).max(), 1e-300)
    assert err < tol, err


@pytest.mark.parametrize("L,seed", [(1, 0), (7, 1), (16, 2)])
def test_forgetting_attention_matches_the_paper(L, seed):
    Q, K, V = qkv(L, seed)
    f = torch.sigmoid(torch.randn(B, H, L, generator=torch.Generator().manual_seed(seed + 50), dtype=DT) + 2)
    c = ei.library.load("forgetting-attention")
    out = ei.execute(c, dict(Q=Q.numpy(), K=K.numpy(), V=V.numpy(), FG=f.numpy()), check_domains=True)["AV"]
    close(out, forgetting_ref(Q, K, V, f))


def test_forgetting_gate_of_one_is_causal_softmax():
    """f = 1 forgets nothing: the design is then plain causal attention."""
    L = 9
    Q, K, V = qkv(L, 3)
    one = torch.ones(B, H, L, dtype=DT)
    a = ei.execute(ei.library.load("forgetting-attention"), dict(Q=Q.numpy(), K=K.numpy(), V=V.numpy(),
                                                                 FG=one.numpy()))["AV"]
    b = ei.execute(ei.library.load("cab-self-causal"), dict(Q=Q.numpy(), K=K.numpy(), V=V.numpy()))["AV"]
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("L,seed", [(1, 0), (2, 4), (8, 5), (15, 6)])
def test_stick_breaking_matches_the_paper(L, seed):
    Q, K, V = qkv(L, seed)
    out = ei.execute(ei.library.load("stick-breaking"), dict(Q=Q.numpy(), K=K.numpy(), V=V.numpy()))["AV"]
    close(out, stick_breaking_ref(Q, K, V))


def test_stick_breaking_weights_sum_to_at_most_one():
    """The sticks of a row: sum_m A_pm = 1 - prod_{m < p} (1 - beta_pm) <= 1."""
    L = 10
    Q, K, V = qkv(L, 7)
    c = ei.library.load("stick-breaking")
    A = ei.execute(c, dict(Q=Q.numpy(), K=K.numpy(), V=V.numpy()), keep="all")["A"]       # [b, h, m, p]
    beta = torch.sigmoid(torch.einsum("bhep,bhem->bhmp", Q, K)).numpy()
    left = np.array([[[np.prod(1 - beta[b, h, :p, p]) for p in range(L)] for h in range(H)] for b in range(B)])
    np.testing.assert_allclose(A.sum(axis=2), 1 - left, rtol=1e-12, atol=1e-12)


def test_the_oracle_agrees_on_both_designs():
    L = 5
    Q, K, V = qkv(L, 8)
    f = torch.sigmoid(torch.randn(B, H, L, dtype=DT, generator=torch.Generator().manual_seed(9)))
    from einsum_ir.oracle import evaluate as oracle
    for name, inputs in (("forgetting-attention", dict(Q=Q, K=K, V=V, FG=f)), ("stick-breaking", dict(Q=Q, K=K, V=V))):
        c = ei.library.load(name)
        inputs = {k: v.numpy() for k, v in inputs.items()}
        np.testing.assert_allclose(oracle(c, inputs)["AV"], ei.execute(c, inputs)["AV"], rtol=1e-10, atol=1e-12)


def test_scan_op_counts_are_linear_in_the_scanned_rank():
    """Hand-derived: forgetting's cumsum is one log and one add per key
    (B*H*M each); stick-breaking's suffix scan one add per (m, p) point with
    m < p, i.e. linear in M for each query, where a product over j per pair
    would be cubic. Doubling the sequence doubles the scan work (x2), not x4."""
    fox = ei.library.load("forgetting-attention")
    ops = op_counts(fox)
    env = dict(B=1, H=1, E=4, F=4, P=64, M=64)
    assert {str(s) for s in sympy.sympify(ops["log"]).free_symbols} == {"B", "H", "M"}
    assert evaluate(ops["log"], dict(B=2, H=3, M=64)) == 2 * 3 * 64
    tri = 64 * 65 // 2
    assert evaluate(ops["add"], env) == 64 + 3 * tri       # the scan + the bias, the exp argument, the sum
    sb = ei.library.load("stick-breaking")
    sb_ops = op_counts(sb)
    strict = 64 * 63 // 2
    assert evaluate(sb_ops["add"], env) == 2 * strict           # the scan's add and the exp argument's
    assert evaluate(sb_ops["softplus"], env) == 2 * strict      # softplus and logsigmoid
    big = dict(env, P=128, M=128)
    scan_work = {L: evaluate(op_counts(fox)["add"], dict(env, P=L, M=L)) - 3 * L * (L + 1) // 2 for L in (64, 128)}
    assert scan_work[128] == 2 * scan_work[64]
    assert evaluate(sb_ops["add"], big) == 2 * (128 * 127 // 2)


def test_pass_counts_are_explained():
    fox = passes(ei.library.load("forgetting-attention"), "M")
    assert fox.passes == 2            # the softmax's max (the scan streams: a prefix scan costs no pass)
    text = "\n".join(fox.explain())
    assert "GM <- max over m" in text and "cumsum[m] is a prefix scan along M" in text and "no extra pass" in text
    sb = passes(ei.library.load("stick-breaking"), "M")
    assert sb.passes == 2             # no softmax at all: the pass is the suffix scan's
    text = "\n".join(sb.explain())
    assert "pass 2: Z <- cumsum[m, reverse, exclusive]" in text and "suffix scan" in text


def test_forgetting_attention_compiles_to_a_fused_kernel_with_its_scan_before_the_walk():
    """The scan runs along the keys alone (C[b, h, m]): computed before the
    kernel (B*H*M adds and logs, charged by the GPU model and named in its
    notes); the kernel adds -C[m] to each score tile. Interpreter vs executor."""
    from codegen.runtime import FusedKernel
    from einsum_ir import random_inputs
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.shapes import resolve
    from hw_models.gpu import load_gpu
    from mappers.gpu_mapping import GPUMapping
    from simulator.gpu import predict_fused
    c = ei.library.load("forgetting-attention")
    shapes = dict(B=1, H=2, P=37, E=16, F=8)
    k = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    assert [h.name for h in k.form.hoisted] == ["C"]
    inp = random_inputs(c, shapes, seed=3)
    ref = ei.execute(c, inp, shapes)["AV"]
    out = k(**{n: torch.tensor(v) for n, v in inp.items()}).double().numpy()
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    env = resolve(c, dict(B=1, H=8, P=4096, E=128, F=128))
    pred = predict_fused(recognise(c), GPUMapping(64, 64), load_gpu("h100"), env)
    assert pred.parts["hoisted_s"] > 0
    assert any(n.startswith("materialised before the kernel: C[B, H, M]") for n in pred.notes)


def test_stick_breaking_is_one_walk_over_the_keys_from_the_last_tile_down():
    """The suffix scan runs in the fused kernel's walk with a carry per row
    (the kernel against the paper: tests/codegen/test_scan_walk.py): one walk,
    where the streaming analysis (keys in order) counts 2 passes."""
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tile_program import tile_program
    pp, = tile_program(recognise(ei.library.load("stick-breaking"))).passes
    assert pp.walk == "reverse" and [s.name for s in pp.scans] == ["Z"]
