"""Bad input raises smelt.SmeltError with the diagnostic's text, line and column."""

import pytest

import smelt


def test_an_undefined_name_points_at_its_line_and_column():
    rule = "optimizer Bad\n  param x\n  small eta\n  time eta\n  noise xi ~ gaussian\n\n  x = x - eta*(grad f(x) + xii)\n"
    with pytest.raises(smelt.SmeltError) as info:
        smelt.derive(rule)
    e = info.value
    assert e.code == "undefined-name"
    assert (e.file, e.line) == ("<string>", 7)
    assert e.column == rule.splitlines()[6].index("xii") + 1
    assert "xii" in e.message and "<string>:7:" in e.text
    assert e.hint and "xi" in e.hint
    assert str(e) == e.text.rstrip("\n")


def test_a_refused_derivation_and_a_bad_order(root):
    with pytest.raises(smelt.SmeltError):
        smelt.derive("this is not an optimizer")
    with pytest.raises(ValueError):
        smelt.derive(root / "examples/sgd.opt", order=0)
    with pytest.raises(TypeError):
        smelt.derive(42)


def test_a_bad_problem_points_into_the_problem(root, tmp_path):
    bad = tmp_path / "bad.prob"
    bad.write_text("problem p\n  dim 1\n  objective f(x) = sum(x^2)\n  noise gaussian cov = -1\n  start x = 1\n  horizon 1\n  observe sq = sum(x^2)\n")
    with pytest.raises(smelt.SmeltError) as info:
        smelt.verify(root / "examples/sgd.opt", bad, paths=128)
    assert info.value.file == str(bad)
    assert info.value.line is not None


def test_check_and_scaling(root):
    canonical = smelt.check(root / "examples/sgd.opt")
    assert canonical.startswith("optimizer SGD")
    assert "batch" in str(smelt.scaling(root / "examples/sgd.opt")).lower()


def test_scaling_rules_as_exponents(root):
    """The published rules, stated here by hand: SGD's linear scaling rule (Goyal et al.
    2017; Li, Tai & E), and Adam's square-root rule in Malladi et al.'s parametrisation
    (NeurIPS 2022, Definition 4.3: eta -> sqrt(k) eta, 1 - beta -> k (1 - beta),
    eps -> eps / sqrt(k)); the exponents come from smelt's solver of the SME's
    invariance equations, not from a table."""
    from fractions import Fraction as F

    sgd = smelt.scaling(root / "examples/sgd.opt")
    assert sgd.possible and sgd.exponents == {"eta": F(1)}
    assert sgd.steps == F(-1) and sgd.free == []
    assert str(sgd) == sgd.text and "× κ" in sgd.text

    adam = smelt.scaling(root / "examples/adam.opt", noise_scale="sigma")
    assert adam.exponents["eta"] == F(1, 2)
    assert adam.derived["1 - beta1"] == F(1) and adam.derived["1 - beta2"] == F(1)
    assert adam.derived["sigma"] == F(-1, 2) and adam.derived["eps"] == F(-1, 2)

    # RMSprop's state u = v/sigma^2 is measured against sigma: with the covariance of the
    # normalised noise changing instead, no scaling keeps u's drift.
    rms = smelt.scaling(root / "examples/rmsprop.opt")
    assert not rms.possible and rms.exponents == {} and rms.steps is None
    assert "drift of u" in rms.blocker and "none:" in rms.text
