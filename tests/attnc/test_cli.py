"""The command line: output a person can read, JSON that matches the
analysis, and errors with file:line:col and exit status 2."""
import json
import re

import numpy as np
import pytest

import einsum_ir as ei
from attnc.cli import main, parse_shapes

SHAPE = ["--shape", "M=1024", "P=1024", "E=64", "F=64", "B=2", "H=4", "M0=128"]


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_every_library_design(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ei.library.names():
        assert name in out


def test_analyze_prints_passes_and_their_reason(capsys):
    code, out, _ = run(capsys, "analyze", "attention-3pass", *SHAPE[:-1])
    assert code == 0
    assert "GM <- max over m of QK; SN re-reads QK over m" in out
    assert "Minimum live footprint" in out and "Compulsory off-chip traffic" in out


def test_analyze_json_matches_the_analysis(capsys):
    code, out, _ = run(capsys, "analyze", "attention-1pass", *SHAPE, "--json")
    assert code == 0
    data = json.loads(out)
    a = ei.analysis.analyze(ei.library.load("attention-1pass"))
    v = a.at(parse_shapes(SHAPE[1:]))
    assert data["passes"]["M"]["passes"] == 1
    assert data["values"]["ops"]["exp"] == v["ops"]["exp"] == 2 * 4 * 1024 * (1024 + 8)
    assert data["ops"]["exp"] == "B*H*P*(M + M1)"


def test_analyze_without_shapes_is_symbolic(capsys):
    code, out, _ = run(capsys, "analyze", "attention-1pass")
    assert code == 0 and "B*H*P*(M + M1)" in out


def test_run_checksums_match_the_executor(capsys):
    code, out, _ = run(capsys, "run", "attention-3pass", "--shape", "M=64,P=32,E=8,F=8,B=2,H=2", "--seed", "3")
    assert code == 0
    c = ei.library.load("attention-3pass")
    shapes = dict(M=64, P=32, E=8, F=8, B=2, H=2)
    av = ei.execute(c, ei.random_inputs(c, shapes, seed=3), shapes)["AV"]
    assert f"{np.sum(av):.10g}" in out and "2x2x8x32" in out


def test_check_reports_file_line_column(tmp_path, capsys):
    bad = tmp_path / "bad.ein"
    bad.write_text("rank M, P\ninput X[M, P]\nY[p] = sum[m] X[m, p] + Z[p]\n")
    code, _, err = run(capsys, "check", str(bad))
    assert code == 2
    assert f"{bad}:3:25: error: undefined tensor Z" in err


def test_check_accepts_a_valid_file(tmp_path, capsys):
    good = tmp_path / "good.ein"
    good.write_text(ei.library.path("attention-2pass").read_text())
    code, out, _ = run(capsys, "check", str(good))
    assert code == 0 and "ok" in out


def test_print_is_canonical_and_reparses(capsys):
    code, out, _ = run(capsys, "print", "attention-1pass")
    assert code == 0
    assert ei.parse(out) == ei.library.load("attention-1pass")


@pytest.mark.parametrize("argv, message", [
    (["analyze", "attention-3pas"], "did you mean attention-3pass"),
    (["analyze", "attention-1pass", "--shape", "M=abc"], "not a number"),
    (["analyze", "attention-1pass", "--shape", "M"], "NAME=VALUE"),
    (["analyze", "attention-1pass", "--shape", "Q=3"], "not used"),
    (["analyze", "attention-1pass", "--shape", "M=100", "P=1", "E=1", "F=1", "B=1", "H=1"], "M0"),
    (["run", "attention-1pass", "--shape", "M=8", "P=8", "E=2", "F=2", "B=1", "H=1", "M0=0"], "positive"),
    (["analyze", "attention-1pass", "--rank", "X"], "no rank X"),
])
def test_bad_arguments_are_clear_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_shape_suffixes():
    assert parse_shapes(["M=4K", "P=1M,E=64", "density_X=0.5"]) == {"M": 4096, "P": 1048576, "E": 64,
                                                                     "density_X": 0.5}


def test_help_is_complete(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("list", "check", "print", "analyze", "run", "demo"):
        assert cmd in out


def test_demo_runs(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "max relative error" in out


# ------------------------------------------------------------------ GPU commands

def test_map_names_the_best_mapping_and_the_binding_resource(capsys):
    assert main(["map", "cab-self-causal", "--shape", "B=2", "H=4", "P=1K", "E=64", "F=64", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "best mapping: BLOCK_M=" in out and "bound by" in out and "of the 989 TFLOP/s peak" in out
    assert "same design, unfused" in out and "other algorithm: linear attention" in out


def test_map_collapses_mappings_the_model_cannot_tell_apart():
    """Issue 19: the top rows were ties. Each row of the table is a distinct
    prediction; the tied mappings are counted on it."""
    from attnc.gpu import distinct, map_design
    r = map_design("sliding-window", "h100", dict(B=1, H=2, P=2048, E=64, F=64, W=256), top=8)
    rows = distinct(r.best)
    keys = [(p.time_s, p.binding) for p, _, _ in rows]
    assert len(set(keys)) == len(keys)
    assert sum(1 + n for _, n, _ in rows) == len(r.best)
    for p, n, _ in rows:
        assert n == sum(1 for q in r.best if (q.time_s, q.binding) == (p.time_s, p.binding)) - 1


def test_map_json_and_a_design_outside_the_family(capsys):
    assert main(["map", "gqa", "--shape", "B=1", "H=8", "G=4", "P=1", "M=256K", "E=64", "F=64", "--json"]) == 0
    import json
    r = json.loads(capsys.readouterr().out)
    assert r["best"][0]["time_s"] > 0 and r["best"][0]["binding"] == "HBM"
    # outside the fused family: the chunked kernel's model, or both families' reasons
    assert main(["map", "attention-1pass", "--shape", "B=1", "H=1", "P=64", "M=64", "E=8", "F=8", "M0=16"]) == 0
    assert "chunked linear-time kernel" in capsys.readouterr().out
    assert main(["map", "gla-recurrent", "--shape", "B=1", "H=1", "P=64", "M=64", "E=16", "F=16"]) == 2
    err = capsys.readouterr().err
    assert "explicit recurrence" in err and "one token at a time" in err


def test_validate_and_calibrate(tmp_path, capsys):
    from pathlib import Path
    src = Path(__file__).resolve().parents[2] / "benchmarks" / "published" / "h100_attention.csv"
    rows = [ln for ln in src.read_text().splitlines() if not ln.startswith("#")]
    small = tmp_path / "r.csv"            # two points: the commands, not the model, are under test here
    small.write_text("\n".join([rows[0]] + [r for r in rows[1:] if ",flash-attention-2," in r and ",1024,1024," in r]))
    assert main(["validate", str(small), "--kernel", "flash-attention-2"]) == 0
    assert "median |error|" in capsys.readouterr().out
    out = tmp_path / "cal.yaml"
    assert main(["calibrate", str(small), "--fit", "fused_tensor", "--out", str(out)]) == 0
    assert "# calibration: `attnc calibrate " in out.read_text().splitlines()[0]
    from hw_models import load_gpu
    assert 0.3 < load_gpu(str(out)).efficiency["fused_tensor"] <= 1.0      # a fraction of the path's rate
    assert main(["calibrate", str(small), "--out", str(out)]) == 2        # never overwrite without --force
    assert "--force" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("device,kernel\nx,y\n")
    assert main(["validate", str(bad)]) == 2
    assert "missing columns" in capsys.readouterr().err


def test_compile_writes_the_kernel_and_a_usage_example_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "k.py"
    argv = ["compile", "sliding-window", "--target", "triton", "--hw", "h100", "--out", str(out),
            "--shape", "B=2", "H=4", "P=2048", "M=2048", "E=64", "F=64", "W=256"]
    code, text, _ = run(capsys, *argv)
    assert code == 0 and "predicted" in text
    src = out.read_text()
    assert src.startswith("# Generated by attnc") and "def attnc_fused(" in src
    compile(src, str(out), "exec")                           # valid Python
    example = (tmp_path / "k_example.py").read_text()
    assert "NAME = 'sliding-window'" in example and "attnc.compile(c, SHAPES)" in example
    compile(example, "k_example.py", "exec")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "--force" in err and out.read_text() == src


def test_compile_without_hw_names_the_gpu_it_predicted_for(tmp_path, capsys):
    """No --hw: the mapping is chosen for the default H100, and the summary says so (it said `on None`)."""
    code, text, _ = run(capsys, "compile", "attention-3pass", *SMALL, "--out", str(tmp_path / "k.py"))
    assert code == 0 and " on h100, predicted " in text and "None" not in text


def test_compile_a_linear_time_design_gives_a_chunked_kernel(tmp_path, capsys):
    out = tmp_path / "gla.py"
    code, text, _ = run(capsys, "compile", "gla-chunkwise", "--target", "triton", "--out", str(out),
                        "--shape", "B=2", "H=4", "E=64", "F=64", "M=4096", "M0=64")
    assert code == 0 and "chunked linear-time kernel" in text and "loop over m1" in text
    src = out.read_text()
    # identifiers from the design are namespaced by the generator (c2_m1, sym6_M0, ...): match the shape
    assert "def attnc_chunked(" in src and re.search(r"for \w*m1 in range\(0, \w*M1\):", src)
    compile(src, str(out), "exec")
    code, _, err = run(capsys, "compile", "linear-attention-causal", "--target", "triton", "--out",
                       str(tmp_path / "x.py"), "--shape", "B=1", "H=1", "E=64", "F=64", "P=512")
    assert code == 2 and "chunkwise form" in err and not (tmp_path / "x.py").exists()


# ------------------------------------------------------------------ hostile command lines (issue 17)

NESTED_LETS = "rank M\ninput S[M]: f32\nlet a0(x) = x + 1\n" + "".join(
    f"let a{i}(x) = a{i - 1}(a{i - 1}(x)) + a{i - 1}(x)\n" for i in range(1, 12)) + "Y[m] = S[m] * a11(m)\n"
SMALL = ["--shape", "M=8", "P=8", "E=2", "F=2", "B=1", "H=1"]


def hostile_files(tmp_path):
    (tmp_path / "lets.ein").write_text(NESTED_LETS)
    (tmp_path / "latin1.ein").write_bytes(b"rank M\ninput S[M]: f32\nY[m] = S[m] # caf\xe9\n")
    (tmp_path / "zero.ein").write_text("rank M, P\ninput S[M, P]: f32\nY[m, p] = S[m, p] where m % W == 0\n")
    (tmp_path / "bomb.yaml").write_text('a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [{', '.join('*' + p for _ in range(9))}]\n" for p, c in zip("abcdefg", "bcdefgh")))
    (tmp_path / "self.yaml").write_text("&a [*a]\n")
    (tmp_path / "deep.yaml").write_text("[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "outdir").mkdir()
    return tmp_path


HOSTILE = [
    (["check", "/dev/zero"], "larger than"),
    (["check", "{d}/lets.ein"], "expands to more than"),
    (["check", "{d}/latin1.ein"], "not valid UTF-8"),
    (["check", "{d}/outdir"], "is a directory"),
    (["run", "{d}/zero.ein", "--shape", "M=4", "P=4", "W=0"], "division by zero"),
    (["run", "attention-3pass", "--shape", "M=100000", "P=100000", "E=2", "F=2", "B=1", "H=1"], "would hold"),
    (["run", "gqa", "--shape", "M=8", "P=8", "E=2", "F=2", "B=1", "H=2", "G=0"], "division by zero"),
    (["run", "attention-3pass", "--shape", "M=nan"], "not a number"),
    (["run", "attention-3pass", "--shape", "M=1e999"], "not a finite number"),
    (["run", "attention-3pass", "--seed", "-1", *SMALL], "--seed"),
    (["run", "attention-3pass", "--shape", "M=8", "M=9"], "given twice"),
    (["analyze", "block-sparse", "--shape", "density_BM=2"], r"must lie in \[0, 1\]"),
    (["analyze", "block-sparse", "--shape", "density_ZZ=0.5"], "no bool tensor ZZ"),
    (["map", "attention-3pass", "--top", "0", *SMALL], "--top"),
    (["map", "attention-3pass", "--top", "-1", *SMALL], "--top"),
    (["map", "attention-3pass", "--hw", "{d}/bomb.yaml", *SMALL], "more than 100000 values"),
    (["map", "attention-3pass", "--hw", "{d}/self.yaml", *SMALL], "contains itself"),
    (["map", "attention-3pass", "--hw", "{d}/deep.yaml", *SMALL], "nested too deeply"),
    (["map", "attention-3pass", "--shape", "M=65536", "P=65536", "E=64", "F=64", "B=1", "H=1"], "GPU model"),
    (["compile", "attention-3pass", "--shape", "M=65536", "P=65536", "E=64", "F=64", "B=1", "H=1"],
     "GPU model"),
    (["compile", "attention-3pass", *SMALL, "--out", "{d}/outdir"], "is a directory"),
    (["simulate", "--mapping", "fusemax-binding", "--shape", "M=1e18", "P=1e18", "E=64", "F=64", "B=1", "H=1"],
     r"2\*\*32"),
    (["compare", "attention-3pass", *SMALL, "--plot", "x.xyz"], r"\.png, \.pdf or \.svg"),
    (["compare", "attention-3pass", *SMALL, "--lengths", "abc"], "--lengths"),
    (["compare", "attention-3pass", *SMALL, "density_ZZ=0.5"], "no design compared has a bool tensor ZZ"),
    (["compare", "block-sparse", *SMALL, "TQ=4", "TK=4", "density_BM=1.5"], r"must lie in \[0, 1\]"),
    (["validate", "/dev/zero"], "larger than"),
    (["calibrate", "{d}/latin1.ein", "--out", "{d}/c.yaml"], "not valid UTF-8"),
    (["compare", "attention-3pass", *SMALL, "--plot", "{d}/outdir.png/x.png"], "error"),
]


@pytest.mark.parametrize("argv, words", HOSTILE, ids=[" ".join(a)[:60] for a, _ in HOSTILE])
def test_hostile_command_lines_give_one_clean_error(tmp_path, capsys, argv, words):
    d = hostile_files(tmp_path)
    argv = [a.replace("{d}", str(d)) for a in argv]
    try:
        code, out, err = run(capsys, *argv)
    except SystemExit as e:                      # argparse's own errors
        code, err = e.code, capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and "internal error" not in err
    first = err.strip().split("\n")[0]
    assert "error:" in first and re.search(words, first), err
    # one error line; a located error may add the source line and a caret under it
    assert len(err.strip().split("\n")) in (1, 3)


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    import attnc.cli as cli

    def broken(args):
        raise KeyError(122)
    monkeypatch.setattr(cli, "cmd_list", broken)
    monkeypatch.delenv("ATTNC_DEBUG", raising=False)
    code, _, err = run(capsys, "list")
    assert code == 3 and err.count("\n") == 1
    assert err.startswith("internal error (a bug in attnc): KeyError: 122") and "ATTNC_DEBUG=1" in err
    monkeypatch.setenv("ATTNC_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["list"])


def test_debug_prints_the_traceback_of_a_user_error_too(capsys, monkeypatch):
    monkeypatch.setenv("ATTNC_DEBUG", "1")
    code, _, err = run(capsys, "run", "attention-3pass", "--shape", "M=8", "ZZ=1")
    assert code == 2 and "Traceback" in err and "ZZ is not used" in err


def test_the_module_exits_with_status_2_and_no_traceback(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "attnc", "check", "/dev/zero"], capture_output=True, text=True,
                       timeout=120, env={k: v for k, v in __import__("os").environ.items() if k != "ATTNC_DEBUG"})
    assert r.returncode == 2 and r.stderr.startswith("/dev/zero:1:1: error:") and "Traceback" not in r.stderr


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_list_fits_the_terminal_and_long_shows_everything(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert all(len(line) <= columns for line in out.splitlines())
    for name in ei.library.names():
        line = next(ln for ln in out.splitlines() if ln.split() and ln.split()[0] == name)
        summary = ei.library.summary(name)
        shown = line[len(name):].strip()
        assert shown == summary or (shown.endswith("...") and summary.startswith(shown[:-3]))
    code, out, _ = run(capsys, "list", "--long")
    for name in ei.library.names():
        assert ei.library.summary(name) in out


def test_every_subcommand_has_a_description():
    from attnc.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.description and len(p.description) > 30, name
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(helps) == set(sub.choices) and all(helps.values())


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path, capsys):
    bad = tmp_path / "new\nline.ein"
    bad.write_text("rank M\ninput S[M]: f32\nY[m] = S[m] $\n")
    code, _, err = run(capsys, "check", str(bad))
    assert code == 2 and err.split("\n")[0].startswith(str(tmp_path) + "/new\\nline.ein:3:13: error:")
    good = tmp_path / "ok\nline.ein"
    good.write_text("rank M\ninput S[M]: f32\nY[m] = S[m]\n")
    code, out, _ = run(capsys, "check", str(good))
    assert code == 0 and out.count("\n") == 1 and "ok\\nline.ein: ok" in out
