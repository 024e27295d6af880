//! `smelt escape`: reading the files, running every (η, B), printing the report.

use crate::cli::console::{emit, Outcome};
use crate::cli::verify::{inputs, print_part, report_error, sources, Inputs};
use smelt::experiment::escape::{self, Progress};
use smelt::experiment::shard::Shard;
use smelt::report::escape as report;
use std::path::PathBuf;

pub struct Args {
    pub file: PathBuf,
    pub problem: PathBuf,
    /// The run's options as the library takes them (the same in the Python package).
    pub request: escape::Request,
    pub set: Vec<String>,
    pub threads: Option<usize>,
    pub json: bool,
    pub plot: Option<PathBuf>,
    /// `K/N`: run shard K of N and print its part.
    pub shard: Option<String>,
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
    let request = &a.request;
    let (opts, etas, batches) = match request.options(&rule.name, &problem) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let shard = match a.shard.as_deref().map(Shard::parse).transpose() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    if shard.is_some() && a.plot.is_some() {
        return usage("`--shard` prints a part, which has no plot: give `--plot` to `smelt merge`");
    }
    let sources = sources(&a.problem, &shown, &source, &pshown, &psource, &overrides);
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
    if let Some(shard) = shard {
        let part = escape::run_shard(
            &mut setup,
            request,
            &etas,
            &batches,
            shard,
            &sources,
            &pool,
            &mut progress,
            &|| false,
        );
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        return match part {
            Ok(part) => print_part(&part),
            Err(e) => fail(e),
        };
    }
    let results = escape::run(
        &mut setup,
        &etas,
        &batches,
        request.paths,
        request.seed,
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
    if let Err(o) = print(a.json, &setup, request, &results, &fits, &pr, elapsed) {
        return o;
    }
    // The plot after the report: a failure to write it loses nothing else.
    match plot_file {
        Some((path, file)) => plot(path, file, &setup, &results, &fits, &pr),
        None => Outcome::Ok,
    }
}

/// Writes the run's plot into `file` (opened before the run), as SVG or PNG by `path`.
pub(crate) fn plot(
    path: &std::path::Path,
    mut file: std::fs::File,
    setup: &escape::Setup,
    results: &[escape::EtaResult],
    fits: &[escape::ScalingFit],
    pr: &escape::Predictions,
) -> Outcome {
    use std::io::Write as _;
    let plot = escape::plot(setup, results, fits, pr);
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
    Outcome::Ok
}

/// The report of an escape run, as text or JSON (the single run's and the merged one's).
pub(crate) fn print(
    json: bool,
    setup: &escape::Setup,
    request: &escape::Request,
    results: &[escape::EtaResult],
    fits: &[escape::ScalingFit],
    pr: &escape::Predictions,
    elapsed: f64,
) -> Result<(), Outcome> {
    if json {
        let run = escape::RunInfo {
            region: &request.region,
            seed: request.seed,
            substeps: request.substeps,
            seconds: elapsed,
        };
        let doc = escape::json(setup, &run, results, fits, pr);
        match serde_json::to_string_pretty(&doc) {
            Ok(s) => {
                emit(&format!("{s}\n"))?;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Err(Outcome::Invalid);
            }
        }
    } else {
        let paths = escape::paths(results);
        let text = format!(
            "{}{}",
            report::render_text(&setup.header(), pr, results, fits),
            report::render_footer(paths, request.seed, elapsed, smelt::experiment::GENERATOR)
        );
        emit(&text)?;
    }
    Ok(())
}
