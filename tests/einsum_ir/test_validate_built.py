"""Cascades made in Python (the builder, `dataclasses.replace` on a parsed
one) skip the parser's own checks: validation alone stands between them and
the analyses. Each case breaks one node of a valid design and expects the
whole refusal, message and line, since the message is what the user reads."""
import dataclasses

import pytest

from einsum_ir import parse
from einsum_ir.errors import ValidationError
from einsum_ir.ir import Access, Domain, Einsum, Idx, Num, Op, Rank, Scan, TensorDecl
from einsum_ir.validate import MAX_VARS, validate

BASE = """rank B, M, E
input X[B, M, E]: f32
input L[B]: i32
output Y[B, M]: f32
T[b, m] = X[b, m, e]
Y[b, m] = exp(T[b, m]) where m < L[b]
"""
T_LINE, Y_LINE = 5, 6


def _base():
    return parse(BASE, name="base")


def _tensor(c, name, **changes):
    return dataclasses.replace(c, tensors=tuple(dataclasses.replace(t, **changes) if t.name == name else t
                                                for t in c.tensors))


def _einsum(c, name, **changes):
    return dataclasses.replace(c, einsums=tuple(dataclasses.replace(e, **changes) if e.name == name else e
                                                for e in c.einsums))


def _refused(c, message: str, line: int | None):
    with pytest.raises(ValidationError) as err:
        validate(c)
    assert err.value.message == message
    assert err.value.line == line


def test_the_base_design_is_valid():
    validate(_base())


def test_an_unknown_element_type():
    _refused(_tensor(_base(), "X", dtype="q4"),
             "unknown element type 'q4' of X; known: f64, f32, tf32, f16, bf16, f8, i32, i8, bool", 2)


def test_an_unknown_role():
    _refused(_tensor(_base(), "L", role="weights"), "unknown role 'weights' of L", 3)


def test_a_tensor_over_an_undeclared_rank():
    _refused(_tensor(_base(), "L", ranks=("H",)), "tensor L uses undeclared rank H", 3)


def test_an_iterative_rank_the_tensor_lacks():
    _refused(_tensor(_base(), "T", iterative=frozenset({"E"})),
             "tensor T: iterative rank E is not one of its ranks", T_LINE)


def test_an_empty_domain():
    _refused(_tensor(_base(), "X", domain=Domain(2.0, 1.0)), "the domain of X is empty: in (2, 1)", 2)


def test_a_point_domain_with_an_open_end_is_empty():
    c = _tensor(_base(), "X", domain=Domain(1.0, 1.0, lo_closed=True, hi_closed=False))
    with pytest.raises(ValidationError, match="the domain of X is empty"):
        validate(c)
    validate(_tensor(_base(), "X", domain=Domain(1.0, 1.0, lo_closed=True, hi_closed=True)))


def test_too_many_ranks_on_one_tensor():
    names = [f"R{i}" for i in range(MAX_VARS + 1)]
    c = _base()
    c = dataclasses.replace(c, ranks=c.ranks + tuple(Rank(n) for n in names))
    _refused(_tensor(c, "L", ranks=tuple(names)),
             f"tensor L has {MAX_VARS + 1} ranks; at most {MAX_VARS} are allowed", 3)


def test_a_rank_partitioned_into_itself():
    c = _base()
    c = dataclasses.replace(c, ranks=tuple(dataclasses.replace(r, parent="M", part="outer") if r.name == "M" else r
                                           for r in c.ranks))
    _refused(c, "rank M cannot be partitioned into itself", 1)


def test_a_part_of_an_undeclared_rank():
    c = _base()
    _refused(dataclasses.replace(c, ranks=c.ranks + (Rank("Q0", parent="Q", part="inner"),)),
             "rank Q0 is a part of Q, which is not declared", None)


def test_a_part_neither_outer_nor_inner():
    c = _base()
    _refused(dataclasses.replace(c, ranks=c.ranks + (Rank("M2", parent="M", part="middle"),)),
             "rank M2 is part 'middle' of M; a partition has an outer and an inner part", None)


def test_an_unknown_operator():
    c = _base()
    y = c.writers("Y")[0]
    _refused(_einsum(c, "Y", expr=Op("frob", (y.expr.args[0],))), "unknown operator frob", Y_LINE)


def test_an_operator_with_the_wrong_number_of_arguments():
    c = _base()
    y = c.writers("Y")[0]
    _refused(_einsum(c, "Y", expr=Op("exp", (y.expr.args[0], Num(1.0)))), "exp takes 1 arguments, got 2", Y_LINE)


def test_something_that_is_not_an_expression():
    _refused(_einsum(_base(), "Y", expr=3.0), "not an expression: 3.0", Y_LINE)


def test_an_einsum_writing_an_undeclared_tensor():
    c = _base()
    y = c.writers("Y")[0]
    c = _einsum(c, "Y", output=Access("Z", y.output.indices, y.output.loc))
    _refused(c, "undefined tensor Z", Y_LINE)


def test_an_unknown_reduction():
    _refused(_einsum(_base(), "T", reduce="median"), "unknown reduction 'median'; use sum, max or min", T_LINE)


def test_an_output_index_of_another_rank():
    """A plain output index is checked as any read is; the step of a
    recurrence (`m + 1`) by the output's own rule."""
    c = _base()
    t = c.writers("T")[0]
    _refused(_einsum(c, "T", output=Access("T", (Idx("b"), Idx("e")), t.output.loc)),
             "rank mismatch: T's rank 2 is M, indexed by e (rank E)", T_LINE)
    c = parse("rank B, E, M\ninput X[B, M]: f32\nRM[b, 0] = 0\nRM[b, m + 1] = RM[b, m] + X[b, m]\nY[b] = RM[b, M]\n")
    step = c.einsums[1]
    c = dataclasses.replace(c, einsums=(c.einsums[0], dataclasses.replace(
        step, output=Access("RM", (Idx("b"), Op("add", (Idx("e"), Num(1.0)))), step.output.loc)), c.einsums[2]))
    _refused(c, "rank mismatch: RM's rank 2 is M, written with index e", 4)


def test_an_output_index_written_twice():
    """Two ranks of one extent (C = B) let one variable index both."""
    with pytest.raises(ValidationError) as err:
        parse("rank B\nrank C = B\ninput X[B]: f32\noutput T[B, C]: f32\nT[b, b] = X[b]\n")
    assert err.value.message == "index b appears twice in the output of T" and err.value.line == 5


def test_a_reduction_over_a_variable_the_einsum_does_not_iterate():
    _refused(_einsum(_base(), "T", reduced=("e", "q")), "T reduces over q, which is not in its iteration space",
             T_LINE)
    _refused(_einsum(_base(), "T", reduced=("e", "b")), "T reduces over b, which is in its output", T_LINE)


def test_a_variable_neither_written_nor_reduced():
    _refused(_einsum(_base(), "T", reduced=()), "T: index e is absent from the output but not reduced", T_LINE)


def test_an_unknown_scan():
    c = _base()
    _refused(_einsum(c, "T", scan=Scan("cummax", "m")), "unknown scan 'cummax'; use cumsum or cumprod", T_LINE)


def test_a_scan_after_a_max():
    c = _einsum(_base(), "T", reduce="max", scan=Scan("cumsum", "m"))
    with pytest.raises(ValidationError) as err:
        validate(c)
    assert err.value.message.startswith("T: a scan sums the other reduced indices; max cannot be combined with "
                                        "cumsum[m]")
    assert err.value.line == T_LINE


def test_a_cascade_with_no_einsums():
    c = dataclasses.replace(_base(), einsums=())
    _refused(c, "the cascade has no Einsums", None)


def test_a_node_with_no_location_names_its_einsum():
    """Built nodes carry no location: the message quotes the Einsum instead."""
    c = parse(BASE.replace("\n", "\n\n"))      # any parse; strip every location below
    e = Einsum(Access("T", (Idx("b"), Idx("m"))), Access("X", (Idx("b"), Idx("m"), Idx("e"))), "median", ("e",))
    c = dataclasses.replace(c, einsums=(e,) + c.einsums[1:])
    with pytest.raises(ValidationError) as err:
        validate(c)
    assert err.value.line is None
    assert err.value.message == "unknown reduction 'median'; use sum, max or min\n  in: T[b, m] = median[e] X[b, m, e]"
    assert isinstance(c.tensor("T"), TensorDecl)


def test_a_mask_built_twice():
    """The text's parser refuses a second mask of one name itself; a built
    cascade reaches the assembler's check, with no location to quote."""
    from einsum_ir.builder import CascadeBuilder, indices
    cb = CascadeBuilder("twice")
    cb.ranks("M, P")
    x = cb.input("X", "M, P")
    m, p = indices("m, p")
    cb.mask("a", m <= p)
    cb.mask("a", m < p)
    cb.einsum(cb.tensors("Y")[0][m, p], x[m, p])
    with pytest.raises(ValidationError) as err:
        cb.build()
    assert err.value.message == "mask 'a' is already defined" and err.value.loc is None
