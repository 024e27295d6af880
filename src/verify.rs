//! `smelt verify`: an optimizer, its derived SMEs and a problem, simulated side by side.
//!
//! [`prepare`] binds a rule to a problem (hyperparameter values, start values, test
//! functions; every mismatch a diagnostic pointing into the problem file) and derives
//! the SME of each requested order once. [`plan`] compiles everything for one value of
//! the small parameter; [`crate::sim::weak::run`] simulates it; [`summarize`] fits the
//! weak errors against the step size and words a verdict per order and test function.

use crate::diagnostic::{Boxed as _, Code, Diagnostic};
use crate::ir::Optimizer;
use crate::problem::Problem;
use crate::report::{self, Fit, Point};
use crate::sim::compile::{self, Layout, Numbers};
use crate::sim::weak::{self, EtaStats, Plan};
use crate::sme::Sme;
use std::collections::BTreeMap;

/// A rule bound to a problem, with its SMEs derived.
pub struct Prepared {
    pub rule: Optimizer,
    pub problem: Problem,
    pub smes: Vec<Sme>,
    pub orders: Vec<u32>,
    pub hypers: BTreeMap<String, f64>,
    pub layout: Layout,
    pub start: Vec<f64>,
}

/// Why a verification cannot run.
#[derive(Debug)]
pub enum Error {
    /// A problem-file diagnostic.
    Problem(Box<Diagnostic>),
    /// The derivation failed (diagnostics in the optimizer file).
    Derive(crate::Error),
    /// Anything else, in words.
    Other(String),
}

impl From<Box<Diagnostic>> for Error {
    fn from(d: Box<Diagnostic>) -> Error {
        Error::Problem(d)
    }
}

/// Binds `rule` to `problem` and derives the SME of each order. `overrides` set
/// hyperparameters beyond (or instead of) the problem's `set` lines.
pub fn prepare(
    rule: Optimizer,
    problem: Problem,
    orders: &[u32],
    overrides: &BTreeMap<String, f64>,
) -> Result<Prepared, Error> {
    // Hyperparameters.
    let mut hypers = BTreeMap::new();
    for (name, v, span) in &problem.settings {
        if !rule.hypers.iter().any(|h| &h.name == name) {
            let known: Vec<&str> = rule.hypers.iter().map(|h| h.name.as_str()).collect();
            return Err(Box::new(Diagnostic::new(
                Code::Undefined,
                *span,
                format!("`{name}` is not a hyperparameter of {}", rule.name),
            ))
            .label("set here")
            .hint(if known.is_empty() {
                format!("{} has no hyperparameters; remove this line", rule.name)
            } else {
                format!("its hyperparameters are {}", known.join(", "))
            })
            .into());
        }
        hypers.insert(name.clone(), *v);
    }
    for (k, v) in overrides {
        if !rule.hypers.iter().any(|h| &h.name == k) {
            return Err(Error::Other(format!(
                "`--set {k}=…`: `{k}` is not a hyperparameter of {}",
                rule.name
            )));
        }
        hypers.insert(k.clone(), *v);
    }
    if let Some(h) = rule.hypers.iter().find(|h| !hypers.contains_key(&h.name)) {
        return Err(Box::new(Diagnostic::new(
            Code::Declaration,
            problem.header,
            format!(
                "no value for the hyperparameter `{}` of {}",
                h.name, rule.name
            ),
        ))
        .label("this problem")
        .hint(format!(
            "add `set {} = ...` to the problem, or pass `--set {}=...`",
            h.name, h.name
        ))
        .into());
    }
    if rule.param.name != problem.var {
        // Observables and starts name the rule's variables; the objective's own variable
        // name is free, but the parameter must be what the problem starts.
    }
    // Derive.
    let mut smes = Vec::new();
    for &p in orders {
        let sme =
            crate::derive::derive(&rule, &crate::Options { order: p }).map_err(Error::Derive)?;
        smes.push(sme);
    }
    let clock = smes.iter().any(|s| s.clock.is_some());
    let layout = Layout::new(&rule, problem.dim, clock);
    // Start values, by name.
    let mut start = vec![0.0; layout.n];
    for s in &problem.starts {
        let name = if s.name == problem.var {
            rule.param.name.as_str()
        } else {
            s.name.as_str()
        };
        let Some((off, len)) = layout.find(name).filter(|_| name != "t" || !clock) else {
            let vars: Vec<&str> = layout
                .vars
                .iter()
                .map(|v| v.0.as_str())
                .filter(|v| *v != "t" || !clock)
                .collect();
            return Err(Box::new(Diagnostic::new(
                Code::Undefined,
                s.span,
                format!("`{}` is not a variable of {}", s.name, rule.name),
            ))
            .label("started here")
            .hint(format!("its variables are {}", vars.join(", ")))
            .into());
        };
        if s.value.len() == 1 {
            start[off..off + len].fill(s.value[0]);
        } else if s.value.len() == len {
            start[off..off + len].copy_from_slice(&s.value);
        } else {
            return Err(Box::new(Diagnostic::new(
                Code::Shape,
                s.span,
                format!(
                    "`{}` is a scalar, the start gives {} numbers",
                    s.name,
                    s.value.len()
                ),
            ))
            .label("one number expected")
            .into());
        }
    }
    // The observables must compile against this layout.
    compile::compile_observables(&problem, &layout)?;
    // The rule's noise needs the problem's noise.
    if rule.noises.is_empty() {
        return Err(Error::Other(format!(
            "{} draws no noise: there is no SME to check beyond its ODE",
            rule.name
        )));
    }
    Ok(Prepared {
        rule,
        problem,
        smes,
        orders: orders.to_vec(),
        hypers,
        layout,
        start,
    })
}

/// Compiles everything for one value of the small parameter.
pub fn plan(p: &mut Prepared, eta: f64, substeps: usize) -> Result<Plan, Error> {
    let nums = Numbers {
        small: eta,
        hypers: p.hypers.clone(),
    };
    let step = compile::compile_step(&p.rule, &mut p.problem.model, &p.layout, &nums)
        .map_err(|e| Error::Other(format!("compiling the update rule: {e}")))?;
    let mut sdes = Vec::new();
    let mut tau = f64::NAN;
    for (sme, &order) in p.smes.iter().zip(&p.orders) {
        let syms = compile::symbol_values(sme, p.problem.dim, &nums, &p.rule.small.name)
            .map_err(|e| Error::Other(format!("the order-{order} SME: {e}")))?;
        let sde = compile::compile_sde(sme, &mut p.problem.model, &p.layout, &syms)
            .map_err(|e| Error::Other(format!("compiling the order-{order} SME: {e}")))?;
        tau = sde.tau;
        sdes.push((order, sde));
    }
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(Error::Other(format!(
            "the time per step at {} = {eta} is {tau}",
            p.rule.small.name
        )));
    }
    let steps = (p.problem.horizon / tau).round().max(1.0) as usize;
    if steps > 100_000_000 {
        return Err(Error::Other(format!(
            "{} = {eta} needs {steps} steps to reach T = {}; choose larger step sizes",
            p.rule.small.name, p.problem.horizon
        )));
    }
    let sdes = sdes
        .into_iter()
        .map(|(o, sde)| {
            let c = weak::coupling(&step, &sde, &p.start, tau);
            (o, sde, c)
        })
        .collect();
    let (observables, _, _) = compile::compile_observables(&p.problem, &p.layout)?;
    Ok(Plan {
        eta,
        steps,
        tau,
        layout: p.layout.clone(),
        step,
        sdes,
        observables,
        start: p.start.clone(),
        substeps: substeps.max(4).div_ceil(4) * 4,
    })
}

/// One point of one order and test function.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ErrorPoint {
    pub eta: f64,
    pub steps: usize,
    /// `E φ(z_N) − E φ(Z_{Nτ})`.
    pub error: f64,
    pub std_err: f64,
    /// The extrapolated SDE's estimated bias and its standard error.
    pub discretization: f64,
    pub discretization_se: f64,
    /// Standard error without coupling over the one with it.
    pub coupling_gain: f64,
    /// Whether |error| > 2 standard errors.
    pub resolved: bool,
    /// Set when the run was not finite: the first step and the number of paths.
    pub diverged: Option<(usize, usize)>,
}

/// The result for one order and one test function.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Series {
    pub order: u32,
    pub observable: String,
    pub points: Vec<ErrorPoint>,
    pub slope: Option<f64>,
    pub half_width: Option<f64>,
    pub local_slopes: Vec<f64>,
    pub dropped: usize,
    pub verdict: String,
    /// Whether the fit is consistent with `order` and its interval excludes the others.
    pub pass: bool,
    #[serde(skip)]
    pub fit: Option<Fit>,
}

/// Fits each order's errors for each test function.
pub fn summarize(orders: &[u32], names: &[String], stats: &[EtaStats]) -> Vec<Series> {
    let mut out = Vec::new();
    for (oi, &order) in orders.iter().enumerate() {
        for (j, name) in names.iter().enumerate() {
            let mut points = Vec::new();
            for st in stats {
                let o = &st.orders[oi][j];
                let diverged = st
                    .opt_divergence
                    .or(st.sde_divergence[oi])
                    .map(|d| (d.step, d.paths));
                let err = o.err.mean();
                let se = o.err.se();
                let indep = ((st.opt[j].var() + o.sde.var()) / o.err.n).sqrt();
                points.push(ErrorPoint {
                    eta: st.eta,
                    steps: st.steps,
                    error: err,
                    std_err: se,
                    discretization: o.disc.mean() / 3.0,
                    discretization_se: o.disc.se() / 3.0,
                    coupling_gain: indep / se,
                    resolved: err.abs() > 2.0 * se && diverged.is_none(),
                    diverged,
                });
            }
            let fit_pts: Vec<Point> = points
                .iter()
                .filter(|p| p.resolved && p.diverged.is_none())
                .map(|p| Point {
                    step: p.eta,
                    error: p.error.abs(),
                    std_err: p.std_err,
                })
                .collect();
            let fit = report::fit_asymptotic(&fit_pts);
            let (verdict, pass) = match &fit {
                Some(f) => {
                    let ok = (f.slope - order as f64).abs() <= f.half_width.max(0.1)
                        && (f.slope - order as f64).abs() <= 0.1
                        && orders_excluded(f, order);
                    (f.verdict(order), ok)
                }
                None => ("too few resolved points to fit a slope".to_string(), false),
            };
            out.push(Series {
                order,
                observable: name.clone(),
                slope: fit.as_ref().map(|f| f.slope),
                half_width: fit.as_ref().map(|f| f.half_width),
                local_slopes: fit.as_ref().map_or_else(Vec::new, |f| f.local.clone()),
                dropped: fit.as_ref().map_or(0, |f| f.dropped),
                verdict,
                pass,
                points,
                fit,
            });
        }
    }
    out
}

/// Whether the 95% interval excludes the neighbouring orders.
fn orders_excluded(f: &Fit, order: u32) -> bool {
    let lo = f.slope - f.half_width;
    let hi = f.slope + f.half_width;
    let below = order as f64 - 1.0;
    let above = order as f64 + 1.0;
    (order == 0 || below < lo) && above > hi
}

/// The verification as a table.
pub fn render_text(header: &str, series: &[Series]) -> String {
    let mut s = String::new();
    s.push_str(header);
    for se in series {
        s.push_str(&format!(
            "\nSME order {} · φ = {}\n",
            se.order, se.observable
        ));
        s.push_str("        η  steps        error    ± s.e.   SDE bias est.  coupling gain\n");
        for p in &se.points {
            if let Some((step, paths)) = p.diverged {
                s.push_str(&format!(
                    "{:>9.3e} {:>6}   diverged at step {step} ({paths} paths not finite): left out of the fit\n",
                    p.eta, p.steps
                ));
                continue;
            }
            s.push_str(&format!(
                "{:>9.3e} {:>6} {:>+12.4e} {:>9.1e} {:>+10.1e}±{:<7.0e} {:>8.0}×{}\n",
                p.eta,
                p.steps,
                p.error,
                p.std_err,
                p.discretization,
                p.discretization_se,
                p.coupling_gain,
                if p.resolved { "" } else { "  (not resolved)" }
            ));
        }
        if !se.local_slopes.is_empty() {
            s.push_str(&format!(
                "  local slopes (large → small η): {}\n",
                se.local_slopes
                    .iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if se.dropped > 0 {
            s.push_str(&format!(
                "  fit leaves out the {} largest step size{} as pre-asymptotic\n",
                se.dropped,
                if se.dropped == 1 { "" } else { "s" }
            ));
        }
        s.push_str(&format!("  {}\n", se.verdict));
    }
    s
}
