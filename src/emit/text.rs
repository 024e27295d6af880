//! Unicode text: readable index-free forms where the contraction pattern has one
//! (`∇²f ∇f`, `∇³f(∇f, ∇f)`, `∇³f : Σ`, `‖∇f‖²`, `tr(∇²f Σ)`, `(∇f·∇)Σ`), index
//! notation (`∇³f[i,a,a]`) otherwise. Terms are ordered by the power of the small
//! parameter; coefficients are written `η/2`, `λh²/3`.

use super::notation::Style;
use crate::algebra::poly::{Poly, Sym, Symbols};
use crate::algebra::tensor::{Atom, Kind, Label, TExpr, Term};
use crate::simplify::Node;
use crate::sme::Sme;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};
use std::fmt::Write;

/// What printing needs to name things: the state variables, the elementwise functions
/// of the derivation and the coefficient symbols.
pub struct Names<'a> {
    pub vars: Vec<String>,
    pub elem: &'a crate::algebra::elem::Table,
    pub syms: &'a Symbols,
    pub small: Sym,
}

impl<'a> Names<'a> {
    pub fn of(sme: &'a Sme) -> Names<'a> {
        Names {
            vars: sme.vars.iter().map(|v| v.name.clone()).collect(),
            elem: &sme.elem,
            syms: &sme.symbols,
            small: sme.small,
        }
    }
}

impl std::ops::Deref for Names<'_> {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.vars
    }
}

/// Greek letters for the usual spellings (`eta` → `η`, `lambda1` → `λ1`).
pub fn pretty_name(name: &str) -> String {
    Style::Text.name(name)
}

fn sup(n: i64) -> String {
    Style::Text.sup(n)
}

/// The name of a factor (without indices).
pub fn atom_name(st: Style, a: &Atom, vars: &Names) -> String {
    match a.kind {
        Kind::DF(k) => st.grad_f(k),
        Kind::Moment { r, d } => st.moment(r, d),
        Kind::State(v) | Kind::Disp(v) => vars
            .get(v as usize)
            .map_or_else(String::new, |s| st.name(s)),
        Kind::One => st.ones().to_string(),
        Kind::Noise { .. } | Kind::Kink(_) => st.name("xi"),
        Kind::Delta => st.identity().to_string(),
        Kind::Pair(id) => match vars.elem.pairs.get(id as usize) {
            Some(p) => {
                let (l, r) = (side(st, &p.left, vars), side(st, &p.right, vars));
                match st {
                    Style::Text => format!("E[{l} ⊗ {r}]"),
                    Style::Latex => {
                        format!("\\mathbb{{E}}\\left[{l} \\otimes {r}\\right]")
                    }
                }
            }
            None => "?".to_string(),
        },
        Kind::Elem(id) => {
            let f = vars.elem.get(id);
            let text = fexpr(st, f, vars);
            use crate::algebra::elem::FExpr;
            let call = matches!(
                f,
                FExpr::Var(_) | FExpr::Sign(_) | FExpr::Ncdf(_) | FExpr::Npdf(_) | FExpr::Abs(_)
            ) || as_erf(f).is_some();
            if call {
                text
            } else {
                st.paren(&text)
            }
        }
    }
}

/// `z` when `f` is `2Φ(z) − 1 = erf(z/√2)`.
pub fn as_erf(f: &crate::algebra::elem::FExpr) -> Option<&crate::algebra::elem::FExpr> {
    use crate::algebra::elem::FExpr;
    let FExpr::Sum(items) = f else { return None };
    let [a, b] = &items[..] else { return None };
    let minus_one = |x: &FExpr| matches!(x, FExpr::Const(c) if *c == Poly::int(-1));
    fn twice(x: &FExpr) -> Option<&FExpr> {
        match x {
            FExpr::Prod(p) => match &p[..] {
                [FExpr::Const(c), FExpr::Ncdf(z)] | [FExpr::Ncdf(z), FExpr::Const(c)]
                    if *c == Poly::int(2) =>
                {
                    Some(&**z)
                }
                _ => None,
            },
            _ => None,
        }
    }
    if minus_one(a) {
        twice(b)
    } else if minus_one(b) {
        twice(a)
    } else {
        None
    }
}

/// `z/√2` as text: `a/√(2 v)` when `z = a v^(-1/2)` (`∇f/√(2 diag Σ)`), else `(z)/√2`.
fn over_root_two(st: Style, z: &crate::algebra::elem::FExpr, names: &Names) -> String {
    use crate::algebra::elem::FExpr;
    let half = num_rational::BigRational::new((-1).into(), 2.into());
    let two = |inner: &str| match st {
        Style::Text => format!("√(2 {inner})"),
        Style::Latex => format!("\\sqrt{{2 \\, {inner}}}"),
    };
    if let FExpr::Prod(items) = z {
        if let Some(k) = items
            .iter()
            .position(|i| matches!(i, FExpr::Pow(_, q) if *q == half))
        {
            let FExpr::Pow(b, _) = &items[k] else {
                unreachable!("matched above")
            };
            let rest: Vec<FExpr> = items
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(_, i)| i.clone())
                .collect();
            let top = fexpr(st, &FExpr::Prod(rest).simplify(), names);
            let bottom = two(&fexpr(st, b, names));
            return match st {
                Style::Text => format!("{top}/{bottom}"),
                Style::Latex => st.frac(&top, &bottom),
            };
        }
    }
    let top = fexpr(st, z, names);
    match st {
        Style::Text => format!("{}/√2", st.paren(&top)),
        Style::Latex => st.frac(&top, "\\sqrt{2}"),
    }
}

/// One side of a kink pair: `sign(∇f + ξ)`, `|A + C ξ|`.
fn side(st: Style, s: &crate::algebra::elem::Side, vars: &Names) -> String {
    let xi = st.name("xi");
    let mean = fexpr(st, &s.mean, vars);
    let noise = match s.coef.as_const().and_then(Poly::as_constant) {
        Some(c) if c == num_rational::BigRational::from_integer(1.into()) => xi,
        Some(c) if c == num_rational::BigRational::from_integer((-1).into()) => format!("-{xi}"),
        _ => format!("{}{}{xi}", st.paren(&fexpr(st, &s.coef, vars)), st.juxt()),
    };
    let inner = match noise.strip_prefix('-') {
        Some(rest) => format!("{mean} - {rest}"),
        None => format!("{mean} + {noise}"),
    };
    match (s.abs, st) {
        (true, Style::Text) => format!("|{inner}|"),
        (true, Style::Latex) => format!("\\lvert {inner} \\rvert"),
        (false, Style::Text) => format!("sign({inner})"),
        (false, Style::Latex) => format!("\\operatorname{{sign}}\\left({inner}\\right)"),
    }
}

/// An elementwise function as text: `1/(σ0 √u + ε0)`, `exp(-c1 t)`.
pub fn fexpr(st: Style, f: &crate::algebra::elem::FExpr, names: &Names) -> String {
    use crate::algebra::elem::FExpr;
    match f {
        FExpr::Const(c) if c.is_zero() => "0".to_string(),
        FExpr::Const(c) => {
            let (neg, t) = coefficient(st, c, names.syms, names.small);
            let t = if t.is_empty() { "1".to_string() } else { t };
            if neg {
                format!("-{t}")
            } else {
                t
            }
        }
        FExpr::Var(v) => st.name(names.vars.get(*v as usize).map_or("?", |s| s.as_str())),
        FExpr::Sum(_) if as_erf(f).is_some() => {
            let z = as_erf(f).expect("checked");
            let arg = over_root_two(st, z, names);
            match st {
                Style::Text => format!("erf({arg})"),
                Style::Latex => format!("\\operatorname{{erf}}{}", st.paren(&arg)),
            }
        }
        FExpr::Sum(items) => super::join_sum(items.iter().map(|i| (fexpr(st, i, names), true))),
        FExpr::Prod(items) => {
            let mut top: Vec<String> = Vec::new();
            let mut bottom: Vec<String> = Vec::new();
            let mut sign = "";
            for i in items {
                // A rational constant splits into numerator and denominator.
                if let Some(r) = i.as_const().and_then(|c| c.as_constant()) {
                    if r.is_negative() {
                        sign = if sign.is_empty() { "-" } else { "" };
                    }
                    let r = r.abs();
                    if !r.numer().is_one() {
                        top.push(r.numer().to_string());
                    }
                    if !r.denom().is_one() {
                        bottom.push(r.denom().to_string());
                    }
                    continue;
                }
                let (target, g) = match i {
                    FExpr::Pow(b, q) if q < &BigRational::zero() => {
                        (&mut bottom, FExpr::Pow(b.clone(), -q.clone()).simplify())
                    }
                    other => (&mut top, other.clone()),
                };
                let mut t = fexpr(st, &g, names);
                // A sum is parenthesised whole: its leading minus belongs to its first
                // term, not to the product (`(-a + b) c`, never `-(a + b) c`).
                if matches!(g, FExpr::Sum(_)) {
                    t = st.paren(&t);
                } else if let Some(rest) = t.strip_prefix('-') {
                    sign = if sign.is_empty() { "-" } else { "" };
                    t = rest.to_string();
                }
                if t != "1" {
                    target.push(t);
                }
            }
            let top = if top.is_empty() {
                "1".to_string()
            } else {
                top.join(st.juxt())
            };
            if bottom.is_empty() {
                format!("{sign}{top}")
            } else {
                // One parenthesised factor needs no second pair.
                let single = bottom.len() == 1 && bottom[0].starts_with('(');
                let bottom = bottom.join(st.juxt());
                match st {
                    Style::Text if bottom.contains(' ') && !single => {
                        format!("{sign}{top}/({bottom})")
                    }
                    _ => format!("{sign}{}", st.frac(&top, &bottom)),
                }
            }
        }
        // ‖a‖^(2q) for (Σ_j a_j²)^q.
        FExpr::Pow(b, q) if squared_norm(b).is_some() && !q.is_negative() => {
            let a = squared_norm(b).expect("checked");
            let n = norm(st, &fexpr(st, a, names));
            power(st, n, &(q * BigRational::from_integer(2.into())))
        }
        FExpr::Pow(b, q) => {
            let inner = fexpr(st, b, names);
            let compound = !matches!(**b, FExpr::Var(_));
            if q < &BigRational::zero() {
                let pos = FExpr::Pow(b.clone(), -q.clone()).simplify();
                let t = fexpr(st, &pos, names);
                return match st {
                    Style::Text if t.contains(' ') => format!("1/({t})"),
                    _ => st.frac("1", &t),
                };
            }
            if *q == BigRational::new(1.into(), 2.into()) {
                return match st {
                    Style::Text if compound => format!("√({inner})"),
                    Style::Text => format!("√{inner}"),
                    Style::Latex => format!("\\sqrt{{{inner}}}"),
                };
            }
            let base = if compound { st.paren(&inner) } else { inner };
            power(st, base, q)
        }
        FExpr::Exp(a) => match st {
            Style::Text => format!("exp({})", fexpr(st, a, names)),
            Style::Latex => format!("e^{{{}}}", fexpr(st, a, names)),
        },
        FExpr::Log(a) => match st {
            Style::Text => format!("log({})", fexpr(st, a, names)),
            Style::Latex => format!("\\log{}", st.paren(&fexpr(st, a, names))),
        },
        FExpr::Abs(a) => match st {
            Style::Text => format!("|{}|", fexpr(st, a, names)),
            Style::Latex => format!("\\lvert {} \\rvert", fexpr(st, a, names)),
        },
        FExpr::Sign(a) => match st {
            Style::Text => format!("sign({})", fexpr(st, a, names)),
            Style::Latex => format!("\\operatorname{{sign}}{}", st.paren(&fexpr(st, a, names))),
        },
        FExpr::Ncdf(a) => match st {
            Style::Text => format!("Φ({})", fexpr(st, a, names)),
            Style::Latex => format!("\\Phi{}", st.paren(&fexpr(st, a, names))),
        },
        FExpr::Npdf(a) => match st {
            Style::Text => format!("φ({})", fexpr(st, a, names)),
            Style::Latex => format!("\\varphi{}", st.paren(&fexpr(st, a, names))),
        },
        FExpr::Field(crate::algebra::elem::Field::Grad) => match st {
            Style::Text => "∇f".to_string(),
            Style::Latex => "\\nabla f".to_string(),
        },
        FExpr::Field(crate::algebra::elem::Field::NoiseVar) => match st {
            Style::Text => "diag Σ".to_string(),
            Style::Latex => "\\operatorname{diag}\\Sigma".to_string(),
        },
        FExpr::Contract(a) => match (squared_norm(f), st) {
            (Some(a), _) => format!("{}{}", norm(st, &fexpr(st, a, names)), st.sup(2)),
            (None, Style::Text) => format!("Σⱼ({})ⱼ", fexpr(st, a, names)),
            (None, Style::Latex) => {
                format!(
                    "\\textstyle\\sum_j \\left({}\\right)_j",
                    fexpr(st, a, names)
                )
            }
        },
    }
}

/// `base^q` for a rational `q`: a superscript when `q` is an integer (none for 1).
fn power(st: Style, base: String, q: &BigRational) -> String {
    if q.is_one() {
        base
    } else if q.is_integer() {
        format!(
            "{base}{}",
            st.sup(q.to_integer().to_string().parse().unwrap_or(1))
        )
    } else {
        match st {
            Style::Text => format!("{base}^({q})"),
            Style::Latex => format!("{base}^{{{q}}}"),
        }
    }
}

/// `a` when `f` is `Σ_j a_j²`, the squared norm of `a`.
fn squared_norm(f: &crate::algebra::elem::FExpr) -> Option<&crate::algebra::elem::FExpr> {
    use crate::algebra::elem::FExpr;
    match f {
        FExpr::Contract(inner) => match &**inner {
            FExpr::Pow(a, q) if *q == BigRational::from_integer(2.into()) => Some(a),
            _ => None,
        },
        _ => None,
    }
}

/// `‖a‖`.
fn norm(st: Style, a: &str) -> String {
    match st {
        Style::Text => format!("‖{a}‖"),
        Style::Latex => format!("\\lVert {a} \\rVert"),
    }
}

/// Index-notation rendering of one term: `∇²f[i,a] ∇f[a]`.
pub fn term_indices(st: Style, t: &Term, free: u8, vars: &Names) -> String {
    let name = |l: u8| -> String {
        if l < free {
            ["i", "j", "k", "l"]
                .get(l as usize)
                .map_or_else(|| format!("i{l}"), |s| s.to_string())
        } else {
            let n = l - free;
            ["a", "b", "c", "e", "g", "h", "m", "n", "p", "r"]
                .get(n as usize)
                .map_or_else(|| format!("a{n}"), |s| s.to_string())
        }
    };
    let parts: Vec<String> = t
        .atoms
        .iter()
        .map(|a| {
            let base = atom_name(st, a, vars);
            if a.idx.is_empty() {
                base
            } else {
                let idx: Vec<String> = a.idx.iter().map(|&l| name(l)).collect();
                st.indexed(&base, &idx)
            }
        })
        .collect();
    parts.join(st.juxt())
}

/// A contraction network being read off into index-free notation.
struct Net<'a> {
    st: Style,
    atoms: &'a [Atom],
    used: Vec<bool>,
    vars: &'a Names<'a>,
}

impl<'a> Net<'a> {
    /// Slots holding `label` among unused atoms, as (atom, slot).
    fn holders(&self, label: Label) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (k, a) in self.atoms.iter().enumerate() {
            if self.used[k] {
                continue;
            }
            for (s, l) in a.idx.iter().enumerate() {
                if *l == label {
                    out.push((k, s));
                }
            }
        }
        out
    }

    /// The vector reached through `label` (held by exactly one unused slot).
    fn vector(&mut self, label: Label) -> Option<String> {
        let h = self.holders(label);
        let lone_elem = matches!(&h[..], [(k, _)] if matches!(self.atoms[*k].kind, Kind::Elem(_)) && self.atoms[*k].idx.len() == 1);
        if h.len() >= 2 || lone_elem {
            return self.elementwise(label, &h);
        }
        let [(k, slot)] = h[..] else { return None };
        self.used[k] = true;
        let a = &self.atoms[k];
        let name = atom_name(self.st, a, self.vars);
        let others: Vec<Label> = a
            .idx
            .iter()
            .enumerate()
            .filter(|(s, _)| *s != slot)
            .map(|(_, l)| *l)
            .collect();
        match others.len() {
            0 => Some(name),
            1 => {
                let arg = self.vector(others[0])?;
                // An elementwise product or quotient as an argument gets parentheses.
                let arg = if arg.contains(self.st.hadamard().trim())
                    || arg.contains('/')
                    || arg.contains("\\frac")
                {
                    self.st.paren(&arg)
                } else {
                    arg
                };
                Some(format!("{name}{}{arg}", self.st.juxt()))
            }
            _ => {
                // A double contraction with one matrix: `∇³f : Σ`.
                if others.len() == 2 {
                    if let Some(m) = self.matrix_between(others[0], others[1]) {
                        return Some(format!("{name}{}{m}", self.st.colon()));
                    }
                }
                let mut args = Vec::new();
                for l in others {
                    args.push(self.vector(l)?);
                }
                Some(self.st.apply(&name, &args))
            }
        }
    }

    /// An elementwise product at `label`: vectors held there (`∇f ⊙ m`), diagonals of
    /// matrices that hold it twice (`diag Σ`), and at most one longer chain; elementwise
    /// functions with a denominator divide (`∇f/(σ0 √u + ε0)`).
    fn elementwise(&mut self, label: Label, h: &[(usize, usize)]) -> Option<String> {
        use crate::algebra::elem::FExpr;
        let st = self.st;
        let mut top: Vec<String> = Vec::new();
        let mut bottom: Vec<String> = Vec::new();
        let mut chains = 0;
        let mut seen: Vec<usize> = Vec::new();
        for &(k, _) in h {
            if seen.contains(&k) {
                continue;
            }
            seen.push(k);
            let a = &self.atoms[k];
            let holds = a.idx.iter().filter(|l| **l == label).count();
            match (a.idx.len(), holds) {
                (1, 1) => {
                    self.used[k] = true;
                    match a.kind {
                        Kind::One => {}
                        Kind::Elem(id) => {
                            let f = self.vars.elem.get(id);
                            let items: Vec<FExpr> = match f {
                                FExpr::Prod(items) => items.clone(),
                                other => vec![other.clone()],
                            };
                            let (mut num, mut den) = (Vec::new(), Vec::new());
                            for i in items {
                                match i {
                                    FExpr::Pow(b, q) if q < BigRational::zero() => {
                                        den.push(FExpr::Pow(b, -q).simplify())
                                    }
                                    other => num.push(other),
                                }
                            }
                            if !num.is_empty() {
                                let n = FExpr::Prod(num).simplify();
                                let t = fexpr(st, &n, self.vars);
                                top.push(if matches!(n, FExpr::Sum(_)) {
                                    st.paren(&t)
                                } else {
                                    t
                                });
                            }
                            if !den.is_empty() {
                                let d = FExpr::Prod(den).simplify();
                                bottom.push(fexpr(st, &d, self.vars));
                            }
                        }
                        _ => top.push(atom_name(st, a, self.vars)),
                    }
                }
                (2, 2) => {
                    self.used[k] = true;
                    top.push(st.diag(&atom_name(st, a, self.vars)));
                }
                (_, 1) => chains += 1,
                _ => return None,
            }
        }
        if chains > 1 {
            return None;
        }
        if chains == 1 {
            top.push(self.vector(label)?);
        }
        let num = if top.is_empty() {
            "1".to_string()
        } else {
            top.join(st.hadamard())
        };
        if bottom.is_empty() {
            return Some(num);
        }
        let den = bottom.join(st.juxt());
        Some(match st {
            Style::Text => {
                let n = if top.len() > 1 { st.paren(&num) } else { num };
                let d = if den.contains(' ') {
                    st.paren(&den)
                } else {
                    den
                };
                format!("{n}/{d}")
            }
            Style::Latex => st.frac(&num, &den),
        })
    }

    /// A matrix product chain from `from` to `to` (both held once), e.g. `Σ` or `∇²f Σ`.
    fn matrix_between(&mut self, from: Label, to: Label) -> Option<String> {
        let saved = self.used.clone();
        let mut names = Vec::new();
        let mut label = from;
        loop {
            let h = self.holders(label);
            let [(k, slot)] = h[..] else {
                self.used = saved;
                return None;
            };
            let a = &self.atoms[k];
            if a.idx.len() != 2 {
                self.used = saved;
                return None;
            }
            self.used[k] = true;
            names.push(atom_name(self.st, a, self.vars));
            let other = a.idx[1 - slot];
            if other == to {
                return Some(names.join(self.st.juxt()));
            }
            label = other;
        }
    }

    /// A closed scalar component starting at unused atom `k`.
    fn scalar(&mut self, k: usize) -> Option<String> {
        let a = &self.atoms[k];
        match a.idx.len() {
            0 => {
                self.used[k] = true;
                Some(match a.kind {
                    Kind::Elem(id) => fexpr(self.st, self.vars.elem.get(id), self.vars),
                    _ => atom_name(self.st, a, self.vars),
                })
            }
            1 => {
                // u · (what the other end reaches)
                self.used[k] = true;
                let u = atom_name(self.st, a, self.vars);
                let l = a.idx[0];
                // ‖u‖² when the other end is the same factor again.
                let h = self.holders(l);
                if let [(k2, _)] = h[..] {
                    if self.atoms[k2] == self.atoms[k] {
                        self.used[k2] = true;
                        return Some(self.st.norm2(&u));
                    }
                }
                let w = self.vector(l)?;
                Some(self.st.dot(&u, &w))
            }
            2 => {
                // a trace: a cycle of matrices
                let (l0, l1) = (a.idx[0], a.idx[1]);
                self.used[k] = true;
                let name = atom_name(self.st, a, self.vars);
                if l0 == l1 {
                    return Some(self.st.trace(&name, true));
                }
                let rest = self.matrix_between(l1, l0)?;
                Some(
                    self.st
                        .trace(&format!("{name}{}{rest}", self.st.juxt()), false),
                )
            }
            _ => None,
        }
    }
}

/// The tensor part of a term without indices, or `None` where no such form is known.
pub fn term_form(st: Style, t: &Term, free: u8, vars: &Names) -> Option<String> {
    let mut net = Net {
        st,
        atoms: &t.atoms,
        used: vec![false; t.atoms.len()],
        vars,
    };
    // Labels must be held at most twice (no elementwise products) for these forms.
    let mut counts = std::collections::HashMap::new();
    for a in &t.atoms {
        for l in &a.idx {
            *counts.entry(*l).or_insert(0usize) += 1;
        }
    }
    for (l, c) in &counts {
        if (*l >= free && *c < 2) || *c == 0 {
            return None;
        }
    }
    // A single factor carrying every output index in order: just its name (`S`, `Σ`).
    if let [a] = &t.atoms[..] {
        if free >= 2 && a.idx.iter().copied().eq(0..free) {
            return Some(atom_name(st, a, vars));
        }
    }
    let main = match free {
        0 => None,
        1 => Some(net.vector(0)?),
        2 => {
            // A Hadamard product of matrices: every factor holds both output indices.
            let both: Vec<usize> = (0..t.atoms.len())
                .filter(|&k| {
                    let a = &t.atoms[k];
                    a.idx.len() == 2 && a.idx.contains(&0) && a.idx.contains(&1)
                })
                .collect();
            if both.len() >= 2
                && net.holders(0).len() == both.len()
                && net.holders(1).len() == both.len()
            {
                let names: Vec<String> = both
                    .iter()
                    .map(|&k| {
                        net.used[k] = true;
                        atom_name(st, &t.atoms[k], vars)
                    })
                    .collect();
                let circ = match st {
                    Style::Text => " ∘ ",
                    Style::Latex => " \\circ ",
                };
                return finish(st, &mut net, t, Some(names.join(circ)));
            }
            // diag(φ) on either side: elementwise factors held at an output index.
            let mut sides = [Vec::new(), Vec::new()];
            for (side, label) in [(0usize, 0u8), (1, 1)] {
                let h = net.holders(label);
                if h.len() >= 2 {
                    for (k, _) in h {
                        let a = &t.atoms[k];
                        if a.idx.len() == 1 && !net.used[k] {
                            net.used[k] = true;
                            let name = match a.kind {
                                Kind::Elem(id) => fexpr(st, vars.elem.get(id), vars),
                                _ => atom_name(st, a, vars),
                            };
                            sides[side].push(st.diag(&name));
                        }
                    }
                }
            }
            if !sides[0].is_empty() || !sides[1].is_empty() {
                let m = net.matrix_between(0, 1)?;
                let mut parts = sides[0].clone();
                parts.push(m);
                parts.extend(sides[1].iter().cloned());
                return finish(st, &mut net, t, Some(parts.join(st.juxt())));
            }
            let h0 = net.holders(0);
            let [(k, _)] = h0[..] else { return None };
            let a = &t.atoms[k];
            if a.idx.contains(&1) && a.idx.len() == 3 {
                // (w·∇)Σ: a 3-slot factor carrying both outputs
                let other = *a.idx.iter().find(|l| **l >= 2)?;
                net.used[k] = true;
                let Kind::Moment { r, d } = a.kind else {
                    return None;
                };
                let base = st.moment(r, d.saturating_sub(1));
                let w = net.vector(other)?;
                Some(st.directional(&w, &base))
            } else if let Some(m) = net.matrix_between(0, 1) {
                Some(m)
            } else {
                let u = net.vector(0)?;
                let w = net.vector(1)?;
                Some(format!("{u}{}{w}", st.otimes()))
            }
        }
        _ => return None,
    };
    finish(st, &mut net, t, main)
}

/// Appends the closed scalar factors to the main part of a term.
fn finish(st: Style, net: &mut Net, t: &Term, main: Option<String>) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    // A reciprocal of a norm goes below a fraction bar: m/‖m‖, not 1/‖m‖ m.
    let mut below: Option<String> = None;
    for k in 0..t.atoms.len() {
        if net.used[k] {
            continue;
        }
        if let (Kind::Elem(id), true, None) = (t.atoms[k].kind, t.atoms[k].idx.is_empty(), &below) {
            if let Some(d) = reciprocal_of_norm(net.vars.elem.get(id)) {
                net.used[k] = true;
                below = Some(fexpr(st, &d, net.vars));
                continue;
            }
        }
        parts.push(net.scalar(k)?);
    }
    if let Some(d) = below {
        let top = match main {
            Some(m) => m,
            None => parts.pop().unwrap_or_else(|| "1".to_string()),
        };
        parts.push(match st {
            Style::Text if st.is_compound(&top) => format!("({top})/{d}"),
            Style::Text => format!("{top}/{d}"),
            Style::Latex => st.frac(&top, &d),
        });
        return finish_parts(st, parts);
    }
    if let Some(m) = main {
        parts.push(m);
    }
    finish_parts(st, parts)
}

/// `X` when a function is `1/X` with `X` a power of a sum over the index (`‖m‖³`).
fn reciprocal_of_norm(f: &crate::algebra::elem::FExpr) -> Option<crate::algebra::elem::FExpr> {
    use crate::algebra::elem::FExpr;
    match f {
        FExpr::Pow(b, q) if q.is_negative() && matches!(**b, FExpr::Contract(_)) => {
            Some(FExpr::Pow(b.clone(), -q.clone()).simplify())
        }
        _ => None,
    }
}

/// The factors of a term, side by side.
fn finish_parts(st: Style, mut parts: Vec<String>) -> Option<String> {
    if parts.is_empty() {
        parts.push("1".to_string());
    }
    // Scalars in parentheses when they are products of several factors, or inner
    // products: (∇f·m) m, not ∇f·m m.
    let n = parts.len();
    let inner = |p: &str| match st {
        Style::Text => p.contains('·'),
        Style::Latex => p.contains("\\cdot"),
    };
    Some(
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let trace = p.starts_with("tr") || p.starts_with("\\operatorname{tr}");
                let bare = !st.is_parenthesized(&p);
                if n > 1 && i + 1 < n && (st.is_compound(&p) || inner(&p) && bare) && !trace {
                    st.paren(&p)
                } else {
                    p
                }
            })
            .collect::<Vec<_>>()
            .join(st.juxt()),
    )
}

/// The tensor part of a term: index-free if possible, else index notation.
pub fn term_text(st: Style, t: &Term, free: u8, vars: &Names) -> String {
    term_form(st, t, free, vars).unwrap_or_else(|| term_indices(st, t, free, vars))
}

/// A monomial coefficient split as (negative, numerator text, denominator text).
fn monomial(
    st: Style,
    mono: &[(Sym, i32)],
    c: &num_rational::BigRational,
    syms: &Symbols,
    order: &dyn Fn(Sym) -> i32,
) -> (bool, String, String) {
    let negative = c.is_negative();
    let c = c.abs();
    let mut top = String::new();
    let mut bottom = String::new();
    if !c.numer().is_one() {
        top.push_str(&c.numer().to_string());
    }
    if !c.denom().is_one() {
        bottom.push_str(&c.denom().to_string());
    }
    let mut syms_sorted: Vec<(Sym, i32)> = mono.to_vec();
    syms_sorted.sort_by_key(|(s, _)| (order(*s), *s));
    for (s, e) in syms_sorted {
        let name = st.name(syms.name(s));
        let target = if e > 0 { &mut top } else { &mut bottom };
        if st == Style::Latex && !target.is_empty() {
            target.push(' ');
        }
        target.push_str(&name);
        if e.abs() != 1 {
            target.push_str(&st.sup(e.abs() as i64));
        }
    }
    (negative, top, bottom)
}

/// A polynomial coefficient; the small parameter written last in each monomial.
pub fn coefficient(st: Style, p: &Poly, syms: &Symbols, small: Sym) -> (bool, String) {
    let order = |s: Sym| if s == small { 1 } else { 0 };
    let terms: Vec<_> = p.terms().collect();
    if terms.len() == 1 {
        let (m, c) = terms[0];
        let (neg, top, bottom) = monomial(st, m, c, syms, &order);
        let text = match (top.is_empty(), bottom.is_empty()) {
            (true, true) => String::new(),
            (false, true) => top,
            (true, false) => st.frac("1", &bottom),
            (false, false) => st.frac(&top, &bottom),
        };
        return (neg, text);
    }
    let mut s = String::new();
    for (k, (m, c)) in terms.iter().enumerate() {
        let (neg, top, bottom) = monomial(st, m, c, syms, &order);
        if k == 0 {
            if neg {
                s.push('-');
            }
        } else {
            s.push_str(if neg { " - " } else { " + " });
        }
        let t = match (top.is_empty(), bottom.is_empty()) {
            (true, true) => "1".to_string(),
            (false, true) => top,
            (true, false) => st.frac("1", &bottom),
            (false, false) => st.frac(&top, &bottom),
        };
        s.push_str(&t);
    }
    (false, st.paren(&s))
}

/// A tensor expression in its most compact known form: the factored sum below, or the
/// equality-saturation form of [`crate::simplify::compact`] where that is shorter.
pub fn texpr(st: Style, e: &TExpr, syms: &Symbols, small: Sym, vars: &Names) -> String {
    let plain = texpr_by_order(st, e, syms, small, vars);
    match crate::simplify::compact(e, syms) {
        Some((node, leaves)) => {
            let cx = NodeCtx {
                st,
                leaves: &leaves,
                free: e.free,
                syms,
                small,
                vars,
            };
            let compact = node_text(&cx, &node);
            if compact.chars().count() < plain.chars().count() {
                compact
            } else {
                plain
            }
        }
        None => plain,
    }
}

/// What printing a compact tree needs besides the tree.
struct NodeCtx<'a> {
    st: Style,
    leaves: &'a [Term],
    free: u8,
    syms: &'a Symbols,
    small: Sym,
    vars: &'a Names<'a>,
}

/// (negative, text) of a node, the sign pulled out where it leads.
fn node_signed(cx: &NodeCtx, n: &Node, nested: bool) -> (bool, String) {
    let NodeCtx {
        st,
        leaves,
        free,
        syms,
        small,
        vars,
    } = *cx;
    match n {
        Node::Sum(items) => {
            // lowest power of the small parameter first; a leading minus is pulled out
            let mut items: Vec<&Node> = items.iter().collect();
            items.sort_by_key(|i| small_order(i, small));
            let signed: Vec<(bool, String)> =
                items.iter().map(|i| node_signed(cx, i, true)).collect();
            let flip = nested && signed.first().is_some_and(|(neg, _)| *neg);
            let mut out = String::new();
            for (neg, t) in signed {
                push_sign(&mut out, neg != flip);
                out.push_str(&t);
            }
            (flip, out)
        }
        Node::Product(items) => {
            // numbers and symbol powers form the coefficient; sums and the leaf follow
            let mut coef = Poly::one();
            let mut scalar_sums = Vec::new();
            let mut tensor_parts = Vec::new();
            let mut flips = false;
            for i in items {
                match i {
                    Node::Num(r) => coef = coef.mul(&Poly::constant(r.clone())),
                    Node::Power(s, k) => coef = coef.mul(&Poly::power(*s, *k)),
                    Node::Leaf(_) => tensor_parts.push(node_signed(cx, i, true).1),
                    Node::Sum(_) => {
                        let (neg, t) = node_signed(cx, i, true);
                        flips ^= neg;
                        if has_leaf(i) {
                            tensor_parts.push(st.paren(&t));
                        } else {
                            scalar_sums.push(st.paren(&t));
                        }
                    }
                    other => tensor_parts.push(node_signed(cx, other, true).1),
                }
            }
            let (neg, c) = coefficient(st, &coef, syms, small);
            let neg = neg ^ flips;
            let mut text = String::new();
            if !c.is_empty() {
                text.push_str(&c);
            }
            let followed = !scalar_sums.is_empty() || !tensor_parts.is_empty();
            if followed && st.coef_needs_paren(&c) {
                text = st.paren(&text);
            }
            for s in &scalar_sums {
                text.push_str(s);
            }
            for (k, t) in tensor_parts.iter().enumerate() {
                if k > 0 || !text.is_empty() && !st.is_parenthesized(t) {
                    text.push_str(st.juxt());
                }
                text.push_str(t);
            }
            if text.is_empty() {
                text.push('1');
            }
            (neg, text)
        }
        Node::Num(r) => {
            let (neg, c) = coefficient(st, &Poly::constant(r.clone()), syms, small);
            (neg, if c.is_empty() { "1".to_string() } else { c })
        }
        Node::Power(s, k) => coefficient(st, &Poly::power(*s, *k), syms, small),
        Node::Leaf(i) => (false, term_text(st, &leaves[*i], free, vars)),
    }
}

/// The lowest power of the small parameter in a node (for ordering sums).
fn small_order(n: &Node, small: Sym) -> i32 {
    match n {
        Node::Power(s, k) if *s == small => *k,
        Node::Sum(v) => v.iter().map(|i| small_order(i, small)).min().unwrap_or(0),
        Node::Product(v) => v.iter().map(|i| small_order(i, small)).sum(),
        _ => 0,
    }
}

fn has_leaf(n: &Node) -> bool {
    match n {
        Node::Leaf(_) => true,
        Node::Sum(v) | Node::Product(v) => v.iter().any(has_leaf),
        _ => false,
    }
}

fn node_text(cx: &NodeCtx, n: &Node) -> String {
    let (neg, t) = node_signed(cx, n, false);
    if neg {
        format!("-{t}")
    } else {
        t
    }
}

/// A tensor expression as a sum, ordered by the power of the small parameter.
pub fn texpr_by_order(st: Style, e: &TExpr, syms: &Symbols, small: Sym, vars: &Names) -> String {
    if e.is_zero() {
        return "0".to_string();
    }
    // Split every coefficient by power of the small parameter.
    let mut items: Vec<(i32, String, Poly)> = Vec::new();
    for (t, c) in &e.terms {
        let text = term_text(st, t, e.free, vars);
        let mut powers: Vec<i32> = c.terms().map(|(m, _)| Poly::exponent(m, small)).collect();
        powers.sort_unstable();
        powers.dedup();
        for p in powers {
            let part = c.coeff(small, p).shift(small, p);
            items.push((p, text.clone(), part));
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    // Within each power of the small parameter (beyond the leading one), factor out
    // the common monomial: `-(h/2)(λ² v + λ ∇f + ∇²f v)`.
    let mut out = String::new();
    let mut k = 0;
    while k < items.len() {
        let p = items[k].0;
        let end = items[k..]
            .iter()
            .position(|it| it.0 != p)
            .map_or(items.len(), |n| k + n);
        let group: Vec<(String, Poly)> = items[k..end]
            .iter()
            .map(|(_, t, c)| (t.clone(), c.clone()))
            .collect();
        let common = if p != 0 && group.len() >= 2 {
            common_factor(&group)
        } else {
            None
        };
        match common {
            Some(factor) => {
                let inner: Vec<(String, Poly)> = group
                    .iter()
                    .map(|(t, c)| (t.clone(), c.mul(&factor.inverse().expect("a monomial"))))
                    .collect();
                let (neg, coef) = coefficient(st, &factor, syms, small);
                push_sign(&mut out, neg);
                let coef = if st.coef_needs_paren(&coef) {
                    st.paren(&coef)
                } else {
                    coef
                };
                let _ = write!(
                    out,
                    "{coef}{}",
                    st.paren(&sum_text(st, &inner, syms, small))
                );
            }
            None => {
                for (t, c) in &group {
                    let (neg, coef) = coefficient(st, c, syms, small);
                    push_sign(&mut out, neg);
                    push_term(st, &mut out, &coef, t);
                }
            }
        }
        k = end;
    }
    out
}

fn push_sign(out: &mut String, negative: bool) {
    let sign = match (out.is_empty(), negative) {
        (true, true) => "-",
        (true, false) => "",
        (false, true) => " - ",
        (false, false) => " + ",
    };
    out.push_str(sign);
}

fn push_term(st: Style, out: &mut String, coef: &str, text: &str) {
    let is_one = text == "1";
    match (coef.is_empty(), is_one) {
        (true, _) => out.push_str(text),
        (false, true) => out.push_str(coef),
        (false, false) if st.coef_needs_paren(coef) => {
            let _ = write!(out, "{}{}{text}", st.paren(coef), st.juxt());
        }
        (false, false) => {
            let _ = write!(out, "{coef}{}{text}", st.juxt());
        }
    }
}

fn sum_text(st: Style, items: &[(String, Poly)], syms: &Symbols, small: Sym) -> String {
    let mut out = String::new();
    for (t, c) in items {
        let (neg, coef) = coefficient(st, c, syms, small);
        push_sign(&mut out, neg);
        push_term(st, &mut out, &coef, t);
    }
    out
}

/// The common monomial of single-monomial coefficients (sign of the first, gcd of the
/// rationals, smallest shared powers), if it is not 1.
fn common_factor(group: &[(String, Poly)]) -> Option<Poly> {
    use num_integer::Integer;
    let mut monos = Vec::new();
    for (_, c) in group {
        if c.len() != 1 {
            return None;
        }
        let (m, r) = c.terms().next()?;
        monos.push((m.clone(), r.clone()));
    }
    let all_negative = monos.iter().all(|(_, r)| r.is_negative());
    let mut num = monos[0].1.numer().abs();
    let mut den = monos[0].1.denom().clone();
    for (_, r) in &monos[1..] {
        num = num.gcd(&r.numer().abs());
        den = den.lcm(r.denom());
    }
    let mut rat = num_rational::BigRational::new(num, den);
    if all_negative {
        rat = -rat;
    }
    // Symbols present in every monomial with exponents of one sign.
    let mut shared: Vec<(Sym, i32)> = Vec::new();
    for (s, e) in &monos[0].0 {
        let exps: Option<Vec<i32>> = monos
            .iter()
            .map(|(m, _)| m.iter().find(|(t, _)| t == s).map(|(_, x)| *x))
            .collect();
        if let Some(exps) = exps {
            if exps.iter().all(|x| x.signum() == e.signum()) {
                let pick = if *e > 0 {
                    *exps.iter().min()?
                } else {
                    *exps.iter().max()?
                };
                shared.push((*s, pick));
            }
        }
    }
    let factor = Poly::from_term(shared, rat);
    (factor != Poly::one()).then_some(factor)
}

/// A drift written as the gradient of its potential, `-∇(f + (η/4)‖∇f‖²)`.
pub struct Gradient {
    negative: bool,
    potential: TExpr,
}

impl Gradient {
    /// The gradient form of a drift with at least two terms, if it is a gradient.
    pub fn of(sme: &Sme, drift: &TExpr) -> Option<Gradient> {
        if drift.len() < 2 {
            return None;
        }
        // In the result's own table of elementwise functions (the thread's may hold
        // another derivation's).
        let phi = crate::algebra::elem::scoped(sme.elem.clone(), || {
            crate::simplify::potential(drift, sme.dim)
        })
        .0?;
        // The sign that makes f's own coefficient positive.
        let lead = phi
            .terms
            .iter()
            .find(|(t, _)| matches!(&t.atoms[..], [a] if a.kind == Kind::DF(0)))
            .map(|(_, c)| c)
            .or_else(|| phi.terms.values().next());
        let negative = lead.is_some_and(|c| c.leading_negative());
        let potential = if negative {
            phi.scale(&Poly::int(-1))
        } else {
            phi
        };
        Some(Gradient {
            negative,
            potential,
        })
    }

    pub fn render(&self, st: Style, sme: &Sme, vars: &Names) -> String {
        let inner = texpr(st, &self.potential, &sme.symbols, sme.small, vars);
        format!(
            "{}{}{}",
            if self.negative { "-" } else { "" },
            st.nabla(1),
            st.paren(&inner)
        )
    }
}

/// The SME as a readable text report.
pub fn render(sme: &Sme) -> String {
    let st = Style::Text;
    let syms = &sme.symbols;
    let small = sme.small;
    let vars = Names::of(sme);
    let pv = |i: usize| pretty_name(&vars[i]);
    let small_name = pretty_name(syms.name(small));
    let mut out = String::new();
    if sme.order == 0 {
        let _ = writeln!(
            out,
            "SME of {} — no weak order: a condition of order 1 fails (see the conditions)\n  the drift and diffusion below match the first two moments only",
            sme.optimizer
        );
    } else {
        let _ = writeln!(
            out,
            "SME of {} — weak order {}{}",
            sme.optimizer,
            sme.order,
            if sme.order < sme.requested_order {
                format!(
                    " (order {} was asked for; see the conditions)",
                    sme.requested_order
                )
            } else {
                String::new()
            }
        );
    }
    let (_, tau) = coefficient(st, &sme.time, syms, small);
    let _ = writeln!(
        out,
        "  one step = time {tau};  dZ = b(Z) dt + σ(Z) dW,  D = σσᵀ"
    );
    let state: Vec<String> = sme
        .vars
        .iter()
        .map(|v| {
            format!(
                "{} ({})",
                pretty_name(&v.name),
                if v.scalar { "scalar" } else { "in R^d" }
            )
        })
        .collect();
    let _ = writeln!(out, "  state: {}", state.join(", "));
    for e in &sme.eliminated {
        let (_, rate) = coefficient(st, &e.rate, syms, small);
        let _ = writeln!(
            out,
            "  eliminated: {} is fast (relaxes at rate 1 − {rate} per step onto its slow manifold; see the notes)",
            pretty_name(&e.name)
        );
    }
    let noise: Vec<String> = sme
        .noise
        .iter()
        .map(|n| {
            let what = match (&n.scale, n.kind) {
                (Some(c), _) => format!("Gaussian, covariance {}", scaled_identity(c, sme)),
                (None, crate::syntax::NoiseKind::Gaussian) => "Gaussian, covariance Σ".to_string(),
                (None, crate::syntax::NoiseKind::General) => {
                    "mean 0, covariance Σ, third moment S".to_string()
                }
            };
            format!("{} {what}", pretty_name(&n.name))
        })
        .collect();
    if !noise.is_empty() {
        let _ = writeln!(out, "  noise: {}", noise.join("; "));
    }
    out.push_str("\ndrift\n");
    for (i, b) in sme.drift.iter().enumerate() {
        let head = format!("  b_{} = ", pv(i));
        let note = if sme.clock == Some(i) {
            format!("  (the clock: step k is at time t = k·{tau})")
        } else {
            String::new()
        };
        let _ = writeln!(out, "{head}{}{note}", texpr(st, b, syms, small, &vars));
        // A gradient drift also as the gradient of its potential.
        if i == 0 {
            if let Some(g) = Gradient::of(sme, b) {
                let _ = writeln!(
                    out,
                    "{:width$}= {}",
                    "",
                    g.render(st, sme, &vars),
                    width = head.chars().count() - 2
                );
            }
        }
    }
    out.push_str("\ndiffusion\n");
    let mut any = false;
    for d in &sme.diffusion {
        if d.expr.is_zero() {
            continue;
        }
        any = true;
        let _ = writeln!(
            out,
            "  D_{}{} = {}",
            pv(d.rows),
            pv(d.cols),
            texpr(st, &d.expr, syms, small, &vars)
        );
    }
    if !any {
        out.push_str("  0 (the equation is deterministic at this order)\n");
    }
    if sme.diffusion_from_next_order {
        let _ = writeln!(
            out,
            "  (order {} does not constrain the diffusion; shown is the leading diffusion that order {} forces)",
            sme.order,
            sme.order + 1
        );
    }
    out.push_str("\nconditions\n");
    if sme.conditions.is_empty() {
        out.push_str("  none: every moment beyond the first two matches\n");
    }
    for c in &sme.conditions {
        let moment: Vec<String> = c.vars.iter().map(|&v| format!("Δ{}", pv(v))).collect();
        let _ = writeln!(
            out,
            "  order {} needs E[{}] to match at {}{}: residual {} ≠ 0",
            c.needed_for_order,
            moment.join(" ⊗ "),
            small_name,
            sup(c.power as i64),
            texpr(st, &c.residual, syms, small, &vars)
        );
        let only_moments = c.residual.terms.keys().all(|t| {
            t.atoms
                .iter()
                .all(|a| matches!(a.kind, Kind::Moment { r, .. } if r >= 3))
        });
        if only_moments {
            let _ = writeln!(
                out,
                "    the residual is a higher moment of the gradient noise: no Itô SDE driven by Brownian motion reproduces it; it vanishes for Gaussian (or symmetric) noise, declared with `noise … ~ gaussian`"
            );
        }
    }
    if !sme.notes.is_empty() {
        out.push_str("\nnotes\n");
        for n in &sme.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    out.push_str("\ncertificate (discrete minus SDE one-step moments)\n");
    for r in &sme.certificate {
        let moment: Vec<String> = r.vars.iter().map(|&v| format!("Δ{}", pv(v))).collect();
        let lead = match &r.leading {
            None => String::new(),
            Some((n, terms)) => format!(
                "; first difference at {small_name}{} ({terms} term{})",
                sup(*n as i64),
                if *terms == 1 { "" } else { "s" }
            ),
        };
        let _ = writeln!(
            out,
            "  E[{}]: equal through {small_name}{}{lead}",
            moment.join(" ⊗ "),
            sup(r.matched_through as i64)
        );
    }
    if let Some(check) = &sme.independent {
        out.push_str("\nindependent check (the rule's own one-step moments against the SDE's)\n");
        let _ = writeln!(out, "  {}", check.summary());
        if !check.law.is_empty() {
            let _ = writeln!(out, "  on: {}", check.law);
        }
    }
    out
}

/// Unicode subscript digits (`12` → `₁₂`), 1-based component numbers.
fn sub(i: usize) -> String {
    const D: [char; 10] = ['₀', '₁', '₂', '₃', '₄', '₅', '₆', '₇', '₈', '₉'];
    (i + 1)
        .to_string()
        .chars()
        .map(|c| D[c.to_digit(10).unwrap_or(0) as usize])
        .collect()
}

fn subs(idx: &[usize]) -> String {
    if idx.iter().any(|i| *i >= 9) {
        let parts: Vec<String> = idx.iter().map(|i| (i + 1).to_string()).collect();
        return format!("_{{{}}}", parts.join(","));
    }
    idx.iter().map(|i| sub(*i)).collect()
}

fn component_factor(f: &super::components::CFactor, sme: &Sme) -> String {
    use super::components::CFactor;
    let st = Style::Text;
    let name = |v: u8| st.name(&sme.vars[v as usize].name);
    match f {
        CFactor::DerivF(idx) if idx.is_empty() => "f".to_string(),
        CFactor::DerivF(idx) => format!("∂{}f", subs(idx)),
        CFactor::Moment { r, idx, deriv } => {
            let base = format!("{}{}", st.moment(*r, 0), subs(idx));
            if deriv.is_empty() {
                base
            } else {
                format!("∂{}{base}", subs(deriv))
            }
        }
        CFactor::State { var, index } => match index {
            Some(i) => format!("{}{}", name(*var), sub(*i)),
            None => name(*var),
        },
        CFactor::Elem { id, index } => {
            let vars: Vec<String> = sme
                .vars
                .iter()
                .map(|v| match (index, v.scalar) {
                    (Some(i), false) => format!("{}{}", v.name, sub(*i)),
                    _ => v.name.clone(),
                })
                .collect();
            let names = Names {
                vars,
                elem: &sme.elem,
                syms: &sme.symbols,
                small: sme.small,
            };
            st.paren(&fexpr(st, sme.elem.get(*id), &names))
        }
        CFactor::Noise { index, .. } | CFactor::Disp { index, .. } => {
            format!("?{}", index.map(sub).unwrap_or_default())
        }
        CFactor::Pair { id, i, j } => format!("P{id}{}{}", sub(*i), sub(*j)),
    }
}

/// A sum of component terms as text.
fn component_sum(terms: &[super::components::CTerm], sme: &Sme) -> String {
    if terms.is_empty() {
        return "0".to_string();
    }
    let st = Style::Text;
    let mut out = String::new();
    for t in terms {
        let factors: Vec<String> = t.factors.iter().map(|f| component_factor(f, sme)).collect();
        let text = if factors.is_empty() {
            "1".to_string()
        } else {
            factors.join(" ")
        };
        let (neg, coef) = coefficient(st, &t.coef, &sme.symbols, sme.small);
        push_sign(&mut out, neg);
        push_term(st, &mut out, &coef, &text);
    }
    out
}

/// The drift and diffusion component by component, for dimension `d`
/// (`b_x₁ = -∂₁f - (η/2) ∂₁f ∂₁₁f - (η/2) ∂₂f ∂₁₂f`).
pub fn render_components(sme: &Sme, d: usize) -> String {
    let mut out = format!(
        "SME of {} — weak order {}, component by component in dimension {d}\n",
        sme.optimizer, sme.order
    );
    out.push_str(&components_body(sme, d));
    out
}

/// The `drift` and `diffusion` sections of [`render_components`].
pub(super) fn components_body(sme: &Sme, d: usize) -> String {
    use super::components::components;
    let st = Style::Text;
    let mut out = String::new();
    out.push_str("\ndrift\n");
    for (i, b) in sme.drift.iter().enumerate() {
        let name = st.name(&sme.vars[i].name);
        for (idx, terms) in components(sme, b, d) {
            let _ = writeln!(
                out,
                "  b_{name}{} = {}",
                subs(&idx),
                component_sum(&terms, sme)
            );
        }
    }
    out.push_str("\ndiffusion\n");
    for blk in &sme.diffusion {
        if blk.expr.is_zero() {
            continue;
        }
        let (a, c) = (
            st.name(&sme.vars[blk.rows].name),
            st.name(&sme.vars[blk.cols].name),
        );
        for (idx, terms) in components(sme, &blk.expr, d) {
            if terms.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "  D_{a}{c}{} = {}",
                subs(&idx),
                component_sum(&terms, sme)
            );
        }
    }
    out
}

/// `c I` for a fixed noise covariance (`I` alone when c = 1).
fn scaled_identity(c: &Poly, sme: &Sme) -> String {
    let (neg, text) = coefficient(Style::Text, c, &sme.symbols, sme.small);
    match (neg, text.is_empty()) {
        (false, true) => "I".to_string(),
        (true, true) => "-I".to_string(),
        (neg, false) => format!("{}{text} I", if neg { "-" } else { "" }),
    }
}

#[cfg(test)]
mod tests {
    //! The text printer read back: random functions are printed, parsed by a reader
    //! written here from the notation alone (juxtaposition and `/` multiply and divide
    //! left to right, superscripts and `^(p/q)` bind tightest, `-` in front negates), and
    //! the parse evaluated against the function's own evaluator. A sign or a parenthesis
    //! the printer drops changes the value at almost every random point.
    use super::*;
    use crate::algebra::elem::FExpr;
    use num_rational::BigRational;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn unit(&mut self) -> f64 {
            self.next() as f64 / (1u64 << 31) as f64
        }
    }

    fn random(r: &mut Lcg, depth: u32, in_abs: bool) -> FExpr {
        let leaf = depth == 0 || r.below(4) == 0;
        if leaf {
            return match r.below(3) {
                0 => FExpr::Const(Poly::constant(BigRational::new(
                    (r.below(7) as i64 - 3).into(),
                    (1 + r.below(3) as i64).into(),
                ))),
                k => FExpr::Var(k as u8 - 1),
            };
        }
        let sub = |r: &mut Lcg| random(r, depth - 1, in_abs);
        match r.below(11) {
            8 => FExpr::Sign(Box::new(sub(r))),
            9 => FExpr::Log(Box::new(FExpr::Sum(vec![
                FExpr::Pow(Box::new(sub(r)), BigRational::from_integer(2.into())),
                FExpr::one(),
            ]))),
            0 | 1 => FExpr::Sum((0..2 + r.below(2)).map(|_| sub(r)).collect()),
            2 | 3 => FExpr::Prod((0..2 + r.below(2)).map(|_| sub(r)).collect()),
            4 => {
                let q = [(-1, 1), (2, 1), (-2, 1), (1, 2), (-1, 2), (3, 2), (-3, 2)]
                    [r.below(7) as usize];
                // Roots of squares keep the base's sign out of the picture.
                let b = sub(r);
                let b = if q.1 == 2 {
                    FExpr::Sum(vec![
                        FExpr::Pow(Box::new(b), BigRational::from_integer(2.into())),
                        FExpr::one(),
                    ])
                } else {
                    b
                };
                FExpr::Pow(Box::new(b), BigRational::new(q.0.into(), q.1.into()))
            }
            5 if !in_abs => FExpr::Abs(Box::new(random(r, depth - 1, true))),
            6 => FExpr::Ncdf(Box::new(sub(r))),
            7 => FExpr::Npdf(Box::new(sub(r))),
            _ => FExpr::Exp(Box::new(FExpr::Prod(vec![
                FExpr::Const(Poly::constant(BigRational::new(1.into(), 4.into()))),
                sub(r),
            ]))),
        }
    }

    /// A reader of the text notation over the variables `a` and `b`.
    struct Reader<'s> {
        s: Vec<char>,
        at: usize,
        vals: [f64; 2],
        _src: &'s str,
    }

    impl Reader<'_> {
        fn peek(&self) -> Option<char> {
            self.s.get(self.at).copied()
        }
        fn skip_spaces(&mut self) -> bool {
            let start = self.at;
            while self.peek() == Some(' ') {
                self.at += 1;
            }
            self.at > start
        }
        fn eat(&mut self, c: char) -> bool {
            if self.peek() == Some(c) {
                self.at += 1;
                true
            } else {
                false
            }
        }
        fn expect(&mut self, c: char) {
            assert!(
                self.eat(c),
                "expected {c:?} at {} in {:?}",
                self.at,
                self._src
            );
        }
        fn sum(&mut self, in_abs: bool) -> f64 {
            let mut v = if self.eat('-') {
                -self.product(in_abs)
            } else {
                self.product(in_abs)
            };
            loop {
                let save = self.at;
                self.skip_spaces();
                if self.eat('+') {
                    self.skip_spaces();
                    v += self.product(in_abs);
                } else if self.eat('-') {
                    self.skip_spaces();
                    v -= self.product(in_abs);
                } else {
                    self.at = save;
                    return v;
                }
            }
        }
        fn starts_factor(&self, in_abs: bool) -> bool {
            match self.peek() {
                Some('|') => !in_abs,
                Some(c) => c.is_ascii_alphanumeric() || "(√Φφ".contains(c),
                None => false,
            }
        }
        fn product(&mut self, in_abs: bool) -> f64 {
            let mut v = self.power(in_abs);
            loop {
                let save = self.at;
                if self.eat('/') {
                    v /= self.power(in_abs);
                } else if self.skip_spaces() && self.starts_factor(in_abs) {
                    v *= self.power(in_abs);
                } else {
                    self.at = save;
                    return v;
                }
            }
        }
        fn power(&mut self, in_abs: bool) -> f64 {
            let mut v = self.atom(in_abs);
            loop {
                let sup = "⁰¹²³⁴⁵⁶⁷⁸⁹";
                if self.peek() == Some('⁻') || self.peek().is_some_and(|c| sup.contains(c)) {
                    let neg = self.eat('⁻');
                    let mut n = 0i32;
                    while let Some(d) = self.peek().and_then(|c| sup.chars().position(|s| s == c)) {
                        n = 10 * n + d as i32;
                        self.at += 1;
                    }
                    v = v.powi(if neg { -n } else { n });
                } else if self.peek() == Some('^') {
                    self.at += 1;
                    self.expect('(');
                    let q = self.sum(false);
                    self.expect(')');
                    v = v.powf(q);
                } else {
                    return v;
                }
            }
        }
        fn atom(&mut self, in_abs: bool) -> f64 {
            if self.eat('-') {
                return -self.power(in_abs);
            }
            if self.eat('(') {
                let v = self.sum(false);
                self.expect(')');
                return v;
            }
            if self.eat('|') {
                let v = self.sum(true);
                self.expect('|');
                return v.abs();
            }
            if self.eat('√') {
                return self.atom(in_abs).sqrt();
            }
            for (name, f) in [
                ("Φ", crate::numeric::gauss::ncdf as fn(f64) -> f64),
                ("φ", crate::numeric::gauss::npdf),
                ("exp", f64::exp),
                ("erf", crate::numeric::gauss::erf),
                ("sign", |x: f64| if x == 0.0 { 0.0 } else { x.signum() }),
                ("log", f64::ln),
            ] {
                let n: Vec<char> = name.chars().collect();
                if self.s[self.at..].starts_with(&n) {
                    self.at += n.len();
                    self.expect('(');
                    let v = self.sum(false);
                    self.expect(')');
                    return f(v);
                }
            }
            let start = self.at;
            while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                self.at += 1;
            }
            if self.at > start {
                let t: String = self.s[start..self.at].iter().collect();
                return t.parse().expect("a number");
            }
            match self.peek() {
                Some('a') => {
                    self.at += 1;
                    self.vals[0]
                }
                Some('b') => {
                    self.at += 1;
                    self.vals[1]
                }
                c => panic!("unexpected {c:?} at {} in {:?}", self.at, self._src),
            }
        }
    }

    #[test]
    fn printed_functions_read_back_to_their_values() {
        let table = crate::algebra::elem::Table::default();
        let mut syms = Symbols::default();
        let small = syms.intern("eta");
        let names = Names {
            vars: vec!["a".to_string(), "b".to_string()],
            elem: &table,
            syms: &syms,
            small,
        };
        let mut r = Lcg(7);
        let mut checked = 0;
        for _ in 0..3000 {
            let f = random(&mut r, 4, false).simplify();
            let text = fexpr(Style::Text, &f, &names);
            for _ in 0..3 {
                let vals = [2.0 * r.unit() - 1.0, 2.0 * r.unit() - 1.0];
                let want = f.eval(&|v| vals[v as usize], &|_| 0.0);
                if !want.is_finite() || want.abs() > 1e6 {
                    continue;
                }
                let mut reader = Reader {
                    s: text.chars().collect(),
                    at: 0,
                    vals,
                    _src: &text,
                };
                let got = reader.sum(false);
                assert_eq!(reader.at, reader.s.len(), "unread text in {text:?}");
                assert!(
                    (got - want).abs() <= 1e-9 * (1.0 + want.abs()),
                    "{text:?} at a = {}, b = {}: reads {got}, is {want} ({f:?})",
                    vals[0],
                    vals[1]
                );
                checked += 1;
            }
        }
        assert!(checked > 3000, "only {checked} points checked");
    }
}
