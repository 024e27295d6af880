//! Simulation benchmark (issue "verify", DESIGN.md §6): path-steps per second of the
//! compiled optimizer (SGD) and of the SME's Euler–Maruyama substeps, in d = 1 and
//! d = 10, on 1 and 2 threads, beside the generator's raw rate of normals (the bound)
//! and the NumPy baseline's figures (`../shared/baselines`, re-run here with
//! `--baseline DIR` when its virtual environment exists).
//!
//! ```sh
//! cargo run --release --example bench_sim
//! cargo run --release --example bench_sim -- --baseline ../shared/baselines
//! ```
//!
//! Every figure is the best of 3 runs of `smelt::sim::weak::run`, the code `smelt verify`
//! runs (blocks of 128 paths, each its own generator stream, rayon over blocks), on
//! the double well `f = Σ (x⁴/4 − x²/2)` with Σ = 0.5 I at η = 2⁻⁵.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use smelt::sim::weak;
use smelt::verify;
use std::collections::BTreeMap;
use std::time::Instant;

fn plan(d: usize, orders: &[u32], substeps: usize, steps: usize) -> weak::Plan {
    let src = std::fs::read_to_string("examples/sgd.opt").expect("run from the repository root");
    let rule = smelt::check(&src).unwrap();
    let prob = format!(
        "problem bench\n dim {d}\n objective f(x) = sum(x^4/4 - x^2/2)\n noise gaussian cov = 0.5\n start x = 0.5\n horizon {}\n observe sq = sum(x^2)\n",
        steps as f64 / 32.0
    );
    let p = smelt::problem::load(&prob).unwrap();
    let mut prepared =
        verify::prepare(rule, p, orders, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
    verify::plan(&mut prepared, 1.0 / 32.0, substeps).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Best of 3 wall times of a run.
fn time(plan: &weak::Plan, paths: usize, threads: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let st = pool.install(|| weak::run(plan, paths, 1, &|_| {}));
        best = best.min(t.elapsed().as_secs_f64());
        assert!(st.opt_divergence.is_none());
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let baseline = args
        .iter()
        .position(|a| a == "--baseline")
        .and_then(|i| args.get(i + 1).cloned());
    // The generator bound: normals per second, one thread.
    let mut g = smelt::sim::rng::Streams::new(1).stream(0);
    // Batches of one register (128 lanes), as the simulation draws them: the
    // generator's fastest rate (bench_rng compares batch sizes).
    let mut buf = vec![0.0; smelt::numeric::tape::LANES];
    let n = 400_000;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            g.fill_normal(&mut buf);
        }
        best = best.min(t.elapsed().as_secs_f64());
        assert!(buf.iter().all(|x| x.is_finite()));
    }
    let bound = (n * buf.len()) as f64 / best;
    println!("generator: {}", smelt::sim::rng::NAME);
    println!("  batch fast path: {}", smelt::sim::rng::fast_path());
    println!("  normals, one thread: {:.0} M/s (the bound: one normal per SGD path-step and coordinate)\n", bound / 1e6);
    println!(
        "{:<34} {:>4} {:>8} {:>14} {:>14} {:>10} {:>12}",
        "what", "d", "threads", "M path-steps/s", "M normals/s", "of bound", "× NumPy"
    );
    // NumPy's single-thread rates on the 1-D double well (shared/baselines/README.md):
    // SGD step incl. RNG 87.6 M/s, an order-2 SME Euler–Maruyama substep incl. RNG 80 M/s.
    let numpy = |what: &str, d: usize, rate: f64| -> String {
        if d != 1 {
            return "—".into();
        }
        let base = if what == "SGD" { 87.6e6 } else { 80e6 };
        format!("{:.1}×", rate / base)
    };
    let steps = 256;
    for d in [1usize, 10] {
        let paths = if d == 1 { 1 << 18 } else { 1 << 15 };
        // The optimizer alone.
        let mut p = plan(d, &[1], 8, steps);
        p.sdes.clear();
        for threads in [1, 2] {
            let t = time(&p, paths, threads);
            let rate = (paths * p.steps) as f64 / t;
            println!(
                "{:<34} {:>4} {:>8} {:>14.1} {:>14.1} {:>9.0}% {:>12}",
                "SGD step (compiled tape)",
                d,
                threads,
                rate / 1e6,
                rate * d as f64 / 1e6,
                100.0 * rate * d as f64 / (bound * threads as f64),
                numpy("SGD", d, rate)
            );
        }
        // The optimizer with one SME: K = 8 fine substeps plus 4 + 2 coarser ones per step;
        // the SME's share is the difference.
        let with = plan(d, &[1], 8, steps);
        for threads in [1, 2] {
            let t_opt = time(&p, paths, threads);
            let t_all = time(&with, paths, threads);
            let sub = (paths * with.steps * 14) as f64 / (t_all - t_opt);
            let normals = (paths * with.steps * 8 * d) as f64 / (t_all - t_opt);
            println!(
                "{:<34} {:>4} {:>8} {:>14.1} {:>14.1} {:>9.0}% {:>12}",
                "SME-1 Euler–Maruyama substep",
                d,
                threads,
                sub / 1e6,
                normals / 1e6,
                100.0 * normals / (bound * threads as f64),
                numpy("EM", d, sub)
            );
        }
    }
    println!(
        "\n(substep rate: 14 Euler–Maruyama substeps per optimizer step at K = 8, with K/2 and K/4 for Richardson and\n the bias estimate; 8·d bridge normals per step)"
    );
    match baseline {
        Some(dir) => {
            let py = format!("{dir}/.venv/bin/python");
            println!("\nNumPy baseline ({dir}/numpy_weak_error.py --bench), one thread:");
            match std::process::Command::new(&py)
                .arg("numpy_weak_error.py")
                .arg("--bench")
                .current_dir(&dir)
                .output()
            {
                Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
                Err(e) => println!("  could not run {py}: {e}"),
            }
        }
        None => println!(
            "\nNumPy baseline (shared/baselines/README.md, same machine type, one thread): SGD step incl. RNG\n 87.6 M path-steps/s; Heun substep incl. RNG 68.5 M path-substeps/s; PCG64 normals 103 M/s."
        ),
    }
}
