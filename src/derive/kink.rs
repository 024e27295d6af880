//! Kinks of noise of order one: `sign` and `|·|` of an argument `A + C ξ_i` whose
//! Gaussian noise does not vanish with the small parameter (signSGD, Lion, clipping;
//! DESIGN.md §1.6).
//!
//! Such a factor cannot be Taylor-expanded; the expansion keeps it as a
//! [`Kind::Kink`](crate::algebra::tensor::Kind::Kink) atom and the expectation averages
//! the products it takes part in in closed form. With `σ² = Σ_ii` (or the fixed variance
//! of the sample's own law) and `Z = ξ_i/σ` standard normal, every kink is a function of
//! `Z` with its kink at `t = −A/(Cσ)`:
//!
//! ```text
//! sign(A + CσZ) = sign(C) (2 H(Z − t) − 1),     |A + CσZ| = |C| σ (Z − t)(2 H(Z − t) − 1),
//! ```
//!
//! `H` the unit step. A product of kinks at one index times powers of `ξ_i` is a
//! polynomial in `Z` times products of steps, and `H(Z − t₁) H(Z − t₂) = H(Z − max(t₁, t₂))`,
//! so its mean is a sum of the truncated moments
//!
//! ```text
//! T_m(t) = E[Z^m H(Z − t)]:   T_0 = Φ(−t),  T_1 = φ(t),  T_m = (m − 1) T_{m−2} + t^{m−1} φ(t),
//! ```
//!
//! exact, with `max(a, b) = (a + b + |a − b|)/2`. Everything is an elementwise function
//! ([`FExpr`]) of the state, `∂_i f` and `Σ_ii` at the index: the result is exact for every
//! mean and variance (both signs of the mean, and zero), not an expansion.

use crate::algebra::elem::{FExpr, Field, Side};
use crate::algebra::poly::Poly;
use num_rational::BigRational;
use num_traits::{One, Zero};

/// One kink: `|A + C ξ|` or `sign(A + C ξ)` at the atom's index (its [`Side`]), `ξ` the
/// noise sample `sample` at the current parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KinkDef {
    pub side: Side,
    pub sample: u8,
}

/// The standard deviation of a sample's component: `√Σ_ii`, or `√c` for a fixed law
/// `c·I`.
pub(crate) fn deviation(scale: Option<&Poly>) -> FExpr {
    match scale {
        Some(c) => FExpr::Const(c.clone()).sqrt(),
        None => FExpr::Field(Field::NoiseVar).sqrt(),
    }
}

/// `E[Π_k kink_k · ξ_i^n]` for kinks at one index and one sample of standard deviation
/// `sigma` at that index, as an elementwise function.
pub(crate) fn average(kinks: &[&Side], n: u32, sigma: &FExpr) -> FExpr {
    // Each kink: a constant factor, a polynomial in Z (coefficients by power) and the
    // position t of its step.
    let mut factor = sigma.clone().pow(BigRational::from_integer(n.into()));
    // Q(Z) = Z^n Π P_k(Z), coefficients by power of Z.
    let mut q: Vec<FExpr> = vec![FExpr::Const(Poly::zero()); n as usize];
    q.push(FExpr::one());
    let mut steps: Vec<FExpr> = Vec::new();
    for k in kinks {
        let scale = k.coef.clone().times(sigma.clone());
        // t = −A/(C σ)
        let t = k
            .mean
            .clone()
            .times(scale.clone().pow(-BigRational::one()))
            .scale(&Poly::int(-1));
        if k.abs {
            factor = factor.times(FExpr::Abs(Box::new(scale)).simplify());
            // multiply Q by (Z − t)
            let mut next = vec![FExpr::Const(Poly::zero()); q.len() + 1];
            for (m, c) in q.iter().enumerate() {
                next[m + 1] = next[m + 1].clone().plus(c.clone());
                next[m] = next[m]
                    .clone()
                    .plus(c.clone().times(t.clone()).scale(&Poly::int(-1)));
            }
            q = next;
        } else {
            factor = factor.times(FExpr::Sign(Box::new(k.coef.clone())).simplify());
        }
        steps.push(t);
    }
    // Π_k (2 H_k − 1) = Σ_S (−1)^{K−|S|} 2^{|S|} H(Z − max_{k∈S} t_k); equal positions
    // share one step (H² = H).
    let mut distinct: Vec<FExpr> = Vec::new();
    let mut which: Vec<usize> = Vec::new();
    for t in &steps {
        let t = t.clone().simplify();
        match distinct.iter().position(|d| *d == t) {
            Some(p) => which.push(p),
            None => {
                distinct.push(t);
                which.push(distinct.len() - 1);
            }
        }
    }
    let kk = steps.len();
    let mut total: Vec<FExpr> = Vec::new();
    for subset in 0u32..(1 << kk) {
        let size = subset.count_ones() as usize;
        let mut c = BigRational::from_integer((1i64 << size).into());
        if (kk - size) % 2 == 1 {
            c = -c;
        }
        let coef = FExpr::Const(Poly::constant(c));
        if subset == 0 {
            // E Q(Z)
            for (m, qm) in q.iter().enumerate() {
                let mom = gaussian_moment(m as u32);
                if !mom.is_zero() {
                    total.push(qm.clone().times(coef.clone()).scale(&Poly::constant(mom)));
                }
            }
            continue;
        }
        let mut members: Vec<usize> = (0..kk)
            .filter(|k| subset & (1 << k) != 0)
            .map(|k| which[k])
            .collect();
        members.sort_unstable();
        members.dedup();
        let t = members
            .iter()
            .map(|&p| distinct[p].clone())
            .reduce(max)
            .expect("a non-empty subset");
        let tm = truncated(&t, q.len());
        for (m, qm) in q.iter().enumerate() {
            total.push(qm.clone().times(coef.clone()).times(tm[m].clone()));
        }
    }
    // A constant (sign·sign = 1) as the number it is, confirmed numerically.
    crate::algebra::elem::constant_if_so(factor.times(FExpr::Sum(total)).simplify())
}

/// `max(a, b) = (a + b + |a − b|)/2`, exact everywhere.
fn max(a: FExpr, b: FExpr) -> FExpr {
    let diff = a.clone().plus(b.clone().scale(&Poly::int(-1)));
    FExpr::Sum(vec![a, b, FExpr::Abs(Box::new(diff))])
        .simplify()
        .scale(&Poly::constant(BigRational::new(1.into(), 2.into())))
}

/// `E Z^m` for a standard normal Z: `(m − 1)!!` for even m, 0 for odd.
fn gaussian_moment(m: u32) -> BigRational {
    if m % 2 == 1 {
        return BigRational::zero();
    }
    let mut out = BigRational::one();
    let mut k = m as i64 - 1;
    while k > 1 {
        out *= BigRational::from_integer(k.into());
        k -= 2;
    }
    out
}

/// `T_m(t) = E[Z^m H(Z − t)]` for `m < len`.
fn truncated(t: &FExpr, len: usize) -> Vec<FExpr> {
    let density = FExpr::Npdf(Box::new(t.clone()));
    let mut out = vec![FExpr::Ncdf(Box::new(t.clone().scale(&Poly::int(-1)))).simplify()];
    if len > 1 {
        out.push(density.clone());
    }
    for m in 2..len {
        let prev = out[m - 2]
            .clone()
            .scale(&Poly::constant(BigRational::from_integer(
                (m as i64 - 1).into(),
            )));
        let tail = t
            .clone()
            .pow(BigRational::from_integer((m as i64 - 1).into()))
            .times(density.clone());
        out.push(prev.plus(tail));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates with ∂_i f = g and Σ_ii = s² (no state variables, no symbols).
    fn at(f: &FExpr, g: f64, s2: f64) -> f64 {
        f.eval(
            &|v| match Field::from_var_id(v) {
                Some(Field::Grad) => g,
                Some(Field::NoiseVar) => s2,
                None => f64::NAN,
            },
            &|_| f64::NAN,
        )
    }

    fn kink(abs: bool, shift: i64, coef: i64) -> Side {
        Side {
            abs,
            mean: FExpr::Field(Field::Grad).plus(FExpr::Const(Poly::int(shift))),
            coef: FExpr::Const(Poly::int(coef)),
        }
    }

    /// The constant shift c and coefficient k of a test kink `g + c + k ξ`.
    fn parts(k: &Side) -> (f64, f64) {
        let number = |p: &Poly| num_traits::ToPrimitive::to_f64(&p.as_constant().unwrap()).unwrap();
        let coef = match &k.coef {
            FExpr::Const(c) => number(c),
            other => panic!("a test kink has a constant coefficient, not {other:?}"),
        };
        let shift = match &k.mean {
            FExpr::Sum(items) => items.iter().find_map(FExpr::as_const).map_or(0.0, number),
            _ => 0.0,
        };
        (shift, coef)
    }

    /// E F(g + c + k s Z) · (sZ)^n by Gauss–Legendre quadrature split at the kinks,
    /// independent of the closed forms.
    fn quadrature(kinks: &[Side], n: u32, g: f64, s: f64) -> f64 {
        let value = |z: f64| {
            let mut v = (s * z).powi(n as i32);
            for k in kinks {
                let (shift, coef) = parts(k);
                let u = g + shift + coef * s * z;
                v *= if k.abs {
                    u.abs()
                } else {
                    u.signum() * f64::from(u != 0.0)
                };
            }
            v * crate::numeric::gauss::npdf(z)
        };
        let mut cuts: Vec<f64> = kinks
            .iter()
            .map(|k| {
                let (shift, coef) = parts(k);
                -(g + shift) / (coef * s)
            })
            .filter(|t| t.abs() < 14.0)
            .collect();
        cuts.push(-14.0);
        cuts.push(14.0);
        cuts.sort_by(f64::total_cmp);
        let (nodes, weights) = crate::numeric::gauss::gauss_legendre(60);
        let mut total = 0.0;
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            for (x, wt) in nodes.iter().zip(&weights) {
                let z = 0.5 * (b - a) * x + 0.5 * (a + b);
                total += 0.5 * (b - a) * wt * value(z);
            }
        }
        total
    }

    #[test]
    fn closed_forms_match_quadrature_on_both_sides_of_every_kink() {
        let cases: Vec<(Vec<Side>, u32)> = vec![
            (vec![kink(false, 0, 1)], 0),
            (vec![kink(true, 0, 1)], 0),
            (vec![kink(false, 0, 1), kink(false, 0, 1)], 0),
            (vec![kink(true, 0, 1), kink(true, 0, 1)], 0),
            (vec![kink(false, 0, 1)], 1),
            (vec![kink(true, 0, 1)], 1),
            (vec![kink(true, 1, 1), kink(true, -1, 1)], 0),
            (vec![kink(true, 1, 1), kink(false, -2, 1)], 1),
            (vec![kink(false, 0, -3)], 0),
            (vec![kink(true, 2, -2), kink(true, -1, 1)], 2),
        ];
        for (kinks, n) in &cases {
            let refs: Vec<&Side> = kinks.iter().collect();
            let f = average(&refs, *n, &deviation(None));
            for &g in &[-2.3, -0.4, 0.0, 0.4, 1.0, 3.1] {
                for &s in &[0.3, 1.0, 2.5] {
                    let closed = at(&f, g, s * s);
                    let quad = quadrature(kinks, *n, g, s);
                    assert!(
                        (closed - quad).abs() <= 1e-10 * (1.0 + quad.abs()),
                        "{kinks:?} n = {n} at g = {g}, s = {s}: {closed} vs {quad}"
                    );
                }
            }
        }
    }

    #[test]
    fn sign_of_gaussian_is_erf() {
        // E sign(g + sZ) = erf(g/(√2 s)) = 2Φ(g/s) − 1.
        let f = average(&[&kink(false, 0, 1)], 0, &deviation(None));
        for &(g, s) in &[(0.7, 0.5), (-1.2, 2.0), (0.0, 1.0)] {
            let want = libm::erf(g / (std::f64::consts::SQRT_2 * s));
            assert!((at(&f, g, s * s) - want).abs() < 1e-14, "{g} {s}");
        }
    }
}
