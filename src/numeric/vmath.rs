//! Φ and φ as plain loops over a tape's lanes, so that they vectorize: the kinked SMEs
//! (signSGD's `erf(∇f/√(2Σ))`, clipped SGD's Φ and φ terms) evaluate them at every
//! substep of every path, and libm's scalar `erfc` and `exp` took 85 % of such a run.
//!
//! - [`exp`]: Cody–Waite reduction by `ln 2` (a two-part constant), `e^r` for
//!   `|r| ≤ ln2/2` by its Taylor polynomial of degree 13 (truncation below 5e-18),
//!   Horner with fused multiply-adds, and the scale `2^k` applied in two halves so that
//!   results in the subnormal range and overflow to ∞ come out right. Accuracy: 2 ulp
//!   (the test checks 4e-16 relative against `f64::exp` over the normal range).
//! - [`ncdf`] (Φ): `erfc(z) = e^{−z²}·erfcx(z)` for `z = |x|/√2`, `(z + 4)·erfcx(z)` a
//!   Chebyshev series of 25 terms in `u = (z − 4)/(z + 4)` (Schonfelder's mapping, Math.
//!   Comp. 32, 1978; the factor keeps the series between 1/√π and 4, so its rounding
//!   stays relative; the coefficients from `scripts/fit_erfcx.py`, mpmath at 40 digits,
//!   truncation below 1e-17), `z²` split exactly by an FMA, and the rounding error of `x/√2`
//!   corrected to first order as in [`super::gauss::ncdf`]. Accuracy against that
//!   function (libm's erfc, < 1 ulp), measured on 180,000 points of [−40, 40]: 9.6e-16
//!   relative for x < 0 (down to Φ(−37); the error grows slowly with |x|, from 6e-16
//!   near 0), 2.2e-16 absolute for x ≥ 0; φ 2.8e-16 relative. The test's bounds are
//!   1.5e-15, 3e-16 and 1e-15.
//! - [`npdf`] (φ): as [`super::gauss::npdf`], through [`exp`].
//! - [`log`]: `x = m·2^k` with `m ∈ [√2/2, √2)` read from the bits (subnormals scaled
//!   by 2⁵⁴ first), `ln m = 2 atanh(s)`, `s = (m − 1)/(m + 1)`, `|s| ≤ 0.172`, by its
//!   odd series to `s²³` (truncation below 1e-18) arranged as fdlibm's `log` (`m − 1`,
//!   exact, carries the result), plus `k ln 2` in two parts. Accuracy: about 1 ulp (the test checks 2.3e-16 relative against `f64::ln`, and the
//!   special values 0, ∞, negatives and NaN).
//! - [`sigmoid`] `1/(1 + e^{−x})` and [`softplus`] `ln(1 + e^x)`, through `t = e^{−|x|}`
//!   (never overflowing): `1/(1 + t)` or `t/(1 + t)`, and `max(x, 0) + ln1p(t)` with
//!   `ln1p(t) = ln(u) − ((u − 1) − t)/u`, `u = 1 + t` (the rounding of `u` corrected to
//!   first order). Accuracy: 4 ulp against the libm forms (tested).
//!
//! The logistic losses of finite-sum problems run these at every row of every substep;
//! libm's scalar `exp` and the branches of the scalar forms took 68 % of such a run.
//!
//! Each scalar function is the loop body of its lane version, so the tapes, the graph
//! evaluator and the scalar callers agree bit for bit. No branches depend on the data:
//! every value is computed and the right one selected. NaN in gives NaN out; ±∞ give
//! the limits.

use super::gauss::{FRAC_1_SQRT_2_LO, INV_SQRT_2PI};
use std::f64::consts::{FRAC_1_SQRT_2, LOG2_E};

/// `1/√π`.
const INV_SQRT_PI: f64 = 0.564_189_583_547_756_3;
/// `ln 2` in two parts (fdlibm's): the high part has 32 significant bits, so `k·LN2_HI`
/// is exact for every `|k| < 2^21`, and the low part is the rest of the true `ln 2`.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// Adding it rounds to an integer, kept in the low bits of the sum (`|v| < 2^51`).
const MAGIC: f64 = 6_755_399_441_055_744.0;
/// The mapping's constant `K` in `u = (z − K)/(z + K)`.
const K: f64 = 4.0;
/// The Chebyshev coefficients of `(z + K)·erfcx(z)` in `u`, `c_0` halved (`scripts/fit_erfcx.py`).
#[allow(clippy::unreadable_literal, reason = "generated")]
const ERFCX: [f64; 25] = [
    1.6320978781965259,
    -1.5054329427054698,
    0.5903214182888945,
    -0.19828527172011035,
    0.0569084302284687,
    -0.013773973050870096,
    0.002729016733135232,
    -0.00041361807903024755,
    3.89141838079606e-05,
    4.795485503364818e-07,
    -8.699107081379825e-07,
    1.2116707094396558e-07,
    3.79196702608182e-09,
    -3.4533646779963824e-09,
    2.748862570381361e-10,
    6.813959375318511e-11,
    -1.3568522747316355e-11,
    -1.0463235067416098e-12,
    4.851070321243456e-13,
    8.458758172979236e-15,
    -1.6469363733616713e-14,
    2.5314850886802834e-16,
    5.757244393379938e-16,
    -1.8245979193136522e-17,
    -2.135637703191254e-17,
];

/// `1/k!`, k = 0 … 13, highest first (Horner).
const TAYLOR: [f64; 14] = [
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// `e^x`.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // Keeps NaN (comparisons with it are false); beyond these bounds e^x is 0 or ∞.
    let x = x.clamp(-746.0, 710.0);
    let v = x.mul_add(LOG2_E, MAGIC);
    let kf = v - MAGIC;
    let k = v.to_bits().wrapping_sub(MAGIC.to_bits()) as i64;
    let r = kf.mul_add(-LN2_LO, kf.mul_add(-LN2_HI, x));
    let mut p = TAYLOR[0];
    for &c in &TAYLOR[1..] {
        p = p.mul_add(r, c);
    }
    let k1 = k >> 1;
    let k2 = k - k1;
    let scale = |k: i64| f64::from_bits(((k + 1023) as u64) << 52);
    p * scale(k1) * scale(k2)
}

/// `ln 2`'s two parts for [`log`] (as in [`exp`]).
const LN2: (f64, f64) = (LN2_HI, LN2_LO);

/// `2/(2j + 1)`, j = 11 … 0, highest first (Horner in `s²`).
const ATANH: [f64; 12] = [
    2.0 / 23.0,
    2.0 / 21.0,
    2.0 / 19.0,
    2.0 / 17.0,
    2.0 / 15.0,
    2.0 / 13.0,
    2.0 / 11.0,
    2.0 / 9.0,
    2.0 / 7.0,
    2.0 / 5.0,
    2.0 / 3.0,
    2.0,
];

/// `ln x` (NaN for x < 0 and NaN, −∞ at 0, ∞ at ∞).
#[inline(always)]
pub fn log(x: f64) -> f64 {
    // Subnormals: scaled into the normal range, their exponent corrected below.
    let tiny = x < f64::MIN_POSITIVE;
    let y = if tiny {
        x * 18_014_398_509_481_984.0
    } else {
        x
    };
    let bits = y.to_bits();
    // m in [√2/2, √2): the mantissa with the exponent of 1 (or of 1/2 above √2).
    let mant = bits & 0x000f_ffff_ffff_ffff;
    let high = mant > 0x0006_a09e_667f_3bcd;
    let m = f64::from_bits(
        mant | if high {
            0x3fe0_0000_0000_0000
        } else {
            0x3ff0_0000_0000_0000
        },
    );
    // The exponent as a double without an integer-to-float conversion (AVX2 has none for
    // 64-bit integers, and the loop would go scalar): the field's bits under 2⁵² read as
    // 2⁵² + e. Every term is a small integer, so the sum is exact.
    let e =
        f64::from_bits(((bits >> 52) & 0x7ff) | 0x4330_0000_0000_0000) - 4_503_599_627_370_496.0;
    let kf = e - 1023.0 + if high { 1.0 } else { 0.0 } - if tiny { 54.0 } else { 0.0 };
    // fdlibm's arrangement: with f = m − 1 (exact) and s = f/(2 + f),
    // ln(1 + f) = 2 atanh(s) = f − f²/2 + s (f²/2 + R), R = Σ_{j≥1} 2 s^{2j}/(2j + 1),
    // so that f, exact, carries the result and the rest is a small correction.
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    let mut p = ATANH[0];
    for &c in &ATANH[1..ATANH.len() - 1] {
        p = p.mul_add(s2, c);
    }
    let r = s2 * p;
    let hfsq = 0.5 * f * f;
    let r = kf * LN2.0 - ((hfsq - s.mul_add(hfsq + r, kf * LN2.1)) - f);
    if x > 0.0 && x < f64::INFINITY {
        r
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else if x == f64::INFINITY {
        f64::INFINITY
    } else {
        f64::NAN
    }
}

/// `1/(1 + e^{−x})`, computed as `1/(1 + t)` for `x ≥ 0` and `t/(1 + t)` below, `t =
/// e^{−|x|}`.
#[inline(always)]
pub fn sigmoid(x: f64) -> f64 {
    let t = exp(-x.abs());
    let s = 1.0 / (1.0 + t);
    if x >= 0.0 {
        s
    } else if x < 0.0 {
        t * s
    } else {
        f64::NAN
    }
}

/// `ln(1 + e^x) = max(x, 0) + ln1p(e^{−|x|})`.
#[inline(always)]
pub fn softplus(x: f64) -> f64 {
    let t = exp(-x.abs());
    let u = 1.0 + t;
    let ln1p = log(u) - ((u - 1.0) - t) / u;
    let pos = if x > 0.0 { x } else { 0.0 };
    if x.is_nan() {
        f64::NAN
    } else {
        pos + ln1p
    }
}

/// A scalar function over the lanes (`f` a function item, inlined into the caller's
/// target features; a capturing closure would not be).
#[inline(always)]
pub fn lanes<const N: usize>(dst: &mut [f64; N], x: &[f64; N], f: impl Fn(f64) -> f64) {
    for (o, &x) in dst.iter_mut().zip(x) {
        *o = f(x);
    }
}

/// `erfc(z)` for `z ≥ 0` (NaN stays NaN; `z > 40` gives 0), with the exact `z²` split.
#[inline(always)]
fn erfc_pos(z: f64) -> (f64, f64) {
    let z = if z > 40.0 { 40.0 } else { z };
    let w = 1.0 / (z + K);
    let u = (z - K) * w;
    let (mut b1, mut b2) = (0.0, 0.0);
    for &c in ERFCX[1..].iter().rev() {
        let b0 = (2.0 * u).mul_add(b1, c - b2);
        b2 = b1;
        b1 = b0;
    }
    let h = u.mul_add(b1, ERFCX[0] - b2) * w;
    let s = z * z;
    let e = z.mul_add(z, -s);
    // exp(−(s + e)) = exp(−s)·exp(−e), |e| ≤ ulp(s)/2.
    let g = exp(-s) * (1.0 - e);
    (g * h, g)
}

/// Φ(x), the standard normal distribution function.
#[inline(always)]
pub fn ncdf(x: f64) -> f64 {
    let t = x * FRAC_1_SQRT_2;
    let err = x.mul_add(FRAC_1_SQRT_2, -t) + x * FRAC_1_SQRT_2_LO;
    // ±∞ and NaN: no correction (and no ∞ − ∞).
    let err = if x.abs() <= f64::MAX { err } else { 0.0 };
    let (q, g) = erfc_pos(t.abs());
    let half = 0.5 * q;
    let p = if x < 0.0 { half } else { 1.0 - half };
    // Φ(x) = erfc(−(t + err))/2 ≈ erfc(−t)/2 + err·e^{−t²}/√π.
    err.mul_add(g * INV_SQRT_PI, p)
}

/// φ(x), the standard normal density.
#[inline(always)]
pub fn npdf(x: f64) -> f64 {
    let s = x * x;
    let e = x.mul_add(x, -s);
    let e = if s <= f64::MAX { e } else { 0.0 };
    INV_SQRT_2PI * exp(-0.5 * s) * (1.0 - 0.5 * e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numeric::gauss;

    /// Points over the whole range: a fine grid, the boundaries and the special values.
    fn points() -> Vec<f64> {
        let mut xs: Vec<f64> = (-40_000..=40_000).map(|i| f64::from(i) * 1e-3).collect();
        let mut s = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            xs.push(((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 80.0);
        }
        xs.extend([0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e-8, -1e-8]);
        xs
    }

    /// `ln` against `f64::ln` (within about an ulp) on random bit patterns of positive numbers (every binade,
    /// subnormals included), on [0.5, 2] where `ln` crosses zero, and at the specials.
    #[test]
    fn log_is_within_two_ulp_of_std_and_right_at_the_specials() {
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        let mut worst = 0.0f64;
        for i in 0..400_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = if i % 2 == 0 {
                f64::from_bits(s >> 1 & 0x7fef_ffff_ffff_ffff)
            } else {
                0.5 + 1.5 * ((s >> 11) as f64 / (1u64 << 53) as f64)
            };
            if x == 0.0 {
                continue;
            }
            let (got, want) = (log(x), x.ln());
            // Relative to |ln x|, or to one ulp of 1 where ln x is near 0 (x near 1,
            // where s carries the relative error).
            let err = (got - want).abs() / want.abs().max(f64::EPSILON);
            worst = worst.max(err);
            assert!(err <= 2.3e-16, "log({x:e}) = {got}, std {want}");
        }
        assert!(worst > 0.0, "compared against a different function");
        assert_eq!(log(1.0), 0.0);
        assert_eq!(log(0.0), f64::NEG_INFINITY);
        assert_eq!(log(-0.0), f64::NEG_INFINITY);
        assert_eq!(log(f64::INFINITY), f64::INFINITY);
        assert!(log(-1.0).is_nan() && log(f64::NAN).is_nan() && log(-f64::INFINITY).is_nan());
        assert!((log(5e-324) - (5e-324f64).ln()).abs() < 1e-13);
    }

    /// Sigmoid and softplus against their libm forms (as the graph evaluator had them),
    /// over [−40, 40], far out, and at the specials.
    #[test]
    fn sigmoid_and_softplus_match_the_libm_forms() {
        let sig = |a: f64| {
            if a >= 0.0 {
                1.0 / (1.0 + (-a).exp())
            } else {
                let e = a.exp();
                e / (1.0 + e)
            }
        };
        let soft = |a: f64| {
            if a > 0.0 {
                a + (-a).exp().ln_1p()
            } else {
                a.exp().ln_1p()
            }
        };
        let mut xs = points();
        xs.extend([-745.0, -700.0, -100.0, 100.0, 700.0, 800.0, 1e300, -1e300]);
        for x in xs {
            for (name, got, want) in [
                ("sigmoid", sigmoid(x), sig(x)),
                ("softplus", softplus(x), soft(x)),
            ] {
                let ok = got == want
                    || (got - want).abs() <= 8e-16 * want.abs()
                    || (want.abs() < f64::MIN_POSITIVE && (got - want).abs() <= 1e-320);
                assert!(ok, "{name}({x}) = {got}, libm form {want}");
            }
        }
        assert_eq!(
            (sigmoid(f64::INFINITY), sigmoid(f64::NEG_INFINITY)),
            (1.0, 0.0)
        );
        assert_eq!(softplus(f64::INFINITY), f64::INFINITY);
        assert_eq!(softplus(f64::NEG_INFINITY), 0.0);
        assert!(sigmoid(f64::NAN).is_nan() && softplus(f64::NAN).is_nan());
    }

    #[test]
    fn exp_is_within_two_ulp_of_std_and_right_at_the_ends() {
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..400_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 1416.0;
            let x = if i % 4 == 0 { x / 1000.0 } else { x };
            let (got, want) = (exp(x), x.exp());
            if want >= f64::MIN_POSITIVE {
                assert!(
                    ((got - want) / want).abs() <= 4e-16,
                    "exp({x}) = {got}, std {want}"
                );
            } else {
                // Subnormal: an absolute error of an ulp or two of the smallest.
                assert!(
                    (got - want).abs() <= 2.0 * 5e-324,
                    "exp({x}) = {got}, std {want}"
                );
            }
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp(709.9), f64::INFINITY);
        assert!((exp(709.7) / 709.7f64.exp() - 1.0).abs() < 4e-16);
        assert!(exp(f64::NAN).is_nan());
    }

    #[test]
    fn ncdf_and_npdf_match_the_libm_based_functions() {
        let (mut worst_rel, mut worst_abs, mut worst_pdf) = (0.0f64, 0.0f64, 0.0f64);
        for x in points() {
            let (got, want) = (ncdf(x), gauss::ncdf(x));
            if x < 0.0 && want > 1e-300 {
                worst_rel = worst_rel.max(((got - want) / want).abs());
            } else if x >= 0.0 {
                worst_abs = worst_abs.max((got - want).abs());
            }
            let (gp, wp) = (npdf(x), gauss::npdf(x));
            if wp > 1e-300 {
                worst_pdf = worst_pdf.max(((gp - wp) / wp).abs());
            }
        }
        assert!(
            worst_rel <= 1.5e-15,
            "Φ, lower half: relative error {worst_rel:e}"
        );
        assert!(
            worst_abs <= 3e-16,
            "Φ, upper half: absolute error {worst_abs:e}"
        );
        assert!(worst_pdf <= 1e-15, "φ: relative error {worst_pdf:e}");
    }

    #[test]
    fn special_values() {
        assert_eq!(ncdf(f64::NEG_INFINITY), 0.0);
        assert_eq!(ncdf(f64::INFINITY), 1.0);
        assert_eq!(ncdf(0.0), 0.5);
        assert!(ncdf(f64::NAN).is_nan());
        assert_eq!(npdf(f64::INFINITY), 0.0);
        assert_eq!(npdf(f64::NEG_INFINITY), 0.0);
        assert!(npdf(f64::NAN).is_nan());
        assert_eq!(ncdf(-40.0), 0.0);
        assert_eq!(ncdf(40.0), 1.0);
    }

    #[test]
    fn lanes_agree_with_the_scalar_functions_bit_for_bit() {
        const LANES: usize = 128;
        let xs: [f64; LANES] = std::array::from_fn(|i| (i as f64 - 64.0) * 0.37);
        let (mut a, mut b) = ([0.0; LANES], [0.0; LANES]);
        lanes(&mut a, &xs, ncdf);
        lanes(&mut b, &xs, npdf);
        for i in 0..LANES {
            assert_eq!(a[i].to_bits(), ncdf(xs[i]).to_bits());
            assert_eq!(b[i].to_bits(), npdf(xs[i]).to_bits());
        }
    }
}
