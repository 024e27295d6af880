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
pub(crate) fn classify(opt: &Optimizer, max_terms: usize) -> Option<Fast> {
    opt.states.iter().find_map(|s| {
        let name = s.name.as_str();
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
    })
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

fn reads_var(e: &Expr, name: &str) -> bool {
    let mut found = false;
    e.walk(&mut |x| found |= matches!(&x.kind, ExprKind::Var { name: n, .. } if n == name));
    found
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
    let e = inline(e, steps);
    fn go(e: &Expr, name: &str) -> Result<bool, String> {
        let plain = |e: &Expr| -> Result<bool, String> {
            if reads_var(e, name) {
                Err(format!("a nonlinear function of `{name}`"))
            } else {
                Ok(false)
            }
        };
        match &e.kind {
            ExprKind::Var { name: n, .. } => Ok(n == name),
            ExprKind::Neg(a) => go(a, name),
            ExprKind::Bin(BinOp::Add | BinOp::Sub, a, b) => Ok(go(a, name)? | go(b, name)?),
            ExprKind::Bin(BinOp::Mul | BinOp::MatMul, a, b) => match (go(a, name)?, go(b, name)?) {
                (true, true) => Err(format!("a product of `{name}` with itself")),
                (x, y) => Ok(x | y),
            },
            ExprKind::Call(crate::ir::Func::Dot, args) => {
                let a = go(&args[0], name)?;
                let b = go(&args[1], name)?;
                if a && b {
                    Err(format!("a product of `{name}` with itself"))
                } else {
                    Ok(a | b)
                }
            }
            ExprKind::Bin(BinOp::Div, a, b) => {
                plain(b)?;
                go(a, name)
            }
            _ => plain(e),
        }
    }
    go(&e, name)
}

fn refuse(span: crate::span::Span, what: String, hint: String) -> Failure {
    Failure::Diagnostic(Box::new(
        Diagnostic::new(Code::Unsupported, span, what)
            .label("here")
            .hint(hint),
    ))
}

/// The rule at order 1 with the fast state `f` eliminated, and the notes that say so.
pub(crate) fn eliminate(
    opt: &Optimizer,
    f: &Fast,
    syms: &Symbols,
) -> Result<(Optimizer, Vec<String>), Failure> {
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
    let Some(mu) = f.rate.as_constant() else {
        return Err(refuse(
            scaled.steps[at].span,
            format!("`{name}` relaxes at the fixed rate {rate}, a symbol: the elimination divides by 1 − {rate}, which smelt's coefficients (polynomials in the hyperparameters) cannot hold yet"),
            format!("give the rate as a number (`let {rate} = 9/10`) to eliminate `{name}`, or scale it with the small parameter (`let {rate} = 1 - c*{}`) to keep `{name}` as a state of the SME", opt.small.name),
        ));
    };
    if mu.abs() >= BigRational::one() {
        return Err(refuse(
            scaled.steps[at].span,
            format!("`{name}` is multiplied by {rate} each step: it does not relax"),
            format!("a state with a fixed rate is eliminated when it contracts (|rate| < 1); scale its rate with the small parameter (`1 - c*{}`) to keep it as a state of the SME", opt.small.name),
        ));
    }
    let shape = opt
        .states
        .iter()
        .find(|s| s.name == name)
        .map_or(Shape::Vector, |s| s.shape);
    let zero = if shape == Shape::Scalar {
        num(BigRational::zero())
    } else {
        bin(
            BinOp::Mul,
            num(BigRational::zero()),
            Expr {
                kind: ExprKind::Var {
                    name: opt.param.name.clone(),
                    version: Version::Old,
                },
                shape: Shape::Vector,
            },
        )
    };
    let update = &scaled.steps[at];
    // F with u at 0 (its dependence on u is of higher order), over 1 − μ.
    let forcing = inline(&update.expr, &scaled.steps[..at]).rewrite(&mut |x| match &x.kind {
        ExprKind::Var { name: n, .. } if n == name => Some(zero.clone()),
        _ => None,
    });
    let one_minus = num(BigRational::one() - mu);
    // At order 1 the new value of another state differs from its old one by O(ε) (a
    // slow state) or is replaced by its own stationary value (a fast one): F reads the
    // old values, so the stationary value can be computed first.
    let bar_expr = bin(BinOp::Div, forcing, one_minus).rewrite(&mut |x| match &x.kind {
        ExprKind::Var {
            name: n,
            version: Version::New,
        } => Some(Expr {
            kind: ExprKind::Var {
                name: n.clone(),
                version: Version::Old,
            },
            shape: x.shape,
        }),
        _ => None,
    });
    let bar = fresh(&scaled, &format!("{name}_bar"));
    // Both the old and the new value read the stationary one: at order 1 the fast
    // update's own dependence on `u` (of higher order in ε) does not enter.
    let swap = |e: &Expr| {
        e.rewrite(&mut |x| match &x.kind {
            ExprKind::Var { name: n, .. } if n == name => Some(Expr {
                kind: ExprKind::Local(bar.clone()),
                shape: x.shape,
            }),
            _ => None,
        })
    };
    let mut out = scaled.clone();
    out.states.retain(|s| s.name != name);
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
    Ok((out, notes))
}
