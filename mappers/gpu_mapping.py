"""A fused attention kernel's mapping onto a GPU: the thread block's tile
(BLOCK_M query rows, BLOCK_N keys per step of the loop over key tiles),
warps, pipeline stages, the split-KV count and how many query heads that
share a KV head are packed into one block (GQA). Its shared-memory and
register footprint follows from the cascade, so a mapping that cannot run
is rejected with the numbers before anything is compiled."""
from __future__ import annotations

from dataclasses import dataclass, replace

from einsum_ir.analysis.fused import FusedForm
from einsum_ir.ir import accesses, index_vars
from einsum_ir.ops import DTYPE_BYTES
from hw_models.gpu import GPU
from hw_models.schema import HardwareError, Node, load, load_file

REG_OVERHEAD = 32        # addresses, loop counters, row statistics: registers per thread beyond the tiles
MAX_REGS_PER_THREAD = 255


@dataclass(frozen=True)
class GPUMapping:
    block_m: int = 128
    block_n: int = 64
    warps: int = 4
    stages: int = 2
    splits: int = 1
    pack_heads: int = 1
    dtype: str = "bf16"
    tma: bool = False        # Hopper: K and V tiles loaded through tensor descriptors (TMA), docs/triton.md

    def __post_init__(self):
        if not isinstance(self.tma, bool):
            raise HardwareError(f"GPU mapping: tma must be true or false, got {self.tma!r}")
        for k in ("block_m", "block_n", "warps", "stages", "splits", "pack_heads"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise HardwareError(f"GPU mapping: {k} must be a positive integer, got {v!r}")
        for k in ("block_m", "block_n"):
            v = getattr(self, k)
            if v < 16 or v & (v - 1):
                raise HardwareError(f"GPU mapping: {k} must be a power of two, at least 16 (tensor-core tiles), "
                                    f"got {v}")
        if self.dtype not in DTYPE_BYTES:
            raise HardwareError(f"GPU mapping: unknown dtype {self.dtype!r}")

    def with_changes(self, **kw) -> "GPUMapping":
        return replace(self, **kw)

    def __str__(self):
        s = f"BLOCK_M={self.block_m} BLOCK_N={self.block_n} warps={self.warps} stages={self.stages}"
        if self.splits > 1:
            s += f" splits={self.splits}"
        if self.pack_heads > 1:
            s += f" pack_heads={self.pack_heads}"
        if self.tma:
            s += " tma"
        return s


_KEYS = ("block_m", "block_n", "warps", "stages", "splits", "pack_heads", "dtype", "tma")


def _field(node: Node, k: str):
    if k == "dtype":
        return node.string()
    if k == "tma":
        if not isinstance(node.value, bool):
            raise node.error(f"must be true or false, got {node.value!r}")
        return node.value
    return node.integer()


def gpu_mapping_from_node(root: Node) -> GPUMapping:
    top = root.mapping(optional=_KEYS + ("doc",))
    kw = {k: _field(top[k], k) for k in _KEYS if k in top}
    try:
        return GPUMapping(**kw)
    except HardwareError as e:
        raise root.error(str(e).removeprefix("GPU mapping: ")) from None


def load_gpu_mapping(path) -> GPUMapping:
    return gpu_mapping_from_node(load_file(path))


def parse_gpu_mapping(text: str, file: str = "<mapping>") -> GPUMapping:
    return gpu_mapping_from_node(load(text, file))


@dataclass(frozen=True)
class Footprint:
    smem_bytes: int
    regs_per_thread: int
    threads: int
    blocks_per_sm: int
    limit: str          # what bounds blocks per SM


def padded(n: int) -> int:
    """Triton tiles are powers of two (at least 16 for tensor cores)."""
    return max(16, 1 << (int(n) - 1).bit_length())


def footprint(form: FusedForm, m: GPUMapping, env: dict, gpu: GPU) -> Footprint:
    """Shared memory and registers of one block; blocks per SM. Raises a
    HardwareError with the numbers when the block cannot run at all."""
    b = DTYPE_BYTES[m.dtype]
    e = padded(env[form.contracted.upper()])
    f = padded(env[form.feature.upper()]) if form.feature else 0
    nvalue = max(1, len({r.name for r in form.reductions if r.kind == "value"}))
    nscore = len(form.scores)
    # shared memory: the Q tile once, K and V tiles per pipeline stage, and any
    # input read per (query, key) point (a dense bias) per stage
    tile_inputs = 0
    inputs = {t.name for t in form.cascade.inputs}
    for t in form.tile + tuple(r.einsum for r in form.reductions):
        for a in accesses(t.expr):
            vs = set(index_vars(a))
            if a.tensor in inputs and form.key in vs and (form.query is None or form.query in vs):
                tile_inputs += DTYPE_BYTES[form.cascade.tensor(a.tensor).dtype]
    smem = nscore * m.block_m * e * b + m.stages * m.block_n * (nscore * e + f * nvalue) * b \
        + m.stages * m.block_m * m.block_n * tile_inputs
    threads = 32 * m.warps
    # registers (32-bit): fp32 accumulators and the fp32 score tile, spread over the block's threads
    acc = m.block_m * f * nvalue + nscore * m.block_m * m.block_n
    regs = -(-acc // threads) + REG_OVERHEAD
    if smem > gpu.smem_per_block:
        raise HardwareError(f"mapping {m} needs {smem / 1024:.0f} KiB of shared memory per block "
                            f"({nscore} Q {m.block_m}x{e}, {m.stages} stages of K/V {m.block_n}x{nscore * e + f * nvalue}); "
                            f"{gpu.name} allows {gpu.smem_per_block / 1024:.0f} KiB")
    if regs > MAX_REGS_PER_THREAD:
        raise HardwareError(f"mapping {m} needs about {regs} registers per thread "
                            f"({acc} fp32 values over {threads} threads + {REG_OVERHEAD}); at most "
                            f"{MAX_REGS_PER_THREAD} before spilling: use more warps or smaller tiles")
    limits = {"shared memory": gpu.smem_per_sm // smem,
              "registers": gpu.registers_per_sm // (regs * threads),
              "threads": gpu.max_threads_per_sm // threads,
              "blocks": gpu.max_blocks_per_sm}
    limit = min(limits, key=limits.get)
    if limits[limit] < 1:
        raise HardwareError(f"mapping {m}: not even one block fits an SM ({limit})")
    return Footprint(smem, regs, threads, limits[limit], limit)


__all__ = ["Footprint", "GPUMapping", "footprint", "gpu_mapping_from_node", "load_gpu_mapping",
           "padded", "parse_gpu_mapping"]
