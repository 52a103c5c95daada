"""`--inputs FILE.npz` on analyze, map, simulate and compile, and `inputs=`
in Python: a mask that reads tensors is counted and tiled from their values
(exactly), and without them analysed with its density symbol and mapped
with an upper bound that says so."""
import json
from fractions import Fraction

import numpy as np
import pytest

import attnc
import einsum_ir as ei
from attnc.cli import main
from attnc.gpu import map_design
from attnc.inputs import with_inputs
from simulator.facts import facts
from simulator.gpu import predict_fused
from simulator.numbers import Numeric
from tests.einsum_ir.test_data_masks import MASKS, design, kept, needed, values


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def doc_design(tmp_path):
    path = tmp_path / "k_doc.ein"
    path.write_text(str(design("document")))
    arrays = values("document", 2, 48, 0)
    npz = tmp_path / "k_doc.npz"
    np.savez(npz, DOC=arrays["DOC"])
    return path, npz, arrays


def test_analyze_with_inputs_counts_the_mask_exactly(capsys, doc_design):
    path, npz, arrays = doc_design
    code, out, _ = run(capsys, "analyze", path, "--inputs", npz, "--shape", "H=2", "E=4", "F=4", "--json")
    assert code == 0
    data = json.loads(out)
    k = int(kept("document", arrays, 2, 48, 0).sum())
    assert data["values"]["points"]["QK"] == 2 * 4 * k and data["values"]["points"]["GM"] == 2 * k
    assert data["densities"]["density_vis"]["counted_from"] == "inputs"
    assert Fraction(data["densities"]["density_vis"]["value"]) == Fraction(k, 2 * 48 * 49 // 2)
    code, out, _ = run(capsys, "analyze", path, "--inputs", npz, "--shape", "H=2", "E=4", "F=4")
    assert "density_vis" in out and "from the inputs" in out


def test_analyze_without_inputs_names_the_density(capsys, doc_design):
    path, _, _ = doc_design
    code, out, _ = run(capsys, "analyze", path)
    assert code == 0 and "density_vis" in out and "fraction of the existing (b, m, p) points among those with m <= p" in out
    code, out, _ = run(capsys, "analyze", path, "--shape", "B=1", "H=1", "P=64", "E=4", "F=4", "density_vis=0.5")
    assert code == 0


def test_map_with_and_without_inputs(capsys, doc_design):
    path, npz, _ = doc_design
    shape = ["--shape", "H=2", "E=64", "F=64"]
    code, exact, _ = run(capsys, "map", path, "--inputs", npz, *shape, "--top", "1")
    assert code == 0 and "upper bound" not in exact
    code, bound, _ = run(capsys, "map", path, "--shape", "B=2", "P=48", "H=2", "E=64", "F=64", "--top", "1")
    assert code == 0 and "the mask reads DOC: without its values" in bound


@pytest.mark.parametrize("name", ["document", "prefix-lm", "global-tokens"])
def test_map_design_takes_inputs_in_both_models(name):
    b, n = 2, 96
    c = design(name)
    shapes = dict(B=b, H=2, P=n, E=64, F=64) | ({"W": 4} if name == "global-tokens" else {})
    arrays = needed(c, values(name, b, n, 1))
    exact = map_design(c, "h100", shapes, top=1, inputs=arrays)
    bound = map_design(c, "h100", shapes, top=1)
    assert not any("upper bound" in x for x in exact.best[0].notes + exact.unfused.notes)
    assert any("upper bound" in x for x in bound.best[0].notes) and any("upper bound" in x for x in bound.unfused.notes)
    k = int(kept(name, arrays, b, n, 4).sum()) * 2                      # kept (b, h, p, m) points
    assert exact.unfused.flops == pytest.approx(2.0 * (64 + 64) * k)    # the unfused model's useful work
    assert bound.unfused.flops >= exact.unfused.flops
    at_bound_mapping = predict_fused(exact.form, bound.best[0].mapping, exact.gpu, exact.env, arrays)
    assert exact.best[0].time_s <= at_bound_mapping.time_s <= bound.best[0].time_s


def test_compile_with_inputs_writes_the_kernel(capsys, tmp_path, doc_design):
    path, npz, _ = doc_design
    out = tmp_path / "k_doc_kernel.py"
    code, text, _ = run(capsys, "compile", path, "--inputs", npz, "--shape", "H=2", "E=16", "F=16", "--out", out)
    assert code == 0 and out.exists() and "def attnc_fused" in out.read_text()


def test_simulate_shapes_carry_the_exact_densities():
    """What `simulate --inputs` passes to the spatial model: the spatial
    model's point counts then equal the brute-force count."""
    c = design("prefix-lm")
    arrays = needed(c, values("prefix-lm", 3, 20, 4))
    shapes = with_inputs(c, dict(H=2, E=2, F=2), {**arrays, "Q": np.zeros((3, 2, 2, 20), np.float32)})
    assert shapes["B"] == 3 and shapes["P"] == 20 and isinstance(shapes["density_vis"], Fraction)
    env = ei.resolve(c, shapes)
    n = Numeric(env)
    k = int(kept("prefix-lm", arrays, 3, 20, 0).sum())
    assert n.count(facts(c).points["SD"]) == 2 * k and n.count(facts(c).points["QK"]) == 2 * 2 * k
    with pytest.raises(ei.ShapeError, match="counted from the inputs"):
        with_inputs(c, dict(H=2, E=2, F=2, P=20, density_vis=0.5), arrays)


def test_python_analyze_takes_inputs():
    c = design("global-tokens")
    arrays = needed(c, values("global-tokens", 1, 30, 2))
    a = attnc.analyze(c, inputs=arrays, shapes=dict(B=1, H=1, E=2, F=2, W=2))
    assert a.at()["points"]["SD"] == int(kept("global-tokens", arrays, 1, 30, 2).sum())


@pytest.mark.parametrize("argv, message", [
    (["--inputs", "missing.npz"], "no such file"),
    (["--inputs", "NOTNPZ"], "not a readable .npz"),
    (["--inputs", "WRONGNAME"], "ZZ (in the inputs) is not an input of"),
])
def test_bad_inputs_files_are_errors(capsys, tmp_path, doc_design, argv, message):
    path, _, _ = doc_design
    (tmp_path / "k_bad.txt").write_text("not numpy")
    np.savez(tmp_path / "k_wrong.npz", ZZ=np.zeros(3))
    argv = [{"NOTNPZ": tmp_path / "k_bad.txt", "WRONGNAME": tmp_path / "k_wrong.npz"}.get(a, a) for a in argv]
    code, _, err = run(capsys, "analyze", path, *argv)
    assert code == 2 and message in err


def test_every_mask_of_the_corpus_is_analysed_with_and_without_values():
    for name in MASKS:
        c = design(name)
        assert attnc.analyze(c).densities
        shapes = dict(B=1, P=16, H=1, E=2, F=2) | ({"W": 2} if name == "global-tokens" else {})
        assert attnc.analyze(c, inputs=needed(c, values(name, 1, 16, 0)), shapes=shapes).at()["flops"] > 0


DECODE = """empty rows = 0
rank B, H, M, E, F
input Q[B, H, E]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input LEN[B]: i32
mask cached = m < LEN[b]
QK[b, h, m] = Q[b, h, e] * K[b, h, e, m] where cached
GM[b, h] = max[m] QK[b, h, m] where cached
SN[b, h, m] = exp(QK[b, h, m] - GM[b, h]) where cached
SD[b, h] = SN[b, h, m] where cached
SNV[b, h, f] = SN[b, h, m] * V[b, h, f, m] where cached
AV[b, h, f] = SNV[b, h, f] / SD[b, h]
"""


def test_decode_with_per_sequence_cache_lengths():
    """Decode (one query row) over a batch whose sequences have their own
    cache lengths: the key tiles past each length are skipped with the
    values, counted as visited without them; both models count the kept keys."""
    c = ei.parse(DECODE)
    lengths = np.array([5, 200, 77], np.int32)
    shapes = dict(B=3, H=4, M=256, E=64, F=64)
    exact = map_design(c, "h100", shapes, top=1, inputs={"LEN": lengths})
    bound = map_design(c, "h100", shapes, top=1)
    kt = -(-256 // exact.best[0].mapping.block_n)
    visited = sum(-(-int(n) // exact.best[0].mapping.block_n) for n in lengths) * 4
    parts = exact.best[0].parts
    assert parts["tiles_full"] + parts["tiles_partial"] == visited
    assert parts["tiles_skipped"] == 3 * 4 * kt - visited
    assert bound.best[0].parts["tiles_skipped"] == 0 and any("LEN" in x for x in bound.unfused.notes)
    assert exact.unfused.flops == pytest.approx(2.0 * 128 * 4 * lengths.sum())
    a = attnc.analyze(c, inputs={"LEN": lengths}, shapes=dict(H=4, M=256, E=64, F=64)).at()
    assert a["points"]["SD"] == 4 * lengths.sum() and a["points"]["QK"] == 4 * 64 * lengths.sum()


def test_compare_takes_a_masks_density(capsys, tmp_path):
    path = tmp_path / "k_prefix.ein"
    path.write_text(str(design("prefix-lm")))
    code, out, _ = run(capsys, "compare", path, "attention-3pass", "--shape", "B=1", "H=2", "P=64", "M=64", "E=8",
                       "F=8", "density_vis=0.75", "--json")
    assert code == 0
    code, _, err = run(capsys, "compare", path, "--shape", "B=1", "H=2", "P=64", "E=8", "F=8")
    assert code == 2 and "density_vis" in err


def test_the_spatial_mapper_with_inputs_skips_the_document_masks_empty_tiles(doc_design):
    """On the spatial array too: with DOC's values the report classifies the
    mask's tiles (skipped or computed whole), not only its kept points."""
    from attnc.spatial_map import map_spatial
    path, _, arrays = doc_design
    shapes = dict(H=2, E=16, F=16)
    for values, skipped in (({"DOC": arrays["DOC"]}, True), (None, False)):
        _, _, found, _ = map_spatial(str(path), "fusemax", dict(shapes, B=2, P=48, density_vis=0.5) if values is None else shapes,
                                     budget=8, inputs=values)
        note = next(n for n in found.report.notes if "where DOC[b, p] == DOC[b, m]" in n)
        assert ("with no kept point is skipped" in note) == skipped
        assert ("lower bound" in note) != skipped
