//! Phase 2: syntax tree → typed intermediate representation.
//!
//! `lower` resolves every name, substitutes the scalings (`let beta = 1 - c*eta`),
//! gives every expression its [`Shape`], records for every read of the parameter or a
//! state whether it sees the value at the start of the step ([`Version::Old`]) or the
//! one this step has already written ([`Version::New`]), and checks the rule: every
//! state updated exactly once, no undeclared updates, shapes that fit, noise only
//! where it belongs. Problems come back as [`crate::Diagnostic`]s, as many as are found.
//!
//! [`canonical`] prints an [`Optimizer`] back as source text that parses to the same
//! IR (the round trip is tested).

mod laurent;
mod lower;
mod print;

pub use lower::lower;
pub use print::{canonical, Printer};

use crate::span::Span;
use crate::syntax::{Constraint, NoiseKind};
use num_rational::BigRational;

/// The shape of a value: scalar, vector in R^d, or d×d matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    Scalar,
    Vector,
    Matrix,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Scalar => "scalar",
            Shape::Vector => "vector",
            Shape::Matrix => "matrix",
        }
    }

    /// "a scalar", "a vector", "a matrix".
    pub fn article(self) -> &'static str {
        match self {
            Shape::Scalar => "a scalar",
            Shape::Vector => "a vector",
            Shape::Matrix => "a matrix",
        }
    }
}

/// One optimizer's update rule, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    pub name: String,
    /// The parameter, a vector in R^d.
    pub param: Decl,
    /// The optimizer's own states, in declaration order (the parameter is not among them).
    pub states: Vec<StateVar>,
    /// The small parameter of the expansion.
    pub small: Decl,
    pub hypers: Vec<Hyper>,
    /// Declared scalings, `name = expression` over the small parameter and the
    /// hyperparameters; already substituted wherever they are used.
    pub scalings: Vec<Scaling>,
    /// The time one step represents (the small parameter unless declared).
    pub time: Expr,
    /// Where the time per step is declared (the header when it is not).
    pub time_span: Span,
    /// Independent noise samples drawn each step.
    pub noises: Vec<Noise>,
    /// The step counter, if the rule reads it (0 at the first step).
    pub counter: Option<Decl>,
    /// The statements of one step, in order.
    pub steps: Vec<Step>,
    /// Where the `optimizer Name` header is.
    pub header: Span,
}

/// A declared name and where it was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decl {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateVar {
    pub name: String,
    pub shape: Shape,
    pub span: Span,
    /// A `fast v` or `slow v` declaration, and where it is; `None`: the derivation
    /// classifies the state itself ([`crate::derive`]).
    pub timescale: Option<(Timescale, Span)>,
}

/// Whether a state is eliminated as fast or kept as a state of the SME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timescale {
    Fast,
    Slow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hyper {
    pub name: String,
    pub constraint: Option<Constraint>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub name: String,
    pub expr: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    pub name: String,
    pub kind: NoiseKind,
    /// The covariance: the problem's, or fixed by the rule.
    pub law: Law,
    pub span: Span,
}

/// The covariance of a noise sample. Every sample is drawn independently of the others.
#[derive(Debug, Clone, PartialEq)]
pub enum Law {
    /// The problem's gradient noise: covariance Σ(x) at the point it is evaluated at
    /// (the minibatch noise).
    Problem,
    /// Gaussian with covariance `scale · I` at every point, `scale` a constant of the
    /// hyperparameters (injected noise: Langevin dynamics, label noise).
    Isotropic(Expr),
}

/// One statement of the step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub target: Target,
    pub expr: Expr,
    /// The whole statement.
    pub span: Span,
}

/// What a statement assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A value local to the step: `let g = grad f(x) + xi`.
    Local(String),
    /// The parameter or a state: `m = beta*m + (1 - beta)*g`.
    Var(String),
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Local(n) | Target::Var(n) => n,
        }
    }
}

/// Which value of the parameter or a state a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The value at the start of the step (`z_k`).
    Old,
    /// The value this step has already written (`z_{k+1}`).
    New,
}

/// A typed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub shape: Shape,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// An exact rational constant.
    Num(BigRational),
    /// The small parameter.
    Small,
    Hyper(String),
    /// The step index k.
    Counter,
    /// The parameter or a state.
    Var {
        name: String,
        version: Version,
    },
    /// A value defined earlier in the step by `let`.
    Local(String),
    /// The named noise sample of this step, at the start-of-step parameter (`at: None`)
    /// or at another point.
    Noise {
        sample: String,
        at: Option<Box<Expr>>,
    },
    /// f at a point.
    Objective(Box<Expr>),
    /// ∇f at a point.
    Grad(Box<Expr>),
    /// ∇²f at a point.
    Hess(Box<Expr>),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

/// Binary operators; vector operands act elementwise except for `@`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    MatMul,
    Pow,
}

/// Built-in functions. `sign`, `relu`, `min`, `max` and `clip` are elementwise and
/// not smooth at their kinks: with a small perturbation away from a kink they are
/// Taylor-expanded, with Gaussian noise of order one inside they are averaged in closed
/// form (DESIGN.md §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Sqrt,
    Exp,
    Log,
    Abs,
    Dot,
    Norm,
    /// `sign(a)`: −1, 0 or 1.
    Sign,
    /// `relu(a) = max(a, 0)`.
    Relu,
    /// `min(a, b)`, elementwise, a scalar broadcast against a vector.
    Min,
    /// `max(a, b)`, elementwise.
    Max,
    /// `clip(v, lo, hi) = min(max(v, lo), hi)`, elementwise; `lo ≤ hi` assumed.
    Clip,
}

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::Sqrt => "sqrt",
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Abs => "abs",
            Func::Dot => "dot",
            Func::Norm => "norm",
            Func::Sign => "sign",
            Func::Relu => "relu",
            Func::Min => "min",
            Func::Max => "max",
            Func::Clip => "clip",
        }
    }

    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "sqrt" => Func::Sqrt,
            "exp" => Func::Exp,
            "log" => Func::Log,
            "abs" => Func::Abs,
            "dot" => Func::Dot,
            "norm" => Func::Norm,
            "sign" => Func::Sign,
            "relu" => Func::Relu,
            "min" => Func::Min,
            "max" => Func::Max,
            "clip" => Func::Clip,
            _ => return None,
        })
    }
}

/// Names with a fixed meaning in expressions; they cannot be declared.
pub const BUILTIN_NAMES: &[&str] = &[
    "sqrt", "exp", "log", "abs", "dot", "norm", "sign", "relu", "min", "max", "clip", "old", "f",
];

/// The functions an update rule may call, for hints.
pub const FUNCTIONS: &[&str] = &[
    "sqrt", "exp", "log", "abs", "dot", "norm", "sign", "relu", "min", "max", "clip", "old",
];

impl Expr {
    pub fn new(kind: ExprKind, shape: Shape) -> Expr {
        Expr { kind, shape }
    }

    /// Visits every node, parents before children.
    pub fn walk(&self, visit: &mut impl FnMut(&Expr)) {
        visit(self);
        match &self.kind {
            ExprKind::Num(_)
            | ExprKind::Small
            | ExprKind::Hyper(_)
            | ExprKind::Counter
            | ExprKind::Var { .. }
            | ExprKind::Local(_) => {}
            ExprKind::Noise { at, .. } => {
                if let Some(at) = at {
                    at.walk(visit);
                }
            }
            ExprKind::Objective(a) | ExprKind::Grad(a) | ExprKind::Hess(a) | ExprKind::Neg(a) => {
                a.walk(visit)
            }
            ExprKind::Bin(_, a, b) => {
                a.walk(visit);
                b.walk(visit);
            }
            ExprKind::Call(_, args) => args.iter().for_each(|a| a.walk(visit)),
        }
    }

    /// The expression with every node for which `f` gives a replacement replaced (parents
    /// first: a replaced node's children are not visited).
    pub fn rewrite(&self, f: &mut impl FnMut(&Expr) -> Option<Expr>) -> Expr {
        if let Some(e) = f(self) {
            return e;
        }
        let mut one = |a: &Expr| Box::new(a.rewrite(f));
        let kind = match &self.kind {
            ExprKind::Num(_)
            | ExprKind::Small
            | ExprKind::Hyper(_)
            | ExprKind::Counter
            | ExprKind::Var { .. }
            | ExprKind::Local(_) => self.kind.clone(),
            ExprKind::Noise { sample, at } => ExprKind::Noise {
                sample: sample.clone(),
                at: at.as_ref().map(|a| one(a)),
            },
            ExprKind::Objective(a) => ExprKind::Objective(one(a)),
            ExprKind::Grad(a) => ExprKind::Grad(one(a)),
            ExprKind::Hess(a) => ExprKind::Hess(one(a)),
            ExprKind::Neg(a) => ExprKind::Neg(one(a)),
            ExprKind::Bin(op, a, b) => {
                let a = one(a);
                ExprKind::Bin(*op, a, one(b))
            }
            ExprKind::Call(func, args) => {
                ExprKind::Call(*func, args.iter().map(|a| a.rewrite(f)).collect())
            }
        };
        Expr {
            kind,
            shape: self.shape,
        }
    }

    /// Whether the value changes from step to step (reads a state, noise, f, the counter
    /// or a step-local value), as opposed to a constant of the hyperparameters.
    pub fn depends_on_step(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| {
            found |= matches!(
                e.kind,
                ExprKind::Counter
                    | ExprKind::Var { .. }
                    | ExprKind::Local(_)
                    | ExprKind::Noise { .. }
                    | ExprKind::Objective(_)
                    | ExprKind::Grad(_)
                    | ExprKind::Hess(_)
            )
        });
        found
    }

    /// Whether the expression mentions the small parameter.
    pub fn mentions_small(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e.kind, ExprKind::Small));
        found
    }
}

impl Optimizer {
    /// The same optimizer with every span set to zero, for comparing IRs that came
    /// from different texts.
    pub fn without_spans(&self) -> Optimizer {
        let mut o = self.clone();
        let z = Span::default();
        o.header = z;
        o.time_span = z;
        o.param.span = z;
        o.small.span = z;
        o.states.iter_mut().for_each(|s| {
            s.span = z;
            if let Some((_, span)) = &mut s.timescale {
                *span = z;
            }
        });
        o.hypers.iter_mut().for_each(|h| h.span = z);
        o.scalings.iter_mut().for_each(|s| s.span = z);
        o.noises.iter_mut().for_each(|n| n.span = z);
        if let Some(c) = &mut o.counter {
            c.span = z;
        }
        o.steps.iter_mut().for_each(|s| s.span = z);
        o
    }

    /// The shape of the parameter or a state.
    pub fn var_shape(&self, name: &str) -> Option<Shape> {
        if name == self.param.name {
            return Some(Shape::Vector);
        }
        self.states.iter().find(|s| s.name == name).map(|s| s.shape)
    }
}
