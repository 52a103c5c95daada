"""The candidate space of the fastest kernels (128-row tiles, 8 warps, 3-4
stages on Hopper) ranked apart by the GPU model (issue 20): warps and stages
change the prediction through terms with a physical reason (shared-memory
operand reads per warp or warpgroup, the streams that can overlap one
another's softmax, the latency a deeper pipeline hides), so distinct
candidates never tie."""
import itertools

import pytest

from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.analysis.tile_program import tile_program
from einsum_ir.shapes import resolve
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping, footprint
from mappers.gpu_search import shortlist
from simulator.gpu import predict_fused, smem_operand_bytes, streams


@pytest.mark.parametrize("hw", ["h100", "a100"])
@pytest.mark.parametrize("design, shapes", [
    ("cab-self", dict(B=4, H=16, P=4096, E=128, F=128)),
    ("cab-self-causal", dict(B=2, H=16, P=8192, E=64, F=64)),
    ("cab-self", dict(B=2, H=8, P=4096, E=256, F=256)),
])
def test_distinct_candidates_never_tie(hw, design, shapes):
    form = recognise(library.load(design))
    env = resolve(form.cascade, shapes)
    preds = shortlist(form, load_gpu(hw), env, top=10 ** 6)
    assert len({p.mapping for p in preds}) == len(preds) >= 8
    times = sorted(p.time_s for p in preds)
    gaps = [b / a - 1 for a, b in zip(times, times[1:])]
    assert min(gaps) > 1e-9, "two distinct mappings predicted the same time"
    if hw == "h100" and shapes["E"] <= 128:           # the fastest kernels' space is searched and fits
        got = {(p.mapping.block_m, p.mapping.warps, p.mapping.stages) for p in preds}
        assert {(128, 8, 3), (128, 8, 4)} <= got


def test_what_warps_and_stages_change_by_hand():
    form = recognise(library.load("cab-self"))
    prog = tile_program(form)
    env = resolve(form.cascade, dict(B=1, H=8, P=2048, E=128, F=128))
    kv = 64 * (128 + 128) * 2                              # one K and one V tile of 64 keys, bf16
    q = 128 * 128 * 2
    # mma.sync: every warp reads the whole K and V tiles
    assert smem_operand_bytes(prog, 0, GPUMapping(128, 64, 8), env, "mma") == 8 * kv
    # wgmma: two warpgroups split 128 rows (K and V twice, Q once); over 64 rows they split the columns
    assert smem_operand_bytes(prog, 0, GPUMapping(128, 64, 8), env, "wgmma") == 2 * kv + q
    assert smem_operand_bytes(prog, 0, GPUMapping(64, 64, 8), env, "wgmma") == kv + 2 * (64 * 128 * 2)
    assert streams(GPUMapping(128, 64, 8), "mma") == 8 and streams(GPUMapping(128, 64, 8), "wgmma") == 2
    # a deeper pipeline at the same occupancy never predicts slower
    h100 = load_gpu("h100")
    for bn, w in itertools.product((32, 64), (4, 8)):
        ms = [GPUMapping(128, bn, w, s) for s in (2, 3, 4)]
        ok = [m for m in ms if _fits(form, m, env, h100)]
        per = {footprint(form, m, env, h100).blocks_per_sm for m in ok}
        if len(ok) > 1 and len(per) == 1:
            t = [predict_fused(prog, m, h100, env).time_s for m in ok]
            assert t == sorted(t, reverse=True) and t[0] > t[-1]


def _fits(form, m, env, gpu) -> bool:
    try:
        footprint(form, m, env, gpu)
        return True
    except Exception:
        return False


def test_row_tiles_launch_last_first_in_the_kernel_and_the_model():
    """A causal head's last row tiles visit the most key tiles: the kernel
    launches them first (its launch order table) and the model schedules the
    same order (longest first fills a partial last wave with short programs)."""
    import numpy as np
    from codegen.runtime import FusedKernel
    from simulator.gpu import _schedule
    c = library.load("cab-self-causal")
    shapes = dict(B=1, H=2, P=1024, E=64, F=64)
    kernel = FusedKernel(c, GPUMapping(128, 64), shapes)
    env = resolve(kernel.cascade, shapes)
    assert "tl.load(launch_order + " in kernel.source(env).text
    order = kernel.launch_order(env, None, "cpu").numpy()
    rows = 1024 // 128                            # both heads' last row tile first, then the next...
    assert order.tolist() == [h * rows + m for m in range(rows - 1, -1, -1) for h in range(2)]
    work = np.arange(1, 17, dtype=float)          # causal: row tile i visits i key-tile pairs
    assert _schedule(work[::-1], work[::-1], 4, 1) < _schedule(work, work, 4, 1)
