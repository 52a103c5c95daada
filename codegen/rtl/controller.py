"""The controller: sequences a mapping's loop nest over the two arrays with
its epoch pipelining (generator, plan and latency formula side by side).

An epoch is one iteration of the mapping's main leaf (the one running most
Einsums), as in the simulator's epochs rule (simulator/schedule.py). Within
an epoch each Einsum is issued (`go_<Einsum>`, high for one cycle) at the
offset where the mapping's critical path places it: a sum in sequence, a
max's branches side by side, each term lasting the Einsum's cycles per epoch
(its points x its unit's cycles per point / PEs used / epochs: the busy
cycles of simulator/compute.py, with the cycles per point of the generated
unit, `Unit.cycles_per_point`; the layout is the simulator's own `_place`).
The loop indices of the epoch are outputs beside the strobes, advanced
innermost first in the nest's order. Einsums of other leaves (AV after the
key loop) take their share of every epoch, as the simulator charges them.

Timing (docs/rtl.md): `start` is sampled at edge 0; cycle s of epoch e
follows edge e L + s (the strobes and indices are decoded from the
registers, so they are valid in that cycle); `done` is registered at edge
epochs x L: counted inclusively, the simulator's epochs x critical path
+ 1 edges (the start register, as for every block). A share of an epoch that is not a whole number of cycles
has no exact sequence and is refused, naming the Einsum."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from ..names import comment_text
from .fixed import RTLError
from .unit import _ident

CW = 32


@dataclass
class Plan:
    loops: list[tuple[str, int]]          # the epochs' loops, outermost first, with extents
    length: int                           # cycles per epoch (the critical path)
    issue: list[tuple[str, int, int]]     # (Einsum or fill_<unit>, offset in the epoch, cycles)
    epochs: int
    digits: list = field(default_factory=list)   # per loop: (itself, the rank it splits, divisor, extent)
    leaf_of: dict = field(default_factory=dict)  # Einsum -> its leaf's place relative to the epochs' (-1, 0, 1)

    def epoch_key(self, einsum: str, pt: dict) -> tuple:
        """The epoch (as loop indices, nest order) a point of `einsum` belongs
        to; a loop the Einsum does not run in sorts before or after all
        epochs, as its leaf comes before or after the epochs' leaf."""
        side = self.leaf_of.get(einsum, 0)
        return tuple(pt[v] if v in pt else (pt[r] // d) % n if r in pt else (-1 if side < 0 else n)
                     for v, r, d, n in self.digits)

    @property
    def cycles(self) -> int:
        """Edges from the one that samples `start` to the one that registers `done`."""
        return self.epochs * self.length + 1


def plan(c, m, hw, shapes: dict, units: dict | None = None) -> Plan:
    """The epoch plan of mapping `m` at `shapes`; `units` (Einsum -> Unit),
    when given, must have the simulator's cycles per point (else refused)."""
    from mappers.mapping import Add, Name, Overlap
    from simulator.analytical import simulate
    from simulator.numbers import Numeric
    from simulator.schedule import _place
    from simulator.tiling import nest
    if m.overlap is not Overlap.EPOCHS:
        raise RTLError(f"mapping {m.name}: overlap {m.overlap.name.lower()}; the controller sequences epochs")
    r = simulate(c, m, hw, shapes)
    for ec in r.einsums:
        u = (units or {}).get(ec.name)
        if u is not None and u.cycles_per_point != ec.cycles_per_point:
            raise RTLError(f"Einsum {ec.name}: the unit takes {u.cycles_per_point} cycles per point, the simulator "
                           f"{ec.cycles_per_point}: generated with another hardware table")
    mm = m.for_shapes(shapes)
    n = nest(c, mm, r.factors, Numeric(dict(r.shapes)))
    named = {ec.name for ec in r.einsums}
    main = max(mm.leaves, key=lambda lf: sum(1 for x in lf.run if x in named))
    loops = [(v, int(n.extent(v))) for v in main.loops]
    epochs = prod(e for _, e in loops)
    assert epochs == r.epochs, (epochs, r.epochs)
    per = {}
    for ec in r.einsums:
        share = ec.busy_cycles / epochs
        if share != int(share):
            raise RTLError(f"Einsum {ec.name}: {ec.busy_cycles:g} busy cycles over {epochs} epochs is "
                           f"{share:g} per epoch, not a whole number of cycles; choose shapes that divide evenly")
        per[ec.name] = int(share)
    per.update({f"fill_{u.name}": int(u.shape[0]) for u in hw.units.values()})
    path = mm.critical_path.expr if mm.critical_path is not None else Add(tuple(Name(x, None) for x in per
                                                                                if x in named))
    placed: list = []
    end, _ = _place(path, 0.0, per, placed)
    issue = [(name, int(s), int(e - s)) for name, s, e in placed if e > s]
    if int(end) < 1:
        raise RTLError(f"mapping {m.name}: an epoch of {end:g} cycles; nothing to sequence")
    return Plan(loops, int(end), issue, epochs, _digits(mm, loops, r.factors),
                {x: (i > mm.leaves.index(main)) - (i < mm.leaves.index(main))
                 for i, lf in enumerate(mm.leaves) for x in lf.run})


def _digits(mm, loops, factors: dict) -> list:
    """For each loop of the epochs: the iteration variable it reads and how
    (a factor of a rank split by the mapping: the rank's index divided by the
    factors inside it, modulo its extent)."""
    out = []
    for v, extent in loops:
        for rank, parts in mm.factors:
            names = [f.lower() for f, _ in parts]
            if v in names:
                inner = prod(int(factors[f.upper()]) for f in names[names.index(v) + 1:])
                out.append((v, rank.lower(), inner, int(factors[v.upper()])))
                break
        else:
            out.append((v, v, 1, extent))
    return out


def controller_verilog(name: str, p: Plan, header: list[str], drain: int = 0) -> str:
    """The sequencer: loop counters, the epoch's cycle counter (`cyc`), the
    epochs so far (`epoch`), one strobe per issue; `drain` more epochs after
    the nest's last (the top's skewed windows finish in them)."""
    L = [f"// {comment_text(h)}" for h in header]
    L += [f"// Controller: {p.epochs} epochs of {p.length} cycles; loops "
          + ", ".join(f"{v} < {e}" for v, e in p.loops) + f"; {p.cycles + drain * p.length} edges from start "
          f"to done" + (f" ({drain} drain epochs after the nest)" if drain else "") + ".",
          *[f"// Issue {x} at cycle {s} of each epoch ({k} cycles)" for x, s, k in p.issue]]
    params = ", ".join(f"parameter integer N_{_ident(v)} = {e}" for v, e in p.loops)
    ports = ["input wire clk", "input wire rst", "input wire start", "output reg busy", "output reg done",
             f"output reg [{CW - 1}:0] cyc", f"output reg [{CW - 1}:0] epoch"]
    ports += [f"output reg [{CW - 1}:0] i_{_ident(v)}" for v, _ in p.loops]
    ports += [f"output wire go_{_ident(x)}" for x, _, _ in p.issue]
    L += [f"module {name} #({params}, parameter integer EPOCH = {p.length}) (",
          ",\n".join(f"  {x}" for x in ports), ");"]
    L += [f"  reg [{CW - 1}:0] dr;  // drain epochs so far" if drain else "",
          *[f"  assign go_{_ident(x)} = busy && cyc == {s};" for x, s, _ in p.issue],
          "  always @(posedge clk) begin",
          "    if (rst) begin",
          "      busy <= 1'b0; done <= 1'b0; cyc <= 0; epoch <= 0;" + (" dr <= 0;" if drain else ""),
          *[f"      i_{_ident(v)} <= 0;" for v, _ in p.loops],
          "    end else begin",
          "      done <= 1'b0;",
          "      if (busy) begin",
          "        if (cyc == EPOCH - 1) begin",
          "          cyc <= 0; epoch <= epoch + 1;"]
    if drain:
        L += [f"          if (dr != 0) begin if (dr == {drain}) begin busy <= 1'b0; done <= 1'b1; end "
              "else dr <= dr + 1; end else begin"]
        L += _advance(p.loops, "            ", "dr <= 1;")
        L += ["          end"]
    else:
        L += _advance(p.loops, "          ")
    L += ["        end else cyc <= cyc + 1;",
          "      end else if (start) begin",
          "        busy <= 1'b1; cyc <= 0; epoch <= 0;" + (" dr <= 0;" if drain else ""),
          *[f"        i_{_ident(v)} <= 0;" for v, _ in p.loops],
          "      end",
          "    end",
          "  end",
          "endmodule", ""]
    return "\n".join(L)


def _advance(loops: list[tuple[str, int]], ind: str, last: str = "busy <= 1'b0; done <= 1'b1;") -> list[str]:
    """The innermost loop index counts; an index at its end wraps and carries outward; the last epoch ends."""
    out, depth = [], ind
    for v, _ in reversed(loops):
        iv = f"i_{_ident(v)}"
        out += [f"{depth}if ({iv} != N_{_ident(v)} - 1) {iv} <= {iv} + 1;", f"{depth}else begin",
                f"{depth}  {iv} <= 0;"]
        depth += "  "
    out += [f"{depth}{last}"]
    for _ in loops:
        depth = depth[:-2]
        out.append(f"{depth}end")
    return out
