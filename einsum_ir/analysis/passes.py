"""How many passes over a rank's fibers any mapping of the cascade must make.

The rule (docs/analysis.md, after FuseMax Sec. 4), walking the cascade in
dependency order. A *position* of the rank R is one coordinate of R (one
tile m1 when R is partitioned: all m0 of a tile are on chip together). R's
*family* is R, its partition parts, and its aliases (`rank J = M`,
`rank J = M0`): an alias index walks R like R's own, so a sum over j is a
reduction over R. An alias with inputs of its own (the queries, `rank M =
P`) is not of the family unless data computed in R's walk crosses between
them (`_walks`); an input read at its coordinate is a load (DOC[b, m] over
P), and an input read at R's variable through its slot (DOC[b, m] over M)
a read at that position (`slot_kind`). A tensor is, after the pass that makes it,
- *streamed*: each element is final during the visit of its position (it
  keeps the position the Einsum visits), readable at that position in that
  pass and any later one;
- *held*: it keeps a position of R but its elements combine several
  positions (a sum over an alias j kept at m); final at the end of the pass;
- *ready*: it keeps no position (a reduction over R); final at the end of
  the pass.
An Einsum that reads an element tied to a position of R *touches* R: it runs
in the latest pass of its streamed inputs and one pass after each held or
ready input (a value combined over a whole fiber exists only after the
traversal that made it, so reading the fiber again needs another one). An
Einsum that does not touch R (only ready inputs, or tensors computed from
no streamed data, such as a decay mask DM[m0, j]) runs between passes. A
read of an iterative tensor at the current or previous iterate streams; at
the last iterate (`RD[M1, p]`) it reads a ready value. An Einsum that reads
two different positions at once (`X[m, j] = S[m] * S[j]`, J = M) is not
streamable: `passes` is None and `unstreamable` says why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EinError
from ..graph import schedule
from ..ir import (Access, Cascade, Einsum, Expr, Idx, Num, Op, Sym, accesses, computed_index, index_vars, rank_of,
                  substitute, walk)
from ..validate import alias_root

POS, ROOT, INNER = "position", "root", "inner"


@dataclass(frozen=True)
class Family:
    """R's ranks for the analyses: kind POS (coordinate = position), ROOT (a
    partitioned R: position = coordinate // tile) or INNER (inside a tile)."""
    rank: str
    kind: dict[str, str] = field(hash=False)
    alias_of: dict[str, str] = field(hash=False)
    tile: str | None = None
    joined_by: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Each alias: the access that makes it walk R ('SG[b, m] in QK'), for messages."""

    def var_kind(self, var: str) -> str | None:
        return self.kind.get(rank_of(var))

    @property
    def vars(self) -> set[str]:
        return {r.lower() for r in self.kind}

    def alias_note(self, vars_) -> str:
        """'rank J = M' for each alias among `vars_` (why j counts as R)."""
        notes = [f"rank {rank_of(v)} = {self.alias_of[rank_of(v)]}" for v in vars_ if rank_of(v) in self.alias_of]
        return ", ".join(dict.fromkeys(notes))


def _partition_kinds(c: Cascade, rank: str) -> tuple[dict[str, str], str | None]:
    outer = next((r for r in c.ranks if r.parent == rank and r.part == "outer"), None)
    if outer is None:
        return {rank: POS}, None
    if any(r.parent == outer.name for r in c.ranks):
        raise EinError(f"{c.name}: the pass analysis over {rank} does not support partitioning its "
                       f"tile index {outer.name} again")
    kinds = {rank: ROOT, outer.name: POS}
    for p in c.parts(rank):
        kinds.setdefault(p, INNER)
    return kinds, c.inner_of(outer.name)


def _uses(c: Cascade, var_ranks: set[str], slot_ranks: set[str], skip: frozenset = frozenset()) -> str | None:
    """An access (not of a tensor in `skip`) that puts a variable of
    `var_ranks` in a slot of `slot_ranks` ('S[j, p] in LS'), or None."""
    vs = {r.lower() for r in var_ranks}
    for e in c.einsums:
        for a in [e.output] + e.reads():
            if a.tensor in skip:
                continue
            for r, i in zip(c.tensor(a.tensor).ranks, a.indices):
                if r in slot_ranks and set(index_vars(i)) & vs:
                    return f"{a} in {e.name}"
    return None


def _made_before(c: Cascade, fam: set[str]) -> frozenset:
    """Tensors that exist before any traversal of the family: the inputs,
    and tensors whose every writer iterates no variable of the family and
    reads only such tensors (SEG[b, p] = DOC[b, p] // 2 over M): reading
    one at an alias coordinate is a load, as of an input."""
    vs = {r.lower() for r in fam}
    made, spoiled = {t.name for t in c.inputs}, set()
    for e in (c.einsums[i] for step in schedule(c) for i in step.einsums):
        if set(e.iteration_vars) & vs or set(c.tensor(e.name).ranks) & fam \
                or any(a.tensor not in made for a in e.reads()):
            spoiled.add(e.name)
            made.discard(e.name)
        elif e.name not in spoiled:
            made.add(e.name)
    return frozenset(made)


def _walks(c: Cascade, alias: str, fam: set[str]) -> str | None:
    """Does the alias rank walk R's family? Yes when data computed over one
    is indexed by the other's variable (S[j, p] with S computed over M,
    `rank J = M`), or when it reads R's inputs and has no input of its own
    (a second index over M: X[m, j] = S[m] * S[j]). An alias with inputs of
    its own (the queries of self-attention: Q over P, `rank M = P`) is a
    rank in its own right: its variable reading an input of the other
    (DOC[b, m], DOC over P), or a tensor made from inputs before any
    traversal of R, loads it at a coordinate, as K[m] is loaded, and ties
    no positions (`access_tokens`). Returns the access that makes it walk R."""
    made = _made_before(c, fam)
    if by := _uses(c, {alias}, fam, made) or _uses(c, fam, {alias}, made):
        return by
    own = any(alias in t.ranks and not set(t.ranks) & fam for t in c.inputs)
    return None if own else _uses(c, {alias}, fam) or _uses(c, fam, {alias})


def rank_family(c: Cascade, rank: str) -> Family:
    """R, its parts, and the aliases that walk them. An alias (`rank J = X`
    or `rank X = J`, X of the family, or both aliases of one rank: P2 = P
    and M = P, validate.alias_root) joins when an access indexes a family
    rank with j or J with a family variable: queries and keys of
    self-attention (`rank M = P`) that never index each other's tensors stay
    independent ranks."""
    kind, tile = _partition_kinds(c, rank)
    alias_of: dict[str, str] = {}
    joined_by: dict[str, str] = {}
    ranks = {r.name: r for r in c.ranks}
    root = {r.name: alias_root(ranks, r.name) for r in c.ranks}   # aliases are transitive (P2 = P, M = P)
    changed = True
    while changed:
        changed = False
        for r in c.ranks:
            if r.name in kind:
                continue
            for a, b in [(r.name, Sym(b)) for b in kind if b in root and root[b] == root[r.name]][:1]:
                fam = set(kind)
                if by := _walks(c, a, fam):
                    kind[a], alias_of[a], joined_by[a] = kind[b.name], b.name, by
                    changed = True
    return Family(rank, kind, alias_of, tile, joined_by)


# ------------------------------------------------------------ positions

def _offset(index: Expr) -> tuple[str, int] | None:
    if isinstance(index, Idx):
        return index.name, 0
    if isinstance(index, Op) and index.name in ("add", "sub") and isinstance(index.args[0], Idx) \
            and isinstance(index.args[1], Num) and float(index.args[1].value).is_integer():
        k = int(index.args[1].value)
        return index.args[0].name, k if index.name == "add" else -k
    return None


def _tile_outer(fam: Family, index: Expr) -> Expr | None:
    """`a * M0 + b` with b inside the tile, or `a * M0` -> a."""
    if isinstance(index, Op) and index.name == "mul" and Sym(fam.tile) in index.args:
        return index.args[0] if index.args[1] == Sym(fam.tile) else index.args[1]
    if not (isinstance(index, Op) and index.name == "add"):
        return None
    for x, y in (index.args, index.args[::-1]):
        if isinstance(x, Op) and x.name == "mul" and Sym(fam.tile) in x.args \
                and all(fam.var_kind(v) == INNER for v in index_vars(y)):
            return x.args[0] if x.args[1] == Sym(fam.tile) else x.args[1]
    return None


def position_token(fam: Family, kind: str, index: Expr, iterative: bool):
    """A name for the position an index of a POS or ROOT slot points at:
    ('m1', 0), ('m', 1) for m + 1, ('m//', 0) for the tile of m, ('expr',
    text, v) for a computed one (`_expr_token`); None for the last or first
    iterate of an iterative rank (a ready value)."""
    if not index_vars(index):
        return None if iterative else ("const", str(index))
    if kind == ROOT:
        if isinstance(index, Idx) and fam.var_kind(index.name) == ROOT:
            return index.name + "//", 0
        o = _offset(index)
        if o is not None and fam.var_kind(o[0]) == ROOT:   # m - 1: m's tile or the one before (after, for m + 1)
            return o[0] + "//", (o[1] > 0) - (o[1] < 0)
        outer = _tile_outer(fam, index)
        if outer is None:
            return _expr_token(f"({index}) // {fam.tile}", index, "//")
        index = outer
    if isinstance(index, Op) and index.name in ("div", "floordiv") and isinstance(index.args[0], Idx) \
            and index.args[1] == Sym(fam.tile) and fam.var_kind(index.args[0].name) == ROOT:
        return index.args[0].name + "//", 0
    o = _offset(index)
    if o is None:
        return ("expr", str(index), None) if iterative else _expr_token(str(index), index, "")
    if iterative:  # iterate v + k is made in visit v + k - 1 and carried to visit v + k
        return o[0], o[1] - 1 if o[1] >= 1 else o[1]
    return o


def _expr_token(text: str, index: Expr, suffix: str):
    """('expr', text, v): a position computed from one variable v that is
    never after v's own (`m // 2`, `(m - 3) // 4`): the read is final by
    the visit of v, so an output at v streams (`_same_or_earlier`); else
    ('expr', text, None)."""
    return "expr", text, (min(index_vars(index)) + suffix if _never_after(index) else None)


def _never_after(e: Expr) -> bool:
    """Is e <= v for every integer v >= 0, v its one variable?"""
    d = _excess(e)
    return d is not None and d <= 0


def _excess(e: Expr) -> int | None:
    """A d with e <= v + d for every integer v >= 0, v the index's one
    variable, or None: v gives 0, adding or taking a constant moves d, and
    the floor of a quotient by a whole c >= 1 gives 0 when d <= c - 1
    ((v + d) // c <= v: at v = 0 as d < c, above it as v + c - 1 <= c v),
    else d (x // c <= max(x, 0)). Each step keeps one variable; every
    constant in an index is whole (validated); a min or max is a computed
    index, refused before this."""
    if isinstance(e, Idx):
        return 0
    if not (isinstance(e, Op) and e.name in ("add", "sub", "floordiv")):
        return None
    x, k = e.args
    if e.name == "add" and isinstance(x, Num):
        x, k = k, x
    if not isinstance(k, Num) or (d := _excess(x)) is None:
        return None
    if e.name == "add":
        return d + int(k.value)
    if e.name == "sub":
        return d - int(k.value)
    return None if k.value < 1 else 0 if d <= k.value - 1 else d


def _gathered(i: Expr) -> bool:
    """A gather, or a computed index (`TB[h, bucket(m - p)]`): either way the
    position read is not a walk of the slot's rank."""
    return any(isinstance(n, Access) for n in walk(i)) or computed_index(i)


def gather_token(fam: Family, index: Expr):
    """The visit of R during which a gathered read (`KC[.., PAGE[b, m / PS]
    * PS + m % PS]`, a slot outside R indexed through data by R's variables)
    happens: the position of R's variable in it (the element read there is
    the data's choice, but it is read once, at that visit); None if the
    index uses none of R's variables."""
    vs = [v for v in index_vars(index) if fam.var_kind(v) in (POS, ROOT)]     # m0 names no position
    pos = [v for v in vs if fam.var_kind(v) == POS]
    roots = [v for v in vs if fam.var_kind(v) == ROOT]
    if not vs:
        return None
    if len(pos) == 1 and not roots:
        return pos[0], 0
    if len(roots) == 1 and not pos:
        return roots[0] + "//", 0
    return "expr", str(index), None


def _alias_kind(c: Cascade, fam: Family, rank: str) -> str | None:
    """The kind of the family rank that `rank` (outside the family) is an
    alias of (`rank M = P`: P over M's family), or None."""
    ranks = {r.name: r for r in c.ranks}
    root = alias_root(ranks, rank)
    return next((k for b, k in fam.kind.items() if alias_root(ranks, b) == root), None)


def _whole(c: Cascade, rank: str) -> str:
    """The rank a partition part belongs to (M1, M0 -> M), else itself."""
    parents = {r.name: r.parent for r in c.ranks}
    while parents.get(rank):
        rank = parents[rank]
    return rank


def slot_kind(c: Cascade, fam: Family, rank: str, index: Expr, is_input: bool) -> str | None:
    """The kind (POS, ROOT) under which a slot of `rank` read at `index`
    names a position of R, or None. A slot of R's family does, except an
    input's read only at variables of aliases outside the family or of
    their parts (DOC[b, m] or DOC[b, m1 * M0 + m0] over P, M a rank of its
    own: a load at another rank's coordinate, as K[m]; an index through
    other ranks, BM[b, h, m / TK, ..] over MB, does).
    An input's slot of an alias of the family (DOC's P over M) read at the
    family's variables does: an input read at that position (DOC[b, m])."""
    k = fam.kind.get(rank)
    vs = index_vars(index)
    if k in (POS, ROOT):
        outside = vs and all(fam.var_kind(v) is None and _alias_kind(c, fam, _whole(c, rank_of(v))) for v in vs)
        return None if is_input and outside else k
    if k is None and is_input and any(fam.var_kind(v) for v in vs) and not _gathered(index):
        k = _alias_kind(c, fam, rank)
        return k if k in (POS, ROOT) else None
    return None


def access_tokens(c: Cascade, fam: Family, a: Access) -> set:
    t = c.tensor(a.tensor)
    out = set()
    for r, i in zip(t.ranks, a.indices):
        k = slot_kind(c, fam, r, i, t.role == "input")
        if k in (POS, ROOT):
            tok = position_token(fam, k, i, r in t.iterative)
            if tok is not None:
                out.add(tok)
        elif fam.kind.get(r) not in (POS, ROOT) and _gathered(i) and (tok := gather_token(fam, i)) is not None:
            out.add(tok)
    return out


def has_position(c: Cascade, fam: Family, tensor: str) -> bool:
    return any(fam.kind.get(r) in (POS, ROOT) for r in c.tensor(tensor).ranks)


def _gathered_by(c: Cascade, fam: Family, tensor: str) -> bool:
    """Is `tensor` read somewhere at a slot indexed through a gather by R's
    variables (its elements are then tied to R's visits as if it carried R)?"""
    return any(a.tensor == tensor and any(_gathered(i) and gather_token(fam, i) for i in a.indices)
               for e in c.einsums for a in e.reads())


def gathered_position(c: Cascade, fam: Family) -> str | None:
    """Why passes over R are not defined when a slot of R is indexed through
    a gather: which position of R a step visits is then the data's choice."""
    for e in c.einsums:
        for a in [e.output] + e.reads():
            for r, i in zip(c.tensor(a.tensor).ranks, a.indices):
                if fam.kind.get(r) is not None and _gathered(i):
                    how = ("given by data (a gather): the order in which {r} is visited is the index tensor's"
                           if any(isinstance(n, Access) for n in walk(i)) else
                           "computed (a computed index): the order in which {r} is visited is the index's")
                    return (f"{e.name} reads {a} at a position of {fam.rank} " + how.format(r=fam.rank)
                            + ", so passes are counted over the ranks whose variables index it instead")
    return None


def _show(fam: Family, tok) -> str:
    name, k = tok[:2]
    if name in ("const", "expr"):
        return str(k)
    name = f"{name[:-2]} // {fam.tile}" if name.endswith("//") else name
    return name + (f" + {k}" if k > 0 else f" - {-k}" if k < 0 else "")


# ------------------------------------------------------------ the analysis

@dataclass(frozen=True)
class State:
    streams: bool          # each element final in its position's visit of `pass_`, else final at its end
    pass_: int
    origin: int | None = None   # for held or ready values: the Einsum that combined positions
    bound: bool = False         # elements tied to positions of R (streamed or held)
    via: tuple | None = None    # no position, but each element made in one visit: (the read that
                                # placed the visit, the output access) to name it from a reader


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
    aliases: str = ""      # 'rank J = M' when an alias index makes it a reduction over R

    def __str__(self) -> str:
        # no variable of the rank in the Einsum: it is reached through an index expression (BM[p / TQ, m / TK])
        over = ", ".join(self.reduced_vars) or "the positions an index expression reaches"
        if self.reduce_op == "last":
            head = f"{self.blocker} <- last iterate of {self.reducer} over {over}"
        elif self.reduce_op.startswith(("cumsum", "cumprod")):
            over = self.reduced_vars[0]
            head = (f"{self.reducer} <- {self.reduce_op} of {', '.join(self.reduced_from) or 'its inputs'} "
                    f"(a suffix scan: element {over} needs every later position of {over}, complete only at "
                    f"the end of a traversal)")
        elif self.reduce_op == "moved":
            head = f"{self.reducer} <- elements of {', '.join(self.reduced_from)} from other positions"
        else:
            src = ", ".join(self.reduced_from) or "its inputs"
            head = f"{self.reducer} <- {self.reduce_op} over {over} of {src}"
        if self.aliases:
            head += f" ({self.aliases}: a reduction over the whole fiber)"
        if self.blocker != self.reducer and self.reduce_op != "last":
            head += f" (needed via {self.blocker})"
        vars_ = ", ".join(self.vars) or "the positions an index expression reaches"
        if self.rereads:
            tail = f"{self.reader} re-reads {', '.join(self.rereads)} over {vars_}"
        else:
            tail = f"{self.reader} traverses {vars_} again"
        return f"{head}; {tail}"


@dataclass(frozen=True)
class PassResult:
    rank: str
    passes: int | None     # None: no number of passes computes the cascade (see `unstreamable`)
    einsum_pass: dict[str, int] = field(hash=False)   # Einsum (output tensor) -> pass; 0: outside any pass
    chain: tuple[PassStep, ...] = ()
    states: dict[str, State] = field(default_factory=dict, hash=False, repr=False)
    unstreamable: str | None = None
    family: Family | None = field(default=None, hash=False, repr=False, compare=False)
    scans: tuple[str, ...] = ()   # one line per scan along the rank: why it costs no pass, or one

    def explain(self) -> list[str]:
        """One line per extra pass saying which reduction forces it; for a
        design that needs a single pass, one line saying why one suffices."""
        if self.unstreamable:
            return [f"not streamable over {self.rank}: {self.unstreamable}"]
        if self.chain or self.passes is None:
            return [f"pass {s.pass_}: {s}" for s in self.chain] + list(self.scans)
        inside = [e for e, p in self.einsum_pass.items() if p >= 1]
        after = [e for e, p in self.einsum_pass.items() if p == 0]
        if not inside:
            return [f"no Einsum traverses {self.rank}: {self.passes} pass{'es' * (self.passes != 1)}"]
        line = (f"1 pass over {self.rank}: {', '.join(inside)} run in one traversal; none needs a "
                f"reduction over {self.rank} complete before reading {self.rank} again")
        if after:
            line += f" ({', '.join(after)}: outside the traversal)"
        return [line] + list(self.scans)


def _streaming_read(c: Cascade, a: Access, parts) -> bool:
    """Does this access walk R (an index variable at a slot of R's family)?"""
    t = c.tensor(a.tensor)
    return any(r in parts and index_vars(i) for r, i in zip(t.ranks, a.indices))


class _Walk:
    """One walk of the cascade in dependency order (see the module docstring)."""

    def __init__(self, c: Cascade, rank: str):
        self.c, self.fam = c, rank_family(c, rank)
        self.state: dict[str, State] = {}
        for t in c.inputs:
            pos = has_position(c, self.fam, t.name) or _gathered_by(c, self.fam, t.name)
            self.state[t.name] = State(True, 1, bound=True) if pos else State(False, 0)
        self.einsum_pass: dict[int, int] = {}
        self.chain: dict[int, PassStep] = {}
        self.unstreamable: str | None = None

    def tokens(self, a: Access, internal: set[str]) -> set:
        s = self.state.get(a.tensor)
        if a.tensor not in internal and not (s and s.bound) and self.c.tensor(a.tensor).role != "input":
            return set()
        return access_tokens(self.c, self.fam, a)

    def virtual(self, a: Access) -> set:
        """The visit that made each element of a tensor without R's position
        (QK[m, p] made in the visit of BM[m / TK, p / TQ]), named through `a`."""
        s = self.state.get(a.tensor)
        if s is None or s.via is None:
            return set()
        placed, out = s.via
        names = {i.name: j for i, j in zip(out.indices, a.indices) if isinstance(i, Idx)}
        return access_tokens(self.c, self.fam, substitute(placed, names))

    def step(self, step) -> None:
        c = self.c
        members = [c.einsums[i] for i in step.einsums]
        internal = {e.name for e in members} if step.var else set()
        if step.var and self.fam.var_kind(step.var) is None and self.fed_back_reduction(members, step.var):
            return
        reads = [(e, a, self.tokens(a, internal)) for e in members for a in e.reads()]
        touches = any(toks for _, a, toks in reads if a.tensor not in internal)
        visit = {}
        for e, a, toks in reads:
            for t in sorted(toks, key=str):       # a stable order for the messages
                visit.setdefault(t, (e, a))
        if touches and len(visit) > 1 and not self.each_reads_one(members, reads):     # (one Einsum: it reads two)
            self.refuse(visit)
            return
        best, why = (1 if touches else 0), None
        for e, a, toks in reads:
            if a.tensor in internal:
                continue
            s = self.state[a.tensor]
            if not toks and c.tensor(a.tensor).role == "input":
                s = State(False, 0)     # read at no position of R (Q[p], DOC[b, m] over P): ready data
            if touches and not toks and s.via is not None and self.virtual(a) == set(visit):
                toks = set(visit)
            k = (s.pass_ if s.streams else s.pass_ + 1) if toks else s.pass_ + 1 if touches else s.pass_
            if k > best:
                best, why = k, (e, a, s)
        token = next(iter(visit)) if touches else None
        for i, e in zip(step.einsums, members):
            self.settle(i, e, best, token, why, visit.get(token, (None, None))[1])
        if touches and why is not None and best not in self.chain and best > 1:
            self.chain[best] = _explain(self, best, why)

    def settle(self, i: int, e: Einsum, best: int, token, why, placed: Access | None) -> None:
        c, fam = self.c, self.fam
        if token is None:
            self.einsum_pass[i] = 0
            self.state[e.name] = State(False, best, why[2].origin if why else None)
            return
        self.einsum_pass[i] = best
        out = access_tokens(c, fam, e.output)
        if not out and placed is not None and _position_vars(c, fam, placed) <= set(e.output_vars):
            self.state[e.name] = State(True, best, via=(placed, e.output))
        elif not out:
            self.state[e.name] = State(False, best, origin=i)
        elif e.scan is not None and e.scan.reverse and fam.var_kind(e.scan.var) in (POS, ROOT):
            # a suffix scan along R: element m needs positions m .. end, so it
            # is final only when the traversal ends (a prefix scan streams)
            self.state[e.name] = State(False, best, origin=i, bound=True)
        elif len(out) == 1 and _same_or_earlier(token, next(iter(out))):
            self.state[e.name] = State(True, best, bound=True)
        else:
            self.state[e.name] = State(False, best, origin=i, bound=True)

    def each_reads_one(self, members: list[Einsum], reads) -> bool:
        """A recurrence over another rank whose step reads two positions,
        each Einsum of it one (`A[t, m] = S[t, m] * X[m]`, `S[t + 1, m] =
        A[t, m - 1]`), each at or before the position it writes: with the
        traversal outside the recurrence every dependence runs forward in
        R, so each Einsum runs in the visit of its own read. (Its outputs
        are then final by their own visits whichever of the step's reads
        `settle` is given: an output index is a variable.)"""
        for e in members:
            toks = {t for f, _, ts in reads if f is e for t in ts}
            out = access_tokens(self.c, self.fam, e.output)
            if len(toks) != 1 or len(out) != 1 or not _same_or_earlier(next(iter(toks)), next(iter(out))):
                return False
        return True

    def fed_back_reduction(self, members: list[Einsum], var: str) -> bool:
        """A recurrence over another rank (t) whose step reduces over R and
        feeds the result back (G[t] = sum over m of S[t, m], S[t + 1, m] =
        G[t] * X[m]): every step waits for a whole traversal of R, so the
        passes grow with T, no fixed number. Says so and returns True."""
        for red in members:
            over = [v for v in red.reduced if self.fam.var_kind(v) in (POS, ROOT)]     # m0: within a tile
            reader = next((e for e in members if e is not red and any(a.tensor == red.name for a in e.reads())), None)
            if over and reader is not None:
                self.unstreamable = (f"{red.name} reduces over {over[0]} inside the recurrence over {var}, and "
                                     f"{reader.name} reads it in the same step: each step of {var} needs a whole "
                                     f"pass over {self.fam.rank}, {rank_of(var)} passes in all, no fixed number")
                return True
        return False

    def refuse(self, visit: dict) -> None:
        """Why no traversal of R can stream this step: the first two
        positions it needs at once, and the reads that tie them (one read
        can tie two itself: PRE[h, h2] with H2 = H)."""
        (t1, (e1, a1)), (t2, (e2, a2)) = list(visit.items())[:2]
        vars_ = [v for a in (a1, a2) for i in a.indices for v in index_vars(i)]
        note = self.fam.alias_note(vars_)
        rank, shown = self.fam.rank, f"({_show(self.fam, t1)} and {_show(self.fam, t2)})"
        if e1 is e2 and a1 == a2:
            what = f"{e1.name} reads {a1}, an element tied to two different positions of {rank} at once {shown}"
        elif e1 is e2:
            what = f"{e1.name} reads {a1} and {a2} at once, two different positions of {rank} {shown}"
        else:
            what = (f"{e1.name} reads {a1} and {e2.name} reads {a2} in one step, two different positions of "
                    f"{rank} {shown}")
        by = "; ".join(dict.fromkeys(self.fam.joined_by[rank_of(v)] for v in vars_ if rank_of(v) in self.fam.joined_by))
        self.unstreamable = (what + (f"; {note} walks {rank} (through {by})" if note else "")
                             + "; an element tied to a position is on chip only while that position is visited")


def _position_vars(c: Cascade, fam: Family, a: Access) -> set[str]:
    """The variables that place the visit of a read: those of its position
    slots, and R's variables in a gather (S[BT[b, m // BS], m % BS]: m)."""
    t = c.tensor(a.tensor)
    return {v for r, i in zip(t.ranks, a.indices) if slot_kind(c, fam, r, i, t.role == "input") in (POS, ROOT)
            for v in index_vars(i)} | \
        {v for r, i in zip(t.ranks, a.indices) if fam.kind.get(r) not in (POS, ROOT) and _gathered(i)
         for v in index_vars(i) if fam.var_kind(v) in (POS, ROOT)}


def _same_or_earlier(visit, out) -> bool:
    """The output element at `out` is final when the visit at `visit` ends:
    the same position, or an earlier one of the same variable (X[m] = S[m - 1])."""
    if visit == out:
        return True
    if visit[0] == "expr":     # a computed position never after v's (an output's offset is never below 0)
        return visit[2] == out[0]
    return visit[0] == out[0] and visit[0] != "const" and visit[1] <= out[1]


def passes(c: Cascade, rank: str) -> PassResult:
    w = _Walk(c, rank)
    gathered = gathered_position(c, w.fam)
    if gathered:
        return PassResult(rank, None, {}, (), w.state, gathered, w.fam)
    for step in schedule(c):
        w.step(step)
        if w.unstreamable:
            return PassResult(rank, None, {}, (), w.state, w.unstreamable, w.fam)
    by_name: dict[str, int] = {}
    for i, p in w.einsum_pass.items():
        by_name[c.einsums[i].name] = max(p, by_name.get(c.einsums[i].name, 0))
    total = max(list(w.einsum_pass.values()) + [0])
    return PassResult(rank, total, by_name, tuple(w.chain[k] for k in sorted(w.chain)), w.state, None, w.fam,
                      _scan_notes(c, w))


def _scan_notes(c: Cascade, w: _Walk) -> tuple[str, ...]:
    """Each scan along R, and why it costs a pass or none."""
    out = []
    for i, e in enumerate(c.einsums):
        s = e.scan
        if s is None or w.fam.var_kind(s.var) is None:
            continue
        if w.fam.var_kind(s.var) == INNER:
            out.append(f"{e.name}: {s} runs inside one tile of {w.fam.rank} (all its positions on chip): no pass")
        elif s.reverse:
            out.append(f"{e.name}: {s} is a suffix scan along {w.fam.rank}: its element {s.var} is final only "
                       f"after the last position, so a reader at {s.var} runs one pass later "
                       f"(pass {w.einsum_pass.get(i, 0) + 1})")
        else:
            out.append(f"{e.name}: {s} is a prefix scan along {w.fam.rank}: a running "
                       f"{'sum' if s.op == 'cumsum' else 'product'} carried from position to position, its "
                       f"element {s.var} final when {s.var} is visited: no extra pass")
    return tuple(out)


def _explain(w: _Walk, k: int, why) -> PassStep:
    c, fam, state = w.c, w.fam, w.state
    reader, access, s = why
    part_vars = fam.vars
    origin = c.einsums[s.origin] if s.origin is not None else None
    rvars = tuple(v for v in reader.iteration_vars if v in part_vars)
    rereads = tuple(dict.fromkeys(
        a.tensor for a in reader.reads()
        if state[a.tensor].streams and state[a.tensor].pass_ < k and w.tokens(a, set())))
    if _last_iterate(c, fam, access):
        writer = next(e for e in c.writers(access.tensor) if e.iterative_var is not None)
        return PassStep(k, reader.name, access.tensor, writer.name, "last", (writer.iterative_var,), (),
                        rereads, rvars)
    if origin is None:
        return PassStep(k, reader.name, access.tensor, access.tensor, "sum", (), (), rereads, rvars)
    reduced = tuple(v for v in origin.reduced if fam.var_kind(v) in (POS, ROOT))
    # what the reduction combines: its map's reads (a mask read in the predicate, DOC[b, m], only selects)
    sources = tuple(dict.fromkeys(a.tensor for a in accesses(origin.expr) if w.tokens(a, set()))) or \
        tuple(dict.fromkeys(a.tensor for a in origin.reads() if w.tokens(a, set())))
    op = origin.reduce if reduced else "moved"
    if origin.scan is not None and origin.scan.reverse and fam.var_kind(origin.scan.var) in (POS, ROOT):
        reduced, op = (origin.scan.var,), str(origin.scan)
    return PassStep(k, reader.name, access.tensor, origin.name, op, reduced, sources, rereads, rvars,
                    fam.alias_note(reduced))


def _last_iterate(c: Cascade, fam: Family, a: Access) -> bool:
    t = c.tensor(a.tensor)
    return any(r in t.iterative and r in fam.kind and not index_vars(i) for r, i in zip(t.ranks, a.indices))
