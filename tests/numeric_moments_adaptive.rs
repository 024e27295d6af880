//! Derived SMEs of adaptive methods against independent numerics: the one-step moments
//! of the optimizer's own step versus the one-step moments of its derived SDE, on random
//! polynomial objectives with state-dependent Gaussian noise, in d = 1 and 2.
//!
//! - Discrete side: each optimizer's step is written out here from its rule (the `.opt`
//!   files in `examples/`), and `E Π Δ` is computed by tensor Gauss–Hermite quadrature
//!   over the noise ζ ~ N(0, I) (g = ∇f + Lζ, LLᵀ = Σ(x)). The maps are smooth but not
//!   polynomial (square roots, divisions), so the rule is not exact: the quadrature is
//!   repeated with one more node per dimension and that difference is asserted to be
//!   far below the residual.
//! - SDE side: `E ψ(Z_τ) = Σ_{m ≤ M} τ^m/m! (Lᵐψ)(z)`, `L = b·∇ + ½ D:∇²`, `ψ = Π (y −
//!   z)`. The drift b and diffusion D are evaluated by the reference evaluator
//!   [`smelt::internals::numeric::eval`] at concrete points; their second-order Taylor polynomial
//!   at z comes from central finite differences (step h, the derivatives of f and Σ
//!   re-evaluated at every shifted point), and the series is summed with exact
//!   polynomial arithmetic. The finite-difference error is estimated by repeating with
//!   step 2h and asserted to be far below the residual.
//!
//! Regimes: Callisti et al.'s small-noise ("ballistic") RMSProp and Adam, one step = time
//! τ, increments O(τ): moments of order s ≤ p must agree to O(τ^{p+1}). Malladi et al.'s
//! RMSprop and Adam, one step = time η², noise O(η): moments of order s ≤ 3 must agree
//! through η³, the residual is O(η⁴). Adam reads the step counter: its SME has the clock
//! t = kτ as a state, and the discrete step is taken at k = t0/τ (not an integer: the
//! bias corrections `1 − β^(k+1)` are evaluated at that real k, as the expansion
//! assumes).
//!
//! Only `smelt::derive`'s result is read (through the evaluator); the step, the noise and
//! the generator are written out here from the mathematics.

#![allow(
    clippy::print_stdout,
    clippy::needless_range_loop,
    reason = "a numeric experiment: it prints its slopes, and index loops mirror the formulas"
)]

use smelt::internals::numeric::eval::{diffusion, drift, time_per_step};
use smelt::internals::numeric::{Env, Tensor, Value};
use smelt::Sme;
use std::collections::BTreeMap;

mod support;
use support::*;

// ---------------------------------------------------------------------------------
// The concrete problem: f and Σ as polynomials in the parameter x (absolute
// coordinates), the hyperparameters, and the point z (all state variables, flattened
// in the SME's order: a vector state has d components, a scalar one component).

/// The optimizer rules, written out below in [`increment`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// examples/rmsprop_ballistic.opt
    RmsPropBallistic,
    /// examples/adam_ballistic.opt
    AdamBallistic,
    /// examples/rmsprop.opt (Malladi et al.'s scaling)
    RmsPropMalladi,
    /// examples/adam.opt (Malladi et al.'s scaling)
    AdamMalladi,
}

/// Where each state variable sits in the flattened state.
struct Layout {
    names: Vec<String>,
    offset: Vec<usize>,
    len: Vec<usize>,
    n: usize,
    clock: Option<usize>,
}

impl Layout {
    fn new(sme: &Sme, d: usize) -> Layout {
        let mut offset = Vec::new();
        let mut len = Vec::new();
        let mut n = 0;
        for v in &sme.vars {
            offset.push(n);
            let l = if v.scalar { 1 } else { d };
            len.push(l);
            n += l;
        }
        assert!(n <= MAX_VARS);
        Layout {
            names: sme.vars.iter().map(|v| v.name.clone()).collect(),
            offset,
            len,
            n,
            clock: sme.clock,
        }
    }
    /// The offset of the variable named `name`.
    fn of(&self, name: &str) -> usize {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no state variable `{name}`"));
        self.offset[i]
    }
    /// The flattened components that are random (every one but the clock's).
    fn random_components(&self) -> Vec<usize> {
        (0..self.n)
            .filter(|&k| self.clock.is_none_or(|c| k != self.offset[c]))
            .collect()
    }
}

struct Problem {
    d: usize,
    /// `fd[k][flat multi-index] = ∂^k f` as a polynomial in x, k = 0..=4.
    fd: Vec<Vec<MPoly>>,
    /// `sd[j][flat multi-index] = ∂^j Σ` (Σ's two slots, then the j derivative slots).
    sd: Vec<Vec<MPoly>>,
    /// Values of the hyperparameters by name.
    hyper: BTreeMap<String, f64>,
    /// The point z, flattened.
    z: Vec<f64>,
}

/// One more derivative of a row-major tensor of polynomials: entry `(α, i)` is `∂_i base[α]`.
fn all_derivs(base: &[MPoly], d: usize) -> Vec<MPoly> {
    base.iter()
        .flat_map(|p| (0..d).map(move |i| p.deriv(i)))
        .collect()
}

impl Problem {
    fn random(lay: &Layout, d: usize, seed: u64) -> Problem {
        let mut rng = Rng::new(seed);
        // f: every monomial of degree 1..=4 in d variables, coefficient scale by degree.
        let mut f = MPoly::zero();
        let scale = [0.0, 1.0, 1.0, 0.3, 0.1];
        let mut exps: Vec<Vec<usize>> = vec![vec![]];
        for deg in 1..=4 {
            let mut next = Vec::new();
            for e in &exps {
                let start = e.last().copied().unwrap_or(0);
                for i in start..d {
                    let mut e2 = e.clone();
                    e2.push(i);
                    next.push(e2);
                }
            }
            exps = next;
            for e in &exps {
                let mut m = MPoly::constant(scale[deg] * rng.sym());
                for &i in e {
                    m = m.mul(&MPoly::var(i));
                }
                f = f.add(&m);
            }
        }
        // Σ(x) = A(x) A(x)ᵀ + ½ I, A(x) = A0 + Σ_k A1_k x_k.
        let a: Vec<Vec<MPoly>> = (0..d)
            .map(|_| {
                (0..d)
                    .map(|_| {
                        let mut p = MPoly::constant(0.7 * rng.sym());
                        for k in 0..d {
                            p.add_scaled(&MPoly::var(k), 0.5 * rng.sym());
                        }
                        p
                    })
                    .collect()
            })
            .collect();
        let mut sigma = Vec::new();
        for i in 0..d {
            for j in 0..d {
                let mut s = if i == j {
                    MPoly::constant(0.5)
                } else {
                    MPoly::zero()
                };
                for k in 0..d {
                    s = s.add(&a[i][k].mul(&a[j][k]));
                }
                sigma.push(s);
            }
        }
        let mut fd = vec![vec![f]];
        for _ in 1..=4 {
            let next = all_derivs(fd.last().unwrap(), d);
            fd.push(next);
        }
        let mut sd = vec![sigma];
        for _ in 1..=3 {
            let next = all_derivs(sd.last().unwrap(), d);
            sd.push(next);
        }
        let hyper = ["c", "c1", "c2", "eps", "sigma0", "eps0"]
            .iter()
            .map(|n| (n.to_string(), rng.range(0.5, 1.5)))
            .collect();
        let mut z = vec![0.0; lay.n];
        for (v, name) in lay.names.iter().enumerate() {
            for i in 0..lay.len[v] {
                z[lay.offset[v] + i] = match name.as_str() {
                    "x" => 0.6 * rng.sym(),
                    "m" => rng.sym(),
                    "v" | "u" => rng.range(0.5, 2.0),
                    "t" => rng.range(0.8, 1.2),
                    other => panic!("unexpected state `{other}`"),
                };
            }
        }
        Problem {
            d,
            fd,
            sd,
            hyper,
            z,
        }
    }

    fn h(&self, name: &str) -> f64 {
        self.hyper[name]
    }

    /// ∇f at x.
    fn grad(&self, x: &[f64]) -> Vec<f64> {
        self.fd[1].iter().map(|p| p.eval(x)).collect()
    }

    /// Σ at x.
    fn sigma(&self, x: &[f64]) -> Vec<Vec<f64>> {
        let d = self.d;
        (0..d)
            .map(|i| (0..d).map(|j| self.sd[0][i * d + j].eval(x)).collect())
            .collect()
    }

    /// The evaluator's point: state `y` (flattened), the symbols, `∇^k f(x)`, `∂^j Σ(x)`.
    fn env(&self, lay: &Layout, y: &[f64], small: (&str, f64)) -> Env {
        let d = self.d;
        let x = &y[lay.of("x")..lay.of("x") + d];
        let state = (0..lay.names.len())
            .map(|v| {
                let s = &y[lay.offset[v]..lay.offset[v] + lay.len[v]];
                if Some(v) == lay.clock {
                    Value::Scalar(s[0])
                } else {
                    Value::Vector(s.to_vec())
                }
            })
            .collect();
        let tensor = |polys: &[MPoly], rank: usize| Tensor {
            shape: vec![d; rank],
            data: polys.iter().map(|p| p.eval(x)).collect(),
        };
        let grad_f = self
            .fd
            .iter()
            .enumerate()
            .map(|(k, p)| tensor(p, k))
            .collect();
        let sigma = self
            .sd
            .iter()
            .enumerate()
            .map(|(j, p)| tensor(p, 2 + j))
            .collect();
        let mut symbols = self.hyper.clone();
        symbols.insert(small.0.to_string(), small.1);
        Env {
            dim: d,
            state,
            symbols,
            grad_f,
            moments: vec![vec![], vec![], sigma],
        }
    }
}

// ---------------------------------------------------------------------------------
// The discrete side: each optimizer's step, written from its rule.

/// The increments of one step from `z` (flattened, every state variable including the
/// clock) for the sampled gradient `g`; `small` is τ (ballistic) or η (Malladi).
fn increment(rule: Rule, pb: &Problem, lay: &Layout, z: &[f64], g: &[f64], small: f64) -> Vec<f64> {
    let d = pb.d;
    let mut delta = vec![0.0; lay.n];
    // 1 − β^(k+1) with β = 1 − c·τ and k = t/τ real.
    let bias =
        |c: f64, tau: f64, t: f64| -> f64 { -((t / tau + 1.0) * (-c * tau).ln_1p()).exp_m1() };
    match rule {
        Rule::RmsPropBallistic => {
            // x = x - tau*g/(sqrt(v) + eps)   (old v);   v = (1 - c tau) v + c tau g^2
            let (tau, c, eps) = (small, pb.h("c"), pb.h("eps"));
            let (ox, ov) = (lay.of("x"), lay.of("v"));
            for i in 0..d {
                let v = z[ov + i];
                delta[ox + i] = -tau * g[i] / (v.sqrt() + eps);
                delta[ov + i] = c * tau * (g[i] * g[i] - v);
            }
        }
        Rule::AdamBallistic => {
            // m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²;  x = x − τ m̂/(√v̂ + ε)
            let (tau, c1, c2, eps) = (small, pb.h("c1"), pb.h("c2"), pb.h("eps"));
            let (ox, om, ov, ot) = (lay.of("x"), lay.of("m"), lay.of("v"), lay.of("t"));
            let t = z[ot];
            let (gamma1, gamma2) = (bias(c1, tau, t), bias(c2, tau, t));
            for i in 0..d {
                let (m, v) = (z[om + i], z[ov + i]);
                let dm = c1 * tau * (g[i] - m);
                let dv = c2 * tau * (g[i] * g[i] - v);
                let mhat = (m + dm) / gamma1;
                let vhat = (v + dv) / gamma2;
                delta[om + i] = dm;
                delta[ov + i] = dv;
                delta[ox + i] = -tau * mhat / (vhat.sqrt() + eps);
            }
            delta[ot] = tau;
        }
        Rule::RmsPropMalladi => {
            // σ = σ0/η, ε = ε0/η, 1 − β = c η²:
            // u = β u + (1 − β) g²/σ²;  x = x − η g/(σ √u + ε)   (new u)
            let (eta, c, s0, e0) = (small, pb.h("c"), pb.h("sigma0"), pb.h("eps0"));
            let (sigma, eps) = (s0 / eta, e0 / eta);
            let (ox, ou) = (lay.of("x"), lay.of("u"));
            for i in 0..d {
                let u = z[ou + i];
                let du = c * eta * eta * (g[i] * g[i] / (sigma * sigma) - u);
                delta[ou + i] = du;
                delta[ox + i] = -eta * g[i] / (sigma * (u + du).sqrt() + eps);
            }
        }
        Rule::AdamMalladi => {
            // σ = σ0/η, ε = ε0/η, 1 − βi = ci η², k = t/η²:
            // m = β1 m + (1 − β1) g;  u = β2 u + (1 − β2) g²/σ²;  x = x − η m̂/(σ √û + ε)
            let (eta, c1, c2) = (small, pb.h("c1"), pb.h("c2"));
            let (s0, e0) = (pb.h("sigma0"), pb.h("eps0"));
            let (sigma, eps, tau) = (s0 / eta, e0 / eta, eta * eta);
            let (ox, om, ou, ot) = (lay.of("x"), lay.of("m"), lay.of("u"), lay.of("t"));
            let t = z[ot];
            let (gamma1, gamma2) = (bias(c1, tau, t), bias(c2, tau, t));
            for i in 0..d {
                let (m, u) = (z[om + i], z[ou + i]);
                let dm = c1 * tau * (g[i] - m);
                let du = c2 * tau * (g[i] * g[i] / (sigma * sigma) - u);
                let mhat = (m + dm) / gamma1;
                let uhat = (u + du) / gamma2;
                delta[om + i] = dm;
                delta[ou + i] = du;
                delta[ox + i] = -eta * mhat / (sigma * uhat.sqrt() + eps);
            }
            delta[ot] = tau;
        }
    }
    delta
}

/// `E Π_j Δ_{t_j}` of one step from z, by tensor Gauss–Hermite quadrature with `nodes`
/// nodes per dimension; the gradient is `∇f(x) + s·Lζ`, s = σ0/η in Malladi's scaling.
fn discrete_moments(
    rule: Rule,
    pb: &Problem,
    lay: &Layout,
    small: f64,
    tuples: &[Vec<usize>],
    nodes: usize,
) -> Vec<f64> {
    let d = pb.d;
    let ox = lay.of("x");
    let x = &pb.z[ox..ox + d];
    let grad = pb.grad(x);
    let l = cholesky(&pb.sigma(x));
    let noise_scale = match rule {
        Rule::RmsPropBallistic | Rule::AdamBallistic => 1.0,
        Rule::RmsPropMalladi | Rule::AdamMalladi => pb.h("sigma0") / small,
    };
    let mut out = vec![0.0; tuples.len()];
    for (zeta, w) in tensor_rule(d, nodes) {
        let g: Vec<f64> = (0..d)
            .map(|i| grad[i] + noise_scale * (0..=i).map(|k| l[i][k] * zeta[k]).sum::<f64>())
            .collect();
        let delta = increment(rule, pb, lay, &pb.z, &g, small);
        for (o, t) in out.iter_mut().zip(tuples) {
            *o += w * t.iter().map(|&i| delta[i]).product::<f64>();
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// The SDE side: drift and diffusion from the evaluator, their Taylor polynomials by
// finite differences, and the generator series.

/// The drift (n entries) and the diffusion (n × n, row-major) at the flattened state
/// `y`. The drift's coefficients are evaluated with the small parameter at
/// `drift_small` (the negative control sets it to 0, keeping the leading drift only).
fn coefficients(
    sme: &Sme,
    pb: &Problem,
    lay: &Layout,
    y: &[f64],
    small: f64,
    drift_small: f64,
) -> Vec<f64> {
    let name = sme.symbols.name(sme.small);
    let n = lay.n;
    let mut out = vec![0.0; n + n * n];
    let b =
        drift(sme, &pb.env(lay, y, (name, drift_small))).unwrap_or_else(|e| panic!("drift: {e}"));
    for (v, t) in b.iter().enumerate() {
        assert_eq!(t.data.len(), lay.len[v]);
        for (i, x) in t.data.iter().enumerate() {
            out[lay.offset[v] + i] = *x;
        }
    }
    let blocks =
        diffusion(sme, &pb.env(lay, y, (name, small))).unwrap_or_else(|e| panic!("diffusion: {e}"));
    for ((a, c), t) in blocks {
        // Free indices: a's (if a vector), then c's (if a vector).
        let (la, lc) = (lay.len[a], lay.len[c]);
        assert_eq!(t.data.len(), la * lc, "diffusion block ({a}, {c})");
        for i in 0..la {
            for j in 0..lc {
                let val = t.data[i * lc + j];
                let (r, s) = (lay.offset[a] + i, lay.offset[c] + j);
                out[n + r * n + s] = val;
                out[n + s * n + r] = val;
            }
        }
    }
    out
}

/// The second-order Taylor polynomials at 0 (in the displacement u = y − z) of every
/// entry of `coef(y)`, by central differences with step `h`.
fn taylor2(n: usize, z: &[f64], h: f64, coef: &dyn Fn(&[f64]) -> Vec<f64>) -> Vec<MPoly> {
    let at = |shifts: &[(usize, f64)]| {
        let mut y = z.to_vec();
        for &(k, s) in shifts {
            y[k] += s;
        }
        coef(&y)
    };
    let f0 = at(&[]);
    let mut polys: Vec<MPoly> = f0.iter().map(|&c| MPoly::constant(c)).collect();
    let plus: Vec<Vec<f64>> = (0..n).map(|k| at(&[(k, h)])).collect();
    let minus: Vec<Vec<f64>> = (0..n).map(|k| at(&[(k, -h)])).collect();
    for k in 0..n {
        let uk = MPoly::var(k);
        let uk2 = uk.mul(&uk);
        for (e, p) in polys.iter_mut().enumerate() {
            let g = (plus[k][e] - minus[k][e]) / (2.0 * h);
            let hkk = (plus[k][e] - 2.0 * f0[e] + minus[k][e]) / (h * h);
            p.add_scaled(&uk, g);
            p.add_scaled(&uk2, 0.5 * hkk);
        }
    }
    for k in 0..n {
        for l in k + 1..n {
            let pp = at(&[(k, h), (l, h)]);
            let pm = at(&[(k, h), (l, -h)]);
            let mp = at(&[(k, -h), (l, h)]);
            let mm = at(&[(k, -h), (l, -h)]);
            let ukl = MPoly::var(k).mul(&MPoly::var(l));
            for (e, p) in polys.iter_mut().enumerate() {
                let hkl = (pp[e] - pm[e] - mp[e] + mm[e]) / (4.0 * h * h);
                p.add_scaled(&ukl, hkl);
            }
        }
    }
    polys
}

/// The SDE's one-step moments with finite-difference step `h`.
#[allow(clippy::too_many_arguments, reason = "one experiment's parameters")]
fn sde_side(
    sme: &Sme,
    pb: &Problem,
    lay: &Layout,
    small: f64,
    drift_small: f64,
    m_max: u32,
    h: f64,
    tuples: &[Vec<usize>],
) -> Vec<f64> {
    let n = lay.n;
    let polys = taylor2(n, &pb.z, h, &|y| {
        coefficients(sme, pb, lay, y, small, drift_small)
    });
    let b: Vec<MPoly> = polys[..n].to_vec();
    let dm: Vec<Vec<MPoly>> = (0..n)
        .map(|r| (0..n).map(|s| polys[n + r * n + s].clone()).collect())
        .collect();
    let name = sme.symbols.name(sme.small);
    let tau = time_per_step(sme, &pb.env(lay, &pb.z, (name, small))).unwrap();
    sde_moments(&b, &dm, tau, m_max, tuples)
}

// ---------------------------------------------------------------------------------
// The experiment.

struct Case {
    file: &'static str,
    rule: Rule,
    /// The weak order claimed.
    order: u32,
    /// Moments of order 1..=s_max are compared.
    s_max: usize,
    /// Terms of the generator series, m ≤ m_max.
    m_max: u32,
    /// The small parameter's halving grid (τ, or η in Malladi's scaling).
    smalls: [f64; 4],
    /// The residual's expected power of the small parameter.
    expected: f64,
    /// Evaluate the drift with the small parameter at 0 (the negative control).
    drop_drift_correction: bool,
}

const FD_STEP: f64 = 1e-3;

/// Random problems per case and dimension; the residual per step size is the largest
/// over them (a wrong term can hide behind tensors that happen to be small at one point).
const PROBLEMS: u64 = 3;

fn derive(file: &str, order: u32) -> Sme {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap();
    // Gaussian noise (the quadrature's): Malladi's files declare `~ general`.
    let source = source.replace("~ general", "~ gaussian");
    assert!(source.contains("~ gaussian"), "{file}: noise declaration");
    let sme = smelt::derive(&source, &smelt::Options::order(order))
        .unwrap_or_else(|e| panic!("{file} order {order}: {e}"));
    assert_eq!(sme.order, order, "{file}: order {order} not reached");
    sme
}

/// One step size's numbers on one problem.
struct Measured {
    residual: f64,
    quad_err: f64,
    fd_err: f64,
}

fn measure(case: &Case, sme: &Sme, d: usize, seed: u64) -> Vec<Measured> {
    let lay = Layout::new(sme, d);
    let pb = Problem::random(&lay, d, seed);
    let comps = lay.random_components();
    let all: Vec<Vec<usize>> = (1..=case.s_max).flat_map(|s| tuples(&comps, s)).collect();
    let nodes = if d == 1 { 20 } else { 10 };
    case.smalls
        .iter()
        .map(|&small| {
            let drift_small = if case.drop_drift_correction {
                0.0
            } else {
                small
            };
            let disc = discrete_moments(case.rule, &pb, &lay, small, &all, nodes);
            let disc2 = discrete_moments(case.rule, &pb, &lay, small, &all, nodes + 1);
            let sde = sde_side(
                sme,
                &pb,
                &lay,
                small,
                drift_small,
                case.m_max,
                FD_STEP,
                &all,
            );
            let sde2 = sde_side(
                sme,
                &pb,
                &lay,
                small,
                drift_small,
                case.m_max,
                2.0 * FD_STEP,
                &all,
            );
            let maxdiff = |a: &[f64], b: &[f64]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max)
            };
            Measured {
                residual: maxdiff(&disc, &sde),
                quad_err: maxdiff(&disc, &disc2),
                fd_err: maxdiff(&sde, &sde2),
            }
        })
        .collect()
}

/// A list of numbers in scientific notation.
fn fmt(xs: &[f64]) -> String {
    let parts: Vec<String> = xs.iter().map(|x| format!("{x:.2e}")).collect();
    format!("[{}]", parts.join(", "))
}

/// The fitted slope of the worst residual over [`PROBLEMS`] random problems in
/// dimension `d`, after checking that quadrature and finite-difference errors are far
/// below the residuals.
fn slope_of(case: &Case, sme: &Sme, d: usize, seed: u64) -> f64 {
    let per_problem: Vec<Vec<Measured>> = (0..PROBLEMS)
        .map(|k| measure(case, sme, d, seed.wrapping_mul(31).wrapping_add(k)))
        .collect();
    let k = case.smalls.len();
    let worst = |f: &dyn Fn(&Measured) -> f64| -> Vec<f64> {
        (0..k)
            .map(|e| per_problem.iter().map(|r| f(&r[e])).fold(0.0, f64::max))
            .collect()
    };
    let res = worst(&|m| m.residual);
    let quad = worst(&|m| m.quad_err);
    let fd = worst(&|m| m.fd_err);
    let (slope, local) = slopes(&case.smalls, &res);
    let each: Vec<f64> = per_problem
        .iter()
        .map(|r| {
            slopes(
                &case.smalls,
                &r.iter().map(|m| m.residual).collect::<Vec<_>>(),
            )
            .0
        })
        .collect();
    let mut label = format!("{} order {} d={d}", case.file, case.order);
    if case.drop_drift_correction {
        label += " (drift correction dropped)";
    }
    if sme.order != case.order {
        label += &format!(" (with the SME of order {})", sme.order);
    }
    let round =
        |xs: &[f64]| -> Vec<f64> { xs.iter().map(|s| (s * 100.0).round() / 100.0).collect() };
    println!(
        "{label}: slope {slope:.3} (expected {}; local {:?}; per problem {:?})",
        case.expected,
        round(&local),
        round(&each)
    );
    println!("  steps {:?}", case.smalls);
    println!("  residuals               {}", fmt(&res));
    println!("  quadrature error        {}", fmt(&quad));
    println!("  finite-difference error {}", fmt(&fd));
    for (pr, r) in per_problem.iter().enumerate() {
        for (e, m) in r.iter().enumerate() {
            assert!(
                m.residual.is_finite() && m.residual > 0.0,
                "residual {}",
                m.residual
            );
            assert!(
                m.quad_err < 0.02 * m.residual && m.fd_err < 0.02 * m.residual,
                "{} d={d} problem {pr} step {}: quadrature error {:.2e} or finite-difference error {:.2e} not far below the residual {:.2e}",
                case.file,
                case.smalls[e],
                m.quad_err,
                m.fd_err,
                m.residual
            );
        }
    }
    slope
}

fn check(case: &Case, dims: &[usize]) {
    let sme = derive(case.file, case.order);
    let want = case.expected - 0.25;
    for &d in dims {
        let seed = 1000 * case.order as u64 + 17 * d as u64 + case.file.len() as u64;
        let slope = slope_of(case, &sme, d, seed);
        assert!(
            slope >= want,
            "{} order {}, d = {d}: one-step moment residual slope {slope:.3} < {want}",
            case.file,
            case.order
        );
    }
}

const TAUS: [f64; 4] = [0.04, 0.02, 0.01, 0.005];
const ETAS: [f64; 4] = [0.16, 0.08, 0.04, 0.02];

fn ballistic(file: &'static str, rule: Rule, order: u32) -> Case {
    Case {
        file,
        rule,
        order,
        s_max: order as usize,
        m_max: order + 1,
        smalls: TAUS,
        expected: order as f64 + 1.0,
        drop_drift_correction: false,
    }
}

fn malladi(file: &'static str, rule: Rule) -> Case {
    Case {
        file,
        rule,
        order: 1,
        s_max: 3,
        m_max: 2,
        smalls: ETAS,
        expected: 4.0,
        drop_drift_correction: false,
    }
}

#[test]
fn rmsprop_ballistic_orders_1_and_2_match_the_step() {
    check(
        &ballistic("rmsprop_ballistic.opt", Rule::RmsPropBallistic, 1),
        &[1, 2],
    );
    check(
        &ballistic("rmsprop_ballistic.opt", Rule::RmsPropBallistic, 2),
        &[1, 2],
    );
}

#[test]
fn adam_ballistic_orders_1_and_2_match_the_step() {
    check(
        &ballistic("adam_ballistic.opt", Rule::AdamBallistic, 1),
        &[1, 2],
    );
    check(
        &ballistic("adam_ballistic.opt", Rule::AdamBallistic, 2),
        &[1, 2],
    );
}

#[test]
fn rmsprop_malladi_order_1_matches_the_step() {
    check(&malladi("rmsprop.opt", Rule::RmsPropMalladi), &[1, 2]);
}

#[test]
fn adam_malladi_order_1_matches_the_step() {
    check(&malladi("adam.opt", Rule::AdamMalladi), &[1, 2]);
}

/// The test can fail: RMSProp-ballistic's order-2 SME without the τ-terms of its drift
/// is only order 1, and the residual slope drops to about 2.
#[test]
fn negative_control_rmsprop_ballistic_without_drift_correction() {
    let case = Case {
        drop_drift_correction: true,
        ..ballistic("rmsprop_ballistic.opt", Rule::RmsPropBallistic, 2)
    };
    let sme = derive(case.file, case.order);
    for d in [1, 2] {
        let slope = slope_of(&case, &sme, d, 4242 + d as u64);
        assert!(
            slope < case.expected - 0.25,
            "negative control, d = {d}: slope {slope:.3} should fail the order-2 check"
        );
        assert!(
            (1.5..2.5).contains(&slope),
            "negative control, d = {d}: slope {slope:.3} should be about 2"
        );
    }
}

/// The test can fail: Adam-ballistic's order-1 SME checked as order 2 (the τ-terms of the
/// drift, with their clock-dependent bias-correction terms, missing) gives slope about 2.
#[test]
fn negative_control_adam_ballistic_order_1_sme_as_order_2() {
    let case = ballistic("adam_ballistic.opt", Rule::AdamBallistic, 2);
    let sme = derive(case.file, 1);
    for d in [1, 2] {
        let slope = slope_of(&case, &sme, d, 4343 + d as u64);
        assert!(
            slope < case.expected - 0.25,
            "negative control, d = {d}: slope {slope:.3} should fail the order-2 check"
        );
        assert!(
            (1.5..2.5).contains(&slope),
            "negative control, d = {d}: slope {slope:.3} should be about 2"
        );
    }
}
