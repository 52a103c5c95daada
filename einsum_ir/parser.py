"""`.ein` text -> Cascade. Syntax comes from `grammar.lark` (Lark, LALR);
meaning and validation from `assemble`, which the Python builder shares."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import lark

from .errors import Loc, ParseError, printable
from .ir import (SCAN_FLAGS, SCAN_OPS, Access, Cascade, Domain, Einsum, Expr, Idx, Mask, Num, Op, Rank, Scan, Sym,
                 TensorDecl, substitute, walk)
from .ops import BINARY_INFIX, DEFAULT_DTYPE, DTYPE_BYTES, FUNCTIONS, REDUCE_RULES, RULES

_TOKEN_NAMES = {
    "UPPER": "a name (tensor, rank or symbol, upper-case first letter)",
    "LOWER": "an index variable or function name (lower case)",
    "NUMBER": "a number", "INT": "an integer", "_NL": "end of line", "$END": "end of input",
    "ROLE": "'input', 'output' or 'tensor'", "REDOP": "'sum', 'max' or 'min'",
    "CMPOP": "a comparison (<, <=, >, >=, ==, !=)",
}


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


@dataclass(frozen=True)
class RankStmt:
    rank: Rank


@dataclass(frozen=True)
class PartitionStmt:
    """`partition M -> M1, M0`; each name keeps its own location, so an error
    about a part points at that part."""
    parent: str
    outer: str
    inner: str
    loc: Loc | None
    outer_loc: Loc | None = None
    inner_loc: Loc | None = None


@dataclass(frozen=True)
class EmptyRowsStmt:
    """`empty rows = 0` or `empty rows = nan`: the design's convention for a
    row with no visible key (Cascade.empty_rows)."""
    value: str
    loc: Loc | None


EMPTY_ROWS = ("nan", "0")
"""The values of `empty rows`; the first is the default."""


MAX_DEPTH = 100
"""Deepest expression accepted. The validator, printer and executor recurse
over expressions; beyond this they would exhaust Python's stack (real designs
stay below 20)."""


MAX_NODES = 20_000
"""Largest expression accepted, counted after `let` expansion. Each call of a
`let` copies its body, so a few lines of nested lets can expand to billions
of nodes (and hang every stage); library designs stay below 300."""

MAX_SOURCE_CHARS = 1 << 20
"""Longest `.ein` text accepted (1 MiB; library designs are under 2 KB): a
bound on the time and memory a file can cost, e.g. `attnc check /dev/zero`."""

MAX_INDEX_LITERAL = 2 ** 53
"""Largest integer in an index or a rank's extent (checked by the validator):
exact in the float64 the analyses use and far inside the executor's int64.
A number in a map may be any float64 value; an integer literal past the
float64 range (a 300-digit one) is an error."""


def count_nodes(e: Expr, limit: int = MAX_NODES) -> int:
    """Nodes of `e` (shared subtrees counted each time they occur), counting
    stops past `limit`: the cost is bounded however large `e` is."""
    n, stack = 0, [e]
    while stack and n <= limit:
        x = stack.pop()
        n += 1
        stack.extend(x.indices if isinstance(x, Access) else x.args if isinstance(x, Op) else ())
    return n


def too_deep(e: Expr, limit: int = MAX_DEPTH) -> Expr | None:
    """The first node of `e` nested deeper than `limit`, found without recursion."""
    stack = [(e, 1)]
    while stack:
        x, d = stack.pop()
        if d > limit:
            return x
        kids = x.indices if isinstance(x, Access) else x.args if isinstance(x, Op) else ()
        stack.extend((k, d + 1) for k in kids)
    return None


# Tokens that continue an expression, by their text: lark names some terminals
# itself (`//` is __ANON_1), so names would drift with the grammar.
_OPERATOR_TEXTS = frozenset({"and", "or", "+", "-", "*", "/", "//", "%", "(", "where", "^", "&", "|", "<<", ">>"})


def _describe(names) -> str:
    """Expected tokens, structure first: `',' or ']'` rather than every operator
    that could also continue an expression."""
    if "NUMBER" in names:
        return "an expression (a number, a name, a tensor element, a function call or '(')"
    if "IN" in names:  # after a declaration: its optional domain
        return _describe(set(names) - {"IN", "CMPOP"}) + " or a domain (in (0, 1), > 0, ...)"
    terminals = {t.name: t for t in _lark().terminals}
    ops = {n for n in names if n == "CMPOP" or (
        n in terminals and isinstance(terminals[n].pattern, lark.lexer.PatternStr)
        and terminals[n].pattern.value in _OPERATOR_TEXTS)}
    structural = set(names) - ops
    if structural and ops:
        return _describe_all(structural) + " (or an operator continuing the expression)"
    return _describe_all(names)


def _describe_all(names) -> str:
    terminals = {t.name: t for t in _lark().terminals}
    out = []
    for n in sorted(names):
        if n in _TOKEN_NAMES:
            out.append(_TOKEN_NAMES[n])
        elif n in terminals and isinstance(terminals[n].pattern, lark.lexer.PatternStr):
            out.append(repr(terminals[n].pattern.value))
        else:
            out.append(n)
    if len(out) > 6:
        out = out[:6] + ["..."]
    return ", ".join(out)


class _ToIR(lark.Transformer_NonRecursive):
    """Parse tree -> IR nodes and statements, each carrying its location.
    Non-recursive: a deep expression gets to `_check_depth` and a ParseError,
    not a RecursionError."""

    def __init__(self, file: str, source: str):
        super().__init__()
        self.file = file
        self.source = source
        self.lets: dict[str, tuple[list[str], object]] = {}
        self.masks: dict[str, Mask] = {}
        # index variables written in a mask or a `let` body without being a
        # parameter: id(Idx node) -> (node, "mask 'causal'"). They name a
        # coordinate of the Einsum that uses the mask or calls the let, so
        # each must be in that Einsum's iteration space (checked in `einsum`).
        self.scoped: dict[int, tuple[Idx, str]] = {}
        self.uses: list[tuple[str, Loc | None, set[int]]] = []  # this statement's mask uses and let calls

    def _loc(self, meta_or_tok) -> Loc | None:
        line = getattr(meta_or_tok, "line", None)
        col = getattr(meta_or_tok, "column", None)
        return Loc(self.file, line, col) if line is not None else None

    def _err(self, message, node):
        raise ParseError(message, self._loc(node), self.source)

    def _check_depth(self, *exprs):
        for e in exprs:
            if e is not None and count_nodes(e) > MAX_NODES:
                self._err(f"expression too large (more than {MAX_NODES} nodes)", e.loc)
            deep = None if e is None else too_deep(e)
            if deep is not None:
                self._err(f"expression nested too deeply (more than {MAX_DEPTH} levels)", deep.loc)

    # expressions -----------------------------------------------------------
    def number(self, items):
        tok = items[0]
        text = str(tok)
        if any(c in text for c in ".eE"):
            value = float(text)            # past the float64 range: inf, as IEEE rounds it
        else:
            digits = text.lstrip("0")
            if len(digits) > 309 or int(text) > sys.float_info.max:     # the largest float64 has 309 digits
                self._err(f"integer {_short(text)} is too large: it has no float64 value (write inf, or a "
                          "float such as 1e300)", tok)
            value = int(text)
        return Num(value, loc=self._loc(tok))

    @lark.v_args(meta=True)
    def inf(self, meta, items):
        return Num(math.inf, loc=self._loc(meta))

    def sym(self, items):
        return Sym(str(items[0]), loc=self._loc(items[0]))

    def idx(self, items):
        name = str(items[0])
        if name in self.masks:  # a named mask: its condition, the same nodes at every use
            cond = self.masks[name].condition
            self._use(f"mask '{name}'", items[0], cond)
            return cond
        return Idx(name, loc=self._loc(items[0]))

    def _use(self, what: str, tok, expansion: Expr):
        ids = {id(n) for n in walk(expansion) if id(n) in self.scoped}
        if ids:
            self.uses.append((what, self._loc(tok), ids))

    def _check_scope(self, e: Einsum):
        """A mask's or a let's own index variables name coordinates of the
        Einsum using it: each must also be written in the Einsum itself (a
        mask restricts an iteration space; it does not add an index to it)."""
        nodes = [n for part in (e.output, e.expr, e.predicate) if part is not None for n in walk(part)]
        written = {n.name for n in nodes if isinstance(n, Idx) and id(n) not in self.scoped}
        for n in nodes:
            if isinstance(n, Idx) and id(n) in self.scoped and n.name not in written:
                owner = self.scoped[id(n)][1]
                what, loc = next(((w, lc) for w, lc, ids in self.uses if id(n) in ids), (owner, n.loc))
                raise ParseError(f"{what} uses {n.name}, which is not an index of {e.name} (its indices: "
                                 f"{', '.join(sorted(written)) or 'none'}); a mask or a let's own variable names "
                                 f"a coordinate of the Einsum that uses it (its definition: {n.loc})",
                                 loc, self.source)

    @lark.v_args(meta=True)
    def access(self, meta, items):
        name, *idx = items
        idx = () if idx == [None] else tuple(idx)
        return Access(str(name), idx, loc=self._loc(name))

    @lark.v_args(meta=True)
    def call(self, meta, items):
        fn, *args = items
        args = () if args == [None] else tuple(args)
        name = str(fn)
        if name in self.masks:
            self._err(f"'{name}' is a mask, not a function: write it without arguments (where {name})", fn)
        if name in self.lets:
            params, body = self.lets[name]
            if len(args) != len(params):
                self._err(f"'{name}' takes {len(params)} argument{'s' * (len(params) != 1)}, got {len(args)}", fn)
            out = substitute(body, dict(zip(params, args)))
            self._use(f"'{name}'", fn, body)
            if count_nodes(out) > MAX_NODES:
                self._err(f"the call of '{name}' expands to more than {MAX_NODES} nodes (nested `let`s "
                          "multiply their bodies); simplify the definitions", fn)
            return out
        if name not in FUNCTIONS:
            import difflib
            close = difflib.get_close_matches(name, sorted(FUNCTIONS), n=1)
            hint = (f" (did you mean {close[0]}?)" if close else "") + f"; known: {', '.join(sorted(FUNCTIONS))}"
            self._err(f"unknown function '{name}'{hint}", fn)
        want = RULES[name].arity
        if len(args) != want:
            self._err(f"function '{name}' takes {want} argument{'s' * (want != 1)}, got {len(args)}", fn)
        return Op(name, args, loc=self._loc(fn))

    def _binary(name):
        @lark.v_args(meta=True)
        def f(self, meta, items):
            return Op(name, (items[0], items[-1]), loc=self._loc(meta))
        return f

    add, sub, mul, div = _binary("add"), _binary("sub"), _binary("mul"), _binary("div")
    floordiv, mod, and_, or_ = _binary("floordiv"), _binary("mod"), _binary("and"), _binary("or")
    pow, band, bor = _binary("pow"), _binary("band"), _binary("bor")
    shl, shr = _binary("shl"), _binary("shr")

    @lark.v_args(meta=True)
    def compare(self, meta, items):
        lhs, op, rhs = items
        return Op(BINARY_INFIX[str(op)], (lhs, rhs), loc=self._loc(op))

    @lark.v_args(meta=True)
    def neg(self, meta, items):
        (a,) = items
        if isinstance(a, Num):  # literals are folded: `-1` is the constant -1
            return Num(-a.value, loc=self._loc(meta))
        return Op("neg", (a,), loc=self._loc(meta))

    @lark.v_args(meta=True)
    def not_(self, meta, items):
        return Op("not", (items[0],), loc=self._loc(meta))

    # statements ------------------------------------------------------------
    def rank_def(self, items):
        name, definition = items
        self._check_depth(definition)
        self.uses.clear()
        return RankStmt(Rank(str(name), definition, loc=self._loc(name)))

    def rank_stmt(self, items):
        return list(items)

    def partition_stmt(self, items):
        parent, outer, inner = (str(t) for t in items)
        return PartitionStmt(parent, outer, inner, *(self._loc(t) for t in items))

    def let_stmt(self, items):
        """`let near(p, m) = ...`: a named expression, expanded where it is
        called; the IR holds the expansion, so a cascade means the same
        with or without lets."""
        name, *rest = items
        body = rest.pop()
        self._check_depth(body)
        params = [] if rest == [None] else [str(t) for t in rest]
        if str(name) in FUNCTIONS or str(name) in REDUCE_RULES:
            self._err(f"'{name}' is a built-in function; choose another name", name)
        if str(name) in self.lets:
            self._err(f"'{name}' is already defined", name)
        if len(set(params)) != len(params):
            self._err(f"'{name}' repeats a parameter name", name)
        if str(name) in self.masks:
            self._err(f"'{name}' is already a mask", name)
        for n in walk(body):
            if not isinstance(n, Idx):
                continue
            if id(n) in self.scoped and n.name in params:
                # substituting the parameter would capture that coordinate
                self._err(f"parameter '{n.name}' of '{name}' has the name of the coordinate {n.name} that "
                          f"{self.scoped[id(n)][1]} uses (at {n.loc}); rename the parameter", name)
            if n.name not in params:  # a coordinate of the Einsum that calls it
                self.scoped.setdefault(id(n), (n, f"'{name}'"))
        self.lets[str(name)] = (params, body)
        self.uses.clear()
        return None

    @lark.v_args(meta=True)
    def empty_stmt(self, meta, items):
        """`empty rows = 0 | nan`; anything else is an error at the value."""
        (tok,) = items
        text = str(tok)
        value = "0" if tok.type == "NUMBER" and float(text) == 0 else text if text == "nan" else None
        if value is None:
            self._err(f"empty rows takes 0 (a row with no visible key gives 0, as in FlexAttention) or nan "
                      f"(IEEE's 0 / 0, the default), not {_short(text)}", tok)
        self.uses.clear()
        return EmptyRowsStmt(value, self._loc(meta))

    def mask_stmt(self, items):
        """`mask causal = m <= p`: a named condition, expanded where it is
        used (`where causal`); the cascade keeps the name for printing."""
        name, cond = items
        self._check_depth(cond)
        key = str(name)
        if key in self.masks:
            self._err(f"mask '{key}' is already defined (at {self.masks[key].loc}); a design defines each "
                      "mask once", name)
        if key in self.lets:
            self._err(f"'{key}' is already defined by a let", name)
        if key in FUNCTIONS or key in REDUCE_RULES or key in ("inf", "and", "or", "not", "where", "in"):
            self._err(f"'{key}' is a built-in name; choose another name for the mask", name)
        for n in walk(cond):
            if isinstance(n, Idx):
                self.scoped.setdefault(id(n), (n, f"mask '{key}'"))
        self.masks[key] = Mask(key, cond, loc=self._loc(name))
        self.uses.clear()
        return self.masks[key]

    def dim(self, items):
        name, plus = items
        if plus is not None and str(plus) != "1":
            self._err(f"a rank extent can only be extended by 1 (an iterative rank: {name}+1)", plus)
        return (str(name), plus is not None, self._loc(name))

    def literal_dim(self, items):
        """`INTV[NI, 2]`: a literal extent; `assemble` makes it the rank _2."""
        (tok,) = items
        if int(tok) < 1 or len(str(tok).lstrip("0")) > 10 or int(tok) > 2 ** 32:
            self._err(f"a literal extent must be an integer from 1 to 2**32, got {_short(str(tok))}", tok)
        return (str(int(tok)), False, self._loc(tok))

    # input domains: `in (0, 1)`, `>= 0` ---------------------------------------
    def bound_num(self, items):
        return (float(items[0]), items[0])

    def bound_neg(self, items):
        return (-float(items[0]), items[0])

    @lark.v_args(meta=True)
    def bound_inf(self, meta, items):
        return (math.inf, meta)

    @lark.v_args(meta=True)
    def bound_neginf(self, meta, items):
        return (-math.inf, meta)

    def _domain(self, lo, hi, lo_closed, hi_closed, meta):
        for (v, where), closed in ((lo, lo_closed), (hi, hi_closed)):
            if closed and math.isinf(v):
                self._err(f"a closed end of a domain must be finite, got {'-' if v < 0 else ''}inf: write "
                          f"that end open, with {'(' if v < 0 else ')'}", where)
        if not (lo[0] < hi[0] or (lo[0] == hi[0] and lo_closed and hi_closed)):
            self._err(f"empty domain: the lower end {lo[0]} is not below the upper end {hi[0]}", lo[1])
        return Domain(lo[0], hi[0], lo_closed, hi_closed)

    def _interval(lo_closed, hi_closed):
        @lark.v_args(meta=True)
        def f(self, meta, items):
            return self._domain(items[0], items[1], lo_closed, hi_closed, meta)
        return f

    domain_oo, domain_oc = _interval(False, False), _interval(False, True)
    domain_co, domain_cc = _interval(True, False), _interval(True, True)

    def domain_cmp(self, items):
        op, (v, where) = items
        inf = (math.inf, where)
        ninf = (-math.inf, where)
        forms = {">": ((v, where), inf, False, False), ">=": ((v, where), inf, True, False),
                 "<": (ninf, (v, where), False, False), "<=": (ninf, (v, where), False, True)}
        if str(op) not in forms:
            self._err(f"a domain is an interval (`in (0, 1)`) or a bound (`> 0`, `>= 0`, `< 1`, `<= 1`), "
                      f"not `{op}`", op)
        return self._domain(*forms[str(op)], None)

    def decl(self, items):
        role, name, *rest = items
        domain = rest.pop()
        dtype_tok = rest.pop()
        dims = [d for d in rest if d is not None]
        dtype = str(dtype_tok) if dtype_tok is not None else DEFAULT_DTYPE
        if dtype not in DTYPE_BYTES:
            self._err(f"unknown element type '{dtype}'; known: {', '.join(DTYPE_BYTES)}", dtype_tok)
        self.uses.clear()
        return TensorDecl(str(name), tuple(d[0] for d in dims), dtype, str(role),
                          frozenset(d[0] for d in dims if d[1]), loc=self._loc(name), domain=domain)

    def reduction(self, items):
        op, *vars_ = items
        vars_ = [] if vars_ == [None] else vars_
        return (str(op), tuple(str(v) for v in vars_), self._loc(op))

    def scan(self, items):
        """`cumsum[p]`, `cumprod[p, reverse, exclusive]`: the scanned index,
        then flags; anything else is an error at the word."""
        op, var, *flags = items
        if str(op) not in SCAN_OPS:
            import difflib
            close = difflib.get_close_matches(str(op), SCAN_OPS + ("sum", "max", "min"), n=1)
            self._err(f"unknown reduction or scan '{op}'" + (f" (did you mean {close[0]}?)" if close else "")
                      + "; a reduction is sum, max or min, a scan cumsum or cumprod", op)
        if str(var) in SCAN_FLAGS:
            self._err(f"{op}[...] names the scanned index first, then the flags (e.g. {op}[p, {var}])", var)
        seen = set()
        for f in flags:
            if str(f) not in SCAN_FLAGS:
                self._err(f"unknown flag '{f}' of {op}[{var}, ...]: a scan takes one index, then the flags "
                          f"{' and '.join(SCAN_FLAGS)}", f)
            if str(f) in seen:
                self._err(f"flag '{f}' repeated", f)
            seen.add(str(f))
        scan = Scan(str(op), str(var), "reverse" in seen, "exclusive" in seen, loc=self._loc(op))
        return ("scan", scan)

    @lark.v_args(meta=True)
    def einsum(self, meta, items):
        lhs, red, expr, pred = items
        scan = None
        if red is not None and red[0] == "scan":
            scan, red = red[1], None
        op, reduced = ("sum", None) if red is None else red[:2]
        self._check_depth(lhs, expr, pred)
        out = Einsum(lhs, expr, op, reduced, pred, loc=lhs.loc, scan=scan)
        if self.uses:
            self._check_scope(out)
        self.uses.clear()
        return out

    def start(self, items):
        out = []
        for s in items:
            if s is None:
                continue
            out.extend(s if isinstance(s, list) else [s])
        return out


def _parse_tree(text: str):
    """Lark's parse, with no state kept from one call to the next: should the
    cached parser fail in a way a grammar error cannot explain (a KeyError
    inside lark, seen after a kernel had failed in Triton's interpreter in
    the same process), it is rebuilt and the text parsed afresh once."""
    try:
        return _lark().parse(text)
    except lark.exceptions.LarkError:
        raise
    except Exception:  # noqa: BLE001
        _lark.cache_clear()
        return _lark().parse(text)


def _short(text: str, n: int = 24) -> str:
    return text if len(text) <= n else f"{text[:n // 2]}...{text[-4:]} ({len(text)} characters)"


def parse_statements(text: str, file: str = "<string>") -> list:
    if len(text) > MAX_SOURCE_CHARS:
        raise ParseError(f"the text is {len(text)} characters long; the limit is {MAX_SOURCE_CHARS} "
                         "(1 MiB; designs are a few KB)", Loc(file, 1, 1))
    try:
        tree = _parse_tree(text if text.endswith("\n") else text + "\n")
    except lark.exceptions.UnexpectedCharacters as e:
        raise ParseError(f"unexpected character {text[e.pos_in_stream]!r}; expected {_describe(e.allowed)}",
                         Loc(file, e.line, e.column), text) from None
    except lark.exceptions.UnexpectedToken as e:
        got = "end of line" if e.token.type == "_NL" else (
            "end of input" if e.token.type == "$END" else repr(str(e.token)))
        if e.token.type == "$END" or e.line == -1:
            loc = _end_of(text, file)
        else:
            loc = Loc(file, e.line, e.column)
        raise ParseError(f"unexpected {got}; expected {_describe(e.expected)}", loc, text) from None
    except lark.exceptions.UnexpectedEOF as e:
        raise ParseError(f"unexpected end of input; expected {_describe(e.expected)}",
                         _end_of(text, file), text) from None
    except lark.exceptions.LarkError as e:  # nothing but an EinError may reach the user
        raise ParseError(f"cannot parse: {e}", Loc(file, 1, 1), text) from None
    try:
        return _ToIR(file, text).transform(tree)
    except lark.exceptions.VisitError as e:
        if isinstance(e.orig_exc, ParseError):
            raise e.orig_exc from None
        loc = getattr(e.obj, "meta", e.obj)
        loc = Loc(file, loc.line, loc.column) if getattr(loc, "line", None) is not None else Loc(file, 1, 1)
        raise ParseError(f"cannot parse this statement: {e.orig_exc}", loc, text) from None


def _end_of(text: str, file: str) -> Loc:
    """Where the input ends: after its last character, not counting the
    newline that ends the last line (lark gives $END the last token's place)."""
    body = text.removesuffix("\n").removesuffix("\r")
    return Loc(file, body.count("\n") + 1, len(body) - body.rfind("\n"))


def header_comment(text: str) -> str:
    """The leading `#` comment block: the design's description and source."""
    doc = []
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("#"):
            break
        doc.append(s[1:].strip() if s[1:2] == " " or len(s) == 1 else s[1:])
    return "\n".join(doc).strip("\n")


def parse(text: str, file: str = "<string>", name: str | None = None) -> Cascade:
    """Parse and validate `.ein` text. Raises ParseError / ValidationError with file:line:col."""
    from .assemble import assemble
    statements = parse_statements(text, file)
    if name is None:
        name = Path(file).stem if not file.startswith("<") else "cascade"
    return assemble(statements, name=name, doc=header_comment(text), source=text, file=file)


def read_source(path: str | Path, limit: int = MAX_SOURCE_CHARS, error=ParseError) -> str:
    """A text file as UTF-8, at most `limit` bytes read (so `/dev/zero` or a
    huge file is refused, not loaded), a bad byte reported at its line and
    column. `error` is the EinError class to raise."""
    path = Path(path)
    shown = printable(str(path))
    try:
        if path.is_dir():
            raise error(f"cannot read {shown}: it is a directory")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"cannot read {shown}: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(f"{shown} is larger than {limit} bytes, the limit for an input file", Loc(str(path), 1, 1))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[data.rfind(b"\n", 0, e.start) + 1:e.start].decode("utf-8", "replace")) + 1
        raise error(f"byte 0x{data[e.start]:02x} is not valid UTF-8 (the file must be UTF-8 text)",
                    Loc(str(path), line, col)) from None


def parse_file(path: str | Path) -> Cascade:
    return parse(read_source(path), file=str(path))
