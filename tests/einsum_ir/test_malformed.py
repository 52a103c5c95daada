"""A corpus of malformed `.ein` inputs, syntax and meaning.

Every one must raise an `EinError` subclass (never another exception, never
nothing) that says where (file, line, column: asserted exactly, the column
wherever one place is the right one) and what (the name involved or what was
expected). Cases marked xfail are bugs found by this corpus; each reason says
what happens and what should.
"""
from __future__ import annotations

import pytest

import einsum_ir as ei
from einsum_ir.errors import EinError, ParseError, ValidationError

FILE = "bad.ein"
H = "rank M, P\ninput S[M, P]: f32\n"          # the header most cases share: line 3 is the Einsum
P, V = ParseError, ValidationError
ANY_LINE = object()                             # some line is required, none is singled out


def case(id, text, kind, line, at, *words, xfail=None):
    """`at` picks the column in `line`: a substring (its first occurrence; or
    (substring, n) for the n-th), an int, a set of acceptable columns (where
    two places are equally right, e.g. an operator or its operand), or None
    (the column is not pinned)."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(text, kind, line, at, words, id=id, marks=marks)


def column_of(text: str, line: int, at):
    if at is None or isinstance(at, (int, set)):
        return at
    needle, nth = (at, 1) if isinstance(at, str) else at
    src = text.split("\n")[line - 1]
    pos = -1
    for _ in range(nth):
        pos = src.index(needle, pos + 1)
    return pos + 1


CASES = [
    # ------------------------------------------------------------- syntax
    case("unexpected-character", H + "Y[m, p] = S[m, p] $ 2\n", P, 3, "$",
         "unexpected character '$'", "expected"),
    case("unexpected-unicode-character", H + "Y[m, p] = S[m, p] \u00d7 2\n", P, 3, "\u00d7",
         "unexpected character '\u00d7'"),
    case("unexpected-character-in-declaration", "rank M\ninput S[M]: f32 @\nY[m] = S[m]\n", P, 2, "@",
         "unexpected character '@'", "expected end of line"),
    case("nul-byte", "rank M\x00\ninput S[M]: f32\nY[m] = S[m]\n", P, 1, 7, "unexpected character '\\x00'"),
    case("missing-closing-bracket", H + "Y[m, p] = S[m, p\n", P, 3, 17,
         "unexpected end of line", "']'"),
    case("missing-closing-bracket-of-output", H + "Y[m, p = S[m, p]\n", P, 3, "=",
         "unexpected '='", "']'"),
    case("missing-opening-bracket", H + "Y[m, p] = S m, p]\n", P, 3, ("m", 2),
         "unexpected 'm'", "'['"),
    case("missing-closing-parenthesis", H + "Y[m, p] = exp(S[m, p]\n", P, 3, 22,
         "unexpected end of line", "')'"),
    case("extra-closing-parenthesis", H + "Y[m, p] = exp(S[m, p]))\n", P, 3, (")", 2),
         "unexpected ')'", "expected end of line"),
    case("missing-equals", H + "Y[m, p] S[m, p]\n", P, 3, "S", "unexpected 'S'", "'='"),
    case("double-equals-for-assignment", "rank M\ninput S[M]: f32\nY[m] == S[m]\n", P, 3, "==",
         "unexpected '=='", "expected '='"),
    case("missing-comma", H + "Y[m p] = S[m, p]\n", P, 3, "p", "unexpected 'p'", "','"),
    case("trailing-comma", H + "Y[m, p] = S[m, p,]\n", P, 3, ("]", 2),
         "unexpected ']'", "expected an expression"),
    case("number-glued-to-name", H + "Y[m, p] = 2S[m, p]\n", P, 3, "S", "unexpected 'S'"),
    case("unknown-function-did-you-mean", H + "Y[m, p] = expo(S[m, p])\n", P, 3, "expo",
         "unknown function 'expo'", "did you mean exp?"),
    case("unknown-function-lists-known", H + "Y[m, p] = foo(S[m, p])\n", P, 3, "foo",
         "unknown function 'foo'", "known:", "select", "sigmoid"),
    case("reduction-name-called-as-function", H + "Y[m, p] = sum(S[m, p], 1)\n", P, 3, "sum",
         "unknown function 'sum'"),
    case("function-arity-max", H + "Y[m, p] = max(S[m, p])\n", P, 3, "max",
         "function 'max' takes 2 arguments, got 1"),
    case("function-arity-exp", H + "Y[m, p] = exp(S[m, p], 2)\n", P, 3, "exp",
         "function 'exp' takes 1 argument, got 2"),
    case("function-arity-select", H + "Y[m, p] = select(m < p, 1)\n", P, 3, "select",
         "function 'select' takes 3 arguments, got 2"),
    case("function-arity-clip-empty", H + "Y[m, p] = clip()\n", P, 3, "clip",
         "function 'clip' takes 3 arguments, got 0"),
    case("unknown-dtype", "rank M\ninput S[M]: f17\nY[m] = S[m]\n", P, 2, "f17",
         "unknown element type 'f17'", "f16", "bf16"),
    case("upper-case-dtype", "rank M\ninput S[M]: F32\nY[m] = S[m]\n", P, 2, "F32",
         "unexpected 'F32'", "lower case"),
    case("plus-two-in-declaration", "rank M, P\ninput S[M+2, P]: f32\nY[m, p] = S[m, p]\n", P, 2, "2",
         "extended by 1", "M+1"),
    case("lower-case-rank-name", "rank m, P\ninput S[M, P]: f32\nY[m, p] = S[m, p]\n", P, 1, "m",
         "unexpected 'm'", "upper-case"),
    case("number-as-rank-name", "rank 3\ninput S[M]: f32\nY[m] = S[m]\n", P, 1, "3", "unexpected '3'"),
    case("unknown-role", "rank M\nconst S[M]: f32\nY[m] = S[m]\n", P, 2, 1,
         "unexpected 'const'", "'input', 'output' or 'tensor'"),
    case("declaration-without-brackets", "rank M\ninput S: f32\nY[m] = S[m]\n", P, 2, ":", "expected '['"),
    case("declaration-without-name", "rank M\ninput [M]: f32\nY[m] = S[m]\n", P, 2, "[",
         "unexpected '['", "upper-case"),
    case("unclosed-declaration", "rank M\ninput S[M: f32\nY[m] = S[m]\n", P, 2, ":",
         "unexpected ':'", "']'"),
    case("partition-with-one-part", "partition M -> M1\ninput S[M]: f32\nY[m] = S[m]\n", P, 1, 18,
         "unexpected end of line", "','"),
    case("rank-definition-without-value", "rank K =\ninput S[K]: f32\nY[k] = S[k]\n", P, 1, 9,
         "unexpected end of line", "expected an expression"),
    case("chained-comparison", H + "Y[m, p] = S[m, p] where 0 < m < p\n", P, 3, ("<", 2),
         "unexpected '<'", "expected"),
    case("two-where-clauses", H + "Y[m, p] = S[m, p] where m < p where m > 0\n", P, 3, ("where", 2),
         "unexpected 'where'", "end of line"),
    case("unknown-reduction", H + "Y[m] = prod[p] S[m, p]\n", P, 3, "prod", "unknown reduction or scan 'prod'",
         "sum, max or min", "cumsum or cumprod"),
    case("unknown-scan-flag", H + "Y[m, p] = cumsum[p, backward] S[m, p]\n", P, 3, "backward",
         "unknown flag 'backward'", "reverse and exclusive"),
    case("scan-flag-first", H + "Y[m, p] = cumsum[reverse, p] S[m, p]\n", P, 3, "reverse",
         "names the scanned index first"),
    case("scan-over-reduced-index", H + "Y[m] = cumsum[p] S[m, p]\n", V, 3, "cumsum",
         "Y scans over p, which is not an index of its output"),
    case("reduction-without-expression", "rank M\ninput S[M]: f32\nY[] = sum[m]\n", P, 3, 13,
         "unexpected end of line", "expected an expression"),
    case("dangling-operator-at-end-of-file", H + "Y[m, p] = S[m, p] +", P, 3, 20,
         "unexpected end of line", "expected an expression"),
    case("error-on-a-continued-line", H + "Y[m, p] = S[m, \\\n    p +]\n", P, 4, "]",
         "unexpected ']'", "expected an expression"),
    case("crlf-line-endings", "rank M, P\r\ninput S[M, P]: f32\r\nY[m, p] = S[m, p] +\r\n", P, 3, 20,
         "unexpected end of line"),
    case("end-of-input-after-continuation", H + "Y[m, p] = S[m, p] + \\", P, 3, 22,
         "unexpected end of input", "expected an expression"),
    case("end-of-input-after-continuation-and-newline", H + "Y[m, p] = S[m, p] + \\\n", P, 3, 22,
         "unexpected end of input"),
    case("pathologically-deep-expression", H + "Y[m, p] = " + "-" * 2000 + "S[m, p]\n", P, 3, None,
         "nested too deeply"),
    case("pathologically-long-sum", H + "Y[m, p] = " + " + ".join(["S[m, p]"] * 500) + "\n", P, 3, None,
         "nested too deeply"),
    case("pathologically-deep-let-expansion", H + "let f0(x) = " + "-(" * 50 + "x" + ")" * 50 + "\n"
         + "".join(f"let f{i}(x) = f{i - 1}(f{i - 1}(x))\n" for i in range(1, 8)) + "Y[m, p] = f7(S[m, p])\n",
         P, ANY_LINE, None, "nested too deeply"),

    # ------------------------------------------------------------- tensors and accesses
    case("undefined-tensor-did-you-mean", H + "Y[m, p] = SS[m, p]\n", V, 3, "SS",
         "undefined tensor SS", "did you mean S?"),
    case("undefined-tensor-in-where", H + "Y[m, p] = S[m, p] where Mask[m, p]\n", V, 3, "Mask",
         "undefined tensor Mask"),
    case("undefined-tensor-on-a-later-line", H + "Y[m, p] = S[m, p]\nZ[m] = X[m, p]\n", V, 4, "X",
         "undefined tensor X"),
    case("access-with-too-few-indices", H + "Y[m, p] = S[m]\n", V, 3, "S",
         "S has 2 ranks [M, P]", "indexed with 1"),
    case("access-with-too-many-indices", H + "Y[m, p] = S[m, p, p]\n", V, 3, "S",
         "S has 2 ranks [M, P]", "indexed with 3"),
    case("output-arity-against-declaration", H + "output Y[M, P]: f32\nY[m] = S[m, p]\n", V, 4, 1,
         "Y has 2 ranks [M, P]", "indexed with 1"),
    case("bare-index-of-wrong-rank", H + "Y[m, p] = S[p, m]\n", V, 3, ("p", 2),
         "rank mismatch", "S's rank 1 is M", "indexed by p (rank P)"),
    case("output-index-of-wrong-rank", H + "output Y[M, P]: f32\nY[p, m] = S[m, p]\n", V, 4, "p",
         "rank mismatch", "Y's rank 1 is M", "p (rank P)"),
    case("index-variable-without-rank", H + "Y[m, p] = S[m, p] * q\n", V, 3, "q",
         "index variable q has no rank Q"),
    case("index-variable-without-rank-in-index", H + "Y[m, p] = S[m + q, p]\n", V, 3, "q",
         "index variable q has no rank Q"),
    case("index-variable-without-rank-in-output", H + "Y[m, q] = S[m, p]\n", V, 3, "q",
         "index variable q has no rank Q"),
    case("index-variable-without-rank-did-you-mean", "rank P\npartition M -> M1, M0\ninput S[M, P]: f32\n"
         "Y[m1, p] = S[m1 * M0 + m0 + mx, p]\n", V, 4, "mx", "index variable mx has no rank MX",
         "did you mean M?"),
    case("float-in-index", H + "Y[m, p] = S[m + 0.5, p]\n", V, 3, "0.5", "not a whole number", "m + 0.5",
         "inside floor( ) or ceil( )"),
    case("inf-in-index", H + "Y[m, p] = S[inf, p]\n", V, 3, "inf", "index inf of S uses inf, which is not a whole"),
    case("float-tensor-read-inside-index", H + "input I[M]: f32\nY[m, p] = S[I[m], p]\n", V, 4, "I[",
         "a gather reads I inside an index of S", "must hold integers (i32 or i8), but I is f32"),
    case("function-in-index", H + "Y[m, p] = S[exp(m), p]\n", V, 3, "exp", "uses exp outside floor( ) and ceil( )",
         "make a real-valued part whole with floor(...)"),
    case("number-as-condition-in-index", H + "Y[m, p] = S[select(m, 0, 1), p]\n", V, 3, ("m,", 2),
         "select expects a condition here, got a number: m"),
    case("tensor-used-as-symbol", H + "Y[m, p] = S\n", V, 3, ("S", 1), "S is a tensor: index it"),
    case("output-index-expression", H + "Y[m * 2, p] = S[m, p]\n", V, 3, "m * 2",
         "output index m * 2 of Y must be an index variable"),
    case("output-index-symbol", H + "Y[M, p] = S[m, p]\n", V, 3, "M", "output index M of Y"),
    case("output-index-repeated", H + "Y[m, m] = S[m, m + 1]\n", V, 3, {1, 6}, "Y", "twice"),
    case("writing-an-input", H + "S[m, p] = 1\n", V, 3, 1, "S is an input", "cannot be written"),
    case("tensor-written-twice", H + "Y[m, p] = S[m, p]\nY[m, p] = S[m, p] * 2\n", V, 4, 1,
         "tensor Y is written by more than one Einsum", "bad.ein:3:1"),
    case("declared-tensor-never-computed", H + "tensor Z[M]: f32\nY[m, p] = S[m, p]\n", V, 3, "Z",
         "tensor Z is declared but no Einsum computes it"),
    case("input-never-read", "rank M\ninput S[M]: f32\ninput T[M]: f32\nY[m] = S[m]\n", V, 3, "T",
         "input T is never read"),
    case("rank-and-tensor-share-a-name", "rank M, P\ninput M[M, P]: f32\nY[m, p] = M[m, p]\n", V, 2, "M",
         "M names both a rank and a tensor"),

    # ------------------------------------------------------------- ranks and declarations
    case("rank-declared-twice-same-line", "rank M, P, M\ninput S[M, P]: f32\nY[m, p] = S[m, p]\n", V, 1,
         ("M", 2), "rank M is declared twice"),
    case("rank-declared-twice-two-lines", "rank M\nrank P\nrank M\ninput S[M, P]: f32\nY[m, p] = S[m, p]\n",
         V, 3, "M", "rank M is declared twice"),
    case("partition-part-declared-again", "partition M -> M1, M0\nrank M0\ninput S[M]: f32\nY[m] = S[m]\n",
         V, 2, "M0", "rank M0 is declared twice"),
    case("partition-part-already-declared", "rank M1\npartition M -> M1, M0\ninput S[M]: f32\nY[m] = S[m]\n",
         V, 2, "M1", "rank M1 is declared twice"),
    case("partition-part-repeated", "partition M -> M1, M1\ninput S[M]: f32\nY[m] = S[m]\n", V, 1,
         ("M1", 2), "rank M1 is declared twice"),
    case("partition-part-is-the-parent", "partition M -> M, M0\ninput S[M]: f32\nY[m] = S[m]\n", V, 1,
         ("M", 2), "rank M is declared twice"),
    case("tensor-declared-twice", "rank M, P\ninput S[M, P]: f32\ninput S[M]: f32\nY[m, p] = S[m, p]\n",
         V, 3, "S", "tensor S is declared twice", "bad.ein:2:7"),
    # a repeated rank is the alias M2 the language makes (docs/notation.md), unless M2 is taken
    case("repeated-rank-alias-already-declared", "rank M, M2\ninput S[M, M]: f32\nY[m] = S[m, m2]\n", V, 2, "S",
         "repeated M", "rank M2 is already declared"),
    case("mixed-case-rank-name", "rank Mx, P\ninput S[Mx, P]: f32\nY[p] = S[mx, p]\n", V, 1, "Mx",
         "rank name Mx must be upper case"),
    case("mixed-case-partitioned-rank-name", "partition Mx -> M1, M0\ninput S[M1]: f32\nY[m1] = S[m1]\n", V, 1,
         "Mx", "rank name Mx must be upper case"),
    case("rank-defined-by-itself", "rank M = M * 2\ninput S[M]: f32\nY[m] = S[m]\n", V, 1, "M",
         "the extent of rank M is defined in terms of itself"),
    case("rank-defined-by-index-variable", "rank K = k\ninput S[K]: f32\nY[k] = S[k]\n", V, 1, ("k", 2),
         "the extent of rank K may use only shape symbols and numbers"),
    case("ranks-defined-by-each-other", "rank A = B * 2, B = A + 1\ninput S[A]: f32\nY[a] = S[a]\n", V, 1,
         "A", "A", "B"),
    case("rank-defined-by-a-tensor", "rank M\nrank K = S * 2\ninput S[M]: f32\nY[m] = S[m]\n", V, 2, "S",
         "S"),

    # ------------------------------------------------------------- recurrences and dependencies
    case("iterative-rank-without-initial-value",
         H + "R[m + 1, p] = R[m, p] + S[m, p]\nY[p] = R[M, p]\n", V, 3, 1,
         "iterative rank without an initial value", "R[0, p] = 0"),
    case("initial-value-without-recurrence", H + "R[0, p] = 0\nY[m, p] = S[m, p]\n", V, 3, 1,
         "R has an initial value but no Einsum that iterates it"),
    case("initial-value-without-recurrence-declared",
         H + "tensor R[M+1, P]: f32\nR[0, p] = 0\nY[m, p] = S[m, p] + R[m, p]\n", V, 4, 1,
         "R has an initial value but no Einsum that iterates it"),
    case("two-initial-values",
         H + "R[0, p] = 0\nR[0, p] = 1\nR[m + 1, p] = R[m, p] + S[m, p]\nY[p] = R[M, p]\n", V, 4, 1,
         "tensor R has more than one initial value"),
    case("initial-value-of-non-iterative-rank",
         H + "tensor R[M, P]: f32\nR[0, p] = 0\nR[m + 1, p] = R[m, p] + S[m, p]\nY[p] = R[M, p]\n", V, 4, "0",
         "constant output index", "declare M+1"),
    case("written-at-v-plus-1-not-declared-iterative", H + "output R[M, P]: f32\nR[m + 1, p] = S[m, p]\n",
         V, 4, "m + 1", "R is written at m+1", "not iterative"),
    case("written-at-v-plus-2",
         H + "tensor R[M+1, P]: f32\nR[0, p] = 0\nR[m + 2, p] = R[m, p] + S[m, p]\nY[p] = R[M, p]\n", V, 5,
         "m + 2", "output index m + 2 of R"),
    case("two-iterative-indices",
         H + "tensor R[M+1, P+1]: f32\nR[0, p] = 0\nR[m + 1, p + 1] = R[m, p] + S[m, p]\nY[p] = R[M, p]\n",
         V, 5, 1, "at most one output index may be iterative"),
    case("cycle-not-carried",
         H + "A[m, p] = S[m, p] + B[m, p]\nB[m, p] = A[m, p] * 2\nY[m, p] = B[m, p]\n", V, 3, 1,
         "cycle not carried by an iterative rank", "A -> B -> A"),
    case("recurrence-reading-current-iterate",
         H + "R[0, p] = 0\nR[m + 1, p] = R[m + 1, p] + S[m, p]\nY[p] = R[M, p]\n", V, 4, 1,
         "cycle not carried by an iterative rank", "R -> R"),
    case("recurrence-over-two-ranks",
         "rank M, N\ninput S[M, N]: f32\nR[0, n] = 0\nQ[m, 0] = 0\nR[m + 1, n] = R[m, n] + Q[m, n]\n"
         "Q[m, n + 1] = Q[m, n] + R[m, n]\nY[n] = R[M, n]\nZ[m] = Q[m, N] + S[m, 0]\n", V, 5, 1,
         "must step over exactly one iterative rank", "R -> Q -> R"),

    # ------------------------------------------------------------- reductions
    # A reduction error may point at the Einsum (column 1) or at the name in the list.
    case("reduction-over-rank-not-in-iteration-space", H + "Y[m] = sum[p, e] S[m, p]\n", V, 3, {1, 15},
         "Y reduces over e", "not in the iteration space"),
    case("reduction-list-missing-a-reduced-rank",
         "rank M, P, E\ninput S[M, P, E]: f32\nY[m] = sum[p] S[m, p, e]\n", V, 3, {1, 23},
         "index e is absent from the output", "lists only [p]"),
    case("empty-reduction-list-missing-a-reduced-rank", H + "Y[m] = max[] S[m, p]\n", V, 3, {1, 19},
         "index p is absent from the output", "lists only []"),
    case("reduction-over-output-rank", H + "Y[m] = sum[m, p] S[m, p]\n", V, 3, {1, 12},
         "Y reduces over m", "in the output"),
    case("reduction-list-repeats-a-rank", "rank M\ninput S[M]: f32\nY[] = sum[m, m] S[m]\n", V, 3, {1, 14},
         "m"),

    # ------------------------------------------------------------- conditions and values
    case("predicate-that-is-not-a-condition", H + "Y[m, p] = S[m, p] where m + p\n", V, 3, ("m", 3),
         "`where` clause of Y must be a condition", "m + p"),
    case("condition-used-as-value", H + "Y[m, p] = m < p\n", V, 3, {11, 13},
         "the value of Y is a condition", "select(cond, a, b)"),
    case("bool-tensor-as-value", "rank M\ninput B[M]: bool\nY[m] = B[m]\n", V, 3, "B",
         "the value of Y is a condition"),
    case("bitwise-of-a-float-tensor", H + "Y[m, p] = S[m, p] & 1\n", V, 3, ("S", 1),
         "`&` in Y takes integers", "S[m, p]"),
    case("shift-of-a-quotient", H + "Y[m, p] = S[m, p] + (m << p / 2)\n", V, 3, ("p", 3),
         "`<<` in Y takes integers", "operand 2"),
    case("and-applied-to-numbers", H + "Y[m, p] = S[m, p] where m and p\n", V, 3, ("m", 3),
         "and expects a condition here, got a number: m"),
    case("and-applied-to-tensor-values", H + "Y[m, p] = select(S[m, p] and 1, 0, 1)\n", V, 3, ("S", 1),
         "and expects a condition here, got a number: S[m, p]"),
    case("or-applied-to-numbers", H + "Y[m, p] = S[m, p] where m < p or 1\n", V, 3, "1",
         "or expects a condition here, got a number: 1"),
    case("not-applied-to-a-number", H + "Y[m, p] = S[m, p] where not m\n", V, 3, ("m", 3),
         "not expects a condition here, got a number: m"),
    case("select-with-numeric-condition", H + "Y[m, p] = select(m, 1, 2)\n", V, 3, ("m", 2),
         "select expects a condition here, got a number: m"),
    case("negated-condition", H + "Y[m, p] = S[m, p] where -(m < p)\n", V, 3, ("-", 1),
         "`where` clause of Y must be a condition"),

    # ------------------------------------------------------------- the whole cascade
    case("empty-input", "", V, 1, 1, "no Einsums"),
    case("only-comments-and-blank-lines", "# a design\n\n   \n# nothing here\n", V, ANY_LINE, None, "no Einsums"),
    case("declarations-without-einsums", "rank M\ninput S[M]: f32\n", V, ANY_LINE, None, "no Einsums"),
    case("no-output-only-a-recurrence",
         "rank M\ninput S[M]: f32\nR[0] = 0\nR[m + 1] = R[m] + S[m]\n", V, ANY_LINE, None, "no output",
         "output NAME[...]"),
    case("no-output-declared-intermediate", "rank M\ninput S[M]: f32\ntensor Y[M]: f32\nY[m] = S[m]\n",
         V, ANY_LINE, None, "no output"),
]


def error_of(text: str) -> EinError:
    try:
        ei.parse(text, file=FILE)
    except EinError as e:
        return e
    except Exception as e:  # noqa: BLE001 - the point: nothing but an EinError may escape
        pytest.fail(f"raised {type(e).__module__}.{type(e).__name__} instead of an EinError: {str(e)[:300]}")
    pytest.fail("accepted: no error raised")


@pytest.mark.parametrize("text, kind, line, at, words", CASES)
def test_malformed_input_is_reported_where_and_what(text, kind, line, at, words):
    err = error_of(text)
    assert isinstance(err, kind), f"{type(err).__name__}, expected {kind.__name__}: {err}"
    assert err.loc is not None and err.loc.file == FILE, f"no location: {err}"
    assert isinstance(err.line, int) and isinstance(err.column, int) and err.column >= 1
    if line is not ANY_LINE:
        assert err.line == line, str(err)
        want = column_of(text, line, at)
        if isinstance(want, set):
            assert err.column in want, str(err)
        elif want is not None:
            assert err.column == want, str(err)
    assert str(err).startswith(f"{FILE}:{err.line}:{err.column}: error: "), str(err)
    for w in words:
        assert w in err.message, f"{w!r} not in: {err.message}"


def test_the_corpus_is_large_and_has_no_duplicates():
    texts = [p.values[0] for p in CASES]
    assert len(texts) >= 40
    assert len(set(texts)) == len(texts)
    assert {p.values[1] for p in CASES} == {ParseError, ValidationError}


# ------------------------------------------------------------- the rendered message

def source_and_caret(err: EinError) -> tuple[str, str]:
    lines = str(err).split("\n")
    assert len(lines) == 3, str(err)
    return lines[1], lines[2]


@pytest.mark.parametrize("text, line, needle", [
    pytest.param(H + "Y[m, p] = S[m, p] $ 2\n", 3, "$", id="syntax"),
    pytest.param(H + "Y[m, p] = S[m, p] + Q[m]  # trailing comment\n", 3, "Q", id="undefined-tensor"),
    pytest.param("# doc\n\n" + H + "Y[m, p] = S[p, m]\n", 5, "p, m]", id="after-a-header-comment"),
    pytest.param(H + "Y[m, p] = S[m, \\\n    q]\n", 4, "q", id="on-a-continued-line"),
    pytest.param("rank M, P\r\ninput S[M, P]: f32\r\nY[m, p] = S[m, p] * X[m]\r\n", 3, "X", id="crlf"),
    pytest.param("rank M, P\n\finput S[M, P]: f32\nY[m, p] = S[m, p] * X[m]\n", 3, "X", id="form-feed"),
])
def test_message_shows_the_source_line_and_a_caret(text, line, needle):
    err = error_of(text)
    src_line = text.split("\n")[line - 1].rstrip("\r")
    column = src_line.index(needle) + 1
    assert (err.line, err.column) == (line, column), str(err)
    src, caret = source_and_caret(err)
    assert src == "  " + src_line
    assert caret == "  " + " " * (column - 1) + "^"


def test_caret_lines_up_under_tabs():
    err = error_of(H + "Y[m, p] =\tS[m, p]\t+ Q[m]\n")
    assert (err.line, err.column) == (3, 21)
    src, caret = source_and_caret(err)
    assert "\t" not in src and "\t" not in caret
    assert src[caret.index("^")] == "Q", str(err)
