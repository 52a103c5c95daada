"""Statements -> a valid Cascade. Shared by the parser and the Python builder,
so both produce the same IR: it normalises index expressions, infers what the
text may leave out (rank declarations, intermediate tensors, reduced ranks,
output roles), then runs the verifier."""
from __future__ import annotations

import difflib
from dataclasses import replace

from .errors import Loc, ValidationError
from .ir import (ROUNDING, Access, Cascade, Einsum, Expr, Mask, Num, Op, Rank, Sym, TensorDecl, literal_rank,
                 offset_of, rank_of, repeat_rank)
from .ops import DEFAULT_DTYPE
from .parser import EMPTY_ROWS, EmptyRowsStmt, PartitionStmt, RankStmt
from .validate import validate


def normalise_index(e: Expr) -> Expr:
    """In an access index `/` is integer division, except inside floor( )
    and ceil( ), whose argument is a real number (`floor(log(n / 8))`);
    `-1` is a literal."""
    if isinstance(e, Op) and e.name in ROUNDING:
        return Op(e.name, tuple(normalise(a) for a in e.args), loc=e.loc)
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
    masks: dict[str, Mask] = {}
    empty: list[EmptyRowsStmt] = []

    def add_rank(r: Rank):
        if r.name in ranks and ranks[r.name].implicit and ranks[r.name].definition == r.definition:
            ranks[r.name] = r  # `rank H2 = H` after `PRE[H, H]` says what the language made
            return
        if r.name in ranks and ranks[r.name].implicit:
            err(f"rank {r.name} is already made by the language (for the declaration at {ranks[r.name].loc}): "
                f"{_implicit_text(ranks[r.name])}; rename this rank", r.loc)
        if r.name in ranks:
            err(f"rank {r.name} is declared twice", r.loc)
        ranks[r.name] = r

    for s in statements:
        if isinstance(s, RankStmt):
            r = s.rank
            # `/` in a rank's definition stays exact division (checked by shapes.resolve); `-1` is a literal
            add_rank(replace(r, definition=None if r.definition is None else normalise(r.definition)))
        elif isinstance(s, PartitionStmt):
            if s.parent not in ranks:
                add_rank(Rank(s.parent, loc=s.loc))
            add_rank(Rank(s.outer, parent=s.parent, part="outer", loc=s.outer_loc or s.loc))
            add_rank(Rank(s.inner, parent=s.parent, part="inner", loc=s.inner_loc or s.loc))
        elif isinstance(s, TensorDecl):
            if s.name in decls:
                err(f"tensor {s.name} is declared twice (first at {decls[s.name].loc})", s.loc)
            decls[s.name] = _implicit_ranks(s, ranks, err)
        elif isinstance(s, EmptyRowsStmt):
            if empty:
                err(f"empty rows is set twice (first at {empty[0].loc}); a design has one convention", s.loc)
            empty.append(s)
        elif isinstance(s, Mask):
            if s.name in masks:
                first = masks[s.name].loc
                err(f"mask '{s.name}' is already defined" + (f" (at {first})" if first else ""), s.loc)
            masks[s.name] = replace(s, condition=normalise(s.condition))   # as the predicates that use it
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
    # Ranks the language made go last, so the printed text (which has no line
    # for them) parses back to the same order.
    ranks = {k: r for k, r in sorted(ranks.items(), key=lambda kv: kv[1].implicit)}

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
            close = difflib.get_close_matches(missing[0], sorted(masks), n=1)
            hint = (f" ({missing[0]} names no rank: did you mean the mask '{close[0]}' defined at "
                    f"{masks[close[0]].loc}?)" if close and missing[0].upper() not in ranks else "")
            err(f"{e.name}: index {missing[0]} is absent from the output, so it is reduced, "
                f"but the reduction lists only [{', '.join(e.reduced)}]{hint}", e.loc)
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
                      name=name, doc=doc, source=source, masks=tuple(masks.values()),
                      empty_rows=empty[0].value if empty else EMPTY_ROWS[0])
    validate(cascade)
    return cascade


def _implicit_text(r: Rank) -> str:
    if isinstance(r.definition, Num):
        return f"{r.name} is the literal extent {r.definition.value}"
    return f"{r.name} is the repeated {r.definition} of a declaration (rank {r.name} = {r.definition})"


def _implicit_ranks(d: TensorDecl, ranks: dict, err) -> TensorDecl:
    """The ranks a declaration names but the language makes: a literal extent
    `2` is the rank _2 = 2; the k-th occurrence (k >= 2) of a rank H is its
    alias H2 (H3, ...; M1 gives M1_2), so `PRE[H, H]` is PRE[H, H2], read as
    `PRE[h, h2]`."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for r in d.ranks:
        if r.isdigit():
            name, definition = literal_rank(int(r)), Num(int(r))
        else:
            seen[r] = seen.get(r, 0) + 1
            if seen[r] == 1:
                names.append(r)
                continue
            if r in d.iterative:
                err(f"tensor {d.name} repeats rank {r}, which it declares iterative ({r}+1); "
                    "repeat only ranks that are not iterative", d.loc)
            name, definition = repeat_rank(r, seen[r]), Sym(r)
        have = ranks.get(name)
        if have is None:
            ranks[name] = Rank(name, definition, loc=d.loc, implicit=True)
        elif have.definition != definition:
            err(f"tensor {d.name}: {_implicit_text(Rank(name, definition))}, but rank {name} is already declared "
                f"(at {have.loc}) {'as ' + str(have.definition) if have.definition is not None else 'as a free rank'}"
                f"; rename that rank", d.loc)
        names.append(name)
    return d if names == list(d.ranks) else replace(d, ranks=tuple(names))


__all__ = ["assemble", "normalise", "normalise_index"]
