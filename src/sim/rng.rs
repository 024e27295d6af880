//! The seeded generator of every simulation: xoshiro256++ (Blackman & Vigna) for the
//! bits, and standard normals by the ziggurat method of `rand_distr` (Marsaglia & Tsang,
//! with Doornik's ZIGNOR correction).
//!
//! Reproducibility across thread counts: paths are grouped in fixed blocks, and block `b`
//! draws from its own stream, the seeded generator advanced by `b` jumps of 2^128 draws
//! (xoshiro256++'s `jump`), so streams never overlap and a path's numbers depend only on
//! the seed and its block, never on which thread ran it or in what order.

use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The generator's name, as reports print it.
pub const NAME: &str =
    "xoshiro256++ with ziggurat normals (rand_distr), one jump-ahead stream per block of paths";

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
        StandardNormal.sample(&mut self.0)
    }

    /// Fills `out` with standard normal draws.
    pub fn fill_normal(&mut self, out: &mut [f64]) {
        for x in out {
            *x = StandardNormal.sample(&mut self.0);
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
