//! `smelt verify`: reading the files, running the step sizes, printing the report.

use crate::cli::console::{emit, load, Outcome};
use smelt::diagnostic::render;
use smelt::experiment::shard::{Origin, Shard, Sources};
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
    pub antithetic: bool,
    pub budget: Option<u64>,
    /// `K/N`: run shard K of N and print its part.
    pub shard: Option<String>,
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
    let config = verify::Config {
        grid: match (&a.etas, &a.time_steps) {
            (Some(e), _) => verify::Grid::Etas(e.clone()),
            (None, Some(t)) => verify::Grid::Times(t.clone()),
            (None, None) => verify::Grid::Default,
        },
        paths: a.paths,
        seed: a.seed,
        substeps: a.substeps,
        budget: a.budget,
        exact: a.exact,
        antithetic: a.antithetic,
        threads: a.threads,
    };
    if let Err(e) = config.check(&a.orders) {
        eprintln!("error: {e}");
        return Outcome::Usage;
    }
    let shard = match a.shard.as_deref().map(Shard::parse).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    if shard.is_some() {
        if let Err(e) = config.check_shard() {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
        if a.plot.is_some() {
            eprintln!(
                "error: `--shard` prints a part, which has no plot: give `--plot` to `smelt merge`"
            );
            return Outcome::Usage;
        }
    }
    let sources = sources(&a.problem, &shown, &source, &pshown, &psource, &overrides);
    let mut prepared = match verify::prepare(rule, problem, &a.orders, &overrides) {
        Ok(p) => p,
        Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
    };
    // The plot's file is opened before the run: a path that cannot be written is said
    // at once, not after minutes of simulation.
    let plot_file = match &a.plot {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some((path, f)),
            Err(e) => {
                eprintln!("error: cannot write `{}`: {e}", path.display());
                return Outcome::Usage;
            }
        },
        None => None,
    };
    let show = !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let small = prepared.rule.small.name.clone();
    let bar: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);
    let progress = |event: verify::Event| {
        if !show {
            return;
        }
        let Ok(mut bar) = bar.lock() else { return };
        match event {
            verify::Event::Start { eta, blocks } => {
                let b = indicatif::ProgressBar::new(blocks);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} blocks {elapsed}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_prefix(format!("{small} = {eta:.3e}"));
                *bar = Some(b);
            }
            verify::Event::Blocks(k) => {
                if let Some(b) = bar.as_ref() {
                    b.set_position(k as u64);
                }
            }
            verify::Event::Finish => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
            }
        }
    };
    if let Some(shard) = shard {
        let part =
            verify::execute_shard(&mut prepared, &config, shard, &sources, &progress, &|| {
                false
            });
        return match part {
            Ok(part) => print_part(&part),
            Err(e) => report_error(e, (&shown, &source), (&pshown, &psource)),
        };
    }
    let report = match verify::execute(&mut prepared, &config, &progress) {
        Ok(r) => r,
        Err(e) => return report_error(e, (&shown, &source), (&pshown, &psource)),
    };
    output(a.json, &prepared, &report, plot_file)
}

/// The two files of a run as a shard's part records them.
pub(crate) fn sources(
    problem: &std::path::Path,
    shown: &str,
    source: &str,
    pshown: &str,
    psource: &str,
    set: &BTreeMap<String, f64>,
) -> Sources {
    let dir = problem
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Sources {
        origin: Origin {
            rule_name: shown.to_string(),
            problem_name: pshown.to_string(),
            dir: dir.display().to_string(),
        },
        rule: source.to_string(),
        problem: psource.to_string(),
        set: set.clone(),
    }
}

/// A shard's part as one line of JSON.
pub(crate) fn print_part(part: &impl serde::Serialize) -> Outcome {
    match serde_json::to_string(part) {
        Ok(s) => match emit(&format!("{s}\n")) {
            Ok(()) => Outcome::Ok,
            Err(o) => o,
        },
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Invalid
        }
    }
}

pub(crate) fn output(
    json: bool,
    prepared: &verify::Prepared,
    report: &verify::Report,
    plot_file: Option<(&PathBuf, std::fs::File)>,
) -> Outcome {
    if let Some((path, mut file)) = plot_file {
        use std::io::Write as _;
        let plot = verify::plot(prepared, &report.series);
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
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.flush()) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return Outcome::Usage;
        }
    }
    if json {
        match serde_json::to_string_pretty(&report.to_json(prepared)) {
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
    } else if let Err(o) = emit(&report.text(prepared)) {
        return o;
    }
    if report.contradicted() {
        Outcome::Contradicted
    } else {
        Outcome::Ok
    }
}

pub(crate) fn report_error(e: Error, opt: (&str, &str), prob: (&str, &str)) -> Outcome {
    eprint!("{}", e.render(opt, prob));
    Outcome::Invalid
}
