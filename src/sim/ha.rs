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
//!
//! Two implementations: [`HaProgram::coefficients`], per state (a cyclic Jacobi
//! eigendecomposition, libm's `ln`), for any d; and for d = 1 and 2
//! [`HaProgram::substep_lanes`], one Euler–Maruyama substep over a block's lanes as plain
//! loops that vectorize: in d = 2 the eigendecomposition in closed form (the one Jacobi
//! rotation that diagonalises a symmetric 2 × 2 matrix, `t = sgn θ/(|θ| + √(θ² + 1))`,
//! `θ = (c − a)/2b`, eigenvalues `a − tb`, `c + tb`: no cancellation, `|t| ≤ 1`), the
//! 2 × 2 Cholesky factor written out, `h(p²) = 2h(p)/(1 + p)` (exact, no cancellation, one
//! logarithm fewer; the cross term `h(p₁p₂)` keeps its own, of the rounded product, so that
//! numerator and denominator match), and [`vmath::log`] (about 1 ulp) for `ln`. The
//! per-state code stays as the lanes' test oracle (`tests` below: with libm's `ln` the
//! d = 1 drift is its bit for bit; the rest, and everything with [`vmath::log`], agrees to
//! rounding times h's conditioning, at random symmetric matrices with repeated, zero,
//! negative and boundary eigenvalues, and the domain `1 − ηλ > 0` exactly).

#![allow(
    clippy::needless_range_loop,
    reason = "index loops over matrix rows and columns read as the formulas do"
)]

use crate::numeric::graph::Id;
use crate::numeric::tape::{Tape, LANES};
use crate::numeric::vmath;
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

/// [`h`] at `s` from `ln s`, both sides of its branch computed and one selected (so that
/// the loops over lanes vectorize). With libm's `ln s`, [`h`]'s value but for the
/// series' `u²/3`, here `u²·(1/3)` (a relative change below 10⁻²⁶ of the result).
#[inline(always)]
fn h_log(s: f64, ln_s: f64) -> f64 {
    const THIRD: f64 = 1.0 / 3.0;
    let u = 1.0 - s;
    let series = 1.0 + u / 2.0 + u * u * THIRD;
    let full = -ln_s / u;
    if u.abs() < 1e-5 {
        series
    } else {
        full
    }
}

/// `h(p²) = −log(p²)/(1 − p²) = 2 h(p)/(1 + p)` from `h(p)`: exact in real arithmetic,
/// with no cancellation (`1 + p > 1`), and no second logarithm.
#[inline(always)]
fn h_square(p: f64, hp: f64) -> f64 {
    2.0 * hp / (1.0 + p)
}

/// The HA-SME's coefficients at one state in d = 1, from `p = 1 − η∇²f` and `ln p`:
/// `(defined, b, l)` with drift `b` and `l² = Q` (`l = 0` where [`cholesky_psd`] leaves
/// the pivot out).
#[inline(always)]
fn coefficients_1(g: f64, hess: f64, sigma: f64, eta: f64, p: f64, ln_p: f64) -> (bool, f64, f64) {
    let ok = g.is_finite() & hess.is_finite() & sigma.is_finite() & (p > 0.0);
    let hp = h_log(p, ln_p);
    let b = -(g * hp);
    let q = eta * h_square(p, hp) * sigma;
    let l = if q <= 1e-13 * q.abs() { 0.0 } else { q.sqrt() };
    (ok, b, l)
}

/// The eigendecomposition of the symmetric `[[a, b], [b, c]]` in closed form: the
/// Jacobi rotation that zeroes `b` (as [`jacobi`] computes it), `V = [[cs, sn], [−sn,
/// cs]]`, and the eigenvalues `(a − tb, c + tb)` on V's columns. `|θ| = ∞` (`b`
/// negligible against `c − a`, or `θ²` overflowing) gives `t = 0`, no rotation; `b = 0`
/// too.
#[inline(always)]
fn eigen_2(a: f64, b: f64, c: f64) -> (f64, f64, f64, f64) {
    let theta = (c - a) / (2.0 * b);
    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
    let t = if b == 0.0 {
        0.0
    } else if theta == 0.0 {
        1.0
    } else {
        t
    };
    let cs = 1.0 / (t * t + 1.0).sqrt();
    (cs, t * cs, a - t * b, c + t * b)
}

/// What [`coefficients_2`] needs from a lane's `∇²f`: the rotation `(cs, sn)`, the
/// `p_k = 1 − ηλ_k` and `p₁p₂`.
#[derive(Clone, Copy)]
struct Rot2 {
    cs: f64,
    sn: f64,
    p1: f64,
    p2: f64,
    p12: f64,
}

#[inline(always)]
fn rot_2(h: [f64; 4], eta: f64) -> Rot2 {
    let (cs, sn, l1, l2) = eigen_2(h[0], h[1], h[3]);
    let (p1, p2) = (1.0 - eta * l1, 1.0 - eta * l2);
    Rot2 {
        cs,
        sn,
        p1,
        p2,
        p12: p1 * p2,
    }
}

/// The HA-SME's coefficients at one state in d = 2 (`h` and `s` row-major `∇²f` and
/// `Σ`), from [`rot_2`] and the logarithms of `p₁`, `p₂`, `p₁p₂`: `(defined, [b₀, b₁],
/// [l₀₀, l₁₀, l₁₁])`, the lower factor `L` of `Q`.
#[inline(always)]
fn coefficients_2(
    g: [f64; 2],
    h: [f64; 4],
    s: [f64; 4],
    eta: f64,
    r: Rot2,
    ln: [f64; 3],
) -> (bool, [f64; 2], [f64; 3]) {
    let finite = g
        .iter()
        .chain(&h)
        .chain(&s)
        .fold(true, |acc, x| acc & x.is_finite());
    let Rot2 {
        cs,
        sn,
        p1,
        p2,
        p12,
    } = r;
    let ok = finite & (p1 > 0.0) & (p2 > 0.0);
    let (h1, h2) = (h_log(p1, ln[0]), h_log(p2, ln[1]));
    // Drift −V diag(h(p_k)) Vᵀ ∇f.
    let t1 = (cs * g[0] - sn * g[1]) * h1;
    let t2 = (sn * g[0] + cs * g[1]) * h2;
    let drift = [-(cs * t1 + sn * t2), -(cs * t2 - sn * t1)];
    // Σ̃ = Vᵀ Σ V through W = Σ V.
    let w00 = s[0] * cs - s[1] * sn;
    let w01 = s[0] * sn + s[1] * cs;
    let w10 = s[2] * cs - s[3] * sn;
    let w11 = s[2] * sn + s[3] * cs;
    let e00 = cs * w00 - sn * w10;
    let e01 = cs * w01 - sn * w11;
    let e11 = sn * w01 + cs * w11;
    // Q̃_ij = η h(p_i p_j) Σ̃_ij, then Q = V Q̃ Vᵀ through M = V Q̃.
    let q00 = eta * h_square(p1, h1) * e00;
    let q01 = eta * h_log(p12, ln[2]) * e01;
    let q11 = eta * h_square(p2, h2) * e11;
    let m00 = cs * q00 + sn * q01;
    let m01 = cs * q01 + sn * q11;
    let m10 = cs * q01 - sn * q00;
    let m11 = cs * q11 - sn * q01;
    let big00 = m00 * cs + m01 * sn;
    let big10 = m10 * cs + m11 * sn;
    let big11 = m11 * cs - m10 * sn;
    // `cholesky_psd` in 2 × 2.
    let top = big00.abs().max(big11.abs());
    let first = big00 > 1e-13 * top;
    let l00 = if first { big00.sqrt() } else { 0.0 };
    let l10 = if first { big10 / l00 } else { 0.0 };
    let rest = big11 - l10 * l10;
    let l11 = if rest > 1e-13 * top { rest.sqrt() } else { 0.0 };
    (ok, drift, [l00, l10, l11])
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

    /// One Euler–Maruyama substep over a block's lanes, for d = 1 and 2: `outs[i]` is
    /// the register (in `regs`, `LANES` values each) of the tape's output `i` (`∇f`,
    /// `∇²f`, `Σ`); `z` holds d rows of standard normals; each lane's state (component
    /// `i` at `state[i·LANES + lane]`) takes `b δ + L z √δ`. Lanes marked in `skip` are
    /// left alone; a lane where the coefficients are not defined is left alone and
    /// marked in `bad`. Returns whether any lane was newly marked.
    #[allow(
        clippy::too_many_arguments,
        reason = "one substep's inputs and outputs"
    )]
    #[inline(always)]
    pub fn substep_lanes(
        &self,
        regs: &[f64],
        outs: &[usize],
        z: &[f64],
        delta: f64,
        sd: f64,
        state: &mut [f64],
        skip: &[bool; LANES],
        bad: &mut [bool; LANES],
    ) -> bool {
        self.substep_lanes_with(regs, outs, z, delta, sd, state, skip, bad, vmath::log)
    }

    /// [`Self::substep_lanes`] with `ln` given (libm's for the test oracle).
    #[allow(
        clippy::too_many_arguments,
        reason = "one substep's inputs and outputs"
    )]
    #[inline(always)]
    pub fn substep_lanes_with(
        &self,
        regs: &[f64],
        outs: &[usize],
        z: &[f64],
        delta: f64,
        sd: f64,
        state: &mut [f64],
        skip: &[bool; LANES],
        bad: &mut [bool; LANES],
        ln: impl Fn(f64) -> f64 + Copy,
    ) -> bool {
        let eta = self.eta;
        let col = |k: usize| -> &[f64; LANES] {
            regs[outs[k] * LANES..(outs[k] + 1) * LANES]
                .try_into()
                .expect("a register")
        };
        let mut newly = false;
        match self.d {
            1 => {
                let (g, hh, ss) = (col(0), col(1), col(2));
                let x: &mut [f64; LANES] = (&mut state[..LANES]).try_into().expect("lanes");
                let z: &[f64; LANES] = z[..LANES].try_into().expect("lanes");
                // In passes, so that each loop is small enough to vectorize and interleave.
                let mut p = [0.0; LANES];
                for i in 0..LANES {
                    p[i] = 1.0 - eta * hh[i];
                }
                let mut lp = [0.0; LANES];
                vmath::lanes(&mut lp, &p, ln);
                for i in 0..LANES {
                    let (ok, b, l) = coefficients_1(g[i], hh[i], ss[i], eta, p[i], lp[i]);
                    let live = !skip[i] & !bad[i];
                    let new = x[i] + (b * delta + l * z[i] * sd);
                    x[i] = if ok & live { new } else { x[i] };
                    let fail = !ok & live;
                    bad[i] |= fail;
                    newly |= fail;
                }
            }
            2 => {
                let g = [col(0), col(1)];
                let h = [col(2), col(3), col(4), col(5)];
                let s = [col(6), col(7), col(8), col(9)];
                let (x0, x1) = state[..2 * LANES].split_at_mut(LANES);
                let x0: &mut [f64; LANES] = x0.try_into().expect("lanes");
                let x1: &mut [f64; LANES] = x1.try_into().expect("lanes");
                let z0: &[f64; LANES] = z[..LANES].try_into().expect("lanes");
                let z1: &[f64; LANES] = z[LANES..2 * LANES].try_into().expect("lanes");
                let hm = |i: usize| [h[0][i], h[1][i], h[2][i], h[3][i]];
                // The rotations, as a structure of arrays (plain loops over lanes).
                let (mut cs, mut sn) = ([0.0; LANES], [0.0; LANES]);
                let (mut p1, mut p2, mut p12) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
                for i in 0..LANES {
                    let r = rot_2(hm(i), eta);
                    (cs[i], sn[i], p1[i], p2[i], p12[i]) = (r.cs, r.sn, r.p1, r.p2, r.p12);
                }
                let (mut l1, mut l2, mut l12) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
                vmath::lanes(&mut l1, &p1, ln);
                vmath::lanes(&mut l2, &p2, ln);
                vmath::lanes(&mut l12, &p12, ln);
                for i in 0..LANES {
                    let r = Rot2 {
                        cs: cs[i],
                        sn: sn[i],
                        p1: p1[i],
                        p2: p2[i],
                        p12: p12[i],
                    };
                    let (ok, b, l) = coefficients_2(
                        [g[0][i], g[1][i]],
                        hm(i),
                        [s[0][i], s[1][i], s[2][i], s[3][i]],
                        eta,
                        r,
                        [l1[i], l2[i], l12[i]],
                    );
                    let live = !skip[i] & !bad[i];
                    let n0 = x0[i] + (b[0] * delta + l[0] * z0[i] * sd);
                    let n1 = x1[i] + (b[1] * delta + (l[1] * z0[i] + l[2] * z1[i]) * sd);
                    let take = ok & live;
                    x0[i] = if take { n0 } else { x0[i] };
                    x1[i] = if take { n1 } else { x1[i] };
                    let fail = !ok & live;
                    bad[i] |= fail;
                    newly |= fail;
                }
            }
            d => panic!("substep_lanes is for d = 1 and 2, not {d}"),
        }
        newly
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

    /// A small deterministic generator for the oracle tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn sym(&mut self) -> f64 {
            2.0 * self.next() - 1.0
        }
    }

    /// The per-state oracle: drift, `Q = L Lᵀ` (row-major) and whether it is defined.
    fn oracle(eta: f64, g: &[f64], h: &[f64], s: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
        let d = g.len();
        let p = HaProgram {
            tape: Tape::compile(&crate::numeric::graph::Graph::new(), &[], 0),
            d,
            eta,
        };
        let mut w = Work::new(d);
        let (mut b, mut l) = (vec![0.0; d], vec![0.0; d * d]);
        p.coefficients(g, h, s, &mut w, &mut b, &mut l)?;
        let q = (0..d * d)
            .map(|k| (0..d).map(|m| l[k / d * d + m] * l[k % d * d + m]).sum())
            .collect();
        Some((b, q))
    }

    /// Eigenvalues that exercise every branch: generic, zero, negative, tiny (the series
    /// of `h` near `p = 1`, on both sides of its switch at `|1 − p| = 10⁻⁵`), close to
    /// the boundary `ηλ = 1` from below, and beyond it.
    fn eigenvalue(r: &mut Rng, eta: f64) -> f64 {
        match (r.next() * 9.0) as u32 {
            0 => 0.0,
            1 => -5.0 * r.next(),
            2 => (r.sym() * 2e-5) / eta,
            3 => (1.0 - 1e-3 * (1.0 + r.next())) / eta,
            4 => (1.0 + r.next()) / eta,
            5 => 1e-5 * (1.0 + 0.01 * r.sym()) / eta,
            _ => 3.0 * r.sym(),
        }
    }

    /// In d = 1 the closed form against the oracle: the drift bit for bit (with libm's
    /// `ln`), `Q` within rounding (`h(p²)` as `2h(p)/(1 + p)`), the domain exactly; and
    /// with [`vmath::log`] within a few ulp.
    #[test]
    fn one_dimensional_lanes_match_the_oracle() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for k in 0..20_000 {
            let eta = [0.25, 0.1, 1.0 / 3.0][k % 3];
            let lam = if k % 50 == 0 {
                1.0 / eta
            } else {
                eigenvalue(&mut r, eta)
            };
            let g = 3.0 * r.sym();
            let sg = if k % 7 == 0 { 0.0 } else { 2.0 * r.next() };
            let p = 1.0 - eta * lam;
            let want = oracle(eta, &[g], &[lam], &[sg]);
            for (name, ln_p, tol_b) in [("ln", p.ln(), 0.0), ("vmath", vmath::log(p), 2e-15)] {
                let (ok, b, l) = coefficients_1(g, lam, sg, eta, p, ln_p);
                assert_eq!(ok, want.is_some(), "{name}: λ = {lam}, η = {eta}");
                let Some((wb, wq)) = &want else { continue };
                // The condition of h at p: |p h'(p)/h(p)| ≤ about 1 + 1/|ln p|.
                let cond = 1.0 + 1.0 / p.ln().abs().clamp(1e-300, 1.0);
                let tol_b = tol_b * cond;
                assert!(
                    (b - wb[0]).abs() <= tol_b * wb[0].abs(),
                    "{name}: b {b} vs {}",
                    wb[0]
                );
                assert!(
                    (l * l - wq[0]).abs() <= (4e-15 + tol_b) * wq[0].abs(),
                    "{name}: Q {} vs {}",
                    l * l,
                    wq[0]
                );
            }
        }
    }

    /// Random symmetric `H = R diag(λ) Rᵀ` (repeated, zero, negative and boundary
    /// eigenvalues; rotations including none and 45°) and `Σ` (full, rank one, zero):
    /// the closed-form 2 × 2 coefficients against the Jacobi oracle.
    #[test]
    fn two_dimensional_lanes_match_the_oracle() {
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        let mut undefined = 0;
        for k in 0..20_000 {
            let eta = [0.25, 0.1, 1.0 / 3.0][k % 3];
            let l1 = eigenvalue(&mut r, eta);
            let l2 = match k % 4 {
                0 => l1,
                _ => eigenvalue(&mut r, eta),
            };
            let angle = match k % 5 {
                0 => 0.0,
                1 => std::f64::consts::FRAC_PI_4,
                _ => std::f64::consts::PI * r.sym(),
            };
            let (c, s) = (angle.cos(), angle.sin());
            let h = [
                c * c * l1 + s * s * l2,
                c * s * (l1 - l2),
                c * s * (l1 - l2),
                s * s * l1 + c * c * l2,
            ];
            let (u, v) = (r.sym(), r.sym());
            let sigma = match k % 3 {
                0 => [0.0; 4],
                1 => [u * u, u * v, u * v, v * v],
                _ => {
                    let w = r.sym();
                    [u * u + w * w, u * v, u * v, v * v + 0.5]
                }
            };
            let g = [3.0 * r.sym(), 3.0 * r.sym()];
            let want = oracle(eta, &g, &h, &sigma);
            let rot = rot_2(h, eta);
            // Where an eigenvalue sits on the boundary the rounding of either method
            // decides; elsewhere both must agree on the domain.
            let margin = (rot.p1.min(rot.p2)).abs() > 1e-12;
            for name in ["ln", "vmath"] {
                let ln = |x: f64| if name == "ln" { x.ln() } else { vmath::log(x) };
                let logs = [ln(rot.p1), ln(rot.p2), ln(rot.p12)];
                let (ok, b, l) = coefficients_2(g, h, sigma, eta, rot, logs);
                if margin {
                    assert_eq!(ok, want.is_some(), "{name}: λ = {l1}, {l2}, η = {eta}");
                }
                let Some((wb, wq)) = &want else {
                    undefined += 1;
                    continue;
                };
                if !ok {
                    continue;
                }
                // Tolerance: rounding, times the conditioning of h near p = 0.
                let pmin = rot.p1.min(rot.p2).min(1.0);
                let tol = 1e-13 / pmin;
                let hs = |p: f64| super::h(p).abs();
                let bscale = (g[0].abs() + g[1].abs()) * hs(rot.p1).max(hs(rot.p2));
                for i in 0..2 {
                    assert!(
                        (b[i] - wb[i]).abs() <= tol * bscale + 1e-300,
                        "{name} k = {k}: b[{i}] {} vs {} (λ = {l1}, {l2})",
                        b[i],
                        wb[i]
                    );
                }
                let q = [
                    l[0] * l[0],
                    l[0] * l[1],
                    l[0] * l[1],
                    l[1] * l[1] + l[2] * l[2],
                ];
                let qscale = wq.iter().fold(0.0f64, |a, x| a.max(x.abs()));
                // L Lᵀ gives Q back through `Q₁₀²/Q₀₀`: a small first pivot (Σ near rank
                // one) amplifies the rounding of Q₀₀ by `|Q|/Q₀₀` (capped where the pivot
                // is dropped as rounding).
                let amp = 1.0 + (qscale / wq[0].abs().max(1e-300)).min(1e4);
                for i in 0..4 {
                    assert!(
                        (q[i] - wq[i]).abs() <= tol * qscale * amp + 1e-300,
                        "{name} k = {k}: Q[{i}] {} vs {} (λ = {l1}, {l2}; Σ = {sigma:?})",
                        q[i],
                        wq[i]
                    );
                }
            }
        }
        assert!(undefined > 1000, "the boundary cases ran: {undefined}");
    }

    /// The lane loops: each lane takes the step its scalar coefficients give, lanes to
    /// skip and lanes outside the domain are left alone, the latter marked.
    #[test]
    fn lanes_step_as_the_scalar_coefficients_say() {
        for d in [1usize, 2] {
            let mut r = Rng(0x1234_5678_9abc_def1 + d as u64);
            let eta = 0.25;
            let p = HaProgram {
                tape: Tape::compile(&crate::numeric::graph::Graph::new(), &[], 0),
                d,
                eta,
            };
            let k = d + 2 * d * d;
            let mut regs = vec![0.0; k * LANES];
            for lane in 0..LANES {
                let lams = [eigenvalue(&mut r, eta), eigenvalue(&mut r, eta)];
                let (c, s) = ((lane as f64).cos(), (lane as f64).sin());
                let h = if d == 1 {
                    vec![lams[0]]
                } else {
                    let off = c * s * (lams[0] - lams[1]);
                    vec![
                        c * c * lams[0] + s * s * lams[1],
                        off,
                        off,
                        s * s * lams[0] + c * c * lams[1],
                    ]
                };
                let u = r.sym();
                let sigma = if d == 1 {
                    vec![u * u]
                } else {
                    vec![u * u + 0.1, 0.2 * u, 0.2 * u, 1.0]
                };
                let vals: Vec<f64> = (0..d).map(|_| r.sym()).chain(h).chain(sigma).collect();
                for (i, v) in vals.iter().enumerate() {
                    regs[i * LANES + lane] = *v;
                }
            }
            regs[LANES - 1] = f64::NAN;
            let outs: Vec<usize> = (0..k).collect();
            let z: Vec<f64> = (0..d * LANES).map(|_| r.sym()).collect();
            let x0: Vec<f64> = (0..d * LANES).map(|_| r.sym()).collect();
            let skip: [bool; LANES] = std::array::from_fn(|i| i % 11 == 3);
            let mut bad = [false; LANES];
            bad[5] = true;
            let mut x = x0.clone();
            let (delta, sd) = (0.01, 0.1);
            let newly = p.substep_lanes_with(
                &regs,
                &outs,
                &z,
                delta,
                sd,
                &mut x,
                &skip,
                &mut bad,
                f64::ln,
            );
            assert!(newly);
            for lane in 0..LANES {
                let at = |i: usize| regs[i * LANES + lane];
                let g: Vec<f64> = (0..d).map(at).collect();
                let h: Vec<f64> = (d..d + d * d).map(at).collect();
                let s: Vec<f64> = (d + d * d..k).map(at).collect();
                let (ok, b, l) = if d == 1 {
                    let p1 = 1.0 - eta * h[0];
                    let (ok, b, l) = coefficients_1(g[0], h[0], s[0], eta, p1, p1.ln());
                    (ok, vec![b], vec![l])
                } else {
                    let hh = [h[0], h[1], h[2], h[3]];
                    let rot = rot_2(hh, eta);
                    let (ok, b, l) = coefficients_2(
                        [g[0], g[1]],
                        hh,
                        [s[0], s[1], s[2], s[3]],
                        eta,
                        rot,
                        [rot.p1.ln(), rot.p2.ln(), rot.p12.ln()],
                    );
                    (ok, b.to_vec(), l.to_vec())
                };
                let held = skip[lane] || lane == 5 || !ok;
                assert_eq!(bad[lane], lane == 5 || (!ok && !skip[lane]), "lane {lane}");
                for i in 0..d {
                    let want = if held {
                        x0[i * LANES + lane]
                    } else {
                        let noise = if i == 0 {
                            l[0] * z[lane]
                        } else {
                            l[1] * z[lane] + l[2] * z[LANES + lane]
                        };
                        x0[i * LANES + lane] + (b[i] * delta + noise * sd)
                    };
                    assert_eq!(
                        x[i * LANES + lane].to_bits(),
                        want.to_bits(),
                        "d = {d}, lane {lane}"
                    );
                }
            }
        }
    }
}
