"""Gathers in generated kernels (Triton's interpreter): a paged KV cache (the
key and value tiles gathered through the page table in the tile walk), a
document mask with per-document offsets (`OFF[DOC[m]]` in the predicate),
and a query-head -> KV-head table in the fused and chunked kernels, each
against plain numpy; a gathered load out of range at a point that exists is
flagged by the kernel itself and raised (never clipped); the GPU model
charges the index tile at its integer width."""
import numpy as np
import pytest
import torch

import codegen.runtime as runtime
from codegen.runtime import ChunkedKernel, FusedKernel, GatherRangeError
from einsum_ir import ExecutionError, parse, random_inputs
from mappers.gpu_mapping import GPUMapping
from simulator.gpu import traffic
from tests.einsum_ir.test_gathers import (PAGED, _contiguous_paged, _doc_inputs, _numpy_doc, _numpy_paged,
                                          _paged_inputs)

MAPPING = GPUMapping(16, 16, dtype="f32")
INTEGER = ("PAGE", "LEN", "DOC", "OFF", "KVH")


def _torch(x):
    """Index tensors as int32 (as a caller holds a page table), values as float32."""
    return {n: torch.tensor(v, dtype=torch.int32 if n in INTEGER else torch.float32) for n, v in x.items()}


@pytest.mark.parametrize("splits", [1, 2])
def test_paged_kv_kernel_matches_numpy(splits):
    """Pages in a random order, M not a multiple of the page or the key tile,
    -1 entries past each sequence's length (never read: the mask removes them)."""
    c, shapes, x = _paged_inputs(0, lengths=(21, 6), ps=8, pool=6, H=1, P=2, E=16, F=16)
    out = FusedKernel(c, GPUMapping(16, 16, splits=splits, dtype="f32"), shapes)(**_torch(x))
    assert np.allclose(out.double().numpy(), _numpy_paged(x, shapes), atol=2e-5)


def test_document_mask_kernel_matches_numpy():
    c, shapes, x = _doc_inputs(1, m=37, nd=4)
    shapes.update(E=16, F=16)
    x.update({k: v for k, v in random_inputs(c, shapes, seed=1).items() if k in ("Q", "K", "V")})
    out = FusedKernel(c, MAPPING, shapes)(**_torch(x))
    assert np.allclose(out.double().numpy(), _numpy_doc(x, shapes), atol=2e-5)


def test_the_kernel_flags_an_out_of_range_page(monkeypatch):
    """The kernel's own check, without the executor that names the point."""
    c, shapes, x = _paged_inputs(2, lengths=(21, 13), ps=8, pool=6, H=1, P=2, E=16, F=16)
    kernel = FusedKernel(c, MAPPING, shapes)
    x["PAGE"][0, 1] = shapes["S"] // shapes["PS"] + 3              # a live page past the pool

    def unlocated(c, shapes, inputs, err):
        raise err
    monkeypatch.setattr(runtime, "_locate_gather", unlocated)
    with pytest.raises(GatherRangeError, match=r"(KC|VC)\[h, [ef], PAGE\[b, m / PS\] \* PS \+ m % PS\] \(Einsum "
                                               r"(QK|SNV)\)"):
        kernel(**_torch(x))


def test_an_out_of_range_page_is_located_by_the_executor():
    c, shapes, x = _paged_inputs(2, lengths=(21, 13), ps=8, pool=6, H=1, P=2, E=16, F=16)
    x["PAGE"][1, 1] = -2                                            # sequence 1 has 13 keys: page 1 is live
    with pytest.raises(ExecutionError, match=r"below 0, at b=1, h=0, m=8"):
        FusedKernel(c, MAPPING, shapes)(**_torch(x))


HEADS = """\
rank B, H, M, P, E, F, KH
input Q[B, H, E, P]: f32
input K[B, KH, E, M]: f32
input V[B, KH, F, M]: f32
input KVH[H]: i32
"""
SOFTMAX = HEADS + """\
QK[b, h, m, p] = Q[b, h, e, p] * K[b, KVH[h], e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
AV[b, h, f, p] = SN[b, h, m, p] * V[b, KVH[h], f, m] / SD[b, h, p]
"""
LINEAR = HEADS + """\
PK[b, h, e, m] = exp(K[b, KVH[h], e, m])
KV[b, h, e, f] = PK[b, h, e, m] * V[b, KVH[h], f, m]
KS[b, h, e] = PK[b, h, e, m]
NUM[b, h, f, p] = exp(Q[b, h, e, p]) * KV[b, h, e, f]
DEN[b, h, p] = exp(Q[b, h, e, p]) * KS[b, h, e]
AV[b, h, f, p] = NUM[b, h, f, p] / DEN[b, h, p]
"""


def _numpy_heads(x, linear):
    k, v = x["K"][:, x["KVH"].astype(int)], x["V"][:, x["KVH"].astype(int)]     # [B, H, E, M], [B, H, F, M]
    if linear:
        num = np.einsum("bhep,bhem,bhfm->bhfp", np.exp(x["Q"]), np.exp(k), v)
        return num / np.einsum("bhep,bhem->bhp", np.exp(x["Q"]), np.exp(k))[:, :, None]
    s = np.einsum("bhep,bhem->bhmp", x["Q"], k)
    w = np.exp(s - s.max(2, keepdims=True))
    return np.einsum("bhmp,bhfm->bhfp", w / w.sum(2, keepdims=True), v)


@pytest.mark.parametrize("linear", [False, True])
def test_head_table_gather_in_fused_and_chunked_kernels(linear):
    c = parse(LINEAR if linear else SOFTMAX)
    shapes = dict(B=1, H=3, KH=2, M=21, P=19 if linear else 9, E=16, F=16)   # chunked: sequences past E, F
    x = random_inputs(c, shapes, seed=4)
    x["Q"], x["K"] = x["Q"] * 0.3, x["K"] * 0.3
    x["KVH"] = np.array([1.0, 0.0, 1.0])
    kernel = (ChunkedKernel if linear else FusedKernel)(c, MAPPING, shapes)
    assert np.allclose(kernel(**_torch(x)).double().numpy(), _numpy_heads(x, linear), rtol=1e-4, atol=1e-5)
    x["KVH"][1] = 2                                                  # no KV head 2
    with pytest.raises(ExecutionError, match=r"KVH\[h\] = 2 is past the end"):
        kernel(**_torch(x))


def test_gpu_model_charges_the_page_table_at_its_width():
    """Per key tile the paged kernel loads what the contiguous one does, plus
    one int32 page entry per key (PAGE[b, m / PS], 4 bytes, not the mapping's 2)."""
    shapes = dict(B=2, H=4, M=512, P=16, E=64, F=64, S=1024, NB=32, PS=16)
    m = GPUMapping(16, 64, dtype="bf16")
    paged = FusedKernel(parse(PAGED), m, shapes).program
    plain = FusedKernel(_contiguous_paged(), m, shapes).program
    t_paged, t_plain = traffic(paged, 0, m, shapes), traffic(plain, 0, m, shapes)
    assert t_paged.key_tile - t_plain.key_tile == m.block_n * 4


LAST_DOC = """rank B, H, M, P, E, F, ND
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input DOC[M]: i32
input OFF[ND]: i32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where m >= OFF[DOC[M - 1]]
GM[b, h, p] = max[m] QK[b, h, m, p] where m >= OFF[DOC[M - 1]]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where m >= OFF[DOC[M - 1]]
SD[b, h, p] = SN[b, h, m, p] where m >= OFF[DOC[M - 1]]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where m >= OFF[DOC[M - 1]]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def test_a_gather_at_a_constant_position_in_the_kernel():
    """Every query sees the keys of the last token's document (from its
    offset on): OFF[DOC[M - 1]] is one number per launch, read by each tile
    as a gather (a soundness seed, 7003, found the kernel failing to
    compile it). Against numpy; an offset past the end is flagged."""
    c = parse(LAST_DOC, name="last-doc")
    shapes = dict(B=1, H=2, M=37, P=5, E=16, F=16, ND=3)
    x = random_inputs(c, shapes, seed=4)
    x["DOC"] = np.repeat(np.arange(3), [10, 15, 12]).astype(np.int64)
    x["OFF"] = np.array([0, 10, 25])
    s = np.einsum("bhep,bhem->bhmp", x["Q"], x["K"])
    s = np.where(np.arange(37)[:, None] >= 25, s, -np.inf)
    w = np.exp(s - s.max(axis=2, keepdims=True))
    want = np.einsum("bhmp,bhfm->bhfp", w / w.sum(axis=2, keepdims=True), x["V"])
    kernel = FusedKernel(c, MAPPING, shapes)
    assert np.allclose(kernel(**_torch(x)).double().numpy(), want, atol=2e-5)
    x["OFF"][2] = 40
    x["DOC"][-1] = 3
    with pytest.raises(ExecutionError, match="OFF"):
        kernel(**_torch(x))
