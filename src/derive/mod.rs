//! Phase 3: the SME of an update rule by one-step moment matching (DESIGN.md §1.3).
//!
//! 1. *Discrete side* (`expand.rs`): every update is expanded as a series in the small
//!    parameter ε (scalings substituted, the objective Taylor-expanded at shifted
//!    points), products of increments are multiplied out and averaged over the noise.
//! 2. *SDE side*: `E Π (Z_τ − z) = Σ_m τ^m/m! L^m Π (y − z)|_{y=z}` with the generator
//!    `L = b·∇ + ½ D:∇²`, τ the time of one step.
//! 3. *Solve order by order*: at each power ε^n the ε^n-coefficient of the first moments
//!    is linear in the next drift term, that of the second moments in the next diffusion
//!    term; moments of order `s ≥ 3` are consistency conditions.
//! 4. *Certify*: both sides re-expanded with the solved coefficients; every matched
//!    moment's residual is zero through the matched power.
//!
//! Order `p` means a weak error `O(τ^p)`; with `τ = c ε^q` the moments must agree
//! through `ε^{(p+1)q − 1}`. All of it runs on [`crate::algebra::tensor`] expressions, in `d`
//! dimensions and for any number of state variables.

mod ctx;
mod expand;
mod fast;
mod kink;
mod moments;

use crate::algebra::poly::{Poly, Sym};
use crate::algebra::tensor::{Atom, Kind, TExpr};
use crate::error::diagnostic::{Code, Diagnostic};
use crate::ir::Optimizer;
use crate::sme::{Condition, DiffusionBlock, Residual, Sme, StateInfo};
use crate::span::Span;
pub use ctx::PRODUCT_FACTOR;
use ctx::{tuple_labels, Ctx, Failure};
use expand::Expander;
pub use fast::{manifold_value, reduced_rule};
use moments::{Discrete, Sde};

/// What to derive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The weak order `p` (1, 2, 3, …).
    pub order: u32,
    /// The most terms one intermediate expression may hold (the CLI's `--max-terms`);
    /// beyond it the derivation stops with a `too-large` error. One product of two
    /// expressions may form at most [`PRODUCT_FACTOR`] times as many combinations of
    /// terms. Together they bound the time and the memory of a derivation.
    pub max_terms: usize,
    /// Told how far the derivation is, as it goes (the CLI draws a progress bar from it;
    /// the library itself never prints).
    pub progress: Option<Progress>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            order: 1,
            max_terms: MAX_TERMS,
            progress: None,
        }
    }
}

impl Options {
    /// The defaults, for weak order `order`.
    pub fn order(order: u32) -> Options {
        Options {
            order,
            ..Options::default()
        }
    }
}

/// How far a derivation is: `done` of `total` steps (one step matches one moment at one
/// power of the small parameter, or certifies one moment), and what it is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub done: usize,
    pub total: usize,
    pub what: String,
}

/// A callback for [`Step`]s ([`Options::progress`]). Two are equal when they are the
/// same callback.
#[derive(Clone)]
pub struct Progress(pub std::sync::Arc<dyn Fn(&Step) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

impl PartialEq for Progress {
    fn eq(&self, other: &Progress) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Progress {}

/// The highest order accepted.
pub const MAX_ORDER: u32 = 6;
/// The default of [`Options::max_terms`].
pub const MAX_TERMS: usize = 200_000;

/// Derives the SME of the given weak order.
pub fn derive(opt: &Optimizer, options: &Options) -> Result<Sme, crate::Error> {
    derive_inner(opt, options, false).map_err(Into::into)
}

/// The leading-order scan of [`crate::check`]: refuses a rule whose step is of higher
/// order than its declared time per step (the SME's drift and diffusion would vanish),
/// with the diagnostic [`derive()`] gives (code `time-scale`, at the `time` line). Other
/// failures of the derivation are left to [`derive()`], which reports them with its
/// options; this runs the order-1 derivation, milliseconds for the examples.
pub fn time_scale(opt: &Optimizer) -> Result<(), crate::Error> {
    match derive_inner(opt, &Options::order(1), false) {
        Err(Failure::Diagnostic(d)) if d.code == Code::TimeScale => {
            Err(crate::Error::Invalid(vec![*d]))
        }
        _ => Ok(()),
    }
}

/// The SME of the quadratic part only: f quadratic (∇³f and higher vanish) and the noise
/// moments constant. The Hessian-aware SME is read off this part at high order.
pub fn derive_quadratic(opt: &Optimizer, options: &Options) -> Result<Sme, crate::Error> {
    derive_inner(opt, options, true).map_err(Into::into)
}

/// The derivation in a fresh table of elementwise functions ([`crate::algebra::elem::scoped`]):
/// the thread's table is left as it was, and the result carries its own.
fn derive_inner(opt: &Optimizer, options: &Options, quadratic: bool) -> Result<Sme, Failure> {
    crate::algebra::elem::scoped(crate::algebra::elem::Table::default(), || {
        derive_in_scope(opt, options, quadratic)
    })
    .0
}

/// Every coefficient of `sme` reduced with `μ·κ = κ − 1` ([`Poly::reduce_complement`]).
fn reduce_complement(sme: &mut Sme, mu: Sym, kappa: Sym) {
    let r = |p: &Poly| p.reduce_complement(mu, kappa);
    for b in &mut sme.drift {
        *b = b.map_coef(r);
    }
    for d in &mut sme.diffusion {
        d.expr = d.expr.map_coef(r);
    }
    for c in &mut sme.conditions {
        c.residual = c.residual.map_coef(r);
    }
}

fn derive_in_scope(opt: &Optimizer, options: &Options, quadratic: bool) -> Result<Sme, Failure> {
    let p = options.order;
    if p == 0 || p > MAX_ORDER {
        return Err(Failure::Diagnostic(Box::new(
            Diagnostic::new(
                Code::Misuse,
                opt.header,
                format!("order {p} is out of range"),
            )
            .label("for this optimizer")
            .hint(format!("ask for an order between 1 and {MAX_ORDER}")),
        )));
    }
    // Fast states are eliminated first; the rest derives the reduced rule.
    if let Some(f) = fast::classify(opt, options.max_terms)? {
        let syms = Ctx::fresh(opt, options.max_terms, quadratic).syms;
        if p > 2 {
            return Err(Failure::Diagnostic(Box::new(
                Diagnostic::new(
                    Code::Unsupported,
                    opt.header,
                    format!("order {p} with the fast state `{}`", f.name),
                )
                .label("this optimizer has a state that relaxes at a fixed rate")
                .hint(format!("smelt eliminates a fast state at weak order 1 and 2 (the SME of the slow states, with the slow manifold's O({0}) correction); higher orders need the fast fluctuation's corrections, not derived: ask for weak order 2 or less, or scale the rate with the small parameter (`let mu = 1 - c*{0}`) to keep `{1}` as a state of the SME", opt.small.name, f.name)),
            )));
        }
        // Order 2 treats every other state as slow: a second fast state (an EMA feeding
        // a velocity) would be shifted as if it were slow, and its own fluctuation,
        // driven by the first's, enters the diffusion at leading order.
        if p == 2 {
            if let Some(g) = fast::another(opt, &f, options.max_terms) {
                return Err(Failure::Diagnostic(Box::new(
                    Diagnostic::new(
                        Code::Unsupported,
                        opt.header,
                        format!("order 2 with two fast states, `{}` and `{}`", f.name, g.name),
                    )
                    .label("this optimizer has two states that relax at fixed rates")
                    .hint(format!("smelt eliminates several fast states at weak order 1 (`--order 1`), one at order 2; or scale one rate with the small parameter (`1 - c*{}`) to keep that state in the SME", opt.small.name)),
                )));
            }
        }
        let reduced = if p == 1 {
            fast::eliminate(opt, &f, &syms)?
        } else {
            fast::eliminate2(opt, &f, &syms)?
        };
        let mut sme = derive_in_scope(&reduced.rule, options, quadratic)?;
        let mut notes = reduced.notes;
        if let Some((mu, kappa)) = &reduced.complement {
            if let (Some(m), Some(k)) = (sme.symbols.get(mu), sme.symbols.get(kappa)) {
                reduce_complement(&mut sme, m, k);
            }
            notes.push(format!(
                "{kappa} = 1/(1 − {mu}) stands for the division by 1 − {mu}; the coefficients are written with {kappa}·{mu} = {kappa} − 1, so that none has both"
            ));
        }
        sme.notes.splice(0..0, notes);
        sme.eliminated.insert(
            0,
            crate::sme::Eliminated {
                name: f.name.clone(),
                // The reduced rule interns the same symbols in the same order.
                rate: f.rate.clone(),
                scale: f.scale,
                complement: reduced.complement.map(|(_, k)| k),
            },
        );
        return Ok(sme);
    }
    let mut ctx = Ctx::fresh(opt, options.max_terms, quadratic);
    let (eps, dim) = (ctx.eps, ctx.dim);

    // The time of one step: c ε^q.
    let time = {
        let mut ex = Expander::new(opt, &mut ctx);
        ex.expand(&opt.time, 64)?
    };
    let time_poly = time.terms.values().next().cloned().unwrap_or_default();
    let q = match (time_poly.len(), time_poly.min_power(eps)) {
        (1, Some(q)) if q >= 1 => q,
        _ => {
            return Err(Failure::Diagnostic(Box::new(
                Diagnostic::new(
                    Code::Misuse,
                    opt.time_span,
                    "the time per step must be a single power of the small parameter",
                )
                .label("the time per step")
                .hint(format!(
                    "declare it as, e.g., `time {}` or `time {}^2`",
                    opt.small.name, opt.small.name
                )),
            )))
        }
    };
    ctx.time = time_poly.clone();
    ctx.time_power = q;
    if opt.counter.is_some() {
        // The clock: a scalar state that advances by the time of a step.
        let mut name = "t".to_string();
        while ctx.var_names.contains(&name) || opt.hypers.iter().any(|h| h.name == name) {
            name.push('_');
        }
        ctx.var_names.push(name);
        ctx.var_scalar.push(true);
        ctx.clock = Some((ctx.var_names.len() - 1) as u8);
    }
    let tau_coef = time_poly.coeff(eps, q);
    let tau_inv = tau_coef
        .inverse()
        .ok_or_else(|| Failure::Internal("time coefficient is a monomial".into()))?;

    // Match through ε^N; the leading diffusion may need up to q more powers.
    let n_match = (p as i32 + 1) * q - 1;
    let work = n_match + q;
    ctx.work = work;
    for (i, n) in opt.noises.iter().enumerate() {
        if let crate::ir::Law::Isotropic(scale) = &n.law {
            let p = Expander::new(opt, &mut ctx).constant(scale, work)?;
            ctx.sample_scale[i] = Some(p);
        }
    }

    // Increments through the power the matching needs so far: at first through that of
    // order 2 (with the leading diffusion's extra powers), deeper only when a higher
    // order is still matched; `work` at most.
    let mut have = work.min(4 * q - 1);
    let increments = expand_increments(opt, &mut ctx, have, &time_poly)?;
    let lowest = increments
        .iter()
        .flat_map(|inc| inc.terms.values().filter_map(|c| c.min_power(eps)))
        .min()
        .unwrap_or(work + 1)
        .max(1);
    if !ctx.kinks.is_empty() && p > 1 {
        return Err(Failure::Diagnostic(Box::new(
            Diagnostic::new(
                Code::Unsupported,
                opt.header,
                format!("order {p} through a Gaussian average of `sign` or `abs`"),
            )
            .label("this optimizer takes a kink of noise of order one")
            .hint("smelt averages kinks of Gaussian noise exactly at weak order 1 (the drift and diffusion of Compagnoni et al.); order 2 needs the derivatives of the bivariate normal terms, not derived yet: ask for weak order 1 (`derive --order 1`, `verify --orders 1`)"),
        )));
    }
    // Moments of order s are O(ε^{s·lowest}); beyond `work` they do not matter.
    let max_s = (n_match / lowest).max(2) as usize;

    // The one-step moments over every multiset of variables, computed lazily by power.
    let mut tuples: Vec<Vec<usize>> = Vec::new();
    for s in 1..=max_s {
        tuples.extend(multisets(ctx.nvars(), s));
    }
    let mut discrete = Discrete::new(&ctx, &increments, tuples.len());
    // The SDE side is asked through the power after the last matched one (certificate).
    let mut sde = Sde::new(&ctx, &tuples, q, tau_coef.clone(), (n_match + 1).min(work));

    // Solve order by order.
    let nv = ctx.nvars();
    let mut drift: Vec<TExpr> = (0..nv).map(|v| TExpr::zero(ctx.slots(v))).collect();
    let mut diff: Vec<Vec<TExpr>> = (0..nv)
        .map(|a| {
            (0..nv)
                .map(|c| TExpr::zero(ctx.slots(a) + ctx.slots(c)))
                .collect()
        })
        .collect();
    let mut conditions: Vec<Condition> = Vec::new();
    let mut failed_at: Option<i32> = None;
    let mut diffusion_from_next_order = false;
    // The last power matched: the order asked for, or, once an order fails, the order
    // after it (its conditions are reported too; higher orders are not examined).
    let mut last = n_match;
    let mut progress = Tracker::new(options, tuples.len());
    for n in 1..=work {
        let beyond = n > last;
        if beyond {
            // Only to find the leading diffusion when the order does not determine it.
            let any_noise = diff.iter().flatten().any(|d| !d.is_zero());
            if any_noise || failed_at.is_some() {
                break;
            }
            sde.reach(n);
        }
        if n > have {
            have = work.min(n.max(have + q));
            let deeper = expand_increments(opt, &mut ctx, have, &time_poly)?;
            discrete.deepen(&ctx, &deeper);
        }
        // Coefficients below ε^{n−q} are solved: what reads only them is final.
        sde.final_through = n - q - 1;
        for (id, t) in tuples.iter().enumerate() {
            let s = t.len();
            if beyond && s != 2 {
                continue;
            }
            progress.step(n, last, id, t, &ctx);
            if discrete.vanishes(t, n) && sde.vanishes(t, n) {
                continue;
            }
            let disc = discrete.coeff(&ctx, id, t, n)?;
            let moment = sde.coeff(&ctx, id, n)?;
            let residual = disc.sub(&moment).collect_elementwise(eps, dim);
            if residual.is_zero() {
                continue;
            }
            if n < q && s <= 2 {
                return Err(Failure::Diagnostic(Box::new(not_small(opt, &ctx, t, n, q))));
            }
            match s {
                1 => {
                    let a = t[0];
                    let add = residual.map_coef(|c| c.mul(&tau_inv).shift(eps, n - q));
                    drift[a].add_assign(&add);
                    sde.add_drift(a, n - q, &add);
                }
                2 => {
                    let (a, c) = (t[0], t[1]);
                    let add = residual.map_coef(|k| k.mul(&tau_inv).shift(eps, n - q));
                    diff[a][c].add_assign(&add);
                    sde.add_diffusion(a, c, n - q, &add);
                    if a != c {
                        let tr = transpose(&add, ctx.slots(a), ctx.slots(c));
                        diff[c][a].add_assign(&tr);
                        sde.add_diffusion(c, a, n - q, &tr);
                    }
                    if beyond {
                        diffusion_from_next_order = true;
                    }
                }
                _ => {
                    // ε^n must match for every order p with n ≤ (p+1)q − 1.
                    let needed = ((n + 1 + q - 1) / q - 1) as u32;
                    conditions.push(Condition {
                        vars: t.clone(),
                        power: n,
                        residual,
                        needed_for_order: needed.max(1),
                    });
                    failed_at.get_or_insert(n);
                }
            }
        }
        if let Some(f) = failed_at {
            // Order `reached + 1` fails at ε^f; the conditions of the order after it are
            // still derived, not those of any higher order.
            let reached = (f / q - 1).max(0);
            let cap = (reached + 3) * q - 1;
            if cap < last {
                last = cap;
                // Nothing beyond the certificate's power is needed any more.
                sde.n_max = sde.n_max.min(last + 1);
                let note = format!(
                    "order {} already fails, so the conditions of orders above {} were not derived",
                    reached + 1,
                    reached + 2
                );
                if !ctx.notes.contains(&note) {
                    ctx.notes.push(note);
                }
            }
        }
        ctx.check_size(&drift[0], Span::default())?;
    }
    if let Some(d) = time_too_long(opt, &ctx, (&drift, &diff), (&tuples, &mut discrete))? {
        return Err(Failure::Diagnostic(Box::new(d)));
    }

    // The order reached: all moments match through ε^{failed − 1}.
    let matched = failed_at.map_or(n_match, |f| (f - 1).min(n_match));
    let order = ((matched + 1) / q - 1).max(0) as u32;
    let matched = if order < p {
        (order as i32 + 1) * q - 1
    } else {
        n_match
    };
    // Keep the coefficients the reached order needs (the leading diffusion always);
    // when no order is reached, those of order 1, which the first two moments fix.
    let keep_drift = if order == 0 {
        2 * q - 1 - q
    } else {
        matched - q
    };
    let solved = (drift.clone(), diff.clone());
    for b in &mut drift {
        *b = b.map_coef(|c| c.truncate(eps, keep_drift));
    }
    if !diffusion_from_next_order {
        for row in &mut diff {
            for d in row.iter_mut() {
                *d = d.map_coef(|c| c.truncate(eps, keep_drift.max(lowest_power(d, eps))));
            }
        }
    }

    // Certificate: re-expand both sides through one power beyond the matched one.
    // Averaged kinks: their bivariate means are not differentiated yet, so the
    // certificate stops at the matched power.
    let averaged = !ctx.kinks.is_empty();
    let top = if averaged {
        matched
    } else {
        (matched + 1).min(work)
    };
    let expanded = if averaged {
        matched
    } else {
        (last + q).min(work)
    };
    if expanded > have {
        let deeper = expand_increments(opt, &mut ctx, expanded, &time_poly)?;
        discrete.deepen(&ctx, &deeper);
    }
    let mut sde = if solved == (drift.clone(), diff.clone()) {
        sde.final_through = i32::MAX;
        sde
    } else {
        Sde::with(&ctx, &tuples, q, tau_coef.clone(), work, &drift, &diff)
    };
    let mut certificate = Vec::new();
    for (id, t) in tuples.iter().enumerate() {
        if t.len() as i32 * lowest > matched {
            continue;
        }
        progress.certify(id, t, &ctx);
        // The discrete side through the last power expanded, the SDE side through `top`,
        // collected as one expression (elementwise functions combine across the powers).
        let mut all = TExpr::zero(tuple_labels(&ctx, t).1);
        for n in 1..=expanded {
            let d = discrete.coeff(&ctx, id, t, n)?;
            all.add_assign(&d.map_coef(|c| c.shift(eps, n)));
            if n <= top {
                let m = sde.coeff(&ctx, id, n)?;
                all = all.sub(&m.map_coef(|c| c.shift(eps, n)));
            }
        }
        let all = all.collect_elementwise(eps, dim);
        let mut leading = None;
        let mut through = 0;
        for n in 1..=top {
            let r = all.map_coef(|c| c.coeff(eps, n));
            if !r.is_zero() {
                if n <= matched {
                    return Err(Failure::Internal(format!(
                        "certificate failed: moment {t:?} differs at power {n}"
                    )));
                }
                leading = Some((n, r.len()));
                break;
            }
            through = n;
        }
        certificate.push(Residual {
            vars: t.clone(),
            matched_through: through.min(matched),
            leading,
        });
    }
    progress.finish();

    let diffusion = (0..nv)
        .flat_map(|a| (a..nv).map(move |c| (a, c)))
        .map(|(a, c)| DiffusionBlock {
            rows: a,
            cols: c,
            expr: diff[a][c].clone(),
        })
        .collect();
    // Keep only the elementwise functions the result refers to, renumbered.
    let (drift, diffusion, conditions, elem) = prune_functions(drift, diffusion, conditions, dim);
    Ok(Sme {
        optimizer: opt.name.clone(),
        requested_order: p,
        order,
        symbols: ctx.syms.clone(),
        small: eps,
        dim,
        time: time_poly,
        time_power: q,
        vars: ctx
            .var_names
            .iter()
            .zip(&ctx.var_scalar)
            .map(|(n, s)| StateInfo {
                name: n.clone(),
                scalar: *s,
            })
            .collect(),
        drift,
        diffusion,
        diffusion_from_next_order,
        noise: opt
            .noises
            .iter()
            .zip(&ctx.sample_scale)
            .map(|(n, scale)| crate::sme::NoiseInfo {
                name: n.name.clone(),
                kind: n.kind,
                scale: scale.clone(),
            })
            .collect(),
        conditions,
        certificate,
        elem,
        clock: ctx.clock.map(usize::from),
        eliminated: Vec::new(),
        notes: ctx.notes.clone(),
        independent: None,
    })
}

/// The result's expressions over a table of just the functions they use.
fn prune_functions(
    drift: Vec<TExpr>,
    diffusion: Vec<DiffusionBlock>,
    conditions: Vec<Condition>,
    dim: Sym,
) -> (
    Vec<TExpr>,
    Vec<DiffusionBlock>,
    Vec<Condition>,
    crate::algebra::elem::Table,
) {
    let old = crate::algebra::elem::snapshot();
    let mut used: Vec<u32> = Vec::new();
    let mut pairs: Vec<u32> = Vec::new();
    let mut note = |e: &TExpr| {
        for t in e.terms.keys() {
            for a in &t.atoms {
                let id = match a.kind {
                    Kind::Elem(id) => id,
                    Kind::Pair(p) => {
                        if !pairs.contains(&p) {
                            pairs.push(p);
                        }
                        old.pairs[p as usize].diag
                    }
                    _ => continue,
                };
                if !used.contains(&id) {
                    used.push(id);
                }
            }
        }
    };
    drift.iter().for_each(&mut note);
    diffusion.iter().for_each(|d| note(&d.expr));
    conditions.iter().for_each(|c| note(&c.residual));
    let mut table = crate::algebra::elem::Table::default();
    for id in &used {
        table.push(old.get(*id).clone());
    }
    for p in &pairs {
        let mut pair = old.pairs[*p as usize].clone();
        pair.diag = used.iter().position(|u| *u == pair.diag).expect("noted") as u32;
        table.pairs.push(pair);
    }
    crate::algebra::elem::install(table.clone());
    let remap = |e: &TExpr| {
        let mut out = TExpr::zero(e.free);
        for (t, c) in &e.terms {
            let atoms = t
                .atoms
                .iter()
                .map(|a| match a.kind {
                    Kind::Elem(id) => {
                        let new = used.iter().position(|u| *u == id).expect("noted") as u32;
                        Atom::new(Kind::Elem(new), a.idx.clone())
                    }
                    Kind::Pair(id) => {
                        let new = pairs.iter().position(|u| *u == id).expect("noted") as u32;
                        Atom::new(Kind::Pair(new), a.idx.clone())
                    }
                    _ => a.clone(),
                })
                .collect();
            out.add_raw(atoms, c.clone(), dim);
        }
        out
    };
    let drift = drift.iter().map(remap).collect();
    let diffusion = diffusion
        .into_iter()
        .map(|d| DiffusionBlock {
            expr: remap(&d.expr),
            ..d
        })
        .collect();
    let conditions = conditions
        .into_iter()
        .map(|c| Condition {
            residual: remap(&c.residual),
            ..c
        })
        .collect();
    (drift, diffusion, conditions, table)
}

/// When no state's drift or diffusion has a term of order 1, the step moves the state
/// on a slower scale than the declared time per step: the SME would say that nothing
/// happens. Names the power of the small parameter that would fit: the lowest power in
/// the step's first and second moments.
fn time_too_long(
    opt: &Optimizer,
    ctx: &Ctx,
    (drift, diff): (&[TExpr], &[Vec<TExpr>]),
    (tuples, discrete): (&[Vec<usize>], &mut Discrete),
) -> Result<Option<Diagnostic>, Failure> {
    let eps = ctx.eps;
    let lowest = |e: &TExpr| e.terms.values().filter_map(|c| c.min_power(eps)).min();
    let moving = |v: &usize| Some(*v as u8) != ctx.clock;
    let leading = (0..drift.len()).filter(moving).any(|v| {
        lowest(&drift[v]) == Some(0)
            || (0..drift.len())
                .filter(moving)
                .any(|c| lowest(&diff[v][c]) == Some(0))
    });
    if leading {
        return Ok(None);
    }
    // (power, variable, whether the mean or the covariance) of the moments' leading term.
    let mut first: Option<(i32, usize, bool)> = None;
    for (id, t) in tuples.iter().enumerate() {
        if t.len() > 2 || !t.iter().all(moving) {
            continue;
        }
        for n in 0..=ctx.work {
            if discrete.vanishes(t, n) || discrete.coeff(ctx, id, t, n)?.is_zero() {
                continue;
            }
            let here = (n, t[0], t.len() == 1);
            if first.is_none_or(|f| (here.0, here.1, !here.2) < (f.0, f.1, !f.2)) {
                first = Some(here);
            }
            break;
        }
    }
    let small = &opt.small.name;
    let q = ctx.time_power;
    let declared = if opt.time_span == opt.header {
        format!("{} (the default)", power(small, q))
    } else {
        power(small, q)
    };
    let d = Diagnostic::new(
        Code::TimeScale,
        opt.time_span,
        format!(
            "the time scale is wrong: one step is time {declared}, but the step's mean and covariance are of higher order, so the SME's drift and diffusion would vanish at leading order"
        ),
    )
    .label("the time per step is too long for the step");
    Ok(Some(match first {
        Some((k, v, mean)) => {
            let name = &ctx.var_names[v];
            let what = if mean { "mean" } else { "covariance" };
            let d = match opt
                .steps
                .iter()
                .find(|s| s.target == crate::ir::Target::Var(name.clone()))
            {
                Some(step) => d.secondary(
                    step.span,
                    format!("the {what} of this update is of order {}", power(small, k)),
                ),
                None => d,
            };
            d.hint(format!(
                "declare `time {}`, the order of the step's {what}, so that one step's change is O(time)",
                power(small, k)
            ))
        }
        None => d.hint(format!(
            "the step's mean and covariance vanish through {}: declare the time per step as the power of `{small}` at which the step moves the state",
            power(small, ctx.work)
        )),
    }))
}

fn lowest_power(e: &TExpr, eps: Sym) -> i32 {
    e.terms
        .values()
        .filter_map(|c| c.min_power(eps))
        .min()
        .unwrap_or(0)
}

fn not_small(opt: &Optimizer, ctx: &Ctx, t: &[usize], n: i32, q: i32) -> Diagnostic {
    let name = &ctx.var_names[t[0]];
    let span = opt
        .steps
        .iter()
        .find(|s| s.target == crate::ir::Target::Var(name.clone()))
        .map_or(opt.header, |s| s.span);
    let small = &opt.small.name;
    let what = if t.len() == 1 {
        format!(
            "the mean increment of `{name}` is of order {}",
            power(small, n)
        )
    } else {
        format!(
            "the fluctuation of `{name}` is of order {small}^{}",
            n as f64 / 2.0
        )
    };
    Diagnostic::new(
        Code::NotSmall,
        span,
        format!("{what}, but one step is time {small}^{q}: the SDE's drift or diffusion would blow up"),
    )
    .label("this update is too large for the declared time per step")
    .hint(if t.len() == 1 {
        format!(
            "declare `time {}` to match the size of the step, or scale the hyperparameters so that each step moves `{name}` by O({small}^{q})",
            power(small, n)
        )
    } else {
        format!(
            "scale the noise so that the step's covariance is O({small}^{q}), or declare `time {}`",
            power(small, n)
        )
    })
}

/// `eta`, `eta^2`: a power as the language writes it.
fn power(name: &str, n: i32) -> String {
    if n == 1 {
        name.to_string()
    } else {
        format!("{name}^{n}")
    }
}

/// All multisets of size `s` from `0..n`, as sorted tuples.
fn multisets(n: usize, s: usize) -> Vec<Vec<usize>> {
    fn go(n: usize, s: usize, start: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == s {
            out.push(cur.clone());
            return;
        }
        for v in start..n {
            cur.push(v);
            go(n, s, v, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(n, s, 0, &mut Vec::new(), &mut out);
    out
}

/// Transposition never contracts a δ with itself, so no dimension symbol arises.
const DIM_UNUSED: Sym = 0;

/// Swaps the row and column index groups of a diffusion block.
fn transpose(e: &TExpr, ra: u8, rc: u8) -> TExpr {
    if ra + rc < 2 {
        return e.clone();
    }
    let mut out = TExpr::zero(e.free);
    for (t, c) in &e.terms {
        let (atoms, _) = crate::algebra::tensor::relabel(t, 2, &[1, 0], 2);
        out.add_raw(atoms, c.clone(), DIM_UNUSED);
    }
    out
}

/// Reports how far the derivation is to [`Options::progress`].
struct Tracker<'a> {
    callback: Option<&'a Progress>,
    moments: usize,
    last: i32,
}

impl<'a> Tracker<'a> {
    fn new(options: &'a Options, moments: usize) -> Tracker<'a> {
        Tracker {
            callback: options.progress.as_ref(),
            moments,
            last: 1,
        }
    }

    fn report(&self, done: usize, what: impl FnOnce() -> String) {
        if let Some(cb) = self.callback {
            let total = (self.last.max(1) as usize + 1) * self.moments;
            (cb.0)(&Step {
                done,
                total: total.max(done + 1),
                what: what(),
            });
        }
    }

    /// Matching moment `id` (over `t`) at ε^n, of ε^last.
    fn step(&mut self, n: i32, last: i32, id: usize, t: &[usize], ctx: &Ctx) {
        self.last = last;
        let done = (n.max(1) as usize - 1) * self.moments + id;
        self.report(done, || {
            format!(
                "{} at {}^{n} of {}^{last}",
                moment_name(ctx, t),
                ctx.syms.name(ctx.eps),
                ctx.syms.name(ctx.eps)
            )
        });
    }

    /// Certifying moment `id`.
    fn certify(&mut self, id: usize, t: &[usize], ctx: &Ctx) {
        let done = self.last.max(1) as usize * self.moments + id;
        self.report(done, || format!("certificate of {}", moment_name(ctx, t)));
    }

    fn finish(&mut self) {
        let done = (self.last.max(1) as usize + 1) * self.moments;
        self.report(done.saturating_sub(1), || "done".to_string());
    }
}

/// `E[Δx ⊗ Δm]`.
fn moment_name(ctx: &Ctx, t: &[usize]) -> String {
    let parts: Vec<String> = t
        .iter()
        .map(|&v| format!("Δ{}", ctx.var_names[v]))
        .collect();
    format!("E[{}]", parts.join(" ⊗ "))
}

/// The increments of all state variables through power `upto`.
fn expand_increments(
    opt: &Optimizer,
    ctx: &mut Ctx,
    upto: i32,
    time: &Poly,
) -> Result<Vec<TExpr>, Failure> {
    let names = ctx.var_names.clone();
    let mut ex = Expander::new(opt, ctx);
    let mut increments = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if Some(i as u8) == ex.ctx.clock {
            increments.push(TExpr::scalar(time.clone()));
        } else {
            increments.push(ex.increment(name, upto)?);
        }
    }
    Ok(increments)
}
