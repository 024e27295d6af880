//! The seeded generator of every simulation: xoshiro256++ (Blackman & Vigna) for the
//! bits, and standard normals by the ziggurat method of `rand_distr` (Marsaglia & Tsang,
//! with Doornik's ZIGNOR correction), re-implemented here over the same tables and the
//! same use of the bits, so that the draws are `rand_distr::StandardNormal`'s exactly
//! (tested bit for bit) while the fast path inlines into the fill loop.
//!
//! Reproducibility across thread counts: paths are grouped in fixed blocks, and block `b`
//! draws from its own stream, the seeded generator advanced by `b` jumps of 2^128 draws
//! (xoshiro256++'s `jump`), so streams never overlap and a path's numbers depend only on
//! the seed and its block, never on which thread ran it or in what order.

use super::ziggurat_tables as zig;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The generator's name, as reports print it.
pub const NAME: &str =
    "xoshiro256++ with ziggurat normals (rand_distr's tables and algorithm), one jump-ahead stream per block of paths";

/// The streams of one seed.
#[derive(Debug, Clone)]
pub struct Streams {
    base: Xoshiro256PlusPlus,
}

impl Streams {
    /// The streams of `seed` (expanded to the 256-bit state by SplitMix64).
    pub fn new(seed: u64) -> Streams {
        Streams {
            base: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    /// Streams `0..count`, each one jump after the previous (O(count) jumps in all,
    /// where `count` calls of [`Streams::stream`] would take O(count²)).
    pub fn streams(&self, count: usize) -> Vec<Stream> {
        let mut g = self.base.clone();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(Stream(g.clone()));
            g.jump();
        }
        out
    }

    /// Stream `block`: the base generator after `block` jumps of 2^128 draws.
    pub fn stream(&self, block: u64) -> Stream {
        let mut g = self.base.clone();
        for _ in 0..block {
            g.jump();
        }
        Stream(g)
    }
}

/// One stream of draws.
#[derive(Debug, Clone)]
pub struct Stream(Xoshiro256PlusPlus);

impl Stream {
    /// A standard normal draw.
    #[inline]
    pub fn normal(&mut self) -> f64 {
        loop {
            let bits = self.0.next_u64();
            let i = (bits & 0xff) as usize;
            // A uniform in [-1, 1) from the 52 high bits (a float in [2, 4), minus 3).
            let u = f64::from_bits((1024u64 << 52) | (bits >> 12)) - 3.0;
            let x = u * zig::X[i];
            if x.abs() < zig::X[i + 1] {
                return x;
            }
            if let Some(x) = self.normal_slow(i, u, x) {
                return x;
            }
        }
    }

    /// The ziggurat's rare cases: the base strip's tail, and the wedges.
    #[cold]
    fn normal_slow(&mut self, i: usize, u: f64, x: f64) -> Option<f64> {
        if i == 0 {
            // The tail beyond R, by Marsaglia's method.
            let (mut tx, mut ty) = (1.0f64, 0.0f64);
            while -2.0 * ty < tx * tx {
                tx = self.open01().ln() / zig::R;
                ty = self.open01().ln();
            }
            return Some(if u < 0.0 { tx - zig::R } else { zig::R - tx });
        }
        let f = zig::F[i + 1] + (zig::F[i] - zig::F[i + 1]) * self.uniform();
        (f < (-x * x / 2.0).exp()).then_some(x)
    }

    /// A uniform draw in (0, 1) with 52 random bits.
    #[inline]
    fn open01(&mut self) -> f64 {
        f64::from_bits((1023u64 << 52) | (self.0.next_u64() >> 12)) - (1.0 - f64::EPSILON / 2.0)
    }

    /// Fills `out` with standard normal draws.
    pub fn fill_normal(&mut self, out: &mut [f64]) {
        for x in out {
            *x = self.normal();
        }
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Raw 64-bit output.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn normals_are_rand_distr_draws_bit_for_bit() {
        let mut ours = Streams::new(42).stream(3);
        let mut theirs = Streams::new(42).stream(3).0;
        for k in 0..2_000_000 {
            let a = ours.normal();
            let b: f64 = StandardNormal.sample(&mut theirs);
            assert_eq!(a.to_bits(), b.to_bits(), "draw {k}: {a} vs {b}");
        }
    }
}
