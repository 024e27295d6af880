//! `smelt escape`: first exit times of an optimizer and of its SDEs from a region around
//! a stationary point, side by side, and the scaling laws they follow.
//!
//! [`prepare`] binds a rule to a problem (as [`crate::experiment::verify::prepare`] does), finds the
//! stationary point the run starts from (Newton from the given point) and classifies it
//! by its Hessian, and checks the models asked for. [`plan`] compiles every model for
//! one step size and batch size: the optimizer's step; each SME by Euler–Maruyama with
//! substeps, or, on a linear-Gaussian problem, by its exact Gaussian transition over one
//! step, so that the comparison on the optimizer's grid carries no discretization error
//! at all; the HA-SME from its closed forms. [`crate::sim::escape::run`] simulates them;
//! [`summarize`] turns exit steps into Kaplan–Meier summaries, log-rank p-values against
//! the optimizer; [`run`] does all three for every (η, B). [`scaling`] fits the laws of
//! Hu, Li, Li & Liu (by [`crate::report::wls`]) and [`predictions`] states the
//! closed-form predictions of the order-1 SME beside them; [`crate::report::escape`]
//! words the report.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops over matrix rows and columns read as the formulas do"
)]

use crate::experiment::verify::{self, Error, Prepared};
use crate::numeric::exact::{eigh, M, V};
use crate::numeric::graph::{Graph, Id};
use crate::numeric::linear_gaussian::{self, LinearSde, Quadratic};
use crate::numeric::tape::Tape;
use crate::problem::Model;
use crate::report::escape::{round_sig, Header, Point};
pub use crate::report::escape::{EtaResult, Line, ModelResult, Predictions, ScalingFit};
use crate::report::wls;
use crate::sim::compile::{self, Numbers};
use crate::sim::escape::{self as sim, EscapeModel, EscapePlan, ExitTimes, Sampler};
use crate::sim::ha::HaProgram;
use std::collections::BTreeMap;

/// A model to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSpec {
    Optimizer,
    Sme(u32),
    Ha,
}

/// Reads `--models`: `opt` (or `optimizer`, or the rule's name, e.g. `sgd`), `sme1` …
/// `sme3`, `ha`.
pub fn parse_models(list: &str, rule_name: &str) -> Result<Vec<ModelSpec>, crate::Error> {
    parse_models_words(list, rule_name).map_err(crate::Error::Other)
}

/// [`parse_models`]'s failures in words.
fn parse_models_words(list: &str, rule_name: &str) -> Result<Vec<ModelSpec>, String> {
    let mut out = Vec::new();
    for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let lw = w.to_ascii_lowercase();
        let m = if lw == "opt" || lw == "optimizer" || lw == rule_name.to_ascii_lowercase() {
            ModelSpec::Optimizer
        } else if lw == "ha" || lw == "ha-sme" || lw == "hasme" {
            ModelSpec::Ha
        } else if let Some(p) = lw
            .strip_prefix("sme-")
            .or_else(|| lw.strip_prefix("sme"))
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| (1..=3).contains(p))
        {
            ModelSpec::Sme(p)
        } else {
            return Err(format!(
                "`--models`: `{w}` is not a model; give `opt` (or `{}`), `sme1`, `sme2`, `sme3` or `ha`",
                rule_name.to_ascii_lowercase()
            ));
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err("`--models`: give at least one model, e.g. `--models opt,sme1,ha`".into());
    }
    Ok(out)
}

/// The region a path starts in.
#[derive(Debug, Clone)]
pub enum RegionSpec {
    /// `|x − x₀| < r` around the start point.
    Ball(f64),
    /// `f(x) < c`.
    Level(f64),
    /// The half-space on the start's side of the hyperplane through a saddle (Newton
    /// from the given point) orthogonal to its unstable direction.
    Past(Vec<f64>),
    /// `expr < value` (or `>`), over the rule's variables.
    Expr {
        source: String,
        expr: crate::syntax::Expr,
        greater: bool,
        value: f64,
    },
}

/// Reads `--region`: `ball R`, `level C`, `past POINT` (a number or `[a, b, …]`), or
/// `EXPR < C` / `EXPR > C` over the rule's variables (`x[1] < 0`, `sum(x^2) < 4`).
pub fn parse_region(spec: &str) -> Result<RegionSpec, crate::Error> {
    parse_region_words(spec).map_err(crate::Error::Other)
}

/// [`parse_region`]'s failures in words.
fn parse_region_words(spec: &str) -> Result<RegionSpec, String> {
    let s = spec.trim();
    let word = |w: &str| {
        s.strip_prefix(w)
            .filter(|r| r.starts_with(|c: char| c.is_whitespace() || c == '('))
            .map(|r| {
                r.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .trim()
            })
    };
    let number = |what: &str, r: &str| -> Result<f64, String> {
        crate::syntax::parse_expr(r)
            .ok()
            .and_then(|e| const_value(&e))
            .ok_or_else(|| format!("`--region {s}`: {what} must be a number, not `{r}`"))
    };
    if let Some(r) = word("ball") {
        let v = number("the radius", r)?;
        if !(v > 0.0 && v.is_finite()) {
            return Err(format!("`--region {s}`: the radius must be positive"));
        }
        return Ok(RegionSpec::Ball(v));
    }
    if let Some(r) = word("level") {
        return Ok(RegionSpec::Level(number("the level", r)?));
    }
    if let Some(r) = word("past") {
        return parse_point(r)
            .map(RegionSpec::Past)
            .map_err(|e| format!("`--region {s}`: {e}"));
    }
    let Some(at) = s.rfind(['<', '>']) else {
        return Err(format!(
            "`--region {s}`: write `ball R`, `level C`, `past POINT`, or a condition such as `x[1] < 0`"
        ));
    };
    let greater = s[at..].starts_with('>');
    let (lhs, rhs) = (&s[..at], s[at + 1..].trim_start_matches('=').trim());
    let value = number("the right-hand side", rhs)?;
    let expr = crate::syntax::parse_expr(lhs.trim()).map_err(|d| {
        let d = d.message;
        format!("`--region {s}`: the condition's left side does not read: {d}")
    })?;
    Ok(RegionSpec::Expr {
        source: s.to_string(),
        expr,
        greater,
        value,
    })
}

/// A point: one number (every coordinate) or `[a, b, …]`.
pub fn parse_point(s: &str) -> Result<Vec<f64>, crate::Error> {
    parse_point_words(s).map_err(crate::Error::Other)
}

/// [`parse_point`]'s failures in words.
fn parse_point_words(s: &str) -> Result<Vec<f64>, String> {
    let e = crate::syntax::parse_expr(s.trim()).map_err(|_| format!("`{s}` is not a point"))?;
    if let crate::syntax::ExprKind::List(items) = &e.kind {
        items
            .iter()
            .map(|i| const_value(i).ok_or_else(|| format!("`{s}`: coordinates must be numbers")))
            .collect()
    } else {
        const_value(&e)
            .map(|v| vec![v])
            .ok_or_else(|| format!("`{s}` is not a point: give a number or `[a, b, …]`"))
    }
}

fn const_value(e: &crate::syntax::Expr) -> Option<f64> {
    let mut g = Graph::new();
    let scope = crate::problem::expr::Scope::new();
    match crate::problem::expr::build(&mut g, e, &scope).ok()? {
        crate::problem::expr::PV::S(id) => g.value(id),
        _ => None,
    }
}

/// A stationary point of f and its Hessian's spectrum.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stationary {
    pub x: Vec<f64>,
    pub f: f64,
    pub grad_norm: f64,
    /// Ascending.
    #[serde(serialize_with = "crate::numeric::exact::serialize_vector")]
    pub eigenvalues: V,
    /// `vectors[[i, k]]`: component i of the eigenvector of eigenvalue k.
    #[serde(serialize_with = "crate::numeric::exact::serialize_rows")]
    pub vectors: M,
    /// The number of negative eigenvalues (0: a minimum).
    pub index: usize,
}

impl Stationary {
    pub fn kind(&self) -> String {
        match self.index {
            0 => "minimum".into(),
            i if i == self.x.len() => "maximum".into(),
            1 => "saddle (one unstable direction)".into(),
            i => format!("saddle ({i} unstable directions)"),
        }
    }
}

/// Newton's method on ∇f from `x0` (or just the point, if `refine` is off).
pub fn stationary(model: &mut Model, x0: &[f64], refine: bool) -> Result<Stationary, crate::Error> {
    stationary_words(model, x0, refine).map_err(crate::Error::Other)
}

/// [`stationary`]'s failures in words.
fn stationary_words(model: &mut Model, x0: &[f64], refine: bool) -> Result<Stationary, String> {
    let d = model.dim;
    if d > crate::problem::MAX_DENSE_DIM {
        return Err(format!(
            "escape classifies the stationary point by its Hessian ∇²f, d² = {} nodes: at most d = {}, this problem has d = {d}",
            d * d,
            crate::problem::MAX_DENSE_DIM
        ));
    }
    let grad = model.df(1);
    let hess = model.df(2);
    let mut x = x0.to_vec();
    let at = |g: &Graph, x: &[f64]| {
        let gr = g.eval(&grad, x);
        let h = g.eval(&hess, x);
        let hm = crate::numeric::exact::from_row_major(d, &h);
        (gr, hm)
    };
    if refine {
        let mut converged = false;
        for _ in 0..100 {
            let (g, h) = at(&model.graph, &x);
            let (lam, v) = eigh(&h);
            let top = lam.iter().fold(0.0f64, |a, l| a.max(l.abs()));
            if lam.iter().any(|l| l.abs() <= 1e-10 * top.max(1e-300)) {
                return Err(format!(
                    "the Hessian of f is singular near {x:?}: no isolated stationary point to start from"
                ));
            }
            let mut step = vec![0.0; d];
            for k in 0..d {
                let c: f64 = (0..d).map(|j| v[[j, k]] * g[j]).sum::<f64>() / lam[k];
                for i in 0..d {
                    step[i] -= v[[i, k]] * c;
                }
            }
            let size = step.iter().map(|s| s * s).sum::<f64>().sqrt();
            let scale = 1.0 + x.iter().map(|s| s * s).sum::<f64>().sqrt();
            for i in 0..d {
                x[i] += step[i];
            }
            if !x.iter().all(|v| v.is_finite()) {
                break;
            }
            if size <= 1e-13 * scale {
                converged = true;
                break;
            }
        }
        if !converged {
            return Err(format!(
                "Newton's method from {x0:?} did not reach a stationary point of f; start from a point nearer one, or pass --no-refine to start at the point as given"
            ));
        }
    }
    let (g, h) = at(&model.graph, &x);
    // Ascending, the vectors with them.
    let (lam, v) = eigh(&h);
    let f = model.graph.eval(&[model.f], &x)[0];
    Ok(Stationary {
        index: lam.iter().filter(|&&l| l < 0.0).count(),
        grad_norm: g.iter().map(|a| a * a).sum::<f64>().sqrt(),
        x,
        f,
        eigenvalues: lam,
        vectors: v,
    })
}

/// Options of an escape run.
#[derive(Debug, Clone)]
pub struct Options {
    pub models: Vec<ModelSpec>,
    pub region: RegionSpec,
    /// The start point of the parameter (None: the problem's `start`).
    pub from: Option<Vec<f64>>,
    /// Newton from the start to the stationary point near it.
    pub refine: bool,
    /// A saddle for the Eyring–Kramers prediction (the `past` region names one too).
    pub saddle: Option<Vec<f64>>,
    /// The censoring horizon in time (None: the problem's horizon).
    pub horizon: Option<f64>,
    pub substeps: usize,
    /// Simulate every SDE by Euler–Maruyama, even where its exact transition is known.
    pub em: bool,
}

/// An escape run as asked (the options of `smelt escape` and `smelt.escape`), before
/// it is checked and parsed by [`Request::options`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// `ball R`, `level C`, `past POINT`, or `EXPR < C` / `EXPR > C`.
    pub region: String,
    /// `opt,sme1,sme2,…`.
    pub models: String,
    /// Values of the small parameter (None: the problem's `etas`, else 0.1).
    pub etas: Option<Vec<f64>>,
    /// Batch sizes (empty: 1).
    pub batch: Vec<f64>,
    pub paths: usize,
    pub seed: u64,
    pub from: Option<String>,
    pub refine: bool,
    pub saddle: Option<String>,
    pub horizon: Option<f64>,
    pub substeps: usize,
    pub em: bool,
}

impl Request {
    /// The run's options, step sizes and batch sizes, or what is wrong with the request
    /// ([`Error::Other`], a usage error said with the option's name).
    pub fn options(
        &self,
        rule_name: &str,
        problem: &crate::problem::Problem,
    ) -> Result<(Options, Vec<f64>, Vec<f64>), Error> {
        let usage = |msg: &str| Error::Other(msg.to_string());
        let models = parse_models(&self.models, rule_name)?;
        let region = parse_region(&self.region)?;
        let point = |flag: &str, s: &Option<String>| match s {
            Some(s) => parse_point(s)
                .map(Some)
                .map_err(|e| usage(&format!("`{flag}`: {e}"))),
            None => Ok(None),
        };
        let from = point("--from", &self.from)?;
        let saddle = point("--saddle", &self.saddle)?;
        if self.paths == 0 || self.paths > 1 << 26 {
            return Err(usage("`--paths` must be between 1 and 2^26"));
        }
        if self.substeps == 0 || self.substeps > 1024 {
            return Err(usage("`--substeps` must be between 1 and 1024"));
        }
        let etas = self
            .etas
            .clone()
            .or_else(|| problem.etas.clone())
            .unwrap_or_else(|| vec![0.1]);
        if etas.is_empty() || etas.iter().any(|e| !(*e > 0.0 && e.is_finite())) {
            return Err(usage(
                "`--etas`: give positive step sizes, e.g. `--etas 0.2,0.1,0.05`",
            ));
        }
        let batches = if self.batch.is_empty() {
            vec![1.0]
        } else {
            self.batch.clone()
        };
        if batches.iter().any(|b| !(*b >= 1.0 && b.is_finite())) {
            return Err(usage("`--batch`: batch sizes are at least 1"));
        }
        let opts = Options {
            models,
            region,
            from,
            refine: self.refine,
            saddle,
            horizon: self.horizon,
            substeps: self.substeps,
            em: self.em,
        };
        Ok((opts, etas, batches))
    }
}

/// A rule and problem made ready for escape runs.
pub struct Setup {
    pub prepared: Prepared,
    pub models: Vec<ModelSpec>,
    pub point: Stationary,
    pub saddle: Option<Stationary>,
    pub region: RegionSpec,
    pub horizon: f64,
    pub substeps: usize,
    pub em: bool,
    /// Whether the rule is SGD's form (its SMEs those of x ← x − η(∇f + ξ)).
    pub sgd_form: bool,
    /// The start state (layout slots).
    pub start: Vec<f64>,
    /// Where the parameter sits in the layout.
    pub param: (usize, usize),
}

/// Binds the rule to the problem, finds the start and the saddle, checks the models.
pub fn prepare(
    rule: crate::ir::Optimizer,
    problem: crate::problem::Problem,
    overrides: &BTreeMap<String, f64>,
    opts: Options,
) -> Result<Setup, Error> {
    let mut orders: Vec<u32> = opts
        .models
        .iter()
        .filter_map(|m| match m {
            ModelSpec::Sme(p) => Some(*p),
            _ => None,
        })
        .collect();
    if orders.is_empty() {
        orders.push(1);
    }
    // Whether the rule is x ← x − η(∇f + ξ) to all orders on quadratics: the HA-SME's
    // closed forms, checked term by term.
    let ha = crate::analysis::hasme::hessian_aware(&rule, 4);
    let sgd_form = matches!(&ha, Ok(h) if h.mismatches.is_empty());
    if opts.models.contains(&ModelSpec::Ha) {
        let h = ha?;
        if !h.mismatches.is_empty() {
            return Err(Error::Other(format!(
                "the HA-SME models rules of the form x ← x − η(∇f + ξ); the SME of {} does not match its closed forms ({}); drop `ha` from --models",
                rule.name,
                h.mismatches.join("; ")
            )));
        }
    }
    let mut prepared = verify::bind(rule, problem, &orders, overrides)?;
    let d = prepared.problem.dim;
    let pname = prepared.rule.param.name.clone();
    let param = prepared
        .layout
        .find(&pname)
        .ok_or_else(|| Error::Other("the layout has no parameter".into()))?;
    let x0 = match &opts.from {
        Some(p) if p.len() == 1 => vec![p[0]; d],
        Some(p) if p.len() == d => p.clone(),
        Some(p) => {
            return Err(Error::Other(format!(
                "`--from`: the problem has d = {d}, the point gives {} numbers",
                p.len()
            )))
        }
        None => prepared.start[param.0..param.0 + param.1].to_vec(),
    };
    let model = &mut prepared.problem.model;
    let point = stationary(model, &x0, opts.refine)?;
    let saddle_at = match (&opts.region, &opts.saddle) {
        (_, Some(s)) => Some(s.clone()),
        (RegionSpec::Past(s), None) => Some(s.clone()),
        _ => None,
    };
    let saddle = match saddle_at {
        Some(s) => {
            let s = if s.len() == 1 { vec![s[0]; d] } else { s };
            if s.len() != d {
                return Err(Error::Other(format!(
                    "the saddle point has {} coordinates, the problem d = {d}",
                    s.len()
                )));
            }
            let st = stationary(model, &s, true)?;
            if st.index != 1 {
                return Err(Error::Other(format!(
                    "the point {:?} (Newton from {s:?}) is a {}, not a saddle with one unstable direction",
                    st.x,
                    st.kind()
                )));
            }
            Some(st)
        }
        None => None,
    };
    let mut start = prepared.start.clone();
    start[param.0..param.0 + param.1].copy_from_slice(&point.x);
    let horizon = opts.horizon.unwrap_or(prepared.problem.horizon);
    if !(horizon > 0.0 && horizon.is_finite()) {
        return Err(Error::Other("the horizon must be positive".into()));
    }
    if opts.models.contains(&ModelSpec::Ha) && prepared.layout.n != d {
        return Err(Error::Other(
            "the HA-SME is a model of the parameter alone; this rule has other states".into(),
        ));
    }
    Ok(Setup {
        prepared,
        models: opts.models,
        point,
        saddle,
        region: opts.region,
        horizon,
        substeps: opts.substeps.max(1),
        em: opts.em,
        sgd_form,
        start,
        param,
    })
}

impl Setup {
    /// What the report states of the run before its results.
    pub fn header(&self) -> Header {
        let point = |p: &Stationary| Point {
            x: p.x.clone(),
            kind: p.kind(),
            f: p.f,
            grad_norm: p.grad_norm,
            eigenvalues: p.eigenvalues.to_vec(),
        };
        let region = match &self.region {
            RegionSpec::Ball(r) => format!("the ball |x − x₀| < {r}"),
            RegionSpec::Level(c) => format!("the sublevel set f(x) < {c}"),
            RegionSpec::Past(_) => {
                "the half-space before the saddle's hyperplane (orthogonal to its unstable direction)"
                    .into()
            }
            RegionSpec::Expr { source, .. } => format!("{{{source}}}"),
        };
        Header {
            optimizer: self.prepared.rule.name.clone(),
            problem: self.prepared.problem.name.clone(),
            dim: self.prepared.problem.dim,
            region,
            start: point(&self.point),
            saddle: self.saddle.as_ref().map(point),
            horizon: self.horizon,
        }
    }

    /// The model's display name.
    pub fn name(&self, m: ModelSpec) -> String {
        match m {
            ModelSpec::Optimizer => self.prepared.rule.name.clone(),
            ModelSpec::Sme(p) => format!("SME-{p}"),
            ModelSpec::Ha => "HA-SME".into(),
        }
    }
}

/// One (η, B) compiled, with what could not be.
pub struct EtaPlan {
    pub plan: EscapePlan,
    /// Models left out at this step size, and why.
    pub skipped: Vec<(String, String)>,
    /// How each SDE model is simulated.
    pub schemes: Vec<(String, String)>,
    /// `τ · max |λ(∇²f)|` at the start: the SMEs' expansions need it small.
    pub stiffness: f64,
}

/// Compiles every model for step size `eta` and batch size `batch`.
pub fn plan(s: &mut Setup, eta: f64, batch: f64) -> Result<EtaPlan, Error> {
    let labels: Vec<String> = s.models.iter().map(|&m| s.name(m)).collect();
    let p = &mut s.prepared;
    let mut model = p.problem.model.with_batch(batch)?;
    let nums = Numbers {
        small: eta,
        hypers: p.hypers.clone(),
    };
    // A diagnostic on the rule's statement keeps its span; other failures say where.
    let step =
        compile::compile_step(&p.rule, &mut model, &p.layout, &nums).map_err(|e| match e {
            Error::Other(m) => Error::Other(format!("compiling the update rule: {m}")),
            e => e,
        })?;
    let linear = if s.em {
        None
    } else {
        verify::quadratic(&mut model).ok()
    };
    let n = p.layout.n;
    let d = p.problem.dim;
    let mut models = Vec::new();
    let mut skipped = Vec::new();
    let mut schemes = Vec::new();
    // The time per step, from the order-1 (or first) SME.
    let tau = compile::time_per_step(
        &p.smes[0],
        &compile::symbol_values(&p.smes[0], d, &nums, &p.rule.small.name)?,
    );
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(Error::Other(format!(
            "the time per step at η = {eta} is {tau}"
        )));
    }
    const EXACT: &str = "exact Gaussian transition per step (linear SDE)";
    for (&m, label) in s.models.iter().zip(labels) {
        // The sampler and how it simulates, or why the model cannot run at this η.
        let made: Result<(Sampler, String), String> = match m {
            ModelSpec::Optimizer => Ok((Sampler::Optimizer, "the update rule".into())),
            ModelSpec::Sme(order) => {
                let i = p.orders.iter().position(|&o| o == order).expect("derived");
                let sme = &p.smes[i];
                let syms = compile::symbol_values(sme, d, &nums, &p.rule.small.name)
                    .map_err(|e| Error::Other(format!("the order-{order} SME: {e}")))?;
                let exact = linear.as_ref().and_then(|q| {
                    let symbols: BTreeMap<String, f64> = (0..syms.len())
                        .filter_map(|i| sme.symbols.try_name(i).map(|nm| (nm.to_string(), syms[i])))
                        .collect();
                    linear_gaussian::linear_sde(sme, q, &symbols, &p.layout.values(&s.start)).ok()
                });
                if let Some(lin) = exact {
                    gauss_tape(&lin).map(|t| (Sampler::Exact(t), EXACT.into()))
                } else {
                    let sde =
                        compile::compile_sde(sme, &mut model, &p.layout, &syms).map_err(|e| {
                            Error::Other(format!("compiling the order-{order} SME: {e}"))
                        })?;
                    match verify::check_psd(&sde, &s.start, &p.layout, order, eta) {
                        Err(Error::Other(why)) => Err(why),
                        Err(_) => Err("its diffusion is not positive semidefinite".into()),
                        Ok(()) => Ok((
                            Sampler::Em(sde),
                            format!("Euler–Maruyama, {} substeps per step", s.substeps),
                        )),
                    }
                }
            }
            ModelSpec::Ha if (tau - eta).abs() > 1e-12 * eta => Err(format!(
                "the HA-SME takes one step as time η; this rule's step is {tau}"
            )),
            ModelSpec::Ha if s.point.eigenvalues.iter().any(|&l| eta * l >= 1.0) => {
                // The coefficients read log(1 − ηλ): no path can take a step from here.
                let l = s.point.eigenvalues.iter().fold(f64::MIN, |a, &b| a.max(b));
                Err(format!(
                    "the HA-SME does not exist at the start point: η·λ = {:.3} ≥ 1 for the eigenvalue λ = {} of ∇²f there (log(I − ηH) is not real; take η < {})",
                    eta * l,
                    round_sig(l),
                    round_sig(1.0 / l)
                ))
            }
            ModelSpec::Ha => {
                let prog = HaProgram::compile(&mut model, eta);
                match &linear {
                    Some(q) => ha_linear(&prog, q, eta)
                        .and_then(|l| gauss_tape(&l))
                        .map(|t| (Sampler::Exact(t), EXACT.into())),
                    None => Ok((
                        Sampler::Ha(prog),
                        format!(
                            "Euler–Maruyama, {} substeps per step, coefficients from ∇²f and Σ at each state",
                            s.substeps
                        ),
                    )),
                }
            }
        };
        match made {
            Ok((sampler, how)) => {
                if !matches!(sampler, Sampler::Optimizer) {
                    schemes.push((label.clone(), how));
                }
                models.push(EscapeModel {
                    name: label,
                    sampler,
                });
            }
            Err(why) => skipped.push((label, why)),
        }
    }
    let region = region_tape(s, &mut model)?;
    let p = &s.prepared;
    let steps = (s.horizon / tau).round().max(1.0);
    if steps > 4e9 {
        return Err(Error::Other(format!(
            "η = {eta} needs {steps} steps to reach the horizon {}; shorten it (--horizon)",
            s.horizon
        )));
    }
    let top = s
        .point
        .eigenvalues
        .iter()
        .chain(s.saddle.iter().flat_map(|x| &x.eigenvalues))
        .fold(0.0f64, |a, l| a.max(l.abs()));
    let clock = p.layout.clock;
    let mut start = s.start.clone();
    let mut counter0 = 0;
    if clock {
        let t0 = start[n - 1];
        counter0 = (t0 / tau).round().max(0.0) as u64;
        start[n - 1] = counter0 as f64 * tau;
    }
    Ok(EtaPlan {
        plan: EscapePlan {
            eta,
            tau,
            max_steps: steps as usize,
            step,
            models,
            region,
            start,
            n,
            clock,
            counter0,
            substeps: s.substeps,
        },
        skipped,
        schemes,
        stiffness: tau * top,
    })
}

/// The HA-SME on a quadratic: `dX = −A (X − x*) dt + Q^{1/2} dW` with
/// `A = −log(I − ηH)/η` and the closed-form Q, as a linear SDE of time η per step.
fn ha_linear(prog: &HaProgram, q: &Quadratic, eta: f64) -> Result<LinearSde, String> {
    let d = q.h.nrows();
    let (lam, v) = eigh(&q.h);
    if let Some(l) = lam.iter().find(|&&l| 1.0 - eta * l <= 0.0) {
        return Err(format!(
            "ηλ = {:.3} ≥ 1 for an eigenvalue λ = {l} of ∇²f: log(I − ηH) is not real, the HA-SME does not exist at this step size",
            eta * l
        ));
    }
    let a = crate::numeric::exact::func(&lam, &v, |l| -(1.0 - eta * l).ln() / eta);
    let mut w = crate::sim::ha::Work::new(d);
    let (mut b, mut l) = (vec![0.0; d], vec![0.0; d * d]);
    let flat = |m: &M| m.iter().copied().collect::<Vec<f64>>();
    prog.coefficients(
        &vec![0.0; d],
        &flat(&q.h),
        &flat(&q.sigma),
        &mut w,
        &mut b,
        &mut l,
    )
    .ok_or("the HA-SME's coefficients are not defined at the start")?;
    let l = crate::numeric::exact::from_row_major(d, &l);
    let dm = l.dot(&l.t());
    let f: M = -&a;
    let g = a.dot(&q.x_star);
    Ok(LinearSde {
        f,
        g,
        d: dm,
        tau: eta,
    })
}

/// The exact one-step transition of a linear SDE as a tape: inputs the state (`0..n`)
/// and `n` standard normals (`n..2n`); outputs `Φ z + φ + L N` with `L Lᵀ = Q`.
fn gauss_tape(sde: &LinearSde) -> Result<Tape, String> {
    let n = sde.f.nrows();
    let t = linear_gaussian::transition(sde);
    let q: Vec<f64> = t.q.iter().copied().collect();
    if !q.iter().chain(t.phi.iter()).all(|x| x.is_finite()) {
        return Err("the one-step transition is not finite at this step size".into());
    }
    let mut l = vec![0.0; n * n];
    crate::sim::ha::cholesky_psd(&q, &mut l, n);
    let mut g = Graph::new();
    let mut outs = Vec::new();
    for i in 0..n {
        let mut terms: Vec<Id> = Vec::new();
        terms.push(g.constant(t.shift[i]));
        for j in 0..n {
            if t.phi[[i, j]] != 0.0 {
                let c = g.constant(t.phi[[i, j]]);
                let z = g.input(j as u32);
                terms.push(g.mul(c, z));
            }
            if l[i * n + j] != 0.0 {
                let c = g.constant(l[i * n + j]);
                let z = g.input((n + j) as u32);
                terms.push(g.mul(c, z));
            }
        }
        outs.push(g.sum(terms));
    }
    Ok(Tape::compile(&g, &outs, 2 * n))
}

/// The region as a tape over the layout's slots: inside while its value is `< 0`.
fn region_tape(s: &Setup, model: &mut Model) -> Result<Tape, Error> {
    let p = &s.prepared;
    let n = p.layout.n;
    let (off, len) = s.param;
    let mut g = Graph::new();
    let x: Vec<Id> = (off..off + len).map(|i| g.input(i as u32)).collect();
    let out = match &s.region {
        RegionSpec::Ball(r) => {
            let sq: Vec<Id> = x
                .iter()
                .zip(&s.point.x)
                .map(|(&xi, &ci)| {
                    let c = g.constant(ci);
                    let dlt = g.sub(xi, c);
                    g.mul(dlt, dlt)
                })
                .collect();
            let total = g.sum(sq);
            let r2 = g.constant(r * r);
            g.sub(total, r2)
        }
        RegionSpec::Level(c) => {
            let f = g.import(&model.graph, &[model.f], &x)[0];
            let c = g.constant(*c);
            g.sub(f, c)
        }
        RegionSpec::Past(_) => {
            let sd = s.saddle.as_ref().expect("a past region has its saddle");
            // The unstable direction, pointing away from the start.
            let v: Vec<f64> = (0..len).map(|i| sd.vectors[[i, 0]]).collect();
            let side: f64 = (0..len).map(|i| (s.point.x[i] - sd.x[i]) * v[i]).sum();
            if side.abs() <= 1e-12 {
                return Err(Error::Other(
                    "the start lies on the saddle's hyperplane; start elsewhere or use a ball"
                        .into(),
                ));
            }
            let sign = -side.signum();
            let terms: Vec<Id> = (0..len)
                .map(|i| {
                    let c = g.constant(sd.x[i]);
                    let dlt = g.sub(x[i], c);
                    let w = g.constant(sign * v[i]);
                    g.mul(w, dlt)
                })
                .collect();
            g.sum(terms)
        }
        RegionSpec::Expr {
            expr,
            greater,
            value,
            source,
        } => {
            let scope = compile::state_scope(&p.problem, &p.layout, &mut g);
            let e = match crate::problem::expr::build(&mut g, expr, &scope) {
                Ok(crate::problem::expr::PV::S(id)) => id,
                Ok(crate::problem::expr::PV::V(v)) if v.len() == 1 => v[0],
                Ok(other) => {
                    return Err(Error::Other(format!(
                        "`--region {source}`: the condition compares {}, not a number",
                        other.kind()
                    )))
                }
                Err(d) => {
                    return Err(Error::Other(format!(
                        "`--region {source}`: {}{}",
                        d.message,
                        d.hint.map(|h| format!(" (hint: {h})")).unwrap_or_default()
                    )))
                }
            };
            let c = g.constant(*value);
            if *greater {
                g.sub(c, e)
            } else {
                g.sub(e, c)
            }
        }
    };
    let inside = g.eval(&[out], &s.start)[0];
    if inside.partial_cmp(&0.0) != Some(std::cmp::Ordering::Less) {
        return Err(Error::Other(format!(
            "the start {:?} is not inside the region (its defining value there is {inside:.4}, inside needs < 0)",
            s.point.x
        )));
    }
    Ok(Tape::compile(&g, &[out], n))
}

/// Where [`run`] is: told before each (η, B) is compiled and after it is simulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    Starting { eta: f64, batch: f64 },
    Done { eta: f64, batch: f64 },
}

/// Every (η, B) of the run, batch sizes outer and step sizes inner: each compiled
/// ([`plan`]), simulated over `paths` paths from `seed` on `pool`'s threads
/// ([`crate::sim::escape::run`]) and summarized ([`summarize`]; its `seconds` the
/// simulation's wall time). Stops at the first (η, B) that cannot be compiled.
pub fn run(
    s: &mut Setup,
    etas: &[f64],
    batches: &[f64],
    paths: usize,
    seed: u64,
    pool: &rayon::ThreadPool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<EtaResult>, Error> {
    run_until(s, etas, batches, paths, seed, pool, progress, &|| false)
}

/// [`run`] that stops between blocks of paths once `stop` says so (Ctrl-C in the Python
/// package), with [`Error::Other`] saying it was interrupted.
#[allow(
    clippy::too_many_arguments,
    reason = "run's arguments and the stop flag"
)]
pub fn run_until(
    s: &mut Setup,
    etas: &[f64],
    batches: &[f64],
    paths: usize,
    seed: u64,
    pool: &rayon::ThreadPool,
    progress: &mut dyn FnMut(Progress),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<EtaResult>, Error> {
    let mut results = Vec::with_capacity(etas.len() * batches.len());
    for &batch in batches {
        for &eta in etas {
            progress(Progress::Starting { eta, batch });
            let ep = plan(s, eta, batch)?;
            let t0 = std::time::Instant::now();
            let (times, lane_steps) = pool.install(|| sim::run_until(&ep.plan, paths, seed, stop));
            if stop() {
                return Err(Error::Other("interrupted".into()));
            }
            results.push(summarize(
                &ep,
                batch,
                &times,
                lane_steps,
                t0.elapsed().as_secs_f64(),
            ));
            progress(Progress::Done { eta, batch });
        }
    }
    Ok(results)
}

/// Kaplan–Meier summaries and log-rank tests of one run.
pub fn summarize(
    ep: &EtaPlan,
    batch: f64,
    times: &[ExitTimes],
    lane_steps: u64,
    seconds: f64,
) -> EtaResult {
    let plan = &ep.plan;
    let horizon = plan.max_steps as u32;
    let opt = plan
        .models
        .iter()
        .position(|m| matches!(m.sampler, Sampler::Optimizer));
    let mut models = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let sv = sim::survival(&t.exits, t.censored, horizon);
        let p_value = match opt {
            Some(o) if o != i => Some(sim::log_rank(
                &times[o].exits,
                times[o].censored,
                &t.exits,
                t.censored,
            )),
            _ => None,
        };
        models.push(ModelResult {
            model: t.model.clone(),
            mean_time: sv.mean * plan.tau,
            mean_time_se: sv.mean_se * plan.tau,
            mean_steps: sv.mean,
            median_steps: sv.median,
            exited: sv.exited,
            censored: t.censored,
            diverged: t.diverged,
            undefined: t.undefined,
            first_divergence: t.first_divergence,
            p_value,
            survival_curve: thin(&sv.curve, plan.tau),
            survival: sv,
        });
    }
    EtaResult {
        eta: plan.eta,
        batch,
        tau: plan.tau,
        max_steps: plan.max_steps,
        stiffness: ep.stiffness,
        models,
        skipped: ep.skipped.clone(),
        schemes: ep.schemes.clone(),
        seconds,
        path_steps: lane_steps as f64,
    }
}

/// The survival curve at the steps where it first falls below each level 1 − j/200, in
/// time units.
fn thin(curve: &[(u32, f64)], tau: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut level = 1.0;
    for (i, &(k, sv)) in curve.iter().enumerate() {
        if sv < level || i + 1 == curve.len() {
            out.push((f64::from(k) * tau, sv));
            level = (sv * 200.0).ceil() / 200.0 - 1.0 / 200.0;
            level = level.min(sv);
        }
    }
    out
}

/// What the order-1 SME predicts in closed form.
pub fn predictions(s: &mut Setup) -> Predictions {
    let mut pr = Predictions {
        barrier: None,
        noise: None,
        kramers_prefactor: None,
        unstable_rate: None,
        unstable_noise: None,
        radius: None,
        notes: Vec::new(),
    };
    if !s.sgd_form {
        pr.notes.push(format!(
            "the closed forms (Eyring–Kramers, the linearised saddle) are those of SGD's SMEs (x ← x − η(∇f + ξ), time η per step); {} is not of that form",
            s.prepared.rule.name
        ));
        return pr;
    }
    let d = s.prepared.problem.dim;
    let model = &mut s.prepared.problem.model;
    let sig = model.sigma();
    let at_point = model.graph.eval(&sig, &s.point.x);
    if s.point.index == 0 {
        let Some(sd) = &s.saddle else {
            pr.notes.push(
                "no saddle given (--saddle, or a `past` region): no Eyring–Kramers prediction"
                    .into(),
            );
            return pr;
        };
        let at_saddle = model.graph.eval(&sig, &sd.x);
        let s2 = at_point[0];
        let iso = |m: &[f64]| {
            (0..d).all(|i| {
                (0..d).all(|j| {
                    let want = if i == j { s2 } else { 0.0 };
                    (m[i * d + j] - want).abs() <= 1e-9 * s2.abs()
                })
            })
        };
        if !(model.constant_noise() && iso(&at_point) && iso(&at_saddle) && s2 > 0.0) {
            pr.notes.push(
                "Σ is not a constant multiple of I: the SME-1 is not reversible and has no Eyring–Kramers closed form (the quasi-potential is needed)".into(),
            );
            return pr;
        }
        let det = |l: &V| l.iter().product::<f64>();
        let lam_s = -sd.eigenvalues[0];
        pr.barrier = Some(sd.f - s.point.f);
        pr.noise = Some(s2);
        if matches!(s.region, RegionSpec::Past(_)) {
            pr.kramers_prefactor = Some(
                std::f64::consts::PI / lam_s
                    * (det(&sd.eigenvalues).abs() / det(&s.point.eigenvalues)).sqrt(),
            );
        }
    } else if s.point.index == 1 {
        let lam = -s.point.eigenvalues[0];
        let v: Vec<f64> = (0..d).map(|i| s.point.vectors[[i, 0]]).collect();
        let vsv: f64 = (0..d)
            .map(|i| {
                (0..d)
                    .map(|j| v[i] * at_point[i * d + j] * v[j])
                    .sum::<f64>()
            })
            .sum();
        pr.unstable_rate = Some(lam);
        pr.unstable_noise = Some(vsv);
        if let (RegionSpec::Ball(r), true) = (&s.region, s.sgd_form) {
            pr.radius = Some(*r);
        }
    } else if s.point.index > 1 {
        pr.notes
            .push("the start has several unstable directions: the closed form covers one".into());
    }
    pr
}

/// Fits the scaling laws: against η at each batch size, and against B at each η.
pub fn scaling(s: &Setup, pr: &Predictions, results: &[EtaResult]) -> Vec<ScalingFit> {
    let minimum = s.point.index == 0;
    let mut out = Vec::new();
    let mut batches: Vec<f64> = results.iter().map(|r| r.batch).collect();
    batches.sort_by(f64::total_cmp);
    batches.dedup();
    let mut etas: Vec<f64> = results.iter().map(|r| r.eta).collect();
    etas.sort_by(f64::total_cmp);
    etas.dedup();
    let quantity = if minimum { "log E τ" } else { "E τ" };
    // One family: the rows that share `at`, x read off each row.
    let mut family = |rows: Vec<&EtaResult>,
                      x: &dyn Fn(&EtaResult) -> f64,
                      against: &str,
                      at: f64,
                      predicted: Vec<(f64, String)>| {
        if rows.len() < 3 {
            return;
        }
        for &m in &s.models {
            let name = s.name(m);
            let mut pts = Vec::new();
            let mut left = 0;
            for r in &rows {
                let Some(mr) = r.models.iter().find(|q| q.model == name) else {
                    continue;
                };
                if mr.censored > 0 || mr.exited == 0 {
                    left += 1;
                } else if minimum {
                    pts.push((x(r), mr.mean_time.ln(), mr.mean_time_se / mr.mean_time));
                } else {
                    pts.push((x(r), mr.mean_time, mr.mean_time_se));
                }
            }
            let Some(line) = wls(&pts) else { continue };
            out.push(ScalingFit {
                model: name,
                quantity: quantity.into(),
                against: against.into(),
                at,
                line,
                left_out: left,
                predicted: predicted.clone(),
            });
        }
    };
    let sme1_saddle = || {
        pr.unstable_rate.map(|l| {
            (
                1.0 / (2.0 * l),
                format!("SME-1 linearised at the saddle: 1/(2λ), λ = {l:.4}"),
            )
        })
    };
    for &b in &batches {
        let rows: Vec<&EtaResult> = results.iter().filter(|r| r.batch == b).collect();
        if minimum {
            let pred = pr.barrier.zip(pr.noise).map(|(df, s2)| {
                (
                    2.0 * df * b / s2,
                    format!("SME-1, Eyring–Kramers: 2ΔF·B/s² = 2·{df:.4}·{b}/{s2:.4}"),
                )
            });
            family(rows, &|r| 1.0 / r.eta, "1/η", b, pred.into_iter().collect());
        } else {
            let pred = sme1_saddle().into_iter().collect();
            family(rows, &|r| (1.0 / r.eta).ln(), "log(1/η)", b, pred);
        }
    }
    if batches.len() >= 3 {
        for &eta in &etas {
            let rows: Vec<&EtaResult> = results.iter().filter(|r| r.eta == eta).collect();
            let tau = rows.first().map_or(eta, |r| r.tau);
            if minimum {
                let pred = pr.barrier.zip(pr.noise).map(|(df, s2)| {
                    (
                        2.0 * df / (eta * s2),
                        format!("SME-1, Eyring–Kramers: 2ΔF/(η s²) = 2·{df:.4}/({eta}·{s2:.4})"),
                    )
                });
                family(rows, &|r| r.batch, "B", eta, pred.into_iter().collect());
            } else {
                let mut pred: Vec<(f64, String)> = sme1_saddle().into_iter().collect();
                if let Some(l) = pr.unstable_rate {
                    pred.push((
                        tau / (2.0 * (1.0 + tau * l).ln()),
                        format!(
                            "HA-SME linearised, SGD's own linear dynamics: τ/(2 log(1 + τλ)) with τλ = {:.4}",
                            tau * l
                        ),
                    ));
                }
                family(rows, &|r| r.batch.ln(), "log B", eta, pred);
            }
        }
    }
    out
}

/// How a run was made, as its JSON report states it.
#[derive(Debug, Clone, Copy)]
pub struct RunInfo<'a> {
    /// The region as given (`ball 1`, `past 0`, …).
    pub region: &'a str,
    pub seed: u64,
    pub substeps: usize,
    /// The whole run's wall time.
    pub seconds: f64,
}

/// The paths per model and step size of a run (those of its first model at its first
/// step size: every one has as many).
pub fn paths(results: &[EtaResult]) -> usize {
    results
        .first()
        .and_then(|r| r.models.first())
        .map_or(0, |m| m.exited + m.censored + m.diverged)
}

/// The JSON report of a run (schema `smelt-escape`, version 1).
pub fn json(
    s: &Setup,
    run: &RunInfo,
    results: &[EtaResult],
    fits: &[ScalingFit],
    pr: &Predictions,
) -> serde_json::Value {
    serde_json::json!({
        "schema": "smelt-escape",
        "version": 1,
        "optimizer": s.prepared.rule.name,
        "problem": s.prepared.problem.name,
        "dim": s.prepared.problem.dim,
        "region": run.region,
        "start": s.point,
        "saddle": s.saddle,
        "horizon": s.horizon,
        "run": {
            "paths": paths(results),
            "seed": run.seed,
            "substeps": run.substeps,
            "generator": super::GENERATOR,
            "seconds": run.seconds,
        },
        "results": results,
        "scaling": fits,
        "predictions": pr,
    })
}

/// The plot of a run: the survival curves at the first step size, and the first family
/// of fits against η with the SME-1's closed form beside them.
pub fn plot(
    s: &Setup,
    results: &[EtaResult],
    fits: &[ScalingFit],
    pr: &Predictions,
) -> crate::report::plot::escape::EscapePlot {
    use crate::report::plot::escape::{Curve, EscapePlot, ScalePoint, ScaleSeries, Scaling};
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

/// One (η, B) of a shard: the exit times of the shard's blocks, per model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EtaPart {
    pub eta: f64,
    pub batch: f64,
    /// The simulation's wall time.
    pub seconds: f64,
    pub lane_steps: u64,
    pub times: Vec<ExitTimes>,
}

/// A shard's result (`smelt escape --shard K/N`, schema `smelt-escape-part`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Part {
    pub schema: String,
    pub version: u32,
    pub shard: super::shard::Shard,
    pub run: super::shard::Identity,
    pub origin: super::shard::Origin,
    /// The whole run's blocks ([`crate::sim::escape::quotas`]).
    pub blocks: usize,
    /// This shard's wall time.
    pub seconds: f64,
    pub results: Vec<EtaPart>,
}

/// The schema name of an escape run's part.
pub const PART_SCHEMA: &str = "smelt-escape-part";

impl super::shard::Sharded for Part {
    fn shard(&self) -> super::shard::Shard {
        self.shard
    }
    fn run(&self) -> &super::shard::Identity {
        &self.run
    }
}

/// Shard `shard` of the escape run `request` asks: every (η, B), batch sizes outer, over
/// the shard's blocks (the whole run's quotas and streams).
#[allow(
    clippy::too_many_arguments,
    reason = "run_until's arguments and the shard"
)]
pub fn run_shard(
    s: &mut Setup,
    request: &Request,
    etas: &[f64],
    batches: &[f64],
    shard: super::shard::Shard,
    sources: &super::shard::Sources,
    pool: &rayon::ThreadPool,
    progress: &mut dyn FnMut(Progress),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Part, Error> {
    let started = std::time::Instant::now();
    let blocks = sim::quotas(request.paths.max(1)).len();
    let range = shard.range(blocks);
    let mut results = Vec::new();
    for &batch in batches {
        for &eta in etas {
            progress(Progress::Starting { eta, batch });
            let ep = plan(s, eta, batch)?;
            let t0 = std::time::Instant::now();
            let (times, lane_steps) = pool.install(|| {
                sim::run_blocks(&ep.plan, request.paths, request.seed, range.clone(), stop)
            });
            if stop() {
                return Err(Error::Other("interrupted".into()));
            }
            results.push(EtaPart {
                eta,
                batch,
                seconds: t0.elapsed().as_secs_f64(),
                lane_steps,
                times,
            });
            progress(Progress::Done { eta, batch });
        }
    }
    let mut options = serde_json::to_value(request)
        .map_err(|e| Error::Internal(format!("the request as JSON: {e}")))?;
    options["generator"] = super::GENERATOR.into();
    Ok(Part {
        schema: PART_SCHEMA.into(),
        version: 1,
        shard,
        run: super::shard::Identity {
            rule: sources.rule.clone(),
            problem: sources.problem.clone(),
            set: sources.set.clone(),
            options,
        },
        origin: sources.origin.clone(),
        blocks,
        seconds: started.elapsed().as_secs_f64(),
        results,
    })
}

/// A merged escape run: what the single run's report is made of.
pub struct Merged {
    pub setup: Setup,
    pub request: Request,
    pub results: Vec<EtaResult>,
    pub fits: Vec<ScalingFit>,
    pub predictions: Predictions,
    /// The sum of the parts' wall times.
    pub seconds: f64,
}

/// Merges the parts of a sharded escape run (`files[i]` names `parts[i]` in messages):
/// checks that they make up one run ([`super::shard::check_parts`]), reads its rule and problem
/// again, concatenates each model's exit times in shard order (the whole run's block
/// order) and summarizes: the single run's report bit for bit, but for the wall times
/// (`seconds`, each the sum of the parts').
pub fn merge(files: &[&str], parts: &[Part]) -> Result<Merged, Error> {
    let order = super::shard::check_parts(files, parts)?;
    let first = &parts[order[0]];
    let changed = |i: usize| {
        Error::Other(format!(
            "`{}` does not match the other parts' step sizes or models: the part was changed or written by another version of smelt",
            files[i]
        ))
    };
    let mut options = first.run.options.clone();
    if let Some(o) = options.as_object_mut() {
        o.remove("generator");
    }
    let request: Request = serde_json::from_value(options).map_err(|_| changed(order[0]))?;
    let (rule, problem) = super::shard::load(&first.origin, &first.run)?;
    let (opts, etas, batches) = request.options(&rule.name, &problem)?;
    let mut setup = prepare(rule, problem, &first.run.set, opts)?;
    let mut results = Vec::new();
    let mut at = 0;
    for &batch in &batches {
        for &eta in &etas {
            let ep = plan(&mut setup, eta, batch)?;
            let mut times: Option<Vec<ExitTimes>> = None;
            let (mut lane_steps, mut seconds) = (0u64, 0.0);
            for &i in &order {
                let r = parts[i].results.get(at).ok_or_else(|| changed(i))?;
                if r.eta.to_bits() != eta.to_bits() || r.batch.to_bits() != batch.to_bits() {
                    return Err(changed(i));
                }
                match &mut times {
                    None => times = Some(r.times.clone()),
                    Some(t) => {
                        if t.len() != r.times.len() {
                            return Err(changed(i));
                        }
                        for (a, b) in t.iter_mut().zip(&r.times) {
                            a.extend(b);
                        }
                    }
                }
                lane_steps += r.lane_steps;
                seconds += r.seconds;
            }
            let times = times.unwrap_or_default();
            let horizon = ep.plan.max_steps as u64;
            let paths = request.paths.max(1) as u64;
            let fits = |t: &ExitTimes| {
                t.exits.iter().all(|&e| e >= 1 && u64::from(e) <= horizon)
                    && t.exits.len() as u64 + (t.censored + t.diverged) as u64 == paths
            };
            if times.len() != ep.plan.models.len() || !times.iter().all(fits) {
                return Err(Error::Other(format!(
                    "the parts do not hold {} paths of each of the run's {} models at η = {eta}, B = {batch}: a part was changed or written by another version of smelt",
                    paths,
                    ep.plan.models.len()
                )));
            }
            results.push(summarize(&ep, batch, &times, lane_steps, seconds));
            at += 1;
        }
    }
    let predictions = predictions(&mut setup);
    let fits = scaling(&setup, &predictions, &results);
    Ok(Merged {
        setup,
        request,
        results,
        fits,
        predictions,
        seconds: parts.iter().map(|p| p.seconds).sum(),
    })
}
