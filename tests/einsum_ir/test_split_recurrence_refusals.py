"""Split-KV of a written recurrence (attention-1pass's running max and
rescaled sums, einsum_ir.rewrites.chunks): each recurrence the split does
not recognise is refused at the Einsum it is about, with its reason."""
import pytest

from einsum_ir import library, parse
from einsum_ir.rewrites import RewriteError, rewrite

ONE = str(library.load("attention-1pass"))
RD = "RD[b, h, m1 + 1, p] = SLD[b, h, m1, p] + SPD[b, h, m1, p]"
SPD = "SPD[b, h, m1, p] = RD[b, h, m1, p] * PRM[b, h, m1, p]"
AV = "AV[b, h, f, p] = RNV[b, h, f, M1, p] / RD[b, h, M1, p]"
NOT_RUNNING = ("RD's recurrence is neither a running max, a running sum nor a rescaled running sum "
               "L + X[t] * exp(a(t) - a(t+1)) from 0")


@pytest.mark.parametrize("old, new, at, why", [
    (RD, RD.replace("p] + SPD", "p] * SPD"), RD.replace("p] + SPD", "p] * SPD"), f"RD: {NOT_RUNNING}"),
    ("RD[b, h, 0, p] = 0", "RD[b, h, 0, p] = 1", RD, f"RD: {NOT_RUNNING}"),
    (SPD, SPD.replace("RD[b, h, m1, p]", "RNV[b, h, 0, m1, p]"), RD,
     "RD: RD reads per-tile values or previous iterates without reading itself: not a value made of running maxima"),
    (AV, "T[b, h, p] = SLD[b, h, m1, p]\n" + AV + " + T[b, h, p]", "T[b, h, p] = SLD[b, h, m1, p]",
     "T: reduces over the tiles m1 outside the recurrence; the split needs every value over M1 carried by a "
     "recurrence"),
    (SPD, SPD.replace("PRM[b, h, m1, p]", "PRM[b, h, 0, p]"), RD,
     "RD: the rescaling exp(RM[b, h, 0, p] - RM[b, h, 0 + 1, p]) of RD is not exp(G(t) - G(t+1)) of one value G"),
    (AV, AV + " + LM[b, h, M1 - 1, p]", AV, "AV: reads LM, a per-tile value, after the walk"),
])
def test_a_recurrence_the_split_does_not_recognise_is_refused_at_its_einsum(old, new, at, why):
    assert ONE.count(old) == 1
    text = ONE.replace(old, new)
    with pytest.raises(RewriteError) as err:
        rewrite(parse(text, name="broken"), "split-kv", verify=False)
    assert err.value.message == f"cannot rewrite broken to the split-kv form: {why}"
    assert err.value.line == 1 + text[:text.index(at)].count("\n")


RM = "RM[b, h, m1 + 1, p] = max(RM[b, h, m1, p], LM[b, h, m1, p])"
RM_MIN = RM.replace("max(", "min(")


def test_a_running_min_splits_with_a_min_over_the_chunks():
    """A running min from +inf (the normaliser written the other way round)
    splits as a running max does; the rewrite is checked against the
    original by the executor."""
    text = ONE.replace(RM, RM_MIN).replace("RM[b, h, 0, p] = -inf", "RM[b, h, 0, p] = inf")
    r = rewrite(parse(text, name="mins"), "split-kv")
    assert r.checked["max_abs_diff"] < 1e-12
    assert "CRM[b, h, p] = min[ms] RM[b, h, ms, MT, p]" in r.text


def test_a_running_min_from_minus_infinity_is_refused():
    text = ONE.replace(RM, RM_MIN)
    with pytest.raises(RewriteError) as err:
        rewrite(parse(text, name="mins"), "split-kv", verify=False)
    assert err.value.message == ("cannot rewrite mins to the split-kv form: RM: a min recurrence that is not "
                                 "RM[t+1] = min(RM[t], L) from inf")
    assert err.value.line == 1 + text[:text.index(RM_MIN)].count("\n")


@pytest.mark.parametrize("guard, splits", [
    (r"select(abs(\1) < inf, \1, 0.0)", True),        # the online rewrite's stand-in
    (r"select(\1 < inf, \1, 0.0)", False),            # lets -inf through
    (r"select(abs(\1) < inf, \1, 1.0)", False),
    (r"select(abs(\1) <= inf, \1, 0.0)", False),      # always true
    (r"select(abs(\1) < 1e30, \1, 0.0)", False),
])
def test_only_the_finite_stand_in_guards_a_masked_normaliser(guard, splits):
    """Sliding-window attention in its online form, where a chunk's first
    tiles can see no key: the split needs each normaliser used through
    select(abs(x) < inf, x, 0); a guard that differs in any part is refused
    (`select(x < inf, x, 0)` once passed for it)."""
    import re
    text = rewrite(library.load("sliding-window"), "online", verify=False).text
    stand_in = r"select\(abs\((\w+\[[^\]]*\])\) < inf, \1, 0\.0\)"
    assert len(re.findall(stand_in, text)) == 2                       # SGM's and PGM's
    written = re.sub(stand_in, guard, text)
    assert (written == text) == splits and (splits or not re.search(stand_in, written))
    if splits:
        rewrite(parse(written), "split-kv", verify=False)
    else:
        with pytest.raises(RewriteError, match="where clause can leave a chunk's first tiles without a key"):
            rewrite(parse(written), "split-kv", verify=False)
