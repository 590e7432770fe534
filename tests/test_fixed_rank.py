"""The fixed-rank formats' declaration and registration, and the one rank-fraction rule they use."""

from __future__ import annotations

import pickle

import pytest
from torch import nn

from harness import METHODS, Method
from harness.config import identity_dump
from harness.toolkit import rank_from_fraction
from harness_methods.fixed_rank import (
    CP,
    FORMATS,
    TT,
    FixedRankMethod,
    FixedRankParams,
    Matrix,
    MatrixMethod,
    TTMethod,
    Tucker,
    TuckerMethod,
)

COMMON = {"rank": 0.5, "compression": None, "layers": None, "implementation": "factorized", "decompose_iters": 2}


def test_each_format_is_declared_once_and_registered_as_a_method():
    assert FORMATS == {"tucker": Tucker, "cp": CP, "tt": TT, "matrix": Matrix}
    for name, fmt in FORMATS.items():
        assert fmt.name == name
        cls = METHODS.get(name)
        assert issubclass(cls, FixedRankMethod) and issubclass(cls, Method)
        assert cls.name == name and cls.Format is fmt and cls.Params is fmt.Params
        assert cls.__name__ == f"{fmt.__name__}Method" and cls.__doc__ == fmt.__doc__
        assert fmt.Params.__name__ == f"{fmt.__name__}Params" and fmt.Params.format is fmt
        assert issubclass(fmt.Params, FixedRankParams)
    assert len({fmt.Params for fmt in FORMATS.values()}) == 4  # each format its own parameter class


def test_a_format_name_cannot_be_declared_twice():
    with pytest.raises(ValueError, match="'cp' is already declared"):

        class AnotherCP(CP, name="cp"):
            pass

    assert FORMATS["cp"] is CP


def test_a_new_format_declares_its_name_in_the_class_line():
    try:

        class Wide(Matrix, name="wide_matrix"):
            """A matrix format under another name."""

        assert FORMATS["wide_matrix"] is Wide and Wide.name == "wide_matrix"
        assert Wide.Params.format is Wide and Wide.Params.__name__ == "WideParams"
        with pytest.raises(ValueError, match="wide_matrix has a single rank per layer"):
            Wide.Params.model_validate({"rank": [2, 2]})
        assert Matrix.Params.format is Matrix  # the parent's parameters keep their format
    finally:
        FORMATS.pop("wide_matrix", None)


def test_resolved_params_are_unchanged():
    """Run ids hash the resolved params (identity_dump): field names and defaults must stay as stored runs have
    them; a field added since (frobenius_decay) enters only when set."""
    assert identity_dump(TuckerMethod.Params()) == {**COMMON, "modes": "channels"}
    for name in ("cp", "tt", "matrix"):
        assert identity_dump(METHODS.get(name).Params()) == COMMON
    dumped = identity_dump(TTMethod.Params.model_validate({"compression": 0.9}))
    assert dumped == {**COMMON, "rank": None, "compression": 0.9}
    assert identity_dump(TTMethod.Params.model_validate({"frobenius_decay": 1e-4}))["frobenius_decay"] == 1e-4


def test_params_and_methods_pickle():
    p = TuckerMethod.Params.model_validate({"rank": [4, 2]})
    assert pickle.loads(pickle.dumps(p)) == p
    assert pickle.loads(pickle.dumps(TuckerMethod)) is TuckerMethod


@pytest.mark.parametrize("f", [0.01, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0])
def test_fraction_ranks_follow_the_one_rule(f):
    conv, lin = nn.Conv2d(20, 50, 5), nn.Linear(80, 30)
    # tucker: one rank per channel mode (and per kernel mode with modes: all)
    plan = TuckerMethod({"rank": f, "modes": "all"}).plan_layer("c", conv)
    assert plan.ranks == [rank_from_fraction(f, n) for n in (50, 20, 5, 5)]
    # matrix: bounded by min(out, in*kh*kw)
    assert MatrixMethod({"rank": f}).plan_layer("l", lin).ranks == [rank_from_fraction(f, 30)]
    assert MatrixMethod({"rank": f}).plan_layer("c", conv).ranks == [rank_from_fraction(f, 50)]
    # cp: conv bound is the parameter-parity rank ceil(50*20*5*5 / (50+20+5+5)) = 313
    assert METHODS.get("cp")({"rank": f}).plan_layer("c", conv).ranks == [rank_from_fraction(f, 313)]


def test_the_rule_rounds_up_and_ignores_float_noise():
    lin = nn.Linear(10, 10)
    assert MatrixMethod({"rank": 0.3}).plan_layer("l", lin).ranks == [3]  # 0.3 * 10 = 3.0000000000000004
    assert MatrixMethod({"rank": 0.25}).plan_layer("l", lin).ranks == [3]  # ceil(2.5)
    assert MatrixMethod({"rank": 0.01}).plan_layer("l", lin).ranks == [1]  # never rank zero
    assert MatrixMethod({"rank": 1.0}).plan_layer("l", lin).ranks == [10]
    assert [rank_from_fraction(0.3, 10), rank_from_fraction(0.25, 10), rank_from_fraction(1e-6, 10)] == [3, 3, 1]


@pytest.mark.parametrize("shape", [(64, 64, 3, 3), (50, 20, 5, 5), (64, 3, 3, 3), (16, 4, 1, 1)])
def test_tt_fraction_ranks_are_the_rule_clipped_to_consistent_neighbours(shape):
    out_c, in_c, kh, kw = shape
    conv, n = nn.Conv2d(in_c, out_c, (kh, kw)), [in_c, kh, kw, out_c]  # tltorch's TT mode order
    bounds = [min(in_c, kh * kw * out_c), min(in_c * kh, kw * out_c), min(in_c * kh * kw, out_c)]
    for f in (0.05, 0.15, 0.3, 0.5, 0.8, 1.0):
        ranks = TTMethod({"rank": f}).plan_layer("c", conv).ranks
        raw = [1, *(rank_from_fraction(f, b) for b in bounds), 1]
        assert ranks[0] == ranks[-1] == 1 and all(r <= q for r, q in zip(ranks, raw, strict=True))
        for k in range(4):
            assert ranks[k + 1] <= n[k] * ranks[k] and ranks[k] <= n[k] * ranks[k + 1]
        consistent = all(raw[k + 1] <= n[k] * raw[k] and raw[k] <= n[k] * raw[k + 1] for k in range(4))
        if consistent:
            assert ranks == raw
