"""The cascade's dependency structure and the order the executor and analyses
walk it in. Einsums are nodes; an edge runs from a tensor's writer to each
reader. A read of the previous iterate (`RD[m1, p]` of `RD[m1+1, p] = ...`)
is *loop-carried*: cycles are legal only through such edges."""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from .errors import ValidationError
from .ir import Cascade, Einsum, Idx, offset_of


@dataclass(frozen=True)
class Step:
    """Einsums the executor runs as one unit: a single Einsum (`var` None), or
    a recurrence stepped over `var`, running `einsums` in order at each step."""
    einsums: tuple[int, ...]
    var: str | None = None


def iterative_position(e: Einsum) -> int | None:
    for k, i in enumerate(e.output.indices):
        o = offset_of(i)
        if o and o[1] == 1:
            return k
    return None


def _is_carried(writer: Einsum, read) -> bool:
    k = iterative_position(writer)
    if k is None:
        return False
    return read.indices[k] == Idx(writer.iterative_var)


def dependency_graph(c: Cascade) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(range(len(c.einsums)))
    writers: dict[str, list[int]] = {}
    for i, e in enumerate(c.einsums):
        writers.setdefault(e.name, []).append(i)
    for j, e in enumerate(c.einsums):
        for a in e.reads():
            for i in writers.get(a.tensor, []):
                carried = _is_carried(c.einsums[i], a)
                if g.has_edge(i, j):
                    carried = carried and g.edges[i, j]["carried"]
                g.add_edge(i, j, carried=carried, tensor=a.tensor)
    return g


def _cycle_text(c: Cascade, nodes) -> str:
    names = [c.einsums[n].name for n in nodes]
    return " -> ".join(names + names[:1])


def schedule(c: Cascade) -> list[Step]:
    """Topological order of the cascade, recurrences grouped. Raises
    ValidationError for a cycle that no iterative rank carries."""
    g = dependency_graph(c)
    cond = nx.condensation(g)
    order = nx.lexicographical_topological_sort(cond, key=lambda n: min(cond.nodes[n]["members"]))
    steps = []
    for n in order:
        members = sorted(cond.nodes[n]["members"])
        if len(members) == 1 and not g.has_edge(members[0], members[0]):
            steps.append(Step((members[0],)))
            continue
        sub = g.subgraph(members)
        first = c.einsums[members[0]]
        intra = nx.DiGraph([(u, v) for u, v, d in sub.edges(data=True) if not d["carried"]])
        intra.add_nodes_from(members)
        if not nx.is_directed_acyclic_graph(intra):
            cycle = [u for u, _ in nx.find_cycle(intra)]
            raise ValidationError(
                f"cycle not carried by an iterative rank: {_cycle_text(c, cycle)} "
                "(a recurrence must read the previous iterate, e.g. X[m1, p] in X[m1+1, p] = ...)",
                c.einsums[cycle[0]].loc, c.source)
        vars_ = {c.einsums[m].iterative_var for m in members} - {None}
        if len(vars_) != 1:
            raise ValidationError(
                f"the recurrence {_cycle_text(c, members)} must step over exactly one iterative rank, "
                f"found {sorted(vars_) or 'none'}", first.loc, c.source)
        (var,) = vars_
        for m in members:
            if var not in c.einsums[m].iteration_vars:
                e = c.einsums[m]
                raise ValidationError(
                    f"{e.name} is part of the recurrence over {var} but does not iterate over {var}",
                    e.loc, c.source)
        ordered = tuple(nx.lexicographical_topological_sort(intra, key=lambda x: x))
        steps.append(Step(ordered, var))
    return steps


__all__ = ["Step", "dependency_graph", "schedule", "iterative_position"]
