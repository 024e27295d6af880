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

/// Bounds on the size of a power, past which [`Poly::pow`] declines to expand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowLimits {
    /// The largest exponent of a sum of several terms (`(a + b)^k` has up to k+1 terms).
    pub max_power: u64,
    /// The most terms a partial product of such a sum may have.
    pub max_terms: usize,
    /// The most bits (of numerator or denominator) a single term's coefficient may
    /// reach, estimated before it is computed.
    pub max_bits: u64,
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

/// The bits of the larger of a rational's numerator and denominator.
fn rat_bits(c: &BigRational) -> u64 {
    c.numer().bits().max(c.denom().bits())
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

    /// The polynomial reduced with `a·b = b − 1`, the relation of `b = 1/(1 − a)`: no
    /// monomial keeps positive powers of both (`a^i b^j = a^(i−1) b^(j−1) (b − 1)`,
    /// repeated). The value is unchanged wherever `b (1 − a) = 1`.
    pub fn reduce_complement(&self, a: Sym, b: Sym) -> Poly {
        if a == b {
            return self.clone();
        }
        let mut out = Poly::zero();
        let mut work: Vec<(Monomial, BigRational)> = self
            .terms
            .iter()
            .map(|(m, c)| (m.clone(), c.clone()))
            .collect();
        while let Some((mono, c)) = work.pop() {
            let (i, j) = (Poly::exponent(&mono, a), Poly::exponent(&mono, b));
            if i < 1 || j < 1 {
                out.add_term(&mono, &c);
                continue;
            }
            // a^(i−1) b^(j−1) times b, minus the same without b.
            let lower = mono_mul(&mono, &vec![(a.min(b), -1), (a.max(b), -1)]);
            work.push((mono_mul(&lower, &vec![(b, 1)]), c.clone()));
            work.push((lower, -c));
        }
        out
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

    /// `self^k`, or `None` when it is not a Laurent polynomial (a negative power of a
    /// sum or of zero) or exceeds `limits`. A single term raises its exponents and its
    /// coefficient for any `k` whose coefficient stays within `limits.max_bits` (checked
    /// from the base's size before any arithmetic) and whose exponents fit an `i32`; a
    /// sum expands only up to `limits.max_power`, with at most `limits.max_terms` terms
    /// along the way. `0^0 = 1`.
    pub fn pow(&self, k: i64, limits: &PowLimits) -> Option<Poly> {
        if self.terms.len() == 1 {
            let (m, c) = self.terms.iter().next()?;
            let k32 = i32::try_from(k).ok()?;
            let mut mono = Monomial::with_capacity(m.len());
            for (s, e) in m {
                let e = e.checked_mul(k32)?;
                if e != 0 {
                    mono.push((*s, e));
                }
            }
            if rat_bits(c).saturating_mul(k.unsigned_abs()) > limits.max_bits {
                return None;
            }
            let c = if k >= 0 {
                num_traits::pow(c.clone(), usize::try_from(k).ok()?)
            } else {
                num_traits::pow(c.recip(), usize::try_from(k.unsigned_abs()).ok()?)
            };
            return Some(Poly::from_term(mono, c));
        }
        if k.unsigned_abs() > limits.max_power {
            return None;
        }
        let base = if k < 0 { self.inverse()? } else { self.clone() };
        let mut out = Poly::one();
        for _ in 0..k.unsigned_abs() {
            out = out.mul(&base);
            if out.len() > limits.max_terms {
                return None;
            }
        }
        Some(out)
    }

    /// The most bits of a numerator or denominator among the coefficients (0 for zero).
    pub fn max_bits(&self) -> u64 {
        self.terms.values().map(rat_bits).max().unwrap_or(0)
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

    /// The reduction with `a·b = b − 1` keeps the value wherever `b = 1/(1 − a)`: at
    /// negative, zero, small and near-one `a`, on polynomials with mixed, pure and
    /// negative powers (of a third symbol), and leaves no monomial with both.
    #[test]
    fn the_complement_reduction_keeps_the_value() {
        let (a, b, e) = (1, 3, 0);
        let term = |i: i32, j: i32, k: i32, c: i64| {
            let mut m: Monomial = Vec::new();
            for (s, x) in [(e, k), (a, i), (b, j)] {
                if x != 0 {
                    m.push((s, x));
                }
            }
            Poly::from_term(m, rat(c, 1))
        };
        let p = term(1, 3, 1, 1)
            .add(&term(2, 2, 0, -3))
            .add(&term(4, 1, -1, 5))
            .add(&term(0, 2, 0, 7))
            .add(&term(3, 0, 2, -2))
            .add(&term(1, 1, 0, 1));
        let r = p.reduce_complement(a, b);
        assert!(r
            .terms()
            .all(|(m, _)| Poly::exponent(m, a) < 1 || Poly::exponent(m, b) < 1));
        for av in [-0.5, 0.0, 0.1, 0.5, 0.9, 0.999] {
            let bv = 1.0 / (1.0 - av);
            let value = |s: Sym| match s {
                0 => 0.37,
                1 => av,
                _ => bv,
            };
            let (x, y) = (p.eval(&value), r.eval(&value));
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                "a = {av}: {x} vs {y}"
            );
        }
        // (1 + a)/(2(1 − a)³) = b³ − b²/2.
        let hb = term(0, 3, 0, 1).add(&term(1, 3, 0, 1)).scale(&rat(1, 2));
        assert_eq!(
            hb.reduce_complement(a, b),
            term(0, 3, 0, 1).sub(&term(0, 2, 0, 1).scale(&rat(1, 2)))
        );
    }

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

    #[test]
    fn powers_expand_within_the_limits() {
        let limits = PowLimits {
            max_power: 4,
            max_terms: 4,
            max_bits: 20,
        };
        let (a, b) = (0, 1);
        let t = Poly::from_term(vec![(a, 1), (b, -2)], rat(2, 3));
        // A single term: exponents and coefficient, for either sign of k.
        assert_eq!(
            t.pow(-3, &limits),
            Some(Poly::from_term(vec![(a, -3), (b, 6)], rat(27, 8)))
        );
        assert_eq!(t.pow(0, &limits), Some(Poly::one()));
        assert_eq!(t.pow(11, &limits), None, "2 bits × 11 > 20");
        assert_eq!(Poly::power(a, 1).pow(20, &limits), Some(Poly::power(a, 20)));
        assert_eq!(Poly::power(a, 1 << 20).pow(1 << 12, &limits), None);
        // A sum: expanded up to max_power, never inverted.
        let s = Poly::power(a, 1).add(&Poly::one());
        assert_eq!(s.pow(2, &limits), Some(s.mul(&s)));
        assert_eq!(s.pow(5, &limits), None);
        assert_eq!(s.pow(-1, &limits), None);
        assert_eq!(s.pow(0, &limits), Some(Poly::one()));
        let three = s.add(&Poly::power(b, 1));
        assert_eq!(three.pow(2, &limits), None, "6 terms > 4");
        // Zero: 0^0 = 1, no negative powers.
        assert_eq!(Poly::zero().pow(0, &limits), Some(Poly::one()));
        assert_eq!(Poly::zero().pow(3, &limits), Some(Poly::zero()));
        assert_eq!(Poly::zero().pow(-1, &limits), None);
        assert_eq!(t.scale(&rat(1 << 20, 1)).max_bits(), 22, "2^21/3");
    }
}
