//! Network benchmark (issue 21): the two-layer tanh network of
//! `examples/problems/digits_net.prob` (d = 991 parameters, 64 inputs, 15 hidden
//! units) on scikit-learn's digits (1,797 rows, `examples/problems/data/digits.csv`).
//!
//! Prints, per path (one point) on one thread:
//!
//! * the set-up: loading the problem (the CSV and the loss's graph), deriving SGD's SME,
//!   the symbolic gradient ∇f (d row means), compiling it to a tape, and compiling the
//!   optimizer's step at one step size (its minibatch of B rows and ∇f), with the
//!   memory the process holds after each stage;
//! * the full-batch gradient ∇f as smelt's compiled tape (one loop over the rows, 128
//!   paths at once), beside NumPy's forward and backward pass written by hand
//!   (`X @ W.T`, `tanh`, the logistic loss's derivative, `Wᵀ`-products, one thread, in
//!   the project's virtual environment, which `scripts/python-env.sh` creates), both at
//!   the problem's start point and checked against each other;
//! * the optimizer's step (its B rows drawn, then the step run) per path.
//!
//! ```sh
//! cargo run --release --example bench_net
//! cargo run --release --example bench_net -- --no-numpy
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use smelt::internals::numeric::tape::{Tape, LANES};
use smelt::internals::sim::compile;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

const PROBLEM: &str = "examples/problems/digits_net.prob";

/// Resident memory of this process, in MB (Linux), or NaN.
fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs `f` until about `budget` seconds have passed (at least twice), and returns the
/// seconds per run.
fn timed(budget: f64, mut f: impl FnMut()) -> f64 {
    f();
    let started = Instant::now();
    let mut runs = 0usize;
    while runs < 2 || started.elapsed().as_secs_f64() < budget {
        f();
        runs += 1;
    }
    started.elapsed().as_secs_f64() / runs as f64
}

/// NumPy's full-batch gradient of the network at `x`, by hand, on one thread: seconds
/// per call and the gradient.
fn numpy_gradient(x: &[f64]) -> Result<(f64, Vec<f64>), String> {
    let out = Command::new("scripts/python-env.sh")
        .output()
        .map_err(|e| format!("scripts/python-env.sh: {e}"))?;
    if !out.status.success() {
        return Err("scripts/python-env.sh failed".into());
    }
    let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let xs: Vec<String> = x.iter().map(|v| format!("{v:e}")).collect();
    let script = format!(
        r#"
import os, sys, time
import numpy as np
D = np.loadtxt("examples/problems/data/digits.csv", delimiter=",", skiprows=1)
A, y = D[:, :64], D[:, 64]
n = len(y)
x = np.array([{xs}])
def grad(x):
    W = x[:960].reshape(15, 64); b = x[960:975]; v = x[975:990]; c = x[990]
    h = np.tanh(A @ W.T + b)                 # n x 15
    m = -y * (h @ v + c)                     # n
    s = -y / (1.0 + np.exp(-m)) / n          # d loss / d output, averaged
    g = 0.001 * x
    g[975:990] += h.T @ s
    g[990] += s.sum()
    dz = np.outer(s, v) * (1.0 - h * h)      # n x 15
    g[:960] += (dz.T @ A).ravel()
    g[960:975] += dz.sum(axis=0)
    return g
g = grad(x)
t = time.perf_counter(); k = 0
while time.perf_counter() - t < 1.0:
    grad(x); k += 1
print((time.perf_counter() - t) / k)
print(" ".join(repr(float(v)) for v in g))
"#,
        xs = xs.join(", ")
    );
    let out = Command::new(&python)
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .args(["-c", &script])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let secs = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("NumPy printed no time")?;
    let g = lines
        .next()
        .ok_or("NumPy printed no gradient")?
        .split_whitespace()
        .map(|v| v.parse::<f64>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((secs, g))
}

fn main() {
    let numpy = !std::env::args().any(|a| a == "--no-numpy");
    let base = resident_mb();
    let stage = |what: &str, t: Instant| {
        println!(
            "  {what:<44} {:8.3} s   held {:7.1} MB",
            t.elapsed().as_secs_f64(),
            resident_mb() - base
        );
    };
    println!("two-layer tanh network on the digits (d = 991, 1797 rows), one thread");
    println!("set-up:");
    let t = Instant::now();
    let source = std::fs::read_to_string(PROBLEM).expect("run from the repository root");
    let problem = smelt::problem::load_in(&source, std::path::Path::new("examples/problems"))
        .expect("the problem loads");
    stage("load (CSV, the loss's graph)", t);
    let d = problem.dim;
    let n = problem.model.data.as_ref().map_or(0, |dt| dt.len());
    let start = problem.starts[0].value.clone();
    let t = Instant::now();
    let rule = smelt::check(&std::fs::read_to_string("examples/sgd.opt").expect("sgd.opt"))
        .expect("sgd.opt checks");
    let mut p = smelt::experiment::verify::prepare(rule, problem, &[1], &BTreeMap::new())
        .expect("SGD's SME derives");
    stage("derive SGD's SME-1, bind the problem", t);
    let t = Instant::now();
    let grad = p.problem.model.df(1);
    stage("∇f: d row means, symbolically", t);
    let t = Instant::now();
    let gtape = Tape::compile(&p.problem.model.graph, &grad, d);
    stage("∇f: compiled to a tape", t);
    let t = Instant::now();
    let nums = compile::Numbers {
        small: 0.25,
        hypers: p.hypers.clone(),
    };
    let step = compile::compile_step(&p.rule, &mut p.problem.model, &p.layout, &nums)
        .expect("the step compiles");
    stage("the optimizer's step (B rows and ∇f), compiled", t);
    println!(
        "  graph: {} nodes; ∇f tape {} registers; step tape {} registers",
        p.problem.model.graph.len(),
        gtape.registers().len() / LANES,
        step.tape.registers().len() / LANES
    );

    // ∇f per path.
    let mut regs = gtape.registers();
    for (i, &v) in start.iter().enumerate() {
        if let Some(r) = gtape.input_reg(i) {
            regs[r * LANES..(r + 1) * LANES].fill(v);
        }
    }
    let per_run = timed(2.0, || gtape.run(&mut regs));
    let g_smelt = per_run / LANES as f64;
    let ours: Vec<f64> = (0..d).map(|k| regs[gtape.output_reg(k) * LANES]).collect();
    // The step per path.
    let mut sregs = step.tape.registers();
    for (i, &v) in start.iter().enumerate() {
        if let Some(r) = step.tape.input_reg(i) {
            sregs[r * LANES..(r + 1) * LANES].fill(v);
        }
    }
    let mut rng = smelt::internals::numeric::rng::Streams::new(1)
        .streams(1)
        .pop()
        .expect("one stream");
    let step_secs = timed(2.0, || {
        step.draw_minibatch(&mut sregs, &mut rng);
        step.tape.run(&mut sregs);
    }) / LANES as f64;
    let batch = match p.problem.model.noise {
        smelt::problem::Noise::Minibatch { batch } => batch,
        _ => 0,
    };
    println!("per path (one point), n = {n}, d = {d}:");
    println!(
        "  ∇f, smelt's tape (128 paths a run)          {:10.1} µs",
        g_smelt * 1e6
    );
    if numpy {
        match numpy_gradient(&start) {
            Ok((secs, g)) => {
                let err = g
                    .iter()
                    .zip(&ours)
                    .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
                    .fold(0.0f64, f64::max);
                println!(
                    "  ∇f, NumPy by hand (one thread)             {:10.1} µs   smelt/NumPy {:.2}×   largest relative difference {err:.1e}",
                    secs * 1e6,
                    g_smelt / secs
                );
            }
            Err(e) => println!("  ∇f, NumPy: n/a ({e})"),
        }
    }
    println!(
        "  optimizer step, B = {batch} rows drawn and run     {:10.1} µs   ({:.2}× ∇f)",
        step_secs * 1e6,
        step_secs / g_smelt
    );
    // SGD's SME-1: one Euler–Maruyama substep, its noise drawn from the rows (one pass
    // with ∇ℓ), and over Richardson's three levels as `verify` runs them.
    let t = Instant::now();
    let syms =
        compile::symbol_values(&p.smes[0], d, &nums, &p.rule.small.name).expect("symbol values");
    let sde = compile::compile_sde(&p.smes[0], &mut p.problem.model, &p.layout, &syms)
        .expect("the SME-1 compiles");
    let compile_secs = t.elapsed().as_secs_f64();
    let substep = |tape: &Tape| {
        let mut r = tape.registers();
        for (i, &v) in start.iter().enumerate() {
            if let Some(q) = tape.input_reg(i) {
                r[q * LANES..(q + 1) * LANES].fill(v);
            }
        }
        for i in 2 * d..2 * d + 5 {
            if let Some(q) = tape.input_reg(i) {
                r[q * LANES..(q + 1) * LANES].fill(if i == 2 * d { 0.01 } else { 12345.0 });
            }
        }
        timed(2.0, || tape.run(&mut r)) / LANES as f64
    };
    let fine = substep(&sde.tape);
    let levels = sde.rows.as_ref().map_or(1.75 * fine, |rows| {
        (4.0 * fine + 2.0 * substep(&rows.coarse[0]) + substep(&rows.coarse[1])) / 4.0
    });
    println!(
        "  SME-1 substep, noise from the rows         {:10.1} µs   ({:.2}× ∇f; over Richardson's 3 levels {:.2}×; compiled in {compile_secs:.2} s)",
        fine * 1e6,
        fine / g_smelt,
        levels / g_smelt
    );
    // The step's cost against the batch size B.
    for b in [1usize, 4, 64, 256] {
        let mut model = p.problem.model.with_batch(b as f64).expect("a batch size");
        let t = Instant::now();
        let step = compile::compile_step(&p.rule, &mut model, &p.layout, &nums)
            .expect("the step compiles");
        let compile_secs = t.elapsed().as_secs_f64();
        let mut sregs = step.tape.registers();
        for (i, &v) in start.iter().enumerate() {
            if let Some(r) = step.tape.input_reg(i) {
                sregs[r * LANES..(r + 1) * LANES].fill(v);
            }
        }
        let secs = timed(1.0, || {
            step.draw_minibatch(&mut sregs, &mut rng);
            step.tape.run(&mut sregs);
        }) / LANES as f64;
        println!(
            "  optimizer step, B = {b:>3}: {:10.1} µs   ({:.3}× ∇f; compiled in {compile_secs:.2} s)",
            secs * 1e6,
            secs / g_smelt
        );
    }
    println!("  held at the end: {:.1} MB", resident_mb() - base);
}
