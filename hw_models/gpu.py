"""GPUs as data: the rates and sizes a tile-level kernel model needs
(simulator.gpu), datasheet and measured values side by side, and the few
efficiency constants the model admits (fitted by `attnc calibrate`).
Presets are YAML files in hw_models/presets/gpu/."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from collections.abc import Mapping

from .schema import HardwareError, Node, load, load_named

GPU_PRESETS = Path(__file__).parent / "presets" / "gpu"

EFFICIENCY_KEYS = {
    "fused_tensor": "fraction of its matrix-instruction path's rate a fused attention kernel's MMAs reach "
                    "(a property of attention kernels, the same on every GPU)",
    "gemm_tensor": "fraction of tensor-core peak a large GEMM reaches (the unfused model)",
    "bandwidth": "fraction of datasheet HBM bandwidth reached by streaming kernels",
    "latency_ns": "HBM load latency: a program with B bytes in flight streams at most B / latency",
    "launch_us": "fixed cost of one kernel launch, microseconds",
}

# optional constants, with their defaults: per matrix-instruction path the
# fraction of the dense peak a large GEMM on that path reaches (a GPU
# property), and per kernel class how much of the shorter of MMA and softmax
# time hides under the longer (a property of the kernel design)
OPTIONAL_EFFICIENCY = {
    "mma": ("fraction of dense peak reachable with Ampere-style mma.sync (any GPU since Ampere)", 0.81),
    "wgmma": ("fraction of dense peak reachable with Hopper wgmma; 0: the GPU has no wgmma", 0.0),
    "serial_overlap": ("FA2-class kernels: fraction of softmax / MMA time that co-resident blocks hide", 0.5),
    "ws_overlap": ("Hopper warp-specialised kernels: fraction of the shorter of softmax / MMA time hidden "
                   "(ping-pong warpgroups, softmax under the next tile's products)", 0.8),
    "combine_us": ("fixed cost of a split-KV combine kernel beyond its bytes, microseconds", 2.0),
    "program_cycles": ("SM cycles each program spends outside its tile loop (setup, the Q tile into shared "
                       "memory, the output's conversion and store instructions), fitted", 0.0),
}


FRACTIONS = ("fused_tensor", "gemm_tensor", "bandwidth", "mma", "wgmma", "serial_overlap", "ws_overlap")


@dataclass(frozen=True)
class GPU:
    name: str
    doc: str
    sms: int
    clock_hz: float
    tensor_flops: Mapping[str, float]     # dtype -> dense FLOP/s, datasheet
    fp32_flops: float                     # non-tensor FP32 FLOP/s (an FMA counts 2)
    sfu_ops_per_clock_per_sm: int
    hbm_bytes_per_s: float                # datasheet
    l2_bytes: int
    smem_per_sm: int
    smem_per_block: int
    registers_per_sm: int                 # 32-bit registers
    max_threads_per_sm: int
    max_blocks_per_sm: int
    sm_load_bytes_per_clock: int          # what one SM can load per clock from L2/HBM
    smem_bytes_per_clock: int             # shared-memory bandwidth of one SM (MMA operands read from it)
    measured: Mapping[str, float]
    efficiency: Mapping[str, float]
    # 32-bit integer lanes per SM, and the instructions an SM can issue per
    # clock (warp schedulers x 32 threads): integer and FP32 work run on
    # separate pipes and share the issue slots. Both 64 and 128 on every SM
    # since Volta (CUDA C++ Programming Guide, arithmetic instruction
    # throughput: 32-bit integer add, compare, logic 64 per clock per SM at
    # compute capability 7.x-9.0; four warp schedulers, one instruction each
    # per clock, in the Volta, Ampere and Hopper whitepapers)
    int_ops_per_clock_per_sm: int = 64
    issue_per_clock_per_sm: int = 128

    # -- the rates the model uses ------------------------------------------------
    def tensor_peak(self, dtype: str) -> float:
        if dtype not in self.tensor_flops:
            raise HardwareError(f"{self.name} has no tensor-core rate for {dtype}; it has "
                                f"{', '.join(self.tensor_flops)}")
        return self.tensor_flops[dtype]

    @property
    def sfu_ops_per_s(self) -> float:
        return self.sfu_ops_per_clock_per_sm * self.sms * self.clock_hz

    @property
    def fp32_ops_per_s(self) -> float:
        """Vector instructions per second (an FMA is one instruction, two FLOPs)."""
        return self.fp32_flops / 2

    @property
    def int_ops_per_s(self) -> float:
        return self.int_ops_per_clock_per_sm * self.sms * self.clock_hz

    @property
    def issue_per_s(self) -> float:
        """Thread instructions per second all warp schedulers can issue."""
        return self.issue_per_clock_per_sm * self.sms * self.clock_hz

    @property
    def bandwidth(self) -> float:
        """HBM bytes/s a streaming kernel reaches: measured where known."""
        return self.measured.get("hbm_bandwidth", self.hbm_bytes_per_s * self.efficiency["bandwidth"])

    def path_fraction(self, path: str) -> float:
        """Fraction of the dense peak a GEMM on matrix-instruction `path`
        (mma, wgmma) reaches on this GPU."""
        v = self.efficiency.get(path, 0.0)
        if v <= 0:
            raise HardwareError(f"{self.name} has no {path} path (efficiency.{path} is 0); "
                                f"{'only Hopper has wgmma' if path == 'wgmma' else 'give efficiency.' + path}")
        return v

    @property
    def has_wgmma(self) -> bool:
        return self.efficiency.get("wgmma", 0.0) > 0

    def with_efficiency(self, **values) -> "GPU":
        unknown = set(values) - set(EFFICIENCY_KEYS) - set(OPTIONAL_EFFICIENCY)
        if unknown:
            raise HardwareError(f"unknown efficiency constant {sorted(unknown)[0]!r}; "
                                f"known: {', '.join([*EFFICIENCY_KEYS, *OPTIONAL_EFFICIENCY])}")
        return replace(self, efficiency=MappingProxyType({**self.efficiency, **values}))


def gpu_names() -> list[str]:
    return sorted(p.stem for p in GPU_PRESETS.glob("*.yaml"))


def load_gpu(name_or_path) -> GPU:
    """A preset name (`a100`, `h100`, `h200`) or a path to a YAML description."""
    return gpu_from_node(load_named(name_or_path, GPU_PRESETS, "GPU preset", "GPU presets"))


def parse_gpu(text: str, file: str = "<gpu>") -> GPU:
    return gpu_from_node(load(text, file))


_REQUIRED = ("name", "sms", "clock", "tensor_tflops", "fp32_tflops", "sfu_ops_per_clock_per_sm", "hbm_bandwidth",
             "l2", "smem_per_sm", "smem_per_block", "registers_per_sm", "max_threads_per_sm",
             "max_blocks_per_sm", "sm_load_bytes_per_clock", "efficiency")


def gpu_from_node(root: Node) -> GPU:
    top = root.mapping(required=_REQUIRED, optional=("doc", "measured", "smem_bytes_per_clock",
                                                                "int_ops_per_clock_per_sm", "issue_per_clock_per_sm"))
    tensor = {}
    for dtype, v in top["tensor_tflops"].items():
        tensor[dtype] = v.number() * 1e12
    if not tensor:
        raise top["tensor_tflops"].error("give at least one dtype's tensor-core rate")
    measured = {}
    if "measured" in top:
        m = top["measured"].mapping(optional=("tensor_tflops_bf16", "hbm_bandwidth"))
        if "tensor_tflops_bf16" in m:
            measured["tensor_flops_bf16"] = m["tensor_tflops_bf16"].number() * 1e12
        if "hbm_bandwidth" in m:
            measured["hbm_bandwidth"] = m["hbm_bandwidth"].number("bytes/s")
    eff_node = top["efficiency"]
    e = eff_node.mapping(required=tuple(EFFICIENCY_KEYS), optional=tuple(OPTIONAL_EFFICIENCY))
    eff = {k: d for k, (_, d) in OPTIONAL_EFFICIENCY.items()}
    for k in [k for k in (*EFFICIENCY_KEYS, *OPTIONAL_EFFICIENCY) if k in e]:
        v = e[k].number(allow_zero=(k in ("launch_us", "wgmma", "serial_overlap", "ws_overlap", "combine_us",
                                             "program_cycles")))
        if k in FRACTIONS and v > 1:
            raise e[k].error(f"{k} is a fraction ({EFFICIENCY_KEYS.get(k) or OPTIONAL_EFFICIENCY[k][0]}); got {v}, above 1")
        eff[k] = v
    gpu = GPU(
        name=top["name"].string(), doc=top["doc"].string() if "doc" in top else "",
        sms=top["sms"].integer(), clock_hz=top["clock"].number("Hz"),
        tensor_flops=MappingProxyType(tensor), fp32_flops=top["fp32_tflops"].number() * 1e12,
        sfu_ops_per_clock_per_sm=top["sfu_ops_per_clock_per_sm"].integer(),
        hbm_bytes_per_s=top["hbm_bandwidth"].number("bytes/s"), l2_bytes=int(top["l2"].number("bytes")),
        smem_per_sm=int(top["smem_per_sm"].number("bytes")), smem_per_block=int(top["smem_per_block"].number("bytes")),
        registers_per_sm=top["registers_per_sm"].integer(), max_threads_per_sm=top["max_threads_per_sm"].integer(),
        max_blocks_per_sm=top["max_blocks_per_sm"].integer(),
        sm_load_bytes_per_clock=top["sm_load_bytes_per_clock"].integer(),
        smem_bytes_per_clock=top["smem_bytes_per_clock"].integer() if "smem_bytes_per_clock" in top else 128,
        **{k: top[k].integer() for k in ("int_ops_per_clock_per_sm", "issue_per_clock_per_sm") if k in top},
        measured=MappingProxyType(measured), efficiency=MappingProxyType(eff))
    if gpu.smem_per_block > gpu.smem_per_sm:
        raise top["smem_per_block"].error(f"{gpu.smem_per_block} bytes per block is more than the SM has "
                                          f"({gpu.smem_per_sm})")
    return gpu


__all__ = ["EFFICIENCY_KEYS", "FRACTIONS", "OPTIONAL_EFFICIENCY", "GPU", "gpu_names", "load_gpu", "parse_gpu"]
