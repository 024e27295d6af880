//! Gaussian special functions: the one-step moments of non-smooth optimizers.
//!
//! An optimizer such as signSGD moves by a non-smooth map of a Gaussian gradient, so its
//! one-step moments are Gaussian expectations of kinked or discontinuous functions:
//! `E sign(a + sZ) = 2Φ(a/s) − 1`, the second moments of the signs of two correlated
//! components are bivariate normal probabilities Φ₂, and so on. This module computes
//! them.
//!
//! - [`ncdf`] (Φ), [`npdf`] (φ), [`erf`], [`erfc`]: `erf`/`erfc` are those of the
//!   `libm` crate (ports of FreeBSD's msun, < 1 ulp); Φ is `erfc(−x/√2)/2` with the
//!   rounding error of `x/√2` corrected to first order, so that it keeps a relative
//!   accuracy of a few 1e-16 through the lower tail (to Φ(−37) ≈ 5.7e-300), and φ
//!   computes `x²` exactly (an FMA) before the exponential.
//! - [`bvn`]: Φ₂(h, k; ρ) = P(X ≤ h, Y ≤ k) for a standard bivariate normal with
//!   correlation ρ, by Genz's BVND algorithm (A. Genz, "Numerical computation of
//!   rectangular bivariate and trivariate normal probabilities", Statistics and
//!   Computing 14, 2004), Drezner–Wesolowsky Gauss–Legendre rules of 6, 12 and 20
//!   points: double precision (absolute error about 1e-16). ρ = ±1 and infinite limits
//!   are handled exactly. [`bvn_density`] is φ₂ and [`bvn_dh`], [`bvn_dk`],
//!   [`bvn_drho`] are the partial derivatives that symbolic differentiation needs.
//! - [`gauss_hermite`]: nodes and weights of `E g(Z)`, Z ~ N(0, 1), and [`expect2`], a
//!   product rule for a bivariate normal. They are spectrally accurate for smooth `g`
//!   (exact for polynomials of degree < 2n), and poor for `g` with kinks or jumps:
//!   the error then decays only like a small power of `n` (for `E relu(U)·sign(V)` in
//!   the tests, 1.0e-2 with n = 20 and 7.1e-3 with n = 80). [`gauss_legendre`] is the
//!   rule on [−1, 1].
//! - [`PiecewiseLinear`] and [`expect_pl`], [`expect_pl_product`], [`expect_pl2`]:
//!   exact expectations of piecewise-linear maps of Gaussians (`sign`, `abs`, `relu`,
//!   `clip`, …) and of products of two of them, univariate or of two jointly normal
//!   variables, in closed form through Φ, φ and Φ₂ (truncated normal moments and the
//!   orthant moments of Rosenbaum, "Moments of a truncated bivariate normal
//!   distribution", JRSS B 23, 1961). These are the workhorse for non-smooth rules.
//!
//! No function here panics: arguments outside a function's domain give NaN.

use std::f64::consts::{FRAC_1_SQRT_2, PI, SQRT_2};

/// `1/√(2π)`.
pub(super) const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
/// `1/√2 − FRAC_1_SQRT_2`: the low part of `1/√2` as a double-double.
pub(super) const FRAC_1_SQRT_2_LO: f64 = -4.833_646_656_726_457e-17;

/// The error function (libm's, < 1 ulp).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// The complementary error function `1 − erf(x)` (libm's, < 1 ulp relative, also in
/// the tail where it is tiny).
pub fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

/// φ(x), the standard normal density. `x²` is split exactly (an FMA) so that the
/// relative error stays a few ulp even where `x²/2` is in the hundreds.
pub fn npdf(x: f64) -> f64 {
    if x.is_infinite() {
        return 0.0;
    }
    let s = x * x;
    let e = x.mul_add(x, -s);
    // exp(−(s + e)/2) = exp(−s/2)·exp(−e/2), |e/2| ≤ ulp(s)/4.
    INV_SQRT_2PI * (-0.5 * s).exp() * (1.0 - 0.5 * e)
}

/// Φ(x), the standard normal distribution function, accurate in both tails: a relative
/// error of a few 1e-16 for `x` down to −37 (Φ(−37) ≈ 5.7e-300; below that the values
/// are subnormal and lose precision gradually).
pub fn ncdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_infinite() {
        return if x > 0.0 { 1.0 } else { 0.0 };
    }
    // Φ(x) = erfc(−x/√2)/2. The rounding error of t = x/√2 would be amplified by
    // 2t² in the tail (erfc'/erfc ≈ −2t); it is computed exactly (an FMA and the low
    // part of 1/√2) and corrected to first order: Φ(x) ≈ erfc(−t)/2 + √2 φ(x)·err.
    let t = x * FRAC_1_SQRT_2;
    let err = x.mul_add(FRAC_1_SQRT_2, -t) + x * FRAC_1_SQRT_2_LO;
    0.5 * erfc(-t) + SQRT_2 * npdf(x) * err
}

/// `x φ(x)`, with the limit 0 at ±∞.
fn xphi(x: f64) -> f64 {
    if x.is_infinite() {
        0.0
    } else {
        x * npdf(x)
    }
}

/// `P(lo < Z < hi)`, from the tail nearer the interval (no cancellation of two values
/// near 1).
fn interval(lo: f64, hi: f64) -> f64 {
    if lo >= hi {
        0.0
    } else if lo >= 0.0 {
        ncdf(-lo) - ncdf(-hi)
    } else if hi <= 0.0 {
        ncdf(hi) - ncdf(lo)
    } else {
        1.0 - ncdf(lo) - ncdf(-hi)
    }
}

/// ρ checked: NaN outside [−1, 1] beyond rounding (1e-12), clamped within.
fn checked_rho(rho: f64) -> f64 {
    if rho.is_nan() || rho.abs() > 1.0 + 1e-12 {
        f64::NAN
    } else {
        rho.clamp(-1.0, 1.0)
    }
}

/// Half of the Gauss–Legendre rules of 6, 12 and 20 points on [−1, 1]: the negative
/// nodes and their weights (the rules are symmetric). Computed with mpmath at 40
/// digits; the test `bvn_rules_are_gauss_legendre` checks them against
/// [`gauss_legendre`].
const GL_X: [&[f64]; 3] = [
    &[
        -0.932_469_514_203_152,
        -0.661_209_386_466_264_5,
        -0.238_619_186_083_196_9,
    ],
    &[
        -0.981_560_634_246_719_2,
        -0.904_117_256_370_474_9,
        -0.769_902_674_194_304_7,
        -0.587_317_954_286_617_5,
        -0.367_831_498_998_180_2,
        -0.125_233_408_511_468_9,
    ],
    &[
        -0.993_128_599_185_094_9,
        -0.963_971_927_277_913_8,
        -0.912_234_428_251_326,
        -0.839_116_971_822_218_8,
        -0.746_331_906_460_150_8,
        -0.636_053_680_726_515,
        -0.510_867_001_950_827_1,
        -0.373_706_088_715_419_56,
        -0.227_785_851_141_645_08,
        -0.076_526_521_133_497_34,
    ],
];
const GL_W: [&[f64]; 3] = [
    &[
        0.171_324_492_379_170_35,
        0.360_761_573_048_138_6,
        0.467_913_934_572_691_05,
    ],
    &[
        0.047_175_336_386_511_83,
        0.106_939_325_995_318_43,
        0.160_078_328_543_346_23,
        0.203_167_426_723_065_92,
        0.233_492_536_538_354_8,
        0.249_147_045_813_402_8,
    ],
    &[
        0.017_614_007_139_152_118,
        0.040_601_429_800_386_94,
        0.062_672_048_334_109_07,
        0.083_276_741_576_704_75,
        0.101_930_119_817_240_44,
        0.118_194_531_961_518_42,
        0.131_688_638_449_176_63,
        0.142_096_109_318_382_05,
        0.149_172_986_472_603_75,
        0.152_753_387_130_725_85,
    ],
];

/// Φ₂(h, k; ρ) = P(X ≤ h, Y ≤ k) for a standard bivariate normal (X, Y) with
/// correlation ρ ∈ [−1, 1] (Genz's BVND; absolute error about 1e-16). Infinite `h`,
/// `k` and ρ = ±1 are exact; ρ outside [−1, 1] (beyond rounding) and NaN give NaN.
pub fn bvn(h: f64, k: f64, rho: f64) -> f64 {
    let r = checked_rho(rho);
    if h.is_nan() || k.is_nan() || r.is_nan() {
        return f64::NAN;
    }
    // P(X ≤ h, Y ≤ k) = P(X > −h, Y > −k): Genz's upper probability.
    bvnu(-h, -k, r)
}

/// P(X > h, Y > k), Genz's BVNU (his Fortran and MATLAB code, transcribed).
fn bvnu(h: f64, k: f64, r: f64) -> f64 {
    if h == f64::INFINITY || k == f64::INFINITY {
        return 0.0;
    }
    if h == f64::NEG_INFINITY {
        return if k == f64::NEG_INFINITY {
            1.0
        } else {
            ncdf(-k)
        };
    }
    if k == f64::NEG_INFINITY {
        return ncdf(-h);
    }
    if r == 1.0 {
        return ncdf(-h.max(k));
    }
    if r == -1.0 {
        // X > h and −X > k: h < X < −k.
        return interval(h, -k);
    }
    let ng = if r.abs() < 0.3 {
        0
    } else if r.abs() < 0.75 {
        1
    } else {
        2
    };
    let (xs, ws) = (GL_X[ng], GL_W[ng]);
    let mut hk = h * k;
    let mut bvn = 0.0;
    if r.abs() < 0.925 {
        let hs = (h * h + k * k) / 2.0;
        let asr = r.asin();
        for (&x, &w) in xs.iter().zip(ws) {
            for sgn in [-1.0, 1.0] {
                let sn = (asr * (sgn * x + 1.0) / 2.0).sin();
                bvn += w * ((sn * hk - hs) / (1.0 - sn * sn)).exp();
            }
        }
        return (bvn * asr / (4.0 * PI) + ncdf(-h) * ncdf(-k)).clamp(0.0, 1.0);
    }
    let mut k = k;
    if r < 0.0 {
        k = -k;
        hk = -hk;
    }
    let as_ = (1.0 - r) * (1.0 + r);
    let mut a = as_.sqrt();
    let bs = (h - k) * (h - k);
    let c = (4.0 - hk) / 8.0;
    let d = (12.0 - hk) / 16.0;
    let asr = -(bs / as_ + hk) / 2.0;
    if asr > -100.0 {
        bvn = a
            * asr.exp()
            * (1.0 - c * (bs - as_) * (1.0 - d * bs / 5.0) / 3.0 + c * d * as_ * as_ / 5.0);
    }
    if hk > -100.0 {
        let b = bs.sqrt();
        let sp = (2.0 * PI).sqrt() * ncdf(-b / a);
        bvn -= (-hk / 2.0).exp() * sp * b * (1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0);
    }
    a /= 2.0;
    for (&x, &w) in xs.iter().zip(ws) {
        for sgn in [-1.0, 1.0] {
            let xs2 = (a * (sgn * x + 1.0)).powi(2);
            let rs = (1.0 - xs2).sqrt();
            let asr = -(bs / xs2 + hk) / 2.0;
            if asr > -100.0 {
                let sp = 1.0 + c * xs2 * (1.0 + d * xs2);
                let ep = (-hk * xs2 / (2.0 * (1.0 + rs) * (1.0 + rs))).exp() / rs;
                bvn += a * w * asr.exp() * (ep - sp);
            }
        }
    }
    bvn = -bvn / (2.0 * PI);
    let p = if r > 0.0 {
        bvn + ncdf(-h.max(k))
    } else if h >= k {
        -bvn
    } else {
        let l = if h < 0.0 {
            ncdf(k) - ncdf(h)
        } else {
            ncdf(-h) - ncdf(-k)
        };
        l - bvn
    };
    p.clamp(0.0, 1.0)
}

/// φ₂(h, k; ρ), the standard bivariate normal density with correlation ρ, written as
/// `φ(k) φ((h − ρk)/√(1−ρ²)) / √(1−ρ²)` (no cancellation near |ρ| = 1). At ρ = ±1 the
/// distribution is singular: 0 off the line `h = ρk`, +∞ on it.
pub fn bvn_density(h: f64, k: f64, rho: f64) -> f64 {
    let r = checked_rho(rho);
    if h.is_nan() || k.is_nan() || r.is_nan() {
        return f64::NAN;
    }
    let s = ((1.0 - r) * (1.0 + r)).sqrt();
    if s == 0.0 {
        return if h == r * k { f64::INFINITY } else { 0.0 };
    }
    npdf(k) * npdf((h - r * k) / s) / s
}

/// ∂Φ₂/∂h = φ(h) Φ((k − ρh)/√(1−ρ²)). At ρ = ±1 it is the limit: `φ(h)·1{h < k}` for
/// ρ = 1 and `φ(h)·1{h > −k}` for ρ = −1 (half of φ(h) at the switch).
pub fn bvn_dh(h: f64, k: f64, rho: f64) -> f64 {
    let r = checked_rho(rho);
    if h.is_nan() || k.is_nan() || r.is_nan() {
        return f64::NAN;
    }
    let s = ((1.0 - r) * (1.0 + r)).sqrt();
    let num = k - r * h;
    if s == 0.0 {
        // ρ = 1: k − h; ρ = −1: k + h. The limit of Φ(num/s) as s → 0.
        let step = if num > 0.0 {
            1.0
        } else if num < 0.0 {
            0.0
        } else {
            0.5
        };
        return npdf(h) * step;
    }
    npdf(h) * ncdf(num / s)
}

/// ∂Φ₂/∂k = φ(k) Φ((h − ρk)/√(1−ρ²)) (see [`bvn_dh`]; Φ₂ is symmetric in h and k).
pub fn bvn_dk(h: f64, k: f64, rho: f64) -> f64 {
    bvn_dh(k, h, rho)
}

/// ∂Φ₂/∂ρ = φ₂(h, k; ρ) (Plackett's identity): [`bvn_density`].
pub fn bvn_drho(h: f64, k: f64, rho: f64) -> f64 {
    bvn_density(h, k, rho)
}

/// The `n`-point Gauss–Legendre rule on [−1, 1]: nodes (increasing) and weights, by
/// Newton's method on the three-term recurrence from Chebyshev-like starting points;
/// nodes and weights to a few ulp. Exact for polynomials of degree < 2n.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    let nf = n as f64;
    for i in 0..n.div_ceil(2) {
        // The (i+1)-th largest root.
        let mut z = (PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, z);
            for j in 2..=n {
                let jf = j as f64;
                let p2 = ((2.0 * jf - 1.0) * z * p1 - (jf - 1.0) * p0) / jf;
                p0 = p1;
                p1 = p2;
            }
            let pn = if n == 0 { 1.0 } else { p1 };
            let pm = if n <= 1 { 1.0 } else { p0 };
            // P_n'(z) = n (z P_n − P_{n−1}) / (z² − 1)
            dp = nf * (z * pn - pm) / (z * z - 1.0);
            let step = pn / dp;
            z -= step;
            if step.abs() <= 1e-16 {
                break;
            }
        }
        // One more derivative at the converged root.
        let (mut p0, mut p1) = (1.0, z);
        for j in 2..=n {
            let jf = j as f64;
            let p2 = ((2.0 * jf - 1.0) * z * p1 - (jf - 1.0) * p0) / jf;
            p0 = p1;
            p1 = p2;
        }
        if n >= 1 {
            let pm = if n == 1 { 1.0 } else { p0 };
            dp = nf * (z * p1 - pm) / (z * z - 1.0);
        }
        let wi = 2.0 / ((1.0 - z * z) * dp * dp);
        x[i] = -z;
        x[n - 1 - i] = z;
        w[i] = wi;
        w[n - 1 - i] = wi;
    }
    if n % 2 == 1 {
        x[n / 2] = 0.0;
    }
    (x, w)
}

/// The `n`-point Gauss–Hermite rule for `E g(Z)`, Z ~ N(0, 1) (probabilists' weights,
/// summing to 1): `E g(Z) ≈ Σ w_i g(x_i)`, exact for polynomials of degree < 2n.
///
/// Golub–Welsch (the eigenvalues of the Jacobi matrix, nalgebra's symmetric
/// eigensolver) gives starting nodes, two Newton steps on the orthonormal recurrence
/// polish them, and each weight is `1/Σ_{k<n} p_k(x_i)²` with the orthonormal
/// polynomials `p_k`, which keeps the tiny outer weights accurate relative to
/// themselves (the first components of the eigenvectors would not). Tested for `n` up
/// to 200; the cost is O(n³). For smooth `g` the error is spectral; for `g` with kinks or
/// jumps it decays only like a power of `n`, and [`expect_pl`] is the tool.
pub fn gauss_hermite(n: usize) -> (Vec<f64>, Vec<f64>) {
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let jac = nalgebra::DMatrix::<f64>::from_fn(n, n, |i, j| {
        if i + 1 == j {
            (j as f64).sqrt()
        } else if j + 1 == i {
            (i as f64).sqrt()
        } else {
            0.0
        }
    });
    let mut x: Vec<f64> = nalgebra::SymmetricEigen::new(jac)
        .eigenvalues
        .iter()
        .copied()
        .collect();
    x.sort_by(f64::total_cmp);
    // p_k orthonormal: p_0 = 1, p_1 = x, p_{k+1} = (x p_k − √k p_{k−1})/√(k+1);
    // p_n' = √n p_{n−1}. Returns (p_n, p_{n−1}, Σ_{k<n} p_k²).
    let eval = |z: f64| {
        let (mut prev, mut cur) = (0.0, 1.0);
        let mut sum = 0.0;
        for k in 0..n {
            sum += cur * cur;
            let next = (z * cur - (k as f64).sqrt() * prev) / ((k + 1) as f64).sqrt();
            prev = cur;
            cur = next;
        }
        (cur, prev, sum)
    };
    let sn = (n as f64).sqrt();
    let mut w = vec![0.0; n];
    for (xi, wi) in x.iter_mut().zip(w.iter_mut()) {
        for _ in 0..2 {
            let (pn, pm, _) = eval(*xi);
            let d = sn * pm;
            if d != 0.0 && (pn / d).is_finite() {
                *xi -= pn / d;
            }
        }
        *wi = 1.0 / eval(*xi).2;
    }
    // Exact symmetry.
    for i in 0..n / 2 {
        let j = n - 1 - i;
        let (v, u) = ((x[j] - x[i]) / 2.0, (w[i] + w[j]) / 2.0);
        x[i] = -v;
        x[j] = v;
        w[i] = u;
        w[j] = u;
    }
    if n % 2 == 1 {
        x[n / 2] = 0.0;
    }
    (x, w)
}

/// `E g(U, V)` for (U, V) normal with the given mean and covariance, by the `n × n`
/// product Gauss–Hermite rule through the Cholesky factor of `cov` (U = m₁ + l₁₁Z₁,
/// V = m₂ + l₂₁Z₁ + l₂₂Z₂). A covariance that is not positive semidefinite (beyond
/// rounding) gives NaN. Spectrally accurate for smooth `g`; for `g` with kinks the
/// error decays only like a power of `n` (see [`gauss_hermite`]): use
/// [`expect_pl2`] for piecewise-linear maps.
pub fn expect2(g: impl Fn(f64, f64) -> f64, mean: [f64; 2], cov: [[f64; 2]; 2], n: usize) -> f64 {
    let (c11, c12, c22) = (cov[0][0], 0.5 * (cov[0][1] + cov[1][0]), cov[1][1]);
    if c11.is_nan() || c22.is_nan() || c11 < 0.0 || c22 < 0.0 {
        return f64::NAN;
    }
    let l11 = c11.sqrt();
    let l21 = if l11 > 0.0 { c12 / l11 } else { 0.0 };
    let mut r = c22 - l21 * l21;
    if r < 0.0 {
        if r < -1e-12 * c22.max(f64::MIN_POSITIVE) || (l11 == 0.0 && c12 != 0.0) {
            return f64::NAN;
        }
        r = 0.0;
    }
    let l22 = r.sqrt();
    let (x, w) = gauss_hermite(n);
    let mut total = 0.0;
    for (&z1, &w1) in x.iter().zip(&w) {
        let u = mean[0] + l11 * z1;
        let base = mean[1] + l21 * z1;
        let mut inner = 0.0;
        for (&z2, &w2) in x.iter().zip(&w) {
            inner += w2 * g(u, base + l22 * z2);
        }
        total += w1 * inner;
    }
    total
}

/// A map of the real line that is affine between breakpoints: breakpoints
/// `b_1 < … < b_K` and on each of the `K + 1` regions `(−∞, b_1), (b_1, b_2), …,
/// (b_K, ∞)` an affine piece `p_r + q_r u`. It may jump at a breakpoint (`sign`) or
/// be continuous there (`abs`, `relu`, `clip`). At a breakpoint itself [`eval`](Self::eval)
/// gives the mean of the two one-sided limits (so `sign(0) = 0`, the limit of
/// `E sign(a + sZ)` at `a = 0` as `s → 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseLinear {
    breaks: Vec<f64>,
    pieces: Vec<(f64, f64)>,
}

/// Why a [`PiecewiseLinear`] cannot be made.
#[derive(Debug, Clone, PartialEq)]
pub enum PiecewiseError {
    /// `pieces.len()` is not `breaks.len() + 1`.
    Count { breaks: usize, pieces: usize },
    /// A breakpoint or coefficient is NaN or infinite.
    NotFinite,
    /// The breakpoints do not increase strictly.
    NotIncreasing,
    /// `clip(lo, hi)` with `lo > hi`.
    EmptyClip { lo: f64, hi: f64 },
}

impl std::fmt::Display for PiecewiseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PiecewiseError::Count { breaks, pieces } => write!(
                f,
                "{breaks} breakpoints need {} affine pieces, {pieces} given",
                breaks + 1
            ),
            PiecewiseError::NotFinite => write!(f, "breakpoints and coefficients must be finite"),
            PiecewiseError::NotIncreasing => write!(f, "breakpoints must increase strictly"),
            PiecewiseError::EmptyClip { lo, hi } => {
                write!(f, "clip(lo, hi) needs lo ≤ hi, here lo = {lo} > hi = {hi}")
            }
        }
    }
}

impl std::error::Error for PiecewiseError {}

impl PiecewiseLinear {
    /// The map with breakpoints `breaks` (finite, strictly increasing) and the affine
    /// pieces `(p_r, q_r)` (value `p_r + q_r u`), one more than breakpoints.
    pub fn new(breaks: Vec<f64>, pieces: Vec<(f64, f64)>) -> Result<Self, PiecewiseError> {
        if pieces.len() != breaks.len() + 1 {
            return Err(PiecewiseError::Count {
                breaks: breaks.len(),
                pieces: pieces.len(),
            });
        }
        if !breaks.iter().all(|b| b.is_finite())
            || !pieces.iter().all(|(p, q)| p.is_finite() && q.is_finite())
        {
            return Err(PiecewiseError::NotFinite);
        }
        if breaks.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PiecewiseError::NotIncreasing);
        }
        Ok(PiecewiseLinear { breaks, pieces })
    }

    /// `u ↦ p + q u` (no breakpoints); non-finite coefficients are an error.
    pub fn affine(p: f64, q: f64) -> Result<Self, PiecewiseError> {
        Self::new(Vec::new(), vec![(p, q)])
    }

    /// `u ↦ u`.
    pub fn identity() -> Self {
        PiecewiseLinear {
            breaks: Vec::new(),
            pieces: vec![(0.0, 1.0)],
        }
    }

    /// The constant 1.
    fn one() -> Self {
        PiecewiseLinear {
            breaks: Vec::new(),
            pieces: vec![(1.0, 0.0)],
        }
    }

    /// `u ↦ sign(u)` (−1, then 1; 0 at 0).
    pub fn sign() -> Self {
        PiecewiseLinear {
            breaks: vec![0.0],
            pieces: vec![(-1.0, 0.0), (1.0, 0.0)],
        }
    }

    /// `u ↦ |u|`.
    pub fn abs() -> Self {
        PiecewiseLinear {
            breaks: vec![0.0],
            pieces: vec![(0.0, -1.0), (0.0, 1.0)],
        }
    }

    /// `u ↦ max(u, 0)`.
    pub fn relu() -> Self {
        PiecewiseLinear {
            breaks: vec![0.0],
            pieces: vec![(0.0, 0.0), (0.0, 1.0)],
        }
    }

    /// `u ↦ max(u, b)`.
    pub fn max_with(b: f64) -> Result<Self, PiecewiseError> {
        Self::new(vec![b], vec![(b, 0.0), (0.0, 1.0)])
    }

    /// `u ↦ min(u, b)`.
    pub fn min_with(b: f64) -> Result<Self, PiecewiseError> {
        Self::new(vec![b], vec![(0.0, 1.0), (b, 0.0)])
    }

    /// `u ↦ min(max(u, lo), hi)` for `lo ≤ hi` (the constant `lo` when they are equal);
    /// `lo > hi` is an error.
    pub fn clip(lo: f64, hi: f64) -> Result<Self, PiecewiseError> {
        if lo > hi {
            return Err(PiecewiseError::EmptyClip { lo, hi });
        }
        if lo == hi {
            return Self::affine(lo, 0.0);
        }
        Self::new(vec![lo, hi], vec![(lo, 0.0), (0.0, 1.0), (hi, 0.0)])
    }

    /// The breakpoints.
    pub fn breaks(&self) -> &[f64] {
        &self.breaks
    }

    /// The affine pieces `(p_r, q_r)`, one per region, left to right.
    pub fn pieces(&self) -> &[(f64, f64)] {
        &self.pieces
    }

    /// The value at `u`; at a breakpoint, the mean of the one-sided limits.
    pub fn eval(&self, u: f64) -> f64 {
        let i = self.breaks.partition_point(|&b| b < u);
        let at = |r: usize| {
            let (p, q) = self.pieces[r];
            p + q * u
        };
        if i < self.breaks.len() && self.breaks[i] == u {
            0.5 * (at(i) + at(i + 1))
        } else {
            at(i)
        }
    }

    /// The piece of the region that starts at breakpoint `lo` (or the first region).
    fn piece_after(&self, lo: f64) -> (f64, f64) {
        self.pieces[self.breaks.partition_point(|&b| b <= lo)]
    }
}

/// `E[F(U)]` for U ~ N(mean, sd²), exact (truncated normal moments in Φ and φ).
/// `sd = 0` is the deterministic limit `F(mean)` (the mean of the one-sided limits at a
/// breakpoint); a negative or NaN `sd` gives NaN.
pub fn expect_pl(f: &PiecewiseLinear, mean: f64, sd: f64) -> f64 {
    expect_pl_product(f, &PiecewiseLinear::one(), mean, sd)
}

/// `E[F(U) G(U)]` for U ~ N(mean, sd²), exact: on each region between the merged
/// breakpoints the product is a quadratic `c + d z + e z²` in `z = (U − mean)/sd`, and
/// `E[z^j 1{α < z < β}]` is `Φ(β) − Φ(α)`, `φ(α) − φ(β)` and
/// `Φ(β) − Φ(α) + αφ(α) − βφ(β)` for `j = 0, 1, 2`. `sd = 0` gives `F(mean) G(mean)`.
pub fn expect_pl_product(f: &PiecewiseLinear, g: &PiecewiseLinear, mean: f64, sd: f64) -> f64 {
    if sd.is_nan() || sd < 0.0 || sd.is_infinite() || !mean.is_finite() {
        return f64::NAN;
    }
    if sd == 0.0 {
        return f.eval(mean) * g.eval(mean);
    }
    let mut cuts: Vec<f64> = f.breaks.iter().chain(&g.breaks).copied().collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let mut total = 0.0;
    for r in 0..=cuts.len() {
        let lo = if r == 0 {
            f64::NEG_INFINITY
        } else {
            cuts[r - 1]
        };
        let hi = cuts.get(r).copied().unwrap_or(f64::INFINITY);
        let ((p1, q1), (p2, q2)) = (f.piece_after(lo), g.piece_after(lo));
        // In z: (c1 + d1 z)(c2 + d2 z).
        let (c1, d1) = (p1 + q1 * mean, q1 * sd);
        let (c2, d2) = (p2 + q2 * mean, q2 * sd);
        let (alpha, beta) = ((lo - mean) / sd, (hi - mean) / sd);
        let m0 = interval(alpha, beta);
        let m1 = npdf(alpha) - npdf(beta);
        let m2 = m0 + xphi(alpha) - xphi(beta);
        total += c1 * c2 * m0 + (c1 * d2 + d1 * c2) * m1 + d1 * d2 * m2;
    }
    total
}

/// The moments `[P, E X1, E Y1, E XY1]` of the indicator of the upper orthant
/// `{X > h, Y > k}` for a standard bivariate normal with correlation ρ (Rosenbaum 1961):
/// with `s = √(1−ρ²)`, `A = (k − ρh)/s`, `B = (h − ρk)/s` and `Q = 1 − Φ`,
///
/// - `P = Φ₂(−h, −k; ρ)`,
/// - `E[X 1] = φ(h) Q(A) + ρ φ(k) Q(B)`, `E[Y 1]` symmetric,
/// - `E[XY 1] = ρP + ρ h φ(h) Q(A) + ρ k φ(k) Q(B) + s φ(h) φ(A)`.
fn upper_orthant(h: f64, k: f64, r: f64) -> [f64; 4] {
    if h == f64::INFINITY || k == f64::INFINITY {
        return [0.0; 4];
    }
    let tail2 = |k: f64| ncdf(-k) + xphi(k);
    match (h == f64::NEG_INFINITY, k == f64::NEG_INFINITY) {
        (true, true) => return [1.0, 0.0, 0.0, r],
        (true, false) => {
            let (p, e) = (ncdf(-k), npdf(k));
            return [p, r * e, e, r * tail2(k)];
        }
        (false, true) => {
            let (p, e) = (ncdf(-h), npdf(h));
            return [p, e, r * e, r * tail2(h)];
        }
        _ => {}
    }
    if r == 1.0 {
        let m = h.max(k);
        let (p, e) = (ncdf(-m), npdf(m));
        return [p, e, e, tail2(m)];
    }
    if r == -1.0 {
        // Y = −X: h < X < −k.
        if h >= -k {
            return [0.0; 4];
        }
        let p = interval(h, -k);
        let ex = npdf(h) - npdf(k);
        return [p, ex, -ex, -(p + xphi(h) + xphi(k))];
    }
    let s = ((1.0 - r) * (1.0 + r)).sqrt();
    let (a, b) = ((k - r * h) / s, (h - r * k) / s);
    let (qa, qb) = (ncdf(-a), ncdf(-b));
    let (ph, pk) = (npdf(h), npdf(k));
    let p = bvn(-h, -k, r);
    let ex = ph * qa + r * pk * qb;
    let ey = pk * qb + r * ph * qa;
    let exy = r * p + r * h * ph * qa + r * k * pk * qb + s * ph * npdf(a);
    [p, ex, ey, exy]
}

/// `F(mean + sd·x)` as a sum of a base affine map in `x` and of steps:
/// `(threshold, Δc, Δd)` meaning `(Δc + Δd·x)·1{x > threshold}` (the base has threshold
/// −∞).
fn steps(f: &PiecewiseLinear, mean: f64, sd: f64) -> Vec<(f64, f64, f64)> {
    let std_piece = |(p, q): (f64, f64)| (p + q * mean, q * sd);
    let (c0, d0) = std_piece(f.pieces[0]);
    let mut out = vec![(f64::NEG_INFINITY, c0, d0)];
    for (i, &b) in f.breaks.iter().enumerate() {
        let (c1, d1) = std_piece(f.pieces[i]);
        let (c2, d2) = std_piece(f.pieces[i + 1]);
        out.push(((b - mean) / sd, c2 - c1, d2 - d1));
    }
    out
}

/// `E[F(U) G(V)]` for (U, V) jointly normal with means `mean`, standard deviations `sd`
/// and correlation `rho`, exact: both maps are written as a base affine map plus steps
/// `(Δc + Δd·x) 1{x > α}` in the standardized variables, and each pair of terms is a
/// combination of the upper-orthant moments `P`, `E X1`, `E Y1`, `E XY1` (closed forms in
/// Φ₂, Φ and φ; Rosenbaum 1961). ρ = ±1 and `sd` = 0 (either or both) are the
/// degenerate limits; a negative or NaN standard deviation, or ρ outside [−1, 1], gives
/// NaN.
pub fn expect_pl2(
    f: &PiecewiseLinear,
    g: &PiecewiseLinear,
    mean: [f64; 2],
    sd: [f64; 2],
    rho: f64,
) -> f64 {
    let r = checked_rho(rho);
    let bad = |m: f64, s: f64| s.is_nan() || s < 0.0 || s.is_infinite() || !m.is_finite();
    if r.is_nan() || bad(mean[0], sd[0]) || bad(mean[1], sd[1]) {
        return f64::NAN;
    }
    let unit = PiecewiseLinear::one();
    match (sd[0] == 0.0, sd[1] == 0.0) {
        (true, true) => return f.eval(mean[0]) * g.eval(mean[1]),
        (true, false) => return f.eval(mean[0]) * expect_pl_product(g, &unit, mean[1], sd[1]),
        (false, true) => return g.eval(mean[1]) * expect_pl_product(f, &unit, mean[0], sd[0]),
        _ => {}
    }
    let (fs, gs) = (steps(f, mean[0], sd[0]), steps(g, mean[1], sd[1]));
    let mut total = 0.0;
    for &(alpha, c, d) in &fs {
        for &(beta, e, h) in &gs {
            let [p, ex, ey, exy] = upper_orthant(alpha, beta, r);
            total += c * e * p + c * h * ey + d * e * ex + d * h * exy;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numeric::rng::Streams;

    fn rel(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / b.abs()
        }
    }

    /// Reference values computed with mpmath 1.3 at 40 significant digits
    /// (`mp.ncdf`, `mp.npdf`).
    #[test]
    fn ncdf_and_npdf_match_high_precision_values() {
        let ncdf_ref = [
            (-37.0, 5.725_571_222_524_577e-300),
            (-30.0, 4.906_713_927_148_187e-198),
            (-20.0, 2.753_624_118_606_233_7e-89),
            (-10.0, 7.619_853_024_160_526e-24),
            (-5.0, 2.866_515_718_791_939e-7),
            (-2.5, 0.006_209_665_325_776_135),
            (-1.0, 0.158_655_253_931_457_05),
            (-0.1, 0.460_172_162_722_971),
            (0.0, 0.5),
            (0.5, 0.691_462_461_274_013_1),
            (1.5, 0.933_192_798_731_141_9),
            (3.0, 0.998_650_101_968_369_9),
            (8.0, 0.999_999_999_999_999_4),
        ];
        for (x, want) in ncdf_ref {
            let got = ncdf(x);
            assert!(rel(got, want) < 1e-15, "Φ({x}) = {got:e}, want {want:e}");
        }
        let npdf_ref = [
            (-37.0, 2.120_006_551_524_605_6e-298),
            (-10.0, 7.694_598_626_706_419e-23),
            (-1.0, 0.241_970_724_519_143_35),
            (0.0, 0.398_942_280_401_432_7),
            (2.5, 0.017_528_300_493_568_537),
        ];
        for (x, want) in npdf_ref {
            let got = npdf(x);
            assert!(rel(got, want) < 1e-15, "φ({x}) = {got:e}, want {want:e}");
        }
        assert_eq!((ncdf(f64::INFINITY), ncdf(f64::NEG_INFINITY)), (1.0, 0.0));
        assert!(ncdf(f64::NAN).is_nan() && npdf(f64::NAN).is_nan());
        assert_eq!(npdf(f64::INFINITY), 0.0);
        // erf and erfc against Φ, and a published value: erf(1) = 0.8427007929497149.
        assert!((erf(1.0) - 0.842_700_792_949_714_9).abs() < 2e-16);
        for x in [-3.0, -0.7, 0.0, 0.2, 1.9] {
            let via_phi = 2.0 * ncdf(SQRT_2 * x) - 1.0;
            assert!((erf(x) - via_phi).abs() < 1e-15, "erf({x})");
            assert!((erfc(x) - (1.0 - erf(x))).abs() < 1e-15, "erfc({x})");
        }
    }

    #[test]
    fn bvn_rules_are_gauss_legendre() {
        for (t, n) in [6, 12, 20].into_iter().enumerate() {
            let (x, w) = gauss_legendre(n);
            for i in 0..n / 2 {
                assert!((x[i] - GL_X[t][i]).abs() < 1e-15, "n = {n}, node {i}");
                assert!((w[i] - GL_W[t][i]).abs() < 1e-15, "n = {n}, weight {i}");
            }
        }
        // The rule integrates x^k exactly for k < 2n.
        let (x, w) = gauss_legendre(40);
        for k in 0..80 {
            let got: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(k)).sum();
            let want = if k % 2 == 1 {
                0.0
            } else {
                2.0 / (k as f64 + 1.0)
            };
            assert!((got - want).abs() < 1e-14, "∫x^{k}: {got} vs {want}");
        }
    }

    /// Φ₂ against identities, exact special cases and values computed with mpmath
    /// (40 digits; `quad` of `φ(x) Φ((k − ρx)/√(1−ρ²))` over `(−∞, h]`).
    #[test]
    fn bvn_matches_published_values_and_identities() {
        // Φ₂(0, 0; ρ) = 1/4 + asin(ρ)/(2π).
        for i in 0..=40 {
            let r = -1.0 + 0.05 * i as f64;
            let want = 0.25 + r.asin() / (2.0 * PI);
            assert!((bvn(0.0, 0.0, r) - want).abs() < 5e-16, "ρ = {r}");
        }
        let reference = [
            ((0.3, -0.7, 0.5), 0.206_523_779_785_739_01),
            ((-1.5, 2.0, -0.9), 0.046_522_614_539_180_65),
            ((1.0, 1.0, 0.99), 0.827_693_026_985_080_3),
            ((-2.0, -2.0, 0.95), 0.016_024_483_704_266_53),
            ((-3.0, -1.0, -0.3), 2.569_779_108_172_565_7e-5),
            ((2.5, -0.5, -0.999), 0.302_327_873_400_210_8),
            ((-6.0, -6.0, 0.9), 1.558_384_249_825_983e-10),
            ((0.1, 0.2, 0.0), 0.312_700_516_168_231_2),
            ((-4.0, 5.0, 0.7), 3.167_124_183_311_992e-5),
            ((1.2, -2.3, -0.6), 0.003_436_847_809_289_367),
        ];
        for ((h, k, r), want) in reference {
            let got = bvn(h, k, r);
            assert!(
                (got - want).abs() < 1e-15 && rel(got, want) < 1e-10,
                "Φ₂({h}, {k}; {r}) = {got:e}, want {want:e}"
            );
        }
        let rhos = [-1.0, -0.99, -0.93, -0.5, 0.0, 0.3, 0.8, 0.95, 1.0];
        let pts = [-7.0, -2.2, -0.4, 0.0, 0.9, 3.1];
        for &r in &rhos {
            for &h in &pts {
                for &k in &pts {
                    let p = bvn(h, k, r);
                    // Symmetries: Φ₂(h,k;ρ) = Φ₂(k,h;ρ); Φ₂(h,k;ρ) + Φ₂(h,−k;−ρ) = Φ(h).
                    assert!((p - bvn(k, h, r)).abs() < 1e-15);
                    let s = p + bvn(h, -k, -r);
                    assert!((s - ncdf(h)).abs() < 2e-15, "({h}, {k}, {r}): {s} vs Φ(h)");
                    // Fréchet bounds.
                    assert!(p <= ncdf(h).min(ncdf(k)) + 1e-16);
                    let lower = (ncdf(h) + ncdf(k) - 1.0).max(0.0);
                    assert!(p >= lower - 4e-16, "({h}, {k}, {r}): {p:e} < {lower:e}");
                }
                // Infinite limits are exact.
                assert_eq!(bvn(h, f64::INFINITY, r), ncdf(h));
                assert_eq!(bvn(f64::INFINITY, h, r), ncdf(h));
                assert_eq!(bvn(h, f64::NEG_INFINITY, r), 0.0);
            }
            // ρ = 0 factorises.
            assert!((bvn(-1.3, 0.4, 0.0) - ncdf(-1.3) * ncdf(0.4)).abs() < 1e-16);
        }
        // ρ = ±1: Φ(min(h, k)) and max(0, Φ(h) + Φ(k) − 1), and the limit from inside.
        assert_eq!(bvn(0.3, -0.2, 1.0), ncdf(-0.2));
        let (got, want) = (bvn(0.3, -0.2, -1.0), ncdf(0.3) - ncdf(0.2));
        assert!((got - want).abs() < 3e-16, "{got} vs {want}");
        assert_eq!(bvn(-0.3, 0.2, -1.0), 0.0);
        assert!((bvn(0.3, -0.2, 1.0 - 1e-13) - ncdf(-0.2)).abs() < 1e-6);
        assert!(bvn(0.0, 0.0, 1.5).is_nan() && bvn(f64::NAN, 0.0, 0.2).is_nan());
    }

    #[test]
    fn bvn_partials_match_finite_differences() {
        let e = 1e-5;
        for &(h, k, r) in &[
            (0.3, -0.7, 0.5),
            (-1.5, 2.0, -0.9),
            (1.0, 0.8, 0.97),
            (-0.4, -1.1, -0.3),
            (2.0, 0.1, 0.0),
        ] {
            let fd_h = (bvn(h + e, k, r) - bvn(h - e, k, r)) / (2.0 * e);
            let fd_k = (bvn(h, k + e, r) - bvn(h, k - e, r)) / (2.0 * e);
            let fd_r = (bvn(h, k, r + e) - bvn(h, k, r - e)) / (2.0 * e);
            assert!((bvn_dh(h, k, r) - fd_h).abs() < 1e-9, "∂h at {h},{k},{r}");
            assert!((bvn_dk(h, k, r) - fd_k).abs() < 1e-9, "∂k at {h},{k},{r}");
            assert!((bvn_drho(h, k, r) - fd_r).abs() < 1e-9, "∂ρ at {h},{k},{r}");
            // φ₂ is the textbook formula.
            let s2 = 1.0 - r * r;
            let direct =
                (-(h * h - 2.0 * r * h * k + k * k) / (2.0 * s2)).exp() / (2.0 * PI * s2.sqrt());
            assert!(rel(bvn_density(h, k, r), direct) < 1e-13);
        }
        // The limits at ρ = ±1.
        assert_eq!(bvn_dh(0.2, 0.5, 1.0), npdf(0.2));
        assert_eq!(bvn_dh(0.7, 0.5, 1.0), 0.0);
        assert_eq!(bvn_dh(0.7, -0.5, -1.0), npdf(0.7));
        assert_eq!(bvn_density(0.7, 0.5, 1.0), 0.0);
    }

    #[test]
    fn gauss_hermite_integrates_moments_and_cos() {
        for n in [1, 2, 3, 5, 10, 20, 50, 100, 200] {
            let (x, w) = gauss_hermite(n);
            assert_eq!((x.len(), w.len()), (n, n));
            let total: f64 = w.iter().sum();
            assert!((total - 1.0).abs() < 1e-14, "n = {n}: Σw = {total}");
            assert!(x.windows(2).all(|p| p[0] < p[1]) && w.iter().all(|&w| w > 0.0));
            // E Z^{2k} = (2k−1)!!, exact for 2k < 2n.
            let mut dfact = 1.0;
            for k in 1..n.min(25) {
                dfact *= (2 * k - 1) as f64;
                let got: f64 = x
                    .iter()
                    .zip(&w)
                    .map(|(x, w)| w * x.powi(2 * k as i32))
                    .sum();
                assert!(rel(got, dfact) < 1e-12, "n = {n}: E Z^{} = {got}", 2 * k);
                let terms = x.iter().zip(&w).map(|(x, w)| w * x.powi(2 * k as i32 - 1));
                let (odd, scale) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                assert!(odd.abs() < 1e-14 * scale, "n = {n}: odd moment {odd}");
            }
            if n >= 20 {
                let c: f64 = x.iter().zip(&w).map(|(x, w)| w * x.cos()).sum();
                assert!(
                    (c - (-0.5f64).exp()).abs() < 1e-15,
                    "n = {n}: E cos Z = {c}"
                );
            }
        }
        // The outermost weights for n = 200 are accurate relative to themselves: the
        // rule integrates exp(tZ) = e^{t²/2}, which leans on them, for t = 6.
        let (x, w) = gauss_hermite(200);
        let got: f64 = x.iter().zip(&w).map(|(x, w)| w * (6.0 * x).exp()).sum();
        assert!(rel(got, 18f64.exp()) < 1e-12, "E e^(6Z) = {got}");
        assert_eq!(gauss_hermite(0), (vec![], vec![]));
    }

    #[test]
    fn expect2_is_spectral_for_smooth_and_poor_for_kinked_integrands() {
        let mean: [f64; 2] = [0.3, -0.5];
        let cov = [[1.5, -0.6], [-0.6, 0.8]];
        // E exp(U + V) = exp(m₁ + m₂ + (c₁₁ + 2c₁₂ + c₂₂)/2).
        let want = (mean[0] + mean[1] + (1.5 - 1.2 + 0.8) / 2.0).exp();
        let got = expect2(|u, v| (u + v).exp(), mean, cov, 30);
        assert!(rel(got, want) < 1e-13, "{got} vs {want}");
        // E UV = c₁₂ + m₁m₂.
        let got = expect2(|u, v| u * v, mean, cov, 3);
        assert!((got - (-0.6 + 0.3 * -0.5)).abs() < 1e-14);
        // A kink: E relu(U)·sign(V) against the exact value; the product rule's error
        // is far above rounding, and shrinks only slowly with n.
        let rho = -0.6 / (1.5f64 * 0.8).sqrt();
        let exact = expect_pl2(
            &PiecewiseLinear::relu(),
            &PiecewiseLinear::sign(),
            mean,
            [1.5f64.sqrt(), 0.8f64.sqrt()],
            rho,
        );
        let sign = |v: f64| PiecewiseLinear::sign().eval(v);
        let err = |n| (expect2(|u, v| u.max(0.0) * sign(v), mean, cov, n) - exact).abs();
        let (e20, e80) = (err(20), err(80));
        assert!(e20 > 1e-6 && e80 > 1e-8 && e80 < e20, "{e20:e}, {e80:e}");
        // Not a covariance.
        assert!(expect2(|u, _| u, mean, [[1.0, 2.0], [2.0, 1.0]], 5).is_nan());
    }

    /// The maps the tests take expectations of: the named constructors and a
    /// discontinuous map with three breakpoints.
    fn maps() -> Vec<(&'static str, PiecewiseLinear)> {
        vec![
            ("identity", PiecewiseLinear::identity()),
            ("sign", PiecewiseLinear::sign()),
            ("abs", PiecewiseLinear::abs()),
            ("relu", PiecewiseLinear::relu()),
            ("clip", PiecewiseLinear::clip(-0.5, 1.2).unwrap()),
            ("max_with", PiecewiseLinear::max_with(0.3).unwrap()),
            ("min_with", PiecewiseLinear::min_with(-0.2).unwrap()),
            (
                "jumpy",
                PiecewiseLinear::new(
                    vec![-1.0, 0.5, 2.0],
                    vec![(0.5, -0.3), (-1.0, 2.0), (3.0, 0.0), (1.0, 0.5)],
                )
                .unwrap(),
            ),
        ]
    }

    /// `∫ f` over `[lo, hi]` by 12-point Gauss–Legendre on panels of width ≤ 0.5.
    fn quad(f: &dyn Fn(f64) -> f64, lo: f64, hi: f64, rule: &(Vec<f64>, Vec<f64>)) -> f64 {
        if hi <= lo {
            return 0.0;
        }
        let panels = ((hi - lo) / 0.5).ceil().max(1.0) as usize;
        let width = (hi - lo) / panels as f64;
        let mut total = 0.0;
        for p in 0..panels {
            let (a, b) = (lo + p as f64 * width, lo + (p + 1) as f64 * width);
            let (c, h) = ((a + b) / 2.0, (b - a) / 2.0);
            for (x, w) in rule.0.iter().zip(&rule.1) {
                total += h * w * f(c + h * x);
            }
        }
        total
    }

    /// `∫ f(x) φ(x) dx` over [−12, 12] split at `cuts` (where f has kinks or jumps):
    /// the pieces are smooth, so the rule converges spectrally (the tails beyond ±12
    /// hold less than 1e-30).
    fn quad_split(f: &dyn Fn(f64) -> f64, cuts: &[f64], rule: &(Vec<f64>, Vec<f64>)) -> f64 {
        let mut pts: Vec<f64> = cuts.iter().copied().filter(|c| c.abs() < 12.0).collect();
        pts.push(-12.0);
        pts.push(12.0);
        pts.sort_by(f64::total_cmp);
        pts.windows(2)
            .map(|w| quad(&|x| f(x) * npdf(x), w[0], w[1], rule))
            .sum()
    }

    fn std_cuts(f: &PiecewiseLinear, m: f64, s: f64) -> Vec<f64> {
        f.breaks().iter().map(|b| (b - m) / s).collect()
    }

    /// `E[F(U)G(V)]` by iterated quadrature: X outside, `Y = ρX + √(1−ρ²) W` inside,
    /// each split at the kinks it sees.
    fn quad2(
        f: &PiecewiseLinear,
        g: &PiecewiseLinear,
        m: [f64; 2],
        s: [f64; 2],
        r: f64,
        rule: &(Vec<f64>, Vec<f64>),
    ) -> f64 {
        let c = ((1.0 - r) * (1.0 + r)).sqrt();
        let mut outer_cuts = std_cuts(f, m[0], s[0]);
        if c == 0.0 {
            outer_cuts.extend(std_cuts(g, m[1], s[1]).iter().map(|b| b / r));
        }
        let inner = |x: f64| {
            if c == 0.0 {
                return g.eval(m[1] + s[1] * r * x);
            }
            let cuts: Vec<f64> = std_cuts(g, m[1], s[1])
                .iter()
                .map(|b| (b - r * x) / c)
                .collect();
            quad_split(&|w| g.eval(m[1] + s[1] * (r * x + c * w)), &cuts, rule)
        };
        quad_split(&|x| f.eval(m[0] + s[0] * x) * inner(x), &outer_cuts, rule)
    }

    /// A fixed LCG for choosing test inputs.
    struct Lcg(u64);
    impl Lcg {
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            items[(self.0 >> 33) as usize % items.len()]
        }
    }

    const MEANS: [f64; 7] = [-2.1, -0.6, -0.05, 0.0, 0.2, 0.9, 1.7];
    const SDS: [f64; 5] = [0.01, 0.3, 1.0, 2.5, 7.0];
    const RHOS: [f64; 8] = [-1.0, -0.99, -0.5, 0.0, 0.3, 0.95, 1.0, 0.7];

    #[test]
    fn expect_pl_matches_quadrature() {
        let rule = gauss_legendre(12);
        let maps = maps();
        let mut lcg = Lcg(1);
        let mut worst: f64 = 0.0;
        for (nf, f) in &maps {
            for (ng, g) in &maps {
                for _ in 0..3 {
                    let (m, s) = (lcg.pick(&MEANS), lcg.pick(&SDS));
                    let cuts: Vec<f64> = std_cuts(f, m, s)
                        .into_iter()
                        .chain(std_cuts(g, m, s))
                        .collect();
                    let want = quad_split(&|x| f.eval(m + s * x) * g.eval(m + s * x), &cuts, &rule);
                    let got = expect_pl_product(f, g, m, s);
                    let err = (got - want).abs() / want.abs().max(1.0);
                    worst = worst.max(err);
                    assert!(err < 1e-10, "E {nf}·{ng} at N({m}, {s}²): {got} vs {want}");
                }
            }
            let (m, s) = (lcg.pick(&MEANS), lcg.pick(&SDS));
            let want = quad_split(&|x| f.eval(m + s * x), &std_cuts(f, m, s), &rule);
            let got = expect_pl(f, m, s);
            assert!(
                (got - want).abs() < 1e-10 * want.abs().max(1.0),
                "E {nf}: {got} vs {want}"
            );
        }
        // Closed forms: E sign(a + sZ) = erf(a/(√2 s)), E|U| folded normal.
        for &(a, s) in &[(0.3, 0.7), (-1.2, 0.2), (0.0, 3.0)] {
            let got = expect_pl(&PiecewiseLinear::sign(), a, s);
            assert!((got - erf(a / (SQRT_2 * s))).abs() < 1e-15);
            let folded = s * (2.0 / PI).sqrt() * (-a * a / (2.0 * s * s)).exp()
                + a * (1.0 - 2.0 * ncdf(-a / s));
            assert!((expect_pl(&PiecewiseLinear::abs(), a, s) - folded).abs() < 1e-15);
        }
        // sd = 0: the value, with sign(0) = 0.
        assert_eq!(expect_pl(&PiecewiseLinear::sign(), 0.0, 0.0), 0.0);
        assert_eq!(expect_pl(&PiecewiseLinear::relu(), 1.5, 0.0), 1.5);
        assert!(expect_pl(&PiecewiseLinear::relu(), 1.5, -1.0).is_nan());
        assert!(worst < 1e-10, "worst relative error {worst:e}");
    }

    #[test]
    fn expect_pl2_matches_quadrature() {
        let rule = gauss_legendre(12);
        let maps = maps();
        let mut lcg = Lcg(7);
        let mut worst: f64 = 0.0;
        for (nf, f) in &maps {
            for (ng, g) in &maps {
                let m = [lcg.pick(&MEANS), lcg.pick(&MEANS)];
                let s = [lcg.pick(&SDS), lcg.pick(&SDS)];
                let r = lcg.pick(&RHOS);
                let want = quad2(f, g, m, s, r, &rule);
                let got = expect_pl2(f, g, m, s, r);
                let err = (got - want).abs() / want.abs().max(1.0);
                worst = worst.max(err);
                assert!(
                    err < 1e-10,
                    "E {nf}(U)·{ng}(V), {m:?}, {s:?}, ρ = {r}: {got} vs {want}"
                );
            }
        }
        // Every ρ of the list on one pair, and the univariate case as ρ = 1 with
        // equal marginals.
        let (f, g) = (
            PiecewiseLinear::sign(),
            PiecewiseLinear::clip(-0.5, 1.2).unwrap(),
        );
        for r in RHOS {
            let want = quad2(&f, &g, [0.4, -0.3], [1.3, 0.8], r, &rule);
            let got = expect_pl2(&f, &g, [0.4, -0.3], [1.3, 0.8], r);
            assert!((got - want).abs() < 1e-10, "ρ = {r}: {got} vs {want}");
        }
        let same = expect_pl2(&f, &g, [0.4, 0.4], [1.3, 1.3], 1.0);
        assert!((same - expect_pl_product(&f, &g, 0.4, 1.3)).abs() < 1e-14);
        // Degenerate standard deviations.
        let one = expect_pl2(&f, &g, [0.4, -0.3], [0.0, 0.8], 0.5);
        assert_eq!(one, f.eval(0.4) * expect_pl(&g, -0.3, 0.8));
        let both = expect_pl2(&f, &g, [0.4, -0.3], [0.0, 0.0], 0.5);
        assert_eq!(both, f.eval(0.4) * g.eval(-0.3));
        assert!(expect_pl2(&f, &g, [0.4, -0.3], [1.0, 1.0], 1.2).is_nan());
        assert!(worst < 1e-10, "worst relative error {worst:e}");
    }

    /// Monte Carlo with the crate's seeded generator (itself checked bit for bit against
    /// `rand_distr`'s normals in `rng.rs`): 5·10⁶ samples per case (10⁷ for all cases
    /// take 5 s unoptimized), agreement within 5 standard errors of the sample mean.
    #[test]
    fn expect_pl_matches_monte_carlo() {
        const N: usize = 5_000_000;
        let maps = maps();
        let mut lcg = Lcg(3);
        let mut stream = Streams::new(2024).stream(0);
        let mut z1 = vec![0.0; N];
        let mut z2 = vec![0.0; N];
        for r in RHOS {
            let (nf, f) = &maps[lcg.pick(&[0usize, 1, 2, 3, 4, 5, 6, 7])];
            let (ng, g) = &maps[lcg.pick(&[1usize, 2, 3, 4, 7])];
            let m = [lcg.pick(&MEANS), lcg.pick(&MEANS)];
            let s = [lcg.pick(&SDS[1..4]), lcg.pick(&SDS[1..4])];
            stream.fill_normal(&mut z1);
            stream.fill_normal(&mut z2);
            let c = ((1.0 - r) * (1.0 + r)).sqrt();
            let (mut sum, mut sq) = (0.0, 0.0);
            let (mut sum1, mut sq1) = (0.0, 0.0);
            for (&x, &w) in z1.iter().zip(&z2) {
                let fu = f.eval(m[0] + s[0] * x);
                let v = fu * g.eval(m[1] + s[1] * (r * x + c * w));
                sum += v;
                sq += v * v;
                let v1 = fu * g.eval(m[0] + s[0] * x);
                sum1 += v1;
                sq1 += v1 * v1;
            }
            let n = N as f64;
            for (what, sum, sq, exact) in [
                ("E F(U)G(V)", sum, sq, expect_pl2(f, g, m, s, r)),
                ("E F(U)G(U)", sum1, sq1, expect_pl_product(f, g, m[0], s[0])),
            ] {
                let mean = sum / n;
                let se = ((sq / n - mean * mean) / n).sqrt();
                assert!(
                    (mean - exact).abs() < 5.0 * se + 1e-15,
                    "{what}, {nf}, {ng}, {m:?}, {s:?}, ρ = {r}: MC {mean} ± {se} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn piecewise_constructors_check_their_input() {
        assert_eq!(
            PiecewiseLinear::clip(1.0, 0.0),
            Err(PiecewiseError::EmptyClip { lo: 1.0, hi: 0.0 })
        );
        assert!(PiecewiseLinear::new(vec![1.0, 1.0], vec![(0.0, 0.0); 3]).is_err());
        assert!(PiecewiseLinear::new(vec![1.0], vec![(0.0, 0.0); 3]).is_err());
        assert!(PiecewiseLinear::max_with(f64::NAN).is_err());
        let c = PiecewiseLinear::clip(-1.0, 2.0).unwrap();
        let vals: Vec<f64> = [-3.0, -1.0, 0.5, 2.0, 4.0]
            .iter()
            .map(|&u| c.eval(u))
            .collect();
        assert_eq!(vals, [-1.0, -1.0, 0.5, 2.0, 2.0]);
        assert_eq!(PiecewiseLinear::clip(0.5, 0.5).unwrap().eval(9.0), 0.5);
        let s = PiecewiseLinear::sign();
        assert_eq!([s.eval(-2.0), s.eval(0.0), s.eval(3.0)], [-1.0, 0.0, 1.0]);
    }
}
