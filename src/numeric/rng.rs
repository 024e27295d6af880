//! The seeded generator of every simulation: standard normals by the ziggurat method
//! (Marsaglia & Tsang, 256 layers, with Doornik's ZIGNOR correction; `rand_distr`'s
//! tables) over the bits of xoshiro256++ (Blackman & Vigna), drawn in batches from eight
//! interleaved xoshiro256++ sub-generators so that the fast path vectorizes.
//!
//! One [`Stream`] holds nine xoshiro256++ generators, all positions of the one sequence
//! that [`Streams::new`] seeds (SplitMix64 expansion of the seed to the 256-bit state):
//!
//! * the *scalar* generator of stream `b`: the seeded generator after `b` jumps of 2^128
//!   draws (xoshiro256++'s `jump`). It gives [`Stream::next_u64`], [`Stream::uniform`],
//!   [`Stream::normal`], the ziggurat's rare cases (tail and wedges) in
//!   [`Stream::fill_normal`], and the last `len % 8` normals of a fill;
//! * *lane* generators `j = 0..8` of stream `b`: the seeded generator after `j + 1` long
//!   jumps of 2^192 draws (`long_jump`) and then `b` jumps of 2^128.
//!
//! So no two of them overlap unless a stream draws 2^128 numbers or there are 2^64
//! blocks. [`Stream::fill_normal`] fills its slice eight at a time: the `k`-th group of
//! eight candidates are the `k`-th words of lanes 0..8, mapped to the ziggurat's fast path
//! (a layer from the low 8 bits, a uniform in [-1, 1) from the high 52); the candidates
//! that fall outside their layer's rectangle (1.5 %) are then replaced, in order, by the
//! exact slow path drawn from the scalar generator (the tail beyond R by Marsaglia's
//! method, the wedges by the density test, and a fresh scalar ziggurat draw when the
//! wedge test rejects). Every draw is exact, and a stream's numbers depend only on the
//! seed, the block and the sequence of calls, never on the thread or the CPU: on x86-64
//! with AVX2 (detected at run time) the fast path runs as AVX2 code, and otherwise as
//! portable code giving the same numbers bit for bit (tested).

use super::ziggurat_tables as zig;

/// The generator's name, as reports print it.
pub const NAME: &str = "ziggurat normals (Marsaglia–Tsang, 256 layers, rand_distr's tables) over 8 interleaved xoshiro256++ sub-generators (long-jump apart), batch fast path with a scalar fix-up, one jump-ahead stream per block of paths";

/// Which implementation of the batch fast path this CPU runs ("AVX2" or "portable"); the
/// draws are the same either way.
pub fn fast_path() -> &'static str {
    match Kernel::detect() {
        Kernel::Portable => "portable",
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2(_) => "AVX2",
    }
}

/// A piece of work whose body should be compiled for AVX2 where the CPU has it (see
/// [`in_avx2`]). Implement [`Job::run`] with `#[inline(always)]`, and mark what it calls so
/// too: that is what makes the body part of the AVX2-compiled function. (A closure
/// cannot be marked so, and a large one is not inlined: it would stay SSE2 code.)
pub(crate) trait Job {
    type Out;
    fn run(self) -> Self::Out;
}

/// Runs `job` compiled for AVX2 where the CPU has it, and as portable code otherwise.
#[inline(always)]
pub(crate) fn in_avx2<J: Job>(job: J) -> J::Out {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = x86::Avx2::detect() {
        return t.call(job);
    }
    job.run()
}

/// Sub-generators per stream (interleaved lanes of the fast path).
const SUB: usize = 8;
/// Normals per batch of the fast path.
const BATCH: usize = 128;

/// xoshiro256++'s jump polynomials: 2^128 and 2^192 draws ahead.
const JUMP: [u64; 4] = [
    0x180e_c6d3_3cfd_0aba,
    0xd5a6_1266_f0c9_392c,
    0xa958_2618_e03f_c9aa,
    0x39ab_dc45_29b1_661c,
];
const LONG_JUMP: [u64; 4] = [
    0x76e1_5d3e_fefd_cbbf,
    0xc500_4e44_1c52_2fb3,
    0x7771_0069_854e_e241,
    0x3910_9bb0_2acb_e635,
];

/// `N` xoshiro256++ generators, state words in struct-of-arrays order.
#[derive(Debug, Clone, PartialEq)]
struct Xoshiro<const N: usize>([[u64; N]; 4]);

impl<const N: usize> Xoshiro<N> {
    /// One draw of each generator.
    #[inline(always)]
    fn next(&mut self) -> [u64; N] {
        let [s0, s1, s2, s3] = &mut self.0;
        let mut out = [0u64; N];
        for j in 0..N {
            out[j] = s0[j]
                .wrapping_add(s3[j])
                .rotate_left(23)
                .wrapping_add(s0[j]);
            let t = s1[j] << 17;
            s2[j] ^= s0[j];
            s3[j] ^= s1[j];
            s1[j] ^= s2[j];
            s0[j] ^= s3[j];
            s2[j] ^= t;
            s3[j] = s3[j].rotate_left(45);
        }
        out
    }

    /// Advances every generator by the jump polynomial `poly` (Blackman & Vigna's `jump`).
    #[inline(always)]
    fn jump_by(&mut self, poly: &[u64; 4]) {
        let mut acc = [[0u64; N]; 4];
        for &word in poly {
            for b in 0..64 {
                let mask = 0u64.wrapping_sub((word >> b) & 1);
                for (a, s) in acc.iter_mut().zip(&self.0) {
                    for (a, s) in a.iter_mut().zip(s) {
                        *a ^= s & mask;
                    }
                }
                self.next();
            }
        }
        self.0 = acc;
    }
}

/// The SplitMix64 expansion of a seed to a xoshiro256 state (as `seed_from_u64`).
fn splitmix64(seed: u64) -> [u64; 4] {
    let mut sm = seed;
    std::array::from_fn(|_| {
        sm = sm.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = sm;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// The SplitMix64 finalizer (Stafford's variant 13): a bijection of 64-bit words whose
/// every output bit depends on every input bit.
#[inline(always)]
fn fmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A standard normal that is a function of two whole numbers, a `stream` and an `index`
/// (their magnitudes below 2⁵²; a fraction is cut), its sign flipped when `stream` is
/// negative (−0 included), which gives antithetic pairs. Nothing is kept between calls,
/// so the same draw can be made again anywhere: this is what lets noise with one
/// Brownian motion per data row be integrated at several step sizes on the same path
/// without storing it. A stream is [`row_stream`]'s number for one path and substep,
/// the index a data row's.
///
/// The word is SplitMix64's output at position `index` of the sequence seeded by the
/// stream, `fmix64(stream + (index + 1)·γ)`; it feeds the ziggurat's fast path as
/// [`Stream::fill_normal`] does, and the 1.5 % of candidates outside their rectangles
/// take the exact slow path from a xoshiro256++ generator seeded by the word. So the
/// draw is exact in law, as the ziggurat is, given random words.
#[inline(always)]
pub fn counter_normal(stream: f64, index: f64) -> f64 {
    let bits = counter_word(stream, index);
    let (i, u, x, inside) = candidate(bits);
    let z = if inside {
        x
    } else {
        counter_normal_slow(bits, i, u, x)
    };
    signed(z, stream)
}

/// [`counter_normal`] lane by lane: `out[l] = counter_normal(stream[l], index[l])`,
/// bit for bit, in passes that vectorize (the words, the fast path) and a scalar pass
/// over the rare cases.
#[inline(always)]
pub fn counter_normals(stream: &[f64], index: &[f64], out: &mut [f64]) {
    const CHUNK: usize = 32;
    let n = out.len();
    let (stream, index) = (&stream[..n], &index[..n]);
    let mut words = [0u64; CHUNK];
    for start in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - start);
        for l in 0..m {
            words[l] = counter_word(stream[start + l], index[start + l]);
        }
        let mut outside = 0u32;
        for l in 0..m {
            let (_, _, x, inside) = candidate(words[l]);
            out[start + l] = x;
            outside |= u32::from(!inside) << l;
        }
        while outside != 0 {
            let l = outside.trailing_zeros() as usize;
            outside &= outside - 1;
            let (i, u, x, _) = candidate(words[l]);
            out[start + l] = counter_normal_slow(words[l], i, u, x);
        }
        for l in 0..m {
            out[start + l] = signed(out[start + l], stream[start + l]);
        }
    }
}

/// `z`, negated when `sign` is negative (−0 included).
#[inline(always)]
fn signed(z: f64, sign: f64) -> f64 {
    f64::from_bits(z.to_bits() ^ (sign.to_bits() & (1u64 << 63)))
}

/// The whole number `|x|` of `|x| < 2⁵²` (what the counter-based generator reads), by
/// adding 2⁵², which puts it in the mantissa's bits (this vectorizes without AVX-512's
/// conversions). Larger magnitudes read as their low bits, NaN as a fixed word.
#[inline(always)]
fn whole(x: f64) -> u64 {
    const TWO52: f64 = 4_503_599_627_370_496.0;
    (x.abs().trunc() + TWO52).to_bits() & ((1u64 << 52) - 1)
}

/// SplitMix64's increment γ.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The random word of `(stream, index)`.
#[inline(always)]
fn counter_word(stream: f64, index: f64) -> u64 {
    fmix64(whole(stream).wrapping_add(whole(index).wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// The word a run's seed gives its paths' keys ([`row_key`]).
pub fn row_noise_seed(seed: u64) -> u64 {
    fmix64(seed ^ 0x5DEE_CE66_D1CE_4E5B)
}

/// The key of path `path` of a run: a mix of the seed's word and the path's number, so
/// that blocks and shards agree on it.
pub fn row_key(seed_word: u64, path: u64) -> u64 {
    fmix64(seed_word ^ fmix64(path.wrapping_add(GOLDEN)))
}

/// The stream of a path's substep number `counter` for [`counter_normal`]: 52 bits of
/// SplitMix64 at position `counter` of the sequence the path's key seeds. (Streams are
/// random 52-bit numbers: among the 2³⁰ streams of 2²⁰ paths of 2¹⁰ substeps, some pairs
/// coincide, each making two rows' noise equal on one substep of two paths, a
/// dependence far below what any estimate here resolves.)
#[inline]
pub fn row_stream(key: u64, counter: u64) -> f64 {
    (fmix64(key.wrapping_add(counter.wrapping_add(1).wrapping_mul(GOLDEN))) >> 12) as f64
}

/// [`counter_normal`]'s rare cases, from a generator seeded by the word.
#[cold]
#[inline(never)]
fn counter_normal_slow(bits: u64, i: usize, u: f64, x: f64) -> f64 {
    let s = splitmix64(bits);
    let mut g = Scalar(Xoshiro([[s[0]], [s[1]], [s[2]], [s[3]]]));
    match g.normal_slow(i, u, x) {
        Some(v) => v,
        None => g.normal(),
    }
}

/// The fast path's implementation, chosen once per [`Streams`] by the CPU's features.
#[derive(Debug, Clone, Copy)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
}

impl Kernel {
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = x86::Avx2::detect() {
            return Kernel::Avx2(t);
        }
        Kernel::Portable
    }

    /// Jumps every lane generator by 2^128 draws.
    fn jump(self, lanes: &mut Xoshiro<SUB>) {
        match self {
            // One lane at a time: its state stays in registers.
            Kernel::Portable => {
                for j in 0..SUB {
                    let mut g = Xoshiro(std::array::from_fn(|k| [lanes.0[k][j]]));
                    g.jump_by(&JUMP);
                    for k in 0..4 {
                        lanes.0[k][j] = g.0[k][0];
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(t) => t.jump(lanes),
        }
    }

    /// Fast-path candidates: fills `out` (a multiple of [`SUB`] long, at most [`BATCH`])
    /// with `u·X[i]` for the next words of the lanes, stores the words in `words`, and
    /// returns the mask of the candidates outside their layers' rectangles (bit `k` for
    /// `out[k]`).
    #[inline]
    fn candidates(self, lanes: &mut Xoshiro<SUB>, out: &mut [f64], words: &mut [u64]) -> u128 {
        match self {
            Kernel::Portable => candidates(lanes, out, words),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(t) => t.candidates(lanes, out, words),
        }
    }
}

/// The streams of one seed.
#[derive(Debug, Clone)]
pub struct Streams {
    scalar: Xoshiro<1>,
    lanes: Xoshiro<SUB>,
    kernel: Kernel,
}

impl Streams {
    /// The streams of `seed` (expanded to the 256-bit state by SplitMix64).
    pub fn new(seed: u64) -> Streams {
        let s = splitmix64(seed);
        let scalar = Xoshiro([[s[0]], [s[1]], [s[2]], [s[3]]]);
        let mut g = scalar.clone();
        let mut lanes = Xoshiro([[0; SUB]; 4]);
        for j in 0..SUB {
            g.jump_by(&LONG_JUMP);
            for (l, w) in lanes.0.iter_mut().zip(&g.0) {
                l[j] = w[0];
            }
        }
        Streams {
            scalar,
            lanes,
            kernel: Kernel::detect(),
        }
    }

    fn first(&self) -> Stream {
        Stream {
            g: Scalar(self.scalar.clone()),
            lanes: self.lanes.clone(),
            kernel: self.kernel,
            words: [0; BATCH],
        }
    }

    /// Streams `0..count`, each one jump after the previous (O(count) jumps in all,
    /// where `count` calls of [`Streams::stream`] would take O(count²)).
    pub fn streams(&self, count: usize) -> Vec<Stream> {
        let mut s = self.first();
        let mut out = Vec::with_capacity(count);
        for k in 0..count {
            if k > 0 {
                s.jump();
            }
            out.push(s.clone());
        }
        out
    }

    /// Stream `block`: every generator of stream 0 after `block` jumps of 2^128 draws.
    pub fn stream(&self, block: u64) -> Stream {
        let mut s = self.first();
        for _ in 0..block {
            s.jump();
        }
        s
    }
}

/// One stream of draws.
#[derive(Debug, Clone)]
pub struct Stream {
    g: Scalar,
    lanes: Xoshiro<SUB>,
    kernel: Kernel,
    /// The fast path's words of the current batch (kept for the fix-up pass).
    words: [u64; BATCH],
}

/// The scalar generator of a stream, and the scalar ziggurat.
#[derive(Debug, Clone)]
struct Scalar(Xoshiro<1>);

impl Scalar {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0.next()[0]
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    #[inline]
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform draw in (0, 1) with 52 random bits.
    #[inline]
    fn open01(&mut self) -> f64 {
        f64::from_bits((1023u64 << 52) | (self.next_u64() >> 12)) - (1.0 - f64::EPSILON / 2.0)
    }

    #[inline]
    fn normal(&mut self) -> f64 {
        loop {
            let (i, u, x, inside) = candidate(self.next_u64());
            if inside {
                return x;
            }
            if let Some(x) = self.normal_slow(i, u, x) {
                return x;
            }
        }
    }

    /// The ziggurat's rare cases for a candidate outside its rectangle: the base strip's
    /// tail, and the wedges. `None`: rejected, draw a new candidate.
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

    /// The fix-up pass: replaces each candidate `out[k]` outside its rectangle (bit `k` of
    /// `outside`; its word `words[k]`), in order, by the slow path's draw.
    #[inline(never)]
    fn fix(&mut self, out: &mut [f64], words: &[u64], mut outside: u128) {
        while outside != 0 {
            let k = outside.trailing_zeros() as usize;
            outside &= outside - 1;
            let (i, u, x, _) = candidate(words[k]);
            out[k] = match self.normal_slow(i, u, x) {
                Some(v) => v,
                None => self.normal(),
            };
        }
    }
}

/// The ziggurat's fast path for one 64-bit word: the layer `i` (low 8 bits), the uniform
/// `u` in [-1, 1) (high 52 bits: a float in [2, 4), minus 3), the candidate `u·X[i]`, and
/// whether it lies inside the layer's rectangle (then it is the draw).
#[inline(always)]
fn candidate(bits: u64) -> (usize, f64, f64, bool) {
    let i = (bits & 0xff) as usize;
    let u = f64::from_bits((1024u64 << 52) | (bits >> 12)) - 3.0;
    let x = u * zig::X[i];
    (i, u, x, x.abs() < zig::X[i + 1])
}

/// The portable fast path (see [`Kernel::candidates`]): each lane generator in turn
/// (its state in registers) writes its words, then the candidates from the words.
#[inline(always)]
fn candidates(lanes: &mut Xoshiro<SUB>, out: &mut [f64], words: &mut [u64]) -> u128 {
    assert!(out.len() % SUB == 0 && words.len() == out.len() && out.len() <= BATCH);
    for j in 0..SUB {
        let mut g = Xoshiro(std::array::from_fn(|k| [lanes.0[k][j]]));
        for w in words.iter_mut().skip(j).step_by(SUB) {
            *w = g.next()[0];
        }
        for k in 0..4 {
            lanes.0[k][j] = g.0[k][0];
        }
    }
    let mut outside = [0u8; BATCH / SUB];
    for ((o, w), m) in out
        .chunks_exact_mut(SUB)
        .zip(words.chunks_exact(SUB))
        .zip(&mut outside)
    {
        for (j, (x, &bits)) in o.iter_mut().zip(w).enumerate() {
            let (_, _, v, inside) = candidate(bits);
            *x = v;
            *m |= u8::from(!inside) << j;
        }
    }
    u128::from_le_bytes(outside)
}

impl Stream {
    /// Jumps every generator of the stream by 2^128 draws.
    fn jump(&mut self) {
        self.g.0.jump_by(&JUMP);
        self.kernel.jump(&mut self.lanes);
    }

    /// A standard normal draw (from the scalar generator).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        self.g.normal()
    }

    /// Fills `out` with standard normal draws.
    pub fn fill_normal(&mut self, out: &mut [f64]) {
        let words = &mut self.words;
        for batch in out.chunks_mut(BATCH) {
            let n = batch.len() / SUB * SUB;
            let (fast, rest) = batch.split_at_mut(n);
            let outside = self
                .kernel
                .candidates(&mut self.lanes, fast, &mut words[..n]);
            if outside != 0 {
                self.g.fix(fast, &words[..n], outside);
            }
            for x in rest {
                *x = self.g.normal();
            }
        }
    }

    /// A uniform draw in [0, 1) with 53 random bits (from the scalar generator).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        self.g.uniform()
    }

    /// Raw 64-bit output of the scalar generator.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.g.next_u64()
    }
}

/// A stream is a [`rand_core::Rng`] (through [`rand_core::TryRng`] with an infallible
/// error): its words are the scalar generator's [`Stream::next_u64`], so any
/// distribution of the `rand` ecosystem can draw from it. (`next_u32` is the high half of
/// a word, xoshiro256++'s better bits; bytes are whole words, little-endian, the last one
/// cut.) The batch normals stay [`Stream::fill_normal`].
impl rand_core::TryRng for Stream {
    type Error = std::convert::Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.g.next_u64() >> 32) as u32)
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.g.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand_core::utils::fill_bytes_via_next_word(dst, || self.try_next_u64())
    }
}

/// Seeding by `rand_core`: a seed is smelt's `u64` seed (eight bytes, little-endian),
/// and the generator is stream 0 of [`Streams::new`] (so `seed_from_u64(s)` is the stream
/// that `--seed s` starts with, not `rand_core`'s PCG expansion of `s`).
impl rand_core::SeedableRng for Stream {
    type Seed = [u8; 8];

    fn from_seed(seed: [u8; 8]) -> Stream {
        Streams::new(u64::from_le_bytes(seed)).stream(0)
    }

    fn seed_from_u64(seed: u64) -> Stream {
        Streams::new(seed).stream(0)
    }
}

/// The AVX2 fast path: the only unsafe code of the crate, AVX2 intrinsics behind a token
/// that exists only when the CPU has been detected to have AVX2.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod x86 {
    use crate::numeric::rng::{zig, Xoshiro, SUB};
    use std::arch::x86_64::*;

    /// Proof that the running CPU supports AVX2 (and FMA, which every AVX2 CPU has).
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Avx2(());

    impl Avx2 {
        pub(crate) fn detect() -> Option<Avx2> {
            (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
                .then_some(Avx2(()))
        }

        /// Runs `job` compiled for AVX2: its `run` and what that inlines (marked
        /// `#[inline(always)]`) are generated with the AVX2 instruction set.
        #[inline]
        pub(crate) fn call<J: crate::numeric::rng::Job>(self, job: J) -> J::Out {
            // SAFETY: `self` exists only if the CPU supports AVX2.
            unsafe { with_avx2(job) }
        }

        pub(super) fn jump(self, lanes: &mut Xoshiro<SUB>) {
            // SAFETY: `self` exists only if the CPU supports AVX2.
            unsafe { jump(lanes) }
        }

        #[inline]
        pub(super) fn candidates(
            self,
            lanes: &mut Xoshiro<SUB>,
            out: &mut [f64],
            words: &mut [u64],
        ) -> u128 {
            // SAFETY: `self` exists only if the CPU supports AVX2.
            unsafe { candidates(lanes, out, words) }
        }
    }

    // FMA too: `mul_add` in the Gaussian functions (`super::super::vmath`) is then one
    // instruction. Plain `a * b + c` is never fused (Rust does not contract), so the
    // results are those of the portable build, bit for bit.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn with_avx2<J: crate::numeric::rng::Job>(job: J) -> J::Out {
        job.run()
    }

    /// The portable jump, compiled for AVX2 (vectorized across the lanes).
    #[target_feature(enable = "avx2")]
    unsafe fn jump(lanes: &mut Xoshiro<SUB>) {
        lanes.jump_by(&crate::numeric::rng::JUMP);
    }

    #[inline(always)]
    unsafe fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi64::<L>(x), _mm256_srli_epi64::<R>(x))
    }

    /// xoshiro256++ on four generators: the next words, and the state advanced.
    #[inline(always)]
    unsafe fn step(s: &mut [__m256i; 4]) -> __m256i {
        let [s0, s1, s2, s3] = *s;
        let out = _mm256_add_epi64(rotl::<23, 41>(_mm256_add_epi64(s0, s3)), s0);
        let t = _mm256_slli_epi64::<17>(s1);
        let s2 = _mm256_xor_si256(s2, s0);
        let s3 = _mm256_xor_si256(s3, s1);
        let s1 = _mm256_xor_si256(s1, s2);
        let s0 = _mm256_xor_si256(s0, s3);
        let s2 = _mm256_xor_si256(s2, t);
        let s3 = rotl::<45, 19>(s3);
        *s = [s0, s1, s2, s3];
        out
    }

    /// The fast path for four words: stores them at `wp`, the candidates at `o`, and
    /// returns the 4-bit mask of the candidates outside their rectangles.
    #[inline(always)]
    unsafe fn fast(w: __m256i, o: *mut f64, wp: *mut u64) -> u32 {
        _mm256_storeu_si256(wp.cast(), w);
        let u = _mm256_sub_pd(
            _mm256_castsi256_pd(_mm256_or_si256(
                _mm256_srli_epi64::<12>(w),
                _mm256_set1_epi64x(1024 << 52),
            )),
            _mm256_set1_pd(3.0),
        );
        // X[i] and X[i + 1] (i ≤ 255 and X has 257 entries): one 16-byte load per word,
        // its layer the low byte of the word just stored.
        let x = zig::X.as_ptr();
        let pair = |j: usize| _mm_loadu_pd(x.add(usize::from(*wp.cast::<u8>().add(8 * j))));
        let (p0, p1, p2, p3) = (pair(0), pair(1), pair(2), pair(3));
        let p02 = _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(p0), p2);
        let p13 = _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(p1), p3);
        let xi = _mm256_unpacklo_pd(p02, p13);
        let xi1 = _mm256_unpackhi_pd(p02, p13);
        let v = _mm256_mul_pd(u, xi);
        _mm256_storeu_pd(o, v);
        // Outside: not |v| < X[i + 1].
        let abs = _mm256_andnot_pd(_mm256_set1_pd(-0.0), v);
        _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_NLT_UQ>(abs, xi1)) as u32
    }

    /// The same as [`super::candidates`], bit for bit.
    #[target_feature(enable = "avx2")]
    unsafe fn candidates(lanes: &mut Xoshiro<SUB>, out: &mut [f64], words: &mut [u64]) -> u128 {
        assert!(out.len() % SUB == 0 && words.len() == out.len() && out.len() <= 128);
        let st = &mut lanes.0;
        // Lanes 0..4 and 4..8 of each state word.
        let mut a = [_mm256_setzero_si256(); 4];
        let mut b = a;
        for k in 0..4 {
            a[k] = _mm256_loadu_si256(st[k].as_ptr().cast());
            b[k] = _mm256_loadu_si256(st[k][4..].as_ptr().cast());
        }
        let mut outside = [0u8; 16];
        for ((o, w), m) in out
            .chunks_exact_mut(SUB)
            .zip(words.chunks_exact_mut(SUB))
            .zip(&mut outside)
        {
            let wa = step(&mut a);
            let wb = step(&mut b);
            let ma = fast(wa, o.as_mut_ptr(), w.as_mut_ptr());
            let mb = fast(wb, o.as_mut_ptr().add(4), w.as_mut_ptr().add(4));
            *m = (ma | mb << 4) as u8;
        }
        for k in 0..4 {
            _mm256_storeu_si256(st[k].as_mut_ptr().cast(), a[k]);
            _mm256_storeu_si256(st[k][4..].as_mut_ptr().cast(), b[k]);
        }
        u128::from_le_bytes(outside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};
    use rand_xoshiro::rand_core::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The counter-based normals: the batch form is the scalar one bit for bit; their law
    /// is the standard normal (moments, tails beyond the ziggurat's base strip, and a χ²
    /// over 40 bins equiprobable under Φ, which comes from `gauss::ncdf`, not from the
    /// ziggurat's tables); draws at neighbouring keys, counters and rows are uncorrelated;
    /// a negative stream flips the sign. Thresholds are 5 standard errors.
    #[test]
    fn counter_normals_are_standard_normal_and_independent() {
        let word = row_noise_seed(7);
        let (paths, counters, rows) = (16u64, 256u64, 256u64);
        let at = |p: u64, c: u64, i: u64| counter_normal(row_stream(row_key(word, p), c), i as f64);
        let mut z = Vec::with_capacity((paths * counters * rows) as usize);
        for p in 0..paths {
            let index: Vec<f64> = (0..rows).map(|i| i as f64).collect();
            for c in 0..counters {
                let stream = vec![row_stream(row_key(word, p), c); rows as usize];
                let mut out = vec![0.0; rows as usize];
                counter_normals(&stream, &index, &mut out);
                for (i, &v) in out.iter().enumerate() {
                    assert_eq!(v.to_bits(), at(p, c, i as u64).to_bits());
                }
                z.extend(out);
            }
        }
        let n = z.len() as f64;
        let m = |k: i32| z.iter().map(|x| x.powi(k)).sum::<f64>() / n;
        assert!(m(1).abs() < 5.0 / n.sqrt(), "mean {}", m(1));
        assert!(
            (m(2) - 1.0).abs() < 5.0 * (2.0 / n).sqrt(),
            "variance {}",
            m(2)
        );
        assert!(
            m(3).abs() < 5.0 * (15.0 / n).sqrt(),
            "third moment {}",
            m(3)
        );
        assert!(
            (m(4) - 3.0).abs() < 5.0 * (96.0 / n).sqrt(),
            "fourth moment {}",
            m(4)
        );
        // Beyond the base strip (R ≈ 3.44) the draws come from the slow path.
        for t in [2.0, 3.0, 3.5, 4.0] {
            let p = 2.0 * crate::numeric::gauss::ncdf(-t);
            let count = z.iter().filter(|x| x.abs() > t).count() as f64;
            let sd = (n * p * (1.0 - p)).sqrt();
            assert!(
                (count - n * p).abs() < 5.0 * sd,
                "P(|z| > {t}): {count} of {n}"
            );
        }
        let bins = 40;
        let mut counts = vec![0.0; bins];
        for &x in &z {
            let b = (crate::numeric::gauss::ncdf(x) * bins as f64) as usize;
            counts[b.min(bins - 1)] += 1.0;
        }
        let e = n / bins as f64;
        let chi2: f64 = counts.iter().map(|c| (c - e) * (c - e) / e).sum();
        let dof = (bins - 1) as f64;
        assert!(chi2 < dof + 5.0 * (2.0 * dof).sqrt(), "χ² {chi2}");
        let corr = |f: &dyn Fn(u64, u64, u64) -> (f64, f64)| {
            let mut s = 0.0;
            let mut k = 0.0;
            for p in 0..paths - 1 {
                for c in 0..63 {
                    for i in 0..63 {
                        let (a, b) = f(p, c, i);
                        s += a * b;
                        k += 1.0;
                    }
                }
            }
            (s / k, k)
        };
        for (what, f) in [
            (
                "key",
                &(|p, c, i| (at(p, c, i), at(p + 1, c, i))) as &dyn Fn(u64, u64, u64) -> (f64, f64),
            ),
            ("counter", &|p, c, i| (at(p, c, i), at(p, c + 1, i))),
            ("row", &|p, c, i| (at(p, c, i), at(p, c, i + 1))),
        ] {
            let (r, k) = corr(f);
            assert!(
                r.abs() < 5.0 / k.sqrt(),
                "correlation between neighbouring {what}s: {r}"
            );
        }
        let s = row_stream(row_key(word, 3), 5);
        assert_eq!(counter_normal(-s, 9.0), -counter_normal(s, 9.0));
        assert_eq!(counter_normal(-0.0, 9.0), -counter_normal(0.0, 9.0));
    }

    #[test]
    fn scalar_normals_are_rand_distr_draws_bit_for_bit() {
        let mut ours = Streams::new(42).stream(3);
        let mut theirs = Xoshiro256PlusPlus::seed_from_u64(42);
        for _ in 0..3 {
            theirs.jump();
        }
        for k in 0..1_000_000 {
            let a = ours.normal();
            let b: f64 = StandardNormal.sample(&mut theirs);
            assert_eq!(a.to_bits(), b.to_bits(), "draw {k}: {a} vs {b}");
        }
    }

    #[test]
    fn a_stream_is_a_rand_core_generator() {
        // rand_distr's normal sampler drawing its words from a stream (through the
        // `Rng` impl) gives the stream's own normals; u64s are the scalar words.
        let mut as_rng = Streams::new(42).stream(3);
        let mut own = Streams::new(42).stream(3);
        for k in 0..100_000 {
            let a: f64 = StandardNormal.sample(&mut as_rng);
            assert_eq!(a.to_bits(), own.normal().to_bits(), "draw {k}");
        }
        let mut a = Stream::seed_from_u64(7);
        let mut b = Stream::from_seed(7u64.to_le_bytes());
        let mut c = Streams::new(7).stream(0);
        for _ in 0..1000 {
            let w = c.next_u64();
            assert_eq!((Rng::next_u64(&mut a), Rng::next_u64(&mut b)), (w, w));
        }
        // u32s are high halves; bytes are whole little-endian words, the last one cut.
        let mut d = Streams::new(7).stream(0);
        let mut e = Streams::new(7).stream(0);
        assert_eq!(Rng::next_u32(&mut d), (e.next_u64() >> 32) as u32);
        let mut bytes = [0u8; 13];
        Rng::fill_bytes(&mut d, &mut bytes);
        let (w1, w2) = (e.next_u64().to_le_bytes(), e.next_u64().to_le_bytes());
        assert_eq!(bytes[..8], w1);
        assert_eq!(bytes[8..], w2[..5]);
    }

    #[test]
    fn the_generators_are_the_jumps_of_the_seeded_one() {
        for (seed, block) in [(42u64, 0u64), (7, 5), (u64::MAX, 17)] {
            let base = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut s = Streams::new(seed).stream(block);
            let mut scalar = base.clone();
            for _ in 0..block {
                scalar.jump();
            }
            for _ in 0..100 {
                assert_eq!(s.next_u64(), scalar.next_u64());
            }
            let mut lane = base.clone();
            let mut lanes: Vec<Xoshiro256PlusPlus> = (0..SUB)
                .map(|_| {
                    lane.long_jump();
                    let mut g = lane.clone();
                    for _ in 0..block {
                        g.jump();
                    }
                    g
                })
                .collect();
            for _ in 0..100 {
                let w = s.lanes.next();
                for (j, g) in lanes.iter_mut().enumerate() {
                    assert_eq!(w[j], g.next_u64(), "seed {seed} block {block} lane {j}");
                }
            }
        }
        // `streams` and `stream` agree.
        let all = Streams::new(9).streams(6);
        for (b, s) in all.iter().enumerate() {
            let t = Streams::new(9).stream(b as u64);
            assert_eq!((&s.g.0, &s.lanes), (&t.g.0, &t.lanes));
        }
    }

    #[test]
    fn every_kernel_draws_the_same_numbers() {
        let fast = Streams::new(5).stream(2);
        let mut portable = fast.clone();
        portable.kernel = Kernel::Portable;
        let mut fast = fast;
        let (mut a, mut b) = (vec![0.0; 5000], vec![0.0; 5000]);
        for len in [0, 1, 7, 8, 9, 100, 128, 129, 256, 1000, 4096, 5000, 3] {
            fast.fill_normal(&mut a[..len]);
            portable.fill_normal(&mut b[..len]);
            for k in 0..len {
                assert_eq!(a[k].to_bits(), b[k].to_bits(), "length {len}, draw {k}");
            }
            assert_eq!(fast.next_u64(), portable.next_u64());
        }
        // The same for the jumps.
        let (mut s, mut t) = (Streams::new(3).stream(0), Streams::new(3).stream(0));
        t.kernel = Kernel::Portable;
        s.jump();
        t.jump();
        assert_eq!(s.lanes, t.lanes);
    }
}
