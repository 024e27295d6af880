//! The one-step moments of both sides, power by power, each piece computed once.
//!
//! *Discrete side.* With `Δ^{(j)}` the `ε^j` part of an increment, the `ε^n` part of
//! `Δ_{a1} ⊗ … ⊗ Δ_{as}` is `Σ_{j1+…+js=n} Δ_{a1}^{(j1)} ⊗ … ⊗ Δ_{as}^{(js)}`. It is built
//! over the tuple's prefixes (`(prefix, power)` products are kept and shared between the
//! moments that start alike), with like terms collected after every factor. Its
//! expectation is added to the moment's sum; taking the expectation never lowers a
//! power, so the `ε^n` coefficient is complete once the parts through `n` are in. A
//! power beyond the last one the derivation asks for is never formed.
//!
//! *SDE side.* `E Π(Z_τ − z) = Σ_m τ^m/m! (L^m ψ)(z)` with `L = Σ_j ε^j L_j` split by the
//! powers of the drift and diffusion coefficients. `A(k, P)`, the `ε^P` part of `L^k ψ`, is
//! `Σ_j L_j A(k−1, P−j)`; it only reads coefficients of powers up to `P`, so once those
//! are solved it is final and kept, with its derivatives. The `ε^n` coefficient of the
//! moment is `Σ_m c^m/m! A(m, n − mq)` at `y = z` (`τ = c ε^q`). Terms that keep more
//! displacements than the remaining applications of `L` can remove before the last
//! power are dropped.

use super::ctx::{Ctx, Failure};
use crate::algebra::poly::{Poly, Sym};
use crate::algebra::tensor::{derivative, Keep, Kind, Label, Part, TExpr, Term, Vars};
use num_rational::BigRational;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// An expression split by the power of `eps` in its coefficients.
fn split(e: &TExpr, eps: Sym) -> BTreeMap<i32, TExpr> {
    let mut out: BTreeMap<i32, TExpr> = BTreeMap::new();
    for (t, c) in &e.terms {
        let (lo, hi) = (c.min_power(eps), c.max_power(eps));
        match (lo, hi) {
            (Some(lo), Some(hi)) if lo == hi => {
                out.entry(lo)
                    .or_insert_with(|| TExpr::zero(e.free))
                    .add_term(t.clone(), c);
            }
            (Some(lo), Some(hi)) => {
                for p in lo..=hi {
                    let part = c.truncate(eps, p).sub(&c.truncate(eps, p - 1));
                    if !part.is_zero() {
                        out.entry(p)
                            .or_insert_with(|| TExpr::zero(e.free))
                            .add_term(t.clone(), &part);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The number of free indices of a moment over `tuple` (one per vector variable).
fn free_of(ctx: &Ctx, tuple: &[usize]) -> u8 {
    tuple.iter().filter(|&&v| !ctx.var_scalar[v]).count() as u8
}

/// The discrete side's moments, computed lazily power by power.
pub(super) struct Discrete {
    /// `pieces[v]`: the parts of increment `v` by power.
    pieces: Vec<Vec<(i32, Rc<TExpr>)>>,
    /// The lowest power of each increment (large when it is zero).
    low: Vec<i32>,
    /// Raw products over tuple prefixes, by power.
    prefix: HashMap<(Vec<usize>, i32), Rc<TExpr>>,
    /// Per moment: the power through which its parts are in, and its expectation by power.
    sums: Vec<(i32, BTreeMap<i32, TExpr>)>,
}

impl Discrete {
    pub fn new(ctx: &Ctx, increments: &[TExpr], moments: usize) -> Discrete {
        let pieces: Vec<Vec<(i32, Rc<TExpr>)>> = increments
            .iter()
            .map(|inc| {
                split(inc, ctx.eps)
                    .into_iter()
                    .filter(|(_, e)| !e.is_zero())
                    .map(|(p, e)| (p, Rc::new(e)))
                    .collect()
            })
            .collect();
        let low = pieces
            .iter()
            .map(|p| p.first().map_or(1 << 20, |(j, _)| *j))
            .collect();
        Discrete {
            pieces,
            low,
            prefix: HashMap::new(),
            sums: vec![(0, BTreeMap::new()); moments],
        }
    }

    /// Takes the increments expanded further: their parts of powers not seen before are
    /// added (those already in are the same in any deeper expansion).
    pub fn deepen(&mut self, ctx: &Ctx, increments: &[TExpr]) {
        for (v, inc) in increments.iter().enumerate() {
            let known = self.pieces[v].last().map_or(i32::MIN, |(j, _)| *j);
            for (p, e) in split(inc, ctx.eps) {
                if p > known && !e.is_zero() {
                    self.pieces[v].push((p, Rc::new(e)));
                }
            }
            if let Some((j, _)) = self.pieces[v].first() {
                self.low[v] = *j;
            }
        }
    }

    /// Whether the moment over `tuple` vanishes at `ε^n` (below its lowest power).
    pub fn vanishes(&self, tuple: &[usize], n: i32) -> bool {
        tuple.iter().map(|&v| self.low[v]).sum::<i32>() > n
    }

    /// The `ε^n` coefficient (with `ε` taken out) of moment number `id`, `E[Δ_tuple]`.
    pub fn coeff(
        &mut self,
        ctx: &Ctx,
        id: usize,
        tuple: &[usize],
        n: i32,
    ) -> Result<TExpr, Failure> {
        let eps = ctx.eps;
        while self.sums[id].0 < n {
            let j = self.sums[id].0 + 1;
            let raw = self.raw(ctx, tuple, j)?;
            if !raw.is_zero() {
                let e = super::expand::expectation(ctx, &raw, ctx.work)?;
                for (p, part) in split(&e, eps) {
                    let sum = &mut self.sums[id].1;
                    sum.entry(p)
                        .or_insert_with(|| TExpr::zero(part.free))
                        .add_assign(&part);
                }
            }
            self.sums[id].0 = j;
        }
        Ok(match self.sums[id].1.get(&n) {
            Some(e) => e.map_coef(|c| c.coeff(eps, n)),
            None => TExpr::zero(free_of(ctx, tuple)),
        })
    }

    /// The `ε^n` part of the raw (noise still random) product `Δ_{a1} ⊗ … ⊗ Δ_{as}`.
    fn raw(&mut self, ctx: &Ctx, tuple: &[usize], n: i32) -> Result<Rc<TExpr>, Failure> {
        let (&last, head) = tuple.split_last().expect("a moment has a factor");
        if head.is_empty() {
            return Ok(self.pieces[last].iter().find(|(j, _)| *j == n).map_or_else(
                || Rc::new(TExpr::zero(free_of(ctx, tuple))),
                |(_, e)| e.clone(),
            ));
        }
        let key = (tuple.to_vec(), n);
        if let Some(hit) = self.prefix.get(&key) {
            return Ok(hit.clone());
        }
        let head_low: i32 = head.iter().map(|&v| self.low[v]).sum();
        let fh = free_of(ctx, head);
        let mut out = TExpr::zero(free_of(ctx, tuple));
        let last_labels: Vec<Label> = if ctx.var_scalar[last] {
            vec![]
        } else {
            vec![fh]
        };
        let pieces = self.pieces[last].clone();
        for (j, piece) in pieces {
            if j + head_low > n {
                break;
            }
            let h = self.raw(ctx, head, n - j)?;
            if h.is_zero() {
                continue;
            }
            let parts = [
                Part {
                    expr: &h,
                    labels: (0..fh).collect(),
                },
                Part {
                    expr: &piece,
                    labels: last_labels.clone(),
                },
            ];
            ctx.product_into(&mut out, &parts, &Keep::All)?;
        }
        let out = Rc::new(out);
        self.prefix.insert(key, out.clone());
        Ok(out)
    }
}

/// Derivatives of a kept `A(k, P)`: by variable, and by pairs of variables.
#[derive(Default)]
struct Derivs {
    first: HashMap<usize, Rc<TExpr>>,
    second: HashMap<(usize, usize), Rc<TExpr>>,
}

/// The SDE side's moments, computed lazily power by power.
pub(super) struct Sde {
    /// Drift coefficients by power.
    drift: Vec<BTreeMap<i32, TExpr>>,
    /// Half the diffusion coefficients by power (`½ D : ∇²`).
    half_diff: Vec<Vec<BTreeMap<i32, TExpr>>>,
    /// The moments' variables.
    tuples: Vec<Vec<usize>>,
    /// `ψ = Π (y − z)` per moment, made when first needed.
    psi: Vec<Option<Rc<TExpr>>>,
    memo: HashMap<(usize, u32, i32), Rc<TExpr>>,
    derivs: HashMap<(usize, u32, i32), Derivs>,
    /// Coefficients of powers up to this one are solved: what reads only them is kept.
    pub final_through: i32,
    /// The last power any moment is asked for (it may only decrease: what is kept stays
    /// right, with terms it no longer needs).
    pub n_max: i32,
    q: i32,
    /// `c` in `τ = c ε^q`.
    tau: Poly,
}

impl Sde {
    pub fn new(ctx: &Ctx, tuples: &[Vec<usize>], q: i32, tau: Poly, n_max: i32) -> Sde {
        let nv = ctx.nvars();
        Sde {
            drift: vec![BTreeMap::new(); nv],
            half_diff: vec![vec![BTreeMap::new(); nv]; nv],
            tuples: tuples.to_vec(),
            psi: vec![None; tuples.len()],
            memo: HashMap::new(),
            derivs: HashMap::new(),
            final_through: 0,
            n_max,
            q,
            tau,
        }
    }

    /// An SDE with the given drift and diffusion (split by power), for the certificate.
    pub fn with(
        ctx: &Ctx,
        tuples: &[Vec<usize>],
        q: i32,
        tau: Poly,
        n_max: i32,
        drift: &[TExpr],
        diff: &[Vec<TExpr>],
    ) -> Sde {
        let mut sde = Sde::new(ctx, tuples, q, tau, n_max);
        for (a, b) in drift.iter().enumerate() {
            for (p, part) in split(b, ctx.eps) {
                sde.add_drift(a, p, &part);
            }
        }
        for (a, row) in diff.iter().enumerate() {
            for (c, d) in row.iter().enumerate() {
                for (p, part) in split(d, ctx.eps) {
                    sde.add_diffusion(a, c, p, &part);
                }
            }
        }
        sde.final_through = i32::MAX;
        sde
    }

    /// Makes moments through `ε^n` available: what was kept for a lower last power is
    /// dropped (it was pruned for that power).
    pub fn reach(&mut self, n: i32) {
        if n > self.n_max {
            self.n_max = n;
            self.memo.clear();
            self.derivs.clear();
        }
    }

    /// Adds `ε^p`-part `e` to the drift of variable `a`.
    pub fn add_drift(&mut self, a: usize, p: i32, e: &TExpr) {
        self.drift[a]
            .entry(p)
            .or_insert_with(|| TExpr::zero(e.free))
            .add_assign(e);
    }

    /// Adds `ε^p`-part `e` to the diffusion block `D^{ac}`.
    pub fn add_diffusion(&mut self, a: usize, c: usize, p: i32, e: &TExpr) {
        let half = Poly::constant(BigRational::new(1.into(), 2.into()));
        self.half_diff[a][c]
            .entry(p)
            .or_insert_with(|| TExpr::zero(e.free))
            .add_assign(&e.scale(&half));
    }

    /// Whether the moment over `tuple` vanishes at `ε^n` on the SDE side (a moment of `s`
    /// displacements needs `⌈s/2⌉` applications of L).
    pub fn vanishes(&self, tuple: &[usize], n: i32) -> bool {
        (tuple.len() as i32 + 1) / 2 * self.q > n
    }

    /// The `ε^n` coefficient (with `ε` taken out) of moment number `id`.
    pub fn coeff(&mut self, ctx: &Ctx, id: usize, n: i32) -> Result<TExpr, Failure> {
        let eps = ctx.eps;
        let mut total = TExpr::zero(free_of(ctx, &self.tuples[id]));
        let mut tau_m = Poly::one();
        let mut factorial = BigRational::from_integer(1.into());
        for m in 1..=(n / self.q) {
            tau_m = tau_m.mul(&self.tau);
            factorial *= BigRational::from_integer(m.into());
            let p = n - m * self.q;
            let a = self.a(ctx, id, m as u32, p)?;
            let scale = tau_m.scale(&factorial.recip());
            for (t, c) in &a.terms {
                if disps(t) == 0 {
                    total.add_term(t.clone(), &c.coeff(eps, p).mul(&scale));
                }
            }
        }
        Ok(total)
    }

    /// `ψ = Π (y − z)` for moment `id`.
    fn psi(&mut self, ctx: &Ctx, id: usize) -> Rc<TExpr> {
        if let Some(psi) = &self.psi[id] {
            return psi.clone();
        }
        let tuple = &self.tuples[id];
        let (labels, free) = super::ctx::tuple_labels(ctx, tuple);
        let atoms = tuple
            .iter()
            .zip(&labels)
            .map(|(&v, l)| crate::algebra::tensor::Atom::new(Kind::Disp(v as u8), l.clone()))
            .collect();
        let psi = Rc::new(TExpr::from_atoms(atoms, free, Poly::one(), ctx.dim));
        self.psi[id] = Some(psi.clone());
        psi
    }

    /// `A(k, P)`: the `ε^P` part of `L^k ψ` for moment `id`.
    fn a(&mut self, ctx: &Ctx, id: usize, k: u32, p: i32) -> Result<Rc<TExpr>, Failure> {
        let free = free_of(ctx, &self.tuples[id]);
        if k == 0 {
            return Ok(if p == 0 {
                self.psi(ctx, id)
            } else {
                Rc::new(TExpr::zero(free))
            });
        }
        if let Some(hit) = self.memo.get(&(id, k, p)) {
            return Ok(hit.clone());
        }
        // k applications remove at most 2k displacements; each one left needs half an
        // application more, each application q powers.
        let s = self.tuples[id].len() as u32;
        if p + (k.max(s.div_ceil(2)) as i32) * self.q > self.n_max {
            return Ok(Rc::new(TExpr::zero(free)));
        }
        let mut out = TExpr::zero(free);
        let base: Vec<Label> = (0..free).collect();
        for j in 0..=p {
            let prev = self.a(ctx, id, k - 1, p - j)?;
            if prev.is_zero() {
                continue;
            }
            for a in 0..ctx.nvars() {
                let ka = ctx.slots(a);
                if let Some(b) = self.drift[a].get(&j).cloned() {
                    let da = self.first(ctx, id, k - 1, p - j, a)?;
                    let mut l = base.clone();
                    let bl: Vec<Label> = if ka == 1 { vec![free] } else { vec![] };
                    l.extend(&bl);
                    let parts = [
                        Part {
                            expr: &da,
                            labels: l,
                        },
                        Part {
                            expr: &b,
                            labels: bl,
                        },
                    ];
                    ctx.product_into(&mut out, &parts, &Keep::All)?;
                }
                for c in 0..ctx.nvars() {
                    let Some(d) = self.half_diff[a][c].get(&j).cloned() else {
                        continue;
                    };
                    let kc = ctx.slots(c);
                    let dac = self.second(ctx, id, k - 1, p - j, a, c)?;
                    let mut l = base.clone();
                    let mut dl = Vec::new();
                    if ka == 1 {
                        l.push(free);
                        dl.push(free);
                    }
                    if kc == 1 {
                        l.push(free + ka);
                        dl.push(free + ka);
                    }
                    let parts = [
                        Part {
                            expr: &dac,
                            labels: l,
                        },
                        Part {
                            expr: &d,
                            labels: dl,
                        },
                    ];
                    ctx.product_into(&mut out, &parts, &Keep::All)?;
                }
            }
        }
        // Each remaining displacement needs at least half an application of L, each
        // application at least q more powers.
        let (q, n_max) = (self.q, self.n_max);
        let k = k as i32;
        out.terms.retain(|t, _| {
            let d = disps(t);
            p + (k + (d + 1) / 2) * q <= n_max
        });
        let out = Rc::new(out);
        if p <= self.final_through {
            self.memo.insert((id, k as u32, p), out.clone());
        }
        Ok(out)
    }

    /// `∂e/∂z^a`, within the term limit.
    fn derivative(ctx: &Ctx, e: &TExpr, a: usize) -> Result<Rc<TExpr>, Failure> {
        let scalar = |v: u8| ctx.var_scalar[v as usize];
        let vars = Vars {
            scalar: &scalar,
            quadratic: ctx.quadratic,
        };
        let d = Rc::new(derivative(e, a as u8, &vars, ctx.dim));
        ctx.check_size(&d, crate::span::Span::default())?;
        Ok(d)
    }

    /// `∂_a A(k, P)`.
    fn first(
        &mut self,
        ctx: &Ctx,
        id: usize,
        k: u32,
        p: i32,
        a: usize,
    ) -> Result<Rc<TExpr>, Failure> {
        let key = (id, k, p);
        if let Some(hit) = self.derivs.get(&key).and_then(|d| d.first.get(&a)) {
            return Ok(hit.clone());
        }
        let phi = self.a(ctx, id, k, p)?;
        let d = Sde::derivative(ctx, &phi, a)?;
        if p <= self.final_through {
            self.derivs
                .entry(key)
                .or_default()
                .first
                .insert(a, d.clone());
        }
        Ok(d)
    }

    /// `∂_c ∂_a A(k, P)`.
    fn second(
        &mut self,
        ctx: &Ctx,
        id: usize,
        k: u32,
        p: i32,
        a: usize,
        c: usize,
    ) -> Result<Rc<TExpr>, Failure> {
        let key = (id, k, p);
        if let Some(hit) = self.derivs.get(&key).and_then(|d| d.second.get(&(a, c))) {
            return Ok(hit.clone());
        }
        let da = self.first(ctx, id, k, p, a)?;
        let d = Sde::derivative(ctx, &da, c)?;
        if p <= self.final_through {
            self.derivs
                .entry(key)
                .or_default()
                .second
                .insert((a, c), d.clone());
        }
        Ok(d)
    }
}

/// The number of displacement factors of a term.
fn disps(t: &Term) -> i32 {
    t.atoms
        .iter()
        .filter(|a| matches!(a.kind, Kind::Disp(_)))
        .count() as i32
}
