//! The discrete side: one step of the rule as a series in the small parameter, with
//! the noise still random, then its expectation with the declared noise moments.

use super::ctx::{Ctx, Failure};
use super::kink;
use crate::algebra::elem::FExpr;
use crate::algebra::poly::Poly;
use crate::algebra::tensor::{
    derivative, product, relabel, Atom, Keep, Kind, Label, Part, Slots, TExpr, Vars,
};
use crate::error::diagnostic::{Code, Diagnostic};
use crate::ir::{BinOp, Expr, ExprKind, Func, Optimizer, Shape, Target, Version};
use crate::span::Span;
use crate::syntax::NoiseKind;
use num_rational::BigRational;
use num_traits::{One, ToPrimitive, Zero};
use std::collections::HashMap;

/// "Valuation" of a zero: larger than any order asked for.
const NEVER: i32 = 1 << 20;

pub(super) struct Expander<'a> {
    pub opt: &'a Optimizer,
    pub ctx: &'a mut Ctx,
    /// Cached expansions of step values and new states: (through power, value).
    cache: HashMap<(bool, String), (i32, TExpr)>,
    /// The span of the statement being expanded, for diagnostics.
    span: Span,
}

/// A numeric exponent as lowering writes it (`3`, `1/2`, `-1/2`).
fn fraction(e: &Expr) -> Option<BigRational> {
    match &e.kind {
        ExprKind::Num(n) => Some(n.clone()),
        ExprKind::Neg(a) => fraction(a).map(|x| -x),
        ExprKind::Bin(BinOp::Div, a, b) => {
            let d = fraction(b)?;
            (!d.is_zero()).then(|| fraction(a).map(|n| n / d))?
        }
        _ => None,
    }
}

fn free_of(shape: Shape) -> u8 {
    match shape {
        Shape::Scalar => 0,
        Shape::Vector => 1,
        Shape::Matrix => 2,
    }
}

impl<'a> Expander<'a> {
    pub fn new(opt: &'a Optimizer, ctx: &'a mut Ctx) -> Expander<'a> {
        Expander {
            opt,
            ctx,
            cache: HashMap::new(),
            span: opt.header,
        }
    }

    fn unsupported(&self, what: impl Into<String>, hint: impl Into<String>) -> Failure {
        Failure::Diagnostic(Box::new(
            Diagnostic::new(Code::Unsupported, self.span, what)
                .label("in this statement")
                .hint(hint),
        ))
    }

    fn keep(&self, upto: i32) -> Keep {
        Keep::Upto {
            sym: self.ctx.eps,
            max: upto,
        }
    }

    fn step_of(&self, local: bool, name: &str) -> Option<&'a crate::ir::Step> {
        self.opt.steps.iter().find(|s| match (&s.target, local) {
            (Target::Local(n), true) | (Target::Var(n), false) => n == name,
            _ => false,
        })
    }

    /// The value `z'` a step gives state variable `name`, through `upto`.
    pub fn new_value(&mut self, name: &str, upto: i32) -> Result<TExpr, Failure> {
        self.cached(false, name, upto)
    }

    /// The increment `z' − z` of state variable `name`, through `upto`.
    pub fn increment(&mut self, name: &str, upto: i32) -> Result<TExpr, Failure> {
        let v = self.ctx.var_id(name);
        let new = self.cached(false, name, upto)?;
        let state = self.state_atom(v);
        let span = self
            .step_of(false, name)
            .map_or(self.opt.header, |s| s.span);
        let inc = new.sub(&state);
        // The increment must vanish with the small parameter.
        if let Some(p) = inc
            .terms
            .values()
            .filter_map(|c| c.min_power(self.ctx.eps))
            .min()
        {
            if p <= 0 {
                return Err(Failure::Diagnostic(Box::new(
                    Diagnostic::new(
                        Code::NotSmall,
                        span,
                        format!(
                            "the increment of `{name}` does not vanish with `{}`: it has a term of order {}",
                            self.opt.small.name,
                            if p == 0 { "1".to_string() } else { format!("{}^{p}", self.opt.small.name) }
                        ),
                    )
                    .label("this update moves the state by O(1) per step")
                    .hint(format!(
                        "scale the hyperparameters with `{}` so that every update is small; for momentum, take h = sqrt(learning rate) as the small parameter, `let mu = 1 - lambda*h`, and the velocity divided by h (see examples/momentum.opt)",
                        self.opt.small.name
                    )),
                )));
            }
        }
        Ok(inc)
    }

    pub fn state_atom(&self, v: u8) -> TExpr {
        let scalar = self.ctx.var_scalar[v as usize];
        let (atoms, free) = if scalar {
            (vec![Atom::new(Kind::State(v), vec![])], 0)
        } else {
            (vec![Atom::new(Kind::State(v), vec![0])], 1)
        };
        TExpr::from_atoms(atoms, free, Poly::one(), self.ctx.dim)
    }

    fn cached(&mut self, local: bool, name: &str, upto: i32) -> Result<TExpr, Failure> {
        if let Some((n, e)) = self.cache.get(&(local, name.to_string())) {
            if *n >= upto {
                return Ok(e.map_coef(|p| p.truncate(self.ctx.eps, upto)));
            }
        }
        let step = self
            .step_of(local, name)
            .ok_or_else(|| Failure::Internal(format!("no statement defines `{name}`")))?;
        let saved = self.span;
        self.span = step.span;
        let value = self.expand(&step.expr, upto);
        self.span = saved;
        let value = value?;
        self.cache
            .insert((local, name.to_string()), (upto, value.clone()));
        Ok(value)
    }

    /// A lower bound on the power of the small parameter in `e`.
    pub fn lb(&mut self, e: &Expr) -> Result<i32, Failure> {
        Ok(match &e.kind {
            ExprKind::Num(n) => {
                if n.is_zero() {
                    NEVER
                } else {
                    0
                }
            }
            ExprKind::Small => 1,
            _ if !e.depends_on_step() => {
                // Through ε⁰ a constant of positive order truncates to zero ((2/3)·η is
                // 2η/3, and 1/3 is kept only through ε⁻¹): expand until a term shows.
                let mut found = NEVER;
                for upto in [0, 4, 16, 64] {
                    let p = self.constant(e, upto)?;
                    if let Some(v) = p.min_power(self.ctx.eps) {
                        found = v;
                        break;
                    }
                }
                found
            }
            ExprKind::Hyper(_) => 0,
            ExprKind::Counter => -self.ctx.time_power,
            ExprKind::Var { .. } | ExprKind::Noise { .. } => 0,
            ExprKind::Objective(_) | ExprKind::Grad(_) | ExprKind::Hess(_) => 0,
            ExprKind::Local(name) => {
                let step = self
                    .step_of(true, name)
                    .ok_or_else(|| Failure::Internal(format!("no statement defines `{name}`")))?;
                self.lb(&step.expr)?
            }
            ExprKind::Neg(a) => self.lb(a)?,
            ExprKind::Bin(op, a, b) => match op {
                BinOp::Add | BinOp::Sub => self.lb(a)?.min(self.lb(b)?),
                BinOp::Mul | BinOp::MatMul => sat_add(self.lb(a)?, self.lb(b)?),
                BinOp::Div if !b.depends_on_step() => {
                    let d = self.constant_divisor(b)?;
                    sat_add(self.lb(a)?, -d.min_power(self.ctx.eps).unwrap_or(0))
                }
                BinOp::Div => sat_add(
                    self.lb(a)?,
                    self.map_lb(&Map::Power(-BigRational::one()), b)?,
                ),
                BinOp::Pow => match self.power_kind(a, b)? {
                    PowerKind::Integer(k) if k >= 0 => {
                        self.lb(a)?.saturating_mul(k as i32).min(NEVER)
                    }
                    PowerKind::Integer(k) => {
                        self.map_lb(&Map::Power(BigRational::from_integer(k.into())), a)?
                    }
                    PowerKind::Rational(q) => self.map_lb(&Map::Power(q), a)?,
                    PowerKind::Exponential => 0,
                },
            },
            ExprKind::Call(f, args) => match f {
                Func::Dot => sat_add(self.lb(&args[0])?, self.lb(&args[1])?),
                Func::Sqrt => {
                    self.map_lb(&Map::Power(BigRational::new(1.into(), 2.into())), &args[0])?
                }
                Func::Norm => self.leading_power(&args[0])?,
                _ => 0,
            },
        })
    }

    fn integer_exponent(&self, b: &Expr) -> Result<i64, Failure> {
        match &b.kind {
            ExprKind::Num(n) if n.is_integer() => n
                .to_integer()
                .to_i64()
                .filter(|k| k.abs() <= 64)
                .ok_or_else(|| self.unsupported("exponent too large", "use a small integer exponent")),
            _ => Err(self.unsupported(
                "a power with a non-integer or non-constant exponent of a random quantity",
                "powers of states and gradients must be integers for now; fractional powers arrive with the adaptive methods",
            )),
        }
    }

    /// How `a^b` is expanded.
    fn power_kind(&mut self, a: &Expr, b: &Expr) -> Result<PowerKind, Failure> {
        match &b.kind {
            ExprKind::Num(n) if n.is_integer() => Ok(PowerKind::Integer(self.integer_exponent(b)?)),
            ExprKind::Num(n) => Ok(PowerKind::Rational(n.clone())),
            _ if !b.depends_on_step() => Err(self.unsupported(
                "a power with a symbolic exponent",
                "use a numeric exponent, or write the power with `exp` and `log`",
            )),
            _ if a.depends_on_step() => Err(self.unsupported(
                "a power whose base and exponent both change from step to step",
                "write it with `exp` and `log`",
            )),
            _ => Ok(PowerKind::Exponential),
        }
    }

    /// The lower bound of the power of ε in `φ(arg)`.
    fn map_lb(&mut self, map: &Map, arg: &Expr) -> Result<i32, Failure> {
        let v = self.leading_power(arg)?;
        Ok(match map {
            Map::Power(q) => {
                let s = q * BigRational::from_integer(v.into());
                if !s.is_integer() {
                    return Err(self.unsupported(
                        "a fractional power of a quantity whose leading order is not a matching power of the small parameter",
                        "scale the quantity so that its leading term is of order 1 (or an even power, under a square root)",
                    ));
                }
                s.to_integer().to_i32().unwrap_or(0)
            }
            Map::Exp | Map::Log | Map::Sign => 0,
            Map::Abs => v,
        })
    }

    /// The exact leading power of ε in an expression.
    fn leading_power(&mut self, arg: &Expr) -> Result<i32, Failure> {
        let lb = self.lb(arg)?;
        if lb >= NEVER {
            return Err(self.unsupported("a nonlinear map of zero", "check the rule"));
        }
        for extra in 0..=8 {
            let a = self.expand(arg, lb + extra)?;
            if let Some(p) = a
                .terms
                .values()
                .filter_map(|c| c.min_power(self.ctx.eps))
                .min()
            {
                return Ok(p);
            }
        }
        Err(self.unsupported(
            "a nonlinear map of a quantity whose leading terms cancel",
            "simplify the argument",
        ))
    }

    /// `φ(arg)` as a series: the argument is split as `ε^v (X₀ + R)` with `X₀` an
    /// elementwise function of the state, and `φ` Taylor-expanded around `X₀`.
    fn apply_map(&mut self, map: Map, arg: &Expr, upto: i32) -> Result<TExpr, Failure> {
        let v = self.leading_power(arg)?;
        let shift = self.map_lb(&map, arg)?;
        let free = free_of(arg.shape);
        let need = upto - shift;
        if need < 0 {
            return Ok(TExpr::zero(free));
        }
        let a = self.expand(arg, v + need)?;
        self.map_series(map, &a, v, shift, need, free)
    }

    /// The series of `φ(a)` for an expanded argument `a` of leading power `v`.
    fn map_series(
        &mut self,
        map: Map,
        a: &TExpr,
        v: i32,
        shift: i32,
        need: i32,
        free: u8,
    ) -> Result<TExpr, Failure> {
        let eps = self.ctx.eps;
        let dim = self.ctx.dim;
        let x = a.map_coef(|c| c.shift(eps, -v));
        let x0 = x.map_coef(|c| c.coeff(eps, 0));
        let r = x.sub(&x0).map_coef(|c| c.truncate(eps, need));
        let f0 = self.elementwise_function(&x0, free)?;
        self.check_domain(&map, &f0);
        // A root or logarithm of a quantity that is negative at leading order is not real.
        let at0 = crate::algebra::elem::fingerprint(&map_derivative(&map, &f0, 0));
        if at0[..crate::algebra::elem::POSITIVE]
            .iter()
            .any(|x| x.is_nan())
        {
            return Err(self.unsupported(
                "a square root, fractional power or logarithm of a quantity that is negative at leading order",
                "check the signs in the rule (a bias correction 1 - beta^(k+1), a second-moment estimate)",
            ));
        }
        let labels: Vec<Label> = (0..free).collect();
        let keep = self.keep(need);
        let mut total = TExpr::zero(free);
        let mut rk = self.broadcast(TExpr::scalar(Poly::one()), free);
        let mut factorial = BigRational::one();
        for k in 0..=need.max(0) {
            if k > 0 {
                factorial *= BigRational::from_integer(k.into());
                rk = product(
                    &[
                        Part {
                            expr: &rk,
                            labels: labels.clone(),
                        },
                        Part {
                            expr: &r,
                            labels: labels.clone(),
                        },
                    ],
                    free,
                    &keep,
                    dim,
                );
                if rk.is_zero() {
                    break;
                }
            }
            let dk = map_derivative(&map, &f0, k as u32).scale(&Poly::constant(factorial.recip()));
            let coef = self.elementwise_texpr(dk, free);
            total.add_assign(&product(
                &[
                    Part {
                        expr: &coef,
                        labels: labels.clone(),
                    },
                    Part {
                        expr: &rk,
                        labels: labels.clone(),
                    },
                ],
                free,
                &keep,
                dim,
            ));
        }
        Ok(total.map_coef(|c| c.shift(eps, shift)))
    }

    /// Notes an expansion around a function that vanishes as a state component tends to
    /// zero (`1/√v` with no `eps`): it only holds where that component stays away from 0.
    fn check_domain(&mut self, map: &Map, f0: &FExpr) {
        let singular = match map {
            Map::Power(q) => !q.is_integer() || *q < BigRational::zero(),
            Map::Log => true,
            Map::Exp | Map::Abs | Map::Sign => false,
        };
        if !singular {
            return;
        }
        for v in 0..self.ctx.var_names.len() as u8 {
            if !f0.reads(v) {
                continue;
            }
            let near = |x: f64| f0.eval(&|w| if w == v { x } else { 1.0 }, &|_| 1.0).abs();
            let (small, one) = (near(1e-12), near(1.0));
            if small < 1e-5 * one.max(1e-300) || !small.is_finite() {
                let name = self.ctx.var_names[v as usize].clone();
                // Read only through a sum over the index (a norm): `norm`'s own note
                // says where the expansion holds.
                if !f0.reads_here(v)
                    && self
                        .ctx
                        .notes
                        .iter()
                        .any(|n| n.contains("is expanded away from 0"))
                {
                    continue;
                }
                let note = if !f0.reads_here(v) {
                    format!(
                        "the expansion takes a root of, or divides by, a sum over the components of `{name}` that vanishes as `{name}` → 0: it holds where `{name}` stays away from 0"
                    )
                } else if Some(v) == self.ctx.clock {
                    format!(
                        "the coefficients are singular as the clock `{name}` → 0 (as bias corrections 1 − β^k are): the equation holds from a time `{name}` > 0 on (start the SDE after the first steps)"
                    )
                } else {
                    format!(
                    "the expansion takes a root of, or divides by, a quantity that vanishes as `{name}` → 0: it holds where `{name}` stays away from 0 (a second-moment estimate can be kept there, as Callisti et al. do with v ≥ τ)"
                )
                };
                if !self.ctx.notes.contains(&note) {
                    self.ctx.notes.push(note);
                }
            }
        }
    }

    /// `‖arg‖ = √(arg·arg)`, expanded around the norm of the argument's leading part
    /// when that part is a function of the state (the noise inside is small): the SME
    /// holds where it stays away from 0. Noise of order one inside a norm is refused:
    /// the Gaussian mean of `g/‖g‖` has no closed form in d > 1.
    fn norm(&mut self, arg: &Expr, upto: i32) -> Result<TExpr, Failure> {
        let eps = self.ctx.eps;
        let v = self.leading_power(arg)?;
        let x0 = self
            .expand(arg, v)?
            .map_coef(|c| c.shift(eps, -v))
            .map_coef(|c| c.coeff(eps, 0));
        let shown = crate::ir::Printer::new(self.opt).expr(arg);
        if x0.terms.keys().any(random) {
            return Err(self.unsupported(
                format!("`norm({shown})` with noise of order one inside"),
                "the Gaussian mean of g/‖g‖ has no closed form in d > 1, and smelt does not yet evaluate it numerically; make the noise inside the norm small (a momentum, or a batch that grows as the step shrinks, as in examples/normalized_sgd.opt), or in d = 1 write sign(g) for g/norm(g)",
            ));
        }
        let note = format!(
            "`norm({shown})` is expanded away from 0: the SME holds where the leading part of `{shown}` stays away from 0 (the noise inside it is small)"
        );
        if !self.ctx.notes.contains(&note) {
            self.ctx.notes.push(note);
        }
        let square = Expr::new(
            ExprKind::Call(Func::Dot, vec![arg.clone(), arg.clone()]),
            crate::ir::Shape::Scalar,
        );
        self.apply_map(
            Map::Power(BigRational::new(1.into(), 2.into())),
            &square,
            upto,
        )
    }

    /// `sign(arg)` (`abs` false) or `|arg|`. The argument is split as `ε^v (X₀ + R)`: when
    /// `X₀` is a function of the state (and of ∇f, diag Σ), the map is expanded around it,
    /// away from its kink; when `X₀` holds Gaussian noise of order one, `A + C ξ`, the
    /// kink stays a random factor ([`Kind::Kink`]) that the expectation averages exactly.
    fn kink(&mut self, abs: bool, arg: &Expr, upto: i32) -> Result<TExpr, Failure> {
        let eps = self.ctx.eps;
        let free = free_of(arg.shape);
        let v = self.leading_power(arg)?;
        let shift = if abs { v } else { 0 };
        let need = upto - shift;
        if need < 0 {
            return Ok(TExpr::zero(free));
        }
        let a = self.expand(arg, v + need)?;
        let x = a.map_coef(|c| c.shift(eps, -v));
        let x0 = x.map_coef(|c| c.coeff(eps, 0));
        let what = if abs { "abs" } else { "sign" };
        if !x0.terms.keys().any(random) {
            let shown = crate::ir::Printer::new(self.opt).expr(arg);
            let note = format!(
                "`{what}({shown})` is expanded away from its kink: the SME holds where the leading part of `{shown}` stays away from 0 (the noise inside it is small)"
            );
            if !self.ctx.notes.contains(&note) {
                self.ctx.notes.push(note);
            }
            let map = if abs { Map::Abs } else { Map::Sign };
            return self.map_series(map, &a, v, shift, need, free);
        }
        // Gaussian noise of order one inside the kink.
        let refuse = |me: &Self, why: &str, hint: &str| {
            me.unsupported(format!("`{what}` of {why}"), hint.to_string())
        };
        if free != 1 {
            return Err(refuse(
                self,
                "a scalar with noise of order one in it",
                "apply the map to a vector with the noise added componentwise, as in `sign(grad f(x) + xi)`",
            ));
        }
        let rest = x.sub(&x0).map_coef(|c| c.truncate(eps, need));
        if rest.terms.keys().any(random) || (!rest.is_zero() && need > 0) {
            return Err(refuse(
                self,
                "an argument with noise of order one and corrections in the small parameter",
                "smelt averages a kink of `A + c*xi` exactly when the argument has no further terms in the small parameter; move the correction outside the map",
            ));
        }
        let mut mean = TExpr::zero(1);
        let mut coef = TExpr::zero(1);
        let mut sample: Option<u8> = None;
        for (t, c) in &x0.terms {
            let noises: Vec<&Atom> = t
                .atoms
                .iter()
                .filter(|a| matches!(a.kind, Kind::Noise { .. } | Kind::Kink(_)))
                .collect();
            match noises[..] {
                [] => mean.add_term(t.clone(), c),
                [n] => {
                    let Kind::Noise { sample: s, point } = n.kind else {
                        return Err(refuse(self, "a kink", "a kink inside another kink is not averaged; write the map of one noisy argument"));
                    };
                    if n.idx[..] != [0] {
                        return Err(refuse(
                            self,
                            "noise mixed across components (a matrix times the noise)",
                            "the noise must enter the argument componentwise: `A + c*xi` with A and c elementwise",
                        ));
                    }
                    if point != 0 {
                        return Err(refuse(
                            self,
                            "noise evaluated away from the parameter",
                            "inside a kink the noise must be evaluated at the parameter",
                        ));
                    }
                    if sample.is_some_and(|x| x != s) {
                        return Err(refuse(
                            self,
                            "two noise samples",
                            "a kink averages one Gaussian sample; add the samples outside the map",
                        ));
                    }
                    if self.ctx.sample_kind[s as usize] != crate::syntax::NoiseKind::Gaussian {
                        return Err(Failure::Diagnostic(Box::new(
                            Diagnostic::new(
                                Code::Unsupported,
                                self.span,
                                format!("`{what}` of general noise of order one"),
                            )
                            .label("in this statement")
                            .hint(format!(
                                "the average of a kink over noise of order one depends on the whole law, not on its moments; declare the sample Gaussian, `noise {} ~ gaussian`",
                                self.ctx.sample_names[s as usize]
                            )),
                        )));
                    }
                    sample = Some(s);
                    let atoms: Vec<Atom> = t
                        .atoms
                        .iter()
                        .filter(|a| !std::ptr::eq(*a, n))
                        .cloned()
                        .collect();
                    coef.add_raw(atoms, c.clone(), self.ctx.dim);
                }
                _ => {
                    return Err(refuse(
                        self,
                        "a product of noise components",
                        "the noise must enter the argument linearly: `A + c*xi`",
                    ))
                }
            }
        }
        let sample =
            sample.ok_or_else(|| Failure::Internal("a noisy argument without noise".into()))?;
        let def = kink::KinkDef {
            side: crate::algebra::elem::Side {
                abs,
                mean: self.elementwise_function(&mean, 1)?,
                coef: self.elementwise_function(&coef, 1)?,
            },
            sample,
        };
        let id = match self.ctx.kinks.iter().position(|k| *k == def) {
            Some(i) => i,
            None => {
                self.ctx.kinks.push(def);
                self.ctx.kinks.len() - 1
            }
        };
        let id = u16::try_from(id).map_err(|_| Failure::Internal("too many kinks".into()))?;
        let atom = TExpr::from_atoms(
            vec![Atom::new(Kind::Kink(id), vec![0])],
            1,
            Poly::power(eps, shift),
            self.ctx.dim,
        );
        Ok(atom.map_coef(|c| c.truncate(eps, upto)))
    }

    /// The elementwise function of the state that a leading-order part is.
    fn elementwise_function(&self, x0: &TExpr, free: u8) -> Result<FExpr, Failure> {
        let refuse = || {
            self.unsupported(
                "a nonlinear map (square root, division, exp, log, fractional power, norm) of a quantity whose leading part is not a function of the state read componentwise",
                "smelt expands such maps around a function of the optimizer's state, the gradient and diag Σ read at one index, or a sum of such over the index (a squared norm); the noise must enter the argument at a higher order (as in the examples' adaptive methods)",
            )
        };
        let mut parts = Vec::new();
        for (t, c) in &x0.terms {
            // Factors at the function's own index (or scalars), and one group per index
            // summed over: ‖m‖² m_i is Σ_k m_k² times m_i.
            let mut local: Vec<&Atom> = Vec::new();
            let mut summed: Vec<(Label, Vec<&Atom>)> = Vec::new();
            for a in &t.atoms {
                match a.idx.first() {
                    Some(&k) if k >= free => {
                        if a.idx.iter().any(|l| *l != k) {
                            return Err(refuse());
                        }
                        match summed.iter_mut().find(|(l, _)| *l == k) {
                            Some((_, g)) => g.push(a),
                            None => summed.push((k, vec![a])),
                        }
                    }
                    _ => local.push(a),
                }
            }
            let mut factors = vec![FExpr::Const(c.clone())];
            factors.push(self.factors_at(&local, 0, free).ok_or_else(refuse)?);
            for (k, group) in &summed {
                let inner = self.factors_at(group, *k, 1).ok_or_else(refuse)?;
                // Sums over the index are not nested (the chain rule relies on it).
                if !inner.contractions().is_empty() {
                    return Err(refuse());
                }
                factors.push(FExpr::Contract(Box::new(inner)));
            }
            parts.push(FExpr::Prod(factors));
        }
        Ok(FExpr::Sum(parts).simplify())
    }

    /// The product of factors read at index `h` (vectors, when `slots` is 1) or
    /// scalars, as an elementwise function; `None` for a factor that is neither.
    fn factors_at(&self, atoms: &[&Atom], h: Label, slots: u8) -> Option<FExpr> {
        use crate::algebra::elem::Field;
        let mut factors = Vec::new();
        for a in atoms {
            let here = a.idx.iter().all(|l| *l == h) && a.idx.len() as u8 <= slots;
            let one = slots == 1 && a.idx[..] == [h];
            match a.kind {
                Kind::State(v) if here => factors.push(FExpr::Var(v)),
                Kind::Elem(id) if here => factors.push(crate::algebra::elem::get(id)),
                Kind::One if here => {}
                // ∂_i f and Σ_ii at the index are fields an elementwise function reads.
                Kind::DF(1) if one => factors.push(FExpr::Field(Field::Grad)),
                Kind::Moment { r: 2, d: 0 } if slots == 1 && a.idx[..] == [h, h] => {
                    factors.push(FExpr::Field(Field::NoiseVar))
                }
                _ => return None,
            }
        }
        Some(FExpr::Prod(factors))
    }

    /// An elementwise function as a tensor expression (a constant, a state, an atom).
    fn elementwise_texpr(&self, f: FExpr, free: u8) -> TExpr {
        let dim = self.ctx.dim;
        let idx: Vec<Label> = (0..free).collect();
        match f.simplify() {
            FExpr::Const(c) => self.broadcast(TExpr::scalar(c), free),
            FExpr::Var(v) if self.ctx.var_scalar[v as usize] == (free == 0) => {
                TExpr::from_atoms(vec![Atom::new(Kind::State(v), idx)], free, Poly::one(), dim)
            }
            other => {
                let id = crate::algebra::elem::intern(other);
                TExpr::from_atoms(vec![Atom::new(Kind::Elem(id), idx)], free, Poly::one(), dim)
            }
        }
    }

    fn constant_divisor(&mut self, b: &Expr) -> Result<Poly, Failure> {
        if b.depends_on_step() {
            return Err(self.unsupported(
                "division by a quantity that changes from step to step",
                "divisions by states or gradients (adaptive methods) are not supported yet; divide by constants of the hyperparameters",
            ));
        }
        self.constant(b, 0)
    }

    /// A constant subexpression as a Laurent polynomial, expanded through `upto`.
    pub fn constant(&mut self, e: &Expr, upto: i32) -> Result<Poly, Failure> {
        let eps = self.ctx.eps;
        Ok(match &e.kind {
            ExprKind::Num(n) => Poly::constant(n.clone()),
            ExprKind::Small => Poly::power(eps, 1),
            ExprKind::Hyper(h) => Poly::power(self.ctx.syms.intern(h), 1),
            ExprKind::Neg(a) => self.constant(a, upto)?.neg(),
            ExprKind::Bin(BinOp::Add, a, b) => {
                self.constant(a, upto)?.add(&self.constant(b, upto)?)
            }
            ExprKind::Bin(BinOp::Sub, a, b) => {
                self.constant(a, upto)?.sub(&self.constant(b, upto)?)
            }
            ExprKind::Bin(BinOp::Mul, a, b) => {
                let (pa, pb) = (self.constant(a, upto)?, self.constant(b, upto)?);
                pa.mul(&pb)
            }
            ExprKind::Bin(BinOp::Div, a, b) => {
                let pa = self.constant(a, upto)?;
                let pb = self.constant(b, upto)?;
                let va = pa.min_power(eps).unwrap_or(0);
                pa.mul(
                    &self.inverse_series(
                        &pb,
                        upto - va + 2 * pb.min_power(eps).unwrap_or(0).abs(),
                    )?,
                )
            }
            ExprKind::Bin(BinOp::Pow, a, b)
                if e.mentions_small() && fraction(b).is_some_and(|q| !q.is_integer()) =>
            {
                let q = fraction(b).unwrap_or_else(BigRational::one);
                self.constant_root(a, &q, upto)?
            }
            ExprKind::Call(Func::Sqrt, args) if e.mentions_small() => {
                self.constant_root(&args[0], &BigRational::new(1.into(), 2.into()), upto)?
            }
            ExprKind::Bin(BinOp::Pow, a, b) => {
                let k = self.integer_exponent(b)?;
                let pa = self.constant(a, upto)?;
                let base = if k < 0 {
                    self.inverse_series(&pa, upto)?
                } else {
                    pa
                };
                let mut out = Poly::one();
                for _ in 0..k.abs() {
                    out = out.mul(&base);
                }
                out
            }
            _ => {
                // sqrt(c), exp(c), …: an opaque symbol, if it does not involve the small parameter.
                if e.mentions_small() {
                    return Err(self.unsupported(
                        "a transcendental function of the small parameter",
                        "write such constants as polynomials in the small parameter, or declare them as hyperparameters",
                    ));
                }
                let name = crate::ir::Printer::new(self.opt).expr(e);
                Poly::power(self.ctx.syms.intern(&name), 1)
            }
        })
    }

    /// `a^q` for a constant `a = ε^v c₀ (1 + r)` that tends, divided by its leading
    /// power, to a positive number `c₀`: `ε^{qv} c₀^q Σ_k binom(q, k) r^k`, through
    /// `upto`. An irrational `c₀^q` (`sqrt(2)`) becomes an opaque symbol.
    fn constant_root(&mut self, a: &Expr, q: &BigRational, upto: i32) -> Result<Poly, Failure> {
        let eps = self.ctx.eps;
        let what = if *q == BigRational::new(1.into(), 2.into()) {
            "the square root"
        } else {
            "a fractional power"
        };
        let mut p = self.constant(a, upto)?;
        let Some(v) = p.min_power(eps) else {
            return if *q > BigRational::zero() {
                Ok(Poly::zero())
            } else {
                Err(Failure::Diagnostic(Box::new(
                    Diagnostic::new(Code::BadNumber, self.span, "division by zero").label("here"),
                )))
            };
        };
        let qv = q * BigRational::from_integer(v.into());
        let Some(qv) = qv.is_integer().then(|| qv.to_integer().to_i32()).flatten() else {
            return Err(self.unsupported(
                format!("{what} of a constant whose leading power of the small parameter has no such root"),
                "scale the constant so that its leading term is of order 1 (or an even power, under a square root)",
            ));
        };
        // (1 + r)^q through ε^{upto − qv} needs the base through ε^{upto − qv + v}.
        let need = upto - qv;
        if need + v > upto {
            p = self.constant(a, need + v)?;
        }
        let c0 = match p.coeff(eps, v).as_constant() {
            Some(c) if c > BigRational::zero() => c,
            Some(_) => {
                return Err(self.unsupported(
                    format!("{what} of a constant whose leading term is negative"),
                    "the root is not real for small step sizes: check the signs (e.g. `sqrt(2 - eta^2)`, not `sqrt(eta^2 - 2)`)",
                ))
            }
            None => {
                return Err(self.unsupported(
                    format!("{what} of a constant whose leading term is not a number"),
                    "declare the leading term as a hyperparameter and the root as a scaling, e.g. `hyper s > 0` and `let r = s*(1 - eta^2/(2*s^2))`",
                ))
            }
        };
        let r = p.shift(eps, -v).scale(&c0.recip()).sub(&Poly::one());
        let mut series = Poly::one();
        let mut rk = Poly::one();
        let mut binom = BigRational::one();
        for k in 0..need.max(0) {
            rk = rk.mul(&r).truncate(eps, need);
            if rk.is_zero() {
                break;
            }
            binom = binom * (q - BigRational::from_integer(k.into()))
                / BigRational::from_integer((k + 1).into());
            series.add_assign(&rk.scale(&binom));
        }
        let lead = self.rational_power(&c0, q);
        Ok(series.mul(&lead).shift(eps, qv).truncate(eps, upto))
    }

    /// `c^q` for a positive rational `c`: exact when it is rational, else a rational
    /// times an opaque symbol `sqrt(c)` or `c^(a/b)` with `0 < a/b < 1`.
    fn rational_power(&mut self, c: &BigRational, q: &BigRational) -> Poly {
        let b = q.denom().to_u32().unwrap_or(2);
        let (n, d) = (c.numer().nth_root(b), c.denom().nth_root(b));
        if num_traits::pow(n.clone(), b as usize) == *c.numer()
            && num_traits::pow(d.clone(), b as usize) == *c.denom()
        {
            let root = BigRational::new(n, d);
            let a = q.numer().to_i32().unwrap_or(1);
            return Poly::constant(if a >= 0 {
                num_traits::pow(root, a as usize)
            } else {
                num_traits::pow(root.recip(), a.unsigned_abs() as usize)
            });
        }
        // q = whole + frac with 0 < frac < 1.
        let whole = q.floor();
        let frac = q - &whole;
        let whole = whole.to_integer().to_i32().unwrap_or(0);
        let rational = if whole >= 0 {
            num_traits::pow(c.clone(), whole as usize)
        } else {
            num_traits::pow(c.recip(), whole.unsigned_abs() as usize)
        };
        let name = if frac == BigRational::new(1.into(), 2.into()) {
            format!("sqrt({c})")
        } else if c.is_integer() {
            format!("{c}^({frac})")
        } else {
            format!("({c})^({frac})")
        };
        Poly::power(self.ctx.syms.intern(&name), 1).scale(&rational)
    }

    /// `1/p` as a series in the small parameter through `upto` (p's leading coefficient
    /// must be a single monomial in the other symbols).
    fn inverse_series(&self, p: &Poly, upto: i32) -> Result<Poly, Failure> {
        let eps = self.ctx.eps;
        let Some(v) = p.min_power(eps) else {
            return Err(Failure::Diagnostic(Box::new(
                Diagnostic::new(Code::BadNumber, self.span, "division by zero").label("here"),
            )));
        };
        let lead = p.coeff(eps, v);
        let Some(lead_inv) = lead.inverse() else {
            return Err(self.unsupported(
                "division by a constant whose leading coefficient is a sum",
                "declare the sum as a hyperparameter",
            ));
        };
        // p = eps^v lead (1 + r), 1/p = eps^-v lead^-1 Σ (-r)^k
        let r = p.shift(eps, -v).mul(&lead_inv).sub(&Poly::one());
        let mut series = Poly::one();
        let mut power = Poly::one();
        let need = upto + v;
        for _ in 0..=need.max(0) {
            power = power.mul(&r.neg()).truncate(eps, need);
            if power.is_zero() {
                break;
            }
            series.add_assign(&power);
        }
        Ok(series.mul(&lead_inv).shift(eps, -v).truncate(eps, upto))
    }

    /// Expands an expression of the step through power `upto` of the small parameter.
    pub fn expand(&mut self, e: &Expr, upto: i32) -> Result<TExpr, Failure> {
        let dim = self.ctx.dim;
        let eps = self.ctx.eps;
        let free = free_of(e.shape);
        if !e.depends_on_step() {
            let p = self.constant(e, upto)?.truncate(eps, upto);
            return Ok(TExpr::scalar(p));
        }
        let out = match &e.kind {
            ExprKind::Var { name, version } => {
                let v = self.ctx.var_id(name);
                match version {
                    Version::Old => self.state_atom(v),
                    Version::New => self.cached(false, name, upto)?,
                }
            }
            ExprKind::Local(name) => self.cached(true, name, upto)?,
            ExprKind::Counter => {
                // k = t/τ with the clock t, a scalar state advancing by τ each step.
                let clock = self
                    .ctx
                    .clock
                    .ok_or_else(|| Failure::Internal("a counter without a clock".into()))?;
                let inv = self
                    .ctx
                    .time
                    .inverse()
                    .ok_or_else(|| Failure::Internal("time per step is a monomial".into()))?;
                TExpr::from_atoms(vec![Atom::new(Kind::State(clock), vec![])], 0, inv, dim)
                    .map_coef(|c| c.truncate(self.ctx.eps, upto))
            }
            ExprKind::Noise { sample, at } => {
                let s = self.ctx.sample_id(sample);
                // A sample with a fixed law is the same vector wherever it is "evaluated".
                let fixed = self.ctx.sample_scale[s as usize].is_some();
                let point = match at {
                    Some(at) if !fixed => self.noise_point(at, s)?,
                    _ => 0,
                };
                TExpr::from_atoms(
                    vec![Atom::new(Kind::Noise { sample: s, point }, vec![0])],
                    1,
                    Poly::one(),
                    dim,
                )
            }
            ExprKind::Objective(at) | ExprKind::Grad(at) | ExprKind::Hess(at) => {
                let k = match e.kind {
                    ExprKind::Objective(_) => 0,
                    ExprKind::Grad(_) => 1,
                    _ => 2,
                };
                let at0 = TExpr::from_atoms(
                    vec![Atom::new(Kind::DF(k), (0..k).collect::<Slots>())],
                    k,
                    Poly::one(),
                    dim,
                );
                let delta = self.displacement(at, upto)?;
                self.shift_point(&at0, &delta, upto)?
            }
            ExprKind::Neg(a) => self.expand(a, upto)?.scale(&Poly::int(-1)),
            ExprKind::Bin(op, a, b) => self.binary(*op, a, b, upto)?,
            ExprKind::Call(f, args) => match f {
                Func::Dot => {
                    let (la, lb) = (self.lb(&args[0])?, self.lb(&args[1])?);
                    let x = self.expand(&args[0], upto - lb)?;
                    let y = self.expand(&args[1], upto - la)?;
                    product(
                        &[
                            Part {
                                expr: &x,
                                labels: vec![1],
                            },
                            Part {
                                expr: &y,
                                labels: vec![1],
                            },
                        ],
                        0,
                        &self.keep(upto),
                        dim,
                    )
                }
                Func::Sqrt => self.apply_map(
                    Map::Power(BigRational::new(1.into(), 2.into())),
                    &args[0],
                    upto,
                )?,
                Func::Exp => self.apply_map(Map::Exp, &args[0], upto)?,
                Func::Log => self.apply_map(Map::Log, &args[0], upto)?,
                Func::Sign => self.kink(false, &args[0], upto)?,
                Func::Abs => self.kink(true, &args[0], upto)?,
                Func::Relu | Func::Min | Func::Max | Func::Clip => {
                    let e = piecewise(*f, args, e.shape, &mut self.ctx.notes);
                    self.expand(&e, upto)?
                }
                Func::Norm => self.norm(&args[0], upto)?,
            },
            ExprKind::Num(_) | ExprKind::Small | ExprKind::Hyper(_) => {
                unreachable!("constants handled above")
            }
        };
        debug_assert_eq!(out.free, free);
        self.ctx.check_size(&out, self.span)?;
        Ok(out)
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, upto: i32) -> Result<TExpr, Failure> {
        let dim = self.ctx.dim;
        let (fa, fb) = (free_of(a.shape), free_of(b.shape));
        match op {
            BinOp::Add | BinOp::Sub => {
                let x = self.expand(a, upto)?;
                let y = self.expand(b, upto)?;
                let (x, y) = (self.broadcast(x, fa.max(fb)), self.broadcast(y, fa.max(fb)));
                Ok(if op == BinOp::Add {
                    x.add(&y)
                } else {
                    x.sub(&y)
                })
            }
            BinOp::Mul | BinOp::MatMul => {
                let (la, lb) = (self.lb(a)?, self.lb(b)?);
                let x = self.expand(a, upto - lb)?;
                let y = self.expand(b, upto - la)?;
                // Labels: scalar none; elementwise vectors share index 0; `@` contracts.
                let (lx, ly, free): (Vec<Label>, Vec<Label>, u8) = match (op, fa, fb) {
                    (BinOp::Mul, 0, f) => (vec![], (0..f).collect(), f),
                    (BinOp::Mul, f, 0) => ((0..f).collect(), vec![], f),
                    (BinOp::Mul, 1, 1) => (vec![0], vec![0], 1),
                    (BinOp::MatMul, 2, 1) => (vec![0, 9], vec![9], 1),
                    (BinOp::MatMul, 1, 2) => (vec![9], vec![9, 0], 1),
                    (BinOp::MatMul, 2, 2) => (vec![0, 9], vec![9, 1], 2),
                    _ => return Err(Failure::Internal("shapes checked in lowering".into())),
                };
                Ok(product(
                    &[
                        Part {
                            expr: &x,
                            labels: lx,
                        },
                        Part {
                            expr: &y,
                            labels: ly,
                        },
                    ],
                    free,
                    &self.keep(upto),
                    dim,
                ))
            }
            BinOp::Div if b.depends_on_step() => {
                // a / b = a · b^(-1), b^(-1) expanded around its leading part
                let lb_a = self.lb(a)?;
                let lb_inv = self.map_lb(&Map::Power(-BigRational::one()), b)?;
                let x = self.expand(a, upto - lb_inv)?;
                let inv = self.apply_map(Map::Power(-BigRational::one()), b, upto - lb_a)?;
                let (lx, ly, free): (Vec<Label>, Vec<Label>, u8) = match (fa, fb) {
                    (0, f) => (vec![], (0..f).collect(), f),
                    (f, 0) => ((0..f).collect(), vec![], f),
                    _ => (vec![0], vec![0], 1),
                };
                Ok(product(
                    &[
                        Part {
                            expr: &x,
                            labels: lx,
                        },
                        Part {
                            expr: &inv,
                            labels: ly,
                        },
                    ],
                    free,
                    &self.keep(upto),
                    dim,
                ))
            }
            BinOp::Div => {
                let d = self.constant_divisor(b)?;
                let vd = d.min_power(self.ctx.eps).unwrap_or(0);
                let la = self.lb(a)?;
                let x = self.expand(a, upto + vd)?;
                let inv = self.inverse_series(&d, upto - la)?;
                Ok(x.map_coef(|c| c.mul(&inv).truncate(self.ctx.eps, upto)))
            }
            BinOp::Pow => {
                let k = match self.power_kind(a, b)? {
                    PowerKind::Integer(k) if k >= 0 => k,
                    PowerKind::Integer(k) => {
                        return self.apply_map(
                            Map::Power(BigRational::from_integer(k.into())),
                            a,
                            upto,
                        )
                    }
                    PowerKind::Rational(q) => return self.apply_map(Map::Power(q), a, upto),
                    PowerKind::Exponential => return self.exponential(a, b, upto),
                };
                let la = self.lb(a)?;
                let x = self.expand(a, upto - la * (k as i32 - 1).max(0))?;
                let labels: Vec<Label> = (0..fa).collect();
                let mut acc = self.broadcast(TExpr::scalar(Poly::one()), fa);
                for _ in 0..k {
                    acc = product(
                        &[
                            Part {
                                expr: &acc,
                                labels: labels.clone(),
                            },
                            Part {
                                expr: &x,
                                labels: labels.clone(),
                            },
                        ],
                        fa,
                        &self.keep(upto),
                        dim,
                    );
                }
                Ok(acc)
            }
        }
    }

    /// `a^b` for a constant base and a varying exponent: `exp(b · log a)`.
    fn exponential(&mut self, a: &Expr, b: &Expr, upto: i32) -> Result<TExpr, Failure> {
        let eps = self.ctx.eps;
        let dim = self.ctx.dim;
        let base = self.constant(a, upto + 8)?;
        let lb_b = self.lb(b)?;
        let log = self.log_series(&base, upto - lb_b.min(0) + 2)?;
        let lb_log = log.min_power(eps).unwrap_or(NEVER);
        let exponent = self.expand(b, upto - lb_log.min(NEVER - 1))?;
        let arg = exponent.map_coef(|c| c.mul(&log).truncate(eps, upto));
        let free = arg.free;
        let v = arg
            .terms
            .values()
            .filter_map(|c| c.min_power(eps))
            .min()
            .unwrap_or(0);
        if v < 0 {
            return Err(self.unsupported(
                "a power whose exponent grows without its base tending to 1",
                "scale the base with the small parameter, e.g. `beta = 1 - c*eta^2`",
            ));
        }
        let _ = dim;
        self.map_series(Map::Exp, &arg, 0, 0, upto, free)
    }

    /// `log p` for a constant series `p = p₀(1 + r)`, `p₀` a positive number.
    fn log_series(&mut self, p: &Poly, upto: i32) -> Result<Poly, Failure> {
        let eps = self.ctx.eps;
        let v = p.min_power(eps).unwrap_or(0);
        let lead = p.coeff(eps, v);
        let Some(c0) = lead.as_constant().filter(|c| *c > BigRational::zero()) else {
            return Err(self.unsupported(
                "the logarithm of a constant whose leading term is not a positive number",
                "write the base as `1 - c*eta` (or another positive number plus a small correction)",
            ));
        };
        if v != 0 {
            return Err(self.unsupported(
                "the logarithm of a constant that vanishes with the small parameter",
                "write the base as a positive number plus a small correction",
            ));
        }
        let r = p.scale(&c0.recip()).sub(&Poly::one());
        let mut out = if c0 == BigRational::one() {
            Poly::zero()
        } else {
            Poly::power(self.ctx.syms.intern(&format!("log({c0})")), 1)
        };
        let mut power = Poly::one();
        for n in 1..=upto.max(1) {
            power = power.mul(&r).truncate(eps, upto);
            if power.is_zero() {
                break;
            }
            let sign = if n % 2 == 1 { 1 } else { -1 };
            out.add_assign(&power.scale(&BigRational::new(sign.into(), n.into())));
        }
        Ok(out)
    }

    /// A scalar broadcast to a vector is the scalar times the ones vector.
    fn broadcast(&self, e: TExpr, free: u8) -> TExpr {
        if e.free == free {
            return e;
        }
        let one = TExpr::from_atoms(
            vec![Atom::new(Kind::One, vec![0])],
            1,
            Poly::one(),
            self.ctx.dim,
        );
        product(
            &[
                Part {
                    expr: &e,
                    labels: vec![],
                },
                Part {
                    expr: &one,
                    labels: vec![0],
                },
            ],
            1,
            &|p: &Poly| p.clone(),
            self.ctx.dim,
        )
    }

    /// `p − x` for a point `p` of the parameter space, which must tend to `x`.
    fn displacement(&mut self, at: &Expr, upto: i32) -> Result<TExpr, Failure> {
        let p = self.expand(at, upto)?;
        let x = self.state_atom(0);
        let delta = p.sub(&x);
        // x must appear with coefficient exactly 1: the point tends to x.
        let x_term = x.terms.keys().next().cloned().unwrap_or_default();
        if p.terms.get(&x_term) != Some(&Poly::one()) {
            return Err(self.unsupported(
                "the objective evaluated at a point that does not tend to the parameter",
                format!(
                    "evaluate f and its derivatives at the parameter plus a small displacement, e.g. `grad f({0} + {1}*v)`",
                    self.opt.param.name, self.opt.small.name
                ),
            ));
        }
        if let Some(v) = delta
            .terms
            .values()
            .filter_map(|c| c.min_power(self.ctx.eps))
            .min()
        {
            if v < 1 {
                return Err(self.unsupported(
                    "the objective evaluated at a point whose distance to the parameter does not vanish",
                    format!("scale the displacement with `{}`", self.opt.small.name),
                ));
            }
        }
        Ok(delta)
    }

    /// Registers the point of a noise evaluation; the displacement must be deterministic.
    /// The number of the point at which sample `sample` is evaluated. A point that
    /// depends on other samples (stochastic extragradient with two minibatches) is
    /// allowed when the sample is independent of them: the expectation conditions on
    /// them first ([`expectation`]). A sample at a point built from itself, or samples
    /// at points built from each other, are refused.
    fn noise_point(&mut self, at: &Expr, sample: u8) -> Result<u8, Failure> {
        let delta = self.displacement(at, self.ctx.work)?;
        let inside = samples_in(&delta);
        if inside.contains(&sample) {
            return Err(self.unsupported(
                "a noise sample evaluated at a point that depends on the same sample",
                "E[ξ(y(ξ))] needs the joint law of the noise and its derivatives, which Σ(x) does not give; draw an independent sample for the second evaluation (`noise zeta ~ gaussian`, then `zeta(y)`), as in examples/extragradient_two_samples.opt",
            ));
        }
        for (p, d) in self.ctx.points.iter().enumerate() {
            let uses_p = |s: u8| self.ctx.sample_points.get(s as usize) == Some(&(p as u8));
            if samples_in(d).contains(&sample) && inside.iter().any(|&s| uses_p(s)) {
                return Err(self.unsupported(
                    "noise samples evaluated at points built from each other",
                    "the expectation conditions on one sample to average the other: let at most one of them depend on the other",
                ));
            }
        }
        let point = if delta.is_zero() {
            0
        } else if let Some(i) = self.ctx.points.iter().position(|p| *p == delta) {
            i as u8
        } else {
            self.ctx.points.push(delta);
            (self.ctx.points.len() - 1) as u8
        };
        let s = sample as usize;
        if self.ctx.sample_points.len() <= s {
            self.ctx.sample_points.resize(s + 1, u8::MAX);
        }
        self.ctx.sample_points[s] = point;
        Ok(point)
    }

    /// `e(x + δ) = Σ_j (δ·∇)^j e / j!` through `upto` (δ is not differentiated).
    pub fn shift_point(&self, e: &TExpr, delta: &TExpr, upto: i32) -> Result<TExpr, Failure> {
        shift_point(self.ctx, e, delta, upto)
    }
}

/// An elementwise map that the expansion Taylor-expands.
#[derive(Debug, Clone)]
pub(super) enum Map {
    /// `x^q`: square roots (`q = 1/2`), reciprocals (`q = -1`), …
    Power(BigRational),
    Exp,
    Log,
    /// `|x|` away from 0: `|x₀ + r| = |x₀| + sign(x₀) r` while `|r| < |x₀|`.
    Abs,
    /// `sign(x)` away from 0: constant while `|r| < |x₀|`.
    Sign,
}

/// How a power `a^b` is expanded.
enum PowerKind {
    Integer(i64),
    Rational(BigRational),
    /// A constant base to a varying exponent.
    Exponential,
}

/// `φ^{(k)}(f)`.
fn map_derivative(map: &Map, f: &FExpr, k: u32) -> FExpr {
    match map {
        Map::Power(q) => {
            let mut c = BigRational::one();
            for j in 0..k {
                c *= q - BigRational::from_integer(j.into());
            }
            if c.is_zero() {
                return FExpr::Const(Poly::zero());
            }
            f.clone()
                .pow(q - BigRational::from_integer(k.into()))
                .scale(&Poly::constant(c))
        }
        Map::Exp => FExpr::Exp(Box::new(f.clone())).simplify(),
        Map::Abs => match k {
            0 => FExpr::Abs(Box::new(f.clone())).simplify(),
            1 => FExpr::Sign(Box::new(f.clone())).simplify(),
            _ => FExpr::Const(Poly::zero()),
        },
        Map::Sign => match k {
            0 => FExpr::Sign(Box::new(f.clone())).simplify(),
            _ => FExpr::Const(Poly::zero()),
        },
        Map::Log => {
            if k == 0 {
                return FExpr::Log(Box::new(f.clone())).simplify();
            }
            let mut c = BigRational::one();
            for j in 1..k {
                c *= BigRational::from_integer(j.into());
            }
            if k % 2 == 0 {
                c = -c;
            }
            f.clone()
                .pow(-BigRational::from_integer(k.into()))
                .scale(&Poly::constant(c))
        }
    }
}

/// `relu`, `min`, `max` and `clip` written with `abs`, identities exact everywhere:
/// `relu(u) = (u + |u|)/2`, `max(a, b) = (a + b + |a − b|)/2`,
/// `min(a, b) = (a + b − |a − b|)/2`, `clip(v, lo, hi) = (lo + hi + |v − lo| − |v − hi|)/2`
/// (for lo ≤ hi, noted).
fn piecewise(f: Func, args: &[Expr], shape: Shape, notes: &mut Vec<String>) -> Expr {
    let bin = |op: BinOp, a: Expr, b: Expr| {
        let shape = if a.shape == Shape::Vector || b.shape == Shape::Vector {
            Shape::Vector
        } else {
            Shape::Scalar
        };
        Expr::new(ExprKind::Bin(op, Box::new(a), Box::new(b)), shape)
    };
    let abs = |a: Expr| {
        let shape = a.shape;
        Expr::new(ExprKind::Call(Func::Abs, vec![a]), shape)
    };
    let half = Expr::new(
        ExprKind::Num(BigRational::new(1.into(), 2.into())),
        Shape::Scalar,
    );
    let body = match f {
        Func::Relu => bin(BinOp::Add, args[0].clone(), abs(args[0].clone())),
        Func::Max | Func::Min => {
            let sum = bin(BinOp::Add, args[0].clone(), args[1].clone());
            let gap = abs(bin(BinOp::Sub, args[0].clone(), args[1].clone()));
            bin(
                if f == Func::Max {
                    BinOp::Add
                } else {
                    BinOp::Sub
                },
                sum,
                gap,
            )
        }
        _ => {
            let note = "`clip(v, lo, hi)` is taken as (lo + hi + |v − lo| − |v − hi|)/2, which is numpy's clip where lo ≤ hi".to_string();
            if !notes.contains(&note) {
                notes.push(note);
            }
            let (v, lo, hi) = (args[0].clone(), args[1].clone(), args[2].clone());
            let bounds = bin(BinOp::Add, lo.clone(), hi.clone());
            let low = abs(bin(BinOp::Sub, v.clone(), lo));
            let high = abs(bin(BinOp::Sub, v, hi));
            bin(BinOp::Sub, bin(BinOp::Add, bounds, low), high)
        }
    };
    let mut out = bin(BinOp::Mul, half, body);
    out.shape = shape;
    out
}

fn sat_add(a: i32, b: i32) -> i32 {
    a.saturating_add(b).min(NEVER)
}

/// `e(x + δ) = Σ_j (δ·∇_x)^j e / j!` through `upto`; only `e`'s dependence on the
/// parameter is differentiated.
pub(super) fn shift_point(
    ctx: &Ctx,
    e: &TExpr,
    delta: &TExpr,
    upto: i32,
) -> Result<TExpr, Failure> {
    let eps = ctx.eps;
    let keep = |p: &Poly| p.truncate(eps, upto);
    let lb = delta
        .terms
        .values()
        .filter_map(|c| c.min_power(eps))
        .min()
        .unwrap_or(NEVER);
    let mut total = e.map_coef(keep);
    if lb >= NEVER {
        return Ok(total);
    }
    let scalar = |v: u8| ctx.var_scalar[v as usize];
    let vars = Vars {
        scalar: &scalar,
        quadratic: ctx.quadratic,
    };
    // The Taylor series holds δ fixed at the start point: only `e` is differentiated.
    // `dj` is `∇ʲe` (its derivative slots last); each term contracts them with δ.
    let x_scalar = scalar(0);
    let f = e.free;
    let mut dj = e.clone();
    let mut factorial = BigRational::one();
    let mut j = 1i64;
    while (j as i32).saturating_mul(lb) <= upto {
        dj = derivative(&dj, 0, &vars, ctx.dim);
        ctx.check_size(&dj, Span::default())?;
        factorial *= BigRational::from_integer(j.into());
        let mut term = dj.clone();
        for _ in 0..j {
            let (labels, dl) = if x_scalar {
                ((0..f).collect(), vec![])
            } else {
                let last = term.free - 1;
                ((0..term.free).collect::<Vec<Label>>(), vec![last])
            };
            let out_free = if x_scalar { f } else { term.free - 1 };
            term = product(
                &[
                    Part {
                        expr: &term,
                        labels,
                    },
                    Part {
                        expr: delta,
                        labels: dl,
                    },
                ],
                out_free,
                &keep,
                ctx.dim,
            );
            if term.is_zero() {
                break;
            }
        }
        // A term that vanished (δ^j truncated away) left the loop with slots still open.
        if !term.is_zero() {
            let term = term.scale(&Poly::constant(factorial.recip()));
            ctx.check_size(&term, Span::default())?;
            total.add_assign(&term);
        }
        j += 1;
    }
    Ok(total)
}

/// Whether a term holds noise (a sample, or a kink of one): a random factor.
fn random(t: &crate::algebra::tensor::Term) -> bool {
    t.atoms
        .iter()
        .any(|a| matches!(a.kind, Kind::Noise { .. } | Kind::Kink(_)))
}

/// The noise samples a tensor expression holds.
fn samples_in(e: &TExpr) -> Vec<u8> {
    let mut out = Vec::new();
    for t in e.terms.keys() {
        for a in &t.atoms {
            if let Kind::Noise { sample, .. } = a.kind {
                if !out.contains(&sample) {
                    out.push(sample);
                }
            }
        }
    }
    out
}

/// `E` over the noise: products of noise factors become moment tensors. A sample at a
/// point that depends on other samples is averaged before them, conditionally on them
/// (its moments at the random point, a Taylor series in the displacement, hold their
/// factors): rounds average the samples that no pending sample's point depends on,
/// and the last round everything else.
pub(super) fn expectation(ctx: &Ctx, e: &TExpr, upto: i32) -> Result<TExpr, Failure> {
    let point_of = |s: u8| ctx.sample_points.get(s as usize).copied().unwrap_or(0);
    let depends = |s: u8| -> Vec<u8> {
        ctx.points
            .get(point_of(s) as usize)
            .map(samples_in)
            .unwrap_or_default()
    };
    let mut pending: Vec<u8> = (0..ctx.sample_points.len() as u8)
        .filter(|&s| !depends(s).is_empty())
        .collect();
    let mut current = e.clone();
    while !pending.is_empty() {
        let ready: Vec<u8> = pending
            .iter()
            .copied()
            .filter(|&s| !pending.iter().any(|&t| depends(t).contains(&s)))
            .collect();
        if ready.is_empty() {
            return Err(Failure::Internal(
                "noise samples at points built from each other (refused in the expansion)".into(),
            ));
        }
        current = average(ctx, &current, upto, &|s| ready.contains(&s), false)?;
        pending.retain(|s| !ready.contains(s));
    }
    average(ctx, &current, upto, &|_| true, true)
}

/// One round of [`expectation`]: the noise factors of the samples `here` selects become
/// moment tensors; the others stay.
/// Kinks are averaged in the last round only (`kinks`).
fn average(
    ctx: &Ctx,
    e: &TExpr,
    upto: i32,
    here: &dyn Fn(u8) -> bool,
    kinks: bool,
) -> Result<TExpr, Failure> {
    let dim = ctx.dim;
    let eps = ctx.eps;
    let keep = |p: &Poly| p.truncate(eps, upto);
    let mut out = TExpr::zero(e.free);
    'terms: for (term, coef) in &e.terms {
        let averaged;
        let raw = kinks && term.atoms.iter().any(|a| matches!(a.kind, Kind::Kink(_)));
        let term = if raw {
            averaged = average_kinks(ctx, term)?;
            &averaged
        } else {
            term
        };
        let mut rest: Vec<Atom> = Vec::new();
        // (sample, point) → labels of its noise factors
        let mut groups: Vec<((u8, u8), Vec<Label>)> = Vec::new();
        for a in &term.atoms {
            if let Kind::Noise { sample, point } = a.kind {
                if !here(sample) {
                    rest.push(a.clone());
                    continue;
                }
                match groups.iter_mut().find(|(k, _)| *k == (sample, point)) {
                    Some((_, ls)) => ls.push(a.idx[0]),
                    None => groups.push(((sample, point), vec![a.idx[0]])),
                }
            } else {
                rest.push(a.clone());
            }
        }
        if groups.is_empty() {
            // An averaged term is a raw product (its new factors not yet canonical).
            if raw {
                out.add_raw(term.atoms.clone(), coef.clone(), dim);
            } else {
                out.add_term(term.clone(), coef);
            }
            continue;
        }
        // Same sample at two points: cross moments are not modelled.
        for (i, ((s, p), _)) in groups.iter().enumerate() {
            if groups[..i].iter().any(|((s2, p2), _)| s2 == s && p2 != p) {
                return Err(Failure::Diagnostic(Box::new(
                    Diagnostic::new(
                        Code::Unsupported,
                        Span::default(),
                        "one noise sample evaluated at two different points",
                    )
                    .label("here")
                    .hint("cross moments of the noise at two points (SAM) are not supported yet"),
                )));
            }
        }
        // Multiply the moments in, keeping the term's own labels.
        let mut next: Label = term
            .atoms
            .iter()
            .flat_map(|a| a.idx.iter().copied())
            .max()
            .unwrap_or(0)
            .max(e.free)
            + 1;
        let mut partial: Vec<(Vec<Atom>, Poly)> = vec![(rest, coef.clone())];
        for ((sample, point), labels) in groups {
            let r = labels.len();
            if r == 1 {
                continue 'terms;
            }
            let kind = ctx.sample_kind[sample as usize];
            let moment = match &ctx.sample_scale[sample as usize] {
                Some(scale) => isotropic_moment(ctx, scale, r as u8),
                None => moment_tensor(ctx, kind, r as u8),
            };
            let moment = if point == 0 {
                moment
            } else {
                shift_point(ctx, &moment, &ctx.points[point as usize], upto)?
            };
            if moment.is_zero() {
                continue 'terms;
            }
            let offset = next;
            next = next.saturating_add(moment.max_label() + 1);
            let mut grown = Vec::new();
            for (atoms, c) in &partial {
                for (mt, mc) in &moment.terms {
                    let k = keep(&c.mul(mc));
                    if k.is_zero() {
                        continue;
                    }
                    let (extra, _) = relabel(mt, r as u8, &labels, offset);
                    let mut all = atoms.clone();
                    all.extend(extra);
                    grown.push((all, k));
                }
            }
            partial = grown;
        }
        for (atoms, c) in partial {
            out.add_raw(atoms, c, dim);
        }
    }
    ctx.check_size(&out, Span::default())?;
    Ok(out)
}

/// Averages the kinks of a term over their samples: the kinks of one sample at one
/// index, with the sample's components at that index, become one elementwise function
/// ([`kink::average`]); one further component `ξ_j` of the sample at another index is
/// its regression on `ξ_i`, `(Σ_ji/Σ_ii) ξ_i` (exact for Gaussian noise: the rest is
/// independent of `ξ_i` and has mean zero).
fn average_kinks(
    ctx: &Ctx,
    term: &crate::algebra::tensor::Term,
) -> Result<crate::algebra::tensor::Term, Failure> {
    let limit = |what: &str| {
        Failure::Diagnostic(Box::new(
            Diagnostic::new(
                Code::Unsupported,
                Span::default(),
                format!("the average of {what} is not derived yet"),
            )
            .label("here")
            .hint("smelt averages kinks of one noise sample at one index, times at most one component of that sample at another index: enough for the first two moments of elementwise maps (weak order 1)"),
        ))
    };
    let mut atoms = term.atoms.clone();
    let mut samples: Vec<u8> = Vec::new();
    for a in &atoms {
        if let Kind::Kink(k) = a.kind {
            let s = ctx.kinks[k as usize].sample;
            if !samples.contains(&s) {
                samples.push(s);
            }
        }
    }
    for s in samples {
        let kinks: Vec<(u16, Label)> = atoms
            .iter()
            .filter_map(|a| match a.kind {
                Kind::Kink(k) if ctx.kinks[k as usize].sample == s => Some((k, a.idx[0])),
                _ => None,
            })
            .collect();
        let noise: Vec<Label> = atoms
            .iter()
            .filter_map(|a| match a.kind {
                Kind::Noise { sample, .. } if sample == s => Some(a.idx[0]),
                _ => None,
            })
            .collect();
        let i = kinks[0].1;
        let scale = ctx.sample_scale[s as usize].as_ref();
        if kinks.iter().any(|(_, l)| *l != i) {
            // Two kinks at two indices: their bivariate mean, a pair factor.
            let [(a, i), (b, j)] = kinks[..] else {
                return Err(limit("three or more kinks of one sample"));
            };
            if !noise.is_empty() {
                return Err(limit("kinks at two indices times a noise component"));
            }
            let side = |k: u16| ctx.kinks[k as usize].side.clone();
            let sigma = kink::deviation(scale);
            let defs = [&ctx.kinks[a as usize].side, &ctx.kinks[b as usize].side];
            let diag = crate::algebra::elem::intern(kink::average(&defs, 0, &sigma));
            let pair = crate::algebra::elem::intern_pair(crate::algebra::elem::Pair {
                left: side(a),
                right: side(b),
                scale: scale.cloned(),
                diag,
            });
            atoms.retain(|x| match x.kind {
                Kind::Kink(k) => ctx.kinks[k as usize].sample != s,
                _ => true,
            });
            atoms.push(Atom::new(Kind::Pair(pair), vec![i, j]));
            continue;
        }
        let same = noise.iter().filter(|l| **l == i).count() as u32;
        let others: Vec<Label> = noise.iter().copied().filter(|l| *l != i).collect();
        if others.len() > 1 {
            return Err(limit("a kink times two or more further noise components"));
        }
        let sigma = kink::deviation(scale);
        let defs: Vec<&crate::algebra::elem::Side> = kinks
            .iter()
            .map(|(k, _)| &ctx.kinks[*k as usize].side)
            .collect();
        atoms.retain(|a| match a.kind {
            Kind::Kink(k) => ctx.kinks[k as usize].sample != s,
            Kind::Noise { sample, .. } => sample != s,
            _ => true,
        });
        let mut f = kink::average(&defs, same + others.len() as u32, &sigma);
        if let Some(&j) = others.first() {
            // E[G(ξ_i) ξ_j] = (Σ_ji/Σ_ii) E[G(ξ_i) ξ_i]
            f = f.times(sigma.clone().pow(BigRational::from_integer((-2).into())));
            match scale {
                Some(c) => {
                    f = f.times(FExpr::Const(c.clone()));
                    atoms.push(Atom::new(Kind::Delta, vec![j, i]));
                }
                None => atoms.push(Atom::new(Kind::Moment { r: 2, d: 0 }, vec![j, i])),
            }
        }
        let id = crate::algebra::elem::intern(f);
        atoms.push(Atom::new(Kind::Elem(id), vec![i]));
    }
    Ok(crate::algebra::tensor::Term { atoms })
}

/// `E ξ^{⊗r}` with free indices `0..r`: a symbolic moment, or Isserlis' pairings of Σ.
fn moment_tensor(ctx: &Ctx, kind: NoiseKind, r: u8) -> TExpr {
    let dim = ctx.dim;
    match kind {
        NoiseKind::General => {
            if r < 2 {
                return TExpr::zero(r);
            }
            TExpr::from_atoms(
                vec![Atom::new(
                    Kind::Moment { r, d: 0 },
                    (0..r).collect::<Slots>(),
                )],
                r,
                Poly::one(),
                dim,
            )
        }
        NoiseKind::Gaussian => {
            let mut out = TExpr::zero(r);
            if r % 2 == 1 {
                return out;
            }
            for pairing in pairings(&(0..r).collect::<Vec<_>>()) {
                let atoms = pairing
                    .iter()
                    .map(|(a, b)| Atom::new(Kind::Moment { r: 2, d: 0 }, vec![*a, *b]))
                    .collect();
                out.add_raw(atoms, Poly::one(), dim);
            }
            out
        }
    }
}

/// `E z^{⊗r}` for a Gaussian sample of covariance `scale · I`: Isserlis' pairings of
/// `scale · δ`.
fn isotropic_moment(ctx: &Ctx, scale: &Poly, r: u8) -> TExpr {
    let mut out = TExpr::zero(r);
    if r % 2 == 1 {
        return out;
    }
    let mut coef = Poly::one();
    for _ in 0..r / 2 {
        coef = coef.mul(scale).truncate(ctx.eps, ctx.work);
    }
    for pairing in pairings(&(0..r).collect::<Vec<_>>()) {
        let atoms = pairing
            .iter()
            .map(|(a, b)| Atom::new(Kind::Delta, vec![*a, *b]))
            .collect();
        out.add_raw(atoms, coef.clone(), ctx.dim);
    }
    out
}

/// All perfect matchings of `items`.
fn pairings(items: &[Label]) -> Vec<Vec<(Label, Label)>> {
    if items.is_empty() {
        return vec![vec![]];
    }
    let first = items[0];
    let mut out = Vec::new();
    for i in 1..items.len() {
        let rest: Vec<Label> = items[1..]
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i - 1)
            .map(|(_, l)| *l)
            .collect();
        for mut p in pairings(&rest) {
            p.insert(0, (first, items[i]));
            out.push(p);
        }
    }
    out
}
