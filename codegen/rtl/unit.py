"""The per-element datapath of one Einsum: its generator, its bit-exact
Python model and its latency formula, side by side.

An Einsum's map expression (and reduction) becomes a sequential PE program,
the way FuseMax's PEs run it: one operation per step, each operation taking
the cycles the hardware's table gives its kind (exp: six MACs, one per
cycle), so a point takes exactly the simulator's cycles per point
(`SpatialUnit.cycles_per_point`: the sum over the expression's operations).
Operations the simulator does not charge are wiring: negation, an integer
coordinate used as a value, constants. The predicate is comparators beside
the datapath (the simulator charges it nothing either): `exists` says
whether the point exists; a removed point gives the Einsum's identity (a
map) or leaves the accumulator unchanged (a reduction).

Everything is printed from the IR (no per-design code), as codegen.triton
prints its element-wise parts; an operator with no hardware form here is
refused, naming the Einsum and the operator.

Timing (one convention for every block, docs/rtl.md): `start` is sampled at
a rising edge (edge 0, the input register); the steps run on edges 1 ..
`cycles`; the result (`y`, `exists`) is in its register and `done` high
after edge `cycles` + 1. `ready` is high in the last cycle, so points issue
every `cycles` edges (II = cycles, at least 1): N points streamed back to
back take N x cycles + 1 edges, the simulator's busy cycles plus one.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from einsum_ir.ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, Sym
from einsum_ir.ops import REDUCE_RULES, RULES

from ..names import comment_text
from . import fixed as fx
from .fixed import Fmt, RTLError, lit

CW = 32                        # width of integer coordinates and shape symbols
MAX_CYCLES = 255               # the step counter's range
DEFAULT_CYCLES = {"add": 1, "mul": 1, "mac": 1, "max": 1, "divide": 1, "exp": 6, "compare": 1, "logic": 1,
                  "select": 1, "abs": 1, "tanh": 9, "sigmoid": 8}
NO_HARDWARE = {"log": "a logarithm", "log2": "a logarithm", "sqrt": "a square root",
               "floordiv": "floor division", "mod": "a modulo", "pow": "a power",
               "sin": "a sine", "cos": "a cosine", "tan": "a tangent", "erf": "the error function",
               "softplus": "a softplus (exp and log)", "logsigmoid": "a log-sigmoid (exp and log)",
               "log1p": "a logarithm", "expm1": "an exponential minus one",
               "band": "a bitwise and", "bor": "a bitwise or", "xor": "a bitwise xor",
               "shl": "a shift", "shr": "a shift"}


def cycles_table(unit=None) -> dict[str, int]:
    """Cycles per operation kind: the hardware unit's table where it lists
    the kind, the defaults above where it does not."""
    table = dict(DEFAULT_CYCLES)
    if unit is not None:
        for kind, cost in unit.ops.items():
            table[kind] = cost.cycles
    return table


@dataclass
class Val:
    """A lowered expression: its type ('fx', 'int', 'bool'), its Verilog
    text (over input and step registers) and its Python model."""
    type: str
    v: str
    py: Callable[[dict], int]


@dataclass
class Step:
    reg: str
    type: str
    kind: str
    cycles: int
    text: str                          # the IR operation, for the comment
    value: str                         # Verilog value, valid in the step's last cycle
    micro: list[str] = field(default_factory=list)   # statements of the cycles before the last (exp's MACs)


def initiation_interval(cycles_per_point: int) -> int:
    """Edges between points a unit takes back to back: its cycles per point
    (a 0-operation Einsum still registers once). The simulator's epoch
    pipeline uses this formula too."""
    return max(1, int(cycles_per_point))


@dataclass
class Unit:
    """One Einsum's datapath. `model` is the bit-exact reference of `verilog`."""
    name: str
    einsum: Einsum
    fmt: Fmt
    operands: list[tuple[str, Access, str]]       # (port, access, 'fx' | 'bool')
    coords: list[tuple[str, str]]                 # (port, index variable)
    syms: list[tuple[str, str]]                   # (port, shape symbol)
    steps: list[Step]
    root: Val
    pred: Val | None
    reduce: str | None                            # None: a map
    identity: int
    notes: list[str]
    verilog: str = ""

    @property
    def cycles_per_point(self) -> int:
        """PE cycles one point occupies: the simulator's cycles per point."""
        return sum(s.cycles for s in self.steps)

    @property
    def ii(self) -> int:
        """Edges between points streamed back to back (a 0-operation Einsum
        still registers once)."""
        return initiation_interval(self.cycles_per_point)

    @property
    def latency(self) -> int:
        """Edges from the edge that samples `start` to the one after which
        `done` is high: the input register, then one edge per cycle."""
        return self.ii + 1

    def model(self, ins: list[int], coords: dict[str, int] | None = None, syms: dict[str, int] | None = None,
              acc: int | None = None) -> tuple[int, bool]:
        """(y, exists) for one point; `acc` is the running value of a
        reduction (None: the first point, the identity)."""
        env = {"in": list(ins), "c": dict(coords or {}), "k": dict(syms or {})}
        exists = True if self.pred is None else bool(self.pred.py(env))
        base = self.identity if acc is None else acc
        if self.reduce is None:
            return (self.root.py(env) if exists else self.identity), exists
        return (self.root.py({**env, "acc": base}) if exists else base), exists


class _Lower:
    """Lowers one Einsum's expressions to steps (`free`: wiring, no steps)."""

    def __init__(self, c: Cascade, e: Einsum, fmt: Fmt, costs: dict[str, int]):
        self.c, self.e, self.f, self.costs = c, e, fmt, costs
        self.operands: dict[Access, tuple[str, str]] = {}
        self.coords: dict[str, str] = {}
        self.syms: dict[str, str] = {}
        self.steps: list[Step] = []
        self.notes: list[str] = []

    def fail(self, node: Expr, why: str) -> RTLError:
        loc = getattr(node, "loc", None) or self.e.loc
        return RTLError(f"{self.c.name}: Einsum {self.e.name}: {why}", loc, self.c.source)

    # -- leaves ----------------------------------------------------------------------------
    def leaf(self, e: Expr) -> Val:
        f = self.f
        if isinstance(e, Num):
            v = float(e.value)
            if math.isfinite(v) and v == int(v) and abs(v) < 2 ** (CW - 2):
                n = int(v)
                return Val("int", lit(n, CW), lambda env, n=n: n)
            q = f.from_float(v)
            if v != 0 and q == 0 or abs(v) != float("inf") and abs(f.to_float(q) - v) > f.ulp:
                self.notes.append(f"constant {e} is {f.to_float(q)!r} in {f.name}")
            return Val("fx", lit(q, f.width), lambda env, q=q: q)
        if isinstance(e, Sym):
            port = self.syms.setdefault(e.name, f"k{len(self.syms)}_{_ident(e.name)}")
            return Val("int", f"r_{port}", lambda env, n=e.name: env["k"][n])
        if isinstance(e, Idx):
            port = self.coords.setdefault(e.name, f"c{len(self.coords)}_{_ident(e.name)}")
            return Val("int", f"r_{port}", lambda env, n=e.name: env["c"][n])
        assert isinstance(e, Access)
        t = self.c.tensor(e.tensor)
        typ = "bool" if t.dtype == "bool" else "fx"
        if e not in self.operands:
            self.operands[e] = (f"a{len(self.operands)}_{_ident(e.tensor)}", typ)
        port = self.operands[e][0]
        i = list(self.operands).index(e)
        return Val(typ, f"r_{port}", lambda env, i=i: env["in"][i])

    def to_fx(self, x: Val, node: Expr) -> Val:
        if x.type == "fx":
            return x
        if x.type == "int":
            return Val("fx", f"fx_int({x.v})", lambda env, g=x.py: self.f.from_int(g(env)))
        raise self.fail(node, f"a condition used as a number in {node}")

    # -- operations ------------------------------------------------------------------------
    def lower(self, e: Expr, free: bool) -> Val:
        if not isinstance(e, Op):
            return self.leaf(e)
        if e.name in NO_HARDWARE:
            raise self.fail(e, f"operator {e.name} ({NO_HARDWARE[e.name]}, in {e}) has no hardware form in the "
                               "RTL generator; rewrite the design without it or use another target")
        args = [self.lower(a, free) for a in e.args]
        typ, text, py = self.op(e, args)
        kind = RULES[e.name].kind
        if free or kind is None:
            return Val(typ, text, py)
        return self.step(e, kind, typ, text, py, args)

    def op(self, e: Op, args: list[Val]):
        """(type, Verilog text, Python model) of one operator over lowered arguments."""
        f, n = self.f, e.name
        ints = all(a.type == "int" for a in args)
        if n in ("add", "sub", "mul", "neg", "max", "min", "abs", "floor") and ints:
            return self.int_op(n, args)
        if n in ("lt", "le", "gt", "ge", "eq", "ne"):
            a, b = args if ints else [self.to_fx(x, e) for x in args]
            sym = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}[n]
            import operator as o
            fn = {"lt": o.lt, "le": o.le, "gt": o.gt, "ge": o.ge, "eq": o.eq, "ne": o.ne}[n]
            return "bool", f"({a.v} {sym} {b.v})", lambda env, ga=a.py, gb=b.py: int(fn(ga(env), gb(env)))
        if n in ("and", "or", "not"):
            if any(a.type != "bool" for a in args):
                raise self.fail(e, f"{n} of a number in {e}")
            if n == "not":
                return "bool", f"(!{args[0].v})", lambda env, g=args[0].py: int(not g(env))
            sym = "&&" if n == "and" else "||"
            fn = (lambda x, y: x and y) if n == "and" else (lambda x, y: x or y)
            return "bool", f"({args[0].v} {sym} {args[1].v})", \
                lambda env, ga=args[0].py, gb=args[1].py: int(bool(fn(ga(env), gb(env))))
        if n == "select":
            cond, a, b = args
            if cond.type != "bool":
                raise self.fail(e, f"select on a number in {e}")
            if not (a.type == b.type == "int"):
                a, b = self.to_fx(a, e), self.to_fx(b, e)
            return a.type, f"({cond.v} ? {a.v} : {b.v})", \
                lambda env, gc=cond.py, ga=a.py, gb=b.py: ga(env) if gc(env) else gb(env)
        if n not in _FX:
            raise self.fail(e, f"operator {n} (in {e}) has no hardware form in the RTL generator")
        xs = [self.to_fx(a, e) for a in args]
        fn = _FX[n]
        return "fx", f"fx_{_VNAME.get(n, n)}({', '.join(x.v for x in xs)})", \
            lambda env, gs=[x.py for x in xs]: fn(f, *[g(env) for g in gs])

    def int_op(self, n: str, args: list[Val]):
        a = args[0]
        if n == "neg":
            return "int", f"(-{a.v})", lambda env, g=a.py: -g(env)
        if n in ("abs", "floor"):
            return ("int", f"(({a.v} < 0) ? -{a.v} : {a.v})", lambda env, g=a.py: abs(g(env))) if n == "abs" \
                else ("int", a.v, a.py)
        b = args[1]
        if n in ("max", "min"):
            cmp = ">=" if n == "max" else "<="
            fn = max if n == "max" else min
            return "int", f"(({a.v} {cmp} {b.v}) ? {a.v} : {b.v})", lambda env, ga=a.py, gb=b.py: fn(ga(env), gb(env))
        sym = {"add": "+", "sub": "-", "mul": "*"}[n]
        import operator as o
        fn = {"add": o.add, "sub": o.sub, "mul": o.mul}[n]
        return "int", f"({a.v} {sym} {b.v})", lambda env, ga=a.py, gb=b.py: fn(ga(env), gb(env))

    def step(self, e: Op, kind: str, typ: str, text: str, py, args: list[Val]) -> Val:
        cycles = self.costs[kind]
        reg = f"s{len(self.steps)}"
        s = Step(reg, typ, kind, cycles, comment_text(str(e)), text)
        if e.name == "exp" and cycles == 6:
            s.value, s.micro = _exp_micro(self.f, self.to_fx(args[0], e).v)
        self.steps.append(s)
        return Val(typ, reg, py)


def _exp_micro(f: Fmt, x: str) -> tuple[str, list[str]]:
    """exp as six sequential MACs: statements for cycles 0..4, the value of cycle 5."""
    _, c = fx.exp_constants(f)
    X = lambda v: lit(v, f.wide)  # noqa: E731
    micro = [f"ex_t <= fx_exp_reduce({x});", f"ex_p <= fx_exp_horner({X(c[5])}, ex_t, {X(c[4])});"]
    micro += [f"ex_p <= fx_exp_horner(ex_p, ex_t, {X(c[i])});" for i in (3, 2, 1)]
    return f"fx_exp_scale(fx_exp_horner(ex_p, ex_t, {X(c[0])}), ex_t)", micro


_FX = {"add": fx.add, "sub": fx.sub, "mul": fx.mul, "div": fx.div, "neg": fx.neg, "max": fx.fmax, "min": fx.fmin,
       "abs": fx.absolute, "floor": fx.floor, "exp": fx.exp, "exp2": fx.exp2, "tanh": fx.tanh,
       "sigmoid": fx.sigmoid, "clip": fx.clip}
_VNAME = {"div": "div"}


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:40]


def lower_einsum(c: Cascade, e: Einsum, fmt: Fmt, costs: dict[str, int]) -> _Lower:
    """The steps of `e`'s map (and reduction) and its free predicate."""
    lo = _Lower(c, e, fmt, costs)
    if e.is_initial:
        raise lo.fail(e.output, "an initial value is a register's reset, not a datapath")
    if c.tensor(e.name).dtype == "bool":
        raise lo.fail(e.output, "a boolean output (a mask computed by the cascade) has no fixed-point unit")
    lo.pred = lo.lower(e.predicate, free=True) if e.predicate is not None else None
    if lo.pred is not None and lo.pred.type != "bool":
        raise lo.fail(e.predicate, "the predicate is not a condition")
    if e.scan is not None:
        raise lo.fail(e.output, f"a scan ({e.scan}) has no fixed-point unit (a running sum across elements, "
                                "not a map or a reduction of one output element)")
    if not e.reduced:
        lo.root = lo.to_fx(lo.lower(e.expr, free=False), e.expr)
        return lo
    red = e.reduce
    if red == "sum" and isinstance(e.expr, Op) and e.expr.name == "mul":
        a, b = (lo.to_fx(lo.lower(x, free=False), x) for x in e.expr.args)
        text = f"fx_add(acc_base, fx_mul({a.v}, {b.v}))"
        py = lambda env, ga=a.py, gb=b.py: fx.mac(fmt, env["acc"], ga(env), gb(env))  # noqa: E731
        lo.steps.append(Step(f"s{len(lo.steps)}", "fx", "mac", costs["mac"], comment_text(f"acc + {e.expr}"), text))
    else:
        t = lo.to_fx(lo.lower(e.expr, free=False), e.expr)
        fname = {"sum": "add", "max": "max", "min": "min"}[red]
        text = f"fx_{fname}(acc_base, {t.v})"
        fn = _FX[fname]
        py = lambda env, g=t.py, fn=fn: fn(fmt, env["acc"], g(env))  # noqa: E731
        kind = REDUCE_RULES[red].kind
        lo.steps.append(Step(f"s{len(lo.steps)}", "fx", kind, costs[kind], f"acc {red}= term", text))
    lo.root = Val("fx", lo.steps[-1].reg, py)
    return lo


def build_unit(c: Cascade, e: Einsum, fmt: Fmt, costs: dict[str, int] | None = None, name: str | None = None,
               header: list[str] | None = None) -> Unit:
    """The unit of Einsum `e` (generator entry point): steps, model and Verilog."""
    costs = costs or cycles_table()
    lo = lower_einsum(c, e, fmt, costs)
    ident = REDUCE_RULES[e.reduce].identity
    u = Unit(name or f"attnc_{_ident(c.name)}_{_ident(e.name)}", e, fmt,
             [(p, a, t) for a, (p, t) in lo.operands.items()], [(p, v) for v, p in lo.coords.items()],
             [(p, s) for s, p in lo.syms.items()], lo.steps, lo.root, lo.pred,
             e.reduce if e.reduced else None, fmt.from_float(ident), lo.notes)
    if u.cycles_per_point > MAX_CYCLES:
        raise lo.fail(e, f"{u.cycles_per_point} cycles per point: more than the unit's counter holds ({MAX_CYCLES})")
    u.verilog = unit_verilog(u, header or [])
    return u


# ---------------------------------------------------------------- Verilog

def _width(typ: str, fmt: Fmt) -> str:
    return {"fx": f"signed [{fmt.width - 1}:0] ", "int": f"signed [{CW - 1}:0] ", "bool": ""}[typ]


def _schedule(u: Unit) -> list[tuple[int, list[str]]]:
    """(cycle, statements) of every step; the last step's value goes to y/acc."""
    out, cyc = [], 0
    for k, s in enumerate(u.steps):
        for j, stmt in enumerate(s.micro):
            out.append((cyc + j, [stmt]))
        last = cyc + s.cycles - 1
        if k < len(u.steps) - 1:
            out.append((last, [f"{s.reg} <= {s.value};  // {s.text}"]))
        cyc += s.cycles
    return out


def _final(u: Unit) -> list[str]:
    """Statements of the last cycle: y, exists (and the accumulator)."""
    pred = u.pred.v if u.pred is not None else "1'b1"
    W = u.fmt.width
    if not u.steps:
        value = u.root.v
    else:
        last = u.steps[-1]
        value = re.sub(rf"\b{last.reg}\b", f"({last.value})", u.root.v) if u.reduce is None else last.value
    if u.reduce is None:
        return [f"y <= ({pred}) ? {value} : {lit(u.identity, W)};", f"exists <= {pred};"]
    return [f"y <= ({pred}) ? {value} : acc_base;", f"acc <= ({pred}) ? {value} : acc_base;", f"exists <= {pred};"]


def unit_verilog(u: Unit, header: list[str]) -> str:
    f = u.fmt
    W, C = f.width, u.ii
    L: list[str] = [f"// {comment_text(h)}" for h in header]
    L += [f"// Einsum: {comment_text(str(u.einsum))}",
          f"// Number format: {f.name} (signed, {W} bits, {f.frac} fractional), saturating, round to nearest",
          f"// Cycles per point: {u.cycles_per_point}; latency {u.latency} edges from start to done; II {u.ii}",
          "// Steps: " + ("; ".join(f"{s.text} ({s.kind}, {s.cycles})" for s in u.steps) or "none (a register)")]
    L += [f"// Port {p}: {comment_text(str(a))}" for p, a, _ in u.operands]
    L += [f"// Port {p}: coordinate {v}" for p, v in u.coords] + [f"// Port {p}: shape symbol {s}" for p, s in u.syms]
    L += [f"// Note: {comment_text(n)}" for n in u.notes]
    ports = ["input wire clk", "input wire rst", "input wire start", "input wire first"]
    ports += [f"input wire {_width(t, f)}{p}" for p, _, t in u.operands]
    ports += [f"input wire {_width('int', f)}{p}" for p, _ in u.coords + u.syms]
    ports += ["output wire ready", "output reg done", f"output reg signed [{W - 1}:0] y", "output reg exists"]
    L += [f"module {u.name} (", ",\n".join(f"  {p}" for p in ports), ");"]
    L += ["  " + x for x in fx.verilog_functions(f)]
    regs = [(f"r_{p}", t) for p, _, t in u.operands] + [(f"r_{p}", "int") for p, _ in u.coords + u.syms]
    regs += [(s.reg, s.type) for s in u.steps[:-1]]
    L += [f"  reg {_width(t, f)}{r};" for r, t in regs]
    has_exp, red = any(s.micro for s in u.steps), u.reduce is not None
    # declared only where used (verilator -Wall: docs/rtl.md, Lint); a map's `first` is unused (waived)
    L += [f"  reg signed [{f.wide - 1}:0] ex_t, ex_p;  // exp's reduced argument and Horner accumulator"] * has_exp
    L += [f"  reg signed [{W - 1}:0] acc;", "  reg r_first;",
          f"  wire signed [{W - 1}:0] acc_base = r_first ? {lit(u.identity, W)} : acc;"] * red
    L += ["  reg busy;", "  reg [7:0] cyc;",
          f"  assign ready = !busy || cyc == 8'd{C - 1};",
          "  always @(posedge clk) begin",
          "    if (rst) begin",
          "      busy <= 1'b0; done <= 1'b0; cyc <= 8'd0;"
          + (f" r_first <= 1'b1; acc <= {lit(u.identity, W)};" if red else ""),
          f"      y <= {lit(0, W)}; exists <= 1'b0;" + (" ex_t <= 0; ex_p <= 0;" if has_exp else ""),
          "    end else begin",
          "      done <= 1'b0;",
          "      if (busy) begin",
          "        case (cyc)"]
    by_cycle: dict[int, list[str]] = {}
    for cyc, stmts in _schedule(u):
        by_cycle.setdefault(cyc, []).extend(stmts)
    by_cycle.setdefault(C - 1, []).extend(_final(u) + ["done <= 1'b1;", "busy <= 1'b0;"])
    for cyc in sorted(by_cycle):
        L += [f"          8'd{cyc}: begin"] + [f"            {s}" for s in by_cycle[cyc]] + ["          end"]
    L += ["          default: ;", "        endcase", "        cyc <= cyc + 8'd1;", "      end",
          "      if (start && ready) begin",
          "        busy <= 1'b1; cyc <= 8'd0;" + (" r_first <= first;" if red else "")]
    L += [f"        {r} <= {r[2:]};" for r, _ in regs if r.startswith("r_")]
    L += ["      end", "    end", "  end", "endmodule", ""]
    return "\n".join(L)
