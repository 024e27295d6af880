#![allow(
    clippy::print_stderr,
    clippy::needless_range_loop,
    reason = "the test reports the slopes it measured; indices read as the formulas"
)]
//! Exact weak errors on a linear-Gaussian problem (`smelt::internals::numeric::linear_gaussian`):
//! the optimizer's and the derived SME's laws propagated exactly, so the log–log slope
//! of the weak error against the step size is the weak order itself, to two decimals,
//! with no Monte Carlo error. H is non-diagonal, Σ does not commute with it, the minimum
//! is away from the origin, and T = 1.

use std::collections::BTreeMap;

use ndarray::array;
use smelt::internals::numeric::exact::{add, expm, identity, mul, mv, zeros, M};
use smelt::internals::numeric::linear_gaussian::*;
use smelt::internals::numeric::step::Values;
use smelt::internals::numeric::Value;
use smelt::report::{fit, Point};

fn source(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/examples/{name}.opt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn problem() -> Quadratic {
    let h = array![[2.0, 0.6, -0.3], [0.6, 1.0, 0.4], [-0.3, 0.4, 0.7]];
    let sigma = array![[1.0, 0.3, 0.2], [0.3, 0.7, -0.1], [0.2, -0.1, 0.5]];
    Quadratic::new(h, array![0.3, -0.2, 0.1], sigma).unwrap()
}

/// The weak errors of E|x|² and E x₁ at time T = 1 for each step size.
fn errors(name: &str, order: u32, hypers: &[(&str, f64)], smalls: &[f64]) -> Vec<(f64, f64, f64)> {
    let src = source(name);
    let rule = smelt::check(&src).unwrap();
    let sme = smelt::derive(&src, &smelt::Options::order(order)).unwrap();
    let q = problem();
    let d = 3;
    let x0 = vec![1.0, -0.5, 0.8];
    let like: Vec<Value> = std::iter::once(Value::Vector(x0.clone()))
        .chain(rule.states.iter().map(|_| Value::Vector(vec![0.0; d])))
        .collect();
    let z0: Vec<f64> = like
        .iter()
        .flat_map(|v| match v {
            Value::Vector(x) => x.clone(),
            Value::Scalar(s) => vec![*s],
        })
        .collect();
    smalls
        .iter()
        .map(|&small| {
            let mut values = Values {
                small,
                ..Values::default()
            };
            let mut symbols = BTreeMap::new();
            symbols.insert(rule.small.name.clone(), small);
            for (k, v) in hypers {
                values.hypers.insert(k.to_string(), *v);
                symbols.insert(k.to_string(), *v);
            }
            let step = affine_step(&rule, &q, &values, &like).unwrap();
            let sde = linear_sde(&sme, &q, &symbols, &like).unwrap();
            let steps = (1.0 / sde.tau).round() as usize;
            assert!(
                (steps as f64 * sde.tau - 1.0).abs() < 1e-9,
                "T/τ must be whole"
            );
            let (a, b) = laws(&step, &sde, &z0, steps);
            let e2 = (a.second_moment(d) - b.second_moment(d)).abs();
            let e1 = (a.mean[0] - b.mean[0]).abs();
            (small, e2, e1)
        })
        .collect()
}

fn slopes(errs: &[(f64, f64, f64)]) -> (f64, f64) {
    let pts = |k: usize| -> Vec<Point> {
        errs.iter()
            .map(|e| Point {
                step: e.0,
                error: if k == 0 { e.1 } else { e.2 },
                std_err: 0.0,
            })
            .collect()
    };
    (fit(&pts(0)).unwrap().slope, fit(&pts(1)).unwrap().slope)
}

fn check_orders(name: &str, hypers: &[(&str, f64)], smalls: &[f64], time_power: f64) {
    for order in [1, 2] {
        let errs = errors(name, order, hypers, smalls);
        let (s2, s1) = slopes(&errs);
        eprintln!("{name} SME-{order}: slope E|x|² {s2:.4}, E x₁ {s1:.4}; errors {errs:?}");
        // The weak order is in the time per step: for time h = η^q the slope in the
        // small parameter is q times the order.
        let want = order as f64 * time_power;
        assert!(
            (s2 - want).abs() < 0.01,
            "{name} SME-{order}: slope {s2} of E|x|², want {want}"
        );
        assert!(
            (s1 - want).abs() < 0.01,
            "{name} SME-{order}: slope {s1} of E x₁, want {want}"
        );
    }
}

#[test]
fn sgd_weak_orders_are_one_and_two_exactly() {
    check_orders("sgd", &[], &[0.002, 0.001, 0.0005, 0.00025, 0.000125], 1.0);
}

#[test]
fn heavy_ball_weak_orders_are_one_and_two_exactly() {
    check_orders(
        "momentum",
        &[("lambda", 1.5)],
        &[0.002, 0.001, 0.0005, 0.00025, 0.000125],
        1.0,
    );
}

#[test]
fn nesterov_weak_orders_are_one_and_two_exactly() {
    check_orders(
        "nesterov",
        &[("lambda", 1.5)],
        &[0.002, 0.001, 0.0005, 0.00025, 0.000125],
        1.0,
    );
}

#[test]
fn sgd_reads_off_the_known_recursion_and_sde() {
    // A = I − ηH, BBᵀ = η²Σ; order 1: F = −H, g = H x*, D = ηΣ.
    let src = source("sgd");
    let rule = smelt::check(&src).unwrap();
    let sme = smelt::derive(&src, &smelt::Options::order(1)).unwrap();
    let q = problem();
    let eta = 0.1;
    let values = Values {
        small: eta,
        ..Values::default()
    };
    let like = vec![Value::Vector(vec![0.0; 3])];
    let s = affine_step(&rule, &q, &values, &like).unwrap();
    let mut symbols = BTreeMap::new();
    symbols.insert("eta".to_string(), eta);
    let sde = linear_sde(&sme, &q, &symbols, &like).unwrap();
    let id = identity(3);
    let hx = mv(&q.h, &q.x_star.to_vec());
    for i in 0..3 {
        assert!((s.c[i] - eta * hx[i]).abs() < 1e-14);
        assert!((sde.g[i] - hx[i]).abs() < 1e-14);
        for j in 0..3 {
            assert!((s.a[[i, j]] - (id[[i, j]] - eta * q.h[[i, j]])).abs() < 1e-14);
            assert!((s.bbt[[i, j]] - eta * eta * q.sigma[[i, j]]).abs() < 1e-14);
            assert!((sde.f[[i, j]] + q.h[[i, j]]).abs() < 1e-14);
            assert!((sde.d[[i, j]] - eta * q.sigma[[i, j]]).abs() < 1e-14);
        }
    }
    assert_eq!(sde.tau, eta);
    // Φ = e^{−Hτ} against its series, Q against ∫₀^τ e^{−Hs} ηΣ e^{−Hs} ds by Simpson.
    let t = transition(&sde);
    let e = |s: f64| expm(&add(&zeros(3), &q.h, -s));
    let n = 200;
    let mut integral = zeros(3);
    for k in 0..=n {
        let s = eta * k as f64 / n as f64;
        let w = if k == 0 || k == n {
            1.0
        } else if k % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let term = mul(&mul(&e(s), &sde.d), &e(s));
        integral = add(&integral, &term, w * eta / (3.0 * n as f64));
    }
    let flat = |m: &M| m.iter().copied().collect::<Vec<f64>>();
    let (phi, q_int) = (flat(&t.phi), flat(&integral));
    for (i, (a, b)) in flat(&e(eta)).iter().zip(&phi).enumerate() {
        assert!((a - b).abs() < 1e-14);
        let (x, y) = (flat(&t.q)[i], q_int[i]);
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
}

#[test]
fn nonlinear_rules_are_refused_with_a_reason() {
    let q = problem();
    let like = vec![Value::Vector(vec![0.0; 3]), Value::Vector(vec![0.0; 3])];
    let rule = smelt::check(&source("rmsprop")).unwrap();
    let mut values = Values {
        small: 0.1,
        ..Values::default()
    };
    for k in ["c", "sigma0", "eps0"] {
        values.hypers.insert(k.to_string(), 1.0);
    }
    let err = affine_step(&rule, &q, &values, &like)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not affine"), "{err}");
    let like = vec![Value::Vector(vec![0.0; 3]); 3];
    let err = affine_step(&smelt::check(&source("adam")).unwrap(), &q, &values, &like)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("counter"), "{err}");
}

#[test]
fn matrix_exponential_of_huge_or_non_finite_matrices_ends() {
    for x in [f64::NAN, f64::INFINITY, 1e308, 1e200] {
        let m: M = array![[x, 0.0], [0.0, -1.0]];
        let e = expm(&m);
        assert!(e.iter().any(|v| !v.is_finite()), "{x}: {e:?}");
    }
    // And a rotation generator, whose exponential is known: e^{[[0, −θ], [θ, 0]]}.
    let th = 7.5f64;
    let e = expm(&array![[0.0, -th], [th, 0.0]]);
    let want = [th.cos(), -th.sin(), th.sin(), th.cos()];
    for (a, b) in e.iter().zip(want) {
        assert!((a - b).abs() < 1e-13, "{a} vs {b}");
    }
}
