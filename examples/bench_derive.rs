//! Derivation benchmark: wall time of `smelt::derive` (parse, check, derive, certify)
//! for the reference cases, beside the SymPy baseline of `shared/baselines/sympy_sme.py`
//! measured in the same run, as ratios.
//!
//! ```sh
//! cargo run --release --example bench_derive            # smelt only
//! scripts/python-env.sh                                 # once: the venv with SymPy
//! cargo run --release --example bench_derive -- --baseline ../shared/baselines
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::process::Command;
use std::time::Instant;

/// (label, example file, order, gaussian noise, SymPy baseline case)
const CASES: &[(&str, &str, u32, bool, Option<&str>)] = &[
    ("SGD order 1", "sgd.opt", 1, false, Some("sgd1")),
    ("SGD order 2", "sgd.opt", 2, false, Some("sgd2")),
    ("SGD order 3", "sgd.opt", 3, false, Some("sgd3")),
    ("SGD order 3, Gaussian noise", "sgd.opt", 3, true, None),
    ("heavy ball order 1", "momentum.opt", 1, false, Some("mom1")),
    ("heavy ball order 2", "momentum.opt", 2, false, Some("mom2")),
    ("Nesterov order 2", "nesterov.opt", 2, false, None),
    ("RMSprop order 1 (Malladi)", "rmsprop.opt", 1, true, None),
    ("Adam order 1 (Malladi)", "adam.opt", 1, true, None),
    (
        "RMSProp order 2 (small noise)",
        "rmsprop_ballistic.opt",
        2,
        false,
        None,
    ),
    (
        "Adam order 2 (small noise)",
        "adam_ballistic.opt",
        2,
        false,
        None,
    ),
];

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn smelt_ms(source: &str, order: u32, runs: usize) -> f64 {
    let opts = smelt::Options::order(order);
    let mut times = Vec::new();
    for _ in 0..runs {
        // Every run starts cold, as a fresh process would (derive resets its tables).
        smelt::tensor::clear_memo();
        let t = Instant::now();
        let sme = smelt::derive(source, &opts).expect("the example derives");
        std::hint::black_box(&sme);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(times)
}

/// Runs the baseline for one case and reads its reported median.
fn sympy_ms(python: &str, dir: &str, case: &str) -> Option<f64> {
    let out = Command::new(python)
        .current_dir(dir)
        .args(["sympy_sme.py", "--case", case, "--repeat", "5", "--quiet"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("median"))?;
    let after = line.split("median").nth(1)?.trim();
    after.split_whitespace().next()?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let baseline = args
        .iter()
        .position(|a| a == "--baseline")
        .and_then(|i| args.get(i + 1).cloned());
    let python = std::env::var("SMELT_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let runs = 21;
    println!("smelt derivation benchmark (median of {runs} runs; whole derivation incl. parsing and certificate)");
    println!(
        "{:<30} {:>12} {:>14} {:>10}",
        "case", "smelt (ms)", "SymPy (ms)", "ratio"
    );
    for (label, file, order, gaussian, case) in CASES {
        let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut source = std::fs::read_to_string(&path).expect("example file");
        if *gaussian {
            source = source.replace("~ general", "~ gaussian");
        }
        let ms = smelt_ms(&source, *order, runs);
        let base = match (&baseline, case) {
            (Some(dir), Some(case)) => sympy_ms(&python, dir, case),
            _ => None,
        };
        match base {
            Some(b) => println!("{label:<30} {ms:>12.3} {b:>14.1} {:>9.0}×", b / ms),
            None => println!("{label:<30} {ms:>12.3} {:>14} {:>10}", "—", "—"),
        }
    }
    if baseline.is_none() {
        println!("(pass --baseline ../shared/baselines to run the SymPy baseline beside; needs scripts/python-env.sh)");
    }
}
