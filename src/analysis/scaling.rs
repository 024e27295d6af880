//! Scaling rules: how the hyperparameters must change with the batch size so that the
//! SME (and so the optimizer's dynamics, to first order) stay the same.
//!
//! A batch κ times larger divides the gradient-noise covariance by κ: either the
//! covariance Σ itself ([`NoiseScale::Covariance`]) or, in files written in a noise-scale
//! parametrisation such as Malladi et al.'s `g = grad f(x) + sigma*z`, a named scale that
//! goes as κ^{-1/2} ([`NoiseScale::Named`]). Every hyperparameter `h` is scaled as
//! `κ^{a_h} h`; invariance of each term of the first-order SME's drift and diffusion (in
//! the same time `t` and the same state variables) is a linear equation in the exponents,
//! and the equations inside elementwise functions (`ε0 + σ0 √u` must scale as one) are
//! added. Solving the system exactly gives the rule, says which exponents it leaves free,
//! or names the term that no scaling can keep unchanged.
//!
//! SGD gives the linear scaling rule (`η → κη`); Adam and RMSprop in Malladi et al.'s
//! scaling give the square-root rule (`η → √κ η`, `1 - β → κ(1 - β)`, `ε → ε/√κ`).

use crate::algebra::elem::FExpr;
use crate::algebra::poly::{Poly, Sym};
use crate::algebra::tensor::{Kind, TExpr};
use crate::ir::{ExprKind, Optimizer};
use crate::sme::Sme;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};

/// What a larger batch changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoiseScale {
    /// The noise covariance Σ (and the noise moments M_r as κ^{-r/2}).
    Covariance,
    /// The named hyperparameter or scaling, the noise's standard deviation: ∝ κ^{-1/2}.
    Named(String),
}

/// A scaling rule: exponents of κ.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Each hyperparameter of the file (the small parameter first) with its exponent.
    pub hypers: Vec<(String, BigRational)>,
    /// Quantities defined by the file's scalings: (`1 - beta`, exponent), (`eps`, …).
    pub derived: Vec<(String, BigRational)>,
    /// The exponent of the number of steps that covers a fixed horizon.
    pub steps: BigRational,
    /// Hyperparameters the SME does not constrain (set to exponent 0 above).
    pub free: Vec<String>,
}

/// The outcome of the search.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Rule(Rule),
    /// No scaling keeps the SME unchanged: the equation that fails.
    Impossible(Blocker),
}

/// Why no scaling keeps the first-order SME unchanged: the first equation of the system
/// that cannot hold. [`crate::emit::scaling::render`] prints it.
#[derive(Debug, Clone, PartialEq)]
pub enum Blocker {
    /// No scaling keeps this term of the drift or diffusion (`what`) unchanged.
    Term { what: String, term: TExpr },
    /// Any other equation, said in words.
    Other(String),
}

/// A linear form in the exponents of the symbols: coefficients per symbol and a constant.
#[derive(Debug, Clone, PartialEq)]
struct Form {
    coef: Vec<BigRational>,
    constant: BigRational,
}

impl Form {
    fn zero(n: usize) -> Form {
        Form {
            coef: vec![BigRational::zero(); n],
            constant: BigRational::zero(),
        }
    }

    fn add(&self, o: &Form) -> Form {
        Form {
            coef: self.coef.iter().zip(&o.coef).map(|(a, b)| a + b).collect(),
            constant: &self.constant + &o.constant,
        }
    }

    fn scale(&self, q: &BigRational) -> Form {
        Form {
            coef: self.coef.iter().map(|a| a * q).collect(),
            constant: &self.constant * q,
        }
    }

    fn sub(&self, o: &Form) -> Form {
        self.add(&o.scale(&-BigRational::one()))
    }
}

struct System {
    n: usize,
    rows: Vec<(Form, Blocker)>,
}

impl System {
    fn monomial(&self, mono: &[(Sym, i32)], skip: Sym) -> Form {
        let mut f = Form::zero(self.n);
        for (s, e) in mono {
            if *s != skip {
                f.coef[*s as usize] += BigRational::from_integer((*e).into());
            }
        }
        f
    }

    /// The exponent of a function of the state; homogeneity constraints are added.
    fn function(&mut self, f: &FExpr, dim: Sym, what: &str, batch: &NoiseScale) -> Form {
        match f {
            FExpr::Const(c) => {
                let forms: Vec<Form> = c.terms().map(|(m, _)| self.monomial(m, dim)).collect();
                for g in forms.iter().skip(1) {
                    self.rows.push((
                        g.sub(&forms[0]),
                        Blocker::Other(format!(
                            "no scaling keeps the terms of a constant in {what} in proportion"
                        )),
                    ));
                }
                forms
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Form::zero(self.n))
            }
            FExpr::Var(_) => Form::zero(self.n),
            FExpr::Sum(items) => {
                let forms: Vec<Form> = items
                    .iter()
                    .map(|i| self.function(i, dim, what, batch))
                    .collect();
                for g in forms.iter().skip(1) {
                    self.rows.push((
                        g.sub(&forms[0]),
                        Blocker::Other(format!("no scaling keeps the summands of an elementwise function in {what} in proportion")),
                    ));
                }
                forms
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Form::zero(self.n))
            }
            FExpr::Prod(items) => {
                let mut total = Form::zero(self.n);
                for i in items {
                    total = total.add(&self.function(i, dim, what, batch));
                }
                total
            }
            FExpr::Pow(b, q) => self.function(b, dim, what, batch).scale(q),
            // A sum over the index scales as its terms (d is not a hyperparameter).
            FExpr::Abs(a) | FExpr::Contract(a) => self.function(a, dim, what, batch),
            // sign(c a) = sign(a) for c > 0: no exponent, no constraint.
            FExpr::Sign(_) => Form::zero(self.n),
            FExpr::Field(crate::algebra::elem::Field::Grad) => Form::zero(self.n),
            // Σ_ii scales as the covariance does.
            FExpr::Field(crate::algebra::elem::Field::NoiseVar) => {
                let mut f = Form::zero(self.n);
                if *batch == NoiseScale::Covariance {
                    f.constant -= BigRational::one();
                }
                f
            }
            FExpr::Exp(a) | FExpr::Log(a) | FExpr::Ncdf(a) | FExpr::Npdf(a) => {
                let g = self.function(a, dim, what, batch);
                self.rows.push((
                    g,
                    Blocker::Other(format!(
                        "no scaling keeps the argument of an exp, log, Φ or φ in {what} unchanged"
                    )),
                ));
                Form::zero(self.n)
            }
        }
    }

    /// One equation per monomial of every term: its exponent must vanish.
    fn texpr(&mut self, e: &TExpr, sme: &Sme, batch: &NoiseScale, what: &str) {
        for (t, c) in &e.terms {
            let mut base = Form::zero(self.n);
            for a in &t.atoms {
                match a.kind {
                    Kind::Moment { r, .. } if *batch == NoiseScale::Covariance => {
                        base.constant -= BigRational::new(r.into(), 2.into());
                    }
                    Kind::Elem(id) => {
                        let g = self.function(sme.elem.get(id), sme.dim, what, batch);
                        base = base.add(&g);
                    }
                    // A bivariate normal mean of kinks reads the means over the noise's
                    // scale, which the batch changes: no exponent keeps it.
                    Kind::Pair(_) if *batch == NoiseScale::Covariance => {
                        let mut g = Form::zero(self.n);
                        g.constant = BigRational::one();
                        self.rows.push((
                            g,
                            Blocker::Other(format!(
                                "no scaling keeps the bivariate normal mean of kinks in {what} unchanged"
                            )),
                        ));
                    }
                    _ => {}
                }
            }
            for (m, _) in c.terms() {
                let row = base.add(&self.monomial(m, sme.dim));
                self.rows.push((
                    row,
                    Blocker::Term {
                        what: what.to_string(),
                        term: one_term(t, e.free, c),
                    },
                ));
            }
        }
    }
}

fn one_term(t: &crate::algebra::tensor::Term, free: u8, c: &Poly) -> TExpr {
    let mut one = TExpr::zero(free);
    one.add_term(t.clone(), c);
    one
}

/// Solves for the exponents that keep the first-order SME of `opt` unchanged.
pub fn rule(opt: &Optimizer, sme: &Sme, batch: &NoiseScale) -> Result<Outcome, crate::Error> {
    // In the result's own table of elementwise functions.
    crate::algebra::elem::scoped(sme.elem.clone(), || rule_inner(opt, sme, batch))
        .0
        .map_err(crate::Error::Other)
}

fn rule_inner(opt: &Optimizer, sme: &Sme, batch: &NoiseScale) -> Result<Outcome, String> {
    let n = (0..)
        .map_while(|i| sme.symbols.try_name(i).map(str::to_string))
        .count();
    let mut sys = System {
        n,
        rows: Vec::new(),
    };
    // The leading order of the drift and of the diffusion is what a scaling rule keeps
    // (corrections of higher order in the small parameter change with it anyway).
    let lowest = |es: &mut dyn Iterator<Item = &TExpr>| {
        es.flat_map(|e| e.terms.values().filter_map(|c| c.min_power(sme.small)))
            .min()
            .unwrap_or(0)
    };
    let p_drift = lowest(&mut sme.drift.iter());
    let p_diff = lowest(&mut sme.diffusion.iter().map(|d| &d.expr));
    let at = |e: &TExpr, p: i32| e.map_coef(|c| c.coeff(sme.small, p).shift(sme.small, p));
    for (i, b) in sme.drift.iter().enumerate() {
        let what = format!("the drift of {}", sme.vars[i].name);
        sys.texpr(&at(b, p_drift), sme, batch, &what);
    }
    for d in &sme.diffusion {
        let what = format!(
            "the diffusion {}{}",
            sme.vars[d.rows].name, sme.vars[d.cols].name
        );
        sys.texpr(&at(&d.expr, p_diff), sme, batch, &what);
    }
    // The named noise scale goes as κ^{-1/2}.
    if let NoiseScale::Named(name) = batch {
        let form = named_form(opt, sme, name, n)?;
        let mut row = form;
        row.constant += BigRational::new(1.into(), 2.into());
        sys.rows.push((
            row,
            Blocker::Other(format!(
                "`{name}` cannot go as κ^(-1/2) while the first-order SME stays unchanged"
            )),
        ));
    }
    let solved = solve(&sys.rows, n);
    let (exps, free) = match solved {
        Ok(x) => x,
        Err(why) => return Ok(Outcome::Impossible(why)),
    };
    let name = |s: usize| sme.symbols.name(s as Sym).to_string();
    let mut hypers = vec![(name(sme.small as usize), exps[sme.small as usize].clone())];
    for h in &opt.hypers {
        if let Some(s) = sme.symbols.get(&h.name) {
            hypers.push((h.name.clone(), exps[s as usize].clone()));
        }
    }
    let mut derived = Vec::new();
    for sc in &opt.scalings {
        if let Some((label, e)) = scaling_exponent(sme, &sc.name, &sc.expr, &exps) {
            derived.push((label, e));
        }
    }
    let steps = -(BigRational::from_integer(sme.time_power.into()) * &exps[sme.small as usize]);
    let free = free
        .into_iter()
        .filter(|s| *s != sme.dim as usize)
        .filter(|s| hypers.iter().any(|(h, _)| *h == name(*s)))
        .map(name)
        .collect();
    Ok(Outcome::Rule(Rule {
        hypers,
        derived,
        steps,
        free,
    }))
}

/// The exponent form of a named hyperparameter or scaling.
fn named_form(opt: &Optimizer, sme: &Sme, name: &str, n: usize) -> Result<Form, String> {
    if let Some(s) = sme.symbols.get(name) {
        let mut f = Form::zero(n);
        f.coef[s as usize] = BigRational::one();
        return Ok(f);
    }
    let sc = opt
        .scalings
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            format!("`{name}` is not a hyperparameter or a scaling of this optimizer")
        })?;
    let p = constant_poly(sme, &sc.expr)
        .ok_or_else(|| format!("`{name}` is not a power product of the hyperparameters"))?;
    if p.len() != 1 {
        return Err(format!(
            "`{name}` is not a single power product of the hyperparameters"
        ));
    }
    let (m, _) = p.terms().next().expect("one term");
    let mut f = Form::zero(n);
    for (s, e) in m {
        f.coef[*s as usize] += BigRational::from_integer((*e).into());
    }
    Ok(f)
}

/// A constant IR expression as a Laurent polynomial over the result's symbols.
fn constant_poly(sme: &Sme, e: &crate::ir::Expr) -> Option<Poly> {
    use crate::ir::BinOp;
    Some(match &e.kind {
        ExprKind::Num(n) => Poly::constant(n.clone()),
        ExprKind::Small => Poly::power(sme.small, 1),
        ExprKind::Hyper(h) => Poly::power(sme.symbols.get(h)?, 1),
        ExprKind::Neg(a) => constant_poly(sme, a)?.neg(),
        ExprKind::Bin(op, a, b) => {
            let (x, y) = (constant_poly(sme, a)?, constant_poly(sme, b)?);
            match op {
                BinOp::Add => x.add(&y),
                BinOp::Sub => x.sub(&y),
                BinOp::Mul => x.mul(&y),
                BinOp::Div => x.mul(&y.inverse()?),
                BinOp::Pow => {
                    let k: i64 = match &b.kind {
                        ExprKind::Num(n) if n.is_integer() => n.to_integer().try_into().ok()?,
                        _ => return None,
                    };
                    if k < 0 {
                        let inv = x.inverse()?;
                        (0..-k).fold(Poly::one(), |acc, _| acc.mul(&inv))
                    } else {
                        (0..k).fold(Poly::one(), |acc, _| acc.mul(&x))
                    }
                }
                BinOp::MatMul => return None,
            }
        }
        _ => return None,
    })
}

/// `beta = 1 - c*eta^2` reports `1 - beta`; a monomial scaling reports itself.
fn scaling_exponent(
    sme: &Sme,
    name: &str,
    e: &crate::ir::Expr,
    exps: &[BigRational],
) -> Option<(String, BigRational)> {
    let p = constant_poly(sme, e)?;
    let exponent = |m: &[(Sym, i32)]| {
        m.iter()
            .map(|(s, k)| &exps[*s as usize] * BigRational::from_integer((*k).into()))
            .fold(BigRational::zero(), |a, b| a + b)
    };
    if p.len() == 1 {
        let (m, _) = p.terms().next()?;
        return Some((name.to_string(), exponent(m)));
    }
    // 1 - (monomial)
    let rest = Poly::one().sub(&p);
    if rest.len() == 1 {
        let (m, _) = rest.terms().next()?;
        return Some((format!("1 - {name}"), exponent(m)));
    }
    None
}

/// Gaussian elimination over the rationals: the exponents (free ones 0) and the free
/// variables, or the first equation that cannot hold.
fn solve(rows: &[(Form, Blocker)], n: usize) -> Result<(Vec<BigRational>, Vec<usize>), Blocker> {
    let a: Vec<Vec<BigRational>> = rows.iter().map(|(f, _)| f.coef.clone()).collect();
    let b: Vec<BigRational> = rows.iter().map(|(f, _)| -f.constant.clone()).collect();
    let solution = crate::algebra::linear::eliminate(a, b, n);
    if let Some(i) = solution.inconsistent() {
        return Err(rows[i].1.clone());
    }
    let mut x = vec![BigRational::zero(); n];
    for &(row, col) in &solution.pivots {
        x[col] = solution.rhs[row].clone();
    }
    Ok((x, solution.free(n)))
}

/// `κ^{1/2}`, `κ`, `κ^{-1/2}`, or "unchanged".
pub fn power_text(q: &BigRational) -> String {
    if q.is_zero() {
        "unchanged".to_string()
    } else if q.is_one() {
        "× κ".to_string()
    } else if q.is_integer() {
        format!("× κ^{}", q.to_integer())
    } else {
        let sign = if q.is_negative() { "-" } else { "" };
        format!("× κ^({sign}{})", q.abs())
    }
}
