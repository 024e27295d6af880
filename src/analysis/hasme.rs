//! The Hessian-aware SME (HA-SME; Li, Shen, Zhang & He, "A Hessian-aware stochastic
//! differential equation for modelling SGD", arXiv:2405.18373, 2024).
//!
//! Not a template: the SME of the rule is derived at high order for its quadratic part
//! (f quadratic, Σ constant, Gaussian noise; [`crate::derive::derive_quadratic`]); there
//! the drift is a series `Σ_n a_n η^n H^n ∇f` and the diffusion `η Σ_{a,b} q_ab η^{a+b}
//! H^a Σ H^b` (H = ∇²f). Those coefficients are read off and compared, term by term,
//! with the series of the closed forms
//!
//! - drift `(log(I − ηH)/(ηH)) ∇f`, i.e. `a_n = −1/(n+1)`;
//! - diffusion `Q = η² (a(L) + a(R)) / (1 − (1 − ηL)(1 − ηR)) Σ`, `a(z) = −log(1 − ηz)/η`,
//!   with L and R the multiplications by H on the left and on the right: the unique Q
//!   with `∫₀^η e^{−As} Q e^{−As} ds = η² Σ` for `A = −log(I − ηH)/η` (the one-step
//!   covariance of SGD's linear dynamics, FORMULAS.md §8.1).
//!
//! The closed-form coefficients come from an independent computation (a bivariate series
//! in the commuting operators L and R), so agreement certifies the recognised form.
//!
//! [`crate::emit::hasme`] writes the result in every format (text, components, LaTeX,
//! SymPy, NumPy; JSON in [`crate::emit::json`]).

use crate::algebra::poly::Poly;
use crate::algebra::tensor::{Atom, Kind, Label, TExpr};
use crate::ir::Optimizer;
use crate::sme::Sme;
use crate::syntax::NoiseKind;
use num_rational::BigRational;
use num_traits::Zero;

/// The orders `p` whose SME series the closed forms can be checked against: order 1 does
/// not reach the diffusion, and the derivation stops at
/// [`crate::derive::MAX_ORDER`].
pub const ORDERS: std::ops::RangeInclusive<u32> = 2..=crate::derive::MAX_ORDER;

/// The order used when none is asked for: the series through η³.
pub const DEFAULT_ORDER: u32 = 4;

/// The result: the quadratic-part SME, its coefficients, and the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct HaSme {
    /// The SME of the quadratic part (Gaussian noise) at the order used.
    pub sme: Sme,
    /// The order of that SME (the series are compared through η^{order−1}).
    pub order: u32,
    /// Drift coefficients `a_n` of `η^n H^n ∇f`, n = 0 … order−1.
    pub drift: Vec<BigRational>,
    /// Diffusion coefficients `q_{a,b}` of `η^{1+a+b} H^a Σ H^b`, by k = a + b.
    pub diffusion: Vec<Vec<BigRational>>,
    /// Differences from the closed forms (empty: they agree term by term).
    pub mismatches: Vec<String>,
}

fn rat(n: i64, d: i64) -> BigRational {
    BigRational::new(n.into(), d.into())
}

/// The closed form's drift coefficient of `η^n H^n ∇f`: `−1/(n+1)`.
pub fn closed_drift(n: usize) -> BigRational {
    rat(-1, n as i64 + 1)
}

/// The closed form's diffusion coefficients: `q[k][a]` for `η^{1+k} H^a Σ H^{k−a}`, from
/// `g(u, w) = (−log(1−u) − log(1−w)) / (u + w − uw)` with u = ηL, w = ηR, computed as
/// the bivariate series `T_k = (N_{k+1} + uw T_{k−1}) / (u + w)`.
pub fn closed_diffusion(kmax: usize) -> Vec<Vec<BigRational>> {
    // A homogeneous bivariate polynomial of degree k: coefficients of u^a w^(k−a).
    type Hom = Vec<BigRational>;
    let numerator = |deg: usize| -> Hom {
        // −log(1−u) − log(1−w): degree-deg part (u^deg + w^deg)/deg
        let mut h = vec![BigRational::zero(); deg + 1];
        h[deg] += rat(1, deg as i64);
        h[0] += rat(1, deg as i64);
        h
    };
    // Exact division of a homogeneous polynomial of degree k+1 by (u + w).
    let div_s = |h: &Hom| -> Hom {
        let k = h.len() - 2;
        let mut q = vec![BigRational::zero(); k + 1];
        // h(u,w) = (u + w) q(u,w): from the top power of u down.
        let mut rem = h.clone();
        for a in (0..=k).rev() {
            let c = rem[a + 1].clone();
            q[a] = c.clone();
            rem[a + 1] -= &c;
            rem[a] -= &c;
        }
        debug_assert!(rem.iter().all(|x| x.is_zero()), "exact division");
        q
    };
    let mut t: Vec<Hom> = Vec::new();
    for k in 0..=kmax {
        let mut h = numerator(k + 1);
        if k >= 1 {
            // + uw T_{k−1}
            for (a, c) in t[k - 1].iter().enumerate() {
                h[a + 1] += c;
            }
        }
        t.push(div_s(&h));
    }
    t
}

/// `H^a` applied from the left and `H^b` from the right of `Σ`, as a term with free
/// indices (0, 1), or `H^n ∇f` with free index 0.
fn chain(left: usize, right: Option<usize>) -> Vec<Atom> {
    let mut atoms = Vec::new();
    let mut next: Label = 2;
    let mut cur: Label = 0;
    for _ in 0..left {
        atoms.push(Atom::new(Kind::DF(2), vec![cur, next]));
        cur = next;
        next += 1;
    }
    match right {
        None => atoms.push(Atom::new(Kind::DF(1), vec![cur])),
        Some(b) => {
            let end: Label = if b == 0 { 1 } else { next };
            atoms.push(Atom::new(Kind::Moment { r: 2, d: 0 }, vec![cur, end]));
            let mut cur = end;
            for (i, fresh) in (0..b).zip(next + 1..) {
                let to = if i + 1 == b { 1 } else { fresh };
                atoms.push(Atom::new(Kind::DF(2), vec![cur, to]));
                cur = to;
            }
        }
    }
    atoms
}

/// The coefficient of a given term in `e` (a polynomial in η).
fn coefficient(e: &TExpr, atoms: Vec<Atom>, dim: crate::algebra::poly::Sym) -> Poly {
    let probe = TExpr::from_atoms(atoms, e.free, Poly::one(), dim);
    let (t, _) = probe.terms.iter().next().expect("a term");
    e.terms.get(t).cloned().unwrap_or_default()
}

/// Derives the HA-SME of a single-state rule (SGD-like) and compares it with the closed
/// forms through `η^{order−1}`.
pub fn hessian_aware(opt: &Optimizer, order: u32) -> Result<HaSme, crate::Error> {
    if !opt.states.is_empty() {
        return Err(crate::Error::Invalid(vec![crate::Diagnostic::new(
            crate::Code::Unsupported,
            opt.header,
            "the Hessian-aware SME is derived for rules whose only state is the parameter (SGD)",
        )
        .label("this optimizer has other states")
        .hint(
            "for momentum the construction needs the logarithm of the linearised two-state map (a 2×2 block matrix of functions of H), which smelt does not build yet; derive the order-p SME instead",
        )]));
    }
    if !ORDERS.contains(&order) {
        return Err(crate::Error::Invalid(vec![crate::Diagnostic::new(
            crate::Code::Misuse,
            opt.header,
            format!(
                "the Hessian-aware SME cannot be certified at order {order}"
            ),
        )
        .label("for this optimizer")
        .hint(format!(
            "ask for an order between {} and {}: the closed forms are checked against the series of the order-p SME of the quadratic part, which needs p ≥ 2 to reach the diffusion and p ≤ {} to stay within the derivation's limit",
            ORDERS.start(),
            ORDERS.end(),
            ORDERS.end()
        ))]));
    }
    // Gaussian noise: the HA-SME is exact for linear-Gaussian SGD.
    let mut gaussian = opt.clone();
    for n in &mut gaussian.noises {
        n.kind = NoiseKind::Gaussian;
    }
    let sme = crate::derive::derive_quadratic(&gaussian, &crate::Options::order(order))?;
    let (eta, dim) = (sme.small, sme.dim);
    let mut mismatches = Vec::new();
    // The drift: only H^n ∇f chains, coefficient a_n η^n.
    let mut drift = Vec::new();
    let mut accounted = TExpr::zero(1);
    for n in 0..order as usize {
        let c = coefficient(&sme.drift[0], chain(n, None), dim);
        let a = c.coeff(eta, n as i32).as_constant().unwrap_or_default();
        accounted.add_raw(
            chain(n, None),
            Poly::constant(a.clone()).shift(eta, n as i32),
            dim,
        );
        if a != closed_drift(n) {
            mismatches.push(format!(
                "drift: η^{n} H^{n} ∇f has coefficient {a}, the closed form {}",
                closed_drift(n)
            ));
        }
        drift.push(a);
    }
    if accounted != sme.drift[0] {
        mismatches.push("drift: terms other than H^n ∇f remain".to_string());
    }
    // The diffusion: H^a Σ H^b with coefficient q_ab η^{1+a+b}.
    let closed = closed_diffusion(order as usize);
    let d = &sme.diffusion[0].expr;
    let mut diffusion = Vec::new();
    let mut accounted = TExpr::zero(2);
    for (k, closed_k) in closed
        .iter()
        .enumerate()
        .take((order as usize).saturating_sub(1))
    {
        let mut row = Vec::new();
        for a in 0..=k {
            let c = coefficient(d, chain(a, Some(k - a)), dim);
            let q = c.coeff(eta, 1 + k as i32).as_constant().unwrap_or_default();
            row.push(q);
        }
        // H^a Σ H^b and H^b Σ H^a are different terms unless a = b; record each once.
        for a in 0..=k {
            accounted.add_raw(
                chain(a, Some(k - a)),
                Poly::constant(row[a].clone()).shift(eta, 1 + k as i32),
                dim,
            );
            if row[a] != closed_k[a] {
                mismatches.push(format!(
                    "diffusion: η^{} H^{a} Σ H^{} has coefficient {}, the closed form {}",
                    k + 1,
                    k - a,
                    row[a],
                    closed_k[a]
                ));
            }
        }
        diffusion.push(row);
    }
    if accounted != *d {
        mismatches.push("diffusion: terms other than H^a Σ H^b remain".to_string());
    }
    Ok(HaSme {
        sme,
        order,
        drift,
        diffusion,
        mismatches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_diffusion_series_by_hand() {
        // g = 1 + (u+w)/2 + (2u² + uw + 2w²)/6 + (3u³ + u²w + uw² + 3w³)/12 + …
        let t = closed_diffusion(3);
        assert_eq!(t[0], vec![rat(1, 1)]);
        assert_eq!(t[1], vec![rat(1, 2), rat(1, 2)]);
        assert_eq!(t[2], vec![rat(1, 3), rat(1, 6), rat(1, 3)]);
        assert_eq!(t[3], vec![rat(1, 4), rat(1, 12), rat(1, 12), rat(1, 4)]);
    }
}
