//! Phase 4: compact forms of a derived result.
//!
//! [`potential`] recognises a drift that is a gradient, `b = ∇φ`, and finds the scalar
//! potential φ exactly: candidate potentials are read off the drift's own terms (strip
//! the output slot from the derivative of f or Σ that holds it: `∇²f ∇f → ‖∇f‖²`), their
//! gradients are computed by symbolic differentiation, and the coefficients solve an
//! exact linear system over the rationals. So SGD's order-2 drift prints as
//! `-∇(f + (η/4)‖∇f‖²)` beside `-∇f - (η/2) ∇²f ∇f`, and a drift that is no gradient
//! (a state-dependent Σ at order 3, say) is left as it is.

mod egraph;

pub use egraph::{Node, RULES};

use crate::algebra::poly::{Poly, Sym, Symbols};
use crate::algebra::tensor::{derivative, Atom, Kind, TExpr, Term, Vars};
use num_rational::BigRational;
use num_traits::Zero;
use std::collections::BTreeMap;

/// The most compact equivalent of `e` found by equality saturation, as a tree whose
/// leaves index the returned terms; checked to expand back to `e` exactly.
pub fn compact(e: &TExpr, syms: &Symbols) -> Option<(Node, Vec<Term>)> {
    let (node, leaves) = egraph::compact(e, syms)?;
    let back = expand(&node, &leaves, e.free)?;
    (back == *e).then_some((node, leaves))
}

/// Multiplies a compact tree back out.
fn expand(n: &Node, leaves: &[Term], free: u8) -> Option<TExpr> {
    // (scalar coefficient, tensor part) pairs; the tensor part is None for scalars.
    fn go(n: &Node, leaves: &[Term]) -> Option<Vec<(Poly, Option<Term>)>> {
        Some(match n {
            Node::Num(r) => vec![(Poly::constant(r.clone()), None)],
            Node::Power(s, k) => vec![(Poly::power(*s, *k), None)],
            Node::Leaf(i) => vec![(Poly::one(), Some(leaves.get(*i)?.clone()))],
            Node::Sum(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.extend(go(i, leaves)?);
                }
                out
            }
            Node::Product(items) => {
                let mut acc: Vec<(Poly, Option<Term>)> = vec![(Poly::one(), None)];
                for i in items {
                    let part = go(i, leaves)?;
                    let mut next = Vec::new();
                    for (c1, t1) in &acc {
                        for (c2, t2) in &part {
                            let t = match (t1, t2) {
                                (Some(_), Some(_)) => return None,
                                (Some(t), None) | (None, Some(t)) => Some(t.clone()),
                                (None, None) => None,
                            };
                            next.push((c1.mul(c2), t));
                        }
                    }
                    acc = next;
                }
                acc
            }
        })
    }
    let mut out = TExpr::zero(free);
    for (c, t) in go(n, leaves)? {
        out.add_term(t?, &c);
    }
    Some(out)
}

/// The potential φ with `drift = ∇φ` (gradient in the parameter), if there is one.
/// `drift` must have one free index and depend on the state only through f and Σ.
pub fn potential(drift: &TExpr, dim: Sym) -> Option<TExpr> {
    if drift.free != 1 || drift.is_zero() {
        return None;
    }
    // Only functions of the parameter: f, its derivatives, the noise moments.
    let pure = drift.terms.keys().all(|t| {
        t.atoms
            .iter()
            .all(|a| matches!(a.kind, Kind::DF(_) | Kind::Moment { .. }))
    });
    if !pure {
        return None;
    }
    // Candidate potentials: each term with its output slot removed.
    let mut candidates: Vec<Term> = Vec::new();
    for t in drift.terms.keys() {
        let (k, slot) = t
            .atoms
            .iter()
            .enumerate()
            .find_map(|(k, a)| a.idx.iter().position(|l| *l == 0).map(|s| (k, s)))?;
        let a = &t.atoms[k];
        let stripped = match a.kind {
            Kind::DF(n) if n >= 1 => Kind::DF(n - 1),
            Kind::Moment { r, d } if d >= 1 && slot >= r as usize => Kind::Moment { r, d: d - 1 },
            _ => continue,
        };
        let mut atoms = t.atoms.clone();
        let mut idx = a.idx.clone();
        idx.remove(slot);
        atoms[k] = Atom::new(stripped, idx);
        // Labels shift down by one: the output index is gone.
        for at in &mut atoms {
            for l in &mut at.idx {
                *l -= 1;
            }
        }
        let (term, dims, factor) = crate::algebra::tensor::canonical(atoms, 0);
        if dims == 0 && factor.is_none() && !candidates.contains(&term) {
            candidates.push(term);
        }
    }
    if candidates.is_empty() {
        return None;
    }
    let scalar = |_: u8| false;
    let vars = Vars {
        scalar: &scalar,
        quadratic: false,
    };
    // Gradients of the candidates, as columns over the basis of vector terms.
    let columns: Vec<TExpr> = candidates
        .iter()
        .map(|c| {
            let mut e = TExpr::zero(0);
            e.add_term(c.clone(), &Poly::one());
            derivative(&e, 0, &vars, dim)
        })
        .collect();
    // Rows: every vector term that appears in the drift or a gradient.
    let mut rows: BTreeMap<Term, usize> = BTreeMap::new();
    for t in drift
        .terms
        .keys()
        .chain(columns.iter().flat_map(|c| c.terms.keys()))
    {
        let n = rows.len();
        rows.entry(t.clone()).or_insert(n);
    }
    let (m, n) = (rows.len(), candidates.len());
    // Augmented matrix [A | b]: A over Q (gradients have rational coefficients).
    let mut a = vec![vec![BigRational::zero(); n]; m];
    for (j, col) in columns.iter().enumerate() {
        for (t, c) in &col.terms {
            a[rows[t]][j] = c.as_constant()?;
        }
    }
    let mut b = vec![Poly::zero(); m];
    for (t, c) in &drift.terms {
        b[rows[t]] = c.clone();
    }
    let solution = crate::algebra::linear::eliminate(a, b, n);
    // Consistency: the rows without a pivot must have a zero right-hand side.
    if solution.inconsistent().is_some() {
        return None;
    }
    let mut phi = TExpr::zero(0);
    for &(row, col) in &solution.pivots {
        phi.add_term(candidates[col].clone(), &solution.rhs[row]);
    }
    // Check: the gradient of φ is the drift.
    let grad = derivative(&phi, 0, &vars, dim);
    (grad == *drift).then_some(phi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_order_2_drift_is_a_gradient() {
        let sme = crate::derive(
            "optimizer SGD\n param x\n small eta\n noise xi ~ general\n x = x - eta*(grad f(x) + xi)\n",
            &crate::Options::order(2),
        )
        .unwrap();
        let phi = potential(&sme.drift[0], sme.dim).expect("a gradient");
        // φ = -f - (η/4) ‖∇f‖²
        let f = TExpr::from_atoms(
            vec![Atom::new(Kind::DF(0), vec![])],
            0,
            Poly::int(-1),
            sme.dim,
        );
        let quarter = Poly::constant(BigRational::new((-1).into(), 4.into())).shift(sme.small, 1);
        let g2 = TExpr::from_atoms(
            vec![
                Atom::new(Kind::DF(1), vec![0]),
                Atom::new(Kind::DF(1), vec![0]),
            ],
            0,
            quarter,
            sme.dim,
        );
        assert_eq!(phi, f.add(&g2));
    }

    #[test]
    fn a_rotation_is_no_gradient() {
        // ∇²f ∇f + ∇Σ-type term that no potential produces: Σ[0,a]∇f[a].
        let e = TExpr::from_atoms(
            vec![
                Atom::new(Kind::Moment { r: 2, d: 0 }, vec![0, 1]),
                Atom::new(Kind::DF(1), vec![1]),
            ],
            1,
            Poly::one(),
            0,
        );
        assert!(potential(&e, 0).is_none());
    }
}
