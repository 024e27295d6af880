//! Elementwise functions of the optimizer's state: `1/(σ0 √u + ε0)`, `exp(-c t)`.
//!
//! Adaptive methods divide by and take roots of their states componentwise. In a tensor
//! term such a factor is an [`crate::algebra::tensor::Kind::Elem`] atom: a scalar function
//! applied to the components at one index (`φ(u_i, m_i)`), or to the scalar states (the
//! clock `t`). The function itself is an [`FExpr`] over state variables and
//! hyperparameter constants, kept in a per-derivation table ([`Table`]) and referred
//! to by number.
//!
//! Identity of functions is decided numerically (polynomial identity testing in the
//! style of Schwartz–Zippel): every function is evaluated at a few fixed random points
//! and two functions with the same values are the same function. So `σ0 √u/(σ0 √u + ε0)`
//! and `1 - ε0/(σ0 √u + ε0)` are one entry, and a combination that vanishes identically
//! is recognised as zero, whatever form the algebra produced it in.

use crate::algebra::poly::{Poly, Sym};
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};
use std::cell::RefCell;

/// A scalar function of state components and hyperparameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FExpr {
    /// A constant: a Laurent polynomial in the hyperparameters.
    Const(Poly),
    /// The component of state variable `v` at the function's index (or the scalar state).
    Var(u8),
    Sum(Vec<FExpr>),
    Prod(Vec<FExpr>),
    /// `base^q` with a rational exponent (`q = 1/2` is the square root).
    Pow(Box<FExpr>, BigRational),
    Exp(Box<FExpr>),
    Log(Box<FExpr>),
    /// `|a|`: what `sqrt(a^2)` is (never `a`: the state may be negative).
    Abs(Box<FExpr>),
    /// `sign(a)`: −1, 0 or 1. Its derivative is 0 away from `a = 0`.
    Sign(Box<FExpr>),
    /// `Φ(a)`, the standard normal distribution function.
    Ncdf(Box<FExpr>),
    /// `φ(a) = exp(−a²/2)/√(2π)`, the standard normal density.
    Npdf(Box<FExpr>),
    /// A field of the problem at the function's index: `∂_i f` or `Σ_ii` (the Gaussian
    /// averages of non-smooth maps of the gradient noise read them).
    Field(Field),
    /// `Σ_j a_j`: the sum of an elementwise function over the index, a scalar (`‖m‖²`
    /// is `Σ_j m_j²`). Inside it, states and fields are read at the summed index; outside
    /// it, at the function's own. A derivative by a leaf treats it as a constant unless
    /// the leaf is the node itself ([`FExpr::contractions`] lists them for the chain rule).
    Contract(Box<FExpr>),
}

/// A field of the problem read componentwise by an elementwise function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `∂_i f` at the current parameter.
    Grad,
    /// `Σ_ii`, the variance of the problem's gradient noise at the current parameter.
    NoiseVar,
}

impl Field {
    /// The number an evaluator's variable callback receives for this field (beyond any
    /// state variable's).
    pub fn var_id(self) -> u8 {
        match self {
            Field::Grad => 254,
            Field::NoiseVar => 255,
        }
    }

    /// The field a callback number stands for, if any.
    pub fn from_var_id(v: u8) -> Option<Field> {
        match v {
            254 => Some(Field::Grad),
            255 => Some(Field::NoiseVar),
            _ => None,
        }
    }
}

fn rat(n: i64, d: i64) -> BigRational {
    BigRational::new(n.into(), d.into())
}

/// Whether a rational is an even integer.
fn even(q: &BigRational) -> bool {
    q.is_integer() && (q.to_integer() % 2u8).is_zero()
}

impl FExpr {
    pub fn constant(c: Poly) -> FExpr {
        FExpr::Const(c)
    }

    pub fn one() -> FExpr {
        FExpr::Const(Poly::one())
    }

    pub fn is_const(&self) -> bool {
        matches!(self, FExpr::Const(_))
    }

    pub fn as_const(&self) -> Option<&Poly> {
        match self {
            FExpr::Const(p) => Some(p),
            _ => None,
        }
    }

    pub fn pow(self, q: BigRational) -> FExpr {
        FExpr::Pow(Box::new(self), q).simplify()
    }

    pub fn times(self, other: FExpr) -> FExpr {
        FExpr::Prod(vec![self, other]).simplify()
    }

    pub fn plus(self, other: FExpr) -> FExpr {
        FExpr::Sum(vec![self, other]).simplify()
    }

    pub fn scale(self, c: &Poly) -> FExpr {
        FExpr::Prod(vec![FExpr::Const(c.clone()), self]).simplify()
    }

    /// Light normal form: flattened sums and products, constants folded, powers of equal
    /// bases combined. (Identity is decided numerically, so this is for size only.)
    pub fn simplify(self) -> FExpr {
        match self {
            FExpr::Sum(items) => {
                let mut konst = Poly::zero();
                let mut rest: Vec<FExpr> = Vec::new();
                for i in items.into_iter().map(FExpr::simplify) {
                    match i {
                        FExpr::Const(c) => konst.add_assign(&c),
                        FExpr::Sum(inner) => rest.extend(inner),
                        other => rest.push(other),
                    }
                }
                if !konst.is_zero() {
                    rest.push(FExpr::Const(konst));
                }
                rest.sort();
                match rest.len() {
                    0 => FExpr::Const(Poly::zero()),
                    1 => rest.pop().expect("one item"),
                    _ => FExpr::Sum(rest),
                }
            }
            FExpr::Prod(items) => {
                let mut konst = Poly::one();
                // base → exponent
                let mut powers: Vec<(FExpr, BigRational)> = Vec::new();
                let mut push =
                    |b: FExpr, q: BigRational| match powers.iter_mut().find(|(x, _)| *x == b) {
                        Some((_, e)) => *e += q,
                        None => powers.push((b, q)),
                    };
                for i in items.into_iter().map(FExpr::simplify) {
                    match i {
                        FExpr::Const(c) => konst = konst.mul(&c),
                        FExpr::Prod(inner) => {
                            for j in inner {
                                match j {
                                    FExpr::Const(c) => konst = konst.mul(&c),
                                    FExpr::Pow(b, q) => push(*b, q),
                                    other => push(other, BigRational::one()),
                                }
                            }
                        }
                        FExpr::Pow(b, q) => push(*b, q),
                        other => push(other, BigRational::one()),
                    }
                }
                if konst.is_zero() {
                    return FExpr::Const(Poly::zero());
                }
                let mut factors: Vec<FExpr> = powers
                    .into_iter()
                    .filter(|(_, q)| !q.is_zero())
                    .map(|(b, q)| {
                        if q.is_one() {
                            b
                        } else {
                            FExpr::Pow(Box::new(b), q)
                        }
                    })
                    .collect();
                factors.sort();
                if factors.is_empty() {
                    return FExpr::Const(konst);
                }
                if konst != Poly::one() {
                    factors.insert(0, FExpr::Const(konst));
                }
                if factors.len() == 1 {
                    factors.pop().expect("one factor")
                } else {
                    FExpr::Prod(factors)
                }
            }
            FExpr::Pow(b, q) => {
                let b = b.simplify();
                if q.is_zero() {
                    return FExpr::one();
                }
                if q.is_one() {
                    return b;
                }
                match b {
                    // (b^p)^q = b^(pq) holds where the left side is real, except when p
                    // is even and q is not an integer: then b^p = |b|^p, and the result
                    // is |b|^(pq) (sqrt(m^2) = |m|, not m).
                    FExpr::Pow(inner, p) if even(&p) && !q.is_integer() => {
                        let pq = p * q;
                        if even(&pq) {
                            FExpr::Pow(inner, pq).simplify()
                        } else {
                            FExpr::Pow(Box::new(FExpr::Abs(inner)), pq).simplify()
                        }
                    }
                    FExpr::Pow(inner, p) => FExpr::Pow(inner, p * q).simplify(),
                    // |b|^k = b^k for an even k.
                    FExpr::Abs(inner) if even(&q) => FExpr::Pow(inner, q).simplify(),
                    FExpr::Const(c) if c == Poly::one() => FExpr::one(),
                    FExpr::Const(c) if q.is_integer() => {
                        let k = q.to_integer().to_i32().unwrap_or(1);
                        match (k >= 0, c.inverse()) {
                            (true, _) => {
                                FExpr::Const((0..k).fold(Poly::one(), |acc, _| acc.mul(&c)))
                            }
                            (false, Some(inv)) => {
                                FExpr::Const((0..-k).fold(Poly::one(), |acc, _| acc.mul(&inv)))
                            }
                            (false, None) => FExpr::Pow(Box::new(FExpr::Const(c)), q),
                        }
                    }
                    // (ab)^q = a^q b^q for an integer q, or when every factor is
                    // nonnegative; (-1·-1)^(1/2) = 1 is not i·i.
                    FExpr::Prod(items)
                        if q.is_integer() || items.iter().all(FExpr::nonnegative) =>
                    {
                        FExpr::Prod(
                            items
                                .into_iter()
                                .map(|i| FExpr::Pow(Box::new(i), q.clone()))
                                .collect(),
                        )
                        .simplify()
                    }
                    other => FExpr::Pow(Box::new(other), q),
                }
            }
            FExpr::Exp(a) => match a.simplify() {
                FExpr::Const(c) if c.is_zero() => FExpr::one(),
                FExpr::Log(inner) => *inner,
                other => FExpr::Exp(Box::new(other)),
            },
            FExpr::Log(a) => match a.simplify() {
                FExpr::Const(c) if c == Poly::one() => FExpr::Const(Poly::zero()),
                FExpr::Exp(inner) => *inner,
                other => FExpr::Log(Box::new(other)),
            },
            FExpr::Abs(a) => match a.simplify() {
                FExpr::Const(c) => match c.as_constant() {
                    Some(n) => FExpr::Const(Poly::constant(n.abs())),
                    None => FExpr::Abs(Box::new(FExpr::Const(c))),
                },
                // |a| = a where a is known nonnegative; ||a|| = |a|.
                other if other.nonnegative() => other,
                // |a^q| = |a|^q for an integer q (a non-integer power is nonnegative).
                FExpr::Pow(b, q) => FExpr::Pow(Box::new(FExpr::Abs(b)), q).simplify(),
                other => FExpr::Abs(Box::new(other)),
            },
            FExpr::Sign(a) => match a.simplify() {
                FExpr::Const(c) => match c.as_constant() {
                    Some(n) => FExpr::Const(Poly::int(if n.is_positive() {
                        1
                    } else if n.is_negative() {
                        -1
                    } else {
                        0
                    })),
                    None => FExpr::Sign(Box::new(FExpr::Const(c))),
                },
                FExpr::Sign(inner) => FExpr::Sign(inner),
                other => FExpr::Sign(Box::new(other)),
            },
            FExpr::Ncdf(a) => match a.simplify() {
                FExpr::Const(c) if c.is_zero() => FExpr::Const(Poly::constant(rat(1, 2))),
                other => FExpr::Ncdf(Box::new(other)),
            },
            FExpr::Npdf(a) => FExpr::Npdf(Box::new(a.simplify())),
            FExpr::Contract(a) => FExpr::Contract(Box::new(a.simplify())),
            leaf => leaf,
        }
    }

    /// `∂/∂ var`.
    pub fn derivative(&self, var: u8) -> FExpr {
        self.derivative_by(&FExpr::Var(var))
    }

    /// `∂/∂ leaf` for a leaf: a state variable ([`FExpr::Var`]) or a field
    /// ([`FExpr::Field`]).
    pub fn derivative_by(&self, leaf: &FExpr) -> FExpr {
        let var = leaf;
        match self {
            FExpr::Const(_) => FExpr::Const(Poly::zero()),
            FExpr::Var(_) | FExpr::Field(_) | FExpr::Contract(_) => FExpr::Const(if self == leaf {
                Poly::one()
            } else {
                Poly::zero()
            }),
            FExpr::Sum(items) => {
                FExpr::Sum(items.iter().map(|i| i.derivative_by(var)).collect()).simplify()
            }
            FExpr::Prod(items) => {
                let mut terms = Vec::new();
                for k in 0..items.len() {
                    let d = items[k].derivative_by(var);
                    if matches!(&d, FExpr::Const(c) if c.is_zero()) {
                        continue;
                    }
                    let mut factors = items.clone();
                    factors[k] = d;
                    terms.push(FExpr::Prod(factors));
                }
                FExpr::Sum(terms).simplify()
            }
            FExpr::Pow(b, q) => {
                let db = b.derivative_by(var);
                if matches!(&db, FExpr::Const(c) if c.is_zero()) {
                    return FExpr::Const(Poly::zero());
                }
                // d|a|^q = q |a|^(q-2) a da: finite at a = 0 for q ≥ 2 (as |a|³ is smooth).
                if let FExpr::Abs(a) = &**b {
                    return FExpr::Prod(vec![
                        FExpr::Const(Poly::constant(q.clone())),
                        FExpr::Pow(b.clone(), q - BigRational::from_integer(2.into())),
                        (**a).clone(),
                        a.derivative_by(var),
                    ])
                    .simplify();
                }
                FExpr::Prod(vec![
                    FExpr::Const(Poly::constant(q.clone())),
                    FExpr::Pow(b.clone(), q - BigRational::one()),
                    db,
                ])
                .simplify()
            }
            FExpr::Exp(a) => {
                FExpr::Prod(vec![FExpr::Exp(a.clone()), a.derivative_by(var)]).simplify()
            }
            FExpr::Log(a) => FExpr::Prod(vec![
                FExpr::Pow(a.clone(), -BigRational::one()),
                a.derivative_by(var),
            ])
            .simplify(),
            // d|a| = sign(a) da, away from a = 0 where |a| has its kink.
            FExpr::Abs(a) => {
                FExpr::Prod(vec![FExpr::Sign(a.clone()), a.derivative_by(var)]).simplify()
            }
            // d sign(a) = 0 away from a = 0.
            FExpr::Sign(_) => FExpr::Const(Poly::zero()),
            FExpr::Ncdf(a) => {
                FExpr::Prod(vec![FExpr::Npdf(a.clone()), a.derivative_by(var)]).simplify()
            }
            // φ'(a) = −a φ(a).
            FExpr::Npdf(a) => FExpr::Prod(vec![
                FExpr::Const(Poly::int(-1)),
                (**a).clone(),
                self.clone(),
                a.derivative_by(var),
            ])
            .simplify(),
        }
    }

    /// Whether the function is nonnegative wherever it is defined (a sufficient test:
    /// |a|, even powers, non-integer powers (real only for a nonnegative base), exp,
    /// nonnegative numbers, and products of these).
    pub fn nonnegative(&self) -> bool {
        match self {
            FExpr::Const(c) => c.as_constant().is_some_and(|n| !n.is_negative()),
            FExpr::Abs(_) | FExpr::Exp(_) | FExpr::Ncdf(_) | FExpr::Npdf(_) => true,
            FExpr::Pow(b, q) => !q.is_integer() || even(q) || b.nonnegative(),
            FExpr::Prod(items) | FExpr::Sum(items) => items.iter().all(FExpr::nonnegative),
            FExpr::Contract(a) => a.nonnegative(),
            FExpr::Field(f) => *f == Field::NoiseVar,
            FExpr::Var(_) | FExpr::Log(_) | FExpr::Sign(_) => false,
        }
    }

    /// Visits every node, parents before children.
    pub fn walk(&self, visit: &mut dyn FnMut(&FExpr)) {
        self.walk_pruned(&mut |n| {
            visit(n);
            true
        });
    }

    /// Visits nodes, parents before children; a node's children are visited only when
    /// `visit` returns true for it.
    fn walk_pruned(&self, visit: &mut dyn FnMut(&FExpr) -> bool) {
        if !visit(self) {
            return;
        }
        match self {
            FExpr::Const(_) | FExpr::Var(_) | FExpr::Field(_) => {}
            FExpr::Sum(items) | FExpr::Prod(items) => {
                items.iter().for_each(|i| i.walk_pruned(visit))
            }
            FExpr::Pow(b, _)
            | FExpr::Exp(b)
            | FExpr::Log(b)
            | FExpr::Abs(b)
            | FExpr::Sign(b)
            | FExpr::Ncdf(b)
            | FExpr::Npdf(b)
            | FExpr::Contract(b) => b.walk_pruned(visit),
        }
    }

    /// The distinct sums over the index ([`FExpr::Contract`]) in the function, outermost
    /// first.
    pub fn contractions(&self) -> Vec<FExpr> {
        let mut out: Vec<FExpr> = Vec::new();
        self.walk(&mut |n| {
            if matches!(n, FExpr::Contract(_)) && !out.contains(n) {
                out.push(n.clone());
            }
        });
        out
    }

    /// Whether some node satisfies `pred`.
    fn any(&self, pred: &dyn Fn(&FExpr) -> bool) -> bool {
        let mut found = false;
        self.walk(&mut |n| found |= pred(n));
        found
    }

    /// Whether this node is a read of `var` (a state variable, or a field by its
    /// [`Field::var_id`]).
    fn is_read_of(&self, var: u8) -> bool {
        match self {
            FExpr::Var(v) => *v == var,
            FExpr::Field(f) => f.var_id() == var,
            _ => false,
        }
    }

    /// Whether the function reads `var` (a state variable, or a field by its
    /// [`Field::var_id`]).
    pub fn reads(&self, var: u8) -> bool {
        self.any(&|n| n.is_read_of(var))
    }

    /// Whether the function reads `var` at its own index: outside every sum over the
    /// index (so that, for a vector `var`, its value is a vector).
    pub fn reads_here(&self, var: u8) -> bool {
        let mut found = false;
        self.walk_pruned(&mut |n| {
            found |= n.is_read_of(var);
            !matches!(n, FExpr::Contract(_))
        });
        found
    }

    /// The value at a point: `var(v)` for state components, `sym(s)` for symbols. A sum
    /// over the index ([`FExpr::Contract`]) has one term here, as in d = 1; a function of
    /// d-vectors is evaluated by [`FExpr::eval_at`].
    pub fn eval(&self, var: &dyn Fn(u8) -> f64, sym: &dyn Fn(Sym) -> f64) -> f64 {
        self.eval_at(0, 1, &|v, _| var(v), sym)
    }

    /// The value at component `here` of a point in dimension `dim`: `var(v, i)` is state
    /// variable (or field) `v` at component `i` (a scalar state ignores `i`); a sum over
    /// the index runs `i` over `0..dim`.
    pub fn eval_at(
        &self,
        here: usize,
        dim: usize,
        var: &dyn Fn(u8, usize) -> f64,
        sym: &dyn Fn(Sym) -> f64,
    ) -> f64 {
        let ev = |a: &FExpr| a.eval_at(here, dim, var, sym);
        match self {
            FExpr::Const(c) => c.eval(sym),
            FExpr::Var(v) => var(*v, here),
            FExpr::Sum(items) => items.iter().map(ev).sum(),
            FExpr::Prod(items) => items.iter().map(ev).product(),
            FExpr::Pow(b, q) => {
                let x = ev(b);
                if q.is_integer() {
                    x.powi(q.to_integer().to_i32().unwrap_or(1))
                } else {
                    x.powf(q.to_f64().unwrap_or(f64::NAN))
                }
            }
            FExpr::Exp(a) => ev(a).exp(),
            FExpr::Log(a) => ev(a).ln(),
            FExpr::Abs(a) => ev(a).abs(),
            FExpr::Field(f) => var(f.var_id(), here),
            FExpr::Sign(a) => {
                let x = ev(a);
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else if x == 0.0 {
                    0.0
                } else {
                    f64::NAN
                }
            }
            FExpr::Ncdf(a) => 0.5 * libm::erfc(-ev(a) / std::f64::consts::SQRT_2),
            FExpr::Npdf(a) => {
                let x = ev(a);
                (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
            }
            FExpr::Contract(a) => (0..dim).map(|j| a.eval_at(j, dim, var, sym)).sum(),
        }
    }

    /// Every symbol the constants use.
    pub fn symbols(&self, out: &mut Vec<Sym>) {
        self.walk(&mut |n| {
            if let FExpr::Const(c) = n {
                for (m, _) in c.terms() {
                    for (s, _) in m {
                        if !out.contains(s) {
                            out.push(*s);
                        }
                    }
                }
            }
        });
    }

    /// Whether the function uses Φ or φ (a Gaussian average of a kink).
    pub fn uses_normal(&self) -> bool {
        self.any(&|n| matches!(n, FExpr::Ncdf(_) | FExpr::Npdf(_)))
    }

    /// The square root.
    pub fn sqrt(self) -> FExpr {
        self.pow(rat(1, 2))
    }
}

/// Points at which functions are compared: values for state variables and symbols.
/// The first [`POSITIVE`] have every value positive; the others give each value a
/// random sign, so that `m` and `|m|`, or `sqrt(m^2)` and `m`, are told apart.
const POINTS: usize = 7;
/// The points with every value positive.
pub const POSITIVE: usize = 3;

fn point_value(point: usize, salt: u64, index: u64) -> f64 {
    // A fixed hash to (0.35, 1.65): positive, away from 0 and 1, distinct per variable.
    let mut x = (point as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ (index + 1).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 29;
    let magnitude = 0.35 + 1.3 * ((x >> 11) as f64 / (1u64 << 53) as f64);
    // Among the mixed points: the even-numbered values negative, the odd ones, all of
    // them, and a pseudo-random half.
    let negative = match point.checked_sub(POSITIVE) {
        None => false,
        Some(0) => index % 2 == 0,
        Some(1) => index % 2 == 1,
        Some(2) => true,
        Some(_) => x & 1 == 1,
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// The function's values at the comparison points.
pub fn fingerprint(f: &FExpr) -> [f64; POINTS] {
    let mut out = [0.0; POINTS];
    for (p, o) in out.iter_mut().enumerate() {
        // Three components, so that a sum over the index differs from its term; the
        // function's own index is component 0.
        *o = f.eval_at(
            0,
            3,
            &|v, i| {
                let x = point_value(p, 1, v as u64 + 256 * i as u64);
                // A variance is positive at every point.
                if Field::from_var_id(v) == Some(Field::NoiseVar) {
                    x.abs()
                } else {
                    x
                }
            },
            &|s| point_value(p, 2, s as u64),
        );
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// Whether two fingerprints are those of one function: equal values wherever either
/// is defined (a function undefined at a point is only equal to one that is undefined
/// there too), and defined at the positive points.
fn same_print(a: &[f64; POINTS], b: &[f64; POINTS]) -> bool {
    a[..POSITIVE].iter().all(|x| x.is_finite())
        && a.iter().zip(b).all(|(x, y)| {
            (x.is_finite() && y.is_finite() && close(*x, *y)) || (!x.is_finite() && !y.is_finite())
        })
}

/// Whether a fingerprint is that of the zero function (where it is defined; it must
/// be defined at the positive points).
pub fn is_zero_print(fp: &[f64; POINTS], scale: f64) -> bool {
    fp[..POSITIVE].iter().all(|x| x.is_finite())
        && fp
            .iter()
            .all(|x| !x.is_finite() || x.abs() <= 1e-9 * scale.max(1e-300))
}

/// One side of a [`Pair`]: `sign(A + C ξ)` (`abs` false) or `|A + C ξ|` at an index, `A`
/// and `C` elementwise functions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Side {
    pub abs: bool,
    pub mean: FExpr,
    pub coef: FExpr,
}

/// The mean of a product of two kinks of one Gaussian noise sample at two indices,
/// `P_ij = E[F(A_i + C_i ξ_i) G(A'_j + C'_j ξ_j)]` with `ξ ~ N(0, Σ)` (or `N(0, c I)`):
/// a [`crate::algebra::tensor::Kind::Pair`] factor. For i ≠ j a bivariate normal
/// expectation (Φ₂, Φ, φ; Rosenbaum 1961), for i = j the univariate one, elementwise
/// function number `diag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub left: Side,
    pub right: Side,
    /// `None`: the problem's Σ(x); `Some(c)`: covariance `c·I`.
    pub scale: Option<Poly>,
    /// The elementwise function `E[F(A_i + C_i ξ_i) G(A'_i + C'_i ξ_i)]` (the entries i = j).
    pub diag: u32,
}

/// The functions of one derivation, by number.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub functions: Vec<FExpr>,
    prints: Vec<[f64; POINTS]>,
    /// The kink pairs ([`Pair`]), by number.
    pub pairs: Vec<Pair>,
}

/// Tables are equal when their functions are (the comparison values follow from them).
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.pairs == other.pairs && self.functions == other.functions
    }
}

impl Table {
    /// The number of a function, adding it if it is new.
    pub fn intern(&mut self, f: FExpr) -> u32 {
        let f = f.simplify();
        let fp = fingerprint(&f);
        let finite = fp[..POSITIVE].iter().all(|x| x.is_finite());
        if finite {
            if let Some(i) = self.prints.iter().position(|p| same_print(p, &fp)) {
                return i as u32;
            }
        } else if let Some(i) = self.functions.iter().position(|g| *g == f) {
            return i as u32;
        }
        self.functions.push(f);
        self.prints.push(fp);
        (self.functions.len() - 1) as u32
    }

    /// Appends a function without looking for an equal one (to rebuild a table).
    pub fn push(&mut self, f: FExpr) -> u32 {
        self.prints.push(fingerprint(&f));
        self.functions.push(f);
        (self.functions.len() - 1) as u32
    }

    pub fn get(&self, id: u32) -> &FExpr {
        &self.functions[id as usize]
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

thread_local! {
    /// How many times this thread's table has been replaced ([`generation`]).
    static GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A number that changes whenever this thread's table is replaced ([`scoped`],
/// `install`): what is cached about functions by id (the canonical forms of
/// [`crate::algebra::tensor`]) is valid only while it stays the same.
pub fn generation() -> u64 {
    GENERATION.with(std::cell::Cell::get)
}

fn next_generation() {
    GENERATION.with(|g| g.set(g.get() + 1));
}

/// Runs `f` with `table` as this thread's table and restores the table that was there
/// before (also when `f` panics); returns `f`'s result and the table as `f` left it.
///
/// Every computation on expressions that hold elementwise functions runs in the scope
/// of the table they were made with: a derivation in a fresh one ([`crate::derive`]),
/// later work on a result in the result's own (`Sme::elem`). So an expression never
/// depends on what another derivation left on the thread.
pub fn scoped<R>(table: Table, f: impl FnOnce() -> R) -> (R, Table) {
    struct Restore(Option<Table>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                TABLE.with(|t| *t.borrow_mut() = previous);
                next_generation();
            }
        }
    }
    let previous = TABLE.with(|t| std::mem::replace(&mut *t.borrow_mut(), table));
    next_generation();
    let restore = Restore(Some(previous));
    let out = f();
    let left = TABLE.with(|t| t.borrow().clone());
    drop(restore);
    (out, left)
}

/// The current table (copied into the result at the end of a derivation).
pub(crate) fn snapshot() -> Table {
    TABLE.with(|t| t.borrow().clone())
}

/// Installs `table` as the current table (within a [`scoped`] run).
pub(crate) fn install(table: Table) {
    TABLE.with(|t| *t.borrow_mut() = table);
    next_generation();
}

/// The number of a kink pair in this thread's table, adding it if it is new.
pub fn intern_pair(p: Pair) -> u32 {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        match t.pairs.iter().position(|q| *q == p) {
            Some(i) => i as u32,
            None => {
                t.pairs.push(p);
                (t.pairs.len() - 1) as u32
            }
        }
    })
}

/// Kink pair number `id` of this thread's table.
pub fn get_pair(id: u32) -> Pair {
    TABLE.with(|t| t.borrow().pairs[id as usize].clone())
}

pub fn intern(f: FExpr) -> u32 {
    TABLE.with(|t| t.borrow_mut().intern(f))
}

pub fn get(id: u32) -> FExpr {
    TABLE.with(|t| t.borrow().get(id).clone())
}

/// Whether function `id` is identically zero.
pub fn is_zero(id: u32) -> bool {
    TABLE.with(|t| {
        let t = t.borrow();
        let i = id as usize;
        // The table keeps each function's fingerprint beside it.
        matches!(&t.functions[i], FExpr::Const(c) if c.is_zero())
            || is_zero_print(&t.prints[i], 1.0)
    })
}

/// Whether a function is a constant (no state variable read), and its value if it is a
/// constant polynomial.
pub fn constant_value(f: &FExpr) -> Option<Poly> {
    f.as_const().cloned()
}

/// `Σ c_k f_k` as one function, or `None` when it vanishes identically.
pub fn combine(parts: &[(Poly, FExpr)]) -> Option<FExpr> {
    let sum = FExpr::Sum(parts.iter().map(|(c, f)| f.clone().scale(c)).collect()).simplify();
    let fp = fingerprint(&sum);
    let scale: f64 = parts
        .iter()
        .map(|(c, f)| {
            let g = fingerprint(&f.clone().scale(c));
            g.iter().map(|x| x.abs()).fold(0.0, f64::max)
        })
        .fold(0.0, f64::max);
    if is_zero_print(&fp, scale) {
        return None;
    }
    Some(constant_if_so(sum))
}

/// A function that does not depend on the state, as the constant it is, when that
/// constant is a polynomial in the symbols: the state set to 1 and simplified gives a
/// candidate, confirmed numerically.
pub fn constant_if_so(f: FExpr) -> FExpr {
    if f.is_const() {
        return f;
    }
    fn at_one(f: &FExpr) -> FExpr {
        match f {
            FExpr::Var(_) => FExpr::one(),
            FExpr::Const(_) => f.clone(),
            FExpr::Sum(items) => FExpr::Sum(items.iter().map(at_one).collect()),
            FExpr::Prod(items) => FExpr::Prod(items.iter().map(at_one).collect()),
            FExpr::Pow(b, q) => FExpr::Pow(Box::new(at_one(b)), q.clone()),
            FExpr::Exp(a) => FExpr::Exp(Box::new(at_one(a))),
            FExpr::Log(a) => FExpr::Log(Box::new(at_one(a))),
            FExpr::Abs(a) => FExpr::Abs(Box::new(at_one(a))),
            FExpr::Field(_) => FExpr::one(),
            FExpr::Sign(a) => FExpr::Sign(Box::new(at_one(a))),
            FExpr::Ncdf(a) => FExpr::Ncdf(Box::new(at_one(a))),
            FExpr::Npdf(a) => FExpr::Npdf(Box::new(at_one(a))),
            FExpr::Contract(a) => FExpr::Contract(Box::new(at_one(a))),
        }
    }
    let mut candidate = at_one(&f).simplify();
    if !candidate.is_const() {
        // A pure number (the same value at every comparison point)?
        let fp = fingerprint(&f);
        let v = fp[0];
        if !(v.is_finite() && fp.iter().all(|x| !x.is_finite() || close(*x, v))) {
            return f;
        }
        match small_rational(v) {
            Some(r) => candidate = FExpr::Const(Poly::constant(r)),
            None => return f,
        }
    }
    let (a, b) = (fingerprint(&f), fingerprint(&candidate));
    if a[..POSITIVE].iter().all(|x| x.is_finite())
        && a.iter()
            .zip(&b)
            .all(|(x, y)| !x.is_finite() || (y.is_finite() && close(*x, *y)))
    {
        candidate
    } else {
        f
    }
}

/// The rational with a small denominator (at most 720) that `v` is, if any.
fn small_rational(v: f64) -> Option<BigRational> {
    for d in 1..=720i64 {
        let n = (v * d as f64).round();
        if n.abs() < 1e15 && close(n / d as f64, v) {
            return Some(BigRational::new((n as i64).into(), d.into()));
        }
    }
    None
}

/// Whether a rational is negative (for printers).
pub fn negative(q: &BigRational) -> bool {
    q.is_negative()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(i: u8) -> FExpr {
        FExpr::Var(i)
    }

    #[test]
    fn equal_functions_share_a_number() {
        let mut t = Table::default();
        // σ0√u/(σ0√u + ε0)  ==  1 - ε0/(σ0√u + ε0)
        let (s0, e0) = (Poly::power(0, 1), Poly::power(1, 1));
        let p = v(1).sqrt().scale(&s0).plus(FExpr::Const(e0.clone()));
        let a = v(1).sqrt().scale(&s0).times(p.clone().pow(rat(-1, 1)));
        let b = FExpr::one().plus(p.pow(rat(-1, 1)).scale(&e0.neg()));
        assert_eq!(t.intern(a), t.intern(b));
        assert_ne!(t.intern(v(1)), t.intern(v(2)));
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let f = v(1)
            .sqrt()
            .scale(&Poly::int(3))
            .plus(FExpr::Const(Poly::int(2)))
            .pow(rat(-1, 1))
            .times(FExpr::Exp(Box::new(v(2).scale(&Poly::int(-1)))));
        let df = f.derivative(1);
        let at = |u: f64, w: f64| f.eval(&|i| if i == 1 { u } else { w }, &|_| 1.0);
        let (u, w, h) = (0.7, 1.3, 1e-6);
        let fd = (at(u + h, w) - at(u - h, w)) / (2.0 * h);
        let exact = df.eval(&|i| if i == 1 { u } else { w }, &|_| 1.0);
        assert!((fd - exact).abs() < 1e-6, "{fd} vs {exact}");
    }

    /// A deterministic stream of pseudo-random numbers.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// A random function of two state variables and one symbol, of depth at most
    /// `depth`, with every kind of node and exponents that exercise the power rules.
    fn random_fexpr(rnd: &mut dyn FnMut() -> u64, depth: u32) -> FExpr {
        let leaf = depth == 0 || rnd() % 4 == 0;
        if leaf {
            return match rnd() % 6 {
                0 | 1 => v((rnd() % 2) as u8),
                2 => FExpr::Const(Poly::power(0, 1)),
                _ => FExpr::Const(Poly::constant(rat(
                    [-2, -1, 0, 1, 2, 3][(rnd() % 6) as usize],
                    [1, 2][(rnd() % 2) as usize],
                ))),
            };
        }
        let exponents = [
            (-2, 1),
            (-1, 1),
            (1, 2),
            (-1, 2),
            (2, 1),
            (3, 1),
            (1, 3),
            (3, 2),
            (4, 1),
            (2, 3),
        ];
        let sub = |rnd: &mut dyn FnMut() -> u64| random_fexpr(rnd, depth - 1);
        match rnd() % 7 {
            0 => FExpr::Sum(vec![sub(rnd), sub(rnd), sub(rnd)]),
            1 => FExpr::Prod(vec![sub(rnd), sub(rnd)]),
            2 | 3 => {
                let (n, d) = exponents[(rnd() % exponents.len() as u64) as usize];
                FExpr::Pow(Box::new(sub(rnd)), rat(n, d))
            }
            4 => FExpr::Exp(Box::new(sub(rnd))),
            5 => FExpr::Log(Box::new(sub(rnd))),
            _ => FExpr::Abs(Box::new(sub(rnd))),
        }
    }

    /// The largest magnitude of any subexpression at a point (the scale of rounding).
    fn magnitude(f: &FExpr, var: &dyn Fn(u8) -> f64, sym: &dyn Fn(Sym) -> f64) -> f64 {
        let here = f.eval(var, sym).abs();
        let below = match f {
            FExpr::Sum(items) | FExpr::Prod(items) => items
                .iter()
                .map(|i| magnitude(i, var, sym))
                .fold(0.0, f64::max),
            FExpr::Pow(b, _) | FExpr::Exp(b) | FExpr::Log(b) | FExpr::Abs(b) => {
                magnitude(b, var, sym)
            }
            _ => 0.0,
        };
        here.max(below)
    }

    /// The values every rewrite is checked at: both signs, zero, the boundaries of the
    /// domains of roots and logarithms (0) and of the rules' cases (±1).
    const PROBES: [f64; 9] = [-2.0, -1.0, -0.375, 0.0, 0.375, 1.0, 2.0, -1.75, 1.25];

    /// Every rewrite of [`FExpr::simplify`] preserves the value wherever the original
    /// function is defined, on both signs and at zero (ruler's check, on random
    /// functions rather than on a list of rules, so a new rule is covered the day it is
    /// written). This is the test that catches `sqrt(m^2) → m`.
    #[test]
    fn simplification_is_sound_on_the_whole_domain() {
        let mut rnd = xorshift(0x9E37_79B9_7F4A_7C15);
        let mut checked = 0;
        for _ in 0..4000 {
            let f = random_fexpr(&mut rnd, 4);
            let g = f.clone().simplify();
            for (i, &a) in PROBES.iter().enumerate() {
                for &b in &PROBES[i % 3..] {
                    for c in [1.5, -0.5] {
                        let var = |k: u8| if k == 0 { a } else { b };
                        let sym = |_| c;
                        let (x, y) = (f.eval(&var, &sym), g.eval(&var, &sym));
                        if !x.is_finite() {
                            continue;
                        }
                        let scale = 1.0 + magnitude(&f, &var, &sym);
                        // (Roots amplify rounding: a sum that cancels to 1e-16 has a
                        // root of 1e-8; values that small on both sides pass.)
                        let tiny = x.abs().max(y.abs()) <= 1e-6 * scale;
                        assert!(
                            y.is_finite() && ((x - y).abs() <= 1e-9 * scale || tiny),
                            "{f:?}\n simplifies to {g:?}\n at x0 = {a}, x1 = {b}, s = {c}: {x} vs {y}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50_000, "only {checked} defined values checked");
    }

    #[test]
    fn roots_of_even_powers_are_absolute_values() {
        let m = || v(0);
        assert_eq!(m().pow(rat(2, 1)).sqrt(), FExpr::Abs(Box::new(m())));
        assert_eq!(m().pow(rat(4, 1)).sqrt(), m().pow(rat(2, 1)));
        assert_eq!(
            m().pow(rat(2, 1)).pow(rat(-1, 2)),
            FExpr::Pow(Box::new(FExpr::Abs(Box::new(m()))), rat(-1, 1))
        );
        // |m|² is m², and m/|m| is not 1.
        assert_eq!(FExpr::Abs(Box::new(m())).pow(rat(2, 1)), m().pow(rat(2, 1)));
        let sign = m().times(m().pow(rat(2, 1)).pow(rat(-1, 2)));
        assert_eq!(sign.eval(&|_| -0.3, &|_| 1.0), -1.0);
        // Functions equal on positive values but not on negative ones are distinct.
        let mut t = Table::default();
        assert_ne!(t.intern(m()), t.intern(FExpr::Abs(Box::new(m()))));
    }

    /// Derivatives agree with central differences at points of both signs where the
    /// function is smooth (two step sizes agree).
    #[test]
    fn derivatives_are_sound_on_both_signs() {
        let mut rnd = xorshift(0x1234_5678_9abc_def1);
        let mut checked = 0;
        for _ in 0..1500 {
            let f = random_fexpr(&mut rnd, 3).simplify();
            let df = f.derivative(0);
            for &a in &PROBES {
                let at = |x: f64| f.eval(&|k| if k == 0 { x } else { 0.8 }, &|_| 1.5);
                let fd = |h: f64| (at(a + h) - at(a - h)) / (2.0 * h);
                let (d1, d2) = (fd(1e-4), fd(5e-5));
                let one_sided = |h: f64| (at(a + h) - at(a)) / h - (at(a) - at(a - h)) / h;
                if !(d1.is_finite() && d2.is_finite())
                    || (d1 - d2).abs() > 1e-6 * (1.0 + d1.abs())
                    || one_sided(1e-6).abs() > 1e-5 * (1.0 + d1.abs())
                {
                    continue; // near a kink or a boundary of the domain
                }
                let exact = df.eval(&|k| if k == 0 { a } else { 0.8 }, &|_| 1.5);
                assert!(
                    (exact - d2).abs() <= 1e-5 * (1.0 + d2.abs()),
                    "d/dx0 of {f:?} at {a}: {exact} vs {d2}"
                );
                checked += 1;
            }
        }
        assert!(checked > 2000, "only {checked} derivatives checked");
    }

    #[test]
    fn vanishing_combinations_are_recognised() {
        let f = v(1).sqrt();
        let g = v(1).pow(rat(1, 2)).times(FExpr::one());
        assert!(combine(&[(Poly::one(), f), (Poly::int(-1), g)]).is_none());
    }
}
