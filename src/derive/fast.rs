//! Fast states: a state whose update contracts it at a fixed rate, `u' = μ u + F` with μ
//! a constant of the hyperparameters (heavy ball with μ = 0.9, an EMA of the gradient
//! with a fixed β), relaxes in O(1/(1 − μ)) steps while the parameter moves by O(ε) per
//! step. It is *fast*, and eliminated (Kovachki & Stuart, "Continuous time analysis of
//! momentum methods", JMLR 22, 2021; shared/FORMULAS.md §3.2).
//!
//! **Detection.** The step's new value of a state `u`, expanded at ε⁰, is `μ u + F₀` with
//! μ ≠ 1 a constant and `F₀` free of `u`. Where `F₀ = 0` (heavy ball written `v = μ v −
//! η g`), the state is small: it is divided by ε^p, the first power at which its forcing
//! appears, and the test is made again (so `v = O(η)` and `v/η` is the fast variable).
//!
//! **Elimination at order 1.** With `u` affine in every slow update, the change of
//! variables `y = x + c u` (`c = O(ε)`, chosen to cancel `u` from `y`'s update) shows
//! that the slow states follow the rule with `u` replaced by `F/(1 − μ)`, F taken with
//! the step's own noise: its mean is `u`'s stationary mean, and the noise of one step,
//! which `u` carries into the O(1/(1 − μ)) steps that follow, enters with its total
//! weight `1/(1 − μ)`. So the reduced rule is derived by the usual expansion; the
//! difference `x − y = O(ε)` and the fast fluctuation affect order 2 only. Heavy ball
//! with fixed μ becomes SGD with learning rate `η/(1 − μ)`, Adam with a fixed β₁
//! (and its second moment slow) becomes RMSprop's rule on the gradient.
//!
//! **Elimination at order 2** ([`eliminate2`]). The rule is rewritten for
//! `X = Y − C ū(Y)`, `Y = x + C u`, a Markov rule whose one-step moments follow the
//! optimizer's slow states through O(ε³), and derived by the usual engine: the slow
//! manifold's O(ε) terms and the change of variables come out of the expansion.
//!
//! **Rates.** μ is a number, or a hyperparameter with a symbol κ = 1/(1 − μ) of its own
//! ([`Rate`]); `fast u` / `slow u` in the rule override the detection ([`classify`]).

use super::ctx::{Ctx, Failure};
use super::expand::Expander;
use crate::algebra::poly::{Poly, Symbols};
use crate::algebra::tensor::{Kind, TExpr};
use crate::error::diagnostic::{Code, Diagnostic};
use crate::ir::{BinOp, Expr, ExprKind, Optimizer, Shape, Step, Target, Version};
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};

/// A state the rule relaxes at a fixed rate.
#[derive(Debug, Clone)]
pub(crate) struct Fast {
    pub name: String,
    /// μ: the new value is `μ u + F`.
    pub rate: Poly,
    /// The state is of order ε^scale on its slow manifold.
    pub scale: i32,
}

/// The first fast state of `opt`, in declaration order (the derivation of the reduced
/// rule looks for the next).
///
/// A state declared `slow` is never fast; one declared `fast` must be (else the
/// declaration is refused, at its line).
pub(crate) fn classify(opt: &Optimizer, max_terms: usize) -> Result<Option<Fast>, Failure> {
    for s in &opt.states {
        match s.timescale {
            Some((crate::ir::Timescale::Slow, _)) => continue,
            Some((crate::ir::Timescale::Fast, span)) => {
                return match classify_state(opt, &s.name, max_terms) {
                    Some(f) => Ok(Some(f)),
                    None => Err(Failure::Diagnostic(Box::new(
                        Diagnostic::new(
                            Code::Declaration,
                            span,
                            format!("`{}` is declared fast, but its update does not relax it at a fixed rate", s.name),
                        )
                        .label("declared fast here")
                        .hint(format!(
                            "a fast state's new value is `mu*{0} + F` at leading order, with mu a constant other than 1 and F free of `{0}` (heavy ball: `v = mu*v - eta*g`); remove `fast {0}` to let smelt classify it",
                            s.name
                        )),
                    ))),
                };
            }
            None => {
                if let Some(f) = classify_state(opt, &s.name, max_terms) {
                    return Ok(Some(f));
                }
            }
        }
    }
    Ok(None)
}

/// A fast state of `opt` other than `f` (one declared `slow` is not).
pub(crate) fn another(opt: &Optimizer, f: &Fast, max_terms: usize) -> Option<Fast> {
    opt.states
        .iter()
        .filter(|s| s.name != f.name)
        .filter(|s| !matches!(s.timescale, Some((crate::ir::Timescale::Slow, _))))
        .find_map(|s| classify_state(opt, &s.name, max_terms))
}

/// The state `name` as a fast state, if it is one.
fn classify_state(opt: &Optimizer, name: &str, max_terms: usize) -> Option<Fast> {
    let fast = |(rate, scale): (Poly, i32)| Fast {
        name: name.to_string(),
        rate,
        scale,
    };
    // The first scale at which it expands with a forcing at ε⁰ (a state that does not
    // expand unscaled moves a point by O(1)).
    let search = || {
        (1..=3).find_map(|p| match leading(opt, name, p, 0, max_terms) {
            Some((rate, Some(0))) if !rate.is_one() => Some(fast((rate, p))),
            _ => None,
        })
    };
    // At ε⁰ first: a slow state (rate 1) costs one shallow expansion.
    match leading(opt, name, 0, 0, max_terms) {
        Some((rate, _)) if rate.is_one() => None,
        Some((rate, Some(0))) => Some(fast((rate, 0))),
        // Not forced at ε⁰: its scale is the lowest power of ε in the forcing.
        Some(_) => match leading(opt, name, 0, 3, max_terms) {
            Some((_, Some(p))) => match leading(opt, name, p, 0, max_terms)? {
                (rate, Some(0)) if !rate.is_one() => Some(fast((rate, p))),
                _ => None,
            },
            Some((_, None)) => None,
            None => search(),
        },
        None => search(),
    }
}

/// For the new value of `name` divided by ε^p, expanded through ε^upto: its form
/// `μ u + F` with μ a constant and F free of `u`, as μ and the lowest power of ε in F
/// (`None`: F vanishes through ε^upto); `None` where it has no such form or does not
/// expand.
fn leading(
    opt: &Optimizer,
    name: &str,
    p: i32,
    upto: i32,
    max_terms: usize,
) -> Option<(Poly, Option<i32>)> {
    let scaled = rescale(opt, name, p);
    let mut ctx = Ctx::fresh(&scaled, max_terms, false);
    ctx.work = upto.max(1);
    let v = ctx.var_names.iter().position(|n| n == name)? as u8;
    let mut ex = Expander::new(&scaled, &mut ctx);
    let new = ex.new_value(name, upto).ok()?;
    let state = ex.state_atom(v);
    let eps = ctx.eps;
    let key = state.terms.keys().next()?;
    let rate = new.terms.get(key).cloned().unwrap_or_default();
    let rate = rate.truncate(eps, 0);
    // μ is a constant of the hyperparameters: no power of ε.
    if rate.terms().any(|(m, _)| m.iter().any(|(s, _)| *s == eps)) {
        return None;
    }
    let rest: TExpr = new.sub(&state.scale(&rate));
    let reads_u = |t: &crate::algebra::tensor::Term| {
        t.atoms
            .iter()
            .any(|a| matches!(a.kind, Kind::State(w) if w == v))
    };
    // The forcing's lowest power; a read of u in it at that power is not of the form.
    let lowest = rest.terms.values().filter_map(|c| c.min_power(eps)).min();
    if let Some(q) = lowest {
        if rest
            .terms
            .iter()
            .any(|(t, c)| reads_u(t) && c.min_power(eps).is_some_and(|r| r <= q.max(0)))
        {
            return None;
        }
    }
    Some((rate, lowest))
}

fn small_power(p: i32) -> Expr {
    let small = Expr {
        kind: ExprKind::Small,
        shape: Shape::Scalar,
    };
    if p == 1 {
        small
    } else {
        // ε^p, p ≠ 0 (also negative: a state of order 1/ε).
        bin(BinOp::Pow, small, num(BigRational::from_integer(p.into())))
    }
}

fn num(q: BigRational) -> Expr {
    Expr {
        kind: ExprKind::Num(q),
        shape: Shape::Scalar,
    }
}

/// `a op b`, of the wider shape.
fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    let shape = if a.shape == Shape::Scalar {
        b.shape
    } else {
        a.shape
    };
    Expr {
        kind: ExprKind::Bin(op, Box::new(a), Box::new(b)),
        shape,
    }
}

/// The rule in the variable `u/ε^p` (under the same name).
fn rescale(opt: &Optimizer, name: &str, p: i32) -> Optimizer {
    if p == 0 {
        return opt.clone();
    }
    let mut out = opt.clone();
    for step in &mut out.steps {
        let e = step.expr.rewrite(&mut |e| match &e.kind {
            ExprKind::Var { name: n, .. } if n == name => {
                Some(bin(BinOp::Mul, small_power(p), e.clone()))
            }
            _ => None,
        });
        step.expr = match &step.target {
            Target::Var(n) if n == name => bin(BinOp::Div, e, small_power(p)),
            _ => e,
        };
    }
    out
}

/// `e` with every step-local value replaced by its definition among `steps`.
fn inline(e: &Expr, steps: &[Step]) -> Expr {
    e.rewrite(&mut |x| match &x.kind {
        ExprKind::Local(n) => steps
            .iter()
            .rev()
            .find(|s| matches!(&s.target, Target::Local(m) if m == n))
            .map(|s| inline(&s.expr, steps)),
        _ => None,
    })
}

fn fresh(opt: &Optimizer, base: &str) -> String {
    let mut name = base.to_string();
    let taken = |n: &str| {
        opt.steps.iter().any(|s| s.target.name() == n)
            || opt.states.iter().any(|s| s.name == n)
            || opt.hypers.iter().any(|h| h.name == n)
            || opt.param.name == n
    };
    while taken(&name) {
        name.push('_');
    }
    name
}

/// Whether `e` is affine in the state `name` (reads of it, directly or through locals).
/// `Err` names what is not.
fn affine(e: &Expr, name: &str, steps: &[Step]) -> Result<bool, String> {
    let is = |x: &Expr| matches!(&x.kind, ExprKind::Var { name: n, .. } if n == name);
    affine_in(&inline(e, steps), &is, &format!("`{name}`"))
}

/// Whether `e` is affine in the nodes `is` picks (`what` names them). `Err` names what
/// is not.
fn affine_in(e: &Expr, is: &impl Fn(&Expr) -> bool, what: &str) -> Result<bool, String> {
    let plain = |e: &Expr| -> Result<bool, String> {
        if reads(e, is) {
            Err(format!("a nonlinear function of {what}"))
        } else {
            Ok(false)
        }
    };
    if is(e) {
        return Ok(true);
    }
    match &e.kind {
        ExprKind::Neg(a) => affine_in(a, is, what),
        ExprKind::Bin(BinOp::Add | BinOp::Sub, a, b) => {
            Ok(affine_in(a, is, what)? | affine_in(b, is, what)?)
        }
        ExprKind::Bin(BinOp::Mul | BinOp::MatMul, a, b) => {
            match (affine_in(a, is, what)?, affine_in(b, is, what)?) {
                (true, true) => Err(format!("a product of {what} with itself")),
                (x, y) => Ok(x | y),
            }
        }
        ExprKind::Call(crate::ir::Func::Dot, args) => {
            match (
                affine_in(&args[0], is, what)?,
                affine_in(&args[1], is, what)?,
            ) {
                (true, true) => Err(format!("a product of {what} with itself")),
                (x, y) => Ok(x | y),
            }
        }
        ExprKind::Bin(BinOp::Div, a, b) => {
            plain(b)?;
            affine_in(a, is, what)
        }
        _ => plain(e),
    }
}

fn refuse(span: crate::span::Span, what: String, hint: String) -> Failure {
    Failure::Diagnostic(Box::new(
        Diagnostic::new(Code::Unsupported, span, what)
            .label("here")
            .hint(hint),
    ))
}

/// A rule with its fast state eliminated, the notes that say so, and (μ, κ) by name
/// where the rate is a symbol μ and κ stands for 1/(1 − μ).
pub(crate) struct Reduced {
    pub rule: Optimizer,
    pub notes: Vec<String>,
    pub complement: Option<(String, String)>,
}

/// The rule scaled so that the fast state is of order 1, the index of its update and
/// its rate μ, after the checks both orders need: every slow update affine in it, μ a
/// number, |μ| < 1.
struct Prepared {
    scaled: Optimizer,
    at: usize,
    mu: Rate,
    /// μ as the rule writes it.
    rate: String,
}

/// The rate μ: a number, or a hyperparameter with a symbol κ = 1/(1 − μ) of its own
/// (coefficients are polynomials: 1/(1 − μ) is not one, and κ stands for it; the SME's
/// coefficients are then reduced with κμ = κ − 1, [`Poly::reduce_complement`]).
#[derive(Debug, Clone)]
pub(crate) enum Rate {
    Num(BigRational),
    Sym { mu: String, kappa: String },
}

impl Prepared {
    /// `μ·e`.
    fn mu_times(&self, e: Expr) -> Expr {
        match &self.mu {
            Rate::Num(q) => times(q.clone(), e),
            Rate::Sym { mu, .. } => bin(BinOp::Mul, hyper(mu), e),
        }
    }

    /// `e/(1 − μ)`.
    fn over_one_minus(&self, e: Expr) -> Expr {
        match &self.mu {
            Rate::Num(q) => times(BigRational::one() / (BigRational::one() - q), e),
            Rate::Sym { kappa, .. } => bin(BinOp::Mul, hyper(kappa), e),
        }
    }

    /// (μ, κ) by name, where the rate is a symbol.
    fn complement(&self) -> Option<(String, String)> {
        match &self.mu {
            Rate::Num(_) => None,
            Rate::Sym { mu, kappa } => Some((mu.clone(), kappa.clone())),
        }
    }

    /// The rule `out` (reduced from this one) with κ declared, where the rate is a symbol.
    fn declare_kappa(&self, out: &mut Optimizer) {
        if let Rate::Sym { kappa, .. } = &self.mu {
            out.hypers.push(crate::ir::Hyper {
                name: kappa.clone(),
                constraint: None,
                span: out.header,
            });
        }
    }
}

fn hyper(name: &str) -> Expr {
    Expr::new(ExprKind::Hyper(name.to_string()), Shape::Scalar)
}

fn prepare(opt: &Optimizer, f: &Fast, syms: &Symbols) -> Result<Prepared, Failure> {
    let name = f.name.as_str();
    let scaled = rescale(opt, name, f.scale);
    let at = scaled
        .steps
        .iter()
        .position(|s| matches!(&s.target, Target::Var(n) if n == name))
        .ok_or_else(|| Failure::Internal(format!("no update of `{name}`")))?;
    // Every slow update must be affine in the fast state.
    for s in &scaled.steps {
        if let Target::Var(n) = &s.target {
            if n != name {
                if let Err(what) = affine(&s.expr, name, &scaled.steps) {
                    return Err(refuse(
                        s.span,
                        format!("`{n}` is updated with {what}, and `{name}` is fast (it relaxes at a fixed rate)"),
                        format!("smelt eliminates a fast state from updates that are affine in it (heavy ball, Nesterov, an EMA of the gradient, Adam's first moment); a nonlinear function of it needs its stationary law. Scale its rate with the small parameter instead (`let mu = 1 - c*{}`) to keep `{name}` as a state of the SME", opt.small.name),
                    ));
                }
            }
        }
    }
    let rate = f.rate.display(syms);
    let mu = match (f.rate.as_constant(), single_symbol(&f.rate)) {
        (Some(mu), _) => mu,
        // A hyperparameter: κ = 1/(1 − μ) stands for the division.
        (None, Some(s)) if opt.hypers.iter().any(|h| h.name == syms.name(s)) => {
            let mu = syms.name(s).to_string();
            let kappa = fresh(opt, "kappa");
            return Ok(Prepared {
                scaled,
                at,
                mu: Rate::Sym { mu, kappa },
                rate,
            });
        }
        _ => {
            return Err(refuse(
                scaled.steps[at].span,
                format!("`{name}` relaxes at the fixed rate {rate}, a function of the hyperparameters: the elimination divides by 1 − ({rate}), which smelt's coefficients (polynomials in the hyperparameters) hold for a number or a single hyperparameter only"),
                format!("declare the rate as a hyperparameter (`hyper mu in (0, 1)`) or give it as a number (`let mu = 9/10`) to eliminate `{name}`, or scale it with the small parameter (`let mu = 1 - c*{}`) to keep `{name}` as a state of the SME", opt.small.name),
            ));
        }
    };
    if mu.abs() >= BigRational::one() {
        return Err(refuse(
            scaled.steps[at].span,
            format!("`{name}` is multiplied by {rate} each step: it does not relax"),
            format!("a state with a fixed rate is eliminated when it contracts (|rate| < 1); scale its rate with the small parameter (`1 - c*{}`) to keep it as a state of the SME", opt.small.name),
        ));
    }
    Ok(Prepared {
        scaled,
        at,
        mu: Rate::Num(mu),
        rate,
    })
}

/// The symbol `s` where `p` is `s` itself.
fn single_symbol(p: &Poly) -> Option<crate::algebra::poly::Sym> {
    let mut terms = p.terms();
    let (mono, c) = terms.next()?;
    match (terms.next(), mono.as_slice()) {
        (None, [(s, 1)]) if c.is_one() => Some(*s),
        _ => None,
    }
}

/// The rule at order 1 with the fast state `f` eliminated, and the notes that say so.
pub(crate) fn eliminate(opt: &Optimizer, f: &Fast, syms: &Symbols) -> Result<Reduced, Failure> {
    let name = f.name.as_str();
    let prep = prepare(opt, f, syms)?;
    let (scaled, at, rate) = (&prep.scaled, prep.at, &prep.rate);
    let update = &scaled.steps[at];
    // F with u at 0 (its dependence on u is of higher order), over 1 − μ. At order 1 the
    // new value of another state differs from its old one by O(ε) (a slow state) or is
    // replaced by its own stationary value (a fast one): F reads the old values, so the
    // stationary value can be computed first.
    let bar_expr = reversion(
        &prep.over_one_minus(forcing_at_zero(&prep, name)),
        Version::New,
        Version::Old,
    );
    let bar = fresh(scaled, &format!("{name}_bar"));
    // Both the old and the new value read the stationary one: at order 1 the fast
    // update's own dependence on `u` (of higher order in ε) does not enter.
    let swap = |e: &Expr| {
        e.rewrite(&mut |x| match &x.kind {
            ExprKind::Var { name: n, .. } if n == name => Some(local(&bar, x.shape)),
            _ => None,
        })
    };
    let mut out = scaled.clone();
    out.states.retain(|s| s.name != name);
    prep.declare_kappa(&mut out);
    let mut steps = Vec::new();
    for (i, s) in scaled.steps.iter().enumerate() {
        if i == 0 {
            steps.push(Step {
                target: Target::Local(bar.clone()),
                expr: bar_expr.clone(),
                span: update.span,
            });
        }
        if i == at {
            continue;
        }
        steps.push(Step {
            target: s.target.clone(),
            expr: swap(&s.expr),
            span: s.span,
        });
    }
    out.steps = steps;
    let scale = match f.scale {
        0 => String::new(),
        1 => format!(" (it is of order {} there)", opt.small.name),
        p => format!(" (it is of order {}^{p} there)", opt.small.name),
    };
    let notes = vec![
        format!(
            "`{name}` is fast: each step multiplies it by {rate} and adds its forcing F, so it relaxes at rate 1 − {rate} per step onto its stationary value F/(1 − {rate}){scale}; it is eliminated: the SME is that of the rule with `{name}` at F/(1 − {rate}), F taken with the step's own noise (weak order 1; Kovachki & Stuart 2021, FORMULAS.md §3.2)"
        ),
        format!(
            "this assumes |{rate}| < 1, and `{name}` started on its stationary value: a start off it (an initial layer) decays as ({rate})^k and adds an O({}) error",
            opt.small.name
        ),
    ];
    Ok(Reduced {
        rule: out,
        notes,
        complement: prep.complement(),
    })
}

/// Zero of a shape: `0` or `0*x` (x the parameter, a vector).
fn zero_of(shape: Shape, param: &str) -> Expr {
    if shape == Shape::Scalar {
        num(BigRational::zero())
    } else {
        bin(
            BinOp::Mul,
            num(BigRational::zero()),
            var(param, Version::Old, Shape::Vector),
        )
    }
}

/// Whether `e` has a node that `is` picks.
fn reads(e: &Expr, is: &impl Fn(&Expr) -> bool) -> bool {
    let mut found = false;
    e.walk(&mut |x| found |= is(x));
    found
}

fn var(name: &str, version: Version, shape: Shape) -> Expr {
    Expr::new(
        ExprKind::Var {
            name: name.to_string(),
            version,
        },
        shape,
    )
}

fn local(name: &str, shape: Shape) -> Expr {
    Expr::new(ExprKind::Local(name.to_string()), shape)
}

/// `q·e`, the number first (`e` when q = 1).
fn times(q: BigRational, e: Expr) -> Expr {
    if q.is_one() {
        e
    } else {
        bin(BinOp::Mul, num(q), e)
    }
}

/// `a + b` of two optional terms (`None` is zero).
fn plus(a: Option<Expr>, b: Option<Expr>) -> Option<Expr> {
    match (a, b) {
        (Some(a), Some(b)) => Some(bin(BinOp::Add, a, b)),
        (a, b) => a.or(b),
    }
}

/// `e` with the nodes `is` picks set to zero, `e` affine in them (checked by
/// [`affine_in`]); `None` where nothing is left.
fn without(e: &Expr, is: &impl Fn(&Expr) -> bool) -> Option<Expr> {
    if is(e) {
        return None;
    }
    if !reads(e, is) {
        return Some(e.clone());
    }
    let neg = |a: Expr| Expr::new(ExprKind::Neg(Box::new(a)), e.shape);
    match &e.kind {
        ExprKind::Neg(a) => without(a, is).map(neg),
        ExprKind::Bin(BinOp::Add, a, b) => plus(without(a, is), without(b, is)),
        ExprKind::Bin(BinOp::Sub, a, b) => plus(without(a, is), without(b, is).map(neg)),
        ExprKind::Bin(op @ (BinOp::Mul | BinOp::MatMul | BinOp::Div), a, b) => {
            let (a, b) = (without(a, is)?, without(b, is)?);
            Some(Expr::new(
                ExprKind::Bin(*op, Box::new(a), Box::new(b)),
                e.shape,
            ))
        }
        ExprKind::Call(func @ crate::ir::Func::Dot, args) => {
            let args = args
                .iter()
                .map(|a| without(a, is))
                .collect::<Option<Vec<_>>>()?;
            Some(Expr::new(ExprKind::Call(*func, args), e.shape))
        }
        // Not affine: the callers check first.
        _ => Some(e.clone()),
    }
}

/// The coefficient of the nodes `is` picks in `e`, affine in them: `e = c·u + rest`,
/// `c` a scalar or acting elementwise (`Ok(None)`: `e` does not read them). A matrix
/// coefficient (`A @ u`, `dot(u, w)`) is refused: `Err` says what.
fn coef(e: &Expr, is: &impl Fn(&Expr) -> bool) -> Result<Option<Expr>, String> {
    if is(e) {
        return Ok(Some(num(BigRational::one())));
    }
    if !reads(e, is) {
        return Ok(None);
    }
    let neg = |a: Expr| {
        let shape = a.shape;
        Expr::new(ExprKind::Neg(Box::new(a)), shape)
    };
    Ok(match &e.kind {
        ExprKind::Neg(a) => coef(a, is)?.map(neg),
        ExprKind::Bin(BinOp::Add, a, b) => plus(coef(a, is)?, coef(b, is)?),
        ExprKind::Bin(BinOp::Sub, a, b) => plus(coef(a, is)?, coef(b, is)?.map(neg)),
        ExprKind::Bin(BinOp::Mul, a, b) => match (coef(a, is)?, coef(b, is)?) {
            (Some(c), None) => Some(bin(BinOp::Mul, c, (**b).clone())),
            (None, Some(c)) => Some(bin(BinOp::Mul, (**a).clone(), c)),
            _ => return Err("a product of it with itself".into()),
        },
        ExprKind::Bin(BinOp::Div, a, b) => coef(a, is)?.map(|c| bin(BinOp::Div, c, (**b).clone())),
        ExprKind::Bin(BinOp::MatMul, ..) | ExprKind::Call(crate::ir::Func::Dot, _) => {
            return Err("a matrix product with it".into())
        }
        _ => return Err("a nonlinear function of it".into()),
    })
}

/// `e` with every read of a state at `from` read at `to` instead.
fn reversion(e: &Expr, from: Version, to: Version) -> Expr {
    e.rewrite(&mut |x| match &x.kind {
        ExprKind::Var { name, version } if *version == from => Some(var(name, to, x.shape)),
        _ => None,
    })
}

/// The stationary mean `ū = E F / (1 − μ)` of the fast state at leading order, as a
/// function of the start-of-step state: its forcing with the state at zero (its own
/// dependence is of higher order) and the noise at its mean (F is affine in the noise),
/// the new values of other states at their old ones. `None` where F vanishes so.
fn stationary_mean(prep: &Prepared, name: &str) -> Result<Option<Expr>, Failure> {
    let update = &prep.scaled.steps[prep.at];
    let forcing = forcing_at_zero(prep, name);
    let is_noise = |x: &Expr| matches!(x.kind, ExprKind::Noise { .. });
    if let Err(what) = affine_in(&forcing, &is_noise, "the noise") {
        return Err(refuse(
            update.span,
            format!("`{name}` is updated with {what}: at order 2 its elimination needs its stationary mean, which smelt takes with the noise at its mean"),
            "ask for weak order 1 (`--order 1`), where the fast state is eliminated with the step's own noise".into(),
        ));
    }
    let Some(f) = without(&forcing, &is_noise) else {
        return Ok(None);
    };
    let f = reversion(&f, Version::New, Version::Old);
    Ok(Some(prep.over_one_minus(f)))
}

/// The fast state's new value with the state itself at zero (also inside a gradient:
/// Nesterov's look-ahead) and the step's locals inlined: its forcing F, with the step's
/// own noise.
fn forcing_at_zero(prep: &Prepared, name: &str) -> Expr {
    let update = &prep.scaled.steps[prep.at];
    let zero = zero_of(
        prep.scaled.var_shape(name).unwrap_or(Shape::Vector),
        &prep.scaled.param.name,
    );
    inline(&update.expr, &prep.scaled.steps[..prep.at]).rewrite(&mut |x| match &x.kind {
        ExprKind::Var { name: n, .. } if n == name => Some(zero.clone()),
        _ => None,
    })
}

/// A slow state whose update reads the fast state `u`: `Y = x + C u` cancels `u` from
/// its update at leading order.
struct Shifted {
    name: String,
    shape: Shape,
    /// C, a function of the start-of-step values of states that are not shifted.
    c: Expr,
}

/// The slow states that read the fast one, each with its C = (aμ + b)/(1 − μ), where its
/// update is `a u' + b u + …` (u' the fast state's new value).
fn shifted_states(prep: &Prepared, name: &str) -> Result<Vec<Shifted>, Failure> {
    let mut out: Vec<Shifted> = Vec::new();
    for (i, s) in prep.scaled.steps.iter().enumerate() {
        let Target::Var(n) = &s.target else { continue };
        if n == name {
            continue;
        }
        let e = inline(&s.expr, &prep.scaled.steps[..i]);
        let at = |version: Version| move |x: &Expr| matches!(&x.kind, ExprKind::Var { name: m, version: w } if m == name && *w == version);
        let fail = |what: String| {
            refuse(
                s.span,
                format!("`{n}` is updated with {what} `{name}`, and `{name}` is fast: its order-2 elimination needs the update to be `c·{name} + …` with c a scalar or elementwise"),
                "ask for weak order 1 (`--order 1`)".into(),
            )
        };
        let a = coef(&e, &at(Version::New)).map_err(|w| fail(format!("{w},")))?;
        let b = coef(&e, &at(Version::Old)).map_err(|w| fail(format!("{w},")))?;
        let c = plus(a.map(|a| prep.mu_times(a)), b);
        let Some(c) = c else { continue };
        let c = reversion(&prep.over_one_minus(c), Version::New, Version::Old);
        let shape = prep.scaled.var_shape(n).unwrap_or(Shape::Vector);
        out.push(Shifted {
            name: n.clone(),
            shape,
            c,
        });
    }
    // A slow update that reads the new value of a shifted state reads the fast state
    // through it, which its own weight C does not see.
    for (i, s) in prep.scaled.steps.iter().enumerate() {
        let Target::Var(n) = &s.target else { continue };
        let e = inline(&s.expr, &prep.scaled.steps[..i]);
        let through = out.iter().find(|o| {
            o.name != *n
                && reads(&e, &|x: &Expr| {
                    matches!(&x.kind, ExprKind::Var { name: m, version: Version::New } if *m == o.name)
                })
        });
        if let Some(o) = through {
            return Err(refuse(
                s.span,
                format!("`{n}` reads the new value of `{}`, which reads the fast state `{name}`", o.name),
                "smelt's order-2 elimination needs every slow update to read the fast state directly; write the update with the old value, or ask for weak order 1 (`--order 1`)".into(),
            ));
        }
    }
    // C may read noise or shifted states only at higher order than the reduction keeps.
    for s in &out {
        let bad = reads(&s.c, &|x: &Expr| match &x.kind {
            ExprKind::Noise { .. } | ExprKind::Counter => true,
            ExprKind::Var { name: m, .. } => m == name || out.iter().any(|o| &o.name == m),
            _ => false,
        });
        if bad {
            let span = prep
                .scaled
                .steps
                .iter()
                .find(|st| matches!(&st.target, Target::Var(m) if *m == s.name))
                .map_or(prep.scaled.header, |st| st.span);
            return Err(refuse(
                span,
                format!("the weight of `{name}` in the update of `{}` reads the noise, the step counter or a state that `{name}` moves", s.name),
                "smelt's order-2 elimination needs that weight to depend on the hyperparameters and on states that do not read the fast state; ask for weak order 1 (`--order 1`)".into(),
            ));
        }
    }
    Ok(out)
}

/// The rule at weak order 2 with the fast state `f` eliminated, and the notes that say
/// so.
///
/// With `Y = x + C u` for every slow state `x` that reads `u` (C from [`shifted_states`]),
/// `Y`'s update reads `u` only at higher order, through `x = Y − C u` inside the gradient
/// and through the change of C over a step; there `u` is replaced by its stationary
/// mean `ū` (its fluctuation and its O(ε) correction enter `Y`'s moments at O(ε³)). `Y`
/// is then Markov to the order kept, but differs from `x` by `C u = O(ε)`: the variable
/// the SME describes is `X̃ = Y − C ū(Y)`, which follows `x` to O(ε²) in the weak sense.
/// The reduced rule steps `X̃`: from it `Y` (one fixed-point step, `ū` at `X̃ + C ū(X̃)`,
/// exact to O(ε²), enough since it enters multiplied by C), the optimizer's step from
/// `x = X̃` with `u = ū`, then `Y' = x' + C' u'` and `X̃' = Y' − C' ū(Y')`.
pub(crate) fn eliminate2(opt: &Optimizer, f: &Fast, syms: &Symbols) -> Result<Reduced, Failure> {
    let name = f.name.as_str();
    let prep = prepare(opt, f, syms)?;
    let scaled = &prep.scaled;
    let u_shape = opt.var_shape(name).unwrap_or(Shape::Vector);
    let ubar = stationary_mean(&prep, name)?;
    // The reduction replaces the fast state by its mean where it enters at higher order:
    // that needs the mean to set its size. Where the noise does (Adam's first moment
    // with σ = σ₀/η is of order 1/η, its mean of order 1), its fluctuation's
    // correlations with the slow states enter at the order kept.
    let mean_sets_size = match &ubar {
        None => false,
        Some(e) => {
            let mut ctx = Ctx::fresh(scaled, 16, false);
            ctx.work = 1;
            let eps = ctx.eps;
            let mut ex = Expander::new(scaled, &mut ctx);
            let t = ex.expand(e, 0).ok();
            t.is_some_and(|t| t.terms.values().any(|c| c.min_power(eps) == Some(0)))
        }
    };
    if !mean_sets_size {
        let small = &opt.small.name;
        let size = match f.scale {
            0 => "1".to_string(),
            1 => small.clone(),
            p => format!("{small}^{p}"),
        };
        return Err(refuse(
            scaled.steps[prep.at].span,
            format!("`{name}` is fast, of order {size}, and its stationary mean is smaller: its fluctuation sets its size, and its correlations with the slow states enter the order-2 SME, which smelt does not derive"),
            "ask for weak order 1 (`--order 1`); the order-2 elimination covers a fast state whose mean sets its size (heavy ball, Nesterov, an EMA of the gradient with the noise of the gradient's order)".into(),
        ));
    }
    let shifted = shifted_states(&prep, name)?;
    let mut taken: Vec<String> = Vec::new();
    let mut fresh_name = |base: String| {
        let mut n = fresh(scaled, &base);
        while taken.contains(&n) {
            n.push('_');
        }
        taken.push(n.clone());
        n
    };
    let ub0 = fresh_name(format!("{name}_bar0"));
    let ub = fresh_name(format!("{name}_bar"));
    let u_new = fresh_name(format!("{name}_new"));
    let x_new: Vec<String> = shifted
        .iter()
        .map(|s| fresh_name(format!("{}_new", s.name)))
        .collect();
    let y_new: Vec<String> = shifted
        .iter()
        .map(|s| fresh_name(format!("{}_y", s.name)))
        .collect();
    let ubf = fresh_name(format!("{name}_bar1"));
    let shift_of = |n: &str| shifted.iter().position(|s| s.name == n);
    let span = scaled.steps[prep.at].span;
    let mut steps = Vec::new();
    let ubar = ubar.unwrap_or_else(|| zero_of(u_shape, &opt.param.name));
    // ū at X̃, then at Y ≈ X̃ + C ū(X̃).
    steps.push(Step {
        target: Target::Local(ub0.clone()),
        expr: ubar.clone(),
        span,
    });
    let at_y = ubar.rewrite(&mut |x| match &x.kind {
        ExprKind::Var {
            name: n,
            version: Version::Old,
        } => shift_of(n).map(|i| {
            bin(
                BinOp::Add,
                x.clone(),
                bin(BinOp::Mul, shifted[i].c.clone(), local(&ub0, u_shape)),
            )
        }),
        _ => None,
    });
    steps.push(Step {
        target: Target::Local(ub.clone()),
        expr: at_y,
        span,
    });
    // The optimizer's step from x = X̃, u = ū(Y).
    for s in &scaled.steps {
        let expr = s.expr.rewrite(&mut |x| match &x.kind {
            ExprKind::Var { name: n, version } if n == name => Some(match version {
                Version::Old => local(&ub, x.shape),
                Version::New => local(&u_new, x.shape),
            }),
            ExprKind::Var {
                name: n,
                version: Version::New,
            } => shift_of(n).map(|i| local(&x_new[i], x.shape)),
            _ => None,
        });
        let target = match &s.target {
            Target::Var(n) if n == name => Target::Local(u_new.clone()),
            Target::Var(n) => match shift_of(n) {
                Some(i) => Target::Local(x_new[i].clone()),
                None => s.target.clone(),
            },
            t => t.clone(),
        };
        steps.push(Step {
            target,
            expr,
            span: s.span,
        });
    }
    // Y' = x' + C' u', then X̃' = Y' − C' ū(Y').
    let c_new: Vec<Expr> = shifted
        .iter()
        .map(|s| reversion(&s.c, Version::Old, Version::New))
        .collect();
    for (i, s) in shifted.iter().enumerate() {
        steps.push(Step {
            target: Target::Local(y_new[i].clone()),
            expr: bin(
                BinOp::Add,
                local(&x_new[i], s.shape),
                bin(BinOp::Mul, c_new[i].clone(), local(&u_new, u_shape)),
            ),
            span,
        });
    }
    let at_y_new = ubar.rewrite(&mut |x| match &x.kind {
        ExprKind::Var {
            name: n,
            version: Version::Old,
        } => Some(match shift_of(n) {
            Some(i) => local(&y_new[i], x.shape),
            None => var(n, Version::New, x.shape),
        }),
        _ => None,
    });
    steps.push(Step {
        target: Target::Local(ubf.clone()),
        expr: at_y_new,
        span,
    });
    for (i, s) in shifted.iter().enumerate() {
        steps.push(Step {
            target: Target::Var(s.name.clone()),
            expr: bin(
                BinOp::Sub,
                local(&y_new[i], s.shape),
                bin(BinOp::Mul, c_new[i].clone(), local(&ubf, u_shape)),
            ),
            span: scaled
                .steps
                .iter()
                .find(|st| matches!(&st.target, Target::Var(m) if *m == s.name))
                .map_or(span, |st| st.span),
        });
    }
    let mut out = scaled.clone();
    out.states.retain(|s| s.name != name);
    prep.declare_kappa(&mut out);
    out.steps = steps;
    // The notes, in the rule's own variable (not u/ε^p).
    let unscaled = Fast {
        scale: 0,
        ..f.clone()
    };
    let plain = prepare(opt, &unscaled, syms)?;
    let printer = crate::ir::Printer::new(opt);
    let show = |e: &Expr| printer.expr(&tidy(e));
    let mean = stationary_mean(&plain, name)?.map_or_else(|| "0".to_string(), |e| show(&e));
    let weights: Vec<(String, String)> = shifted_states(&plain, name)?
        .iter()
        .map(|s| (s.name.clone(), show(&s.c)))
        .collect();
    // `head(x) ± C·(with)` for each shifted state x, the sign of C written out.
    let weighted = |head: &dyn Fn(&str) -> String, with: &str| {
        weights
            .iter()
            .map(|(x, c)| match c.strip_prefix('-') {
                Some(c) => format!("{} − {c}·({with})", head(x)),
                None => format!("{} + {c}·({with})", head(x)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let map = |with: &str| weighted(&|x| x.to_string(), with);
    let start = |with: &str| weighted(&|x| format!("{x}(0) = {x}₀"), with);
    let rate = &prep.rate;
    let eta = &opt.small.name;
    let bar = format!("{name}̄");
    let notes = vec![
        format!(
            "`{name}` is fast: each step multiplies it by {rate} and adds its forcing F, so it relaxes at rate 1 − {rate} per step onto its slow manifold, where its mean is {bar} = E F/(1 − {rate}) = {mean} (at leading order); it is eliminated at weak order 2: the SME describes {} + O({eta}²) (the state {} cancels `{name}` from the update at leading order; minus the same weight times {bar} it follows the optimizer to O({eta}²) in the weak sense); the O({eta}) terms of the drift come from the slow manifold (Kovachki & Stuart 2021)",
            map(&format!("{name} − {bar}")),
            map(name).replace(&format!("·({name})"), &format!("·{name}")),
        ),
        format!(
            "this assumes |{rate}| < 1 and `{name}` started on its slow manifold, {name}₀ = {bar}(x₀), where the SME starts at the optimizer's start; from another start the SME starts at {}, a shift of order {eta} that the initial layer leaves and that does not decay",
            start(&format!("{name}₀ − {bar}(x₀)"))
        ),
    ];
    Ok(Reduced {
        rule: out,
        notes,
        complement: prep.complement(),
    })
}

/// `e` with its numbers folded, for the notes: `q·(r·a) = (qr)·a`, `a/q = (1/q)·a`,
/// `1·a = a`, `-(q·a) = (−q)·a`. Sound for every value of `a` (exact rationals only).
fn tidy(e: &Expr) -> Expr {
    let one = |a: &Expr| Box::new(tidy(a));
    let kids = match &e.kind {
        ExprKind::Neg(a) => ExprKind::Neg(one(a)),
        ExprKind::Grad(a) => ExprKind::Grad(one(a)),
        ExprKind::Hess(a) => ExprKind::Hess(one(a)),
        ExprKind::Objective(a) => ExprKind::Objective(one(a)),
        ExprKind::Call(func, args) => ExprKind::Call(*func, args.iter().map(tidy).collect()),
        ExprKind::Bin(op, a, b) => ExprKind::Bin(*op, one(a), one(b)),
        _ => e.kind.clone(),
    };
    // Zero (a number, or `0*x` for a zero vector): a term that drops from a sum.
    fn zero(x: &Expr) -> bool {
        match &x.kind {
            ExprKind::Num(q) => q.is_zero(),
            ExprKind::Bin(BinOp::Mul, l, r) => zero(l) || zero(r),
            _ => false,
        }
    }
    let numeric = |x: &Expr| match &x.kind {
        ExprKind::Num(q) => Some(q.clone()),
        _ => None,
    };
    // q·a with q folded into a leading number of a.
    let scaled = |q: BigRational, a: Expr, shape: Shape| -> Expr {
        if let Some(r) = numeric(&a) {
            return num(q * r);
        }
        if q.is_one() {
            return a;
        }
        match &a.kind {
            ExprKind::Bin(BinOp::Mul, l, r) if numeric(l).is_some() => {
                let q = q * numeric(l).unwrap_or_default();
                if q.is_one() {
                    (**r).clone()
                } else {
                    Expr::new(
                        ExprKind::Bin(BinOp::Mul, Box::new(num(q)), r.clone()),
                        shape,
                    )
                }
            }
            ExprKind::Neg(inner) => Expr::new(
                ExprKind::Bin(BinOp::Mul, Box::new(num(-q)), inner.clone()),
                shape,
            ),
            _ => Expr::new(
                ExprKind::Bin(BinOp::Mul, Box::new(num(q)), Box::new(a)),
                shape,
            ),
        }
    };
    match kids {
        ExprKind::Neg(a) => match numeric(&a) {
            Some(q) => num(-q),
            None => match &a.kind {
                ExprKind::Bin(BinOp::Mul, l, r) if numeric(l).is_some() => {
                    scaled(-numeric(l).unwrap_or_default(), (**r).clone(), e.shape)
                }
                _ => Expr::new(ExprKind::Neg(a), e.shape),
            },
        },
        ExprKind::Bin(BinOp::Add, a, b) if zero(&b) && a.shape == e.shape => *a,
        ExprKind::Bin(BinOp::Add, a, b) if zero(&a) && b.shape == e.shape => *b,
        ExprKind::Bin(BinOp::Sub, a, b) if zero(&a) && b.shape == e.shape => {
            tidy(&Expr::new(ExprKind::Neg(b), e.shape))
        }
        ExprKind::Bin(BinOp::Sub, a, b) if zero(&b) && a.shape == e.shape => *a,
        ExprKind::Bin(BinOp::Mul, a, _) if zero(&a) && a.shape == e.shape => *a,
        ExprKind::Bin(BinOp::Mul, _, b) if zero(&b) && b.shape == e.shape => *b,
        ExprKind::Bin(BinOp::Mul, a, b) if zero(&a) || zero(&b) => {
            Expr::new(ExprKind::Bin(BinOp::Mul, a, b), e.shape)
        }
        ExprKind::Bin(BinOp::Mul, a, b) => match (numeric(&a), numeric(&b)) {
            (Some(q), _) => scaled(q, *b, e.shape),
            (None, Some(q)) => scaled(q, *a, e.shape),
            // a·(−b) = −(a·b).
            _ => match b.kind {
                ExprKind::Neg(inner) => Expr::new(
                    ExprKind::Neg(Box::new(Expr::new(
                        ExprKind::Bin(BinOp::Mul, a, inner),
                        e.shape,
                    ))),
                    e.shape,
                ),
                kind => Expr::new(
                    ExprKind::Bin(BinOp::Mul, a, Box::new(Expr::new(kind, b.shape))),
                    e.shape,
                ),
            },
        },
        ExprKind::Bin(BinOp::Div, a, b) => match numeric(&b) {
            Some(q) if !q.is_zero() => scaled(q.recip(), *a, e.shape),
            _ => Expr::new(ExprKind::Bin(BinOp::Div, a, b), e.shape),
        },
        kind => Expr::new(kind, e.shape),
    }
}

/// The value of the fast state `name` on its slow manifold at leading order, `ε^scale ū`
/// (ū its stationary mean, `stationary_mean`), as an expression of the rule's
/// start-of-step state, for starting the optimizer there (`smelt verify`). `None` where
/// the state is not fast in `opt` or its mean is not available (a forcing nonlinear in
/// the noise).
pub fn manifold_value(opt: &Optimizer, name: &str, max_terms: usize) -> Option<Expr> {
    let f = classify_state(opt, name, max_terms)?;
    let p = f.scale;
    let syms = Ctx::fresh(opt, max_terms, false).syms;
    let prep = prepare(opt, &f, &syms).ok()?;
    let mean = stationary_mean(&prep, name).ok()?.unwrap_or_else(|| {
        zero_of(
            opt.var_shape(name).unwrap_or(Shape::Vector),
            &opt.param.name,
        )
    });
    // For the simulator, κ as the division it stands for.
    let mean = match &prep.mu {
        Rate::Num(_) => mean,
        Rate::Sym { mu, kappa } => mean.rewrite(&mut |x| match &x.kind {
            ExprKind::Hyper(h) if h == kappa => Some(bin(
                BinOp::Div,
                num(BigRational::one()),
                bin(BinOp::Sub, num(BigRational::one()), hyper(mu)),
            )),
            _ => None,
        }),
    };
    Some(if p == 0 {
        mean
    } else {
        bin(BinOp::Mul, small_power(p), mean)
    })
}

/// The rule the SME of `opt` at weak order `order` is derived from when `opt` has fast
/// states: each eliminated in turn (`eliminate`, `eliminate2`). A Markov rule in the
/// slow states whose one-step moments the SME matches, for the independent check
/// ([`crate::sim::certify`]). `None` where `opt` has no fast state or its elimination
/// fails, or where a rate is a symbol (κ = 1/(1 − μ) would be a free hyperparameter of
/// the reduced rule, while the SME's coefficients use the relation).
pub fn reduced_rule(opt: &Optimizer, order: u32, max_terms: usize) -> Option<Optimizer> {
    let mut rule = opt.clone();
    let mut any = false;
    while let Ok(Some(f)) = classify(&rule, max_terms) {
        let syms = Ctx::fresh(&rule, max_terms, false).syms;
        let reduced = match order {
            1 => eliminate(&rule, &f, &syms),
            2 => eliminate2(&rule, &f, &syms),
            _ => return None,
        }
        .ok()?;
        if reduced.complement.is_some() {
            return None;
        }
        rule = reduced.rule;
        any = true;
    }
    any.then_some(rule)
}
