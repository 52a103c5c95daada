"""Figures of `attnc map --plot` (a roofline) and `attnc simulate --plot` (a
per-unit timeline). Each figure is written with its numbers beside it (the
roofline as FILE.json, the timeline as FILE.csv), taken from the model's
result unchanged, so the picture can be checked and replotted."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from einsum_ir import EinError

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def check_plot_path(path: str, data_suffix: str, force: bool) -> None:
    """A figure path that ends in a known suffix, is not a directory, and
    overwrites neither it nor its data file unless `force`."""
    p = Path(path)
    if p.suffix.lower() not in FIGURE_SUFFIXES:
        raise EinError(f"--plot {path}: the file name must end in .png, .pdf or .svg")
    if p.is_dir():
        raise EinError(f"--plot {path} is a directory; give a file name")
    for f in (p, p.with_suffix(data_suffix)):
        if f.exists() and not force:
            raise EinError(f"{f} exists; pass --force to overwrite it or choose another --plot file")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# ------------------------------------------------------------------ roofline (attnc map)

def _point(label: str, kind: str, p, best: bool = False) -> dict:
    """One prediction as a roofline point; one without flops or HBM bytes has
    no place on log-log axes (`plotted` false), never a made-up one."""
    plotted = p.flops > 0 and p.hbm_bytes > 0 and p.time_s > 0
    return {"label": label, "kind": kind, "mapping": str(p.mapping) if p.mapping else None,
            "time_s": p.time_s, "flops": p.flops, "hbm_bytes": p.hbm_bytes,
            "intensity_flop_per_byte": p.flops / p.hbm_bytes if p.hbm_bytes > 0 else None,
            "flops_per_s": p.flops / p.time_s if p.time_s > 0 else None,
            "binding": p.binding, "best": best, "plotted": plotted}


def roofline_data(r) -> dict:
    """The roofline's numbers from an attnc.gpu.MapResult: the GPU's roofs
    for the mapping's element type, and one point per distinct fused
    prediction, the same design unfused, and the other algorithm (linear
    attention, its own flops)."""
    from .gpu import distinct
    b = r.best[0]
    points = [_point(f"{p.kind} {p.mapping}" + (f" (= {n} more)" if n else ""), p.kind, p, best=p is b)
              for p, n, _ in distinct(r.best)]
    if r.unfused is not None:          # a chunked kernel has no score matrix to unfuse
        points.append(_point("same design, unfused (QK^T, softmax, PV through HBM)", "unfused", r.unfused))
    if r.linear is not None:
        points.append(_point("other algorithm: linear attention, chunked (not this design; its own flops)",
                             "other-algorithm", r.linear))
    peak = b.peak_flops
    return {"design": r.design, "gpu": r.gpu.name, "dtype": b.mapping.dtype,
            "shapes": {k: v for k, v in r.env.items()},
            "roofs": {"compute_flops_per_s": peak, "hbm_bytes_per_s": r.gpu.hbm_bytes_per_s,
                      "hbm_reached_bytes_per_s": r.gpu.bandwidth, "ridge_flop_per_byte": peak / r.gpu.hbm_bytes_per_s},
            "points": points}


_STYLE = {"fused": dict(marker="o", color="tab:blue"), "unfused": dict(marker="s", color="tab:red"),
          "other-algorithm": dict(marker="^", color="tab:grey")}


def plot_roofline(r, path: str) -> str:
    """Throughput against arithmetic intensity, log-log: the compute roof
    (tensor-core peak for the element type) and the HBM roof, the best fused
    mapping starred. Writes PATH and PATH.json; returns the JSON's path."""
    import numpy as np
    d = roofline_data(r)
    best = next(p for p in d["points"] if p["best"])
    if not best["plotted"]:
        raise EinError(f"--plot: the model predicts {best['flops']:g} flops and {best['hbm_bytes']:g} HBM bytes for "
                       f"{d['design']}'s best kernel; a roofline needs both above 0")
    plt = _pyplot()
    roofs = d["roofs"]
    xs = [p["intensity_flop_per_byte"] for p in d["points"] if p["plotted"]]
    lo, hi = min(xs + [roofs["ridge_flop_per_byte"]]) / 4, max(xs + [roofs["ridge_flop_per_byte"]]) * 4
    x = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    peak = roofs["compute_flops_per_s"] / 1e12
    ax.plot(x, np.minimum(peak, x * roofs["hbm_bytes_per_s"] / 1e12), color="black", linewidth=2,
            label=f"roofs: {d['dtype']} tensor cores {peak:.0f} TFLOP/s, HBM {roofs['hbm_bytes_per_s'] / 1e12:.2f} TB/s")
    ax.plot(x, np.minimum(peak, x * roofs["hbm_reached_bytes_per_s"] / 1e12), color="black", linestyle="--",
            linewidth=1, label=f"HBM as reached by a streaming kernel ({roofs['hbm_reached_bytes_per_s'] / 1e12:.2f} TB/s)")
    seen = set()
    for p in sorted((q for q in d["points"] if q["plotted"]), key=lambda q: q["best"]):   # the best on top
        style = dict(_STYLE.get(p["kind"], _STYLE["fused"]))
        if p["best"]:
            style.update(marker="*", color="tab:green")
        label = (f"best {p['kind']} mapping" if p["best"] else
                 {"unfused": "same design, unfused",
                  "other-algorithm": "other algorithm: linear attention (not this design)"}.get(
                     p["kind"], f"other {p['kind']} mappings (same design)"))
        ax.scatter(p["intensity_flop_per_byte"], p["flops_per_s"] / 1e12, s=180 if p["best"] else 50,
                   zorder=4 if p["best"] else 3, label=None if label in seen else label, edgecolor="black",
                   linewidth=0.5, **style)
        seen.add(label)
        if p["kind"] in ("unfused", "other-algorithm") or p["best"]:   # the other mappings sit by the best
            ax.annotate(_point_note(p), (p["intensity_flop_per_byte"], p["flops_per_s"] / 1e12), xytext=(8, -3),
                        textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ys = [p["flops_per_s"] / 1e12 for p in d["points"] if p["plotted"]]
    ax.set_ylim(min(ys + [lo * roofs["hbm_reached_bytes_per_s"] / 1e12]) / 2, peak * 2)
    ax.set_xlabel("arithmetic intensity (FLOP per HBM byte moved)")
    ax.set_ylabel("predicted throughput (TFLOP/s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    from einsum_ir.shapes import shown_shapes          # no literal extents (_2=2)
    shapes = " ".join(f"{k}={v}" for k, v in shown_shapes(d["shapes"]).items())
    ax.set_title(f"Roofline: {d['design']} on {d['gpu']} ({d['dtype']}), {shapes}\n(GPU model, attnc map)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    data = Path(path).with_suffix(".json")
    data.write_text(json.dumps(d, indent=2) + "\n")
    return str(data)


def _point_note(p: dict) -> str:
    t = p["time_s"]
    when = f"{t * 1e6:,.1f} us" if t < 1e-2 else f"{t * 1e3:,.2f} ms"
    name = {"unfused": "unfused", "other-algorithm": "linear attention"}.get(p["kind"], f"best {p['kind']}")
    return f"{name}: {when}, {p['binding']}"


# ------------------------------------------------------------------ timeline (attnc simulate)

TIMELINE_FIELDS = ("unit", "einsum", "epoch", "start_cycles", "end_cycles", "critical")


def timeline_bars(m, hw, r, shown_epochs: int = 3) -> list:
    """simulator.schedule.timeline for a report of simulator.analytical.simulate."""
    from simulator.schedule import Schedule, timeline
    sch = Schedule(r.latency_cycles, r.epochs, r.critical_path_cycles, r.latency_rule, r.critical_path,
                   r.unit_busy_cycles)
    return timeline(m.for_shapes(r.shapes), r.einsums, hw, sch, r.dram_cycles, r.dram_by_einsum, shown_epochs)


def plot_timeline(m, hw, r, path: str, shown_epochs: int = 3) -> str:
    """One row per unit (and DRAM), one bar per Einsum where it occupies the
    unit; bars on the critical path outlined in red and hatched. Writes PATH
    and PATH.csv; returns the CSV's path."""
    plt = _pyplot()
    from matplotlib.patches import Patch
    bars = timeline_bars(m, hw, r, shown_epochs)
    units = [u for u in list(hw.units) + ["dram"] if any(b.unit == u for b in bars)]
    names = list(dict.fromkeys(b.name for b in bars))
    colours = plt.get_cmap("tab20").colors
    colour = {n: colours[i % 20] for i, n in enumerate(n for n in names if n != "DRAM")}
    colour["DRAM"] = "lightgrey"
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.9 * len(units)))
    for b in bars:
        y = units.index(b.unit)
        ax.barh(y, b.end - b.start, left=b.start, height=0.6, color=colour[b.name],
                edgecolor="red" if b.critical else "black", linewidth=2 if b.critical else 0.5,
                hatch="//" if b.critical else None)
        if b.end - b.start > 0.025 * max(x.end for x in bars):
            ax.text((b.start + b.end) / 2, y, b.name, ha="center", va="center", fontsize=7)
    part = "epoch" if r.epochs > 1 else "phase"
    starts = sorted({min(b.start for b in bars if b.epoch == k) for k in {b.epoch for b in bars}})
    for k, t in enumerate(starts if len(starts) > 1 else []):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"{part} {k + 1}", (t, 1), xycoords=("data", "axes fraction"), xytext=(3, 2),
                    textcoords="offset points", fontsize=7, color="grey", va="bottom")
    ax.set_yticks(range(len(units)), [u if u != "dram" else "DRAM" for u in units])
    ax.invert_yaxis()
    from matplotlib.ticker import EngFormatter
    ax.xaxis.set_major_formatter(EngFormatter())          # 50k, 2M: cycles without an offset
    ax.set_xlabel("time (cycles" + (f", epochs 1-{min(r.epochs, shown_epochs)} of {r.epochs:,}; every epoch the same)"
                                    if r.epochs > 1 else ")"))
    ax.set_ylabel("unit")
    handles = [Patch(facecolor=colour[n], edgecolor="black", label=n if n != "DRAM" else "DRAM transfers")
               for n in names]
    handles.append(Patch(facecolor="white", edgecolor="red", hatch="//", linewidth=2, label="critical path"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title="Einsum")
    ax.set_title(f"Timeline: {r.design} on {r.hardware}, latency {r.latency_cycles:,.0f} cycles "
                 f"({r.latency_s * 1e3:.4g} ms)\n{r.latency_rule}", fontsize=9, pad=14)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    data = Path(path).with_suffix(".csv")
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TIMELINE_FIELDS)
        w.writerows([b.unit, b.name, b.epoch, repr(b.start), repr(b.end), int(b.critical)] for b in bars)
    return str(data)
