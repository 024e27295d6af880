#![allow(
    clippy::print_stderr,
    reason = "the test reports the errors it measured"
)]
//! The Hessian-aware SME reproduces SGD exactly on quadratics (FORMULAS.md §8.1), while
//! the order-1 and order-2 SMEs are off by O(η) and O(η²).
//!
//! Exact moments, no sampling: SGD's mean and covariance follow the linear recursion
//! `μ' = (I − ηH)μ`, `C' = (I − ηH) C (I − ηH) + η²Σ`; an Ornstein–Uhlenbeck SDE
//! `dX = −A X dt + Q^{1/2} dW` has `μ(t+η) = e^{−Aη} μ(t)` and
//! `C(t+η) = e^{−Aη} C e^{−Aη} + ∫₀^η e^{−As} Q e^{−As} ds`, the integral computed here by
//! Gauss–Legendre quadrature (not from the closed form). H and Σ are non-diagonal and do
//! not commute.

use smelt::internals::numeric::exact::*;

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// The largest error of the mean and covariance over k ≤ T/η steps.
fn error(model: &Ou, l: &V, v: &M, h: &M, sigma: &M, eta: f64, steps: usize) -> f64 {
    let d = h.nrows();
    let id = identity(d);
    let step = add(&id, h, -eta);
    let (mut mu_s, mut c_s) = (ndarray::array![1.0, -0.5, 0.8], zeros(d));
    let (mut mu_o, mut c_o) = (mu_s.clone(), c_s.clone());
    let mut worst: f64 = 0.0;
    for _ in 0..steps {
        mu_s = mv(&step, &mu_s.to_vec());
        c_s = add(&mul(&mul(&step, &c_s), &step), sigma, eta * eta);
        let (m2, c2) = ou_step(model, l, v, eta, &mu_o, &c_o);
        mu_o = m2;
        c_o = c2;
        let dm: Vec<f64> = mu_s.iter().zip(&mu_o).map(|(a, b)| a - b).collect();
        let dc: Vec<f64> = c_s.iter().zip(c_o.iter()).map(|(a, b)| a - b).collect();
        worst = worst.max(max_abs(&dm)).max(max_abs(&dc));
    }
    worst
}

#[test]
fn hessian_aware_sme_is_exact_on_quadratics() {
    // The closed forms are what smelt derives and certifies for SGD (tests/hasme.rs).
    let opt = smelt::check(
        &std::fs::read_to_string(format!("{}/examples/sgd.opt", env!("CARGO_MANIFEST_DIR")))
            .unwrap(),
    )
    .unwrap();
    assert!(smelt::analysis::hasme::hessian_aware(&opt, 4)
        .unwrap()
        .mismatches
        .is_empty());

    // Non-diagonal H (one negative eigenvalue: a saddle) and a Σ that does not commute with it.
    let h: M = ndarray::array![[2.0, 0.6, -0.3], [0.6, 1.0, 0.4], [-0.3, 0.4, -0.5]];
    let sigma: M = ndarray::array![[1.0, 0.3, 0.2], [0.3, 0.7, -0.1], [0.2, -0.1, 0.5]];
    let (l, v) = eigh(&h);
    let mut results = Vec::new();
    for &eta in &[0.2, 0.1, 0.05] {
        let steps = (1.0 / eta) as usize;
        // HA-SME: A = -log(I - ηH)/η, Q_ij = η² Σ_ij (a_i + a_j)/(1 - r_i r_j) in H's eigenbasis.
        let st = transpose(&v);
        let s_eig = mul(&mul(&st, &sigma), &v);
        let a_of = |x: f64| -(1.0 - eta * x).ln() / eta;
        let mut q_eig = zeros(3);
        for i in 0..3 {
            for j in 0..3 {
                let (ri, rj) = (1.0 - eta * l[i], 1.0 - eta * l[j]);
                q_eig[[i, j]] =
                    eta * eta * s_eig[[i, j]] * (a_of(l[i]) + a_of(l[j])) / (1.0 - ri * rj);
            }
        }
        let q = mul(&mul(&v, &q_eig), &st);
        let ha = Ou {
            a: Box::new(move |x| -(1.0 - eta * x).ln() / eta),
            q,
        };
        let sme1 = Ou {
            a: Box::new(|x| x),
            q: add(&zeros(3), &sigma, eta),
        };
        let sme2 = Ou {
            a: Box::new(move |x| x + eta * x * x / 2.0),
            q: add(&zeros(3), &sigma, eta),
        };
        let e_ha = error(&ha, &l, &v, &h, &sigma, eta, steps);
        let e1 = error(&sme1, &l, &v, &h, &sigma, eta, steps);
        let e2 = error(&sme2, &l, &v, &h, &sigma, eta, steps);
        eprintln!("η = {eta}: HA-SME {e_ha:.2e}, SME-1 {e1:.2e}, SME-2 {e2:.2e}");
        assert!(
            e_ha < 1e-10,
            "HA-SME must reproduce SGD to rounding error: {e_ha}"
        );
        results.push((eta, e1, e2));
    }
    // SME-1's error is O(η), SME-2's O(η²): the slopes between the halvings.
    for w in results.windows(2) {
        let (s1, s2) = ((w[0].1 / w[1].1).log2(), (w[0].2 / w[1].2).log2());
        eprintln!("slopes: SME-1 {s1:.2}, SME-2 {s2:.2}");
        assert!((s1 - 1.0).abs() < 0.3, "SME-1 slope {s1}");
        assert!((s2 - 2.0).abs() < 0.3, "SME-2 slope {s2}");
    }
}
