"""A compiled kernel called on tensors Triton cannot run: a clear error
naming what to do, never Triton's "0 active drivers" traceback."""
import numpy as np
import pytest
import torch

import einsum_ir as ei
from codegen.runtime import ChunkedKernel, FusedKernel
from einsum_ir import library
from mappers.gpu_mapping import GPUMapping

SHAPES = dict(B=1, H=1, P=16, M=16, E=8, F=8)


def call(kernel, c, device="cpu", odd=None):
    inp = ei.random_inputs(c, SHAPES, seed=0, dtype="float32")
    return kernel(**{n: torch.tensor(v, device=odd if n == "K" and odd else device) for n, v in inp.items()})


@pytest.mark.parametrize("make", [
    lambda: (library.load("attention-3pass"), FusedKernel(library.load("attention-3pass"), GPUMapping(16, 16, dtype="f32"), SHAPES)),
    lambda: (library.load("linear-attention"),
             ChunkedKernel(library.load("linear-attention"), GPUMapping(16, 16, dtype="f32"), SHAPES)),
])
def test_cpu_tensors_without_the_interpreter_are_refused_with_the_remedy(make, monkeypatch):
    c, kernel = make()
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ei.ExecutionError, match="on the CPU.*TRITON_INTERPRET=1"):
        call(kernel, c)
    monkeypatch.setenv("TRITON_INTERPRET", "1")          # and the same kernel runs once it is set
    ref = ei.execute(c, ei.random_inputs(c, SHAPES, seed=0, dtype="float32"), SHAPES, dtype="float64")
    out = call(kernel, c).double().numpy()
    want = ref[c.outputs[0].name] if isinstance(ref, dict) else ref
    assert np.abs(out - want).max() <= 1e-4 * np.abs(want).max()


def test_inputs_on_two_devices_are_named():
    c = library.load("attention-3pass")
    kernel = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), SHAPES)
    with pytest.raises(ei.ExecutionError, match="different devices.*K on meta"):
        call(kernel, c, odd="meta")
