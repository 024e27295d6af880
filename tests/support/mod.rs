//! Numeric helpers shared by the tests that check derived SMEs against independent
//! numerics: a seeded generator, sparse multivariate polynomials, Gauss–Hermite
//! quadrature and the Cholesky factor.
#![allow(dead_code, reason = "each test uses the helpers it needs")]
#![allow(
    clippy::needless_range_loop,
    reason = "the generator's sums read as the formula, over i and j"
)]

pub mod latex;
pub mod python;

use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------
// Seeded generator (xorshift64*).

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }
    /// Uniform in [a, b).
    pub fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.unit()
    }
}

// ---------------------------------------------------------------------------------
// Sparse multivariate polynomials over f64 in at most 8 variables; a monomial is a
// u64 with the exponent of variable i in byte i.

pub const MAX_VARS: usize = 8;

#[derive(Clone, Debug, Default)]
pub struct MPoly {
    t: BTreeMap<u64, f64>,
}

pub fn mono_deg(k: u64) -> u32 {
    (0..MAX_VARS).map(|i| ((k >> (8 * i)) & 0xff) as u32).sum()
}

impl MPoly {
    pub fn zero() -> MPoly {
        MPoly::default()
    }
    pub fn constant(c: f64) -> MPoly {
        let mut p = MPoly::zero();
        p.add_term(0, c);
        p
    }
    /// The variable number `i`.
    pub fn var(i: usize) -> MPoly {
        assert!(i < MAX_VARS);
        let mut p = MPoly::zero();
        p.add_term(1u64 << (8 * i), 1.0);
        p
    }
    pub fn is_zero(&self) -> bool {
        self.t.is_empty()
    }
    pub fn add_term(&mut self, k: u64, c: f64) {
        if c == 0.0 {
            return;
        }
        let e = self.t.entry(k).or_insert(0.0);
        *e += c;
        if *e == 0.0 {
            self.t.remove(&k);
        }
    }
    pub fn add_scaled(&mut self, other: &MPoly, s: f64) {
        if s == 0.0 {
            return;
        }
        for (&k, &c) in &other.t {
            self.add_term(k, c * s);
        }
    }
    pub fn add(&self, other: &MPoly) -> MPoly {
        let mut p = self.clone();
        p.add_scaled(other, 1.0);
        p
    }
    /// The product, keeping only monomials of total degree `<= max_deg`.
    pub fn mul_trunc(&self, other: &MPoly, max_deg: u32) -> MPoly {
        let mut p = MPoly::zero();
        let b: Vec<(u64, u32, f64)> = other.t.iter().map(|(&k, &c)| (k, mono_deg(k), c)).collect();
        for (&k1, &c1) in &self.t {
            let d1 = mono_deg(k1);
            if d1 > max_deg {
                continue;
            }
            for &(k2, d2, c2) in &b {
                if d1 + d2 <= max_deg {
                    p.add_term(k1 + k2, c1 * c2);
                }
            }
        }
        p
    }
    pub fn mul(&self, other: &MPoly) -> MPoly {
        self.mul_trunc(other, u32::MAX)
    }
    pub fn deriv(&self, i: usize) -> MPoly {
        let mut p = MPoly::zero();
        let shift = 8 * i;
        for (&k, &c) in &self.t {
            let e = (k >> shift) & 0xff;
            if e > 0 {
                p.add_term(k - (1u64 << shift), c * e as f64);
            }
        }
        p
    }
    pub fn eval(&self, point: &[f64]) -> f64 {
        self.t
            .iter()
            .map(|(&k, &c)| {
                let mut v = c;
                for (i, &x) in point.iter().enumerate() {
                    let e = ((k >> (8 * i)) & 0xff) as i32;
                    if e > 0 {
                        v *= x.powi(e);
                    }
                }
                v
            })
            .sum()
    }
    /// The value at the origin.
    pub fn at_zero(&self) -> f64 {
        self.t.get(&0).copied().unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------------
// Gauss–Hermite quadrature for N(0, 1) (probabilists' Hermite polynomials).

pub fn hermite(n: usize, x: f64) -> (f64, f64) {
    // (He_n(x), He_{n-1}(x))
    let (mut a, mut b) = (1.0, x); // He_0, He_1
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 1..n {
        let c = x * b - k as f64 * a;
        a = b;
        b = c;
    }
    (b, a)
}

pub fn gauss_hermite(n: usize) -> Vec<(f64, f64)> {
    let lim = 2.0 * (n as f64).sqrt() + 2.0;
    let steps = 4001; // odd: no grid point falls on the root 0 of odd n
    let mut nodes = Vec::new();
    let mut prev_x = -lim;
    let mut prev = hermite(n, prev_x).0;
    for s in 1..=steps {
        let x = -lim + 2.0 * lim * s as f64 / steps as f64;
        let v = hermite(n, x).0;
        if prev == 0.0 || prev.signum() != v.signum() {
            let (mut lo, mut hi) = (prev_x, x);
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if hermite(n, lo).0.signum() == hermite(n, mid).0.signum() {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            nodes.push(0.5 * (lo + hi));
        }
        prev_x = x;
        prev = v;
    }
    assert_eq!(nodes.len(), n, "Gauss–Hermite root finding");
    let nfact: f64 = (1..=n).map(|k| k as f64).product();
    let rule: Vec<(f64, f64)> = nodes
        .into_iter()
        .map(|x| {
            let h = hermite(n, x).1;
            (x, nfact / ((n * n) as f64 * h * h))
        })
        .collect();
    // The rule integrates ζ^k exactly for k < 2n.
    for k in 0..2 * n {
        let q: f64 = rule.iter().map(|(x, w)| w * x.powi(k as i32)).sum();
        let scale: f64 = rule.iter().map(|(x, w)| w * x.abs().powi(k as i32)).sum();
        let exact: f64 = if k % 2 == 1 {
            0.0
        } else {
            (1..k).step_by(2).map(|j| j as f64).product()
        };
        assert!(
            (q - exact).abs() < 1e-10 * scale,
            "GH moment {k}: {q} vs {exact}"
        );
    }
    rule
}

/// Nodes and weights of the tensor rule with `n` nodes per dimension in `d` dimensions.
pub fn tensor_rule(d: usize, n: usize) -> Vec<(Vec<f64>, f64)> {
    let one = gauss_hermite(n);
    let mut out = vec![(Vec::new(), 1.0)];
    for _ in 0..d {
        let mut next = Vec::new();
        for (p, w) in &out {
            for (x, wx) in &one {
                let mut q = p.clone();
                q.push(*x);
                next.push((q, w * wx));
            }
        }
        out = next;
    }
    out
}

pub fn cholesky(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let v = a[i][i] - s;
                assert!(v > 0.0, "covariance not positive definite");
                l[i][i] = v.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    l
}

// ---------------------------------------------------------------------------------
// Shared by the moment-matching tests.

/// `E ψ(Z_τ) ≈ Σ_{m ≤ M} τ^m/m! (Lᵐψ)(z)` for each ψ = Π_j u_{t_j}. Monomials of
/// degree above `2(M − m)` in `Lᵐψ` cannot reach the constant term of `L^M ψ` (L lowers
/// the degree by at most 2) and are dropped.
pub fn sde_moments(
    b: &[MPoly],
    dm: &[Vec<MPoly>],
    tau: f64,
    m_max: u32,
    tuples: &[Vec<usize>],
) -> Vec<f64> {
    let n = b.len();
    tuples
        .iter()
        .map(|t| {
            let mut psi = MPoly::constant(1.0);
            for &i in t {
                psi = psi.mul(&MPoly::var(i));
            }
            let mut total = psi.at_zero();
            let mut fact = 1.0;
            for m in 1..=m_max {
                let max_deg = 2 * (m_max - m);
                let mut next = MPoly::zero();
                for i in 0..n {
                    let di = psi.deriv(i);
                    if di.is_zero() {
                        continue;
                    }
                    next.add_scaled(&b[i].mul_trunc(&di, max_deg), 1.0);
                    for j in 0..n {
                        if dm[i][j].is_zero() {
                            continue;
                        }
                        let dij = di.deriv(j);
                        if !dij.is_zero() {
                            next.add_scaled(&dm[i][j].mul_trunc(&dij, max_deg), 0.5);
                        }
                    }
                }
                psi = next;
                fact *= m as f64;
                total += tau.powi(m as i32) / fact * psi.at_zero();
            }
            total
        })
        .collect()
}

/// The multisets of size `s` from `comps`, as tuples non-decreasing in the order of
/// `comps`: the index tuples of the moments of order `s`.
pub fn tuples(comps: &[usize], s: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = vec![vec![]];
    for _ in 0..s {
        let mut next = Vec::new();
        for t in &out {
            let start = t
                .last()
                .map_or(0, |l| comps.iter().position(|c| c == l).unwrap());
            for &c in &comps[start..] {
                let mut t2 = t.clone();
                t2.push(c);
                next.push(t2);
            }
        }
        out = next;
    }
    out
}

/// The least-squares slope of `ln res` against `ln steps`, and the local slopes between
/// neighbouring steps.
pub fn slopes(steps: &[f64], res: &[f64]) -> (f64, Vec<f64>) {
    let xs: Vec<f64> = steps.iter().map(|e| e.ln()).collect();
    let ys: Vec<f64> = res.iter().map(|r| r.ln()).collect();
    let k = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / k, ys.iter().sum::<f64>() / k);
    let num: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let local = (1..xs.len())
        .map(|i| (ys[i - 1] - ys[i]) / (xs[i - 1] - xs[i]))
        .collect();
    (num / den, local)
}
