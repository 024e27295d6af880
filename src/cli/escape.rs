//! `smelt escape`: reading the files, running every (η, B), printing the report.

use crate::cli::console::{emit, Outcome};
use crate::cli::verify::{inputs, report_error, Inputs};
use smelt::experiment::escape::{self, EtaResult, Options, Progress, ScalingFit, Setup};
use smelt::report::escape as report;
use std::path::PathBuf;

pub struct Args {
    pub file: PathBuf,
    pub problem: PathBuf,
    pub region: String,
    pub models: String,
    pub etas: Option<Vec<f64>>,
    pub batch: Vec<f64>,
    pub paths: usize,
    pub seed: u64,
    pub from: Option<String>,
    pub no_refine: bool,
    pub saddle: Option<String>,
    pub horizon: Option<f64>,
    pub substeps: usize,
    pub em: bool,
    pub set: Vec<String>,
    pub threads: Option<usize>,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub quiet: bool,
}

fn usage(msg: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {msg}");
    Outcome::Usage
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
    let models = match escape::parse_models(&a.models, &rule.name) {
        Ok(m) => m,
        Err(e) => return usage(e),
    };
    let region = match escape::parse_region(&a.region) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let point = |flag: &str, s: &Option<String>| match s {
        Some(s) => escape::parse_point(s)
            .map(Some)
            .map_err(|e| usage(format!("`{flag}`: {e}"))),
        None => Ok(None),
    };
    let from = match point("--from", &a.from) {
        Ok(p) => p,
        Err(o) => return o,
    };
    let saddle = match point("--saddle", &a.saddle) {
        Ok(p) => p,
        Err(o) => return o,
    };
    if a.paths == 0 || a.paths > 1 << 26 {
        return usage("`--paths` must be between 1 and 2^26");
    }
    if a.substeps == 0 || a.substeps > 1024 {
        return usage("`--substeps` must be between 1 and 1024");
    }
    let etas = a
        .etas
        .clone()
        .or_else(|| problem.etas.clone())
        .unwrap_or_else(|| vec![0.1]);
    if etas.is_empty() || etas.iter().any(|e| !(*e > 0.0 && e.is_finite())) {
        return usage("`--etas`: give positive step sizes, e.g. `--etas 0.2,0.1,0.05`");
    }
    let batches = if a.batch.is_empty() {
        vec![1.0]
    } else {
        a.batch.clone()
    };
    if batches.iter().any(|b| !(*b >= 1.0 && b.is_finite())) {
        return usage("`--batch`: batch sizes are at least 1");
    }
    let opts = Options {
        models,
        region,
        from,
        refine: !a.no_refine,
        saddle,
        horizon: a.horizon,
        substeps: a.substeps,
        em: a.em,
    };
    // The plot's file is opened before the run, so that a path that cannot be written
    // is reported before minutes of simulation, not after them.
    let plot_file = match &a.plot {
        Some(path) => match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(f) => Some((path, f)),
            Err(e) => return usage(format!("cannot write `{}`: {e}", path.display())),
        },
        None => None,
    };
    let fail = |e| report_error(e, (&shown, &source), (&pshown, &psource));
    let mut setup = match escape::prepare(rule, problem, &overrides, opts) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()
    {
        Ok(p) => p,
        Err(e) => return usage(format!("cannot start worker threads: {e}")),
    };
    let started = std::time::Instant::now();
    let bar = (!a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let b = indicatif::ProgressBar::new((batches.len() * etas.len()) as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "escape [{bar:30}] {pos}/{len} runs {elapsed} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let mut progress = |p: Progress| {
        if let Some(bar) = &bar {
            match p {
                Progress::Starting { eta, batch } => {
                    bar.set_message(format!("η = {eta}, B = {batch}"));
                }
                Progress::Done { .. } => bar.inc(1),
            }
        }
    };
    let results = escape::run(
        &mut setup,
        &etas,
        &batches,
        a.paths,
        a.seed,
        &pool,
        &mut progress,
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let results = match results {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let pr = escape::predictions(&mut setup);
    let fits = escape::scaling(&setup, &pr, &results);
    let elapsed = started.elapsed().as_secs_f64();
    if a.json {
        let doc = serde_json::json!({
            "schema": "smelt-escape",
            "version": 1,
            "optimizer": setup.prepared.rule.name,
            "problem": setup.prepared.problem.name,
            "dim": setup.prepared.problem.dim,
            "region": a.region,
            "start": setup.point,
            "saddle": setup.saddle,
            "horizon": setup.horizon,
            "run": {
                "paths": results.first().map_or(0, |r| r.models.first().map_or(0, |m| m.exited + m.censored + m.diverged)),
                "seed": a.seed,
                "substeps": a.substeps,
                "generator": smelt::numeric::rng::NAME,
                "seconds": elapsed,
            },
            "results": results,
            "scaling": fits,
            "predictions": pr,
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
    } else {
        let paths = results
            .first()
            .and_then(|r| r.models.first())
            .map_or(0, |m| m.exited + m.censored + m.diverged);
        let text = format!(
            "{}{}",
            report::render_text(&setup.header(), &pr, &results, &fits),
            report::render_footer(paths, a.seed, elapsed, smelt::numeric::rng::NAME)
        );
        if let Err(o) = emit(&text) {
            return o;
        }
    }
    // The plot after the report: a failure to write it loses nothing else.
    if let Some((path, mut file)) = plot_file {
        use std::io::Write as _;
        let plot = plot_of(&setup, &results, &fits, &pr);
        let bytes = match smelt::report::plot::Format::of_path(path) {
            smelt::report::plot::Format::Svg => {
                Ok(smelt::report::plot::escape::svg(&plot).into_bytes())
            }
            smelt::report::plot::Format::Png => smelt::report::plot::escape::png(&plot),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => return usage(format!("cannot draw `{}`: {e}", path.display())),
        };
        if let Err(e) = file
            .set_len(0)
            .and_then(|()| file.write_all(&bytes))
            .and_then(|()| file.flush())
        {
            return usage(format!("cannot write `{}`: {e}", path.display()));
        }
    }
    Outcome::Ok
}

fn plot_of(
    s: &Setup,
    results: &[EtaResult],
    fits: &[ScalingFit],
    pr: &escape::Predictions,
) -> smelt::report::plot::escape::EscapePlot {
    use smelt::report::plot::escape::{Curve, EscapePlot, ScalePoint, ScaleSeries, Scaling};
    // Survival curves at the first step size.
    let first = results.first();
    let curves = first
        .map(|r| {
            r.models
                .iter()
                .map(|m| Curve {
                    label: m.model.clone(),
                    points: m
                        .survival
                        .curve
                        .iter()
                        .map(|&(k, sv)| (f64::from(k) * r.tau, sv))
                        .collect(),
                    // Drawn to the horizon only where paths were censored there.
                    horizon: (m.censored > 0).then_some(r.max_steps as f64 * r.tau),
                })
                .collect()
        })
        .unwrap_or_default();
    // The first family of fits against η (one batch size), one series per model.
    let minimum = s.point.index == 0;
    let family: Vec<&ScalingFit> = fits
        .iter()
        .filter(|f| f.against.contains('η'))
        .filter(|f| fits.first().is_some_and(|g| g.at == f.at))
        .collect();
    let scaling = (!family.is_empty()).then(|| {
        let batch = family[0].at;
        let series = s
            .models
            .iter()
            .map(|&m| {
                let name = s.name(m);
                let points = results
                    .iter()
                    .filter(|r| r.batch == batch)
                    .filter_map(|r| {
                        let mr = r.models.iter().find(|x| x.model == name)?;
                        let x = if minimum {
                            1.0 / r.eta
                        } else {
                            (1.0 / r.eta).ln()
                        };
                        Some(ScalePoint {
                            x,
                            y: mr.mean_time,
                            lo: mr.mean_time - 1.96 * mr.mean_time_se,
                            hi: mr.mean_time + 1.96 * mr.mean_time_se,
                        })
                    })
                    .collect();
                let fit = family
                    .iter()
                    .find(|f| f.model == name)
                    .map(|f| (f.line.slope, f.line.intercept));
                ScaleSeries {
                    label: name,
                    points,
                    fit,
                }
            })
            .collect();
        // The prediction's line: through the optimizer's fitted level at the centre when
        // only the slope is known in closed form.
        let predicted = family.iter().find_map(|f| {
            let (slope, _) = f.predicted.first()?;
            let intercept = match (minimum, pr.kramers_prefactor) {
                (true, Some(pf)) => pf.ln(),
                _ => f.line.intercept + (f.line.slope - slope) * centre(results, minimum),
            };
            Some(("SME-1 closed form".to_string(), *slope, intercept))
        });
        Scaling {
            title: if minimum {
                "mean exit time against 1/η".into()
            } else {
                "mean exit time against log(1/η)".into()
            },
            x_label: if minimum {
                "1/η".into()
            } else {
                "log(1/η)".into()
            },
            y_label: "E τ (time)".into(),
            log_y: minimum,
            series,
            predicted,
        }
    });
    EscapePlot {
        title: format!(
            "{} on {}: exit times",
            s.prepared.rule.name, s.prepared.problem.name
        ),
        survival_title: first.map_or(String::new(), |r| format!("P(τ > t) at η = {}", r.eta)),
        time_label: "t (time)".into(),
        curves,
        scaling,
    }
}

/// The mean of the fits' x over the results.
fn centre(results: &[EtaResult], minimum: bool) -> f64 {
    let xs: Vec<f64> = results
        .iter()
        .map(|r| {
            if minimum {
                1.0 / r.eta
            } else {
                (1.0 / r.eta).ln()
            }
        })
        .collect();
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}
