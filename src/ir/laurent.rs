//! Constants of the rule in normal form.
//!
//! A constant subexpression (one that reads no state, noise or counter) built from
//! numbers, the small parameter and hyperparameters with `+ - *`, integer powers and
//! division by monomials is a Laurent polynomial with rational coefficients. Lowering
//! replaces every such subtree by its normal form, so `1 - (1 - c*eta^2)` becomes
//! `c*eta^2` and `(sigma0/eta)^2` becomes `sigma0^2/eta^2`: equal constants print alike.
//! Anything else (`sqrt(c)`, `1/(1 + c*eta)`) is left as written.

use super::*;
use num_traits::{One, Signed, ToPrimitive, Zero};
use std::collections::BTreeMap;

/// A variable of a constant: a hyperparameter, or the small parameter (sorted last).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Sym {
    Hyper(String),
    Small,
}

/// A monomial: variables with non-zero integer exponents, sorted.
type Monomial = Vec<(Sym, i32)>;

/// A Laurent polynomial: monomial → non-zero coefficient.
#[derive(Debug, Clone, PartialEq)]
struct Laurent(BTreeMap<Monomial, BigRational>);

/// The largest exponent normalisation expands (`(a + b)^k` has up to k+1 terms).
const MAX_POWER: i64 = 16;
/// The most terms a normal form may have before the subtree is left as written.
const MAX_TERMS: usize = 64;
/// The largest coefficient (in bits of numerator or denominator) a normal form may hold,
/// so that the canonical form prints every number within the literal limit.
pub(super) const MAX_BITS: u64 = 300;

impl Laurent {
    fn constant(c: BigRational) -> Laurent {
        let mut m = BTreeMap::new();
        if !c.is_zero() {
            m.insert(Vec::new(), c);
        }
        Laurent(m)
    }

    fn var(s: Sym) -> Laurent {
        let mut m = BTreeMap::new();
        m.insert(vec![(s, 1)], BigRational::one());
        Laurent(m)
    }

    fn add(mut self, other: &Laurent, sign: i32) -> Laurent {
        for (mono, c) in &other.0 {
            let c = if sign < 0 { -c.clone() } else { c.clone() };
            let entry = self.0.entry(mono.clone()).or_insert_with(BigRational::zero);
            *entry += c;
            if entry.is_zero() {
                self.0.remove(mono);
            }
        }
        self
    }

    fn mul(&self, other: &Laurent) -> Laurent {
        let mut out = Laurent(BTreeMap::new());
        for (m1, c1) in &self.0 {
            for (m2, c2) in &other.0 {
                let term = Laurent([(mono_mul(m1, m2), c1 * c2)].into_iter().collect());
                out = out.add(&term, 1);
            }
        }
        out
    }

    /// The inverse, when this is a single term.
    fn inverse(&self) -> Option<Laurent> {
        if self.0.len() != 1 {
            return None;
        }
        let (mono, c) = self.0.iter().next()?;
        let inv: Monomial = mono.iter().map(|(s, e)| (s.clone(), -e)).collect();
        Some(Laurent([(inv, c.recip())].into_iter().collect()))
    }

    fn pow(&self, k: i64) -> Option<Laurent> {
        // A single term: multiply the exponents (cheap for any k).
        if self.0.len() == 1 {
            let (mono, c) = self.0.iter().next()?;
            let k32 = i32::try_from(k).ok()?;
            let mono: Monomial = mono
                .iter()
                .map(|(s, e)| Some((s.clone(), e.checked_mul(k32)?)))
                .collect::<Option<_>>()?;
            if c.numer()
                .bits()
                .max(c.denom().bits())
                .saturating_mul(k.unsigned_abs())
                > MAX_BITS
            {
                return None;
            }
            let c = if k >= 0 {
                num_traits::pow(c.clone(), k as usize)
            } else {
                num_traits::pow(c.recip(), k.unsigned_abs() as usize)
            };
            return Some(Laurent([(mono, c)].into_iter().collect()));
        }
        if k.abs() > MAX_POWER {
            return None;
        }
        let base = if k < 0 { self.inverse()? } else { self.clone() };
        let mut out = Laurent::constant(BigRational::one());
        for _ in 0..k.abs() {
            out = out.mul(&base);
            if out.0.len() > MAX_TERMS {
                return None;
            }
        }
        Some(out)
    }
}

fn mono_mul(a: &Monomial, b: &Monomial) -> Monomial {
    let mut m: BTreeMap<Sym, i32> = BTreeMap::new();
    for (s, e) in a.iter().chain(b) {
        *m.entry(s.clone()).or_insert(0) += e;
    }
    m.into_iter().filter(|(_, e)| *e != 0).collect()
}

/// The Laurent form of a constant expression, if it has one.
fn to_laurent(e: &Expr) -> Option<Laurent> {
    let l = match &e.kind {
        ExprKind::Num(n) => Laurent::constant(n.clone()),
        ExprKind::Small => Laurent::var(Sym::Small),
        ExprKind::Hyper(h) => Laurent::var(Sym::Hyper(h.clone())),
        ExprKind::Neg(a) => Laurent::constant(BigRational::zero()).add(&to_laurent(a)?, -1),
        ExprKind::Bin(op, a, b) => {
            let a = to_laurent(a)?;
            match op {
                BinOp::Add => a.add(&to_laurent(b)?, 1),
                BinOp::Sub => a.add(&to_laurent(b)?, -1),
                BinOp::Mul => a.mul(&to_laurent(b)?),
                BinOp::Div => a.mul(&to_laurent(b)?.inverse()?),
                BinOp::Pow => match &b.kind {
                    ExprKind::Num(k) if k.is_integer() => a.pow(k.to_integer().to_i64()?)?,
                    _ => return None,
                },
                BinOp::MatMul => return None,
            }
        }
        _ => return None,
    };
    let small_enough =
        l.0.values()
            .all(|c| c.numer().bits().max(c.denom().bits()) <= MAX_BITS);
    (l.0.len() <= MAX_TERMS && small_enough).then_some(l)
}

fn num(n: BigRational) -> Expr {
    Expr::new(ExprKind::Num(n), Shape::Scalar)
}

fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::new(ExprKind::Bin(op, Box::new(a), Box::new(b)), Shape::Scalar)
}

fn product(factors: Vec<Expr>) -> Option<Expr> {
    factors.into_iter().reduce(|a, b| bin(BinOp::Mul, a, b))
}

fn sym_expr(s: &Sym) -> Expr {
    match s {
        Sym::Small => Expr::new(ExprKind::Small, Shape::Scalar),
        Sym::Hyper(h) => Expr::new(ExprKind::Hyper(h.clone()), Shape::Scalar),
    }
}

fn power(s: &Sym, e: i32) -> Expr {
    let base = sym_expr(s);
    if e == 1 {
        base
    } else {
        bin(BinOp::Pow, base, num(BigRational::from_integer(e.into())))
    }
}

/// One term `|c| * positive powers / negative powers`; with `signed`, the sign of `c`
/// goes on the first factor (`-3*c/4`, `-c*eta`), else it is dropped.
fn term(mono: &Monomial, c: &BigRational, signed: bool) -> Expr {
    let negative = signed && c.is_negative();
    let c = c.abs();
    let numer_c = BigRational::from_integer(c.numer().clone());
    let denom_c = BigRational::from_integer(c.denom().clone());
    let mut top: Vec<Expr> = Vec::new();
    let mut bottom: Vec<Expr> = Vec::new();
    if !numer_c.is_one() {
        top.push(num(numer_c));
    }
    if !denom_c.is_one() {
        bottom.push(num(denom_c));
    }
    for (s, e) in mono {
        if *e > 0 {
            top.push(power(s, *e));
        } else {
            bottom.push(power(s, -e));
        }
    }
    if top.is_empty() {
        top.push(num(BigRational::one()));
    }
    if negative {
        top[0] = match top[0].kind.clone() {
            ExprKind::Num(n) => num(-n),
            _ => Expr::new(ExprKind::Neg(Box::new(top[0].clone())), Shape::Scalar),
        };
    }
    let top = product(top).expect("at least one factor");
    match product(bottom) {
        None => top,
        Some(b) => bin(BinOp::Div, top, b),
    }
}

/// The expression of a normal form: terms by ascending power of the small parameter.
fn from_laurent(l: &Laurent) -> Expr {
    let small_power = |m: &Monomial| {
        m.iter()
            .find(|(s, _)| *s == Sym::Small)
            .map_or(0, |(_, e)| *e)
    };
    let mut terms: Vec<(&Monomial, &BigRational)> = l.0.iter().collect();
    terms.sort_by(|(a, _), (b, _)| small_power(a).cmp(&small_power(b)).then(a.cmp(b)));
    let mut out: Option<Expr> = None;
    for (mono, c) in terms {
        out = Some(match out {
            None => term(mono, c, true),
            Some(acc) if c.is_negative() => bin(BinOp::Sub, acc, term(mono, c, false)),
            Some(acc) => bin(BinOp::Add, acc, term(mono, c, false)),
        });
    }
    out.unwrap_or_else(|| num(BigRational::zero()))
}

/// One term of a constant's normal form: its coefficient, the power of the small
/// parameter, and the hyperparameters with their exponents.
pub(super) struct Term {
    pub coef: BigRational,
    pub small: i32,
    pub hypers: Vec<(String, i32)>,
}

/// The terms of a constant expression's normal form, or `None` when it has none
/// (`sqrt(c)*eta`, `1/(1 + eta)`).
pub(super) fn terms(e: &Expr) -> Option<Vec<Term>> {
    if e.shape != Shape::Scalar || e.depends_on_step() {
        return None;
    }
    let l = to_laurent(e)?;
    Some(
        l.0.iter()
            .map(|(mono, c)| {
                let mut t = Term {
                    coef: c.clone(),
                    small: 0,
                    hypers: Vec::new(),
                };
                for (s, k) in mono {
                    match s {
                        Sym::Small => t.small = *k,
                        Sym::Hyper(h) => t.hypers.push((h.clone(), *k)),
                    }
                }
                t
            })
            .collect(),
    )
}

/// Replaces every constant subtree that has a Laurent normal form by that form.
pub(super) fn normalize(e: Expr) -> Expr {
    let Expr { kind, shape } = e;
    let kind = match kind {
        ExprKind::Noise { sample, at } => ExprKind::Noise {
            sample,
            at: at.map(|a| Box::new(normalize(*a))),
        },
        ExprKind::Objective(a) => ExprKind::Objective(Box::new(normalize(*a))),
        ExprKind::Grad(a) => ExprKind::Grad(Box::new(normalize(*a))),
        ExprKind::Hess(a) => ExprKind::Hess(Box::new(normalize(*a))),
        ExprKind::Neg(a) => ExprKind::Neg(Box::new(normalize(*a))),
        ExprKind::Bin(op, a, b) => {
            ExprKind::Bin(op, Box::new(normalize(*a)), Box::new(normalize(*b)))
        }
        ExprKind::Call(f, args) => ExprKind::Call(f, args.into_iter().map(normalize).collect()),
        leaf => leaf,
    };
    let e = Expr { kind, shape };
    if shape == Shape::Scalar && !e.depends_on_step() {
        if let Some(l) = to_laurent(&e) {
            return from_laurent(&l);
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(src: &str) -> String {
        let text =
            format!("optimizer T\n param x\n small eta\n hyper c, s\n let q = {src}\n x = x*q\n");
        let o = crate::check(&text).unwrap();
        canonical(&o)
            .lines()
            .find(|l| l.trim_start().starts_with("let q"))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn constants_reach_normal_form() {
        assert_eq!(norm("1 - (1 - c*eta^2)"), "let q = c*eta^2");
        assert_eq!(norm("(s/eta)^2"), "let q = s^2/eta^2");
        assert_eq!(norm("(1 + eta)^2"), "let q = 1 + 2*eta + eta^2");
        assert_eq!(norm("eta/2 - eta/2"), "let q = 0");
        assert_eq!(norm("-3*c/4"), "let q = -3*c/4");
        assert_eq!(norm("1/(1 + c*eta)"), "let q = 1/(1 + c*eta)");
        assert_eq!(norm("sqrt(c)*eta"), "let q = sqrt(c)*eta");
    }
}
