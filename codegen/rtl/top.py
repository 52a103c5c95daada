"""The top: one module that computes a whole tile computation of a cascade
(generator, schedule and cycle formula side by side; docs/rtl.md, The top).

It holds one synchronous RAM per tensor (inputs, the running statistics,
intermediates, outputs; a view such as BK = K[m1*M0 + m0] is an address,
not a copy), the generated output-stationary 2D array for a contraction
the mapping binds to pe2d (one tile per epoch), lanes of each other
Einsum's generated unit, and per lane (and for the array) a
sequencer whose micro-program (a ROM) lists every operation with when it
issues (with a mapping: the epoch and cycle of the generated controller,
which the top instantiates; else the top's edge count), its source and
destination addresses, its `first` flag and its coordinates: the addresses are the IR's index expressions evaluated over the
iteration space (`tile.run`'s trace), the issue edges the schedule below.
A test bench loads the inputs (and initial values such as RM[0] = -inf)
through a memory port, pulses `start`, waits for `done` and reads the
outputs back through the same port: no DRAM interface.

Schedule (`schedule`): operations in the trace's order (a valid order of
the dependencies; with a mapping, the nest's epoch order), each reduction's points for one output together on one
lane (the unit holds the running value), on the lane where it can start
first; an operation reads its sources only after they were written. With
a mapping at shapes (`controller.plan`), every Einsum issues only inside
its share of each epoch (the controller's windows: cycle s .. s + k of each
epoch of L cycles) on as many lanes as the simulator's PEs for it, so the
units are booked as the mapping books the arrays, the windows moved later
by the hand-off latencies (`_skewed`); without one, each Einsum issues as
soon as it can on `lanes` lanes.

Timing, one convention (docs/rtl.md): edge 0 samples `start`. An
operation issued at edge t reads its operands (registered RAM read) at t,
its unit samples them at t + 1, registers y at t + 1 + c (c: the unit's
II), and the RAM is written at t + 2 + c; a reader may issue at t + 3 + c.
`done` is registered one edge after the last write; `Schedule.cycles`
counts the edges from start to done inclusive, what the bench measures."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..names import comment_text
from .fixed import RTLError, lit
from .unit import CW, _ident, _width

BASE = 1          # the first edge an operation can issue (edge 0 samples start)


# The top's latency formulas (docs/rtl.md, The top): the scheduler below and the
# simulator's epoch pipeline (simulator.events.epoch_pipeline) both use these.

def write_edge(issue: int, ii: int, extra: int = 0) -> int:
    """The edge the RAM takes the result of an operation issued at `issue`:
    the RAM's registered read at issue, the unit samples at issue + 1, its
    result is registered ii later, the RAM written one edge after; `extra`:
    the 2D array's skew (r + c for PE (r, c))."""
    return issue + ii + 2 + extra


def readable(issue: int, ii: int, extra: int = 0) -> int:
    """The first edge a reader of that result may issue (the hand-off: ii + 3 after the issue)."""
    return write_edge(issue, ii, extra) + 1


def done_edges(last_write: int) -> int:
    """Edges from the one that samples `start` to the one that registers
    `done` (one after the last write), inclusive."""
    return last_write + 2


def window_cycles(share: int | float, points_per_output: int, ii: int) -> int | float:
    """An Einsum's window in each epoch: its share of the epoch, or one
    output's points where the mapping spreads a reduction over more PEs than
    it has outputs (each output's points run on one lane: the top holds the
    running value in the unit)."""
    return max(share, points_per_output * ii)


def systolic(c, e, bound: str | None, dataflow: str = "os") -> bool:
    """Whether the top runs Einsum `e` on the generated output-stationary 2D
    array (where its tiles fit): a contraction bound to pe2d, no predicate,
    two distinct fixed-point operands."""
    from einsum_ir.ir import Access
    from . import is_contraction
    return (dataflow == "os" and bound == "pe2d" and is_contraction(e) and e.predicate is None
            and len(set(e.expr.args)) == 2
            and all(isinstance(a, Access) and c.tensor(a.tensor).dtype != "bool" for a in e.expr.args))


MAX_OPERATIONS = 200_000     # the micro-programs' entries: a top for test-sized tiles


def operations(c, shapes: dict, inputs: dict | None = None) -> int:
    """Points of every Einsum with work (an upper bound on the top's operations: masks not applied)."""
    from einsum_ir.shapes import resolve
    env = resolve(c, shapes, inputs)
    return sum(int(np.prod([int(env[v.upper()]) for v in e.iteration_vars], dtype=np.int64))
               for e in c.einsums if not e.is_initial)


@dataclass
class TopOp:
    einsum: str
    srcs: list[tuple[str, int]]        # (memory, flat address) per operand port
    args: list[int]                    # coordinates, then shape symbols
    dst: int                           # flat address in the Einsum's memory
    first: int
    pt: dict = field(default_factory=dict)    # the iteration point (for the epoch it belongs to)
    issue: int = 0
    lane: int = 0                      # a lane, or on the 2D array the PE r * C + c
    ready: int = 0                     # the first edge its operands allow
    extra: int = 0                     # on the 2D array: r + c, the skew before its result


@dataclass
class ArrayTile:
    issue: list[int]                   # the issue edge of each step
    a: list                            # per row: its operand's address at each step (None: an empty row)
    b: list                            # per column, the same
    dst: list                          # per PE r * C + c: the address of its result (None: unused)


@dataclass
class ArrayUse:
    """A contraction on the generated output-stationary 2D array: row r
    streams operand port `rowport`, column c the other one."""
    rows: int
    cols: int
    rowport: int
    tiles: list = field(default_factory=list)


@dataclass
class Memory:
    name: str
    shape: tuple
    bits: int                          # 1 for a bool tensor, else the format's width

    @property
    def words(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def abits(self) -> int:
        return max(1, (self.words - 1).bit_length())


@dataclass
class Schedule:
    ops: list[TopOp]
    lanes: dict[str, int]              # Einsum -> lanes used
    memories: dict[str, Memory]
    port_mem: dict[str, list[str]]     # Einsum -> the memory each operand port reads
    preload: list[tuple[str, int, int]]    # (memory, address, value) read before any unit writes it
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)   # Einsum -> (offset, cycles) per epoch
    epoch: int = 0                     # cycles per epoch (0: no plan)
    ii: dict[str, int] = field(default_factory=dict)
    epochs: int = 0
    main: set = field(default_factory=set)     # Einsums of the epochs' leaf
    arrays: dict = field(default_factory=dict)  # Einsum -> ArrayUse: contractions on the 2D array

    def write_edge(self, op: TopOp) -> int:
        return write_edge(op.issue, self.ii[op.einsum], op.extra)

    @property
    def last_write(self) -> int:
        return max((self.write_edge(op) for op in self.ops), default=0)

    @property
    def cycles(self) -> int:
        """Edges from the one that samples `start` to the one that registers `done`
        (one after the last write), inclusive."""
        return done_edges(self.last_write)

    def parts(self) -> dict[str, int]:
        """With a plan, the cycles as the simulator's and what the top adds:
        `epochs` (epochs x L + 1, the analytical latency and the start
        register), `skew` (the epochs' leaf ends later by the hand-off
        latencies along an epoch's chain of Einsums: its windows moved later),
        `tail` (the other leaves' work left after that, e.g. the last query
        tiles' AV, which the simulator spreads over every epoch); and
        `latency`, the edges of one epoch through the top: cycles =
        (epochs - 1) x L + latency, where the simulator has epochs x L + 1."""
        base = self.epochs * self.epoch + 1
        main = max((self.write_edge(op) + 2 for op in self.ops if op.einsum in self.main), default=base)
        return {"epochs": base, "skew": max(0, main - base), "tail": self.cycles - max(main, base),
                "latency": self.cycles - (self.epochs - 1) * self.epoch}

    def check(self) -> None:
        """Independently of how the schedule was made: every lane issues at
        most once per II, in order, and every operand is read after its last
        write (else RTLError: the top would compute something else)."""
        last: dict = {}
        for op in sorted(self.ops, key=lambda o: (o.einsum, o.lane, o.issue)):
            k = (op.einsum, op.lane)
            if k in last and op.issue < last[k] + self.ii[op.einsum]:
                raise RTLError(f"Einsum {op.einsum} lane {op.lane}: issues at edges {last[k]} and {op.issue}")
            last[k] = op.issue
        written: dict = {}
        for op in self.ops:
            key = (op.einsum, op.dst)
            written[key] = max(written.get(key, 0), self.write_edge(op))
        for op in self.ops:
            for src in op.srcs:
                if src in written and op.issue <= written[src]:
                    raise RTLError(f"Einsum {op.einsum} reads {src[0]}[{src[1]}] at edge {op.issue}, "
                                   f"written at edge {written[src]}")


def _aliases(c, units: dict) -> set:
    """Einsums that only rename an element of another tensor (BK = K[...]): addresses, not units."""
    from einsum_ir.ir import Access
    return {e for e, u in units.items() if not u.steps and u.pred is None and u.reduce is None
            and isinstance(u.einsum.expr, Access)}


def _flat(mem: Memory, idx: tuple) -> int:
    return int(np.ravel_multi_index(tuple(int(i) for i in idx), mem.shape)) if mem.shape else 0


def collect(c, units: dict, trace: list, ints: dict, fmt) -> tuple[list[TopOp], dict, dict, list]:
    """The trace as operations on memories: views resolved to the tensor
    they name, every address flattened; what must be loaded before start."""
    alias = _aliases(c, units)
    target: dict = {}
    for op in trace:
        if op["einsum"] in alias:
            target[(op["einsum"], tuple(op["dst"]))] = op["src"][0]
    resolve = lambda s: resolve(target[(s[0], tuple(s[1]))]) if (s[0], tuple(s[1])) in target else s  # noqa: E731
    mems = {t.name: Memory(t.name, tuple(ints[t.name].shape), 1 if t.dtype == "bool" else fmt.width)
            for t in c.tensors if t.name not in alias}
    ops, port_mem, written, preload = [], {}, set(), {}
    for op in trace:
        if op["einsum"] in alias:
            continue
        srcs = [resolve((t, tuple(i))) for t, i in op["src"]]
        names = [t for t, _ in srcs]
        if port_mem.setdefault(op["einsum"], names) != names:
            raise RTLError(f"Einsum {op['einsum']}: an operand port reads different tensors at different points")
        for t, i in srcs:
            if (t, i) not in written:
                preload.setdefault((t, i), int(ints[t][i]))
        flat = [(t, _flat(mems[t], i)) for t, i in srcs]
        ops.append(TopOp(op["einsum"], flat, list(op["args"]), _flat(mems[op["einsum"]], tuple(op["dst"])),
                         op["first"], op.get("pt", {})))
        written.add((op["einsum"], tuple(op["dst"])))
    pre = [(t, _flat(mems[t], i), v) for (t, i), v in preload.items()]
    return ops, mems, port_mem, pre


def _slots(x: int, n: int, ii: int, window, length: int, epochs: int) -> list[int]:
    """n issue edges >= x, ii apart: inside the Einsum's window (offset, cycles)
    of each of the `epochs` epochs, back to back after them (the drain), or
    back to back anywhere without a window."""
    if window is None:
        return [x + j * ii for j in range(n)]
    s, k, drain = window
    out, w = [], max(0, (x - BASE - s) // length)
    while len(out) < n and w < epochs:
        out += [t for t in (BASE + w * length + s + j * ii for j in range(k // ii)) if t >= x][:n - len(out)]
        w += 1
    x = max([x, drain] + [t + ii for t in out])
    return out + [x + j * ii for j in range(n - len(out))]


def _groups(ops: list[TopOp]) -> list[list[TopOp]]:
    """One output's points together (the unit holds the running value)."""
    out: list = []
    for op in ops:
        if out and not op.first and out[-1][-1].einsum == op.einsum and out[-1][-1].dst == op.dst:
            out[-1].append(op)
        else:
            out.append([op])
    return out


def schedule(groups: list, ii: dict[str, int], lanes: dict[str, int], windows: dict | None = None,
             length: int = 0, epochs: int = 0, arrays: dict | None = None, key=None) -> None:
    """Issue edges and lanes of the groups' operations (in place), in the
    groups' order, by the rules in the module's docstring; an Einsum in
    `arrays` a tile (its groups of one epoch, `key`) at a time on the 2D array."""
    windows, arrays = windows or {}, arrays or {}
    for use in arrays.values():
        use.tiles = []
    ready: dict = {}
    free: dict = {}
    i = 0
    while i < len(groups):
        group, e = groups[i], groups[i][0].einsum
        w = windows.get(e)
        w = w and (*w, BASE + epochs * length)
        if e in arrays:
            j = i + 1
            while j < len(groups) and groups[j][0].einsum == e and key(groups[j]) == key(group):
                j += 1
            _place_tile(groups[i:j], arrays[e], ready, free, w, length, epochs)
            i = j
            continue
        i += 1
        x = max([BASE] + [ready.get(s, BASE) for op in group for s in op.srcs])
        best = None
        for lane in range(lanes.get(e, 1)):
            times = _slots(max(x, free.get((e, lane), BASE)), len(group), ii[e], w, length, epochs)
            if best is None or times[-1] < best[1][-1]:
                best = (lane, times)
        lane, times = best
        for op, t in zip(group, times):
            op.issue, op.lane, op.ready = t, lane, x
        free[(e, lane)] = times[-1] + ii[e]
        ready[(e, group[-1].dst)] = readable(times[-1], ii[e])


def _arrange(groups: list, use: ArrayUse):
    """(row seqs, column seqs, group -> (r, c)) of one tile on the array, or None where it does not fit."""
    k = len(groups[0])
    seq = lambda g, port: tuple(op.srcs[port][1] for op in g)  # noqa: E731
    rows = list(dict.fromkeys(seq(g, use.rowport) for g in groups))
    cols = list(dict.fromkeys(seq(g, 1 - use.rowport) for g in groups))
    if any(len(g) != k for g in groups) or len(rows) > use.rows or len(cols) > use.cols:
        return None
    pos = {id(g): (rows.index(seq(g, use.rowport)), cols.index(seq(g, 1 - use.rowport))) for g in groups}
    return (rows, cols, pos) if len(set(pos.values())) == len(groups) else None


def _place_tile(groups: list, use: ArrayUse, ready: dict, free: dict, window, length: int, epochs: int) -> None:
    """One tile's steps on the array (one per edge, tiles back to back); PE (r, c)'s result r + c edges later."""
    e = groups[0][0].einsum
    fit = _arrange(groups, use)
    if fit is None:
        raise RTLError(f"Einsum {e}: a tile of {len(groups)} outputs does not fit the {use.rows} x {use.cols} array")
    rows, cols, pos = fit
    x = max([BASE] + [ready.get(s, BASE) for g in groups for op in g for s in op.srcs])
    times = _slots(max(x, free.get((e, "array"), BASE)), len(groups[0]), 1, window, length, epochs)
    dst: list = [None] * (use.rows * use.cols)
    for g in groups:
        r, c = pos[id(g)]
        for op, t in zip(g, times):
            op.issue, op.lane, op.ready, op.extra = t, r * use.cols + c, x, r + c
        ready[(e, g[-1].dst)] = readable(times[-1], 1, r + c)     # one step per edge
        dst[r * use.cols + c] = g[-1].dst
    free[(e, "array")] = times[-1] + 1
    pad = lambda seqs, n: [list(q) for q in seqs] + [None] * (n - len(seqs))  # noqa: E731
    use.tiles.append(ArrayTile(times, pad(rows, use.rows), pad(cols, use.cols), dst))


def _arrays(c, design, groups: list, plan) -> dict:
    """Contractions bound to pe2d (`systolic`: no predicate, two fixed-point
    operands, an output-stationary array) whose every tile fits the array, on it."""
    out = {}
    for x, u in design.units.items():
        tiles: dict = {}
        for g in groups:
            if g[0].einsum == x:
                tiles.setdefault(plan.epoch_key(x, g[-1].pt), []).append(g)
        if not (tiles and systolic(c, u.einsum, design.binding.get(x), design.dataflow)):
            continue
        for rowport in (1, 0):
            fits = [_arrange(ts, ArrayUse(design.rows, design.cols, rowport)) for ts in tiles.values()]
            if all(f is not None for f in fits):    # the array instance only as large as the tiles need
                out[x] = ArrayUse(max(len(f[0]) for f in fits), max(len(f[1]) for f in fits), rowport)
                break
    return out


def _in_epochs(groups: list, plan) -> list:
    """The groups in the mapping's epoch order (the trace's order within an
    epoch); the trace's order where that would read a value before it is made."""
    keyed = sorted(range(len(groups)), key=lambda i: (plan.epoch_key(groups[i][-1].einsum, groups[i][-1].pt), i))
    made = {(op.einsum, op.dst) for g in groups for op in g}
    seen: set = set()
    for i in keyed:
        if any(s in made and s not in seen for op in groups[i] for s in op.srcs):
            return groups
        seen |= {(op.einsum, op.dst) for op in groups[i]}
    return [groups[i] for i in keyed]


def _skewed(groups: list, ii: dict, lanes: dict, plan, arrays: dict, key) -> dict:
    """Each Einsum's window, moved later until its first epoch's operations
    can all start in it (the hand-off of the values they read: ii + 3 edges
    after the producer's last issue, r + c more from the array), so that
    every epoch's operations keep to their window: the controller's issue
    pattern, skewed."""
    longest: dict = {}
    for g in groups:
        longest[g[0].einsum] = max(longest.get(g[0].einsum, 0), len(g))
    # a reduction the mapping spreads over more PEs than it has outputs (FuseMax's LM: one cycle,
    # two points per output) runs on fewer lanes for longer: its window holds one output's points
    win = {x: (s, window_cycles(k, longest[x], ii[x])) for x, s, k in plan.issue if x in longest}
    for x, (s, k) in win.items():
        if k < ii[x]:
            raise RTLError(f"Einsum {x}: a share of {k} cycles per epoch is shorter than one point "
                           f"({ii[x]} cycles) on its unit")
    for _ in range(4 * len(win) + 4):
        schedule(groups, ii, lanes, win, plan.length, plan.epochs, arrays, key)
        first, epoch0 = {}, {}
        for g in groups:               # the first epoch's groups: the window opens when all can start
            x = g[0].einsum
            if epoch0.setdefault(x, key(g)) == key(g):
                first[x] = max(first.get(x, 0), g[0].ready)
        new = {x: (max(s, first[x] - BASE) if plan.leaf_of.get(x, 0) == 0 else s, win[x][1])
               for x, s, _ in plan.issue if x in win}
        if new == win:
            return win
        win = new
    raise RTLError("the top's schedule did not settle: the epochs' windows keep moving")


def build(c, design, trace: list, ints: dict, plan=None, pes: dict | None = None,
          lanes: int | dict = 1) -> Schedule:
    """The top's schedule for `tile.run`'s trace: with a controller plan,
    windows and lanes from the mapping (`pes`: Einsum -> the simulator's
    PEs used); else `lanes` per Einsum, as soon as possible."""
    ops, mems, port_mem, pre = collect(c, design.units, trace, ints, design.fmt)
    ii = {e: design.units[e].ii for e in port_mem}
    groups = _groups(ops)
    if plan is not None:
        missing = sorted(set(port_mem) - {x for x, _, _ in plan.issue})
        if missing:
            raise RTLError(f"Einsum {missing[0]} has work but no share of the epoch in the mapping's plan")
        n = {e: max(1, int(pes[e])) for e in port_mem}      # the simulator reports every Einsum with work
        groups = _in_epochs(groups, plan)
        arrays = _arrays(c, design, groups, plan)
        key = lambda g: plan.epoch_key(g[-1].einsum, g[-1].pt)  # noqa: E731
        windows = _skewed(groups, ii, n, plan, arrays, key)
        schedule(groups, ii, n, windows, plan.length, plan.epochs, arrays, key)
        length = plan.length
    else:
        n = {e: lanes if isinstance(lanes, int) else lanes.get(e, 1) for e in port_mem}
        windows, length, arrays = {}, 0, {}
        schedule(groups, ii, n)
    used = {e: 1 + max(op.lane for op in ops if op.einsum == e) for e in port_mem if e not in arrays}
    main = {e for e in port_mem if plan is not None and plan.leaf_of.get(e, 0) == 0}
    s = Schedule(ops, used, mems, port_mem, pre, windows, length, ii, plan.epochs if plan else 0, main, arrays)
    s.check()
    return s


# ---------------------------------------------------------------- Verilog

def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def _rom(name: str, bits: int, values: list[int], depth: int, fill: int = 0) -> list[str]:
    """A ROM as a register array initialised in place (one entry per operation, padded to `depth`);
    a value its width cannot hold is an internal error, never cut to fit."""
    vals = list(values) + [fill] * (depth - len(values))
    bad = next((v for v in vals if not 0 <= v < 1 << bits), None)
    if bad is not None:
        raise RTLError(f"internal error: ROM {name} would hold {bad}, which is not a {bits}-bit value")
    return [f"  reg [{bits - 1}:0] {name} [0:{depth - 1}];",
            "  initial begin", *[f"    {name}[{k}] = {bits}'d{v};" for k, v in enumerate(vals)], "  end"]


def _when(name: str, edges: list[int], depth: int, s: Schedule, tw: int, ptr: str) -> tuple[list[str], str]:
    """(ROMs, condition) of issuing at `edges`: without a plan, at the top's
    edge count t; with one, at the controller's epoch and cycle within it."""
    if not s.epoch:
        return _rom(f"rt_{name}", tw, edges, depth, (1 << tw) - 1), f"busy && t == rt_{name}[{ptr}]"
    at = [divmod(t - BASE, s.epoch) for t in edges]
    return (_rom(f"re_{name}", CW, [e for e, _ in at], depth, (1 << CW) - 1)
            + _rom(f"rc_{name}", CW, [c for _, c in at], depth),
            f"cbusy && cep == re_{name}[{ptr}] && ccyc == rc_{name}[{ptr}]")


def _lane(s: Schedule, design, e: str, lane: int, tw: int) -> tuple[list[str], list[str], str]:
    """(declarations and logic, memory-write statements, the 'finished' condition) of one lane."""
    u, f = design.units[e], design.fmt
    ops = sorted((op for op in s.ops if op.einsum == e and op.lane == lane), key=lambda op: op.issue)
    n, pid = len(ops), f"{_ident(e)}_{lane}"
    pw = _bits(n)
    depth = 1 << pw
    L = [f"  // lane {lane} of {comment_text(e)} ({u.name}): {n} operations"]
    roms, cond = _when(pid, [op.issue for op in ops], depth, s, tw, f"p_{pid}")
    L += roms
    L += _rom(f"rf_{pid}", 1, [op.first for op in ops], depth)
    dst = s.memories[e]
    L += _rom(f"rd_{pid}", dst.abits, [op.dst for op in ops], depth)
    regs, conns = [], []
    for k, ((port, _, typ), m) in enumerate(zip(u.operands, s.port_mem[e])):
        mem = s.memories[m]
        L += _rom(f"rs{k}_{pid}", mem.abits, [op.srcs[k][1] for op in ops], depth)
        regs.append((f"op{k}_{pid}", _width(typ, f), f"m_{_ident(m)}[rs{k}_{pid}[p_{pid}]]"))
        conns.append(f".{port}(op{k}_{pid})")
    for k, (port, _) in enumerate(u.coords + u.syms):
        L += _rom(f"ra{k}_{pid}", CW, [op.args[k] for op in ops], depth)
        regs.append((f"ar{k}_{pid}", _width("int", f), f"ra{k}_{pid}[p_{pid}]"))
        conns.append(f".{port}(ar{k}_{pid})")
    L += [f"  reg [{pw - 1}:0] p_{pid}, w_{pid};  // next operation to issue, next result to write",
          f"  reg st_{pid}, fi_{pid};", *[f"  reg {w}{r};" for r, w, _ in regs],
          f"  wire dn_{pid}, rdy_{pid};", f"  wire signed [{f.width - 1}:0] y_{pid};",
          f"  wire is_{pid} = {cond};",
          f"  {u.name} u_{pid} (.clk(clk), .rst(rst), .start(st_{pid}), .first(fi_{pid}), "
          + ", ".join(conns + [f".ready(rdy_{pid})", f".done(dn_{pid})", f".y(y_{pid})", ".exists()"]) + ");",
          "  always @(posedge clk) begin",
          f"    if (rst || (start && !busy)) begin p_{pid} <= 0; w_{pid} <= 0; st_{pid} <= 1'b0; end",
          "    else begin",
          f"      st_{pid} <= is_{pid};",
          f"      if (is_{pid}) begin",
          f"        p_{pid} <= p_{pid} + 1'b1; fi_{pid} <= rf_{pid}[p_{pid}];",
          *[f"        {r} <= {v};" for r, _, v in regs],
          "      end",
          f"      if (dn_{pid}) w_{pid} <= w_{pid} + 1'b1;",
          "    end",
          "  end"]
    wr = [f"    if (dn_{pid}) m_{_ident(e)}[rd_{pid}[w_{pid}]] <= y_{pid};"]
    return L, wr, (f"w_{pid} == {pw}'d{n}", f"(st_{pid} && !rdy_{pid})")


def interface(s: Schedule, fmt) -> dict[str, int]:
    """The widths of the top's ports: data (the format's), memory number, address."""
    return {"data": fmt.width, "mem": _bits(len(s.memories)), "addr": max(m.abits for m in s.memories.values())}


def _array_block(s: Schedule, design, e: str, use: ArrayUse, tw: int, module: str):
    """(declarations and logic, memory writes, 'finished' conditions) of a contraction on the 2D array."""
    f, R, C, x = design.fmt, use.rows, use.cols, _ident(e)
    W, n, tiles = f.width, sum(len(t.issue) for t in use.tiles), use.tiles
    ma, mb = (s.memories[s.port_mem[e][p]] for p in (use.rowport, 1 - use.rowport))
    pw, tp = _bits(n), _bits(len(tiles))
    steps = [(t, k) for t in tiles for k in range(len(t.issue))]
    L = [f"  // {comment_text(e)} on the {R} x {C} output-stationary array ({module}): {len(tiles)} tiles, "
         f"{n} steps; rows stream {comment_text(ma.name)}, columns {comment_text(mb.name)}"]
    roms, cond = _when(f"a_{x}", [t.issue[k] for t, k in steps], 1 << pw, s, tw, f"ap_{x}")
    L += roms
    L += _rom(f"af_{x}", 1, [int(k == 0) for t, k in steps], 1 << pw)
    L += _rom(f"al_{x}", 1, [int(k == len(t.issue) - 1) for t, k in steps], 1 << pw)
    loads = []
    for side, mem, lanes, count in (("a", ma, "a", R), ("b", mb, "b", C)):
        for i in range(count):
            seqs = [getattr(t, lanes)[i] for t, _ in steps]
            L += _rom(f"{side}a{i}_{x}", mem.abits, [q[k] if q else 0 for q, (_, k) in zip(seqs, steps)], 1 << pw)
            L += _rom(f"{side}e{i}_{x}", 1, [int(q is not None) for q in seqs], 1 << pw)
            word = f"m_{_ident(mem.name)}[{side}a{i}_{x}[ap_{x}]]"
            loads.append(f"        {side}in_{x}[{i * W} +: {W}] <= {side}e{i}_{x}[ap_{x}] ? {word} : {lit(0, W)};")
    wr, fins = [], []
    for i in range(R * C):
        L += _rom(f"dw{i}_{x}", s.memories[e].abits, [t.dst[i] or 0 for t in tiles], 1 << tp)
        L += _rom(f"de{i}_{x}", 1, [int(t.dst[i] is not None) for t in tiles], 1 << tp)
        wr.append(f"    if (yv_{x}[{i}] && de{i}_{x}[wp{i}_{x}]) m_{x}[dw{i}_{x}[wp{i}_{x}]] <= y_{x}[{i * W} +: {W}];")
        fins.append(f"wp{i}_{x} == {tp}'d{len(tiles)}")
    L += [f"  reg [{pw - 1}:0] ap_{x};", *[f"  reg [{tp - 1}:0] wp{i}_{x};" for i in range(R * C)],
          f"  reg [{R * W - 1}:0] ain_{x};", f"  reg [{C * W - 1}:0] bin_{x};", f"  reg av_{x}, afi_{x}, ala_{x};",
          f"  wire [{R * C * W - 1}:0] y_{x};", f"  wire [{R * C - 1}:0] yv_{x};",
          f"  wire ais_{x} = {cond};",
          f"  {module} #(.R({R}), .C({C})) ua_{x} (.clk(clk), .rst(rst), .a_col(ain_{x}), .b_row(bin_{x}), "
          f".valid(av_{x}), .first(afi_{x}), .last(ala_{x}), .y(y_{x}), .y_valid(yv_{x}));",
          "  always @(posedge clk) begin",
          f"    if (rst || (start && !busy)) begin ap_{x} <= 0; av_{x} <= 1'b0;"
          + "".join(f" wp{i}_{x} <= 0;" for i in range(R * C)) + " end",
          "    else begin",
          f"      av_{x} <= ais_{x};",
          f"      if (ais_{x}) begin",
          f"        ap_{x} <= ap_{x} + 1'b1; afi_{x} <= af_{x}[ap_{x}]; ala_{x} <= al_{x}[ap_{x}];", *loads,
          "      end",
          *[f"      if (yv_{x}[{i}]) wp{i}_{x} <= wp{i}_{x} + 1'b1;" for i in range(R * C)],
          "    end",
          "  end"]
    return L, wr, fins


def _memory_ports(mems: list, W: int, mw: int, writes: list[str]) -> list[str]:
    """Every memory write (the bench's port, then the lanes' results) and the bench's read port."""
    L = ["  always @(posedge clk) begin"]
    for k, m in enumerate(mems):
        data = "ld_data" if m.bits == W else f"ld_data[{m.bits - 1}:0]"
        L.append(f"    if (ld_we && ld_mem == {mw}'d{k}) m_{_ident(m.name)}[ld_addr[{m.abits - 1}:0]] <= {data};")
    L += writes + ["  end", "  always @(*) begin", "    case (rd_mem)"]
    for k, m in enumerate(mems):
        word = f"m_{_ident(m.name)}[rd_addr[{m.abits - 1}:0]]"
        L.append(f"      {mw}'d{k}: rd_data = " + (word if m.bits == W else f"{{{{{W - m.bits}{{1'b0}}}}, {word}}}")
                 + ";")
    return L + [f"      default: rd_data = {lit(0, W)};", "    endcase", "  end"]


def drain_epochs(s: Schedule) -> int:
    """Epochs the controller runs after the nest's last, so that every skewed window is inside one."""
    last = max((op.issue for op in s.ops), default=BASE)
    return max(0, (last - BASE) // s.epoch + 1 - s.epochs) if s.epoch else 0


def _clock(name: str, s: Schedule, plan, tw: int) -> list[str]:
    """What the sequencers issue by: the controller (epoch, cycle) with a plan, else the top's edge count t."""
    if plan is None:
        return [f"  reg [{tw - 1}:0] t;  // the edge about to come, counted from the one that sampled start"]
    from .controller import CW as KW
    empty = [f".i_{_ident(v)}()" for v, _ in plan.loops] + [f".go_{_ident(x)}()" for x, _, _ in plan.issue]
    return ["  // the controller sequences the epochs (and the drain after them); the lanes issue at its",
            "  // epoch and cycle (the windows skewed: its strobes and loop indices are not used)",
            f"  wire cbusy; wire [{KW - 1}:0] ccyc, cep;",
            f"  {name}_ctrl c_ctl (.clk(clk), .rst(rst), .start(start && !busy), .busy(cbusy), .done(), "
            f".cyc(ccyc), .epoch(cep), {', '.join(empty)});"]


def top_verilog(name: str, design, s: Schedule, header: list[str], plan=None) -> str:
    """The top module: memories with the bench's port, the controller, the lanes, start and done."""
    f = design.fmt
    W = f.width
    tw = _bits(s.cycles + 2) + 1
    mems = list(s.memories.values())
    io = interface(s, f)
    aw, mw = io["addr"], io["mem"]
    L = [f"// {comment_text(h)}" for h in header]
    L += ["// The top (docs/rtl.md): one RAM per tensor, lanes of each Einsum's unit, a micro-programmed",
          "// sequencer per lane (issue edge, addresses, first, coordinates of every operation).",
          f"// Schedule: {len(s.ops)} operations; {s.cycles} edges from start to done"
          + (f"; epochs of {s.epoch} cycles, each Einsum in its window" if s.epoch else "; as soon as possible")
          + ".",
          *[f"// Lanes of {comment_text(e)}: {n}" + (f"; window cycles {s.windows[e][0]} .. "
                                                     f"{s.windows[e][0] + s.windows[e][1] - 1} of each epoch"
                                                     if e in s.windows else "") for e, n in s.lanes.items()],
          *[f"// Memory {k}: {comment_text(m.name)}, {m.words} words of {m.bits} bits" for k, m in enumerate(mems)],
          "// Load: ld_we, ld_mem (the number above), ld_addr (row-major), ld_data; read: rd_mem, rd_addr -> rd_data.",
          "// fault: a unit was started while not ready (the schedule broke its II); cleared by start.",
          f"module {name} (",
          "  input wire clk, input wire rst, input wire start,",
          f"  input wire ld_we, input wire [{mw - 1}:0] ld_mem, input wire [{aw - 1}:0] ld_addr,",
          f"  input wire [{W - 1}:0] ld_data,",
          f"  input wire [{mw - 1}:0] rd_mem, input wire [{aw - 1}:0] rd_addr, output reg [{W - 1}:0] rd_data,",
          "  output reg busy, output reg done, output reg fault",
          ");"]
    L += _clock(name, s, plan, tw)
    L += [f"  reg [{m.bits - 1}:0] m_{_ident(m.name)} [0:{(1 << m.abits) - 1}];" for m in mems]
    writes, fins, bad = [], [], []
    for e, n in s.lanes.items():
        for lane in range(n):
            body, wr, (fin, b) = _lane(s, design, e, lane, tw)
            L += body
            writes += wr
            fins.append(fin)
            bad.append(b)
    for e, use in s.arrays.items():
        body, wr, fin = _array_block(s, design, e, use, tw, _array_module(design))
        L += body
        writes += wr
        fins += fin
    L += _memory_ports(mems, W, mw, writes)
    L += ["  wire finished = " + (" && ".join(fins) or "1'b1") + ";",
          "  wire clash = " + (" || ".join(bad) or "1'b0") + ";  // a unit started while not ready",
          "  always @(posedge clk) begin",
          "    if (rst) begin busy <= 1'b0; done <= 1'b0; fault <= 1'b0;" + (" t <= 0;" * (plan is None)) + " end",
          "    else begin",
          "      done <= 1'b0;",
          "      fault <= (start && !busy) ? 1'b0 : fault | clash;",
          "      if (busy) begin",
          *["        t <= t + 1'b1;"] * (plan is None),
          "        if (finished) begin busy <= 1'b0; done <= 1'b1; end",
          "      end else if (start) begin busy <= 1'b1;" + (" t <= 1;" * (plan is None)) + " end",
          "    end",
          "  end",
          "endmodule", ""]
    return "\n".join(L)


def _array_module(design) -> str:
    return next(k for k in design.files if k.endswith("_pe_array.v"))[:-2]


def top_files(c, design, s: Schedule, header: list[str], name: str | None = None, plan=None) -> dict[str, str]:
    """File name -> Verilog: the top and the units (the 2D array, the controller) it instantiates."""
    name = name or f"attnc_{_ident(c.name)}_top"
    files = {f"{design.units[e].name}.v": design.units[e].verilog for e in s.lanes}
    if plan is not None:
        from .controller import controller_verilog
        files[f"{name}_ctrl.v"] = controller_verilog(f"{name}_ctrl", plan, header, drain_epochs(s))
    if s.arrays:
        arr = _array_module(design)
        files[f"{arr}.v"] = design.files[f"{arr}.v"]
        files[f"{arr[:-len('_array')]}.v"] = design.files[f"{arr[:-len('_array')]}.v"]
    files[f"{name}.v"] = top_verilog(name, design, s, header, plan)
    return files


@dataclass
class Top:
    files: dict[str, str]
    name: str
    schedule: Schedule
    design: object
    outputs: dict                     # output tensor -> the fixed-point model's integers
    plan: object = None


def generate_top(c, inputs: dict, shapes: dict, fmt=None, hw=None, mapping=None, lanes: int | dict = 1,
                 dataflow: str = "os", name: str | None = None) -> Top:
    """The top for `c` at `shapes` on `inputs` (the fixed-point model supplies
    the trace and the expected outputs): with a mapping, scheduled in the
    controller's epoch windows on the simulator's PEs per Einsum."""
    from . import generate
    from . import tile
    design = generate(c, hw, mapping, fmt, dataflow=dataflow)
    p = pes = None
    if mapping is not None:
        from simulator.analytical import simulate
        from .controller import plan
        p = plan(c, mapping, hw, shapes, design.units)
        report = simulate(c, mapping, hw, shapes)
        pes = {ec.name: ec.pes_used for ec in report.einsums}
        shapes = {**report.shapes, **shapes}          # the tile sizes the mapping sets (M0)
    n = operations(c, shapes, inputs)
    if n > MAX_OPERATIONS:
        raise RTLError(f"{c.name}: the top's micro-program lists every operation, {n:,} at these shapes "
                       f"(at most {MAX_OPERATIONS:,}); choose smaller shapes for the top")
    trace, ints = [], {}
    want = tile.run(c, inputs, shapes, fmt, hw, mapping, trace=trace, ints=ints, raw=True)
    s = build(c, design, trace, ints, p, pes, lanes)
    head = [f"Generated by attnc codegen.rtl; do not edit.", f"Design: {c.name}",
            f"Mapping: {mapping.name if mapping is not None else 'none (as soon as possible)'}",
            f"Hardware: {hw.name if hw is not None else 'default operation costs'}",
            f"Shapes: {' '.join(f'{k}={v}' for k, v in shapes.items())}", f"Number format: {design.fmt.name}"]
    name = name or f"attnc_{_ident(c.name)}_top"
    return Top(top_files(c, design, s, head, name, p), name, s, design, want, p)
