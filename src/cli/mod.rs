//! Argument parsing, file reading and printing. Exit codes: 0 success, 1 invalid
//! input (with a diagnostic on stderr), 2 bad usage, an unreadable file or output that
//! cannot be written (a full disk; a closed pipe ends the output quietly instead).

mod console;
mod escape;
mod merge;
mod verify;

use clap::{Parser, Subcommand};
use console::{emit, load, read, Outcome, ReadError};
use smelt::diagnostic::render;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "smelt",
    version,
    about = "Derive the stochastic modified equation of an optimizer from its update rule",
    long_about = None,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate optimizer files and print each in canonical form
    Check {
        /// Optimizer files (`.opt`)
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Find how the hyperparameters must scale with the batch size to keep the SME
    Scaling {
        /// The optimizer file (`.opt`)
        file: PathBuf,
        /// The hyperparameter or scaling that is the noise's standard deviation (∝ 1/√batch);
        /// without it, the noise covariance Σ scales as 1/batch
        #[arg(long, value_name = "NAME")]
        noise_scale: Option<String>,
    },
    /// Derive the stochastic modified equation of an optimizer
    Derive {
        /// The optimizer file (`.opt`)
        file: PathBuf,
        /// The weak order: 1, 2, 3, … (default 1; with `--hessian-aware`, the order of the
        /// SME whose series certifies the closed forms, 2 to 6, default 4)
        #[arg(long, short)]
        order: Option<u32>,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// With `--format latex`: a complete document that compiles with pdflatex
        #[arg(long)]
        standalone: bool,
        /// The Hessian-aware SME (for SGD): closed forms in H = ∇²f, checked against the
        /// series of the order-`--order` SME of the quadratic part
        #[arg(long)]
        hessian_aware: bool,
        /// Write the result component by component for this dimension (text and SymPy;
        /// with `--hessian-aware`, the series of the closed forms)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=9))]
        dim: Option<u32>,
        /// Skip the independent check (the rule's own one-step moments against the SDE's on
        /// a random problem), which `derive` runs by default
        #[arg(long)]
        no_check: bool,
        /// The seed of the independent check's random problem
        #[arg(long, value_name = "SEED", default_value_t = CHECK_SEED)]
        check_seed: u64,
        /// The most terms one intermediate expression may hold; a derivation that needs
        /// more stops with an error (time and memory grow with the limit)
        #[arg(long, value_name = "N", default_value_t = smelt::MAX_TERMS)]
        max_terms: usize,
        /// No progress bar (it shows on a terminal when a derivation takes over a second)
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check derived SMEs against the optimizer itself: weak errors against the step size
    Verify {
        /// The optimizer file (`.opt`)
        file: PathBuf,
        /// The problem file (`.prob`): objective, noise, start, horizon, test functions
        #[arg(long, short)]
        problem: PathBuf,
        /// The SME orders to check
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        orders: Vec<u32>,
        /// Values of the small parameter (default: the problem's `etas`, else times per
        /// step 2^-2 … 2^-7)
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_parser = number)]
        etas: Option<Vec<f64>>,
        /// The grid as times per step τ (`2^-3,2^-4,…`), converted to the small parameter
        /// through the rule's `time` (a power of it); instead of `--etas`
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_parser = number, conflicts_with = "etas")]
        time_steps: Option<Vec<f64>>,
        /// Paths per step size (rounded up to a multiple of 64)
        #[arg(long, default_value_t = 65536)]
        paths: usize,
        /// The generator's seed
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Euler–Maruyama substeps of the SDE per optimizer step (a multiple of 4)
        #[arg(long, default_value_t = 8)]
        substeps: usize,
        /// Hyperparameter values, `name=value` (override the problem's `set` lines)
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Worker threads (default: all cores); results do not depend on it
        #[arg(long)]
        threads: Option<usize>,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = VerifyFormat::Text)]
        format: VerifyFormat,
        /// Also write a log–log plot of the errors as SVG
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Exact mode for linear-Gaussian problems: means and covariances propagated
        /// exactly on both sides, no sampling
        #[arg(long)]
        exact: bool,
        /// Paths in antithetic pairs (each pair's noise negated): unbiased, and the part of a
        /// path's error odd in the noise cancels within a pair (a fast state's end
        /// fluctuation, for one); not with minibatch noise
        #[arg(long, conflicts_with = "exact")]
        antithetic: bool,
        /// Cap on simulated path-steps (paths × optimizer steps over all step sizes) within
        /// which the grid extends to smaller steps until every verdict settles (default: 8×
        /// the given grid's; 0 or the grid's own count: no extension; with --exact, a cap
        /// on optimizer steps)
        #[arg(long)]
        budget: Option<u64>,
        /// Run shard K of N (`K/N`): only its share of the blocks of paths, printed as a
        /// JSON part for `smelt merge` (the grid as given: no `--budget`)
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// No progress bar
        #[arg(long, short)]
        quiet: bool,
    },
    /// Exit times of the optimizer and of its SDEs from a region around a stationary point
    Escape {
        /// The optimizer file (`.opt`)
        file: PathBuf,
        /// The problem file (`.prob`): objective, noise, start, horizon
        #[arg(long, short)]
        problem: PathBuf,
        /// The region: `ball R` (around the start), `level C` (f < C), `past POINT` (the
        /// half-space before the saddle near POINT), or `EXPR < C` / `EXPR > C`
        #[arg(long, short)]
        region: String,
        /// The models: `opt` (the optimizer, or its name), `sme1`, `sme2`, `sme3`, `ha`
        #[arg(long, default_value = "opt,sme1,sme2")]
        models: String,
        /// Values of the small parameter (default: the problem's `etas`, else 0.1)
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_parser = number)]
        etas: Option<Vec<f64>>,
        /// Batch sizes: the noise covariance is divided by B (minibatch noise draws B rows)
        #[arg(long, value_delimiter = ',')]
        batch: Vec<f64>,
        /// Paths per model and step size (rounded up to a multiple of 128)
        #[arg(long, default_value_t = 10000)]
        paths: usize,
        /// The generator's seed
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The start point of the parameter (a number or `[a, b]`; default: the problem's)
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        /// Start at the point as given, not at the stationary point Newton finds from it
        #[arg(long)]
        no_refine: bool,
        /// A saddle (Newton from this point) for the Eyring–Kramers prediction
        #[arg(long, allow_hyphen_values = true)]
        saddle: Option<String>,
        /// Censor at this time (default: the problem's horizon)
        #[arg(long)]
        horizon: Option<f64>,
        /// Euler–Maruyama substeps of an SDE per optimizer step (where not exact)
        #[arg(long, default_value_t = 8)]
        substeps: usize,
        /// Simulate every SDE by Euler–Maruyama, even on linear problems where the exact
        /// one-step transition is used by default
        #[arg(long)]
        em: bool,
        /// Hyperparameter values, `name=value`
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Worker threads (default: all cores); results do not depend on it
        #[arg(long)]
        threads: Option<usize>,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = VerifyFormat::Text)]
        format: VerifyFormat,
        /// Also write the survival curves and the scaling fit as SVG
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Run shard K of N (`K/N`): only its share of the blocks of paths, printed as a
        /// JSON part for `smelt merge`
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// No progress bar (it shows on a terminal, one step per step size and batch size)
        #[arg(long, short)]
        quiet: bool,
    },
    /// Merge the JSON parts of a sharded `verify` or `escape` run (`--shard K/N`) into the
    /// single run's report
    Merge {
        /// The parts, in any order: every shard 1..N of one run once
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// Output format (as the command's own)
        #[arg(long, short, value_enum, default_value_t = VerifyFormat::Text)]
        format: VerifyFormat,
        /// Also write the command's plot (SVG, or PNG by the extension)
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum VerifyFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Unicode text for terminals
    Text,
    /// JSON, schema `smelt-sme` version 1 (`smelt-hasme` with `--hessian-aware`; see the README)
    Json,
    /// LaTeX (`amsmath` align environment)
    Latex,
    /// A Python module with `drift(...)` and `diffusion(...)` in NumPy
    Numpy,
    /// A Python script that rebuilds the result with SymPy (in dimension `--dim`, default 1)
    Sympy,
}

/// A number on the command line, written as in a problem file (`0.1`, `2^-4`, `1/8`).
fn number(s: &str) -> Result<f64, String> {
    smelt::problem::expr::number(s).map_err(|e| e.to_string())
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let outcome = match cli.command {
        Command::Verify {
            file,
            problem,
            orders,
            etas,
            time_steps,
            paths,
            seed,
            substeps,
            set,
            threads,
            format,
            plot,
            exact,
            antithetic,
            budget,
            shard,
            quiet,
        } => verify::run(verify::Args {
            exact,
            antithetic,
            budget,
            shard,
            file,
            problem,
            orders,
            etas,
            time_steps,
            paths,
            seed,
            substeps,
            set,
            threads,
            json: matches!(format, VerifyFormat::Json),
            plot,
            quiet,
        }),
        Command::Escape {
            file,
            problem,
            region,
            models,
            etas,
            batch,
            paths,
            seed,
            from,
            no_refine,
            saddle,
            horizon,
            substeps,
            em,
            set,
            threads,
            format,
            plot,
            shard,
            quiet,
        } => escape::run(escape::Args {
            shard,
            file,
            problem,
            request: smelt::experiment::escape::Request {
                region,
                models,
                etas,
                batch,
                paths,
                seed,
                from,
                refine: !no_refine,
                saddle,
                horizon,
                substeps,
                em,
            },
            set,
            threads,
            json: matches!(format, VerifyFormat::Json),
            plot,
            quiet,
        }),
        Command::Merge {
            parts,
            format,
            plot,
        } => merge::run(
            &parts,
            matches!(format, VerifyFormat::Json),
            plot.as_deref(),
        ),
        Command::Check { files } => check(&files),
        Command::Scaling { file, noise_scale } => scaling(&file, noise_scale),
        Command::Derive {
            file,
            order,
            format,
            standalone,
            hessian_aware,
            dim,
            no_check,
            check_seed,
            max_terms,
            quiet,
        } => {
            let dim = dim.map(|d| d as usize);
            if hessian_aware {
                let order = order.unwrap_or(smelt::analysis::hasme::DEFAULT_ORDER);
                hessian(&file, order, format, standalone, dim)
            } else {
                let options = smelt::Options {
                    order: order.unwrap_or(1),
                    max_terms,
                    progress: None,
                };
                let checked = (!no_check).then_some(check_seed);
                derive(&file, options, format, standalone, dim, quiet, checked)
            }
        }
    };
    ExitCode::from(match outcome {
        Outcome::Ok => 0,
        Outcome::Invalid => 1,
        Outcome::Usage => 2,
        Outcome::Contradicted => 3,
    })
}

fn check(files: &[PathBuf]) -> Outcome {
    let mut worst = Outcome::Ok;
    for path in files {
        let shown = path.display().to_string();
        let source = match read(path) {
            Ok(s) => s,
            Err(ReadError::Usage(msg)) => {
                eprintln!("error: {msg}");
                worst = Outcome::Usage;
                continue;
            }
            Err(ReadError::Invalid(d, text)) => {
                eprint!("{}", render(&[*d], &shown, &text));
                if !matches!(worst, Outcome::Usage) {
                    worst = Outcome::Invalid;
                }
                continue;
            }
        };
        match smelt::check(&source) {
            Ok(opt) => {
                let text = smelt::canonical(&opt);
                let text = if files.len() > 1 {
                    format!("# {shown}\n{text}\n")
                } else {
                    text
                };
                if let Err(o) = emit(&text) {
                    return o;
                }
            }
            Err(e) => {
                eprint!("{}", render(e.diagnostics(), &shown, &source));
                if !matches!(worst, Outcome::Usage) {
                    worst = Outcome::Invalid;
                }
            }
        }
    }
    worst
}

/// The seed of the independent check's random problem (fixed: output is reproducible).
const CHECK_SEED: u64 = 0x5EED_C4EC;

fn derive(
    path: &Path,
    mut options: smelt::Options,
    format: Format,
    standalone: bool,
    dim: Option<usize>,
    quiet: bool,
    checked: Option<u64>,
) -> Outcome {
    let (shown, source) = match load(path) {
        Ok(loaded) => loaded,
        Err(outcome) => return outcome,
    };
    let bar = (!quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| DeriveBar::new(&mut options));
    // `lower`, not `check`: the derivation makes the leading-order scan's finding itself.
    let result = smelt::lower(&source).and_then(|opt| {
        let mut sme = smelt::derive_checked(&opt, &options)?;
        if let Some(seed) = checked {
            sme.independent = Some(smelt::certify(&opt, &sme, seed));
        }
        Ok(sme)
    });
    if let Some(bar) = bar {
        bar.finish();
    }
    match result {
        Ok(sme) => {
            let text = match format {
                Format::Text => match dim {
                    None => smelt::emit::text::render(&sme),
                    Some(d) => smelt::emit::text::render_components(&sme, d),
                },
                Format::Sympy => smelt::emit::sympy::render(&sme, dim),
                Format::Json => smelt::emit::json::to_json(&sme),
                Format::Latex => smelt::emit::latex::render(&sme, standalone),
                Format::Numpy => smelt::emit::numpy::render(&sme),
            };
            if let Err(o) = emit(&text) {
                return o;
            }
            match &sme.independent {
                Some(c) if c.failed() => {
                    eprintln!(
                        "error: the independent check contradicts the derived SME: {}",
                        c.summary()
                    );
                    Outcome::Invalid
                }
                _ => Outcome::Ok,
            }
        }
        Err(smelt::Error::Internal(msg)) => {
            eprintln!(
                "error: internal error in smelt: {msg}\nplease report it with the input file"
            );
            Outcome::Invalid
        }
        Err(e) => {
            eprint!("{}", render(e.diagnostics(), &shown, &source));
            Outcome::Invalid
        }
    }
}

fn hessian(
    path: &Path,
    order: u32,
    format: Format,
    standalone: bool,
    dim: Option<usize>,
) -> Outcome {
    if standalone && !matches!(format, Format::Latex) {
        eprintln!("error: --standalone makes a LaTeX document; add `--format latex`");
        return Outcome::Usage;
    }
    if dim.is_some() && !matches!(format, Format::Text | Format::Sympy) {
        eprintln!(
            "error: --dim writes components in the text and SymPy formats; the JSON, LaTeX and NumPy forms of the Hessian-aware SME hold for every dimension"
        );
        return Outcome::Usage;
    }
    let (shown, source) = match load(path) {
        Ok(loaded) => loaded,
        Err(outcome) => return outcome,
    };
    let result =
        smelt::check(&source).and_then(|opt| smelt::analysis::hasme::hessian_aware(&opt, order));
    let h = match result {
        Ok(h) => h,
        Err(e) => {
            eprint!("{}", render(e.diagnostics(), &shown, &source));
            return Outcome::Invalid;
        }
    };
    use smelt::emit::hasme;
    let certified = h.mismatches.is_empty();
    let text = match format {
        Format::Text => match dim {
            None => hasme::text(&h),
            Some(d) => hasme::components(&h, d),
        },
        Format::Json => smelt::emit::json::hasme_to_json(&h),
        _ if !certified => {
            eprintln!(
                "error: the series derived for `{shown}` do not match the Hessian-aware closed forms, so there are none to export:"
            );
            for m in &h.mismatches {
                eprintln!("  {m}");
            }
            eprintln!("  = hint: `--format text` or `--format json` show the comparison");
            return Outcome::Invalid;
        }
        Format::Latex => hasme::latex(&h, standalone),
        Format::Sympy => hasme::sympy(&h, dim),
        Format::Numpy => hasme::numpy(&h),
    };
    if let Err(o) = emit(&text) {
        return o;
    }
    if certified {
        Outcome::Ok
    } else {
        Outcome::Invalid
    }
}

fn scaling(path: &Path, noise_scale: Option<String>) -> Outcome {
    let (shown, source) = match load(path) {
        Ok(loaded) => loaded,
        Err(outcome) => return outcome,
    };
    let opt = match smelt::check(&source) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{}", render(e.diagnostics(), &shown, &source));
            return Outcome::Invalid;
        }
    };
    let sme = match smelt::derive_checked(&opt, &smelt::Options::order(1)) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{}", render(e.diagnostics(), &shown, &source));
            return Outcome::Invalid;
        }
    };
    let batch = match noise_scale {
        Some(n) => smelt::analysis::scaling::NoiseScale::Named(n),
        None => smelt::analysis::scaling::NoiseScale::Covariance,
    };
    match smelt::analysis::scaling::rule(&opt, &sme, &batch) {
        Ok(outcome) => match emit(&smelt::emit::scaling::render(&opt, &sme, &batch, &outcome)) {
            Ok(()) => Outcome::Ok,
            Err(o) => o,
        },
        Err(msg) => {
            eprintln!("error: {msg}");
            Outcome::Usage
        }
    }
}

/// The progress bar of a derivation: drawn on stderr once the derivation has run for a
/// second, cleared at the end.
struct DeriveBar {
    bar: indicatif::ProgressBar,
}

impl DeriveBar {
    /// Installs the callback in `options`.
    fn new(options: &mut smelt::Options) -> DeriveBar {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "deriving [{bar:30}] {pos}/{len} {elapsed} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let started = std::time::Instant::now();
        let shown = std::sync::atomic::AtomicBool::new(false);
        let b = bar.clone();
        options.progress = Some(smelt::Progress(std::sync::Arc::new(
            move |step: &smelt::Step| {
                if !shown.load(std::sync::atomic::Ordering::Relaxed)
                    && started.elapsed().as_secs_f64() >= 1.0
                {
                    shown.store(true, std::sync::atomic::Ordering::Relaxed);
                    b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                b.set_length(step.total as u64);
                b.set_position(step.done as u64);
                b.set_message(step.what.clone());
            },
        )));
        DeriveBar { bar }
    }

    fn finish(self) {
        self.bar.finish_and_clear();
    }
}
