"""Choosing a fused kernel's GPU mapping by the model: every tile shape,
warp count, stage count, split-KV count and head packing a fast Triton
attention kernel uses (../shared/reference/gpus.md), footprints checked,
ranked by predicted time. The autotuner times only the head of this list."""
from __future__ import annotations

from itertools import product

from einsum_ir.analysis.fused import FusedForm
from einsum_ir.analysis.tiles import cell_counts
from hw_models.gpu import GPU
from hw_models.schema import HardwareError

from .gpu_mapping import GPUMapping

BLOCK_M = (64, 128)
BLOCK_N = (32, 64, 128)
WARPS = (4, 8)
STAGES = (2, 3, 4)


def candidates(form: FusedForm, gpu: GPU, env: dict, dtype: str = "bf16"):
    rows = 1 if form.query is None else int(env[form.query.upper()])
    heads = 1
    for v in form.batch:
        heads *= int(env[v.upper()])
    packs = _packs(form, env, rows)
    key_tiles_min = -(-int(env[form.key.upper()]) // max(BLOCK_N))
    for bm, bn, w, st, pack in product(BLOCK_M if rows > 16 else (16,), BLOCK_N, WARPS, STAGES, packs):
        programs = heads // pack * -(-rows * pack // bm)
        splits = [1]
        if programs < gpu.sms and form.splittable:     # too few programs to fill the SMs: split the keys
            # (not a walk that carries a scan or has several passes: the kernel runs those unsplit)
            s = 2
            while s <= 128 and s <= key_tiles_min * 2:
                splits.append(s)
                s *= 2
        for sp in splits:
            yield GPUMapping(bm, bn, w, st, sp, pack, dtype)


def _packs(form: FusedForm, env: dict, rows: int) -> list[int]:
    """Head packings to try (GQA, MQA: the tile program's `packing`): none,
    and the whole group where its rows fill at most a 128-row tile per
    query block (decode: the group's heads are the only rows there are)."""
    from einsum_ir.analysis.tile_program import head_packing
    packing, _ = head_packing(form)
    if packing is None:
        return [1]
    g = packing.size(env)
    return sorted({1, g}) if rows <= 16 or g <= 8 else [1]


def shortlist(form: FusedForm, gpu: GPU, env: dict, dtype: str = "bf16", top: int = 5, inputs=None):
    """The `top` best mappings with their predictions, best first; the
    rejected ones are counted in the first prediction's notes."""
    from simulator.gpu import predict_fused
    counts = [cell_counts(form, k, env, inputs) for k in range(form.passes)]
    preds, rejected = [], 0
    for m in candidates(form, gpu, env, dtype):
        try:
            preds.append(predict_fused(form, m, gpu, env, inputs, counts=counts))
        except HardwareError:
            rejected += 1
    if not preds:
        raise HardwareError(f"no mapping fits {gpu.name} at these shapes ({rejected} rejected by shared memory "
                            "or registers)")
    # ties (the model has no term that tells them apart): the smaller footprint
    preds.sort(key=lambda p: (round(p.time_s, 12), p.parts["smem_bytes"], p.mapping.warps))
    best = preds[:top]
    best[0].notes.append(f"{len(preds) + rejected} mappings considered, {rejected} rejected by their footprint")
    return best




CHUNK_BLOCK_N = (32, 64, 128)


def shortlist_chunked(form, gpu: GPU, env: dict, dtype: str = "bf16", top: int = 5):
    """The `top` best mappings of a chunked linear-time kernel (a ChunkedForm)
    by the GPU model, best first: the chunk of an unpartitioned design (a
    partitioned one has its own, M0), warps and stages. Each prediction
    charges the chunk program made for its mapping (`Prediction.program`)."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from simulator.gpu import predict_chunked
    blocks = CHUNK_BLOCK_N if not form.partitioned else (64,)
    preds = []
    for bn, w, st in product(blocks, WARPS, STAGES[:2]):
        m = GPUMapping(64, bn, w, st, dtype=dtype)
        preds.append(predict_chunked(chunk_program(form, env, bn), m, gpu, env))
    preds.sort(key=lambda p: (round(p.time_s, 12), p.parts["regs_per_thread"], p.mapping.warps))
    best = preds[:top]
    best[0].notes.append(f"{len(preds)} mappings considered")
    return best


__all__ = ["candidates", "shortlist", "shortlist_chunked"]
