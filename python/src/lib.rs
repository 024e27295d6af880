//! `smelt._native`: the library as Python sees it. Every function takes the rule's (and
//! the problem's) source text and returns the library's own outputs (SymPy scripts,
//! JSON, LaTeX, NumPy modules, text), so the Python side (`python/smelt/`) shows exactly
//! what the CLI prints and builds SymPy objects and arrays from it. Errors become
//! `smelt.SmeltError` with the diagnostic's text, line and column. Long work runs with
//! the GIL released.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use smelt::experiment::verify as run;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// `smelt.SmeltError` for an error of the library: the rendered diagnostics (`text`),
/// the first one's message, code and hint, and the file, line and column it points at
/// (`None` for errors no span explains).
fn smelt_error(
    py: Python<'_>,
    e: &smelt::Error,
    rule: (&str, &str),
    problem: (&str, &str),
) -> PyErr {
    let text = e.render(rule, problem);
    let (file, source) = match e.source() {
        Some(smelt::Source::Problem) => problem,
        _ => rule,
    };
    let first = e.diagnostics().first();
    let message = match (first, e) {
        (Some(d), _) => d.message.clone(),
        (None, smelt::Error::Other(m)) => m.clone(),
        (None, smelt::Error::Internal(m)) => format!("internal error in smelt: {m}"),
        (None, _) => text.clone(),
    };
    let at = first.map(|d| smelt::internals::span::line_col(source, d.span.start));
    let args = (
        message,
        text.clone(),
        first.map(|_| file.to_string()),
        at.map(|a| a.0),
        at.map(|a| a.1),
        first.map(|d| d.code.name()),
        first.and_then(|d| d.hint.clone()),
    );
    let class = py
        .import("smelt._errors")
        .and_then(|m| m.getattr("SmeltError"));
    match class.and_then(|c| c.call1(args)) {
        Ok(v) => PyErr::from_value(v),
        Err(err) => err,
    }
}

/// A rule and a problem as the functions that run them receive them: each text with the
/// name its diagnostics show, and the directory of the problem's data files.
struct Files<'a> {
    rule: (&'a str, &'a str),
    problem: (&'a str, &'a str),
    dir: &'a str,
}

impl Files<'_> {
    /// The files as a shard's part records them.
    fn sources(&self, set: &BTreeMap<String, f64>) -> smelt::experiment::shard::Sources {
        smelt::experiment::shard::Sources {
            origin: smelt::experiment::shard::Origin {
                rule_name: self.rule.0.to_string(),
                problem_name: self.problem.0.to_string(),
                dir: self.dir.to_string(),
            },
            rule: self.rule.1.to_string(),
            problem: self.problem.1.to_string(),
            set: set.clone(),
        }
    }

    /// `smelt.SmeltError` for an error in either file.
    fn fail(&self, py: Python<'_>, e: &smelt::Error) -> PyErr {
        smelt_error(py, e, self.rule, self.problem)
    }

    /// The rule checked and the problem read.
    fn load(&self, py: Python<'_>) -> PyResult<(smelt::Optimizer, smelt::problem::Problem)> {
        let opt = smelt::check(self.rule.1).map_err(|e| self.fail(py, &e))?;
        let prob = smelt::problem::load_in(self.problem.1, std::path::Path::new(self.dir))
            .map_err(|d| self.fail(py, &smelt::Error::Problem(d)))?;
        Ok((opt, prob))
    }
}

/// A usage error of the library (options said with the CLI's names) as a ValueError.
fn usage(e: &smelt::Error) -> PyErr {
    PyValueError::new_err(e.to_string().replace('`', ""))
}

/// What `derive` derived: an SME, or a Hessian-aware SME.
enum Derived {
    Sme(Box<smelt::Sme>),
    Hessian(Box<smelt::analysis::hasme::HaSme>),
}

/// A derivation's result, exported on demand in each of the library's formats.
#[pyclass(frozen, module = "smelt._native")]
struct Derivation {
    derived: Derived,
}

#[pymethods]
impl Derivation {
    /// The SymPy script `smelt derive --format sympy [--dim d]` prints.
    #[pyo3(signature = (dim=None))]
    fn sympy(&self, py: Python<'_>, dim: Option<usize>) -> PyResult<String> {
        match &self.derived {
            Derived::Sme(s) => Ok(smelt::emit::sympy::render(s, dim)),
            Derived::Hessian(h) => {
                exportable(py, h)?;
                Ok(smelt::emit::hasme::sympy(h, dim))
            }
        }
    }

    /// The JSON document `--format json` prints.
    fn json(&self) -> String {
        match &self.derived {
            Derived::Sme(s) => smelt::emit::json::to_json(s),
            Derived::Hessian(h) => smelt::emit::json::hasme_to_json(h),
        }
    }

    /// The LaTeX `--format latex [--standalone]` prints.
    #[pyo3(signature = (standalone=false))]
    fn latex(&self, py: Python<'_>, standalone: bool) -> PyResult<String> {
        match &self.derived {
            Derived::Sme(s) => Ok(smelt::emit::latex::render(s, standalone)),
            Derived::Hessian(h) => {
                exportable(py, h)?;
                Ok(smelt::emit::hasme::latex(h, standalone))
            }
        }
    }

    /// The NumPy module `--format numpy` prints.
    fn numpy(&self, py: Python<'_>) -> PyResult<String> {
        match &self.derived {
            Derived::Sme(s) => Ok(smelt::emit::numpy::render(s)),
            Derived::Hessian(h) => {
                exportable(py, h)?;
                Ok(smelt::emit::hasme::numpy(h))
            }
        }
    }

    /// The text `smelt derive [--dim d]` prints.
    #[pyo3(signature = (dim=None))]
    fn text(&self, dim: Option<usize>) -> String {
        match (&self.derived, dim) {
            (Derived::Sme(s), None) => smelt::emit::text::render(s),
            (Derived::Sme(s), Some(d)) => smelt::emit::text::render_components(s, d),
            (Derived::Hessian(h), None) => smelt::emit::hasme::text(h),
            (Derived::Hessian(h), Some(d)) => smelt::emit::hasme::components(h, d),
        }
    }
}

/// The Hessian-aware exports exist only where the series match the closed forms (as in
/// the CLI).
fn exportable(py: Python<'_>, h: &smelt::analysis::hasme::HaSme) -> PyResult<()> {
    if h.mismatches.is_empty() {
        return Ok(());
    }
    let e = smelt::Error::Other(format!(
        "the series derived do not match the Hessian-aware closed forms, so there are none to export: {}",
        h.mismatches.join("; ")
    ));
    Err(smelt_error(py, &e, ("", ""), ("", "")))
}

/// Runs `work` with the GIL released on a thread of its own while this (the caller's)
/// thread polls for signals, which Python handles on its main thread only; `work` gets
/// a stop flag that turns true on Ctrl-C (or any signal whose handler raises), and the
/// handler's exception (KeyboardInterrupt) is raised here.
fn interruptible<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&(dyn Fn() -> bool + Sync)) -> T + Send,
) -> PyResult<T> {
    let stopped = AtomicBool::new(false);
    let stop = || stopped.load(Ordering::Relaxed);
    let mut signal: Option<PyErr> = None;
    let result = py.allow_threads(|| {
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| work(&stop));
            while !worker.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(20));
                if let Err(e) = Python::with_gil(|py| py.check_signals()) {
                    signal = Some(e);
                    stopped.store(true, Ordering::Relaxed);
                }
            }
            worker.join()
        })
    });
    if let Some(e) = signal {
        return Err(e);
    }
    result.map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("smelt: the run panicked"))
}

/// Derives the SME of `source` (the rule's text; `name` is shown in diagnostics) to
/// `order` (`None`: 1, or the Hessian-aware default), or the Hessian-aware SME. `check`:
/// the seed of the independent check, which then runs; an SME it contradicts is an
/// error, as in the CLI. `max_terms`: the limit on one intermediate expression. The GIL
/// is released while it derives.
#[pyfunction]
#[pyo3(signature = (source, name, order=None, hessian_aware=false, check=None, max_terms=None))]
fn derive(
    py: Python<'_>,
    source: &str,
    name: &str,
    order: Option<u32>,
    hessian_aware: bool,
    check: Option<u64>,
    max_terms: Option<usize>,
) -> PyResult<Derivation> {
    let order = order.unwrap_or(if hessian_aware {
        smelt::analysis::hasme::DEFAULT_ORDER
    } else {
        1
    });
    if order == 0 || order > smelt::MAX_ORDER {
        return Err(PyValueError::new_err(format!(
            "order must be from 1 to {}, not {order}",
            smelt::MAX_ORDER
        )));
    }
    let result = py.allow_threads(|| {
        if hessian_aware {
            smelt::check(source)
                .and_then(|opt| smelt::analysis::hasme::hessian_aware(&opt, order))
                .map(|h| Derived::Hessian(Box::new(h)))
        } else {
            let options = smelt::Options {
                order,
                max_terms: max_terms.unwrap_or(smelt::MAX_TERMS),
                progress: None,
            };
            smelt::lower(source).and_then(|opt| {
                let mut sme = smelt::derive_checked(&opt, &options)?;
                if let Some(seed) = check {
                    let c = smelt::certify(&opt, &sme, seed);
                    if c.failed() {
                        return Err(smelt::Error::Other(format!(
                            "the independent check contradicts the derived SME: {}",
                            c.summary()
                        )));
                    }
                    sme.independent = Some(c);
                }
                Ok(Derived::Sme(Box::new(sme)))
            })
        }
    });
    match result {
        Ok(derived) => Ok(Derivation { derived }),
        Err(e) => Err(smelt_error(py, &e, (name, source), ("", ""))),
    }
}

/// The canonical form of a rule that passes every check (`smelt check`).
#[pyfunction]
fn check(py: Python<'_>, source: &str, name: &str) -> PyResult<String> {
    smelt::check(source)
        .map(|opt| smelt::canonical(&opt))
        .map_err(|e| smelt_error(py, &e, (name, source), ("", "")))
}

/// The batch-size scaling rule (`smelt scaling [--noise-scale n]`) as a dict: `text` (what
/// the CLI prints), and either `hypers`, `derived` (lists of (name, exponent of κ) with
/// exponents as "p/q" strings), `steps` and `free`, or `blocker` (why no rule exists).
#[pyfunction]
#[pyo3(signature = (source, name, noise_scale=None))]
fn scaling<'py>(
    py: Python<'py>,
    source: &str,
    name: &str,
    noise_scale: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    use smelt::analysis::scaling::{NoiseScale, Outcome};
    let fail = |e: &smelt::Error| smelt_error(py, e, (name, source), ("", ""));
    let opt = smelt::check(source).map_err(|e| fail(&e))?;
    let sme = smelt::derive_checked(&opt, &smelt::Options::order(1)).map_err(|e| fail(&e))?;
    let batch = match noise_scale {
        Some(n) => NoiseScale::Named(n),
        None => NoiseScale::Covariance,
    };
    let outcome = smelt::analysis::scaling::rule(&opt, &sme, &batch)
        .map_err(|msg| fail(&smelt::Error::Other(msg.to_string())))?;
    let out = PyDict::new(py);
    out.set_item(
        "text",
        smelt::emit::scaling::render(&opt, &sme, &batch, &outcome),
    )?;
    match &outcome {
        Outcome::Rule(r) => {
            out.set_item("hypers", exponents(&r.hypers))?;
            out.set_item("derived", exponents(&r.derived))?;
            out.set_item("steps", r.steps.to_string())?;
            out.set_item("free", r.free.clone())?;
        }
        Outcome::Impossible(why) => {
            out.set_item("blocker", smelt::emit::scaling::blocker(&sme, why))?;
        }
    }
    Ok(out)
}

/// (name, exponent) pairs with the exponents as text ("1/2").
fn exponents<E: std::fmt::Display>(list: &[(String, E)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(h, e)| (h.clone(), e.to_string()))
        .collect()
}

/// `smelt verify --format json`: the same document, for the same arguments and seed the
/// same numbers (only `run.seconds`, the wall-clock time, differs). `problem_dir`: where
/// the problem's data files are. The GIL is released while it runs; Ctrl-C stops it
/// between blocks of paths and raises KeyboardInterrupt here.
#[pyfunction]
#[pyo3(signature = (
    rule, rule_name, problem, problem_name, problem_dir, orders, etas=None,
    time_steps=None, paths=65536, seed=1, substeps=8, budget=None, exact=false,
    antithetic=false, threads=None, set=None, shard=None
))]
#[allow(
    clippy::too_many_arguments,
    reason = "the keyword arguments of smelt.verify"
)]
fn verify(
    py: Python<'_>,
    rule: &str,
    rule_name: &str,
    problem: &str,
    problem_name: &str,
    problem_dir: &str,
    orders: Vec<u32>,
    etas: Option<Vec<f64>>,
    time_steps: Option<Vec<f64>>,
    paths: usize,
    seed: u64,
    substeps: usize,
    budget: Option<u64>,
    exact: bool,
    antithetic: bool,
    threads: Option<usize>,
    set: Option<BTreeMap<String, f64>>,
    shard: Option<(usize, usize)>,
) -> PyResult<String> {
    let files = Files {
        rule: (rule_name, rule),
        problem: (problem_name, problem),
        dir: problem_dir,
    };
    let shard = shard.map(|(k, n)| shard_of(k, n)).transpose()?;
    if etas.is_some() && time_steps.is_some() {
        return Err(PyValueError::new_err("give etas or time_steps, not both"));
    }
    let config = run::Config {
        grid: match (etas, time_steps) {
            (Some(e), _) => run::Grid::Etas(e),
            (None, Some(t)) => run::Grid::Times(t),
            (None, None) => run::Grid::Default,
        },
        paths,
        seed,
        substeps,
        budget,
        exact,
        antithetic,
        threads,
    };
    config.check(&orders).map_err(|e| usage(&e))?;
    let (opt, prob) = files.load(py)?;
    let set = set.unwrap_or_default();
    if shard.is_some() {
        config.check_shard().map_err(|e| usage(&e))?;
    }
    let mut prepared = run::prepare(opt, prob, &orders, &set).map_err(|e| files.fail(py, &e))?;
    if let Some(shard) = shard {
        let sources = files.sources(&set);
        let part = interruptible(py, |stop| {
            run::execute_shard(&mut prepared, &config, shard, &sources, &|_| {}, stop)
        })?;
        let part = part.map_err(|e| files.fail(py, &e))?;
        return part_json(serde_json::to_string(&part));
    }
    let result = interruptible(py, |stop| {
        run::execute_until(&mut prepared, &config, &|_| {}, stop)
    })?;
    let report = result.map_err(|e| files.fail(py, &e))?;
    Ok(report.to_json(&prepared).to_string())
}

/// The drift and the diffusion (row-major) of the order-`order` SME at `state` (the
/// layout's slots) on the problem, at small parameter `eta`, from the program `verify`
/// simulates: the Rust evaluator, to check the NumPy export against.
#[pyfunction]
#[pyo3(signature = (rule, rule_name, problem, problem_name, problem_dir, order, eta, state, set=None))]
#[allow(
    clippy::too_many_arguments,
    reason = "the files, the order and the point"
)]
fn coefficients(
    py: Python<'_>,
    rule: &str,
    rule_name: &str,
    problem: &str,
    problem_name: &str,
    problem_dir: &str,
    order: u32,
    eta: f64,
    state: Vec<f64>,
    set: Option<BTreeMap<String, f64>>,
) -> PyResult<(Vec<f64>, Vec<f64>)> {
    let files = Files {
        rule: (rule_name, rule),
        problem: (problem_name, problem),
        dir: problem_dir,
    };
    let (opt, prob) = files.load(py)?;
    let set = set.unwrap_or_default();
    let mut prepared = run::prepare(opt, prob, &[order], &set).map_err(|e| files.fail(py, &e))?;
    run::coefficients(&mut prepared, 0, eta, &state).map_err(|e| files.fail(py, &e))
}

/// `smelt escape --format json`: the same document, for the same arguments and seed the
/// same numbers (only `run.seconds` and the per-run `seconds` differ). The GIL is
/// released while it runs; Ctrl-C stops it between blocks of paths and raises
/// KeyboardInterrupt here.
#[pyfunction]
#[pyo3(signature = (
    rule, rule_name, problem, problem_name, problem_dir, region, models="opt,sme1,sme2",
    etas=None, batch=None, paths=10000, seed=1, from=None, refine=true, saddle=None,
    horizon=None, substeps=8, em=false, threads=None, set=None, shard=None
))]
#[allow(
    clippy::too_many_arguments,
    reason = "the keyword arguments of smelt.escape"
)]
fn escape(
    py: Python<'_>,
    rule: &str,
    rule_name: &str,
    problem: &str,
    problem_name: &str,
    problem_dir: &str,
    region: &str,
    models: &str,
    etas: Option<Vec<f64>>,
    batch: Option<Vec<f64>>,
    paths: usize,
    seed: u64,
    from: Option<String>,
    refine: bool,
    saddle: Option<String>,
    horizon: Option<f64>,
    substeps: usize,
    em: bool,
    threads: Option<usize>,
    set: Option<BTreeMap<String, f64>>,
    shard: Option<(usize, usize)>,
) -> PyResult<String> {
    use smelt::experiment::escape as esc;
    let files = Files {
        rule: (rule_name, rule),
        problem: (problem_name, problem),
        dir: problem_dir,
    };
    let shard = shard.map(|(k, n)| shard_of(k, n)).transpose()?;
    let (opt, prob) = files.load(py)?;
    let request = esc::Request {
        region: region.to_string(),
        models: models.to_string(),
        etas,
        batch: batch.unwrap_or_default(),
        paths,
        seed,
        from,
        refine,
        saddle,
        horizon,
        substeps,
        em,
    };
    let (opts, etas, batches) = request.options(&opt.name, &prob).map_err(|e| usage(&e))?;
    let set = set.unwrap_or_default();
    let mut setup = esc::prepare(opt, prob, &set, opts).map_err(|e| files.fail(py, &e))?;
    let pool = rayon_pool(threads)?;
    if let Some(shard) = shard {
        let sources = files.sources(&set);
        let part = interruptible(py, |stop| {
            esc::run_shard(
                &mut setup,
                &request,
                &etas,
                &batches,
                shard,
                &sources,
                &pool,
                &mut |_| {},
                stop,
            )
        })?;
        let part = part.map_err(|e| files.fail(py, &e))?;
        return part_json(serde_json::to_string(&part));
    }
    let started = std::time::Instant::now();
    let results = interruptible(py, |stop| {
        esc::run_until(
            &mut setup,
            &etas,
            &batches,
            paths,
            seed,
            &pool,
            &mut |_| {},
            stop,
        )
    })?;
    let results = results.map_err(|e| files.fail(py, &e))?;
    let pr = esc::predictions(&mut setup);
    let fits = esc::scaling(&setup, &pr, &results);
    let run = esc::RunInfo {
        region,
        seed,
        substeps,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(esc::json(&setup, &run, &results, &fits, &pr).to_string())
}

/// Shard `k` of `n`, or a ValueError.
fn shard_of(k: usize, n: usize) -> PyResult<smelt::experiment::shard::Shard> {
    smelt::experiment::shard::Shard::new(k, n).ok_or_else(|| {
        PyValueError::new_err(format!("shard=({k}, {n}): give (k, n) with 1 <= k <= n"))
    })
}

/// A shard's part as JSON text (`serde_json::to_string` of it).
fn part_json(text: Result<String, serde_json::Error>) -> PyResult<String> {
    text.map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("smelt: the part as JSON: {e}"))
    })
}

/// Merges the parts of a sharded `verify` or `escape` run (their JSON texts; `names`
/// name them in messages), as `smelt merge` does: the schema of the result
/// (`smelt-verify` or `smelt-escape`) and its JSON document, the single run's but for the
/// wall-clock `seconds` (the parts' summed).
#[pyfunction]
fn merge(py: Python<'_>, parts: Vec<String>, names: Vec<String>) -> PyResult<(String, String)> {
    use smelt::experiment::{escape as esc, shard};
    let fail = |e: smelt::Error| PyValueError::new_err(e.to_string().replace('`', ""));
    if parts.len() != names.len() {
        return Err(PyValueError::new_err("as many names as parts"));
    }
    let files: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some((first, text)) = files.first().zip(parts.first()) else {
        return Err(PyValueError::new_err("no parts to merge"));
    };
    let schema = shard::schema(first, text).map_err(fail)?;
    py.allow_threads(|| {
        if schema == run::PART_SCHEMA {
            let parts: Vec<run::Part> = files
                .iter()
                .zip(&parts)
                .map(|(f, t)| shard::parse(f, t))
                .collect::<Result<_, _>>()
                .map_err(fail)?;
            let (prepared, report) = run::merge(&files, &parts).map_err(fail)?;
            Ok(("smelt-verify".into(), report.to_json(&prepared).to_string()))
        } else {
            let parts: Vec<esc::Part> = files
                .iter()
                .zip(&parts)
                .map(|(f, t)| shard::parse(f, t))
                .collect::<Result<_, _>>()
                .map_err(fail)?;
            let m = esc::merge(&files, &parts).map_err(fail)?;
            let info = esc::RunInfo {
                region: &m.request.region,
                seed: m.request.seed,
                substeps: m.request.substeps,
                seconds: m.seconds,
            };
            let doc = esc::json(&m.setup, &info, &m.results, &m.fits, &m.predictions);
            Ok(("smelt-escape".into(), doc.to_string()))
        }
    })
}

/// A pool of `threads` worker threads (None: all cores).
fn rayon_pool(threads: Option<usize>) -> PyResult<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start worker threads: {e}"))
        })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Derivation>()?;
    m.add_function(wrap_pyfunction!(derive, m)?)?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(scaling, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(escape, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    m.add_function(wrap_pyfunction!(coefficients, m)?)?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
