//! The simulation generator (`smelt::internals::numeric::rng`): that its bits are xoshiro256++, that it
//! is reproducible, and that the normals of `fill_normal` (the simulations' draws) are
//! N(0, 1): moments and tails within five standard errors over 10^7 draws, a χ² test on
//! binned draws and a Kolmogorov–Smirnov test against Φ, and no correlation within or
//! across streams (seeded, so each test is fixed; the thresholds are crossed by chance
//! with probability below 1e-3). The bit-for-bit checks against `rand_distr` and
//! `rand_xoshiro`'s jumps are the unit tests of `src/sim/rng.rs`.

use smelt::internals::numeric::rng::Streams;

/// SplitMix64 and xoshiro256++ written from Blackman & Vigna's reference C code.
fn reference(seed: u64, n: usize) -> Vec<u64> {
    let mut sm = seed;
    let mut splitmix = || {
        sm = sm.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = sm;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut s = [splitmix(), splitmix(), splitmix(), splitmix()];
    (0..n)
        .map(|_| {
            let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
            let t = s[1] << 17;
            s[2] ^= s[0];
            s[3] ^= s[1];
            s[1] ^= s[2];
            s[0] ^= s[3];
            s[2] ^= t;
            s[3] = s[3].rotate_left(45);
            result
        })
        .collect()
}

#[test]
fn the_bits_are_xoshiro256_plus_plus_seeded_by_splitmix64() {
    for seed in [0, 1, 42, u64::MAX] {
        let mut g = Streams::new(seed).stream(0);
        let got: Vec<u64> = (0..100).map(|_| g.next_u64()).collect();
        assert_eq!(got, reference(seed, 100), "seed {seed}");
    }
}

fn normals(s: &Streams, block: u64) -> Vec<f64> {
    let mut g = s.stream(block);
    let mut v = vec![0.0; 1000];
    g.fill_normal(&mut v);
    v
}

#[test]
fn streams_are_reproducible_and_distinct() {
    let s = Streams::new(7);
    assert_eq!(normals(&s, 3), normals(&Streams::new(7), 3));
    assert_ne!(normals(&s, 0), normals(&s, 1));
    assert_ne!(normals(&s, 0), normals(&Streams::new(8), 0));
}

/// `n` normals of one stream, filled as the simulations fill them: mostly slices of 128
/// (one register of lanes), with some of other lengths.
fn filled(seed: u64, block: u64, n: usize) -> Vec<f64> {
    let mut g = Streams::new(seed).stream(block);
    let mut v = vec![0.0; n];
    let lengths = [128, 128, 128, 10, 128, 1, 256, 37, 1280, 8];
    let (mut at, mut k) = (0, 0);
    while at < n {
        let len = lengths[k % lengths.len()].min(n - at);
        g.fill_normal(&mut v[at..at + len]);
        at += len;
        k += 1;
    }
    v
}

/// Φ, the standard normal distribution function, from smelt's erfc (relative error
/// < 1.2e-7: Numerical Recipes' Chebyshev fit, ample for counts of 10^7 draws).
fn phi(x: f64) -> f64 {
    0.5 * smelt::internals::sim::escape::erfc(-x / std::f64::consts::SQRT_2)
}

const N: usize = 10_000_000;

#[test]
fn normals_have_the_moments_and_tails_of_the_standard_normal() {
    let v = filled(2026, 5, N);
    let (mut m1, mut m2, mut m3, mut m4, mut tail3, mut tail4) =
        (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
    for &x in &v {
        m1 += x;
        m2 += x * x;
        m3 += x * x * x;
        m4 += x * x * x * x;
        tail3 += usize::from(x.abs() > 3.0);
        tail4 += usize::from(x.abs() > 4.0);
    }
    let nf = N as f64;
    let (m1, m2, m3, m4) = (m1 / nf, m2 / nf, m3 / nf, m4 / nf);
    // Standard errors: Var x = 1, Var x² = 2, Var x³ = 15, Var x⁴ = 96; skewness m3 (σ = 1
    // to first order) and excess kurtosis m4 − 3.
    let se = |v: f64| 5.0 * (v / nf).sqrt();
    assert!(m1.abs() < se(1.0), "mean {m1}");
    assert!((m2 - 1.0).abs() < se(2.0), "variance {m2}");
    assert!(m3.abs() < se(15.0), "third moment {m3}");
    assert!((m4 - 3.0).abs() < se(96.0), "fourth moment {m4}");
    // The ziggurat's tail and wedges: P(|x| > 3) = 0.0026998, P(|x| > 4) = 6.334e-5, and
    // beyond the base strip's R = 3.6542 (drawn by the tail algorithm) 2.58e-4.
    for (count, p) in [(tail3, 0.002_699_796), (tail4, 6.334_248e-5)] {
        let f = count as f64 / nf;
        assert!((f - p).abs() < se(p * (1.0 - p)), "tail {f} vs {p}");
    }
}

#[test]
fn normals_follow_phi_binned_and_in_kolmogorov_smirnov_distance() {
    let mut v = filled(11, 2, N);
    // χ² over 82 bins: width 0.1 on [−4, 4] and the two tails. With 81 degrees of freedom
    // (mean 81, sd 12.7), 150 is exceeded with probability about 1e-6.
    let edges: Vec<f64> = (0..=80).map(|k| -4.0 + 0.1 * k as f64).collect();
    let mut counts = vec![0usize; edges.len() + 1];
    for &x in &v {
        counts[edges.partition_point(|&e| e <= x)] += 1;
    }
    let cdf = |k: usize| {
        if k == 0 {
            0.0
        } else if k > edges.len() {
            1.0
        } else {
            phi(edges[k - 1])
        }
    };
    let chi2: f64 = counts
        .iter()
        .enumerate()
        .map(|(k, &c)| {
            let e = N as f64 * (cdf(k + 1) - cdf(k));
            (c as f64 - e).powi(2) / e
        })
        .sum();
    assert!(chi2 < 150.0, "χ² = {chi2} over 82 bins");
    // Kolmogorov–Smirnov: √n·D exceeds 2.0 with probability 6.7e-4.
    v.sort_by(f64::total_cmp);
    let nf = N as f64;
    let d = v
        .iter()
        .enumerate()
        .map(|(k, &x)| {
            let p = phi(x);
            (p - k as f64 / nf).max((k + 1) as f64 / nf - p)
        })
        .fold(0.0f64, f64::max);
    assert!(
        nf.sqrt() * d < 2.0,
        "KS distance {d} (√n·D = {})",
        nf.sqrt() * d
    );
}

#[test]
fn normals_are_uncorrelated_within_and_across_streams() {
    // Sample correlations of n pairs: within 5/√n of 0. Within a stream, lags 1..=16 cover
    // neighbours drawn from different interleaved sub-generators and from the same one (lag
    // 8); across streams, neighbouring blocks and seeds.
    let n = 1_000_000;
    let limit = 5.0 / (n as f64).sqrt();
    let a = filled(3, 0, n + 16);
    for lag in 1..=16 {
        let c: f64 = (0..n).map(|k| a[k] * a[k + lag]).sum::<f64>() / n as f64;
        assert!(c.abs() < limit, "lag {lag}: correlation {c}");
    }
    for (seed, block) in [(3, 1), (3, 2), (4, 0)] {
        let b = filled(seed, block, n);
        let c: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() / n as f64;
        assert!(
            c.abs() < limit,
            "seed {seed} block {block}: correlation {c}"
        );
    }
}
