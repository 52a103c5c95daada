"""Per-call host work of a compiled kernel (issue 20: microsecond decode
kernels): everything that depends only on the inputs' shapes (source,
module, block tables, grid, scalar arguments) is prepared at the first call
of a shape, and a later call allocates nothing but its outputs (split-KV
partials and the gather flag are kept)."""
import sys

import numpy as np
import pytest

from einsum_ir import library
from mappers.gpu_mapping import GPUMapping

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import codegen.runtime as rt  # noqa: E402


class _Count:
    def __init__(self, fn):
        self.fn, self.n = fn, 0

    def __call__(self, *a, **kw):
        self.n += 1
        return self.fn(*a, **kw)


def _allocations(monkeypatch) -> list:
    """Tensors allocated by codegen/runtime.py itself (not by torch or Triton)."""
    seen = []
    for name in ("empty", "zeros", "full", "tensor"):
        real = getattr(torch, name)

        def wrap(*a, _real=real, _name=name, **kw):
            if sys._getframe(1).f_code.co_filename == rt.__file__:
                seen.append(_name)
            return _real(*a, **kw)
        monkeypatch.setattr(torch, name, wrap)
    return seen


@pytest.mark.parametrize("splits", [1, 3])
def test_a_second_call_prepares_nothing_and_allocates_only_its_output(monkeypatch, splits):
    c = library.load("decode")
    k = rt.FusedKernel(c, GPUMapping(16, 16, splits=splits, dtype="f32"), {})
    rng = np.random.default_rng(0)
    ins = {"Q": rng.standard_normal((1, 2, 16)), "K": rng.standard_normal((1, 2, 16, 70)),
           "V": rng.standard_normal((1, 2, 16, 70))}
    tens = {n: torch.tensor(v, dtype=torch.float32) for n, v in ins.items()}
    first = k(**tens).clone()
    counted = {name: _Count(getattr(rt, name)) for name in ("generate", "resolve", "cell_counts", "classify",
                                                            "_cached_module")}
    for name, f in counted.items():
        monkeypatch.setattr(rt, name, f)
    plan = _Count(k._plan)
    monkeypatch.setattr(k, "_plan", plan)
    allocs = _allocations(monkeypatch)
    again = k(**tens)
    assert plan.n == 0 and all(f.n == 0 for f in counted.values()), {n: f.n for n, f in counted.items()}
    assert allocs == ["empty"]                        # the output, nothing else
    torch.testing.assert_close(again, first)          # the kept partials buffer is rewritten, not stale
    other = {n: torch.roll(t, 1, dims=-1) for n, t in tens.items()}
    assert not torch.allclose(k(**other), first)
