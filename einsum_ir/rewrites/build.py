"""Putting a rewritten cascade together: declarations for the new tensors,
the partition of the key rank, the `.ein` text with the algebra as comments,
and validation by parsing that text back (so the printed result is exactly
the cascade the rewrite returns)."""
from __future__ import annotations

from ..errors import EinError
from ..ir import Access, Cascade, Einsum, Expr, Idx, Num, Op, Rank, Sym, TensorDecl, offset_of, rank_of
from ..ops import DEFAULT_DTYPE
from .walk import RewriteError


def split_key(k: str, k1: str, tile: str, k0: str) -> Expr:
    """The key coordinate in tile form: k = k1 * K0 + k0."""
    return Op("add", (Op("mul", (Idx(k1), Sym(tile))), Idx(k0)))


def partitioned(c: Cascade, K: str) -> tuple[tuple[Rank, ...], str, str]:
    """c's ranks with K partitioned into (K1, K0), fresh names."""
    names = {r.name for r in c.ranks} | {t.name for t in c.tensors}
    outer = next(n for n in (f"{K}1", f"{K}T", f"{K}TILES", f"{K}_T") if n not in names)
    inner = next(n for n in (f"{K}0", f"{K}I", f"{K}TILE", f"{K}_I") if n not in names)
    out: list[Rank] = []
    for r in c.ranks:
        out.append(r)
        if r.name == K:
            out += [Rank(outer, parent=K, part="outer"), Rank(inner, parent=K, part="inner")]
    return tuple(out), outer, inner


def at(name: str, indices: list[Expr]) -> Access:
    return Access(name, tuple(indices))


def insert(indices, pos: int, x: Expr) -> list[Expr]:
    out = list(indices)
    out.insert(pos, x)
    return out


def next_iter(v: str) -> Expr:
    return Op("add", (Idx(v), Num(1)))


def finite(x: Expr) -> Expr:
    """x where it is finite, else 0: the stand-in for a normaliser that no
    finite score has reached yet (select(abs(x) < inf, x, 0))."""
    return Op("select", (Op("lt", (Op("abs", (x,)), Num(float("inf")))), x, Num(0.0)))


def decl_for(e: Einsum, dtype: str, role: str) -> TensorDecl:
    ranks, iterative = [], set()
    for i in e.output.indices:
        var, off = offset_of(i)
        ranks.append(rank_of(var))
        if off == 1:
            iterative.add(rank_of(var))
    return TensorDecl(e.name, tuple(ranks), dtype, role, frozenset(iterative))


def assemble_rewrite(c: Cascade, ranks, einsums: list[Einsum], dtypes: dict[str, str], name: str,
                     doc: list[str], notes: dict[str, list[str]], form: str) -> tuple[Cascade, str]:
    """The rewritten cascade (validated) and its text. `dtypes` gives a new
    tensor the element type of the original tensor it stands for; `notes`
    puts comment lines before the first Einsum writing each tensor."""
    tensors = [t for t in c.tensors if t.role == "input"]
    outputs = {t.name for t in c.outputs}
    seen = {t.name for t in tensors}
    for e in einsums:
        if e.is_initial or e.name in seen:
            continue
        seen.add(e.name)
        old = c.tensor(e.name) if c.has_tensor(e.name) else None
        d = decl_for(e, old.dtype if old is not None else dtypes.get(e.name, DEFAULT_DTYPE),
                     "output" if e.name in outputs else "tensor")
        tensors.append(d)
    # named masks print as their name only where an Einsum writes the mask's
    # variables itself; the rewritten Einsums carry the conditions expanded
    plain = {"masks": ()} if hasattr(c, "masks") else {}
    new = c.replace(ranks=tuple(ranks), tensors=tuple(tensors), einsums=tuple(einsums), name=name,
                    doc="\n".join(doc), source=None, **plain)
    text = _with_notes(str(new), notes)
    from ..parser import parse
    try:
        out = parse(text, file=f"<{name}>", name=name)
    except EinError as err:
        raise RewriteError(f"the {form} form of {c.name} does not validate (a bug in attnc's rewrite): "
                           f"{err.message}") from None
    return out, text


def _with_notes(text: str, notes: dict[str, list[str]]) -> str:
    lines = text.split("\n")
    out: list[str] = []
    done: set[str] = set()
    body = False
    for line in lines:
        if line and not line.startswith("#") and "=" in line and "[" in line.split("=", 1)[0]:
            body = True
        name = line.split("[", 1)[0] if body else ""
        if body and name in notes and name not in done:
            done.add(name)
            out += [f"# {n}" for n in notes[name]]
        out.append(line)
    return "\n".join(out)


__all__ = ["assemble_rewrite", "at", "decl_for", "finite", "insert", "next_iter", "partitioned", "split_key"]
