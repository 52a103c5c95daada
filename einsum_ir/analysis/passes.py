"""How many passes over a rank's fibers any mapping of the cascade must make.

The rule (docs/analysis.md, after FuseMax Sec. 4): walking the cascade in
dependency order, a tensor either *streams* the rank R in pass k (it keeps a
part of R) or is *ready* at the end of pass k (it has none of R, e.g. a full
reduction over R). An Einsum that iterates over R runs in the latest pass of
its streamed inputs, and one pass after the latest of its ready inputs: a
value reduced over a whole fiber exists only after the traversal that
produced it, so reading the fiber's elements again needs another traversal.
Reading an iterative tensor at its last iterate (`RD[M1, p]`) is a full
reduction; reading the current or previous iterate streams.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Access, Cascade, Einsum, index_vars
from ..graph import schedule


@dataclass(frozen=True)
class State:
    streams: bool          # keeps a part of R (streamed in `pass_`) or ready at the end of `pass_`
    pass_: int
    origin: int | None = None   # for ready values: the Einsum that reduced R away


@dataclass(frozen=True)
class PassStep:
    """Why pass `pass_` exists: `reader` needs `blocker`, which is complete only
    after `reducer` finished a traversal, and re-reads `rereads` over R."""
    pass_: int
    reader: str
    blocker: str
    reducer: str
    reduce_op: str
    reduced_vars: tuple[str, ...]
    reduced_from: tuple[str, ...]
    rereads: tuple[str, ...]
    vars: tuple[str, ...]

    def __str__(self) -> str:
        over = ", ".join(self.reduced_vars)
        if self.reduce_op == "last":
            head = f"{self.blocker} <- last iterate of {self.reducer} over {over}"
        else:
            src = ", ".join(self.reduced_from) or "its inputs"
            head = f"{self.reducer} <- {self.reduce_op} over {over} of {src}"
            if self.blocker != self.reducer:
                head += f" (needed via {self.blocker})"
        vars_ = ", ".join(self.vars)
        if self.rereads:
            tail = f"{self.reader} re-reads {', '.join(self.rereads)} over {vars_}"
        else:
            tail = f"{self.reader} traverses {vars_} again"
        return f"{head}; {tail}"


@dataclass(frozen=True)
class PassResult:
    rank: str
    passes: int
    einsum_pass: dict[str, int] = field(hash=False)   # Einsum (output tensor) -> pass; 0: outside any pass
    chain: tuple[PassStep, ...] = ()
    states: dict[str, State] = field(default_factory=dict, hash=False, repr=False)

    def explain(self) -> list[str]:
        return [f"pass {s.pass_}: {s}" for s in self.chain]


def _streaming_read(c: Cascade, a: Access, parts: set[str]) -> bool:
    """Does this access walk R (an index variable at some R position)?"""
    t = c.tensor(a.tensor)
    return any(r in parts and index_vars(i) for r, i in zip(t.ranks, a.indices))


def passes(c: Cascade, rank: str) -> PassResult:
    parts = set(c.parts(rank))
    part_vars = {p.lower() for p in parts}
    state: dict[str, State] = {}
    for t in c.inputs:
        state[t.name] = State(True, 1) if set(t.ranks) & parts else State(False, 0)
    einsum_pass: dict[int, int] = {}
    chain: dict[int, PassStep] = {}

    def contributions(e: Einsum, internal: set[str]):
        for a in e.reads():
            if a.tensor in internal:
                continue
            s = state[a.tensor]
            yield a, s, s.streams and _streaming_read(c, a, parts)

    for step in schedule(c):
        members = [c.einsums[i] for i in step.einsums]
        internal = {e.name for e in members} if step.var else set()
        iterates = any(set(e.iteration_vars) & part_vars for e in members)
        best, why = (1 if iterates else 0), None
        for e in members:
            for a, s, streaming in contributions(e, internal):
                k = s.pass_ if (streaming or not iterates) else s.pass_ + 1
                if k > best:
                    best, why = k, (e, a, s)
        for i, e in zip(step.einsums, members):
            keeps = bool(set(c.tensor(e.name).ranks) & parts)
            if iterates and set(e.iteration_vars) & part_vars:
                einsum_pass[i] = best
                state[e.name] = State(True, best) if keeps else State(False, best, origin=i)
            else:
                einsum_pass[i] = 0
                origin = why[2].origin if why else None
                state[e.name] = State(keeps and iterates, best, origin)
        if iterates and why is not None and best not in chain and best > 1 and not why[1].tensor in internal:
            chain[best] = _explain(c, best, why, parts, part_vars, state)
    total = max([p for p in einsum_pass.values()] + [0])
    by_name = {}
    for i, p in einsum_pass.items():
        by_name[c.einsums[i].name] = max(p, by_name.get(c.einsums[i].name, 0))
    return PassResult(rank, max(total, 1) if any(einsum_pass.values()) else 0, by_name,
                      tuple(chain[k] for k in sorted(chain)), state)


def _explain(c, k, why, parts, part_vars, state) -> PassStep:
    reader, access, s = why
    origin = c.einsums[s.origin] if s.origin is not None else None
    rvars = tuple(v for v in reader.iteration_vars if v in part_vars)
    rereads = tuple(dict.fromkeys(
        a.tensor for a in reader.reads()
        if state[a.tensor].streams and state[a.tensor].pass_ < k and _streaming_read(c, a, parts)))
    if origin is None:
        return PassStep(k, reader.name, access.tensor, access.tensor, "sum", (), (), rereads, rvars)
    if origin.iterative_var is not None and origin.iterative_var in part_vars and not origin.reduced:
        return PassStep(k, reader.name, access.tensor, origin.name, "last", (origin.iterative_var,), (),
                        rereads, rvars)
    reduced = tuple(v for v in origin.reduced if v in part_vars)
    sources = tuple(dict.fromkeys(a.tensor for a in origin.reads() if _streaming_read(c, a, parts)))
    return PassStep(k, reader.name, access.tensor, origin.name, origin.reduce, reduced, sources, rereads, rvars)
