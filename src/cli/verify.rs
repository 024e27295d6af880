//! `smelt verify`: reading the files, running the step sizes, printing the report.

use crate::cli::console::{emit, load, Outcome};
use smelt::diagnostic::render;
use smelt::experiment::verify::{self, Error};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct Args {
    pub file: PathBuf,
    pub problem: PathBuf,
    pub orders: Vec<u32>,
    pub etas: Option<Vec<f64>>,
    pub time_steps: Option<Vec<f64>>,
    pub paths: usize,
    pub seed: u64,
    pub substeps: usize,
    pub set: Vec<String>,
    pub threads: Option<usize>,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub exact: bool,
    pub budget: Option<u64>,
    pub quiet: bool,
}

/// The two files of a run, read and checked.
pub(crate) struct Inputs {
    pub shown: String,
    pub source: String,
    pub pshown: String,
    pub psource: String,
    pub rule: smelt::Optimizer,
    pub problem: smelt::problem::Problem,
    pub overrides: BTreeMap<String, f64>,
}

/// Reads the optimizer and problem files and the `--set` values.
pub(crate) fn inputs(
    file: &std::path::Path,
    problem: &std::path::Path,
    set: &[String],
) -> Result<Inputs, Outcome> {
    let (shown, source) = load(file)?;
    let (pshown, psource) = load(problem)?;
    let rule = match smelt::check(&source) {
        Ok(r) => r,
        Err(e) => {
            eprint!("{}", render(e.diagnostics(), &shown, &source));
            return Err(Outcome::Invalid);
        }
    };
    let dir = problem.parent().map_or_else(
        || std::path::PathBuf::from("."),
        std::path::Path::to_path_buf,
    );
    let problem = match smelt::problem::load_in(&psource, &dir) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{}", render(&[*d], &pshown, &psource));
            return Err(Outcome::Invalid);
        }
    };
    let mut overrides = BTreeMap::new();
    for s in set {
        let Some((k, v)) = s.split_once('=') else {
            eprintln!("error: `--set {s}`: write `--set name=value`");
            return Err(Outcome::Usage);
        };
        let Ok(v) = v.trim().parse::<f64>() else {
            eprintln!("error: `--set {s}`: `{v}` is not a number");
            return Err(Outcome::Usage);
        };
        overrides.insert(k.trim().to_string(), v);
    }
    Ok(Inputs {
        shown,
        source,
        pshown,
        psource,
        rule,
        problem,
        overrides,
    })
}

pub fn run(a: Args) -> Outcome {
    let Inputs {
        shown,
        source,
        pshown,
        psource,
        rule,
        problem,
        overrides,
    } = match inputs(&a.file, &a.problem, &a.set) {
        Ok(i) => i,
        Err(o) => return o,
    };
    if a.orders.is_empty() || a.orders.iter().any(|&o| o == 0 || o > 3) {
        eprintln!("error: `--orders`: give orders from 1 to 3, e.g. `--orders 1,2`");
        return Outcome::Usage;
    }
    if a.paths == 0 || a.paths > 1 << 30 {
        eprintln!("error: `--paths` must be between 1 and 2^30");
        return Outcome::Usage;
    }
    if a.substeps < 4 || a.substeps % 4 != 0 || a.substeps > 1024 {
        eprintln!("error: `--substeps` must be a multiple of 4 between 4 and 1024");
        return Outcome::Usage;
    }
    for (flag, given) in [("--etas", &a.etas), ("--time-steps", &a.time_steps)] {
        if let Some(g) = given {
            if g.is_empty() || g.iter().any(|e| !(*e > 0.0 && e.is_finite())) {
                eprintln!(
                    "error: `{flag}`: give positive step sizes, e.g. `{flag} 0.25,0.125,0.0625`"
                );
                return Outcome::Usage;
            }
        }
    }
    let problem_etas = problem.etas.clone();
    let mut prepared = match verify::prepare(rule, problem, &a.orders, &overrides) {
        Ok(p) => p,
        Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
    };
    // The grid: `--etas`, else `--time-steps`, else the problem's `etas`, else times per
    // step 2^-2 … 2^-7 (the same values of the small parameter when it is the time).
    let default_times: Vec<f64> = (2..=7).map(|k| 0.5f64.powi(k)).collect();
    let etas = match (&a.etas, &a.time_steps, problem_etas) {
        (Some(e), _, _) => Ok(e.clone()),
        (None, Some(t), _) => verify::etas_for_times(&prepared, t),
        (None, None, Some(e)) => Ok(e),
        (None, None, None) if verify::time_is_small(&prepared) => Ok(default_times),
        (None, None, None) => verify::etas_for_times(&prepared, &default_times),
    };
    let etas = match etas {
        Ok(e) => e,
        Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
    };
    if a.exact {
        let started = std::time::Instant::now();
        let budget = match a.budget {
            Some(b) => b,
            None => match verify::exact_steps(&prepared, &etas) {
                Ok(n) => n.saturating_mul(8),
                Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
            },
        };
        let (series, extension) = match verify::exact_extending(&mut prepared, &etas, budget) {
            Ok(s) => s,
            Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
        };
        let header = format!(
            "{} on {} (d = {}, T = {}): exact mode, laws propagated exactly (no sampling), {:.2} s\n{}\n",
            prepared.rule.name,
            prepared.problem.name,
            prepared.problem.dim,
            prepared.problem.horizon,
            started.elapsed().as_secs_f64(),
            extension.describe_exact(&prepared.rule.small.name)
        );
        let run = serde_json::json!({ "extension": extension });
        return output(&a, &prepared, &series, &header, Some(run), "exact");
    }
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot start worker threads: {e}");
            return Outcome::Usage;
        }
    };
    let budget = match a.budget {
        Some(b) => b,
        None => match verify::path_steps(&mut prepared, &etas, a.paths) {
            Ok(n) => n.saturating_mul(8),
            Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
        },
    };
    let started = std::time::Instant::now();
    let show = !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let small = prepared.rule.small.name.clone();
    let mut simulate = |plan: &verify::Plan| {
        let blocks = a.paths.div_ceil(verify::BLOCK) as u64;
        let bar = if show {
            let b = indicatif::ProgressBar::new(blocks);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} blocks {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(format!("{small} = {:.3e}", plan.eta));
            Some(b)
        } else {
            None
        };
        let progress = |k: usize| {
            if let Some(b) = &bar {
                b.set_position(k as u64);
            }
        };
        let st = pool.install(|| verify::simulate(plan, a.paths, a.seed, &progress));
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        st
    };
    let (stats, series, extension) = match verify::run_extending(
        &mut prepared,
        &etas,
        a.paths,
        a.substeps,
        budget,
        &mut simulate,
    ) {
        Ok(r) => r,
        Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let header = format!(
        "{} on {} (d = {}, T = {}): {} paths per step size, seed {}, {} substeps, {:.1} s\n\
         SDE: Euler–Maruyama with Richardson extrapolation; noise coupled to the optimizer's\n\
         generator: {}\n{}\n",
        prepared.rule.name,
        prepared.problem.name,
        prepared.problem.dim,
        prepared.problem.horizon,
        stats.first().map_or(0, |s| s.paths),
        a.seed,
        a.substeps,
        elapsed,
        smelt::experiment::GENERATOR,
        extension.describe(&prepared.rule.small.name)
    );
    let run = serde_json::json!({
        "paths": stats.first().map_or(0, |s| s.paths),
        "seed": a.seed,
        "substeps": a.substeps,
        "generator": smelt::experiment::GENERATOR,
        "seconds": elapsed,
        "extension": extension,
    });
    output(&a, &prepared, &series, &header, Some(run), "simulation")
}

fn output(
    a: &Args,
    prepared: &verify::Prepared,
    series: &[verify::Series],
    header: &str,
    run: Option<serde_json::Value>,
    mode: &str,
) -> Outcome {
    if let Some(path) = &a.plot {
        let plot = verify::plot(prepared, series);
        let bytes = match smelt::report::plot::Format::of_path(path) {
            smelt::report::plot::Format::Svg => {
                Ok(smelt::report::plot::verify::svg(&plot).into_bytes())
            }
            smelt::report::plot::Format::Png => smelt::report::plot::verify::png(&plot),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot draw `{}`: {e}", path.display());
                return Outcome::Usage;
            }
        };
        if let Err(e) = std::fs::write(path, bytes) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return Outcome::Usage;
        }
    }
    if a.json {
        let doc = serde_json::json!({
            "schema": "smelt-verify",
            "version": 1,
            "optimizer": prepared.rule.name,
            "problem": prepared.problem.name,
            "dim": prepared.problem.dim,
            "horizon": prepared.problem.horizon,
            "small": prepared.rule.small.name,
            "mode": mode,
            "run": run,
            "contradicted": series.iter().any(verify::Series::contradicts),
            "series": series,
        });
        match serde_json::to_string_pretty(&doc) {
            Ok(s) => {
                if let Err(o) = emit(&format!("{s}\n")) {
                    return o;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Outcome::Invalid;
            }
        }
    } else if let Err(o) = emit(&verify::render_text(header, series)) {
        return o;
    }
    if series.iter().any(verify::Series::contradicts) {
        Outcome::Contradicted
    } else {
        Outcome::Ok
    }
}

pub(crate) fn report_error(e: Error, opt: (&str, &str), prob: (&str, &str)) -> Outcome {
    eprint!("{}", e.render(opt, prob));
    Outcome::Invalid
}
