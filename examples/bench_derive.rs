//! Derivation benchmark: wall time of `smelt::derive` (parse, check, derive, certify)
//! for the reference cases, beside the SymPy baseline of `shared/baselines/sympy_sme.py`
//! measured in the same run, as ratios.
//!
//! ```sh
//! cargo run --release --example bench_derive            # smelt only
//! scripts/python-env.sh                                 # once: the venv with SymPy
//! cargo run --release --example bench_derive -- --baseline ../shared/baselines
//! ```
//!
//! A second table times the derivation against the order (SGD 1–6; RMSProp and Adam in
//! Malladi et al.'s scaling with general noise, orders 1–3 and 6), each case in a child
//! process of its own so that its peak memory (VmHWM) is its own. `--no-orders` skips it.
//! The SymPy baseline's python is `SMELT_PYTHON`, else the project's `.venv`, else
//! `python3`.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::process::Command;
use std::time::Instant;

/// The RMSProp of the SymPy baseline (`case_rmsprop`): `1 - beta = c eta`, time `eta`,
/// `epsilon` under the square root, the new `v`, general noise.
const RMSPROP_BASELINE: &str = "optimizer RMSPropBaseline
  param x
  state v
  small eta
  hyper c, epsilon > 0
  time eta
  noise xi ~ general

  let g = grad f(x) + xi
  v = v + c*eta*(g^2 - v)
  x = x - eta*g/sqrt(v + epsilon)
";

/// (label, example file, order, gaussian noise, SymPy baseline case)
const CASES: &[(&str, &str, u32, bool, Option<&str>)] = &[
    ("SGD order 1", "sgd.opt", 1, false, Some("sgd1")),
    ("SGD order 2", "sgd.opt", 2, false, Some("sgd2")),
    ("SGD order 3", "sgd.opt", 3, false, Some("sgd3")),
    ("SGD order 3, Gaussian noise", "sgd.opt", 3, true, None),
    ("heavy ball order 1", "momentum.opt", 1, false, Some("mom1")),
    ("heavy ball order 2", "momentum.opt", 2, false, Some("mom2")),
    (
        "RMSProp order 1 (baseline's)",
        "@rmsprop",
        1,
        false,
        Some("rms1"),
    ),
    (
        "RMSProp order 2 (baseline's)",
        "@rmsprop",
        2,
        false,
        Some("rms2"),
    ),
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
        smelt::internals::algebra::tensor::clear_memo();
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

/// The source of a case: an example file, or `@rmsprop` for the baseline's RMSProp.
fn source(file: &str, gaussian: bool) -> String {
    let mut source = if file == "@rmsprop" {
        RMSPROP_BASELINE.to_string()
    } else {
        let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).expect("example file")
    };
    if gaussian {
        source = source.replace("~ general", "~ gaussian");
    }
    source
}

/// Peak resident memory of this process so far, in kB (Linux).
fn peak_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The child of the order table: one derivation (repeated while under 0.2 s, the median
/// taken), then `ms peak_kb` on stdout.
fn child(file: &str, order: u32) {
    let source = source(file, false);
    let mut times = Vec::new();
    let started = Instant::now();
    while times.is_empty() || (started.elapsed().as_secs_f64() < 0.2 && times.len() < 21) {
        smelt::internals::algebra::tensor::clear_memo();
        let t = Instant::now();
        let sme = smelt::derive(&source, &smelt::Options::order(order));
        std::hint::black_box(&sme);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if sme.is_err() {
            break;
        }
    }
    println!("{} {}", median(times), peak_kb().unwrap_or(0));
}

/// The order table: time and peak memory by order, each case in a fresh process.
fn orders_table() {
    const ROWS: &[(&str, &str, &[u32])] = &[
        ("SGD", "sgd.opt", &[1, 2, 3, 4, 5, 6]),
        ("RMSprop (Malladi)", "rmsprop.opt", &[1, 2, 3, 6]),
        ("Adam (Malladi)", "adam.opt", &[1, 2, 3, 6]),
    ];
    let exe = std::env::current_exe().expect("the benchmark's path");
    println!();
    println!("time and peak memory by order (general noise; each case in its own process)");
    println!(
        "{:<20} {:>6} {:>12} {:>14}",
        "optimizer", "order", "time (ms)", "peak (MB)"
    );
    for (label, file, orders) in ROWS {
        for &order in *orders {
            let out = Command::new(&exe)
                .args(["--child", file, &order.to_string()])
                .output()
                .expect("run the benchmark's child");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text.split_whitespace();
            let (ms, kb): (f64, f64) = match (it.next(), it.next()) {
                (Some(a), Some(b)) => (a.parse().unwrap_or(f64::NAN), b.parse().unwrap_or(0.0)),
                _ => (f64::NAN, 0.0),
            };
            println!("{label:<20} {order:>6} {ms:>12.3} {:>14.1}", kb / 1024.0);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let order = args[i + 2].parse().expect("an order");
        child(&args[i + 1], order);
        return;
    }
    let baseline = args
        .iter()
        .position(|a| a == "--baseline")
        .and_then(|i| args.get(i + 1).cloned());
    let python = std::env::var("SMELT_PYTHON").unwrap_or_else(|_| {
        let venv = format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR"));
        if std::path::Path::new(&venv).exists() {
            venv
        } else {
            "python3".to_string()
        }
    });
    let runs = 21;
    // The host is shared and its speed drifts by tens of percent within seconds, so each
    // case alternates between the two sides: `ROUNDS` rounds of (smelt: median of `runs`
    // derivations; SymPy: the median of its 5), and each side's fastest round is kept.
    // Both sides get the same estimator, in the same minutes.
    const ROUNDS: usize = 3;
    println!(
        "smelt derivation benchmark (median of {runs} runs, best of {ROUNDS} rounds alternating with \
         SymPy; whole derivation incl. parsing and certificate)"
    );
    println!(
        "{:<30} {:>12} {:>14} {:>10}",
        "case", "smelt (ms)", "SymPy (ms)", "ratio"
    );
    for (label, file, order, gaussian, case) in CASES {
        let source = source(file, *gaussian);
        let mut ms = f64::INFINITY;
        let mut base: Option<f64> = None;
        for _ in 0..ROUNDS {
            ms = ms.min(smelt_ms(&source, *order, runs));
            if let (Some(dir), Some(case)) = (&baseline, case) {
                if let Some(b) = sympy_ms(&python, dir, case) {
                    base = Some(base.map_or(b, |x: f64| x.min(b)));
                }
            }
        }
        match base {
            Some(b) => println!("{label:<30} {ms:>12.3} {b:>14.1} {:>9.0}×", b / ms),
            None => println!("{label:<30} {ms:>12.3} {:>14} {:>10}", "—", "—"),
        }
    }
    if baseline.is_none() {
        println!("(pass --baseline ../shared/baselines to run the SymPy baseline beside)");
    }
    if !args.iter().any(|a| a == "--no-orders") {
        orders_table();
    }
}
