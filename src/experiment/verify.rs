//! `smelt verify`: an optimizer, its derived SMEs and a problem, simulated side by side.
//!
//! [`prepare`] binds a rule to a problem (hyperparameter values, start values, test
//! functions; every mismatch a diagnostic pointing into the problem file) and derives
//! the SME of each requested order once. [`plan`] compiles everything for one value of
//! the small parameter; [`crate::sim::weak::run`] simulates it; [`summarize`] fits the
//! weak errors against the step size and words a verdict per order and test function.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops over matrix rows and columns read as the formulas do"
)]

use crate::error::diagnostic::{Boxed as _, Code, Diagnostic};
use crate::ir::Optimizer;
use crate::problem::Problem;
use crate::report::{self, Fit, Point, Status};
use crate::sim::compile::{self, Layout, Numbers};
use crate::sim::weak;
pub use crate::sim::weak::{EtaStats, Plan};
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
    /// The rule's fast states that the problem does not start, with their value on the
    /// slow manifold ([`crate::derive::manifold_value`]): the optimizer starts there,
    /// where the eliminated SMEs start at the optimizer's start.
    pub manifold: Vec<(String, crate::ir::Expr)>,
}

/// Why a verification cannot run: the library's one error ([`crate::Error`]), whose
/// variants say which file a diagnostic points into.
pub type Error = crate::Error;

/// Binds `rule` to `problem` and derives the SME of each order. `overrides` set
/// hyperparameters beyond (or instead of) the problem's `set` lines.
pub fn prepare(
    rule: Optimizer,
    problem: Problem,
    orders: &[u32],
    overrides: &BTreeMap<String, f64>,
) -> Result<Prepared, Error> {
    if problem.observables.is_empty() {
        return Err(Box::new(Diagnostic::new(
            Code::Declaration,
            problem.header,
            "no test function given",
        ))
        .label("this problem")
        .hint(format!(
            "add `observe sq = sum({}^2)` (any function of the parameter and states)",
            problem.var
        ))
        .into());
    }
    bind(rule, problem, orders, overrides)
}

/// [`prepare`] without asking for test functions (escape runs need none).
pub fn bind(
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
        let sme = crate::derive::derive(&rule, &crate::Options::order(p))?;
        smes.push(sme);
    }
    let clock_name = smes
        .iter()
        .find_map(|s| s.clock.map(|c| s.vars[c].name.clone()));
    let layout = Layout::new(&rule, problem.dim, clock_name.as_deref());
    // Start values, by name.
    let mut start = vec![0.0; layout.n];
    for s in &problem.starts {
        let name = if s.name == problem.var {
            rule.param.name.as_str()
        } else {
            s.name.as_str()
        };
        let Some((off, len)) = layout.find(name) else {
            let vars: Vec<&str> = layout.vars.iter().map(|v| v.0.as_str()).collect();
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
    let started = |n: &str| problem.starts.iter().any(|s| s.name == n);
    let manifold = eliminated(&smes)
        .iter()
        .filter(|e| !started(&e.name))
        .filter_map(|e| {
            let max_terms = crate::Options::order(1).max_terms;
            crate::derive::manifold_value(&rule, &e.name, max_terms).map(|v| (e.name.clone(), v))
        })
        .collect();
    Ok(Prepared {
        rule,
        problem,
        smes,
        orders: orders.to_vec(),
        hypers,
        layout,
        start,
        manifold,
    })
}

/// The drift `b(Z)` and the diffusion `D(Z)` (`n × n`, row-major) of the SME of order
/// `p.orders[k]` at the state `z` (the layout's slots), at small parameter `eta`: the
/// compiled program `verify` simulates, evaluated once (the Python package's check of
/// the NumPy export against it).
pub fn coefficients(
    p: &mut Prepared,
    k: usize,
    eta: f64,
    z: &[f64],
) -> Result<(Vec<f64>, Vec<f64>), Error> {
    let sme = p
        .smes
        .get(k)
        .ok_or_else(|| Error::Other(format!("no SME number {k}")))?;
    if z.len() != p.layout.n {
        return Err(Error::Other(format!(
            "the state has {} slots, not {}",
            p.layout.n,
            z.len()
        )));
    }
    if !compile::forms_diffusion(sme, &p.problem.model, p.layout.n) {
        return Err(Error::Other(format!(
            "D has {n}² entries at n = {n} slots, past the {} that are formed as a matrix (this SME draws its noise from the data rows, D = s Σ, without forming it)",
            compile::DENSE_LIMIT,
            n = p.layout.n
        )));
    }
    let nums = Numbers {
        small: eta,
        hypers: p.hypers.clone(),
    };
    let syms = compile::symbol_values(sme, p.problem.dim, &nums, &p.rule.small.name)
        .map_err(|e| Error::Other(e.to_string()))?;
    let sde = compile::compile_sde(sme, &mut p.problem.model, &p.layout, &syms)?;
    // Inputs: the state, then the increments and the substep (which b and D do not read).
    let mut inputs = z.to_vec();
    inputs.resize(2 * z.len() + 1, 0.0);
    Ok((
        sde.graph.eval(&sde.drift, &inputs),
        sde.graph.eval(&sde.diffusion, &inputs),
    ))
}

/// Compiles everything for one value of the small parameter.
pub fn plan(p: &mut Prepared, eta: f64, substeps: usize) -> Result<Plan, Error> {
    let nums = Numbers {
        small: eta,
        hypers: p.hypers.clone(),
    };
    let step = compile::compile_step(&p.rule, &mut p.problem.model, &p.layout, &nums)?;
    let start = manifold_start(p, &nums)?;
    // The slots of the eliminated states, for the coupling.
    let fast: Vec<(usize, usize)> = eliminated(&p.smes)
        .iter()
        .filter_map(|e| p.layout.find(&e.name))
        .collect();
    let mut sdes = Vec::new();
    let mut refused = Vec::new();
    let mut tau = f64::NAN;
    for (sme, &order) in p.smes.iter().zip(&p.orders) {
        let syms = compile::symbol_values(sme, p.problem.dim, &nums, &p.rule.small.name)
            .map_err(|e| Error::Other(format!("the order-{order} SME: {e}")))?;
        let sde = compile::compile_sde(sme, &mut p.problem.model, &p.layout, &syms)
            .map_err(|e| Error::Other(format!("compiling the order-{order} SME: {e}")))?;
        tau = sde.tau;
        // A truncated series need not be an SDE at every step size: that order is left
        // out here (and says why), the others run.
        match not_psd(&sde, &start, &p.layout) {
            None => {
                refused.push(None);
                sdes.push((order, sde));
            }
            Some(why) => refused.push(Some(format!(
                "D is not positive semidefinite at the start ({why}): no SDE at this step size"
            ))),
        }
    }
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(Error::Other(format!(
            "the time per step at {} = {eta} is {tau}",
            p.rule.small.name
        )));
    }
    let steps = steps_of(p.problem.horizon, tau);
    if steps > 100_000_000 {
        return Err(Error::Other(format!(
            "{} = {eta} needs {steps} steps to reach T = {}; choose larger step sizes",
            p.rule.small.name, p.problem.horizon
        )));
    }
    let sdes = sdes
        .into_iter()
        .map(|(o, sde)| {
            let c = weak::coupling(&step, &sde, &start, tau, &fast);
            (o, sde, c)
        })
        .collect();
    let (observables, _, _) = compile::compile_observables(&p.problem, &p.layout)?;
    // A clock started at t0 > 0 starts the step counter at k0 = round(t0/τ).
    let mut start = start;
    let mut counter0 = 0u64;
    if p.layout.clock {
        let t0 = start[p.layout.n - 1];
        counter0 = (t0 / tau).round().max(0.0) as u64;
        start[p.layout.n - 1] = counter0 as f64 * tau;
    }
    Ok(Plan {
        counter0,
        eta,
        steps,
        tau,
        layout: p.layout.clone(),
        step,
        sdes,
        refused,
        observables,
        start,
        substeps: substeps.max(4).div_ceil(4) * 4,
    })
}

/// The rule's eliminated fast states (the same for every order's SME).
fn eliminated(smes: &[Sme]) -> &[crate::sme::Eliminated] {
    smes.first().map_or(&[], |s| &s.eliminated)
}

/// The start state with the fast states the problem does not start on their slow
/// manifold at this step size: one step of the rule that sets each to its value there
/// and leaves the rest, compiled and run once.
fn manifold_start(p: &mut Prepared, nums: &Numbers) -> Result<Vec<f64>, Error> {
    if p.manifold.is_empty() {
        return Ok(p.start.clone());
    }
    let mut rule = p.rule.clone();
    rule.steps = p
        .manifold
        .iter()
        .map(|(name, value)| crate::ir::Step {
            target: crate::ir::Target::Var(name.clone()),
            expr: value.clone(),
            span: rule.header,
        })
        .collect();
    let once = compile::compile_step(&rule, &mut p.problem.model, &p.layout, nums)?;
    let mut inputs = vec![0.0; once.n_inputs()];
    inputs[..once.n_state].copy_from_slice(&p.start[..once.n_state]);
    let out = once.graph.eval(&once.outputs, &inputs);
    let mut start = p.start.clone();
    start[..out.len().min(once.n_state)].copy_from_slice(&out[..out.len().min(once.n_state)]);
    Ok(start)
}

/// The optimizer steps that reach the horizon at `tau` per step: the one count that
/// [`plan`], [`path_steps`] and [`exact`] use.
pub fn steps_of(horizon: f64, tau: f64) -> usize {
    (horizon / tau).round().max(1.0) as usize
}

/// A truncated series for `D` need not be positive semidefinite; such an SME is not an
/// SDE at this step size, and simulating it would quietly drop the negative part.
pub(crate) fn check_psd(
    sde: &crate::sim::compile::SdeProgram,
    start: &[f64],
    layout: &Layout,
    order: u32,
    eta: f64,
) -> Result<(), Error> {
    match not_psd(sde, start, layout) {
        Some(why) => Err(Error::Other(format!(
            "the order-{order} SME's diffusion matrix D is not positive semidefinite at the start \
             ({why}) at step size {eta}: \
             the truncated series is not an SDE there; check a lower order, or smaller step sizes"
        ))),
        None => Ok(()),
    }
}

/// When `D` at `start` is not positive semidefinite: its negative eigenvalue, the
/// largest one, and the variables its direction lives on, in words.
fn not_psd(
    sde: &crate::sim::compile::SdeProgram,
    start: &[f64],
    layout: &Layout,
) -> Option<String> {
    let n = sde.n;
    // D = s Σ with Σ a covariance: semidefinite exactly when s ≥ 0.
    if let Some(rows) = &sde.rows {
        let s = sde.graph.eval(&[rows.scale], start)[0];
        return (s < 0.0).then(|| format!("D = s Σ with s = {s:.3e} < 0"));
    }
    let d = sde.graph.eval(&sde.diffusion, start);
    let m = crate::numeric::exact::from_row_major(n, &d);
    let (lam, vecs) = crate::numeric::exact::eigh(&m);
    let top = lam.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    let k = (0..n).find(|&k| lam[k] < -1e-9 * top)?;
    // The variables the offending direction lives on.
    let mut on: Vec<&str> = Vec::new();
    for (name, off, len) in &layout.vars {
        if (*off..off + len).any(|i| vecs[[i, k]].abs() > 0.1) && !on.contains(&name.as_str()) {
            on.push(name);
        }
    }
    Some(format!(
        "eigenvalue {:.3e}, largest {:.3e}, in the direction of {}",
        lam[k],
        top,
        on.join(", ")
    ))
}

/// One point of one order and test function.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ErrorPoint {
    pub eta: f64,
    /// The time per step: the weak order is the slope against it.
    pub tau: f64,
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
    /// Which run was not finite: "optimizer" or "SME".
    pub diverged_in: Option<&'static str>,
    /// Why this order was not simulated at this step size (its diffusion matrix is not
    /// positive semidefinite there): the point is left out of the fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Why the test function is left out at this step size: it is not finite (NaN or
    /// ±∞) on some paths although the states are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_finite: Option<String>,
}

/// The result for one order and one test function.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Series {
    /// The order asked for (the same as `asked`).
    pub order: u32,
    /// The order asked for.
    pub asked: u32,
    /// The weak order the derivation reached: lower than `asked` when a condition
    /// capped it (general noise at order 3 gives order 2).
    pub derived: u32,
    /// The order the verdict judges: `derived`, or more when the conditions that capped
    /// it hold on this problem (odd noise moments vanish for Gaussian noise), up to the
    /// order of the coefficients the SME keeps ([`order_on_problem`]).
    pub judged: u32,
    pub observable: String,
    pub points: Vec<ErrorPoint>,
    pub slope: Option<f64>,
    pub half_width: Option<f64>,
    pub local_slopes: Vec<f64>,
    pub dropped: usize,
    /// The verdict in words, by [`report::judge`].
    pub verdict: String,
    /// What the verdict says: confirmed, contradicted or undetermined.
    pub status: Status,
    /// Whether the fit confirms the derived order (`status` is `confirmed`).
    pub pass: bool,
    /// What would resolve an undetermined verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve: Option<String>,
    /// The verdict as the plot's legend words it (by the same rule).
    #[serde(skip)]
    pub short: String,
    #[serde(skip)]
    pub fit: Option<Fit>,
}

impl Series {
    /// The series of one order and test function, its verdict by [`report::judge`]
    /// (the one rule): `fit` is judged against `judged` (the order the derivation
    /// reached on this problem), the sign test reads the resolved points.
    pub fn judge(
        (asked, derived, judged): (u32, u32, u32),
        observable: String,
        points: Vec<ErrorPoint>,
        fit: Option<Fit>,
        mode: report::Mode,
    ) -> Series {
        let signs = points
            .iter()
            .filter(|p| p.resolved)
            .map(|p| p.error > 0.0)
            .collect::<std::collections::BTreeSet<_>>();
        let no_fit = match mode {
            report::Mode::Sampled => "too few resolved points to fit a slope",
            report::Mode::Exact => {
                "too few points with a non-zero error to fit a slope (an exact SME?)"
            }
        };
        let none_ran = !points.is_empty() && points.iter().all(|p| p.refused.is_some());
        let none_finite = !points.is_empty() && points.iter().all(|p| p.not_finite.is_some());
        let no_fit = if none_finite {
            "the test function is not finite at any step size (see the rows): no fit; check its domain"
        } else {
            no_fit
        };
        let no_fit = if none_ran {
            "not simulated at any step size: its diffusion matrix D is not positive semidefinite at the start"
        } else {
            no_fit
        };
        let mut verdict = report::judge(fit.as_ref(), judged, signs.len() <= 1, no_fit, mode);
        if none_finite && !none_ran {
            verdict.resolve = Some("a test function defined wherever the iterates go".into());
            verdict.text = format!(
                "{no_fit}; would resolve it: a test function defined wherever the iterates go"
            );
        }
        if none_ran {
            // Neither paths nor anything but a step size where D is PSD can help.
            verdict.resolve = Some("a step size at which D is positive semidefinite".into());
            verdict.text = format!("{no_fit}; would resolve it: a step size at which it is");
        }
        Series {
            order: asked,
            asked,
            derived,
            judged,
            observable,
            slope: fit.as_ref().map(|f| f.slope),
            half_width: fit.as_ref().map(|f| f.half_width),
            local_slopes: fit.as_ref().map_or_else(Vec::new, |f| f.local.clone()),
            dropped: fit.as_ref().map_or(0, |f| f.dropped),
            verdict: verdict.text,
            status: verdict.status,
            pass: verdict.status == Status::Confirmed,
            resolve: verdict.resolve,
            short: verdict.short,
            points,
            fit,
        }
    }

    /// "SME order 2" or, when a condition capped the order, "SME order 3 asked, order 2
    /// derived", and when the capping conditions hold on the problem, the order judged.
    pub fn title(&self) -> String {
        let mut t = if self.asked == self.derived {
            format!("SME order {}", self.asked)
        } else if self.derived == 0 {
            format!("SME order {} asked, no order derived", self.asked)
        } else {
            format!(
                "SME order {} asked, order {} derived",
                self.asked, self.derived
            )
        };
        if self.judged != self.derived {
            t.push_str(&format!(
                " (order {} on this problem: its noise has no third moment)",
                self.judged
            ));
        }
        t
    }

    pub fn contradicts(&self) -> bool {
        self.status == Status::Contradicted
    }
}

impl Prepared {
    /// For each SME, in the order of `orders`: the weak order the derivation reached,
    /// and the order the verdict judges on this problem ([`order_on_problem`]).
    pub fn derived_orders(&self) -> Vec<(u32, u32)> {
        let gaussian = self.problem.model.gaussian();
        self.smes
            .iter()
            .map(|s| (s.order, order_on_problem(s, gaussian)))
            .collect()
    }
}

/// The weak order an SME has on a problem. Its derived order, except when every
/// condition that capped it holds on the problem: a residual whose every term holds an
/// odd moment of the noise (the third, S) vanishes under Gaussian noise. Then the order
/// is that of the coefficients the SME keeps (those of order 1 when no order was
/// reached, Adam's case under general noise), never more than asked.
pub fn order_on_problem(sme: &Sme, gaussian_noise: bool) -> u32 {
    use crate::algebra::tensor::Kind;
    let kept = sme.order.max(1).min(sme.requested_order);
    let holds = |c: &crate::sme::Condition| {
        gaussian_noise
            && c.residual.terms.keys().all(|t| {
                t.atoms
                    .iter()
                    .any(|a| matches!(a.kind, Kind::Moment { r, .. } if r % 2 == 1))
            })
    };
    let capped = sme
        .conditions
        .iter()
        .filter(|c| c.needed_for_order <= kept)
        .any(|c| !holds(c));
    if capped {
        sme.order
    } else {
        kept
    }
}

/// Fits each order's errors for each test function. `derived[i]` is the weak order the
/// SME asked as `orders[i]` reached.
pub fn summarize(
    orders: &[u32],
    derived: &[(u32, u32)],
    names: &[String],
    stats: &[EtaStats],
) -> Vec<Series> {
    let mut out = Vec::new();
    for (oi, &order) in orders.iter().enumerate() {
        let reached = derived.get(oi).copied().unwrap_or((order, order));
        for (j, name) in names.iter().enumerate() {
            let mut points = Vec::new();
            for st in stats {
                let o = &st.orders[oi][j];
                let refused = st.refused.get(oi).cloned().flatten();
                let (diverged, diverged_in) = match (st.opt_divergence, st.sde_divergence[oi]) {
                    (Some(d), _) => (Some((d.step, d.paths)), Some("optimizer")),
                    (None, Some(d)) => (Some((d.step, d.paths)), Some("SME")),
                    (None, None) => (None, None),
                };
                let err = o.err.mean();
                let se = o.err.se();
                let indep = ((st.opt[j].var() + o.sde.var()) / o.err.n).sqrt();
                // Paths lost with finite states: the test function itself is not finite
                // there (weak::run leaves such paths out of the sums).
                let not_finite = (diverged.is_none() && refused.is_none())
                    .then(|| not_finite(name, st, j, oi))
                    .flatten();
                points.push(ErrorPoint {
                    eta: st.eta,
                    tau: st.tau,
                    steps: st.steps,
                    error: err,
                    std_err: se,
                    discretization: o.disc.mean() / 3.0,
                    discretization_se: o.disc.se() / 3.0,
                    coupling_gain: indep / se,
                    resolved: err.abs() > 2.0 * se
                        && diverged.is_none()
                        && refused.is_none()
                        && not_finite.is_none(),
                    diverged,
                    diverged_in,
                    refused: refused.clone(),
                    not_finite,
                });
            }
            let fit_pts: Vec<Point> = points
                .iter()
                .filter(|p| p.resolved && p.diverged.is_none())
                .map(|p| Point {
                    step: p.tau,
                    error: p.error.abs(),
                    std_err: p.std_err,
                })
                .collect();
            let fit = report::fit_sampled(&fit_pts);
            out.push(Series::judge(
                (order, reached.0, reached.1),
                name.clone(),
                points,
                fit,
                report::Mode::Sampled,
            ));
        }
    }
    out
}

/// Why test function `j` is left out of order `oi` at one step size: the paths on which
/// it (or, with the others in one run, another test function) was not finite while the
/// states were, on the optimizer's side or the SME's.
fn not_finite(name: &str, st: &EtaStats, j: usize, oi: usize) -> Option<String> {
    let paths = st.paths as f64;
    let opt = st.opt.get(j)?;
    let err = st.orders.get(oi)?.get(j)?;
    let (lost, side) = if opt.paths < paths {
        (paths - opt.paths, "optimizer")
    } else if err.err.paths < opt.paths {
        (opt.paths - err.err.paths, "SME")
    } else if !(err.err.mean().is_finite() && err.err.se().is_finite()) {
        (paths, "optimizer or SME")
    } else {
        return None;
    };
    Some(format!(
        "φ = {name} is not finite (NaN or ±∞) on {lost} of {} {side} paths at step size {:.3e}, where the states are",
        st.paths, st.eta
    ))
}

/// The verification as a table.
pub fn render_text(header: &str, series: &[Series]) -> String {
    let mut s = String::new();
    s.push_str(header);
    for se in series {
        s.push_str(&format!("\n{} · φ = {}\n", se.title(), se.observable));
        s.push_str(
            "   step η  time τ  steps        error    ± s.e.   SDE bias est.  coupling gain\n",
        );
        for p in &se.points {
            if let Some(why) = &p.refused {
                s.push_str(&format!(
                    "{:>9.3e} {:>7.1e} {:>6}   not simulated: {why}: left out of the fit\n",
                    p.eta, p.tau, p.steps
                ));
                continue;
            }
            if let Some(why) = &p.not_finite {
                s.push_str(&format!(
                    "{:>9.3e} {:>7.1e} {:>6}   {why}: left out of the fit\n",
                    p.eta, p.tau, p.steps
                ));
                continue;
            }
            if let Some((step, paths)) = p.diverged {
                s.push_str(&format!(
                    "{:>9.3e} {:>7.1e} {:>6}   the {} is not finite from step {step} on ({paths} paths): left out of the fit\n",
                    p.eta,
                    p.tau,
                    p.steps,
                    p.diverged_in.unwrap_or("run")
                ));
                continue;
            }
            if p.std_err == 0.0 && p.coupling_gain.is_nan() {
                s.push_str(&format!(
                    "{:>9.3e} {:>7.1e} {:>6} {:>+12.4e}     exact\n",
                    p.eta, p.tau, p.steps, p.error
                ));
                continue;
            }
            s.push_str(&format!(
                "{:>9.3e} {:>7.1e} {:>6} {:>+12.4e} {:>9.1e} {:>+10.1e}±{:<7.0e} {:>8.0}×{}\n",
                p.eta,
                p.tau,
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
                "  local slopes against τ (large → small): {}\n",
                se.local_slopes
                    .iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if se.dropped > 0 {
            s.push_str(&format!(
                "  the fit leaves out the {} largest step size{} as pre-asymptotic\n",
                se.dropped,
                if se.dropped == 1 { "" } else { "s" }
            ));
        }
        s.push_str(&format!("  {}\n", se.verdict));
    }
    let bad: Vec<String> = series
        .iter()
        .filter(|se| se.contradicts())
        .map(|se| format!("order {} on φ = {}", se.judged, se.observable))
        .collect();
    if !bad.is_empty() {
        s.push_str(&format!(
            "\nCONTRADICTED: the measured slopes contradict the derived {}\n",
            bad.join(", ")
        ));
    }
    s
}

/// The plot of a verification: each series' points, fitted line and legend, whose
/// verdict is the series' own ([`Series::short`], by the one rule).
pub fn plot(p: &Prepared, series: &[Series]) -> crate::report::plot::verify::Plot {
    plot_named(&p.rule.name, &p.problem.name, &p.rule.small.name, series)
}

/// [`plot`] from the names alone.
pub fn plot_named(
    rule: &str,
    problem: &str,
    small: &str,
    series: &[Series],
) -> crate::report::plot::verify::Plot {
    use crate::report::plot::verify::{FitLine, Plot, PlotPoint, Series as Line};
    let mut out = Vec::new();
    for s in series {
        let points: Vec<PlotPoint> = s
            .points
            .iter()
            .filter(|q| q.diverged.is_none() && q.refused.is_none() && q.not_finite.is_none())
            .map(|q| PlotPoint {
                step: q.tau,
                error: q.error.abs(),
                std_err: q.std_err,
            })
            .collect();
        let fit = s.fit.as_ref().and_then(|f| {
            let used: Vec<&ErrorPoint> = s
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
        notes.push(s.short.clone());
        out.push(Line {
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
        small.to_string()
    } else {
        format!("time per step τ (a power of {small})")
    };
    Plot {
        title: format!("{rule} on {problem}: weak error of each SME"),
        x_label,
        y_label: "|E φ(optimizer) − E φ(SME)|".into(),
        series: out,
        // The SDE's bias estimates are in the table; one line for all step sizes
        // would mislead, as they shrink with the step.
        floors: Vec::new(),
    }
}

/// Paths per block: runs go in whole blocks, and [`execute`] reports blocks done.
pub const BLOCK: usize = crate::numeric::tape::LANES;

/// Simulates every step size on the current thread pool and fits the results: the
/// whole verification, for callers that need no progress reports: [`run_extending`]
/// with no budget to extend the grid.
pub fn run(
    p: &mut Prepared,
    etas: &[f64],
    paths: usize,
    seed: u64,
    substeps: usize,
) -> Result<(Vec<EtaStats>, Vec<Series>), Error> {
    // The grid as given: no budget to extend it.
    let mut sim = |plan: &Plan| weak::run(plan, &weak::Sampling::new(paths, seed), &|_| {});
    let (stats, series, _) = run_extending(p, etas, paths, substeps, 0, &mut sim)?;
    Ok((stats, series))
}

/// How a run extended the grid of step sizes to smaller steps by itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Extension {
    /// The step sizes added, largest first.
    pub added: Vec<f64>,
    /// Path-steps simulated (paths × optimizer steps, summed over every step size).
    pub used: u64,
    /// The cap on `used`.
    pub budget: u64,
    /// Whether every verdict that smaller steps could settle is settled.
    pub resolved: bool,
    /// The unsettled series smaller steps were not tried for, and why (not simulable at
    /// the smallest step size, which shrinking has not changed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

impl Extension {
    /// One line for the report's header.
    pub fn describe(&self, small: &str) -> String {
        self.describe_in(small, "path-steps")
    }

    /// [`Extension::describe`] for exact mode, whose budget counts optimizer steps.
    pub fn describe_exact(&self, small: &str) -> String {
        self.describe_in(small, "steps")
    }

    fn describe_in(&self, small: &str, unit: &str) -> String {
        let mut line = self.describe_grid(small, unit);
        for s in &self.skipped {
            line.push_str(&format!("\ngrid: not extended for {s}"));
        }
        line
    }

    fn describe_grid(&self, small: &str, unit: &str) -> String {
        let m = |x: u64| {
            if unit == "steps" {
                x.to_string()
            } else {
                format!("{:.1} M", x as f64 / 1e6)
            }
        };
        if self.added.is_empty() && self.resolved {
            format!(
                "grid: every verdict {}settled on the given step sizes ({} {unit} of a budget of {})",
                if self.skipped.is_empty() {
                    ""
                } else {
                    "that smaller steps could settle is "
                },
                m(self.used),
                m(self.budget)
            )
        } else {
            let added = if self.added.is_empty() {
                "no smaller step fits in it".to_string()
            } else {
                format!(
                    "{small} = {} added",
                    self.added
                        .iter()
                        .map(|e| format!("{e:.3e}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            format!(
                "grid extended to smaller steps for unsettled verdicts: {added}; {} {unit} of a budget of {}{}",
                m(self.used),
                m(self.budget),
                if self.resolved { "" } else { ", spent before every verdict settled" }
            )
        }
    }
}

/// Whether smaller steps might settle a series: it has an order to check, is not
/// confirmed, and is not contradicted by errors far past its pre-asymptotic range (a
/// slope off by more than half an order, with an interval of at most ±0.1, is a wrong
/// SME, not a curved power law: smaller steps will not change it).
fn unsettled(s: &Series) -> bool {
    if s.judged == 0 || s.status == Status::Confirmed || stuck(s).is_some() {
        return false;
    }
    if s.status == Status::Contradicted {
        if let (Some(slope), Some(hw)) = (s.slope, s.half_width) {
            return (slope - s.judged as f64).abs() < 0.5 && hw <= report::TOLERANCE;
        }
    }
    true
}

/// Why smaller steps cannot help a series: at the smallest step size so far it was not
/// simulated (its D is not positive semidefinite: a series that is no SDE at any step
/// size, or whose refusals have not stopped as the step shrank) or its test function
/// was not finite.
fn stuck(s: &Series) -> Option<String> {
    let last = s.points.iter().min_by(|a, b| a.eta.total_cmp(&b.eta))?;
    let all = |f: &dyn Fn(&ErrorPoint) -> bool| s.points.iter().all(f);
    if last.refused.is_some() {
        Some(format!(
            "order {} (φ = {}): not simulated {} (D is not positive semidefinite), so smaller steps are not tried",
            s.asked,
            s.observable,
            if all(&|q| q.refused.is_some()) {
                "at any step size"
            } else {
                "at the smallest step size"
            }
        ))
    } else if last.not_finite.is_some() {
        Some(format!(
            "order {} (φ = {}): the test function is not finite at the smallest step size, so smaller steps are not tried",
            s.asked, s.observable
        ))
    } else {
        None
    }
}

/// The unsettled verdicts smaller steps are not tried for, in words ([`stuck`]).
fn not_extended(series: &[Series]) -> Vec<String> {
    series
        .iter()
        .filter(|s| s.judged != 0 && s.status != Status::Confirmed)
        .filter_map(stuck)
        .collect()
}

/// The next smaller step size: the grid's smallest times the ratio of its two smallest
/// (halving for a grid of one).
pub fn next_eta(etas: &[f64]) -> f64 {
    let mut e: Vec<f64> = etas.to_vec();
    e.sort_by(|a, b| b.total_cmp(a));
    let n = e.len();
    let ratio = if n >= 2 && e[n - 2] > e[n - 1] {
        e[n - 1] / e[n - 2]
    } else {
        0.5
    };
    e[n - 1] * ratio
}

/// [`run`] that extends the grid by itself: after the given step sizes, while some
/// verdict is unsettled (undetermined, or contradicted by a slope near its order, which
/// pre-asymptotic steps produce), it adds the next smaller step size ([`next_eta`]) if
/// its path-steps fit in `budget` (the given grid's count included). `simulate` runs
/// one plan (the caller's thread pool and progress). Deterministic for a given seed.
pub fn run_extending(
    p: &mut Prepared,
    etas: &[f64],
    paths: usize,
    substeps: usize,
    budget: u64,
    simulate: &mut dyn FnMut(&Plan) -> EtaStats,
) -> Result<(Vec<EtaStats>, Vec<Series>, Extension), Error> {
    let names = p.problem.observable_names();
    let rounded = whole_blocks(paths);
    let mut stats = Vec::new();
    let mut grid = etas.to_vec();
    let mut used = 0u64;
    for &eta in etas {
        let mut plan = plan(p, eta, substeps)?;
        let (st, runs) = simulate_checked(p, &mut plan, simulate)?;
        used += runs * rounded * plan.steps as u64;
        stats.push(st);
    }
    let mut added = Vec::new();
    loop {
        let series = summarize(&p.orders, &p.derived_orders(), &names, &stats);
        let resolved = !series.iter().any(unsettled);
        let skipped = not_extended(&series);
        let done = |added, used| Extension {
            added,
            used,
            budget,
            resolved,
            skipped: skipped.clone(),
        };
        // A step size always costs path-steps: a spent budget needs no plan to say so.
        if resolved || used >= budget {
            return Ok((stats, series, done(added, used)));
        }
        let eta = next_eta(&grid);
        let Ok(mut next) = plan(p, eta, substeps) else {
            return Ok((stats, series, done(added, used)));
        };
        let cost = rounded * next.steps as u64;
        if used + cost > budget {
            return Ok((stats, series, done(added, used)));
        }
        let (st, runs) = simulate_checked(p, &mut next, simulate)?;
        used += runs * cost;
        stats.push(st);
        grid.push(eta);
        added.push(eta);
    }
}

/// Runs one plan; when some test function was not finite on paths whose states were
/// (weak::run then leaves the path out for every test function, which would bias the
/// others), runs each test function on its own, so each keeps every path on which it is
/// finite and the one that is not is named ([`not_finite`]). Returns the statistics and
/// how many runs it took.
fn simulate_checked(
    p: &Prepared,
    plan: &mut Plan,
    simulate: &mut dyn FnMut(&Plan) -> EtaStats,
) -> Result<(EtaStats, u64), Error> {
    let mut st = simulate(plan);
    let n_obs = p.problem.observables.len();
    if !needs_each(&st, n_obs) {
        return Ok((st, 1));
    }
    let mut runs = 1;
    for j in 0..n_obs {
        let sj = with_one(p, plan, j, &mut *simulate)?;
        runs += 1;
        take_one(&mut st, j, &sj);
    }
    Ok((st, runs))
}

/// Whether [`simulate_checked`] runs each test function on its own after the run `st`:
/// some test function was not finite on paths whose states were. Over blocks this is
/// an "or": the whole run needs it when some range of its blocks does.
fn needs_each(st: &EtaStats, n_obs: usize) -> bool {
    let paths = st.paths as f64;
    let diverged = st.opt_divergence.is_some() || st.sde_divergence.iter().any(Option::is_some);
    let lost = st.opt.iter().any(|a| a.paths < paths)
        || st
            .orders
            .iter()
            .zip(&st.refused)
            .filter(|(_, r)| r.is_none())
            .any(|(o, _)| o.iter().zip(&st.opt).any(|(s, a)| s.err.paths < a.paths));
    !diverged && lost && n_obs >= 2
}

/// `simulate` of `plan` with test function `j` alone.
fn with_one<T>(
    p: &Prepared,
    plan: &mut Plan,
    j: usize,
    simulate: &mut dyn FnMut(&Plan) -> T,
) -> Result<T, Error> {
    let mut one = p.problem.clone();
    one.observables = vec![p.problem.observables[j].clone()];
    let (tape, _, _) = compile::compile_observables(&one, &p.layout)?;
    let all = std::mem::replace(&mut plan.observables, tape);
    let sj = simulate(plan);
    plan.observables = all;
    Ok(sj)
}

/// Test function `j`'s statistics in `st` replaced by those of its run alone, `sj`.
fn take_one(st: &mut EtaStats, j: usize, sj: &EtaStats) {
    st.opt[j] = sj.opt[0];
    for (o, so) in st.orders.iter_mut().zip(&sj.orders) {
        o[j] = so[0].clone();
    }
}

/// The paths a run simulates for `paths` asked: whole blocks of the tapes' lanes.
fn whole_blocks(paths: usize) -> u64 {
    (paths.div_ceil(crate::numeric::tape::LANES) * crate::numeric::tape::LANES) as u64
}

/// The path-steps of a grid: paths (whole blocks) × optimizer steps, summed.
pub fn path_steps(p: &mut Prepared, etas: &[f64], paths: usize) -> Result<u64, Error> {
    let rounded = whole_blocks(paths);
    let mut total = 0;
    for &eta in etas {
        let tau = plan_tau(p, eta)?;
        total += rounded * steps_of(p.problem.horizon, tau) as u64;
    }
    Ok(total)
}

/// The optimizer steps of a grid in exact mode (what its budget counts).
pub fn exact_steps(p: &Prepared, etas: &[f64]) -> Result<u64, Error> {
    let mut total = 0;
    for &eta in etas {
        total += steps_of(p.problem.horizon, plan_tau(p, eta)?) as u64;
    }
    Ok(total)
}

/// [`exact`] that extends the grid by itself as [`run_extending`] does: while some
/// verdict is unsettled it adds the next smaller step size ([`next_eta`]) if its
/// optimizer steps fit in `budget` (the given grid's count included). Exact errors are
/// cheap; only the laws' propagation over more steps costs.
pub fn exact_extending(
    p: &mut Prepared,
    etas: &[f64],
    budget: u64,
) -> Result<(Vec<Series>, Extension), Error> {
    let mut grid = etas.to_vec();
    let mut used = exact_steps(p, etas)?;
    let mut added = Vec::new();
    loop {
        let series = exact(p, &grid)?;
        let resolved = !series.iter().any(unsettled);
        let done = |added, used| Extension {
            added,
            used,
            budget,
            resolved,
            skipped: not_extended(&series),
        };
        if resolved {
            let ext = done(added, used);
            return Ok((series, ext));
        }
        let eta = next_eta(&grid);
        let cost = match plan_tau(p, eta) {
            Ok(tau) if tau > 0.0 && tau.is_finite() => steps_of(p.problem.horizon, tau) as u64,
            _ => {
                let ext = done(added, used);
                return Ok((series, ext));
            }
        };
        if used + cost > budget {
            let ext = done(added, used);
            return Ok((series, ext));
        }
        used += cost;
        grid.push(eta);
        added.push(eta);
    }
}

/// Values of the small parameter whose time per step is each of `taus`: the rule's
/// time per step is `c · small^q` (one power, [`crate::ir::Optimizer::time`]), read off
/// the SME at three values of the small parameter and inverted. An error when it is
/// not a monomial (or not positive).
pub fn etas_for_times(p: &Prepared, taus: &[f64]) -> Result<Vec<f64>, Error> {
    let small = &p.rule.small.name;
    let not = |why: String| {
        Error::Other(format!(
            "--time-steps: the time per step of {} is not a power of `{small}` that can be inverted ({why}); give `--etas` instead",
            p.rule.name
        ))
    };
    let at = |e: f64| -> Result<f64, Error> {
        let t = plan_tau(p, e)?;
        if t > 0.0 && t.is_finite() {
            Ok(t)
        } else {
            Err(not(format!("at {small} = {e} it is {t}")))
        }
    };
    let (t1, t2, t3) = (at(1.0)?, at(0.5)?, at(0.25)?);
    let q = (t1 / t2).log2();
    let q2 = (t2 / t3).log2();
    if !(q > 0.0 && (q - q2).abs() <= 1e-9 * q) {
        return Err(not(format!(
            "it falls by 2^{q:.3} and then 2^{q2:.3} as `{small}` halves"
        )));
    }
    // Whole and half powers are read exactly.
    let q = if ((2.0 * q).round() - 2.0 * q).abs() < 1e-9 {
        (2.0 * q).round() / 2.0
    } else {
        q
    };
    let mut out = Vec::new();
    for &tau in taus {
        if !(tau > 0.0 && tau.is_finite()) {
            return Err(Error::Other(format!(
                "--time-steps: `{tau}` is not a positive time"
            )));
        }
        let e = (tau / t1).powf(1.0 / q);
        let back = at(e)?;
        if (back - tau).abs() > 1e-9 * tau {
            return Err(not(format!("{small} = {e} gives τ = {back}, not {tau}")));
        }
        out.push(e);
    }
    Ok(out)
}

/// Whether the rule's time per step is its small parameter itself (then a grid of
/// step sizes is a grid of times).
pub fn time_is_small(p: &Prepared) -> bool {
    [1.0, 0.5, 0.25]
        .iter()
        .all(|&e| plan_tau(p, e).is_ok_and(|t| (t - e).abs() <= 1e-12 * e))
}

/// The time per step at `eta` (from the first SME, as [`plan`] reads it).
fn plan_tau(p: &Prepared, eta: f64) -> Result<f64, Error> {
    let nums = Numbers {
        small: eta,
        hypers: p.hypers.clone(),
    };
    let sme = p
        .smes
        .first()
        .ok_or_else(|| Error::Other("no SME to check".into()))?;
    let syms = compile::symbol_values(sme, p.problem.dim, &nums, &p.rule.small.name)?;
    Ok(compile::time_per_step(sme, &syms))
}

/// Exact mode: on a linear-Gaussian problem (quadratic f, constant Gaussian noise, a
/// rule that is affine on it), the laws of the optimizer and of each SME are Gaussian
/// and propagated exactly ([`crate::numeric::linear_gaussian`]); test functions must be
/// quadratic, so `E φ = φ(μ) + ½ tr(∇²φ Cov)` is exact too. No sampling error at all.
pub fn exact(p: &mut Prepared, etas: &[f64]) -> Result<Vec<Series>, Error> {
    use crate::numeric::linear_gaussian::{affine_step, laws, linear_sde};
    use crate::numeric::Values;
    let not = |why: &str| {
        Error::Other(format!(
            "exact mode needs a linear-Gaussian problem: {why}; run without --exact to simulate"
        ))
    };
    let d = p.problem.dim;
    let q = quadratic(&mut p.problem.model).map_err(|e| not(&e.to_string()))?;
    // Test functions: quadratic in the state.
    let (_, mut og, outs) = crate::sim::compile::compile_observables(&p.problem, &p.layout)?;
    let n = p.layout.n;
    let mut hess_phi = Vec::new();
    for &o in &outs {
        let mut hm = vec![vec![0.0; n]; n];
        for i in 0..n {
            let di = og.diff(o, i as u32);
            for j in 0..n {
                let dij = og.diff(di, j as u32);
                hm[i][j] = og.value(dij).ok_or_else(|| {
                    not("a test function is not quadratic in the state (E φ needs only means and covariances when it is)")
                })?;
            }
        }
        hess_phi.push(hm);
    }
    let like = p.layout.values(&p.start);
    let names = p.problem.observable_names();
    let mut out = Vec::new();
    let derived = p.derived_orders();
    // The start at each step size (fast states on their slow manifold).
    let mut starts = Vec::new();
    for &eta in etas {
        let nums = Numbers {
            small: eta,
            hypers: p.hypers.clone(),
        };
        starts.push(manifold_start(p, &nums)?);
    }
    for ((sme, &order), &reached) in p.smes.iter().zip(&p.orders).zip(&derived) {
        let mut per_obs: Vec<Vec<ErrorPoint>> = vec![Vec::new(); outs.len()];
        // The SME's own variables (the rule's less its eliminated fast states): their
        // slots in the rule's state and their start values.
        let at: Vec<(usize, usize)> = sme
            .vars
            .iter()
            .filter_map(|v| p.layout.find(&v.name))
            .collect();
        let own: Vec<_> = sme
            .vars
            .iter()
            .filter_map(|v| {
                let i = p.layout.vars.iter().position(|(n, ..)| *n == v.name)?;
                like.get(i).cloned()
            })
            .collect();
        for (e, &eta) in etas.iter().enumerate() {
            let values = Values {
                small: eta,
                hypers: p.hypers.clone(),
                counter: 0,
            };
            let nums = Numbers {
                small: eta,
                hypers: p.hypers.clone(),
            };
            let syms = compile::symbol_values(sme, d, &nums, &p.rule.small.name)?;
            let symbols: BTreeMap<String, f64> = (0..syms.len())
                .filter_map(|i| sme.symbols.try_name(i).map(|nm| (nm.to_string(), syms[i])))
                .collect();
            let step = affine_step(&p.rule, &q, &values, &like).map_err(|e| not(&e.to_string()))?;
            let sde = linear_sde(sme, &q, &symbols, &own)
                .map_err(|e| not(&e.to_string()))?
                .embed(&at, n);
            let steps = steps_of(p.problem.horizon, sde.tau);
            let (a, b) = laws(&step, &sde, &starts[e], steps);
            for (j, &o) in outs.iter().enumerate() {
                let e = |law: &crate::numeric::linear_gaussian::Gaussian| {
                    let at = og.eval(&[o], &law.mean.to_vec())[0];
                    let tr: f64 = (0..n)
                        .map(|i| {
                            (0..n)
                                .map(|k| hess_phi[j][i][k] * law.cov[[i, k]])
                                .sum::<f64>()
                        })
                        .sum();
                    at + 0.5 * tr
                };
                let err = e(&a) - e(&b);
                per_obs[j].push(ErrorPoint {
                    eta,
                    tau: sde.tau,
                    steps,
                    error: err,
                    std_err: 0.0,
                    discretization: 0.0,
                    discretization_se: 0.0,
                    coupling_gain: f64::NAN,
                    resolved: err.is_finite() && err.abs() > 1e-13,
                    diverged: None,
                    diverged_in: None,
                    refused: None,
                    not_finite: (!err.is_finite()).then(|| {
                        format!(
                            "φ = {} is not finite ({}) at {} = {eta:e}",
                            names[j],
                            if err.is_nan() { "NaN" } else { "infinite" },
                            p.rule.small.name
                        )
                    }),
                });
            }
        }
        for (j, points) in per_obs.into_iter().enumerate() {
            let fit_pts: Vec<Point> = points
                .iter()
                .filter(|q| q.resolved)
                .map(|q| Point {
                    step: q.tau,
                    error: q.error.abs(),
                    std_err: 0.0,
                })
                .collect();
            let fit = report::fit_corrected(&fit_pts).or_else(|| report::fit(&fit_pts));
            out.push(Series::judge(
                (order, reached.0, reached.1),
                names[j].clone(),
                points,
                fit,
                report::Mode::Exact,
            ));
        }
    }
    Ok(out)
}

/// The problem as `f(x) = ½ (x − x*)ᵀ H (x − x*)` plus a constant, with constant
/// Gaussian-noise covariance Σ; or why it is not one.
pub fn quadratic(
    model: &mut crate::problem::Model,
) -> Result<crate::numeric::linear_gaussian::Quadratic, crate::Error> {
    quadratic_words(model).map_err(crate::Error::Other)
}

/// [`quadratic`]'s failures in words.
fn quadratic_words(
    model: &mut crate::problem::Model,
) -> Result<crate::numeric::linear_gaussian::Quadratic, String> {
    let d = model.dim;
    if !model.constant_noise() {
        return Err("the noise covariance depends on x".into());
    }
    if d > crate::problem::MAX_CUBIC_DIM {
        return Err(format!(
            "exact mode checks that ∇³f vanishes, d³ = {} nodes: at most d = {}, this problem has d = {d}",
            d * d * d,
            crate::problem::MAX_CUBIC_DIM
        ));
    }
    // f quadratic: ∇³f vanishes, ∇²f is a constant H.
    let third = model.df(3);
    if third.iter().any(|&n| model.graph.value(n) != Some(0.0)) {
        return Err("the objective is not quadratic (∇³f ≠ 0)".into());
    }
    let hess = model.df(2);
    let h = crate::numeric::exact::from_rows(&constant_matrix(&model.graph, &hess, d));
    // x* from H x* = −∇f(0).
    let grad_ids = model.df(1);
    let grad0 = model.graph.eval(&grad_ids, &vec![0.0; d]);
    let (lam, v) = crate::numeric::exact::eigh(&h);
    let top = lam.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    if lam.iter().any(|l| l.abs() <= 1e-12 * top.max(1e-300)) {
        return Err("the Hessian is singular, so f has no unique stationary point".into());
    }
    let x_star: crate::numeric::exact::V = (0..d)
        .map(|i| {
            -(0..d)
                .map(|k| v[[i, k]] / lam[k] * (0..d).map(|j| v[[j, k]] * grad0[j]).sum::<f64>())
                .sum::<f64>()
        })
        .collect();
    let sig_ids = model.sigma();
    let sigma = crate::numeric::exact::from_rows(&constant_matrix(&model.graph, &sig_ids, d));
    crate::numeric::linear_gaussian::Quadratic::new(h, x_star, sigma).map_err(|e| e.to_string())
}

/// The values of a `d × d` row-major matrix of constant nodes (NaN where one is not).
fn constant_matrix(
    g: &crate::numeric::graph::Graph,
    ids: &[crate::numeric::graph::Id],
    d: usize,
) -> Vec<Vec<f64>> {
    ids.chunks(d)
        .map(|row| {
            row.iter()
                .map(|&n| g.value(n).unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

/// Where a run's step sizes come from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Grid {
    /// Values of the small parameter.
    Etas(Vec<f64>),
    /// Times per step τ, converted through the rule's time scale ([`etas_for_times`]).
    Times(Vec<f64>),
    /// The problem's `etas`, else times per step 2^-2 … 2^-7 (the same values of the
    /// small parameter when it is the time).
    #[default]
    Default,
}

/// How to run a verification: everything but the rule and the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub grid: Grid,
    /// Paths per step size (run in whole blocks of [`BLOCK`]).
    pub paths: usize,
    pub seed: u64,
    /// Euler–Maruyama substeps of the SDE per optimizer step.
    pub substeps: usize,
    /// Cap on path-steps (exact mode: optimizer steps) within which the grid extends;
    /// `None`: 8× the given grid's.
    pub budget: Option<u64>,
    /// Exact mode (linear-Gaussian problems): laws propagated exactly, no sampling.
    pub exact: bool,
    /// Paths in antithetic pairs ([`weak::Sampling::antithetic`]).
    pub antithetic: bool,
    /// Worker threads (`None`: all cores); results do not depend on it.
    pub threads: Option<usize>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            grid: Grid::Default,
            paths: 65_536,
            seed: 1,
            substeps: 8,
            budget: None,
            exact: false,
            antithetic: false,
            threads: None,
        }
    }
}

impl Config {
    /// What is wrong with the options of a run of `orders` ([`Error::Other`], a usage
    /// error said with the CLI's option names), checked before anything is derived.
    pub fn check(&self, orders: &[u32]) -> Result<(), Error> {
        let usage = |msg: String| Err(Error::Other(msg));
        if orders.is_empty() || orders.iter().any(|&o| o == 0 || o > 3) {
            return usage("`--orders`: give orders from 1 to 3, e.g. `--orders 1,2`".into());
        }
        if self.paths == 0 || self.paths > 1 << 30 {
            return usage("`--paths` must be between 1 and 2^30".into());
        }
        if self.substeps < 4 || self.substeps % 4 != 0 || self.substeps > 1024 {
            return usage("`--substeps` must be a multiple of 4 between 4 and 1024".into());
        }
        let (flag, given) = match &self.grid {
            Grid::Etas(e) => ("--etas", e),
            Grid::Times(t) => ("--time-steps", t),
            Grid::Default => return Ok(()),
        };
        if given.is_empty() || given.iter().any(|e| !(*e > 0.0 && e.is_finite())) {
            return usage(format!(
                "`{flag}`: give positive step sizes, e.g. `{flag} 0.25,0.125,0.0625`"
            ));
        }
        Ok(())
    }
}

/// What a run reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A step size starts: `blocks` blocks of [`BLOCK`] paths to simulate.
    Start { eta: f64, blocks: u64 },
    /// Blocks done at the current step size.
    Blocks(usize),
    /// The current step size is done.
    Finish,
}

/// A finished verification: the fits and verdicts, and how the run went.
#[derive(Debug, Clone)]
pub struct Report {
    pub series: Vec<Series>,
    pub extension: Extension,
    pub exact: bool,
    /// Paths per step size (0 in exact mode).
    pub paths: usize,
    /// Whether the paths ran in antithetic pairs.
    pub antithetic: bool,
    pub seed: u64,
    pub substeps: usize,
    /// Wall-clock time of the run.
    pub seconds: f64,
}

impl Report {
    /// Whether some verdict contradicts its order (the CLI's exit code 3).
    pub fn contradicted(&self) -> bool {
        self.series.iter().any(Series::contradicts)
    }

    /// The step sizes at which the horizon is not a whole number of steps: the runs
    /// end at `Nτ` with `N = round(T/τ)`, off `T` by up to `τ/2`, which moves the error
    /// by an amount with no power law in the step size (and can make a slope read
    /// "contradicted"). Each with the time the runs end at.
    pub fn horizon_off(&self, p: &Prepared) -> Vec<(f64, f64)> {
        let t = p.problem.horizon;
        let mut out: Vec<(f64, f64)> = Vec::new();
        for pt in self.series.iter().flat_map(|s| &s.points) {
            let end = pt.steps as f64 * pt.tau;
            if (end - t).abs() > 1e-9 * t && !out.iter().any(|&(e, _)| e == pt.eta) {
                out.push((pt.eta, end));
            }
        }
        out
    }

    /// A line saying where the horizon is not a whole number of steps (empty if none).
    fn horizon_note(&self, p: &Prepared) -> String {
        let off = self.horizon_off(p);
        if off.is_empty() {
            return String::new();
        }
        let list: Vec<String> = off
            .iter()
            .map(|(eta, end)| format!("{eta:.4e} (ends at {end:.6})"))
            .collect();
        format!(
            "note: T = {} is not a whole number of steps at {} = {}: those runs end at Nτ, off T by up to τ/2, an error with no power law in the step; choose T and the step sizes so that T/τ is an integer\n",
            p.problem.horizon,
            p.rule.small.name,
            list.join(", ")
        )
    }

    /// The lines above the tables: the run's settings and the grid's extension.
    pub fn header(&self, p: &Prepared) -> String {
        format!("{}{}", self.settings(p), self.horizon_note(p))
    }

    /// The run's settings and the grid's extension.
    fn settings(&self, p: &Prepared) -> String {
        let small = &p.rule.small.name;
        if self.exact {
            format!(
                "{} on {} (d = {}, T = {}): exact mode, laws propagated exactly (no sampling), {:.2} s\n{}\n",
                p.rule.name,
                p.problem.name,
                p.problem.dim,
                p.problem.horizon,
                self.seconds,
                self.extension.describe_exact(small)
            )
        } else {
            format!(
                "{} on {} (d = {}, T = {}): {} paths per step size{}, seed {}, {} substeps, {:.1} s\n\
                 SDE: Euler–Maruyama with Richardson extrapolation; noise coupled to the optimizer's\n\
                 generator: {}\n{}\n",
                p.rule.name,
                p.problem.name,
                p.problem.dim,
                p.problem.horizon,
                self.paths,
                if self.antithetic {
                    " in antithetic pairs"
                } else {
                    ""
                },
                self.seed,
                self.substeps,
                self.seconds,
                super::GENERATOR,
                self.extension.describe(small)
            )
        }
    }

    /// The report as text: the header, then one table per series with its verdict.
    pub fn text(&self, p: &Prepared) -> String {
        render_text(&self.header(p), &self.series)
    }

    /// The report as the JSON document `smelt verify --format json` prints.
    pub fn to_json(&self, p: &Prepared) -> serde_json::Value {
        let run = if self.exact {
            serde_json::json!({ "extension": self.extension })
        } else {
            serde_json::json!({
                "paths": self.paths,
                "antithetic": self.antithetic,
                "seed": self.seed,
                "substeps": self.substeps,
                "generator": super::GENERATOR,
                "seconds": self.seconds,
                "extension": self.extension,
            })
        };
        let off: Vec<serde_json::Value> = self
            .horizon_off(p)
            .into_iter()
            .map(|(eta, end)| serde_json::json!({ "eta": eta, "end": end }))
            .collect();
        serde_json::json!({
            "schema": "smelt-verify",
            "version": 1,
            "optimizer": p.rule.name,
            "problem": p.problem.name,
            "dim": p.problem.dim,
            "horizon": p.problem.horizon,
            "horizon_off": off,
            "small": p.rule.small.name,
            "mode": if self.exact { "exact" } else { "simulation" },
            "run": run,
            "contradicted": self.contradicted(),
            "series": self.series,
        })
    }
}

/// The step sizes a [`Grid`] gives for this rule and problem.
pub fn grid(p: &Prepared, grid: &Grid) -> Result<Vec<f64>, Error> {
    let default_times: Vec<f64> = (2..=7).map(|k| 0.5f64.powi(k)).collect();
    match grid {
        Grid::Etas(e) => Ok(e.clone()),
        Grid::Times(t) => etas_for_times(p, t),
        Grid::Default => match &p.problem.etas {
            Some(e) => Ok(e.clone()),
            None if time_is_small(p) => Ok(default_times),
            None => etas_for_times(p, &default_times),
        },
    }
}

/// The whole verification: the grid, the budget, every step size (extending the grid
/// until the verdicts settle or the budget is spent), the fits and verdicts. The one
/// loop over step sizes; `progress` hears of each step size and block of paths.
pub fn execute(
    p: &mut Prepared,
    config: &Config,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<Report, Error> {
    execute_until(p, config, progress, &|| false)
}

/// [`execute`] that stops between blocks of paths once `stop` says so (Ctrl-C in the
/// Python package), with [`Error::Other`] saying it was interrupted.
pub fn execute_until(
    p: &mut Prepared,
    config: &Config,
    progress: &(dyn Fn(Event) + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Report, Error> {
    let etas = grid(p, &config.grid)?;
    let started = std::time::Instant::now();
    if config.exact {
        let budget = match config.budget {
            Some(b) => b,
            None => exact_steps(p, &etas)?.saturating_mul(8),
        };
        let (series, extension) = exact_extending(p, &etas, budget)?;
        return Ok(Report {
            series,
            extension,
            exact: true,
            paths: 0,
            antithetic: false,
            seed: config.seed,
            substeps: config.substeps,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.unwrap_or(0))
        .build()
        .map_err(|e| Error::Other(format!("cannot start worker threads: {e}")))?;
    let budget = match config.budget {
        Some(b) => b,
        None => path_steps(p, &etas, config.paths)?.saturating_mul(8),
    };
    check_antithetic(p, config)?;
    let (paths, seed) = (config.paths, config.seed);
    let sampling = weak::Sampling {
        paths,
        seed,
        antithetic: config.antithetic,
    };
    let mut sim = |plan: &Plan| {
        progress(Event::Start {
            eta: plan.eta,
            blocks: paths.div_ceil(BLOCK) as u64,
        });
        let st = pool
            .install(|| weak::run_until(plan, &sampling, &|k| progress(Event::Blocks(k)), stop));
        progress(Event::Finish);
        st
    };
    let (stats, series, extension) =
        run_extending(p, &etas, paths, config.substeps, budget, &mut sim)?;
    if stop() {
        return Err(Error::Other("interrupted".into()));
    }
    Ok(Report {
        series,
        extension,
        exact: false,
        paths: stats.first().map_or(0, |s| s.paths),
        antithetic: config.antithetic,
        seed,
        substeps: config.substeps,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One step size of a shard: what the plan says of it, the shard's blocks' sums, and
/// (when some test function was not finite on its paths whose states were) each test
/// function run alone.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EtaPart {
    pub head: weak::Head,
    pub all: weak::Partial,
    /// Whether some test function was not finite on paths of this shard whose states were.
    pub lost: bool,
    /// Per test function, its run alone over this shard's blocks (when `lost`).
    pub each: Option<Vec<weak::Partial>>,
}

/// A shard's result (`smelt verify --shard K/N`, schema `smelt-verify-part`): the run
/// it belongs to, and per step size its blocks' exact sums.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Part {
    pub schema: String,
    pub version: u32,
    pub shard: super::shard::Shard,
    pub run: super::shard::Identity,
    pub origin: super::shard::Origin,
    /// The whole run's blocks of [`BLOCK`] paths.
    pub blocks: usize,
    /// This shard's wall time.
    pub seconds: f64,
    pub steps: Vec<EtaPart>,
}

/// The schema name of a verification's part.
pub const PART_SCHEMA: &str = "smelt-verify-part";

impl super::shard::Sharded for Part {
    fn shard(&self) -> super::shard::Shard {
        self.shard
    }
    fn run(&self) -> &super::shard::Identity {
        &self.run
    }
}

impl Config {
    /// What a shard of this run cannot do: extend the grid (that decision reads every
    /// path) or run exact mode (no paths to split). A shard's budget is 0.
    pub fn check_shard(&self) -> Result<(), Error> {
        if self.exact {
            return Err(Error::Other(
                "`--shard` splits paths, and exact mode (`--exact`) has none: run it whole".into(),
            ));
        }
        if self.budget.is_some_and(|b| b > 0) {
            return Err(Error::Other(
                "`--shard` runs the grid as given: extending it decides from every path's results, which no shard has; leave out `--budget` (a shard's budget is 0) and compare with a single run with `--budget 0`".into(),
            ));
        }
        Ok(())
    }
}

/// The options of a verification that change its numbers, by name (a part's identity).
fn options(p: &Prepared, config: &Config, etas: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "orders": p.orders,
        "etas": etas,
        "paths": config.paths,
        "seed": config.seed,
        "substeps": config.substeps,
        "antithetic": config.antithetic,
        "generator": super::GENERATOR,
    })
}

/// Shard `shard` of the verification `config` asks (with budget 0: the grid as given):
/// every step size over the shard's blocks, their sums exact. `progress` hears of each
/// step size and of the shard's blocks.
pub fn execute_shard(
    p: &mut Prepared,
    config: &Config,
    shard: super::shard::Shard,
    sources: &super::shard::Sources,
    progress: &(dyn Fn(Event) + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Part, Error> {
    config.check_shard()?;
    check_antithetic(p, config)?;
    let etas = grid(p, &config.grid)?;
    let started = std::time::Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.unwrap_or(0))
        .build()
        .map_err(|e| Error::Other(format!("cannot start worker threads: {e}")))?;
    let sampling = weak::Sampling {
        paths: config.paths,
        seed: config.seed,
        antithetic: config.antithetic,
    };
    let blocks = weak::blocks_of(config.paths);
    let range = shard.range(blocks);
    let n_obs = p.problem.observables.len();
    let mut sim = |plan: &Plan| {
        progress(Event::Start {
            eta: plan.eta,
            blocks: range.len() as u64,
        });
        let part = pool.install(|| {
            weak::run_blocks(
                plan,
                &sampling,
                range.clone(),
                &|k| progress(Event::Blocks(k)),
                stop,
            )
        });
        progress(Event::Finish);
        part
    };
    let mut steps = Vec::new();
    for &eta in &etas {
        let mut plan = plan(p, eta, config.substeps)?;
        let head = weak::Head::of(&plan);
        let all = sim(&plan);
        let lost = needs_each(&all.stats(&head, n_obs, range.len()), n_obs);
        let each = if lost {
            let mut each = Vec::new();
            for j in 0..n_obs {
                each.push(with_one(p, &mut plan, j, &mut sim)?);
            }
            Some(each)
        } else {
            None
        };
        steps.push(EtaPart {
            head,
            all,
            lost,
            each,
        });
    }
    if stop() {
        return Err(Error::Other("interrupted".into()));
    }
    Ok(Part {
        schema: PART_SCHEMA.into(),
        version: 1,
        shard,
        run: super::shard::Identity {
            rule: sources.rule.clone(),
            problem: sources.problem.clone(),
            set: sources.set.clone(),
            options: options(p, config, &etas),
        },
        origin: sources.origin.clone(),
        blocks,
        seconds: started.elapsed().as_secs_f64(),
        steps,
    })
}

/// Antithetic pairs need normals to negate.
fn check_antithetic(p: &Prepared, config: &Config) -> Result<(), Error> {
    if config.antithetic
        && matches!(
            p.problem.model.noise,
            crate::problem::Noise::Minibatch { .. }
        )
    {
        return Err(Error::Other(
            "antithetic pairs negate the noise's normals, and minibatch noise draws rows instead; run without `--antithetic`".into(),
        ));
    }
    Ok(())
}

/// What in a part does not have the shape its run's `orders` orders and `n_obs` test
/// functions give (a part changed by hand must be refused, not read past its end).
fn misshapen(part: &Part, orders: usize, n_obs: usize) -> Option<&'static str> {
    for step in &part.steps {
        let refused = &step.head.refused;
        if !(refused.is_empty() || refused.len() == orders) {
            return Some("other orders");
        }
        let sdes = orders - refused.iter().filter(|r| r.is_some()).count();
        let fits = |p: &weak::Partial, n: usize| {
            p.opt.len() == n
                && p.orders.len() == sdes
                && p.sde_divergence.len() == sdes
                && p.orders.iter().all(|o| o.len() == n)
        };
        if !fits(&step.all, n_obs) {
            return Some("other test functions or orders");
        }
        if let Some(each) = &step.each {
            if each.len() != n_obs || !each.iter().all(|e| fits(e, 1)) {
                return Some("other test functions");
            }
        }
        if !(step.head.steps >= 1 && step.head.tau > 0.0) {
            return Some("other steps");
        }
    }
    None
}

/// Merges the parts of a sharded verification (`files[i]` names `parts[i]` in
/// messages): checks that they make up one run ([`super::shard::check_parts`]), reads its rule
/// and problem again, adds the sums exactly and fits: the report of the single run with
/// the same options and `--budget 0`, bit for bit, but for `seconds`, which is the sum
/// of the parts' wall times.
pub fn merge(files: &[&str], parts: &[Part]) -> Result<(Prepared, Report), Error> {
    let order = super::shard::check_parts(files, parts)?;
    let first = &parts[order[0]];
    let bad = |what: &str| {
        Error::Other(format!(
            "`{}`: {what}; the part was changed or written by another version of smelt",
            files[order[0]]
        ))
    };
    let opts = &first.run.options;
    let orders: Vec<u32> =
        serde_json::from_value(opts["orders"].clone()).map_err(|_| bad("no `orders`"))?;
    let field = |k: &str| opts[k].as_u64().ok_or_else(|| bad(&format!("no `{k}`")));
    let (seed, substeps) = (field("seed")?, field("substeps")? as usize);
    let antithetic = opts["antithetic"].as_bool().unwrap_or(false);
    let (rule, problem) = super::shard::load(&first.origin, &first.run)?;
    let p = prepare(rule, problem, &orders, &first.run.set)?;
    let n_obs = p.problem.observables.len();
    let names = p.problem.observable_names();
    for (i, part) in parts.iter().enumerate() {
        if part.blocks != first.blocks || part.steps.len() != first.steps.len() {
            return Err(Error::Other(format!(
                "`{}` has other blocks or step sizes than `{}`: the part was changed",
                files[i], files[order[0]]
            )));
        }
    }
    let paths = field("paths")? as usize;
    if first.blocks != weak::blocks_of(paths) {
        return Err(bad("its blocks do not match its paths"));
    }
    for (i, part) in parts.iter().enumerate() {
        if let Some(what) = misshapen(part, p.orders.len(), n_obs) {
            return Err(Error::Other(format!(
                "`{}`: {what} than its run asks; the part was changed or written by another version of smelt",
                files[i]
            )));
        }
    }
    let blocks = first.blocks;
    let rounded = (blocks * BLOCK) as u64;
    let mut stats = Vec::new();
    let mut used = 0u64;
    for (e, step) in first.steps.iter().enumerate() {
        let head = &step.head;
        let mut all = weak::Partial::empty(step.all.opt.len(), step.all.orders.len());
        for &i in &order {
            all.merge(&parts[i].steps[e].all)
                .ok_or_else(|| bad("parts of different shapes"))?;
        }
        let mut st = all.stats(head, n_obs, blocks);
        let mut runs = 1;
        if needs_each(&st, n_obs) {
            for j in 0..n_obs {
                let mut one = weak::Partial::empty(1, step.all.orders.len());
                for &i in &order {
                    let Some(each) = &parts[i].steps[e].each else {
                        let lost = order
                            .iter()
                            .find(|&&l| parts[l].steps[e].lost)
                            .map_or("another shard", |&l| files[l]);
                        return Err(Error::Other(format!(
                            "at step size {:e}, a test function is not finite on paths of `{lost}` (whose states are), but not on those of `{}`: the single run then runs each test function over all paths on its own, which `{}` did not; run the verification whole, or run one test function per verification (an `observe` line each)",
                            head.eta, files[i], files[i]
                        )));
                    };
                    one.merge(each.get(j).ok_or_else(|| bad("too few test functions"))?)
                        .ok_or_else(|| bad("parts of different shapes"))?;
                }
                runs += 1;
                take_one(&mut st, j, &one.stats(head, 1, blocks));
            }
        }
        used += runs * rounded * head.steps as u64;
        stats.push(st);
    }
    let series = summarize(&p.orders, &p.derived_orders(), &names, &stats);
    let extension = Extension {
        added: Vec::new(),
        used,
        budget: 0,
        resolved: !series.iter().any(unsettled),
        skipped: not_extended(&series),
    };
    let report = Report {
        series,
        extension,
        exact: false,
        paths: blocks * BLOCK,
        antithetic,
        seed,
        substeps,
        seconds: parts.iter().map(|p| p.seconds).sum(),
    };
    // `p` is returned for the report's text and JSON (names, dimension, horizon).
    Ok((p, report))
}
