//! Benchmark (issue 18): the simulation of the non-smooth rules against SGD's, in
//! path-steps per second, d = 1 and d = 10, measured side by side in the same run.
//!
//! For each rule: the compiled optimizer alone, and the optimizer with its order-1 SME
//! (Euler–Maruyama substeps; the SME's share is the difference), on the double well
//! `sum(x^4/4 - x^2/2)` with Gaussian noise, two threads. The ratio column is the rule's
//! rate over SGD's in the same row kind; the issue's target is within 2×.
//!
//! ```sh
//! cargo run --release --example bench_nonsmooth
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use smelt::experiment::verify;
use smelt::internals::sim::weak;
use std::collections::BTreeMap;
use std::time::Instant;

fn plan(rule: &str, d: usize, steps: usize) -> weak::Plan {
    let src = std::fs::read_to_string(format!("examples/{rule}.opt"))
        .expect("run from the repository root");
    let rule = smelt::check(&src).unwrap();
    // c = 1 (a threshold, or 1 − β = cη), b1 = 0.9 (Lion's interpolation weight).
    let sets: String = rule
        .hypers
        .iter()
        .map(|h| {
            format!(
                " set {} = {}\n",
                h.name,
                if h.name == "b1" { 0.9 } else { 1.0 }
            )
        })
        .collect();
    let prob = format!(
        "problem bench\n dim {d}\n objective f(x) = sum(x^4/4 - x^2/2)\n noise gaussian cov = 0.5\n start x = 0.5\n horizon {}\n observe sq = sum(x^2)\n{sets}",
        steps as f64 / 32.0
    );
    let p = smelt::problem::load(&prob).unwrap();
    let mut prepared =
        verify::prepare(rule, p, &[1], &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
    verify::plan(&mut prepared, 1.0 / 32.0, 8).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Best of 3 wall times.
fn time(plan: &weak::Plan, paths: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        pool.install(|| weak::run(plan, &weak::Sampling::new(paths, 1), &|_| {}));
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let steps = 64;
    println!("M path-steps/s on 2 threads (best of 3), ratio to SGD in the same run\n");
    println!(
        "{:<12} {:>3}  {:>12} {:>7}  {:>14} {:>7}",
        "rule", "d", "optimizer", "× SGD", "SME-1 substep", "× SGD"
    );
    for d in [1usize, 10] {
        let paths = if d == 1 { 1 << 17 } else { 1 << 14 };
        let mut base: Option<(f64, f64)> = None;
        for rule in ["sgd", "signsgd", "clipped_sgd", "lion", "signum"] {
            let with = plan(rule, d, steps);
            let mut alone = plan(rule, d, steps);
            alone.sdes.clear();
            let t_opt = time(&alone, paths);
            let t_all = time(&with, paths);
            let opt = (paths * alone.steps) as f64 / t_opt / 1e6;
            // 8 + 4 + 2 substeps per optimizer step (three levels).
            let sde = (paths * with.steps * 14) as f64 / (t_all - t_opt).max(1e-9) / 1e6;
            let (bo, bs) = *base.get_or_insert((opt, sde));
            println!(
                "{rule:<12} {d:>3}  {opt:>12.1} {:>7.2}  {sde:>14.1} {:>7.2}",
                opt / bo,
                sde / bs
            );
        }
        println!();
    }
}
