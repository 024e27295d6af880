//! Problems: what `smelt verify` checks an SME on (DESIGN.md §4).
//!
//! A problem file states an objective `f` in `d` dimensions, a noise model, where the
//! optimizer starts, the horizon `T` and the test functions φ:
//!
//! ```text
//! problem double_well
//!   dim 2
//!   objective f(x) = sum(x^4/4 - x^2/2) + 0.1*x[1]*x[2]
//!   noise gaussian cov = 0.5                # Σ = 0.5 I; a vector is a diagonal,
//!                                           # `[[..], [..]]` a matrix; may read x
//!   start x = [0.5, -0.3]                   # other states start at 0 unless given
//!   horizon 1
//!   observe x2 = sum(x^2)
//!   observe c = cos(x[1])
//!   set lambda = 1                          # the optimizer's hyperparameters
//!   etas 2^-2, 2^-3, 2^-4, 2^-5, 2^-6, 2^-7 # the default grid
//! ```
//!
//! `noise gaussian factor = S(x)` gives a `d × k` matrix with `Σ = S Sᵀ` instead. The
//! objective and the noise become [`Graph`] nodes over the `d` components of `x`
//! ([`Model`]); every derivative the optimizer or an SME reads (∇^k f, ∂^j Σ, the
//! Gaussian moments) is taken from them symbolically.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops over matrix rows and columns read as the formulas do"
)]

pub mod expr;

use crate::diagnostic::{Boxed as _, Code, Diagnostic};
use crate::numeric::graph::{Binary, Graph, Id, Unary};
use crate::span::Span;
use crate::syntax::{self, PItemKind};
use expr::{Scope, PV};
use std::collections::{BTreeMap, HashMap};

type R<T> = Result<T, Box<Diagnostic>>;

/// The largest dimension a problem may have.
pub const MAX_DIM: usize = 64;

/// A test function φ of the parameter and the states.
#[derive(Debug, Clone)]
pub struct Observable {
    pub name: String,
    pub expr: syntax::Expr,
    pub span: Span,
}

/// A start value: a vector (or a scalar broadcast) for the named variable.
#[derive(Debug, Clone)]
pub struct Start {
    pub name: String,
    pub value: Vec<f64>,
    pub span: Span,
}

/// A problem, checked.
#[derive(Debug, Clone)]
pub struct Problem {
    pub name: String,
    pub dim: usize,
    pub model: Model,
    pub starts: Vec<Start>,
    pub horizon: f64,
    pub observables: Vec<Observable>,
    /// Hyperparameter values by name, with where they were set.
    pub settings: Vec<(String, f64, Span)>,
    pub etas: Option<Vec<f64>>,
    /// The name of the objective's variable (`x` in `f(x)`).
    pub var: String,
    /// Named constants the test functions may read (`d`, `pi`).
    pub constants: BTreeMap<String, f64>,
    pub header: Span,
}

/// The noise model.
#[derive(Debug, Clone, PartialEq)]
pub enum Noise {
    /// Gaussian with `Σ(x) = S(x) S(x)ᵀ`; `factor` is `S`, `d` rows of `k` nodes.
    Gaussian { factor: Vec<Vec<Id>> },
}

/// The objective and the noise as graph nodes over the `d` inputs `x₁ … x_d`, with
/// their derivatives made on demand.
#[derive(Debug, Clone)]
pub struct Model {
    pub graph: Graph,
    pub dim: usize,
    pub f: Id,
    pub noise: Noise,
    df: HashMap<usize, Vec<Id>>,
    moments: HashMap<(usize, usize), Vec<Id>>,
}

impl Model {
    /// The number of standard normals one noise sample draws (`k`).
    pub fn noise_draws(&self) -> usize {
        match &self.noise {
            Noise::Gaussian { factor } => factor.first().map_or(0, |r| r.len()),
        }
    }

    /// `∇^k f`, `d^k` nodes in row-major order.
    pub fn df(&mut self, k: usize) -> Vec<Id> {
        if let Some(v) = self.df.get(&k) {
            return v.clone();
        }
        let out = if k == 0 {
            vec![self.f]
        } else {
            let prev = self.df(k - 1);
            self.derivative(&prev)
        };
        self.df.insert(k, out.clone());
        out
    }

    /// The tensor one rank up: entry `(i…, j) = ∂_j t(i…)`.
    fn derivative(&mut self, t: &[Id]) -> Vec<Id> {
        let d = self.dim;
        let by: Vec<Vec<Id>> = (0..d).map(|j| self.graph.diff_all(t, j as u32)).collect();
        let mut out = Vec::with_capacity(t.len() * d);
        for i in 0..t.len() {
            for b in &by {
                out.push(b[i]);
            }
        }
        out
    }

    /// The covariance Σ = S Sᵀ, `d × d` row-major.
    pub fn sigma(&mut self) -> Vec<Id> {
        let d = self.dim;
        let Noise::Gaussian { factor } = self.noise.clone();
        let mut out = Vec::with_capacity(d * d);
        for i in 0..d {
            for j in 0..d {
                let prods: Vec<Id> = factor[i]
                    .iter()
                    .zip(&factor[j])
                    .map(|(&a, &b)| self.graph.mul(a, b))
                    .collect();
                out.push(self.graph.sum(prods));
            }
        }
        out
    }

    /// `∂^j M_r`: the r-th moment tensor of the noise differentiated `j` times, `d^(r+j)`
    /// nodes (slots: the moment's r, then the j derivative slots). Gaussian noise has
    /// zero odd moments and Isserlis' even ones.
    pub fn moment(&mut self, r: usize, j: usize) -> Vec<Id> {
        if let Some(v) = self.moments.get(&(r, j)) {
            return v.clone();
        }
        let out = if j > 0 {
            let prev = self.moment(r, j - 1);
            self.derivative(&prev)
        } else {
            let d = self.dim;
            let sigma = self.sigma();
            let n = d.pow(r as u32);
            let mut out = Vec::with_capacity(n);
            for flat in 0..n {
                let mut idx = vec![0usize; r];
                let mut rest = flat;
                for k in (0..r).rev() {
                    idx[k] = rest % d;
                    rest /= d;
                }
                out.push(self.isserlis(&idx, &sigma));
            }
            out
        };
        self.moments.insert((r, j), out.clone());
        out
    }

    /// `E[ξ_{i1} … ξ_{ir}]` for Gaussian ξ: the sum over pairings of products of Σ.
    fn isserlis(&mut self, idx: &[usize], sigma: &[Id]) -> Id {
        if idx.is_empty() {
            return self.graph.constant(1.0);
        }
        if idx.len() % 2 == 1 {
            return self.graph.constant(0.0);
        }
        let d = self.dim;
        let first = idx[0];
        let mut terms = Vec::new();
        for k in 1..idx.len() {
            let rest: Vec<usize> = idx[1..]
                .iter()
                .enumerate()
                .filter(|(p, _)| p + 1 != k)
                .map(|(_, &v)| v)
                .collect();
            let pair = sigma[first * d + idx[k]];
            let sub = self.isserlis(&rest, sigma);
            terms.push(self.graph.mul(pair, sub));
        }
        self.graph.sum(terms)
    }

    /// Whether Σ is the same at every point.
    pub fn constant_noise(&self) -> bool {
        let Noise::Gaussian { factor } = &self.noise;
        factor
            .iter()
            .flatten()
            .all(|&n| self.graph.value(n).is_some())
    }
}

fn err(code: Code, span: Span, msg: impl Into<String>) -> Box<Diagnostic> {
    Box::new(Diagnostic::new(code, span, msg))
}

/// Parses and checks a problem file.
pub fn load(source: &str) -> R<Problem> {
    let file = syntax::parse_problem(source)?;
    let mut dim: Option<(usize, Span)> = None;
    let mut g = Graph::new();
    let mut consts: BTreeMap<String, f64> = BTreeMap::new();
    consts.insert("pi".into(), std::f64::consts::PI);
    let const_scope = |g: &mut Graph, consts: &BTreeMap<String, f64>| -> Scope {
        consts
            .iter()
            .map(|(k, &v)| (k.clone(), PV::S(g.constant(v))))
            .collect()
    };
    // The dimension first: everything else is read in it.
    for item in &file.items {
        if let PItemKind::Dim(e) = &item.kind {
            if let Some((_, prev)) = dim {
                return Err(err(Code::Declaration, item.span, "a second `dim`")
                    .label("dimension given again")
                    .secondary(prev, "first given here")
                    .hint("a problem has one dimension"));
            }
            let scope = const_scope(&mut g, &consts);
            let v = expr::constant(&mut g, e, &scope, "the dimension")?;
            if v != v.trunc() || v < 1.0 || v > MAX_DIM as f64 {
                return Err(err(
                    Code::Misuse,
                    e.span,
                    format!(
                        "the dimension must be a whole number from 1 to {MAX_DIM}, this is {v}"
                    ),
                )
                .label("not a dimension"));
            }
            dim = Some((v as usize, item.span));
        }
    }
    let Some((d, _)) = dim else {
        return Err(err(Code::Declaration, file.header, "no dimension given")
            .label("this problem")
            .hint("add `dim 1` (or the dimension of x) after the header"));
    };
    consts.insert("d".into(), d as f64);
    let inputs: Vec<Id> = (0..d as u32).map(|i| g.input(i)).collect();
    let mut objective: Option<(Id, String, Span)> = None;
    let mut noise: Option<(Noise, Span)> = None;
    let mut starts: Vec<Start> = Vec::new();
    let mut horizon: Option<(f64, Span)> = None;
    let mut observables: Vec<Observable> = Vec::new();
    let mut settings: Vec<(String, f64, Span)> = Vec::new();
    let mut etas: Option<Vec<f64>> = None;
    // The objective's variable name, needed by the noise: find it first.
    let var = file.items.iter().find_map(|i| match &i.kind {
        PItemKind::Objective { var, .. } => Some(var.name.clone()),
        _ => None,
    });
    let x_scope = |g: &mut Graph, consts: &BTreeMap<String, f64>| -> Scope {
        let mut s = const_scope(g, consts);
        if let Some(v) = &var {
            s.insert(v.clone(), PV::V(inputs.clone()));
        }
        s
    };
    for item in &file.items {
        match &item.kind {
            PItemKind::Dim(_) => {}
            PItemKind::Objective { name, var, body } => {
                if let Some((_, _, prev)) = &objective {
                    return Err(err(Code::Declaration, item.span, "a second objective")
                        .label("objective given again")
                        .secondary(*prev, "first given here")
                        .hint("a problem has one objective"));
                }
                if name.name != "f" {
                    return Err(err(
                        Code::Misuse,
                        name.span,
                        format!("the objective must be called `f`, as update rules call it (`grad f(x)`), not `{}`", name.name),
                    )
                    .label("rename to `f`"));
                }
                let scope = x_scope(&mut g, &consts);
                let f = match expr::build(&mut g, body, &scope)? {
                    PV::S(f) => f,
                    other => {
                        return Err(err(
                            Code::Shape,
                            body.span,
                            format!("the objective must be a scalar, this is {}", other.kind()),
                        )
                        .label("not a scalar")
                        .hint("sum the components: `sum(x^4/4 - x^2/2)`"))
                    }
                };
                objective = Some((f, var.name.clone(), item.span));
            }
            PItemKind::Noise {
                model,
                param,
                value,
            } => {
                if let Some((_, prev)) = &noise {
                    return Err(err(Code::Declaration, item.span, "a second noise model")
                        .label("noise given again")
                        .secondary(*prev, "first given here"));
                }
                if model.name == "minibatch" {
                    return Err(err(
                        Code::Unsupported,
                        model.span,
                        "minibatch noise is not supported yet",
                    )
                    .label("only Gaussian noise so far")
                    .hint("write `noise gaussian cov = ...` with the minibatch covariance"));
                }
                let scope = x_scope(&mut g, &consts);
                let v = expr::build(&mut g, value, &scope)?;
                let factor = match param.name.as_str() {
                    "cov" => cov_factor(&mut g, v, d, value.span)?,
                    "factor" => match v {
                        PV::S(s) => diag(&mut g, &vec![s; d]),
                        PV::V(x) if x.len() == d => diag(&mut g, &x),
                        PV::M(m) if m.len() == d => m,
                        other => {
                            return Err(err(
                                Code::Shape,
                                value.span,
                                format!(
                                    "the noise factor S (Σ = S Sᵀ) must have {d} rows, this is {}",
                                    other.kind()
                                ),
                            )
                            .label("wrong shape"))
                        }
                    },
                    other => {
                        return Err(err(
                            Code::Misuse,
                            param.span,
                            format!("Gaussian noise takes `cov` or `factor`, not `{other}`"),
                        )
                        .label("not a Gaussian parameter"))
                    }
                };
                noise = Some((Noise::Gaussian { factor }, item.span));
            }
            PItemKind::Start(name, e) => {
                if let Some(prev) = starts.iter().find(|s| s.name == name.name) {
                    return Err(err(
                        Code::Declaration,
                        item.span,
                        format!("a second start for `{}`", name.name),
                    )
                    .secondary(prev.span, "first given here"));
                }
                let scope = const_scope(&mut g, &consts);
                let value = match expr::build(&mut g, e, &scope)? {
                    PV::S(s) => vec![s],
                    PV::V(v) => v,
                    other => {
                        return Err(err(
                            Code::Shape,
                            e.span,
                            format!(
                                "a start value is a number or a vector, this is {}",
                                other.kind()
                            ),
                        ))
                    }
                };
                let value = value
                    .into_iter()
                    .map(|n| {
                        g.value(n).filter(|v| v.is_finite()).ok_or_else(|| {
                            err(Code::Misuse, e.span, "a start value must be finite numbers")
                                .label("not a finite constant")
                        })
                    })
                    .collect::<R<Vec<f64>>>()?;
                if value.len() != 1 && value.len() != d {
                    return Err(err(
                        Code::Shape,
                        e.span,
                        format!(
                            "the start has {} components, the problem has d = {d}",
                            value.len()
                        ),
                    )
                    .label("wrong length")
                    .hint("give d components, or one number for all of them"));
                }
                starts.push(Start {
                    name: name.name.clone(),
                    value,
                    span: item.span,
                });
            }
            PItemKind::Horizon(e) => {
                let scope = const_scope(&mut g, &consts);
                let t = expr::constant(&mut g, e, &scope, "the horizon")?;
                if !(t > 0.0 && t.is_finite()) {
                    return Err(err(
                        Code::Misuse,
                        e.span,
                        format!("the horizon must be positive, this is {t}"),
                    )
                    .label("not a positive time"));
                }
                horizon = Some((t, item.span));
            }
            PItemKind::Observe(name, e) => {
                if observables.iter().any(|o| o.name == name.name) {
                    return Err(err(
                        Code::Redeclared,
                        name.span,
                        format!("a second test function called `{}`", name.name),
                    )
                    .label("name used again"));
                }
                observables.push(Observable {
                    name: name.name.clone(),
                    expr: e.clone(),
                    span: item.span,
                });
            }
            PItemKind::Set(name, e) => {
                let scope = const_scope(&mut g, &consts);
                let v = expr::constant(&mut g, e, &scope, "a hyperparameter value")?;
                if settings.iter().any(|s| s.0 == name.name) {
                    return Err(err(
                        Code::Redeclared,
                        name.span,
                        format!("`{}` is set twice", name.name),
                    ));
                }
                settings.push((name.name.clone(), v, item.span));
            }
            PItemKind::Etas(items) => {
                let scope = const_scope(&mut g, &consts);
                let mut v = Vec::new();
                for e in items {
                    let x = expr::constant(&mut g, e, &scope, "a step size")?;
                    if !(x > 0.0 && x.is_finite()) {
                        return Err(err(
                            Code::Misuse,
                            e.span,
                            format!("a step size must be positive, this is {x}"),
                        ));
                    }
                    v.push(x);
                }
                etas = Some(v);
            }
            PItemKind::Data { source, .. } => {
                return Err(err(
                    Code::Unsupported,
                    source.span,
                    "data sources are not supported yet",
                )
                .label("not yet")
                .hint("write the objective in closed form"));
            }
        }
    }
    let Some((f, var, _)) = objective else {
        return Err(err(Code::Declaration, file.header, "no objective given")
            .label("this problem")
            .hint("add `objective f(x) = ...`, e.g. `objective f(x) = sum(x^4/4 - x^2/2)`"));
    };
    let Some((noise, _)) = noise else {
        return Err(err(Code::Declaration, file.header, "no noise model given")
            .label("this problem")
            .hint("add `noise gaussian cov = 0.5` (Σ = 0.5 I), a vector (diagonal) or a matrix"));
    };
    let Some((horizon, _)) = horizon else {
        return Err(err(Code::Declaration, file.header, "no horizon given")
            .label("this problem")
            .hint("add `horizon 1`: the time T at which the laws are compared"));
    };
    if observables.is_empty() {
        return Err(
            err(Code::Declaration, file.header, "no test function given")
                .label("this problem")
                .hint(format!(
                    "add `observe sq = sum({var}^2)` (any function of the parameter and states)"
                )),
        );
    }
    if !starts.iter().any(|s| s.name == var) {
        return Err(err(
            Code::Declaration,
            file.header,
            format!("no start value for `{var}`"),
        )
        .label("this problem")
        .hint(format!("add `start {var} = ...`")));
    }
    g.check_size().map_err(|_| {
        err(
            Code::TooLarge,
            file.header,
            "the problem's expressions are too large",
        )
    })?;
    Ok(Problem {
        name: file.name.name,
        dim: d,
        model: Model {
            graph: g,
            dim: d,
            f,
            noise,
            df: HashMap::new(),
            moments: HashMap::new(),
        },
        starts,
        horizon,
        observables,
        settings,
        etas,
        var,
        constants: consts,
        header: file.header,
    })
}

fn diag(g: &mut Graph, x: &[Id]) -> Vec<Vec<Id>> {
    let zero = g.constant(0.0);
    (0..x.len())
        .map(|i| {
            (0..x.len())
                .map(|j| if i == j { x[i] } else { zero })
                .collect()
        })
        .collect()
}

/// A factor S with S Sᵀ = Σ: square roots of a scalar or diagonal, the Cholesky factor
/// of a matrix (numerically checked when constant, symbolic otherwise).
fn cov_factor(g: &mut Graph, v: PV, d: usize, span: Span) -> R<Vec<Vec<Id>>> {
    let not_psd = |what: &str| {
        err(
            Code::Misuse,
            span,
            format!("the covariance is not positive semidefinite: {what}"),
        )
        .label("not a covariance")
    };
    Ok(match v {
        PV::S(s) => {
            if g.value(s).is_some_and(|c| c < 0.0) {
                return Err(not_psd("it is negative"));
            }
            let r = g.unary(Unary::Sqrt, s);
            diag(g, &vec![r; d])
        }
        PV::V(x) if x.len() == d => {
            if x.iter().any(|&n| g.value(n).is_some_and(|c| c < 0.0)) {
                return Err(not_psd("a diagonal entry is negative"));
            }
            let r: Vec<Id> = x.iter().map(|&n| g.unary(Unary::Sqrt, n)).collect();
            diag(g, &r)
        }
        PV::M(m) if m.len() == d && m.iter().all(|r| r.len() == d) => {
            // Symmetric?
            for i in 0..d {
                for j in 0..i {
                    let (a, b) = (m[i][j], m[j][i]);
                    let same = a == b
                        || matches!((g.value(a), g.value(b)), (Some(p), Some(q)) if (p - q).abs() <= 1e-12 * p.abs().max(q.abs()).max(1.0));
                    if !same {
                        return Err(err(
                            Code::Misuse,
                            span,
                            format!(
                                "the covariance is not symmetric (entries ({}, {}) and ({}, {}))",
                                i + 1,
                                j + 1,
                                j + 1,
                                i + 1
                            ),
                        )
                        .label("not symmetric"));
                    }
                }
            }
            let l = cholesky(g, &m);
            // A constant covariance must factor with real, non-negative pivots.
            for (i, row) in m.iter().enumerate() {
                let mut acc = g.value(row[i]);
                for k in 0..i {
                    if let (Some(a), Some(lk)) = (acc, g.value(l[i][k])) {
                        acc = Some(a - lk * lk);
                    } else {
                        acc = None;
                    }
                }
                if acc.is_some_and(|p| p < -1e-12) {
                    return Err(not_psd(&format!("pivot {} is negative", i + 1)));
                }
            }
            l
        }
        other => {
            return Err(err(
                Code::Shape,
                span,
                format!(
                "the covariance must be a number, a vector of {d} or a {d}×{d} matrix, this is {}",
                other.kind()
            ),
            )
            .label("wrong shape"))
        }
    })
}

/// The lower Cholesky factor of a symmetric matrix of nodes; zero pivots give zero
/// columns (semidefinite matrices factor too).
pub fn cholesky(g: &mut Graph, m: &[Vec<Id>]) -> Vec<Vec<Id>> {
    let n = m.len();
    let zero = g.constant(0.0);
    let mut l = vec![vec![zero; n]; n];
    for j in 0..n {
        let sq: Vec<Id> = (0..j).map(|k| g.powi(l[j][k], 2)).collect();
        let s = g.sum(sq);
        let p = g.sub(m[j][j], s);
        l[j][j] = g.unary(Unary::SqrtPos, p);
        for i in j + 1..n {
            let prods: Vec<Id> = (0..j).map(|k| g.mul(l[i][k], l[j][k])).collect();
            let s = g.sum(prods);
            let num = g.sub(m[i][j], s);
            l[i][j] = g.binary(Binary::DivOrZero, num, l[j][j]);
        }
    }
    l
}

/// Renders a problem-file diagnostic.
pub fn render(d: &Diagnostic, file: &str, source: &str) -> String {
    crate::diagnostic::render(std::slice::from_ref(d), file, source)
}

/// The problem as the reference interpreter sees it ([`crate::numeric::Oracle`]): f, ∇f,
/// ∇²f and the noise `S(x) draw`, each evaluated from the model's graph node by node.
#[derive(Debug, Clone)]
pub struct ModelOracle {
    graph: Graph,
    dim: usize,
    f: Id,
    grad: Vec<Id>,
    hess: Vec<Id>,
    factor: Vec<Vec<Id>>,
}

impl Model {
    /// A reference oracle for this model.
    pub fn oracle(&mut self) -> ModelOracle {
        let grad = self.df(1);
        let hess = self.df(2);
        let Noise::Gaussian { factor } = self.noise.clone();
        ModelOracle {
            graph: self.graph.clone(),
            dim: self.dim,
            f: self.f,
            grad,
            hess,
            factor,
        }
    }

    /// The point of the reference SME evaluator ([`crate::numeric::Env`]) at the state
    /// `state` (the parameter first): ∇^k f for `k ≤ max_df` and `∂^j M_r` for `r ≤ 4`,
    /// `j ≤ max_dm`, from the graph.
    pub fn env(
        &mut self,
        state: Vec<crate::numeric::Value>,
        symbols: BTreeMap<String, f64>,
        max_df: usize,
        max_dm: usize,
    ) -> crate::numeric::Env {
        use crate::numeric::{Tensor, Value};
        let d = self.dim;
        let x = match &state[0] {
            Value::Vector(x) => x.clone(),
            Value::Scalar(s) => vec![*s],
        };
        let grad_f = (0..=max_df)
            .map(|k| {
                let ids = self.df(k);
                Tensor {
                    shape: vec![d; k],
                    data: self.graph.eval(&ids, &x),
                }
            })
            .collect();
        let moments = (0..=4)
            .map(|r| {
                (0..=max_dm)
                    .map(|j| {
                        if r < 2 {
                            return Tensor::zeros(vec![d; r + j]);
                        }
                        let ids = self.moment(r, j);
                        Tensor {
                            shape: vec![d; r + j],
                            data: self.graph.eval(&ids, &x),
                        }
                    })
                    .collect()
            })
            .collect();
        crate::numeric::Env {
            dim: d,
            state,
            symbols,
            grad_f,
            moments,
        }
    }
}

impl crate::numeric::Oracle for ModelOracle {
    fn dim(&self) -> usize {
        self.dim
    }
    fn value(&self, x: &[f64]) -> f64 {
        self.graph.eval(&[self.f], x)[0]
    }
    fn grad(&self, x: &[f64]) -> Vec<f64> {
        self.graph.eval(&self.grad, x)
    }
    fn hess(&self, x: &[f64]) -> Vec<f64> {
        self.graph.eval(&self.hess, x)
    }
    fn noise(&self, _index: usize, x: &[f64], draw: &[f64]) -> Vec<f64> {
        self.factor
            .iter()
            .map(|row| {
                let s = self.graph.eval(row, x);
                s.iter().zip(draw).map(|(a, b)| a * b).sum()
            })
            .collect()
    }
}
