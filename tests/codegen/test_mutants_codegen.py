"""Behaviour that mutation testing of codegen (scripts/mutation.sh codegen,
docs/benchmarks.md) found unchecked, now checked against independent
references: the reference executor, numpy, or values derived by hand."""
import contextvars
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import triton

from codegen.autotune import autotune
from codegen.runtime import ChunkedKernel, FusedKernel, compile_kernel
from codegen.triton import generate
from einsum_ir import execute, library, parse, random_inputs
from einsum_ir.analysis.fused import FusedFormError, recognise
from einsum_ir.errors import ExecutionError, ShapeError
from einsum_ir.shapes import resolve
from mappers.gpu_mapping import GPUMapping

SMALL = dict(B=1, H=1, P=20, M=24, E=16, F=8)
SOFTMAX = """
rank B, H, P, M, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


class _Clock:
    """Stands in for torch.cuda.Event on the CPU: elapsed_time in ms between records."""
    now = 0.0

    def __init__(self, enable_timing=False):
        self.t = None

    def record(self):
        _Clock.now += 1.0
        self.t = _Clock.now

    def elapsed_time(self, end):
        return end.t - self.t


def test_autotune_maps_and_runs_at_the_dtype_asked_for(monkeypatch):
    """autotune(dtype='f32') ranks the model's f32 mappings and runs them in
    f32: the kernel agrees with the float64 executor to 1e-4 (the default
    bf16 would not) and every timed mapping is an f32 one."""
    monkeypatch.setattr(torch.cuda, "Event", _Clock)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    c = parse(SOFTMAX, "softmax.ein")
    inp = random_inputs(c, SMALL, seed=4, dtype="float32")
    tuned = autotune(c, {k: torch.tensor(v) for k, v in inp.items()}, SMALL, top=2, dtype="f32", reps=1)
    assert tuned.timings and all(m.dtype == "f32" for m, _, _ in tuned.timings)
    ref = execute(c, inp, SMALL, dtype="float64")[c.outputs[0].name]
    got = tuned.kernel(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_a_kernel_without_a_floating_point_input_is_refused():
    """The outputs take the type of the first floating-point input; with
    none (only integer tensors given) the call says so, not a bool output."""
    c = parse(SOFTMAX, "softmax.ein")
    ints = {n: torch.ones(*s, dtype=torch.int32) for n, s in
            (("Q", (1, 1, 16, 20)), ("K", (1, 1, 16, 24)), ("V", (1, 1, 8, 24)))}
    with pytest.raises(ShapeError, match="no floating-point input"):
        FusedKernel(c, GPUMapping(16, 16, dtype="f32"), SMALL)(**ints)


def test_the_tma_scratch_allocator_gives_the_bytes_triton_asks_for():
    """A TMA kernel's in-kernel descriptors take global scratch memory from
    the allocator set for the launch: `size` bytes on the launch's device."""
    from triton.runtime import _allocation

    from codegen.runtime import _tma_allocator

    def probe():
        _tma_allocator("cpu")
        return _allocation._allocator.get()(384, 128, None)
    buf = contextvars.copy_context().run(probe)      # the process's allocator is left as it was
    assert buf.dtype == torch.int8 and buf.numel() == 384 and buf.device.type == "cpu"


def _run(src: str, name: str, seed: int = 1, mapping=GPUMapping(16, 16, dtype="f32")):
    """The kernel's output and the float64 executor's, on random inputs."""
    c = parse(src, name)
    inp = random_inputs(c, SMALL, seed=seed, dtype="float32")
    ref = execute(c, inp, SMALL, dtype="float64")[c.outputs[0].name]
    got = FusedKernel(c, mapping, SMALL)(**{k: torch.tensor(v) for k, v in inp.items()})
    return got.double().numpy(), ref


def test_a_negated_condition_is_minus_one():
    """-(x > t) is -1 where the condition holds (a condition is the number 1,
    then negated), not the wrapped 1-bit integer -True = True."""
    src = SOFTMAX.replace("AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]",
                          "AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p] + -(SD[b, h, p] > 0.5) * 2")
    got, ref = _run(src, "neg.ein")
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_an_infinite_constant_in_fused_and_chunked_kernels():
    """`inf` and `-inf` in a design are IEEE infinities in both generators:
    min(x, inf) = x and max(x, -inf) = x, as numpy computes them."""
    same = "min(max(SNV[b, h, f, p] / SD[b, h, p], -inf), inf)"
    got, ref = _run(SOFTMAX.replace("SNV[b, h, f, p] / SD[b, h, p]", same), "inf.ein")
    assert np.isfinite(got).all() and np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    src = library.path("lightning-attention").read_text().replace(
        "AV[b, h, f, m] = OI[b, h, f, m / M0, m % M0] + OX[b, h, f, m / M0, m % M0]",
        "AV[b, h, f, m] = min(max(OI[b, h, f, m / M0, m % M0] + OX[b, h, f, m / M0, m % M0], -inf), inf)")
    assert "inf)" in src
    c = parse(src, "lightning-inf.ein")
    shapes = dict(B=1, H=1, M=40, E=16, F=8, M0=16)
    inp = random_inputs(c, shapes, seed=2, dtype="float32")
    inp["LAM"] = np.full(inp["LAM"].shape, 0.9, dtype="float32")
    ref = execute(c, inp, shapes, dtype="float64")["AV"]
    k = compile_kernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    assert isinstance(k, ChunkedKernel)
    got = k(**{n: torch.tensor(v) for n, v in inp.items()}).double().numpy()
    assert np.isfinite(got).all() and np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def _chunked(src: str, name: str, shapes: dict, seed: int = 2):
    """A chunked kernel's output and the float64 executor's."""
    c = parse(src, name)
    inp = random_inputs(c, shapes, seed=seed, dtype="float32")
    if "ALPHA" in inp:                                   # a forget gate in (0, 1)
        inp["ALPHA"] = np.random.default_rng(seed).uniform(0.8, 0.999, inp["ALPHA"].shape).astype("float32")
    ref = execute(c, inp, shapes, dtype="float64")[c.outputs[0].name]
    k = compile_kernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    assert isinstance(k, ChunkedKernel)
    return k(**{n: torch.tensor(v) for n, v in inp.items()}).double().numpy(), ref


def test_a_scan_written_as_cumsum_inside_a_chunk():
    """gla-chunkwise's cumulative log-gate written as a scan (cumsum[m0],
    inclusive) rather than a masked sum: the chunked kernel agrees with the
    executor, over a partial last chunk too (40 = 2 x 16 + 8)."""
    src = library.path("gla-chunkwise").read_text().replace(
        "LB[b, h, e, m1, m0] = LA[b, h, e, m1 * M0 + j] where j <= m0",
        "LB[b, h, e, m1, m0] = cumsum[m0] LA[b, h, e, m1 * M0 + m0]")
    assert "cumsum[m0]" in src
    got, ref = _chunked(src, "gla-scan.ein", dict(B=1, H=1, M=40, E=16, F=8, M0=16))
    assert np.isfinite(got).all() and np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def _heads_gather(m: int):
    """Lightning attention reading V through a head table KVH (a gather) in
    Einsums with and without the causal `j <= m0`, M tokens in chunks of 16:
    the chunked kernel agrees with the executor, and an entry past the end
    is reported, not clipped."""
    src = library.path("lightning-attention").read_text().replace(
        "input V[B, H, F, M]: f16", "rank KH\ninput V[B, KH, F, M]: f16\ninput KVH[H]: i32").replace(
        "V[b, h, f, m1 * M0", "V[b, KVH[h], f, m1 * M0")
    assert src.count("KVH[h]") == 2
    shapes = dict(B=1, H=3, KH=2, M=m, E=16, F=8, M0=16)
    c = parse(src, "lightning-heads.ein")
    inp = random_inputs(c, shapes, seed=5, dtype="float32")
    inp["LAM"] = np.full(inp["LAM"].shape, 0.9, dtype="float32")
    inp["KVH"] = np.array([1, 0, 1], dtype="int32")
    ref = execute(c, inp, shapes, dtype="float64")["AV"]
    k = compile_kernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    assert isinstance(k, ChunkedKernel)
    got = k(**{n: torch.tensor(v) for n, v in inp.items()}).double().numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    inp["KVH"][1] = 2                                                  # no KV head 2
    with pytest.raises(ExecutionError, match=r"KVH\[h\] = 2 is past the end"):
        k(**{n: torch.tensor(v) for n, v in inp.items()})


def test_a_gather_under_a_chunk_predicate():
    _heads_gather(48)


def test_a_gather_in_a_partial_last_chunk():
    # its padding past M is masked, not reported as a gather out of range (it was, before 2026-11-29)
    _heads_gather(40)                                                # 40 = 2 x 16 + 8


COMPILE = """
import sys
sys.path.insert(0, {folder!r})
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import K_split_kernel as mod
for fn in (mod.attnc_combine,):
    sig = {{}}
    for name, p in zip(fn.arg_names, fn.params):
        if not p.is_constexpr:
            ptr = name == "part_ptr" or any(name.endswith("_" + t) and name.count("_") == 1 for t in {pointers!r})
            table = name.endswith(("_idx", "_cnt", "_mtb")) or name in ("launch_order", "gather_err")
            sig[name] = "*fp32" if ptr else "*i32" if table else "*i8" if name.endswith("_mt") else "i32"
    meta = {{k: v for k, v in dict(BLOCK_M=64, BLOCK_N=64, BLOCK_E=16, BLOCK_F=16, SPLITS=2).items()
             if k in fn.arg_names}}
    triton.compile(ASTSource(fn, sig, meta), target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4))
    print(fn.__name__)
"""


@pytest.mark.skipif(not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists(),
                    reason="no ptxas in this Triton")
def test_the_split_kv_combine_compiles_for_a_gpu(tmp_path):
    """Triton's interpreter runs code its compiler refuses (tl.full of None is
    NaN there, and tl.maximum skips NaN), so the combine kernel of a split-KV
    design with a max and a min statistic is compiled for sm_90 too (the
    fused kernel's compile: test_tma); in a process of its own, as Triton is
    imported there without the interpreter."""
    src = SOFTMAX.replace("AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]",
                          "LM[b, h, p] = min[m] QK[b, h, m, p]\n"
                          "AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p] + LM[b, h, p]")
    c = parse(src, "split.ein")
    env = resolve(c, dict(B=1, H=2, P=4, M=512, E=16, F=16))
    gen = generate(recognise(c, env), GPUMapping(64, 64, splits=2, dtype="f32"), env)
    assert gen.splits == 2 and "attnc_combine" in gen.text
    (tmp_path / "K_split_kernel.py").write_text(gen.text)
    script = COMPILE.format(folder=str(tmp_path), pointers=sorted(gen.tensors + gen.outputs))
    env_vars = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env_vars, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["attnc_combine"]


def test_an_index_the_chunked_kernel_cannot_compute_is_refused_with_what_it_takes():
    """abs() in an index: the fused kernel computes it, the chunked one does
    not; the refusal names the index and the operators the chunked kernel
    takes instead (so the design can be rewritten), not a Triton error."""
    src = library.path("lightning-attention").read_text().replace(
        "V[b, h, f, m1 * M0 + j]", "V[b, h, f, abs(m1 * M0 + j)]")
    c = parse(src, "lightning-abs.ein")
    with pytest.raises(FusedFormError) as err:
        compile_kernel(c, GPUMapping(16, 16, dtype="f32"), dict(B=1, H=1, M=40, E=16, F=8, M0=16))
    text = str(err.value)
    assert "does not compute the index abs(m1 * M0 + j) (abs in an index" in text
    assert "the chunked one takes + - * // % min max and bitwise operators of coordinates, and gathers)" in text


def test_the_pass_header_marks_only_the_sums_the_running_max_rescales():
    """The kernel's pass header says which statistics a growing running max
    rescales: in one-pass softmax the sums of exp(QK - GM), SD and SNV, but
    not the max GM itself (derived by hand from the design)."""
    c = parse(SOFTMAX, "softmax.ein")
    env = resolve(c, SMALL)
    text = generate(recognise(c, env), GPUMapping(16, 16, dtype="f32"), env).text
    headers = [x.strip() for x in text.splitlines() if "# ---- pass" in x]
    assert headers == ["# ---- pass 0: GM (max), SD (sum, rescaled), SNV (value, rescaled)"]
