//! The independent certificate: a derived SME checked against the update rule's own
//! one-step moments, numerically.
//!
//! The symbolic certificate of a derivation re-expands both sides with the machinery
//! that derived them, so it cannot catch that machinery's mistakes. This check shares
//! nothing with the expansion:
//!
//! - **a concrete problem**: a random quartic polynomial f in d = 2, and a noise law per
//!   declared kind: Gaussian noise `S(x) w` with `w` standard normal and `S(x)` a random
//!   affine matrix function (so Σ(x) varies with x), or for `general` noise a skewed
//!   discrete law (one of a few centred random rows of per-sample gradients, with
//!   nonzero third moments, also varying with x);
//! - **the optimizer's side**: one step of the rule run by the reference interpreter
//!   ([`crate::numeric::step()`]) from a random state, for every value of the noise:
//!   exact expectations over the discrete law, Gauss–Hermite quadrature over Gaussian
//!   draws (exact for the polynomial parts of the rule, a few digits beyond the
//!   residuals for the rest);
//! - **the SDE's side**: `E Π (Z_τ − z) = Σ_m τ^m/m! (L^m Π(y − z))(z)` with the
//!   generator `L = b·∇ + ½ D:∇²`, for the drift b and diffusion D compiled to scalar
//!   graphs for this problem and differentiated by the graph ([`Graph::diff`]), not by
//!   the derivation's tensor algebra; the series stops at `m = p` (its remainder is
//!   `O(τ^{p+1})`, within what order p allows, so it cannot hide an error of lower order);
//! - over a geometric grid of the small parameter, the largest residual of the moments
//!   of each order `s ≤ p`; its fitted power of τ must reach `p + 1` for a weak order
//!   `p` (the one-step condition of Li, Tai & E's theorem).
//!
//! Residuals that sink to the rounding level of the computation are left out of the fit
//! (the level is estimated from the sizes of the numbers involved), so a check is never
//! passed on rounding noise alone, and one with too few clean points says so instead of
//! passing.

use crate::ir::Optimizer;
use crate::numeric::exact;
use crate::numeric::graph::{Graph, Id};
use crate::numeric::rng::{Stream, Streams};
use crate::numeric::{self, Value, Values};
use crate::problem::{Data, Model, Noise};
use crate::sim::compile::{self, Layout, Numbers};
use crate::sme::Sme;
pub use crate::sme::{Check, MomentFit, Verdict};
use crate::syntax::NoiseKind;
use std::collections::BTreeMap;

/// The dimension of the random problem.
pub const DIM: usize = 2;
/// How many random states the moments are compared at.
pub const STATES: usize = 2;
/// The highest order checked (the generator series grows quickly beyond).
pub const MAX_ORDER: u32 = 4;
/// The most quadrature steps per state and step size (the draws of every sample
/// combined): two samples in d = 2 make 144² = 20,736; three would make 3·10⁶.
pub const MAX_STEPS_PER_POINT: usize = 100_000;
/// How far below `p + 1` a fitted power may fall (the grid's smallest steps are not
/// exactly asymptotic).
pub const TOLERANCE: f64 = 0.25;

/// Checks `sme` against `rule` on a random problem drawn from `seed`.
pub fn check(rule: &Optimizer, sme: &Sme, seed: u64) -> Check {
    let order = sme.order;
    let not_run = |law: &str, why: String| Check {
        order,
        law: law.to_string(),
        moments: Vec::new(),
        verdict: Verdict::NotRun(why),
    };
    let kinds: Vec<NoiseKind> = rule.noises.iter().map(|n| n.kind).collect();
    let gaussian = kinds.iter().all(|k| *k == NoiseKind::Gaussian);
    if !gaussian && kinds.contains(&NoiseKind::Gaussian) {
        return not_run("", "the rule mixes Gaussian and general noise".into());
    }
    let averaged = !sme.elem.pairs.is_empty() || sme.elem.functions.iter().any(|f| f.uses_normal());
    if averaged {
        return not_run(
            "",
            "the rule takes a kink (sign, abs, clip, …) of Gaussian noise of order one: quadrature of its one-step moments does not resolve the kink finely enough to fit the residual's power; the closed forms are checked against split quadrature and Monte Carlo in the test suite, and `smelt verify` measures the weak error".into(),
        );
    }
    // A rule with fast states: the SME matches the one-step moments of the reduced rule
    // (the slow states with the fast ones eliminated, `derive::fast`), not the rule's own
    // (those agree over blocks of many steps). The check is then of the expansion of
    // the reduced rule; `smelt verify` measures the weak error of the elimination.
    let reduced;
    let rule = match sme.eliminated.first() {
        None => rule,
        Some(e) => match crate::derive::reduced_rule(rule, order, crate::Options::order(1).max_terms) {
            Some(r) => {
                reduced = r;
                &reduced
            }
            None => {
                return not_run(
                    "",
                    format!("the rule's fast state `{}` is eliminated, with a symbolic rate: its one-step moments are not those of the reduced SME (they agree over blocks of many steps); `smelt verify` measures the weak error of the elimination", e.name),
                )
            }
        },
    };
    if order == 0 {
        return not_run(
            "",
            "the derivation reaches no weak order (a condition of order 1 fails)".into(),
        );
    }
    if order > MAX_ORDER {
        return not_run(
            "",
            format!(
                "orders above {MAX_ORDER} are not checked (the generator series grows too large)"
            ),
        );
    }
    let mut rng = Streams::new(seed).stream(0);
    let problem = RandomProblem::new(&mut rng, gaussian);
    let law = match sme.eliminated.first() {
        None => problem.law.clone(),
        Some(e) => format!(
            "{}; the moments are those of the rule with `{}` eliminated, in the variable the SME describes (derive::fast)",
            problem.law, e.name
        ),
    };
    // Every combination of the samples' draws is one step: the product grows as the
    // draws to the number of samples.
    let steps = (problem.draws.len() as f64).powi(rule.noises.len() as i32);
    if steps > MAX_STEPS_PER_POINT as f64 {
        return not_run(
            &law,
            format!(
                "{} noise samples make {steps:.0} quadrature steps per point, above the limit of {MAX_STEPS_PER_POINT}",
                rule.noises.len()
            ),
        );
    }
    match run(rule, sme, problem, &mut rng) {
        Ok(moments) => {
            let verdict = verdict(order, &moments);
            Check {
                order,
                law,
                moments,
                verdict,
            }
        }
        Err(why) => not_run(&law, why),
    }
}

/// The verdict from the fits: every moment order must fall as `τ^{p+1}` or faster.
fn verdict(order: u32, moments: &[MomentFit]) -> Verdict {
    let need = f64::from(order + 1);
    for m in moments {
        match m.power {
            Some(p) if p < need - TOLERANCE => {
                return Verdict::Fail(format!(
                    "the residual of the order-{} moments falls as τ^{p:.2}, not τ^{need}",
                    m.s
                ))
            }
            Some(_) => {}
            None if m.at_rounding() => {}
            None => {
                return Verdict::NotRun(format!(
                    "too few step sizes with residuals above the rounding level for the order-{} moments",
                    m.s
                ))
            }
        }
    }
    Verdict::Pass
}

/// A random objective and noise law in d = [`DIM`].
struct RandomProblem {
    model: Model,
    law: String,
    /// The draws of one noise sample: (values, probability).
    draws: Vec<(Vec<f64>, f64)>,
}

impl RandomProblem {
    fn new(rng: &mut Stream, gaussian: bool) -> RandomProblem {
        let d = DIM;
        let mut g = Graph::new();
        let x: Vec<Id> = (0..d as u32).map(|i| g.input(i)).collect();
        let mut uniform = |a: f64, b: f64| a + (b - a) * rng.uniform();
        // f = Σ_{|α| ≤ 4} c_α x^α with c_α uniform in (−1, 1), and a positive quartic part.
        let quartic_terms = monomials(d, 4);
        let mut terms = Vec::new();
        for alpha in &quartic_terms {
            let deg: usize = alpha.iter().sum();
            let c = if deg == 4 && alpha.contains(&4) {
                uniform(0.1, 0.4)
            } else {
                uniform(-1.0, 1.0)
            };
            let m = monomial(&mut g, &x, alpha);
            let c = g.constant(c);
            terms.push(g.mul(c, m));
        }
        let quartic = g.sum(terms);
        if gaussian {
            // S(x) = A₀ + Σ_k x_k A_k: Σ(x) = S Sᵀ and its derivatives vary with x.
            let mut a: Vec<Vec<Vec<f64>>> = Vec::new();
            for k in 0..=d {
                let scale = if k == 0 { 0.6 } else { 0.25 };
                a.push(
                    (0..d)
                        .map(|_| (0..d).map(|_| uniform(-scale, scale)).collect())
                        .collect(),
                );
            }
            for (i, row) in a[0].iter_mut().enumerate() {
                row[i] += 0.8;
            }
            let factor: Vec<Vec<Id>> = (0..d)
                .map(|i| {
                    (0..d)
                        .map(|j| {
                            let mut s = g.constant(a[0][i][j]);
                            for k in 0..d {
                                let c = g.constant(a[k + 1][i][j]);
                                let t = g.mul(c, x[k]);
                                s = g.add(s, t);
                            }
                            s
                        })
                        .collect()
                })
                .collect();
            let nodes = gauss_hermite(12);
            let model = Model::new(g, d, quartic, Noise::Gaussian { factor }, None);
            RandomProblem {
                model,
                law: format!(
                    "random quartic f in d = {d}, Gaussian noise S(x)w with S affine in x (Gauss–Hermite quadrature)"
                ),
                draws: product_rule(&nodes, d),
            }
        } else {
            // ℓ(x; r) = quartic + Σ_j r_j φ_j(x), φ the monomials of degree 1 to 3; the rows
            // r are centred, so f = mean ℓ, and skewed (squared uniforms), so the
            // third moment of ∇ℓ − ∇f does not vanish.
            let features = monomials(d, 3)
                .into_iter()
                .filter(|a| a.iter().sum::<usize>() >= 1)
                .collect::<Vec<_>>();
            let width = features.len();
            let n = 5;
            let mut rows: Vec<Vec<f64>> = (0..n)
                .map(|_| {
                    (0..width)
                        .map(|j| {
                            let u = uniform(0.0, 1.0);
                            let scale = if j < d { 0.9 } else { 0.3 };
                            scale * u * u * 2.5
                        })
                        .collect()
                })
                .collect();
            for j in 0..width {
                let mean = rows.iter().map(|r| r[j]).sum::<f64>() / n as f64;
                for r in &mut rows {
                    r[j] -= mean;
                }
            }
            let row_inputs: Vec<Id> = (0..width).map(|j| g.input((d + j) as u32)).collect();
            let mut loss = quartic;
            for (alpha, &r) in features.iter().zip(&row_inputs) {
                let m = monomial(&mut g, &x, alpha);
                let t = g.mul(r, m);
                loss = g.add(loss, t);
            }
            // f = (1/n) Σ_i ℓ(x; r_i), exactly the mean the noise is centred on.
            let template = g.clone();
            let mut parts = Vec::new();
            for row in &rows {
                let mut at: Vec<Id> = x.clone();
                at.extend(row.iter().map(|&v| g.constant(v)));
                parts.push(g.import(&template, &[loss], &at)[0]);
            }
            let total = g.sum(parts);
            let inv = g.constant(1.0 / n as f64);
            let f = g.mul(inv, total);
            let table = std::sync::Arc::new(crate::numeric::exact::from_rows(&rows));
            g.set_rows(table.clone());
            let data = Data {
                columns: vec![("r".to_string(), width)],
                width,
                rows: table,
                loss,
                source: "a random skewed law".to_string(),
            };
            let model = Model::new(g, d, f, Noise::Minibatch { batch: 1 }, Some(data));
            let p = 1.0 / n as f64;
            RandomProblem {
                model,
                law: format!(
                    "random quartic f in d = {d}, a skewed discrete noise law of {n} points varying with x (exact expectation)"
                ),
                draws: rows.into_iter().map(|r| (r, p)).collect(),
            }
        }
    }
}

/// Every multi-index α in `d` variables with `|α| ≤ degree`.
fn monomials(d: usize, degree: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for _ in 0..d {
        out = out
            .into_iter()
            .flat_map(|a: Vec<usize>| {
                let used: usize = a.iter().sum();
                (0..=degree - used).map(move |k| {
                    let mut b = a.clone();
                    b.push(k);
                    b
                })
            })
            .collect();
    }
    out
}

fn monomial(g: &mut Graph, x: &[Id], alpha: &[usize]) -> Id {
    let mut m = g.constant(1.0);
    for (&xi, &a) in x.iter().zip(alpha) {
        if a > 0 {
            let p = g.powi(xi, a as i32);
            m = g.mul(m, p);
        }
    }
    m
}

/// Gauss–Hermite nodes and weights for the standard normal (probabilists'), by the
/// Golub–Welsch eigenvalue method: exact for polynomials of degree `2n − 1`.
pub fn gauss_hermite(n: usize) -> Vec<(f64, f64)> {
    let mut j = exact::zeros(n);
    for k in 1..n {
        let b = (k as f64).sqrt();
        j[[k - 1, k]] = b;
        j[[k, k - 1]] = b;
    }
    let (nodes, v) = exact::eigh(&j);
    let mut out: Vec<(f64, f64)> = nodes
        .iter()
        .enumerate()
        .map(|(k, &x)| (x, v[[0, k]] * v[[0, k]]))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The tensor-product rule in `k` dimensions: (point, weight).
fn product_rule(nodes: &[(f64, f64)], k: usize) -> Vec<(Vec<f64>, f64)> {
    let mut out = vec![(Vec::new(), 1.0)];
    for _ in 0..k {
        out = out
            .into_iter()
            .flat_map(|(p, w): (Vec<f64>, f64)| {
                nodes.iter().map(move |&(x, v)| {
                    let mut q = p.clone();
                    q.push(x);
                    (q, w * v)
                })
            })
            .collect();
    }
    out
}

/// The index tuples `i₁ ≤ … ≤ i_s` over `n` slots.
fn tuples(n: usize, s: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for _ in 0..s {
        out = out
            .into_iter()
            .flat_map(|t: Vec<usize>| {
                let from = t.last().copied().unwrap_or(0);
                (from..n).map(move |i| {
                    let mut u = t.clone();
                    u.push(i);
                    u
                })
            })
            .collect();
    }
    out
}

/// A random state for the layout: the parameter in (−1, 1), a variable marked
/// `positive` in (0.3, 1.3), the others of magnitude in (0.3, 1.3) and either sign (away
/// from 0, where kinks and roots sit), the clock in (0.6, 1.6).
fn random_state(layout: &Layout, rng: &mut Stream, positive: &[bool]) -> Vec<f64> {
    let mut z = vec![0.0; layout.n];
    for (k, (_, off, len)) in layout.vars.iter().enumerate() {
        let clock = layout.clock && k == layout.vars.len() - 1;
        for v in &mut z[*off..off + len] {
            let u = rng.uniform();
            *v = if clock {
                0.6 + u
            } else if k == 0 {
                2.0 * u - 1.0
            } else if positive[k] || rng.uniform() < 0.5 {
                0.3 + u
            } else {
                -0.3 - u
            };
        }
    }
    z
}

/// Where one step starts: the state in the layout, the numbers, the time per step.
#[derive(Clone, Copy)]
struct Point<'a> {
    layout: &'a Layout,
    z: &'a [f64],
    values: &'a Values,
    tau: f64,
}

/// The optimizer's one-step moments `E Π_{i∈t} Δ_i` at `z` for every tuple, and the
/// largest |Δ| seen (for the rounding level). `None` when a step is not finite.
fn discrete_moments(
    rule: &Optimizer,
    problem: &RandomProblem,
    oracle: &crate::problem::ModelOracle,
    at: &Point,
    tuples: &[Vec<usize>],
) -> Result<(Vec<f64>, f64), String> {
    let mut sums = vec![0.0; tuples.len()];
    let mut dmax: f64 = 0.0;
    each_step(rule, problem, oracle, at, &mut |weight, delta| {
        for (sum, t) in sums.iter_mut().zip(tuples) {
            *sum += weight * t.iter().map(|&i| delta[i]).product::<f64>();
        }
        dmax = delta.iter().fold(dmax, |m, d| m.max(d.abs()));
    })?;
    Ok((sums, dmax))
}

/// Runs one step from `at` for every combination of the samples' draws, handing each
/// increment (layout slots; the clock's is τ) and its probability to `visit`.
fn each_step(
    rule: &Optimizer,
    problem: &RandomProblem,
    oracle: &crate::problem::ModelOracle,
    at: &Point,
    visit: &mut dyn FnMut(f64, &[f64]),
) -> Result<(), String> {
    let Point {
        layout,
        z,
        values,
        tau,
    } = *at;
    let samples = rule.noises.len();
    let rule_vars = numeric::step::variables(rule).len();
    let count = problem.draws.len().pow(samples as u32);
    let mut delta = vec![0.0; layout.n];
    for mut c in 0..count {
        let mut draws = Vec::with_capacity(samples);
        let mut weight = 1.0;
        for _ in 0..samples {
            let (d, w) = &problem.draws[c % problem.draws.len()];
            c /= problem.draws.len();
            draws.push(d.clone());
            weight *= w;
        }
        // The rule's variables (the clock, when there is one, is the SME's alone).
        let mut state = layout.values(z);
        state.truncate(rule_vars);
        numeric::step(rule, &mut state, oracle, values, &draws).map_err(|e| e.to_string())?;
        for ((_, off, len), v) in layout.vars.iter().zip(&state) {
            match v {
                Value::Scalar(s) => delta[*off] = s - z[*off],
                Value::Vector(xs) => {
                    for (k, x) in xs.iter().enumerate().take(*len) {
                        delta[off + k] = x - z[off + k];
                    }
                }
            }
        }
        if layout.clock {
            delta[layout.n - 1] = tau;
        }
        visit(weight, &delta);
    }
    Ok(())
}

/// Which variables of the layout the rule keeps positive: started at a tiny positive
/// value (the others positive), every draw's step leaves it positive, or the step is
/// not defined without it (a root of it). Those are drawn positive; the others take
/// both signs, so that a formula right only for positive values (`sqrt(m^2) = m`)
/// shows.
fn positive_variables(
    rule: &Optimizer,
    problem: &RandomProblem,
    oracle: &crate::problem::ModelOracle,
    layout: &Layout,
    values: &Values,
    rng: &mut Stream,
) -> Vec<bool> {
    let mut out = vec![false; layout.vars.len()];
    for (k, (_, off, len)) in layout.vars.iter().enumerate().skip(1) {
        if layout.clock && k == layout.vars.len() - 1 {
            out[k] = true;
            continue;
        }
        let mut z = random_state(layout, rng, &vec![true; layout.vars.len()]);
        z[*off..off + len].fill(1e-9);
        let at = Point {
            layout,
            z: &z,
            values,
            tau: 0.0,
        };
        let mut stays = true;
        let ran = each_step(rule, problem, oracle, &at, &mut |_, delta| {
            stays &= (*off..off + len).all(|i| z[i] + delta[i] > 0.0);
        });
        out[k] = ran.is_err() || stays;
    }
    out
}

/// The SDE's one-step moments by the generator series, as graphs over the state
/// (inputs `0..n`) and the centre `c` (inputs `n..2n`): for each tuple, the terms
/// `(L^m ψ)` for `m = 0 … order`, with `ψ(y) = Π (y_i − c_i)`.
fn generator_series(
    g: &mut Graph,
    drift: &[Id],
    diffusion: &[Id],
    n: usize,
    tuples: &[Vec<usize>],
    order: u32,
) -> Result<Vec<Vec<Id>>, String> {
    let y: Vec<Id> = (0..n as u32).map(|i| g.input(i)).collect();
    let c: Vec<Id> = (n as u32..2 * n as u32).map(|i| g.input(i)).collect();
    let mut phi: Vec<Id> = tuples
        .iter()
        .map(|t| {
            let mut p = g.constant(1.0);
            for &i in t {
                let u = g.sub(y[i], c[i]);
                p = g.mul(p, u);
            }
            p
        })
        .collect();
    let mut out: Vec<Vec<Id>> = phi.iter().map(|&p| vec![p]).collect();
    let half = g.constant(0.5);
    let two = g.constant(2.0);
    for _ in 0..order {
        let mut next: Vec<Id> = vec![g.constant(0.0); phi.len()];
        for i in 0..n {
            let di = g.diff_all(&phi, i as u32);
            if g.value(drift[i]) != Some(0.0) {
                for (acc, &d) in next.iter_mut().zip(&di) {
                    let t = g.mul(drift[i], d);
                    *acc = g.add(*acc, t);
                }
            }
            for j in i..n {
                let dij = diffusion[i * n + j];
                if g.value(dij) == Some(0.0) {
                    continue;
                }
                let dd = g.diff_all(&di, j as u32);
                // ½ Σ_ij D_ij ∂_i∂_j: off-diagonal pairs count twice.
                let k = if i == j { half } else { g.mul(two, half) };
                let coef = g.mul(k, dij);
                for (acc, &d) in next.iter_mut().zip(&dd) {
                    let t = g.mul(coef, d);
                    *acc = g.add(*acc, t);
                }
            }
            g.check_size()
                .map_err(|_| "the generator series grew too large".to_string())?;
        }
        for (o, &p) in out.iter_mut().zip(&next) {
            o.push(p);
        }
        phi = next;
    }
    Ok(out)
}

/// The grid of the small parameter: 0.5 down by factors of √2 to 7·10⁻⁴ (small enough
/// that order 3 and 4 residuals reach their asymptotic power before the rounding level).
fn grid() -> Vec<f64> {
    (0..20)
        .map(|k| 0.5 * 2f64.powf(-(k as f64) / 2.0))
        .collect()
}

fn run(
    rule: &Optimizer,
    sme: &Sme,
    mut problem: RandomProblem,
    rng: &mut Stream,
) -> Result<Vec<MomentFit>, String> {
    let order = sme.order;
    let clock = sme.clock.map(|c| sme.vars[c].name.clone());
    let layout = Layout::new(rule, DIM, clock.as_deref());
    let n = layout.n;
    let tuples_by_s: Vec<Vec<Vec<usize>>> = (1..=order as usize).map(|s| tuples(n, s)).collect();
    let all: Vec<Vec<usize>> = tuples_by_s.iter().flatten().cloned().collect();
    let hypers: BTreeMap<String, f64> = rule
        .hypers
        .iter()
        .map(|h| (h.name.clone(), 0.5 + rng.uniform()))
        .collect();
    let oracle = problem.model.oracle();
    // States: both signs first; positive other states if the rule is not defined there.
    // With an eliminated fast state of rate μ the reduced rule's coefficients grow as
    // (1 − |μ|)⁻³ (heavy ball's (1 + μ)/(2(1 − μ)³)): the grid moves down by (1 − |μ|)²
    // so that its residuals reach their asymptotic power (μ = 9/10: from 5·10⁻³).
    let shrink: f64 = sme
        .eliminated
        .iter()
        .filter_map(|e| e.rate.as_constant())
        .map(|mu| (1.0 - crate::algebra::poly::rat_to_f64(&mu).abs()).powi(2))
        .product();
    let grid: Vec<f64> = grid().into_iter().map(|t| t * shrink).collect();
    let probe_values = Values {
        small: grid[grid.len() / 2],
        hypers: hypers.clone(),
        counter: 10,
    };
    let positive = positive_variables(rule, &problem, &oracle, &layout, &probe_values, rng);
    let mut states: Vec<Vec<f64>> = Vec::new();
    for k in 0..STATES {
        let mut z = random_state(&layout, rng, &positive);
        if k % 2 == 1 {
            // Every component of a variable of either sign takes both signs.
            for (v, (_, off, len)) in layout.vars.iter().enumerate().skip(1) {
                if !positive[v] {
                    for i in *off..off + len {
                        z[i] = -z[i].abs() * states[k - 1][i].signum();
                    }
                }
            }
        }
        let at = Point {
            layout: &layout,
            z: &z,
            values: &probe_values,
            tau: 0.0,
        };
        if let Err(e) = each_step(rule, &problem, &oracle, &at, &mut |_, _| {}) {
            return Err(format!("the rule's step fails at a random state: {e}"));
        }
        states.push(z);
    }
    let mut fits: Vec<MomentFit> = (1..=order as usize)
        .map(|s| MomentFit {
            s,
            tau: Vec::new(),
            residual: Vec::new(),
            floor: Vec::new(),
            power: None,
        })
        .collect();
    for &eps in &grid {
        let nums = Numbers {
            small: eps,
            hypers: hypers.clone(),
        };
        let syms =
            compile::symbol_values(sme, DIM, &nums, &rule.small.name).map_err(|e| e.to_string())?;
        let sde = compile::compile_sde(sme, &mut problem.model, &layout, &syms)
            .map_err(|e| e.to_string())?;
        let tau = sde.tau;
        if !(tau > 0.0 && tau.is_finite()) {
            return Err(format!("the time per step is {tau}"));
        }
        let mut g = sde.graph.clone();
        let series = generator_series(&mut g, &sde.drift, &sde.diffusion, n, &all, order)?;
        let flat: Vec<Id> = series.iter().flatten().copied().collect();
        let mut residual = vec![0.0f64; order as usize];
        let mut floor = vec![0.0f64; order as usize];
        let mut usable = true;
        for z0 in &states {
            let mut z = z0.clone();
            let mut counter = 0;
            if layout.clock {
                // The clock at t = kτ for the step counter k nearest the drawn time.
                let k = (z[n - 1] / tau).round().max(1.0);
                counter = k as u64;
                z[n - 1] = k * tau;
            }
            let values = Values {
                small: eps,
                hypers: hypers.clone(),
                counter,
            };
            let at = Point {
                layout: &layout,
                z: &z,
                values: &values,
                tau,
            };
            let Ok((disc, dmax)) = discrete_moments(rule, &problem, &oracle, &at, &all) else {
                usable = false;
                break;
            };
            let mut inputs = z.clone();
            inputs.extend_from_slice(&z);
            let terms = g.eval(&flat, &inputs);
            let zmax = z.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let per = order as usize + 1;
            for (k, t) in all.iter().enumerate() {
                let s = t.len();
                let mut sde_moment = 0.0;
                let mut size = 0.0;
                let mut factorial = 1.0;
                for m in 0..per {
                    if m > 0 {
                        factorial *= m as f64;
                    }
                    let term = tau.powi(m as i32) / factorial * terms[k * per + m];
                    sde_moment += term;
                    size += term.abs();
                }
                let r = (disc[k] - sde_moment).abs();
                let level =
                    8.0 * f64::EPSILON * (size + s as f64 * zmax * dmax.powi(s as i32 - 1) * 4.0);
                if !r.is_finite() || !level.is_finite() {
                    usable = false;
                }
                residual[s - 1] = residual[s - 1].max(r);
                floor[s - 1] = floor[s - 1].max(level);
            }
        }
        if !usable {
            continue; // a step size outside the rule's domain (a root of a negative)
        }
        for (fit, (r, f)) in fits.iter_mut().zip(residual.iter().zip(&floor)) {
            fit.tau.push(tau);
            fit.residual.push(*r);
            fit.floor.push(*f);
        }
    }
    if fits[0].tau.len() < 3 {
        return Err(format!(
            "the rule or its SME is not finite at the random states for {} of the {} step sizes",
            grid.len() - fits[0].tau.len(),
            grid.len()
        ));
    }
    for fit in &mut fits {
        fit.power = fit_power(&fit.tau, &fit.residual, &fit.floor);
    }
    Ok(fits)
}

/// The least-squares power of τ through the four smallest step sizes whose residuals
/// stand clear of the rounding level (at least three needed).
fn fit_power(tau: &[f64], residual: &[f64], floor: &[f64]) -> Option<f64> {
    let mut clean: Vec<(f64, f64)> = tau
        .iter()
        .zip(residual)
        .zip(floor)
        .filter(|((_, r), f)| **r > 100.0 * **f && **r > 0.0)
        .map(|((t, r), _)| (t.ln(), r.ln()))
        .collect();
    clean.sort_by(|a, b| a.0.total_cmp(&b.0));
    clean.truncate(4);
    if clean.len() < 3 {
        return None;
    }
    let k = clean.len() as f64;
    let (mx, my) = (
        clean.iter().map(|p| p.0).sum::<f64>() / k,
        clean.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let sxy: f64 = clean.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = clean.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    Some(sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_hermite_integrates_polynomials_exactly() {
        let rule = gauss_hermite(6);
        let moment = |k: i32| rule.iter().map(|(x, w)| w * x.powi(k)).sum::<f64>();
        // E Z^k for a standard normal: 1, 0, 1, 0, 3, 0, 15, 0, 105, 0, 945.
        for (k, want) in [1.0, 0.0, 1.0, 0.0, 3.0, 0.0, 15.0, 0.0, 105.0, 0.0, 945.0]
            .iter()
            .enumerate()
        {
            assert!(
                (moment(k as i32) - want).abs() < 1e-9 * (1.0 + want),
                "E Z^{k}"
            );
        }
    }

    #[test]
    fn tuples_are_sorted_multisets() {
        assert_eq!(tuples(3, 2).len(), 6);
        assert_eq!(tuples(7, 3).len(), 84);
        assert_eq!(monomials(2, 4).len(), 15);
    }

    #[test]
    fn the_fit_skips_rounding_and_reads_the_power() {
        let tau: Vec<f64> = (0..8).map(|k| 0.5f64.powi(k)).collect();
        let residual: Vec<f64> = tau.iter().map(|t| 3.0 * t.powi(3)).collect();
        let mut floor = vec![1e-8; 8];
        floor[7] = 1.0; // the last point is "at rounding"
        let p = fit_power(&tau, &residual, &floor).expect("enough points");
        assert!((p - 3.0).abs() < 1e-9, "{p}");
        assert_eq!(fit_power(&tau, &residual, &[1.0; 8]), None);
    }
}
