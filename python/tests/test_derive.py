"""The SymPy objects of smelt.derive against independent statements of published SMEs
(written here by hand from the papers, not produced by smelt), and the exports."""

import inspect
import json

import numpy as np
import pytest
import sympy
from sympy import Function, Rational, Symbol, log, series, simplify

import smelt

x = Symbol("x")
eta = Symbol("eta", positive=True)
f = Function("f")
Sigma = Function("Sigma")
fp, fpp = f(x).diff(x), f(x).diff(x, 2)


def test_sgd_order_2_is_li_tai_e(root):
    # Li, Tai & E (JMLR 2019), SME-2 of SGD (shared/FORMULAS.md §2):
    # dX = -∇(f + η/4 |∇f|²) dt + sqrt(η Σ) dW; in 1-D, ∇(η/4 f'²) = η/2 f' f''.
    sme = smelt.derive(open(root / "examples/sgd.opt").read(), order=2)
    assert simplify(sme.drift - (-fp - eta / 2 * fp * fpp)) == 0
    assert simplify(sme.diffusion - eta * Sigma(x)) == 0
    assert sme.order == 2
    assert sme.optimizer == "SGD"


def test_sgd_order_1_and_paths(root):
    one = smelt.derive(root / "examples/sgd.opt")
    also = smelt.derive(str(root / "examples/sgd.opt"), order=1)
    assert simplify(one.drift + fp) == 0
    assert one.drift == also.drift


def test_the_hessian_aware_series(root):
    # The exact SDE of SGD on a quadratic (shared/FORMULAS.md §8.1, Li–Shen–Zhang–He's
    # HA-SME there): drift -(-log(1 - ηh)/(ηh)) f', diffusion η S(ηh) Σ with
    # S(u) = -2 log(1 - u)/(u (2 - u)); smelt's series through η³ (order 4).
    sme = smelt.derive(root / "examples/sgd.opt", hessian_aware=True)
    u = Symbol("u")
    drift_factor = series(-log(1 - u) / u, u, 0, 4).removeO()
    diff_factor = series(-2 * log(1 - u) / (u * (2 - u)), u, 0, 3).removeO()
    expected_drift = -drift_factor.subs(u, eta * fpp) * fp
    expected_diffusion = eta * diff_factor.subs(u, eta * fpp) * Sigma(x)
    assert sympy.expand(sme.drift - expected_drift) == 0
    assert sympy.expand(sme.diffusion - expected_diffusion) == 0


def test_components_in_dimension_2(root):
    sme = smelt.derive(root / "examples/sgd.opt", order=2, dim=2)
    assert isinstance(sme.drift, sympy.MatrixBase) and sme.drift.shape == (2, 1)
    x1, x2 = Symbol("x1"), Symbol("x2")
    F = Function("f")(x1, x2)
    # -∇f - η/2 H∇f, first component.
    expected = -F.diff(x1) - eta / 2 * (F.diff(x1, 2) * F.diff(x1) + F.diff(x1, x2) * F.diff(x2))
    assert sympy.expand(sme.drift[0] - expected) == 0
    assert sme.diffusion.shape == (2, 2)


def test_exports_are_the_clis(root, cli):
    import subprocess

    rule = root / "examples/adam.opt"
    sme = smelt.derive(rule, order=1)
    for fmt, got in [("json", sme.to_json()), ("latex", sme.to_latex()), ("text", sme.text())]:
        out = subprocess.run([cli, "derive", str(rule), "--format", fmt], capture_output=True, text=True, check=True)
        assert out.stdout == got, fmt
    assert "\\" in sme._repr_latex_()
    assert json.loads(sme.to_json())["optimizer"] == sme.optimizer


def test_numpy_callables_agree_with_the_sympy_objects(root):
    # The NumPy export and the SymPy export are written by different emitters; on the
    # double well f = x⁴/4 − x²/2 with Σ = 1/2 + x²/4 they must give the same numbers.
    sme = smelt.derive(root / "examples/sgd.opt", order=2)
    mod = sme.numpy()
    fx = x**4 / 4 - x**2 / 2
    sig = Rational(1, 2) + x**2 / 4
    concrete = lambda e: e.subs({fp: fx.diff(x), fpp: fx.diff(x, 2)}).subs(Sigma(x), sig).doit()
    b = sympy.lambdify((x, eta), concrete(sme.drift))
    d = sympy.lambdify((x, eta), concrete(sme.diffusion))
    for xv in (-1.3, -0.2, 0.0, 0.7, 2.0):
        for ev in (0.1, 0.01):
            kw = dict(
                grad_f=lambda z: np.array([z[0] ** 3 - z[0]]),
                hess_f=lambda z: np.array([[3 * z[0] ** 2 - 1]]),
                Sigma=lambda z: np.array([[0.5 + z[0] ** 2 / 4]]),
                eta=ev,
            )
            got_b = np.ravel(mod.drift(np.array([xv]), **kw))[0]
            # The diffusion by pair of states, as the NumPy export returns it.
            got_d = np.ravel(mod.diffusion(np.array([xv]), **kw)[("x", "x")])[0]
            assert got_b == pytest.approx(b(xv, ev), rel=1e-13, abs=1e-15)
            assert got_d == pytest.approx(d(xv, ev), rel=1e-13, abs=1e-15)


def test_diff_of_order_2_and_order_1(root):
    two = smelt.derive(root / "examples/sgd.opt", order=2)
    one = smelt.derive(root / "examples/sgd.opt", order=1)
    d = smelt.diff(two, one)
    assert set(d) == {"drift"}
    (terms,) = d["drift"].values()
    assert len(terms) == 1 and sympy.expand(terms[0] + eta / 2 * fp * fpp) == 0
    assert smelt.diff(two, two) == {}


def test_diff_of_sam_and_sgd(root):
    # Unnormalized SAM with radius ρ = rη (examples/sam.opt) differs from SGD at order 2
    # by the gradient of USAM's regulariser (ρ/2)|∇f|² (Compagnoni et al., "An SDE for
    # modeling SAM", ICML 2023): -ρ H∇f = -rη f' f'' in 1-D; the diffusions agree.
    sam = smelt.derive(root / "examples/sam.opt", order=2)
    sgd = smelt.derive(root / "examples/sgd.opt", order=2)
    d = smelt.diff(sam, sgd)
    assert set(d) == {"drift"}
    (terms,) = d["drift"].values()
    r = sam.symbols["r"]
    assert sympy.expand(sympy.Add(*terms) + r * eta * fp * fpp) == 0
    assert smelt.diff(smelt.derive(root / "examples/sam.opt", order=1), smelt.derive(root / "examples/sgd.opt")) == {}


def test_numpy_callables_agree_with_the_rust_evaluator(root):
    # The NumPy export (emit/numpy.rs) and the program `verify` simulates (the tape
    # compiler, sim/compile.rs) are two translations of one SME; on the 2-D double well
    # (examples/problems/double_well_2d.prob) they must give the same numbers.
    from smelt import _native

    prob = root / "examples/problems/double_well_2d.prob"
    text = prob.read_text()
    for rule, order in [("sgd.opt", 1), ("sgd.opt", 2), ("sam.opt", 2)]:
        sme = smelt.derive(root / "examples" / rule, order=order)
        mod = sme.numpy()
        src = (root / "examples" / rule).read_text()
        for point in ([0.3, -0.8], [-1.2, 0.1], [0.0, 0.0]):
            b, D = _native.coefficients(src, rule, text, str(prob), str(prob.parent), order, 0.05, point,
                                        set={"r": 0.7} if rule == "sam.opt" else None)
            z = np.array(point)
            kw = dict(grad_f=grad2, hess_f=hess2, Sigma=sigma2, eta=0.05)
            if "r" in sme.symbols:
                kw["r"] = 0.7
            # Each function takes what its SME reads (order 1: no Hessian).
            takes = lambda fn: {k: v for k, v in kw.items() if k in inspect.signature(fn).parameters}
            got_b = np.ravel(mod.drift(z, **takes(mod.drift)))
            got_D = np.ravel(mod.diffusion(z, **takes(mod.diffusion))[("x", "x")])
            np.testing.assert_allclose(got_b, b, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(got_D, D, rtol=1e-12, atol=1e-14)


# f = Σ (x⁴/4 − x²/2) + 0.2 x₁x₂ and its noise, as examples/problems/double_well_2d.prob
# states them, written out by hand.
def grad2(z):
    return np.array([z[0] ** 3 - z[0] + 0.2 * z[1], z[1] ** 3 - z[1] + 0.2 * z[0]])


def hess2(z):
    return np.array([[3 * z[0] ** 2 - 1, 0.2], [0.2, 3 * z[1] ** 2 - 1]])


def sigma2(z):
    return np.array([[0.5 + 0.1 * z[1] ** 2, 0.1], [0.1, 0.4]])
