//! The SymPy export (`smelt::emit::sympy`), run with the project's Python.
//!
//! Each test derives an SME, renders the script, appends a few lines of Python that
//! restate a published result independently (their own `Symbol`s and `Function`s, built
//! from the names the script documents) and assert that the difference simplifies to
//! zero, and runs it: a failed assertion is a non-zero exit code.
//!
//! The Python is `.venv/bin/python` at the crate root (`scripts/python-env.sh` creates it
//! with SymPy and NumPy; the tests run that script once when it is missing). Without a
//! usable Python a test prints "skipped: …" and passes, unless the environment variable
//! `CI` is set: then it fails.

use smelt::{Options, Sme};

mod support;

fn derive(file: &str, order: u32, gaussian: bool) -> Sme {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if gaussian {
        assert!(
            source.contains("~ general"),
            "{file} declares general noise"
        );
        source = source.replace("~ general", "~ gaussian");
    }
    smelt::derive(&source, &Options::order(order)).unwrap_or_else(|e| panic!("{file}: {e:?}"))
}

/// Runs the script for `sme` in dimension `dim` followed by `checks`.
fn run(label: &str, sme: &Sme, dim: usize, checks: &str) {
    let script = smelt::emit::sympy::render(sme, Some(dim));
    let source = format!(
        "{script}\n\n# ---- the test's checks ----\n{HELPERS}\n{}\nprint('checks passed')\n",
        checks.trim()
    );
    support::python::run_checks(&format!("sympy-{label}"), &source, &[]);
}

/// Python shared by the checks.
const HELPERS: &str = r#"
from sympy import Function, Matrix, Symbol, exp, hessian, simplify, sqrt, zeros

def vanishes(e):
    """Whether an expression or a matrix simplifies to zero."""
    e = simplify(e)
    return e.is_zero_matrix if hasattr(e, 'is_zero_matrix') else e == 0
"#;

#[test]
fn sgd_order_2_in_one_dimension_is_li_tai_e() {
    let sme = derive("sgd.opt", 2, false);
    run(
        "sgd2-d1",
        &sme,
        1,
        r#"
x = Symbol('x')
eta = Symbol('eta', positive=True)
f = Function('f')
Sigma = Function('Sigma')
b = -f(x).diff(x) - eta/2*f(x).diff(x, 2)*f(x).diff(x)
assert simplify(drift - b) == 0, drift
assert simplify(diffusion - eta*Sigma(x)) == 0, diffusion
assert (order, dim, conditions) == (2, 1, []), (order, dim, conditions)
assert time_step == eta
assert vanishes(drift_vector - Matrix([b]))
"#,
    );
}

#[test]
fn sgd_order_2_in_two_dimensions_is_li_tai_e() {
    let sme = derive("sgd.opt", 2, false);
    run(
        "sgd2-d2",
        &sme,
        2,
        r#"
x1, x2 = Symbol('x1'), Symbol('x2')
eta = Symbol('eta', positive=True)
F = Function('f')(x1, x2)
g = Matrix([F.diff(x1), F.diff(x2)])
H = hessian(F, (x1, x2))
S2 = Matrix(2, 2, lambda i, j: Function('Sigma_%d_%d' % (min(i, j) + 1, max(i, j) + 1))(x1, x2))
assert drift.shape == (2, 1) and diffusion.shape == (2, 2)
assert vanishes(drift - (-g - eta/2*H*g)), drift
assert vanishes(diffusion - eta*S2), diffusion
assert vanishes(Sigma - S2) and Sigma == Sigma.T
assert state_vector == Matrix([x1, x2])
"#,
    );
}

#[test]
fn sgd_order_3_gaussian_in_one_dimension() {
    let sme = derive("sgd.opt", 3, true);
    run(
        "sgd3-gauss-d1",
        &sme,
        1,
        r#"
x = Symbol('x')
eta = Symbol('eta', positive=True)
f = Function('f')
s = Function('Sigma')(x)
f1, f2, f3 = f(x).diff(x), f(x).diff(x, 2), f(x).diff(x, 3)
b = -f1 - eta/2*f1*f2 - eta**2/12*(4*f1*f2**2 + f1**2*f3 - 3*s*f3)
D = eta*s + eta**2*(s*f2 + f1*s.diff(x)/2)
assert vanishes(drift - b), drift
assert vanishes(diffusion - D), diffusion
assert order == 3 and conditions == []
"#,
    );
}

#[test]
fn sgd_order_3_general_noise_keeps_its_condition() {
    let sme = derive("sgd.opt", 3, false);
    run(
        "sgd3-general-d1",
        &sme,
        1,
        r#"
x = Symbol('x')
assert (order, requested_order) == (2, 3)
assert len(conditions) == 1, conditions
c = conditions[0]
assert c['moment'] == ('x', 'x', 'x') and c['power'] == 3 and c['needed_for_order'] == 3
assert simplify(c['residual'] + Function('S')(x)) == 0, c['residual']
"#,
    );
}

#[test]
fn heavy_ball_order_2_in_one_dimension() {
    let sme = derive("momentum.opt", 2, false);
    run(
        "momentum2-d1",
        &sme,
        1,
        r#"
x, v = Symbol('x'), Symbol('v')
h = Symbol('h', positive=True)
lam = Symbol('lambda', positive=True)
f = Function('f')
Sigma = Function('Sigma')
f1, f2 = f(x).diff(x), f(x).diff(x, 2)
assert set(drift) == {'x', 'v'}
assert vanishes(drift['x'] - (v - h/2*(lam*v + f1))), drift['x']
assert vanishes(drift['v'] - (-(lam*v + f1) - h/2*(lam**2*v + lam*f1 - f2*v))), drift['v']
assert vanishes(diffusion[('v', 'v')] - h*Sigma(x)), diffusion
for block in [('x', 'x'), ('x', 'v'), ('v', 'x')]:
    assert diffusion[block] == 0, (block, diffusion[block])
assert vanishes(diffusion_matrix - Matrix([[0, 0], [0, h*Sigma(x)]]))
assert state_vector == Matrix([x, v])
"#,
    );
}

/// Malladi et al.'s Adam SDE: dX = -(√γ2/γ1) m/(σ0 √u + ε0 √γ2), γi = 1 - exp(-ci t);
/// dm = c1(∇f - m), du = c2(diag Σ - u), D_mm = c1² σ0² Σ.
#[test]
fn adam_order_1_gaussian_runs_in_one_and_two_dimensions() {
    let sme = derive("adam.opt", 1, true);
    run(
        "adam1-gauss-d1",
        &sme,
        1,
        r#"
x, m, u, t = Symbol('x'), Symbol('m'), Symbol('u'), Symbol('t')
c1, c2, sigma0, eps0 = [Symbol(n, positive=True) for n in ['c1', 'c2', 'sigma0', 'eps0']]
f = Function('f')
Sigma = Function('Sigma')
g1, g2 = 1 - exp(-c1*t), 1 - exp(-c2*t)
bx = -sqrt(g2)/g1*m/(sigma0*sqrt(u) + eps0*sqrt(g2))
assert set(drift) == {'x', 'm', 'u', 't'}
point = {m: 0.7, u: 1.3, t: 0.9, c1: 0.4, c2: 1.7, sigma0: 0.8, eps0: 0.3}
assert abs((drift['x'] - bx).subs(point).evalf()) < 1e-12, drift['x']
assert vanishes(drift['m'] - c1*(f(x).diff(x) - m))
assert vanishes(drift['u'] - c2*(Sigma(x) - u))
assert drift['t'] == 1
assert vanishes(diffusion[('m', 'm')] - c1**2*sigma0**2*Sigma(x))
assert diffusion_matrix.shape == (4, 4) and state_vector.shape == (4, 1)
"#,
    );
    run(
        "adam1-gauss-d2",
        &sme,
        2,
        r#"
x1, x2, m1, m2, u1, u2 = [Symbol(n) for n in ['x1', 'x2', 'm1', 'm2', 'u1', 'u2']]
t = Symbol('t')
c1, c2, sigma0 = [Symbol(n, positive=True) for n in ['c1', 'c2', 'sigma0']]
F = Function('f')(x1, x2)
S2 = Matrix(2, 2, lambda i, j: Function('Sigma_%d_%d' % (min(i, j) + 1, max(i, j) + 1))(x1, x2))
assert drift['x'].shape == (2, 1)
assert vanishes(drift['m'] - c1*(Matrix([F.diff(x1), F.diff(x2)]) - Matrix([m1, m2])))
assert vanishes(drift['u'] - c2*(Matrix([S2[0, 0], S2[1, 1]]) - Matrix([u1, u2])))
assert drift['t'] == 1
assert vanishes(diffusion[('m', 'm')] - c1**2*sigma0**2*S2)
assert diffusion[('x', 't')].shape == (2, 1) and diffusion[('t', 'x')].shape == (1, 2)
assert diffusion_matrix.shape == (7, 7) and state_vector.shape == (7, 1)
assert vanishes(diffusion_matrix - diffusion_matrix.T)
"#,
    );
}

/// Fixed-momentum rules at weak order 2 (issue 19): their SME, exported to SymPy, against
/// an independent derivation written here in SymPy by backward error analysis of the
/// two-step recurrence that the rule is (the method of modified equations Kovachki &
/// Stuart use, JMLR 22(17), 2021): the ODE x' = F₀ + ηF₁ whose flow satisfies
/// `x(t+η) − x(t) = μ(x(t) − x(t−η)) − λη f'(x(t) + νμ(x(t) − x(t−η)))` through η².
/// smelt derives the same SMEs by eliminating the fast state from the one-step rule
/// (`derive::fast`), never from the recurrence, so the two sides share nothing but the
/// rule. The diffusion is SGD's with learning rate λη/(1 − μ) (FORMULAS.md §3.2), and
/// the drift has no noise term. (Checked to fail when Nesterov's look-ahead is left out
/// of the recurrence: −860η against heavy ball's −950η at μ = 9/10.)
#[test]
fn fixed_momentum_at_order_2_is_the_modified_equation_of_the_two_step_recurrence() {
    // (rule, μ, λ, ν): heavy ball (ν = 0), Nesterov (ν = 1), an EMA of the gradient
    // (m' = βm + (1 − β)g, x' = x − ηm' is the recurrence with μ = β, λ = 1 − β).
    let heavy_ball = |mu: &str| {
        format!("optimizer HB\n param x\n state v\n small eta\n let mu = {mu}\n time eta\n noise xi ~ general\n v = mu*v - eta*(grad f(x) + xi)\n x = x + v\n")
    };
    let nesterov = |mu: &str| {
        format!("optimizer NAG\n param x\n state v\n small eta\n let mu = {mu}\n time eta\n noise xi ~ general\n let y = x + mu*v\n v = mu*v - eta*(grad f(y) + xi(y))\n x = x + v\n")
    };
    let sym = |rule: &str| rule.replace("let mu = mu", "hyper mu in (0, 1)");
    let ema = |beta: &str| {
        format!("optimizer EMA\n param x\n state m\n small eta\n let beta = {beta}\n time eta\n noise xi ~ general\n m = beta*m + (1 - beta)*(grad f(x) + xi)\n x = x - eta*m\n")
    };
    let cases = [
        (heavy_ball("9/10"), "Rational(9, 10)", "1", 0),
        (heavy_ball("1/2"), "Rational(1, 2)", "1", 0),
        (heavy_ball("-1/2"), "Rational(-1, 2)", "1", 0),
        (nesterov("9/10"), "Rational(9, 10)", "1", 1),
        (nesterov("1/2"), "Rational(1, 2)", "1", 1),
        (ema("9/10"), "Rational(9, 10)", "Rational(1, 10)", 0),
        // A symbolic rate: smelt writes κ for 1/(1 − μ), substituted back here.
        (sym(&heavy_ball("mu")), "mu", "1", 0),
        (sym(&nesterov("mu")), "mu", "1", 1),
        (
            ema("b").replace("let beta = b", "hyper beta in (0, 1)"),
            "beta",
            "1 - beta",
            0,
        ),
    ];
    for (i, (source, mu, lr, look)) in cases.iter().enumerate() {
        let sme = smelt::derive(source, &Options::order(2)).unwrap_or_else(|e| panic!("{e:?}"));
        run(
            &format!("fixed-momentum-{i}"),
            &sme,
            1,
            &format!(
                r#"
from sympy import Rational, series, solve
x = Symbol('x')
eta = Symbol('eta', positive=True)
f = Function('f')
Sigma = Function('Sigma')
mu, lr, look = {mu}, {lr}, {look}
F0, F1 = Function('F0')(x), Function('F1')(x)
F = F0 + eta*F1
def flow(s):
    # the flow of x' = F over time s, through s^3 (Lie series)
    t2 = F.diff(x)*F
    return x + s*F + s**2/2*t2 + s**3/6*t2.diff(x)*F
xp, xm = flow(eta), flow(-eta)
d = look*mu*(x - xm)
f1, f2, f3 = f(x).diff(x), f(x).diff(x, 2), f(x).diff(x, 3)
residual = xp - x - mu*(x - xm) + lr*eta*(f1 + d*f2 + d**2/2*f3)
r = series(residual, eta, 0, 3).removeO()
c0 = solve(r.coeff(eta, 1), F0)[0]
r2 = r.coeff(eta, 2).subs(F0, c0).doit()
c1 = solve(r2, F1)[0]
b = c0 + eta*c1
if 'kappa' in globals():
    drift = drift.subs(kappa, 1/(1 - mu))
    diffusion = diffusion.subs(kappa, 1/(1 - mu))
assert vanishes(drift - b), (drift, b)
assert vanishes(diffusion - eta*(lr/(1 - mu))**2*Sigma(x)), diffusion
assert order == 2 and conditions == [], (order, conditions)
"#
            ),
        );
    }
}

/// The export carries the eliminated fast state and the notes that say what the reduction
/// assumes (with a symbolic rate, the symbol standing for 1/(1 − μ)).
#[test]
fn the_export_names_the_eliminated_state() {
    let sme = derive("heavy_ball_mu.opt", 2, false);
    run(
        "eliminated",
        &sme,
        1,
        r#"
e = eliminated[0]
assert (e['state'], e['scale'], e['complement']) == ('v', 1, 'kappa'), e
assert e['rate'] == Symbol('mu', positive=True), e
assert len(notes) == 3 and 'slow manifold' in notes[1], notes
"#,
    );
}
