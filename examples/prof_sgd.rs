#![allow(clippy::print_stdout, reason = "profiling helper")]
//! Profiling helper: the SGD step alone, d from the first argument, threads from the
//! second (1 by default); `SMELT_TAPE=1` prints the step's tape, `SMELT_SME=1` runs the
//! order-1 SME beside it.
use std::collections::BTreeMap;
fn main() {
    let d: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let src = std::fs::read_to_string("examples/sgd.opt").unwrap();
    let rule = smelt::check(&src).unwrap();
    let prob = format!("problem b\n dim {d}\n objective f(x) = sum(x^4/4 - x^2/2)\n noise gaussian cov = 0.5\n start x = 0.5\n horizon 8\n observe sq = sum(x^2)\n");
    let p = smelt::problem::load(&prob).unwrap();
    let mut prepared = smelt::experiment::verify::prepare(rule, p, &[1], &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut plan = smelt::experiment::verify::plan(&mut prepared, 1.0 / 32.0, 8)
        .unwrap_or_else(|e| panic!("{e:?}"));
    if std::env::var_os("SMELT_SME").is_none() {
        plan.sdes.clear();
    }
    if std::env::var_os("SMELT_TAPE").is_some() {
        println!("{:#?}", plan.step.tape);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(
            std::env::args()
                .nth(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
        )
        .build()
        .unwrap();
    let t = std::time::Instant::now();
    let paths = (1 << 20) / d;
    pool.install(|| {
        smelt::internals::sim::weak::run(
            &plan,
            &smelt::internals::sim::weak::Sampling::new(paths, 1),
            &|_| {},
        )
    });
    let s = t.elapsed().as_secs_f64();
    println!(
        "{:.1} M path-steps/s, tape {} instructions",
        (paths * plan.steps) as f64 / s / 1e6,
        plan.step.tape.len()
    );
}
