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

use crate::diagnostic::{Boxed as _, Code, Diagnostic};
use crate::ir::Optimizer;
use crate::problem::Problem;
use crate::report::{self, Fit, Point, Status, Verdict};
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
        let sme = crate::derive::derive(&rule, &crate::Options::order(p)).map_err(Error::Derive)?;
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
        check_psd(&sde, &p.start, &p.layout, order, eta)?;
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
    // A clock started at t0 > 0 starts the step counter at k0 = round(t0/τ).
    let mut start = p.start.clone();
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
        observables,
        start,
        substeps: substeps.max(4).div_ceil(4) * 4,
    })
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
    let n = sde.n;
    let d = sde.graph.eval(&sde.diffusion, start);
    let m: Vec<Vec<f64>> = (0..n).map(|i| d[i * n..(i + 1) * n].to_vec()).collect();
    let (lam, vecs) = crate::numeric::exact::eigh(&m);
    let top = lam.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    if let Some(k) = (0..n).find(|&k| lam[k] < -1e-9 * top) {
        // The variables the offending direction lives on.
        let mut on: Vec<&str> = Vec::new();
        for (name, off, len) in &layout.vars {
            if (*off..off + len).any(|i| vecs[i][k].abs() > 0.1) && !on.contains(&name.as_str()) {
                on.push(name);
            }
        }
        return Err(Error::Other(format!(
            "the order-{order} SME's diffusion matrix D is not positive semidefinite at the start \
             (eigenvalue {:.3e}, largest {:.3e}, in the direction of {}) at step size {eta}: \
             the truncated series is not an SDE there; check a lower order, or smaller step sizes",
            lam[k],
            top,
            on.join(", ")
        )));
    }
    Ok(())
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
    /// What the verdict says: confirms, contradicts, steeper or inconclusive.
    pub status: Status,
    /// Whether the fit confirms the derived order (`status` is `confirms`).
    pub pass: bool,
    #[serde(skip)]
    pub fit: Option<Fit>,
}

impl Series {
    fn new(
        (asked, (derived, judged)): (u32, (u32, u32)),
        observable: String,
        points: Vec<ErrorPoint>,
        fit: Option<Fit>,
        verdict: Verdict,
    ) -> Series {
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
            pass: verdict.status == Status::Confirms,
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
        self.status == Status::Contradicts
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
    use crate::tensor::Kind;
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
                let (diverged, diverged_in) = match (st.opt_divergence, st.sde_divergence[oi]) {
                    (Some(d), _) => (Some((d.step, d.paths)), Some("optimizer")),
                    (None, Some(d)) => (Some((d.step, d.paths)), Some("SME")),
                    (None, None) => (None, None),
                };
                let err = o.err.mean();
                let se = o.err.se();
                let indep = ((st.opt[j].var() + o.sde.var()) / o.err.n).sqrt();
                points.push(ErrorPoint {
                    eta: st.eta,
                    tau: st.tau,
                    steps: st.steps,
                    error: err,
                    std_err: se,
                    discretization: o.disc.mean() / 3.0,
                    discretization_se: o.disc.se() / 3.0,
                    coupling_gain: indep / se,
                    resolved: err.abs() > 2.0 * se && diverged.is_none(),
                    diverged,
                    diverged_in,
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
            let fit = report::fit_asymptotic(&fit_pts);
            let signs = points
                .iter()
                .filter(|p| p.resolved)
                .map(|p| p.error > 0.0)
                .collect::<std::collections::BTreeSet<_>>();
            let verdict = report::judge(
                fit.as_ref(),
                reached.1,
                signs.len() <= 1,
                "too few resolved points to fit a slope",
            );
            out.push(Series::new(
                (order, reached),
                name.clone(),
                points,
                fit,
                verdict,
            ));
        }
    }
    out
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

/// Simulates every step size on the current thread pool and fits the results: the
/// whole verification, for callers that need no progress reports.
pub fn run(
    p: &mut Prepared,
    etas: &[f64],
    paths: usize,
    seed: u64,
    substeps: usize,
) -> Result<(Vec<EtaStats>, Vec<Series>), Error> {
    let mut stats = Vec::new();
    for &eta in etas {
        let plan = plan(p, eta, substeps)?;
        stats.push(weak::run(&plan, paths, seed, &|_| {}));
    }
    let names: Vec<String> = p
        .problem
        .observables
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let series = summarize(&p.orders, &p.derived_orders(), &names, &stats);
    Ok((stats, series))
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
    let q = quadratic(&mut p.problem.model).map_err(|e| not(&e))?;
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
    let names: Vec<String> = p
        .problem
        .observables
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let mut out = Vec::new();
    let derived = p.derived_orders();
    for ((sme, &order), &reached) in p.smes.iter().zip(&p.orders).zip(&derived) {
        let mut per_obs: Vec<Vec<ErrorPoint>> = vec![Vec::new(); outs.len()];
        for &eta in etas {
            let values = Values {
                small: eta,
                hypers: p.hypers.clone(),
                counter: 0,
            };
            let nums = Numbers {
                small: eta,
                hypers: p.hypers.clone(),
            };
            let syms =
                compile::symbol_values(sme, d, &nums, &p.rule.small.name).map_err(Error::Other)?;
            let symbols: BTreeMap<String, f64> = (0..syms.len())
                .filter_map(|i| sme.symbols.try_name(i).map(|nm| (nm.to_string(), syms[i])))
                .collect();
            let step = affine_step(&p.rule, &q, &values, &like).map_err(|e| not(&e))?;
            let sde = linear_sde(sme, &q, &symbols, &like).map_err(|e| not(&e))?;
            let steps = (p.problem.horizon / sde.tau).round().max(1.0) as usize;
            let (a, b) = laws(&step, &sde, &p.start, steps);
            for (j, &o) in outs.iter().enumerate() {
                let e = |law: &crate::numeric::linear_gaussian::Gaussian| {
                    let at = og.eval(&[o], &law.mean)[0];
                    let tr: f64 = (0..n)
                        .map(|i| {
                            (0..n)
                                .map(|k| hess_phi[j][i][k] * law.cov[i][k])
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
            let signs = points
                .iter()
                .filter(|q| q.resolved)
                .map(|q| q.error > 0.0)
                .collect::<std::collections::BTreeSet<_>>();
            let verdict = report::judge(
                fit.as_ref(),
                reached.1,
                signs.len() <= 1,
                "too few points with a non-zero error to fit a slope (an exact SME?)",
            );
            out.push(Series::new(
                (order, reached),
                names[j].clone(),
                points,
                fit,
                verdict,
            ));
        }
    }
    Ok(out)
}

/// The problem as `f(x) = ½ (x − x*)ᵀ H (x − x*)` plus a constant, with constant
/// Gaussian-noise covariance Σ; or why it is not one.
pub fn quadratic(
    model: &mut crate::problem::Model,
) -> Result<crate::numeric::linear_gaussian::Quadratic, String> {
    let d = model.dim;
    // f quadratic: ∇³f vanishes, ∇²f is a constant H.
    let third = model.df(3);
    if third.iter().any(|&n| model.graph.value(n) != Some(0.0)) {
        return Err("the objective is not quadratic (∇³f ≠ 0)".into());
    }
    let hess = model.df(2);
    let h = constant_matrix(&model.graph, &hess, d);
    if !model.constant_noise() {
        return Err("the noise covariance depends on x".into());
    }
    // x* from H x* = −∇f(0).
    let grad_ids = model.df(1);
    let grad0 = model.graph.eval(&grad_ids, &vec![0.0; d]);
    let (lam, v) = crate::numeric::exact::eigh(&h);
    let top = lam.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    if lam.iter().any(|l| l.abs() <= 1e-12 * top.max(1e-300)) {
        return Err("the Hessian is singular, so f has no unique stationary point".into());
    }
    let x_star: Vec<f64> = (0..d)
        .map(|i| {
            -(0..d)
                .map(|k| v[i][k] / lam[k] * (0..d).map(|j| v[j][k] * grad0[j]).sum::<f64>())
                .sum::<f64>()
        })
        .collect();
    let sig_ids = model.sigma();
    let sigma = constant_matrix(&model.graph, &sig_ids, d);
    crate::numeric::linear_gaussian::Quadratic::new(h, x_star, sigma)
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
