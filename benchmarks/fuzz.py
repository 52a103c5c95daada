"""Fuzzing attnc's front doors: the parser, the executor, the analyses, the
YAML loaders and the command line, fed mutated library designs and presets,
grammar-generated designs, and hostile names, files and command lines.

Each case runs in a fresh process (forked from a worker that has already
imported attnc, so a case costs milliseconds, not an interpreter start) with
a time limit and a memory limit, and ends in one outcome:

    accepted        the input was valid and every stage ran
    clean error     an EinError: a message for the user, no traceback
    internal error  any other exception, a failed round trip, or (command
                    line) a traceback or an "internal error" line shown
    hang            still running at the time limit (killed)
    crash           the process died otherwise (a signal, out of memory)

    python benchmarks/fuzz.py                      # the full run (docs/benchmarks.md)
    python benchmarks/fuzz.py --designs 300 --yaml 60 --cli 30 --seed 1

It prints a table of outcomes per kind and, for every case that is not
accepted or a clean error, its input, so that a finding can be replayed.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUTCOMES = ("accepted", "clean error", "internal error", "hang", "crash")
_CODES = {0: "accepted", 2: "clean error", 3: "internal error"}
MEMORY_LIMIT = 3 << 30        # bytes of address space a case may map beyond what the worker holds


@dataclass
class Case:
    kind: str                 # "design", "yaml:gpu", "yaml:spatial", "yaml:mapping", "cli"
    source: str               # where it came from (mutation, generator, hostile)
    payload: object           # design text, YAML text, or argv (list of str)
    files: dict = field(default_factory=dict)   # name -> text or bytes, written beside the case


# ---------------------------------------------------------------- running one case

def _run_design(text: str) -> None:
    """Parse; round trip; execute at small shapes; analyse. Raises on any failure."""
    import numpy as np

    import einsum_ir as ei
    from einsum_ir.analysis import analyze
    from einsum_ir.shapes import symbols_used
    c = ei.parse(text, file="fuzz.ein")
    again = ei.parse(str(c), file="printed.ein", name=c.name)
    if again != c:
        raise AssertionError("parse(print(c)) != c")
    rng = random.Random(len(text))
    ranks = {r.name: r for r in c.ranks}
    shapes = {}
    for s in symbols_used(c):
        r = ranks.get(s)
        if r is None:
            shapes[s] = rng.choice([0, 1, 2, 3])
        elif r.definition is None and r.part != "outer":
            shapes[s] = rng.choice([1, 2, 3, 4])
    for t in c.tensors:
        if t.dtype == "bool":
            shapes[f"density_{t.name}"] = 0.5
    given = {k: v for k, v in shapes.items() if not k.startswith("density_")}
    with np.errstate(all="ignore"):
        out = ei.execute(c, ei.random_inputs(c, given, seed=0), given)
    assert all(isinstance(v, np.ndarray) for v in out.values())
    a = analyze(c)
    a.at(shapes)


def _run_yaml(kind: str, path: str) -> None:
    if kind == "yaml:gpu":
        from hw_models import load_gpu
        load_gpu(path)
    elif kind == "yaml:spatial":
        from hw_models import load_spatial
        load_spatial(path)
    else:
        from mappers.mapping import load_mapping
        load_mapping(path)


def _child(case: Case, workdir: str, timeout: float) -> None:
    """Runs in the forked process: never returns. Exit 0 accepted, 2 clean
    error, 3 internal error (details on stderr, which is a file)."""
    signal.setitimer(signal.ITIMER_REAL, timeout)          # SIGALRM's default action ends the process
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = _mapped_bytes()
    if hard == resource.RLIM_INFINITY or hard > used + MEMORY_LIMIT:
        resource.setrlimit(resource.RLIMIT_AS, (used + MEMORY_LIMIT, hard))
    os.chdir(workdir)
    for name, data in case.files.items():
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(os.path.join(workdir, name), mode) as f:
            f.write(data)
    code = 0
    try:
        if case.kind == "cli":
            from attnc.cli import main
            code = main(list(case.payload))
        elif case.kind == "design":
            _run_design(case.payload)
        else:
            path = os.path.join(workdir, "fuzz.yaml")
            with open(path, "wb" if isinstance(case.payload, bytes) else "w") as f:
                f.write(case.payload)
            _run_yaml(case.kind, path)
    except SystemExit as e:                # argparse: 2 for a usage error
        code = e.code if isinstance(e.code, int) else 2
    except BaseException as e:             # noqa: BLE001
        from einsum_ir import EinError
        if isinstance(e, EinError):
            code = 2
        else:
            traceback.print_exc()
            code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if code in (0, 2) else 3)


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


def run_case(case: Case, timeout: float) -> tuple[str, float, str]:
    """(outcome, seconds, what the user would have seen) of one case in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="attnc-fuzz-") as workdir:
        out_path = os.path.join(workdir, ".output")
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:                                        # the child
            try:
                fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
                sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True)
                _child(case, workdir, timeout)
            finally:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        dt = time.perf_counter() - t0
        try:
            shown = Path(out_path).read_text(errors="replace")
        except OSError:
            shown = ""
    if os.WIFSIGNALED(status):
        return ("hang" if os.WTERMSIG(status) == signal.SIGALRM else "crash"), dt, shown
    outcome = _CODES.get(os.WEXITSTATUS(status), "crash")
    if case.kind == "cli" and outcome != "crash" and ("Traceback (most recent call last)" in shown
                                                      or "internal error" in shown):
        outcome = "internal error"
    if outcome == "clean error" and "MemoryError" in shown:
        outcome = "crash"
    return outcome, dt, shown


def _worker(args):
    case, timeout = args
    outcome, dt, shown = run_case(case, timeout)
    return case, outcome, dt, shown


def _init_worker():
    """Import what the cases use once, before any fork: each case starts warm."""
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import einsum_ir.analysis  # noqa: F401
    import attnc.cli  # noqa: F401
    import hw_models  # noqa: F401
    import mappers.mapping  # noqa: F401
    import simulator.analytical  # noqa: F401
    try:
        import attnc.gpu  # noqa: F401
    except ImportError:
        pass
    # warm every lazy import and the parser's tables (built once, then shared by
    # every forked case: ~0.5 s a case otherwise), and make the cases run the
    # code as it was when the run began, even if files change during the run
    import einsum_ir as ei
    from hw_models import load_gpu, load_spatial
    from mappers.mapping import load_mapping
    # the library once, so that the analyses' caches (sympy forms of
    # predicates) are warm as in a long-running process: a cold analysis of
    # gna-2d alone takes ~6 s on the shared 2-core sandbox
    from einsum_ir.analysis import analyze
    for name in ei.library.names():
        try:
            analyze(ei.library.load(name))
            _run_design(ei.library.path(name).read_text())
        except ei.EinError:
            pass
    load_gpu("h100"), load_spatial("fusemax"), load_mapping("fusemax-binding")
    from attnc.cli import build_parser
    build_parser()


def run_all(cases: list[Case], timeout: float, workers: int, progress=None):
    ctx = mp.get_context("fork")
    results = []
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for i, r in enumerate(pool.imap_unordered(_worker, [(c, timeout) for c in cases], chunksize=4)):
            results.append(r)
            if progress and r[1] not in ("accepted", "clean error"):
                print(f"  found: {r[1]} ({r[0].kind}, {r[0].source}): {r[0].payload!r}"[:3000]
                      + "\n" + r[3][-1500:], file=sys.stderr, flush=True)
            if progress and (i + 1) % 500 == 0:
                print(f"  {i + 1}/{len(cases)}", file=sys.stderr, flush=True)
    return results


# ---------------------------------------------------------------- generating cases

_CHARS = list("[](),=+-*/%<>!#:._\\ \t\n0123456789aemMpPQK") + ["\x00", "\u00e9", "\u202e", "\ufeff", "//", "->"]
_NUMBERS = ["0", "-1", "1e308", "1e999", "9" * 300, "0.0", "1e-320", "inf", "-inf", "2.5", "9007199254740993",
            "00000000000000000001"]
_NAMES = ["I", "IF", "If", "None", "True", "False", "Q_s0", "SUM", "INF", "NOT", "M1", "X" * 300, "lambda",
          "import", "tl", "pid", "offs_m", "acc", "self", "__class__", "_", "range", "A\u00e9"]
_OPS = ["+", "-", "*", "/", "//", "%", "<", "<=", "==", "!=", "and", "or", "not", ","]
_CLAUSES = [" where m % 0 == 0", " where m <= p", " where p - m < W", " where abs(p - m) <= W // 0",
            " where m / (p - m) < 1", " where X[m]", " where m % W == 0"]


def _token_spans(text: str):
    import re
    return [(m.start(), m.end(), m.group()) for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*|\d+(\.\d*)?(e[+-]?\d+)?|//|[-+*/%<>=!]=?", text)]


def mutate(text: str, rng: random.Random) -> str:
    """One random edit: of a character, a token, a line, or a hostile addition."""
    lines = text.split("\n")
    op = rng.randrange(12)
    if op == 0 and text:                                    # delete a character
        i = rng.randrange(len(text))
        return text[:i] + text[i + 1:]
    if op == 1:                                             # insert a character
        i = rng.randrange(len(text) + 1)
        return text[:i] + rng.choice(_CHARS) + text[i:]
    if op in (2, 3, 4):                                     # replace a token
        spans = _token_spans(text)
        if spans:
            a, b, tok = rng.choice(spans)
            if tok[0].isdigit():
                new = rng.choice(_NUMBERS)
            elif tok[0].isalpha() or tok[0] == "_":
                pool = _NAMES + [t for *_, t in spans if t[0].isalpha()]
                new = rng.choice(pool)
                new = new.lower() if tok.islower() and rng.random() < 0.5 else new
            else:
                new = rng.choice(_OPS)
            return text[:a] + new + text[b:]
    if op == 5 and len(lines) > 1:                          # delete a line
        del lines[rng.randrange(len(lines))]
    elif op == 6:                                           # duplicate a line
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif op == 7 and len(lines) > 1:                        # swap two lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 8:                                           # a predicate clause
        eins = [i for i, ln in enumerate(lines) if "=" in ln and "[" in ln.split("=")[0] and "where" not in ln]
        if eins:
            i = rng.choice(eins)
            lines[i] += rng.choice(_CLAUSES)
    elif op == 9:                                           # nested lets
        n = rng.randrange(2, 14)
        lets = ["let f0(x) = x + 1"] + [f"let f{i}(x) = f{i - 1}(f{i - 1}(x)) * f{i - 1}(x)" for i in range(1, n)]
        lines[1:1] = lets
    elif op == 10:                                          # deep parentheses around an expression
        i = rng.randrange(len(lines))
        if "= " in lines[i]:
            k = rng.choice([10, 60, 99, 101, 500, 3000])
            head, _, tail = lines[i].partition("= ")
            lines[i] = head + "= " + "(" * k + tail.split(" where")[0] + ")" * k
    else:                                                   # a hostile statement
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(_HOSTILE_LINES))
    return "\n".join(lines)


_HOSTILE_LINES = [
    "rank M = M", "rank A = B * 2, B = A + 1", "rank KH = H / 0", "partition M -> M, M0", "partition M -> M1, M1",
    "input Q[B, H, E, P]: f128", "input Z[]: f32", "output Q[B]: f16", "tensor T[M+2]: f32",
    "let exp(x) = x", "let f(x, x) = x", "let g(x) = y", "Y[m] = Y[m]", "Y[m + 1] = Y[m]",
    "Y[0] = 1", "Y[m, m] = 1", "Y[] = 1e999", "Y[p] = S[p, p, p]", "Y[m] = max[m] 1", "Y[m] = sum[q] S[m]",
    "Y[m] = select(m, 1, 2)", "Y[m] = m < 1", "Y[m] = exp(exp(exp(exp(1000))))", "\\", "# only a comment",
    "rank " + ", ".join(f"R{i}" for i in range(300)), "Y[" + ", ".join("m" for _ in range(200)) + "] = 1",
]


def _grammar_expr(rng: random.Random, vars_: list, tensors: dict, depth: int) -> str:
    """A random expression of the notation (valid syntax, meaning left to chance)."""
    r = rng.random()
    if depth <= 0 or r < 0.3:
        choice = rng.randrange(5)
        if choice == 0:
            return rng.choice(["0", "1", "2", "0.5", "1e-30", "inf", "3", "1e10"])
        if choice == 1:
            return rng.choice(["W", "M", "P", "M0", "G", "E"])
        if choice == 2 and vars_:
            return rng.choice(vars_)
        name = rng.choice(list(tensors))
        return f"{name}[{', '.join(rng.choice(vars_ + ['0', 'm + 1', 'p - m', 'm / G', 'm % 2']) for _ in tensors[name])}]"
    if r < 0.6:
        op = rng.choice(["+", "-", "*", "/", "//", "%"])
        return f"({_grammar_expr(rng, vars_, tensors, depth - 1)} {op} {_grammar_expr(rng, vars_, tensors, depth - 1)})"
    fn, n = rng.choice([("exp", 1), ("log", 1), ("sqrt", 1), ("max", 2), ("min", 2), ("clip", 3), ("tanh", 1),
                        ("abs", 1), ("sigmoid", 1), ("floor", 1)])
    if rng.random() < 0.2:
        return f"select({_grammar_cond(rng, vars_, tensors, depth - 1)}, {_grammar_expr(rng, vars_, tensors, depth - 1)}, 0)"
    return f"{fn}({', '.join(_grammar_expr(rng, vars_, tensors, depth - 1) for _ in range(n))})"


def _grammar_cond(rng, vars_, tensors, depth) -> str:
    a, b = _grammar_expr(rng, vars_, tensors, 0), _grammar_expr(rng, vars_, tensors, 0)
    c = f"{a} {rng.choice(['<', '<=', '>', '>=', '==', '!='])} {b}"
    if depth > 0 and rng.random() < 0.3:
        c = f"{c} {rng.choice(['and', 'or'])} {_grammar_cond(rng, vars_, tensors, depth - 1)}"
    return c


def grammar_design(rng: random.Random) -> str:
    """A design drawn from the grammar: ranks, inputs, then Einsums over them."""
    ranks = rng.sample(["B", "H", "M", "P", "E", "F"], rng.randrange(1, 5))
    lines = [f"rank {', '.join(ranks)}"]
    if rng.random() < 0.3:
        lines.append("partition M -> M1, M0" if "M" not in ranks else "rank G")
    tensors = {}
    for i in range(rng.randrange(1, 4)):
        rs = rng.sample(ranks, rng.randrange(0, len(ranks) + 1))
        name = f"I{i}"
        tensors[name] = rs
        lines.append(f"input {name}[{', '.join(rs)}]: {rng.choice(['f32', 'f16', 'bool', 'f64'])}")
    for j in range(rng.randrange(1, 6)):
        out = rng.sample(ranks, rng.randrange(0, len(ranks) + 1))
        vars_ = [r.lower() for r in ranks]
        red = rng.choice(["", "", "max[] ", "min ", "sum "])
        expr = _grammar_expr(rng, vars_, tensors, rng.randrange(1, 5))
        where = f" where {_grammar_cond(rng, vars_, tensors, 2)}" if rng.random() < 0.4 else ""
        name = f"T{j}"
        lines.append(f"{name}[{', '.join(r.lower() for r in out)}] = {red}{expr}{where}")
        tensors[name] = out
    return "\n".join(lines) + "\n"


def _seed_texts(rng: random.Random, n_random: int) -> list[str]:
    import einsum_ir as ei
    from einsum_ir.random_designs import random_designs
    texts = [ei.library.path(n).read_text() for n in ei.library.names()]
    texts += [d.text for d in random_designs(n_random, seed=rng.randrange(2 ** 32))]
    return texts


def design_cases(rng: random.Random, n: int) -> list[Case]:
    """n designs: a quarter valid random designs (mutated once half the time),
    the library mutated 1-3 times, grammar-generated designs, hostile texts."""
    seeds = _seed_texts(rng, max(40, n // 20))
    out = []
    for i in range(n):
        kind = i % 8
        if kind in (0, 1, 2, 3):
            text, src = rng.choice(seeds), "mutation"
            for _ in range(rng.randrange(1, 4)):
                text = mutate(text, rng)
        elif kind == 4:
            text, src = rng.choice(seeds), "valid seed"
        elif kind in (5, 6):
            text, src = grammar_design(rng), "grammar"
            if rng.random() < 0.3:
                text = mutate(text, rng)
        else:
            text, src = mutate(rng.choice(seeds), rng), "hostile"
            for _ in range(rng.randrange(1, 3)):
                text = mutate(text, rng) if rng.random() < 0.3 else _hostile_design(rng, text)
        out.append(Case("design", src, text))
    return out


def _hostile_design(rng: random.Random, text: str) -> str:
    choice = rng.randrange(6)
    if choice == 0:
        return text + "\n" + "\n".join(f"let g{i}(x) = g{i - 1}(x) + g{i - 1}(x)" if i else "let g0(x) = x"
                                       for i in range(rng.randrange(5, 40)))
    if choice == 1:
        return text.replace("\n", "\r\n") if rng.random() < 0.5 else text.replace("\n", "\\\n", 3)
    if choice == 2:
        return text + "\nY[m] = " + "-" * rng.choice([50, 150, 5000]) + "1\n"
    if choice == 3:
        return text + "\nY[m] = " + " + ".join(["1"] * rng.choice([50, 150, 5000])) + "\n"
    if choice == 4:
        return text.replace("M", rng.choice(["IF", "I", "None", "Q_s0", "SUM"]))
    return text + "\n" + "x" * rng.choice([10, 10_000, 2_000_000])


# YAML -------------------------------------------------------------------------

_SCALARS = [".nan", ".inf", "-.inf", "-1", "0", "1e-300", "1e300", "abc", "[]", "{}", "null", "true", "16 XiB",
            "1e999 MHz", "10000000000000000000000000000000", "0x10", "0o7", "1_000", "2021-01-01", "!!binary aGk=",
            "!!python/object/apply:os.system ['echo pwned']", "&a 1", "*a", "'1 GHz'", "-0.0", "nan MHz"]


def yaml_mutate(text: str, rng: random.Random) -> str:
    import re
    if isinstance(text, bytes):                       # already not text: one more byte
        return text + bytes([rng.randrange(256)])
    lines = text.split("\n")
    op = rng.randrange(8)
    idx = [i for i, ln in enumerate(lines) if re.match(r"\s*[\w-]+:\s*\S", ln)]
    if op in (0, 1, 2) and idx:                       # a hostile value
        i = rng.choice(idx)
        key, _, _ = lines[i].partition(":")
        lines[i] = f"{key}: {rng.choice(_SCALARS)}"
    elif op == 3 and idx:                              # a misspelt key
        i = rng.choice(idx)
        key, sep, rest = lines[i].partition(":")
        lines[i] = key[:-1] + key[-1:] * 2 + sep + rest
    elif op == 4 and len(lines) > 1:                   # a line dropped or doubled
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[i]
        else:
            lines.insert(i, lines[i])
    elif op == 5 and text:                             # a character
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(["\t", ":", "-", "&", "*", "{", "[", "\x00", "'", '"', "|", "\u00e9"]) + text[i:]
    elif op == 6:                                      # indentation broken
        i = rng.randrange(len(lines))
        lines[i] = " " + lines[i] if rng.random() < 0.5 else lines[i].lstrip()
    else:
        return _hostile_yaml(rng, text)
    return "\n".join(lines)


def _hostile_yaml(rng: random.Random, text: str) -> str | bytes:
    k = rng.randrange(8)
    if k == 0:
        bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        bomb += [f"{c}: &{c} [{', '.join('*' + p for _ in range(9))}]" for p, c in zip("abcdefgh", "bcdefghi")]
        return "\n".join(bomb) + "\n" + text
    if k == 1:
        return "&x [*x]\n" if rng.random() < 0.5 else "a: &x {b: *x}\n"
    if k == 2:
        depth = rng.choice([50, 70, 300, 5000])
        return "[" * depth + "]" * depth + "\n" if rng.random() < 0.5 else \
            "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"
    if k == 3:
        return text.encode() + b"\xff\xfe\x00" + text.encode()
    if k == 4:
        return ""
    if k == 5:
        return "x: " + "y" * rng.choice([100, 1_100_000]) + "\n"
    if k == 6:
        return text + "\n" + text                      # every key twice
    return "- " + "\n- ".join(text.split("\n"))


def yaml_cases(rng: random.Random, n: int) -> list[Case]:
    bases = [("yaml:gpu", p) for p in sorted((ROOT / "hw_models/presets/gpu").glob("*.yaml"))]
    bases += [("yaml:spatial", p) for p in sorted((ROOT / "hw_models/presets").glob("*.yaml"))]
    bases += [("yaml:mapping", p) for p in sorted((ROOT / "mappers/mappings").glob("*.yaml"))]
    out = []
    for i in range(n):
        kind, path = rng.choice(bases)
        text = path.read_text()
        src = "hostile" if i % 5 == 4 else "mutation"
        if src == "hostile":
            text = _hostile_yaml(rng, text)
        else:
            for _ in range(rng.randrange(1, 4)):
                text = yaml_mutate(text, rng)
        out.append(Case(kind, src, text))
    return out


# command lines ---------------------------------------------------------------------

_GOOD_DESIGN = "rank M, P\ninput S[M, P]: f32\nY[p] = max[m] S[m, p] where m <= p\n"
_FILES = {
    "ok.ein": _GOOD_DESIGN,
    "bad.ein": "rank M\ninput S[M]: f32\nY[m] = S[m] $ 2\n",
    "latin1.ein": _GOOD_DESIGN.encode() + b"# caf\xe9\n",
    "nested.ein": "rank M\ninput S[M]: f32\nlet a0(x) = x + 1\n" + "".join(
        f"let a{i}(x) = a{i - 1}(a{i - 1}(x)) + a{i - 1}(x)\n" for i in range(1, 12)) + "Y[m] = S[m] * a11(m)\n",
    "big.ein": "rank M\ninput S[M]: f32\nY[m] = S[m] * " + "9" * 300 + "\n",
    "zero.ein": "rank M, P\ninput S[M, P]: f32\nY[m, p] = S[m, p] where m % 0 == 0\n",
    "new\nline.ein": _GOOD_DESIGN,
    "bomb.yaml": 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [{', '.join('*' + p for _ in range(9))}]\n" for p, c in zip("abcdefg", "bcdefgh")),
    "self.yaml": "&a [*a]\n",
    "deep.yaml": "[" * 5000 + "]" * 5000 + "\n",
    "empty.yaml": "",
    "huge.ein": "# " + "x" * (1 << 21) + "\n",
}


def _hostile_argv(rng: random.Random) -> list[str]:
    design = rng.choice(["ok.ein", "bad.ein", "latin1.ein", "nested.ein", "big.ein", "zero.ein", "new\nline.ein",
                         "huge.ein", "/dev/zero", "missing.ein", ".", "attention-3pass", "gqa", "sliding-window",
                         "no-such-design", "-", "\x00", "../../etc/passwd", "a" * 5000])
    shape = rng.choice([["M=8", "P=8"], ["M=nan"], ["M=1e999"], ["M=-1"], ["M=0"], ["M=1e18", "P=1e18"],
                        ["M=4294967297"], ["density_ZZ=0.5"], ["density_S=2"], ["W=0", "M=4", "P=4"], ["G=0"],
                        ["M=abc"], ["=3"], ["M"], ["M=8,,P=8"], ["M=4K"], ["X" * 1000 + "=1"]])
    cmd = rng.choice(["check", "print", "analyze", "run", "compare", "simulate", "map", "compile", "validate"])
    extra = rng.choice([[], ["--json"], ["--top", rng.choice(["0", "-1", "abc", "99999999"])],
                        ["--seed", rng.choice(["-1", "x", "99999999999999999999"])],
                        ["--lengths", rng.choice(["abc", "0", "-5", "1e999", "4K"])],
                        ["--plot", rng.choice(["x.xyz", ".", "/proc/nope/x.png"])], ["--dtype", "f128"],
                        ["--out", rng.choice([".", "/proc/nope/k.py", "x\ny.py"])],
                        ["--hw", rng.choice(["bomb.yaml", "self.yaml", "deep.yaml", "empty.yaml", "nope", "ok.ein"])],
                        ["--mapping", rng.choice(["bomb.yaml", "nope", "fusemax-binding"])], ["--rank", "ZZ"]])
    if cmd == "simulate":
        return [cmd, design, "--mapping", rng.choice(["fusemax-binding", "bomb.yaml", "self.yaml"]), "--shape",
                *shape] + [a for a in extra if a != "--mapping"]
    if cmd == "validate":
        return [cmd, rng.choice(["ok.ein", "/dev/zero", "missing.csv", "latin1.ein", "."]), *extra]
    if cmd in ("check", "print"):
        return [cmd, design] + (extra if rng.random() < 0.3 else [])
    return [cmd, design, "--shape", *shape, *extra]


def cli_cases(rng: random.Random, n: int) -> list[Case]:
    fixed = [["check", "/dev/zero"], ["check", "nested.ein"], ["check", "latin1.ein"], ["check", "new\nline.ein"],
             ["run", "zero.ein", "--shape", "M=4", "P=4"], ["map", "attention-3pass", "--hw", "bomb.yaml",
                                                            "--shape", "M=64"],
             ["simulate", "--mapping", "fusemax-binding", "--shape", "M=1e18", "P=1e18", "E=64", "F=64", "B=1",
              "H=1"], ["run", "gqa", "--shape", "M=8", "P=8", "E=2", "F=2", "B=1", "H=2", "G=0"],
             ["compare", "attention-3pass", "--shape", "M=64", "--plot", "x.xyz"], ["map", "attention-3pass",
                                                                                 "--top", "0", "--shape", "M=8"],
             ["run", "attention-3pass", "--shape", "M=100000", "P=100000", "E=2", "F=2", "B=1", "H=1"],
             ["frobnicate"], [], ["--help"], ["check"], ["analyze", "x.ein", "--shape", "M=8", "density_S=2"]]
    argvs = fixed + [_hostile_argv(rng) for _ in range(max(0, n - len(fixed)))]
    return [Case("cli", "fixed" if i < len(fixed) else "hostile", argv, _FILES) for i, argv in enumerate(argvs[:n])]


def table(results) -> str:
    by = {}
    for case, outcome, dt, _ in results:
        kind = case.kind.split(":")[0] if case.kind.startswith("yaml") else case.kind
        row = by.setdefault(kind, Counter())
        row[outcome] += 1
        row["_n"] += 1
        row["_max"] = max(row["_max"], dt)
    lines = ["| inputs | cases | " + " | ".join(OUTCOMES) + " | slowest |",
             "|---|" + "---|" * (len(OUTCOMES) + 2)]
    for kind, row in by.items():
        lines.append(f"| {kind} | {row['_n']} | " + " | ".join(str(row[o]) for o in OUTCOMES)
                     + f" | {row['_max']:.2f} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--designs", type=int, default=10_000)
    ap.add_argument("--yaml", type=int, default=1_000)
    ap.add_argument("--cli", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per case (default 5)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    designs, yamls, clis = design_cases(rng, args.designs), yaml_cases(rng, args.yaml), cli_cases(rng, args.cli)
    cases = clis + yamls + designs                  # the quick kinds first
    t0 = time.perf_counter()
    results = run_all(cases, args.timeout, args.workers, progress=True)
    print(f"{len(cases)} cases, seed {args.seed}, {args.workers} workers, {args.timeout:g} s limit, "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(table(results))
    bad = [r for r in results if r[1] not in ("accepted", "clean error")]
    by_source = Counter((c.kind, c.source) for c, *_ in results)
    print("\ncases by source: " + ", ".join(f"{k}/{s} {n}" for (k, s), n in sorted(by_source.items())))
    for case, outcome, dt, shown in bad[:50]:
        print(f"\n--- {outcome} ({case.kind}, {case.source}, {dt:.1f} s)\n{case.payload!r}\n{shown[-2000:]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
