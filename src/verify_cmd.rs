//! `smelt verify`: reading the files, running the step sizes, printing the report.

use crate::cli::{emit, load, Outcome};
use smelt::diagnostic::render;
use smelt::verify::{self, Error};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct Args {
    pub file: PathBuf,
    pub problem: PathBuf,
    pub orders: Vec<u32>,
    pub etas: Option<Vec<f64>>,
    pub paths: usize,
    pub seed: u64,
    pub substeps: usize,
    pub set: Vec<String>,
    pub threads: Option<usize>,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub exact: bool,
    pub quiet: bool,
}

/// The two files of a run, read and checked.
pub(crate) struct Inputs {
    pub shown: String,
    pub source: String,
    pub pshown: String,
    pub psource: String,
    pub rule: smelt::ir::Optimizer,
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
    let etas = a
        .etas
        .clone()
        .or_else(|| problem.etas.clone())
        .unwrap_or_else(|| (2..=7).map(|k| 0.5f64.powi(k)).collect());
    if etas.is_empty() || etas.iter().any(|e| !(*e > 0.0 && e.is_finite())) {
        eprintln!("error: `--etas`: give positive step sizes, e.g. `--etas 0.25,0.125,0.0625`");
        return Outcome::Usage;
    }
    let mut prepared = match verify::prepare(rule, problem, &a.orders, &overrides) {
        Ok(p) => p,
        Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
    };
    if a.exact {
        let started = std::time::Instant::now();
        let series = match verify::exact(&mut prepared, &etas) {
            Ok(s) => s,
            Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
        };
        let header = format!(
            "{} on {} (d = {}, T = {}): exact mode, laws propagated exactly (no sampling), {:.2} s\n",
            prepared.rule.name,
            prepared.problem.name,
            prepared.problem.dim,
            prepared.problem.horizon,
            started.elapsed().as_secs_f64()
        );
        return output(&a, &prepared, &series, &header, None);
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
    let started = std::time::Instant::now();
    let mut stats = Vec::new();
    let show = !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    for &eta in &etas {
        let plan = match verify::plan(&mut prepared, eta, a.substeps) {
            Ok(p) => p,
            Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
        };
        let blocks = a.paths.div_ceil(smelt::numeric::tape::LANES) as u64;
        let bar = if show {
            let b = indicatif::ProgressBar::new(blocks);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} blocks {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(format!("{} = {eta:.3e}", prepared.rule.small.name));
            Some(b)
        } else {
            None
        };
        let progress = |k: usize| {
            if let Some(b) = &bar {
                b.set_position(k as u64);
            }
        };
        let st = pool.install(|| smelt::sim::weak::run(&plan, a.paths, a.seed, &progress));
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        stats.push(st);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let names: Vec<String> = prepared
        .problem
        .observables
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let series = verify::summarize(&prepared.orders, &prepared.derived_orders(), &names, &stats);
    let header = format!(
        "{} on {} (d = {}, T = {}): {} paths per step size, seed {}, {} substeps, {:.1} s\n\
         SDE: Euler–Maruyama with Richardson extrapolation; noise coupled to the optimizer's\n\
         generator: {}\n",
        prepared.rule.name,
        prepared.problem.name,
        prepared.problem.dim,
        prepared.problem.horizon,
        stats.first().map_or(0, |s| s.paths),
        a.seed,
        a.substeps,
        elapsed,
        smelt::sim::rng::NAME
    );
    let run = serde_json::json!({
        "paths": stats.first().map_or(0, |s| s.paths),
        "seed": a.seed,
        "substeps": a.substeps,
        "generator": smelt::sim::rng::NAME,
        "seconds": elapsed,
    });
    output(&a, &prepared, &series, &header, Some(run))
}

fn output(
    a: &Args,
    prepared: &verify::Prepared,
    series: &[verify::Series],
    header: &str,
    run: Option<serde_json::Value>,
) -> Outcome {
    if let Some(path) = &a.plot {
        let svg = smelt::plot::svg(&plot_of(prepared, series));
        if let Err(e) = std::fs::write(path, svg) {
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
            "mode": if run.is_some() { "simulation" } else { "exact" },
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

fn plot_of(p: &verify::Prepared, series: &[verify::Series]) -> smelt::plot::Plot {
    use smelt::plot::{FitLine, Plot, PlotPoint, Series};
    let mut out = Vec::new();
    for s in series {
        let points: Vec<PlotPoint> = s
            .points
            .iter()
            .filter(|q| q.diverged.is_none())
            .map(|q| PlotPoint {
                step: q.tau,
                error: q.error.abs(),
                std_err: q.std_err,
            })
            .collect();
        let fit = s.fit.as_ref().and_then(|f| {
            let used: Vec<&verify::ErrorPoint> = s
                .points
                .iter()
                .filter(|q| q.resolved)
                .skip(f.dropped)
                .collect();
            let lo = used.iter().map(|q| q.tau).fold(f64::INFINITY, f64::min);
            let hi = used.iter().map(|q| q.tau).fold(0.0, f64::max);
            // log C from the weighted mean of log e − p log η over the used points.
            let n = used.len() as f64;
            let log_c = used
                .iter()
                .map(|q| q.error.abs().ln() - f.slope * q.tau.ln())
                .sum::<f64>()
                / n;
            (n > 0.0).then_some(FitLine {
                slope: f.slope,
                log_c,
                step_lo: lo,
                step_hi: hi,
            })
        });
        let mut notes = Vec::new();
        if s.asked != s.derived {
            let mut note = if s.derived == 0 {
                format!("order {} asked, none derived", s.asked)
            } else {
                format!("order {} asked, order {} derived", s.asked, s.derived)
            };
            if s.judged != s.derived {
                note = format!("{note}; {} here", s.judged);
            }
            notes.push(note);
        }
        notes.push(legend_verdict(s));
        out.push(Series {
            label: format!("SME-{} · {}", s.order, s.observable),
            points,
            fit,
            notes,
            alarm: s.contradicts(),
        });
    }
    // The slope is read against the time per step τ; say so when τ is not the small
    // parameter itself.
    let same = series
        .iter()
        .flat_map(|s| &s.points)
        .all(|q| (q.tau - q.eta).abs() <= 1e-12 * q.eta);
    let x_label = if same {
        p.rule.small.name.clone()
    } else {
        format!("time per step τ (a power of {})", p.rule.small.name)
    };
    Plot {
        title: format!(
            "{} on {}: weak error of each SME",
            p.rule.name, p.problem.name
        ),
        x_label,
        y_label: "|E φ(optimizer) − E φ(SME)|".into(),
        series: out,
        // The SDE's bias estimates are in the table; one line for all step sizes
        // would mislead, as they shrink with the step.
        floors: Vec::new(),
    }
}

/// The verdict, short enough for the plot's legend (the table's, by the same rule).
fn legend_verdict(s: &verify::Series) -> String {
    use smelt::report::Status;
    let verb = match s.status {
        Status::Confirms => "confirms",
        Status::Contradicts => "contradicts",
        Status::Steeper => "steeper than",
        Status::Inconclusive => "inconclusive for",
    };
    match (s.slope, s.half_width) {
        (Some(p), Some(h)) if p.is_finite() && h.is_finite() => {
            format!("{p:.2} ± {h:.2} {verb} order {}", s.judged)
        }
        _ => format!("{verb} order {}", s.judged),
    }
}

pub(crate) fn report_error(e: Error, opt: (&str, &str), prob: (&str, &str)) -> Outcome {
    match e {
        Error::Problem(d) => {
            eprint!("{}", render(&[*d], prob.0, prob.1));
            Outcome::Invalid
        }
        Error::Derive(e) => {
            if let smelt::Error::Internal(msg) = &e {
                eprintln!("error: internal error in smelt: {msg}");
            } else {
                eprint!("{}", render(e.diagnostics(), opt.0, opt.1));
            }
            Outcome::Invalid
        }
        Error::Other(msg) => {
            eprintln!("error: {msg}");
            Outcome::Invalid
        }
    }
}
