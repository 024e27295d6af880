//! Generator benchmark: raw throughput of the simulation generator (`smelt::internals::numeric::rng`),
//! 64-bit words and standard normals per second on one thread: one at a time from a
//! stream's scalar generator (`next_u64`, `normal`), and in batches (`fill_normal`, the
//! simulations' draws, slices of 128 and 4096). The batch rate is the bound that the
//! path-step throughput of the simulations is measured against.
//!
//! ```sh
//! cargo run --release --example bench_rng
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::Instant;

use smelt::internals::numeric::rng::{fast_path, Streams, NAME};

fn rate(n: usize, mut f: impl FnMut() -> f64) -> (f64, f64) {
    // Best of 5 runs of n draws; the checksum keeps the work from being optimized away.
    let mut best = f64::INFINITY;
    let mut sum = 0.0;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            sum += f();
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    (n as f64 / best, sum)
}

fn main() {
    let n = 20_000_000;
    let mut g = Streams::new(1).stream(0);
    let (words, c1) = rate(n, || g.next_u64() as f64);
    let mut g = Streams::new(1).stream(0);
    let (normals, c2) = rate(n, || g.normal());
    let mut filled = Vec::new();
    let mut c3 = 0.0;
    for len in [128, 4096] {
        let mut g = Streams::new(1).stream(0);
        let mut buf = vec![0.0; len];
        let (r, c) = rate(n / len, || {
            g.fill_normal(&mut buf);
            buf[0]
        });
        filled.push(r * len as f64);
        c3 += c;
    }
    println!("generator: {NAME}");
    println!("  batch fast path: {}", fast_path());
    println!("  u64 words (scalar)              {:>8.1} M/s", words / 1e6);
    println!(
        "  normals, one at a time (scalar) {:>8.1} M/s",
        normals / 1e6
    );
    println!(
        "  normals, fill_normal of 128     {:>8.1} M/s",
        filled[0] / 1e6
    );
    println!(
        "  normals, fill_normal of 4096    {:>8.1} M/s",
        filled[1] / 1e6
    );
    println!("  (checksum {:.3e})", c1 + c2 + c3);
}
