//! Coefficients: Laurent polynomials with exact rational coefficients.
//!
//! Every coefficient in a derivation is a polynomial in the small parameter and the
//! hyperparameters, with integer (possibly negative) exponents: `(1/2) c η²`,
//! `σ0 η⁻¹`. Symbols are small integers; their names live in a [`Symbols`] table.
//! The representation is canonical (sorted monomials, no zero coefficients), so equal
//! polynomials are equal values and hash alike.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A symbol's number in its [`Symbols`] table.
pub type Sym = u16;

/// A monomial: `(symbol, exponent)` pairs, sorted by symbol, exponents non-zero.
pub type Monomial = Vec<(Sym, i32)>;

/// A Laurent polynomial over the rationals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Poly {
    terms: BTreeMap<Monomial, BigRational>,
}

/// Names of symbols.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbols {
    names: Vec<String>,
}

impl Symbols {
    pub fn intern(&mut self, name: &str) -> Sym {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i as Sym;
        }
        self.names.push(name.to_string());
        (self.names.len() - 1) as Sym
    }

    pub fn get(&self, name: &str) -> Option<Sym> {
        self.names.iter().position(|n| n == name).map(|i| i as Sym)
    }

    pub fn name(&self, s: Sym) -> &str {
        &self.names[s as usize]
    }

    /// The name of symbol `s`, if there is one.
    pub fn try_name(&self, s: usize) -> Option<&str> {
        self.names.get(s).map(String::as_str)
    }
}

/// `a · b`, without the reduction when a factor is ±1 or both are integers.
fn rat_mul(a: &BigRational, b: &BigRational) -> BigRational {
    if a.is_one() {
        b.clone()
    } else if b.is_one() {
        a.clone()
    } else if a.is_integer() && b.is_integer() {
        BigRational::from_integer(a.numer() * b.numer())
    } else {
        a * b
    }
}

pub fn rat(n: i64, d: i64) -> BigRational {
    BigRational::new(BigInt::from(n), BigInt::from(d))
}

fn mono_mul(a: &Monomial, b: &Monomial) -> Monomial {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i].0 < b[j].0) {
            out.push(a[i]);
            i += 1;
        } else if i == a.len() || b[j].0 < a[i].0 {
            out.push(b[j]);
            j += 1;
        } else {
            let e = a[i].1 + b[j].1;
            if e != 0 {
                out.push((a[i].0, e));
            }
            i += 1;
            j += 1;
        }
    }
    out
}

impl Poly {
    pub fn zero() -> Poly {
        Poly::default()
    }

    pub fn constant(c: BigRational) -> Poly {
        let mut p = Poly::zero();
        if !c.is_zero() {
            p.terms.insert(Vec::new(), c);
        }
        p
    }

    pub fn one() -> Poly {
        Poly::constant(BigRational::one())
    }

    pub fn int(n: i64) -> Poly {
        Poly::constant(BigRational::from_integer(n.into()))
    }

    /// `s^e`.
    pub fn power(s: Sym, e: i32) -> Poly {
        let mut p = Poly::zero();
        let mono = if e == 0 { Vec::new() } else { vec![(s, e)] };
        p.terms.insert(mono, BigRational::one());
        p
    }

    pub fn from_term(mono: Monomial, c: BigRational) -> Poly {
        let mut p = Poly::zero();
        if !c.is_zero() {
            p.terms.insert(mono, c);
        }
        p
    }

    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn terms(&self) -> impl Iterator<Item = (&Monomial, &BigRational)> {
        self.terms.iter()
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn add_term(&mut self, mono: &Monomial, c: &BigRational) {
        if c.is_zero() {
            return;
        }
        match self.terms.get_mut(mono) {
            Some(v) => {
                *v += c;
                if v.is_zero() {
                    self.terms.remove(mono);
                }
            }
            None => {
                self.terms.insert(mono.clone(), c.clone());
            }
        }
    }

    pub fn add_assign(&mut self, other: &Poly) {
        for (m, c) in &other.terms {
            self.add_term(m, c);
        }
    }

    pub fn add(&self, other: &Poly) -> Poly {
        let mut p = self.clone();
        p.add_assign(other);
        p
    }

    pub fn sub(&self, other: &Poly) -> Poly {
        let mut p = self.clone();
        for (m, c) in &other.terms {
            p.add_term(m, &-c);
        }
        p
    }

    pub fn neg(&self) -> Poly {
        Poly {
            terms: self.terms.iter().map(|(m, c)| (m.clone(), -c)).collect(),
        }
    }

    pub fn mul(&self, other: &Poly) -> Poly {
        if self.is_one() {
            return other.clone();
        }
        if other.is_one() {
            return self.clone();
        }
        let mut p = Poly::zero();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &other.terms {
                p.add_owned(mono_mul(m1, m2), rat_mul(c1, c2));
            }
        }
        p
    }

    /// `self · other` without the monomials whose power of `s` exceeds `max` (they are
    /// never formed).
    pub fn mul_upto(&self, other: &Poly, s: Sym, max: i32) -> Poly {
        if self.is_one() {
            return other.truncate(s, max);
        }
        if other.is_one() {
            return self.truncate(s, max);
        }
        let right: Vec<(i32, &Monomial, &BigRational)> = other
            .terms
            .iter()
            .map(|(m, c)| (Poly::exponent(m, s), m, c))
            .collect();
        let mut p = Poly::zero();
        for (m1, c1) in &self.terms {
            let e1 = Poly::exponent(m1, s);
            for (e2, m2, c2) in &right {
                if e1 + e2 <= max {
                    p.add_owned(mono_mul(m1, m2), rat_mul(c1, c2));
                }
            }
        }
        p
    }

    /// Whether this is the constant 1.
    pub fn is_one(&self) -> bool {
        self.terms.len() == 1
            && self
                .terms
                .iter()
                .next()
                .is_some_and(|(m, c)| m.is_empty() && c.is_one())
    }

    /// Adds `c · mono`, taking both by value.
    fn add_owned(&mut self, mono: Monomial, c: BigRational) {
        if c.is_zero() {
            return;
        }
        match self.terms.entry(mono) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                *e.get_mut() += c;
                if e.get().is_zero() {
                    e.remove();
                }
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(c);
            }
        }
    }

    pub fn scale(&self, c: &BigRational) -> Poly {
        if c.is_zero() {
            return Poly::zero();
        }
        Poly {
            terms: self.terms.iter().map(|(m, v)| (m.clone(), v * c)).collect(),
        }
    }

    /// Multiplies by `s^e`.
    pub fn shift(&self, s: Sym, e: i32) -> Poly {
        if e == 0 {
            return self.clone();
        }
        let m = vec![(s, e)];
        Poly {
            terms: self
                .terms
                .iter()
                .map(|(k, v)| (mono_mul(k, &m), v.clone()))
                .collect(),
        }
    }

    /// The exponent of `s` in a monomial (0 if absent).
    pub fn exponent(mono: &Monomial, s: Sym) -> i32 {
        mono.iter().find(|(t, _)| *t == s).map_or(0, |(_, e)| *e)
    }

    /// The smallest exponent of `s` among the terms (`None` for zero).
    pub fn min_power(&self, s: Sym) -> Option<i32> {
        self.terms.keys().map(|m| Poly::exponent(m, s)).min()
    }

    pub fn max_power(&self, s: Sym) -> Option<i32> {
        self.terms.keys().map(|m| Poly::exponent(m, s)).max()
    }

    /// Drops the terms in which `s` has an exponent above `max`.
    pub fn truncate(&self, s: Sym, max: i32) -> Poly {
        Poly {
            terms: self
                .terms
                .iter()
                .filter(|(m, _)| Poly::exponent(m, s) <= max)
                .map(|(m, c)| (m.clone(), c.clone()))
                .collect(),
        }
    }

    /// The coefficient of `s^e`, as a polynomial in the other symbols.
    pub fn coeff(&self, s: Sym, e: i32) -> Poly {
        let mut p = Poly::zero();
        for (m, c) in &self.terms {
            if Poly::exponent(m, s) == e {
                let rest: Monomial = m.iter().copied().filter(|(t, _)| *t != s).collect();
                p.add_term(&rest, c);
            }
        }
        p
    }

    /// The inverse of a single term, or `None`.
    pub fn inverse(&self) -> Option<Poly> {
        if self.terms.len() != 1 {
            return None;
        }
        let (m, c) = self.terms.iter().next()?;
        let inv: Monomial = m.iter().map(|(s, e)| (*s, -e)).collect();
        Some(Poly::from_term(inv, c.recip()))
    }

    /// The constant, if this is one.
    pub fn as_constant(&self) -> Option<BigRational> {
        match self.terms.len() {
            0 => Some(BigRational::zero()),
            1 => self.terms.get(&Vec::new()).cloned(),
            _ => None,
        }
    }

    /// Whether the leading (first) coefficient is negative, for printing signs.
    pub fn leading_negative(&self) -> bool {
        self.terms.values().next().is_some_and(|c| c.is_negative())
    }

    /// Evaluates with numeric values for the symbols.
    pub fn eval(&self, value: &dyn Fn(Sym) -> f64) -> f64 {
        let mut total = 0.0;
        for (m, c) in &self.terms {
            let mut t = rat_to_f64(c);
            for (s, e) in m {
                t *= value(*s).powi(*e);
            }
            total += t;
        }
        total
    }

    /// Writes the polynomial with the given names; `small` is written last in each term.
    pub fn display(&self, syms: &Symbols) -> String {
        if self.is_zero() {
            return "0".to_string();
        }
        let mut out = String::new();
        for (k, (m, c)) in self.terms.iter().enumerate() {
            let neg = c.is_negative();
            if k == 0 {
                if neg {
                    out.push('-');
                }
            } else {
                out.push_str(if neg { " - " } else { " + " });
            }
            let a = c.abs();
            let mut parts: Vec<String> = Vec::new();
            if !a.is_one() || m.is_empty() {
                parts.push(a.to_string());
            }
            for (s, e) in m {
                if *e == 1 {
                    parts.push(syms.name(*s).to_string());
                } else {
                    parts.push(format!("{}^{}", syms.name(*s), e));
                }
            }
            let _ = write!(out, "{}", parts.join("*"));
        }
        out
    }
}

pub fn rat_to_f64(c: &BigRational) -> f64 {
    use num_traits::ToPrimitive;
    c.to_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_exact_and_canonical() {
        let (a, b) = (0, 1);
        let p = Poly::power(a, 1).add(&Poly::power(b, -1));
        let q = p.mul(&p);
        let want = Poly::power(a, 2)
            .add(&Poly::from_term(vec![(a, 1), (b, -1)], rat(2, 1)))
            .add(&Poly::power(b, -2));
        assert_eq!(q, want);
        assert!(q.sub(&want).is_zero());
        assert_eq!(q.min_power(b), Some(-2));
        assert_eq!(q.coeff(b, -1), Poly::power(a, 1).scale(&rat(2, 1)));
        assert_eq!(
            Poly::power(a, 3).scale(&rat(2, 3)).inverse().unwrap(),
            Poly::power(a, -3).scale(&rat(3, 2))
        );
    }
}
