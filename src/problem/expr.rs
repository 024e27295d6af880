//! Problem-file expressions → scalar graph nodes, in a concrete dimension.
//!
//! A problem fixes `d`, so a vector is its `d` components and a matrix its rows; an
//! expression becomes [`Graph`] nodes component by component. Vectors act elementwise,
//! a scalar broadcasts, `@` multiplies matrices and vectors, and the built-ins are
//! `sum`, `mean`, `dot`, `norm`, `diag`, `outer` and the elementwise `sqrt`, `exp`,
//! `log`, `sin`, `cos`, `tanh`, `abs`, `softplus`, `sigmoid`. `x[i]` picks a component
//! (from 1, as papers count) and `[a, b]` writes a vector, `[[a, b], [c, d]]` a matrix
//! by rows.

use crate::error::diagnostic::{Boxed as _, Code, Diagnostic};
use crate::numeric::graph::{Binary, Graph, Id, Unary};
use crate::span::Span;
use crate::syntax::{BinOp, Expr, ExprKind, UnOp};
use num_traits::ToPrimitive;
use std::collections::BTreeMap;

/// A value: a scalar, a vector, or a matrix by rows.
#[derive(Debug, Clone, PartialEq)]
pub enum PV {
    S(Id),
    V(Vec<Id>),
    M(Vec<Vec<Id>>),
}

impl PV {
    pub fn kind(&self) -> String {
        match self {
            PV::S(_) => "a scalar".into(),
            PV::V(v) => format!("a vector of {} components", v.len()),
            PV::M(m) => format!("a {}×{} matrix", m.len(), m.first().map_or(0, |r| r.len())),
        }
    }
}

/// The names an expression may read.
pub type Scope = BTreeMap<String, PV>;

use crate::error::diagnostic::{boxed as err, Fallible as R};

pub const FUNCTIONS: &[&str] = &[
    "sum", "mean", "dot", "norm", "diag", "outer", "sqrt", "exp", "log", "sin", "cos", "tanh",
    "abs", "softplus", "sigmoid",
];

/// A number literal or constant expression as f64 (every node constant).
pub fn constant(g: &mut Graph, e: &Expr, scope: &Scope, what: &str) -> R<f64> {
    match build(g, e, scope)? {
        PV::S(id) => g.value(id).ok_or_else(|| {
            err(
                Code::Misuse,
                e.span,
                format!("{what} must be a constant number"),
            )
            .label("this reads a variable")
            .hint("write a number or an expression of numbers")
        }),
        other => Err(err(
            Code::Shape,
            e.span,
            format!("{what} must be a number, this is {}", other.kind()),
        )
        .label("not a number")),
    }
}

/// A number written as in a problem file (`0.25`, `2^-4`, `1/8`, `pi/10`), for command
/// line values: the problem file's parser and evaluation, with the message of its
/// diagnostic on failure.
pub fn number(text: &str) -> Result<f64, crate::Error> {
    number_words(text).map_err(crate::Error::Other)
}

/// [`number`]'s failures in words.
fn number_words(text: &str) -> Result<f64, String> {
    let e = crate::syntax::parse_expr(text.trim())
        .map_err(|d| format!("`{text}` is not a number: {}", d.message))?;
    let mut g = Graph::new();
    let mut scope = Scope::new();
    scope.insert("pi".into(), PV::S(g.constant(std::f64::consts::PI)));
    constant(&mut g, &e, &scope, "the value")
        .map_err(|d| format!("`{text}` is not a number: {}", d.message))
}

/// Builds the nodes of `e`.
pub fn build(g: &mut Graph, e: &Expr, scope: &Scope) -> R<PV> {
    let span = e.span;
    Ok(match &e.kind {
        ExprKind::Number(r) => PV::S(
            g.constant(
                r.to_f64()
                    .ok_or_else(|| err(Code::BadNumber, span, "number out of range"))?,
            ),
        ),
        ExprKind::Name(n) => lookup(scope, n, span)?,
        ExprKind::Unary(op, a) => {
            let a = build(g, a, scope)?;
            match op {
                UnOp::Plus => a,
                UnOp::Neg => map(g, a, |g, x| g.neg(x)),
            }
        }
        ExprKind::Binary(op, a, b) => {
            let (a, b) = (build(g, a, scope)?, build(g, b, scope)?);
            binary(g, *op, a, b, span)?
        }
        ExprKind::Index { base, index } => {
            let v = lookup(scope, &base.name, base.span)?;
            let i = index_of(g, index, scope)?;
            match v {
                PV::V(items) => PV::S(pick(&items, i, index.span, &base.name)?),
                PV::M(rows) => PV::V(pick(&rows, i, index.span, &base.name)?),
                PV::S(_) => {
                    return Err(err(
                        Code::Shape,
                        span,
                        format!("`{}` is a scalar and has no components", base.name),
                    )
                    .label("indexed here"))
                }
            }
        }
        ExprKind::List(items) => {
            let vals = items
                .iter()
                .map(|i| build(g, i, scope))
                .collect::<R<Vec<_>>>()?;
            if vals.iter().all(|v| matches!(v, PV::S(_))) {
                PV::V(
                    vals.into_iter()
                        .map(|v| match v {
                            PV::S(s) => s,
                            _ => unreachable!("checked: all scalars"),
                        })
                        .collect(),
                )
            } else {
                let mut rows = Vec::new();
                for (v, item) in vals.into_iter().zip(items) {
                    match v {
                        PV::V(r) => rows.push(r),
                        other => {
                            return Err(err(
                                Code::Shape,
                                item.span,
                                format!(
                                    "a matrix is a list of rows of one length; this item is {}",
                                    other.kind()
                                ),
                            )
                            .label("not a row")
                            .hint("write a matrix as `[[a, b], [c, d]]`"))
                        }
                    }
                }
                let n = rows[0].len();
                if let Some(k) = rows.iter().position(|r| r.len() != n) {
                    return Err(err(
                        Code::Shape,
                        items[k].span,
                        format!(
                            "row {} has {} entries, the first row has {n}",
                            k + 1,
                            rows[k].len()
                        ),
                    )
                    .label("a row of another length"));
                }
                PV::M(rows)
            }
        }
        ExprKind::Call { func, args } => call(g, func, args, scope, span)?,
        ExprKind::Grad { .. } | ExprKind::Hess { .. } => {
            return Err(err(
                Code::Misuse,
                span,
                "`grad` and `hess` belong to update rules; a problem states f itself",
            )
            .label("not available here")
            .hint("smelt differentiates the objective symbolically; write f, not its gradient"))
        }
    })
}

fn lookup(scope: &Scope, n: &str, span: Span) -> R<PV> {
    scope.get(n).cloned().ok_or_else(|| {
        let known: Vec<&str> = scope.keys().map(String::as_str).collect();
        err(Code::Undefined, span, format!("undefined name `{n}`"))
            .label("not defined in this problem")
            .hint(format!(
                "names available here: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
    })
}

fn index_of(g: &mut Graph, e: &Expr, scope: &Scope) -> R<usize> {
    let v = constant(g, e, scope, "an index")?;
    if v != v.trunc() || !(1.0..=1e9).contains(&v) {
        return Err(err(
            Code::Misuse,
            e.span,
            format!("an index must be a whole number from 1, this is {v}"),
        )
        .label("not an index")
        .hint("components are counted from 1, as in papers: `x[1]` is the first"));
    }
    Ok(v as usize)
}

fn pick<T: Clone>(items: &[T], i: usize, span: Span, name: &str) -> R<T> {
    items.get(i - 1).cloned().ok_or_else(|| {
        err(
            Code::Shape,
            span,
            format!(
                "index {i} is out of range: `{name}` has {} components",
                items.len()
            ),
        )
        .label("out of range")
        .hint(format!("use an index from 1 to {}", items.len()))
    })
}

fn map(g: &mut Graph, v: PV, mut f: impl FnMut(&mut Graph, Id) -> Id) -> PV {
    match v {
        PV::S(x) => PV::S(f(g, x)),
        PV::V(xs) => PV::V(xs.into_iter().map(|x| f(g, x)).collect()),
        PV::M(rows) => PV::M(
            rows.into_iter()
                .map(|r| r.into_iter().map(|x| f(g, x)).collect())
                .collect(),
        ),
    }
}

fn shape_error(span: Span, what: &str, a: &PV, b: &PV) -> Box<Diagnostic> {
    err(
        Code::Shape,
        span,
        format!("`{what}` of {} and {}", a.kind(), b.kind()),
    )
    .label("shapes do not fit")
    .hint("vectors act elementwise and must have one length; use `@` for matrix products")
}

fn zip(
    g: &mut Graph,
    a: PV,
    b: PV,
    span: Span,
    what: &str,
    f: impl Fn(&mut Graph, Id, Id) -> Id,
) -> R<PV> {
    Ok(match (a, b) {
        (PV::S(x), PV::S(y)) => PV::S(f(g, x, y)),
        (PV::S(x), other) => map(g, other, |g, y| f(g, x, y)),
        (other, PV::S(y)) => map(g, other, |g, x| f(g, x, y)),
        (PV::V(x), PV::V(y)) if x.len() == y.len() => {
            PV::V(x.into_iter().zip(y).map(|(x, y)| f(g, x, y)).collect())
        }
        (PV::M(x), PV::M(y))
            if x.len() == y.len() && x.iter().zip(&y).all(|(a, b)| a.len() == b.len()) =>
        {
            PV::M(
                x.into_iter()
                    .zip(y)
                    .map(|(r, s)| r.into_iter().zip(s).map(|(x, y)| f(g, x, y)).collect())
                    .collect(),
            )
        }
        (a, b) => return Err(shape_error(span, what, &a, &b)),
    })
}

fn binary(g: &mut Graph, op: BinOp, a: PV, b: PV, span: Span) -> R<PV> {
    match op {
        BinOp::Add => zip(g, a, b, span, "+", |g, x, y| g.add(x, y)),
        BinOp::Sub => zip(g, a, b, span, "-", |g, x, y| g.sub(x, y)),
        BinOp::Mul => zip(g, a, b, span, "*", |g, x, y| g.mul(x, y)),
        BinOp::Div => zip(g, a, b, span, "/", |g, x, y| g.div(x, y)),
        BinOp::Pow => zip(g, a, b, span, "^", |g, x, y| g.binary(Binary::Pow, x, y)),
        BinOp::MatMul => matmul(g, a, b, span),
    }
}

fn matmul(g: &mut Graph, a: PV, b: PV, span: Span) -> R<PV> {
    let dot = |g: &mut Graph, x: &[Id], y: &[Id]| {
        let prods: Vec<Id> = x.iter().zip(y).map(|(&p, &q)| g.mul(p, q)).collect();
        g.sum(prods)
    };
    Ok(match (&a, &b) {
        (PV::M(m), PV::V(v)) if m.iter().all(|r| r.len() == v.len()) => {
            PV::V(m.iter().map(|r| dot(g, r, v)).collect())
        }
        (PV::V(v), PV::M(m)) if m.len() == v.len() => {
            let cols = m.first().map_or(0, |r| r.len());
            PV::V(
                (0..cols)
                    .map(|j| {
                        let col: Vec<Id> = m.iter().map(|r| r[j]).collect();
                        dot(g, v, &col)
                    })
                    .collect(),
            )
        }
        (PV::M(x), PV::M(y)) if x.iter().all(|r| r.len() == y.len()) => {
            let cols = y.first().map_or(0, |r| r.len());
            PV::M(
                x.iter()
                    .map(|r| {
                        (0..cols)
                            .map(|j| {
                                let col: Vec<Id> = y.iter().map(|s| s[j]).collect();
                                dot(g, r, &col)
                            })
                            .collect()
                    })
                    .collect(),
            )
        }
        _ => return Err(shape_error(span, "@", &a, &b)),
    })
}

fn call(
    g: &mut Graph,
    func: &crate::syntax::Ident,
    args: &[Expr],
    scope: &Scope,
    span: Span,
) -> R<PV> {
    let name = func.name.as_str();
    let unary = match name {
        "sqrt" => Some(Unary::Sqrt),
        "exp" => Some(Unary::Exp),
        "log" => Some(Unary::Log),
        "sin" => Some(Unary::Sin),
        "cos" => Some(Unary::Cos),
        "tanh" => Some(Unary::Tanh),
        "abs" => Some(Unary::Abs),
        "softplus" => Some(Unary::Softplus),
        "sigmoid" => Some(Unary::Sigmoid),
        _ => None,
    };
    let arity = match name {
        "dot" | "outer" => 2,
        _ if unary.is_some() => 1,
        "sum" | "mean" | "norm" | "diag" => 1,
        _ => {
            return Err(err(
                Code::Undefined,
                func.span,
                format!("unknown function `{name}`"),
            )
            .label("not a built-in")
            .hint(format!(
                "the functions of problem files are {}",
                FUNCTIONS.join(", ")
            )))
        }
    };
    if args.len() != arity {
        return Err(err(
            Code::Misuse,
            span,
            format!(
                "`{name}` takes {arity} argument{}, {} given",
                if arity == 1 { "" } else { "s" },
                args.len()
            ),
        )
        .label("wrong number of arguments"));
    }
    let vals = args
        .iter()
        .map(|a| build(g, a, scope))
        .collect::<R<Vec<_>>>()?;
    if let Some(u) = unary {
        let v = vals.into_iter().next().expect("arity checked");
        return Ok(map(g, v, |g, x| g.unary(u, x)));
    }
    let need_vector = |v: &PV, span: Span| -> R<Vec<Id>> {
        match v {
            PV::V(x) => Ok(x.clone()),
            other => Err(err(
                Code::Shape,
                span,
                format!("`{name}` takes a vector, this is {}", other.kind()),
            )
            .label("not a vector")),
        }
    };
    Ok(match name {
        "sum" | "mean" => {
            let items: Vec<Id> = match &vals[0] {
                PV::S(x) => vec![*x],
                PV::V(x) => x.clone(),
                PV::M(m) => m.iter().flatten().copied().collect(),
            };
            let n = items.len();
            let s = g.sum(items);
            if name == "mean" {
                let c = g.constant(1.0 / n as f64);
                PV::S(g.mul(c, s))
            } else {
                PV::S(s)
            }
        }
        "norm" => {
            let x = need_vector(&vals[0], args[0].span)?;
            let sq: Vec<Id> = x.iter().map(|&c| g.powi(c, 2)).collect();
            let s = g.sum(sq);
            PV::S(g.unary(Unary::Sqrt, s))
        }
        "diag" => {
            let x = need_vector(&vals[0], args[0].span)?;
            let zero = g.constant(0.0);
            PV::M(
                (0..x.len())
                    .map(|i| {
                        (0..x.len())
                            .map(|j| if i == j { x[i] } else { zero })
                            .collect()
                    })
                    .collect(),
            )
        }
        "dot" | "outer" => {
            let x = need_vector(&vals[0], args[0].span)?;
            let y = need_vector(&vals[1], args[1].span)?;
            if name == "dot" {
                if x.len() != y.len() {
                    return Err(shape_error(span, "dot", &vals[0], &vals[1]));
                }
                let prods: Vec<Id> = x.iter().zip(&y).map(|(&p, &q)| g.mul(p, q)).collect();
                PV::S(g.sum(prods))
            } else {
                PV::M(
                    x.iter()
                        .map(|&p| y.iter().map(|&q| g.mul(p, q)).collect())
                        .collect(),
                )
            }
        }
        _ => unreachable!("arity table covers every name"),
    })
}
