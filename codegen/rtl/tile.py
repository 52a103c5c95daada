"""The fixed-point model of a whole cascade: every Einsum point by point
through its unit's bit-exact model (`Unit.model`), in the order the
hardware runs them: Einsums outside the recurrence first, then, for each
step of the iterative rank, the Einsums that iterate over it in cascade
order, then the rest. Values are the units' integers; `run` converts the
inputs from floats and the outputs back, to compare with the float
reference executor (einsum_ir.execute) within the tolerance docs/rtl.md
states."""
from __future__ import annotations

import itertools

import numpy as np

from einsum_ir.ir import Access, Cascade, Idx, Num, Op, Sym
from einsum_ir.shapes import resolve

from . import generate
from .fixed import Fmt, RTLError

MAX_POINTS = 2_000_000


def _index(e, env: dict) -> int:
    if isinstance(e, Num):
        return int(e.value)
    if isinstance(e, Sym):
        return int(env[e.name])
    if isinstance(e, Idx):
        return env["@" + e.name]
    if isinstance(e, Op) and e.name in ("add", "sub", "mul"):
        a, b = (_index(x, env) for x in e.args)
        return a + b if e.name == "add" else a - b if e.name == "sub" else a * b
    if isinstance(e, Op) and e.name in ("div", "floordiv") and all(isinstance(x, (Idx, Sym, Num, Op)) for x in e.args):
        return _index(e.args[0], env) // _index(e.args[1], env)
    if isinstance(e, Op) and e.name == "mod":
        return _index(e.args[0], env) % _index(e.args[1], env)
    raise RTLError(f"the fixed-point model cannot index with {e}")


def _extent(c: Cascade, var: str, env: dict) -> int:
    return int(env[var.upper()])


def _points(c: Cascade, e, env: dict, fixed: dict):
    """Every point of e's iteration space (past the end of a partitioned rank excluded)."""
    vars_ = [v for v in e.iteration_vars if v not in fixed]
    ranges = [range(_extent(c, v, env)) for v in vars_]
    parts = [(r.name.lower(), c.inner_of(r.name).lower(), r.parent) for r in c.ranks
             if r.parent is not None and r.part == "outer"]
    for vals in itertools.product(*ranges):
        pt = dict(fixed, **dict(zip(vars_, vals)))
        if any(o in pt and i in pt and pt[o] * env[i.upper()] + pt[i] >= env[p] for o, i, p in parts):
            continue
        yield pt


def _run_einsum(c, e, u, env, arrays, fixed, trace: list | None = None):
    out_t = arrays[e.name]
    accs: dict = {}
    ops = []
    for pt in _points(c, e, env, fixed):
        ienv = dict(env, **{"@" + k: v for k, v in pt.items()})
        src = [(a.tensor, tuple(_index(i, ienv) for i in a.indices)) for _, a, _ in u.operands]
        ins = [arrays[t][i] for t, i in src]
        coords = {v: pt[v] for _, v in u.coords}
        syms = {s: int(env[s]) for _, s in u.syms}
        key = tuple(_index(i, ienv) for i in e.output.indices)
        if trace is not None:
            ops.append({"einsum": e.name, "src": src, "args": [coords[v] for _, v in u.coords]
                        + [syms[s] for _, s in u.syms], "dst": key, "first": int(key not in accs), "pt": pt})
        y, _ = u.model([int(x) for x in ins], coords, syms, accs.get(key))
        accs[key] = y
    for key, y in accs.items():
        out_t[key] = y
    if trace is not None:       # one unit holds one running value: a reduction's points for one output together
        order = {k: i for i, k in enumerate(dict.fromkeys(op["dst"] for op in ops))}
        trace += sorted(ops, key=lambda op: order[op["dst"]])


def run(c: Cascade, inputs: dict, shapes: dict, fmt: Fmt | None = None, hw=None, mapping=None,
        trace: list | None = None, ints: dict | None = None, raw: bool = False) -> dict:
    """Outputs of `c` computed in the RTL's fixed-point arithmetic, as floats.
    `trace`, when a list, receives every unit operation in an order the RTL
    units can run it (sources, coordinates, destination, `first`); `ints`,
    when a dict, every tensor's integers before the first operation (inputs,
    initial values); `raw`: the outputs as the units' integers."""
    fmt = fmt or Fmt()
    design = generate(c, hw, mapping, fmt)
    env = resolve(c, shapes, inputs)
    arrays = {}
    for t in c.tensors:
        shape = tuple(int(env[r]) + (1 if r in t.iterative else 0) for r in t.ranks)
        if int(np.prod(shape, dtype=float)) > MAX_POINTS:
            raise RTLError(f"tensor {t.name} has {shape} elements: too many for the point-by-point model")
        if t.role == "input":
            x = np.asarray(inputs[t.name])
            arrays[t.name] = x.astype(bool) if t.dtype == "bool" else np.vectorize(fmt.from_float, otypes=[object])(x)
        else:
            arrays[t.name] = np.zeros(shape, dtype=object)
    for e in c.einsums:
        if e.is_initial:
            idx = tuple(slice(None) if not isinstance(i, Num) else int(i.value) for i in e.output.indices)
            arrays[e.name][idx] = fmt.from_float(float(e.expr.value)) if isinstance(e.expr, Num) else _no_init(e)
    if ints is not None:
        ints.update({k: v.copy() for k, v in arrays.items()})
    iters = {e.iterative_var for e in c.einsums if e.iterative_var}
    if len(iters) > 1:
        raise RTLError(f"{c.name}: recurrences over several ranks ({', '.join(sorted(iters))}); the model runs one")
    it = next(iter(iters), None)
    inner = [e for e in c.einsums if not e.is_initial and it is not None and it in e.iteration_vars]
    before = _before(c, inner)
    for e in before:
        _run_einsum(c, e, design.units[e.name], env, arrays, {}, trace)
    if it is not None:
        for step in range(_extent(c, it, env)):
            for e in inner:
                _run_einsum(c, e, design.units[e.name], env, arrays, {it: step}, trace)
    for e in c.einsums:
        if not e.is_initial and e not in inner and e not in before:
            _run_einsum(c, e, design.units[e.name], env, arrays, {}, trace)
    if raw:
        return {t.name: arrays[t.name] for t in c.outputs}
    return {t.name: np.vectorize(fmt.to_float, otypes=[float])(arrays[t.name]) for t in c.outputs}


def _no_init(e):
    raise RTLError(f"Einsum {e.name}: an initial value other than a number has no register reset form")


def _before(c: Cascade, inner: list) -> list:
    """Einsums outside the recurrence that it reads (views such as BK)."""
    names = {e.name for e in inner}
    needed = {a.tensor for e in inner for a in e.reads()} - names
    return [e for e in c.einsums if not e.is_initial and e.name in needed and e not in inner]


def units_verilog(design, name: str) -> str:
    """Every unit of a design side by side, each with its own ports
    (`<Einsum>_<port>`): what the whole-cascade cocotb bench drives, the bench
    standing in for the buffers and the interconnect."""
    from ..names import comment_text
    from .unit import _ident, _width
    f = design.fmt
    ports, body = ["input wire clk", "input wire rst"], []
    for e, u in design.units.items():
        p = _ident(e)
        ins = [("start", ""), ("first", "")] + [(q, _width(t, f)) for q, _, t in u.operands]
        ins += [(q, _width("int", f)) for q, _ in u.coords + u.syms]
        ports += [f"input wire {w}{p}_{q}" for q, w in ins]
        ports += [f"output wire {p}_ready", f"output wire {p}_done", f"output wire signed [{f.width - 1}:0] {p}_y",
                  f"output wire {p}_exists"]
        conns = [f".{q}({p}_{q})" for q, _ in ins] + [f".{q}({p}_{q})" for q in ("ready", "done", "y", "exists")]
        body += [f"  {u.name} u_{p} (.clk(clk), .rst(rst), {', '.join(conns)});"]
    return "\n".join([f"// {comment_text(name)}: every Einsum unit of the design side by side (the top the",
                      "// whole-cascade test bench drives; the bench stands in for the buffers).",
                      f"module {name} (", ",\n".join(f"  {x}" for x in ports), ");", *body, "endmodule", ""])
