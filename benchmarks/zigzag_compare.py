"""attnc's spatial mapper beside ZigZag's (pip `zigzag-dse`, a benchmark-only
dependency: `pip install -e .[bench]`) on the same GEMM layers, the same
256 x 256 array, 16 MiB buffer, DRAM bandwidth and energies (FuseMax's
preset): time to the best mapping, mappings evaluated per second, and the
latency and energy each finds (docs/mapper.md explains how the cost models
differ).

    .venv/bin/python benchmarks/zigzag_compare.py [--layers qk,av,linear]

Layers (one head of BERT at 4K tokens, and one linear layer of it):
  qk      QK[m, p] = Q[e, p] * K[e, m]         M = P = 4096, E = 64
  av      AV[f, p] = A[m, p] * V[f, m]         M = P = 4096, F = 64
  linear  Y[n, p]  = X[d, p] * W[d, n]         P = 4096, D = N = 768
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import einsum_ir as ei  # noqa: E402
from hw_models import load_spatial  # noqa: E402
from mappers.spatial_search import search  # noqa: E402

# name -> (attnc design text, shapes, zigzag equation, zigzag dims and sizes)
LAYERS = {
    "qk": ("rank M, P, E\ninput Q[E, P]: f16\ninput K[E, M]: f16\noutput QK[M, P]: f16\n"
           "QK[m, p] = Q[e, p] * K[e, m]\n", dict(M=4096, P=4096, E=64),
           "O[p][m]+=I[p][e]*W[e][m]", ["P", "M", "E"], [4096, 4096, 64]),
    "av": ("rank M, P, F\ninput A[M, P]: f16\ninput V[F, M]: f16\noutput AV[F, P]: f16\n"
           "AV[f, p] = A[m, p] * V[f, m]\n", dict(M=4096, P=4096, F=64),
           "O[p][f]+=I[p][m]*W[m][f]", ["P", "F", "M"], [4096, 64, 4096]),
    "linear": ("rank P, D, N\ninput X[D, P]: f16\ninput W[D, N]: f16\noutput Y[N, P]: f16\n"
               "Y[n, p] = X[d, p] * W[d, n]\n", dict(P=4096, D=768, N=768),
               "O[p][n]+=I[p][d]*W[d][n]", ["P", "N", "D"], [4096, 768, 768]),
}


def accelerator_yaml(hw) -> str:
    """FuseMax's 2D array, buffer and DRAM in ZigZag's format: registers per
    PE (one word per operand), the global buffer (4096-bit rows, the preset's
    per-row energies) and DRAM at the preset's bandwidth per cycle."""
    side = hw.unit("pe2d").shape
    rf = hw.unit("pe2d").register_file
    buf = hw.buffer
    dram_bits = int(hw.dram_bytes_per_cycle * 8)
    mac = hw.unit("pe2d").ops["mac"].energy_pj
    dram_pj = hw.dram.pj_per_bit * 64

    def port(name, kind, bw_min, bw_max, alloc):
        lines = [f"      - name: {name}", f"        type: {kind}", f"        bandwidth_min: {bw_min}",
                 f"        bandwidth_max: {bw_max}", "        allocation:"]
        return lines + [f"          - {a}" for a in alloc]

    def mem(name, size, r, w, operands, ports, served):
        out = [f"  {name}:", f"    size: {size}", f"    r_cost: {r}", f"    w_cost: {w}", "    area: 0",
               "    latency: 1", "    auto_cost_extraction: False", f"    operands: [{', '.join(operands)}]",
               "    ports:"]
        for p in ports:
            out += port(*p)
        return out + [f"    served_dimensions: [{', '.join(served)}]"]

    lines = ["name: fusemax_2d", "memories:"]
    lines += mem("rf_I1", 16, rf.read_pj, rf.write_pj, ["I1"],
                 [("r_port_1", "read", 16, 16, ["I1, tl"]), ("w_port_1", "write", 16, 16, ["I1, fh"])], [])
    lines += mem("rf_I2", 16, rf.read_pj, rf.write_pj, ["I2"],
                 [("r_port_1", "read", 16, 16, ["I2, tl"]), ("w_port_1", "write", 16, 16, ["I2, fh"])], [])
    lines += mem("rf_O", 16, rf.read_pj, rf.write_pj, ["O"],
                 [("r_port_1", "read", 16, 16, ["O, tl", "O, th"]),
                  ("w_port_1", "write", 16, 16, ["O, fh", "O, fl"])], [])
    lines += mem("buffer", buf.capacity_bytes * 8, buf.read_pj_per_row, buf.write_pj_per_row, ["I1", "I2", "O"],
                 [("r_port_1", "read", buf.row_bytes * 8, buf.row_bytes * 8 * 64, ["I1, tl", "I2, tl", "O, tl", "O, th"]),
                  ("w_port_1", "write", buf.row_bytes * 8, buf.row_bytes * 8 * 64, ["I1, fh", "I2, fh", "O, fh", "O, fl"])],
                 ["D1", "D2"])
    lines += mem("dram", 10 ** 12, dram_pj, dram_pj, ["I1", "I2", "O"],
                 [("rw_port_1", "read_write", 64, dram_bits,
                   ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"])], ["D1", "D2"])
    lines += ["operational_array:", "  input_precision: [16, 16]", f"  unit_energy: {mac}", "  unit_area: 1",
              "  dimensions: [D1, D2]", f"  sizes: [{side[0]}, {side[1]}]"]
    return "\n".join(lines) + "\n"


def mapping_yaml() -> str:
    """Only the operand links: ZigZag chooses the spatial and temporal mapping itself."""
    return "- name: default\n  memory_operand_links:\n    O: O\n    W: I2\n    I: I1\n"


def workload_yaml(eq, dims, sizes) -> str:
    return ("- id: 0\n  name: layer\n  operator_type: Gemm\n"
            f"  equation: {eq}\n  loop_dims: [{', '.join(dims)}]\n  loop_sizes: [{', '.join(map(str, sizes))}]\n"
            "  operand_precision:\n    W: 16\n    I: 16\n    O: 16\n    O_final: 16\n"
            "  operand_source:\n    I: 0\n")


def run_zigzag(name, hw, tmp: Path) -> dict:
    from zigzag import api
    _, _, eq, dims, sizes = LAYERS[name]
    (tmp / "acc.yaml").write_text(accelerator_yaml(hw))
    (tmp / "map.yaml").write_text(mapping_yaml())
    (tmp / f"{name}.yaml").write_text(workload_yaml(eq, dims, sizes))
    from zigzag.cost_model import cost_model as cm
    count = [0]
    init = cm.CostModelEvaluation.__init__

    def counted(self, *args, **kw):     # ZigZag reports no count: every cost-model evaluation is one mapping
        count[0] += 1
        init(self, *args, **kw)

    cm.CostModelEvaluation.__init__ = counted
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        energy, latency, cmes = api.get_hardware_performance_zigzag(
            str(tmp / f"{name}.yaml"), str(tmp / "acc.yaml"), str(tmp / "map.yaml"), opt="latency",
            dump_folder=str(tmp / f"out-{name}"), loma_show_progress_bar=False)
    finally:
        cm.CostModelEvaluation.__init__ = init
    best = _layer_cme(cmes)
    return {"latency_cycles": float(latency), "energy_pj": float(energy), "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "evaluated": count[0],
            "mapping": f"spatial {best.spatial_mapping}, temporal {best.temporal_mapping}".replace("\n", " ")}


def _layer_cme(x):
    """The one layer's cost-model evaluation inside ZigZag's nested (sum, [(layer, info)]) answer."""
    if hasattr(x, "spatial_mapping"):
        return x
    if isinstance(x, (list, tuple)):
        for y in x:
            found = _layer_cme(y)
            if found is not None:
                return found
    return None


def run_attnc(name, hw) -> dict:
    text, shapes, *_ = LAYERS[name]
    c = ei.parse(text, f"{name}.ein")
    t0, c0 = time.perf_counter(), time.process_time()
    f = search(c, hw, shapes)
    cpu = time.process_time() - c0
    return {"latency_cycles": f.report.latency_cycles, "energy_pj": f.report.total_energy(),
            "wall_s": time.perf_counter() - t0, "cpu_s": cpu, "evaluated": f.evaluated,
            "mapping": f"tiles k0={f.candidate.k0} q0={f.candidate.q0} q1={f.candidate.q1}, axes {f.candidate.axes}, "
                       f"keep {f.candidate.keep}"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="qk,av,linear")
    a = ap.parse_args()
    logging.disable(logging.INFO)
    hw = load_spatial("fusemax")
    print("| layer | tool | latency cycles | energy uJ | CPU s | mappings | mappings / CPU s |")
    print("|---|---|---|---|---|---|---|")
    notes = []
    with tempfile.TemporaryDirectory(prefix="zigzag") as tmp:
        for name in a.layers.split(","):
            rows = [("attnc", run_attnc(name, hw))]
            try:
                rows.append(("zigzag", run_zigzag(name, hw, Path(tmp))))
            except Exception as e:        # report what ZigZag said and go on with the next layer
                print(f"| {name} | zigzag | failed: {type(e).__name__}: {str(e)[:200]} |")
            for tool, r in rows:
                rate = f"{r['evaluated'] / r['cpu_s']:,.0f}" if isinstance(r["evaluated"], int) else "-"
                print(f"| {name} | {tool} | {r['latency_cycles']:,.0f} | {r['energy_pj'] / 1e6:,.2f} | "
                      f"{r['cpu_s']:.1f} | {r['evaluated']} | {rate} |", flush=True)
                notes.append(f"{name} {tool}: {r['mapping']}")
    print("\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
