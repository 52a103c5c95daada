"""PassResult.explain() says why for every pass count (issue 19: it returned
[] for a 1-pass design)."""
import einsum_ir as ei
from einsum_ir.analysis.passes import passes


def test_every_rank_of_every_library_design_is_explained():
    for name in ei.library.names():
        c = ei.library.load(name)
        for rank in (r.name for r in c.ranks if r.parent is None and r.definition is None):
            r = passes(c, rank)
            lines = r.explain()
            assert lines, (name, rank)
            if r.unstreamable:
                assert lines[0].startswith(f"not streamable over {rank}")
            elif r.passes == 1:
                inside = [e for e, p in r.einsum_pass.items() if p >= 1]
                assert len(lines) == 1 and lines[0].startswith(f"1 pass over {rank}") or not inside
                assert all(e in lines[0] for e in inside), (name, rank, lines)
            elif r.passes and r.passes > 1:
                assert len(lines) == len(r.chain) >= 1


def test_one_pass_line_names_the_traversal_and_what_is_outside_it():
    line, = passes(ei.library.load("attention-1pass"), "M").explain()
    assert line.startswith("1 pass over M: BK, BV")
    assert "(AV: outside the traversal)" in line
