"""Random attention-like designs as `.ein` text, for differential testing at scale.

Each design is written the way a user writes one (text, so the parser and the
printer are exercised too), over the whole notation: score contractions,
random score maps, predicates, max/sum normalisers, value products, epilogues,
GQA, decode, component ranks read at constant indices, alias ranks,
partitions with iterative ranks, linear-time states. Families have their own
builders so that the mix is controllable (`FAMILIES`).

A design is a pure function of (seed, family): every choice comes from one
`random.Random` seeded with a string (stable across runs and platforms).

Values stay finite on standard-normal inputs at the tiny shapes given: every
score transform carries a bound on the magnitude of its value, exp is only
applied where that bound keeps it finite, logs and square roots only see
positive arguments, and every divisor is a sum of exps, a positive feature
sum, or guarded by `max(x, 1e-30)` where a predicate may leave a row empty.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterator

FAMILIES = ("softmax", "two-branch", "const-index", "alias", "online", "linear")

# Bound assumed on |x| for a standard-normal input element at these shapes
# (a few hundred draws at most: beyond 5 sigma is below 1e-4 per design).
XB = 5.0
EXP_SAFE = 60.0       # largest argument bound fed to exp without a max subtracted
TINY = "1e-30"


@dataclass(frozen=True)
class RandomDesign:
    """One generated design: its `.ein` text and tiny shapes to run it at.

    `shapes` gives every free shape symbol (ranks, tile sizes, window widths,
    ...) and, where a bool mask tensor MK is read, `density_MK` (the analyses
    need it; `random_inputs` draws fair coins). `features` names what the text
    uses (see FEATURES), for coverage and for picking designs by trait."""
    seed: int
    family: str
    features: frozenset
    text: str
    shapes: dict

    @property
    def name(self) -> str:
        return f"rand-{self.family}-{self.seed}"

    def cascade(self):
        """The parsed (and validated) cascade."""
        from . import parse
        return parse(self.text, file=f"<{self.name}>", name=self.name)

    def __hash__(self):
        return hash((self.seed, self.family, self.text))


# ------------------------------------------------------------------ context

class _Ctx:
    """Collects the statements, inputs, shape values and features of a design."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.features: set[str] = set()
        self.shapes: dict[str, int] = {}
        self.heads: list[str] = []      # rank / partition statements
        self.lets: list[str] = []
        self.inputs: dict[str, str] = {}
        self.decls: list[str] = []
        self.body: list[str] = []
        self.names: set[str] = set()
        self.memo: dict = {}
        self.extra: random.Random | None = None   # the second stream: the newer operators (_t_new_op)
        self.lang: random.Random | None = None    # the third stream: the newer structure (see `new`)
        self.masks: dict[str, str] = {}           # named masks: name -> body
        self.empty_zero = False                   # write `empty rows = 0`

    def feat(self, *names: str) -> None:
        self.features.update(names)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq):
        return self.rng.choice(list(seq))

    def new(self, p: float) -> bool:
        """A chance from the third stream, for the language features added
        since issue 18 (scans, masks, domains, gathers, ...): a design that
        draws none of them is the one it was before they existed."""
        return self.lang is not None and self.lang.random() < p

    def once(self, key: str, choose: Callable):
        """A choice made the first time it is asked for (e.g. an input's ranks)."""
        if key not in self.memo:
            self.memo[key] = choose()
        return self.memo[key]

    def sym(self, name: str, lo: int, hi: int | None = None) -> str:
        """A free shape symbol, given a value once."""
        if name not in self.shapes:
            self.shapes[name] = self.rng.randint(lo, hi if hi is not None else lo)
        return name

    def inp(self, name: str, ranks, dtype: str | None = None, domain: str = "") -> str:
        """Declare an input once (the first declaration wins); `domain` is
        its declared domain (` in (0, 1)`, ` > 0`)."""
        if name not in self.inputs:
            dtype = dtype or self.pick(["f16", "f16", "f32", "bf16"])
            self.inputs[name] = f"input {name}[{', '.join(ranks)}]: {dtype}{domain}"
            if domain:
                self.feat("domain")
        return name

    def fresh(self, base: str) -> str:
        """A tensor name not used yet (nor a rank or shape symbol's)."""
        name, i = base, 1
        while name in self.names or name in self.inputs or name in _RESERVED:
            i += 1
            name = f"{base}{i}"
        self.names.add(name)
        return name

    def emit(self, out: str, expr: str, where: str | None = None, reduce: str | None = None) -> None:
        line = f"{out} = {reduce + ' ' if reduce else ''}{expr}"
        self.body.append(line + (f" where {where}" if where else ""))

    def text(self, family: str, seed: int) -> str:
        """The `.ein` source; some long lines continued with a backslash, some
        with a trailing comment (the printer writes neither: the parser must)."""
        body = []
        for line in self.body:
            if len(line) > 90 and " where " in line and self.chance(0.3):
                head, cond = line.split(" where ", 1)
                line = f"{head} \\\n    where {cond}"
                self.feat("continuation")
            if self.chance(0.06):
                line += "   # " + self.pick(["scores", "normaliser", "value product", "step"])
                self.feat("comment")
            body.append(line)
        title = f"random {family} design, seed {seed}: {', '.join(sorted(self.features - {family}))}"
        parts = [f"# {title}", "# generated by einsum_ir.random_designs", ""]
        parts += ["empty rows = 0"] if self.empty_zero else []
        parts += self.heads + [""] + self.lets + ([""] if self.lets else [])
        parts += list(self.inputs.values()) + [""] + self.decls + ([""] if self.decls else [])
        parts += [f"mask {n} = {b}" for n, b in self.masks.items()] + ([""] if self.masks else [])
        return "\n".join(parts + body) + "\n"


def acc(name: str, *idx) -> str:
    """`NAME[i, j, ...]` from index strings (lists are spliced, empties dropped)."""
    flat: list[str] = []
    for i in idx:
        flat.extend(i if isinstance(i, (list, tuple)) else [i])
    return f"{name}[{', '.join(x for x in flat if x)}]"


def _paren(s: str) -> str:
    return s if s.replace("_", "").isalnum() else f"({s})"


@dataclass
class _Layout:
    """Where keys and queries are: the key position and index, the query's."""
    decode: bool = False
    self_attn: bool = False       # rank M = P: the diagonal exists
    gqa: bool = False
    key: str = "m"                # integer expression of the key position
    prefix: tuple = ("b", "h")    # leading indices of query-side tensors
    vcomp: bool = False           # V has the component rank C (read at c = 0 outside branches)

    @property
    def q(self) -> str:          # query position as a value
        return "(M - 1)" if self.decode else "p"

    @property
    def qi(self) -> list[str]:   # query index of tensors that have one
        return [] if self.decode else ["p"]

    @property
    def qr(self) -> list[str]:
        return [] if self.decode else ["P"]

    @property
    def kv(self) -> str:         # key position as a value
        return _paren(self.key)

    @property
    def kvh(self) -> str:
        return "h / G" if self.gqa else "h"

    def v(self, key: str | None = None) -> str:
        """V at [b, f, key] outside the branches."""
        return acc("V", "b", self.kvh, "0" if self.vcomp else "", "f", key or self.key)


def _setup(ctx: _Ctx, *, decode=None, self_attn=None, gqa=None, partition=False) -> _Layout:
    """Rank statements and shapes of batch, heads, keys and queries."""
    decode = ctx.chance(0.2) if decode is None else decode
    self_attn = (not decode and ctx.chance(0.6)) if self_attn is None else self_attn
    gqa = ctx.chance(0.3) if gqa is None else gqa
    lay = _Layout(decode=decode, self_attn=self_attn, gqa=gqa)
    ctx.sym("B", 1, 2)
    ctx.sym("E", 2, 4)
    ctx.sym("F", 1, 3)
    if gqa:
        g = ctx.rng.randint(2, 3)
        ctx.shapes["G"], ctx.shapes["H"] = g, g * ctx.rng.randint(1, 2)
        ctx.feat("gqa")
    else:
        ctx.sym("H", 1, 3)
    seq = [] if decode else ["P"]
    if self_attn:
        ctx.heads.append(f"rank {', '.join(['B', 'H', 'P', 'E', 'F'])}")
        ctx.heads.append("rank M = P")
        ctx.sym("P", 3, 8)
        ctx.feat("self")
    else:
        ctx.heads.append(f"rank {', '.join(['B', 'H'] + ([] if partition else ['M']) + seq + ['E', 'F'])}")
        ctx.sym("M", 3, 8)
        if not decode:
            ctx.sym("P", 2, 7)
            ctx.feat("cross")
    if partition:
        ctx.heads.append("partition M -> M1, M0")
    if decode:
        ctx.feat("decode")
    if gqa:
        ctx.heads.append("rank KH = H / G")
    return lay


def _qkv(ctx: _Ctx, lay: _Layout, q="Q", k="K", v="V", comp: bool = False, comp_q: bool = True):
    """Declare Q, K, V (optionally with a component rank C)."""
    kh = "KH" if lay.gqa else "H"
    cq = ["C"] if comp and comp_q else []
    ck = ["C"] if comp else []
    ctx.inp(q, ["B", "H"] + cq + ["E"] + lay.qr)
    ctx.inp(k, ["B", kh] + ck + ["E", "M"])
    if v:
        ctx.inp(v, ["B", kh, "F", "M"])


# ------------------------------------------------------------------ predicates

@dataclass(frozen=True)
class _Atom:
    text: str                     # with {k} (key position) and {q} (query position)
    test: Callable                # (k, q, shapes) -> bool, for the empty-row check
    keeps_diag: bool              # keeps the point k == q (the newest key in decode)
    features: tuple
    where: str                    # layouts: s(elf), c(ross), d(ecode)
    symbols: tuple = ()
    inputs: tuple = ()            # (name, ranks, dtype) of the tensors it reads


_ATOMS = (
    _Atom("{k} <= {q}", lambda k, q, s: k <= q, True, ("causal",), "sc"),
    _Atom("{k} < {q}", lambda k, q, s: k < q, False, ("causal",), "sc"),
    _Atom("not ({k} > {q})", lambda k, q, s: not k > q, True, ("causal", "not"), "sc"),
    _Atom("abs({q} - {k}) <= W", lambda k, q, s: abs(q - k) <= s["W"], True, ("window", "abs"), "scd", ("W",)),
    _Atom("{q} - {k} < W", lambda k, q, s: q - k < s["W"], True, ("window",), "scd", ("W",)),
    _Atom("{q} - {k} > W", lambda k, q, s: q - k > s["W"], False, ("window",), "scd", ("W",)),
    _Atom("({q} - {k}) % 2 == 0", lambda k, q, s: (q - k) % 2 == 0, True, ("dilation",), "scd"),
    _Atom("{k} != {q}", lambda k, q, s: k != q, False, ("not-equal",), "sc"),
    _Atom("({q} - {k}) % DL == 0", lambda k, q, s: (q - k) % s["DL"] == 0, True, ("dilation",), "scd", ("DL",)),
    _Atom("{k} % DL == {q} % DL", lambda k, q, s: k % s["DL"] == q % s["DL"], True, ("modulo",), "scd", ("DL",)),
    _Atom("{k} % DL == 0", lambda k, q, s: k % s["DL"] == 0, False, ("modulo",), "scd", ("DL",)),
    _Atom("{k} / BS <= {q} / BS", lambda k, q, s: k / s["BS"] <= q / s["BS"], True, ("block",), "sc", ("BS",)),
    _Atom("{k} // BS <= {q} // BS", lambda k, q, s: k // s["BS"] <= q // s["BS"], True, ("block",), "sc", ("BS",)),
    _Atom("({k} // BS) == ({q} // BS)", lambda k, q, s: k // s["BS"] == q // s["BS"], True, ("block",), "scd",
          ("BS",)),
    _Atom("{k} < NS", lambda k, q, s: k < s["NS"], False, ("sink",), "scd", ("NS",)),
    _Atom("MASK", lambda k, q, s: True, False, ("mask-tensor",), "scd"),
)
_DOC = ("DOC", ("M",), "i32")
_NEW_ATOMS = (   # the third stream's atoms: bitwise operators, a condition as a value, gathers, a literal extent
    _Atom("({k} & 1) == ({q} & 1)", lambda k, q, s: (k & 1) == (q & 1), True, ("bitwise",), "scd"),
    _Atom("xor({k}, {q}) < 4", lambda k, q, s: (k ^ q) < 4, True, ("bitwise",), "scd"),
    _Atom("{k} >> 1 <= {q} >> 1", lambda k, q, s: k >> 1 <= q >> 1, True, ("bitwise",), "scd"),
    _Atom("({k} | 1) >= {q}", lambda k, q, s: (k | 1) >= q, True, ("bitwise",), "scd"),
    _Atom("({k} < NS) == ({q} < NS)", lambda k, q, s: (k < s["NS"]) == (q < s["NS"]), True, ("cond-value",),
          "scd", ("NS",)),
    _Atom("DOC[{k}] == DOC[{q}]", lambda k, q, s: True, True, ("doc-mask",), "sd", (), (_DOC,)),
    _Atom("{k} >= OFF[DOC[{q}]]", lambda k, q, s: True, False, ("gather",), "sd", ("ND",),
          (_DOC, ("OFF", ("ND",), "i32"))),
    _Atom("{q} - {k} <= SPAN[b, 0] + SPAN[b, 1]", lambda k, q, s: True, True, ("literal-extent",), "scd", (),
          (("SPAN", ("B", "2"), "i32"),)),
)
_RESERVED = {"B", "H", "M", "P", "E", "F", "C", "D", "G", "J", "KH", "RL", "M0", "M1",
             "W", "DL", "BS", "NS", "CAP", "ND", "H2", "DOC", "OFF", "SPAN", "DB", "SB", "PRE", "KG", "QG"}
_SYMBOL_RANGES = {"W": (1, 3), "DL": (2, 3), "BS": (2, 3), "NS": (1, 2), "ND": (2, 4)}
_MASK_NAMES = ("vis", "live", "seen", "kept")


@dataclass
class _Pred:
    """A predicate over (key, query) positions, renderable at any key expression."""
    atoms: list
    ops: list                    # "and" / "or" between consecutive atoms
    mask: str | None = None      # the mask tensor's name, if an atom is one
    mask_bh: bool = False        # the mask has batch and head ranks
    let: str | None = None       # the name of its `let`, if written as one
    named: str | None = None     # the name of its `mask`, if written as one

    def body(self, k: str, q: str, lay: _Layout, extra: str = "") -> str:
        out = ""
        for i, a in enumerate(self.atoms):
            t = self._atom(a, k, q, lay)
            if i == 0:
                out = t
            else:
                op = self.ops[i - 1]
                left = f"({out})" if (" or " in out or " and " in out) and op == "and" else out
                out = f"{left} {op} {t}"           # no atom has an `or` of its own
        return out + extra

    def _atom(self, a: _Atom, k, q, lay) -> str:
        if a.text == "MASK":
            return acc(self.mask, list(lay.prefix) if self.mask_bh else [], k, lay.qi)
        return a.text.format(k=k, q=q)

    def render(self, lay: _Layout) -> str:
        """The condition at the layout's key position."""
        if self.named:
            return self.named
        if self.let:
            args = [lay.q] if not lay.decode else []
            return f"{self.let}({', '.join(args + [lay.key])})"
        return self.body(lay.kv, lay.q, lay)

    @property
    def keeps_diag(self) -> bool:
        """True when every row keeps its diagonal point (so no row is empty)."""
        keep = self.atoms[0].keeps_diag
        for op, a in zip(self.ops, self.atoms[1:]):
            keep = (keep and a.keeps_diag) if op == "and" else (keep or a.keeps_diag)
        return keep

    def test(self, k, q, shapes) -> bool:
        val = self.atoms[0].test(k, q, shapes)
        for op, a in zip(self.ops, self.atoms[1:]):
            val = (val and a.test(k, q, shapes)) if op == "and" else (val or a.test(k, q, shapes))
        return val


def _predicate(ctx: _Ctx, lay: _Layout, n: int | None = None, allow_let: bool = True) -> _Pred:
    """A random predicate of 1..3 atoms joined by and/or; registers features,
    symbols and the mask input."""
    code = "d" if lay.decode else ("s" if lay.self_attn else "c")
    pool = [a for a in _ATOMS if code in a.where]
    n = n or ctx.pick([1, 1, 1, 2, 2, 3])
    atoms = [ctx.pick(pool) for _ in range(n)]
    ops = [ctx.pick(["and", "and", "or"]) for _ in range(n - 1)]
    pred = _Pred(atoms, ops)
    pred.mask_bh = ctx.once("MK", lambda: ctx.chance(0.5))
    for a in atoms:
        ctx.feat(*a.features)
        for s in a.symbols:
            ctx.sym(s, *_SYMBOL_RANGES[s])
        if a.text == "MASK" and pred.mask is None:
            pred.mask = "MK"
            ctx.inp("MK", (["B", "H"] if pred.mask_bh else []) + ["M"] + lay.qr, "bool")
            ctx.shapes["density_MK"] = 0.5   # for the analyses: random_inputs flips fair coins
    ctx.feat(*({"and": "intersection", "or": "union"}[o] for o in ops))
    if ctx.new(0.3):
        _new_atom(ctx, pred, code)
    if allow_let and pred.mask is None and ctx.chance(0.35):
        pred.let = ctx.pick(["keep", "visible", "near", "allowed"])
        params = ["k"] if lay.decode else ["q", "k"]
        q = "(M - 1)" if lay.decode else "q"
        ctx.lets.append(f"let {pred.let}({', '.join(params)}) = {pred.body('k', q, lay)}")
        ctx.feat("let")
    elif len(ctx.masks) < len(_MASK_NAMES) and ctx.new(0.35):
        pred.named = next(n for n in _MASK_NAMES if n not in ctx.masks)
        ctx.masks[pred.named] = pred.body(lay.kv, lay.q, lay)
        ctx.feat("named-mask")
    if _has_empty_row(pred, lay, ctx.shapes):
        ctx.feat("empty-rows")
    return pred


def _new_atom(ctx: _Ctx, pred: _Pred, code: str) -> None:
    """One more atom, from the third stream: a bitwise test, a comparison of
    conditions, a document mask or offset read through a gather, or a
    per-sequence span read from a tensor with a literal extent."""
    a = ctx.lang.choice([a for a in _NEW_ATOMS if code in a.where])
    op = ctx.lang.choice(["and", "and", "or"])
    pred.atoms.append(a)
    pred.ops.append(op)
    ctx.feat(*a.features, {"and": "intersection", "or": "union"}[op])
    for s in a.symbols:
        _new_sym(ctx, s)
    for name, ranks, dtype in a.inputs:
        ctx.inp(name, ranks, dtype)


def _new_sym(ctx: _Ctx, name: str) -> None:
    """A shape symbol's value from the third stream (once)."""
    if name not in ctx.shapes:
        ctx.shapes[name] = ctx.lang.randint(*_SYMBOL_RANGES[name])


def _unmask(ctx: _Ctx, where: str | None) -> str | None:
    """`where` with its named masks written out: for an Einsum that does not
    write the masks' coordinates as indices (a count `CNT[b, h, p] = 1`),
    where a mask may not be used by name."""
    import re
    for name, body in ctx.masks.items():
        where = where and re.sub(rf"\b{name}\b", f"({body})", where)
    return where


def _has_empty_row(pred: _Pred, lay: _Layout, shapes: dict) -> bool:
    """Whether some query keeps no key at these shapes, whatever the mask holds."""
    m = shapes.get("M", shapes.get("P"))
    queries = [m - 1] if lay.decode else range(shapes["P"])
    return any(not any(pred.test(k, q, shapes) for k in range(m)) for q in queries)


def _guarded(pred: _Pred | None, lay: _Layout) -> bool:
    """Whether a row may have no key at some shapes (then divisions are guarded)."""
    if pred is None:
        return False
    return not (pred.keeps_diag and (lay.self_attn or lay.decode))


# ------------------------------------------------------------------ score maps

def _atomic(x: str) -> bool:
    """Whether x is one name, number, access or call (needs no parentheses)."""
    if x.replace("_", "").replace(".", "").isalnum():
        return True
    i = 0
    while i < len(x) and (x[i].isalnum() or x[i] == "_"):
        i += 1
    if i == 0 or i == len(x) or x[i] not in "([":
        return x.startswith("(") and _closes_at_end(x, 0)
    return _closes_at_end(x, i)


def _closes_at_end(x: str, start: int) -> bool:
    depth = 0
    for j in range(start, len(x)):
        depth += x[j] in "([" and 1 or (x[j] in ")]" and -1 or 0)
        if depth == 0:
            return j == len(x) - 1
    return False


def _p(x: str) -> str:
    return x if _atomic(x) else f"({x})"


def _t_scale(ctx, lay, x, b):
    form = ctx.pick(["mul", "div", "sqrt"])
    if form == "sqrt":
        ctx.feat("div", "sqrt", "shape-symbol")
        return f"{_p(x)} / sqrt(E)", b
    c = ctx.pick([0.5, 0.125, 0.25, 2])
    ctx.feat(form)
    return (f"{_p(x)} * {c}", b * c) if form == "mul" else (f"{_p(x)} / {c}", b / c)


def _t_softcap(ctx, lay, x, b):
    ctx.sym("CAP", 3, 8)
    ctx.feat("tanh", "div", "mul", "shape-symbol")
    return f"CAP * tanh({x} / CAP)", 8.0


def _t_clip(ctx, lay, x, b):
    c = ctx.pick([2, 4, 8])
    if ctx.chance(0.3):
        ctx.feat("max", "min")
        return f"min(max({x}, -{c}), {c})", float(c)
    ctx.feat("clip")
    return f"clip({x}, -{c}, {c})", float(c)


def _domain(ctx: _Ctx, name: str) -> str | None:
    """The domain an input is declared with ('' for none), None if undeclared."""
    decl = ctx.inputs.get(name)
    if decl is None:
        return None
    rest = decl.split(": ", 1)[1].partition(" ")[2]
    return f" {rest}" if rest else ""


def _t_slope(ctx, lay, x, b):
    absolute = ctx.chance(0.5)
    dom = _domain(ctx, "SL")
    if dom is None and ctx.new(0.4):
        dom = ctx.lang.choice([" in (0, 1)", " > 0"])
    if dom:
        ctx.inp("SL", ["H"], "f32", dom)     # a positive slope (ALiBi's), declared so
        ctx.feat("per-head", "coord", "mul", "sub", "abs")
        return f"{_p(x)} - SL[h] * abs({lay.q} - {lay.kv})", b + (1 if "in" in dom else 150) * 40
    ctx.inp("SL", ["H"], "f32")
    ctx.feat("per-head", "coord", "mul")
    if absolute:
        ctx.feat("sub", "abs")
        return f"{_p(x)} - SL[h] * abs({lay.q} - {lay.kv})", b + XB * 10
    ctx.feat("add", "sub")
    return f"{_p(x)} + SL[h] * ({lay.kv} - {lay.q})", b + XB * 10


def _t_bias(ctx, lay, x, b):
    per_head = ctx.once("BIAS", lambda: ctx.chance(0.5))
    ctx.inp("BIAS", (["H"] if per_head else []) + ["M"] + lay.qr)
    ctx.feat("per-pair", "add")
    return f"{_p(x)} + {acc('BIAS', 'h' if per_head else '', lay.key, lay.qi)}", b + XB


def _t_query(ctx, lay, x, b):
    ctx.inp("TQ", ["B", "H"] + lay.qr)
    ctx.feat("per-query", "sigmoid", "mul")
    return f"{_p(x)} * sigmoid({acc('TQ', 'b', 'h', lay.qi)})", b


def _t_key(ctx, lay, x, b):
    ctx.inp("KB", ["B", "H", "M"])
    ctx.feat("per-key", "add")
    return f"{_p(x)} + KB[b, h, {lay.key}]", b + XB


def _t_gate(ctx, lay, x, b):
    """A per-head, per-query log-gate GT[h, p] (log of a sigmoid: safe at |GT| <= XB)."""
    ctx.inp("GT", ["H"] + lay.qr)
    ctx.feat("per-query", "per-head", "log", "sigmoid", "add")
    return f"{_p(x)} + log(sigmoid({acc('GT', 'h', lay.qi)}))", b + XB + 1


def _t_relative(ctx, lay, x, b):
    if lay.decode:
        return None
    if "rank RL = M + P - 1" not in ctx.heads:
        ctx.heads.append("rank RL = M + P - 1")
    ctx.inp("RT", ["H", "RL"])
    ctx.feat("relative", "add")
    return f"{_p(x)} + RT[h, {lay.q} - {lay.kv} + M - 1]", b + XB


def _t_absmax(ctx, lay, x, b):
    form = ctx.pick(["abs", "max", "min", "leaky"])
    if form == "abs":
        ctx.feat("abs")
        return f"abs({x})", b
    c = ctx.pick([1, 2, 4])
    if form == "leaky":
        ctx.feat("max", "mul")
        return f"max({x}, 0.25 * {_p(x)})", b
    ctx.feat(form)
    return (f"max({x}, -{c})", b) if form == "max" else (f"min({x}, {c})", b)


def _t_sigmoid(ctx, lay, x, b):
    c = ctx.pick([2, 4, 8])
    ctx.feat("sigmoid", "mul")
    return f"{c} * sigmoid({x})", float(c)


def _t_log(ctx, lay, x, b):
    forms = ["abs1"] + (["softplus"] if b < 500 else []) + (["logsig"] if b < 30 else [])
    form = ctx.pick(forms)
    if form == "softplus":
        ctx.feat("log", "exp", "add")
        return f"log(1 + exp({x}))", b + 1
    if form == "logsig":
        ctx.feat("log", "sigmoid")
        return f"log(sigmoid({x}))", b + 1
    fn = ctx.pick(["log", "log2"])
    ctx.feat("abs", "add", fn)
    return f"{fn}(abs({x}) + 1)", b


def _t_sqrt(ctx, lay, x, b):
    ctx.feat("sqrt", "add")
    if ctx.chance(0.5):
        ctx.feat("abs")
        return f"sqrt(abs({x}) + 1)", (b + 1) ** 0.5
    ctx.feat("mul")
    return f"sqrt({_p(x)} * {_p(x)} + 1)", b + 1


def _t_exp(ctx, lay, x, b):
    if b <= EXP_SAFE and ctx.chance(0.5):
        ctx.feat("exp2", "div")
        return f"exp2({_p(x)} / 4)", 2.0 ** (b / 4)
    ctx.feat("exp")
    if b <= EXP_SAFE:
        ctx.feat("div")
        return f"exp({_p(x)} / 4)", 2.72 ** (b / 4)
    ctx.feat("tanh")
    return f"exp(tanh({x}))", 2.72


def _t_select(ctx, lay, x, b):
    ctx.feat("select")
    form = ctx.pick(["leaky", "window", "parity"])
    if form == "leaky":
        return f"select({x} > 0, {x}, 0.5 * {_p(x)})", b
    if form == "parity":
        ctx.feat("coord", "modulo", "sub")
        return f"select(({lay.q} - {lay.kv}) % 2 == 0, {x}, {_p(x)} - 1)", b + 1
    ctx.sym("W", 1, 3)
    ctx.feat("coord", "sub")
    return f"select({lay.q} - {lay.kv} > W, {_p(x)} - 1, {x})", b + 1


def _t_floor(ctx, lay, x, b):
    """A quantised score: x rounded down to a quarter."""
    ctx.feat("floor", "div", "mul")
    return f"floor({_p(x)} * 4) / 4", b + 1


def _t_coord(ctx, lay, x, b):
    ctx.feat("coord", "shape-symbol", "div", "sub")
    return f"{_p(x)} - ({lay.q} - {lay.kv}) / M", b + 10


def _t_divsafe(ctx, lay, x, b):
    ctx.feat("div", "abs", "add")
    return f"{_p(x)} / (1 + 0.1 * abs({x}))", 10.0


def _t_new_op(ctx, lay, x, b):
    """One of the operators added for issues 18 and 22, drawn from the
    design's second stream (`ctx.extra`) so that the first stream, and so
    every design that draws none, is what it was before they existed."""
    r, k, q = ctx.extra, lay.kv, lay.q
    form = r.choice(["sin", "cos", "tan", "erf", "softplus", "logsigmoid", "log1p", "expm1", "pow", "bits",
                     "cond"])
    if form == "sin":
        ctx.feat("sin", "add", "mul")
        return f"{_p(x)} + 0.5 * sin({x})", b + 0.5
    if form == "cos":
        ctx.feat("cos", "coord", "add", "mul")
        return f"{_p(x)} + 0.25 * cos({q} - {k})", b + 0.25
    if form == "tan":
        ctx.feat("tan", "div")
        return f"tan({_p(x)} / {float(b) + 1.0!r})", 1.6
    if form == "erf":
        ctx.feat("erf", "mul", "add")
        return f"0.5 * {_p(x)} * (1 + erf({_p(x)} / 1.4142135623730951))", b
    if form in ("softplus", "logsigmoid"):
        ctx.feat(form)
        return f"{form}({x})", b + 0.7
    if form == "log1p":
        ctx.feat("log1p", "abs")
        return f"log1p(abs({x}))", b
    if form == "expm1":
        ctx.feat("expm1", "div")
        return f"expm1({_p(x)} / {float(b) + 1.0!r})", 1.8
    if form == "pow":
        e, scaled = r.choice(["2", "3", "1.5"]), f"{_p(x)} / {float(b) + 1.0!r}"
        ctx.feat("pow", "div", *(["abs"] if e == "1.5" else []))
        return (f"abs({scaled}) ^ 1.5" if e == "1.5" else f"({scaled}) ^ {e}"), 1.0
    if form == "bits":
        ctx.feat("bitwise", "add", "mul")
        bit = r.choice([f"({k} & 3) == ({q} & 3)", f"xor({k}, {q}) >> 1 & 1", f"({k} | 1) << 1 > {q}"])
        return f"{_p(x)} + 0.25 * ({bit})", b + 0.5
    ctx.feat("cond-value", "mul")
    return f"{_p(x)} * ({k} <= {q})", b


def _t_scan(ctx, lay, x, b):
    """A running sum (or product) over the keys or the queries as a score
    term: prefix or suffix, inclusive or exclusive, each element in [-XB, XB]
    (a sum divided by the length; a log of a product of factors in (0.5, 1))."""
    r = ctx.lang
    v, rank = ("p", "P") if not lay.decode and r.random() < 0.3 else ("m", "M")
    flags = r.choice(["", ", exclusive", ", reverse", ", reverse, exclusive"])
    g = ctx.inp("KG" if v == "m" else "QG", ["B", "H", rank], "f32")
    out = ctx.fresh("CK")
    at = lay.key if v == "m" else "p"
    ctx.feat("scan", *(["suffix-scan"] if "reverse" in flags else []), *(["exclusive-scan"] if "excl" in flags else []))
    if r.random() < 0.3:
        ctx.emit(f"{out}[b, h, {v}]", f"1 - 0.5 * sigmoid({g}[b, h, {v}])", reduce=f"cumprod[{v}{flags}]")
        ctx.feat("cumprod", "log", "sigmoid")
        return f"{_p(x)} + log({out}[b, h, {at}]) / {rank}", b + 1
    ctx.emit(f"{out}[b, h, {v}]", f"{g}[b, h, {v}] / {rank}", reduce=f"cumsum[{v}{flags}]")
    ctx.feat("add", "div", "shape-symbol")
    return f"{_p(x)} + {out}[b, h, {at}]", b + XB


def _t_doc_bias(ctx, lay, x, b):
    """A per-head bias of the key's document, read through its id (a gather)."""
    _new_sym(ctx, "ND")
    ctx.inp("DOC", ["M"], "i32")
    ctx.inp("DB", ["H", "ND"], "f32")
    ctx.feat("gather", "add", "per-head")
    return f"{_p(x)} + DB[h, DOC[{lay.key}]]", b + XB


def _t_affine(ctx, lay, x, b):
    """A per-head affine map of the score from a tensor with a literal extent."""
    ctx.inp("SB", ["H", "2"], "f32")
    ctx.feat("literal-extent", "per-head", "mul", "add")
    return f"{_p(x)} * SB[h, 0] + SB[h, 1]", b * XB + XB


_NEW_TRANSFORMS = (_t_scan, _t_scan, _t_doc_bias, _t_affine)


_TRANSFORMS = (_t_scale, _t_softcap, _t_clip, _t_slope, _t_bias, _t_query, _t_key, _t_gate, _t_relative,
               _t_absmax, _t_sigmoid, _t_log, _t_sqrt, _t_exp, _t_select, _t_coord, _t_divsafe, _t_floor)
_CAPS = (_t_softcap, _t_clip, _t_sigmoid, _t_divsafe)


def _score_map(ctx: _Ctx, lay: _Layout, x: str, b: float, depth: int | None = None,
               cap: float | None = None) -> tuple[str, float]:
    """Apply 0..3 random transforms to the score x (|x| <= b); with `cap`, end
    bounded by it (for exp without a subtracted max)."""
    depth = ctx.pick([0, 1, 1, 2, 2, 3]) if depth is None else depth
    for _ in range(depth):
        while True:
            r = ctx.pick(_TRANSFORMS)(ctx, lay, x, b)
            if r is not None:
                x, b = r
                break
    if ctx.extra is not None and ctx.extra.random() < 0.3:
        x, b = _t_new_op(ctx, lay, x, b)
    if ctx.new(0.2):
        x, b = ctx.lang.choice(_NEW_TRANSFORMS)(ctx, lay, x, b)
    if cap is not None and b > cap:
        x, b = ctx.pick(_CAPS)(ctx, lay, x, b)
    return x, b


def _score_bound(ctx: _Ctx) -> float:
    return ctx.shapes["E"] * XB * XB


# ------------------------------------------------------------------ softmax branches

@dataclass
class _Branch:
    """What a score branch leaves for the epilogue (accesses at [pre, f, q])."""
    num: str | None = None        # un-normalised numerator (deferred forms)
    den: str | None = None        # its denominator
    out: str | None = None        # an already normalised output
    gm: str | None = None         # the row max (stable forms)
    score: str | None = None      # the score at [pre, m, q], where the predicate holds
    bound: float = 0.0


def _ratio(ctx: _Ctx, num: str, den: str, guard: bool) -> str:
    """num / den; guarded where den may be 0 (a row with no key)."""
    if not guard:
        return f"{num} / {_p(den)}"
    select = ctx.chance(0.5)      # drawn first: the third stream's choice leaves the rest of the design as it was
    if ctx.new(0.3):      # a row with no key is 0 / 0: the design says it is 0
        ctx.empty_zero = True
        ctx.feat("empty-rows-zero")
        return f"{num} / {_p(den)}"
    ctx.feat("guard")
    if select:
        ctx.feat("select")
        return f"select({den} > 0, {num} / max({den}, {TINY}), 0)"
    return f"{num} / max({den}, {TINY})"


def _branch(ctx: _Ctx, lay: _Layout, where: str | None, tag: str = "", form: str | None = None,
            q="Q", k="K", v="V", comp=False, comp_q=True, vcomp=False, comp_scale=False,
            inf_mask=False) -> _Branch:
    """One softmax-like branch: score contraction, score map, (max), exp, sum, value product.
    With `inf_mask` (only where no row can be empty), the scores are written as a
    `max[]` map (-inf where the predicate fails) and nothing after them is predicated."""
    form = form or ctx.pick(["3pass", "naive", "deferred", "deferred", "fused"])
    ctx.feat(form)
    pre = ["b", "h"] + (["c"] if comp else [])
    qpre = ["b", "h"] + (["c"] if comp and comp_q else [])
    kpre = ["b", lay.kvh] + (["c"] if comp else [])
    vpre = ["b", lay.kvh] + (["c"] if vcomp else [])
    qk = ctx.fresh("QK" + tag)
    red = "sum[e]" if ctx.chance(0.2) else None
    if red:
        ctx.feat("explicit-reduce")
    ctx.emit(acc(qk, pre, "m", lay.qi), f"{acc(q, qpre, 'e', lay.qi)} * {acc(k, kpre, 'e', lay.key)}",
             where if ctx.chance(0.5) else None, red)
    base, bound = acc(qk, pre, "m", lay.qi), _score_bound(ctx)
    if not comp and ctx.new(0.12):
        base, bound = _mix_heads(ctx, lay, base), bound * XB * ctx.shapes["H"]
    s, b = _score_map(ctx, lay, base, bound, cap=EXP_SAFE if form == "naive" else None)
    if comp_scale:   # a per-component temperature
        ctx.inp("SC", ["C"], "f32")
        ctx.feat("per-component", "tanh", "mul")
        s, b = f"{_p(s)} * (1 + 0.5 * tanh(SC[c]))", b * 1.5
    if inf_mask and where and form != "naive":
        sn = ctx.fresh("S" + tag)
        ctx.emit(acc(sn, pre, "m", lay.qi), s, where, "max[]")
        s, where = acc(sn, pre, "m", lay.qi), None
        ctx.feat("neg-inf-mask")
    elif s != base and ctx.chance(0.8):
        sn = ctx.fresh("S" + tag)
        ctx.emit(acc(sn, pre, "m", lay.qi), s, where)
        s = acc(sn, pre, "m", lay.qi)
    br = _Branch(score=s, bound=b)
    SN, SD = ctx.fresh("SN" + tag), ctx.fresh("SD" + tag)
    if form == "naive":
        ctx.emit(acc(SN, pre, "m", lay.qi), f"exp({s})", where)
    else:
        br.gm = acc(ctx.fresh("GM" + tag), pre, lay.qi)
        ctx.emit(br.gm, s, where, "max[m]")
        ctx.emit(acc(SN, pre, "m", lay.qi), f"exp({s} - {br.gm})", where)
    sn, sd = acc(SN, pre, "m", lay.qi), acc(SD, pre, lay.qi)
    ctx.emit(sd, sn, where, "sum[m]" if ctx.chance(0.2) else None)
    vm = acc(v, vpre, "f", lay.key)
    if form == "3pass":
        a = acc(ctx.fresh("A" + tag), pre, "m", lay.qi)
        ctx.emit(a, f"{sn} / {sd}", where)
        br.out = acc(ctx.fresh("AV" + tag), pre, "f", lay.qi)
        ctx.emit(br.out, f"{a} * {vm}", where)
    elif form == "fused":
        br.out = acc(ctx.fresh("AV" + tag), pre, "f", lay.qi)
        ctx.emit(br.out, f"{sn} * {vm} / {sd}", where)
    else:
        br.num, br.den = acc(ctx.fresh("SNV" + tag), pre, "f", lay.qi), sd
        ctx.emit(br.num, f"{sn} * {vm}", where)
    return br


def _mix_heads(ctx: _Ctx, lay: _Layout, qk: str) -> str:
    """Talking heads: each head's logits a mix of every head's, through a
    matrix over a repeated rank (`PRE[H, H]`, read as `PRE[h2, h]`)."""
    ctx.inp("PRE", ["H", "H"], "f32")
    mixed = acc(ctx.fresh("L"), "b", "h", "m", lay.qi)
    ctx.emit(mixed, f"PRE[h2, h] * {qk.replace('[b, h,', '[b, h2,', 1)}")
    ctx.feat("repeated-rank", "mul")
    return mixed


def _branch_value(ctx: _Ctx, br: _Branch, guard: bool, sink: bool = False) -> str:
    """The branch's normalised output as an expression."""
    if br.out:
        return br.out
    den = br.den
    if sink and br.gm and br.bound < 300:
        ctx.inp("SINK", ["H"], "f32")
        ctx.feat("sink-logit", "exp")
        den = f"{br.den} + exp(SINK[h] - {br.gm})"
    return _ratio(ctx, br.num, den, guard)


# ------------------------------------------------------------------ epilogues

def _epilogue(ctx: _Ctx, lay: _Layout, value: str, where: str | None, br: _Branch | None = None,
              guard: bool = False) -> str:
    """Write the output from `value` (at [b, h, f, q]), randomly gated, scaled
    per head, with a residual, a second reduction or a second output."""
    o = ["b", "h", "f"] + lay.qi
    if ctx.chance(0.3):
        value = f"{_p(value)} * sigmoid({_gate(ctx, lay)})"
        ctx.feat("gate", "sigmoid", "mul")
    if ctx.chance(0.15):
        ctx.inp("WO", ["H"], "f32")
        value = f"{_p(value)} * WO[h]"
        ctx.feat("head-scale", "per-head", "mul")
    if ctx.chance(0.2):
        value = f"{value} + {_second_reduction(ctx, lay, where)}"
        ctx.feat("multi-reduction", "add")
    if br is not None and br.gm and br.score and ctx.chance(0.15):
        mn = acc(ctx.fresh("MN"), "b", "h", lay.qi)
        ctx.emit(mn, br.score, where, "min[m]")
        value = f"{_p(value)} * (1 + 0.1 * tanh({br.gm} - {mn}))"
        ctx.feat("min-reduce", "multi-reduction", "tanh", "mul")
    if ctx.chance(0.2):
        if lay.self_attn and not ctx.chance(0.3):
            res = lay.v("p")
        else:
            res = acc(ctx.inp("RES", ["B", "H", "F"] + lay.qr), "b", "h", "f", lay.qi)
        value = f"{value} + {res}"
        ctx.feat("residual", "add")
    out = ctx.fresh("AV" if "AV" not in ctx.names else "O")
    if ctx.chance(0.25):
        ctx.decls.append(f"output {out}[{', '.join(['B', 'H', 'F'] + lay.qr)}]: f32")
        ctx.feat("decl")
    ctx.emit(acc(out, o), value)
    if br is not None and br.gm and br.den and ctx.chance(0.15):
        _lse(ctx, lay, br, guard)
    return out


def _gate(ctx: _Ctx, lay: _Layout) -> str:
    """An output gate: an input, or a projection X W_g of the layer input."""
    if ctx.chance(0.5) or lay.decode:
        return acc(ctx.inp("GA", ["B", "H", "F"] + lay.qr), "b", "h", "f", lay.qi)
    ctx.sym("D", 2, 3)
    ctx.inp("X", ["B", "D", "P"])
    ctx.inp("WG", ["H", "F", "D"])
    g = acc(ctx.fresh("GP"), "b", "h", "f", "p")
    ctx.emit(g, "X[b, d, p] * WG[h, f, d]")
    ctx.feat("projection")
    return g


def _second_reduction(ctx: _Ctx, lay: _Layout, where: str | None) -> str:
    """The mean of the visible values (a second reduction over the keys)."""
    vs = acc(ctx.fresh("VS"), "b", "h", "f", lay.qi)
    ctx.emit(vs, lay.v(), where)
    if where is None:
        ctx.feat("shape-symbol", "div")
        return f"0.5 * {vs} / M"
    cnt = acc(ctx.fresh("CNT"), "b", "h", lay.qi)
    ctx.emit(cnt, "1", _unmask(ctx, where))
    ctx.feat("max", "div", "count")
    return f"0.5 * {vs} / max({cnt}, 1)"


def _lse(ctx: _Ctx, lay: _Layout, br: _Branch, guard: bool) -> None:
    """A second output: the log-sum-exp of the scores."""
    lse = acc(ctx.fresh("LSE"), "b", "h", lay.qi)
    ctx.feat("lse", "log")
    if guard:
        ctx.emit(lse, f"select({br.den} > 0, {br.gm} + log(max({br.den}, {TINY})), 0)")
        ctx.feat("select", "guard")
    else:
        ctx.emit(lse, f"{br.gm} + log({br.den})")


# ------------------------------------------------------------------ families

def _softmax(ctx: _Ctx) -> None:
    """Unpartitioned softmax attention as a user writes it."""
    lay = _setup(ctx)
    _qkv(ctx, lay)
    pred = _predicate(ctx, lay) if ctx.chance(0.7) else None
    where = pred.render(lay) if pred else None
    guard = _guarded(pred, lay)
    br = _branch(ctx, lay, where, inf_mask=not guard and ctx.chance(0.25))
    value = _branch_value(ctx, br, guard, sink=ctx.chance(0.4))
    _epilogue(ctx, lay, value, where, br, guard)


def _two_branch(ctx: _Ctx) -> None:
    """Differential attention: two or three softmax branches over the same keys,
    each with its own max and sum, combined in the epilogue."""
    lay = _setup(ctx)
    n = ctx.pick([2, 3])
    ctx.feat("two-branches" if n == 2 else "three-branches")
    shared = ctx.chance(0.5)
    preds = [_predicate(ctx, lay) if ctx.chance(0.7) else None] * n if shared else \
        [_predicate(ctx, lay, allow_let=False) if ctx.chance(0.7) else None for _ in range(n)]
    if not shared and len({id(p) for p in preds}) > 1:
        ctx.feat("mixed-predicates")
    _qkv(ctx, lay, "Q1", "K1")
    if ctx.chance(0.3) and all(p is preds[0] for p in preds):
        return _two_branch_weights(ctx, lay, n, preds[0])
    values = []
    for i in range(n):
        _qkv(ctx, lay, f"Q{i + 1}", f"K{i + 1}")
        where = preds[i].render(lay) if preds[i] else None
        if i == n - 1 and n == 3 and ctx.chance(0.5):
            values.append(_sigmoid_branch(ctx, lay, where, i + 1))
            continue
        form = ctx.pick(["deferred", "deferred", "fused", "3pass", "naive"])
        br = _branch(ctx, lay, where, tag=str(i + 1), form=form, q=f"Q{i + 1}", k=f"K{i + 1}",
                     inf_mask=not _guarded(preds[i], lay) and ctx.chance(0.2))
        values.append(_branch_value(ctx, br, _guarded(preds[i], lay), sink=ctx.chance(0.1)))
    lam = [_lambda(ctx, i) for i in range(1, n)]
    value = values[0] + "".join(f" - {_p(lam[i - 1])} * {_p(values[i])}" for i in range(1, n))
    if ctx.chance(0.3):
        value = f"{_p(value)} * (1 - 0.8)"
        ctx.feat("mul", "sub")
    where = preds[0].render(lay) if preds[0] else None
    _epilogue(ctx, lay, value, where)


def _two_branch_weights(ctx: _Ctx, lay: _Layout, n: int, pred: _Pred | None) -> None:
    """Differential attention combined on the weights (A = A1 - lam A2) before V."""
    where = pred.render(lay) if pred else None
    guard = _guarded(pred, lay)
    weights = []
    for i in range(n):
        _qkv(ctx, lay, f"Q{i + 1}", f"K{i + 1}", v=None)
        br = _branch_scores(ctx, lay, where, str(i + 1), f"Q{i + 1}", f"K{i + 1}")
        weights.append(_ratio(ctx, br.num, br.den, guard))
    lam = [_lambda(ctx, i) for i in range(1, n)]
    w = acc(ctx.fresh("WD"), "b", "h", "m", lay.qi)
    ctx.emit(w, weights[0] + "".join(f" - {_p(lam[i - 1])} * {_p(weights[i])}" for i in range(1, n)), where)
    av = acc(ctx.fresh("AVD"), "b", "h", "f", lay.qi)
    ctx.emit(av, f"{w} * {acc('V', 'b', lay.kvh, 'f', lay.key)}", where)
    ctx.feat("weight-combine")
    _epilogue(ctx, lay, av, where)


def _branch_scores(ctx: _Ctx, lay: _Layout, where, tag, q, k) -> _Branch:
    """Scores and their stable exps only: num = SN[b, h, m, q], den = SD."""
    qk = acc(ctx.fresh("QK" + tag), "b", "h", "m", lay.qi)
    ctx.emit(qk, f"{acc(q, 'b', 'h', 'e', lay.qi)} * {acc(k, 'b', lay.kvh, 'e', lay.key)}")
    s, b = _score_map(ctx, lay, qk, _score_bound(ctx), depth=ctx.pick([0, 1]))
    gm = acc(ctx.fresh("GM" + tag), "b", "h", lay.qi)
    ctx.emit(gm, s, where, "max[m]")
    sn = acc(ctx.fresh("SN" + tag), "b", "h", "m", lay.qi)
    ctx.emit(sn, f"exp({s} - {gm})", where)
    sd = acc(ctx.fresh("SD" + tag), "b", "h", lay.qi)
    ctx.emit(sd, sn, where)
    return _Branch(num=sn, den=sd, gm=gm, bound=b)


def _sigmoid_branch(ctx: _Ctx, lay: _Layout, where, i: int) -> str:
    """A branch without a normaliser: sigmoid(s - log M) weights."""
    qk = acc(ctx.fresh(f"QK{i}"), "b", "h", "m", lay.qi)
    ctx.emit(qk, f"{acc(f'Q{i}', 'b', 'h', 'e', lay.qi)} * {acc(f'K{i}', 'b', lay.kvh, 'e', lay.key)}")
    out = acc(ctx.fresh(f"SG{i}"), "b", "h", "f", lay.qi)
    log = ctx.pick(["log", "log2"])
    ctx.emit(out, f"sigmoid({qk} - {log}(M)) * {acc('V', 'b', lay.kvh, 'f', lay.key)}", where)
    ctx.feat("sigmoid-branch", "sigmoid", log, "shape-symbol")
    return out


def _lambda(ctx: _Ctx, i: int) -> str:
    """The weight of branch i: a constant, a per-head input, or the DIFF
    Transformer's re-parametrisation exp(lq1 . lk1) - exp(lq2 . lk2) + init."""
    form = ctx.pick(["const", "input", "sigmoid", "reparam"])
    if form == "const":
        return ctx.pick(["0.5", "0.25", "0.8"])
    if form in ("input", "sigmoid"):
        name = ctx.inp(f"LAM{i}", ["H"], "f32")
        ctx.feat("per-head", *(["sigmoid"] if form == "sigmoid" else []))
        return f"{name}[h]" if form == "input" else f"sigmoid({name}[h])"
    ctx.feat("lambda-reparam", "exp", "sub")
    dots = []
    for j in (1, 2):
        lq, lk = ctx.inp(f"LQ{i}{j}", ["H", "E"], "f32"), ctx.inp(f"LK{i}{j}", ["H", "E"], "f32")
        d = acc(ctx.fresh(f"LD{i}{j}"), "h")
        ctx.emit(d, f"{lq}[h, e] * {lk}[h, e] / E")
        dots.append(d)
    lam = acc(ctx.fresh(f"LV{i}"), "h")
    ctx.emit(lam, f"exp({dots[0]}) - exp({dots[1]}) + 0.8")
    return lam


def _const_index(ctx: _Ctx) -> None:
    """Branches stacked on a component rank C (2..3), read at constant indices."""
    lay = _setup(ctx)
    n = ctx.rng.randint(2, 3)
    ctx.shapes["C"] = n
    ctx.heads[0] = ctx.heads[0].replace("rank B, H", "rank B, H, C", 1)
    ctx.feat("const-index")
    comp_q, vcomp = ctx.chance(0.7), ctx.chance(0.3)
    lay.vcomp = vcomp
    _qkv(ctx, lay, comp=True, comp_q=comp_q, v=None)
    ctx.inp("V", ["B", "KH" if lay.gqa else "H"] + (["C"] if vcomp else []) + ["F", "M"])
    pred = _predicate(ctx, lay) if ctx.chance(0.7) else None
    where = pred.render(lay) if pred else None
    guard = _guarded(pred, lay)
    if pred is not None and ctx.chance(0.3):   # component 0 keeps the base predicate, the others also a window
        other = _predicate(ctx, lay, n=1, allow_let=False)
        where = f"({where}) and (c == 0 or {other.render(lay)})"
        guard = guard or _guarded(other, lay)
        ctx.feat("component-predicate", "coord")
    if ctx.chance(0.3) and not vcomp and "c == 0" not in (where or ""):
        return _const_index_weights(ctx, lay, n, where, guard, comp_q)
    br = _branch(ctx, lay, where, form=ctx.pick(["deferred", "deferred", "fused", "3pass"]),
                 comp=True, comp_q=comp_q, vcomp=vcomp, comp_scale=ctx.chance(0.25))
    parts = []
    for c in range(n):
        ci = ctx.pick([str(c), "C - 1"]) if c == n - 1 else str(c)
        if ci == "C - 1":
            ctx.feat("shape-index")
        if br.out:
            parts.append(br.out.replace(", c, ", f", {ci}, ", 1))
        else:
            parts.append(_ratio(ctx, br.num.replace(", c, ", f", {ci}, ", 1),
                                br.den.replace(", c", f", {ci}", 1), guard))
    lam = [_lambda(ctx, i) for i in range(1, n)]
    value = parts[0] + "".join(f" - {_p(lam[i - 1])} * {_p(parts[i])}" for i in range(1, n))
    base = pred.render(lay) if pred else None
    _epilogue(ctx, lay, value, base)


def _const_index_weights(ctx: _Ctx, lay: _Layout, n: int, where, guard, comp_q) -> None:
    """Normalised weights A[b, h, c, m, q], combined at constant c before V."""
    pre = ["b", "h", "c"]
    qk = acc(ctx.fresh("QK"), pre, "m", lay.qi)
    q = acc("Q", "b", "h", "c" if comp_q else "", "e", lay.qi)
    ctx.emit(qk, f"{q} * {acc('K', 'b', lay.kvh, 'c', 'e', lay.key)}")
    if ctx.chance(0.6):
        ctx.inp("SC", ["C"], "f32")
        ctx.feat("per-component")
        s = f"{qk} * (1 + 0.5 * tanh(SC[c]))"
    else:
        s = f"{qk} * (c + 1) / C"
        ctx.feat("coord", "shape-symbol")
    gm = acc(ctx.fresh("GM"), pre, lay.qi)
    ctx.emit(gm, s, where, "max[m]")
    sn = acc(ctx.fresh("SN"), pre, "m", lay.qi)
    ctx.emit(sn, f"exp({s} - {gm})", where)
    sd = acc(ctx.fresh("SD"), pre, lay.qi)
    ctx.emit(sd, sn, where)
    a = acc(ctx.fresh("A"), pre, "m", lay.qi)
    ctx.emit(a, _ratio(ctx, sn, sd, guard), where)
    lam = [_lambda(ctx, i) for i in range(1, n)]
    terms = [a.replace(", c, ", f", {i}, ", 1) for i in range(n)]
    w = acc(ctx.fresh("WC"), "b", "h", "m", lay.qi)
    ctx.emit(w, terms[0] + "".join(f" - {_p(lam[i - 1])} * {terms[i]}" for i in range(1, n)), where)
    av = acc(ctx.fresh("AVC"), "b", "h", "f", lay.qi)
    ctx.emit(av, f"{w} * {acc('V', 'b', lay.kvh, 'f', lay.key)}", where)
    ctx.feat("weight-combine")
    _epilogue(ctx, lay, av, where)


def _alias(ctx: _Ctx) -> None:
    """Designs over an alias rank J = M with a predicated reduction over j."""
    kind = ctx.pick(["stick-breaking", "forgetting", "prefix-sum", "prefix-softmax"])
    ctx.feat("alias", kind)
    if kind == "prefix-softmax":
        return _prefix_softmax(ctx)
    lay = _setup(ctx, decode=False, self_attn=True)
    ctx.heads.append("rank J = M")
    _qkv(ctx, lay)
    {"stick-breaking": _stick_breaking, "forgetting": _forgetting, "prefix-sum": _prefix_sum}[kind](ctx, lay)


def _stick_breaking(ctx: _Ctx, lay: _Layout) -> None:
    """w[m, p] = sigmoid(s[m, p]) * prod over m < j < p of (1 - sigmoid(s[j, p])),
    the product written as exp of a predicated sum of log(1 - sigmoid) over j."""
    strict = ctx.chance(0.7)
    lt = "<" if strict else "<="
    where = f"m {lt} p"
    if ctx.chance(0.3):
        ctx.sym("W", 1, 3)
        where += " and p - m <= W"
        ctx.feat("window", "intersection")
    ctx.feat("causal")
    if strict:
        ctx.feat("empty-rows")
    s = acc(ctx.fresh("S"), "b", "h", "m", "p")
    qk = f"Q[b, h, e, p] * {acc('K', 'b', lay.kvh, 'e', 'm')}"
    x, b = _score_map(ctx, lay, s, _score_bound(ctx), depth=ctx.pick([0, 0, 1]), cap=400.0)
    if x == s:
        ctx.emit(s, qk, where, "sum[e]" if ctx.chance(0.3) else None)
    else:
        qks = acc(ctx.fresh("QK"), "b", "h", "m", "p")
        ctx.emit(qks, qk, where)
        ctx.emit(s, x.replace(s, qks), where)
    lb = ctx.fresh("LB")
    ctx.emit(f"{lb}[b, h, m, p]", f"-softplus({s})" if ctx.new(0.3) else f"-log(1 + exp({s}))", where)
    cb, explicit = acc(ctx.fresh("CB"), "b", "h", "m", "p"), ctx.chance(0.3)
    if ctx.new(0.5):    # the product over m < j as a suffix scan along m (LB is 0 where it does not exist)
        ctx.emit(cb, f"{lb}[b, h, m, p]", where, "cumsum[m, reverse, exclusive]")
        ctx.feat("scan", "suffix-scan", "exclusive-scan")
    else:
        ctx.emit(cb, f"{lb}[b, h, j, p]", f"{where} and m < j and j {lt} p", "sum[j]" if explicit else None)
    wt = acc(ctx.fresh("WT"), "b", "h", "m", "p")
    ctx.emit(wt, f"sigmoid({s}) * exp({cb})", where)
    ctx.feat("log", "exp", "sigmoid", "intersection")
    av = acc(ctx.fresh("AVS"), "b", "h", "f", "p")
    ctx.emit(av, f"{wt} * {acc('V', 'b', lay.kvh, 'f', 'm')}", where)
    value = av
    if ctx.chance(0.4):   # the stick left over goes to the query's own value
        rem = acc(ctx.fresh("REM"), "b", "h", "p")
        ctx.emit(rem, wt, where)
        value = f"{av} + (1 - {rem}) * {acc('V', 'b', lay.kvh, 'f', 'p')}"
        ctx.feat("multi-reduction", "residual")
    _epilogue(ctx, lay, value, where)


def _forgetting(ctx: _Ctx, lay: _Layout) -> None:
    """Forgetting attention: scores plus the cumulative log forget gates between
    key and query, as a predicated sum over the alias j."""
    lf = ctx.fresh("LF")
    dtype, log_sigmoid = ctx.pick(["f16", "f16", "f32", "bf16"]), ctx.chance(0.5)   # (as ctx.inp draws it)
    if ctx.new(0.4):    # the gate itself, declared in (0, 1)
        ctx.inp("FG", ["B", "H", "M"], "f32", " in (0, 1)")
        ctx.emit(f"{lf}[b, h, m]", "log(FG[b, h, m])")
    else:
        ctx.inp("FG", ["B", "H", "M"], dtype)
        if log_sigmoid:
            ctx.emit(f"{lf}[b, h, m]", "logsigmoid(FG[b, h, m])" if ctx.new(0.4) else "log(sigmoid(FG[b, h, m]))")
            ctx.feat(*(["logsigmoid"] if "logsig" in ctx.body[-1] else []))
        else:
            ctx.emit(f"{lf}[b, h, m]", "-log(1 + exp(-FG[b, h, m]))")
    ctx.feat("log", "sigmoid", "causal")
    where = "m <= p"
    qk = f"Q[b, h, e, p] * {acc('K', 'b', lay.kvh, 'e', 'm')}"
    if ctx.chance(0.5):
        d = acc(ctx.fresh("DF"), "b", "h", "m", "p")
        ctx.emit(d, f"{lf}[b, h, j]", "m < j and j <= p")
        s = f"{acc(ctx.fresh('QK'), 'b', 'h', 'm', 'p')}"
        ctx.emit(s, qk, where)
        score = f"{s} + {d}"
    else:
        cf, explicit = ctx.fresh("CF"), ctx.chance(0.3)
        if ctx.new(0.5):
            _forgetting_scan(ctx, cf, lf)
        else:
            ctx.emit(f"{cf}[b, h, m]", f"{lf}[b, h, j]", "j <= m", "sum[j]" if explicit else None)
        s = f"{acc(ctx.fresh('QK'), 'b', 'h', 'm', 'p')}"
        ctx.emit(s, qk, where)
        score = f"{s} + {cf}[b, h, p] - {cf}[b, h, m]"
        ctx.feat("sub")
    ctx.feat("add", "intersection")
    sc = acc(ctx.fresh("S"), "b", "h", "m", "p")
    ctx.emit(sc, score, where)
    br = _softmax_tail(ctx, lay, sc, where)
    _epilogue(ctx, lay, _branch_value(ctx, br, False), where, br)


def _forgetting_scan(ctx: _Ctx, cf: str, lf: str) -> None:
    """The cumulative log gate CF[m] as a scan: a prefix sum of the log gates
    (inclusive or exclusive: the bias CF[p] - CF[m] is the same), or the log
    of a prefix product of the gates themselves (finite: the gates are in
    (0, 1) and bounded away from 0 at these lengths)."""
    flags = ctx.lang.choice(["", ", exclusive"])
    ctx.feat("scan", *(["exclusive-scan"] if flags else []))
    if ctx.lang.random() < 0.3:
        cp = ctx.fresh("CP")
        ctx.emit(f"{cp}[b, h, m]", f"exp({lf}[b, h, m])", reduce=f"cumprod[m{flags}]")
        ctx.emit(f"{cf}[b, h, m]", f"log({cp}[b, h, m])")
        ctx.feat("cumprod", "exp", "log")
    else:
        ctx.emit(f"{cf}[b, h, m]", f"{lf}[b, h, m]", reduce=f"cumsum[m{flags}]")


def _softmax_tail(ctx: _Ctx, lay: _Layout, s: str, where, pre=("b", "h")) -> _Branch:
    """max, stable exps, sum and value product of the scores s[pre, m, q]."""
    gm = acc(ctx.fresh("GM"), pre, lay.qi)
    ctx.emit(gm, s, where, "max[m]")
    sn = acc(ctx.fresh("SN"), pre, "m", lay.qi)
    ctx.emit(sn, f"exp({s} - {gm})", where)
    sd = acc(ctx.fresh("SD"), pre, lay.qi)
    ctx.emit(sd, sn, where)
    snv = acc(ctx.fresh("SNV"), pre, "f", lay.qi)
    ctx.emit(snv, f"{sn} * {acc('V', 'b', lay.kvh, 'f', lay.key)}", where)
    ctx.feat("deferred")
    return _Branch(num=snv, den=sd, gm=gm, score=s, bound=1e3)


def _prefix_sum(ctx: _Ctx, lay: _Layout) -> None:
    """Causal linear attention with its states written as prefix sums over j <= m."""
    pq, pk, d, positive = _feature_maps(ctx, lay)
    kv, ks = ctx.fresh("KV"), ctx.fresh("KS")
    if ctx.new(0.5):    # the same states as prefix sums along m
        ctx.emit(f"{kv}[b, h, {d}, f, m]", f"{pk}[b, h, {d}, m] * {acc('V', 'b', lay.kvh, 'f', 'm')}",
                 reduce="cumsum[m]")
        ctx.emit(f"{ks}[b, h, {d}, m]", f"{pk}[b, h, {d}, m]", reduce="cumsum[m]")
        ctx.feat("scan")
    else:
        ctx.emit(f"{kv}[b, h, {d}, f, m]", f"{pk}[b, h, {d}, j] * {acc('V', 'b', lay.kvh, 'f', 'j')}", "j <= m")
        ctx.emit(f"{ks}[b, h, {d}, m]", f"{pk}[b, h, {d}, j]", "j <= m")
    num = acc(ctx.fresh("NUM"), "b", "h", "f", "p")
    ctx.emit(num, f"{pq}[b, h, {d}, p] * {kv}[b, h, {d}, f, p]")
    den = acc(ctx.fresh("DEN"), "b", "h", "p")
    ctx.emit(den, f"{pq}[b, h, {d}, p] * {ks}[b, h, {d}, p]")
    ctx.feat("causal", "prefix-state")
    _epilogue(ctx, lay, _linear_ratio(ctx, num, den, positive), None)


def _prefix_softmax(ctx: _Ctx) -> None:
    """Softmax over every prefix (Aaren's many-to-many output, in closed form):
    out[m] = sum over j <= m of exp(s[j] - max over j <= m of s) v[j] / (...)."""
    lay = _setup(ctx, decode=True, self_attn=False)
    ctx.heads.append("rank J = M")
    _qkv(ctx, lay)
    s = ctx.fresh("S")
    x, _ = _score_map(ctx, lay, acc("Q", "b", "h", "e") + " * " + acc("K", "b", lay.kvh, "e", "m"),
                      _score_bound(ctx), depth=ctx.pick([0, 1]))
    ctx.emit(f"{s}[b, h, m]", x)
    cm, cn, cd = ctx.fresh("CM"), ctx.fresh("CN"), ctx.fresh("CD")
    ctx.emit(f"{cm}[b, h, m]", f"{s}[b, h, j]", "j <= m", "max[j]")
    ctx.emit(f"{cn}[b, h, f, m]", f"exp({s}[b, h, j] - {cm}[b, h, m]) * {acc('V', 'b', lay.kvh, 'f', 'j')}",
             "j <= m")
    ctx.emit(f"{cd}[b, h, m]", f"exp({s}[b, h, j] - {cm}[b, h, m])", "j <= m")
    out = ctx.fresh("AV")
    ctx.emit(f"{out}[b, h, f, m]", f"{cn}[b, h, f, m] / {cd}[b, h, m]")
    ctx.feat("alias-max", "exp", "causal")


# ------------------------------------------------------------------ linear-time designs

_PHI = {  # feature map: (text with {x}, positive for every finite x, features)
    "elu1": ("select({x} > 0, {x} + 1, exp({x}))", True, ("elu1", "select", "exp", "add")),
    "relu": ("max({x}, 0)", False, ("relu", "max")),
    "exp": ("exp({x})", True, ("exp-map", "exp")),
    "softplus": ("log(1 + exp({x}))", False, ("softplus", "log", "exp", "add")),
    "square": ("{x} * {x}", False, ("square", "mul")),
    "sigmoid": ("sigmoid({x})", False, ("sigmoid-map", "sigmoid")),
}


def _feature_maps(ctx: _Ctx, lay: _Layout, q_idx: list | None = None, k_idx: str | None = None):
    """phi(Q) and phi(K), of Q and K or of a projection of them (rank D).
    Returns (PQ, PK, feature index variable, phi > 0 everywhere)."""
    q_idx = lay.qi if q_idx is None else q_idx
    k_idx = k_idx or lay.key
    phi = ctx.pick(_PHI)
    text, positive, feats = _PHI[phi]
    ctx.feat("linear", *feats)
    if phi in ("relu", "square") and ctx.new(0.4):     # relu(x)^2, x^2 as powers
        text = text.replace("{x} * {x}", "{x}") + " ^ 2"
        ctx.feat("pow")
    xq, xk, d = acc("Q", "b", "h", "e", q_idx), acc("K", "b", lay.kvh, "e", k_idx), "e"
    if ctx.chance(0.8 if phi == "exp" else 0.3):
        ctx.sym("D", 2, 3)
        ctx.inp("WF", ["H", "E", "D"])
        d = "d"
        xq_t, xk_t = acc(ctx.fresh("XQ"), "b", "h", "d", q_idx), acc(ctx.fresh("XK"), "b", "h", "d", k_idx)
        ctx.emit(xq_t, f"{xq} * WF[h, e, d]")
        ctx.emit(xk_t, f"{xk} * WF[h, e, d]")
        xq, xk = xq_t, xk_t
        ctx.feat("projection")
        if phi == "exp":
            text = ctx.pick(["exp(clip({x}, -10, 10))", "exp(tanh({x}))"])
            ctx.feat("clip" if "clip" in text else "tanh", "exp-proj")
    elif phi == "exp" and ctx.chance(0.5):
        text = "exp2({x})"
        ctx.feat("exp2")
    pq, pk = ctx.fresh("PQ"), ctx.fresh("PK")
    ctx.emit(acc(pq, "b", "h", d, q_idx), text.format(x=xq))
    ctx.emit(acc(pk, "b", "h", d, k_idx), text.format(x=xk))
    return pq, pk, d, positive


def _linear_ratio(ctx: _Ctx, num: str, den: str, positive: bool) -> str:
    """The normalised output: a convex combination of values, so finite; a
    non-negative feature map may give an all-zero row (guarded)."""
    ctx.feat("normaliser")
    if positive:
        return f"{num} / {den}"
    ctx.feat("guard")
    if ctx.chance(0.5):
        return f"{num} / ({den} + 1e-6)"
    return f"{num} / max({den}, {TINY})"


def _linear(ctx: _Ctx) -> None:
    """Linear-time attention: a KV state and a normaliser, in one of several forms."""
    mode = ctx.pick(["global", "global", "causal-pred", "iterative", "chunked", "chunked-global"])
    if mode == "chunked":
        return _linear_chunked(ctx)
    lay = _setup(ctx, decode=None if mode == "global" else False, self_attn=mode in ("causal-pred", "iterative"),
                 partition=mode == "chunked-global")
    if mode == "chunked-global":
        lay.key = "m1 * M0 + m0"
        _tile(ctx)
    _qkv(ctx, lay)
    pq, pk, d, positive = _feature_maps(ctx, lay, k_idx="m")
    norm = ctx.chance(0.2)        # an output norm instead of the normaliser: no DEN
    build = {"causal-pred": _linear_causal_pred, "iterative": _linear_iterative}.get(mode, _linear_global)
    num, den = build(ctx, lay, pq, pk, d, not norm)
    ctx.feat(mode)
    if norm:
        nrm = acc(ctx.fresh("NRM"), "b", "h", lay.qi)
        ctx.emit(nrm, f"{num} * {num}")
        value = f"{num} / sqrt({nrm} + 1)"
        ctx.feat("output-norm", "sqrt")
    else:
        value = _linear_ratio(ctx, num, den, positive)
    _epilogue(ctx, lay, value, None)


def _linear_global(ctx: _Ctx, lay: _Layout, pq, pk, d, want_den: bool = True):
    """Non-causal states summed over every key (tile by tile when partitioned)."""
    emit_den = ctx.emit if want_den else _skip
    kv, ks = ctx.fresh("KV"), ctx.fresh("KS")
    ctx.emit(f"{kv}[b, h, {d}, f]", f"{pk}[b, h, {d}, {lay.key}] * {acc('V', 'b', lay.kvh, 'f', lay.key)}")
    emit_den(f"{ks}[b, h, {d}]", f"{pk}[b, h, {d}, {lay.key}]")
    num, den = acc(ctx.fresh("NUM"), "b", "h", "f", lay.qi), acc(ctx.fresh("DEN"), "b", "h", lay.qi)
    ctx.emit(num, f"{acc(pq, 'b', 'h', d, lay.qi)} * {kv}[b, h, {d}, f]")
    emit_den(den, f"{acc(pq, 'b', 'h', d, lay.qi)} * {ks}[b, h, {d}]")
    return num, den


def _skip(*args, **kwargs) -> None:
    """An emit that writes nothing (a normaliser that the design does not use)."""


def _decay(ctx: _Ctx) -> str:
    dom = _domain(ctx, "LG")
    if dom or dom is None and ctx.new(0.4):
        ctx.inp("LG", ["H"], "f32", " in (0, 1)")     # the decay itself, declared in (0, 1)
        ctx.feat("decay", "per-head")
        return "LG[h]"
    ctx.inp("LG", ["H"], "f32")
    ctx.feat("decay", "sigmoid", "per-head")
    return "sigmoid(LG[h])"


def _linear_causal_pred(ctx: _Ctx, lay: _Layout, pq, pk, d, want_den: bool = True):
    """Causal through the predicate m <= p, optionally decayed by g^(p - m)."""
    emit_den = ctx.emit if want_den else _skip
    dec = ""
    if ctx.chance(0.6):
        dec = f" * exp((p - m) * log({_decay(ctx)}))"
        ctx.feat("coord", "log", "exp")
    where = "m <= p"
    ctx.feat("causal")
    num, den = acc(ctx.fresh("NUM"), "b", "h", "f", "p"), acc(ctx.fresh("DEN"), "b", "h", "p")
    v = acc("V", "b", lay.kvh, "f", "m")
    if ctx.chance(0.5):
        ctx.emit(num, f"{pq}[b, h, {d}, p] * {pk}[b, h, {d}, m]{dec} * {v}", where)
        emit_den(den, f"{pq}[b, h, {d}, p] * {pk}[b, h, {d}, m]{dec}", where)
        return num, den
    kv, ks = ctx.fresh("KVP"), ctx.fresh("KSP")
    ctx.emit(f"{kv}[b, h, {d}, f, p]", f"{pk}[b, h, {d}, m]{dec} * {v}", where)
    emit_den(f"{ks}[b, h, {d}, p]", f"{pk}[b, h, {d}, m]{dec}", where)
    ctx.emit(num, f"{pq}[b, h, {d}, p] * {kv}[b, h, {d}, f, p]")
    emit_den(den, f"{pq}[b, h, {d}, p] * {ks}[b, h, {d}, p]")
    ctx.feat("prefix-state")
    return num, den


def _linear_iterative(ctx: _Ctx, lay: _Layout, pq, pk, d, want_den: bool = True):
    """Causal as an RNN: states iterative over the keys, read after key p."""
    emit_den = ctx.emit if want_den else _skip
    g = f"{_decay(ctx)} * " if ctx.chance(0.6) else ""
    kv, ks = ctx.fresh("KV"), ctx.fresh("KS")
    ctx.emit(f"{kv}[b, h, {d}, f, 0]", "0")
    ctx.emit(f"{kv}[b, h, {d}, f, m + 1]",
             f"{g}{kv}[b, h, {d}, f, m] + {pk}[b, h, {d}, m] * {acc('V', 'b', lay.kvh, 'f', 'm')}")
    emit_den(f"{ks}[b, h, {d}, 0]", "0")
    emit_den(f"{ks}[b, h, {d}, m + 1]", f"{g}{ks}[b, h, {d}, m] + {pk}[b, h, {d}, m]")
    num, den = acc(ctx.fresh("NUM"), "b", "h", "f", "p"), acc(ctx.fresh("DEN"), "b", "h", "p")
    ctx.emit(num, f"{pq}[b, h, {d}, p] * {kv}[b, h, {d}, f, p + 1]")
    emit_den(den, f"{pq}[b, h, {d}, p] * {ks}[b, h, {d}, p + 1]")
    ctx.feat("iterative", "causal")
    return num, den


def _tile(ctx: _Ctx) -> None:
    """A tile size M0 that usually does not divide the key length."""
    n = "M" if "M" in ctx.shapes else "P"      # M = P: the length is P's
    m0 = ctx.rng.randint(2, 4)
    ctx.shapes["M0"] = m0
    ctx.shapes[n] = max(ctx.shapes.get(n, 0), m0 + 1)
    if ctx.chance(0.7) and ctx.shapes[n] % m0 == 0:
        ctx.shapes[n] += 1
    ctx.feat("partition", "ragged-tile" if ctx.shapes[n] % m0 else "even-tile")


def _linear_chunked(ctx: _Ctx) -> None:
    """Chunkwise causal linear attention: inside a chunk the masked quadratic
    form over the alias j <= m0, across chunks a state iterative over m1."""
    gqa = ctx.chance(0.3)
    lay = _Layout(self_attn=True, gqa=gqa, key="m")
    _setup_heads_only(ctx, gqa)
    ctx.heads += ["partition M -> M1, M0", "rank J = M0"]
    ctx.sym("M", 4, 9)
    _tile(ctx)
    kh = "KH" if gqa else "H"
    ctx.inp("Q", ["B", "H", "E", "M"])
    ctx.inp("K", ["B", kh, "E", "M"])
    ctx.inp("V", ["B", kh, "F", "M"])
    pq, pk, d, positive = _feature_maps(ctx, lay, q_idx=["m"], k_idx="m")
    t, tj, v = "m1 * M0 + m0", "m1 * M0 + j", acc("V", "b", lay.kvh, "f", "m1 * M0 + j")
    ai, oi, di = ctx.fresh("AI"), ctx.fresh("OI"), ctx.fresh("DI")
    ctx.emit(f"{ai}[b, h, m1, m0, j]", f"{pq}[b, h, {d}, {t}] * {pk}[b, h, {d}, {tj}]", "j <= m0")
    ctx.emit(f"{oi}[b, h, f, m1, m0]", f"{ai}[b, h, m1, m0, j] * {v}", "j <= m0")
    ctx.emit(f"{di}[b, h, m1, m0]", f"{ai}[b, h, m1, m0, j]", "j <= m0")
    kvc, ksc, st, z = ctx.fresh("KVC"), ctx.fresh("KSC"), ctx.fresh("ST"), ctx.fresh("Z")
    ctx.emit(f"{kvc}[b, h, {d}, f, m1]", f"{pk}[b, h, {d}, {t}] * {acc('V', 'b', lay.kvh, 'f', t)}")
    ctx.emit(f"{ksc}[b, h, {d}, m1]", f"{pk}[b, h, {d}, {t}]")
    ctx.emit(f"{st}[b, h, {d}, f, 0]", "0")
    ctx.emit(f"{st}[b, h, {d}, f, m1 + 1]", f"{st}[b, h, {d}, f, m1] + {kvc}[b, h, {d}, f, m1]")
    ctx.emit(f"{z}[b, h, {d}, 0]", "0")
    ctx.emit(f"{z}[b, h, {d}, m1 + 1]", f"{z}[b, h, {d}, m1] + {ksc}[b, h, {d}, m1]")
    ox, dx = ctx.fresh("OX"), ctx.fresh("DX")
    ctx.emit(f"{ox}[b, h, f, m1, m0]", f"{pq}[b, h, {d}, {t}] * {st}[b, h, {d}, f, m1]")
    ctx.emit(f"{dx}[b, h, m1, m0]", f"{pq}[b, h, {d}, {t}] * {z}[b, h, {d}, m1]")
    at = "m / M0, m % M0"
    num, den = f"({oi}[b, h, f, {at}] + {ox}[b, h, f, {at}])", f"({di}[b, h, {at}] + {dx}[b, h, {at}])"
    out = ctx.fresh("AV")
    ctx.emit(f"{out}[b, h, f, m]", _linear_ratio(ctx, num, den, positive))
    ctx.feat("chunked", "alias", "iterative", "causal")


def _setup_heads_only(ctx: _Ctx, gqa: bool) -> None:
    """Ranks B, H, E, F (tokens on M only), with KV heads under GQA."""
    ctx.sym("B", 1, 2)
    ctx.sym("E", 2, 4)
    ctx.sym("F", 1, 3)
    ctx.heads.append("rank B, H, E, F")
    if gqa:
        g = ctx.rng.randint(2, 3)
        ctx.shapes["G"], ctx.shapes["H"] = g, g * ctx.rng.randint(1, 2)
        ctx.heads.append("rank KH = H / G")
        ctx.feat("gqa")
    else:
        ctx.sym("H", 1, 3)


# ------------------------------------------------------------------ online (partitioned) designs

def _online(ctx: _Ctx) -> None:
    """Partitioned softmax: 1-pass with a running max, rescaled running sums
    and a last-iterate read (or 2-pass with a global max over tile maxima)."""
    lay = _setup(ctx, partition=True)
    lay.key = "m1 * M0 + m0"
    _tile(ctx)
    _qkv(ctx, lay)
    ctx.feat("online")
    pred = _predicate(ctx, lay) if ctx.chance(0.6) else None
    where = pred.render(lay) if pred else None
    guard = _guarded(pred, lay)
    kx, vx = _online_views(ctx, lay)
    bqk = acc(ctx.fresh("BQK"), "b", "h", "m1", "m0", lay.qi)
    ctx.emit(bqk, f"{acc('Q', 'b', 'h', 'e', lay.qi)} * {kx}", where if ctx.chance(0.5) else None)
    s, _ = _score_map(ctx, lay, bqk, _score_bound(ctx), depth=ctx.pick([0, 0, 1, 2]))
    if s != bqk and ctx.chance(0.6):
        sn = acc(ctx.fresh("S"), "b", "h", "m1", "m0", lay.qi)
        ctx.emit(sn, s, where)
        s = sn
    lm = acc(ctx.fresh("LM"), "b", "h", "m1", lay.qi)
    ctx.emit(lm, s, where, "max[m0]")
    if ctx.chance(0.25):
        value = _two_pass(ctx, lay, s, lm, vx, where, guard)
    else:
        value = _one_pass(ctx, lay, s, lm, vx, where, guard, pred is not None)
    _epilogue(ctx, lay, value, where)


def _online_views(ctx: _Ctx, lay: _Layout) -> tuple[str, str]:
    """K and V at a tile position: tiled views BK, BV, or direct reads."""
    t = lay.key
    if not ctx.chance(0.5):
        return acc("K", "b", lay.kvh, "e", t), acc("V", "b", lay.kvh, "f", t)
    hv = "kh" if lay.gqa else "h"
    ctx.emit(f"BK[b, {hv}, e, m1, m0]", f"K[b, {hv}, e, {t}]")
    ctx.emit(f"BV[b, {hv}, f, m1, m0]", f"V[b, {hv}, f, {t}]")
    ctx.names.update(("BK", "BV"))
    ctx.feat("views")
    return acc("BK", "b", lay.kvh, "e", "m1", "m0"), acc("BV", "b", lay.kvh, "f", "m1", "m0")


def _one_pass(ctx: _Ctx, lay: _Layout, s, lm, vx, where, guard, predicated) -> str:
    """Running max RM, rescaled running sum RD and numerator RNV over m1."""
    q = lay.qi
    rm, rd, rnv = ctx.fresh("RM"), ctx.fresh("RD"), ctx.fresh("RNV")
    init = "-1e30" if predicated or ctx.chance(0.3) else "-inf"
    if init == "-1e30":
        ctx.feat("finite-init")
    ctx.emit(acc(rm, "b", "h", "0", q), init)
    ctx.emit(acc(rd, "b", "h", "0", q), "0")
    ctx.emit(acc(rnv, "b", "h", "f", "0", q), "0")
    cur, prev = acc(rm, "b", "h", "m1 + 1", q), acc(rm, "b", "h", "m1", q)
    ctx.emit(cur, f"max({prev}, {lm})")
    sln = acc(ctx.fresh("SLN"), "b", "h", "m1", "m0", q)
    ctx.emit(sln, f"exp({s} - {cur})", where)
    sld, slnv = acc(ctx.fresh("SLD"), "b", "h", "m1", q), acc(ctx.fresh("SLNV"), "b", "h", "f", "m1", q)
    ctx.emit(sld, sln, where)
    ctx.emit(slnv, f"{sln} * {vx}", where)
    prm = acc(ctx.fresh("PRM"), "b", "h", "m1", q)
    ctx.emit(prm, f"exp({prev} - {cur})")
    rd0, rd1 = acc(rd, "b", "h", "m1", q), acc(rd, "b", "h", "m1 + 1", q)
    n0, n1 = acc(rnv, "b", "h", "f", "m1", q), acc(rnv, "b", "h", "f", "m1 + 1", q)
    if ctx.chance(0.5):
        spd, spnv = acc(ctx.fresh("SPD"), "b", "h", "m1", q), acc(ctx.fresh("SPNV"), "b", "h", "f", "m1", q)
        ctx.emit(spd, f"{rd0} * {prm}")
        ctx.emit(rd1, f"{sld} + {spd}")
        ctx.emit(spnv, f"{n0} * {prm}")
        ctx.emit(n1, f"{slnv} + {spnv}")
    else:
        ctx.emit(rd1, f"{rd0} * {prm} + {sld}")
        ctx.emit(n1, f"{n0} * {prm} + {slnv}")
        ctx.feat("compact-recurrence")
    ctx.feat("iterative", "last-iterate")
    last_d, last_n = acc(rd, "b", "h", "M1", q), acc(rnv, "b", "h", "f", "M1", q)
    if ctx.chance(0.15):
        lse = acc(ctx.fresh("LSE"), "b", "h", q)
        if guard:
            ctx.emit(lse, f"select({last_d} > 0, {acc(rm, 'b', 'h', 'M1', q)} + log(max({last_d}, {TINY})), 0)")
        else:
            ctx.emit(lse, f"{acc(rm, 'b', 'h', 'M1', q)} + log({last_d})")
        ctx.feat("lse", "log")
    return _ratio(ctx, last_n, last_d, guard)


def _two_pass(ctx: _Ctx, lay: _Layout, s, lm, vx, where, guard) -> str:
    """Local exps per tile, a global max of the tile maxima, one corrected pass."""
    q = lay.qi
    sln = acc(ctx.fresh("SLN"), "b", "h", "m1", "m0", q)
    ctx.emit(sln, f"exp({s} - {lm})", where)
    sld = acc(ctx.fresh("SLD"), "b", "h", "m1", q)
    ctx.emit(sld, sln, where)
    gm = acc(ctx.fresh("GM"), "b", "h", q)
    ctx.emit(gm, lm, None, "max[m1]")
    prm = acc(ctx.fresh("PRM"), "b", "h", "m1", q)
    if guard:  # an empty row has GM = -inf: clamp so that its PRM is not -inf - -inf
        ctx.emit(prm, f"exp(max({lm}, -1e30) - max({gm}, -1e30))")
        ctx.feat("max")
    else:
        ctx.emit(prm, f"exp({lm} - {gm})")
    sd = acc(ctx.fresh("SD"), "b", "h", q)
    ctx.emit(sd, f"{sld} * {prm}")
    snv = acc(ctx.fresh("SNV"), "b", "h", "f", q)
    ctx.emit(snv, f"{sln} * {prm} * {vx}", where)
    ctx.feat("two-pass")
    return _ratio(ctx, snv, sd, guard)


# ------------------------------------------------------------------ API

_BUILDERS = {"softmax": _softmax, "two-branch": _two_branch, "const-index": _const_index,
             "alias": _alias, "online": _online, "linear": _linear}

# Every feature some builder can report (the test checks each is produced).
FEATURES = frozenset("""
    softmax two-branch const-index alias online linear
    self cross decode gqa
    3pass naive deferred fused
    add sub mul div exp log sqrt sigmoid tanh abs max min clip select coord shape-symbol exp2 log2 floor
    not-equal neg-inf-mask comment continuation
    per-head per-query per-key per-pair relative explicit-reduce let decl
    causal window dilation modulo block mask-tensor sink not union intersection empty-rows guard
    gate projection head-scale multi-reduction count min-reduce residual lse sink-logit
    two-branches three-branches mixed-predicates weight-combine sigmoid-branch lambda-reparam
    component-predicate shape-index per-component
    stick-breaking forgetting prefix-sum prefix-softmax prefix-state alias-max
    partition ragged-tile even-tile views finite-init iterative last-iterate compact-recurrence two-pass
    elu1 relu exp-map exp-proj softplus square sigmoid-map normaliser output-norm decay
    global causal-pred chunked chunked-global
    sin cos tan erf logsigmoid log1p expm1 pow bitwise cond-value
    scan suffix-scan exclusive-scan cumprod named-mask repeated-rank domain gather doc-mask literal-extent
    empty-rows-zero
""".split())


def random_design(seed: int, family: str | None = None) -> RandomDesign:
    """The design of this seed (of the given family; by default one drawn from
    the seed). Deterministic: the same arguments give the same text."""
    if family is None:
        family = random.Random(f"family/{seed}").choice(FAMILIES)
    if family not in _BUILDERS:
        raise ValueError(f"unknown design family {family!r}; the families are {', '.join(FAMILIES)}")
    ctx = _Ctx(random.Random(f"{family}/{seed}"))
    ctx.extra = random.Random(f"new-ops/{family}/{seed}")
    ctx.lang = random.Random(f"lang/{family}/{seed}")
    ctx.feat(family)
    _BUILDERS[family](ctx)
    text = ctx.text(family, seed)
    unknown = ctx.features - FEATURES
    assert not unknown, f"features missing from FEATURES: {sorted(unknown)}"
    return RandomDesign(seed, family, frozenset(ctx.features), text, dict(ctx.shapes))


def random_designs(n: int, seed: int = 0, families=None) -> Iterator[RandomDesign]:
    """n designs, families taken in turn (so the mix is exact), seeds drawn
    from `seed`."""
    fams = tuple(families or FAMILIES)
    rng = random.Random(f"designs/{seed}")
    for i in range(n):
        yield random_design(rng.randrange(2 ** 32), fams[i % len(fams)])


def design_strategy(families=None):
    """A hypothesis strategy of designs (shrinks towards small seeds)."""
    from hypothesis import strategies as st
    fams = tuple(families or FAMILIES)
    return st.builds(random_design, st.integers(0, 2 ** 32 - 1), st.sampled_from(fams))
