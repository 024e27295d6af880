//! SymPy export: a self-contained Python script that rebuilds the derived SME with SymPy.
//!
//! [`render`] writes the result out in a concrete dimension `n` (the einsum expressions
//! expanded by [`super::components`]) as SymPy objects, with exact rational
//! coefficients. The script imports only `sympy`; running it defines the names below
//! (and, run directly, pretty-prints the drift and the diffusion).
//!
//! **Dimension 1** (`dim = None` or `Some(1)`), the notation of 1-D papers:
//! - each state is a `Symbol` named as in the rule (`x = Symbol('x')`, `v`, `m`, `u`,
//!   and the clock `t` when the rule reads the step counter);
//! - the objective is `f = Function('f')`, its derivatives `f(x).diff(x, k)`;
//! - the noise covariance is `Sigma = Function('Sigma')`, used as `Sigma(x)`, the higher
//!   noise moments `S(x)` (third), `M4(x)`, … when the result uses them;
//! - the small parameter and the hyperparameters are positive `Symbol`s (`eta`,
//!   `lambda_` for `lambda`, which is a Python keyword: names that clash with Python or
//!   with the script's own names get a trailing `_`; the SymPy name stays the rule's);
//! - elementwise functions are SymPy expressions (`sqrt`, `exp`, `log`, powers).
//!
//! **Dimension n ≥ 2**:
//! - a vector state `x` has the component symbols `x1, …, xn` (`m1_1, …` for a name
//!   ending in a digit) and `x = Matrix([x1, …, xn])`; a scalar state is one `Symbol`;
//! - the objective is the expression `f = Function('f')(x1, …, xn)`, derivatives by
//!   `.diff`: `f.diff(x1, x2)`, `f.diff(x1, 2)`, `f.diff(x1, 2, x2)`;
//! - `Sigma` is the symmetric n×n `Matrix` of the functions `Sigma_i_j(x1, …, xn)`,
//!   `i ≤ j`, 1-based (entry `(j, i)` is the same function `Sigma_i_j`), each also a
//!   variable `Sigma_i_j`; a higher moment's components are the variables `S_i_j_k`,
//!   `M4_i_j_k_l` (indices sorted), defined when the result uses them.
//!
//! **The result**, in every dimension:
//! - `drift`: for one state, the drift itself; for several, a dict from the state's name
//!   to its drift, `{'x': b_x, 'v': b_v}`. A drift is a SymPy expression in dimension 1
//!   or for a scalar state, otherwise a column `Matrix`;
//! - `diffusion`: `D = σσᵀ`; for one state the block itself, for several a dict from
//!   every ordered pair of state names to its block, `{('x','x'): D_xx, ('x','v'): D_xv,
//!   ('v','x'): D_vx, ('v','v'): D_vv}` with `D_vx = D_xvᵀ`. A block is an expression in
//!   dimension 1 or between two scalar states, otherwise a `Matrix` of shape
//!   (rows' length) × (columns' length), a scalar state's length being 1;
//! - `state_vector`, `drift_vector`, `diffusion_matrix`: the whole state `Z`, drift `b`
//!   and diffusion `D` as one column and one square `Matrix` (states in the rule's order);
//! - `conditions`: a list of dicts `{'moment': ('x', 'x', 'x'), 'power': 3,
//!   'needed_for_order': 3, 'residual': …}` (the residual is 0 when the condition holds;
//!   with three or more vector indices it is a SymPy `Array`);
//! - `optimizer`, `order`, `requested_order`, `time_step` (the time one step represents),
//!   `diffusion_from_next_order`, `dim`;
//! - `eliminated`: the fast states eliminated from the SME, dicts `{'state': 'v', 'rate':
//!   …, 'scale': 1, 'complement': None}` (`complement` names the symbol standing for
//!   1/(1 − rate) where the rate is a symbol), and `notes`, the derivation's notes.

use super::components::{components, substitute_dim, CFactor, CTerm, Components};
use crate::algebra::elem::FExpr;
use crate::algebra::poly::{Monomial, Poly, Sym};
use crate::sme::Sme;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

/// How tightly a rendered Python expression binds: what it may stand next to without
/// parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    /// `a + b`
    Sum,
    /// `a*b`, `a/b`, `-a`
    Product,
    /// `a**k`
    Power,
    /// a name, a call, a parenthesized expression
    Atom,
}

/// Python keywords and soft keywords: never a variable's name.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "match", "case", "type", "_",
];

/// The names the script itself defines or uses.
const RESERVED: &[&str] = &[
    "sympy",
    "Symbol",
    "Function",
    "Matrix",
    "MatrixBase",
    "Array",
    "Rational",
    "Integer",
    "sqrt",
    "exp",
    "log",
    "zeros",
    "pprint",
    "isinstance",
    "print",
    "f",
    "Sigma",
    "S",
    "drift",
    "diffusion",
    "conditions",
    "state_vector",
    "drift_vector",
    "diffusion_matrix",
    "optimizer",
    "order",
    "requested_order",
    "time_step",
    "diffusion_from_next_order",
    "dim",
    "eliminated",
    "notes",
    "_as_matrix",
    "_name",
    "_value",
    "_items",
    "_key",
    "_entry",
];

/// Hands out distinct Python identifiers.
struct Alloc {
    used: HashSet<String>,
}

impl Alloc {
    fn new() -> Alloc {
        let mut used: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        used.extend(KEYWORDS.iter().map(|s| s.to_string()));
        used.extend((3..=32).map(|r| format!("M{r}")));
        Alloc { used }
    }

    /// A fresh identifier as close to `want` as possible.
    fn take(&mut self, want: &str) -> String {
        let mut s = sanitize(want);
        while self.used.contains(&s) {
            s.push('_');
        }
        self.used.insert(s.clone());
        s
    }
}

/// A Python identifier for a name: ASCII letters, digits, `_` and the Greek letters
/// (stable under Python's NFKC normalization of identifiers) are kept, any other
/// character becomes `u<hex>`.
fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let greek = ('\u{391}'..='\u{3A9}').contains(&c) && c != '\u{3A2}'
            || ('\u{3B1}'..='\u{3C9}').contains(&c);
        if c.is_ascii_alphanumeric() || c == '_' || greek {
            out.push(c);
        } else {
            let _ = write!(out, "u{:04x}", c as u32);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A Python string literal.
fn quote(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The Python names of one state variable.
struct StateNames {
    /// The name in the rule (the key of `drift` and `diffusion`).
    key: String,
    scalar: bool,
    /// The variable: its `Symbol` (dimension 1, scalar states) or its `Matrix`.
    var: String,
    /// Dimension n ≥ 2, vector state: the components' variables and SymPy names.
    comps: Vec<(String, String)>,
}

/// The name of the `r`-th noise moment.
fn moment_base(r: u8) -> String {
    match r {
        2 => "Sigma".to_string(),
        3 => "S".to_string(),
        r => format!("M{r}"),
    }
}

/// The SymPy name of a moment's component, 1-based: `Sigma_1_2`, `S_1_1_2`.
fn moment_component(r: u8, idx: &[usize]) -> String {
    let mut s = moment_base(r);
    for i in idx {
        let _ = write!(s, "_{}", i + 1);
    }
    s
}

/// The state's component name: `x1`, or `m1_1` for a name ending in a digit.
fn component_name(name: &str, i: usize) -> String {
    if name.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{name}_{}", i + 1)
    } else {
        format!("{name}{}", i + 1)
    }
}

/// Everything the rendering needs: the result, the dimension, the Python names.
struct Script<'a> {
    sme: &'a Sme,
    n: usize,
    states: Vec<StateNames>,
    /// Python name of each coefficient symbol (`None` for the dimension `d`).
    syms: Vec<Option<String>>,
    /// Dimension n ≥ 2: the variable of each moment component used.
    moments: BTreeMap<(u8, Vec<usize>), String>,
    /// The arguments of `f` and the moments: `x` or `x1, x2`.
    args: String,
}

/// A value of the result: its components and the shape it is written in.
struct Value {
    comps: Components,
    /// The lengths of its free indices, in order (empty: a scalar).
    shape: Vec<usize>,
    /// A single free index that is a row (`D^{ac}` with `a` scalar, `c` a vector).
    row: bool,
}

/// The SymPy script for an SME in dimension `dim` (`None`: 1; values below 1 are taken
/// as 1). See the module documentation for the names it defines.
pub fn render(sme: &Sme, dim: Option<usize>) -> String {
    let (mut out, _) = script(sme, dim);
    out.push_str(MAIN);
    out
}

/// The script's `__main__` block: it pretty-prints the drift and the diffusion.
pub(super) const MAIN: &str = "\nif __name__ == '__main__':\n    for _name, _value in [('drift', drift), ('diffusion', diffusion)]:\n        _items = _value.items() if isinstance(_value, dict) else [(None, _value)]\n        for _key, _entry in _items:\n            print(_name if _key is None else f'{_name}[{_key!r}]', '=')\n            pprint(_entry)\n";

/// The script without its `__main__` block, and the Python name of the small parameter:
/// for [`render`] and for the Hessian-aware SME (which continues it with its closed forms).
pub(super) fn script(sme: &Sme, dim: Option<usize>) -> (String, String) {
    let n = dim.unwrap_or(1).max(1);
    let len = |v: usize| if sme.vars[v].scalar { 1 } else { n };
    let value = |e: &crate::algebra::tensor::TExpr, vars: &[usize]| {
        let shape: Vec<usize> = if n == 1 {
            Vec::new()
        } else {
            vars.iter()
                .filter(|&&v| !sme.vars[v].scalar)
                .map(|_| n)
                .collect()
        };
        Value {
            comps: components(sme, e, n),
            row: n > 1 && vars.len() == 2 && sme.vars[vars[0]].scalar && shape.len() == 1,
            shape,
        }
    };
    let drift: Vec<Value> = sme
        .drift
        .iter()
        .enumerate()
        .map(|(v, e)| value(e, &[v]))
        .collect();
    // The blocks `D^{ac}`, `a ≤ c`, that the result has.
    let mut blocks: BTreeMap<(usize, usize), Value> = BTreeMap::new();
    for b in &sme.diffusion {
        blocks.insert((b.rows, b.cols), value(&b.expr, &[b.rows, b.cols]));
    }
    let conditions: Vec<Value> = sme
        .conditions
        .iter()
        .map(|c| value(&c.residual, &c.vars))
        .collect();

    // The moments used.
    let mut used: BTreeSet<(u8, Vec<usize>)> = BTreeSet::new();
    let all = drift.iter().chain(blocks.values()).chain(conditions.iter());
    for v in all {
        for (_, terms) in &v.comps {
            for t in terms {
                for f in &t.factors {
                    if let CFactor::Moment { r, idx, .. } = f {
                        used.insert((*r, idx.clone()));
                    }
                }
            }
        }
    }
    let noisy = !sme.noise.is_empty() || used.iter().any(|(r, _)| *r == 2);

    // Names: the script's own first, then moment components, states, symbols.
    let mut alloc = Alloc::new();
    let mut moments = BTreeMap::new();
    if n > 1 {
        if noisy {
            for i in 0..n {
                for j in i..n {
                    used.insert((2, vec![i, j]));
                }
            }
        }
        for (r, idx) in &used {
            let name = alloc.take(&moment_component(*r, idx));
            moments.insert((*r, idx.clone()), name);
        }
    }
    let mut states: Vec<StateNames> = Vec::new();
    for info in &sme.vars {
        let comps = if n > 1 && !info.scalar {
            (0..n)
                .map(|i| {
                    let display = component_name(&info.name, i);
                    (alloc.take(&display), display)
                })
                .collect()
        } else {
            Vec::new()
        };
        states.push(StateNames {
            key: info.name.clone(),
            scalar: info.scalar,
            var: String::new(),
            comps,
        });
    }
    for s in &mut states {
        s.var = alloc.take(&s.key);
    }
    let mut syms = Vec::new();
    for s in 0.. {
        let Some(name) = sme.symbols.try_name(s) else {
            break;
        };
        syms.push((s != sme.dim as usize).then(|| alloc.take(name)));
    }
    let args = if n == 1 {
        states[0].var.clone()
    } else {
        states[0]
            .comps
            .iter()
            .map(|(py, _)| py.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cx = Script {
        sme,
        n,
        states,
        syms,
        moments,
        args,
    };
    let mut used_r: BTreeSet<u8> = used.iter().map(|(r, _)| *r).collect();
    if noisy {
        used_r.insert(2);
    }

    let mut out = String::new();
    cx.header(&mut out, &used_r);
    cx.definitions(&mut out, &used_r);

    // The drift.
    let multi = cx.states.len() > 1;
    out.push('\n');
    if multi {
        out.push_str("drift = {\n");
        for (s, v) in cx.states.iter().zip(&drift) {
            let _ = writeln!(out, "    {}: {},", quote(&s.key), cx.value(v, 4));
        }
        out.push_str("}\n");
    } else {
        let _ = writeln!(out, "drift = {}", cx.value(&drift[0], 0));
    }

    // The diffusion.
    out.push('\n');
    if multi {
        out.push_str("diffusion = {\n");
        let count = cx.states.len();
        for a in 0..count {
            for c in a..count {
                // A block the result leaves out is zero.
                let text = blocks
                    .get(&(a, c))
                    .map_or_else(|| cx.zero(len(a), len(c)), |v| cx.value(v, 4));
                let _ = writeln!(
                    out,
                    "    ({}, {}): {text},",
                    quote(&cx.states[a].key),
                    quote(&cx.states[c].key),
                );
            }
        }
        out.push_str("}\n");
        let lower: Vec<(usize, usize)> = (0..count)
            .flat_map(|a| (a + 1..count).map(move |c| (c, a)))
            .filter(|k| !blocks.contains_key(k))
            .collect();
        if !lower.is_empty() {
            out.push_str("# The blocks below the diagonal: D_ca is the transpose of D_ac.\n");
        }
        for (c, a) in lower {
            let matrix = n > 1 && (len(a) > 1 || len(c) > 1);
            let _ = writeln!(
                out,
                "diffusion[({}, {})] = diffusion[({}, {})]{}",
                quote(&cx.states[c].key),
                quote(&cx.states[a].key),
                quote(&cx.states[a].key),
                quote(&cx.states[c].key),
                if matrix { ".T" } else { "" }
            );
        }
    } else {
        match blocks.values().next() {
            Some(v) => {
                let _ = writeln!(out, "diffusion = {}", cx.value(v, 0));
            }
            None => {
                let _ = writeln!(out, "diffusion = {}", cx.zero(len(0), len(0)));
            }
        }
    }

    // The whole state, drift and diffusion.
    out.push_str(
        "\n\ndef _as_matrix(e):\n    return e if isinstance(e, MatrixBase) else Matrix([[e]])\n\n\n",
    );
    let vars: Vec<&str> = cx.states.iter().map(|s| s.var.as_str()).collect();
    let _ = writeln!(
        out,
        "state_vector = Matrix.vstack(*[_as_matrix(z) for z in [{}]])",
        vars.join(", ")
    );
    if multi {
        let keys: Vec<String> = cx.states.iter().map(|s| quote(&s.key)).collect();
        let keys = keys.join(", ");
        let _ = writeln!(
            out,
            "drift_vector = Matrix.vstack(*[_as_matrix(drift[a]) for a in [{keys}]])"
        );
        let _ = writeln!(
            out,
            "diffusion_matrix = Matrix.vstack(*[\n    Matrix.hstack(*[_as_matrix(diffusion[(a, c)]) for c in [{keys}]])\n    for a in [{keys}]\n])"
        );
    } else {
        out.push_str(
            "drift_vector = _as_matrix(drift)\ndiffusion_matrix = _as_matrix(diffusion)\n",
        );
    }

    // The conditions.
    out.push('\n');
    if conditions.is_empty() {
        out.push_str("conditions = []\n");
    } else {
        out.push_str("conditions = [\n");
        for (c, v) in sme.conditions.iter().zip(&conditions) {
            let moment: Vec<String> = c.vars.iter().map(|&a| quote(&cx.states[a].key)).collect();
            let moment = if moment.len() == 1 {
                format!("({},)", moment[0])
            } else {
                format!("({})", moment.join(", "))
            };
            let _ = writeln!(
                out,
                "    {{\n        'moment': {moment},\n        'power': {},\n        'needed_for_order': {},\n        'residual': {},\n    }},",
                c.power,
                c.needed_for_order,
                cx.value(v, 8)
            );
        }
        out.push_str("]\n");
    }
    let small = cx.syms[sme.small as usize].clone().unwrap_or_default();
    (out, small)
}

impl Script<'_> {
    fn header(&self, out: &mut String, used_r: &BTreeSet<u8>) {
        let sme = self.sme;
        let n = self.n;
        let multi = self.states.len() > 1;
        let order = if sme.order < sme.requested_order {
            format!(
                "weak order {} (order {} was asked for; see `conditions`)",
                sme.order, sme.requested_order
            )
        } else {
            format!("weak order {}", sme.order)
        };
        let _ = writeln!(
            out,
            "# The stochastic modified equation (SME) of {}, {order},\n# derived by smelt from the optimizer's update rule, rebuilt with SymPy.\n#\n#   dZ = b(Z) dt + sigma(Z) dW,   D = sigma sigma^T,   one step = time {}\n#",
            sme.optimizer,
            self.poly(&sme.time).0
        );
        let mut lines: Vec<(String, String)> = Vec::new();
        let x = &self.args;
        if n == 1 {
            let _ = writeln!(out, "# Dimension 1, in the notation of 1-D papers:");
            for s in &self.states {
                let what = if sme.clock.is_some_and(|c| self.states[c].var == s.var) {
                    "the clock (a Symbol): step k is at time t = k*time_step".to_string()
                } else if s.var == self.states[0].var {
                    "the parameter (a Symbol)".to_string()
                } else {
                    format!("the state {} (a Symbol)", s.key)
                };
                lines.push((s.var.clone(), what));
            }
            lines.push((
                "f".to_string(),
                format!("the objective, Function('f'): f({x}), f({x}).diff({x}, k)"),
            ));
            if used_r.contains(&2) {
                lines.push((
                    "Sigma".to_string(),
                    format!("the gradient noise's covariance, Function('Sigma'): Sigma({x})"),
                ));
            }
            for r in used_r.iter().filter(|r| **r > 2) {
                let base = moment_base(*r);
                lines.push((
                    base.clone(),
                    format!("the noise's moment of order {r}, a Function: {base}({x})"),
                ));
            }
        } else {
            let _ = writeln!(out, "# Dimension {n}:");
            for s in &self.states {
                let what = if s.scalar {
                    if sme.clock.is_some_and(|c| self.states[c].var == s.var) {
                        "the clock (a Symbol): step k is at time t = k*time_step".to_string()
                    } else {
                        format!("the scalar state {} (a Symbol)", s.key)
                    }
                } else {
                    let comps: Vec<&str> = s.comps.iter().map(|(py, _)| py.as_str()).collect();
                    let whose = if s.var == self.states[0].var {
                        "the parameter".to_string()
                    } else {
                        format!("the state {}", s.key)
                    };
                    format!("{whose}, Matrix([{}]) of Symbols", comps.join(", "))
                };
                lines.push((s.var.clone(), what));
            }
            lines.push((
                "f".to_string(),
                format!("the objective, Function('f')({x}); derivatives f.diff(x1, 2, x2)"),
            ));
            if used_r.contains(&2) {
                lines.push((
                    "Sigma".to_string(),
                    format!(
                        "the noise covariance: the symmetric {n}x{n} Matrix of the Functions\n#                Sigma_i_j({x}), i <= j (1-based); entry (j, i) is Sigma_i_j"
                    ),
                ));
            }
            for r in used_r.iter().filter(|r| **r > 2) {
                let base = moment_base(*r);
                lines.push((
                    format!("{base}_i_.."),
                    format!("the noise's moment of order {r}: Functions of the state, indices\n#                sorted, 1-based, defined when used"),
                ));
            }
        }
        let hypers: Vec<&str> = self
            .syms
            .iter()
            .enumerate()
            .filter(|(s, _)| *s != sme.small as usize)
            .filter_map(|(_, p)| p.as_deref())
            .collect();
        lines.push((
            self.sym(sme.small),
            "the small parameter (a positive Symbol)".to_string(),
        ));
        if !hypers.is_empty() {
            lines.push((
                hypers.join(", "),
                "hyperparameters (positive Symbols)".to_string(),
            ));
        }
        lines.push(("# Result".to_string(), String::new()));
        let (drift_shape, diff_shape) = match (n, multi) {
            (1, _) => ("a SymPy expression", "a SymPy expression"),
            (_, false) => ("a column Matrix", "a Matrix"),
            (_, true) => (
                "a column Matrix (an expression for a scalar state)",
                "a Matrix (rows x columns,\n#                a scalar state's length 1; an expression between scalar states)",
            ),
        };
        if multi {
            let keys: Vec<String> = self
                .states
                .iter()
                .map(|s| format!("{}: b_{}", quote(&s.key), s.key))
                .collect();
            lines.push((
                "drift".to_string(),
                format!(
                    "{{{}}}: the drift of each state,\n#                each {drift_shape}",
                    keys.join(", ")
                ),
            ));
            lines.push((
                "diffusion".to_string(),
                format!("{{(a, c): D_ac}} for every ordered pair of states, D = sigma sigma^T;\n#                D_ca is the transpose of D_ac; each {diff_shape}"),
            ));
        } else {
            lines.push(("drift".to_string(), format!("the drift b, {drift_shape}")));
            lines.push((
                "diffusion".to_string(),
                format!("D = sigma sigma^T, {diff_shape}"),
            ));
        }
        lines.push((
            "state_vector, drift_vector, diffusion_matrix".to_string(),
            "Z, b and D as one column and one square Matrix".to_string(),
        ));
        lines.push((
            "conditions".to_string(),
            "the moment conditions beyond drift and diffusion (residual 0: met)".to_string(),
        ));
        for (label, text) in lines {
            if label == "# Result" {
                out.push_str("# The result:\n");
            } else {
                // A long label stands on its own line.
                if label.chars().count() > 12 {
                    let _ = writeln!(out, "#   {label}\n#   {:<12} {text}", "");
                } else {
                    let _ = writeln!(out, "#   {label:<12} {text}");
                }
            }
        }
        if sme.diffusion_from_next_order {
            let _ = writeln!(
                out,
                "# Order {} does not constrain the diffusion; it is the leading one order {} forces.",
                sme.order,
                sme.order + 1
            );
        }
    }

    fn definitions(&self, out: &mut String, used_r: &BTreeSet<u8>) {
        let sme = self.sme;
        out.push_str(
            "\nfrom sympy import (Abs, Array, Function, Integer, Matrix, MatrixBase, Rational, Symbol,\n                   erf, exp, log, pi, pprint, sign, sqrt, zeros)\n\n",
        );
        let _ = writeln!(out, "optimizer = {}", quote(&sme.optimizer));
        let _ = writeln!(out, "order = {}", sme.order);
        let _ = writeln!(out, "requested_order = {}", sme.requested_order);
        let _ = writeln!(out, "dim = {}", self.n);
        let _ = writeln!(
            out,
            "diffusion_from_next_order = {}",
            if sme.diffusion_from_next_order {
                "True"
            } else {
                "False"
            }
        );
        out.push_str("\n# The small parameter and the hyperparameters.\n");
        for (s, py) in self.syms.iter().enumerate() {
            if let Some(py) = py {
                let name = sme.symbols.try_name(s).unwrap_or_default();
                let _ = writeln!(out, "{py} = Symbol({}, positive=True)", quote(name));
            }
        }
        let _ = writeln!(out, "time_step = {}", self.poly(&sme.time).0);
        // The eliminated fast states and the notes (what the reduction assumes).
        out.push_str("eliminated = [");
        for e in &sme.eliminated {
            let _ = write!(
                out,
                "{{'state': {}, 'rate': {}, 'scale': {}, 'complement': {}}}, ",
                quote(&e.name),
                self.poly(&e.rate).0,
                e.scale,
                e.complement
                    .as_deref()
                    .map_or_else(|| "None".to_string(), quote)
            );
        }
        out.push_str("]\n");
        out.push_str("notes = [\n");
        for n in &sme.notes {
            let _ = writeln!(out, "    {},", quote(n));
        }
        out.push_str("]\n");
        out.push_str("\n# The state.\n");
        for s in &self.states {
            if self.n == 1 || s.scalar {
                let _ = writeln!(out, "{} = Symbol({})", s.var, quote(&s.key));
            } else {
                for (py, display) in &s.comps {
                    let _ = writeln!(out, "{py} = Symbol({})", quote(display));
                }
                let comps: Vec<&str> = s.comps.iter().map(|(py, _)| py.as_str()).collect();
                let _ = writeln!(out, "{} = Matrix([{}])", s.var, comps.join(", "));
            }
        }
        out.push_str("\n# The objective and the gradient noise.\n");
        if self.n == 1 {
            out.push_str("f = Function('f')\n");
            for r in used_r {
                let base = moment_base(*r);
                let _ = writeln!(out, "{base} = Function({})", quote(&base));
            }
        } else {
            let _ = writeln!(out, "f = Function('f')({})", self.args);
            for ((r, idx), py) in &self.moments {
                let _ = writeln!(
                    out,
                    "{py} = Function({})({})",
                    quote(&moment_component(*r, idx)),
                    self.args
                );
            }
            if used_r.contains(&2) {
                out.push_str("Sigma = Matrix([\n");
                for i in 0..self.n {
                    let row: Vec<&str> = (0..self.n)
                        .map(|j| {
                            let key = (2, vec![i.min(j), i.max(j)]);
                            self.moments.get(&key).map_or("0", String::as_str)
                        })
                        .collect();
                    let _ = writeln!(out, "    [{}],", row.join(", "));
                }
                out.push_str("])\n");
            }
        }
    }

    /// The Python name of a coefficient symbol (the dimension is never rendered).
    fn sym(&self, s: Sym) -> String {
        self.syms
            .get(s as usize)
            .and_then(|p| p.clone())
            .unwrap_or_else(|| self.n.to_string())
    }

    /// A value at indentation `indent`: an expression, or a Matrix / Array of them.
    fn value(&self, v: &Value, indent: usize) -> String {
        let pad = " ".repeat(indent);
        let entries: Vec<String> = v.comps.iter().map(|(_, t)| self.expr(t)).collect();
        let all_zero = v.comps.iter().all(|(_, t)| t.is_empty());
        match v.shape.len() {
            0 => entries
                .into_iter()
                .next()
                .unwrap_or_else(|| "Integer(0)".to_string()),
            1 => {
                let (r, c) = if v.row { (1, self.n) } else { (self.n, 1) };
                if all_zero {
                    return format!("zeros({r}, {c})");
                }
                let mut s = String::from(if v.row { "Matrix([[\n" } else { "Matrix([\n" });
                for e in &entries {
                    let _ = writeln!(s, "{pad}    {e},");
                }
                s.push_str(&pad);
                s.push_str(if v.row { "]])" } else { "])" });
                s
            }
            2 => {
                if all_zero {
                    return format!("zeros({}, {})", v.shape[0], v.shape[1]);
                }
                let mut s = String::from("Matrix([\n");
                for row in entries.chunks(v.shape[1].max(1)) {
                    let _ = writeln!(s, "{pad}    [{}],", row.join(", "));
                }
                s.push_str(&pad);
                s.push_str("])");
                s
            }
            _ => format!("Array({})", nested(&entries, &v.shape)),
        }
    }

    /// A zero block of `rows × cols` (an expression when both are 1).
    fn zero(&self, rows: usize, cols: usize) -> String {
        if rows == 1 && cols == 1 {
            "Integer(0)".to_string()
        } else {
            format!("zeros({rows}, {cols})")
        }
    }

    /// A sum of component terms, one summand per monomial of each coefficient, ordered
    /// by the power of the small parameter.
    fn expr(&self, terms: &[CTerm]) -> String {
        let small = self.sme.small;
        let mut summands: Vec<(i32, usize, bool, String)> = Vec::new();
        for (k, t) in terms.iter().enumerate() {
            let coef = substitute_dim(&t.coef, self.sme.dim, self.n);
            for (mono, c) in coef.terms() {
                let (neg, text, _) = self.summand(c, mono, &t.factors);
                summands.push((Poly::exponent(mono, small), k, neg, text));
            }
        }
        summands.sort_by_key(|s| (s.0, s.1));
        join_summands(summands.into_iter().map(|(_, _, neg, t)| (neg, t)))
    }

    /// `c · mono · Π factors` as Python: the sign, the text (exact: integer divisions
    /// only ever divide a SymPy object) and its binding.
    fn summand(
        &self,
        c: &BigRational,
        mono: &Monomial,
        factors: &[CFactor],
    ) -> (bool, String, Prec) {
        let neg = c.is_negative();
        let c = c.abs();
        let mut num: Vec<(String, Prec)> = Vec::new();
        let mut den: Vec<(String, Prec)> = Vec::new();
        // The symbols, the small parameter last.
        let small = self.sme.small;
        let mut powers: Vec<(Sym, i32)> =
            mono.iter().filter(|(s, _)| *s != small).copied().collect();
        powers.extend(mono.iter().filter(|(s, _)| *s == small).copied());
        for (s, e) in powers {
            let name = self.sym(s);
            let target = if e > 0 { &mut num } else { &mut den };
            let k = e.unsigned_abs();
            target.push(if k == 1 {
                (name, Prec::Atom)
            } else {
                (format!("{name}**{k}"), Prec::Power)
            });
        }
        // The factors, equal ones as powers.
        let mut k = 0;
        while k < factors.len() {
            let mut m = k + 1;
            while m < factors.len() && factors[m] == factors[k] {
                m += 1;
            }
            let count = m - k;
            if let CFactor::Elem { id, index } = &factors[k] {
                // An elementwise function's reciprocal parts go to the denominator.
                let items = match self.sme.elem.get(*id) {
                    FExpr::Prod(items) => items.clone(),
                    other => vec![other.clone()],
                };
                let power = BigRational::from_integer(BigInt::from(count));
                for item in items {
                    let (target, g) = match item {
                        FExpr::Pow(b, q) if q.is_negative() => (&mut den, FExpr::Pow(b, -q)),
                        other => (&mut num, other),
                    };
                    let g = FExpr::Pow(Box::new(g), power.clone()).simplify();
                    target.push(self.fexpr(&g, *index));
                }
                k = m;
                continue;
            }
            let (text, prec) = self.factor(&factors[k]);
            if count == 1 {
                num.push((text, prec));
            } else {
                let base = if prec == Prec::Atom {
                    text
                } else {
                    format!("({text})")
                };
                num.push((format!("{base}**{count}"), Prec::Power));
            }
            k = m;
        }
        if num.is_empty() && den.is_empty() {
            return (neg, rational(&c), Prec::Atom);
        }
        let several =
            num.len() + den.len() + usize::from(!c.numer().is_one()) > 1 || !c.denom().is_one();
        if !several && den.is_empty() {
            // One item: its own binding (a sum in parentheses, so that a sign before
            // it negates the whole sum).
            let (t, p) = num.swap_remove(0);
            if p == Prec::Sum {
                return (neg, format!("({t})"), Prec::Atom);
            }
            return (neg, t, p);
        }
        let mut top: Vec<String> = Vec::new();
        if !c.numer().is_one() {
            top.push(c.numer().to_string());
        }
        for (t, p) in num {
            let wrap = p == Prec::Sum || (several && p == Prec::Product) || t.starts_with('-');
            top.push(if wrap { format!("({t})") } else { t });
        }
        let mut text = if top.is_empty() {
            "1".to_string()
        } else {
            top.join("*")
        };
        let mut bottom: Vec<String> = Vec::new();
        if !c.denom().is_one() {
            bottom.push(c.denom().to_string());
        }
        for (t, p) in &den {
            bottom.push(if *p >= Prec::Power {
                t.clone()
            } else {
                format!("({t})")
            });
        }
        match bottom.len() {
            0 => {}
            1 => {
                let _ = write!(text, "/{}", bottom[0]);
            }
            _ => {
                let _ = write!(text, "/({})", bottom.join("*"));
            }
        }
        (neg, text, Prec::Product)
    }

    /// A polynomial of the coefficient symbols as Python, with its binding.
    fn poly(&self, p: &Poly) -> (String, Prec) {
        let p = substitute_dim(p, self.sme.dim, self.n);
        let items: Vec<(bool, String, Prec)> =
            p.terms().map(|(m, c)| self.summand(c, m, &[])).collect();
        match &items[..] {
            [] => ("Integer(0)".to_string(), Prec::Atom),
            [(neg, t, prec)] => {
                if *neg {
                    let t = if *prec == Prec::Sum {
                        format!("({t})")
                    } else {
                        t.clone()
                    };
                    (format!("-{t}"), Prec::Product)
                } else {
                    (t.clone(), *prec)
                }
            }
            _ => (
                join_summands(items.into_iter().map(|(n, t, _)| (n, bare(t)))),
                Prec::Sum,
            ),
        }
    }

    /// A concrete factor as Python.
    fn factor(&self, f: &CFactor) -> (String, Prec) {
        match f {
            CFactor::DerivF(ix) => {
                let base = if self.n == 1 {
                    format!("f({})", self.args)
                } else {
                    "f".to_string()
                };
                (self.diff(base, ix), Prec::Atom)
            }
            CFactor::Moment { r, idx, deriv } => {
                let base = if self.n == 1 {
                    format!("{}({})", moment_base(*r), self.args)
                } else {
                    self.moments
                        .get(&(*r, idx.clone()))
                        .cloned()
                        .unwrap_or_else(|| moment_component(*r, idx))
                };
                (self.diff(base, deriv), Prec::Atom)
            }
            CFactor::State { var, index } => (self.component(*var, *index), Prec::Atom),
            CFactor::Elem { id, index } => self.fexpr(self.sme.elem.get(*id), *index),
            CFactor::Noise {
                sample,
                point,
                index,
            } => (
                format!(
                    "Symbol('noise{sample}_{point}{}')",
                    index.map_or(String::new(), |i| format!("_{}", i + 1))
                ),
                Prec::Atom,
            ),
            // An off-diagonal entry of a kink pair: a bivariate normal mean, named.
            CFactor::Pair { id, i, j } => {
                (format!("Symbol('P{id}_{}_{}')", i + 1, j + 1), Prec::Atom)
            }
            CFactor::Disp { var, index } => (
                format!(
                    "Symbol({})",
                    quote(&format!(
                        "Delta_{}{}",
                        self.sme.vars[*var as usize].name,
                        index.map_or(String::new(), |i| format!("_{}", i + 1))
                    ))
                ),
                Prec::Atom,
            ),
        }
    }

    /// `base.diff(...)` in the parameter components `ix` (sorted).
    fn diff(&self, base: String, ix: &[usize]) -> String {
        if ix.is_empty() {
            return base;
        }
        let param = &self.states[0];
        let mut args: Vec<String> = Vec::new();
        let mut k = 0;
        while k < ix.len() {
            let mut m = k + 1;
            while m < ix.len() && ix[m] == ix[k] {
                m += 1;
            }
            let name = if self.n == 1 {
                param.var.clone()
            } else {
                param
                    .comps
                    .get(ix[k])
                    .map_or_else(|| param.var.clone(), |(py, _)| py.clone())
            };
            let count = m - k;
            args.push(if count == 1 {
                name
            } else {
                format!("{name}, {count}")
            });
            k = m;
        }
        format!("{base}.diff({})", args.join(", "))
    }

    /// State variable `v` at component `index` (its Symbol in dimension 1 and for a
    /// scalar state).
    fn component(&self, v: u8, index: Option<usize>) -> String {
        let s = &self.states[v as usize];
        match index {
            Some(i) if self.n > 1 && !s.scalar => s
                .comps
                .get(i)
                .map_or_else(|| s.var.clone(), |(py, _)| py.clone()),
            _ => s.var.clone(),
        }
    }

    /// An elementwise function at component `index` as Python.
    fn fexpr(&self, f: &FExpr, index: Option<usize>) -> (String, Prec) {
        match f {
            FExpr::Const(c) => self.poly(c),
            FExpr::Var(v) => (self.component(*v, index), Prec::Atom),
            FExpr::Sum(items) => {
                if let [one] = &items[..] {
                    return self.fexpr(one, index);
                }
                // Other items are SymPy objects: an integer may stay a Python int.
                let terms = items.iter().map(|i| {
                    let (t, p) = self.fexpr(i, index);
                    (bare(t), p >= Prec::Product)
                });
                (super::join_sum(terms), Prec::Sum)
            }
            FExpr::Prod(items) => {
                let mut ratio = BigRational::one();
                let mut top: Vec<(String, Prec)> = Vec::new();
                let mut bottom: Vec<(String, Prec)> = Vec::new();
                for i in items {
                    if let Some(r) = i.as_const().and_then(Poly::as_constant) {
                        ratio *= r;
                        continue;
                    }
                    match i {
                        FExpr::Pow(b, q) if q.is_negative() => {
                            let pos = FExpr::Pow(b.clone(), -q.clone()).simplify();
                            bottom.push(self.fexpr(&pos, index));
                        }
                        other => {
                            let (mut t, p) = self.fexpr(other, index);
                            if p >= Prec::Product {
                                if let Some(rest) = t.strip_prefix('-') {
                                    ratio = -ratio;
                                    t = rest.to_string();
                                }
                            }
                            top.push((t, p));
                        }
                    }
                }
                if ratio.is_zero() {
                    return ("Integer(0)".to_string(), Prec::Atom);
                }
                let neg = ratio.is_negative();
                let ratio = ratio.abs();
                let sign = if neg { "-" } else { "" };
                if top.is_empty() && bottom.is_empty() {
                    let t = rational(&ratio);
                    return if neg {
                        (format!("-{t}"), Prec::Product)
                    } else {
                        (t, Prec::Atom)
                    };
                }
                if ratio.is_one() && bottom.is_empty() && top.len() == 1 {
                    let (t, p) = top.swap_remove(0);
                    return match (neg, p) {
                        (false, p) => (t, p),
                        (true, Prec::Sum) => (format!("-({t})"), Prec::Product),
                        (true, _) => (format!("-{t}"), Prec::Product),
                    };
                }
                let mut num: Vec<String> = Vec::new();
                if !ratio.numer().is_one() {
                    num.push(ratio.numer().to_string());
                }
                let several = top.len() + bottom.len() > 1;
                for (t, p) in top {
                    // A quotient among other factors reads better in parentheses.
                    let quotient = several && p == Prec::Product && t.contains('/');
                    num.push(if p == Prec::Sum || t.starts_with('-') || quotient {
                        format!("({t})")
                    } else {
                        t
                    });
                }
                let mut text = if num.is_empty() {
                    "1".to_string()
                } else {
                    num.join("*")
                };
                let mut den: Vec<String> = Vec::new();
                if !ratio.denom().is_one() {
                    den.push(ratio.denom().to_string());
                }
                for (t, p) in &bottom {
                    den.push(if *p >= Prec::Power {
                        t.clone()
                    } else {
                        format!("({t})")
                    });
                }
                match den.len() {
                    0 => {}
                    1 => {
                        let _ = write!(text, "/{}", den[0]);
                    }
                    _ => {
                        let _ = write!(text, "/({})", den.join("*"));
                    }
                }
                (format!("{sign}{text}"), Prec::Product)
            }
            FExpr::Pow(b, q) => {
                if q.is_negative() {
                    let pos = FExpr::Pow(b.clone(), -q.clone()).simplify();
                    let (t, p) = self.fexpr(&pos, index);
                    let t = if p >= Prec::Power {
                        t
                    } else {
                        format!("({t})")
                    };
                    return (format!("1/{t}"), Prec::Product);
                }
                let (t, p) = self.fexpr(b, index);
                if *q == BigRational::new(BigInt::from(1), BigInt::from(2)) {
                    return (format!("sqrt({t})"), Prec::Atom);
                }
                let base = if p == Prec::Atom { t } else { format!("({t})") };
                if q.is_integer() {
                    (format!("{base}**{}", q.numer()), Prec::Power)
                } else {
                    (format!("{base}**{}", rational(q)), Prec::Power)
                }
            }
            FExpr::Exp(a) => (format!("exp({})", self.fexpr(a, index).0), Prec::Atom),
            FExpr::Log(a) => (format!("log({})", self.fexpr(a, index).0), Prec::Atom),
            FExpr::Abs(a) => (format!("Abs({})", self.fexpr(a, index).0), Prec::Atom),
            FExpr::Sign(a) => (format!("sign({})", self.fexpr(a, index).0), Prec::Atom),
            // Φ(a) = (1 + erf(a/√2))/2, φ(a) = exp(−a²/2)/√(2π).
            FExpr::Ncdf(a) => (
                format!("(1 + erf(({})/sqrt(2)))/2", self.fexpr(a, index).0),
                Prec::Product,
            ),
            FExpr::Npdf(a) => (
                format!("exp(-({})**2/2)/sqrt(2*pi)", self.fexpr(a, index).0),
                Prec::Product,
            ),
            FExpr::Field(field) => {
                let i = index.unwrap_or(0);
                match field {
                    crate::algebra::elem::Field::Grad => self.factor(&CFactor::DerivF(vec![i])),
                    crate::algebra::elem::Field::NoiseVar => self.factor(&CFactor::Moment {
                        r: 2,
                        idx: vec![i, i],
                        deriv: Vec::new(),
                    }),
                }
            }
            // Σ_j a_j: one term in the 1-D notation, every component in components.
            FExpr::Contract(a) if self.n > 1 => {
                let terms = (0..self.n).map(|j| {
                    let (t, p) = self.fexpr(a, Some(j));
                    (bare(t), p >= Prec::Product)
                });
                (format!("({})", super::join_sum(terms)), Prec::Atom)
            }
            FExpr::Contract(a) => self.fexpr(a, index),
        }
    }
}

/// An exact number as a SymPy object.
fn rational(r: &BigRational) -> String {
    if r.is_integer() {
        format!("Integer({})", r.numer())
    } else {
        format!("Rational({}, {})", r.numer(), r.denom())
    }
}

/// `Integer(k)` as the plain `k`, for a sum whose other terms are SymPy objects.
fn bare(s: String) -> String {
    let inner = |t: &str| {
        t.strip_prefix("Integer(")
            .and_then(|r| r.strip_suffix(')'))
            .filter(|r| r.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_string)
    };
    match s.strip_prefix('-') {
        Some(rest) => inner(rest).map_or(s.clone(), |k| format!("-{k}")),
        None => inner(&s).unwrap_or(s),
    }
}

/// Signed summands as a sum (`Integer(0)` when there are none).
fn join_summands(items: impl Iterator<Item = (bool, String)>) -> String {
    let mut out = String::new();
    for (neg, t) in items {
        let sign = match (out.is_empty(), neg) {
            (true, true) => "-",
            (true, false) => "",
            (false, true) => " - ",
            (false, false) => " + ",
        };
        out.push_str(sign);
        out.push_str(&t);
    }
    if out.is_empty() {
        "Integer(0)".to_string()
    } else {
        out
    }
}

/// Row-major entries as nested Python lists of the given shape.
fn nested(entries: &[String], shape: &[usize]) -> String {
    match shape {
        [] => entries.first().cloned().unwrap_or_else(|| "0".to_string()),
        [_, rest @ ..] => {
            let step: usize = rest.iter().product::<usize>().max(1);
            let parts: Vec<String> = entries.chunks(step).map(|c| nested(c, rest)).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_python_identifiers() {
        assert_eq!(sanitize("eta"), "eta");
        assert_eq!(sanitize("η"), "η");
        assert_eq!(sanitize("µ"), "u00b5");
        let mut a = Alloc::new();
        assert_eq!(a.take("lambda"), "lambda_");
        assert_eq!(a.take("f"), "f_");
        assert_eq!(a.take("x"), "x");
        assert_eq!(a.take("x"), "x_");
    }

    #[test]
    fn sgd_in_one_and_two_dimensions() {
        let src = "optimizer SGD\n  param x\n  small eta\n  noise xi ~ general\n  x = x - eta*(grad f(x) + xi)\n";
        let sme = crate::derive(src, &crate::Options::order(2)).expect("derives");
        let one = render(&sme, None);
        assert!(one.contains("x = Symbol('x')"), "{one}");
        assert!(one.contains("eta = Symbol('eta', positive=True)"), "{one}");
        assert!(
            one.contains("drift = -f(x).diff(x) - eta*f(x).diff(x)*f(x).diff(x, 2)/2"),
            "{one}"
        );
        assert!(one.contains("diffusion = eta*Sigma(x)"), "{one}");
        let two = render(&sme, Some(2));
        assert!(two.contains("f = Function('f')(x1, x2)"), "{two}");
        assert!(two.contains("[eta*Sigma_1_2, eta*Sigma_2_2]"), "{two}");
        assert!(two.contains("f.diff(x1, x2)"), "{two}");
    }
}
