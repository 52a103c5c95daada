"""Statements -> a valid Cascade. Shared by the parser and the Python builder,
so both produce the same IR: it normalises index expressions, infers what the
text may leave out (rank declarations, intermediate tensors, reduced ranks,
output roles), then runs the verifier."""
from __future__ import annotations

from dataclasses import replace

from .errors import Loc, ValidationError
from .ir import Access, Cascade, Einsum, Expr, Num, Op, Rank, TensorDecl, offset_of, rank_of
from .ops import DEFAULT_DTYPE
from .parser import PartitionStmt, RankStmt
from .validate import validate


def normalise_index(e: Expr) -> Expr:
    """In an access index `/` is integer division; `-1` is a literal."""
    if isinstance(e, Op):
        args = tuple(normalise_index(a) for a in e.args)
        name = "floordiv" if e.name == "div" else e.name
        if name == "neg" and isinstance(args[0], Num):
            return Num(-args[0].value, loc=e.loc)
        return Op(name, args, loc=e.loc)
    if isinstance(e, Access):
        return Access(e.tensor, tuple(normalise_index(i) for i in e.indices), loc=e.loc)
    return e


def normalise(e: Expr) -> Expr:
    """Normalise every access index inside a value expression."""
    if isinstance(e, Access):
        return normalise_index(e)
    if isinstance(e, Op):
        args = tuple(normalise(a) for a in e.args)
        if e.name == "neg" and isinstance(args[0], Num):
            return Num(-args[0].value, loc=e.loc)
        return Op(e.name, args, loc=e.loc)
    return e


def assemble(statements, name: str = "cascade", doc: str = "", source: str | None = None,
             file: str = "<string>") -> Cascade:
    def err(msg, loc):
        raise ValidationError(msg, loc, source)

    ranks: dict[str, Rank] = {}
    decls: dict[str, TensorDecl] = {}
    einsums: list[Einsum] = []

    def add_rank(r: Rank):
        if r.name in ranks:
            err(f"rank {r.name} is declared twice", r.loc)
        ranks[r.name] = r

    for s in statements:
        if isinstance(s, RankStmt):
            r = s.rank
            add_rank(replace(r, definition=None if r.definition is None else normalise_index(r.definition)))
        elif isinstance(s, PartitionStmt):
            if s.parent not in ranks:
                add_rank(Rank(s.parent, loc=s.loc))
            add_rank(Rank(s.outer, parent=s.parent, part="outer", loc=s.outer_loc or s.loc))
            add_rank(Rank(s.inner, parent=s.parent, part="inner", loc=s.inner_loc or s.loc))
        elif isinstance(s, TensorDecl):
            if s.name in decls:
                err(f"tensor {s.name} is declared twice (first at {decls[s.name].loc})", s.loc)
            decls[s.name] = s
        elif isinstance(s, Einsum):
            einsums.append(replace(
                s, output=normalise_index(s.output), expr=normalise(s.expr),
                predicate=None if s.predicate is None else normalise(s.predicate)))
        else:
            raise TypeError(f"not a statement: {s!r}")

    if not einsums and source is not None:
        # the whole text is at fault: point at its start so the message names the file
        err("the cascade has no Einsums", Loc(file, 1, 1))

    # Ranks named in declarations but never declared are free ranks.
    for d in decls.values():
        for r in d.ranks:
            if r not in ranks:
                ranks[r] = Rank(r, loc=d.loc)

    # Reduced ranks: everything in the iteration space that the output lacks.
    done = []
    for e in einsums:
        out = set(e.output_vars)
        inferred = tuple(v for v in e.iteration_vars if v not in out)
        if e.reduced is not None and set(e.reduced) != set(inferred):
            extra = [v for v in e.reduced if v not in inferred]
            if extra:
                where = "in the output" if extra[0] in out else "not in the iteration space"
                err(f"{e.name} reduces over {extra[0]}, which is {where}", e.loc)
            missing = [v for v in inferred if v not in e.reduced]
            err(f"{e.name}: index {missing[0]} is absent from the output, so it is reduced, "
                f"but the reduction lists only [{', '.join(e.reduced)}]", e.loc)
        done.append(replace(e, reduced=inferred if e.reduced is None else tuple(e.reduced)))
    einsums = done

    # Intermediate tensors: declared by the Einsum that writes them.
    read = {a.tensor for e in einsums for a in e.reads()}
    for e in einsums:
        if e.name in decls or e.is_initial:
            continue
        dims, iterative = [], set()
        for i in e.output.indices:
            o = offset_of(i)
            if o is None:
                err(f"output index {i} of {e.name} must be an index variable, `v + 1` "
                    "(iterative) or 0 (initial value)", getattr(i, "loc", None) or e.loc)
            if rank_of(o[0]) not in ranks:
                err(f"index variable {o[0]} has no rank {rank_of(o[0])}", getattr(i, "loc", None) or e.loc)
            dims.append(rank_of(o[0]))
            if o[1] == 1:
                iterative.add(rank_of(o[0]))
        role = "tensor" if e.name in read else "output"
        decls[e.name] = TensorDecl(e.name, tuple(dims), DEFAULT_DTYPE, role, frozenset(iterative), loc=e.loc)
    for e in einsums:
        if e.is_initial and e.name not in decls:
            err(f"{e.name} has an initial value but no Einsum that iterates it "
                f"(write {e.name}[..., v+1, ...] = ...)", e.loc)

    # Tensors appear in declaration order, then in order of definition.
    cascade = Cascade(tuple(ranks.values()), tuple(decls.values()), tuple(einsums),
                      name=name, doc=doc, source=source)
    validate(cascade)
    return cascade


__all__ = ["assemble", "normalise", "normalise_index"]
