"""The library's paged-attention (vLLM's PagedAttention, decode): key m of
sequence b read from slot m % BS of pool block BT[b, m // BS], keys past
LEN[b] absent. Checked against torch written from the algorithm (gather
each sequence's blocks into a contiguous cache, then softmax attention with
query heads sharing KV heads in groups of G), never from the cascade; the
analyses against hand counts over the live keys; the fused kernel (Triton's
interpreter) against the executor."""
import numpy as np
import pytest
import torch

import einsum_ir as ei
from einsum_ir import ExecutionError
from einsum_ir.analysis import analyze

NAME = "paged-attention"


def _inputs(seed, lengths, bs=4, pool=12, H=4, G=2, E=5, F=3):
    """A pool of `pool` blocks handed out in a random order; -1 past each
    sequence's last block (never read: those keys do not exist)."""
    c = ei.library.load(NAME)
    m = max(max(lengths), 1)
    nb = -(-m // bs)
    shapes = dict(B=len(lengths), H=H, G=G, M=m, E=E, F=F, NP=pool, BS=bs)
    x = ei.random_inputs(c, shapes, seed=seed)
    free = list(np.random.default_rng(seed).permutation(pool))
    table = -np.ones((len(lengths), nb))
    for b, n in enumerate(lengths):
        for j in range(-(-n // bs)):
            table[b, j] = free.pop()
    x["BT"], x["LEN"] = table, np.array(lengths, float)
    return c, shapes, x


def _torch_paged(x, shapes):
    """Gather the blocks of each sequence, repeat KV heads per group, softmax."""
    kc, vc, q = (torch.tensor(x[n]) for n in ("KC", "VC", "Q"))
    out = torch.zeros(shapes["B"], shapes["H"], shapes["F"], dtype=torch.float64)
    for b, n in enumerate(x["LEN"].astype(int)):
        if n == 0:
            continue                                          # no key: the design's output is 0
        blocks = [int(x["BT"][b, j // shapes["BS"]]) for j in range(n)]
        slots = [j % shapes["BS"] for j in range(n)]
        k = torch.stack([kc[blk, :, :, s] for blk, s in zip(blocks, slots)], -1)    # [KH, E, n]
        v = torch.stack([vc[blk, :, :, s] for blk, s in zip(blocks, slots)], -1)    # [KH, F, n]
        k, v = k.repeat_interleave(shapes["G"], 0), v.repeat_interleave(shapes["G"], 0)
        w = torch.softmax(torch.einsum("he,hen->hn", q[b], k), -1)
        out[b] = torch.einsum("hn,hfn->hf", w, v)
    return out.numpy()


@pytest.mark.parametrize("seed, lengths, bs", [(0, (13, 5, 0), 4), (1, (8, 8), 4), (2, (1, 11, 7), 3)])
def test_executor_matches_torch_gather_then_attention(seed, lengths, bs):
    """Blocks in a random order, lengths not multiples of the block, an empty
    sequence (output 0 under `empty rows = 0`), -1 entries never read."""
    c, shapes, x = _inputs(seed, lengths, bs)
    assert (x["BT"] < 0).any() or seed == 1
    got = ei.execute(c, x, shapes)["AV"]
    want = _torch_paged(x, shapes)
    assert np.allclose(got, want, rtol=1e-10, atol=1e-12)
    assert np.all(got[np.array(lengths) == 0] == 0)


def test_a_live_key_in_a_block_past_the_pool_is_an_error_naming_the_table():
    c, shapes, x = _inputs(0, (13, 5))
    x["BT"][1, 0] = shapes["NP"]
    with pytest.raises(ExecutionError, match=r"KC\[BT\[b, m //? BS\], h / G, e, m % BS\].*past the end.*b=1"):
        ei.execute(c, x, shapes)


def test_the_block_layout_matters():
    """Reading the pool through another (valid) table gives another answer:
    the gather is not a no-op the reference could share by accident."""
    c, shapes, x = _inputs(3, (9, 6))
    y = dict(x, BT=np.where(x["BT"] >= 0, (x["BT"] + 1) % shapes["NP"], -1))
    assert not np.allclose(ei.execute(c, x, shapes)["AV"], ei.execute(c, y, shapes)["AV"])


def test_counts_are_the_hand_counts_over_the_live_keys():
    """Per live key and query head: E + F MACs (score and value product), one
    exp, one max, two adds (the subtracted max and the sum); F divides per
    head at the end. The live keys come from LEN through the mask's density."""
    c, shapes, x = _inputs(4, (13, 5, 0, 9))
    at = analyze(c, inputs=x, shapes=shapes).at()
    live, H, E, F, B = sum((13, 5, 0, 9)), shapes["H"], shapes["E"], shapes["F"], 4
    ops = {k: float(v) for k, v in at["ops"].items() if v}
    assert ops == {"mac": H * live * (E + F), "exp": H * live, "max": H * live, "add": 2 * H * live,
                   "divide": B * H * F}
    assert at["passes"]["M"] == 2                              # max, then the exps: deferred division
    nb, kh = -(-shapes["M"] // shapes["BS"]), H // shapes["G"]
    f16 = B * H * E + shapes["NP"] * kh * (E + F) * shapes["BS"]        # Q and both whole pools
    assert float(at["traffic"]["read_bytes"]) == 2 * f16 + 4 * (B * nb + B)  # the i32 table and lengths


def test_passes_over_the_pool_are_refused_as_data_indexed():
    r = ei.analysis.passes(ei.library.load(NAME), "NP")
    assert r.passes is None and "gather" in r.unstreamable


def test_fused_kernel_matches_the_executor_in_the_interpreter():
    """The key and value tiles are gathered through the block table in the
    tile walk (the same kernel family as contiguous decode); two sequences of
    different lengths, one spanning two key tiles and three blocks."""
    from codegen.runtime import compile_kernel
    from mappers.gpu_mapping import GPUMapping
    c, shapes, x = _inputs(5, (21, 6), bs=8, pool=6, H=2, G=2, E=16, F=16)
    kernel = compile_kernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    ints = {"BT", "LEN"}
    out = kernel(**{n: torch.tensor(v, dtype=torch.int32 if n in ints else torch.float32) for n, v in x.items()})
    want = ei.execute(c, x, shapes)["AV"]
    assert type(kernel).__name__ == "FusedKernel"
    assert np.allclose(out.double().numpy(), want, atol=2e-5)


def _flat_pool(text: str) -> str:
    """The same design with each pool one flat rank of NP x BS slots,
    `KC[h / G, e, BT[b, m // BS] * BS + m % BS]`: only the layout differs."""
    for t, d in (("KC", "e"), ("VC", "f")):
        text = text.replace(f"input {t}[NP, KH, {d.upper()}, BS]", f"input {t}[KH, {d.upper()}, S]")
        text = text.replace(f"{t}[BT[b, m // BS], h / G, {d}, m % BS]", f"{t}[h / G, {d}, BT[b, m // BS] * BS + m % BS]")
    return text.replace("rank B, H, M, E, F, NP, BS", "rank B, H, M, E, F, S, BS")


def test_the_footprint_holds_one_gathered_row_per_step_in_either_layout():
    """At the zoo's shape (0.2 MiB, not the 32 MiB of a whole pool): one
    block slot per sequence and key in either layout. By hand, pass 1's QK
    is the worst point: Q, one key slot per KV head, the i32 table and
    length, the score row held for pass 2 (at the live density) and GM."""
    from einsum_ir.analysis import footprint
    from einsum_ir.shapes import resolve
    blocks = ei.library.load(NAME)
    flat = ei.parse(_flat_pool(ei.library.path(NAME).read_text()))
    base = dict(B=1, H=32, G=4, M=4096, E=128, F=128, BS=16)
    got = []
    for c, extra in ((blocks, dict(NP=1024)), (flat, dict(S=1024 * 16))):
        env = dict(resolve(c, {**base, **extra}), density_live=0.75)
        got.append(footprint(c, "M").at(env)[0])
    assert got[0] == pytest.approx(got[1])
    H, KH, E, M, NB = 32, 8, 128, 4096, 256
    assert got[0] == 2 * (H * E + KH * E + H * M * 0.75 + H) + 4 * (NB + 1)


def test_the_gpu_model_charges_at_least_the_counts_over_the_live_keys(monkeypatch):
    """The soundness harness's floor check on the design (its mask's density
    counted from the inputs given to the model), and the check fails for a
    model that charges no exps (at the few live keys random lengths give,
    the model's whole-tile charge is far above the floor: a partial drop
    hides behind it)."""
    import attnc.soundness as sound
    import simulator.gpu as gpu
    c = ei.library.load(NAME)
    shapes = dict(B=2, H=4, G=2, M=13, E=4, F=3, NP=9, BS=4)
    assert sound.check_gpu_model(c, shapes) == ("ok", "")
    orig = gpu.predict_fused

    def no_exps(*a, **k):
        pred = orig(*a, **k)
        pred.work["sfu_ops"] = 0.0
        return pred
    monkeypatch.setattr(gpu, "predict_fused", no_exps)
    status, detail = sound.check_gpu_model(c, shapes)
    assert status == "mismatch" and "sfu_ops" in detail
