//! Phase 1: text → syntax tree.
//!
//! The grammar lives in `grammar/smelt.pest`; this module turns pest's parse into the
//! [`File`] tree below, every node with its [`Span`], and converts pest's errors into
//! [`Diagnostic`]s that say in words what was expected. pest's types stay inside this
//! module. Operator precedence is applied by a small Pratt parser, not by grammar rules.
//!
//! Limits keep hostile input cheap: files over [`MAX_SOURCE_BYTES`], parentheses nested
//! deeper than [`MAX_PAREN_DEPTH`] and expression trees deeper than [`MAX_EXPR_DEPTH`]
//! are rejected with a diagnostic before anything recursive can run away.

mod parser;

use crate::error::diagnostic::Diagnostic;
use crate::span::Span;
use num_rational::BigRational;

pub use parser::{
    parse, parse_expr, parse_problem, MAX_EXPR_DEPTH, MAX_PAREN_DEPTH, MAX_SOURCE_BYTES,
};

/// Whether `name` is a word of the language (and so cannot name anything).
pub fn is_keyword(name: &str) -> bool {
    parser::KEYWORDS.contains(&name)
}

/// A name with the place it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One optimizer file.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    /// The name after `optimizer`.
    pub name: Ident,
    /// The span of the whole `optimizer Name` header.
    pub header: Span,
    pub items: Vec<Item>,
}

/// One line of the file after the header.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemKind {
    /// `param x`
    Param(Ident),
    /// `state m, v` or `state s: scalar`
    State {
        names: Vec<Ident>,
        shape: Option<(StateShape, Span)>,
    },
    /// `small eta`
    Small(Ident),
    /// `hyper c1, c2 > 0`
    Hyper {
        names: Vec<Ident>,
        constraint: Option<Constraint>,
    },
    /// `time eta^2`
    Time(Expr),
    /// `noise xi ~ gaussian`, `noise z ~ gaussian(s^2*I)`: the samples, their family
    /// and, when given, their covariance (an expression in `I`).
    Noise {
        names: Vec<Ident>,
        kind: NoiseKind,
        law: Option<Expr>,
    },
    /// `counter k`
    Counter(Ident),
    /// `fast v` (`fast: true`) or `slow v`
    Timescale { names: Vec<Ident>, fast: bool },
    /// `let name = expr`
    Let(Ident, Expr),
    /// `name = expr`
    Update(Ident, Expr),
}

/// The shape a `state` declaration may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateShape {
    Scalar,
    Vector,
}

/// The distribution family of a noise sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoiseKind {
    /// Mean zero, covariance Σ, all higher moments symbolic.
    General,
    /// Mean zero, covariance Σ, Gaussian (third moment zero, Isserlis' theorem).
    Gaussian,
}

/// A constraint on a hyperparameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Constraint {
    /// `> 0`, `>= 0`, `< 1`, `<= 1`
    Compare(CmpOp, BigRational),
    /// `in (0, 1)`, `in [0, 1)`, …
    Interval {
        lo: BigRational,
        lo_closed: bool,
        hi: BigRational,
        hi_closed: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A literal, exact: `0.9` is 9/10.
    Number(BigRational),
    Name(String),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `sqrt(v)`, `dot(a, b)`, `f(x)`, `xi(y)`, `old(v)`
    Call {
        func: Ident,
        args: Vec<Expr>,
    },
    /// `grad f(point)`
    Grad {
        objective: Ident,
        at: Box<Expr>,
    },
    /// `hess f(point)`
    Hess {
        objective: Ident,
        at: Box<Expr>,
    },
    /// `x[2]`: a component, counted from 1 (problem files only); with `to`, the slice
    /// `x[2:5]` of the components 2 to 5, both included.
    Index {
        base: Ident,
        index: Box<Expr>,
        to: Option<Box<Expr>>,
    },
    /// `[a, b]`: a vector, or a matrix when the items are lists (problem files only).
    List(Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `@`: matrix–vector and matrix–matrix product.
    MatMul,
    Pow,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::MatMul => "@",
            BinOp::Pow => "^",
        }
    }
}

/// One problem file (`smelt verify --problem FILE`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProblemFile {
    pub name: Ident,
    pub header: Span,
    pub items: Vec<PItem>,
}

/// One line of a problem file after the header.
#[derive(Debug, Clone, PartialEq)]
pub struct PItem {
    pub kind: PItemKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PItemKind {
    /// `dim 2`
    Dim(Expr),
    /// `objective f(x) = expr`
    Objective { name: Ident, var: Ident, body: Expr },
    /// `noise gaussian cov = expr`: the model and the parameter's keyword, with spans.
    Noise {
        model: Ident,
        param: Ident,
        value: Expr,
    },
    /// `start v = expr`
    Start(Ident, Expr),
    /// `start v = random(seed = 1, scale = 0.1)`: a generated start, with the arguments'
    /// names and where the call is.
    StartRandom(Ident, Vec<(Ident, Expr)>, Span),
    /// `horizon expr`
    Horizon(Expr),
    /// `observe name = expr`
    Observe(Ident, Expr),
    /// `set name = expr`
    Set(Ident, Expr),
    /// `etas a, b, c`
    Etas(Vec<Expr>),
    /// `let name = expr`: a name for an expression, read by the lines after it.
    Let(Ident, Expr),
    /// `data a, y = source(args)`, or `data a[64], y = …` with the width of a name.
    Data {
        names: Vec<(Ident, Option<Expr>)>,
        source: Ident,
        args: Vec<DataArg>,
    },
}

/// An argument of a `data` source.
#[derive(Debug, Clone, PartialEq)]
pub enum DataArg {
    Named(Ident, Expr),
    /// A quoted string (a file name), without its quotes.
    Text(String, Span),
}

/// Parsing either yields the tree or one diagnostic.
pub type ParseResult<T> = Result<T, Box<Diagnostic>>;
