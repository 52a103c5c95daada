"""Every pass step of every library design reads as a sentence: no empty
list of variables ('re-reads BM over' with nothing after it) where a rank is
reached only through an index expression (block-sparse's MB: BM[p / TQ, m / TK])."""
import re

import pytest

import einsum_ir as ei
from einsum_ir.analysis.passes import passes
from einsum_ir.library import names


@pytest.mark.parametrize("name", names())
def test_pass_steps_name_what_they_traverse(name):
    c = ei.load(name)
    for r in c.ranks:
        try:
            res = passes(c, r.name)
        except ei.EinError:
            continue
        for step in res.chain:
            text = str(step)
            assert not re.search(r"over\s*(;|$|of\b)", text), (name, r.name, text)
            assert "  " not in text, (name, r.name, text)


def test_block_sparse_names_the_index_expression_case():
    step = passes(ei.load("block-sparse"), "MB").chain[-1]
    assert str(step).endswith("over the positions an index expression reaches")
