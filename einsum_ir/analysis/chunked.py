"""The roles of a cascade's Einsums in a chunked, linear-time kernel.

Linear attention and its relatives never form an M x P score tensor: a
state whose size does not grow with the sequence (an E x F matrix, an E
vector) summarises the keys. A chunked kernel gives each program one
coordinate of the batch variables (b, h, ...) and walks the sequence in
chunks, holding one chunk and the state in registers. This module reads
the kernel's structure off the IR, so the generator (codegen.chunked) needs
no per-design code:

- partitioned designs write the chunking themselves (`partition M -> M1,
  M0`, as Lightning attention and chunkwise GLA do): one loop over the
  chunk index m1; m0 and ranks equal to M0 (j) are the chunk's axes, and m
  is read as m1 * M0 + m0. A recurrence over m1 is a state carried from one
  iteration to the next;
- unpartitioned designs (non-causal linear attention) have token ranks,
  found as the one set T of variables such that every sequence input and
  the output have exactly one of them and no Einsum iterates over two. Each
  gets a loop over chunks of BLOCK tokens; a sum over a token accumulates
  across its loop and is final after it.

Element-wise Einsums are substituted where they are read (no storage, any
index); reductions, states and outputs are computed once per chunk, in the
cascade's order. A design that does not fit gets a ChunkedFormError naming
the Einsum and the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

from ..errors import EinError
from ..ir import Cascade, Einsum, Idx, Num, index_vars, rank_of, var_of
from ..validate import alias_root


class ChunkedFormError(EinError):
    """The cascade does not fit the chunked linear kernel family."""


@dataclass(frozen=True)
class TokenLoop:
    """One walk over the sequence in chunks."""
    var: str                                  # loop variable: the chunk index m1, or the token variable
    axes: tuple[str, ...]                     # the chunk's own axes: (m0, j) or (m,)
    einsums: tuple[Einsum, ...]               # computed per chunk, in cascade order
    states: tuple[tuple[Einsum, Einsum], ...] = ()   # (initial value, step) of recurrences over `var`


@dataclass(frozen=True)
class ChunkedForm:
    cascade: Cascade
    batch: tuple[str, ...]                    # one program per coordinate
    axes: tuple[str, ...]                     # every register axis, in a fixed order
    loops: tuple[TokenLoop, ...]
    after: tuple[tuple[Einsum, ...], ...]     # Einsums with no token variable, after loop k
    inline: dict[str, Einsum] = field(default_factory=dict)
    hoisted: tuple[Einsum, ...] = ()
    root: str | None = None                   # partitioned: the token variable m = m1 * M0 + m0
    inner: str | None = None                  # partitioned: m0

    @property
    def partitioned(self) -> bool:
        return self.root is not None

    def loop_of(self, e: Einsum) -> int | None:
        for k, lp in enumerate(self.loops):
            if e in lp.einsums:
                return k
        return None

    def token_axes(self) -> set[str]:
        return {a for lp in self.loops for a in lp.axes}


def _fail(e: Einsum | None, why: str, c: Cascade) -> ChunkedFormError:
    where = f"{e.name}: " if e is not None else ""
    return ChunkedFormError(f"{c.name} does not fit a chunked linear kernel: {where}{why}",
                            e.loc if e is not None else None, c.source)


def _batch(c: Cascade, tokens: set[str], root: str | None = None) -> tuple[str, ...]:
    """Output variables never reduced, indexed plainly (an input may also be
    read at an expression of that variable alone, K[b, h / G, ..]), and read
    by every sequence input: with a partition, every input over the
    partitioned rank; without, every input that is not itself a per-batch
    parameter (LAM[H]). Each program fixes them; a tensor without one (a
    projection WF[H, E, D]) is the same in every program."""
    out = c.outputs[0]
    reduced = {v for e in c.einsums for v in e.reduced}
    cand = []
    for r in out.ranks:
        v = var_of(r)
        if v in reduced or v in tokens:
            continue
        if any(v in index_vars(i) and not isinstance(i, Idx)
               and not (a is not e.output and c.tensor(a.tensor).role == "input" and set(index_vars(i)) == {v})
               for e in c.einsums for a in [e.output] + e.reads() for i in a.indices):
            continue
        cand.append(r)
    used = {t.name: set() for t in c.inputs}          # the variables each input is read at
    for e in c.einsums:
        for a in e.reads():
            if a.tensor in used:
                used[a.tensor] |= {v for i in a.indices for v in index_vars(i)}
    if root is not None:
        seq = [t for t in c.inputs if rank_of(root) in t.ranks]
    else:
        seq = [t for t in c.inputs if not set(t.ranks) <= set(cand)]
    return tuple(var_of(r) for r in cand if all(var_of(r) in used[t.name] for t in seq))


def _token_sets(c: Cascade, batch: tuple[str, ...]) -> list[set[str]]:
    """Sets T of variables along the sequence: each sequence input and each
    output has exactly one, no Einsum iterates over two."""
    seq_inputs = [t for t in c.inputs if any(var_of(r) not in batch for r in t.ranks)]
    vars_ = sorted({v for e in c.einsums for v in e.iteration_vars if v not in batch})
    found = []
    for n in range(1, len(vars_) + 1):
        for T in combinations(vars_, n):
            T = set(T)
            if any(sum(var_of(r) in T for r in t.ranks) != 1 for t in seq_inputs + list(c.outputs)):
                continue
            if any(len(T & set(e.iteration_vars)) > 1 for e in c.einsums):
                continue
            found.append(T)
    return found


def _reads(e: Einsum, inline: dict[str, Einsum]) -> set[str]:
    """Tensors `e` needs, looking through the Einsums substituted into it."""
    out, stack = set(), [a.tensor for a in e.reads()]
    while stack:
        t = stack.pop()
        if t in out:
            continue
        out.add(t)
        if t in inline:
            stack += [a.tensor for a in inline[t].reads()]
    return out


def _longest(c: Cascade, sets: list[set[str]], batch: tuple[str, ...], env: dict) -> list[set[str]]:
    """Sequence ranks are longer than every rank held in registers: the
    structure alone cannot tell KV[e, f] = K[e, m] V[f, m] (linear attention)
    from S[m, p] = Q[e, p] K[e, m] (its quadratic twin), the extents can."""
    vars_ = {v for e in c.einsums for v in e.iteration_vars if v not in batch}
    size = {v: env.get(rank_of(v), 0) for v in vars_}
    return [T for T in sets if min(size[t] for t in T) > max((size[v] for v in vars_ - T), default=0)]


def recognise(c: Cascade, env: dict | None = None) -> ChunkedForm:
    """The chunked kernel's structure, or a ChunkedFormError saying what does
    not fit. `env` (the extents) picks the sequence ranks of an unpartitioned
    design; without it the structure must leave only one choice. A rank read
    at constant indices (branches on a component rank) is unrolled first."""
    from ..unroll import UnrollError, unroll_constant_indices
    try:
        c = unroll_constant_indices(c, env)
    except UnrollError as err:
        raise ChunkedFormError(f"{c.name} does not fit a chunked linear kernel: {err.message}", err.loc,
                               err.source) from None
    if len(c.outputs) != 1:
        raise _fail(None, f"{len(c.outputs)} outputs; a chunked kernel writes one", c)
    outers = [r for r in c.ranks if r.part == "outer"]
    if len(outers) > 1:
        raise _fail(None, f"{len(outers)} partitioned ranks ({', '.join(r.parent for r in outers)}); "
                          "a chunked kernel walks one sequence rank", c)
    root = inner = None
    if outers:
        o = outers[0]
        root, loop_var, inner = var_of(o.parent), var_of(o.name), var_of(c.inner_of(o.name))
        ranks = {r.name: r for r in c.ranks}
        chunk = [inner] + [var_of(r.name) for r in c.ranks if r.name != c.inner_of(o.name)
                           and alias_root(ranks, r.name) == alias_root(ranks, c.inner_of(o.name))]
        tokens = {root, loop_var, *chunk}
        batch = _batch(c, tokens, root)
        loops_spec = [(loop_var, tuple(chunk), tokens)]
    else:
        for e in c.einsums:               # said first: the token sets below cannot hold such a design
            if e.iterative_var is not None and not e.is_initial:
                raise _fail(e, f"a recurrence over {e.iterative_var}, one token at a time; write the chunkwise form "
                               "(see gla-chunkwise or lightning-attention) so that chunks run in parallel", c)
        batch = _batch(c, set())
        sets = _token_sets(c, batch)
        if env is not None:
            sets = _longest(c, sets, batch, env)
        if len(sets) != 1:
            why = ("no set of sequence ranks: every sequence input and the output must have exactly one, "
                   "no Einsum may iterate over two" + (", and they must be longer than the ranks held in "
                                                      "registers" if env is not None else "") if not sets else
                   "the sequence ranks are ambiguous: " + " or ".join("{" + ", ".join(sorted(s)) + "}" for s in sets))
            raise _fail(None, why, c)
        loops_spec = [(t, (t,), {t}) for t in sorted(sets[0])]
    if not batch:
        raise _fail(None, "no batch rank (one that indexes every sequence input and the output, never "
                          "reduced) to give each program", c)

    inline, hoisted, states, body = {}, [], {}, []
    initial = {}
    out_name = c.outputs[0].name
    token_vars = set().union(*(s for _, _, s in loops_spec))
    for e in c.einsums:
        if e.is_initial:
            initial[e.name] = e
            continue
        it = e.iterative_var
        if it is not None:
            if it not in {lv for lv, _, _ in loops_spec} or root is None:
                raise _fail(e, f"a recurrence over {it}, one token at a time; write the chunkwise form "
                               "(see gla-chunkwise or lightning-attention) so that chunks run in parallel", c)
            if e.name not in initial:
                raise _fail(e, f"the recurrence has no initial value {e.name}[.., 0]", c)
            states[e.name] = (initial[e.name], e)
            body.append(e)
            continue
        touches = set(e.iteration_vars) & token_vars
        chunk_axes = set(loops_spec[0][1]) if root is not None else set()
        if e.scan is not None and e.scan.var in chunk_axes:
            body.append(e)        # a scan inside one chunk: tl.cumsum along the chunk axis, no carry
            continue
        if e.scan is not None and (touches or not all(c.tensor(t).role == "input" or t in inline or t in {
                h.name for h in hoisted} for t in _reads(e, inline))):
            raise _fail(e, f"{e.scan} inside the kernel: a scan along {e.scan.var} (across chunks, or over a "
                           "token rank of an unpartitioned design) would need a carry from chunk to chunk, which "
                           "is not generated; a scan along a chunk axis (m0) runs as tl.cumsum inside the chunk, "
                           "and one that reads only inputs and no token rank is computed before the kernel", c)
        if e.scan is not None:
            hoisted.append(e)     # a running sum of inputs: before the kernel (never substituted as a map)
        elif not e.reduced and e.name != out_name:
            inline[e.name] = e
        elif not touches and not (_reads(e, inline) & ({x.name for x in body} | set(states))) and \
                all(c.tensor(t).role == "input" or t in inline or t in {h.name for h in hoisted}
                    for t in _reads(e, inline)):
            hoisted.append(e)
        else:
            body.append(e)

    for e in c.einsums:
        if root is not None and root in e.iteration_vars and inner in e.iteration_vars:
            raise _fail(e, f"iterates over both {root} and {inner}; read {root} as {rank_of(root)}1-chunks", c)
        if root is not None and root in e.reduced:
            raise _fail(e, f"reduces over {root}, the partitioned rank: write the reduction over "
                           f"{loops_spec[0][0]} and {inner} (sum[{loops_spec[0][0]}, {inner}] ..)", c)
        for a in [e.output] + e.reads():
            for i in a.indices:
                if isinstance(i, Num) and a is not e.output and c.tensor(a.tensor).role != "input":
                    raise _fail(e, f"reads {a} at a fixed index", c)
    # which loop each Einsum runs in; Einsums with no token variable run after the loops they read
    loop_index = {}
    for e in body:
        hits = [k for k, (_, _, vs) in enumerate(loops_spec)
                if set(e.iteration_vars) & vs or (e.name in states and k == 0)]
        if len(hits) > 1:
            raise _fail(e, "iterates over two sequence ranks", c)
        loop_index[e.name] = hits[0] if hits else None
    # passes: reading a sum over the loop's own token (final only after the loop) starts another
    # walk over the same chunks, which recomputes the per-chunk values it needs
    writer = {e.name: e for e in body}

    def accumulates(t: str) -> bool:
        """A sum (max, ..) over the loop's own variable: final after the loop."""
        k = loop_index.get(t)
        return k is not None and loops_spec[k][0] in writer[t].reduced

    def fed_by(t: str) -> set[int]:
        """The loops whose results an Einsum run after the loops reads."""
        out = set()
        for u in _reads(writer[t], inline) - {t}:
            out |= {loop_index[u]} if loop_index.get(u) is not None else fed_by(u) if u in writer else set()
        return out

    pass_of: dict[str, int] = {}
    before: dict[tuple[int, int], set] = {}
    for e in body:
        k = loop_index[e.name]
        p = 0
        for t in _reads(e, inline) - {e.name}:
            j = loop_index.get(t)
            if j is None:
                if k is not None and t in writer and k in fed_by(t):
                    raise _fail(e, f"reads {t}, which runs after the loop over {loops_spec[k][0]} (it needs that "
                                   "loop's results), inside that loop", c)
                continue
            if j != k and not (accumulates(t) or k is None and t in states):
                raise _fail(e, f"reads {t}, which exists only one chunk at a time in the loop over "
                               f"{loops_spec[j][0]}", c)
            if j == k:
                p = max(p, pass_of[t] + accumulates(t))
        pass_of[e.name] = p
        if k is not None:
            before.setdefault((k, p), set())
    for e in body:
        k = loop_index[e.name]
        if k is None:
            continue
        node = (k, pass_of[e.name])
        if node[1] > 0:
            before[node].add((k, node[1] - 1))
        for t in _reads(e, inline) - {e.name}:
            j = loop_index.get(t)
            if j is not None and (j, pass_of[t]) != node and accumulates(t):
                before[node].add((j, pass_of[t]))
    order, done = [], set()
    while len(order) < len(before):
        ready = sorted(n for n in before if n not in done and before[n] <= done)
        if not ready:
            raise _fail(None, "the loops over " + ", ".join(s[0] for s in loops_spec)
                        + " each need the other's result first", c)
        order.append(ready[0])
        done.add(ready[0])
    loops, after = [], []
    placed: set[str] = set()
    for k, p in order:
        var, axes, _ = loops_spec[k]
        own = [e for e in body if loop_index[e.name] == k and pass_of[e.name] == p]
        need, stack = set(), [t for e in own for t in _reads(e, inline)]
        while stack:                      # per-chunk values of earlier passes, recomputed here
            t = stack.pop()
            if t in need or loop_index.get(t) != k or pass_of[t] >= p or accumulates(t):
                continue
            need.add(t)
            stack += list(_reads(writer[t], inline))
        es = tuple(e for e in body if e in own or e.name in need)
        st = tuple(states[e.name] for e in es if e.name in states)    # a recomputed state runs again from 0
        loops.append(TokenLoop(var, axes, es, st))
        placed |= {e.name for e in es}
        ready = []
        for e in body:
            if loop_index[e.name] is None and e.name not in placed:
                deps = {t for t in _reads(e, inline) if t in loop_index}
                if all(t in placed or t in {x.name for x in ready} for t in deps):
                    ready.append(e)
        placed |= {e.name for e in ready}
        after.append(tuple(ready))
    axes = tuple(var_of(r.name) for r in c.ranks
                 if var_of(r.name) not in batch and var_of(r.name) != root
                 and var_of(r.name) not in {lv for lv, ax, _ in loops_spec if lv not in ax}
                 and any(var_of(r.name) in e.iteration_vars for e in c.einsums))
    if root is not None and any(root in e.iteration_vars for e in c.einsums):
        axes = tuple(dict.fromkeys(axes + (inner,)))     # m is read as m1 * M0 + m0: the m0 axis
    return ChunkedForm(c, batch, axes, tuple(loops), tuple(after), inline, tuple(hoisted), root, inner)


def explain(c: Cascade, env: dict | None = None) -> str:
    """One line per Einsum: where the chunked kernel computes it."""
    f = recognise(c, env)
    lines = []
    for e in c.einsums:
        if e.name in f.inline:
            role = "element-wise: substituted where read"
        elif e in f.hoisted:
            role = "hoisted: computed before the kernel"
        elif (k := f.loop_of(e)) is not None:
            lp = f.loops[k]
            kind = "state step" if e.iterative_var else ("reduction" if e.reduced else "output")
            role = f"loop over {lp.var} (chunk axes {', '.join(lp.axes)}): {kind}"
        elif e.is_initial:
            role = "state: initial value"
        else:
            role = "after the loops"
        lines.append(f"{e.name}: {role}")
    return "\n".join(lines)


__all__ = ["ChunkedForm", "ChunkedFormError", "TokenLoop", "explain", "recognise"]
