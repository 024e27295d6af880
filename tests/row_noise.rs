//! Noise sampled from the data rows (issue 21): SGD's SME-1 on a finite sum,
//! `dX = −∇f dt + √(η Σ) dW` with Σ = C₂/B the minibatch covariance, simulated as
//! `σ dW = √(η δ / (n B)) Σᵢ (∇ℓᵢ − ∇f) ζᵢ`, one standard normal per row and substep,
//! never forming Σ.
//!
//! What makes each check independent of the code it checks:
//! 1. The one-substep law: the increments the compiled tape produces, over many keys, have
//!    mean `−∇f δ` and covariance `η δ Σ`, with ∇f and Σ computed in this test from the
//!    data rows and the logistic loss's gradient written out by hand (not smelt's
//!    differentiation, not its row means).
//! 2. The coarse levels (2 and 4 fine substeps) draw again the fine substeps' normals:
//!    from one state, a coarse substep's noise is exactly the sum of the fine ones' (the
//!    noise is linear in the draws), which fails if a coarse level drew new numbers.
//! 3. The same SME with Σ formed and factored (the other sampler, sharing only the
//!    derivation) gives SDE means that agree with the rows' within their standard errors
//!    at every step size (the optimizer's paths differ between the two runs: the formed
//!    sampler draws Brownian increments from the same streams, the rows' does not).

use smelt::experiment::verify;
use smelt::internals::numeric::rng::{row_key, row_stream};
use smelt::internals::numeric::tape::{Tape, LANES};
use smelt::internals::sim::compile::SdeProgram;
use std::collections::BTreeMap;

fn prepared() -> verify::Prepared {
    let rule = smelt::check(&std::fs::read_to_string("examples/sgd.opt").unwrap()).unwrap();
    let text = std::fs::read_to_string("examples/problems/logistic.prob").unwrap();
    let p = smelt::problem::load(&text).unwrap();
    verify::prepare(rule, p, &[1], &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The problem's rows `(a₁, a₂, y)`, its batch and ridge, and ∇ℓ by hand:
/// `ℓ = softplus(−y a·x) + 0.05 |x|²`, `∇ℓ = −y a σ(−y a·x) + 0.1 x`.
fn grad_by_hand(rows: &[[f64; 3]], x: [f64; 2]) -> Vec<[f64; 2]> {
    rows.iter()
        .map(|&[a1, a2, y]| {
            let m = -y * (a1 * x[0] + a2 * x[1]);
            let s = 1.0 / (1.0 + (-m).exp());
            [-y * a1 * s + 0.1 * x[0], -y * a2 * s + 0.1 * x[1]]
        })
        .collect()
}

fn rows_of(p: &verify::Prepared) -> Vec<[f64; 3]> {
    let data = p.problem.model.data.as_ref().expect("a finite sum");
    assert_eq!(data.width, 3);
    data.rows
        .rows()
        .into_iter()
        .map(|r| [r[0], r[1], r[2]])
        .collect()
}

/// Runs `tape` once from `x` in every lane with substep `delta`, the fine substeps
/// `counter, counter + 1, …` of the path whose key is `key(lane)`; returns the new
/// state's two components per lane.
fn substep(
    tape: &Tape,
    x: [f64; 2],
    delta: f64,
    key: impl Fn(usize) -> u64,
    counter: u64,
) -> Vec<[f64; 2]> {
    let n = 2;
    let mut regs = tape.registers();
    let mut set = |i: usize, v: &dyn Fn(usize) -> f64| {
        if let Some(r) = tape.input_reg(i) {
            for l in 0..LANES {
                regs[r * LANES + l] = v(l);
            }
        }
    };
    set(0, &|_| x[0]);
    set(1, &|_| x[1]);
    set(2 * n, &|_| delta);
    for j in 0..4 {
        set(2 * n + 1 + j, &|l| row_stream(key(l), counter + j as u64));
    }
    tape.run(&mut regs);
    (0..LANES)
        .map(|l| {
            [
                tape.lane(&regs, tape.output_reg(0))[l],
                tape.lane(&regs, tape.output_reg(1))[l],
            ]
        })
        .collect()
}

fn sme(p: &mut verify::Prepared, eta: f64) -> SdeProgram {
    let plan = verify::plan(p, eta, 8).unwrap_or_else(|e| panic!("{e:?}"));
    let (_, sde, _) = plan.sdes.into_iter().next().expect("the SME-1");
    assert!(
        sde.rows.is_some(),
        "D = η Σ on a finite sum: noise from the rows"
    );
    sde
}

#[test]
fn one_substep_has_the_sdes_mean_and_covariance() {
    let mut p = prepared();
    let rows = rows_of(&p);
    let (eta, delta) = (0.25, 0.01);
    let sde = sme(&mut p, eta);
    let batch = 8.0;
    let n = rows.len() as f64;
    for x in [[0.5, 0.5], [-1.0, 2.0]] {
        let g = grad_by_hand(&rows, x);
        let gbar = [0, 1].map(|k| g.iter().map(|v| v[k]).sum::<f64>() / n);
        let sigma = [(0, 0), (0, 1), (1, 1)].map(|(i, j)| {
            g.iter()
                .map(|v| (v[i] - gbar[i]) * (v[j] - gbar[j]))
                .sum::<f64>()
                / n
                / batch
        });
        // 256 counters × 128 lanes of keys.
        let mut inc: Vec<[f64; 2]> = Vec::new();
        for c in 0..256 {
            let key = |l: usize| row_key(99, l as u64);
            for y in substep(&sde.tape, x, delta, key, c) {
                inc.push([y[0] - x[0], y[1] - x[1]]);
            }
        }
        let m = inc.len() as f64;
        let mean = [0, 1].map(|k| inc.iter().map(|v| v[k]).sum::<f64>() / m);
        for k in 0..2 {
            let want = -gbar[k] * delta;
            let se = (eta * delta * sigma[if k == 0 { 0 } else { 2 }] / m).sqrt();
            assert!(
                (mean[k] - want).abs() < 5.0 * se,
                "mean {k} at {x:?}: {} vs {want} (se {se})",
                mean[k]
            );
        }
        for (e, (i, j)) in [(0, 0), (0, 1), (1, 1)].into_iter().enumerate() {
            let cov = inc
                .iter()
                .map(|v| (v[i] - mean[i]) * (v[j] - mean[j]))
                .sum::<f64>()
                / (m - 1.0);
            let want = eta * delta * sigma[e];
            // Var of a sample covariance of a Gaussian pair: (σᵢᵢσⱼⱼ + σᵢⱼ²)/m.
            let (sii, sjj) = (
                sigma[if i == 0 { 0 } else { 2 }],
                sigma[if j == 0 { 0 } else { 2 }],
            );
            let se = eta * delta * ((sii * sjj + sigma[e] * sigma[e]) / m).sqrt();
            assert!(
                (cov - want).abs() < 5.0 * se,
                "cov ({i}, {j}) at {x:?}: {cov} vs {want} (se {se})"
            );
        }
    }
}

#[test]
fn coarse_substeps_draw_the_fine_normals_again() {
    let mut p = prepared();
    let sde = sme(&mut p, 0.25);
    let rows = sde.rows.as_ref().unwrap();
    let x = [0.3, -0.7];
    let fine = 0.004;
    let key = |l: usize| row_key(5, l as u64);
    // Noise of a substep from x: the new state minus the one the drift alone gives,
    // which is the same at every level (b δ): taken from a substep's mean over keys is
    // not exact, so subtract the fine substeps' sum from the coarse one instead.
    let at = |tape: &Tape, delta: f64, c: u64| substep(tape, x, delta, key, c);
    let base = 40;
    for (level, tape) in [(1u32, &rows.coarse[0]), (2, &rows.coarse[1])] {
        let group = 1usize << level;
        let coarse = at(tape, fine * group as f64, base);
        let fines: Vec<Vec<[f64; 2]>> = (0..group)
            .map(|j| at(&sde.tape, fine, base + j as u64))
            .collect();
        for l in 0..LANES {
            for k in 0..2 {
                // coarse − x = b·gδ + Σⱼ noiseⱼ;  Σⱼ (fineⱼ − x) = g·b·δ + Σⱼ noiseⱼ.
                let c = coarse[l][k] - x[k];
                let f: f64 = fines.iter().map(|v| v[l][k] - x[k]).sum();
                assert!(
                    (c - f).abs() < 1e-13,
                    "level {level} lane {l} component {k}: {c} vs {f}"
                );
            }
        }
        // And not the same numbers as a fresh counter's.
        let other = at(tape, fine * group as f64, base + 1000);
        assert!((0..LANES).any(|l| (other[l][0] - coarse[l][0]).abs() > 1e-6));
    }
}

#[test]
fn rows_and_the_formed_factor_give_the_same_sde_means() {
    use smelt::internals::sim::weak;
    let mut p = prepared();
    for eta in [0.25, 0.0625] {
        let mut plan = verify::plan(&mut p, eta, 8).unwrap();
        assert!(plan.sdes[0].1.rows.is_some());
        let sampling = weak::Sampling::new(8192, 3);
        let rows = weak::run(&plan, &sampling, &|_| {});
        // The same plan with the SME compiled with Σ formed.
        let nums_eta = eta;
        let sme = p.smes[0].clone();
        let syms = smelt::internals::sim::compile::symbol_values(
            &sme,
            p.problem.dim,
            &smelt::internals::sim::compile::Numbers {
                small: nums_eta,
                hypers: p.hypers.clone(),
            },
            &p.rule.small.name,
        )
        .unwrap();
        let formed = smelt::internals::sim::compile::compile_sde_formed(
            &sme,
            &mut p.problem.model,
            &p.layout,
            &syms,
        )
        .unwrap();
        assert!(formed.rows.is_none());
        let c = weak::coupling(&plan.step, &formed, &plan.start, plan.tau, &[]);
        plan.sdes[0] = (1, formed, c);
        let other = weak::run(&plan, &sampling, &|_| {});
        for (j, (a, b)) in rows.orders[0].iter().zip(&other.orders[0]).enumerate() {
            let (ma, mb) = (a.sde.mean(), b.sde.mean());
            let se = (a.sde.se().powi(2) + b.sde.se().powi(2)).sqrt();
            assert!(
                (ma - mb).abs() < 5.0 * se,
                "η = {eta}, observable {j}: rows {ma} vs formed {mb} (se {se})"
            );
        }
    }
}

/// A test function may read the objective at the state, `f(x)`: on a finite sum that is
/// one row mean, run by the observables' tape. Checked against the loss averaged over
/// the rows by hand; `f` of anything but the state is refused with a diagnostic.
#[test]
fn test_functions_read_the_objective_at_the_state() {
    use smelt::internals::sim::compile::compile_observables;
    let rule = smelt::check(&std::fs::read_to_string("examples/sgd.opt").unwrap()).unwrap();
    let text = "problem t\n  dim 2\n  data a, y = logistic(n = 64, seed = 1)\n  \
                objective f(x) = softplus(-y*dot(a, x)) + 0.05*sum(x^2)\n  \
                noise minibatch size = 8\n  start x = [0.5, 0.5]\n  horizon 1\n  \
                observe loss = f(x)\n  observe twice = 2*f(x) - x[1]\n";
    let p = smelt::problem::load(text).unwrap();
    let p = verify::prepare(rule.clone(), p, &[1], &BTreeMap::new()).unwrap();
    let rows = rows_of(&p);
    let (tape, _, _) = compile_observables(&p.problem, &p.layout).unwrap();
    let mut regs = tape.registers();
    let x = |l: usize| [0.3 - 0.01 * l as f64, -0.2 + 0.02 * l as f64];
    for i in 0..2 {
        let r = tape.input_reg(i).unwrap();
        for l in 0..LANES {
            regs[r * LANES + l] = x(l)[i];
        }
    }
    tape.run(&mut regs);
    for l in [0, 17, 127] {
        let [x1, x2] = x(l);
        let softplus = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
        let loss = rows
            .iter()
            .map(|&[a1, a2, y]| softplus(-y * (a1 * x1 + a2 * x2)))
            .sum::<f64>()
            / rows.len() as f64
            + 0.05 * (x1 * x1 + x2 * x2);
        let got = tape.lane(&regs, tape.output_reg(0))[l];
        assert!((got - loss).abs() < 1e-13, "lane {l}: {got} vs {loss}");
        let twice = tape.lane(&regs, tape.output_reg(1))[l];
        assert!((twice - (2.0 * loss - x1)).abs() < 1e-13);
    }
    let bad = text.replace("observe twice = 2*f(x) - x[1]", "observe twice = f(2*x)");
    let p = smelt::problem::load(&bad).unwrap();
    let Err(e) = verify::prepare(rule, p, &[1], &BTreeMap::new()) else {
        panic!("f(2x) in a test function was accepted")
    };
    assert!(
        format!("{e:?}").contains("objective at the current state"),
        "{e:?}"
    );
}
