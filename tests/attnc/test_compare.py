"""`attnc compare`: the table's figures against hand-derived counts, the
growth plot, and the errors a user can make."""
import json

import pytest

from attnc.cli import main
from attnc.compare import compare, free_symbols
from attnc import design

SHAPES = dict(B=2, H=3, P=300, M=300, E=16, F=8, W=37, M0=64)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def causal_pairs(P):
    return P * (P + 1) // 2


def window_pairs(P, W):
    return sum(min(p + 1, W) for p in range(P))


def test_rows_match_hand_derived_counts():
    B, H, P, E, F, W = (SHAPES[k] for k in "BHPEFW")
    rows = {r.design: r for r in compare(["cab-self", "cab-self-causal", "sliding-window"], SHAPES, lengths=())}
    # MACs: Q.K over e and SN*V over f for every kept (m, p)
    assert rows["cab-self"].values["ops"]["mac"] == B * H * P * P * (E + F)
    assert rows["cab-self-causal"].values["ops"]["mac"] == B * H * causal_pairs(P) * (E + F)
    assert rows["sliding-window"].values["ops"]["mac"] == B * H * window_pairs(P, W) * (E + F)
    # the 2-pass (deferred) form holds the kept scores QK (f16) from the max
    # pass to the exponentials; everything else is per query: the footprint
    # shrinks exactly by the points the predicate removes
    fp = {n: r.values["footprint_bytes"] for n, r in rows.items()}
    rest = fp["cab-self"] - 2 * B * H * P * P
    assert 0 < rest < 2 * B * H * P * P / 10
    assert fp["cab-self-causal"] - 2 * B * H * causal_pairs(P) == rest
    assert fp["sliding-window"] - 2 * B * H * window_pairs(P, W) == rest
    # compulsory traffic: Q, K, V read and AV written once, f16
    assert rows["cab-self"].values["traffic"]["total_bytes"] == 2 * B * H * P * (E + E + F + F)


def test_sweep_sets_the_sequence_symbols_each_design_leaves_free():
    rows = compare(["cab-cross", "cab-self", "decode", "gna-2d"],
                   dict(SHAPES, PY=4, PX=4, WY=3, WX=3, STY=1, STX=1, DLY=1, DLX=1), lengths=(64, 128))
    swept = {r.design: r.swept for r in rows}
    assert swept == {"cab-cross": ("M", "P"), "cab-self": ("P",), "decode": ("M",), "gna-2d": ()}
    cross = {r.design: r for r in rows}["cab-cross"]
    B, H, E, F = (SHAPES[k] for k in "BHEF")
    assert cross.sweep[128][0] - cross.sweep[64][0] > 0
    ops128 = cross.sweep[128][0]
    assert ops128 >= B * H * 128 * 128 * (E + F)       # MACs alone


def test_free_symbols_leave_out_derived_and_tile_counts():
    assert "M" not in free_symbols(design("cab-self"))             # rank M = P
    assert {"M0", "M"} <= set(free_symbols(design("attention-1pass")))
    assert "M1" not in free_symbols(design("attention-1pass"))


def test_cli_table_plot_and_json(capsys, tmp_path):
    plot = tmp_path / "growth.png"
    shape = ["--shape"] + [f"{k}={v}" for k, v in SHAPES.items()]
    code, out, err = run(capsys, "compare", "cab-self", "linear-attention", "sliding-window", *shape,
                         "--lengths", "64", "128", "--plot", str(plot))
    assert code == 0, err
    lines = out.splitlines()
    for name in ("cab-self", "linear-attention", "sliding-window"):
        assert any(line.startswith(name) for line in lines)
    assert "Operations by kind" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # an existing file is not overwritten without --force
    plot.write_bytes(b"mine")
    code, _, err = run(capsys, "compare", "cab-self", *shape, "--lengths", "64", "--plot", str(plot))
    assert code == 2 and "--force" in err and plot.read_bytes() == b"mine"
    code, _, _ = run(capsys, "compare", "cab-self", *shape, "--lengths", "64", "--plot", str(plot), "--force")
    assert code == 0 and plot.read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run(capsys, "compare", "cab-self", "linear-attention", *shape, "--lengths", "64", "--json")
    data = json.loads(out)
    assert [d["design"] for d in data] == ["cab-self", "linear-attention"]
    assert data[1]["passes"]["M"] == 1 and data[0]["passes"]["M"] == 2


@pytest.mark.parametrize("argv, words", [
    (["compare", "gna-1d", "--shape", "B=1", "H=1", "P=64", "E=8", "F=8"], ["gna-1d", "W", "--shape"]),
    (["compare", "cab-self", "no-such-design", "--shape", "P=8"], ["no-such-design"]),
    (["compare", "cab-self", "cab-self", "--shape", "B=1", "H=1", "P=8", "E=2", "F=2"], ["twice"]),
    (["compare", "cab-self", "--shape", "B=1", "H=1", "P=eight", "E=2", "F=2"], ["P", "not a number"]),
])
def test_cli_errors_are_clear(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err
    for w in words:
        assert w in err


def test_designs_with_different_symbols_compare_with_stated_defaults(capsys):
    """The README's command (issue 19): linear-attention has its own M, taken
    as M = P and said so; W, used by one design only, is listed once."""
    argv = ["compare", "cab-self", "sliding-window", "linear-attention",
            "--shape", "B=1", "H=2", "P=1K", "E=16", "F=8", "W=64"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    notes = [ln for ln in out.splitlines() if ln.startswith("note:")]
    assert notes == ["note: linear-attention: M not given; M = P = 1024 assumed (self-attention)",
                     "note: W: used by sliding-window only; ignored for cab-self, linear-attention"]
    code, out, _ = run(capsys, *argv, "--json")
    data = {d["design"]: d for d in json.loads(out)}
    assert data["linear-attention"]["assumed"] == {"M": "P"}
    assert data["linear-attention"]["shapes"]["M"] == data["linear-attention"]["shapes"]["P"] == 1024
    assert data["cab-self"]["assumed"] == {}
    # the figures at M = P equal those of an explicit M
    explicit = compare(["linear-attention"], dict(B=1, H=2, P=1024, M=1024, E=16, F=8), lengths=())[0]
    assert data["linear-attention"]["flops"] == explicit.values["flops"]


def test_each_design_missing_a_symbol_gets_one_line(capsys):
    code, out, err = run(capsys, "compare", "gna-1d", "attention-1pass", "cab-self",
                         "--shape", "B=1", "H=1", "P=64", "E=8", "F=8")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == ["gna-1d", "attention-1pass"]
    assert "W" in lines[1] and "M0" in lines[2] and "M," not in lines[2]    # M is assumed = P, M0 is not


def test_plot_lengths_default_around_the_shape_and_data_is_written(capsys, tmp_path):
    import csv
    plot = tmp_path / "g.png"
    code, out, err = run(capsys, "compare", "cab-self", "linear-attention", "--shape", "B=1", "H=1", "P=256",
                         "E=8", "F=8", "--plot", str(plot))
    assert code == 0, err
    recs = list(csv.DictReader(open(tmp_path / "g.csv")))
    lengths = sorted({int(r["length"]) for r in recs})
    assert lengths == [256 * 2 ** k for k in range(-3, 4)]            # 1/8x .. 8x the P asked for
    for r in recs:                                                     # each point is the analysis at that length
        want = compare([r["design"]], dict(B=1, H=1, P=int(r["length"]), E=8, F=8), lengths=())[0].values
        assert float(r["flops"]) == float(want["flops"])
        assert float(r["footprint_bytes"]) == float(want["footprint_bytes"])
    assert plot.read_bytes()[:4] == b"\x89PNG"
