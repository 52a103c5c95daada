"""Names from the design never collide with the kernel's own: every rank,
tensor and symbol becomes a numbered identifier in the generated code. A batch
rank named like one of the generator's variables (`I` -> `i`, the key-tile
loop's index) used to give a silently wrong kernel; one lower-cased to a
keyword (`IF`) a kernel that did not compile while `attnc compile` exited 0."""
import keyword
import re

import numpy as np
import pytest
import torch

from codegen.runtime import compile_kernel
from codegen.triton import GeneratedCodeError, check_source, comment_text
from einsum_ir import execute, parse, random_inputs
from einsum_ir.errors import EinError
from mappers.gpu_mapping import GPUMapping

DESIGN = """rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input SL[H]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
S[b, h, m, p] = QK[b, h, m, p] - SL[h] * (p - m) where m <= p
GM[b, h, p] = max[m] S[b, h, m, p] where m <= p
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]) where m <= p
SD[b, h, p] = SN[b, h, m, p] where m <= p
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where m <= p
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""
# the generator's own variables (lower case: an index variable is its rank's name lower-cased)
OWN = ["i", "pid_m", "pid_b", "pid_s", "offs_p", "offs_m", "offs_e", "offs_f", "row_ok", "q0", "s0", "inb", "keep0",
       "alpha", "g_new", "g_s", "start_n", "n_full", "lo_full", "hi_full", "bt_off", "cnt_off", "prog", "base", "sp",
       "tl", "triton", "rest0", "c0_h", "t0_q", "r0_gm"]
KEYWORDS = [k for k in keyword.kwlist if k.islower()]


def _rename_rank(text, new):
    text = re.sub(r"\bH\b", new, text)
    return re.sub(r"\bh\b", new.lower(), text)


def _check(text, shapes):
    try:
        c = parse(text, name="hostile")
    except EinError:
        return None                      # the language refuses the name: fine, it says so
    x = random_inputs(c, shapes, seed=0, dtype="float32")
    ref = execute(c, x, shapes)["AV"]
    out = compile_kernel(c, GPUMapping(16, 16, dtype="f32"), shapes)(**{k: torch.tensor(v) for k, v in x.items()})
    err = np.abs(out.double().numpy() - ref).max() / np.abs(ref).max()
    assert err < 1e-5
    return err


@pytest.mark.parametrize("name", sorted(set(OWN + KEYWORDS)))
def test_a_batch_rank_named_like_a_kernel_variable_or_a_keyword(name):
    rank = name.upper()
    shapes = dict(B=2, M=20, P=19, E=4, F=3, **{rank: 2})
    _check(_rename_rank(DESIGN, rank), shapes)


@pytest.mark.parametrize("name", ["Q_s0", "T0_Q", "None", "True", "False", "LOG2E", "BLOCK_M", "SYM0_M"])
def test_a_tensor_named_like_a_kernel_parameter(name):
    text = re.sub(r"\bSL\b", name, DESIGN)
    assert _check(text, dict(B=1, H=2, M=20, P=19, E=4, F=3)) is not None


@pytest.mark.parametrize("name", ["t0_Q", "tl", "i", "alpha"])
def test_lower_case_tensor_names_are_refused_by_the_language(name):
    with pytest.raises(EinError):
        parse(re.sub(r"\bSL\b", name, DESIGN), name="hostile")


def test_comments_cannot_break_out_of_the_header():
    evil = "x\nimport os; os.system('echo pwned')\r\u2028y"
    line = comment_text(evil)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    compile("# " + line + "\n", "<t>", "exec")


def test_invalid_generated_code_is_reported_as_attncs_bug():
    with pytest.raises(GeneratedCodeError, match="bug in attnc"):
        check_source("def f(:\n", "d")


CHUNKED = """rank B, H, E, F
partition M -> M1, M0
input Q[B, H, E, M]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
PQ[b, h, e, m] = sigmoid(Q[b, h, e, m])
PK[b, h, e, m] = sigmoid(K[b, h, e, m])
KVC[b, h, e, f, m1] = PK[b, h, e, m1 * M0 + m0] * V[b, h, f, m1 * M0 + m0]
ST[b, h, e, f, 0] = 0
ST[b, h, e, f, m1 + 1] = ST[b, h, e, f, m1] + KVC[b, h, e, f, m1]
AV[b, h, f, m] = PQ[b, h, e, m] * ST[b, h, e, f, m / M0 + 1]
"""


@pytest.mark.parametrize("rank, name", [("M1", "X1"), ("M1", "I"), ("M1", "TL"), ("M1", "REST0"), ("H", "X0"),
                                        ("H", "LD0"), ("H", "IF"), ("H", "PID_B"), ("B", "C0_H")])
def test_the_chunked_kernel_with_ranks_named_like_its_variables(rank, name):
    text = re.sub(rf"\b{rank}\b", name, CHUNKED)
    text = re.sub(rf"\b{rank.lower()}\b", name.lower(), text)
    c = parse(text, name="hostile-chunked")
    shapes = {(name if r == rank else r): v for r, v in dict(B=2, H=2, M=37, E=4, F=3, M0=16).items()}
    x = random_inputs(c, shapes, seed=0, dtype="float32")
    ref = execute(c, x, shapes)["AV"]
    k = compile_kernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    assert type(k).__name__ == "ChunkedKernel"
    out = k(**{n: torch.tensor(v) for n, v in x.items()}).double().numpy()
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
