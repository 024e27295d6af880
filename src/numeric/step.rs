//! The reference interpreter of an update rule: one optimizer step at concrete values.
//!
//! This is the slow, tree-walking evaluation of the lowered rule ([`Optimizer`]) that the
//! simulation's compiled optimizer is to be tested against, as [`super::eval()`] is for
//! the derived SME. It walks the statements in order, as the rule's code would run:
//! `let` values are computed once, an update writes the new value of its variable, and
//! a read sees the old or the new value as the lowering resolved it ([`Version`]).
//!
//! Everything the rule reads about the problem comes from an [`Oracle`]: f, ∇f and ∇²f at
//! any point, and each noise sample at any point from this step's draw. The draw is the
//! caller's (a vector of independent standard normals, say), so one step is a
//! deterministic function of the state, the draw and the values; two reads of the same
//! sample in one step (`xi` and `xi(y)`, or SAM's two gradients) share the draw, as the
//! language says they do.
//!
//! Every ill-shaped input, missing value or non-finite result is an `Err` naming it:
//! a divergent run is detected here, at the statement where it happened.

use std::collections::BTreeMap;

use num_traits::ToPrimitive;

use super::Value;
use crate::ir::{BinOp, Expr, ExprKind, Func, Optimizer, Target, Version};

/// The problem as the update rule sees it. Points and vectors have `dim()` entries;
/// Hessians are `d × d`, row-major.
pub trait Oracle {
    fn dim(&self) -> usize;
    fn value(&self, x: &[f64]) -> f64;
    fn grad(&self, x: &[f64]) -> Vec<f64>;
    fn hess(&self, x: &[f64]) -> Vec<f64>;
    /// Why [`Oracle::hess`] is not available (a dimension past what forms a d × d
    /// matrix), or `None`.
    fn hess_unavailable(&self) -> Option<String> {
        None
    }
    /// The noise sample `index` (in the order of [`Optimizer::noises`]) at the point `x`,
    /// built from this step's draw for that sample (for Gaussian noise with covariance
    /// Σ(x), `Σ(x)^{1/2} draw`).
    fn noise(&self, index: usize, x: &[f64], draw: &[f64]) -> Vec<f64>;
}

/// The numbers a step needs besides the state: the small parameter, the
/// hyperparameters by name, and the step index `k` (0 at the first step).
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub small: f64,
    pub hypers: BTreeMap<String, f64>,
    pub counter: u64,
}

/// An intermediate value of the interpreter.
#[derive(Debug, Clone, PartialEq)]
enum N {
    S(f64),
    V(Vec<f64>),
    /// `d × d`, row-major.
    M(Vec<f64>),
}

impl N {
    fn into_value(self, what: &str) -> Result<Value, String> {
        match self {
            N::S(s) => Ok(Value::Scalar(s)),
            N::V(v) => Ok(Value::Vector(v)),
            N::M(_) => Err(format!("`{what}` evaluated to a matrix, not a state value")),
        }
    }

    fn finite(&self) -> bool {
        match self {
            N::S(s) => s.is_finite(),
            N::V(v) | N::M(v) => v.iter().all(|x| x.is_finite()),
        }
    }
}

/// The state variables of a rule, in the order [`step`] reads and writes them: the
/// parameter first, then the states in declaration order.
pub fn variables(rule: &Optimizer) -> Vec<&str> {
    std::iter::once(rule.param.name.as_str())
        .chain(rule.states.iter().map(|s| s.name.as_str()))
        .collect()
}

/// One step of `rule`: replaces `state` (ordered as [`variables`]) by the state after
/// the step. `draws[i]` is this step's draw for the noise sample `i`.
pub fn step(
    rule: &Optimizer,
    state: &mut [Value],
    oracle: &dyn Oracle,
    values: &Values,
    draws: &[Vec<f64>],
) -> Result<(), crate::Error> {
    step_inner(rule, state, oracle, values, draws).map_err(crate::Error::Other)
}

fn step_inner(
    rule: &Optimizer,
    state: &mut [Value],
    oracle: &dyn Oracle,
    values: &Values,
    draws: &[Vec<f64>],
) -> Result<(), String> {
    let names = variables(rule);
    if state.len() != names.len() {
        return Err(format!(
            "the rule has {} state variables ({}), the state holds {}",
            names.len(),
            names.join(", "),
            state.len()
        ));
    }
    if draws.len() != rule.noises.len() {
        return Err(format!(
            "the rule draws {} noise samples per step, {} draws were given",
            rule.noises.len(),
            draws.len()
        ));
    }
    let d = oracle.dim();
    let old: Vec<N> = state
        .iter()
        .zip(&names)
        .map(|(v, n)| match v {
            Value::Scalar(s) => Ok(N::S(*s)),
            Value::Vector(x) if x.len() == d => Ok(N::V(x.clone())),
            Value::Vector(x) => Err(format!(
                "`{n}` has {} components, the problem has d = {d}",
                x.len()
            )),
        })
        .collect::<Result<_, _>>()?;
    let mut run = Run {
        rule,
        oracle,
        values,
        draws,
        d,
        names: &names,
        new: old.clone(),
        old,
        locals: BTreeMap::new(),
    };
    for (i, s) in rule.steps.iter().enumerate() {
        let v = run.eval(&s.expr)?;
        if !v.finite() {
            return Err(format!(
                "statement {} (`{}`) gave a non-finite value",
                i + 1,
                s.target.name()
            ));
        }
        match &s.target {
            Target::Local(n) => {
                run.locals.insert(n.clone(), v);
            }
            Target::Var(n) => {
                let j = run.index(n)?;
                run.new[j] = v;
            }
        }
    }
    for ((slot, v), n) in state.iter_mut().zip(run.new).zip(&names) {
        *slot = v.into_value(n)?;
    }
    Ok(())
}

struct Run<'a> {
    rule: &'a Optimizer,
    oracle: &'a dyn Oracle,
    values: &'a Values,
    draws: &'a [Vec<f64>],
    d: usize,
    names: &'a [&'a str],
    old: Vec<N>,
    new: Vec<N>,
    locals: BTreeMap<String, N>,
}

impl Run<'_> {
    fn index(&self, name: &str) -> Result<usize, String> {
        self.names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| format!("`{name}` is not a state variable of the rule"))
    }

    fn point(&self, e: &Expr) -> Result<Vec<f64>, String> {
        match self.eval(e)? {
            N::V(x) => Ok(x),
            _ => Err("a point must be a vector".to_string()),
        }
    }

    fn checked(&self, v: Vec<f64>, what: &str, len: usize) -> Result<Vec<f64>, String> {
        if v.len() == len {
            Ok(v)
        } else {
            Err(format!(
                "the problem's {what} has {} entries, expected {len}",
                v.len()
            ))
        }
    }

    fn eval(&self, e: &Expr) -> Result<N, String> {
        let d = self.d;
        Ok(match &e.kind {
            ExprKind::Num(r) => N::S(r.to_f64().ok_or("a constant out of range")?),
            ExprKind::Small => N::S(self.values.small),
            ExprKind::Hyper(h) => N::S(
                *self
                    .values
                    .hypers
                    .get(h)
                    .ok_or_else(|| format!("no value for the hyperparameter `{h}`"))?,
            ),
            ExprKind::Counter => N::S(self.values.counter as f64),
            ExprKind::Var { name, version } => {
                let j = self.index(name)?;
                match version {
                    Version::Old => self.old[j].clone(),
                    Version::New => self.new[j].clone(),
                }
            }
            ExprKind::Local(n) => self
                .locals
                .get(n)
                .cloned()
                .ok_or_else(|| format!("`{n}` is read before it is defined"))?,
            ExprKind::Noise { sample, at } => {
                let i = self
                    .rule
                    .noises
                    .iter()
                    .position(|n| &n.name == sample)
                    .ok_or_else(|| format!("`{sample}` is not a noise sample of the rule"))?;
                let x = match at {
                    Some(p) => self.point(p)?,
                    None => self.point_of_param()?,
                };
                let draw = &self.draws[i];
                match &self.rule.noises[i].law {
                    // A covariance c·I of its own: √c times the standard normal draw.
                    crate::ir::Law::Isotropic(scale) => {
                        let c = match self.eval(scale)? {
                            N::S(c) => c,
                            _ => return Err("a noise covariance scale must be a scalar".into()),
                        };
                        if draw.len() < d {
                            return Err(format!(
                                "the noise sample `{sample}` needs {d} standard normals, {} drawn",
                                draw.len()
                            ));
                        }
                        N::V(draw[..d].iter().map(|w| c.sqrt() * w).collect())
                    }
                    crate::ir::Law::Problem => {
                        N::V(self.checked(self.oracle.noise(i, &x, draw), "noise sample", d)?)
                    }
                }
            }
            ExprKind::Objective(p) => N::S(self.oracle.value(&self.point(p)?)),
            ExprKind::Grad(p) => {
                N::V(self.checked(self.oracle.grad(&self.point(p)?), "gradient", d)?)
            }
            ExprKind::Hess(p) => {
                if let Some(why) = self.oracle.hess_unavailable() {
                    return Err(why);
                }
                N::M(self.checked(self.oracle.hess(&self.point(p)?), "Hessian", d * d)?)
            }
            ExprKind::Neg(a) => map(self.eval(a)?, |x| -x),
            ExprKind::Bin(op, a, b) => binary(*op, self.eval(a)?, self.eval(b)?, d)?,
            ExprKind::Call(f, args) => {
                let vals = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                call(*f, vals)?
            }
        })
    }

    fn point_of_param(&self) -> Result<Vec<f64>, String> {
        match &self.old[0] {
            N::V(x) => Ok(x.clone()),
            _ => Err("the parameter must be a vector".to_string()),
        }
    }
}

fn map(v: N, f: impl Fn(f64) -> f64) -> N {
    match v {
        N::S(s) => N::S(f(s)),
        N::V(x) => N::V(x.into_iter().map(f).collect()),
        N::M(x) => N::M(x.into_iter().map(f).collect()),
    }
}

fn zip(a: N, b: N, f: impl Fn(f64, f64) -> f64) -> Result<N, String> {
    Ok(match (a, b) {
        (N::S(x), N::S(y)) => N::S(f(x, y)),
        (N::S(x), N::V(y)) => N::V(y.into_iter().map(|y| f(x, y)).collect()),
        (N::V(x), N::S(y)) => N::V(x.into_iter().map(|x| f(x, y)).collect()),
        (N::S(x), N::M(y)) => N::M(y.into_iter().map(|y| f(x, y)).collect()),
        (N::M(x), N::S(y)) => N::M(x.into_iter().map(|x| f(x, y)).collect()),
        (N::V(x), N::V(y)) if x.len() == y.len() => {
            N::V(x.into_iter().zip(y).map(|(x, y)| f(x, y)).collect())
        }
        (N::M(x), N::M(y)) if x.len() == y.len() => {
            N::M(x.into_iter().zip(y).map(|(x, y)| f(x, y)).collect())
        }
        _ => return Err("operands of mismatched shapes".to_string()),
    })
}

fn binary(op: BinOp, a: N, b: N, d: usize) -> Result<N, String> {
    match op {
        BinOp::Add => zip(a, b, |x, y| x + y),
        BinOp::Sub => zip(a, b, |x, y| x - y),
        BinOp::Mul => zip(a, b, |x, y| x * y),
        BinOp::Div => zip(a, b, |x, y| x / y),
        BinOp::Pow => zip(a, b, pow),
        BinOp::MatMul => Ok(match (a, b) {
            (N::M(m), N::V(v)) => N::V(
                (0..d)
                    .map(|i| (0..d).map(|j| m[i * d + j] * v[j]).sum())
                    .collect(),
            ),
            (N::V(v), N::M(m)) => N::V(
                (0..d)
                    .map(|j| (0..d).map(|i| v[i] * m[i * d + j]).sum())
                    .collect(),
            ),
            (N::M(a), N::M(b)) => N::M(
                (0..d * d)
                    .map(|ij| {
                        let (i, j) = (ij / d, ij % d);
                        (0..d).map(|k| a[i * d + k] * b[k * d + j]).sum()
                    })
                    .collect(),
            ),
            _ => return Err("`@` takes matrices and vectors".to_string()),
        }),
    }
}

/// `x^y`, with integer exponents by repeated multiplication (exact signs for negative
/// bases, as `g^2` and `beta^(k + 1)` need).
fn pow(x: f64, y: f64) -> f64 {
    if y == y.trunc() && y.abs() <= i32::MAX as f64 {
        x.powi(y as i32)
    } else {
        x.powf(y)
    }
}

fn call(f: Func, mut args: Vec<N>) -> Result<N, String> {
    let one = |args: &mut Vec<N>| {
        args.pop()
            .ok_or_else(|| format!("`{}` needs an argument", f.name()))
    };
    Ok(match f {
        Func::Sqrt => map(one(&mut args)?, f64::sqrt),
        Func::Exp => map(one(&mut args)?, f64::exp),
        Func::Log => map(one(&mut args)?, f64::ln),
        Func::Abs => map(one(&mut args)?, f64::abs),
        // −1, 0 or 1 (0 at 0, as numpy's): the graph's own sign.
        Func::Sign => map(one(&mut args)?, |a| super::graph::Unary::Sign.apply(a)),
        Func::Relu => map(one(&mut args)?, |a| a.max(0.0)),
        Func::Min | Func::Max | Func::Clip => {
            let mut it = args.into_iter();
            let (Some(a), Some(b)) = (it.next(), it.next()) else {
                return Err(format!("`{}` needs two arguments", f.name()));
            };
            match f {
                Func::Min => zip(a, b, f64::min)?,
                Func::Max => zip(a, b, f64::max)?,
                _ => {
                    let hi = it.next().ok_or("`clip` needs three arguments")?;
                    // numpy's clip: the lower bound first, then the upper one.
                    zip(zip(a, b, f64::max)?, hi, f64::min)?
                }
            }
        }
        Func::Norm => match one(&mut args)? {
            N::V(x) => N::S(x.iter().map(|x| x * x).sum::<f64>().sqrt()),
            _ => return Err("`norm` takes a vector".to_string()),
        },
        Func::Dot => match (args.first(), args.get(1)) {
            (Some(N::V(a)), Some(N::V(b))) if a.len() == b.len() => {
                N::S(a.iter().zip(b).map(|(x, y)| x * y).sum())
            }
            _ => return Err("`dot` takes two vectors of one length".to_string()),
        },
    })
}
