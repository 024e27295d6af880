//! Exact weak errors on linear-Gaussian problems: no sampling at all.
//!
//! On a quadratic objective `f(x) = ½ (x − x*)ᵀ H (x − x*)` with Gaussian gradient noise
//! of constant covariance Σ, a linear update rule (SGD, heavy ball, Nesterov, …) is an
//! affine map of the state and the step's noise draw, `z' = A z + B w + c` with `w`
//! standard normal, and a derived SME whose drift is affine and diffusion constant is a
//! linear SDE. Both then stay Gaussian, and their means and covariances follow exactly:
//!
//! - the optimizer: `μ' = A μ + c`, `C' = A C Aᵀ + B Bᵀ`, step after step;
//! - the SDE `dZ = (F Z + g) dt + σ dW`, `σσᵀ = D`, over the time τ of one step:
//!   `μ(τ) = e^{Fτ} μ + ∫₀^τ e^{Fs} ds g` and `C(τ) = e^{Fτ} C e^{Fᵀτ} + ∫₀^τ e^{Fs} D e^{Fᵀs} ds`,
//!   both read off matrix exponentials of block matrices (Van Loan's method).
//!
//! Nothing here knows which optimizer it is: A, B and c are read from the reference
//! interpreter ([`super::step()`]) by probing it with unit states and unit draws, F and g
//! from the reference evaluator of the derived drift, D from its diffusion; then both are
//! checked to be affine (respectively constant) at random points, and a rule or an SME
//! that is not (Adam's division by a root, a state-dependent Σ) is an error that says so.

#![allow(
    clippy::needless_range_loop,
    reason = "block matrices are assembled by index arithmetic, as the formulas write them"
)]

use std::collections::BTreeMap;

use super::eval::{diffusion, drift, time_per_step, Env, Tensor, Value};
use super::exact::{expm, mv, norm1, to_na, zeros, M, V};
use super::step::{step, Oracle, Values};
use crate::ir::Optimizer;
use crate::sme::Sme;

/// `f(x) = ½ (x − x*)ᵀ H (x − x*)` with Gaussian noise `Σ^{1/2} w` of constant covariance Σ.
#[derive(Debug, Clone)]
pub struct Quadratic {
    pub h: M,
    pub x_star: V,
    pub sigma: M,
    /// The lower Cholesky factor of Σ.
    chol: M,
}

impl Quadratic {
    /// Errors when H or Σ is not symmetric, or Σ not positive definite (nalgebra's
    /// Cholesky factorization fails).
    pub fn new(h: M, x_star: V, sigma: M) -> Result<Quadratic, crate::Error> {
        Self::new_words(h, x_star, sigma).map_err(crate::Error::Other)
    }

    /// [`new`]'s failures in words.
    fn new_words(h: M, x_star: V, sigma: M) -> Result<Quadratic, String> {
        let d = h.nrows();
        if h.dim() != (d, d) || sigma.dim() != (d, d) || x_star.len() != d {
            return Err("H, Σ and x* must have one dimension".to_string());
        }
        for (name, m) in [("H", &h), ("Σ", &sigma)] {
            if norm1(&(m - &m.t())) > 1e-12 * (1.0 + norm1(m)) {
                return Err(format!("{name} must be symmetric"));
            }
        }
        if !sigma.iter().all(|x| x.is_finite()) {
            return Err("Σ must be positive definite".to_string());
        }
        let chol =
            nalgebra::Cholesky::new(to_na(sigma.view())).ok_or("Σ must be positive definite")?;
        let chol = super::exact::from_na(&chol.l());
        Ok(Quadratic {
            h,
            x_star,
            sigma,
            chol,
        })
    }

    fn shifted(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(self.x_star.iter())
            .map(|(a, b)| a - b)
            .collect()
    }

    /// The point of the derived SME's terms: ∇^k f for k ≤ `max_df` (at least 4; zero
    /// beyond the Hessian) and Gaussian noise moments (Σ, a zero third moment, Isserlis'
    /// fourth) with zero derivatives.
    fn env(&self, state: Vec<Value>, symbols: &BTreeMap<String, f64>, max_df: usize) -> Env {
        let d = self.dim();
        let x = match &state[0] {
            Value::Vector(x) => x.clone(),
            Value::Scalar(_) => vec![0.0; d],
        };
        let sigma = |i: usize, j: usize| self.sigma[[i, j]];
        let grad_f = vec![
            Tensor::scalar(Oracle::value(self, &x)),
            Tensor::vector(Oracle::grad(self, &x)),
            Tensor::from_fn(d, 2, |i| self.h[[i[0], i[1]]]),
        ]
        .into_iter()
        .chain((3..=max_df.max(4)).map(|k| Tensor::zeros(vec![d; k])))
        .collect();
        let m4 = Tensor::from_fn(d, 4, |i| {
            sigma(i[0], i[1]) * sigma(i[2], i[3])
                + sigma(i[0], i[2]) * sigma(i[1], i[3])
                + sigma(i[0], i[3]) * sigma(i[1], i[2])
        });
        let derivs = |r: usize, t: Tensor| -> Vec<Tensor> {
            std::iter::once(t)
                .chain((1..=2).map(|j| Tensor::zeros(vec![d; r + j])))
                .collect()
        };
        let moments = vec![
            Vec::new(),
            Vec::new(),
            derivs(2, Tensor::from_fn(d, 2, |i| sigma(i[0], i[1]))),
            derivs(3, Tensor::zeros(vec![d; 3])),
            derivs(4, m4),
        ];
        Env {
            dim: d,
            state,
            symbols: symbols.clone(),
            grad_f,
            moments,
        }
    }
}

impl Oracle for Quadratic {
    fn dim(&self) -> usize {
        self.h.nrows()
    }
    fn value(&self, x: &[f64]) -> f64 {
        let y = self.shifted(x);
        y.iter()
            .zip(mv(&self.h, &y))
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / 2.0
    }
    fn grad(&self, x: &[f64]) -> Vec<f64> {
        mv(&self.h, &self.shifted(x)).to_vec()
    }
    fn hess(&self, _x: &[f64]) -> Vec<f64> {
        self.h.iter().copied().collect()
    }
    fn noise(&self, _index: usize, _x: &[f64], draw: &[f64]) -> Vec<f64> {
        mv(&self.chol, draw).to_vec()
    }
}

/// A Gaussian law of the stacked state (the parameter, then each state; a vector state
/// takes d entries, a scalar one 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    pub mean: V,
    pub cov: M,
}

impl Gaussian {
    /// `E|x|²` of the parameter block (the first d entries).
    pub fn second_moment(&self, d: usize) -> f64 {
        (0..d)
            .map(|i| self.cov[[i, i]] + self.mean[i] * self.mean[i])
            .sum()
    }
}

/// Sizes of the state variables, in the interpreter's order.
fn sizes(state: &[Value]) -> Vec<usize> {
    state
        .iter()
        .map(|v| match v {
            Value::Vector(x) => x.len(),
            Value::Scalar(_) => 1,
        })
        .collect()
}

fn unstack(flat: &[f64], like: &[Value]) -> Vec<Value> {
    let mut at = 0;
    like.iter()
        .map(|v| match v {
            Value::Vector(x) => {
                at += x.len();
                Value::Vector(flat[at - x.len()..at].to_vec())
            }
            Value::Scalar(_) => {
                at += 1;
                Value::Scalar(flat[at - 1])
            }
        })
        .collect()
}

fn stack(state: &[Value]) -> Vec<f64> {
    state
        .iter()
        .flat_map(|v| match v {
            Value::Vector(x) => x.clone(),
            Value::Scalar(s) => vec![*s],
        })
        .collect()
}

/// A deterministic pseudo-random probe point in [-1, 1).
fn probe(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    let scale = a.iter().chain(b).fold(1.0f64, |m, x| m.max(x.abs()));
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-9 * scale)
}

/// The optimizer's step as an affine map: `z' = A z + B w + c` (B is `n × m`, stored as
/// the `n × n` product `B Bᵀ`, all the covariance needs).
pub struct AffineStep {
    pub a: M,
    pub bbt: M,
    pub c: V,
}

/// Reads the rule's step on the problem as an affine map, by probing the interpreter.
pub fn affine_step(
    rule: &Optimizer,
    q: &Quadratic,
    values: &Values,
    like: &[Value],
) -> Result<AffineStep, crate::Error> {
    affine_step_inner(rule, q, values, like).map_err(crate::Error::Other)
}

fn affine_step_inner(
    rule: &Optimizer,
    q: &Quadratic,
    values: &Values,
    like: &[Value],
) -> Result<AffineStep, String> {
    if rule.counter.is_some() {
        return Err("exact mode needs a rule that does not read the step counter".to_string());
    }
    let d = q.dim();
    let n: usize = sizes(like).iter().sum();
    let m = rule.noises.len() * d;
    let run = |z: &[f64], w: &[f64]| -> Result<Vec<f64>, String> {
        let mut state = unstack(z, like);
        let draws: Vec<Vec<f64>> = w.chunks(d.max(1)).map(<[f64]>::to_vec).collect();
        let draws = if draws.is_empty() {
            vec![Vec::new(); rule.noises.len()]
        } else {
            draws
        };
        step(rule, &mut state, q, values, &draws).map_err(|e| e.to_string())?;
        Ok(stack(&state))
    };
    let c = run(&vec![0.0; n], &vec![0.0; m])?;
    let column = |z: Vec<f64>, w: Vec<f64>| -> Result<Vec<f64>, String> {
        Ok(run(&z, &w)?.iter().zip(&c).map(|(a, b)| a - b).collect())
    };
    let mut a = zeros(n);
    for j in 0..n {
        let mut e = vec![0.0; n];
        e[j] = 1.0;
        let col = column(e, vec![0.0; m])?;
        for (i, v) in col.into_iter().enumerate() {
            a[[i, j]] = v;
        }
    }
    let mut b = ndarray::Array2::zeros((n, m));
    for j in 0..m {
        let mut e = vec![0.0; m];
        e[j] = 1.0;
        for (i, v) in column(vec![0.0; n], e)?.into_iter().enumerate() {
            b[[i, j]] = v;
        }
    }
    // Affine, not merely probed: check at random states and draws.
    for seed in 1..=3 {
        let (z, w) = (probe(n, seed), probe(m, seed + 100));
        let got = run(&z, &w);
        let want: Vec<f64> = (0..n)
            .map(|i| mv(&a, &z)[i] + (0..m).map(|j| b[[i, j]] * w[j]).sum::<f64>() + c[i])
            .collect();
        if !got.is_ok_and(|got| close(&got, &want)) {
            return Err(format!(
                "`{}` is not affine in its state and noise on a quadratic: exact mode needs a linear update rule",
                rule.name
            ));
        }
    }
    let bbt = b.dot(&b.t());
    Ok(AffineStep {
        a,
        bbt,
        c: V::from(c),
    })
}

/// A linear SDE `dZ = (F Z + g) dt + σ dW` with `σσᵀ = D`, and the time τ of one step.
pub struct LinearSde {
    pub f: M,
    pub g: V,
    pub d: M,
    pub tau: f64,
}

/// The highest k of a ∇^k f in the SME's drift and diffusion (higher-order SMEs of
/// rules with shifted points read ∇⁵f, ∇⁶f, …, all zero on a quadratic).
fn max_df(sme: &Sme) -> usize {
    let exprs = sme
        .drift
        .iter()
        .chain(sme.diffusion.iter().map(|b| &b.expr));
    exprs
        .flat_map(|e| e.terms.keys())
        .flat_map(|t| t.atoms.iter())
        .filter_map(|a| match a.kind {
            crate::algebra::tensor::Kind::DF(k) => Some(usize::from(k)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Reads a derived SME on the problem as a linear SDE, by probing its drift and diffusion.
pub fn linear_sde(
    sme: &Sme,
    q: &Quadratic,
    symbols: &BTreeMap<String, f64>,
    like: &[Value],
) -> Result<LinearSde, crate::Error> {
    linear_sde_inner(sme, q, symbols, like).map_err(crate::Error::Other)
}

fn linear_sde_inner(
    sme: &Sme,
    q: &Quadratic,
    symbols: &BTreeMap<String, f64>,
    like: &[Value],
) -> Result<LinearSde, String> {
    if sme.clock.is_some() {
        return Err("exact mode needs an SME without a clock".to_string());
    }
    let n: usize = sizes(like).iter().sum();
    // The constant parts of the point (∇²f, the noise moments) are built once; a probe
    // only moves the state and with it f and ∇f.
    let env = std::cell::RefCell::new(q.env(unstack(&vec![0.0; n], like), symbols, max_df(sme)));
    let at = |z: &[f64]| {
        let mut e = env.borrow_mut();
        e.state = unstack(z, like);
        if let Value::Vector(x) = &e.state[0] {
            let (f, g) = (Oracle::value(q, x), Oracle::grad(q, x));
            e.grad_f[0] = Tensor::scalar(f);
            e.grad_f[1] = Tensor::vector(g);
        }
        drop(e);
        env.borrow()
    };
    let b = |z: &[f64]| -> Result<Vec<f64>, String> {
        Ok(drift(sme, &at(z))
            .map_err(|e| e.to_string())?
            .into_iter()
            .flat_map(|t| t.data)
            .collect())
    };
    let big_d = |z: &[f64]| -> Result<M, String> {
        let mut out = zeros(n);
        let sizes = sizes(like);
        let offset = |v: usize| sizes[..v].iter().sum::<usize>();
        for ((r, c), t) in diffusion(sme, &at(z)).map_err(|e| e.to_string())? {
            let (or, oc) = (offset(r), offset(c));
            for i in 0..sizes[r] {
                for j in 0..sizes[c] {
                    let v = t.data[i * sizes[c] + j];
                    out[[or + i, oc + j]] = v;
                    out[[oc + j, or + i]] = v;
                }
            }
        }
        Ok(out)
    };
    let g = b(&vec![0.0; n])?;
    let mut f = zeros(n);
    for j in 0..n {
        let mut e = vec![0.0; n];
        e[j] = 1.0;
        for (i, v) in b(&e)?.into_iter().enumerate() {
            f[[i, j]] = v - g[i];
        }
    }
    let d0 = big_d(&vec![0.0; n])?;
    for seed in 1..=3 {
        let z = probe(n, seed);
        let want: Vec<f64> = mv(&f, &z).iter().zip(&g).map(|(a, b)| a + b).collect();
        if !close(&b(&z)?, &want) {
            return Err(
                "the SME's drift is not affine on this problem: exact mode needs a linear SDE"
                    .to_string(),
            );
        }
        if !close(&flat(&big_d(&z)?), &flat(&d0)) {
            return Err("the SME's diffusion is not constant on this problem: exact mode needs a linear SDE".to_string());
        }
    }
    let tau = time_per_step(sme, &at(&vec![0.0; n])).map_err(|e| e.to_string())?;
    Ok(LinearSde {
        f,
        g: V::from(g),
        d: d0,
        tau,
    })
}

impl LinearSde {
    /// The SDE in a larger state whose slots `at` (offset, length per variable of this
    /// SDE, in order) hold its variables; the other slots (a rule's eliminated fast
    /// states) neither drift nor diffuse.
    pub fn embed(&self, at: &[(usize, usize)], n: usize) -> LinearSde {
        let index: Vec<usize> = at.iter().flat_map(|&(o, l)| o..o + l).collect();
        let mut f = zeros(n);
        let mut d = zeros(n);
        let mut g = V::zeros(n);
        for (i, &a) in index.iter().enumerate() {
            g[a] = self.g[i];
            for (j, &b) in index.iter().enumerate() {
                f[[a, b]] = self.f[[i, j]];
                d[[a, b]] = self.d[[i, j]];
            }
        }
        LinearSde {
            f,
            g,
            d,
            tau: self.tau,
        }
    }
}

/// The law after one optimizer step.
pub fn step_law(s: &AffineStep, p: &Gaussian) -> Gaussian {
    let mean = s.a.dot(&p.mean) + &s.c;
    let cov = s.a.dot(&p.cov).dot(&s.a.t()) + &s.bbt;
    Gaussian { mean, cov }
}

/// The exact transition of a linear SDE over its step time: `(Φ, φ, Q)` with
/// `μ ↦ Φ μ + φ` and `C ↦ Φ C Φᵀ + Q`.
pub struct Transition {
    pub phi: M,
    pub shift: V,
    pub q: M,
}

pub fn transition(sde: &LinearSde) -> Transition {
    use ndarray::s;
    let n = sde.f.nrows();
    let tau = sde.tau;
    // Mean: e^{[[F, g], [0, 0]] τ} = [[Φ, ∫₀^τ e^{Fs} ds g], [0, 1]].
    let mut aug = zeros(n + 1);
    aug.slice_mut(s![..n, ..n]).assign(&(&sde.f * tau));
    aug.slice_mut(s![..n, n]).assign(&(&sde.g * tau));
    let e = expm(&aug);
    let shift = e.slice(s![..n, n]).to_owned();
    // Covariance (Van Loan): e^{[[−F, D], [0, Fᵀ]] τ} = [[·, G₁₂], [0, G₂₂]], Φ = G₂₂ᵀ, Q = Φ G₁₂.
    let mut vl = zeros(2 * n);
    vl.slice_mut(s![..n, ..n]).assign(&(&sde.f * -tau));
    vl.slice_mut(s![..n, n..]).assign(&(&sde.d * tau));
    vl.slice_mut(s![n.., n..]).assign(&(&sde.f.t() * tau));
    let g = expm(&vl);
    let g12 = g.slice(s![..n, n..]);
    let phi = g.slice(s![n.., n..]).t().to_owned();
    // Φ G₁₂ is symmetric up to rounding; keep it exactly so.
    let q = phi.dot(&g12);
    let q = (&q + &q.t()) / 2.0;
    Transition { phi, shift, q }
}

/// The law after one SDE step of time τ.
pub fn transition_law(t: &Transition, p: &Gaussian) -> Gaussian {
    let mean = t.phi.dot(&p.mean) + &t.shift;
    let cov = t.phi.dot(&p.cov).dot(&t.phi.t()) + &t.q;
    Gaussian { mean, cov }
}

/// The laws of the optimizer and of the SME after `steps` steps from a deterministic
/// start `z0` (stacked).
pub fn laws(s: &AffineStep, sde: &LinearSde, z0: &[f64], steps: usize) -> (Gaussian, Gaussian) {
    let n = z0.len();
    let start = Gaussian {
        mean: V::from(z0.to_vec()),
        cov: zeros(n),
    };
    let t = transition(sde);
    let (mut a, mut b) = (start.clone(), start);
    for _ in 0..steps {
        a = step_law(s, &a);
        b = transition_law(&t, &b);
    }
    (a, b)
}

/// A matrix's entries, row by row.
fn flat(m: &M) -> Vec<f64> {
    m.iter().copied().collect()
}
