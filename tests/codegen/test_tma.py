"""The TMA switch (mapping `tma: true`, issue 20): K and V tiles loaded
through Triton tensor descriptors (`tl.make_tensor_descriptor`), which the
interpreter of this Triton runs, so the kernels are checked against the
reference here; the same source compiles for sm_90 with TMA copies in its
PTX where ptxas is installed. A tensor laid out as TMA cannot take is
refused at the call, never loaded wrongly."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.errors import ShapeError
from einsum_ir.execute import execute
from einsum_ir.shapes import resolve
from hw_models.gpu import load_gpu
from hw_models.schema import HardwareError
from mappers.gpu_mapping import GPUMapping, parse_gpu_mapping
from simulator.gpu import predict_fused

torch = pytest.importorskip("torch")
triton = pytest.importorskip("triton")

from codegen.runtime import FusedKernel  # noqa: E402
from codegen.triton import generate  # noqa: E402


def _inputs(c, env, seed=0):
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal([env[r] for r in t.ranks]).astype(np.float32) for t in c.inputs}


def _check(design: str, shapes: dict, m: GPUMapping):
    c = library.load(design)
    env = resolve(c, shapes)
    k = FusedKernel(c, m, shapes)
    ins = _inputs(c, env)
    out = k(**{n: torch.tensor(v) for n, v in ins.items()}).numpy()
    ref = execute(c, {n: v.astype(np.float64) for n, v in ins.items()}, shapes)
    np.testing.assert_allclose(out, ref[c.outputs[0].name] if isinstance(ref, dict) else ref, rtol=2e-4, atol=2e-5)
    return k.source(env)


@pytest.mark.parametrize("design, shapes, m", [
    ("gqa", dict(B=1, H=4, G=2, P=40, M=48, E=16, F=16), GPUMapping(32, 16, dtype="f32", tma=True)),
    ("gqa", dict(B=1, H=4, G=2, P=40, M=48, E=16, F=16), GPUMapping(32, 16, dtype="f32", tma=True, pack_heads=2)),
    ("mqa", dict(B=1, H=4, P=1, M=44, E=16, F=16), GPUMapping(16, 16, dtype="f32", tma=True, pack_heads=4,
                                                                splits=2)),
    ("decode", dict(B=2, H=2, M=48, E=24, F=16), GPUMapping(16, 16, dtype="f32", tma=True)),   # E below its block
    ("cab-self-causal", dict(B=1, H=2, P=48, E=16, F=16), GPUMapping(16, 16, dtype="f32", tma=True)),
])
def test_descriptor_loads_match_the_reference(design, shapes, m):
    src = _check(design, shapes, m)
    lines = src.text.splitlines()
    assert sum("tl.make_tensor_descriptor(" in ln for ln in lines) == 2 and sorted(src.tma) == ["K", "V"]
    body = [ln for ln in lines if "key tiles" in ln or ln.startswith("        ")]
    kv_ptr = [ln for ln in body if "tl.load(" in ln and ("_K +" in ln or "_V +" in ln)]
    assert not kv_ptr, kv_ptr                               # every K / V tile through its descriptor
    assert any(".load([" in ln and "start_n" in ln for ln in body)


def test_without_the_switch_no_descriptor():
    c = library.load("gqa")
    env = resolve(c, dict(B=1, H=4, G=2, P=64, M=64, E=64, F=64))
    src = generate(recognise(c, env), GPUMapping(64, 64), env)
    assert "make_tensor_descriptor" not in src.text and not src.tma


def test_a_layout_tma_cannot_take_is_refused_naming_the_tensor():
    c = library.load("decode")
    k = FusedKernel(c, GPUMapping(16, 16, dtype="f32", tma=True), {})
    ins = {n: torch.tensor(v) for n, v in _inputs(c, dict(B=1, H=2, M=48, E=16, F=16)).items()}
    bad = dict(ins, K=ins["K"].transpose(-1, -2).contiguous().transpose(-1, -2))    # M not the contiguous dim
    with pytest.raises(ShapeError, match="input K .* last stride"):
        k(**bad)
    odd = {n: torch.tensor(v) for n, v in _inputs(c, dict(B=1, H=2, M=5, E=16, F=16)).items()}
    with pytest.raises(ShapeError, match="input K .* not a multiple of 16"):   # 5 x 4 bytes per E step
        k(**odd)
    k(**ins)                                            # the contiguous tensors run


def test_the_switch_is_a_mapping_field_and_hopper_only():
    assert parse_gpu_mapping("block_m: 64\ntma: true").tma
    with pytest.raises(HardwareError, match="true or false"):
        parse_gpu_mapping("tma: 1")
    form = recognise(library.load("cab-self-causal"))
    env = resolve(form.cascade, dict(B=1, H=8, P=2048, E=128, F=128))
    with pytest.raises(HardwareError, match="TMA .* Hopper"):
        predict_fused(form, GPUMapping(128, 64, tma=True), load_gpu("a100"), env)
    p = predict_fused(form, GPUMapping(128, 64, tma=True), load_gpu("h100"), env)
    assert any("TMA" in n for n in p.notes)


@pytest.mark.skipif(not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists(),
                    reason="no ptxas in this Triton")
def test_the_packed_tma_kernel_compiles_for_sm_90_with_tma_copies(tmp_path):
    """Compiled in a process of its own: Triton is imported there without
    the interpreter (this process has it on)."""
    c = library.load("gqa")
    env = resolve(c, dict(B=1, H=8, G=4, P=1024, M=1024, E=128, F=128))
    src = generate(recognise(c, env), GPUMapping(128, 64, 8, 3, pack_heads=4, tma=True), env)
    (tmp_path / "M_tma_kernel.py").write_text(src.text)
    pointers = sorted(src.tensors + src.outputs)
    script = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import M_tma_kernel as mod
fn = mod.attnc_fused
sig = {{}}
for name, p in zip(fn.arg_names, fn.params):
    if p.is_constexpr:
        continue
    ptr = any(name.endswith("_" + t) and name.count("_") == 1 for t in {pointers!r})
    table = name.endswith(("_idx", "_cnt", "_mtb")) or name == "launch_order"     # int32 tables
    sig[name] = "*bf16" if ptr else "*i32" if table else "*i8" if name.endswith("_mt") else "i32"
k = triton.compile(ASTSource(fn, sig, dict(BLOCK_M=128, BLOCK_N=64, BLOCK_E=128, BLOCK_F=128, SPLITS=1)),
                   target=GPUTarget("cuda", 90, 32), options=dict(num_warps=8, num_stages=3))
print("TMA" if "cp.async.bulk.tensor" in k.asm["ptx"] else "no TMA", "wgmma" if "wgmma" in k.asm["ptx"] else "no wgmma")
"""
    env_vars = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env_vars, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["TMA", "wgmma"]
