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
//! through `ε^{(p+1)q − 1}`. All of it runs on [`crate::tensor`] expressions, in `d`
//! dimensions and for any number of state variables.

mod expand;

use crate::diagnostic::{Code, Diagnostic};
use crate::ir::{Optimizer, Shape};
use crate::poly::{Poly, Sym, Symbols};
use crate::sme::{Condition, DiffusionBlock, Residual, Sme, StateInfo};
use crate::span::Span;
use crate::syntax::NoiseKind;
use crate::tensor::{derivative, product, Atom, Kind, Label, Part, TExpr, Vars};
use expand::{expectation, Expander};

/// What to derive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The weak order `p` (1, 2, 3, …).
    pub order: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options { order: 1 }
    }
}

/// The highest order accepted.
pub const MAX_ORDER: u32 = 6;
/// The most terms any intermediate expression may have.
pub const MAX_TERMS: usize = 200_000;

/// Why a derivation stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    Diagnostic(Box<Diagnostic>),
    Internal(String),
}

impl From<Failure> for crate::Error {
    fn from(f: Failure) -> crate::Error {
        match f {
            Failure::Diagnostic(d) => crate::Error::Invalid(vec![*d]),
            Failure::Internal(msg) => crate::Error::Internal(msg),
        }
    }
}

/// Shared state of one derivation.
pub(crate) struct Ctx {
    pub syms: Symbols,
    pub eps: Sym,
    pub dim: Sym,
    pub var_names: Vec<String>,
    pub var_scalar: Vec<bool>,
    pub sample_names: Vec<String>,
    pub sample_kind: Vec<NoiseKind>,
    /// Displacements of the points at which noise is evaluated (0: the parameter).
    pub points: Vec<TExpr>,
    /// The highest power of ε any expansion needs.
    pub work: i32,
    /// The time of one step, `c ε^q`, and `q`.
    pub time: Poly,
    pub time_power: i32,
    /// The clock `t`, a scalar state added when the rule reads the step counter.
    pub clock: Option<u8>,
    /// Remarks on the validity of the expansion, for the result.
    pub notes: Vec<String>,
    /// Only the quadratic part: f quadratic, Σ constant ([`Options::quadratic`]).
    pub quadratic: bool,
}

impl Ctx {
    pub fn var_id(&self, name: &str) -> u8 {
        self.var_names
            .iter()
            .position(|n| n == name)
            .expect("lowering resolved every variable") as u8
    }

    pub fn sample_id(&self, name: &str) -> u8 {
        self.sample_names
            .iter()
            .position(|n| n == name)
            .expect("lowering resolved every noise sample") as u8
    }

    pub fn check_size(&self, e: &TExpr, span: Span) -> Result<(), Failure> {
        if e.len() > MAX_TERMS {
            return Err(Failure::Diagnostic(Box::new(
                Diagnostic::new(
                    Code::TooLarge,
                    span,
                    format!("the expansion grew beyond {MAX_TERMS} terms"),
                )
                .label("while expanding this")
                .hint("ask for a lower order, or simplify the rule"),
            )));
        }
        Ok(())
    }

    fn keep(&self, upto: i32) -> impl Fn(&Poly) -> Poly + '_ {
        let eps = self.eps;
        move |p: &Poly| p.truncate(eps, upto)
    }

    fn nvars(&self) -> usize {
        self.var_names.len()
    }

    fn slots(&self, v: usize) -> u8 {
        if self.var_scalar[v] {
            0
        } else {
            1
        }
    }
}

/// Derives the SME of the given weak order.
pub fn derive(opt: &Optimizer, options: &Options) -> Result<Sme, crate::Error> {
    derive_inner(opt, options, false).map_err(Into::into)
}

/// The SME of the quadratic part only: f quadratic (∇³f and higher vanish) and the noise
/// moments constant. The Hessian-aware SME is read off this part at high order.
pub fn derive_quadratic(opt: &Optimizer, options: &Options) -> Result<Sme, crate::Error> {
    derive_inner(opt, options, true).map_err(Into::into)
}

fn derive_inner(opt: &Optimizer, options: &Options, quadratic: bool) -> Result<Sme, Failure> {
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
    crate::elem::reset();
    let mut syms = Symbols::default();
    let dim = syms.intern("d");
    let eps = syms.intern(&opt.small.name);
    for h in &opt.hypers {
        syms.intern(&h.name);
    }
    let mut var_names = vec![opt.param.name.clone()];
    let mut var_scalar = vec![false];
    for s in &opt.states {
        var_names.push(s.name.clone());
        var_scalar.push(s.shape == Shape::Scalar);
    }
    let mut ctx = Ctx {
        syms,
        eps,
        dim,
        var_names,
        var_scalar,
        sample_names: opt.noises.iter().map(|n| n.name.clone()).collect(),
        sample_kind: opt.noises.iter().map(|n| n.kind).collect(),
        points: vec![TExpr::zero(1)],
        work: 0,
        time: Poly::one(),
        time_power: 1,
        clock: None,
        notes: Vec::new(),
        quadratic,
    };

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

    // Increments through `work`.
    let mut increments = Vec::new();
    {
        let names = ctx.var_names.clone();
        let mut ex = Expander::new(opt, &mut ctx);
        for (i, name) in names.iter().enumerate() {
            if Some(i as u8) == ex.ctx.clock {
                increments.push(TExpr::scalar(time_poly.clone()));
            } else {
                increments.push(ex.increment(name, work)?);
            }
        }
    }
    let lowest = increments
        .iter()
        .flat_map(|inc| inc.terms.values().filter_map(|c| c.min_power(eps)))
        .min()
        .unwrap_or(work + 1)
        .max(1);
    // Moments of order s are O(ε^{s·lowest}); beyond `work` they do not matter.
    let max_s = (n_match / lowest).max(2) as usize;

    // Discrete moments E[Δ_{a1} ⊗ … ⊗ Δ_{as}] for every multiset of variables.
    let mut tuples: Vec<Vec<usize>> = Vec::new();
    for s in 1..=max_s {
        tuples.extend(multisets(ctx.nvars(), s));
    }
    let mut discrete: Vec<TExpr> = Vec::new();
    for t in &tuples {
        discrete.push(discrete_moment(&ctx, &increments, t, work)?);
    }

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
    for n in 1..=work {
        let beyond = n > n_match;
        if beyond {
            // Only to find the leading diffusion when the order does not determine it.
            let any_noise = diff.iter().flatten().any(|d| !d.is_zero());
            if any_noise || failed_at.is_some() {
                break;
            }
        }
        for (t, disc) in tuples.iter().zip(&discrete) {
            let s = t.len();
            if beyond && s != 2 {
                continue;
            }
            let sde = sde_moment(&ctx, &drift, &diff, t, n, q, &time_poly)?;
            let residual = disc
                .sub(&sde)
                .map_coef(|c| c.coeff(eps, n))
                .collect_elementwise(eps, dim);
            if residual.is_zero() {
                continue;
            }
            if n < q && s <= 2 {
                return Err(Failure::Diagnostic(Box::new(not_small(opt, &ctx, t, n, q))));
            }
            match s {
                1 => {
                    let a = t[0];
                    drift[a].add_assign(&residual.map_coef(|c| c.mul(&tau_inv).shift(eps, n - q)));
                }
                2 => {
                    let (a, c) = (t[0], t[1]);
                    let add = residual.map_coef(|k| k.mul(&tau_inv).shift(eps, n - q));
                    diff[a][c].add_assign(&add);
                    if a != c {
                        diff[c][a].add_assign(&transpose(&add, ctx.slots(a), ctx.slots(c)));
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
        ctx.check_size(&drift[0], Span::default())?;
    }
    if let Some(d) = time_too_long(opt, &ctx, (&drift, &diff), (&tuples, &discrete)) {
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
    let mut certificate = Vec::new();
    for (t, disc) in tuples.iter().zip(&discrete) {
        if t.len() as i32 * lowest > matched {
            continue;
        }
        // One full re-expansion of the SDE side with the final coefficients.
        let top = (matched + 1).min(work);
        let sde = sde_moment(&ctx, &drift, &diff, t, top, q, &time_poly)?;
        let diff_all = disc.sub(&sde).collect_elementwise(eps, dim);
        let mut leading = None;
        let mut through = 0;
        for n in 1..=top {
            let r = diff_all.map_coef(|c| c.coeff(eps, n));
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
            .map(|n| (n.name.clone(), n.kind))
            .collect(),
        conditions,
        certificate,
        elem,
        clock: ctx.clock.map(usize::from),
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
    crate::elem::Table,
) {
    let old = crate::elem::snapshot();
    let mut used: Vec<u32> = Vec::new();
    let mut note = |e: &TExpr| {
        for t in e.terms.keys() {
            for a in &t.atoms {
                if let Kind::Elem(id) = a.kind {
                    if !used.contains(&id) {
                        used.push(id);
                    }
                }
            }
        }
    };
    drift.iter().for_each(&mut note);
    diffusion.iter().for_each(|d| note(&d.expr));
    conditions.iter().for_each(|c| note(&c.residual));
    let mut table = crate::elem::Table::default();
    for id in &used {
        table.push(old.get(*id).clone());
    }
    crate::elem::install(table.clone());
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
    (tuples, discrete): (&[Vec<usize>], &[TExpr]),
) -> Option<Diagnostic> {
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
        return None;
    }
    // (power, variable, whether the mean or the covariance) of the moments' leading term.
    let first = tuples
        .iter()
        .zip(discrete)
        .filter(|(t, _)| t.len() <= 2 && t.iter().all(moving))
        .filter_map(|(t, m)| Some((lowest(m)?, t[0], t.len() == 1)))
        .min_by_key(|&(k, v, mean)| (k, v, !mean));
    let small = &opt.small.name;
    let q = ctx.time_power;
    let declared = if opt.time_span == opt.header {
        format!("{} (the default)", power(small, q))
    } else {
        power(small, q)
    };
    let d = Diagnostic::new(
        Code::Misuse,
        opt.time_span,
        format!(
            "the time scale is wrong: one step is time {declared}, but the step's mean and covariance are of higher order, so the SME's drift and diffusion would vanish at leading order"
        ),
    )
    .label("the time per step is too long for the step");
    Some(match first {
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
    })
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

/// Output labels of each factor of a moment over `tuple`: vector variables get the next
/// free index, scalar ones none.
fn tuple_labels(ctx: &Ctx, tuple: &[usize]) -> (Vec<Vec<Label>>, u8) {
    let mut next = 0u8;
    let labels = tuple
        .iter()
        .map(|&v| {
            if ctx.var_scalar[v] {
                vec![]
            } else {
                next += 1;
                vec![next - 1]
            }
        })
        .collect();
    (labels, next)
}

fn discrete_moment(ctx: &Ctx, inc: &[TExpr], tuple: &[usize], work: i32) -> Result<TExpr, Failure> {
    let (labels, free) = tuple_labels(ctx, tuple);
    let parts: Vec<Part> = tuple
        .iter()
        .zip(labels)
        .map(|(&v, labels)| Part {
            expr: &inc[v],
            labels,
        })
        .collect();
    let prod = product(&parts, free, &ctx.keep(work), ctx.dim);
    ctx.check_size(&prod, Span::default())?;
    expectation(ctx, &prod, work)
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
        let (atoms, _) = crate::tensor::relabel(t, 2, &[1, 0], 2);
        out.add_raw(atoms, c.clone(), DIM_UNUSED);
    }
    out
}

/// The SDE's one-step moment over `tuple`, coefficient of ε^n only needed (terms of
/// higher power are dropped early).
fn sde_moment(
    ctx: &Ctx,
    drift: &[TExpr],
    diff: &[Vec<TExpr>],
    tuple: &[usize],
    n: i32,
    q: i32,
    tau: &Poly,
) -> Result<TExpr, Failure> {
    let eps = ctx.eps;
    let (labels, free) = tuple_labels(ctx, tuple);
    let atoms: Vec<Atom> = tuple
        .iter()
        .zip(&labels)
        .map(|(&v, l)| Atom::new(Kind::Disp(v as u8), l.clone()))
        .collect();
    let s = tuple.len() as i32;
    let psi = TExpr::from_atoms(atoms, free, Poly::one(), ctx.dim);
    let max_m = n / q;
    let disps = |t: &crate::tensor::Term| {
        t.atoms
            .iter()
            .filter(|a| matches!(a.kind, Kind::Disp(_)))
            .count() as i32
    };
    let mut total = TExpr::zero(free);
    let mut current = psi;
    let _ = s;
    for m in 1..=max_m {
        // current ← τ/m · L current, pruned: each remaining displacement needs at
        // least half an application, each application costs q powers of ε.
        let next = generator(ctx, &current, drift, diff, n)?;
        let scaled = next.map_coef(|c| {
            c.mul(tau)
                .scale(&num_rational::BigRational::new(1.into(), (m as i64).into()))
                .truncate(eps, n)
        });
        let mut pruned = TExpr::zero(free);
        for (t, c) in &scaled.terms {
            let d = disps(t);
            let need = (d + 1) / 2;
            let lowest = c.min_power(eps).unwrap_or(0);
            if d > 2 * (max_m - m) || lowest + need * q > n {
                continue;
            }
            if d == 0 {
                // Evaluated at y = z it contributes now; L keeps acting on it too.
                total.add_term(t.clone(), c);
                if lowest + q > n {
                    continue;
                }
            }
            pruned.add_term(t.clone(), c);
        }
        ctx.check_size(&pruned, Span::default())?;
        current = pruned;
        if current.is_zero() {
            break;
        }
    }
    Ok(total)
}

/// `L φ = Σ_a b^a·∂_a φ + ½ Σ_{a,c} D^{ac} : ∂_a ∂_c φ`, truncated at ε^n.
fn generator(
    ctx: &Ctx,
    phi: &TExpr,
    drift: &[TExpr],
    diff: &[Vec<TExpr>],
    n: i32,
) -> Result<TExpr, Failure> {
    let scalar = |v: u8| ctx.var_scalar[v as usize];
    let vars = Vars {
        scalar: &scalar,
        quadratic: ctx.quadratic,
    };
    let f = phi.free;
    let keep = ctx.keep(n);
    let mut out = TExpr::zero(f);
    let base: Vec<Label> = (0..f).collect();
    for a in 0..ctx.nvars() {
        let ka = ctx.slots(a);
        let da = derivative(phi, a as u8, &vars, ctx.dim);
        if da.is_zero() {
            continue;
        }
        if !drift[a].is_zero() {
            let mut l = base.clone();
            let bl: Vec<Label> = if ka == 1 { vec![f] } else { vec![] };
            l.extend(&bl);
            out.add_assign(&product(
                &[
                    Part {
                        expr: &da,
                        labels: l,
                    },
                    Part {
                        expr: &drift[a],
                        labels: bl,
                    },
                ],
                f,
                &keep,
                ctx.dim,
            ));
        }
        for (c, block) in diff[a].iter().enumerate() {
            if block.is_zero() {
                continue;
            }
            let kc = ctx.slots(c);
            let dac = derivative(&da, c as u8, &vars, ctx.dim);
            if dac.is_zero() {
                continue;
            }
            let mut l = base.clone();
            let mut dl = Vec::new();
            if ka == 1 {
                l.push(f);
                dl.push(f);
            }
            if kc == 1 {
                l.push(f + ka);
                dl.push(f + ka);
            }
            let half = Poly::constant(num_rational::BigRational::new(1.into(), 2.into()));
            out.add_assign(
                &product(
                    &[
                        Part {
                            expr: &dac,
                            labels: l,
                        },
                        Part {
                            expr: &diff[a][c],
                            labels: dl,
                        },
                    ],
                    f,
                    &keep,
                    ctx.dim,
                )
                .scale(&half),
            );
        }
    }
    ctx.check_size(&out, Span::default())?;
    Ok(out)
}
