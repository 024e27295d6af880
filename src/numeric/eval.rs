//! The reference evaluator: a [`TExpr`] at a concrete point, by plain loops.
//!
//! This is the slow, obviously-correct evaluation that faster numeric code (and the
//! NumPy export) is tested against. Nothing is clever: every term is evaluated by
//! running every index label of the term over `0..d` (einsum semantics: a label shared
//! by several factors, or repeated inside one factor, takes the same value in all of
//! them; the labels below the expression's `free` are the output indices, in order;
//! all others are summed), multiplying the factors' entries, and adding
//! `coefficient × product` into the output entry the free labels select.
//!
//! What each factor ([`Kind`]) is at the point ([`Env`]):
//!
//! | factor | value |
//! |---|---|
//! | [`Kind::DF`]`(k)` | `env.grad_f[k]`, the tensor `∇^k f`, shape `[d; k]` |
//! | [`Kind::Moment`]` { r, d: j }` | `env.moments[r][j]`, `∂^j M_r`, shape `[d; r + j]` (slots: the moment's `r`, then the `j` derivative slots) |
//! | [`Kind::State`]`(v)` | `env.state[v]`: its component at the index, or the scalar |
//! | [`Kind::One`] | 1 at every index |
//! | [`Kind::Delta`] | 1 where its two indices are equal, else 0 |
//! | [`Kind::Elem`]`(id)` | `sme.elem.get(id)` evaluated with [`FExpr::eval`]: a vector state reads its component at the factor's index, a scalar state its value |
//! | [`Kind::Noise`], [`Kind::Disp`] | an error: they never appear in a derived SME |
//!
//! Coefficients ([`crate::algebra::poly::Poly`]) are evaluated with the symbol values of
//! [`Env::symbols`] (by name; the dimension symbol `d` is always `env.dim`). Every
//! missing or ill-shaped input is an `Err` naming it; nothing panics on bad input.

use crate::algebra::elem::FExpr;
use crate::algebra::poly::{Poly, Sym};
use crate::algebra::tensor::{Atom, Kind, Label, TExpr, Term};
use crate::sme::Sme;
use std::collections::BTreeMap;

/// A dense tensor, row-major (the last index varies fastest). Rank 0 has `shape = []`
/// and one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Tensor {
    /// All zeros.
    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; n],
        }
    }

    /// A rank-0 tensor.
    pub fn scalar(x: f64) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: vec![x],
        }
    }

    /// A rank-1 tensor.
    pub fn vector(v: Vec<f64>) -> Tensor {
        Tensor {
            shape: vec![v.len()],
            data: v,
        }
    }

    /// The rank-`rank` tensor in dimension `dim` whose entry at `idx` is `f(idx)`.
    pub fn from_fn(dim: usize, rank: usize, mut f: impl FnMut(&[usize]) -> f64) -> Tensor {
        let mut t = Tensor::zeros(vec![dim; rank]);
        let mut idx = vec![0usize; rank];
        for k in 0..t.data.len() {
            t.data[k] = f(&idx);
            advance(&mut idx, dim);
        }
        t
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The position of a multi-index in `data`.
    pub fn offset(&self, idx: &[usize]) -> usize {
        debug_assert_eq!(idx.len(), self.shape.len());
        idx.iter()
            .zip(&self.shape)
            .fold(0, |acc, (&i, &n)| acc * n + i)
    }

    /// The entry at a multi-index.
    pub fn get(&self, idx: &[usize]) -> f64 {
        self.data[self.offset(idx)]
    }
}

/// The next multi-index in row-major order (wraps to all zeros after the last).
pub(crate) fn advance(idx: &mut [usize], dim: usize) {
    for i in idx.iter_mut().rev() {
        *i += 1;
        if *i < dim {
            return;
        }
        *i = 0;
    }
}

/// The value of one state variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A vector state: `d` components.
    Vector(Vec<f64>),
    /// A scalar state (such as the clock `t`).
    Scalar(f64),
}

/// A concrete point: everything a derived SME's terms can read.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// The dimension `d` (at least 1).
    pub dim: usize,
    /// The state variables' values, by index (`sme.vars`; the parameter first).
    pub state: Vec<Value>,
    /// Values of the coefficient symbols by name (`sme.symbols`); `"d"` need not be given,
    /// it is always `dim`. A constant that the derivation kept as an opaque symbol (such
    /// as `sqrt(c)`) is looked up under its printed name.
    pub symbols: BTreeMap<String, f64>,
    /// `grad_f[k] = ∇^k f` at the point, shape `[d; k]` (`k = 0` is the value of f).
    pub grad_f: Vec<Tensor>,
    /// `moments[r][j] = ∂^j M_r`, the r-th noise moment tensor differentiated j times,
    /// shape `[d; r + j]` (`r = 2` is Σ; entries for r = 0, 1 are never read).
    pub moments: Vec<Vec<Tensor>>,
}

/// A factor resolved against the point: how to read its entry for given index values.
enum Resolved<'a> {
    /// A tensor and the term labels of its slots.
    Tensor(&'a Tensor, Vec<Label>),
    /// A vector (state components or an elementwise function's values) at one label.
    Vector(std::borrow::Cow<'a, [f64]>, Label),
    /// A number that does not depend on any index.
    Scalar(f64),
    /// Kronecker δ of two labels.
    Delta(Label, Label),
    /// A `d × d` matrix, row-major, at two labels.
    Matrix(Vec<f64>, Label, Label),
}

/// The numeric value of the coefficient symbols, by symbol number.
struct SymbolValues<'a> {
    sme: &'a Sme,
    values: Vec<Option<f64>>,
}

impl<'a> SymbolValues<'a> {
    fn new(sme: &'a Sme, env: &Env) -> SymbolValues<'a> {
        let values = (0..)
            .map_while(|i| sme.symbols.try_name(i))
            .enumerate()
            .map(|(i, name)| {
                if i == sme.dim as usize {
                    Some(env.dim as f64)
                } else {
                    env.symbols.get(name).copied()
                }
            })
            .collect();
        SymbolValues { sme, values }
    }

    /// Checks that every symbol in `syms` has a value.
    fn check(&self, syms: impl IntoIterator<Item = Sym>) -> Result<(), String> {
        for s in syms {
            if self.values.get(s as usize).copied().flatten().is_none() {
                let name = self
                    .sme
                    .symbols
                    .try_name(s as usize)
                    .map_or_else(|| format!("#{s}"), str::to_string);
                return Err(format!("no value for the symbol `{name}`"));
            }
        }
        Ok(())
    }

    /// The value of a symbol already [`check`](Self::check)ed.
    fn get(&self, s: Sym) -> f64 {
        self.values
            .get(s as usize)
            .copied()
            .flatten()
            .unwrap_or(f64::NAN)
    }

    /// A coefficient's value, after checking its symbols.
    fn poly(&self, p: &Poly) -> Result<f64, String> {
        self.check(p.terms().flat_map(|(m, _)| m.iter().map(|(s, _)| *s)))?;
        Ok(p.eval(&|s| self.get(s)))
    }
}

/// An elementwise function at component `i` (vector states and the fields ∇f, diag Σ
/// read there).
fn fexpr_at(f: &FExpr, env: &Env, syms: &SymbolValues, i: usize) -> Result<f64, String> {
    use crate::algebra::elem::Field;
    let d = env.dim;
    let grad = match env.grad_f.get(1) {
        Some(t) if f.reads(Field::Grad.var_id()) => {
            check_shape(t, d, 1, "grad_f[1]")?;
            Some(t)
        }
        None if f.reads(Field::Grad.var_id()) => {
            return Err("∇f is needed but not given (grad_f[1])".into())
        }
        _ => None,
    };
    let sigma = match env.moments.get(2).and_then(|m| m.first()) {
        Some(t) if f.reads(Field::NoiseVar.var_id()) => {
            check_shape(t, d, 2, "moments[2][0]")?;
            Some(t)
        }
        None if f.reads(Field::NoiseVar.var_id()) => {
            return Err("Σ is needed but not given (moments[2][0])".into())
        }
        _ => None,
    };
    Ok(f.eval_at(
        i,
        d,
        &|v, i| match Field::from_var_id(v) {
            Some(Field::Grad) => grad.map_or(f64::NAN, |t| t.data[i]),
            Some(Field::NoiseVar) => sigma.map_or(f64::NAN, |t| t.data[i * d + i]),
            None => match env.state.get(v as usize) {
                Some(Value::Vector(x)) => x.get(i).copied().unwrap_or(f64::NAN),
                Some(Value::Scalar(x)) => *x,
                None => f64::NAN,
            },
        },
        &|s| syms.get(s),
    ))
}

/// The entries of a kink pair at the point: the univariate mean on the diagonal, the
/// bivariate one ([`crate::numeric::gauss::expect_pl2`]) off it.
fn pair_matrix(
    sme: &Sme,
    p: &crate::algebra::elem::Pair,
    env: &Env,
    syms: &SymbolValues,
) -> Result<Vec<f64>, String> {
    use crate::numeric::gauss::{expect_pl2, PiecewiseLinear};
    let d = env.dim;
    let cov = |i: usize, j: usize| -> Result<f64, String> {
        match &p.scale {
            Some(c) => Ok(if i == j { syms.poly(c)? } else { 0.0 }),
            None => {
                let t = env
                    .moments
                    .get(2)
                    .and_then(|m| m.first())
                    .ok_or("Σ is needed but not given (moments[2][0])")?;
                check_shape(t, d, 2, "moments[2][0]")?;
                Ok(t.data[i * d + j])
            }
        }
    };
    let map = |abs: bool| {
        if abs {
            PiecewiseLinear::abs()
        } else {
            PiecewiseLinear::sign()
        }
    };
    let diag = sme
        .elem
        .functions
        .get(p.diag as usize)
        .ok_or("the pair's diagonal function is missing")?;
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = if i == j {
                fexpr_at(diag, env, syms, i)?
            } else {
                let (a, ca) = (
                    fexpr_at(&p.left.mean, env, syms, i)?,
                    fexpr_at(&p.left.coef, env, syms, i)?,
                );
                let (b, cb) = (
                    fexpr_at(&p.right.mean, env, syms, j)?,
                    fexpr_at(&p.right.coef, env, syms, j)?,
                );
                let (si, sj) = (cov(i, i)?.sqrt(), cov(j, j)?.sqrt());
                let rho = (cov(i, j)? / (si * sj)).clamp(-1.0, 1.0);
                expect_pl2(
                    &map(p.left.abs),
                    &map(p.right.abs),
                    [a, b],
                    [ca.abs() * si, cb.abs() * sj],
                    rho * (ca * cb).signum(),
                )
            };
        }
    }
    Ok(out)
}

/// Every state variable an elementwise function reads (∇f and diag Σ come from the
/// point's tensors, not from a state).
fn vars_read(f: &FExpr, out: &mut Vec<u8>) {
    f.walk(&mut |n| {
        if let FExpr::Var(v) = n {
            if !out.contains(v) {
                out.push(*v);
            }
        }
    });
}

/// Checks that a tensor has shape `[dim; rank]`.
fn check_shape(t: &Tensor, dim: usize, rank: usize, what: &str) -> Result<(), String> {
    if t.shape != vec![dim; rank] || t.data.len() != dim.pow(rank as u32) {
        return Err(format!(
            "{what} has shape {:?} ({} entries), expected {:?}",
            t.shape,
            t.data.len(),
            vec![dim; rank]
        ));
    }
    Ok(())
}

/// The number of index slots an atom of this kind must have, when fixed.
fn expect_slots(a: &Atom, n: usize) -> Result<(), String> {
    if a.idx.len() != n {
        return Err(format!(
            "the factor {:?} has {} index slots, expected {n}",
            a.kind,
            a.idx.len()
        ));
    }
    Ok(())
}

fn resolve<'a>(
    sme: &Sme,
    a: &Atom,
    env: &'a Env,
    syms: &SymbolValues,
) -> Result<Resolved<'a>, String> {
    let d = env.dim;
    Ok(match a.kind {
        Kind::DF(k) => {
            let k = k as usize;
            let t = env
                .grad_f
                .get(k)
                .ok_or_else(|| format!("∇^{k} f is needed but not given (grad_f[{k}])"))?;
            check_shape(t, d, k, &format!("grad_f[{k}]"))?;
            expect_slots(a, k)?;
            Resolved::Tensor(t, a.idx.to_vec())
        }
        Kind::Moment { r, d: j } => {
            let (r, j) = (r as usize, j as usize);
            let t = env.moments.get(r).and_then(|m| m.get(j)).ok_or_else(|| {
                format!("∂^{j} M_{r} is needed but not given (moments[{r}][{j}])")
            })?;
            check_shape(t, d, r + j, &format!("moments[{r}][{j}]"))?;
            expect_slots(a, r + j)?;
            Resolved::Tensor(t, a.idx.to_vec())
        }
        Kind::State(v) => {
            let value = env
                .state
                .get(v as usize)
                .ok_or_else(|| format!("no value for state variable number {v}"))?;
            match value {
                Value::Vector(x) => {
                    if x.len() != d {
                        return Err(format!(
                            "state variable number {v} has {} components, expected {d}",
                            x.len()
                        ));
                    }
                    expect_slots(a, 1)?;
                    Resolved::Vector(std::borrow::Cow::Borrowed(x), a.idx[0])
                }
                Value::Scalar(x) => {
                    expect_slots(a, 0)?;
                    Resolved::Scalar(*x)
                }
            }
        }
        Kind::One => {
            expect_slots(a, 1)?;
            Resolved::Scalar(1.0)
        }
        Kind::Delta => {
            expect_slots(a, 2)?;
            Resolved::Delta(a.idx[0], a.idx[1])
        }
        Kind::Elem(id) => {
            let f = sme
                .elem
                .functions
                .get(id as usize)
                .ok_or_else(|| format!("no elementwise function number {id}"))?;
            let mut used = Vec::new();
            f.symbols(&mut used);
            syms.check(used)?;
            let mut read = Vec::new();
            vars_read(f, &mut read);
            for &v in &read {
                match env.state.get(v as usize) {
                    None => return Err(format!("no value for state variable number {v}")),
                    Some(Value::Vector(x)) => {
                        // (Inside a sum over the index it may: ‖m‖ has no index.)
                        if a.idx.is_empty() && f.reads_here(v) {
                            return Err(format!(
                                "elementwise function {id} has no index but reads the vector state number {v}"
                            ));
                        }
                        if x.len() != d {
                            return Err(format!(
                                "state variable number {v} has {} components, expected {d}",
                                x.len()
                            ));
                        }
                    }
                    Some(Value::Scalar(_)) => {}
                }
            }
            if a.idx.len() > 1 {
                return Err(format!(
                    "elementwise function {id} has {} index slots",
                    a.idx.len()
                ));
            }
            // The function's value with vector states and fields read at component `i`.
            let at = |i: usize| fexpr_at(f, env, syms, i);
            match a.idx.first() {
                Some(&l) => Resolved::Vector((0..d).map(at).collect::<Result<_, _>>()?, l),
                None => Resolved::Scalar(at(0)?),
            }
        }
        Kind::Pair(id) => {
            expect_slots(a, 2)?;
            let p = sme
                .elem
                .pairs
                .get(id as usize)
                .ok_or_else(|| format!("no kink pair number {id}"))?;
            Resolved::Matrix(pair_matrix(sme, p, env, syms)?, a.idx[0], a.idx[1])
        }
        Kind::Noise { .. } | Kind::Kink(_) => {
            return Err(
                "a noise sample cannot be evaluated (it appears only before the expectation)"
                    .into(),
            )
        }
        Kind::Disp(_) => {
            return Err(
                "a displacement cannot be evaluated (it appears only in the generator's moments)"
                    .into(),
            )
        }
    })
}

/// Evaluates one term (without its coefficient) into `out`, scaled by `coef`.
fn add_term(
    sme: &Sme,
    term: &Term,
    free: u8,
    coef: f64,
    env: &Env,
    syms: &SymbolValues,
    out: &mut Tensor,
) -> Result<(), String> {
    let factors: Vec<Resolved> = term
        .atoms
        .iter()
        .map(|a| resolve(sme, a, env, syms))
        .collect::<Result<_, _>>()?;
    // Every label of the term: the free ones (in output order), then the bound ones.
    let mut labels: Vec<Label> = (0..free).collect();
    for a in &term.atoms {
        for &l in &a.idx {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
    }
    // The position of each label in `labels`, by label.
    let mut slot = [usize::MAX; 256];
    for (k, &l) in labels.iter().enumerate() {
        slot[l as usize] = k;
    }
    let d = env.dim;
    let mut values = vec![0usize; labels.len()];
    let mut idx_buf = Vec::new();
    let total = d.pow(labels.len() as u32);
    for _ in 0..total {
        let value_of = |l: Label| values[slot[l as usize]];
        let mut product = coef;
        for f in &factors {
            product *= match f {
                Resolved::Tensor(t, ls) => {
                    idx_buf.clear();
                    idx_buf.extend(ls.iter().map(|&l| value_of(l)));
                    t.get(&idx_buf)
                }
                Resolved::Vector(x, l) => x[value_of(*l)],
                Resolved::Scalar(x) => *x,
                Resolved::Matrix(m, i, j) => m[value_of(*i) * d + value_of(*j)],
                Resolved::Delta(i, j) => {
                    if value_of(*i) == value_of(*j) {
                        1.0
                    } else {
                        0.0
                    }
                }
            };
        }
        // Row-major position of the free labels' values (the first `free` labels).
        let pos = values[..free as usize]
            .iter()
            .fold(0, |acc, &i| acc * d + i);
        out.data[pos] += product;
        advance(&mut values, d);
    }
    Ok(())
}

/// The value of `e` at the point `env`: a tensor of shape `[d; e.free]`.
///
/// Errors name the missing or ill-shaped input (a symbol without a value, a derivative
/// of f or a noise moment that is not given or has the wrong shape, a state of the wrong
/// length) or a factor that has no value (noise samples, displacements).
pub fn eval(sme: &Sme, e: &TExpr, env: &Env) -> Result<Tensor, crate::Error> {
    eval_inner(sme, e, env).map_err(crate::Error::Other)
}

fn eval_inner(sme: &Sme, e: &TExpr, env: &Env) -> Result<Tensor, String> {
    if env.dim == 0 {
        return Err("the dimension must be at least 1".into());
    }
    let syms = SymbolValues::new(sme, env);
    let mut out = Tensor::zeros(vec![env.dim; e.free as usize]);
    for (term, c) in &e.terms {
        let coef = syms.poly(c)?;
        add_term(sme, term, e.free, coef, env, &syms, &mut out)?;
    }
    Ok(out)
}

/// The drift of every state variable (`sme.vars` order): shape `[d]` for a vector
/// state, `[]` for a scalar one.
pub fn drift(sme: &Sme, env: &Env) -> Result<Vec<Tensor>, crate::Error> {
    drift_inner(sme, env).map_err(crate::Error::Other)
}

fn drift_inner(sme: &Sme, env: &Env) -> Result<Vec<Tensor>, String> {
    sme.drift.iter().map(|b| eval_inner(sme, b, env)).collect()
}

/// A diffusion block's value with its pair of state variables `(a, c)`.
pub type Block = ((usize, usize), Tensor);

/// The diffusion blocks `D^{ac}` (`a ≤ c`, the order of `sme.diffusion`), each with its
/// pair of state variables.
pub fn diffusion(sme: &Sme, env: &Env) -> Result<Vec<Block>, crate::Error> {
    diffusion_inner(sme, env).map_err(crate::Error::Other)
}

fn diffusion_inner(sme: &Sme, env: &Env) -> Result<Vec<Block>, String> {
    sme.diffusion
        .iter()
        .map(|b| Ok(((b.rows, b.cols), eval_inner(sme, &b.expr, env)?)))
        .collect()
}

/// The time one step represents, `sme.time` at the point's symbol values.
pub fn time_per_step(sme: &Sme, env: &Env) -> Result<f64, crate::Error> {
    time_per_step_inner(sme, env).map_err(crate::Error::Other)
}

fn time_per_step_inner(sme: &Sme, env: &Env) -> Result<f64, String> {
    SymbolValues::new(sme, env).poly(&sme.time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algebra::tensor::{Atom, Kind, TExpr, Term};

    fn sgd() -> Sme {
        let src = "optimizer SGD\n  param x\n  small eta\n  noise xi ~ general\n  x = x - eta*(grad f(x) + xi)\n";
        crate::derive(src, &crate::Options::order(2)).expect("SGD derives")
    }

    fn env3() -> Env {
        let d = 3;
        let sigma = Tensor::from_fn(d, 2, |i| (1 + i[0] + i[1]) as f64 + (i[0] * i[1]) as f64);
        Env {
            dim: d,
            state: vec![Value::Vector(vec![0.5, -1.0, 2.0])],
            symbols: [("eta".to_string(), 0.1)].into_iter().collect(),
            grad_f: vec![
                Tensor::scalar(0.3),
                Tensor::vector(vec![1.0, 2.0, 3.0]),
                Tensor::from_fn(d, 2, |i| (i[0] + i[1]) as f64),
            ],
            moments: vec![vec![], vec![], vec![sigma]],
        }
    }

    /// A raw (non-canonical) one-term expression, so that every factor kind and label
    /// pattern can be exercised directly.
    fn term(free: u8, coef: i64, atoms: Vec<Atom>) -> TExpr {
        let mut e = TExpr::zero(free);
        e.terms.insert(Term { atoms }, Poly::int(coef));
        e
    }

    #[test]
    fn contractions_follow_einsum_semantics() {
        let sme = sgd();
        let env = env3();
        let (g, h, s) = (&env.grad_f[1], &env.grad_f[2], &env.moments[2][0]);
        // diag Σ: one label twice in one factor.
        let diag = term(
            1,
            1,
            vec![Atom::new(Kind::Moment { r: 2, d: 0 }, vec![0, 0])],
        );
        let v = eval(&sme, &diag, &env).unwrap();
        assert_eq!(v.shape, vec![3]);
        assert_eq!(v.data, (0..3).map(|i| s.get(&[i, i])).collect::<Vec<_>>());
        // tr(H Σ) = H_ab Σ_ab, bound labels only.
        let tr = term(
            0,
            2,
            vec![
                Atom::new(Kind::DF(2), vec![0, 1]),
                Atom::new(Kind::Moment { r: 2, d: 0 }, vec![0, 1]),
            ],
        );
        let want: f64 = (0..3)
            .flat_map(|a| (0..3).map(move |b| (a, b)))
            .map(|(a, b)| h.get(&[a, b]) * s.get(&[a, b]))
            .sum();
        assert_eq!(eval(&sme, &tr, &env).unwrap().data, vec![2.0 * want]);
        // g_i x_i (elementwise product), δ_ij, and a trace δ_aa = d.
        let gx = term(
            1,
            1,
            vec![
                Atom::new(Kind::DF(1), vec![0]),
                Atom::new(Kind::State(0), vec![0]),
            ],
        );
        assert_eq!(eval(&sme, &gx, &env).unwrap().data, vec![0.5, -2.0, 6.0]);
        let delta = term(2, 1, vec![Atom::new(Kind::Delta, vec![0, 1])]);
        assert_eq!(
            eval(&sme, &delta, &env).unwrap().data,
            vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        );
        let trace = term(0, 1, vec![Atom::new(Kind::Delta, vec![1, 1])]);
        assert_eq!(eval(&sme, &trace, &env).unwrap().data, vec![3.0]);
        // A free label no factor carries: constant along it; Σ_ij with swapped slots.
        let bare = term(1, 5, vec![Atom::new(Kind::DF(0), vec![])]);
        assert_eq!(eval(&sme, &bare, &env).unwrap().data, vec![1.5; 3]);
        let st = term(
            2,
            1,
            vec![Atom::new(Kind::Moment { r: 2, d: 0 }, vec![1, 0])],
        );
        let v = eval(&sme, &st, &env).unwrap();
        assert_eq!(v.get(&[0, 2]), s.get(&[2, 0]));
        let _ = g;
    }

    #[test]
    fn sgd_order_2_by_hand() {
        let sme = sgd();
        let env = env3();
        let (g, h, s) = (&env.grad_f[1], &env.grad_f[2], &env.moments[2][0]);
        let eta = 0.1;
        let b = eval(&sme, &sme.drift[0], &env).unwrap();
        for i in 0..3 {
            let hg: f64 = (0..3).map(|j| h.get(&[i, j]) * g.get(&[j])).sum();
            let want = -g.get(&[i]) - 0.5 * eta * hg;
            assert!((b.data[i] - want).abs() < 1e-14, "{} vs {want}", b.data[i]);
        }
        let dd = eval(&sme, &sme.diffusion[0].expr, &env).unwrap();
        for (k, x) in dd.data.iter().enumerate() {
            assert!((x - eta * s.data[k]).abs() < 1e-14);
        }
        assert_eq!(time_per_step(&sme, &env).unwrap(), eta);
    }

    #[test]
    fn missing_inputs_are_errors() {
        let sme = sgd();
        let mut env = env3();
        env.symbols.clear();
        assert!(eval(&sme, &sme.drift[0], &env)
            .unwrap_err()
            .to_string()
            .contains("eta"));
        let mut env = env3();
        env.grad_f.truncate(2);
        assert!(eval(&sme, &sme.drift[0], &env)
            .unwrap_err()
            .to_string()
            .contains("∇^2 f"));
        let mut env = env3();
        env.moments[2][0] = Tensor::zeros(vec![2, 2]);
        assert!(eval(&sme, &sme.diffusion[0].expr, &env).is_err());
        let noise = term(
            1,
            1,
            vec![Atom::new(
                Kind::Noise {
                    sample: 0,
                    point: 0,
                },
                vec![0],
            )],
        );
        assert!(eval(&sme, &noise, &env3()).is_err());
        let disp = term(1, 1, vec![Atom::new(Kind::Disp(0), vec![0])]);
        assert!(eval(&sme, &disp, &env3()).is_err());
        let env = Env { dim: 0, ..env3() };
        assert!(eval(&sme, &sme.drift[0], &env).is_err());
    }
}
