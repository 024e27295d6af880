//! The Hessian-aware SME (HA-SME; Li, Shen, Zhang & He 2024) as a simulation model on
//! any problem: at each state `x`, with `H = ∇²f(x)` and `Σ = Σ(x)` diagonalised as
//! `H = V Λ Vᵀ`,
//!
//! - drift `b = (log(I − ηH)/(ηH)) ∇f = −V diag(ℓ(ηλ_k)) Vᵀ ∇f`, `ℓ(u) = −log(1 − u)/u`;
//! - diffusion `Q = V Q̃ Vᵀ` with `Q̃_ij = η h((1 − ηλ_i)(1 − ηλ_j)) (VᵀΣV)_ij`,
//!   `h(s) = −log(s)/(1 − s)`,
//!
//! the closed forms of [`crate::analysis::hasme`] (there checked term by term against the derived
//! series). They exist while `1 − ηλ > 0` for every eigenvalue (saddles, λ < 0, are
//! fine); a path that reaches a state where they do not has left the model's domain and
//! is reported as such. `ℓ(u) = h(1 − u)`, so one function serves both.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops over matrix rows and columns read as the formulas do"
)]

use crate::numeric::graph::Id;
use crate::numeric::tape::Tape;
use crate::problem::Model;

/// The per-state coefficients of the HA-SME, compiled: one tape from `x` to
/// `(∇f, ∇²f, Σ)`, and the small dense algebra done per path.
#[derive(Debug, Clone)]
pub struct HaProgram {
    /// Inputs `x` (`0..d`); outputs `∇f` (`d`), `∇²f` (`d²`), `Σ` (`d²`), row-major.
    pub tape: Tape,
    pub d: usize,
    pub eta: f64,
}

/// `h(s) = −log(s)/(1 − s)`, with `h(1) = 1` and its series near 1.
pub fn h(s: f64) -> f64 {
    let u = 1.0 - s;
    if u.abs() < 1e-5 {
        1.0 + u / 2.0 + u * u / 3.0
    } else {
        -s.ln() / u
    }
}

/// Scratch space for one evaluation (no allocation per path step).
#[derive(Debug, Clone)]
pub struct Work {
    a: Vec<f64>,
    v: Vec<f64>,
    t: Vec<f64>,
    q: Vec<f64>,
}

impl Work {
    pub fn new(d: usize) -> Work {
        Work {
            a: vec![0.0; d * d],
            v: vec![0.0; d * d],
            t: vec![0.0; d * d],
            q: vec![0.0; d * d],
        }
    }
}

impl HaProgram {
    pub fn compile(model: &mut Model, eta: f64) -> HaProgram {
        let d = model.dim;
        let mut outs: Vec<Id> = model.df(1);
        outs.extend(model.df(2));
        outs.extend(model.sigma());
        let tape = Tape::compile(&model.graph, &outs, d);
        HaProgram { tape, d, eta }
    }

    /// The drift `b` and a factor `L` (`L Lᵀ = Q`, lower triangular, row-major) from
    /// `∇f`, `H` and `Σ` at one state. `None` where `1 − ηλ ≤ 0` for some eigenvalue (or
    /// the inputs are not finite): the HA-SME is not defined there.
    pub fn coefficients(
        &self,
        grad: &[f64],
        hess: &[f64],
        sigma: &[f64],
        w: &mut Work,
        drift: &mut [f64],
        factor: &mut [f64],
    ) -> Option<()> {
        let d = self.d;
        let eta = self.eta;
        w.a.copy_from_slice(hess);
        if !w.a.iter().chain(grad).chain(sigma).all(|x| x.is_finite()) {
            return None;
        }
        jacobi(&mut w.a, &mut w.v, d);
        // p_k = 1 − ηλ_k, on the diagonal of a.
        for k in 0..d {
            let p = 1.0 - eta * w.a[k * d + k];
            if p <= 0.0 {
                return None;
            }
            w.a[k * d + k] = p;
        }
        // Drift: −V diag(h(p_k)) Vᵀ ∇f.
        for k in 0..d {
            let c: f64 = (0..d).map(|i| w.v[i * d + k] * grad[i]).sum();
            w.t[k] = c * h(w.a[k * d + k]);
        }
        for i in 0..d {
            drift[i] = -(0..d).map(|k| w.v[i * d + k] * w.t[k]).sum::<f64>();
        }
        // Σ̃ = Vᵀ Σ V, then Q̃_ij = η h(p_i p_j) Σ̃_ij, then Q = V Q̃ Vᵀ.
        for i in 0..d {
            for j in 0..d {
                w.q[i * d + j] = (0..d).map(|k| sigma[i * d + k] * w.v[k * d + j]).sum();
            }
        }
        for i in 0..d {
            for j in 0..d {
                let s: f64 = (0..d).map(|k| w.v[k * d + i] * w.q[k * d + j]).sum();
                w.t[i * d + j] = eta * h(w.a[i * d + i] * w.a[j * d + j]) * s;
            }
        }
        for i in 0..d {
            for j in 0..d {
                w.q[i * d + j] = (0..d).map(|k| w.v[i * d + k] * w.t[k * d + j]).sum();
            }
        }
        for i in 0..d {
            for j in 0..d {
                factor[i * d + j] = (0..d).map(|k| w.q[i * d + k] * w.v[j * d + k]).sum();
            }
        }
        // Q is positive semidefinite by construction; factor it in place.
        w.q.copy_from_slice(factor);
        cholesky_psd(&w.q, factor, d);
        Some(())
    }
}

/// Cyclic Jacobi on a symmetric `d × d` matrix: `a` becomes diagonal (the eigenvalues),
/// `v` the orthogonal matrix of eigenvectors (columns), with `A = V diag(a) Vᵀ`.
pub fn jacobi(a: &mut [f64], v: &mut [f64], d: usize) {
    v.fill(0.0);
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..50 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i] * a[i * d + i]).sum();
        if off <= 1e-30 * scale.max(1e-300) || off == 0.0 {
            return;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let akp = a[k * d + p];
                    let akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let apk = a[p * d + k];
                    let aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let vkp = v[k * d + p];
                    let vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
}

/// The lower Cholesky factor of a positive semidefinite matrix; a pivot at or below
/// rounding level leaves its column zero (a direction without noise).
pub fn cholesky_psd(m: &[f64], l: &mut [f64], d: usize) {
    l.fill(0.0);
    let top = (0..d).map(|i| m[i * d + i].abs()).fold(0.0, f64::max);
    for j in 0..d {
        let s = m[j * d + j] - (0..j).map(|k| l[j * d + k] * l[j * d + k]).sum::<f64>();
        if s <= 1e-13 * top {
            continue;
        }
        let ljj = s.sqrt();
        l[j * d + j] = ljj;
        for i in j + 1..d {
            let v = m[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            l[i * d + j] = v / ljj;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises() {
        let m = [4.0, 1.0, -2.0, 1.0, 3.0, 0.5, -2.0, 0.5, -1.0];
        let mut a = m;
        let mut v = [0.0; 9];
        jacobi(&mut a, &mut v, 3);
        for i in 0..3 {
            for j in 0..3 {
                let back: f64 = (0..3)
                    .map(|k| v[i * 3 + k] * a[k * 3 + k] * v[j * 3 + k])
                    .sum();
                assert!((back - m[i * 3 + j]).abs() < 1e-12, "{i}{j}: {back}");
                if i != j {
                    assert!(a[i * 3 + j].abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn h_is_smooth_through_one() {
        for s in [0.99999, 0.999999, 1.0, 1.000001, 1.00001] {
            let exact = if s == 1.0 {
                1.0
            } else {
                -f64::ln(s) / (1.0 - s)
            };
            assert!((h(s) - exact).abs() < 1e-10, "{s}");
        }
        assert!((h(0.5) - 2.0 * std::f64::consts::LN_2).abs() < 1e-15);
    }

    /// In 1-D the coefficients are the scalar closed forms.
    #[test]
    fn one_dimensional_closed_forms() {
        let p = HaProgram {
            tape: Tape::compile(&crate::numeric::graph::Graph::new(), &[], 0),
            d: 1,
            eta: 0.25,
        };
        let mut w = Work::new(1);
        let (mut b, mut l) = ([0.0], [0.0]);
        // λ = −2 (a saddle direction), ∇f = 0.3, Σ = 0.7.
        p.coefficients(&[0.3], &[-2.0], &[0.7], &mut w, &mut b, &mut l)
            .expect("defined");
        let want_b = (1.0f64 + 0.5).ln() / (0.25 * -2.0) * 0.3;
        let want_q = 0.25 * -(1.5f64 * 1.5).ln() / (1.0 - 2.25) * 0.7;
        assert!((b[0] - want_b).abs() < 1e-14, "{} {}", b[0], want_b);
        assert!((l[0] * l[0] - want_q).abs() < 1e-14);
        // ηλ ≥ 1: undefined.
        assert!(p
            .coefficients(&[0.3], &[4.0], &[0.7], &mut w, &mut b, &mut l)
            .is_none());
    }
}
