//! Explicit components of an einsum expression in a concrete dimension.
//!
//! A [`TExpr`] is index-free: `∇²f[i,a] ∇f[a]` stands for every output index `i` and a
//! sum over `a = 0..d`. [`components`] writes it out for a given `d`: one entry per
//! output index tuple (`(i)` for a drift, `(i, j)` for a diffusion block, `()` for a
//! scalar), each a sum of products of concrete components ([`CFactor`]) with exact
//! coefficients. This is the basis of the `--dim N` output and of the SymPy export.
//!
//! Conventions:
//! - derivatives commute and the noise moments are symmetric, so the indices of
//!   [`CFactor::DerivF`] and both index groups of [`CFactor::Moment`] are sorted:
//!   `∂₁∂₀f` and `∂₀∂₁f` are the same factor `DerivF(vec![0, 1])`;
//! - the all-ones vector contributes 1; a Kronecker δ contributes 1 when its two
//!   indices are equal and removes the product otherwise;
//! - the dimension symbol `d` in the coefficients is replaced by the given `d`;
//! - equal products (the same multiset of factors) are collected by adding their
//!   coefficients, and products whose coefficient cancels are dropped.
//!
//! Indices are 0-based. The work is `d^(free + bound)` products per term, where `bound`
//! is the number of summed indices of the term: meant for small `d`.

use crate::algebra::poly::{Poly, Sym};
use crate::algebra::tensor::{Kind, Label, TExpr};
use crate::sme::Sme;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};
use std::collections::BTreeMap;

/// A concrete component, the factor of a [`CTerm`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CFactor {
    /// `∂_{i1..ik} f` at the current parameter, indices sorted (empty: `f` itself).
    DerivF(Vec<usize>),
    /// `∂_{deriv} (M_r)_{idx}`: component `idx` of the `r`-th noise moment (`r = 2` is Σ,
    /// `r = 3` the third moment S), differentiated in the parameter components `deriv`.
    /// Both index lists are sorted.
    Moment {
        r: u8,
        idx: Vec<usize>,
        deriv: Vec<usize>,
    },
    /// Component `index` of state variable number `var` (`sme.vars[var]`; the
    /// parameter is 0); `None` for a scalar state.
    State { var: u8, index: Option<usize> },
    /// The elementwise function `sme.elem.get(id)` applied at component `index` (its
    /// state variables read there), or to the scalar states when `index` is `None`.
    Elem { id: u32, index: Option<usize> },
    /// A noise sample's component (only in expressions taken before the expectation;
    /// never in a derived [`Sme`]).
    Noise {
        sample: u8,
        point: u8,
        index: Option<usize>,
    },
    /// A component of the displacement `y − z` of state `var` (only inside the
    /// derivation; never in a derived [`Sme`]).
    Disp { var: u8, index: Option<usize> },
    /// Entry (i, j), i ≠ j, of kink pair `sme.elem.pairs[id]` (the diagonal entries are
    /// its elementwise function `diag`).
    Pair { id: u32, i: usize, j: usize },
}

/// `coef × Π factors`, the factors sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CTerm {
    pub coef: Poly,
    pub factors: Vec<CFactor>,
}

/// One entry per output index tuple: the tuple and the sum of its terms (empty: 0).
pub type Components = Vec<(Vec<usize>, Vec<CTerm>)>;

/// The components of `e` in dimension `d`: one entry per output index tuple, in
/// row-major order (`(0,0), (0,1), …, (d-1,d-1)` for two free indices; a single `()`
/// entry for a scalar expression). Within an entry the terms are sorted by their factors.
///
/// `d = 0` has no components: the result is empty for an expression with free indices,
/// and a scalar's entry keeps only the terms without summed indices.
pub fn components(sme: &Sme, e: &TExpr, d: usize) -> Components {
    let free = e.free as usize;
    let tuples = all_tuples(free, d);
    let mut sums: Vec<BTreeMap<Vec<CFactor>, Poly>> = vec![BTreeMap::new(); tuples.len()];
    for (term, coef) in &e.terms {
        let coef = substitute_dim(coef, sme.dim, d);
        if coef.is_zero() {
            continue;
        }
        // The labels to assign: every free one, then the summed ones of this term.
        let mut labels: Vec<Label> = (0..e.free).collect();
        for a in &term.atoms {
            for &l in &a.idx {
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
        }
        if d == 0 && !labels.is_empty() {
            continue;
        }
        let mut value = [0usize; 256];
        let mut digits = vec![0usize; labels.len()];
        loop {
            for (l, v) in labels.iter().zip(&digits) {
                value[*l as usize] = *v;
            }
            if let Some(factors) = product(term, &value, &sme.elem) {
                let out = digits[..free].iter().fold(0, |acc, v| acc * d + v);
                sums[out]
                    .entry(factors)
                    .or_insert_with(Poly::zero)
                    .add_assign(&coef);
            }
            if !advance(&mut digits, d) {
                break;
            }
        }
    }
    tuples
        .into_iter()
        .zip(sums)
        .map(|(t, s)| {
            let terms = s
                .into_iter()
                .filter(|(_, c)| !c.is_zero())
                .map(|(factors, coef)| CTerm { coef, factors })
                .collect();
            (t, terms)
        })
        .collect()
}

/// Next index tuple in row-major order; `false` after the last.
fn advance(digits: &mut [usize], d: usize) -> bool {
    for k in (0..digits.len()).rev() {
        digits[k] += 1;
        if digits[k] < d {
            return true;
        }
        digits[k] = 0;
    }
    false
}

/// Every tuple of `n` indices below `d`, row-major.
fn all_tuples(n: usize, d: usize) -> Vec<Vec<usize>> {
    if n > 0 && d == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut digits = vec![0usize; n];
    loop {
        out.push(digits.clone());
        if !advance(&mut digits, d) {
            return out;
        }
    }
}

/// The factors of one term under an assignment of its labels, sorted; `None` when a δ
/// of unequal indices removes it.
fn product(
    term: &crate::algebra::tensor::Term,
    value: &[usize; 256],
    elem: &crate::algebra::elem::Table,
) -> Option<Vec<CFactor>> {
    let at = |l: &Label| value[*l as usize];
    let sorted = |ls: &[Label]| {
        let mut v: Vec<usize> = ls.iter().map(at).collect();
        v.sort_unstable();
        v
    };
    let mut factors = Vec::with_capacity(term.atoms.len());
    for a in &term.atoms {
        let index = a.idx.first().map(at);
        let f = match a.kind {
            Kind::DF(_) => CFactor::DerivF(sorted(&a.idx)),
            Kind::Moment { r, .. } => {
                let r_len = (r as usize).min(a.idx.len());
                CFactor::Moment {
                    r,
                    idx: sorted(&a.idx[..r_len]),
                    deriv: sorted(&a.idx[r_len..]),
                }
            }
            Kind::State(var) => CFactor::State { var, index },
            Kind::Elem(id) => CFactor::Elem { id, index },
            Kind::Noise { sample, point } => CFactor::Noise {
                sample,
                point,
                index,
            },
            // A kink never survives the expectation; shown as a noise factor if asked.
            Kind::Kink(k) => CFactor::Noise {
                sample: u8::MAX,
                point: k as u8,
                index,
            },
            Kind::Disp(var) => CFactor::Disp { var, index },
            Kind::Pair(id) => {
                let (i, j) = (at(&a.idx[0]), at(&a.idx[1]));
                if i == j {
                    CFactor::Elem {
                        id: elem.pairs.get(id as usize)?.diag,
                        index: Some(i),
                    }
                } else {
                    CFactor::Pair { id, i, j }
                }
            }
            Kind::One => continue,
            Kind::Delta => {
                if a.idx.iter().map(at).any(|v| Some(v) != index) {
                    return None;
                }
                continue;
            }
        };
        factors.push(f);
    }
    factors.sort();
    Some(factors)
}

/// The coefficient with the dimension symbol replaced by `d` (a monomial with a negative
/// power of `d = 0` is dropped).
pub fn substitute_dim(p: &Poly, dim: Sym, d: usize) -> Poly {
    let mut out = Poly::zero();
    for (mono, c) in p.terms() {
        let e = Poly::exponent(mono, dim);
        if e == 0 {
            out.add_term(mono, c);
            continue;
        }
        if d == 0 {
            continue;
        }
        let base = BigRational::from_integer(BigInt::from(d));
        let mut factor = BigRational::one();
        for _ in 0..e.unsigned_abs() {
            factor *= &base;
        }
        if e < 0 {
            factor = factor.recip();
        }
        let rest: Vec<(Sym, i32)> = mono.iter().copied().filter(|(s, _)| *s != dim).collect();
        let value = c * factor;
        if !value.is_zero() {
            out.add_term(&rest, &value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algebra::tensor::{Atom, Term};

    fn sgd(order: u32) -> Sme {
        let src = "optimizer SGD\n  param x\n  small eta\n  noise xi ~ general\n  x = x - eta*(grad f(x) + xi)\n";
        crate::derive(src, &crate::Options::order(order)).expect("SGD derives")
    }

    fn coef_of<'a>(terms: &'a [CTerm], factors: &[CFactor]) -> Option<&'a Poly> {
        terms.iter().find(|t| t.factors == factors).map(|t| &t.coef)
    }

    #[test]
    fn sgd_drift_in_two_dimensions() {
        let sme = sgd(2);
        let eta = sme.small;
        let comps = components(&sme, &sme.drift[0], 2);
        assert_eq!(comps.len(), 2);
        assert_eq!(comps[0].0, vec![0]);
        assert_eq!(comps[1].0, vec![1]);
        // b_0 = -∂0 f - (η/2)(∂00 f ∂0 f + ∂01 f ∂1 f)
        let terms = &comps[0].1;
        assert_eq!(terms.len(), 3, "{terms:?}");
        let half_eta = Poly::power(eta, 1).scale(&crate::algebra::poly::rat(-1, 2));
        assert_eq!(
            coef_of(terms, &[CFactor::DerivF(vec![0])]),
            Some(&Poly::int(-1))
        );
        assert_eq!(
            coef_of(
                terms,
                &[CFactor::DerivF(vec![0]), CFactor::DerivF(vec![0, 0])]
            ),
            Some(&half_eta)
        );
        assert_eq!(
            coef_of(
                terms,
                &[CFactor::DerivF(vec![0, 1]), CFactor::DerivF(vec![1])]
            ),
            Some(&half_eta)
        );
        // The mixed derivative of the second component is the same sorted factor.
        assert!(coef_of(
            &comps[1].1,
            &[CFactor::DerivF(vec![0]), CFactor::DerivF(vec![0, 1])]
        )
        .is_some());
    }

    #[test]
    fn diffusion_blocks_have_two_indices() {
        let sme = sgd(2);
        let comps = components(&sme, &sme.diffusion[0].expr, 3);
        assert_eq!(comps.len(), 9);
        let (tuple, terms) = &comps[5];
        assert_eq!(tuple, &vec![1, 2]);
        assert_eq!(
            terms,
            &vec![CTerm {
                coef: Poly::power(sme.small, 1),
                factors: vec![CFactor::Moment {
                    r: 2,
                    idx: vec![1, 2],
                    deriv: vec![]
                }],
            }]
        );
    }

    #[test]
    fn equal_products_collect_and_cancel() {
        let sme = sgd(1);
        // ∇f[i]∇²f[i,a]∇f[a] written with both slot orders of the Hessian, and
        // -tr(∇²f) + Σ_a ∇²f[a,a]: the first collects, the second cancels.
        let mut e = TExpr::zero(0);
        let h = |i, j| Atom::new(Kind::DF(2), vec![i, j]);
        let g = |i| Atom::new(Kind::DF(1), vec![i]);
        e.terms.insert(
            Term {
                atoms: vec![g(0), h(0, 1), g(1)],
            },
            Poly::one(),
        );
        e.terms.insert(
            Term {
                atoms: vec![g(1), h(1, 0), g(0)],
            },
            Poly::int(2),
        );
        e.terms.insert(
            Term {
                atoms: vec![h(0, 0)],
            },
            Poly::int(-1),
        );
        e.terms.insert(
            Term {
                atoms: vec![h(3, 3)],
            },
            Poly::one(),
        );
        let comps = components(&sme, &e, 2);
        assert_eq!(comps.len(), 1);
        let terms = &comps[0].1;
        let mixed = [
            CFactor::DerivF(vec![0]),
            CFactor::DerivF(vec![0, 1]),
            CFactor::DerivF(vec![1]),
        ];
        // (0,1) and (1,0) both give the mixed product: 2 × (1 + 2).
        assert_eq!(coef_of(terms, &mixed), Some(&Poly::int(6)));
        assert_eq!(terms.len(), 3, "{terms:?}");
        assert!(coef_of(terms, &[CFactor::DerivF(vec![0, 0])]).is_none());
    }

    #[test]
    fn deltas_ones_and_the_dimension() {
        let sme = sgd(1);
        // δ[i,j] + d·𝟙[i] f (the second with a free index only through the ones vector).
        let mut e = TExpr::zero(2);
        e.terms.insert(
            Term {
                atoms: vec![Atom::new(Kind::Delta, vec![0, 1])],
            },
            Poly::one(),
        );
        e.terms.insert(
            Term {
                atoms: vec![
                    Atom::new(Kind::One, vec![0]),
                    Atom::new(Kind::DF(0), vec![]),
                ],
            },
            Poly::power(sme.dim, 1),
        );
        let comps = components(&sme, &e, 3);
        assert_eq!(comps.len(), 9);
        for (t, terms) in &comps {
            let f = coef_of(terms, &[CFactor::DerivF(vec![])]);
            assert_eq!(f, Some(&Poly::int(3)));
            let one = coef_of(terms, &[]);
            assert_eq!(one.is_some(), t[0] == t[1], "{t:?}");
        }
        // A trace through a canonical δ: δ[a,a] = d.
        let tr = TExpr::from_atoms(
            vec![Atom::new(Kind::Delta, vec![0, 0])],
            0,
            Poly::one(),
            sme.dim,
        );
        let comps = components(&sme, &tr, 4);
        assert_eq!(comps[0].1[0].coef, Poly::int(4));
    }

    #[test]
    fn states_and_moment_derivatives() {
        let src = "optimizer SGD\n  param x\n  small eta\n  noise xi ~ gaussian\n  x = x - eta*(grad f(x) + xi)\n";
        let sme = crate::derive(src, &crate::Options::order(3)).expect("derives");
        // D = ηΣ + (η²/2)((∇f·∇)Σ + Σ∇²f + ∇²fΣ): the (0,1) entry has ∂_a Σ_01 ∂_a f.
        let comps = components(&sme, &sme.diffusion[0].expr, 2);
        let terms = &comps[1].1;
        let ds = |k| CFactor::Moment {
            r: 2,
            idx: vec![0, 1],
            deriv: vec![k],
        };
        assert!(coef_of(terms, &[CFactor::DerivF(vec![0]), ds(0)]).is_some());
        assert!(coef_of(terms, &[CFactor::DerivF(vec![1]), ds(1)]).is_some());
        // In one dimension every index is 0.
        let one = components(&sme, &sme.drift[0], 1);
        assert_eq!(one.len(), 1);
        assert!(one[0].1.iter().all(|t| t.factors.iter().all(|f| match f {
            CFactor::DerivF(i) => i.iter().all(|k| *k == 0),
            CFactor::Moment { idx, deriv, .. } => idx.iter().chain(deriv).all(|k| *k == 0),
            _ => true,
        })));
    }
}
