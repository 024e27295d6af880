//! Problem-file expressions → scalar graph nodes, in a concrete dimension.
//!
//! A problem fixes `d`, so a vector is its `d` components and a matrix its rows; an
//! expression becomes [`Graph`] nodes component by component. Vectors act elementwise,
//! a scalar broadcasts, `@` multiplies matrices and vectors, and the built-ins are
//! `sum`, `mean`, `dot`, `norm`, `diag`, `outer` and the elementwise `sqrt`, `exp`,
//! `log`, `sin`, `cos`, `tanh`, `abs`, `softplus`, `sigmoid`, `sign`, `relu`, `erf`,
//! `ncdf` (Φ), `npdf` (φ), `min(a, b)`, `max(a, b)` and `clip(v, lo, hi)` (the last
//! three broadcast a scalar against a vector, like the operators). `x[i]` picks a
//! component (from 1, as papers count; a matrix's row), `x[a:b]` the components a to b,
//! both included (a matrix's rows), `reshape(v, rows, cols)` makes a matrix of a
//! vector's components row by row, and `[a, b]` writes a vector, `[[a, b], [c, d]]`
//! a matrix by rows.
//!
//! The kinked functions are built from `abs`, so that the graph differentiates them
//! (with `sign` as the derivative of `abs`, the one-sided slopes averaged at a kink):
//! `relu(a) = (a + |a|)/2`, `max(a, b) = (a + b + |a − b|)/2`,
//! `min(a, b) = (a + b − |a − b|)/2` and `clip(v, lo, hi) = (lo + hi + |v − lo| −
//! |v − hi|)/2`, which is `min(max(v, lo), hi)` only when `lo ≤ hi`: constant bounds
//! with `lo > hi` are an error; bounds that depend on the variables are assumed to
//! satisfy it. `erf(a) = 2Φ(√2 a) − 1` (absolute error ~1e-16, so relative accuracy is
//! lost for tiny `a`).

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
    "abs", "softplus", "sigmoid", "sign", "relu", "erf", "ncdf", "npdf", "min", "max", "clip",
    "reshape",
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
        ExprKind::Index {
            base,
            index,
            to: Some(to),
        } => {
            let v = lookup(scope, &base.name, base.span)?;
            let (a, b) = (index_of(g, index, scope)?, index_of(g, to, scope)?);
            match v {
                PV::V(items) => PV::V(slice(&items, a, b, index.span.to(to.span), &base.name)?),
                PV::M(rows) => PV::M(slice(&rows, a, b, index.span.to(to.span), &base.name)?),
                PV::S(_) => {
                    return Err(err(
                        Code::Shape,
                        span,
                        format!("`{}` is a scalar and has no components", base.name),
                    )
                    .label("sliced here"))
                }
            }
        }
        ExprKind::Index {
            base,
            index,
            to: None,
        } => {
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

/// `items[a:b]`: the items `a` to `b`, counted from 1, both included.
fn slice<T: Clone>(items: &[T], a: usize, b: usize, span: Span, name: &str) -> R<Vec<T>> {
    let n = items.len();
    if a > b {
        return Err(err(
            Code::Shape,
            span,
            format!("the slice `{name}[{a}:{b}]` is empty: it starts after it ends"),
        )
        .label("start after end")
        .hint(format!(
            "`{name}[a:b]` is the components a to b, both included, counted from 1 (a ≤ b)"
        )));
    }
    if b > n {
        return Err(err(
            Code::Shape,
            span,
            format!("the slice `{name}[{a}:{b}]` is out of range: `{name}` has {n} components"),
        )
        .label("out of range")
        .hint(format!(
            "slice within 1 to {n}; `{name}[a:b]` has b − a + 1 components, both ends included"
        )));
    }
    Ok(items[a - 1..b].to_vec())
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
        _ => {
            return Err(shape_error(span, "@", &a, &b).hint(
                "`A @ v` needs as many columns in A as components in v (`reshape(v, rows, cols)` makes a matrix by rows)",
            ))
        }
    })
}

/// The components of a value, row by row.
fn components(v: &PV) -> Vec<Id> {
    match v {
        PV::S(x) => vec![*x],
        PV::V(x) => x.clone(),
        PV::M(m) => m.iter().flatten().copied().collect(),
    }
}

/// `clip`'s bounds where both are constants: `lo ≤ hi` component by component (a scalar
/// bound pairs with every component of the other).
fn check_bounds(g: &Graph, lo: &PV, hi: &PV, span: Span) -> R<()> {
    let (l, h) = (components(lo), components(hi));
    let pairs: Vec<(Id, Id)> = match (l.len(), h.len()) {
        (1, _) => h.iter().map(|&b| (l[0], b)).collect(),
        (_, 1) => l.iter().map(|&a| (a, h[0])).collect(),
        _ => l.into_iter().zip(h).collect(),
    };
    for (a, b) in pairs {
        if let (Some(a), Some(b)) = (g.value(a), g.value(b)) {
            if a > b {
                return Err(err(
                    Code::Misuse,
                    span,
                    format!("`clip(v, lo, hi)` needs lo ≤ hi, here lo = {a} > hi = {b}"),
                )
                .label("the lower bound exceeds the upper one")
                .hint("swap the bounds: `clip(v, lo, hi)` is `min(max(v, lo), hi)`"));
            }
        }
    }
    Ok(())
}

/// The scope key of the objective's value at the current state, where a test function
/// may read it (`f(x)`; not a name a problem file can write).
pub const OBJECTIVE_AT: &str = "(f at the state)";
/// The scope key of the parameter the objective reads there.
pub const OBJECTIVE_ARG: &str = "(the parameter of f)";

fn call(
    g: &mut Graph,
    func: &crate::syntax::Ident,
    args: &[Expr],
    scope: &Scope,
    span: Span,
) -> R<PV> {
    let name = func.name.as_str();
    // The objective, where the scope has it (test functions): `f(x)` at the state.
    if let (Some(f), Some(param)) = (scope.get(OBJECTIVE_AT), scope.get(OBJECTIVE_ARG)) {
        if name == "f" {
            let arg = match args {
                [a] => Some(build(g, a, scope)?),
                _ => None,
            };
            if arg.as_ref() != Some(param) {
                return Err(err(
                    Code::Misuse,
                    span,
                    "a test function reads the objective at the current state only",
                )
                .label("f of something else")
                .hint("write `f(x)` with the objective's own variable"));
            }
            return Ok(f.clone());
        }
    }
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
        "sign" => Some(Unary::Sign),
        "ncdf" => Some(Unary::Ncdf),
        "npdf" => Some(Unary::Npdf),
        _ => None,
    };
    let arity = match name {
        "dot" | "outer" | "min" | "max" => 2,
        "clip" | "reshape" => 3,
        "relu" | "erf" => 1,
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
    if name == "reshape" {
        return reshape(g, args, scope, span);
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
    let half = g.constant(0.5);
    Ok(match name {
        "relu" => map(g, vals[0].clone(), |g, a| {
            let m = g.unary(Unary::Abs, a);
            let s = g.add(a, m);
            g.mul(half, s)
        }),
        "erf" => {
            let r2 = g.constant(std::f64::consts::SQRT_2);
            let (two, one) = (g.constant(2.0), g.constant(1.0));
            map(g, vals[0].clone(), |g, a| {
                let t = g.mul(r2, a);
                let p = g.unary(Unary::Ncdf, t);
                let p2 = g.mul(two, p);
                g.sub(p2, one)
            })
        }
        "min" | "max" => {
            let (a, b) = (vals[0].clone(), vals[1].clone());
            zip(g, a, b, span, name, |g, a, b| {
                let s = g.add(a, b);
                let d = g.sub(a, b);
                let m = g.unary(Unary::Abs, d);
                let t = if name == "max" {
                    g.add(s, m)
                } else {
                    g.sub(s, m)
                };
                g.mul(half, t)
            })?
        }
        "clip" => {
            let [v, lo, hi] = [0, 1, 2].map(|i| vals[i].clone());
            check_bounds(g, &lo, &hi, args[1].span.to(args[2].span))?;
            // (lo + hi + |v − lo| − |v − hi|)/2
            let abs_diff = |g: &mut Graph, a: Id, b: Id| {
                let d = g.sub(a, b);
                g.unary(Unary::Abs, d)
            };
            let below = zip(g, v.clone(), lo.clone(), span, name, abs_diff)?;
            let above = zip(g, v, hi.clone(), span, name, abs_diff)?;
            let s = zip(g, lo, hi, span, name, |g, a, b| g.add(a, b))?;
            let s = zip(g, s, below, span, name, |g, a, b| g.add(a, b))?;
            let s = zip(g, s, above, span, name, |g, a, b| g.sub(a, b))?;
            map(g, s, |g, a| g.mul(half, a))
        }
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

/// `reshape(v, rows, cols)`: the components of `v` (a matrix's row by row) as a
/// `rows × cols` matrix filled row by row.
fn reshape(g: &mut Graph, args: &[Expr], scope: &Scope, span: Span) -> R<PV> {
    let v = build(g, &args[0], scope)?;
    let mut size = |e: &Expr, what: &str| -> R<usize> {
        let c = constant(g, e, scope, what)?;
        if c != c.trunc() || !(1.0..=1e9).contains(&c) {
            return Err(err(
                Code::Misuse,
                e.span,
                format!("{what} must be a whole number from 1, this is {c}"),
            )
            .label("not a count")
            .hint("write `reshape(v, rows, cols)` with whole numbers"));
        }
        Ok(c as usize)
    };
    let rows = size(&args[1], "the number of rows")?;
    let cols = size(&args[2], "the number of columns")?;
    let items = match &v {
        PV::S(_) => {
            return Err(err(
                Code::Shape,
                args[0].span,
                "`reshape` takes a vector or a matrix, this is a scalar",
            )
            .label("not a vector"))
        }
        other => components(other),
    };
    if items.len() != rows * cols {
        return Err(err(
            Code::Shape,
            span,
            format!(
                "`reshape` to {rows}×{cols} needs {} components, this is {}",
                rows * cols,
                v.kind()
            ),
        )
        .label("wrong number of components")
        .hint("slice the vector to rows × cols components: `x[a:b]` has b − a + 1, both ends included"));
    }
    Ok(PV::M(items.chunks(cols).map(<[Id]>::to_vec).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numeric::gauss;

    /// The components of `text` with `x` bound to the inputs `x` (a scalar for one
    /// value, a vector otherwise).
    fn values(text: &str, x: &[f64]) -> Result<Vec<f64>, Box<Diagnostic>> {
        let e = crate::syntax::parse_expr(text).expect("the test expressions parse");
        let mut g = Graph::new();
        let ids: Vec<Id> = (0..x.len() as u32).map(|i| g.input(i)).collect();
        let mut scope = Scope::new();
        let v = if ids.len() == 1 {
            PV::S(ids[0])
        } else {
            PV::V(ids)
        };
        scope.insert("x".into(), v);
        let out = components(&build(&mut g, &e, &scope)?);
        Ok(g.eval(&out, x))
    }

    fn at(text: &str, x: f64) -> f64 {
        values(text, &[x]).expect("the test expressions build")[0]
    }

    #[test]
    fn kinked_functions_on_both_sides_of_every_kink() {
        let cases: &[(&str, &[(f64, f64)])] = &[
            (
                "sign(x)",
                &[
                    (-2.0, -1.0),
                    (-1e-300, -1.0),
                    (0.0, 0.0),
                    (1e-300, 1.0),
                    (3.0, 1.0),
                ],
            ),
            (
                "relu(x)",
                &[(-2.0, 0.0), (0.0, 0.0), (0.5, 0.5), (3.0, 3.0)],
            ),
            ("max(x, 0.5)", &[(-1.0, 0.5), (0.5, 0.5), (0.75, 0.75)]),
            ("max(0.5, x)", &[(-1.0, 0.5), (2.0, 2.0)]),
            ("min(x, 0.5)", &[(-1.0, -1.0), (0.5, 0.5), (0.75, 0.5)]),
            ("min(-x, x)", &[(-1.5, -1.5), (0.0, 0.0), (2.0, -2.0)]),
            (
                "clip(x, -1, 2)",
                &[
                    (-3.0, -1.0),
                    (-1.0, -1.0),
                    (-0.25, -0.25),
                    (2.0, 2.0),
                    (5.0, 2.0),
                ],
            ),
            ("clip(x, 1, 1)", &[(-3.0, 1.0), (1.0, 1.0), (4.0, 1.0)]),
        ];
        for (text, points) in cases {
            for &(x, want) in *points {
                assert_eq!(at(text, x), want, "{text} at x = {x}");
            }
        }
        for x in [-2.5, -0.3, 0.0, 0.1, 1.7] {
            assert!((at("erf(x)", x) - gauss::erf(x)).abs() < 5e-16, "erf({x})");
            // The vectorizable forms of the tapes (`numeric::vmath`), within their stated
            // accuracy of the libm-based ones.
            assert!((at("ncdf(x)", x) - gauss::ncdf(x)).abs() <= 1.5e-15 * gauss::ncdf(x));
            assert!((at("npdf(x)", x) - gauss::npdf(x)).abs() <= 1e-15 * gauss::npdf(x));
        }
    }

    #[test]
    fn kinked_functions_act_elementwise_and_broadcast() {
        let x = [-3.0, 0.5, 4.0];
        assert_eq!(values("clip(x, -1, 2)", &x).unwrap(), [-1.0, 0.5, 2.0]);
        assert_eq!(values("max(x, 0)", &x).unwrap(), [0.0, 0.5, 4.0]);
        assert_eq!(values("min(x, [0, 0, 5])", &x).unwrap(), [-3.0, 0.0, 4.0]);
        assert_eq!(values("relu(x)", &x).unwrap(), [0.0, 0.5, 4.0]);
        assert_eq!(values("sign(x)", &x).unwrap(), [-1.0, 1.0, 1.0]);
        assert_eq!(
            values("clip(x, [-5, 0, 0], [0, 1, 3])", &x).unwrap(),
            [-3.0, 0.5, 3.0]
        );
        let d = values("max(x, [1, 2])", &x).unwrap_err();
        assert_eq!(d.code, Code::Shape);
    }

    /// The graph differentiates the kinked functions: slopes on both sides of the kink,
    /// the mean slope at it.
    #[test]
    fn kinked_functions_differentiate() {
        let e = crate::syntax::parse_expr("relu(x) + 3*clip(x, -1, 2) - max(x, 1)").unwrap();
        let mut g = Graph::new();
        let x = g.input(0);
        let scope = Scope::from([("x".to_string(), PV::S(x))]);
        let PV::S(f) = build(&mut g, &e, &scope).unwrap() else {
            panic!("a scalar")
        };
        let df = g.diff(f, 0);
        let slope = |x: f64| g.eval(&[df], &[x])[0];
        // Kinks at −1 (clip), 0 (relu), 1 (max), 2 (clip).
        let want = [
            (-1.5, 0.0),
            (-1.0, 1.5),
            (-0.5, 3.0),
            (0.0, 3.5),
            (0.5, 4.0),
            (1.0, 3.5),
            (1.5, 3.0),
            (2.0, 1.5),
            (2.5, 0.0),
        ];
        for (x, s) in want {
            assert_eq!(slope(x), s, "slope at {x}");
        }
        let e = crate::syntax::parse_expr("erf(x) * ncdf(x) + npdf(x)").unwrap();
        let PV::S(f) = build(&mut g, &e, &scope).unwrap() else {
            panic!("a scalar")
        };
        let df = g.diff(f, 0);
        for x in [-1.2, 0.3, 2.0] {
            let h = 1e-5;
            let fd = (g.eval(&[f], &[x + h])[0] - g.eval(&[f], &[x - h])[0]) / (2.0 * h);
            let got = g.eval(&[df], &[x])[0];
            assert!((got - fd).abs() < 1e-9, "d/dx at {x}: {got} vs {fd}");
        }
    }

    /// Slices count from 1 and include both ends; `reshape` fills rows in order; `@`
    /// of the reshaped matrix and a vector is the sum by hand.
    #[test]
    fn slices_reshape_and_matrix_products_by_hand() {
        let x: Vec<f64> = (1..=12).map(|k| k as f64 * 0.5 - 2.0).collect();
        assert_eq!(values("x[3:5]", &x).unwrap(), x[2..5]);
        assert_eq!(values("x[1:12]", &x).unwrap(), x);
        assert_eq!(values("x[7:7]", &x).unwrap(), [x[6]]);
        // reshape(x[1:6], 2, 3) = [[x1, x2, x3], [x4, x5, x6]], by rows.
        assert_eq!(values("reshape(x[1:6], 2, 3)", &x).unwrap(), x[..6]);
        let w = |i: usize, j: usize| x[i * 3 + j];
        let a = [x[6], x[7], x[8]];
        let want: Vec<f64> = (0..2)
            .map(|i| (0..3).map(|j| w(i, j) * a[j]).sum::<f64>() + x[9 + i])
            .collect();
        assert_eq!(
            values("reshape(x[1:6], 2, 3) @ x[7:9] + x[10:11]", &x).unwrap(),
            want
        );
        // A matrix's rows: slicing a matrix slices its rows, indexing picks one.
        let e = crate::syntax::parse_expr("M[2:3]").unwrap();
        let mut g = Graph::new();
        let ids: Vec<Id> = (0..12).map(|i| g.input(i)).collect();
        let m = PV::M(ids.chunks(3).map(<[Id]>::to_vec).collect());
        let scope = Scope::from([("M".to_string(), m)]);
        let PV::M(rows) = build(&mut g, &e, &scope).unwrap() else {
            panic!("a matrix")
        };
        assert_eq!(rows, vec![ids[3..6].to_vec(), ids[6..9].to_vec()]);
        // The whole network's pieces: tanh(W a + b) · v.
        let f = "dot(x[10:11], tanh(reshape(x[1:6], 2, 3) @ x[7:9]))";
        let got = values(f, &x).unwrap()[0];
        let hand: f64 = (0..2)
            .map(|i| x[9 + i] * (0..3).map(|j| w(i, j) * a[j]).sum::<f64>().tanh())
            .sum();
        assert!((got - hand).abs() <= 1e-15 * hand.abs(), "{got} vs {hand}");
    }

    #[test]
    fn bad_slices_and_reshapes_are_diagnosed() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let d = values("x[2:5]", &x).unwrap_err();
        assert_eq!(d.code, Code::Shape);
        assert_eq!(
            d.message,
            "the slice `x[2:5]` is out of range: `x` has 4 components"
        );
        assert_eq!(d.span, Span::new(2, 5));
        assert!(d.hint.unwrap().contains("both ends included"));
        let d = values("x[3:2]", &x).unwrap_err();
        assert_eq!(
            d.message,
            "the slice `x[3:2]` is empty: it starts after it ends"
        );
        let d = values("x[0:2]", &x).unwrap_err();
        assert!(d.message.contains("whole number from 1"), "{}", d.message);
        let d = values("x[1.5:2]", &x).unwrap_err();
        assert!(d.message.contains("whole number from 1"), "{}", d.message);
        let d = values("x[1:x[2]]", &x).unwrap_err();
        assert!(d.message.contains("must be a constant"), "{}", d.message);
        let d = values("reshape(x, 3, 2)", &x).unwrap_err();
        assert_eq!(d.code, Code::Shape);
        assert_eq!(
            d.message,
            "`reshape` to 3×2 needs 6 components, this is a vector of 4 components"
        );
        assert!(d.hint.unwrap().contains("x[a:b]"));
        let d = values("reshape(x[1], 1, 1)", &x).unwrap_err();
        assert!(d.message.contains("this is a scalar"), "{}", d.message);
        let d = values("reshape(x, 2, 2.5)", &x).unwrap_err();
        assert!(d.message.contains("the number of columns"), "{}", d.message);
        let d = values("reshape(x, 2)", &x).unwrap_err();
        assert_eq!(d.message, "`reshape` takes 3 arguments, 2 given");
        let d = values("reshape(x, 2, 2) @ x", &x).unwrap_err();
        assert_eq!(d.code, Code::Shape);
        assert!(
            d.message.contains("2×2 matrix and a vector of 4"),
            "{}",
            d.message
        );
    }

    #[test]
    fn wrong_arity_and_empty_clip_are_diagnosed() {
        let d = values("min(x)", &[1.0]).unwrap_err();
        assert_eq!(d.code, Code::Misuse);
        assert_eq!(d.message, "`min` takes 2 arguments, 1 given");
        assert_eq!(d.span, Span::new(0, 6));
        let d = values("clip(x, 1)", &[1.0]).unwrap_err();
        assert_eq!(d.message, "`clip` takes 3 arguments, 2 given");
        let d = values("relu(x, 1)", &[1.0]).unwrap_err();
        assert_eq!(d.message, "`relu` takes 1 argument, 2 given");
        // lo > hi, with constants: the bounds are underlined and a fix suggested.
        let d = values("clip(x, 2, 1 - 3)", &[1.0]).unwrap_err();
        assert_eq!(d.code, Code::Misuse);
        assert_eq!(
            d.message,
            "`clip(v, lo, hi)` needs lo ≤ hi, here lo = 2 > hi = -2"
        );
        assert_eq!(d.span, Span::new(8, 16));
        assert!(d.hint.as_deref().unwrap_or("").contains("swap the bounds"));
        // Componentwise, and with a scalar bound against a vector one.
        let d = values("clip(x, [0, 3], 2)", &[1.0, 2.0]).unwrap_err();
        assert!(d.message.contains("lo = 3 > hi = 2"), "{}", d.message);
        // Bounds that read the variables are not checked (they are assumed ordered).
        assert!(values("clip(x, x, 1)", &[5.0]).is_ok());
        let d = values("clamp(x, 0, 1)", &[1.0]).unwrap_err();
        assert!(d.hint.unwrap().contains("clip"));
    }
}
