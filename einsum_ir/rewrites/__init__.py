"""Rewrites that lower a cascade's pass count (docs/analysis.md, Rewrites).

Each is a pure function Cascade -> Rewrite (the new cascade, its `.ein`
text with the algebra that justifies it as comments, the explanation) and
refuses with a RewriteError naming the Einsum and the failed condition:

- `deferred`: a division by a row normaliser moves past the sum that
  contracts it (3-pass softmax -> 2 passes);
- `online`: maxima over the key rank become running maxima over its tiles
  and sums of exp(A - G) terms are rescaled as G grows (-> 1 pass);
- `split-kv`: the keys split into chunks, each reduced on its own, and the
  chunks' partial results merged by an associative combine.

`rewrite(..., verify=True)` runs the original and the result on the same
random inputs at small shapes and refuses a result that differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import EinError
from ..ir import Cascade
from .walk import RewriteError, key_rank, recognise

FORMS = ("online", "deferred", "split-kv")


@dataclass(frozen=True)
class Rewrite:
    original: Cascade
    cascade: Cascade
    form: str
    text: str                      # the `.ein` text, the algebra as comments
    explanation: list[str]
    rank: str                      # the rank whose passes the rewrite lowers
    passes_before: int | None
    passes_after: int | None
    checked: dict = field(default_factory=dict)    # shapes and largest difference of the verify step


def rewrite(c: Cascade, to: str, verify: bool = True, shapes: dict | None = None,
            rank: str | None = None) -> Rewrite:
    """`c` rewritten to the form `to` (one of FORMS), checked equal to `c` on
    random inputs unless verify=False; a RewriteError when it does not apply."""
    from ..analysis import passes
    if to not in FORMS:
        raise RewriteError(f"unknown rewrite {to!r}; the forms are {', '.join(FORMS)}")
    scan = next((e for e in c.einsums if e.scan is not None), None)
    if scan is not None and to == "deferred":   # deferral rebuilds Einsums from their reduction, never a scan
        raise RewriteError(f"cannot rewrite {c.name} to the {to} form: {scan.name} is a scan ({scan.scan}), "
                           "and the rewrites do not carry scans", scan.loc, c.source)
    K, before = key_rank(c, to, rank)
    steps: list[str] = []
    if to == "deferred":
        out, text, doc, _ = _defer(c, before)
        steps += doc
    else:
        out, text, doc = _walk_form(c, to, K, before, steps)
        steps += doc
    after = passes(out, K).passes
    if to == "deferred" and before is not None and after is not None and after >= before:
        raise RewriteError(f"cannot rewrite {c.name} to the deferred form: deferring its divisions leaves "
                           f"{after} passes over {K} (it had {before})")
    if to == "online" and after != 1:
        why = passes(out, K).unstreamable or f"{after} passes"
        raise RewriteError(f"cannot rewrite {c.name} to the online form: over {K} the result is still not one "
                           f"pass ({why})", None, c.source)
    steps.append(f"passes over {K}: {_count(before)} -> {_count(after)}")
    checked = check(c, out, shapes) if verify else {}
    if checked:
        steps.append(f"checked equal on random inputs at {_shape_text(checked['shapes'])} "
                     f"(largest difference {checked['max_abs_diff']:.2e})")
    return Rewrite(c, out, to, text, steps, K, before, after, checked)


def _defer(c, before):
    from .defer import defer
    return defer(c, before)


def _walk_form(c: Cascade, to: str, K: str, before: int | None, steps: list[str]):
    """online / split-kv: defer divisions first where that applies (the walk
    cannot wait for a sum), then derive the form from the recognised walk."""
    from .defer import find
    if to == "online" and before == 1:
        raise RewriteError(f"cannot rewrite {c.name} to the online form: it already makes 1 pass over {K}"
                           + (" (it has no max normaliser to carry)" if not _has_max(c, K) else ""))
    if to == "split-kv":
        from .chunks import split_recurrence
        if any(t.iterative for t in c.tensors):
            _no_scan(c, to, "splitting a written recurrence into chunks")
        got = split_recurrence(c, K)
        if got is not None:
            return got
    src = c
    if find(c)[0] is not None:
        _no_scan(c, to, "the division deferral this form needs first")
        src, _, _, n = _defer(c, before)
        src = src.replace(name=c.name, doc=c.doc)
        steps.append(f"first deferred {n} division{'s' * (n > 1)} past the value sum (as --to deferred does)")
    w = recognise(src, K, to)
    if to == "online" and not w.normalisers and src is c:
        raise RewriteError(f"cannot rewrite {c.name} to the online form: no max (or min) over {K.lower()} to carry "
                           "as a running value; its sums over the keys need no second pass", None, c.source)
    if to == "online":
        from .online import online
        return online(src, w, before)
    from .splitkv import split_kv
    return split_kv(src, w, before)


def _no_scan(c: Cascade, to: str, step: str) -> None:
    """Deferral and the split of a written recurrence rebuild Einsums from
    their reduction and carry no scan; the walk forms hoist a scan of
    inputs (walk.py) and refuse any other."""
    scan = next((e for e in c.einsums if e.scan is not None), None)
    if scan is not None:
        raise RewriteError(f"cannot rewrite {c.name} to the {to} form: {scan.name} is a scan ({scan.scan}), and "
                           f"{step} does not carry scans", scan.loc, c.source)


def _count(n: int | None) -> str:
    return "not streamable" if n is None else str(n)


def _has_max(c: Cascade, K: str) -> bool:
    """A max or min over K or any of its parts (attention-1pass's LM is a max over m0)."""
    from ..analysis.passes import rank_family
    vs = {r.lower() for r in rank_family(c, K).kind}
    return any(e.reduce in ("max", "min") and vs & set(e.reduced) for e in c.einsums)


def small_shapes(c: Cascade) -> dict:
    """Shapes for the verify step: every free symbol 3, each partitioned
    rank's extent 5 (tile symbols 3: tiles of 3 and 2, the last one partial)."""
    from ..ir import Sym, walk
    from ..shapes import symbols_used
    derived = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    env = {s: 3 for s in symbols_used(c) if s not in derived}
    outers = {r.name for r in c.ranks if r.part == "outer"}
    grouped = {}      # tiles grouped into chunks (rank MS = (M1 + MT - 1) // MT): 4 tiles of 2, 2 a chunk
    for r in c.ranks:
        names = [n.name for n in walk(r.definition) if isinstance(n, Sym)] if r.definition is not None else []
        if any(n in outers for n in names):
            grouped[next(n for n in names if n in outers)] = [n for n in names if n not in outers]
    for r in c.ranks:
        if r.part == "outer":
            parent = c.rank(r.parent)
            roots = [parent.name] if parent.definition is None else \
                [n.name for n in walk(parent.definition) if isinstance(n, Sym)]
            for s in roots:
                if s in env:
                    env[s] = 7 if r.name in grouped else 5
            if r.name in grouped:
                env[c.inner_of(r.name)] = 2
                env.update({n: 2 for n in grouped[r.name] if n in env})
    return env


def check(a: Cascade, b: Cascade, shapes: dict | None = None, seeds=(0, 1)) -> dict:
    """Run `a` and `b` on the same random inputs (float64) and compare every
    output of `a`; a RewriteError when they differ."""
    from ..execute import execute, random_inputs
    from ..shapes import symbols_used
    env = {**small_shapes(a), **small_shapes(b), **(shapes or {})}
    worst = 0.0
    for seed in seeds:
        try:
            xs = random_inputs(a, _only(a, env, symbols_used), seed=seed)
            ya = execute(a, xs, _only(a, env, symbols_used))
            yb = execute(b, xs, _only(b, env, symbols_used))
        except EinError as err:
            raise RewriteError(f"cannot check the {b.name} rewrite at {_shape_text(env)}: {err.message} "
                               "(give other shapes)") from None
        for name, x in ya.items():
            y = yb[name]
            same_nan = np.array_equal(np.isnan(x), np.isnan(y))
            ok = np.isfinite(x) & np.isfinite(y)
            diff = float(np.max(np.abs(x[ok] - y[ok]), initial=0.0))
            scale = float(np.max(np.abs(x[ok]), initial=1.0))
            if not same_nan or not np.array_equal(x[~ok], y[~ok], equal_nan=True) or diff > 1e-9 * max(1.0, scale):
                raise RewriteError(f"the rewrite of {a.name} differs from it on random inputs (seed {seed}, "
                                   f"{_shape_text(env)}): output {name}, largest difference {diff:.3g}"
                                   + ("" if same_nan else ", NaN at different places")
                                   + "; this is a bug in attnc's rewrite, please report it")
            worst = max(worst, diff)
    return {"shapes": env, "max_abs_diff": worst, "seeds": list(seeds)}


def _only(c: Cascade, env: dict, symbols_used) -> dict:
    used = set(symbols_used(c))
    derived = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    return {k: v for k, v in env.items() if k in used and k not in derived}


def _shape_text(env: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items())


__all__ = ["FORMS", "Rewrite", "RewriteError", "check", "rewrite", "small_shapes"]
