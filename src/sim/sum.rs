//! Exact sums of `f64`s, rounded once: the reduction across blocks of paths.
//!
//! A run folds its blocks' sums (Σx, Σx²) into one value per quantity. Folded in
//! floating point, the result depends on the order and the grouping of the blocks, so
//! shards of a run (`--shard K/N`) could not be re-joined to the single run's numbers.
//! [`ExactSum`] keeps the exact sum of every finite value added (a fixed-point integer
//! in units of 2⁻¹⁰⁷⁴, the smallest subnormal, where every finite `f64` is an integer)
//! and rounds it once, to nearest with ties to even: the correctly rounded exact sum,
//! whatever the order and grouping of the additions. Non-finite values are kept apart
//! as flags (+∞, −∞, NaN), which combine the same way in any order, as IEEE addition of
//! them does: NaN if any NaN or both infinities, else the infinity.
//!
//! The sum round-trips losslessly through its expansion ([`ExactSum::terms`]): the
//! rounded value `v₁`, then the rounded value of the rest `v₂`, … until nothing is left;
//! `v₁ + v₂ + …` is the sum exactly, and the terms are what a part stores in JSON.
//!
//! A zero sum is `+0.0` (as a fold from `0.0` gives), whatever zeros were added.
//!
//! The integer is kept carry-save in 32-bit digits held in `i64`s (an addition touches
//! three digits, no allocation; carries every 2²⁸ additions),
//! and converted to a big integer only to round.

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{One, Signed, ToPrimitive, Zero};

/// 32-bit digits of the fixed-point sum: 2³²·⁶⁸ = 2²¹⁷⁶ covers every finite `f64`
/// (below 2²⁰⁹⁸ units) with room for 2⁶⁴ of them.
const DIGITS: usize = 68;

/// Additions a digit may take between carries: each adds less than 2³³ in magnitude,
/// so a digit stays far inside `i64`.
const CARRY_EVERY: u32 = 1 << 28;

/// The exact sum of the `f64`s added, rounded once by [`ExactSum::value`].
#[derive(Debug, Clone, Default)]
pub struct ExactSum {
    /// The finite values' sum in units of 2⁻¹⁰⁷⁴: `Σ digits[i] 2³²ⁱ`, carry-save (a
    /// digit may exceed 32 bits or be negative between carries); empty for zero.
    digits: Vec<i64>,
    /// Additions since the last carry.
    adds: u32,
    pos_inf: bool,
    neg_inf: bool,
    nan: bool,
}

impl PartialEq for ExactSum {
    fn eq(&self, o: &ExactSum) -> bool {
        self.units() == o.units()
            && (self.pos_inf, self.neg_inf, self.nan) == (o.pos_inf, o.neg_inf, o.nan)
    }
}

impl Eq for ExactSum {}

/// A finite `f64` as an integer number of units of 2⁻¹⁰⁷⁴.
fn units_of(x: f64) -> BigInt {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as u32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mant, shift) = if exp == 0 {
        (frac, 0)
    } else {
        (frac | (1u64 << 52), exp - 1)
    };
    let mag = BigInt::from(mant) << shift;
    if x.is_sign_negative() {
        -mag
    } else {
        mag
    }
}

/// The `f64` nearest `mag × 2⁻¹⁰⁷⁴` (ties to even), with the sign of `negative`.
fn round_units(mag: &BigUint, negative: bool) -> f64 {
    let sign = if negative { 1u64 << 63 } else { 0 };
    let bits = mag.bits();
    if bits <= 53 {
        // Below 2⁵³ units every integer is an f64 (subnormal or the first binade).
        let m = mag.to_u64().unwrap_or(0);
        return f64::from_bits(sign | (m as f64 * f64::from_bits(1)).to_bits());
    }
    let e = bits - 53;
    let mut top = (mag >> e).to_u64().unwrap_or(0);
    let rem = mag - (BigUint::from(top) << e);
    let half = BigUint::one() << (e - 1);
    if rem > half || (rem == half && top & 1 == 1) {
        top += 1;
    }
    let mut biased = e + 1;
    if top == 1u64 << 53 {
        top >>= 1;
        biased += 1;
    }
    if biased >= 2047 {
        return f64::from_bits(sign | 0x7ff0_0000_0000_0000);
    }
    f64::from_bits(sign | (biased << 52) | (top & ((1u64 << 52) - 1)))
}

impl ExactSum {
    /// Adds one value, exactly.
    pub fn add(&mut self, x: f64) {
        if x.is_nan() {
            self.nan = true;
        } else if x == f64::INFINITY {
            self.pos_inf = true;
        } else if x == f64::NEG_INFINITY {
            self.neg_inf = true;
        } else if x != 0.0 {
            let bits = x.to_bits();
            let exp = ((bits >> 52) & 0x7ff) as usize;
            let frac = bits & ((1u64 << 52) - 1);
            let (mant, shift) = if exp == 0 {
                (frac, 0)
            } else {
                (frac | (1u64 << 52), exp - 1)
            };
            let v = u128::from(mant) << (shift % 32);
            let at = shift / 32;
            self.carry_if(1);
            let d = &mut self.digits;
            let sign = if x < 0.0 { -1 } else { 1 };
            for k in 0..3 {
                d[at + k] += sign * ((v >> (32 * k)) & 0xffff_ffff) as i64;
            }
        }
    }

    /// Makes room for `more` additions: allocates the digits, and carries when they
    /// could grow too large.
    fn carry_if(&mut self, more: u32) {
        if self.digits.is_empty() {
            self.digits = vec![0; DIGITS];
        }
        if self.adds.saturating_add(more) >= CARRY_EVERY {
            let d = &mut self.digits;
            for i in 0..DIGITS - 1 {
                let carry = d[i] >> 32;
                d[i] -= carry << 32;
                d[i + 1] += carry;
            }
            self.adds = 0;
        }
        self.adds += more;
    }

    /// The finite part in units of 2⁻¹⁰⁷⁴.
    fn units(&self) -> BigInt {
        let mut u = BigInt::zero();
        for &d in self.digits.iter().rev() {
            u = (u << 32) + d;
        }
        u
    }

    /// Adds another sum, exactly.
    pub fn merge(&mut self, o: &ExactSum) {
        if !o.digits.is_empty() {
            let mut o = o.clone();
            o.carry_if(CARRY_EVERY);
            self.carry_if(1);
            for (a, b) in self.digits.iter_mut().zip(&o.digits) {
                *a += b;
            }
        }
        self.pos_inf |= o.pos_inf;
        self.neg_inf |= o.neg_inf;
        self.nan |= o.nan;
    }

    /// The sum rounded to the nearest `f64` (ties to even); NaN or ±∞ when a
    /// non-finite value was added, as IEEE addition gives.
    pub fn value(&self) -> f64 {
        if self.nan || (self.pos_inf && self.neg_inf) {
            return f64::NAN;
        }
        if self.pos_inf {
            return f64::INFINITY;
        }
        if self.neg_inf {
            return f64::NEG_INFINITY;
        }
        let units = self.units();
        if units.is_zero() {
            return 0.0;
        }
        round_units(units.magnitude(), units.sign() == Sign::Minus)
    }

    /// The expansion of the finite part: non-overlapping `f64`s, largest first, whose
    /// exact sum is the finite part ([`ExactSum::from_terms`] inverts it). An overflow of
    /// the finite part beyond `f64` takes the largest finite values first.
    fn finite_terms(&self) -> Vec<f64> {
        let mut rest = self.units();
        let mut out = Vec::new();
        while !rest.is_zero() {
            let mut v = round_units(rest.magnitude(), rest.is_negative());
            if v.is_infinite() {
                v = f64::MAX.copysign(v);
            }
            rest -= units_of(v);
            out.push(v);
        }
        out
    }

    /// The sum as JSON-safe terms: the finite part's expansion, then `"inf"`, `"-inf"`,
    /// `"nan"` for the non-finite values added.
    pub fn terms(&self) -> Vec<Term> {
        let mut out: Vec<Term> = self.finite_terms().into_iter().map(Term::F).collect();
        for (flag, name) in [
            (self.pos_inf, "inf"),
            (self.neg_inf, "-inf"),
            (self.nan, "nan"),
        ] {
            if flag {
                out.push(Term::S(name.into()));
            }
        }
        out
    }

    /// The sum whose [`ExactSum::terms`] these are; `None` for a word that is none of
    /// `inf`, `-inf`, `nan`.
    pub fn from_terms(terms: &[Term]) -> Option<ExactSum> {
        let mut s = ExactSum::default();
        for t in terms {
            match t {
                Term::F(x) if x.is_finite() => s.add(*x),
                Term::S(w) if w == "inf" => s.pos_inf = true,
                Term::S(w) if w == "-inf" => s.neg_inf = true,
                Term::S(w) if w == "nan" => s.nan = true,
                _ => return None,
            }
        }
        Some(s)
    }
}

/// One term of a serialized [`ExactSum`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Term {
    F(f64),
    S(String),
}

impl serde::Serialize for ExactSum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.terms().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for ExactSum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ExactSum, D::Error> {
        let terms = Vec::<Term>::deserialize(d)?;
        ExactSum::from_terms(&terms).ok_or_else(|| {
            serde::de::Error::custom("an exact sum's terms are numbers, `inf`, `-inf` or `nan`")
        })
    }
}
