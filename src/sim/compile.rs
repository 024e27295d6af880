//! Compiling an update rule, a derived SME and test functions for one problem.
//!
//! The problem fixes the dimension, so every vector of the rule or the SME becomes its
//! components, as [`Graph`] nodes over a flat state layout: the rule's variables in the
//! order of [`step::variables`] (a vector takes `d` slots, a scalar one), then the
//! SME's clock `t` when it has one. The objective's derivatives and the noise moments
//! come from the problem's [`Model`], imported at the point the rule or the SME reads
//! them. The results are [`Tape`]s; [`crate::numeric::step()`] and
//! [`crate::numeric::eval()`] are the references they are tested against.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops over matrix rows and columns read as the formulas do"
)]

use crate::algebra::elem::FExpr;
use crate::algebra::poly::Sym;
use crate::algebra::tensor::{Kind, Label, TExpr};
use crate::error::diagnostic::{Code, Diagnostic};
use crate::ir::{BinOp, Expr, ExprKind, Func, Optimizer, Target, Version};
use crate::numeric::eval::advance;
use crate::numeric::graph::{Binary, Graph, Id, Unary};
use crate::numeric::step;
use crate::numeric::tape::Tape;
use crate::problem::{self, Model};
use crate::sme::Sme;
use crate::Error;
use num_traits::ToPrimitive;
use std::collections::{BTreeMap, HashMap};

/// Where each variable lives in the flat state.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Name, offset, length (d or 1), in the rule's order, then the clock.
    pub vars: Vec<(String, usize, usize)>,
    /// Whether each variable is a scalar (a scalar state, or the clock).
    pub scalar: Vec<bool>,
    /// The number of slots of the rule's variables (the clock comes after).
    pub n_rule: usize,
    /// The total number of slots.
    pub n: usize,
    /// Whether the last slot is the SME's clock.
    pub clock: bool,
}

impl Layout {
    /// A stacked state split into the layout's values (the shapes the interpreters take).
    pub fn values(&self, z: &[f64]) -> Vec<crate::numeric::Value> {
        use crate::numeric::Value;
        self.vars
            .iter()
            .zip(&self.scalar)
            .map(|((_, off, len), &scalar)| {
                if scalar {
                    Value::Scalar(z[*off])
                } else {
                    Value::Vector(z[*off..off + len].to_vec())
                }
            })
            .collect()
    }

    /// The layout of `rule`'s variables in dimension `dim`, with the SME's clock (by its
    /// name) last when there is one.
    pub fn new(rule: &Optimizer, dim: usize, clock: Option<&str>) -> Layout {
        let mut vars = Vec::new();
        let mut scalar = Vec::new();
        let mut off = 0;
        for name in step::variables(rule) {
            let is_scalar = rule.var_shape(name) == Some(crate::ir::Shape::Scalar);
            let len = if is_scalar { 1 } else { dim };
            vars.push((name.to_string(), off, len));
            scalar.push(is_scalar);
            off += len;
        }
        let n_rule = off;
        if let Some(name) = clock {
            vars.push((name.to_string(), off, 1));
            scalar.push(true);
            off += 1;
        }
        Layout {
            vars,
            scalar,
            n_rule,
            n: off,
            clock: clock.is_some(),
        }
    }

    pub fn find(&self, name: &str) -> Option<(usize, usize)> {
        self.vars
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, o, l)| (o, l))
    }
}

/// Numbers the rule needs: the small parameter and hyperparameters.
#[derive(Debug, Clone)]
pub struct Numbers {
    pub small: f64,
    pub hypers: BTreeMap<String, f64>,
}

/// A value while scalarising: scalar, vector, or `d × d` matrix row-major.
#[derive(Debug, Clone)]
enum SV {
    S(Id),
    V(Vec<Id>),
    M(Vec<Id>),
}

/// One optimizer step as a tape. Inputs: the state (layout slots `0..n_rule`), the step
/// counter `k` (slot `n_rule`), then the standard normals of each noise sample in
/// order (`draws` each). Outputs: the new state.
#[derive(Debug, Clone)]
pub struct StepProgram {
    pub tape: Tape,
    pub n_state: usize,
    /// Inputs per noise sample: standard normals, or the minibatch's rows.
    pub draws: usize,
    /// Minibatch noise: the data rows and the batch size (the draws are `batch` rows,
    /// chosen uniformly with replacement); `None` for Gaussian noise (standard normals).
    pub minibatch: Option<(std::sync::Arc<ndarray::Array2<f64>>, usize)>,
    pub samples: usize,
    pub graph: Graph,
    pub outputs: Vec<Id>,
}

impl StepProgram {
    /// Minibatch noise: writes into `regs` the rows of one minibatch per lane and noise
    /// sample (`batch` rows, uniform with replacement). Does nothing for Gaussian noise.
    pub fn draw_minibatch(&self, regs: &mut [f64], rng: &mut crate::numeric::rng::Stream) {
        use crate::numeric::tape::LANES;
        let Some((rows, batch)) = &self.minibatch else {
            return;
        };
        let width = self.draws / (*batch).max(1);
        for s in 0..self.samples {
            for j in 0..*batch {
                let regs_of: Vec<Option<usize>> = (0..width)
                    .map(|c| self.tape.input_reg(self.normal_input(s, j * width + c)))
                    .collect();
                for lane in 0..LANES {
                    let u = rng.next_u64();
                    let i = ((u as u128 * rows.nrows() as u128) >> 64) as usize;
                    for (v, r) in rows.row(i).iter().zip(&regs_of) {
                        if let Some(r) = r {
                            regs[r * LANES + lane] = *v;
                        }
                    }
                }
            }
        }
    }

    pub fn counter_input(&self) -> usize {
        self.n_state
    }
    pub fn normal_input(&self, sample: usize, j: usize) -> usize {
        self.n_state + 1 + sample * self.draws + j
    }
    pub fn n_inputs(&self) -> usize {
        self.n_state + 1 + self.samples * self.draws
    }
}

struct StepBuilder<'a> {
    g: Graph,
    model: &'a mut Model,
    rule: &'a Optimizer,
    nums: &'a Numbers,
    layout: &'a Layout,
    d: usize,
    old: Vec<SV>,
    new: Vec<SV>,
    locals: HashMap<String, SV>,
    draws: usize,
}

/// Why a statement of the rule cannot be compiled, before it is pinned to the
/// statement's span ([`Fail::at`]): the compiler's expressions carry no spans of their own.
#[derive(Debug)]
struct Fail {
    code: Code,
    message: String,
    hint: Option<&'static str>,
}

impl Fail {
    /// Operands whose shapes the simulator cannot combine.
    fn shape(message: &str) -> Fail {
        Fail {
            code: Code::Shape,
            message: message.into(),
            hint: Some("make the operands' shapes fit: scalars with anything, vectors of one length, `@` between matrices and vectors"),
        }
    }

    /// The failure as a diagnostic on the statement at `span` in the optimizer file.
    fn at(self, span: crate::span::Span) -> Error {
        Error::Invalid(vec![Diagnostic::new(self.code, span, self.message)
            .label("the simulator cannot compile this statement")
            .maybe_hint(self.hint.map(str::to_string))])
    }
}

impl From<String> for Fail {
    fn from(message: String) -> Fail {
        Fail {
            code: Code::Unsupported,
            message,
            hint: Some("rewrite the statement with what the simulator compiles: numbers, hyperparameters, the rule's variables, noise, `f`, `grad f`, `hess f`, arithmetic, `@` and the rule's functions (`sqrt`, `exp`, `log`, `abs`, `sign`, `relu`, `min`, `max`, `clip`, `norm`, `dot`)"),
        }
    }
}

impl From<&str> for Fail {
    fn from(message: &str) -> Fail {
        Fail::from(message.to_string())
    }
}

/// Compiles one step of `rule` on the problem's model.
///
/// A statement the simulator cannot compile is an [`Error::Invalid`] diagnostic on the
/// statement, in the optimizer file.
pub fn compile_step(
    rule: &Optimizer,
    model: &mut Model,
    layout: &Layout,
    nums: &Numbers,
) -> Result<StepProgram, Error> {
    let d = model.dim;
    let mut g = Graph::new();
    let old: Vec<SV> = layout.vars[..step::variables(rule).len()]
        .iter()
        .zip(&layout.scalar)
        .map(|(&(_, off, len), &scalar)| {
            if scalar {
                SV::S(g.input(off as u32))
            } else {
                SV::V((off..off + len).map(|i| g.input(i as u32)).collect())
            }
        })
        .collect();
    // A sample with a covariance of its own draws d standard normals (beside Gaussian
    // problem noise, whose factor has d columns or fewer).
    let own_law = rule
        .noises
        .iter()
        .any(|n| matches!(n.law, crate::ir::Law::Isotropic(_)));
    let draws = if own_law && model.gaussian() {
        model.noise_draws().max(d)
    } else {
        model.noise_draws()
    };
    let mut b = StepBuilder {
        g,
        model,
        rule,
        nums,
        layout,
        d,
        new: old.clone(),
        old,
        locals: HashMap::new(),
        draws,
    };
    // The statement that last set each variable, for a failure found after the loop.
    let mut set_by: Vec<Option<crate::span::Span>> = vec![None; b.new.len()];
    for s in &rule.steps {
        let before = b.g.len();
        let v = b.eval(&s.expr).map_err(|f| f.at(s.span))?;
        // Constants fold as the statement compiles: a product of large literals can
        // overflow to an infinite constant, which the simulation would only show as
        // non-finite paths.
        if (before..b.g.len()).any(|i| b.g.value(i as Id).is_some_and(|c| !c.is_finite())) {
            return Err(Fail {
                code: Code::BadNumber,
                message: "a constant in this statement is not finite in 64-bit floating point"
                    .into(),
                hint: Some(
                    "scale the constants so that they and their products stay below about 1e308",
                ),
            }
            .at(s.span));
        }
        match &s.target {
            Target::Local(n) => {
                b.locals.insert(n.clone(), v);
            }
            Target::Var(n) => {
                let j = step::variables(rule)
                    .iter()
                    .position(|v| v == n)
                    .ok_or_else(|| {
                        Fail::from(format!("`{n}` is not a variable of the rule")).at(s.span)
                    })?;
                b.new[j] = v;
                set_by[j] = Some(s.span);
            }
        }
        b.g.check_size().map_err(|_| {
            Fail {
                code: Code::TooLarge,
                message: "the compiled step is too large".into(),
                hint: Some(
                    "simulate in a smaller dimension, or split the update into fewer operations",
                ),
            }
            .at(s.span)
        })?;
    }
    let mut outputs = Vec::new();
    for (v, span) in b.new.iter().zip(&set_by) {
        match v {
            SV::S(x) => outputs.push(*x),
            SV::V(x) => outputs.extend(x),
            SV::M(_) => {
                let fail = Fail::shape("a state evaluated to a matrix");
                return Err(match span {
                    Some(span) => fail.at(*span),
                    None => Error::Internal(fail.message),
                });
            }
        }
    }
    let n_state = layout.n_rule;
    let samples = rule.noises.len();
    let n_inputs = n_state + 1 + samples * draws;
    let tape = Tape::compile(&b.g, &outputs, n_inputs);
    let minibatch = match (&b.model.noise, &b.model.data) {
        (problem::Noise::Minibatch { batch }, Some(data)) => Some((data.rows.clone(), *batch)),
        _ => None,
    };
    Ok(StepProgram {
        tape,
        n_state,
        draws,
        minibatch,
        samples,
        graph: b.g,
        outputs,
    })
}

impl StepBuilder<'_> {
    fn point(&mut self, e: &Expr) -> Result<Vec<Id>, Fail> {
        match self.eval(e)? {
            SV::V(x) => Ok(x),
            _ => Err(Fail::shape("a point must be a vector")),
        }
    }

    fn param(&self) -> Vec<Id> {
        match &self.old[0] {
            SV::V(x) => x.clone(),
            SV::S(x) => vec![*x],
            SV::M(x) => x.clone(),
        }
    }

    fn eval(&mut self, e: &Expr) -> Result<SV, Fail> {
        let d = self.d;
        Ok(match &e.kind {
            ExprKind::Num(r) => SV::S(
                self.g
                    .constant(r.to_f64().ok_or("a constant out of range")?),
            ),
            ExprKind::Small => SV::S(self.g.constant(self.nums.small)),
            ExprKind::Hyper(h) => SV::S(
                self.g.constant(
                    *self
                        .nums
                        .hypers
                        .get(h)
                        .ok_or_else(|| format!("no value for the hyperparameter `{h}`"))?,
                ),
            ),
            ExprKind::Counter => SV::S(self.g.input(self.layout.n_rule as u32)),
            ExprKind::Var { name, version } => {
                let j = step::variables(self.rule)
                    .iter()
                    .position(|v| v == name)
                    .ok_or_else(|| format!("`{name}` is not a variable of the rule"))?;
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
                    .ok_or_else(|| format!("`{sample}` is not a noise sample"))?;
                let x = match at {
                    Some(p) => self.point(p)?,
                    None => self.param(),
                };
                let k = self.draws;
                let base = self.layout.n_rule + 1 + i * k;
                if let crate::ir::Law::Isotropic(scale) = &self.rule.noises[i].law {
                    // Covariance c·I: √c times the sample's first d standard normals.
                    let c = match self.eval(scale)? {
                        SV::S(c) => c,
                        _ => return Err(Fail::shape("a noise covariance scale must be a scalar")),
                    };
                    if k < d || !self.model.gaussian() {
                        return Err(Fail::from(format!(
                            "the noise sample `{sample}` has a covariance of its own; smelt simulates it beside Gaussian problem noise only (the problem's noise is a minibatch of data rows)"
                        )));
                    }
                    let root = self.g.unary(Unary::Sqrt, c);
                    return Ok(SV::V(
                        (0..d)
                            .map(|j| {
                                let z = self.g.input((base + j) as u32);
                                self.g.mul(root, z)
                            })
                            .collect(),
                    ));
                }
                match self.model.noise.clone() {
                    problem::Noise::Gaussian { factor } => {
                        let roots: Vec<Id> = factor.iter().flatten().copied().collect();
                        let s = self.g.import(&self.model.graph, &roots, &x);
                        // The factor's columns (a sample with a law of its own may have
                        // made the draws more).
                        let kf = factor.first().map_or(0, |r| r.len()).min(k);
                        let z: Vec<Id> = (0..kf).map(|j| self.g.input((base + j) as u32)).collect();
                        SV::V(
                            (0..d)
                                .map(|r| {
                                    let prods: Vec<Id> =
                                        (0..kf).map(|j| self.g.mul(s[r * kf + j], z[j])).collect();
                                    self.g.sum(prods)
                                })
                                .collect(),
                        )
                    }
                    problem::Noise::Minibatch { batch } => {
                        // (1/B) Σ_j ∇ℓ(x; row_j) − ∇f(x), the rows read from the inputs.
                        let lg = self
                            .model
                            .loss_grad()
                            .ok_or("minibatch noise without data")?;
                        let width = k / batch.max(1);
                        let mut sum = vec![self.g.constant(0.0); d];
                        for j in 0..batch {
                            let mut at = x.clone();
                            at.extend(
                                (0..width).map(|c| self.g.input((base + j * width + c) as u32)),
                            );
                            let gj = self.g.import(&self.model.graph, &lg, &at);
                            for (acc, v) in sum.iter_mut().zip(gj) {
                                *acc = self.g.add(*acc, v);
                            }
                        }
                        let full = self.model.df(1);
                        let full = self.g.import(&self.model.graph, &full, &x);
                        let inv = self.g.constant(1.0 / batch as f64);
                        SV::V(
                            sum.into_iter()
                                .zip(full)
                                .map(|(s, f)| {
                                    let m = self.g.mul(inv, s);
                                    self.g.sub(m, f)
                                })
                                .collect(),
                        )
                    }
                }
            }
            ExprKind::Objective(p) => {
                let x = self.point(p)?;
                let f = self.model.df(0);
                SV::S(self.g.import(&self.model.graph, &f, &x)[0])
            }
            ExprKind::Grad(p) => {
                let x = self.point(p)?;
                let t = self.model.df(1);
                SV::V(self.g.import(&self.model.graph, &t, &x))
            }
            ExprKind::Hess(p) => {
                let x = self.point(p)?;
                let t = self.model.df(2);
                SV::M(self.g.import(&self.model.graph, &t, &x))
            }
            ExprKind::Neg(a) => {
                let a = self.eval(a)?;
                self.map(a, |g, x| g.neg(x))
            }
            ExprKind::Bin(op, a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                self.binary(*op, a, b)?
            }
            ExprKind::Call(f, args) => {
                let vals = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                self.call(*f, vals)?
            }
        })
    }

    fn map(&mut self, v: SV, f: impl Fn(&mut Graph, Id) -> Id) -> SV {
        let g = &mut self.g;
        match v {
            SV::S(x) => SV::S(f(g, x)),
            SV::V(x) => SV::V(x.into_iter().map(|x| f(g, x)).collect()),
            SV::M(x) => SV::M(x.into_iter().map(|x| f(g, x)).collect()),
        }
    }

    fn zip(&mut self, a: SV, b: SV, f: impl Fn(&mut Graph, Id, Id) -> Id) -> Result<SV, Fail> {
        let g = &mut self.g;
        Ok(match (a, b) {
            (SV::S(x), SV::S(y)) => SV::S(f(g, x, y)),
            (SV::S(x), SV::V(y)) => SV::V(y.into_iter().map(|y| f(g, x, y)).collect()),
            (SV::V(x), SV::S(y)) => SV::V(x.into_iter().map(|x| f(g, x, y)).collect()),
            (SV::S(x), SV::M(y)) => SV::M(y.into_iter().map(|y| f(g, x, y)).collect()),
            (SV::M(x), SV::S(y)) => SV::M(x.into_iter().map(|x| f(g, x, y)).collect()),
            (SV::V(x), SV::V(y)) if x.len() == y.len() => {
                SV::V(x.into_iter().zip(y).map(|(x, y)| f(g, x, y)).collect())
            }
            (SV::M(x), SV::M(y)) if x.len() == y.len() => {
                SV::M(x.into_iter().zip(y).map(|(x, y)| f(g, x, y)).collect())
            }
            _ => return Err(Fail::shape("operands of mismatched shapes")),
        })
    }

    fn binary(&mut self, op: BinOp, a: SV, b: SV) -> Result<SV, Fail> {
        let d = self.d;
        match op {
            BinOp::Add => self.zip(a, b, |g, x, y| g.add(x, y)),
            BinOp::Sub => self.zip(a, b, |g, x, y| g.sub(x, y)),
            BinOp::Mul => self.zip(a, b, |g, x, y| g.mul(x, y)),
            BinOp::Div => self.zip(a, b, |g, x, y| g.div(x, y)),
            BinOp::Pow => self.zip(a, b, |g, x, y| g.binary(Binary::Pow, x, y)),
            BinOp::MatMul => {
                let g = &mut self.g;
                let mut dot = |pairs: Vec<(Id, Id)>| {
                    let p: Vec<Id> = pairs.into_iter().map(|(a, b)| g.mul(a, b)).collect();
                    g.sum(p)
                };
                Ok(match (a, b) {
                    (SV::M(m), SV::V(v)) => SV::V(
                        (0..d)
                            .map(|i| dot((0..d).map(|j| (m[i * d + j], v[j])).collect()))
                            .collect(),
                    ),
                    (SV::V(v), SV::M(m)) => SV::V(
                        (0..d)
                            .map(|j| dot((0..d).map(|i| (v[i], m[i * d + j])).collect()))
                            .collect(),
                    ),
                    (SV::M(a), SV::M(b)) => SV::M(
                        (0..d * d)
                            .map(|ij| {
                                let (i, j) = (ij / d, ij % d);
                                dot((0..d).map(|k| (a[i * d + k], b[k * d + j])).collect())
                            })
                            .collect(),
                    ),
                    _ => return Err(Fail::shape("`@` takes matrices and vectors")),
                })
            }
        }
    }

    fn call(&mut self, f: Func, mut args: Vec<SV>) -> Result<SV, Fail> {
        if matches!(f, Func::Min | Func::Max | Func::Clip) {
            let mut it = args.into_iter();
            let (Some(a), Some(b)) = (it.next(), it.next()) else {
                return Err(Fail::shape("`min`, `max` and `clip` need their arguments"));
            };
            // max(a, b) = a + relu(b − a), min(a, b) = a − relu(a − b), relu(u) = (u + |u|)/2
            // (within an ulp of the exact max and min); clip as numpy's, max first.
            let max = |g: &mut Graph, a: Id, b: Id| {
                let d = g.sub(b, a);
                let r = relu(g, d);
                g.add(a, r)
            };
            let min = |g: &mut Graph, a: Id, b: Id| {
                let d = g.sub(a, b);
                let r = relu(g, d);
                g.sub(a, r)
            };
            return match f {
                Func::Max => self.zip(a, b, max),
                Func::Min => self.zip(a, b, min),
                _ => {
                    let hi = it
                        .next()
                        .ok_or_else(|| Fail::shape("`clip` takes three arguments"))?;
                    let lower = self.zip(a, b, max)?;
                    self.zip(lower, hi, min)
                }
            };
        }
        let one = args
            .pop()
            .ok_or_else(|| format!("`{}` needs an argument", f.name()))?;
        Ok(match f {
            Func::Sqrt => self.map(one, |g, x| g.unary(Unary::Sqrt, x)),
            Func::Exp => self.map(one, |g, x| g.unary(Unary::Exp, x)),
            Func::Log => self.map(one, |g, x| g.unary(Unary::Log, x)),
            Func::Abs => self.map(one, |g, x| g.unary(Unary::Abs, x)),
            Func::Sign => self.map(one, |g, x| g.unary(Unary::Sign, x)),
            Func::Relu => self.map(one, relu),
            Func::Min | Func::Max | Func::Clip => unreachable!("handled above"),
            Func::Norm => match one {
                SV::V(x) => {
                    let sq: Vec<Id> = x.iter().map(|&c| self.g.powi(c, 2)).collect();
                    let s = self.g.sum(sq);
                    SV::S(self.g.unary(Unary::Sqrt, s))
                }
                _ => return Err(Fail::shape("`norm` takes a vector")),
            },
            Func::Dot => match (args.pop(), one) {
                (Some(SV::V(a)), SV::V(b)) if a.len() == b.len() => {
                    let p: Vec<Id> = a.iter().zip(&b).map(|(&x, &y)| self.g.mul(x, y)).collect();
                    SV::S(self.g.sum(p))
                }
                _ => return Err(Fail::shape("`dot` takes two vectors of one length")),
            },
        })
    }
}

/// `relu(u) = (u + |u|)/2`, exact in floating point.
fn relu(g: &mut Graph, u: Id) -> Id {
    let a = g.unary(Unary::Abs, u);
    let s = g.add(u, a);
    let half = g.constant(0.5);
    g.mul(half, s)
}

/// The values of an SME's coefficient symbols, by symbol number: the dimension, the
/// small parameter, the hyperparameters, and opaque constants such as `sqrt(c)` (read
/// back from their printed names).
pub fn symbol_values(
    sme: &Sme,
    dim: usize,
    nums: &Numbers,
    small_name: &str,
) -> Result<Vec<f64>, crate::Error> {
    symbol_values_words(sme, dim, nums, small_name).map_err(crate::Error::Other)
}

/// [`symbol_values`]'s failures in words.
fn symbol_values_words(
    sme: &Sme,
    dim: usize,
    nums: &Numbers,
    small_name: &str,
) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for i in 0.. {
        let Some(name) = sme.symbols.try_name(i) else {
            break;
        };
        let v = if i == sme.dim as usize {
            dim as f64
        } else if name == small_name {
            nums.small
        } else if let Some(v) = nums.hypers.get(name) {
            *v
        } else if let Some(e) = sme
            .eliminated
            .iter()
            .find(|e| e.complement.as_deref() == Some(name))
        {
            // κ = 1/(1 − μ) of a fast state's symbolic rate μ.
            let mu = e.rate.eval(&|s: Sym| {
                nums.hypers
                    .get(sme.symbols.name(s))
                    .copied()
                    .unwrap_or(f64::NAN)
            });
            if mu.is_nan() || mu.abs() >= 1.0 {
                return Err(format!(
                    "the rate {} of the fast state `{}` is {mu}: it does not contract",
                    e.rate.display(&sme.symbols),
                    e.name
                ));
            }
            1.0 / (1.0 - mu)
        } else {
            let e = crate::syntax::parse_expr(name)
                .map_err(|_| format!("no value for the symbol `{name}`"))?;
            let mut g = Graph::new();
            let mut scope: problem::expr::Scope = BTreeMap::new();
            for (h, v) in &nums.hypers {
                scope.insert(h.clone(), problem::expr::PV::S(g.constant(*v)));
            }
            scope.insert(
                small_name.to_string(),
                problem::expr::PV::S(g.constant(nums.small)),
            );
            problem::expr::constant(&mut g, &e, &scope, "a constant")
                .map_err(|_| format!("no value for the symbol `{name}`"))?
        };
        out.push(v);
    }
    Ok(out)
}

/// An SME compiled: one Euler–Maruyama substep as a tape, and its drift and factor.
///
/// Tape inputs: the state (layout slots `0..n`), the Brownian increments `dW`
/// (`n..2n`), the substep `δ` (`2n`), and for noise sampled from the rows
/// ([`RowNoise`]) the streams of the fine substeps it covers (`2n + 1 … 2n + 4`). Outputs:
/// `Z + b(Z) δ + L(Z) dW`, with `L` the lower Cholesky factor of the SME's `D = σσᵀ`,
/// or with the rows' noise in place of `L dW`.
#[derive(Debug, Clone)]
pub struct SdeProgram {
    pub tape: Tape,
    pub n: usize,
    pub graph: Graph,
    /// `b(Z)`, `n` nodes over the state inputs.
    pub drift: Vec<Id>,
    /// `D(Z)`, `n × n` row-major; empty when it is too large to form (noise from the
    /// rows at more than [`DENSE_LIMIT`] slots).
    pub diffusion: Vec<Id>,
    /// `L(Z)`, `n × n` row-major, lower triangular; empty with `diffusion`.
    pub factor: Vec<Id>,
    /// Set when the noise is sampled from the data rows instead of through `L`.
    pub rows: Option<Box<RowNoise>>,
    /// Whether `D` is the same at every state (additive noise).
    pub additive: bool,
    /// The time one optimizer step represents.
    pub tau: f64,
}

/// The largest state for which an SME's `D` and its Cholesky factor are formed as nodes
/// (`n²` and `n³/6` of them).
pub const DENSE_LIMIT: usize = 64;

/// An SME whose diffusion is `D = s(Z) Σ(x)` with minibatch noise over data rows, sampled
/// without forming Σ: `σ dW = √(s δ / (n B)) Σᵢ (∇ℓᵢ − ∇f) ζᵢ`, one standard normal `ζᵢ`
/// per row (`Cov = s δ C₂ / B = s δ Σ`, exactly in law), each a
/// [`crate::numeric::rng::counter_normal`] of `(stream, row)`, the stream
/// ([`crate::numeric::rng::row_stream`]) of the path and the fine substep. To integrate
/// one path at substeps of 1, 2 and 4 fine ones, the tape of level `l` (the tape itself
/// at `l = 0`, then `coarse`) reads the streams of the `2^l` fine substeps its substep
/// covers (inputs `2n + 1 + j`) and draws `ζᵢ = 2^(−l/2) Σⱼ counter_normal(streamⱼ, i)`:
/// the fine draws, made again.
#[derive(Debug, Clone)]
pub struct RowNoise {
    /// `s(Z)`, the node of the factor of Σ.
    pub scale: Id,
    /// The substep's tape at 2 and 4 fine substeps.
    pub coarse: [Tape; 2],
}

impl SdeProgram {
    /// The substep's tape at level `lvl` (substeps of `2^lvl` fine ones, `lvl < 3`): the
    /// tape itself, unless the noise comes from the rows, whose coarse levels draw again.
    pub fn level_tape(&self, lvl: usize) -> &Tape {
        match &self.rows {
            Some(r) if lvl > 0 => &r.coarse[lvl - 1],
            _ => &self.tape,
        }
    }
}

/// The time one optimizer step represents, from the SME's symbol values.
pub fn time_per_step(sme: &Sme, syms: &[f64]) -> f64 {
    sme.time
        .eval(&|s: Sym| syms.get(s as usize).copied().unwrap_or(f64::NAN))
}

/// Compiles a derived SME on the problem's model.
///
/// The SME has no source of its own, so a failure (a coefficient with no finite value,
/// a graph too large) is an [`Error::Other`] in words.
///
/// An SME with `D = s Σ` on a finite-sum problem samples its noise from the rows
/// ([`RowNoise`]); [`compile_sde_formed`] forms Σ instead.
pub fn compile_sde(
    sme: &Sme,
    model: &mut Model,
    layout: &Layout,
    syms: &[f64],
) -> Result<SdeProgram, Error> {
    sde(sme, model, layout, syms, true).map_err(Error::Other)
}

/// [`compile_sde`] with Σ always formed and factored (the other way to the same law,
/// for comparisons).
pub fn compile_sde_formed(
    sme: &Sme,
    model: &mut Model,
    layout: &Layout,
    syms: &[f64],
) -> Result<SdeProgram, Error> {
    sde(sme, model, layout, syms, false).map_err(Error::Other)
}

/// Whether [`compile_sde`] forms this SME's `D` (and its factor) on `model` at `n`
/// slots: always, unless the noise comes from the rows ([`RowNoise`]) and `n` is past
/// [`DENSE_LIMIT`]. Cheap: it reads the derived SME, compiles nothing.
pub fn forms_diffusion(sme: &Sme, model: &Model, n: usize) -> bool {
    n <= DENSE_LIMIT || rows_scale(sme, model).is_none()
}

/// `s` in `D = s Σ` when the SME's noise can be drawn from the model's data rows.
fn rows_scale(sme: &Sme, model: &Model) -> Option<TExpr> {
    match (&model.noise, &model.data) {
        (problem::Noise::Minibatch { .. }, Some(_)) => sigma_multiple(sme),
        _ => None,
    }
}

/// `s` when every diffusion block is zero but the parameter's, and that is `s Σ` with
/// `s` free of indices: each term Σ's one atom on the two free slots times factors with
/// no slot.
fn sigma_multiple(sme: &Sme) -> Option<TExpr> {
    let mut s = TExpr {
        free: 0,
        terms: BTreeMap::new(),
    };
    for block in &sme.diffusion {
        if block.expr.terms.is_empty() {
            continue;
        }
        if block.rows != 0 || block.cols != 0 || block.expr.free != 2 || sme.vars[0].scalar {
            return None;
        }
        for (term, c) in &block.expr.terms {
            let mut rest = Vec::new();
            let mut sigma = false;
            for a in &term.atoms {
                let on_free = a.idx[..] == [0, 1] || a.idx[..] == [1, 0];
                match a.kind {
                    Kind::Moment { r: 2, d: 0 } if on_free && !sigma => sigma = true,
                    _ if a.idx.is_empty() => rest.push(a.clone()),
                    _ => return None,
                }
            }
            if !sigma {
                return None;
            }
            let key = crate::algebra::tensor::Term { atoms: rest };
            let sum = match s.terms.get(&key) {
                Some(p) => p.add(c),
                None => c.clone(),
            };
            s.terms.insert(key, sum);
        }
    }
    (!s.terms.is_empty()).then_some(s)
}

fn sde(
    sme: &Sme,
    model: &mut Model,
    layout: &Layout,
    syms: &[f64],
    from_rows: bool,
) -> Result<SdeProgram, String> {
    let d = model.dim;
    let n = layout.n;
    let mut g = Graph::new();
    let z: Vec<Id> = (0..n).map(|i| g.input(i as u32)).collect();
    // Each SME variable's slots.
    let slots: Vec<(usize, usize)> = sme
        .vars
        .iter()
        .enumerate()
        .map(|(v, info)| {
            if sme.clock == Some(v) {
                layout.find("t").ok_or("the layout has no clock")
            } else {
                layout
                    .find(&info.name)
                    .ok_or("a variable of the SME is not in the layout")
            }
        })
        .collect::<Result<_, _>>()?;
    let x: Vec<Id> = z[slots[0].0..slots[0].0 + d].to_vec();
    let mut sc = Scalarizer {
        g: &mut g,
        model,
        sme,
        syms,
        z: &z,
        slots: &slots,
        x: &x,
        d,
        tensors: HashMap::new(),
    };
    let mut drift = vec![sc.g.constant(0.0); n];
    for (v, b) in sme.drift.iter().enumerate() {
        let vals = sc.texpr(b)?;
        let (off, len) = slots[v];
        if vals.len() != len {
            return Err(format!(
                "the drift of `{}` has {} components, expected {len}",
                sme.vars[v].name,
                vals.len()
            ));
        }
        drift[off..off + len].copy_from_slice(&vals);
    }
    // Noise from the rows when D = s Σ on a finite sum.
    let scale = match rows_scale(sme, sc.model).filter(|_| from_rows) {
        Some(s) => Some(sc.texpr(&s)?[0]),
        None => None,
    };
    // D and its factor as nodes (for the start's checks and the coupling), unless the
    // rows give the noise and they would be too large.
    let zero = sc.g.constant(0.0);
    let (dmat, l) = if scale.is_none() || n <= DENSE_LIMIT {
        let mut dmat = vec![zero; n * n];
        for block in &sme.diffusion {
            let vals = sc.texpr(&block.expr)?;
            let (ro, rl) = slots[block.rows];
            let (co, cl) = slots[block.cols];
            if vals.len() != rl * cl {
                return Err("a diffusion block has the wrong size".into());
            }
            for i in 0..rl {
                for j in 0..cl {
                    let v = vals[i * cl + j];
                    dmat[(ro + i) * n + co + j] = v;
                    dmat[(co + j) * n + ro + i] = v;
                }
            }
        }
        let rows: Vec<Vec<Id>> = (0..n).map(|i| dmat[i * n..(i + 1) * n].to_vec()).collect();
        let l = problem::cholesky(sc.g, &rows);
        (dmat, l)
    } else {
        (Vec::new(), Vec::new())
    };
    let factor: Vec<Id> = l.iter().flatten().copied().collect();
    let additive = !factor.iter().any(|&f| g.reads_inputs(f));
    let delta = g.input((2 * n) as u32);
    let Some(scale) = scale else {
        let tape = substep_tape(&mut g, &z, &drift, delta, 2 * n + 1, |g, i, terms| {
            for j in 0..=i {
                let dw = g.input((n + j) as u32);
                terms.push(g.mul(l[i][j], dw));
            }
        })?;
        return Ok(SdeProgram {
            tape,
            n,
            graph: g,
            drift,
            diffusion: dmat,
            factor,
            rows: None,
            additive,
            tau: time_per_step(sme, syms),
        });
    };
    // σ dW = √(s δ n / B) (1/n) Σᵢ (∇ℓᵢ − ∇f) ζᵢ, as the row means
    // mean(∇ℓᵢ ζᵢ) − ∇f mean(ζᵢ): one pass over the rows with ∇f's own.
    let data = model.data.as_ref().ok_or("no data rows")?;
    let (n_rows, width) = (data.len(), data.width);
    let batch = match model.noise {
        problem::Noise::Minibatch { batch } => batch,
        problem::Noise::Gaussian { .. } => unreachable!("minibatch noise was matched above"),
    };
    let loss_grad = model.loss_grad().ok_or("no data rows")?;
    let mut at: Vec<Id> = x.clone();
    at.extend((0..width as u32).map(|c| g.row(c)));
    let per_row = g.import(&model.graph, &loss_grad, &at);
    let grad = {
        let t = model.df(1);
        g.import(&model.graph, &t, &x)
    };
    let index = g.row_index();
    let factor_const = g.constant(n_rows as f64 / batch as f64);
    let sn = g.mul(scale, factor_const);
    let sdelta = g.mul(sn, delta);
    let amp = g.unary(Unary::Sqrt, sdelta);
    let (x_off, _) = slots[0];
    let mut tapes = Vec::with_capacity(3);
    for level in 0..3u32 {
        let group = 1u32 << level;
        let draws: Vec<Id> = (0..group)
            .map(|j| {
                let stream = g.input(2 * n as u32 + 1 + j);
                g.normal(stream, index)
            })
            .collect();
        let sum = g.sum(draws);
        let norm = g.constant(1.0 / f64::from(group).sqrt());
        let zeta = g.mul(sum, norm);
        let zbar = g.row_mean(zeta);
        tapes.push(substep_tape(
            &mut g,
            &z,
            &drift,
            delta,
            2 * n + 5,
            |g, i, terms| {
                if (x_off..x_off + d).contains(&i) {
                    let k = i - x_off;
                    let pz = g.mul(per_row[k], zeta);
                    let m = g.row_mean(pz);
                    let gz = g.mul(grad[k], zbar);
                    let centred = g.sub(m, gz);
                    terms.push(g.mul(amp, centred));
                }
            },
        )?);
    }
    let [tape, c1, c2]: [Tape; 3] = tapes.try_into().expect("three levels");
    Ok(SdeProgram {
        tape,
        n,
        graph: g,
        drift,
        diffusion: dmat,
        factor,
        rows: Some(Box::new(RowNoise {
            scale,
            coarse: [c1, c2],
        })),
        additive: false,
        tau: time_per_step(sme, syms),
    })
}

/// One substep's tape over `inputs` inputs: the outputs `Zᵢ + bᵢ δ + …`, the noise's
/// terms of slot `i` pushed by `noise` (the factor's `L dW`, or the rows' draws).
fn substep_tape(
    g: &mut Graph,
    z: &[Id],
    drift: &[Id],
    delta: Id,
    inputs: usize,
    mut noise: impl FnMut(&mut Graph, usize, &mut Vec<Id>),
) -> Result<Tape, String> {
    let mut outputs = Vec::with_capacity(z.len());
    for (i, (&zi, &bi)) in z.iter().zip(drift).enumerate() {
        let bd = g.mul(bi, delta);
        let mut terms = vec![zi, bd];
        noise(g, i, &mut terms);
        outputs.push(g.sum(terms));
    }
    g.check_size()
        .map_err(|_| "the compiled SME is too large".to_string())?;
    Ok(Tape::compile(g, &outputs, inputs))
}

struct Scalarizer<'a> {
    g: &'a mut Graph,
    model: &'a mut Model,
    sme: &'a Sme,
    syms: &'a [f64],
    z: &'a [Id],
    slots: &'a [(usize, usize)],
    x: &'a [Id],
    d: usize,
    tensors: HashMap<Kind, Vec<Id>>,
}

impl Scalarizer<'_> {
    fn tensor(&mut self, kind: Kind) -> Result<Vec<Id>, String> {
        if let Some(t) = self.tensors.get(&kind) {
            return Ok(t.clone());
        }
        let t = match kind {
            Kind::DF(k) => self.model.df(k as usize),
            Kind::Moment { r, d } => self.model.moment_words(r as usize, d as usize)?,
            _ => return Err("not a tensor factor".into()),
        };
        let t = self.g.import(&self.model.graph, &t, self.x);
        self.tensors.insert(kind, t.clone());
        Ok(t)
    }

    /// The components of `e`, row-major over its free indices.
    fn texpr(&mut self, e: &TExpr) -> Result<Vec<Id>, String> {
        let d = self.d;
        let free = e.free as usize;
        let mut acc: Vec<Vec<Id>> = vec![Vec::new(); d.pow(free as u32)];
        for (term, c) in &e.terms {
            let coef = c.eval(&|s: Sym| self.syms.get(s as usize).copied().unwrap_or(f64::NAN));
            if !coef.is_finite() {
                return Err("a coefficient has no value".into());
            }
            if coef == 0.0 {
                continue;
            }
            let mut labels: Vec<Label> = (0..e.free).collect();
            for a in &term.atoms {
                for &l in &a.idx {
                    if !labels.contains(&l) {
                        labels.push(l);
                    }
                }
            }
            let mut slot = [usize::MAX; 256];
            for (k, &l) in labels.iter().enumerate() {
                slot[l as usize] = k;
            }
            // Resolve tensors once per term.
            for a in &term.atoms {
                if matches!(a.kind, Kind::DF(_) | Kind::Moment { .. }) {
                    self.tensor(a.kind)?;
                }
            }
            let total = d.pow(labels.len() as u32);
            let mut vals = vec![0usize; labels.len()];
            'assign: for _ in 0..total {
                let at = |l: Label, vals: &[usize]| vals[slot[l as usize]];
                let mut factors: Vec<Id> = Vec::with_capacity(term.atoms.len());
                for a in &term.atoms {
                    let node = match a.kind {
                        Kind::DF(_) | Kind::Moment { .. } => {
                            let t = &self.tensors[&a.kind];
                            let pos = a.idx.iter().fold(0, |acc, &l| acc * d + at(l, &vals));
                            t[pos]
                        }
                        Kind::State(v) => {
                            let (off, _) = self.slots[v as usize];
                            if a.idx.is_empty() {
                                self.z[off]
                            } else {
                                self.z[off + at(a.idx[0], &vals)]
                            }
                        }
                        Kind::One => continue,
                        Kind::Delta => {
                            if at(a.idx[0], &vals) != at(a.idx[1], &vals) {
                                advance(&mut vals, d);
                                continue 'assign;
                            }
                            continue;
                        }
                        Kind::Elem(id) => {
                            let f = self
                                .sme
                                .elem
                                .functions
                                .get(id as usize)
                                .ok_or("an unknown elementwise function")?
                                .clone();
                            let i = a.idx.first().map(|&l| at(l, &vals));
                            self.fexpr(&f, i)?
                        }
                        Kind::Pair(id) => {
                            let (i, j) = (at(a.idx[0], &vals), at(a.idx[1], &vals));
                            self.pair_entry(id, i, j)?
                        }
                        Kind::Noise { .. } | Kind::Kink(_) | Kind::Disp(_) => {
                            return Err("a noise or displacement factor in a derived SME".into())
                        }
                    };
                    factors.push(node);
                }
                let mut p = self.g.constant(coef);
                for f in factors {
                    p = self.g.mul(p, f);
                }
                let pos = vals[..free].iter().fold(0, |acc, &i| acc * d + i);
                acc[pos].push(p);
                advance(&mut vals, d);
            }
            self.g
                .check_size()
                .map_err(|_| "the compiled SME is too large".to_string())?;
        }
        Ok(acc.into_iter().map(|t| self.g.sum(t)).collect())
    }

    /// Entry (i, j) of a kink pair: its diagonal function for i = j, else the bivariate
    /// normal mean of the two kinks, `E[F(U) G(V)]` written as affine pieces plus steps
    /// `(c + d x) 1{x > α}` in the standardized variables and summed over the
    /// upper-orthant moments `P, E[X 1], E[Y 1], E[XY 1]` (Rosenbaum 1961), the same
    /// closed forms as [`crate::numeric::gauss::expect_pl2`] (against which it is tested),
    /// for |ρ| < 1.
    fn pair_entry(&mut self, id: u32, i: usize, j: usize) -> Result<Id, String> {
        let p = self
            .sme
            .elem
            .pairs
            .get(id as usize)
            .ok_or("an unknown kink pair")?
            .clone();
        if i == j {
            let f = self
                .sme
                .elem
                .functions
                .get(p.diag as usize)
                .ok_or("an unknown elementwise function")?
                .clone();
            return self.fexpr(&f, Some(i));
        }
        let d = self.d;
        let (sii, sjj, sij) = match &p.scale {
            Some(c) => {
                let c = c.eval(&|s: Sym| self.syms.get(s as usize).copied().unwrap_or(f64::NAN));
                (self.g.constant(c), self.g.constant(c), self.g.constant(0.0))
            }
            None => {
                let t = self.tensor(Kind::Moment { r: 2, d: 0 })?;
                (t[i * d + i], t[j * d + j], t[i * d + j])
            }
        };
        let a = self.fexpr(&p.left.mean, Some(i))?;
        let ca = self.fexpr(&p.left.coef, Some(i))?;
        let b = self.fexpr(&p.right.mean, Some(j))?;
        let cb = self.fexpr(&p.right.coef, Some(j))?;
        let g = &mut self.g;
        let sd = |g: &mut Graph, c: Id, v: Id| {
            let r = g.unary(Unary::Sqrt, v);
            let m = g.unary(Unary::Abs, c);
            g.mul(m, r)
        };
        let (si, sj) = (sd(g, ca, sii), sd(g, cb, sjj));
        let prod = g.mul(sii, sjj);
        let root = g.unary(Unary::Sqrt, prod);
        let corr = g.div(sij, root);
        let cc = g.mul(ca, cb);
        let sgn = g.unary(Unary::Sign, cc);
        let r = g.mul(corr, sgn);
        // (threshold or None for −∞, c, d) of each side.
        let pieces = |g: &mut Graph, abs: bool, m: Id, s: Id| -> [(Option<Id>, Id, Id); 2] {
            let ratio = g.div(m, s);
            let alpha = g.neg(ratio);
            let zero = g.constant(0.0);
            if abs {
                let (nm, ns) = (g.neg(m), g.neg(s));
                let two = g.constant(2.0);
                let (tm, ts) = (g.mul(two, m), g.mul(two, s));
                [(None, nm, ns), (Some(alpha), tm, ts)]
            } else {
                let (mone, two) = (g.constant(-1.0), g.constant(2.0));
                [(None, mone, zero), (Some(alpha), two, zero)]
            }
        };
        let left = pieces(g, p.left.abs, a, si);
        let right = pieces(g, p.right.abs, b, sj);
        let mut terms = Vec::new();
        for &(alpha, c, dd) in &left {
            for &(beta, e, h) in &right {
                let [pp, ex, ey, exy] = upper_orthant(g, alpha, beta, r);
                let t1 = g.mul(c, e);
                let t1 = g.mul(t1, pp);
                let t2 = g.mul(c, h);
                let t2 = g.mul(t2, ey);
                let t3 = g.mul(dd, e);
                let t3 = g.mul(t3, ex);
                let t4 = g.mul(dd, h);
                let t4 = g.mul(t4, exy);
                terms.extend([t1, t2, t3, t4]);
            }
        }
        Ok(self.g.sum(terms))
    }

    fn fexpr(&mut self, f: &FExpr, i: Option<usize>) -> Result<Id, String> {
        Ok(match f {
            FExpr::Const(c) => {
                let v = c.eval(&|s: Sym| self.syms.get(s as usize).copied().unwrap_or(f64::NAN));
                self.g.constant(v)
            }
            FExpr::Var(v) => {
                let (off, _) = self.slots[*v as usize];
                if self.sme.vars[*v as usize].scalar {
                    self.z[off]
                } else {
                    self.z[off + i.ok_or("a vector state read without an index")?]
                }
            }
            FExpr::Sum(items) => {
                let v = items
                    .iter()
                    .map(|x| self.fexpr(x, i))
                    .collect::<Result<Vec<_>, _>>()?;
                self.g.sum(v)
            }
            FExpr::Prod(items) => {
                let mut p = self.g.constant(1.0);
                for x in items {
                    let n = self.fexpr(x, i)?;
                    p = self.g.mul(p, n);
                }
                p
            }
            FExpr::Pow(b, q) => {
                let b = self.fexpr(b, i)?;
                if q.is_integer() {
                    self.g
                        .powi(b, q.to_integer().to_i32().ok_or("a power out of range")?)
                } else {
                    let e = self.g.constant(q.to_f64().ok_or("a power out of range")?);
                    self.g.binary(Binary::Pow, b, e)
                }
            }
            FExpr::Exp(a) => {
                let a = self.fexpr(a, i)?;
                self.g.unary(Unary::Exp, a)
            }
            FExpr::Log(a) => {
                let a = self.fexpr(a, i)?;
                self.g.unary(Unary::Log, a)
            }
            FExpr::Abs(a) => {
                let a = self.fexpr(a, i)?;
                self.g.unary(Unary::Abs, a)
            }
            FExpr::Sign(a) => {
                let a = self.fexpr(a, i)?;
                self.g.unary(Unary::Sign, a)
            }
            FExpr::Ncdf(a) => {
                let a = self.fexpr(a, i)?;
                self.g.unary(Unary::Ncdf, a)
            }
            FExpr::Npdf(a) => {
                let a = self.fexpr(a, i)?;
                self.g.unary(Unary::Npdf, a)
            }
            FExpr::Field(field) => {
                let i = i.ok_or("a field of the problem read without an index")?;
                let d = self.d;
                match field {
                    crate::algebra::elem::Field::Grad => self.tensor(Kind::DF(1))?[i],
                    crate::algebra::elem::Field::NoiseVar => {
                        self.tensor(Kind::Moment { r: 2, d: 0 })?[i * d + i]
                    }
                }
            }
            FExpr::Contract(a) => {
                let terms = (0..self.d)
                    .map(|j| self.fexpr(a, Some(j)))
                    .collect::<Result<Vec<_>, _>>()?;
                self.g.sum(terms)
            }
        })
    }
}

/// `[P, E X1, E Y1, E XY1]` for the upper orthant `{X > h, Y > k}` of a standard
/// bivariate normal with correlation `r` (|r| < 1), `None` a threshold at −∞.
fn upper_orthant(g: &mut Graph, h: Option<Id>, k: Option<Id>, r: Id) -> [Id; 4] {
    let q = |g: &mut Graph, x: Id| {
        let n = g.neg(x);
        g.unary(Unary::Ncdf, n)
    };
    // Q(x) + x φ(x) = E[X² 1{X > x}]
    let tail2 = |g: &mut Graph, x: Id| {
        let qx = q(g, x);
        let px = g.unary(Unary::Npdf, x);
        let xp = g.mul(x, px);
        g.add(qx, xp)
    };
    match (h, k) {
        (None, None) => {
            let (one, zero) = (g.constant(1.0), g.constant(0.0));
            [one, zero, zero, r]
        }
        (None, Some(k)) => {
            let p = q(g, k);
            let e = g.unary(Unary::Npdf, k);
            let re = g.mul(r, e);
            let t = tail2(g, k);
            let rt = g.mul(r, t);
            [p, re, e, rt]
        }
        (Some(h), None) => {
            let p = q(g, h);
            let e = g.unary(Unary::Npdf, h);
            let re = g.mul(r, e);
            let t = tail2(g, h);
            let rt = g.mul(r, t);
            [p, e, re, rt]
        }
        (Some(h), Some(k)) => {
            let one = g.constant(1.0);
            let r2 = g.mul(r, r);
            let om = g.sub(one, r2);
            let s = g.unary(Unary::Sqrt, om);
            let rh = g.mul(r, h);
            let rk = g.mul(r, k);
            let an = g.sub(k, rh);
            let a = g.div(an, s);
            let bn = g.sub(h, rk);
            let b = g.div(bn, s);
            let (qa, qb) = (q(g, a), q(g, b));
            let (ph, pk) = (g.unary(Unary::Npdf, h), g.unary(Unary::Npdf, k));
            let (nh, nk) = (g.neg(h), g.neg(k));
            let p = g.bvn(nh, nk, r);
            let phqa = g.mul(ph, qa);
            let pkqb = g.mul(pk, qb);
            let rpkqb = g.mul(r, pkqb);
            let rphqa = g.mul(r, phqa);
            let ex = g.add(phqa, rpkqb);
            let ey = g.add(pkqb, rphqa);
            let rp = g.mul(r, p);
            let hr = g.mul(rh, phqa);
            let kr = g.mul(rk, pkqb);
            let pa = g.unary(Unary::Npdf, a);
            let sph = g.mul(s, ph);
            let last = g.mul(sph, pa);
            let exy = g.sum([rp, hr, kr, last]);
            [p, ex, ey, exy]
        }
    }
}

/// The names an expression over the state may read: the problem's constants, and each
/// variable of the layout as graph inputs (its slots).
pub fn state_scope(
    problem: &problem::Problem,
    layout: &Layout,
    g: &mut Graph,
) -> problem::expr::Scope {
    let mut scope: problem::expr::Scope = BTreeMap::new();
    for (k, v) in &problem.constants {
        scope.insert(k.clone(), problem::expr::PV::S(g.constant(*v)));
    }
    for ((name, off, len), &scalar) in layout.vars.iter().zip(&layout.scalar) {
        let ids: Vec<Id> = (*off..off + len).map(|i| g.input(i as u32)).collect();
        let v = if scalar {
            problem::expr::PV::S(ids[0])
        } else {
            problem::expr::PV::V(ids)
        };
        scope.insert(name.clone(), v);
    }
    // The objective's variable (`x` in `f(x)`) names the rule's parameter too, unless
    // the rule has a variable of that name (checked in `compile_observables`).
    if let (Some(param), false) = (
        layout.vars.first().map(|v| v.0.clone()),
        scope.contains_key(&problem.var),
    ) {
        if let Some(v) = scope.get(&param).cloned() {
            scope.insert(problem.var.clone(), v);
        }
    }
    scope
}

/// The problem's names against the rule's: the objective's variable stands for the
/// parameter (`start x` and `observe … x …` with `param w`), so the rule may have no
/// other variable of that name, and the parameter must be started under one name or
/// the other.
pub fn check_names(
    problem: &problem::Problem,
    layout: &Layout,
) -> Result<(), Box<crate::Diagnostic>> {
    let param = layout.vars.first().map_or("x", |v| v.0.as_str());
    if let Some((name, _, _)) = layout.vars.iter().skip(1).find(|v| v.0 == problem.var) {
        return Err(Box::new(
            crate::Diagnostic::new(
                crate::Code::Redeclared,
                problem.var_span,
                format!(
                    "the objective's variable `{name}` is also the name of a state of the rule"
                ),
            )
            .label("the parameter here")
            .hint(format!(
                "name the objective's variable as the rule names its parameter: `f({param})`"
            )),
        ));
    }
    if !problem
        .starts
        .iter()
        .any(|s| s.name == problem.var || s.name == param)
    {
        return Err(Box::new(
            crate::Diagnostic::new(
                crate::Code::Declaration,
                problem.header,
                format!("no start value for the parameter `{param}`"),
            )
            .label("this problem")
            .hint(format!("add `start {param} = ...`")),
        ));
    }
    Ok(())
}

/// Test functions φ over the layout's state: one tape, inputs the state slots.
pub fn compile_observables(
    problem: &problem::Problem,
    layout: &Layout,
) -> Result<(Tape, Graph, Vec<Id>), Box<crate::Diagnostic>> {
    check_names(problem, layout)?;
    let mut g = Graph::new();
    let mut scope = state_scope(problem, layout, &mut g);
    // The objective at the state, for `f(x)` (a finite sum stays one row mean).
    if let Some(param) = scope.get(&problem.var).cloned() {
        let ids = match &param {
            problem::expr::PV::V(ids) => ids.clone(),
            problem::expr::PV::S(id) => vec![*id],
            problem::expr::PV::M(_) => Vec::new(),
        };
        if ids.len() == problem.dim {
            let model = &problem.model;
            let f = g.import(&model.graph, &[model.f], &ids)[0];
            scope.insert(problem::expr::OBJECTIVE_AT.into(), problem::expr::PV::S(f));
            scope.insert(problem::expr::OBJECTIVE_ARG.into(), param);
        }
    }
    let mut outs = Vec::new();
    for o in &problem.observables {
        match problem::expr::build(&mut g, &o.expr, &scope)? {
            problem::expr::PV::S(id) => outs.push(id),
            other => {
                return Err(Box::new(
                    crate::Diagnostic::new(
                        crate::Code::Shape,
                        o.expr.span,
                        format!("a test function must be a number, this is {}", other.kind()),
                    )
                    .label("not a scalar")
                    .hint("sum the components (`sum(x^2)`) or pick one (`x[1]`)"),
                ))
            }
        }
    }
    let tape = Tape::compile(&g, &outs, layout.n);
    Ok((tape, g, outs))
}
