//! Constants of the rule in normal form.
//!
//! A constant subexpression (one that reads no state, noise or counter) built from
//! numbers, the small parameter and hyperparameters with `+ - *`, integer powers and
//! division by monomials is a Laurent polynomial with rational coefficients. Lowering
//! replaces every such subtree by its normal form, so `1 - (1 - c*eta^2)` becomes
//! `c*eta^2` and `(sigma0/eta)^2` becomes `sigma0^2/eta^2`: equal constants print alike.
//! Anything else (`sqrt(c)`, `1/(1 + c*eta)`) is left as written.

use super::*;
use crate::algebra::poly::{Monomial, Poly, PowLimits, Symbols};
use num_traits::{One, Signed, ToPrimitive, Zero};

/// The small parameter's name in a constant's symbol table: not an identifier, so no
/// hyperparameter can take it.
const SMALL: &str = "<small>";

/// The largest exponent normalisation expands (`(a + b)^k` has up to k+1 terms).
const MAX_POWER: u64 = 16;
/// The most terms a normal form may have before the subtree is left as written.
const MAX_TERMS: usize = 64;
/// The largest coefficient (in bits of numerator or denominator) a normal form may hold,
/// so that the canonical form prints every number within the literal limit.
pub(super) const MAX_BITS: u64 = 300;

/// The limits of [`Poly::pow`] in normalisation.
const LIMITS: PowLimits = PowLimits {
    max_power: MAX_POWER,
    max_terms: MAX_TERMS,
    max_bits: MAX_BITS,
};

/// A variable of a constant in print order: hyperparameters by name, then the small
/// parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Var<'a> {
    Hyper(&'a str),
    Small,
}

/// A monomial with its variables named and in print order.
type Named<'a> = Vec<(Var<'a>, i32)>;

/// A constant's normal form: a polynomial over a local symbol table holding the
/// hyperparameters and the small parameter (as [`SMALL`]).
struct Normal {
    poly: Poly,
    syms: Symbols,
}

impl Normal {
    /// The terms with their monomials named and sorted in print order.
    fn named(&self) -> Vec<(Named<'_>, &BigRational)> {
        let mut terms: Vec<(Named<'_>, &BigRational)> =
            self.poly.terms().map(|(m, c)| (self.name(m), c)).collect();
        terms.sort_by(|(a, _), (b, _)| a.cmp(b));
        terms
    }

    fn name(&self, mono: &Monomial) -> Named<'_> {
        let mut named: Named<'_> = mono
            .iter()
            .map(|&(s, e)| match self.syms.name(s) {
                SMALL => (Var::Small, e),
                h => (Var::Hyper(h), e),
            })
            .collect();
        named.sort();
        named
    }
}

/// The normal form of a constant expression, if it has one.
fn to_normal(e: &Expr) -> Option<Normal> {
    let mut syms = Symbols::default();
    let poly = to_poly(e, &mut syms)?;
    Some(Normal { poly, syms })
}

/// The polynomial of a constant expression over `syms`, if it has one within the limits.
fn to_poly(e: &Expr, syms: &mut Symbols) -> Option<Poly> {
    let p = match &e.kind {
        ExprKind::Num(n) => Poly::constant(n.clone()),
        ExprKind::Small => Poly::power(syms.intern(SMALL), 1),
        ExprKind::Hyper(h) => Poly::power(syms.intern(h), 1),
        ExprKind::Neg(a) => to_poly(a, syms)?.neg(),
        ExprKind::Bin(op, a, b) => {
            let a = to_poly(a, syms)?;
            match op {
                BinOp::Add => a.add(&to_poly(b, syms)?),
                BinOp::Sub => a.sub(&to_poly(b, syms)?),
                BinOp::Mul => a.mul(&to_poly(b, syms)?),
                BinOp::Div => a.mul(&to_poly(b, syms)?.inverse()?),
                BinOp::Pow => match &b.kind {
                    ExprKind::Num(k) if k.is_integer() => {
                        a.pow(k.to_integer().to_i64()?, &LIMITS)?
                    }
                    _ => return None,
                },
                BinOp::MatMul => return None,
            }
        }
        _ => return None,
    };
    (p.len() <= MAX_TERMS && p.max_bits() <= MAX_BITS).then_some(p)
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

fn var_expr(v: Var<'_>) -> Expr {
    match v {
        Var::Small => Expr::new(ExprKind::Small, Shape::Scalar),
        Var::Hyper(h) => Expr::new(ExprKind::Hyper(h.to_string()), Shape::Scalar),
    }
}

fn power(v: Var<'_>, e: i32) -> Expr {
    let base = var_expr(v);
    if e == 1 {
        base
    } else {
        bin(BinOp::Pow, base, num(BigRational::from_integer(e.into())))
    }
}

/// One term `|c| * positive powers / negative powers`; with `signed`, the sign of `c`
/// goes on the first factor (`-3*c/4`, `-c*eta`), else it is dropped.
fn term(mono: &Named<'_>, c: &BigRational, signed: bool) -> Expr {
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
    for &(v, e) in mono {
        if e > 0 {
            top.push(power(v, e));
        } else {
            bottom.push(power(v, -e));
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

/// The expression of a normal form: terms by ascending power of the small parameter,
/// then by monomial in print order.
fn from_normal(n: &Normal) -> Expr {
    let small_power = |m: &Named<'_>| {
        m.iter()
            .find(|(v, _)| *v == Var::Small)
            .map_or(0, |(_, e)| *e)
    };
    let mut terms = n.named();
    terms.sort_by(|(a, _), (b, _)| small_power(a).cmp(&small_power(b)).then(a.cmp(b)));
    let mut out: Option<Expr> = None;
    for (mono, c) in &terms {
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
    let n = to_normal(e)?;
    Some(
        n.named()
            .into_iter()
            .map(|(mono, c)| {
                let mut t = Term {
                    coef: c.clone(),
                    small: 0,
                    hypers: Vec::new(),
                };
                for (v, k) in mono {
                    match v {
                        Var::Small => t.small = k,
                        Var::Hyper(h) => t.hypers.push((h.to_string(), k)),
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
        if let Some(n) = to_normal(&e) {
            return from_normal(&n);
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigInt;

    fn norm(src: &str) -> String {
        let text =
            format!("optimizer T\n param x\n small eta\n hyper c, s\n let q = {src}\n x = x*q\n");
        let o = crate::lower(&text).unwrap();
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

    #[test]
    fn limits_leave_the_subtree_as_written() {
        // A sum expands up to the 16th power; the 17th stays as written.
        assert_eq!(norm("(c + s)^17"), "let q = (c + s)^17");
        assert!(norm("(c + s)^16").starts_with("let q = 16*c*s^15 + 120*c^2*s^14 + "));
        // Too many terms along the way (the 16th power of three terms has 153).
        assert_eq!(norm("(1 + c + eta)^16"), "let q = (1 + c + eta)^16");
        // A single term's coefficient beyond MAX_BITS, refused before it is computed.
        assert_eq!(norm("(3*c)^200"), "let q = (3*c)^200");
        assert_eq!(norm("(c*eta)^301"), "let q = (c*eta)^301");
        assert_eq!(norm("(c*eta)^300"), "let q = c^300*eta^300");
        assert_eq!(norm("(2*c/3)^-2"), "let q = 9/(4*c^2)");
        // A product whose coefficient passes MAX_BITS keeps its (normalised) factors.
        let big = format!("{}", BigInt::one() << 150);
        assert_eq!(
            norm(&format!("c*{big}*{big}")),
            format!("let q = {big}*c*{big}")
        );
        assert_eq!(
            norm(&format!("c*{big}*{}", BigInt::one() << 149)),
            format!("let q = {}*c", BigInt::one() << 299)
        );
        // Huge exponents are refused, not computed; zeroth powers are 1.
        assert_eq!(norm("eta^100000000000"), "let q = eta^1e11");
        assert_eq!(norm("(c*eta)^0"), "let q = 1");
        assert_eq!(norm("(1 + eta)^0"), "let q = 1");
        assert_eq!(norm("(eta - eta)^0"), "let q = 1");
        assert_eq!(norm("(1 + eta)^-1"), "let q = (1 + eta)^(-1)");
    }

    /// A xorshift generator, enough to draw expressions.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn scalar(kind: ExprKind) -> Expr {
        Expr::new(kind, Shape::Scalar)
    }

    /// A random constant expression of numbers, `eta`, `c` and `s`.
    fn random_expr(rng: &mut Rng, depth: u32) -> Expr {
        if depth == 0 || rng.below(4) == 0 {
            return match rng.below(5) {
                0 => scalar(ExprKind::Small),
                1 => scalar(ExprKind::Hyper("s".into())),
                2 => scalar(ExprKind::Hyper("c".into())),
                _ => {
                    let n = rng.below(7) as i64 - 3;
                    let d = rng.below(3) as i64 + 1;
                    num(BigRational::new(n.into(), d.into()))
                }
            };
        }
        let a = random_expr(rng, depth - 1);
        match rng.below(6) {
            0 => scalar(ExprKind::Neg(Box::new(a))),
            1 => bin(BinOp::Add, a, random_expr(rng, depth - 1)),
            2 => bin(BinOp::Sub, a, random_expr(rng, depth - 1)),
            3 => bin(BinOp::Mul, a, random_expr(rng, depth - 1)),
            4 => bin(BinOp::Div, a, random_expr(rng, depth - 1)),
            _ => {
                // Mostly small exponents (negative and zero among them), some past the limits.
                let k = if rng.below(5) == 0 {
                    rng.below(41) as i64 - 20
                } else {
                    rng.below(7) as i64 - 3
                };
                bin(BinOp::Pow, a, num(BigRational::from_integer(k.into())))
            }
        }
    }

    /// The exact value of a constant expression, `None` where a denominator vanishes.
    fn eval(e: &Expr, eta: &BigRational, c: &BigRational, s: &BigRational) -> Option<BigRational> {
        let ev = |x: &Expr| eval(x, eta, c, s);
        Some(match &e.kind {
            ExprKind::Num(n) => n.clone(),
            ExprKind::Small => eta.clone(),
            ExprKind::Hyper(h) if h == "c" => c.clone(),
            ExprKind::Hyper(h) if h == "s" => s.clone(),
            ExprKind::Neg(a) => -ev(a)?,
            ExprKind::Bin(op, a, b) => {
                let (a, b) = (ev(a)?, ev(b)?);
                match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div if b.is_zero() => return None,
                    BinOp::Div => a / b,
                    BinOp::Pow => {
                        let k = b.to_integer().to_i32().expect("integer exponent");
                        if k < 0 && a.is_zero() {
                            return None;
                        }
                        num_traits::pow::Pow::pow(a, k)
                    }
                    BinOp::MatMul => unreachable!(),
                }
            }
            other => panic!("not a constant: {other:?}"),
        })
    }

    #[test]
    fn normal_forms_keep_the_value() {
        let values: Vec<BigRational> = [(-3, 2), (-2, 3), (-1, 3), (1, 2), (5, 4), (2, 1), (-7, 5)]
            .iter()
            .map(|&(n, d)| BigRational::new(BigInt::from(n), BigInt::from(d)))
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut compared, mut normalised) = (0, 0);
        for _ in 0..3000 {
            let e = random_expr(&mut rng, 5);
            let n = normalize(e.clone());
            if n != e {
                normalised += 1;
            }
            for _ in 0..4 {
                let mut pick = || values[rng.below(values.len() as u64) as usize].clone();
                let (eta, c, s) = (pick(), pick(), pick());
                if let Some(want) = eval(&e, &eta, &c, &s) {
                    assert_eq!(eval(&n, &eta, &c, &s), Some(want), "{e:?} became {n:?}");
                    compared += 1;
                }
            }
        }
        assert!(
            compared > 5000 && normalised > 1000,
            "{compared} {normalised}"
        );
    }
}
