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
//!   start x = [0.5, -0.3]                   # other states start at 0 unless given;
//!                                           # or random(seed = 1, scale = 0.1)
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

pub mod data;
pub use data::Data;
pub mod expr;

use crate::error::diagnostic::{Boxed as _, Code, Diagnostic};
use crate::numeric::graph::{Binary, Graph, Id, Unary};
use crate::span::Span;
use crate::syntax::{self, Ident, PItemKind};
use expr::{Scope, PV};
use std::collections::{BTreeMap, HashMap};

use crate::error::diagnostic::{boxed as err, Fallible as R};

/// The largest dimension a problem may have. What the optimizer runs on (its step,
/// ∇f and a minibatch's gradients) has O(d) nodes per row; what forms d × d or d × d × d
/// objects symbolically has its own limits, [`MAX_DENSE_DIM`] and [`MAX_CUBIC_DIM`].
pub const MAX_DIM: usize = 4096;

/// The largest dimension for what forms a d × d matrix of nodes: the Hessian ∇²f
/// (`escape`'s Newton steps, the Hessian of [`ModelOracle`]) and the noise's covariance
/// Σ ([`Model::moment`]; for minibatch noise d² row means).
pub const MAX_DENSE_DIM: usize = 256;

/// The largest dimension for what forms d × d × d nodes: the Cholesky factor of a
/// covariance matrix written in the problem (`noise gaussian cov = [[…]]`), exact
/// mode's check that ∇³f vanishes, and the noise's moments of order 3 and up (Σ and
/// its first derivatives stop at [`MAX_DENSE_DIM`]).
pub const MAX_CUBIC_DIM: usize = 64;

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
    /// The name of the objective's variable (`x` in `f(x)`). In the problem file it
    /// stands for the rule's parameter, whatever the rule calls it (`start x`, `observe
    /// sq = sum(x^2)` with `param w`); the rule's own names work too.
    pub var: String,
    /// Where the objective's variable is declared.
    pub var_span: Span,
    /// Named constants the test functions may read (`d`, `pi`).
    pub constants: BTreeMap<String, f64>,
    pub header: Span,
}

impl Problem {
    /// The names of the test functions, in the file's order.
    pub fn observable_names(&self) -> Vec<String> {
        self.observables.iter().map(|o| o.name.clone()).collect()
    }
}

/// The noise model.
#[derive(Debug, Clone, PartialEq)]
pub enum Noise {
    /// Gaussian with `Σ(x) = S(x) S(x)ᵀ`; `factor` is `S`, `d` rows of `k` nodes.
    Gaussian { factor: Vec<Vec<Id>> },
    /// The gradient of a minibatch of `batch` rows drawn uniformly with replacement,
    /// minus the full gradient: `Σ(x) = Cov_i(∇ℓ_i(x)) / batch`.
    Minibatch { batch: usize },
}

/// The objective and the noise as graph nodes over the `d` inputs `x₁ … x_d`, with
/// their derivatives made on demand.
#[derive(Debug, Clone)]
pub struct Model {
    pub graph: Graph,
    pub dim: usize,
    pub f: Id,
    pub noise: Noise,
    /// The data of a finite-sum objective (`f` is then the mean of `data.loss`).
    pub data: Option<Data>,
    df: HashMap<usize, Vec<Id>>,
    moments: HashMap<(usize, usize), Vec<Id>>,
    /// Minibatch noise: the centred per-sample gradient `∇ℓ(x; row) − ∇f`, over the row
    /// a row mean averages over.
    centred: Option<Vec<Id>>,
}

impl Model {
    /// A model over the `dim` inputs of `graph`: the objective `f`, the noise, and for
    /// minibatch noise the data (whose `loss` is a node over x and one row, and whose
    /// mean over the rows must be `f`).
    pub fn new(graph: Graph, dim: usize, f: Id, noise: Noise, data: Option<Data>) -> Model {
        Model {
            graph,
            dim,
            f,
            noise,
            data,
            df: HashMap::new(),
            moments: HashMap::new(),
            centred: None,
        }
    }

    /// The inputs one noise sample reads per step: `k` standard normals for Gaussian
    /// noise, or `batch × width` data values (the rows of the minibatch).
    pub fn noise_draws(&self) -> usize {
        match &self.noise {
            Noise::Gaussian { factor } => factor.first().map_or(0, |r| r.len()),
            Noise::Minibatch { batch } => batch * self.data.as_ref().map_or(0, |d| d.width),
        }
    }

    /// Whether the noise draws are standard normals (else data rows).
    pub fn gaussian(&self) -> bool {
        matches!(self.noise, Noise::Gaussian { .. })
    }

    /// The gradient of the loss of one sample, `d` nodes over x and the row inputs.
    pub fn loss_grad(&mut self) -> Option<Vec<Id>> {
        let loss = self.data.as_ref()?.loss;
        Some(
            (0..self.dim)
                .map(|j| self.graph.diff(loss, j as u32))
                .collect(),
        )
    }

    /// `∇ℓ(x; row) − ∇f(x)`: the centred gradient of the sample a row mean is averaging
    /// over, `d` nodes that read the row ([`crate::numeric::graph::Op::Row`]).
    fn centred(&mut self) -> Vec<Id> {
        if let Some(c) = &self.centred {
            return c.clone();
        }
        let d = self.dim;
        let grad = self.df(1);
        let lg = self.loss_grad().unwrap_or_default();
        let width = self.data.as_ref().map_or(0, |dt| dt.width);
        let mut at: Vec<Id> = (0..d as u32).map(|i| self.graph.input(i)).collect();
        at.extend((0..width as u32).map(|c| self.graph.row(c)));
        let template = self.graph.clone();
        let gi = self.graph.import(&template, &lg, &at);
        let out: Vec<Id> = gi
            .iter()
            .zip(&grad)
            .map(|(&a, &b)| self.graph.sub(a, b))
            .collect();
        self.centred = Some(out.clone());
        out
    }

    /// `(1/n) Σ_i c_i^{⊗r}` over the centred per-sample gradients, `d^r` row means.
    fn sample_moment(&mut self, r: usize) -> Vec<Id> {
        let d = self.dim;
        let c = self.centred();
        (0..d.pow(r as u32))
            .map(|flat| {
                let idx = multi_index(flat, d, r);
                let mut p = self.graph.constant(1.0);
                for &k in &idx {
                    p = self.graph.mul(p, c[k]);
                }
                self.graph.row_mean(p)
            })
            .collect()
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

    /// The covariance Σ, `d × d` row-major: `S Sᵀ`, or the minibatch covariance.
    pub fn sigma(&mut self) -> Vec<Id> {
        let d = self.dim;
        let factor = match self.noise.clone() {
            Noise::Gaussian { factor } => factor,
            Noise::Minibatch { batch } => {
                let c2 = self.sample_moment(2);
                let inv = self.graph.constant(1.0 / batch as f64);
                return c2.into_iter().map(|x| self.graph.mul(inv, x)).collect();
            }
        };
        // The factor's non-zero entries by row: a diagonal factor (a number or a vector
        // for `cov`) makes d products, not d³.
        let nonzero: Vec<Vec<(usize, Id)>> = factor
            .iter()
            .map(|row| {
                row.iter()
                    .copied()
                    .enumerate()
                    .filter(|&(_, a)| self.graph.value(a) != Some(0.0))
                    .collect()
            })
            .collect();
        let mut out = Vec::with_capacity(d * d);
        for i in 0..d {
            for j in 0..d {
                let (short, long) = if nonzero[i].len() <= nonzero[j].len() {
                    (&nonzero[i], &factor[j])
                } else {
                    (&nonzero[j], &factor[i])
                };
                let prods: Vec<Id> = short
                    .iter()
                    .map(|&(k, a)| self.graph.mul(a, long[k]))
                    .collect();
                out.push(self.graph.sum(prods));
            }
        }
        out
    }

    /// `∂^j M_r`: the r-th moment tensor of the noise differentiated `j` times, `d^(r+j)`
    /// nodes (slots: the moment's r, then the j derivative slots). Gaussian noise has
    /// zero odd moments and Isserlis' even ones; the mean ξ of a minibatch of B rows
    /// has `M₂ = C₂/B`, `M₃ = C₃/B²`, `M₄ = C₄/B³ + (B−1)/B³ (C₂⊗C₂ over its three
    /// pairings)`, with `C_r` the moments of one centred per-sample gradient.
    pub fn moment(&mut self, r: usize, j: usize) -> Result<Vec<Id>, crate::Error> {
        self.moment_words(r, j).map_err(crate::Error::Other)
    }

    /// [`moment`]'s failures in words.
    pub(crate) fn moment_words(&mut self, r: usize, j: usize) -> Result<Vec<Id>, String> {
        if let Some(v) = self.moments.get(&(r, j)) {
            return Ok(v.clone());
        }
        // Σ and the higher moments are formed entry by entry (d^(r+j) nodes, for
        // minibatch noise each a row mean): refused past their limits rather than built.
        let d = self.dim;
        let limit = if r + j <= 2 {
            MAX_DENSE_DIM
        } else {
            MAX_CUBIC_DIM
        };
        if r >= 2 && d > limit {
            return Err(format!(
                "the noise's moment of order {r}{} has d^{} entries{}: at most d = {limit}, this problem has d = {d}",
                if j > 0 {
                    format!(" differentiated {j} times")
                } else {
                    String::new()
                },
                r + j,
                if matches!(self.noise, Noise::Minibatch { .. }) {
                    ", each a mean over the rows"
                } else {
                    ""
                }
            ));
        }
        let out = if j > 0 {
            let prev = self.moment_words(r, j - 1)?;
            self.derivative(&prev)
        } else if let Noise::Minibatch { batch } = self.noise {
            let d = self.dim;
            let b = batch as f64;
            match r {
                0 => vec![self.graph.constant(1.0)],
                1 => vec![self.graph.constant(0.0); d],
                2 => self.sigma(),
                3 => {
                    let c3 = self.sample_moment(3);
                    let k = self.graph.constant(1.0 / (b * b));
                    c3.into_iter().map(|x| self.graph.mul(k, x)).collect()
                }
                4 => {
                    let c4 = self.sample_moment(4);
                    let c2 = self.sample_moment(2);
                    let k4 = self.graph.constant(1.0 / (b * b * b));
                    let k2 = self.graph.constant((b - 1.0) / (b * b * b));
                    (0..d.pow(4))
                        .map(|flat| {
                            let i = multi_index(flat, d, 4);
                            let pair = |g: &mut Graph, a: usize, b2: usize, c: usize, e: usize| {
                                g.mul(c2[i[a] * d + i[b2]], c2[i[c] * d + i[e]])
                            };
                            let p1 = pair(&mut self.graph, 0, 1, 2, 3);
                            let p2 = pair(&mut self.graph, 0, 2, 1, 3);
                            let p3 = pair(&mut self.graph, 0, 3, 1, 2);
                            let pairs = self.graph.sum([p1, p2, p3]);
                            let a = self.graph.mul(k4, c4[flat]);
                            let bb = self.graph.mul(k2, pairs);
                            self.graph.add(a, bb)
                        })
                        .collect()
                }
                // One row per step: the noise is one centred per-sample gradient.
                _ if batch == 1 => self.sample_moment(r),
                _ => {
                    return Err(format!(
                        "the minibatch noise's moment of order {r} is not available (orders up to 4 are, and every order for batches of one row)"
                    ))
                }
            }
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
        Ok(out)
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

    /// The model with the noise of a batch of `batch` samples: Gaussian noise has its
    /// covariance divided by `batch` (its factor by `√batch`); minibatch noise draws
    /// `batch` rows per step (an integer then).
    pub fn with_batch(&self, batch: f64) -> Result<Model, crate::Error> {
        self.with_batch_words(batch).map_err(crate::Error::Other)
    }

    /// [`with_batch`]'s failures in words.
    fn with_batch_words(&self, batch: f64) -> Result<Model, String> {
        if !(batch >= 1.0 && batch.is_finite()) {
            return Err(format!("a batch size must be at least 1, not {batch}"));
        }
        let mut m = self.clone();
        m.moments.clear();
        match &self.noise {
            Noise::Gaussian { factor } => {
                let s = m.graph.constant(1.0 / batch.sqrt());
                let factor = factor
                    .iter()
                    .map(|row| row.iter().map(|&x| m.graph.mul(s, x)).collect())
                    .collect();
                m.noise = Noise::Gaussian { factor };
            }
            Noise::Minibatch { .. } => {
                if batch.fract() != 0.0 || batch > 1e6 {
                    return Err(format!(
                        "minibatch noise draws whole rows: the batch size {batch} must be an integer"
                    ));
                }
                m.noise = Noise::Minibatch {
                    batch: batch as usize,
                };
            }
        }
        Ok(m)
    }

    /// Whether the noise is Gaussian with Σ the same at every point.
    pub fn constant_noise(&self) -> bool {
        let Noise::Gaussian { factor } = &self.noise else {
            return false;
        };
        factor
            .iter()
            .flatten()
            .all(|&n| self.graph.value(n).is_some())
    }
}

/// The multi-index (row-major, `r` slots over `0..d`) of a flat position.
fn multi_index(flat: usize, d: usize, r: usize) -> Vec<usize> {
    let mut idx = vec![0usize; r];
    let mut rest = flat;
    for k in (0..r).rev() {
        idx[k] = rest % d;
        rest /= d;
    }
    idx
}

/// Parses and checks a problem file (data files are read relative to the current
/// directory; see [`load_in`]).
pub fn load(source: &str) -> R<Problem> {
    load_in(source, std::path::Path::new("."))
}

/// Parses and checks a problem file whose `csv("…")` data paths are relative to `dir`.
pub fn load_in(source: &str, dir: &std::path::Path) -> R<Problem> {
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
    // Data, before the objective that reads it.
    let mut data: Option<Data> = None;
    for item in &file.items {
        if let PItemKind::Data {
            names,
            source,
            args,
        } = &item.kind
        {
            if data.is_some() {
                return Err(err(Code::Declaration, item.span, "a second `data` line")
                    .label("data given again")
                    .hint("a problem has one data set"));
            }
            data = Some(data::read(names, source, args, d, dir, &mut g, &consts)?);
        }
    }
    // With data, the objective is a loss per sample: its names for the sample's row are
    // inputs after x (d, d+1, …), and f is the mean of the loss over the rows.
    let row_inputs: Vec<Id> = data
        .as_ref()
        .map(|dt| (0..dt.width).map(|k| g.input((d + k) as u32)).collect())
        .unwrap_or_default();
    let mut objective: Option<(Id, Ident, Span)> = None;
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
    let columns: Option<Vec<(String, usize)>> = data.as_ref().map(|dt| dt.columns.clone());
    let loss_scope = |g: &mut Graph, consts: &BTreeMap<String, f64>| -> Scope {
        let mut s = x_scope(g, consts);
        if let Some(columns) = &columns {
            let mut off = 0;
            for (name, len) in columns {
                let ids = row_inputs[off..off + len].to_vec();
                s.insert(
                    name.clone(),
                    if *len == 1 { PV::S(ids[0]) } else { PV::V(ids) },
                );
                off += len;
            }
        }
        s
    };
    // `let` names, in file order, each built in the loss scope with the lets before it:
    // the objective and (without data) the noise read them; the test functions read
    // those that are not indexed ([`expand_lets`]).
    let mut lets: Vec<(Ident, PV, syntax::Expr)> = Vec::new();
    for item in &file.items {
        let PItemKind::Let(name, e) = &item.kind else {
            continue;
        };
        let mut scope = loss_scope(&mut g, &consts);
        if let Some(prev) = lets.iter().find(|l| l.0.name == name.name) {
            return Err(err(
                Code::Redeclared,
                name.span,
                format!("`{}` is defined twice", name.name),
            )
            .label("name used again")
            .secondary(prev.0.span, "first defined here")
            .hint("give each `let` its own name"));
        }
        if scope.contains_key(&name.name) || expr::FUNCTIONS.contains(&name.name.as_str()) {
            return Err(err(
                Code::Redeclared,
                name.span,
                format!(
                    "`{}` is already a name of this problem (the variable, a data name, a constant or a function)",
                    name.name
                ),
            )
            .label("name taken")
            .hint("choose another name for the `let`"));
        }
        for (n, v, _) in &lets {
            scope.insert(n.name.clone(), v.clone());
        }
        let v = expr::build(&mut g, e, &scope)?;
        lets.push((name.clone(), v, e.clone()));
    }
    let with_lets = |mut s: Scope| -> Scope {
        for (n, v, _) in &lets {
            s.insert(n.name.clone(), v.clone());
        }
        s
    };
    for item in &file.items {
        match &item.kind {
            PItemKind::Dim(_) | PItemKind::Let(..) => {}
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
                let scope = with_lets(loss_scope(&mut g, &consts));
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
                // A finite sum stays one node over one row: f = mean over the rows of
                // the loss, with the row's names read from the row being averaged.
                let f = match &mut data {
                    None => f,
                    Some(dt) => {
                        dt.loss = f;
                        g.set_rows(dt.rows.clone());
                        let mut at = inputs.clone();
                        at.extend((0..dt.width as u32).map(|c| g.row(c)));
                        let template = g.clone();
                        let body = g.import(&template, &[f], &at)[0];
                        g.row_mean(body)
                    }
                };
                objective = Some((f, var.clone(), item.span));
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
                    if param.name != "size" {
                        return Err(err(
                            Code::Misuse,
                            param.span,
                            format!("minibatch noise takes `size`, not `{}`", param.name),
                        )
                        .label("not a minibatch parameter")
                        .hint("write `noise minibatch size = 8`"));
                    }
                    let Some(dt) = &data else {
                        return Err(err(
                            Code::Declaration,
                            model.span,
                            "minibatch noise needs data to sample from",
                        )
                        .label("no `data` line")
                        .hint("add `data a, y = logistic(n = 256, seed = 1)` (or `csv(\"file.csv\")`) and write the objective as a loss per sample"));
                    };
                    let scope = const_scope(&mut g, &consts);
                    let b = expr::constant(&mut g, value, &scope, "the batch size")?;
                    if b != b.trunc() || b < 1.0 || b > dt.len() as f64 {
                        return Err(err(
                            Code::Misuse,
                            value.span,
                            format!("the batch size must be a whole number from 1 to the number of rows ({}), this is {b}", dt.len()),
                        )
                        .label("not a batch size"));
                    }
                    noise = Some((Noise::Minibatch { batch: b as usize }, item.span));
                    continue;
                }
                let scope = if data.is_none() {
                    with_lets(x_scope(&mut g, &consts))
                } else {
                    x_scope(&mut g, &consts)
                };
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
            PItemKind::StartRandom(name, args, at) => {
                no_second_start(&starts, &name.name, item.span)?;
                let scope = const_scope(&mut g, &consts);
                let value = random_start(&mut g, args, *at, &scope, d)?;
                starts.push(Start {
                    name: name.name.clone(),
                    value,
                    span: item.span,
                });
            }
            PItemKind::Start(name, e) => {
                no_second_start(&starts, &name.name, item.span)?;
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
                    expr: expand_lets(e, &lets)?,
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
            PItemKind::Data { .. } => {}
        }
    }
    let Some((
        f,
        Ident {
            name: var,
            span: var_span,
        },
        _,
    )) = objective
    else {
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
    // The parameter may be started under the rule's name for it (`start w` with `param
    // w`): whether it is started is checked once the rule is known
    // ([`crate::sim::compile::check_names`]).
    if starts.is_empty() {
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
            data,
            df: HashMap::new(),
            moments: HashMap::new(),
            centred: None,
        },
        starts,
        horizon,
        observables,
        settings,
        etas,
        var,
        var_span,
        constants: consts,
        header: file.header,
    })
}

/// A test function with the `let` names it reads written out (test functions are
/// compiled over the optimizer's states, apart from the problem's graph). A `let` that
/// is indexed (`W[1]`) cannot be written out in place and is refused.
fn expand_lets(e: &syntax::Expr, lets: &[(Ident, PV, syntax::Expr)]) -> R<syntax::Expr> {
    use syntax::ExprKind as K;
    let sub = |a: &syntax::Expr| expand_lets(a, lets).map(Box::new);
    let kind = match &e.kind {
        // A `let` is its expression, with the `let`s before it written out in turn.
        K::Name(n) => match lets.iter().position(|l| &l.0.name == n) {
            Some(k) => return expand_lets(&lets[k].2, &lets[..k]),
            None => K::Name(n.clone()),
        },
        K::Number(_) => e.kind.clone(),
        K::Unary(op, a) => K::Unary(*op, sub(a)?),
        K::Binary(op, a, b) => K::Binary(*op, sub(a)?, sub(b)?),
        K::Call { func, args } => K::Call {
            func: func.clone(),
            args: args
                .iter()
                .map(|a| expand_lets(a, lets))
                .collect::<R<_>>()?,
        },
        K::Index { base, index, to } => {
            if let Some(l) = lets.iter().find(|l| l.0.name == base.name) {
                return Err(err(
                    Code::Misuse,
                    base.span,
                    format!(
                        "a test function cannot index the `let` name `{}`",
                        base.name
                    ),
                )
                .label("a `let` indexed in a test function")
                .secondary(l.0.span, "defined here")
                .hint("index the parameter itself, e.g. `x[1]`, or use the `let` whole"));
            }
            K::Index {
                base: base.clone(),
                index: sub(index)?,
                to: to.as_deref().map(sub).transpose()?,
            }
        }
        K::List(items) => K::List(
            items
                .iter()
                .map(|a| expand_lets(a, lets))
                .collect::<R<_>>()?,
        ),
        K::Grad { .. } | K::Hess { .. } => e.kind.clone(),
    };
    Ok(syntax::Expr { kind, span: e.span })
}

/// `random(seed = s, scale = c)`: `d` numbers `c·zᵢ`, the `zᵢ` standard normals drawn
/// from smelt's generator ([`crate::numeric::rng`], stream 0 of the seed), so the same
/// start on every machine.
fn random_start(
    g: &mut Graph,
    args: &[(Ident, syntax::Expr)],
    at: Span,
    scope: &Scope,
    d: usize,
) -> R<Vec<f64>> {
    let mut seed: Option<f64> = None;
    let mut scale = 1.0;
    for (k, e) in args {
        let v = expr::constant(g, e, scope, &format!("`{}`", k.name))?;
        match k.name.as_str() {
            "seed" => {
                if v != v.trunc() || !(0.0..=9.0e15).contains(&v) {
                    return Err(err(
                        Code::Misuse,
                        e.span,
                        format!("`seed` must be a whole number ≥ 0, this is {v}"),
                    )
                    .label("not a seed"));
                }
                seed = Some(v);
            }
            "scale" => {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(err(
                        Code::Misuse,
                        e.span,
                        format!("`scale` must be a finite number ≥ 0, this is {v}"),
                    )
                    .label("not a scale"));
                }
                scale = v;
            }
            other => {
                return Err(err(
                    Code::Misuse,
                    k.span,
                    format!("`random` takes `seed` and `scale`, not `{other}`"),
                )
                .label("unknown argument")
                .hint("write `start x = random(seed = 1, scale = 0.1)`: N(0, scale²) components"))
            }
        }
    }
    let Some(seed) = seed else {
        return Err(err(Code::Misuse, at, "`random` needs a `seed`")
            .label("no seed")
            .hint("write `start x = random(seed = 1, scale = 0.1)`: the seed makes the start the same on every run"));
    };
    let mut rng = crate::numeric::rng::Streams::new(seed as u64).stream(0);
    Ok((0..d).map(|_| scale * rng.normal()).collect())
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
            if d > MAX_CUBIC_DIM {
                return Err(err(
                    Code::TooLarge,
                    span,
                    format!(
                        "a covariance matrix is factored symbolically (Cholesky, about d³/6 = {} nodes): at most d = {MAX_CUBIC_DIM}, this problem has d = {d}",
                        d * d * d / 6
                    ),
                )
                .label("a d × d covariance")
                .hint("give a number (Σ = c I) or a vector (a diagonal), or the factor itself: `noise gaussian factor = S` with Σ = S Sᵀ"));
            }
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
    crate::error::diagnostic::render(std::slice::from_ref(d), file, source)
}

/// The problem as the reference interpreter sees it ([`crate::numeric::Oracle`]): f, ∇f,
/// ∇²f and the noise `S(x) draw`, each evaluated from the model's graph node by node.
#[derive(Debug, Clone)]
pub struct ModelOracle {
    graph: Graph,
    dim: usize,
    f: Id,
    grad: Vec<Id>,
    /// ∇²f (its graph and d² nodes), made on the first call of `hess`: a rule that
    /// never reads the Hessian never forms it.
    hess: std::sync::OnceLock<(Graph, Vec<Id>)>,
    noise: OracleNoise,
}

#[derive(Debug, Clone)]
enum OracleNoise {
    /// `S(x) draw`.
    Gaussian(Vec<Vec<Id>>),
    /// The draw is `batch` rows: `(1/B) Σ_j ∇ℓ(x; row_j) − ∇f(x)`.
    Minibatch {
        loss_grad: Vec<Id>,
        batch: usize,
        width: usize,
    },
}

impl Model {
    /// A reference oracle for this model.
    pub fn oracle(&mut self) -> ModelOracle {
        let grad = self.df(1);
        let hess = std::sync::OnceLock::new();
        if let Some(h) = self.df.get(&2) {
            let _ = hess.set((self.graph.clone(), h.clone()));
        }
        let noise = match self.noise.clone() {
            Noise::Gaussian { factor } => OracleNoise::Gaussian(factor),
            Noise::Minibatch { batch } => OracleNoise::Minibatch {
                loss_grad: self.loss_grad().unwrap_or_default(),
                batch,
                width: self.data.as_ref().map_or(0, |d| d.width),
            },
        };
        ModelOracle {
            graph: self.graph.clone(),
            dim: self.dim,
            f: self.f,
            grad,
            hess,
            noise,
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
    ) -> Result<crate::numeric::Env, crate::Error> {
        self.env_words(state, symbols, max_df, max_dm)
            .map_err(crate::Error::Other)
    }

    /// [`env`]'s failures in words.
    fn env_words(
        &mut self,
        state: Vec<crate::numeric::Value>,
        symbols: BTreeMap<String, f64>,
        max_df: usize,
        max_dm: usize,
    ) -> Result<crate::numeric::Env, String> {
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
                            return Ok(Tensor::zeros(vec![d; r + j]));
                        }
                        let ids = self.moment_words(r, j)?;
                        Ok(Tensor {
                            shape: vec![d; r + j],
                            data: self.graph.eval(&ids, &x),
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(crate::numeric::Env {
            dim: d,
            state,
            symbols,
            grad_f,
            moments,
        })
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
    fn hess_unavailable(&self) -> Option<String> {
        (self.dim > MAX_DENSE_DIM).then(|| {
            format!(
                "the Hessian ∇²f is formed as d² = {} nodes: at most d = {MAX_DENSE_DIM}, this problem has d = {}",
                self.dim * self.dim,
                self.dim
            )
        })
    }

    /// ∇²f at `x`, formed on the first call (d² nodes; nothing past
    /// [`MAX_DENSE_DIM`], see [`crate::numeric::Oracle::hess_unavailable`]).
    fn hess(&self, x: &[f64]) -> Vec<f64> {
        let d = self.dim;
        if d > MAX_DENSE_DIM {
            return Vec::new();
        }
        let (g, ids) = self.hess.get_or_init(|| {
            let mut g = self.graph.clone();
            let by: Vec<Vec<Id>> = (0..d).map(|j| g.diff_all(&self.grad, j as u32)).collect();
            let ids = (0..d)
                .flat_map(|i| by.iter().map(move |b| b[i]))
                .collect::<Vec<_>>();
            (g, ids)
        });
        g.eval(ids, x)
    }
    fn noise(&self, _index: usize, x: &[f64], draw: &[f64]) -> Vec<f64> {
        match &self.noise {
            OracleNoise::Gaussian(factor) => factor
                .iter()
                .map(|row| {
                    let s = self.graph.eval(row, x);
                    s.iter().zip(draw).map(|(a, b)| a * b).sum()
                })
                .collect(),
            OracleNoise::Minibatch {
                loss_grad,
                batch,
                width,
            } => {
                let full = self.graph.eval(&self.grad, x);
                let mut mean = vec![0.0; self.dim];
                for j in 0..*batch {
                    let mut at = x.to_vec();
                    at.extend_from_slice(&draw[j * width..(j + 1) * width]);
                    for (m, g) in mean.iter_mut().zip(self.graph.eval(loss_grad, &at)) {
                        *m += g / *batch as f64;
                    }
                }
                mean.iter().zip(&full).map(|(m, f)| m - f).collect()
            }
        }
    }
}

/// Refuses a second start for the same variable.
fn no_second_start(starts: &[Start], name: &str, span: Span) -> Result<(), Box<Diagnostic>> {
    match starts.iter().find(|s| s.name == name) {
        Some(prev) => Err(err(
            Code::Declaration,
            span,
            format!("a second start for `{name}`"),
        )
        .secondary(prev.span, "first given here")),
        None => Ok(()),
    }
}
