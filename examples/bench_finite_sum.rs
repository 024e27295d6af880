//! Finite-sum benchmark (issue 21, "data as data"): how set-up and the SME's cost per
//! substep grow with the number of rows n and the dimension d, beside the cost of one
//! full-batch gradient evaluation of the same model, smelt's own and NumPy's
//! (`X.T @ (−y σ(−y X x)) / n + λx`, in the project's virtual environment).
//!
//! The problem is ridge-regularised logistic regression on `logistic(n, seed = 1)` (the
//! generated set of `examples/problems/logistic.prob`), SGD with minibatches of 8 rows.
//! For each (n, d): the time to load the problem and derive (`prepare`), the time of
//! `plan` (compiling the optimizer and every SME at one step size) for each of three step
//! sizes, the memory the process holds, and per path and call, over blocks of 128 paths:
//!
//! * `∇f`: a tape of the full-batch gradient alone (d row means, one loop over the rows);
//! * SME order 1 and order 2: one Euler–Maruyama substep of each SME as `verify` runs it;
//! * NumPy: one full-batch gradient at one point (its BLAS on one thread);
//!
//! and, at n = 10⁴ and d = 2, how the optimizer's step and the SMEs' substeps grow with
//! the batch size B.
//!
//! ```sh
//! cargo run --release --example bench_finite_sum                 # n = 10³ … 10⁵, d = 2 and 10
//! cargo run --release --example bench_finite_sum -- 1000000 2    # one size: n and d
//! cargo run --release --example bench_finite_sum -- --no-numpy
//! cargo run --release --example bench_finite_sum -- --batch      # the batch-size sweep alone
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use smelt::experiment::verify;
use smelt::internals::numeric::tape::{Tape, LANES};
use smelt::internals::sim::compile::SdeProgram;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

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

/// Seconds per path of one run of `tape` over a block of lanes, its inputs set by
/// `fill(input) -> value`, repeated until about `budget` seconds have passed.
fn per_path(tape: &Tape, n_inputs: usize, fill: impl Fn(usize) -> f64, budget: f64) -> f64 {
    let mut regs = tape.registers();
    for i in 0..n_inputs {
        if let Some(r) = tape.input_reg(i) {
            regs[r * LANES..(r + 1) * LANES].fill(fill(i));
        }
    }
    let started = Instant::now();
    let mut runs = 0usize;
    while runs == 0 || started.elapsed().as_secs_f64() < budget {
        tape.run(&mut regs);
        runs += 1;
    }
    started.elapsed().as_secs_f64() / (runs * LANES) as f64
}

/// NumPy's full-batch gradient on a data set of the same shape, seconds per call.
fn numpy_gradient(n: usize, d: usize) -> Result<f64, String> {
    let out = Command::new("scripts/python-env.sh")
        .output()
        .map_err(|e| format!("scripts/python-env.sh: {e}"))?;
    if !out.status.success() {
        return Err("scripts/python-env.sh failed".into());
    }
    let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let script = format!(
        r#"
import os, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
rng = np.random.default_rng(1)
n, d = {n}, {d}
X = rng.standard_normal((n, d)); y = np.where(rng.random(n) < 0.5, 1.0, -1.0); x = np.full(d, 0.5)
def grad(x):
    m = -y * (X @ x)
    s = 1.0 / (1.0 + np.exp(-m))
    return X.T @ (-y * s) / n + 0.1 * x
grad(x)
t = time.perf_counter(); k = 0
while time.perf_counter() - t < 0.5:
    grad(x); k += 1
print((time.perf_counter() - t) / k)
"#
    );
    let out = Command::new(&python)
        .env("OPENBLAS_NUM_THREADS", "1")
        .args(["-c", &script])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("NumPy's output: {e}"))
}

/// Seconds per path of one optimizer step (its minibatch drawn, then the step run).
fn step_cost(plan: &smelt::internals::sim::weak::Plan, budget: f64) -> f64 {
    let step = &plan.step;
    let mut regs = step.tape.registers();
    for i in 0..step.n_state {
        if let Some(r) = step.tape.input_reg(i) {
            regs[r * LANES..(r + 1) * LANES].fill(0.5);
        }
    }
    let mut rng = smelt::internals::numeric::rng::Streams::new(1)
        .streams(1)
        .pop()
        .expect("one stream");
    let started = Instant::now();
    let mut runs = 0usize;
    while runs == 0 || started.elapsed().as_secs_f64() < budget {
        step.draw_minibatch(&mut regs, &mut rng);
        step.tape.run(&mut regs);
        runs += 1;
    }
    started.elapsed().as_secs_f64() / (runs * LANES) as f64
}

/// The batch size's share: the optimizer's step and the SME's substeps for B rows a
/// step, at n = 10⁴, d = 2.
fn batch_sweep() {
    println!("batch size B at n = 10000, d = 2 (per path):");
    for b in [1, 8, 64, 512] {
        let (_, plans) = setup(10_000, 2, b);
        let plan = &plans[0];
        let opt = step_cost(plan, 0.3);
        let sde = |k: usize| substep_cost(plan, k, 0.3);
        println!(
            "    B = {b:>3}: optimizer step {:8.2} µs   SME-1 substep {:8.1} µs   SME-2 substep {:8.1} µs",
            opt * 1e6,
            sde(0) * 1e6,
            sde(1) * 1e6
        );
    }
}

/// Seconds per path of one Euler–Maruyama substep of SME `k` of a plan (state 0.5,
/// increments 0.01, substep τ/8).
fn substep_cost(plan: &smelt::internals::sim::weak::Plan, k: usize, budget: f64) -> f64 {
    tape_cost(&plan.sdes[k].1, &plan.sdes[k].1.tape, budget)
}

/// Seconds per path of one run of `tape`, a substep of `s` (state 0.5, increments 0.01,
/// substep τ/8, counter 0 and key 12345 for noise from the rows).
fn tape_cost(s: &SdeProgram, tape: &Tape, budget: f64) -> f64 {
    let n_slots = s.n;
    per_path(
        tape,
        2 * n_slots + 3,
        |i| match i {
            i if i < n_slots => 0.5,
            i if i < 2 * n_slots => 0.01,
            i if i == 2 * n_slots => s.tau / 8.0,
            i if i == 2 * n_slots + 1 => 0.0,
            _ => 12345.0,
        },
        budget,
    )
}

/// SME-1's cost per fine substep as `verify` runs it, with Richardson's two coarser
/// levels (K/2 and K/4 substeps, whose draws are made again when the noise comes from
/// the rows): `(4 fine + 2 half + 1 quarter) / 4`; and the fine substep alone with Σ
/// formed and factored instead.
fn richardson_and_formed(
    prepared: &mut verify::Prepared,
    eta: f64,
    budget: f64,
) -> (f64, f64, f64) {
    use smelt::internals::sim::compile;
    let sme = prepared.smes[0].clone();
    let nums = compile::Numbers {
        small: eta,
        hypers: prepared.hypers.clone(),
    };
    let syms = compile::symbol_values(&sme, prepared.problem.dim, &nums, &prepared.rule.small.name)
        .expect("symbol values");
    let rows = compile::compile_sde(&sme, &mut prepared.problem.model, &prepared.layout, &syms)
        .expect("SME-1 compiles");
    let formed =
        compile::compile_sde_formed(&sme, &mut prepared.problem.model, &prepared.layout, &syms)
            .expect("SME-1 compiles with Σ formed");
    let fine = tape_cost(&rows, &rows.tape, budget);
    let all = match &rows.rows {
        Some(r) => {
            (4.0 * fine
                + 2.0 * tape_cost(&rows, &r.coarse[0], budget)
                + tape_cost(&rows, &r.coarse[1], budget))
                / 4.0
        }
        None => 7.0 / 4.0 * fine,
    };
    let f = tape_cost(&formed, &formed.tape, budget);
    (fine, all, f)
}

/// The problem with n rows in dimension d and minibatches of b rows, prepared, and its
/// plans at three step sizes.
fn setup(
    n: usize,
    d: usize,
    b: usize,
) -> (verify::Prepared, Vec<smelt::internals::sim::weak::Plan>) {
    let mut prepared = prepare(n, d, b);
    let plans = [0.25, 0.125, 0.0625]
        .into_iter()
        .map(|eta| verify::plan(&mut prepared, eta, 8).expect("a plan"))
        .collect();
    (prepared, plans)
}

/// SGD's SMEs of orders 1 and 2 on ridge logistic regression with n rows in dimension d
/// and minibatches of b rows.
fn prepare(n: usize, d: usize, b: usize) -> verify::Prepared {
    let rule = smelt::check(
        &std::fs::read_to_string("examples/sgd.opt").expect("run from the repository root"),
    )
    .expect("sgd.opt checks");
    let problem = format!(
        "problem logistic\n  dim {d}\n  data a, y = logistic(n = {n}, seed = 1)\n  objective f(x) = softplus(-y*dot(a, x)) + 0.05*sum(x^2)\n  noise minibatch size = {b}\n  start x = 0.5\n  horizon 1\n  observe sq = sum(x^2)\n"
    );
    let p = smelt::problem::load(&problem).expect("the problem loads");
    verify::prepare(rule, p, &[1, 2], &BTreeMap::new()).expect("SGD's SMEs derive")
}

fn run(n: usize, d: usize, numpy: bool) {
    let before = resident_mb();
    let t = Instant::now();
    let mut prepared = prepare(n, d, 8);
    let derive_secs = t.elapsed().as_secs_f64();
    let mut plans = Vec::new();
    let mut plan_times = Vec::new();
    for eta in [0.25, 0.125, 0.0625] {
        let t = Instant::now();
        plans.push(verify::plan(&mut prepared, eta, 8).expect("a plan"));
        plan_times.push(t.elapsed().as_secs_f64());
    }
    let held = resident_mb() - before;
    // The full-batch gradient as a tape of its own.
    let model = &mut prepared.problem.model;
    let grad = model.df(1);
    let gtape = Tape::compile(&model.graph, &grad, d);
    let budget = 0.4;
    let g = per_path(&gtape, d, |_| 0.5, budget);
    let plan = &plans[0];
    let sde = |k: usize| substep_cost(plan, k, budget);
    let (s1, s2) = (sde(0), sde(1));
    let (_, s1_all, s1_formed) = richardson_and_formed(&mut prepared, 0.25, budget);
    let np = if numpy {
        numpy_gradient(n, d)
            .map_or_else(|e| format!("n/a ({e})"), |s| format!("{:9.1} µs", s * 1e6))
    } else {
        "skipped".into()
    };
    println!(
        "n = {n:>7}, d = {d:>2}: prepare {derive_secs:6.3} s; plan per η {} s; held {held:6.1} MB",
        plan_times
            .iter()
            .map(|t| format!("{t:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "    per path: ∇f {:9.1} µs   SME-1 substep {:9.1} µs ({:4.2}× ∇f; with Richardson's levels {:4.2}×; Σ formed {:4.2}×)   SME-2 substep {:9.1} µs ({:5.1}× ∇f)   NumPy ∇f {np}",
        g * 1e6,
        s1 * 1e6,
        s1 / g,
        s1_all / g,
        s1_formed / g,
        s2 * 1e6,
        s2 / g
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numpy = !args.iter().any(|a| a == "--no-numpy");
    if args.iter().any(|a| a == "--batch") {
        batch_sweep();
        return;
    }
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes: Vec<(usize, usize)> = match nums.as_slice() {
        [n, d] => vec![(*n, *d)],
        _ => [1_000, 10_000, 100_000]
            .into_iter()
            .flat_map(|n| [(n, 2), (n, 10)])
            .collect(),
    };
    println!("SGD on ridge logistic regression, minibatch 8; smelt's tapes on one thread, 128 paths a block");
    for &(n, d) in &sizes {
        run(n, d, numpy);
    }
    if sizes.len() > 1 {
        batch_sweep();
    }
}
