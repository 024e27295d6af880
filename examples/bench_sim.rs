//! Simulation benchmark (issue "verify", DESIGN.md §6): smelt's simulation side by side
//! with the NumPy peer (`../shared/baselines/numpy_weak_error.py`), as ratios measured in
//! the same rounds on the same machine.
//!
//! * Path-steps per second of the compiled optimizer (SGD) and of the order-2 SME's
//!   Euler–Maruyama substeps, in d = 1 and d = 10, on 1 and 2 threads, beside the
//!   generator's raw rate of normals (the bound) and NumPy's `--bench` figures (its SGD
//!   step and its order-2 SME EM substep, each with its own generator).
//! * The whole experiment: SGD against its order-1 and order-2 SMEs on the 1-D double
//!   well, six step sizes 2⁻²…2⁻⁷, φ = x² and cos x, coupled noise, the same number of
//!   paths on both sides (`smelt::experiment::verify::run` against `numpy_weak_error.py --paths N`).
//!
//! ```sh
//! cargo run --release --example bench_sim                   # 3 rounds, NumPy beside
//! cargo run --release --example bench_sim -- --rounds 5 --paths 262144
//! cargo run --release --example bench_sim -- --no-numpy     # smelt's figures only
//! ```
//!
//! The NumPy side runs in the project's virtual environment (`scripts/python-env.sh`
//! creates it) from `--baseline DIR` (default `../shared/baselines`). Each round runs
//! NumPy's micro-benchmarks, smelt's, NumPy's experiment and smelt's experiment, in that
//! order; a ratio is taken within a round, and the table gives the median over the rounds
//! and the range. The machine is shared and noisy: same-round ratios are steadier than
//! either side's rate.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use smelt::experiment::verify;
use smelt::internals::sim::weak;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
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

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Best of 3 wall times of a run.
fn time(plan: &weak::Plan, paths: usize, threads: usize) -> f64 {
    let pool = pool(threads);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let st = pool.install(|| weak::run(plan, &weak::Sampling::new(paths, 1), &|_| {}));
        best = best.min(t.elapsed().as_secs_f64());
        assert!(st.opt_divergence.is_none());
    }
    best
}

/// The generator's rate (normals per second) on `threads` threads, each filling its own
/// stream in batches of one register (128 lanes) as the simulation draws them: best of 5
/// (each about 25 ms).
fn generator_rate(threads: usize) -> f64 {
    let n = 100_000;
    let streams = smelt::internals::numeric::rng::Streams::new(1);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for k in 0..threads {
                let mut g = streams.stream(k as u64);
                s.spawn(move || {
                    let mut buf = vec![0.0; smelt::internals::numeric::tape::LANES];
                    for _ in 0..n {
                        g.fill_normal(&mut buf);
                    }
                    assert!(buf.iter().all(|x| x.is_finite()));
                });
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    (threads * n * smelt::internals::numeric::tape::LANES) as f64 / best
}

/// One row of the micro-benchmark table: what, d, threads, path-steps/s, normals/s, and
/// the generator's rate on as many threads, measured just before (the machine drifts).
struct Row {
    what: &'static str,
    d: usize,
    threads: usize,
    rate: f64,
    normals: f64,
    bound: f64,
}

/// smelt's micro-benchmarks (one round).
fn smelt_rows() -> Vec<Row> {
    let steps = 256;
    let mut rows = Vec::new();
    for d in [1usize, 10] {
        let paths = if d == 1 { 1 << 18 } else { 1 << 15 };
        // The optimizer alone.
        let mut p = plan(d, &[2], 8, steps);
        p.sdes.clear();
        for threads in [1, 2] {
            let bound = generator_rate(threads);
            let rate = (paths * p.steps) as f64 / time(&p, paths, threads);
            rows.push(Row {
                what: "SGD step",
                d,
                threads,
                rate,
                normals: rate * d as f64,
                bound,
            });
        }
        // The optimizer with the order-2 SME: K = 8 fine substeps plus 4 + 2 coarser ones
        // per step; the SME's share is the difference.
        let with = plan(d, &[2], 8, steps);
        for threads in [1, 2] {
            let bound = generator_rate(threads);
            let t_opt = time(&p, paths, threads);
            let t_all = time(&with, paths, threads);
            let dt = t_all - t_opt;
            rows.push(Row {
                what: "SME-2 Euler–Maruyama substep",
                d,
                threads,
                rate: (paths * with.steps * 14) as f64 / dt,
                normals: (paths * with.steps * 8 * d) as f64 / dt,
                bound,
            });
        }
    }
    rows
}

/// The whole experiment in smelt: wall seconds of `verify::run` (derivation included).
fn smelt_experiment(paths: usize, threads: usize) -> f64 {
    let src = std::fs::read_to_string("examples/sgd.opt").expect("run from the repository root");
    let psrc = std::fs::read_to_string("examples/problems/double_well.prob").unwrap();
    let pool = pool(threads);
    let t = Instant::now();
    let rule = smelt::check(&src).unwrap();
    let problem = smelt::problem::load(&psrc).unwrap();
    let etas = problem.etas.clone().unwrap();
    let mut prepared = verify::prepare(rule, problem, &[1, 2], &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e:?}"));
    pool.install(|| verify::run(&mut prepared, &etas, paths, 1, 8))
        .unwrap_or_else(|e| panic!("{e:?}"));
    t.elapsed().as_secs_f64()
}

/// NumPy's `--bench` figures of one round (per second).
#[derive(Clone, Copy)]
struct NumpyBench {
    normals: f64,
    sgd: f64,
    em2: f64,
}

struct Numpy {
    python: PathBuf,
    dir: PathBuf,
}

impl Numpy {
    /// The project's virtual environment and the baseline's folder, if both are there.
    fn find(dir: &Path) -> Result<Numpy, String> {
        if !dir.join("numpy_weak_error.py").exists() {
            return Err(format!("no numpy_weak_error.py in {}", dir.display()));
        }
        let out = Command::new("scripts/python-env.sh")
            .output()
            .map_err(|e| format!("scripts/python-env.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/python-env.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(Numpy {
            python,
            dir: dir.to_path_buf(),
        })
    }

    fn output(&self, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg("numpy_weak_error.py")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run the NumPy baseline");
        assert!(
            out.status.success(),
            "numpy_weak_error.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `--bench`: the rates of its lines, by the start of their label.
    fn bench(&self) -> NumpyBench {
        let text = self.output(&["--bench"]);
        let rate = |label: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("no `{label}` line in NumPy's --bench output:\n{text}"));
            // The rate is the number followed by its unit, "M…/s".
            let words: Vec<&str> = line.split_whitespace().collect();
            let m: f64 = words
                .windows(2)
                .find_map(|w| w[1].starts_with('M').then(|| w[0].parse().ok()).flatten())
                .unwrap_or_else(|| panic!("no rate in `{line}`"));
            m * 1e6
        };
        NumpyBench {
            normals: rate("RNG standard_normal, PCG64, float64, into chunk"),
            sgd: rate("SGD step incl. RNG"),
            em2: rate("order-2 SME em substep incl. RNG"),
        }
    }

    /// The whole experiment with `paths` paths: the wall seconds it reports.
    fn experiment(&self, paths: usize) -> f64 {
        let text = self.output(&["--paths", &paths.to_string()]);
        let line = text
            .lines()
            .find(|l| l.starts_with("total "))
            .unwrap_or_else(|| panic!("no `total` line in NumPy's output:\n{text}"));
        line["total ".len()..]
            .split_whitespace()
            .next()
            .and_then(|w| w.trim_end_matches('s').parse().ok())
            .unwrap_or_else(|| panic!("no time in `{line}`"))
    }
}

/// The median and range of a list, as "median (min–max)".
fn spread(v: &[f64], digits: usize) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    if s.len() == 1 {
        format!("{m:.digits$}")
    } else {
        format!(
            "{m:.digits$} ({:.digits$}–{:.digits$})",
            s[0],
            s[s.len() - 1]
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let rounds: usize = value("--rounds").map_or(3, |v| v.parse().expect("--rounds N"));
    let paths: usize = value("--paths").map_or(131_072, |v| v.parse().expect("--paths N"));
    let dir = PathBuf::from(value("--baseline").unwrap_or_else(|| "../shared/baselines".into()));
    let numpy = if args.iter().any(|a| a == "--no-numpy") {
        Err("--no-numpy".to_string())
    } else {
        Numpy::find(&dir)
    };
    println!("generator: {}", smelt::internals::numeric::rng::NAME);
    println!(
        "  batch fast path: {}",
        smelt::internals::numeric::rng::fast_path()
    );
    match &numpy {
        Ok(n) => println!(
            "NumPy peer: {} ({}), {rounds} rounds\n",
            n.dir.join("numpy_weak_error.py").display(),
            n.python.display()
        ),
        Err(e) => println!("NumPy peer: not run ({e})\n"),
    }
    // Per round: the rows, NumPy's figures, the experiment's times.
    let mut table: Vec<Vec<Row>> = Vec::new();
    let mut np_bench: Vec<NumpyBench> = Vec::new();
    let mut exp_smelt: Vec<[f64; 2]> = Vec::new();
    let mut exp_numpy: Vec<f64> = Vec::new();
    for r in 0..rounds {
        println!("round {}/{rounds}", r + 1);
        if let Ok(n) = &numpy {
            np_bench.push(n.bench());
        }
        table.push(smelt_rows());
        if let Ok(n) = &numpy {
            exp_numpy.push(n.experiment(paths));
        }
        exp_smelt.push([smelt_experiment(paths, 1), smelt_experiment(paths, 2)]);
    }
    let have_np = !np_bench.is_empty();
    let col = |f: &dyn Fn(usize) -> f64| -> Vec<f64> { (0..rounds).map(f).collect() };

    // The generator's rate of a round on 1 and 2 threads: the median of its rows'
    // measurements.
    let bound_of = |threads: usize| -> Vec<f64> {
        table
            .iter()
            .map(|rows| {
                let mut b: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.threads == threads)
                    .map(|r| r.bound)
                    .collect();
                b.sort_by(f64::total_cmp);
                b[b.len() / 2]
            })
            .collect()
    };
    let bounds = bound_of(1);
    println!(
        "\ngenerator, normals/s: {} M on one thread, {} M on two",
        spread(&col(&|r| bounds[r] / 1e6), 0),
        spread(&bound_of(2).iter().map(|b| b / 1e6).collect::<Vec<_>>(), 0)
    );
    if have_np {
        println!(
            "NumPy PCG64 standard_normal: {} M/s; smelt's generator: {}× that",
            spread(&col(&|r| np_bench[r].normals / 1e6), 1),
            spread(&col(&|r| bounds[r] / np_bench[r].normals), 1)
        );
    }
    println!(
        "\n{:<30} {:>3} {:>7} {:>22} {:>16} {:>16} {:>18}",
        "what",
        "d",
        "threads",
        "M path-steps/s",
        "of bound: /step",
        "/normal",
        "× NumPy (1 thread)"
    );
    for (i, row) in table[0].iter().enumerate() {
        let rate = col(&|r| table[r][i].rate / 1e6);
        // Per path-step and coordinate (an SGD step or an SME substep), and per normal
        // drawn, against the generator's rate measured just before the row.
        let of_bound = col(&|r| {
            let row = &table[r][i];
            100.0 * row.rate * row.d as f64 / row.bound
        });
        let per_normal = col(&|r| {
            let row = &table[r][i];
            100.0 * row.normals / row.bound
        });
        let vs = if have_np && row.d == 1 {
            spread(
                &col(&|r| {
                    let base = if row.what == "SGD step" {
                        np_bench[r].sgd
                    } else {
                        np_bench[r].em2
                    };
                    table[r][i].rate / base
                }),
                1,
            ) + "×"
        } else {
            "—".into()
        };
        println!(
            "{:<30} {:>3} {:>7} {:>22} {:>15}% {:>15}% {:>18}",
            row.what,
            row.d,
            row.threads,
            spread(&rate, 0),
            spread(&of_bound, 0),
            spread(&per_normal, 0),
            vs
        );
    }
    if have_np {
        println!(
            "NumPy, one thread: SGD step {} M path-steps/s, order-2 SME EM substep {} M/s",
            spread(&col(&|r| np_bench[r].sgd / 1e6), 1),
            spread(&col(&|r| np_bench[r].em2 / 1e6), 1)
        );
    }
    println!(
        "(an SME step is 14 Euler–Maruyama substeps at K = 8, with K/2 and K/4 for Richardson and the bias\n estimate, over 8·d bridge normals: per normal is the stricter figure)"
    );

    println!(
        "\nthe whole experiment: SGD and its order-1 and order-2 SMEs, 1-D double well, η = 2^-2…2^-7,\nφ = x² and cos x, coupled, {paths} paths per η (smelt: EM K = 8 with Richardson; NumPy: Heun K = 16)"
    );
    for (t, threads) in [1usize, 2].iter().enumerate() {
        let secs = col(&|r| exp_smelt[r][t]);
        let vs = if have_np {
            format!(
                "  {}× NumPy",
                spread(&col(&|r| exp_numpy[r] / exp_smelt[r][t]), 1)
            )
        } else {
            String::new()
        };
        println!("  smelt, {threads} thread(s): {} s{vs}", spread(&secs, 2));
    }
    if have_np {
        println!("  NumPy, one thread: {} s", spread(&exp_numpy, 1));
    }
}
