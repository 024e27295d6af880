//! The compiled tapes against the slow references, on every example optimizer.
//!
//! - One optimizer step compiled to a tape ([`compile_step`]) against the tree-walking
//!   interpreter of the rule ([`smelt::internals::numeric::step`]) reading the same problem.
//! - A derived SME compiled ([`compile_sde`]) against the reference evaluator of its
//!   drift and diffusion ([`smelt::internals::numeric::eval`]).
//! - The problem's symbolic derivatives (∇f, ∇²f, ∂Σ) against finite differences.
//!
//! The problem is two-dimensional, with a coupled objective and a covariance that
//! depends on x (so ∂Σ terms are exercised); every lane of a tape gets its own random
//! state, counter and normals.

#![allow(
    clippy::needless_range_loop,
    reason = "slots and lanes are indexed as the layout lays them out"
)]

mod support;

use smelt::internals::numeric::tape::LANES;
use smelt::internals::numeric::{Oracle, Value, Values};
use smelt::internals::sim::compile::{compile_sde, compile_step, symbol_values, Layout, Numbers};
use smelt::problem::{self, Model};
use std::collections::BTreeMap;
use support::Rng;

const PROBLEM: &str = "\
problem coupled
  dim 2
  objective f(x) = sum(x^4/4 - x^2/2) + 0.3*x[1]*x[2] + 0.1*sin(x[1])
  noise gaussian cov = [[0.5 + 0.1*x[2]^2, 0.1*x[1]], [0.1*x[1], 0.4 + 0.05*x[1]^2]]
  start x = 0.5
  horizon 1
  observe s = sum(x^2)
";

const EXAMPLES: &[&str] = &[
    "sgd",
    "momentum",
    "nesterov",
    "rmsprop",
    "rmsprop_ballistic",
    "adam",
    "adam_ballistic",
    "adamw",
    "signsgd",
    "signum",
    "lion",
    "clipped_sgd",
    "sgld",
    "normalized_sgd",
    "normalized_momentum",
    "sam_normalized",
    "extragradient_two_samples",
];

fn hypers() -> BTreeMap<String, f64> {
    [
        ("c", 1.0),
        ("c1", 1.5),
        ("c2", 0.7),
        ("sigma0", 0.8),
        ("eps0", 0.3),
        ("eps", 0.2),
        ("lambda", 1.2),
        ("lambda0", 0.4),
        ("T", 0.6),
        ("b1", 0.9),
        ("r", 0.7),
        ("s", 0.8),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn load(name: &str) -> smelt::Optimizer {
    let src = std::fs::read_to_string(format!("examples/{name}.opt")).unwrap();
    smelt::check(&src).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0)
}

/// A random value for slot `i` of variable `name`: states that adaptive rules take
/// roots of stay positive.
fn random_state(layout: &Layout, rng: &mut Rng) -> Vec<f64> {
    let mut z = vec![0.0; layout.n];
    for (k, (_, off, len)) in layout.vars.iter().enumerate() {
        for i in *off..off + len {
            z[i] = if k == 0 {
                rng.range(-1.2, 1.2)
            } else {
                rng.range(0.3, 1.5)
            };
        }
    }
    z
}

fn values_of(layout: &Layout, z: &[f64]) -> Vec<Value> {
    layout
        .vars
        .iter()
        .zip(&layout.scalar)
        .map(|((_, off, len), &s)| {
            if s {
                Value::Scalar(z[*off])
            } else {
                Value::Vector(z[*off..off + len].to_vec())
            }
        })
        .collect()
}

#[test]
fn compiled_steps_match_the_interpreter() {
    let mut rng = Rng::new(11);
    for name in EXAMPLES {
        let rule = load(name);
        let mut p = problem::load(PROBLEM).unwrap();
        let oracle = p.model.oracle();
        let layout = Layout::new(&rule, 2, None);
        let nums = Numbers {
            small: 0.07,
            hypers: hypers(),
        };
        let prog = compile_step(&rule, &mut p.model, &layout, &nums).unwrap();
        let mut regs = prog.tape.registers();
        let mut lanes = Vec::new();
        for lane in 0..LANES {
            let z = random_state(&layout, &mut rng);
            let k = (rng.unit() * 6.0).floor();
            let draws: Vec<Vec<f64>> = (0..prog.samples)
                .map(|_| (0..prog.draws).map(|_| rng.sym() * 2.0).collect())
                .collect();
            let mut inputs = z.clone();
            inputs.push(k);
            for d in &draws {
                inputs.extend(d);
            }
            for (i, v) in inputs.iter().enumerate() {
                if let Some(r) = prog.tape.input_reg(i) {
                    regs[r * LANES + lane] = *v;
                }
            }
            lanes.push((z, k, draws));
        }
        prog.tape.run(&mut regs);
        for (lane, (z, k, draws)) in lanes.into_iter().enumerate() {
            let mut state = values_of(&layout, &z);
            let values = Values {
                small: 0.07,
                hypers: hypers(),
                counter: k as u64,
            };
            smelt::internals::numeric::step(&rule, &mut state, &oracle, &values, &draws).unwrap();
            let want: Vec<f64> = state
                .into_iter()
                .flat_map(|v| match v {
                    Value::Vector(x) => x,
                    Value::Scalar(s) => vec![s],
                })
                .collect();
            for (i, w) in want.iter().enumerate() {
                let got = regs[prog.tape.output_reg(i) * LANES + lane];
                assert!(
                    close(got, *w, 1e-12),
                    "{name}: lane {lane}, slot {i}: tape {got}, interpreter {w}"
                );
            }
        }
    }
}

#[test]
fn compiled_smes_match_the_reference_evaluator() {
    let mut rng = Rng::new(5);
    let mut checked = 0;
    for name in EXAMPLES {
        let rule = load(name);
        for order in [1, 2] {
            let Ok(sme) = smelt::derive_checked(&rule, &smelt::Options::order(order)) else {
                continue;
            };
            let mut p = problem::load(PROBLEM).unwrap();
            let clock = sme.clock.map(|c| sme.vars[c].name.clone());
            let layout = Layout::new(&rule, 2, clock.as_deref());
            let nums = Numbers {
                small: 0.05,
                hypers: hypers(),
            };
            let syms = symbol_values(&sme, 2, &nums, &rule.small.name).unwrap();
            let prog = compile_sde(&sme, &mut p.model, &layout, &syms).unwrap();
            let names: BTreeMap<String, f64> = (0..syms.len())
                .filter_map(|i| sme.symbols.try_name(i).map(|n| (n.to_string(), syms[i])))
                .collect();
            for _ in 0..4 {
                let z = random_state(&layout, &mut rng);
                let env = p
                    .model
                    .env(values_of(&layout, &z), names.clone(), 4, 2)
                    .unwrap();
                let drift = smelt::internals::numeric::eval::drift(&sme, &env).unwrap();
                let want: Vec<f64> = drift.into_iter().flat_map(|t| t.data).collect();
                let got = prog.graph.eval(&prog.drift, &z);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        close(*g, *w, 1e-11),
                        "{name} order {order}: drift slot {i}: {g} vs {w}"
                    );
                }
                let n = layout.n;
                let dgot = prog.graph.eval(&prog.diffusion, &z);
                for ((a, c), t) in smelt::internals::numeric::eval::diffusion(&sme, &env).unwrap() {
                    let (ra, la) = (layout.vars[a].1, layout.vars[a].2);
                    let (rc, lc) = (layout.vars[c].1, layout.vars[c].2);
                    for i in 0..la {
                        for j in 0..lc {
                            let w = t.data[i * lc + j];
                            let g = dgot[(ra + i) * n + rc + j];
                            assert!(
                                close(g, w, 1e-11),
                                "{name} order {order}: D[{a},{c}][{i},{j}]: {g} vs {w}"
                            );
                        }
                    }
                }
                // L Lᵀ = D wherever D is positive semidefinite (a truncated series need
                // not be: verify refuses such an SME, see `tests/verify.rs`).
                let l = prog.graph.eval(&prog.factor, &z);
                let dm = smelt::internals::numeric::exact::from_row_major(n, &dgot);
                let (lam, _) = smelt::internals::numeric::exact::eigh(&dm);
                let top = lam.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                let psd = lam.iter().all(|&x| x >= -1e-12 * top);
                for i in (0..n).filter(|_| psd) {
                    for j in 0..n {
                        let llt: f64 = (0..n).map(|k| l[i * n + k] * l[j * n + k]).sum();
                        assert!(
                            close(llt, dgot[i * n + j], 1e-9),
                            "{name} order {order}: (L Lᵀ)[{i},{j}] = {llt}, D = {}",
                            dgot[i * n + j]
                        );
                    }
                }
                // The Euler–Maruyama tape: Z + b δ + L dW.
                let mut regs = prog.tape.registers();
                let dw: Vec<f64> = (0..n).map(|_| rng.sym()).collect();
                let delta = 0.01;
                for lane in 0..LANES {
                    for i in 0..n {
                        if let Some(r) = prog.tape.input_reg(i) {
                            regs[r * LANES + lane] = z[i];
                        }
                        if let Some(r) = prog.tape.input_reg(n + i) {
                            regs[r * LANES + lane] = dw[i];
                        }
                    }
                    if let Some(r) = prog.tape.input_reg(2 * n) {
                        regs[r * LANES + lane] = delta;
                    }
                }
                prog.tape.run(&mut regs);
                for i in 0..n {
                    let w =
                        z[i] + want[i] * delta + (0..n).map(|j| l[i * n + j] * dw[j]).sum::<f64>();
                    let g = regs[prog.tape.output_reg(i) * LANES + 7];
                    assert!(
                        close(g, w, 1e-12),
                        "{name} order {order}: EM slot {i}: {g} vs {w}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} SMEs derived and checked");
}

#[test]
fn symbolic_derivatives_match_finite_differences() {
    let mut p = problem::load(PROBLEM).unwrap();
    let m: &mut Model = &mut p.model;
    let x = [0.37, -0.81];
    let h = 1e-5;
    let at = |m: &Model, ids: &[u32], x: [f64; 2]| m.graph.eval(ids, &x);
    for (k, rank_below) in [(1usize, 0usize), (2, 1), (3, 2)] {
        let hi = m.df(k);
        let lo = m.df(rank_below);
        for (flat, &id) in hi.iter().enumerate() {
            let (base, j) = (flat / 2, flat % 2);
            let mut xp = x;
            let mut xm = x;
            xp[j] += h;
            xm[j] -= h;
            let fd = (at(m, &[lo[base]], xp)[0] - at(m, &[lo[base]], xm)[0]) / (2.0 * h);
            let got = at(m, &[id], x)[0];
            assert!(close(got, fd, 1e-6), "∇^{k} f entry {flat}: {got} vs {fd}");
        }
    }
    // ∂Σ against differences of Σ, and Σ = S Sᵀ against the declared covariance.
    let sigma = m.moment(2, 0).unwrap();
    let dsigma = m.moment(2, 1).unwrap();
    for (flat, &id) in dsigma.iter().enumerate() {
        let (base, j) = (flat / 2, flat % 2);
        let mut xp = x;
        let mut xm = x;
        xp[j] += h;
        xm[j] -= h;
        let fd = (at(m, &[sigma[base]], xp)[0] - at(m, &[sigma[base]], xm)[0]) / (2.0 * h);
        assert!(close(at(m, &[id], x)[0], fd, 1e-6), "∂Σ entry {flat}");
    }
    let s = at(m, &sigma, x);
    let want = [
        0.5 + 0.1 * x[1] * x[1],
        0.1 * x[0],
        0.1 * x[0],
        0.4 + 0.05 * x[0] * x[0],
    ];
    for (g, w) in s.iter().zip(want) {
        assert!(close(*g, w, 1e-14), "Σ = {s:?}, declared {want:?}");
    }
    // Isserlis: E ξ1⁴ = 3 Σ11², E ξ1² ξ2² = Σ11 Σ22 + 2 Σ12².
    let m4_ids = m.moment(4, 0).unwrap();
    let m4 = at(m, &m4_ids, x);
    assert!(close(m4[0], 3.0 * s[0] * s[0], 1e-14));
    let i1122 = 3; // (0,0,1,1) in base 2
    assert!(close(m4[i1122], s[0] * s[3] + 2.0 * s[1] * s[1], 1e-14));
    // The oracle's noise is S(x) draw with S Sᵀ = Σ.
    let o = m.oracle();
    let e1 = o.noise(0, &x, &[1.0, 0.0]);
    let e2 = o.noise(0, &x, &[0.0, 1.0]);
    let sst = [
        e1[0] * e1[0] + e2[0] * e2[0],
        e1[0] * e1[1] + e2[0] * e2[1],
        e1[1] * e1[1] + e2[1] * e2[1],
    ];
    assert!(close(sst[0], s[0], 1e-14) && close(sst[1], s[1], 1e-14) && close(sst[2], s[3], 1e-14));
}

const MINIBATCH: &str = "\
problem logistic
  dim 2
  data a, y = logistic(n = 24, seed = 3)
  objective f(x) = softplus(-y*dot(a, x)) + 0.05*sum(x^2)
  noise minibatch size = 3
  start x = 0.5
  horizon 1
  observe s = sum(x^2)
";

/// The loss of one row, its gradient, by hand.
fn logistic_grad(x: &[f64], row: &[f64]) -> Vec<f64> {
    let (a, y) = (&row[..2], row[2]);
    let m = -y * (a[0] * x[0] + a[1] * x[1]);
    let s = 1.0 / (1.0 + (-m).exp());
    (0..2).map(|j| s * (-y * a[j]) + 0.1 * x[j]).collect()
}

#[test]
fn minibatch_noise_matches_a_direct_computation() {
    let mut p = problem::load(MINIBATCH).unwrap();
    let rows: Vec<Vec<f64>> = smelt::problem::data::logistic(24, 2, 3)
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    let x = [0.3, -0.7];
    // ∇f: the mean of the per-row gradients.
    let mut full = [0.0; 2];
    for r in &rows {
        let g = logistic_grad(&x, r);
        full[0] += g[0] / 24.0;
        full[1] += g[1] / 24.0;
    }
    let grad = p.model.df(1);
    let got = p.model.graph.eval(&grad, &x);
    for j in 0..2 {
        assert!(close(got[j], full[j], 1e-13), "∇f: {got:?} vs {full:?}");
    }
    // Σ = Cov_i(∇ℓ_i)/B, third moment C3/B².
    let mut cov = [[0.0; 2]; 2];
    let mut third = 0.0;
    for r in &rows {
        let g = logistic_grad(&x, r);
        let c = [g[0] - full[0], g[1] - full[1]];
        for i in 0..2 {
            for j in 0..2 {
                cov[i][j] += c[i] * c[j] / 24.0 / 3.0;
            }
        }
        third += c[0] * c[0] * c[1] / 24.0 / 9.0;
    }
    let s2 = p.model.moment(2, 0).unwrap();
    let s2 = p.model.graph.eval(&s2, &x);
    for i in 0..2 {
        for j in 0..2 {
            assert!(
                close(s2[i * 2 + j], cov[i][j], 1e-13),
                "Σ: {s2:?} vs {cov:?}"
            );
        }
    }
    let m3 = p.model.moment(3, 0).unwrap();
    let m3 = p.model.graph.eval(&m3, &x);
    assert!(
        close(m3[1], third, 1e-13),
        "M3[0,0,1] = {} vs {third}",
        m3[1]
    );
    // The oracle's noise for a given minibatch.
    let o = p.model.oracle();
    let draw: Vec<f64> = [&rows[4], &rows[4], &rows[17]]
        .iter()
        .flat_map(|r| r.iter().copied())
        .collect();
    let noise = o.noise(0, &x, &draw);
    for j in 0..2 {
        let want = (2.0 * logistic_grad(&x, &rows[4])[j] + logistic_grad(&x, &rows[17])[j]) / 3.0
            - full[j];
        assert!(close(noise[j], want, 1e-13));
    }
}

#[test]
fn compiled_minibatch_steps_match_the_interpreter() {
    let mut rng = Rng::new(21);
    for name in ["sgd", "momentum", "adam_ballistic"] {
        let rule = load(name);
        let mut p = problem::load(MINIBATCH).unwrap();
        let rows: Vec<Vec<f64>> = smelt::problem::data::logistic(24, 2, 3)
            .rows()
            .into_iter()
            .map(|r| r.to_vec())
            .collect();
        let oracle = p.model.oracle();
        let layout = Layout::new(&rule, 2, None);
        let nums = Numbers {
            small: 0.07,
            hypers: hypers(),
        };
        let prog = compile_step(&rule, &mut p.model, &layout, &nums).unwrap();
        assert!(prog.minibatch.is_some());
        assert_eq!(prog.draws, 3 * 3);
        let mut regs = prog.tape.registers();
        let mut lanes = Vec::new();
        for lane in 0..LANES {
            let z = random_state(&layout, &mut rng);
            let draw: Vec<f64> = (0..3)
                .flat_map(|_| rows[(rng.unit() * 24.0) as usize].clone())
                .collect();
            let mut inputs = z.clone();
            inputs.push(2.0);
            inputs.extend(&draw);
            for (i, v) in inputs.iter().enumerate() {
                if let Some(r) = prog.tape.input_reg(i) {
                    regs[r * LANES + lane] = *v;
                }
            }
            lanes.push((z, draw));
        }
        prog.tape.run(&mut regs);
        for (lane, (z, draw)) in lanes.into_iter().enumerate() {
            let mut state = values_of(&layout, &z);
            let values = Values {
                small: 0.07,
                hypers: hypers(),
                counter: 2,
            };
            smelt::internals::numeric::step(&rule, &mut state, &oracle, &values, &[draw]).unwrap();
            let want: Vec<f64> = state
                .into_iter()
                .flat_map(|v| match v {
                    Value::Vector(x) => x,
                    Value::Scalar(s) => vec![s],
                })
                .collect();
            for (i, w) in want.iter().enumerate() {
                let got = regs[prog.tape.output_reg(i) * LANES + lane];
                assert!(
                    close(got, *w, 1e-12),
                    "{name}: lane {lane}, slot {i}: {got} vs {w}"
                );
            }
        }
    }
}
