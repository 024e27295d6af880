//! NumPy export: the SME as a self-contained Python module.
//!
//! [`render`] writes a module that needs only `numpy`. For an optimizer with states
//! `x, m, u, t` (the parameter first, `t` a scalar) whose SME reads `∇f` and `Σ` and has
//! hyperparameters `eta, c1, …` it defines
//!
//! ```text
//! drift(x, m, u, t, *, grad_f, Sigma, eta, c1, ...)      -> (b_x, b_m, b_u, b_t)
//! diffusion(x, m, u, t, *, grad_f, Sigma, eta, c1, ...)  -> {("x", "x"): D_xx, ("x", "m"): D_xm, ...}
//! time_per_step(*, eta, c1, ...)                         -> float
//! ```
//!
//! - **State**: positional, in the order of the SME's state variables; a vector state
//!   is a 1-d array of length `d` (the dimension is `len(x)`), a scalar state a float.
//! - **Inputs**: keyword-only, the objective and the gradient noise at the parameter:
//!   arrays evaluated by the caller, or callables of the parameter (`grad_f=my_grad` is
//!   called as `my_grad(x)`); only those the SME reads appear, and `drift` and
//!   `diffusion` take the same set (so one dict of keyword arguments serves both).
//!   `∇^k f` is `f` (k = 0), `grad_f`, `hess_f`, then `d3f`, `d4f`, … (shape `(d,)*k`);
//!   the noise moments `M_r` are `Sigma` (r = 2, the covariance), `S` (r = 3), `M4`, `M5`,
//!   …, and their derivatives in the parameter `dSigma`, `d2Sigma`, `dS`, … (shape
//!   `(d,)*(r + j)`: the moment's r slots first, then the j derivative slots).
//! - **Hyperparameters**: keyword-only floats, every coefficient symbol of the
//!   derivation (the small parameter and the hyperparameters) but the dimension.
//! - `drift` returns a tuple, one entry per state (an array of shape `(d,)`, or a
//!   `numpy.float64` for a scalar state); `diffusion` a dict keyed by pairs of state
//!   names `(a, c)` for `a ≤ c` in state order, with the block `D^{ac}` of `D = σσᵀ`
//!   (shape `(d, d)`, `(d,)` when one of the two is a scalar, a float for two scalars;
//!   `D^{ca}` is its transpose). Zero blocks are present, as zeros.
//!
//! Each term is one `np.einsum` call with the term's index pattern (output indices
//! `i, j`, summed ones `k, l, …`), times its coefficient evaluated from the
//! hyperparameters; a term with a single factor in output order is that factor. The
//! elementwise functions of the state (`1/(ε0 + σ0 √u)`, `exp(-c t)`) are computed once
//! per call as NumPy expressions of the state components (`np.sqrt`, `np.exp`,
//! `np.log`, powers). A constant the derivation kept as an opaque symbol (such as
//! `sqrt(c)` or `log(2)`) is computed from the hyperparameters.
//!
//! Names: Python names of states and hyperparameters are the optimizer file's names,
//! except that Greek letters are spelled out (`β1` → `beta1`), other non-ASCII
//! characters become `uXXXX`, a leading `_` gets a `v` in front, and a name that is a
//! Python keyword (`lambda`), `np` or an input's name (`S`, `Sigma`) gets a trailing `_`.
//! The module's `STATE` and `HYPERS` record the mapping; `INPUTS` describes every input
//! (`("f", k)` for `∇^k f`, `("M", r, j)` for `∂^j M_r`), so a driver can fill them
//! generically. All generated locals start with `_`.

use super::notation::Style;
use super::text::{texpr, Names};
use crate::algebra::elem::FExpr;
use crate::algebra::poly::{Poly, Sym};
use crate::algebra::tensor::{Kind, Label, TExpr, Term};
use crate::sme::Sme;
use num_rational::BigRational;
use num_traits::{One, Signed};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Python's keywords (hard ones; soft keywords are valid names).
const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Greek letters spelled out, for ASCII Python names.
const GREEK: &[(char, &str)] = &[
    ('α', "alpha"),
    ('β', "beta"),
    ('γ', "gamma"),
    ('δ', "delta"),
    ('ε', "epsilon"),
    ('ϵ', "epsilon"),
    ('ζ', "zeta"),
    ('η', "eta"),
    ('θ', "theta"),
    ('ϑ', "theta"),
    ('ι', "iota"),
    ('κ', "kappa"),
    ('λ', "lambda"),
    ('μ', "mu"),
    ('µ', "mu"),
    ('ν', "nu"),
    ('ξ', "xi"),
    ('ο', "omicron"),
    ('π', "pi"),
    ('ρ', "rho"),
    ('σ', "sigma"),
    ('ς', "sigma"),
    ('τ', "tau"),
    ('υ', "upsilon"),
    ('φ', "phi"),
    ('ϕ', "phi"),
    ('χ', "chi"),
    ('ψ', "psi"),
    ('ω', "omega"),
    ('Γ', "Gamma"),
    ('Δ', "Delta"),
    ('Θ', "Theta"),
    ('Λ', "Lambda"),
    ('Ξ', "Xi"),
    ('Π', "Pi"),
    ('Σ', "Sigma"),
    ('Φ', "Phi"),
    ('Ψ', "Psi"),
    ('Ω', "Omega"),
];

/// Einsum letters: output indices first (`i`, `j`), then the summed ones.
const LETTERS: &str = "ijklmnopqrstuvwxyzabcdefghIJKLMNOPQRSTUVWXYZABCDEFGH";

/// The Python name of the input `∇^k f`.
pub(super) fn df_name(k: u8) -> String {
    match k {
        0 => "f".to_string(),
        1 => "grad_f".to_string(),
        2 => "hess_f".to_string(),
        k => format!("d{k}f"),
    }
}

/// The Python name of the input `∂^j M_r`.
pub(super) fn moment_name(r: u8, j: u8) -> String {
    let base = match r {
        2 => "Sigma".to_string(),
        3 => "S".to_string(),
        r => format!("M{r}"),
    };
    match j {
        0 => base,
        1 => format!("d{base}"),
        j => format!("d{j}{base}"),
    }
}

/// Whether `name` is one of the input names (for any order of derivative or moment).
fn is_input_name(name: &str) -> bool {
    (0..=12).any(|k| df_name(k) == name)
        || (2..=12).any(|r| (0..=12).any(|j| moment_name(r, j) == name))
}

/// An ASCII Python identifier for an optimizer-file name (before de-duplication).
fn ascii_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if let Some((_, s)) = GREEK.iter().find(|(g, _)| *g == c) {
            out.push_str(s);
        } else {
            let _ = write!(out, "u{:04x}", c as u32);
        }
    }
    if out.is_empty() || out.starts_with('_') || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'v');
    }
    out
}

/// Whether a symbol's name is a plain name (a hyperparameter or the small parameter)
/// rather than an opaque constant such as `sqrt(c)`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// How every name of the SME is spelled in Python.
struct Py<'a> {
    sme: &'a Sme,
    /// By state variable.
    states: Vec<String>,
    /// By symbol number: the Python expression standing for the symbol's value (a
    /// keyword argument, `_d`, or the local `_cN` of an opaque constant).
    syms: Vec<String>,
    /// The symbols that are keyword arguments, in table order: (symbol, Python name).
    hypers: Vec<(Sym, String)>,
    /// Opaque constants: (symbol, Python expression in the hyperparameters).
    opaque: Vec<(Sym, String)>,
}

impl<'a> Py<'a> {
    fn new(sme: &'a Sme) -> Py<'a> {
        let mut taken: BTreeSet<String> = BTreeSet::new();
        let mut fresh = |raw: &str| {
            let mut n = ascii_name(raw);
            while PYTHON_KEYWORDS.contains(&n.as_str())
                || n == "np"
                || is_input_name(&n)
                || taken.contains(&n)
            {
                n.push('_');
            }
            taken.insert(n.clone());
            n
        };
        let states: Vec<String> = sme.vars.iter().map(|v| fresh(&v.name)).collect();
        let names: Vec<&str> = (0..).map_while(|i| sme.symbols.try_name(i)).collect();
        let mut syms = vec![String::new(); names.len()];
        let mut hypers = Vec::new();
        let mut opaque_raw = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let s = i as Sym;
            if s == sme.dim {
                syms[i] = "_d".to_string();
            } else if is_identifier(name) {
                let n = fresh(name);
                syms[i] = n.clone();
                hypers.push((s, n));
            } else {
                syms[i] = format!("_c{i}");
                opaque_raw.push((s, name.to_string()));
            }
        }
        let mut py = Py {
            sme,
            states,
            syms,
            hypers,
            opaque: Vec::new(),
        };
        py.opaque = opaque_raw
            .into_iter()
            .map(|(s, text)| (s, py.constant_expr(&text)))
            .collect();
        py
    }

    /// An opaque constant's printed form (the optimizer language: numbers, names,
    /// `+ - * / ^`, `sqrt exp log abs`) as a Python expression.
    fn constant_expr(&self, text: &str) -> String {
        let names: Vec<&str> = (0..).map_while(|i| self.sme.symbols.try_name(i)).collect();
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            if c.is_ascii_digit()
                || (c == '.' && chars.get(k + 1).is_some_and(char::is_ascii_digit))
            {
                // A number: digits, a point, an exponent.
                let start = k;
                while k < chars.len() && (chars[k].is_ascii_digit() || chars[k] == '.') {
                    k += 1;
                }
                if k < chars.len() && (chars[k] == 'e' || chars[k] == 'E') {
                    let mut j = k + 1;
                    if j < chars.len() && (chars[j] == '-' || chars[j] == '+') {
                        j += 1;
                    }
                    if j < chars.len() && chars[j].is_ascii_digit() {
                        k = j;
                        while k < chars.len() && chars[k].is_ascii_digit() {
                            k += 1;
                        }
                    }
                }
                out.extend(&chars[start..k]);
            } else if c.is_alphabetic() || c == '_' {
                let start = k;
                while k < chars.len() && (chars[k].is_alphanumeric() || chars[k] == '_') {
                    k += 1;
                }
                let word: String = chars[start..k].iter().collect();
                match word.as_str() {
                    "sqrt" | "exp" | "log" | "abs" => {
                        let _ = write!(out, "np.{word}");
                    }
                    _ => match names.iter().position(|n| *n == word) {
                        Some(i) => out.push_str(&self.syms[i]),
                        None => out.push_str(&ascii_name(&word)),
                    },
                }
            } else if c == '^' {
                out.push_str("**");
                k += 1;
            } else {
                out.push(c);
                k += 1;
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------
// Python expressions with precedence, so that parentheses appear only where needed.

/// Precedence levels of Python expressions.
const SUM: u8 = 1;
const PRODUCT: u8 = 2;
const UNARY: u8 = 3;
const POWER: u8 = 4;
const ATOM: u8 = 5;

fn paren(e: (String, u8), min: u8) -> String {
    if e.1 >= min {
        e.0
    } else {
        format!("({})", e.0)
    }
}

/// `a + b + …`, writing `a - b` for an item that starts with a minus sign.
fn join_sum(items: Vec<(String, u8)>) -> (String, u8) {
    if items.is_empty() {
        return ("0.0".to_string(), ATOM);
    }
    if items.len() == 1 {
        return items.into_iter().next().expect("one item");
    }
    let mut out = String::new();
    for (k, (s, p)) in items.into_iter().enumerate() {
        let s = paren((s, p), PRODUCT);
        match (k, s.strip_prefix('-')) {
            (0, _) => out.push_str(&s),
            (_, Some(rest)) => {
                let _ = write!(out, " - {rest}");
            }
            (_, None) => {
                let _ = write!(out, " + {s}");
            }
        }
    }
    (out, SUM)
}

/// A non-negative rational as a Python number.
fn number(q: &BigRational) -> (String, u8) {
    if q.is_integer() {
        (q.numer().to_string(), ATOM)
    } else {
        (format!("({}/{})", q.numer(), q.denom()), ATOM)
    }
}

/// A monomial `c · Π s^e` of a coefficient.
fn monomial(c: &BigRational, mono: &[(Sym, i32)], py: &Py) -> (String, u8) {
    let mut factors: Vec<String> = Vec::new();
    let a = c.abs();
    if !a.is_one() || mono.is_empty() {
        factors.push(number(&a).0);
    }
    for (s, e) in mono {
        let name = &py.syms[*s as usize];
        factors.push(match e {
            1 => name.clone(),
            e => format!("{name}**{e}"),
        });
    }
    let body = factors.join(" * ");
    let prec = if factors.len() == 1 && mono.iter().all(|(_, e)| *e == 1) {
        ATOM
    } else if factors.len() == 1 {
        POWER
    } else {
        PRODUCT
    };
    if c.is_negative() {
        (format!("-{body}"), UNARY.min(prec))
    } else {
        (body, prec)
    }
}

/// A coefficient polynomial.
fn poly(p: &Poly, py: &Py) -> (String, u8) {
    join_sum(p.terms().map(|(m, c)| monomial(c, m, py)).collect())
}

/// An elementwise function of the state components.
fn fexpr(f: &FExpr, py: &Py) -> (String, u8) {
    match f {
        FExpr::Const(c) => poly(c, py),
        FExpr::Var(v) => (py.states[*v as usize].clone(), ATOM),
        FExpr::Sum(items) => join_sum(items.iter().map(|i| fexpr(i, py)).collect()),
        FExpr::Prod(items) => {
            let mut rest: &[FExpr] = items;
            let mut negative = false;
            if let Some(FExpr::Const(c)) = items.first() {
                if c.neg() == Poly::one() {
                    negative = true;
                    rest = &items[1..];
                }
            }
            // Factors with a negative exponent go below a division sign.
            let mut num: Vec<(String, u8)> = Vec::new();
            let mut den: Vec<(String, u8)> = Vec::new();
            for i in rest {
                match i {
                    FExpr::Pow(b, q) if q.is_negative() => {
                        den.push(fexpr(&FExpr::Pow(b.clone(), -q.clone()), py));
                    }
                    other => num.push(fexpr(other, py)),
                }
            }
            let mut body = if num.is_empty() {
                "1".to_string()
            } else {
                num.iter()
                    .enumerate()
                    // A minus sign is fine first, not after `*`.
                    .map(|(k, e)| paren(e.clone(), if k == 0 { UNARY } else { POWER }))
                    .collect::<Vec<_>>()
                    .join(" * ")
            };
            for d in den {
                let _ = write!(body, " / {}", paren(d, POWER));
            }
            let prec = if num.len() == 1 && body == num[0].0 {
                num[0].1
            } else {
                PRODUCT
            };
            if negative {
                (format!("-{}", paren((body, prec), POWER)), UNARY)
            } else {
                (body, prec)
            }
        }
        FExpr::Pow(b, q) => {
            let base = fexpr(b, py);
            let half = BigRational::new(1.into(), 2.into());
            if q.is_one() {
                base
            } else if *q == half {
                (format!("np.sqrt({})", base.0), ATOM)
            } else if q.is_negative() {
                let d = fexpr(&FExpr::Pow(b.clone(), -q.clone()), py);
                (format!("1 / {}", paren(d, POWER)), PRODUCT)
            } else if q.is_integer() {
                let k = q.to_integer();
                (format!("{}**{k}", paren(base, ATOM)), POWER)
            } else {
                (
                    format!("{}**({}/{})", paren(base, ATOM), q.numer(), q.denom()),
                    POWER,
                )
            }
        }
        FExpr::Exp(a) => (format!("np.exp({})", fexpr(a, py).0), ATOM),
        FExpr::Log(a) => (format!("np.log({})", fexpr(a, py).0), ATOM),
        FExpr::Abs(a) => (format!("np.abs({})", fexpr(a, py).0), ATOM),
        FExpr::Sign(a) => (format!("np.sign({})", fexpr(a, py).0), ATOM),
        FExpr::Ncdf(a) => (format!("_ncdf({})", fexpr(a, py).0), ATOM),
        FExpr::Npdf(a) => (format!("_npdf({})", fexpr(a, py).0), ATOM),
        FExpr::Contract(a) => (format!("np.sum({})", fexpr(a, py).0), ATOM),
        FExpr::Field(crate::algebra::elem::Field::Grad) => (df_name(1), ATOM),
        FExpr::Field(crate::algebra::elem::Field::NoiseVar) => {
            (format!("np.diag({})", moment_name(2, 0)), ATOM)
        }
    }
}

// ---------------------------------------------------------------------------------
// Terms as einsum calls.

/// What a function body needs besides its arguments.
#[derive(Default)]
struct Needs {
    /// Elementwise functions used (computed once at the top).
    elem: BTreeSet<u32>,
    /// Kink pairs used (their matrices computed once at the top).
    pairs: BTreeSet<u32>,
    /// Symbols used in coefficients and elementwise functions.
    syms: BTreeSet<Sym>,
    /// Whether a factor that has no numeric value (a noise sample) appears.
    unsupported: bool,
}

impl Needs {
    fn poly(&mut self, p: &Poly) {
        for (m, _) in p.terms() {
            for (s, _) in m {
                self.syms.insert(*s);
            }
        }
    }

    fn texpr(&mut self, e: &TExpr, sme: &Sme) {
        for (t, c) in &e.terms {
            self.poly(c);
            for a in &t.atoms {
                match a.kind {
                    Kind::Elem(id) if self.elem.insert(id) => {
                        let mut used = Vec::new();
                        sme.elem.get(id).symbols(&mut used);
                        self.syms.extend(used);
                    }
                    Kind::Pair(id) if self.pairs.insert(id) => {
                        let p = &sme.elem.pairs[id as usize];
                        let mut used = Vec::new();
                        for f in [&p.left.mean, &p.left.coef, &p.right.mean, &p.right.coef] {
                            f.symbols(&mut used);
                        }
                        self.syms.extend(used);
                        if let Some(c) = &p.scale {
                            self.poly(c);
                        }
                        if self.elem.insert(p.diag) {
                            let mut used = Vec::new();
                            sme.elem.get(p.diag).symbols(&mut used);
                            self.syms.extend(used);
                        }
                    }
                    Kind::Noise { .. } | Kind::Disp(_) => self.unsupported = true,
                    _ => {}
                }
            }
        }
    }
}

/// Whether an elementwise function reads a vector state (so that its value is a vector).
fn reads_vector(f: &FExpr, sme: &Sme) -> bool {
    use crate::algebra::elem::Field;
    sme.vars
        .iter()
        .enumerate()
        .any(|(v, info)| !info.scalar && f.reads_here(v as u8))
        || f.reads_here(Field::Grad.var_id())
        || f.reads_here(Field::NoiseVar.var_id())
}

/// One term: `coefficient * scalars * einsum(...)`, as a Python expression.
fn term(t: &Term, c: &Poly, free: u8, py: &Py) -> (String, u8) {
    let sme = py.sme;
    let mut scalars: Vec<String> = Vec::new();
    let mut operands: Vec<(String, Vec<Label>)> = Vec::new();
    for a in &t.atoms {
        let name = match a.kind {
            Kind::DF(k) => df_name(k),
            Kind::Moment { r, d } => moment_name(r, d),
            Kind::State(v) | Kind::Disp(v) => py.states[v as usize].clone(),
            Kind::One => "np.ones(_d)".to_string(),
            Kind::Delta => "np.eye(_d)".to_string(),
            Kind::Elem(id) => {
                if a.idx.is_empty() || reads_vector(sme.elem.get(id), sme) {
                    format!("_e{id}")
                } else {
                    format!("np.full(_d, _e{id})")
                }
            }
            Kind::Noise { .. } | Kind::Kink(_) => "_unsupported(\"a noise sample\")".to_string(),
            Kind::Pair(id) => format!("_p{id}"),
        };
        if a.idx.is_empty() {
            scalars.push(name);
        } else {
            operands.push((name, a.idx.to_vec()));
        }
    }
    // Letters: free labels first, in output order, then the others as they appear.
    let mut labels: Vec<Label> = (0..free).collect();
    for (_, idx) in &operands {
        for &l in idx {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
    }
    // A free index no factor carries: the term is constant along it.
    for l in 0..free {
        if !operands.iter().any(|(_, idx)| idx.contains(&l)) {
            operands.push(("np.ones(_d)".to_string(), vec![l]));
        }
    }
    let letters: Vec<char> = LETTERS.chars().collect();
    let tensor = if operands.is_empty() {
        None
    } else if labels.len() > letters.len() {
        Some("_unsupported(\"a term with more than 52 indices\")".to_string())
    } else {
        let letter = |l: Label| letters[labels.iter().position(|x| *x == l).unwrap_or(0)];
        let output: String = (0..free).map(letter).collect();
        if let [(name, idx)] = &operands[..] {
            if idx.iter().copied().eq(0..free) {
                return finish(c, scalars, Some(name.clone()), py);
            }
        }
        let subs: Vec<String> = operands
            .iter()
            .map(|(_, idx)| idx.iter().map(|&l| letter(l)).collect())
            .collect();
        let args: Vec<&str> = operands.iter().map(|(n, _)| n.as_str()).collect();
        Some(format!(
            "np.einsum(\"{}->{output}\", {}{})",
            subs.join(","),
            args.join(", "),
            if operands.len() >= 3 {
                ", optimize=True"
            } else {
                ""
            }
        ))
    };
    finish(c, scalars, tensor, py)
}

/// `coefficient * scalars * tensor`, with the coefficient's sign in front.
fn finish(c: &Poly, scalars: Vec<String>, tensor: Option<String>, py: &Py) -> (String, u8) {
    // The sign in front when every monomial of the coefficient is negative.
    let negative = c.terms().all(|(_, q)| q.is_negative());
    let coef = poly(&if negative { c.neg() } else { c.clone() }, py);
    let mut factors: Vec<String> = Vec::new();
    if coef.0 != "1" {
        factors.push(paren(coef, PRODUCT));
    }
    factors.extend(scalars);
    factors.extend(tensor);
    if factors.is_empty() {
        factors.push("1".to_string());
    }
    let body = factors.join(" * ");
    let prec = if factors.len() == 1 { ATOM } else { PRODUCT };
    if negative {
        (format!("-{body}"), UNARY)
    } else {
        (body, prec)
    }
}

/// The Python expression of a tensor expression with the given output shape.
fn tensor_expr(e: &TExpr, py: &Py) -> String {
    if e.is_zero() {
        return match e.free {
            0 => "np.float64(0.0)".to_string(),
            1 => "np.zeros(_d)".to_string(),
            n => format!("np.zeros(({}))", vec!["_d"; n as usize].join(", ")),
        };
    }
    let terms: Vec<(String, u8)> = e
        .terms
        .iter()
        .map(|(t, c)| term(t, c, e.free, py))
        .collect();
    // A bare input or state (no coefficient, no product): copied, below.
    let single_bare =
        e.terms.len() == 1 && terms[0].1 == ATOM && !terms[0].0.contains('(') && terms[0].0 != "1";
    let (body, _) = if terms.len() > 1 {
        // One term per line.
        let mut out = String::from("(\n");
        for (k, (s, p)) in terms.into_iter().enumerate() {
            let s = paren((s, p), PRODUCT);
            match (k, s.strip_prefix('-')) {
                (0, _) => {
                    let _ = writeln!(out, "        {s}");
                }
                (_, Some(rest)) => {
                    let _ = writeln!(out, "        - {rest}");
                }
                (_, None) => {
                    let _ = writeln!(out, "        + {s}");
                }
            }
        }
        out.push_str("    )");
        (out, ATOM)
    } else {
        terms.into_iter().next().expect("one term")
    };
    if e.free == 0 && body.starts_with("(\n") {
        format!("np.float64{body}")
    } else if e.free == 0 {
        format!("np.float64({body})")
    } else if single_bare {
        // A bare input: copy it, so the result never aliases the caller's array.
        format!("np.array({body}, dtype=float)")
    } else {
        body
    }
}

// ---------------------------------------------------------------------------------
// The module.

/// A Python string literal (double quotes).
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A shape `(d, d, …)` of the given rank, as Python writes it.
fn shape(rank: usize) -> String {
    match rank {
        0 => "()".to_string(),
        1 => "(d,)".to_string(),
        n => format!("({})", vec!["d"; n].join(", ")),
    }
}

/// What an input is, for the docstring.
fn input_doc(kind: Kind) -> String {
    match kind {
        Kind::DF(0) => "f, the objective's value, a float".to_string(),
        Kind::DF(1) => "∇f, the gradient, shape (d,)".to_string(),
        Kind::DF(2) => "∇²f, the Hessian, shape (d, d)".to_string(),
        Kind::DF(k) => format!(
            "∇^{k} f, shape {}, entry [a, b, …] = ∂_a ∂_b … f",
            shape(k as usize)
        ),
        Kind::Moment { r, d } => {
            let base = match r {
                2 => "Σ = E[ξ ξᵀ], the noise covariance".to_string(),
                3 => "S = E[ξ⊗ξ⊗ξ], the noise's third moment".to_string(),
                r => format!("M{r} = E[ξ^⊗{r}], the noise's moment of order {r}"),
            };
            match d {
                0 => format!("{base}, shape {}", shape(r as usize)),
                d => format!(
                    "∂^{d} of {base}: shape {}, entry [a1..a{r}, k1..k{d}] = ∂_k1…∂_k{d} of entry [a1..a{r}]",
                    shape((r + d) as usize)
                ),
            }
        }
        _ => String::new(),
    }
}

/// The Python names of the state variables and of the small parameter, as [`render`]
/// spells them.
pub(super) fn python_names(sme: &Sme) -> (Vec<String>, String) {
    let py = Py::new(sme);
    (py.states.clone(), py.syms[sme.small as usize].clone())
}

/// The SME as a self-contained Python module (needs only `numpy`).
pub fn render(sme: &Sme) -> String {
    let py = Py::new(sme);
    let names = Names::of(sme);
    let text = |e: &TExpr| texpr(Style::Text, e, &sme.symbols, sme.small, &names);

    // Inputs: every ∇^k f and ∂^j M_r the drift or diffusion reads.
    let mut inputs: BTreeSet<Kind> = BTreeSet::new();
    let exprs: Vec<&TExpr> = sme
        .drift
        .iter()
        .chain(sme.diffusion.iter().map(|b| &b.expr))
        .collect();
    let mut gauss = false;
    let mut pairs = false;
    for e in &exprs {
        for t in e.terms.keys() {
            for a in &t.atoms {
                if matches!(a.kind, Kind::DF(_) | Kind::Moment { .. }) {
                    inputs.insert(a.kind);
                }
                // Elementwise functions may read ∇f and diag Σ, and use Φ and φ.
                if let Kind::Elem(id) = a.kind {
                    let f = sme.elem.get(id);
                    let field = crate::algebra::elem::Field::Grad;
                    if f.reads(field.var_id()) {
                        inputs.insert(Kind::DF(1));
                    }
                    if f.reads(crate::algebra::elem::Field::NoiseVar.var_id()) {
                        inputs.insert(Kind::Moment { r: 2, d: 0 });
                    }
                    gauss |= f.uses_normal();
                }
                if let Kind::Pair(id) = a.kind {
                    let p = &sme.elem.pairs[id as usize];
                    pairs = true;
                    gauss = true;
                    for f in [&p.left.mean, &p.left.coef, &p.right.mean, &p.right.coef] {
                        if f.reads(crate::algebra::elem::Field::Grad.var_id()) {
                            inputs.insert(Kind::DF(1));
                        }
                    }
                    if p.scale.is_none() {
                        inputs.insert(Kind::Moment { r: 2, d: 0 });
                    }
                }
            }
        }
    }
    let input_name = |k: &Kind| match *k {
        Kind::DF(k) => df_name(k),
        Kind::Moment { r, d } => moment_name(r, d),
        _ => String::new(),
    };
    let state_args = py.states.join(", ");
    let mut kw: Vec<String> = inputs.iter().map(input_name).collect();
    kw.extend(py.hypers.iter().map(|(_, n)| n.clone()));
    let signature = format!("{state_args}, *, {}", kw.join(", "));
    let hyper_sig = py
        .hypers
        .iter()
        .map(|(_, n)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let small = &py.syms[sme.small as usize];

    let mut out = String::new();
    // The module docstring.
    let _ = writeln!(
        out,
        "\"\"\"The stochastic modified equation of {}, weak order {}; generated by smelt {}.",
        sme.optimizer,
        sme.order,
        env!("CARGO_PKG_VERSION")
    );
    out.push('\n');
    let _ = writeln!(
        out,
        "    dZ = b(Z) dt + σ(Z) dW,   D = σσᵀ,   one step of the optimizer = time {}",
        poly(&sme.time, &py).0
    );
    if sme.order < sme.requested_order {
        let _ = writeln!(
            out,
            "\nOrder {} was asked for; a moment condition limits the result to order {}.",
            sme.requested_order, sme.order
        );
    }
    if sme.diffusion_from_next_order {
        out.push_str(
            "\nThe diffusion is the leading one that the next order forces (as in Li-Tai-E's SME-1).\n",
        );
    }
    for e in &sme.eliminated {
        let rate = e.rate.display(&sme.symbols);
        let _ = writeln!(
            out,
            "\nThe rule's state `{}` is fast (it relaxes at rate 1 - {rate} per step) and eliminated:\nthe SME is of the slow states (see the notes below).",
            e.name
        );
        if let Some(k) = &e.complement {
            let _ = writeln!(out, "Pass {k} = 1/(1 - {rate}).");
        }
    }
    out.push_str(
        "\nState (positional arguments, in this order; a vector is a 1-d array of length d,\nthe dimension, a scalar is a float):\n",
    );
    for (v, info) in sme.vars.iter().enumerate() {
        let role = if v == 0 {
            "the parameter".to_string()
        } else if sme.clock == Some(v) {
            "the clock (step k is at time t = k * time_per_step)".to_string()
        } else {
            String::new()
        };
        let line = format!(
            "    {:<10} {:<7} {role}",
            py.states[v],
            if info.scalar { "scalar" } else { "vector" }
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if !inputs.is_empty() {
        out.push_str("\nInputs (keyword-only: the objective and the gradient noise ξ at the parameter,\nas arrays or as callables of the parameter):\n");
        for k in &inputs {
            let _ = writeln!(out, "    {:<10} {}", input_name(k), input_doc(*k));
        }
    }
    if !py.hypers.is_empty() {
        out.push_str("\nHyperparameters (keyword-only floats):\n");
        for (s, n) in &py.hypers {
            let orig = sme.symbols.name(*s);
            let mut note = String::new();
            if *s == sme.small {
                note.push_str("the small parameter");
            }
            if orig != n {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                let _ = write!(note, "`{orig}` in the optimizer file");
            }
            let _ = writeln!(out, "{}", format!("    {n:<10} {note}").trim_end());
        }
    }
    let drift_names: Vec<String> = py.states.iter().map(|s| format!("b_{s}")).collect();
    let _ = writeln!(
        out,
        "\nFunctions:\n    drift({signature})\n        -> ({}{})\n        one entry per state variable: an array of shape (d,) for a vector, a float for a scalar",
        drift_names.join(", "),
        if drift_names.len() == 1 { "," } else { "" }
    );
    let _ = writeln!(
        out,
        "    diffusion({signature})\n        -> {{(a, c): D_ac}} for the state names a <= c in state order: the blocks of\n        D = σσᵀ, shape (d, d) for two vectors, (d,) for a vector and a scalar, a float for\n        two scalars; D_ca is the transpose of D_ac"
    );
    let _ = writeln!(
        out,
        "    time_per_step(*, {hyper_sig})\n        -> the time one step of the optimizer represents"
    );
    out.push_str(
        "\nMetadata: STATE (the state names), SHAPES, INPUTS (name -> (\"f\", k) for the k-th\nderivative of f, (\"M\", r, j) for the j-th derivative of the r-th noise moment),\nHYPERS (Python name -> name in the optimizer file), ORDER, CLOCK.\n",
    );
    if !sme.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &sme.notes {
            // Inside the docstring: no backslash escapes, no closing quotes.
            let n = n.replace('\\', "\\\\").replace("\"\"\"", "'''");
            let _ = writeln!(out, "    - {n}");
        }
    }
    out.push_str("\"\"\"\n\nimport numpy as np\n\n");
    if gauss {
        // Φ and φ of the standard normal: scipy's ndtr where scipy is installed (double
        // precision), else math.erfc elementwise (the C library's, within an ulp or two).
        out.push_str(concat!(
            "import math\n\n",
            "try:\n",
            "    from scipy.special import ndtr as _ncdf\n",
            "except ImportError:\n",
            "    _ncdf = np.vectorize(lambda a: 0.5 * math.erfc(-a / math.sqrt(2.0)), otypes=[float])\n\n\n",
            "def _npdf(a):\n",
            "    return np.exp(-0.5 * np.square(a)) / math.sqrt(2.0 * math.pi)\n\n\n",
        ));
    }
    if pairs {
        out.push_str(PAIR_HELPERS);
    }

    // Metadata.
    let tuple = |items: Vec<String>| {
        if items.len() == 1 {
            format!("({},)", items[0])
        } else {
            format!("({})", items.join(", "))
        }
    };
    let _ = writeln!(out, "OPTIMIZER = {}", quote(&sme.optimizer));
    let _ = writeln!(out, "ORDER = {}", sme.order);
    let _ = writeln!(
        out,
        "STATE = {}",
        tuple(py.states.iter().map(|s| quote(s)).collect())
    );
    let _ = writeln!(
        out,
        "SHAPES = {}",
        tuple(
            sme.vars
                .iter()
                .map(|v| quote(if v.scalar { "scalar" } else { "vector" }))
                .collect()
        )
    );
    let input_meta: Vec<String> = inputs
        .iter()
        .map(|k| {
            let desc = match *k {
                Kind::DF(k) => format!("(\"f\", {k})"),
                Kind::Moment { r, d } => format!("(\"M\", {r}, {d})"),
                _ => String::new(),
            };
            format!("{}: {desc}", quote(&input_name(k)))
        })
        .collect();
    let _ = writeln!(out, "INPUTS = {{{}}}", input_meta.join(", "));
    let hyper_meta: Vec<String> = py
        .hypers
        .iter()
        .map(|(s, n)| format!("{}: {}", quote(n), quote(sme.symbols.name(*s))))
        .collect();
    let _ = writeln!(out, "HYPERS = {{{}}}", hyper_meta.join(", "));
    let _ = writeln!(
        out,
        "CLOCK = {}",
        sme.clock
            .map_or_else(|| "None".to_string(), |v| quote(&py.states[v]))
    );

    // The prelude of a function: arrays, the dimension, constants, elementwise functions.
    let prelude = |out: &mut String, needs: &Needs, with_state: bool, body: &str| {
        if with_state {
            for (v, info) in sme.vars.iter().enumerate() {
                let n = &py.states[v];
                if info.scalar {
                    let _ = writeln!(out, "    {n} = np.float64({n})");
                } else {
                    let _ = writeln!(out, "    {n} = np.asarray({n}, dtype=float)");
                }
            }
            let param = &py.states[0];
            for k in &inputs {
                let n = input_name(k);
                let _ = writeln!(
                    out,
                    "    {n} = np.asarray({n}({param}) if callable({n}) else {n}, dtype=float)"
                );
            }
        }
        let elem_lines: Vec<String> = needs
            .elem
            .iter()
            .map(|&id| format!("    _e{id} = {}\n", fexpr(sme.elem.get(id), &py).0))
            .collect();
        let pair_lines: Vec<String> = needs
            .pairs
            .iter()
            .map(|&id| {
                let p = &sme.elem.pairs[id as usize];
                let vec = |f: &FExpr| format!("np.broadcast_to({}, (_d,))", fexpr(f, &py).0);
                let cov = match &p.scale {
                    Some(c) => format!("({}) * np.eye(_d)", poly(c, &py).0),
                    None => moment_name(2, 0),
                };
                let flag = |abs: bool| if abs { "True" } else { "False" };
                format!(
                    "    _p{id} = _kink_pair({}, {}, {}, {}, {}, {}, {cov}, np.broadcast_to(_e{}, (_d,)))\n",
                    flag(p.left.abs),
                    vec(&p.left.mean),
                    vec(&p.left.coef),
                    flag(p.right.abs),
                    vec(&p.right.mean),
                    vec(&p.right.coef),
                    p.diag
                )
            })
            .collect();
        let elem_lines: Vec<String> = elem_lines.into_iter().chain(pair_lines).collect();
        if with_state && (body.contains("_d") || elem_lines.iter().any(|l| l.contains("_d"))) {
            let _ = writeln!(out, "    _d = {}.shape[0]", py.states[0]);
        }
        for (s, expr) in &py.opaque {
            if needs.syms.contains(s) {
                let _ = writeln!(
                    out,
                    "    {} = {expr}  # {}",
                    py.syms[*s as usize],
                    sme.symbols.name(*s)
                );
            }
        }
        out.extend(elem_lines);
        out.push_str(body);
    };
    let helper = |out: &mut String, needs: &Needs| {
        if needs.unsupported {
            out.push_str(
                "\n\ndef _unsupported(what):\n    raise ValueError(\"the SME contains \" + what + \", which has no numeric value\")\n",
            );
        }
    };

    // time_per_step.
    let mut needs = Needs::default();
    needs.poly(&sme.time);
    out.push_str("\n\n");
    let _ = writeln!(out, "def time_per_step(*, {hyper_sig}):");
    let _ = writeln!(
        out,
        "    \"\"\"The time one step of the optimizer represents ({small} is the small parameter).\"\"\""
    );
    if needs.syms.contains(&sme.dim) {
        out.push_str("    _d = np.nan  # the dimension is not known here\n");
    }
    let body = format!("    return np.float64({})\n", poly(&sme.time, &py).0);
    prelude(&mut out, &needs, false, &body);

    // drift.
    let mut needs = Needs::default();
    for b in &sme.drift {
        needs.texpr(b, sme);
    }
    let mut all_needs = Needs::default();
    for e in &exprs {
        all_needs.texpr(e, sme);
    }
    out.push_str("\n\n");
    let _ = writeln!(out, "def drift({signature}):");
    let _ = writeln!(
        out,
        "    \"\"\"The drift b, one entry per state variable ({}).\"\"\"",
        py.states.join(", ")
    );
    let mut body = String::new();
    for (v, b) in sme.drift.iter().enumerate() {
        let _ = writeln!(body, "    # b_{} = {}", py.states[v], text(b));
        let _ = writeln!(body, "    {} = {}", drift_names[v], tensor_expr(b, &py));
    }
    let _ = writeln!(body, "    return {}", tuple(drift_names.clone()));
    prelude(&mut out, &needs, true, &body);

    // diffusion.
    let mut needs = Needs::default();
    for b in &sme.diffusion {
        needs.texpr(&b.expr, sme);
    }
    out.push_str("\n\n");
    let _ = writeln!(out, "def diffusion({signature}):");
    out.push_str("    \"\"\"The blocks D_ac of D = σσᵀ for a <= c, keyed by (a, c).\"\"\"\n");
    let mut body = String::new();
    let mut keys = Vec::new();
    for b in &sme.diffusion {
        let (a, c) = (&py.states[b.rows], &py.states[b.cols]);
        let local = format!("D_{a}_{c}");
        let _ = writeln!(body, "    # D_{a}{c} = {}", text(&b.expr));
        let _ = writeln!(body, "    {local} = {}", tensor_expr(&b.expr, &py));
        keys.push(format!("({}, {}): {local}", quote(a), quote(c)));
    }
    if keys.len() <= 1 {
        let _ = writeln!(body, "    return {{{}}}", keys.join(", "));
    } else {
        body.push_str("    return {\n");
        for k in &keys {
            let _ = writeln!(body, "        {k},");
        }
        body.push_str("    }\n");
    }
    prelude(&mut out, &needs, true, &body);
    helper(&mut out, &all_needs);
    out
}

/// Python for the kink pairs: Φ₂ by Genz's BVNU (his algorithm as `numeric::gauss::bvn`
/// has it, 6/12/20-point Gauss–Legendre, double precision) and the bivariate normal mean
/// of two kinks by Rosenbaum's orthant moments.
const PAIR_HELPERS: &str = r#"_GL = [np.polynomial.legendre.leggauss(n) for n in (6, 12, 20)]


def _bvnu(h, k, r):
    """P(X > h, Y > k) for a standard bivariate normal with correlation r (Genz's BVNU)."""
    if r >= 1.0:
        return float(_ncdf(-max(h, k)))
    if r <= -1.0:
        return max(0.0, float(_ncdf(-k) - _ncdf(h)))
    xs, ws = _GL[0 if abs(r) < 0.3 else (1 if abs(r) < 0.75 else 2)]
    hk = h * k
    bvn = 0.0
    if abs(r) < 0.925:
        hs = (h * h + k * k) / 2.0
        asr = math.asin(r)
        for x, w in zip(xs, ws):
            sn = math.sin(asr * (x + 1.0) / 2.0)
            bvn += w * math.exp((sn * hk - hs) / (1.0 - sn * sn))
        return min(1.0, max(0.0, bvn * asr / (4.0 * math.pi) + float(_ncdf(-h) * _ncdf(-k))))
    if r < 0.0:
        k, hk = -k, -hk
    a_s = (1.0 - r) * (1.0 + r)
    a = math.sqrt(a_s)
    bs = (h - k) ** 2
    c = (4.0 - hk) / 8.0
    d = (12.0 - hk) / 16.0
    asr = -(bs / a_s + hk) / 2.0
    if asr > -100.0:
        bvn = a * math.exp(asr) * (1.0 - c * (bs - a_s) * (1.0 - d * bs / 5.0) / 3.0
                                   + c * d * a_s * a_s / 5.0)
    if hk > -100.0:
        b = math.sqrt(bs)
        sp = math.sqrt(2.0 * math.pi) * float(_ncdf(-b / a))
        bvn -= math.exp(-hk / 2.0) * sp * b * (1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0)
    a /= 2.0
    for x, w in zip(xs, ws):
        xs2 = (a * (x + 1.0)) ** 2
        rs = math.sqrt(1.0 - xs2)
        asr = -(bs / xs2 + hk) / 2.0
        if asr > -100.0:
            sp = 1.0 + c * xs2 * (1.0 + d * xs2)
            ep = math.exp(-hk * xs2 / (2.0 * (1.0 + rs) ** 2)) / rs
            bvn += a * w * math.exp(asr) * (ep - sp)
    bvn = -bvn / (2.0 * math.pi)
    if r > 0.0:
        p = bvn + float(_ncdf(-max(h, k)))
    elif h >= k:
        p = -bvn
    else:
        p = (float(_ncdf(k) - _ncdf(h)) if h < 0.0 else float(_ncdf(-h) - _ncdf(-k))) - bvn
    return min(1.0, max(0.0, p))


def _upper(h, k, r):
    """[P, E X1, E Y1, E XY1] for the orthant {X > h, Y > k} (None: -inf), |r| < 1."""
    q = lambda x: float(_ncdf(-x))
    if h is None and k is None:
        return 1.0, 0.0, 0.0, r
    if h is None or k is None:
        t = k if h is None else h
        p, e = q(t), float(_npdf(t))
        tail = r * (p + t * e)
        return (p, r * e, e, tail) if h is None else (p, e, r * e, tail)
    s = math.sqrt((1.0 - r) * (1.0 + r))
    a, b = (k - r * h) / s, (h - r * k) / s
    qa, qb = q(a), q(b)
    ph, pk = float(_npdf(h)), float(_npdf(k))
    p = _bvnu(h, k, r)
    ex = ph * qa + r * pk * qb
    ey = pk * qb + r * ph * qa
    exy = r * p + r * h * ph * qa + r * k * pk * qb + s * ph * float(_npdf(a))
    return p, ex, ey, exy


def _pieces(absolute, m, s):
    """F(m + s x) as (threshold or None, c, d): a base, then (c + d x) 1{x > threshold}."""
    if absolute:
        return [(None, -m, -s), (-m / s, 2.0 * m, 2.0 * s)]
    return [(None, -1.0, 0.0), (-m / s, 2.0, 0.0)]


def _kink_pair(left_abs, a, ca, right_abs, b, cb, cov, diag):
    """E[F(a_i + ca_i xi_i) G(b_j + cb_j xi_j)], xi ~ N(0, cov): diag on the diagonal."""
    cov = np.asarray(cov, dtype=float)
    n = len(diag)
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                out[i, j] = diag[i]
                continue
            si = abs(ca[i]) * math.sqrt(cov[i, i])
            sj = abs(cb[j]) * math.sqrt(cov[j, j])
            r = cov[i, j] / math.sqrt(cov[i, i] * cov[j, j]) * np.sign(ca[i] * cb[j])
            total = 0.0
            for alpha, c, d in _pieces(left_abs, a[i], si):
                for beta, e, g in _pieces(right_abs, b[j], sj):
                    p, ex, ey, exy = _upper(alpha, beta, r)
                    total += c * e * p + c * g * ey + d * e * ex + d * g * exy
            out[i, j] = total
    return out
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_python_identifiers() {
        assert_eq!(ascii_name("β1"), "beta1");
        assert_eq!(ascii_name("_lr"), "v_lr");
        assert_eq!(ascii_name("x\u{2032}"), "xu2032");
        assert!(is_input_name("Sigma") && is_input_name("d2Sigma") && is_input_name("d3f"));
        assert!(is_input_name("S") && is_input_name("dM4") && !is_input_name("sigma0"));
        assert!(is_identifier("lambda") && !is_identifier("sqrt(c)"));
    }

    #[test]
    fn opaque_constants_become_python() {
        let src = "optimizer Scaled\n  param x\n  small eta\n  hyper lambda, c > 0\n  noise xi ~ gaussian\n  x = x - eta*sqrt(c)*lambda*(grad f(x) + xi)\n";
        let sme = crate::derive(src, &crate::Options::order(1)).expect("derives");
        let py = Py::new(&sme);
        assert!(py.hypers.iter().any(|(_, n)| n == "lambda_"));
        let code = render(&sme);
        assert!(code.contains("= np.sqrt(c)  # sqrt(c)"), "{code}");
        assert!(code.contains("lambda_"), "{code}");
    }

    #[test]
    fn python_precedence() {
        let src = "optimizer SGD\n  param x\n  small eta\n  noise xi ~ general\n  x = x - eta*(grad f(x) + xi)\n";
        let sme = crate::derive(src, &crate::Options::order(1)).expect("derives");
        let py = Py::new(&sme);
        let u = FExpr::Var(0);
        let q = |n: i64, d: i64| BigRational::new(n.into(), d.into());
        let f = FExpr::Sum(vec![
            FExpr::Const(Poly::int(1)),
            FExpr::Prod(vec![FExpr::Const(Poly::int(-1)), u.clone()]),
        ])
        .pow(q(-1, 1));
        assert_eq!(fexpr(&f, &py).0, "1 / (1 - x)");
        let g = FExpr::Pow(
            Box::new(FExpr::Prod(vec![
                u.clone(),
                FExpr::Exp(Box::new(u.clone())),
            ])),
            q(3, 2),
        );
        assert_eq!(fexpr(&g, &py).0, "(x * np.exp(x))**(3/2)");
        let c = Poly::power(sme.small, 2).scale(&q(-1, 3));
        assert_eq!(poly(&c, &py).0, "-(1/3) * eta**2");
    }
}
