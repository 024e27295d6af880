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
    assert "batch" in smelt.scaling(root / "examples/sgd.opt").lower()
