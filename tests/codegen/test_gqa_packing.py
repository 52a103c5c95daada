"""GQA and MQA with the query heads of one key head packed into one program
(issue 20): the tile program says which head coordinate packs and by how
much, the generator renders it (rows = query x head of the group, K and V
loaded once per program), the runtime launches one program per KV-head group
(and query block), and the GPU model charges that same grid and block table."""
import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import library
from einsum_ir.analysis.fused import FusedFormError, recognise
from einsum_ir.analysis.tile_program import packed_tile_classes, tile_program
from einsum_ir.analysis.tiles import EMPTY, FULL, PARTIAL, cell_counts
from einsum_ir.execute import execute
from einsum_ir.shapes import resolve
from hw_models.gpu import load_gpu
from hw_models.schema import HardwareError
from mappers.gpu_mapping import GPUMapping
from simulator.calibrate import GENERATED
from simulator.gpu import predict_fused

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from codegen.runtime import FusedKernel  # noqa: E402

GQA_DECODE = """rank B, H, M, E, F
rank KH = H / G
input Q[B, H, E]: f16
input K[B, KH, E, M]: f16
input V[B, KH, F, M]: f16
QK[b, h, m] = Q[b, h, e] * K[b, h / G, e, m]
GM[b, h] = max[m] QK[b, h, m]
SN[b, h, m] = exp(QK[b, h, m] - GM[b, h])
SD[b, h] = SN[b, h, m]
SNV[b, h, f] = SN[b, h, m] * V[b, h / G, f, m]
AV[b, h, f] = SNV[b, h, f] / SD[b, h]
"""


def _design(name: str):
    if name == "gqa-decode":
        return ei.parse(GQA_DECODE, name=name)
    if name in GENERATED:
        return ei.parse(GENERATED[name], name=name)
    return library.load(name)


class _Grids:
    """Records the grid of every launch of a module's kernels."""

    def __init__(self, mod):
        self.seen = []
        for name in ("attnc_fused", "attnc_combine"):
            if hasattr(mod, name):
                setattr(mod, name, self._wrap(name, getattr(mod, name)))

    def _wrap(self, name, fn):
        rec = self

        class Launch:
            def __getitem__(self, grid):
                rec.seen.append((name, tuple(grid)))
                return fn[grid]
        return Launch()


def _run(c, shapes: dict, m: GPUMapping, seed: int = 0):
    """(kernel, output, reference, grids launched) in the interpreter."""
    k = FusedKernel(c, m, shapes)
    env = resolve(c, shapes)
    rng = np.random.default_rng(seed)
    ins = {t.name: rng.standard_normal([env[r] for r in t.ranks]).astype(np.float32) for t in c.inputs}
    ref = execute(c, {n: v.astype(np.float64) for n, v in ins.items()}, shapes)
    tens = {n: torch.tensor(v) for n, v in ins.items()}
    mod, _ = k.module(env)
    grids = _Grids(mod)
    out = k(**tens)
    return k, out.numpy(), ref[c.outputs[0].name] if isinstance(ref, dict) else ref, grids.seen


@pytest.mark.parametrize("design, shapes, m", [
    ("gqa-decode", dict(B=2, H=4, G=2, M=70, E=16, F=16), GPUMapping(16, 16, pack_heads=2, dtype="f32")),
    ("gqa-decode", dict(B=2, H=8, G=4, M=70, E=16, F=16), GPUMapping(16, 16, pack_heads=4, dtype="f32")),
    ("gqa-decode", dict(B=1, H=16, G=8, M=70, E=16, F=16), GPUMapping(16, 32, pack_heads=8, splits=3,
                                                                      dtype="f32")),
    ("gqa-decode", dict(B=1, H=12, G=6, M=40, E=16, F=16), GPUMapping(16, 16, pack_heads=3, dtype="f32")),
    ("mqa", dict(B=2, H=32, P=1, M=45, E=16, F=16), GPUMapping(16, 16, pack_heads=32, dtype="f32")),
    ("mqa", dict(B=1, H=4, P=20, M=45, E=16, F=16), GPUMapping(16, 16, pack_heads=4, dtype="f32")),
    ("gqa", dict(B=1, H=4, G=4, P=40, M=50, E=16, F=16), GPUMapping(32, 16, pack_heads=4, dtype="f32")),
    ("gqa", dict(B=1, H=4, G=2, P=24, M=33, E=16, F=16), GPUMapping(16, 16, pack_heads=2, dtype="f32")),
    ("gqa-causal-br", dict(B=1, H=6, G=3, P=37, M=60, E=16, F=16), GPUMapping(32, 16, pack_heads=3, dtype="f32")),
    ("gqa-causal-br", dict(B=1, H=8, G=4, P=64, M=64, E=16, F=16), GPUMapping(64, 16, pack_heads=4, dtype="f32")),
])
def test_packed_kernel_matches_the_executor_with_one_program_per_kv_head_group(design, shapes, m):
    c = _design(design)
    k, out, ref, grids = _run(c, shapes, m)
    np.testing.assert_allclose(out, ref, rtol=2e-4, atol=2e-5)
    env = resolve(k.cascade, shapes)
    rows = env.get("P", 1) if k.form.query else 1
    heads = env["B"] * env["H"]
    row_tiles = -(-rows * m.pack_heads // m.block_m)
    want = (row_tiles, heads // m.pack_heads, m.splits)
    assert grids[0] == ("attnc_fused", want)                  # heads / pack head blocks: one per KV-head group
    # the model charges the same number of programs
    pred = predict_fused(k.program, k._mapping_for(env), load_gpu("h100"), env)
    assert pred.parts["programs"] == np.prod(want) and pred.parts["pack_heads"] == m.pack_heads


def test_k_and_v_are_loaded_once_per_program_at_the_key_head():
    c = _design("gqa")
    env = resolve(c, dict(B=1, H=8, G=4, P=128, M=128, E=64, F=64))
    k = FusedKernel(c, GPUMapping(64, 64, pack_heads=4), env)
    text = k.source(env).text
    kv = [ln for ln in text.splitlines() if "tl.load(" in ln and ("_K +" in ln or "_V +" in ln)]
    assert kv and all("_h_blk * 4) //" in ln for ln in kv), kv      # the group's key head: one per program
    assert not [ln for ln in kv if "_h[" in ln]                      # never the per-row query head
    q = [ln for ln in text.splitlines() if "tl.load(" in ln and "_Q +" in ln]
    assert q and all("_h[:, None]" in ln for ln in q)                # Q: each row its own head


def _brute_classes(P, M, G, bm, bn):
    """Per packed row tile and key tile of bottom-right causal GQA, from the
    points themselves: rows r -> query min(r, P G - 1) // G."""
    r = np.arange(-(-P * G // bm) * bm)
    p = np.minimum(r, P * G - 1) // G
    mm = np.arange(-(-M // bn) * bn)
    kept = (mm[None, :] <= p[:, None] + M - P) & (mm[None, :] < M)
    t = kept.reshape(len(r) // bm, bm, len(mm) // bn, bn).sum(axis=(1, 3))
    return np.where(t == 0, EMPTY, np.where(t == bm * bn, FULL, PARTIAL))


@pytest.mark.parametrize("P, M, G, bm, bn", [(64, 64, 4, 64, 16), (37, 60, 3, 32, 16), (128, 200, 2, 64, 32),
                                             (100, 100, 8, 128, 64), (48, 96, 2, 32, 32)])
def test_packed_block_table_is_sound_and_exact_at_whole_cells(P, M, G, bm, bn):
    c = _design("gqa-causal-br")
    env = resolve(c, dict(B=1, H=G, G=G, P=P, M=M, E=16, F=16))
    form = recognise(c, env)
    got = packed_tile_classes(cell_counts(form, 0, env), bm, bn, G, P).reshape(-1, -(-M // bn))
    want = _brute_classes(P, M, G, bm, bn)
    assert got.shape == want.shape
    assert np.all(want[got == FULL] == FULL) and np.all(want[got == EMPTY] == EMPTY)    # never unsound
    if (bm // G) % 16 == 0 and P % 16 == 0:        # each tile whole 16-row cells: exact
        np.testing.assert_array_equal(got, want)


def test_packing_halves_key_value_traffic_by_the_group_in_decode():
    form = recognise(_design("gqa-decode"))
    env = resolve(form.cascade, dict(B=4, H=32, G=8, M=16384, E=128, F=128))
    gpu = load_gpu("h100")
    one = predict_fused(form, GPUMapping(16, 64, splits=4), gpu, env)
    packed = predict_fused(form, GPUMapping(16, 64, splits=4, pack_heads=8), gpu, env)
    kv = 2 * 4 * 4 * 16384 * 128 * 2                 # K and V of 4 KV heads x 4 sequences, bf16
    assert packed.hbm_bytes == pytest.approx(kv, rel=0.05)   # K and V once per KV head
    assert one.hbm_bytes > 7 * kv                             # unpacked: once per query head
    assert packed.time_s < one.time_s


def test_packing_refused_where_it_cannot_be_generated():
    with pytest.raises(FusedFormError, match="reads its own keys"):
        FusedKernel(library.load("decode"), GPUMapping(16, 16, pack_heads=2), dict(B=1, H=4, M=64, E=16, F=16)
                    ).source(dict(B=1, H=4, M=64, E=16, F=16))
    c = _design("gqa-decode")
    env = dict(B=1, H=8, G=4, M=64, E=16, F=16)
    with pytest.raises(FusedFormError, match=r"does not divide .*\(G = 4\)"):
        FusedKernel(c, GPUMapping(16, 16, pack_heads=3), env).source(resolve(c, env))
    with pytest.raises(HardwareError, match="does not divide"):       # the model refuses the same mapping
        predict_fused(tile_program(recognise(c)), GPUMapping(16, 16, pack_heads=3), load_gpu("h100"),
                      resolve(c, env))
