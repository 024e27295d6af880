//! Non-smooth maps in update rules (`sign`, `abs`, `relu`, `min`, `max`, `clip`) and
//! noise samples with laws of their own.
//!
//! What makes the checks independent of the derivation:
//! - the independent certificate runs the update rule itself in the reference
//!   interpreter (the real `sign`, the real `clip`) on a random problem and compares its
//!   one-step moments with those of the derived SDE, compiled and differentiated by the
//!   numeric graph;
//! - the Gaussian averages of kinks are checked in `src/derive/kink.rs` against
//!   Gauss–Legendre quadrature split at the kinks, and `src/numeric/gauss.rs` against
//!   Monte Carlo and mpmath values;
//! - the identities behind `relu`, `min`, `max`, `clip` are evaluated here on both sides
//!   of every kink, at it, and at equal arguments.

mod support;

use smelt::internals::sim::certify::{check, Verdict};
use smelt::{Options, Sme};

fn derive(source: &str, order: u32) -> (smelt::Optimizer, Sme) {
    let opt = smelt::check(source).unwrap_or_else(|e| panic!("{e:?}"));
    let sme = smelt::derive(source, &Options::order(order)).unwrap_or_else(|e| panic!("{e:?}"));
    (opt, sme)
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn text(sme: &Sme) -> String {
    smelt::emit::text::render(sme)
}

/// Signum with slow momentum: the sign is expanded away from its kink; the rule's own
/// moments (the interpreter runs the real sign) agree with the SDE's to order 2.
#[test]
fn signum_with_slow_momentum_is_expanded_away_from_the_kink() {
    for order in [1, 2] {
        let (opt, sme) = derive(&example("signum.opt"), order);
        assert_eq!(sme.order, order);
        let shown = text(&sme);
        assert!(shown.contains("b_x = -sign(m)"), "{shown}");
        assert!(
            sme.notes.iter().any(|n| n.contains("away from its kink")),
            "{:?}",
            sme.notes
        );
        let c = check(&opt, &sme, 7);
        assert_eq!(c.verdict, Verdict::Pass, "order {order}: {}", c.summary());
    }
}

/// relu, min, max and clip of deterministic quantities (clipped gradient descent with
/// small noise outside the map): the independent certificate at orders 1 and 2.
#[test]
fn clip_relu_min_max_of_the_gradient_pass_the_independent_check() {
    for body in [
        "x = x - eta*clip(grad f(x), -c, c) - eta*xi",
        "x = x - eta*(relu(grad f(x)) - relu(-grad f(x)) + xi)",
        "x = x - eta*(max(grad f(x), -c) + min(grad f(x), c) - grad f(x) + xi)",
        "x = x - eta*(abs(grad f(x) + c) - abs(grad f(x) - c) + xi)/2",
    ] {
        let source = format!(
            "optimizer Kinked\n  param x\n  small eta\n  hyper c > 0\n  time eta\n  noise xi ~ gaussian\n  {body}\n"
        );
        for order in [1, 2] {
            let (opt, sme) = derive(&source, order);
            assert_eq!(sme.order, order, "{body}");
            let c = check(&opt, &sme, 11);
            assert_eq!(
                c.verdict,
                Verdict::Pass,
                "{body} order {order}: {}",
                c.summary()
            );
        }
    }
}

/// The identities the derivation writes `relu`, `min`, `max` and `clip` with, on both
/// sides of every kink, at it, and at equal arguments.
#[test]
fn piecewise_identities_hold_on_both_sides_of_every_kink() {
    let relu = |u: f64| (u + u.abs()) / 2.0;
    let max = |a: f64, b: f64| (a + b + (a - b).abs()) / 2.0;
    let min = |a: f64, b: f64| (a + b - (a - b).abs()) / 2.0;
    let clip = |v: f64, lo: f64, hi: f64| (lo + hi + (v - lo).abs() - (v - hi).abs()) / 2.0;
    // Exact in the reals; in floating point within a few ulps of the largest argument.
    let close = |x: f64, y: f64, scale: f64| (x - y).abs() <= 4.0 * f64::EPSILON * scale;
    let points = [-3.0, -1.0, -0.7, -1e-300, 0.0, 1e-300, 0.3, 1.0, 3.0];
    for &a in &points {
        assert_eq!(relu(a), a.max(0.0), "relu({a})");
        for &b in &points {
            let s = a.abs() + b.abs();
            assert!(close(max(a, b), a.max(b), s), "max({a}, {b})");
            assert!(close(min(a, b), a.min(b), s), "min({a}, {b})");
            for &c in &points {
                if b <= c {
                    let s = s + c.abs();
                    assert!(
                        close(clip(a, b, c), a.max(b).min(c), s),
                        "clip({a}, {b}, {c})"
                    );
                }
            }
        }
    }
}

fn refusal(body: &str, noise: &str) -> String {
    let source = format!(
        "optimizer Bad\n  param x\n  small eta\n  time eta\n  noise xi ~ {noise}\n  {body}\n"
    );
    match smelt::derive(&source, &Options::order(1)) {
        Ok(sme) => panic!("{body}: derived\n{}", text(&sme)),
        Err(e) => {
            let shown = smelt::diagnostic::render(e.diagnostics(), "bad.opt", &source);
            assert!(shown.contains("bad.opt:6:3"), "{shown}");
            assert!(shown.contains("hint"), "{shown}");
            shown
        }
    }
}

/// Refusals say why and what to write instead, at the statement.
#[test]
fn kinks_of_noise_that_smelt_cannot_average_are_refused_with_a_hint() {
    let general = refusal("x = x - eta*sign(grad f(x) + xi)", "general");
    assert!(general.contains("declare the sample Gaussian"), "{general}");
    let mixed = refusal("x = x - eta*sign(hess f(x) @ xi)", "gaussian");
    assert!(mixed.contains("componentwise"), "{mixed}");
    let norm = refusal(
        "x = x - eta*(grad f(x) + xi)/norm(grad f(x) + xi)",
        "gaussian",
    );
    assert!(norm.contains("noise of order one inside"), "{norm}");
    assert!(norm.contains("examples/normalized_sgd.opt"), "{norm}");
}

/// signSGD with Gaussian noise of order one (examples/signsgd.opt) in d = 1 against the
/// SDE of Compagnoni, Liu, Islamov, Proske, Orvieto & Lucchi, "Adaptive methods through
/// the lens of SDEs: theoretical insights on the role of noise", ICLR 2025
/// (arXiv:2411.15958), for Gaussian noise of variance Σ:
/// dX = −erf(f'/√(2Σ)) dt + √η √(1 − erf(f'/√(2Σ))²) dW, stated here in SymPy by hand and
/// compared with smelt's SymPy export (the difference simplifies to 0).
#[test]
fn signsgd_in_one_dimension_is_compagnoni_et_al() {
    let (_, sme) = derive(&example("signsgd.opt"), 1);
    assert_eq!(sme.order, 1);
    let exported = smelt::emit::sympy::render(&sme, Some(1));
    let check = r#"
import runpy
import sympy as sp

ns = runpy.run_path('exported.py')
x, eta, f, Sigma = ns['x'], ns['eta'], ns['f'], ns['Sigma']
g = f(x).diff(x)
e = sp.erf(g / sp.sqrt(2 * Sigma(x)))
drift = -e                       # Compagnoni et al. (2025), signSGD, Gaussian noise
diffusion = eta * (1 - e**2)     # sigma sigma^T with sigma = sqrt(eta) sqrt(1 - erf^2)
assert sp.simplify(ns['drift'] - drift) == 0, ns['drift']
assert sp.simplify(ns['diffusion'] - diffusion) == 0, ns['diffusion']
print('checks passed')
"#;
    support::python::run_checks(
        "signsgd_compagnoni.py",
        check,
        &[("exported.py", &exported)],
    );
}

/// signSGD in d = 2 with correlated Gaussian noise: the diffusion is the covariance of
/// the sign vector, η(E[s sᵀ] − E[s] E[s]ᵀ), s = sign(∇f + ξ). Its entries from the
/// reference evaluator (the diagonal from smelt's closed form, the off-diagonal from
/// the bivariate normal mean) against Monte Carlo of sign(∇f + ξ) itself.
#[test]
fn signsgd_diffusion_in_two_dimensions_is_the_sign_covariance() {
    let (_, sme) = derive(&example("signsgd.opt"), 1);
    let eta = 0.1;
    let g = [0.4, -0.7];
    let sigma = [[0.9, -0.5], [-0.5, 0.6]];
    let (b, dxx) = drift_and_diffusion(&sme, g, sigma, &[("eta", eta)]);
    // Monte Carlo: ξ = L w, L the Cholesky factor of Σ.
    let l11 = sigma[0][0_usize].sqrt();
    let l21 = sigma[1][0] / l11;
    let l22 = (sigma[1][1] - l21 * l21).sqrt();
    let mut rng = smelt::internals::numeric::rng::Streams::new(17).stream(0);
    let n = 2_000_000;
    let (mut m, mut c) = ([0.0f64; 2], [[0.0f64; 2]; 2]);
    for _ in 0..n {
        let (w1, w2) = (rng.normal(), rng.normal());
        let s = [
            (g[0] + l11 * w1).signum(),
            (g[1] + l21 * w1 + l22 * w2).signum(),
        ];
        for i in 0..2 {
            m[i] += s[i];
            for j in 0..2 {
                c[i][j] += s[i] * s[j];
            }
        }
    }
    let nf = n as f64;
    for i in 0..2 {
        let mean = m[i] / nf;
        // drift = −E sign, standard error ≤ 1/√n
        assert!(
            (b[i] + mean).abs() < 5.0 / nf.sqrt(),
            "drift {i}: {} vs {}",
            b[i],
            -mean
        );
        for j in 0..2 {
            let cov = c[i][j] / nf - (m[i] / nf) * (m[j] / nf);
            let got = dxx[i * 2 + j] / eta;
            assert!(
                (got - cov).abs() < 5.0 * 2.0 / nf.sqrt(),
                "D[{i},{j}]/eta: {got} vs Monte Carlo {cov}"
            );
        }
    }
    // The off-diagonal entry is not the product of the means: the noise is correlated.
    assert!((dxx[1] / eta).abs() > 0.05, "{:?}", dxx);
}

/// Clipped SGD with Gaussian noise of order one (examples/clipped_sgd.opt) in d = 2:
/// drift −E clip(g + ξ, −c, c) and diffusion η Cov(clip(g + ξ)) from the reference
/// evaluator, against the piecewise-linear Gaussian means of `numeric::gauss` applied to
/// the clip map itself (breakpoints −c and c, not the |·| identity the derivation uses).
#[test]
fn clipped_sgd_moments_are_the_gaussian_means_of_the_clip() {
    use smelt::internals::numeric::gauss::{
        expect_pl, expect_pl2, expect_pl_product, PiecewiseLinear,
    };
    let (_, sme) = derive(&example("clipped_sgd.opt"), 1);
    let (eta, c) = (0.1, 0.8);
    for (g, sigma) in [
        ([0.4, -0.7], [[0.9, -0.5], [-0.5, 0.6]]),
        ([1.5, 0.0], [[0.2, 0.1], [0.1, 2.0]]),
        ([-0.8, 0.8], [[1.0, 0.0], [0.0, 1.0]]),
    ] {
        let (b, dxx) = drift_and_diffusion(&sme, g, sigma, &[("eta", eta), ("c", c)]);
        let clip = PiecewiseLinear::clip(-c, c).unwrap();
        let sd = [sigma[0][0].sqrt(), sigma[1][1].sqrt()];
        let mean: Vec<f64> = (0..2).map(|i| expect_pl(&clip, g[i], sd[i])).collect();
        for i in 0..2 {
            assert!(
                (b[i] + mean[i]).abs() < 1e-12,
                "drift {i}: {} vs {}",
                b[i],
                -mean[i]
            );
            for j in 0..2 {
                let second = if i == j {
                    expect_pl_product(&clip, &clip, g[i], sd[i])
                } else {
                    expect_pl2(
                        &clip,
                        &clip,
                        [g[i], g[j]],
                        [sd[i], sd[j]],
                        sigma[i][j] / (sd[i] * sd[j]),
                    )
                };
                let want = eta * (second - mean[i] * mean[j]);
                let got = dxx[i * 2 + j];
                assert!(
                    (got - want).abs() < 1e-12,
                    "D[{i},{j}] at g = {g:?}: {got} vs {want}"
                );
            }
        }
    }
}

/// The drift of x and the block D_xx of a rule with the parameter as its one state, in
/// d = 2 at ∇f = `g`, Σ = `sigma` and the given symbol values (reference evaluator).
fn drift_and_diffusion(
    sme: &Sme,
    g: [f64; 2],
    sigma: [[f64; 2]; 2],
    symbols: &[(&str, f64)],
) -> (Vec<f64>, Vec<f64>) {
    use smelt::internals::numeric::eval::{diffusion, drift, Env, Tensor};
    use smelt::internals::numeric::Value;
    let env = Env {
        dim: 2,
        state: vec![Value::Vector(vec![0.0, 0.0])],
        symbols: symbols.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        grad_f: vec![Tensor::scalar(0.0), Tensor::vector(g.to_vec())],
        moments: vec![
            vec![],
            vec![],
            vec![Tensor::from_fn(2, 2, |ix| sigma[ix[0]][ix[1]])],
        ],
    };
    let b = drift(sme, &env).unwrap().swap_remove(0).data;
    let d = diffusion(sme, &env).unwrap();
    let dxx = d
        .into_iter()
        .find(|((a, c), _)| (*a, *c) == (0, 0))
        .unwrap()
        .1
        .data;
    (b, dxx)
}
