//! Escape benchmark (issue "escape"): path-steps per second of an exit-time run beside
//! the same optimizer steps as `smelt verify` runs them (`bench_sim`'s "SGD step"), so
//! that the cost of the exit checks (the region's tape and the scan of the lanes after
//! every step) shows as a ratio; and the rate of a real escape run, whose lanes start
//! new paths as theirs leave.
//!
//! ```sh
//! cargo run --release --example bench_escape
//! ```
//!
//! Problem: the double well `f = Σ (x⁴/4 − x²/2)` with Σ = 0.5 I at η = 2⁻⁵, as in
//! `bench_sim`. Every figure is the best of 9 runs (3 rounds of 3, verify and escape alternated).
//!
//! Then each model of an escape run on its own (SGD, SME-1, SME-2, HA-SME; 4 substeps per
//! step for the SDEs) from the minimum of the 1-D double well (`double_well_escape.prob`,
//! η = 0.1) and of a 2-D well with a coupled Hessian and noise (so that the HA-SME's
//! eigenvectors turn), in rounds that run the models one after the other, on one and
//! two threads: path-steps per second (lane-steps, every step of every lane holding a
//! path), the median over the rounds with the range, and the HA-SME's rate over the
//! SME-1's and the SME-2's taken within each round (median, range). `--rounds N`
//! (default 5), `--models-only` (skip the verify/escape comparison above).
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use smelt::experiment::escape::{self, ModelSpec, Options};
use smelt::experiment::verify;
use smelt::internals::sim::weak;
use std::collections::BTreeMap;
use std::time::Instant;

fn problem(d: usize, cov: f64, start: f64, horizon: f64) -> smelt::problem::Problem {
    let prob = format!(
        "problem bench\n dim {d}\n objective f(x) = sum(x^4/4 - x^2/2)\n noise gaussian cov = {cov}\n start x = {start}\n horizon {horizon}\n observe sq = sum(x^2)\n"
    );
    smelt::problem::load(&prob).unwrap()
}

fn rule() -> smelt::Optimizer {
    let src = std::fs::read_to_string("examples/sgd.opt").expect("run from the repository root");
    smelt::check(&src).unwrap()
}

fn best<T: Send>(threads: usize, mut f: impl FnMut() -> T + Send) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        pool.install(&mut f);
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// The HA-SME against the other models, each run alone, in interleaved rounds.
fn models(rounds: usize) {
    let cases = [
        (
            "1-D double well",
            std::fs::read_to_string("examples/problems/double_well_escape.prob")
                .expect("run from the repository root"),
            "past 0",
            vec![-1.0],
        ),
        (
            "2-D well, coupled",
            "problem coupled\n dim 2\n objective f(x) = x[1]^4/4 - x[1]^2/2 + x[2]^2 + 0.3*x[1]*x[2]\n noise gaussian cov = [[1, 0.3], [0.3, 1]]\n start x = [-1, 0]\n horizon 100000\n".to_string(),
            "past [0, 0]",
            vec![-1.0, 0.0],
        ),
    ];
    let names = ["SGD", "SME-1", "SME-2", "HA-SME"];
    println!(
        "\nmodels alone, escape from the minimum at η = 0.1 (4 substeps per SDE step), {rounds} rounds: M path-steps/s, median (range)"
    );
    println!(
        "{:<20} {:>7}  {:<20} {:<20} {:<20} {:<20} {:<18} {:<18}",
        "problem", "threads", names[0], names[1], names[2], names[3], "HA / SME-1", "HA / SME-2"
    );
    for (label, src, region, from) in cases {
        let mut plans = Vec::new();
        for spec in [
            ModelSpec::Optimizer,
            ModelSpec::Sme(1),
            ModelSpec::Sme(2),
            ModelSpec::Ha,
        ] {
            let opts = Options {
                models: vec![spec],
                region: escape::parse_region(region).unwrap(),
                from: Some(from.clone()),
                refine: true,
                saddle: None,
                horizon: Some(1e6),
                substeps: 4,
                em: false,
            };
            let mut setup = escape::prepare(
                rule(),
                smelt::problem::load(&src).unwrap(),
                &BTreeMap::new(),
                opts,
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
            let ep = escape::plan(&mut setup, 0.1, 1.0).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(ep.plan.models.len(), 1, "{:?}", ep.skipped);
            plans.push(ep);
        }
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut rates = vec![Vec::new(); plans.len()];
            for _ in 0..rounds {
                for (m, ep) in plans.iter().enumerate() {
                    let t = Instant::now();
                    let steps =
                        pool.install(|| smelt::internals::sim::escape::run(&ep.plan, 4096, 1).1);
                    rates[m].push(steps as f64 / t.elapsed().as_secs_f64() / 1e6);
                }
            }
            let ratio =
                |k: usize| -> Vec<f64> { (0..rounds).map(|r| rates[3][r] / rates[k][r]).collect() };
            let cell = |v: &[f64], p: usize| {
                let (m, lo, hi) = summary(v);
                format!("{m:.p$} ({lo:.p$}–{hi:.p$})")
            };
            println!(
                "{:<20} {:>7}  {:<20} {:<20} {:<20} {:<20} {:<18} {:<18}",
                label,
                threads,
                cell(&rates[0], 1),
                cell(&rates[1], 1),
                cell(&rates[2], 1),
                cell(&rates[3], 1),
                cell(&ratio(1), 2),
                cell(&ratio(2), 2)
            );
        }
    }
}

/// Median, minimum and maximum.
fn summary(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    };
    (med, s[0], s[n - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(5, |v| v.parse().expect("--rounds N"));
    if args.iter().any(|a| a == "--models-only") {
        models(rounds);
        return;
    }
    let eta = 1.0 / 32.0;
    let steps = 256usize;
    println!(
        "{:<44} {:>3} {:>8} {:>14} {:>10}",
        "what", "d", "threads", "M path-steps/s", "vs verify"
    );
    for d in [1usize, 10] {
        let paths = if d == 1 { 1 << 18 } else { 1 << 15 };
        let horizon = steps as f64 * eta;
        // The optimizer as `smelt verify` steps it (no exit checks).
        let mut prepared = verify::prepare(
            rule(),
            problem(d, 0.5, 0.5, horizon),
            &[1],
            &BTreeMap::new(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let mut plan = verify::plan(&mut prepared, eta, 8).unwrap_or_else(|e| panic!("{e:?}"));
        plan.sdes.clear();
        // The same steps with an exit check after each: a ball no path leaves, so every
        // path runs to the horizon and the work is the same.
        let opts = |region: &str| Options {
            models: vec![ModelSpec::Optimizer],
            region: escape::parse_region(region).unwrap(),
            from: Some(vec![0.5]),
            refine: false,
            saddle: None,
            horizon: Some(horizon),
            substeps: 8,
            em: false,
        };
        let mut setup = escape::prepare(
            rule(),
            problem(d, 0.5, 0.5, horizon),
            &BTreeMap::new(),
            opts("ball 1e6"),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let ep = escape::plan(&mut setup, eta, 1.0).unwrap_or_else(|e| panic!("{e:?}"));
        for threads in [1, 2] {
            // Alternated, best of 3 rounds each, so that drifts of the machine hit both.
            let (mut t_verify, mut t_escape) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..3 {
                t_verify = t_verify.min(best(threads, || {
                    weak::run(&plan, &weak::Sampling::new(paths, 1), &|_| {})
                }));
                t_escape = t_escape.min(best(threads, || {
                    smelt::internals::sim::escape::run(&ep.plan, paths, 1)
                }));
            }
            let rate_v = (paths * steps) as f64 / t_verify;
            let rate_e = (paths * steps) as f64 / t_escape;
            println!(
                "{:<44} {:>3} {:>8} {:>14.1} {:>10}",
                "SGD step, as verify runs it",
                d,
                threads,
                rate_v / 1e6,
                "1.00"
            );
            println!(
                "{:<44} {:>3} {:>8} {:>14.1} {:>10.2}",
                "SGD step + exit check (escape)",
                d,
                threads,
                rate_e / 1e6,
                rate_e / rate_v
            );
        }
    }
    // A real escape: from the minimum −1 of the 1-D well past the saddle, noise 1,
    // η = 0.1 (mean exit ≈ 4000 steps); lanes restart as their paths leave.
    let opts = Options {
        models: vec![ModelSpec::Optimizer, ModelSpec::Sme(1)],
        region: escape::parse_region("past 0").unwrap(),
        from: Some(vec![-1.0]),
        refine: true,
        saddle: None,
        horizon: Some(1e6),
        substeps: 4,
        em: false,
    };
    let mut setup = escape::prepare(rule(), problem(1, 1.0, -1.0, 1e6), &BTreeMap::new(), opts)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let ep = escape::plan(&mut setup, 0.1, 1.0).unwrap_or_else(|e| panic!("{e:?}"));
    for threads in [1, 2] {
        let mut lane_steps = 0;
        let t = best(threads, || {
            lane_steps = smelt::internals::sim::escape::run(&ep.plan, 4096, 1).1;
        });
        println!(
            "{:<44} {:>3} {:>8} {:>14.1} {:>10}",
            "escape run: SGD + SME-1 (4 substeps), 4096 paths",
            1,
            threads,
            lane_steps as f64 / t / 1e6,
            "—"
        );
    }
    println!(
        "\n(the escape run's rate counts lane-steps of both models; an SME step is 4 substeps)"
    );
    models(rounds);
}
