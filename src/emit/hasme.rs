//! The Hessian-aware SME ([`HaSme`]) in every format: pure functions of the result.
//!
//! A [`HaSme`] is two things: the closed forms (fixed matrix functions of `H = ∇²f`,
//! written here once per format) and the truncated series, which is an ordinary
//! [`crate::Sme`] (the order-p SME of the quadratic part) and goes through the ordinary
//! emitters: its components (as in [`super::text::render_components`]), its SymPy script
//! (as in [`super::sympy::render`]) and its JSON document ([`super::json`]). The series in `H`
//! (`-∇f - (η/2) H∇f - …`) is written from the coefficients the derivation produced.
//!
//! The emitters write the closed forms as recognised; a result with `mismatches` is
//! shown as such by [`text`] and [`super::json::hasme_to_json`], and the command line
//! refuses the other formats for it.

use super::notation::Style;
use crate::analysis::hasme::HaSme;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed};
use std::fmt::Write;

/// The small parameter's name in a style (`η`, `\eta`).
pub(super) fn small(st: Style, h: &HaSme) -> String {
    st.name(h.sme.symbols.name(h.sme.small))
}

/// `H^n` (empty for n = 0).
fn hpow(st: Style, n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "H".to_string(),
        n => format!("H{}", st.sup(n as i64)),
    }
}

/// Factors of a product: juxtaposed in text, separated by a space in LaTeX.
fn product(st: Style, parts: &[&str]) -> String {
    let sep = match st {
        Style::Text => "",
        Style::Latex => " ",
    };
    let parts: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    parts.join(sep)
}

/// `η^n / q` as a coefficient (parenthesised in text).
fn eta_over(st: Style, e: &str, n: usize, q: &BigInt) -> String {
    let top = if n == 1 {
        e.to_string()
    } else {
        format!("{e}{}", st.sup(n as i64))
    };
    let c = st.frac(&top, &q.to_string());
    if st.coef_needs_paren(&c) {
        st.paren(&c)
    } else {
        c
    }
}

fn ellipsis(st: Style) -> &'static str {
    match st {
        Style::Text => "…",
        Style::Latex => "\\dotsb",
    }
}

/// The closed-form drift, `(log(I - ηH)/(ηH)) ∇f`.
pub(super) fn closed_drift(st: Style, e: &str) -> String {
    match st {
        Style::Text => format!("(log(I - {e}H)/({e}H)) ∇f"),
        Style::Latex => format!("\\frac{{\\log(I - {e} H)}}{{{e} H}} \\, \\nabla f"),
    }
}

/// The closed-form diffusion, `η² (a(L) + a(R)) / (1 - (1 - ηL)(1 - ηR)) Σ` and `a`.
pub(super) fn closed_diffusion(st: Style, e: &str) -> String {
    match st {
        Style::Text => format!(
            "{e}² (a(L) + a(R)) / (1 - (1 - {e}L)(1 - {e}R)) Σ,   a(z) = -log(1 - {e}z)/{e}"
        ),
        Style::Latex => format!(
            "{e}^{{2}} \\, \\frac{{a(L) + a(R)}}{{1 - (1 - {e} L)(1 - {e} R)}} \\, \\Sigma, \\qquad a(z) = -\\frac{{\\log(1 - {e} z)}}{{{e}}}"
        ),
    }
}

/// The drift's series, `-∇f - (η/2) H∇f - (η²/3) H²∇f - …`.
fn drift_series(st: Style, h: &HaSme) -> String {
    let e = small(st, h);
    let grad = st.grad_f(1);
    let mut out = format!("-{grad}");
    for (n, a) in h.drift.iter().enumerate().skip(1) {
        let sign = if a.is_negative() { '-' } else { '+' };
        let coef = eta_over(st, &e, n, a.denom());
        let numer = a.numer().magnitude().to_string();
        let numer = if numer == "1" { String::new() } else { numer };
        let sep = st.juxt();
        let _ = write!(
            out,
            " {sign} {}{coef}{sep}{}",
            if numer.is_empty() {
                String::new()
            } else {
                format!("{numer} ")
            },
            product(st, &[&hpow(st, n), &grad])
        );
    }
    format!("{out} - {}", ellipsis(st))
}

/// The diffusion's series, `η Σ + (η²/2)(HΣ + ΣH) + …`, each power's terms over their
/// common denominator.
fn diffusion_series(st: Style, h: &HaSme) -> String {
    let e = small(st, h);
    let sigma = st.moment(2, 0);
    let mut out = format!("{e}{}{sigma}", st.juxt());
    for (k, row) in h.diffusion.iter().enumerate().skip(1) {
        let lcm = row.iter().fold(BigInt::one(), |acc, q| {
            num_integer::Integer::lcm(&acc, q.denom())
        });
        let terms: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(a, q)| {
                let c = q * BigRational::from_integer(lcm.clone());
                let c = if c.is_one() {
                    String::new()
                } else {
                    format!("{c} ")
                };
                let t = product(st, &[&hpow(st, a), &sigma, &hpow(st, k - a)]);
                format!("{c}{t}")
            })
            .collect();
        let sep = match st {
            Style::Text => "",
            Style::Latex => " \\, ",
        };
        let _ = write!(
            out,
            " + {}{sep}{}",
            eta_over(st, &e, k + 1, &lcm),
            st.paren(&terms.join(" + "))
        );
    }
    format!("{out} + {}", ellipsis(st))
}

/// The HA-SME as text: the closed forms, their series, and the comparison.
pub fn text(h: &HaSme) -> String {
    let st = Style::Text;
    let mut out = String::new();
    let name = &h.sme.optimizer;
    let _ = writeln!(
        out,
        "Hessian-aware SME of {name} (Li, Shen, Zhang & He 2024), H = ∇²f, Gaussian noise"
    );
    if !h.mismatches.is_empty() {
        let _ = writeln!(
            out,
            "  the derived series do not match the Hessian-aware closed forms:"
        );
        for m in &h.mismatches {
            let _ = writeln!(out, "  {m}");
        }
        return out;
    }
    let e = small(st, h);
    let e = e.as_str();
    let _ = writeln!(out, "  dX = b dt + σ dW,  σσᵀ = D,  one step = time {e}\n");
    let _ = writeln!(out, "drift");
    let _ = writeln!(out, "  b = {}", closed_drift(st, e));
    let _ = writeln!(out, "    = {}\n", drift_series(st, h));
    let _ = writeln!(out, "diffusion");
    let _ = writeln!(out, "  D = {},", closed_diffusion(st, e));
    let _ = writeln!(
        out,
        "      L, R: multiplication by H from the left, from the right; in an eigenbasis of H"
    );
    let _ = writeln!(
        out,
        "      D_ij = {e}² Σ_ij (a_i + a_j)/(1 - r_i r_j), r_i = 1 - {e}λ_i; if Σ commutes with H,"
    );
    let _ = writeln!(out, "      D = -2 log(I - {e}H) Σ/(H (2I - {e}H))");
    let _ = writeln!(out, "    = {}\n", diffusion_series(st, h));
    let _ = writeln!(out, "certificate");
    let last = st.sup(h.order as i64 - 1);
    let _ = writeln!(
        out,
        "  the closed forms' series agree term by term with the order-{} SME of the quadratic part\n  (drift through {e}{last}, diffusion through {e}{last})",
        h.order,
    );
    let _ = writeln!(out, "\nconditions\n  {}", condition(e));
    out
}

/// Where the closed forms hold, as text.
pub(super) fn condition(e: &str) -> String {
    format!("{e}λ_max(H) < 1, so that log(I - {e}H) is real; exact for quadratic f with constant Σ")
}

/// The text form followed by the series component by component in dimension `d`.
pub fn components(h: &HaSme, d: usize) -> String {
    let mut out = text(h);
    let _ = writeln!(
        out,
        "\nthe series (the order-{} SME of the quadratic part), component by component in dimension {d}",
        h.order
    );
    out.push_str(&super::text::components_body(&h.sme, d));
    out
}

/// The HA-SME as an `align` environment (with `standalone`, a complete document).
pub fn latex(h: &HaSme, standalone: bool) -> String {
    let st = Style::Latex;
    let e = small(st, h);
    let e = e.as_str();
    let mut body = String::new();
    let _ = writeln!(
        body,
        "% Hessian-aware SME of {} (Li, Shen, Zhang & He 2024), derived by smelt; one step = time {}",
        h.sme.optimizer,
        small(Style::Text, h)
    );
    body.push_str("\\begin{align}\n");
    let rows = [
        "  \\mathrm{d}X_t &= b \\, \\mathrm{d}t + \\sigma \\, \\mathrm{d}W_t, \\qquad \\sigma \\sigma^{\\top} = D, \\qquad H = \\nabla^{2} f".to_string(),
        format!("  b &= {}", closed_drift(st, e)),
        format!("  &= {}", drift_series(st, h)),
        format!("  D &= {}", closed_diffusion(st, e)),
        format!("  &= {}", diffusion_series(st, h)),
    ];
    body.push_str(&rows.join(", \\\\\n"));
    body.push_str(".\n\\end{align}\n");
    let last = h.order - 1;
    let remarks = format!(
        "Here $L$ and $R$ are the multiplications by $H$ from the left and from the right; in an eigenbasis of $H$, $D_{{ij}} = {e}^{{2}} \\Sigma_{{ij}} (a(\\lambda_i) + a(\\lambda_j))/(1 - r_i r_j)$ with $r_i = 1 - {e} \\lambda_i$. The series of the closed forms agree term by term with the order-{} SME of the quadratic part (drift and diffusion through ${e}^{{{last}}}$). Conditions: ${e} \\lambda_{{\\max}}(H) < 1$, so that $\\log(I - {e} H)$ is real; exact for quadratic $f$ with constant $\\Sigma$.",
        h.order
    );
    if !standalone {
        let _ = writeln!(body, "% {remarks}");
        return body;
    }
    let sentence = format!(
        "Hessian-aware stochastic modified equation of \\texttt{{{}}} (Li, Shen, Zhang \\& He 2024), derived by smelt.",
        super::latex::escape_text(&h.sme.optimizer),
    );
    let _ = writeln!(body, "\n\\noindent {remarks}");
    super::latex::document(&sentence, &body)
}

/// A rational as Python source (`Rational(-1, 2)` in SymPy, `-1/2` in NumPy).
fn python_rational(q: &BigRational, sympy: bool) -> String {
    match (q.denom().is_one(), sympy) {
        (true, true) => format!("Integer({})", q.numer()),
        (true, false) => format!("{}.0", q.numer()),
        (false, true) => format!("Rational({}, {})", q.numer(), q.denom()),
        (false, false) => format!("{}/{}", q.numer(), q.denom()),
    }
}

/// The series coefficients as Python lists: the drift's, and the diffusion's by power.
fn python_coefficients(h: &HaSme, sympy: bool) -> (String, String) {
    let drift: Vec<String> = h.drift.iter().map(|q| python_rational(q, sympy)).collect();
    let rows: Vec<String> = h
        .diffusion
        .iter()
        .map(|row| {
            let items: Vec<String> = row.iter().map(|q| python_rational(q, sympy)).collect();
            format!("    [{}],", items.join(", "))
        })
        .collect();
    (
        format!("[{}]", drift.join(", ")),
        format!("[\n{}\n]", rows.join("\n")),
    )
}

/// The SymPy script: the series as [`super::sympy::render`] writes the order-p SME of the
/// quadratic part (`drift`, `diffusion`, in dimension `dim`), then the closed forms as
/// matrix functions of `H` and the series in `H`.
pub fn sympy(h: &HaSme, dim: Option<usize>) -> String {
    let (script, eta) = super::sympy::script(&h.sme, dim);
    let mut out = format!(
        "# The Hessian-aware SME of {} (Li, Shen, Zhang & He 2024), from smelt: first the\n# series of the closed forms (the order-{} SME of the quadratic part, f quadratic and\n# Σ constant), then the closed forms themselves as matrix functions of H = ∇²f.\n#\n",
        h.sme.optimizer, h.order
    );
    out.push_str(&script);
    let (drift, diffusion) = python_coefficients(h, true);
    let _ = write!(
        out,
        r#"

# ---- The Hessian-aware SME: closed forms in H = ∇²f ----
#   hessian_aware_drift(H, grad_f)         b = (log(I - {eta} H)/({eta} H)) grad_f
#   hessian_aware_diffusion(H, Sigma)      D = {eta}**2 (a(L) + a(R)) / (1 - (1 - {eta} L)(1 - {eta} R)) Sigma,
#                                          a(z) = -log(1 - {eta} z)/{eta}; L, R multiply by H from the left, the right
#   hessian_aware_drift_series(H, grad_f), hessian_aware_diffusion_series(H, Sigma)
#                                          their series through {eta}**{last} (the `drift`, `diffusion` above)
# H, grad_f, Sigma: Matrices (n x n, n x 1, n x n); every function takes `{eta}=` too.
# The closed forms need {eta} lambda_max(H) < 1, H invertible and 1 - r_i r_j != 0
# (r_i = 1 - {eta} lambda_i); the series need nothing.

from sympy import eye as _eye, kronecker_product as _kron

hessian_aware_order = {order}
# hessian_aware_drift_coefficients[n]: the coefficient of {eta}**n H**n grad_f
hessian_aware_drift_coefficients = {drift}
# hessian_aware_diffusion_coefficients[k][a]: the coefficient of {eta}**(1 + k) H**a Sigma H**(k - a)
hessian_aware_diffusion_coefficients = {diffusion}


def hessian_aware_drift(H, grad_f, {eta}={eta}):
    """b = (log(I - {eta} H)/({eta} H)) grad_f."""
    H = Matrix(H)
    return (_eye(H.rows) - {eta}*H).log() * ({eta}*H).inv() * Matrix(grad_f)


def hessian_aware_diffusion(H, Sigma, {eta}={eta}):
    """D = {eta}**2 (a(L) + a(R)) / (1 - (1 - {eta} L)(1 - {eta} R)) Sigma, a(z) = -log(1 - {eta} z)/{eta}.

    On vec(Sigma) (columns stacked) L = I (x) H and R = H^T (x) I, so that
    a(L) = I (x) a(H) and a(R) = a(H)^T (x) I."""
    H = Matrix(H)
    n = H.rows
    one, ones = _eye(n), _eye(n * n)
    a = -(one - {eta}*H).log() / {eta}
    left, right = _kron(one, H), _kron(H.T, one)
    a_left, a_right = _kron(one, a), _kron(a.T, one)
    vec = (ones - (ones - {eta}*left) * (ones - {eta}*right)).LUsolve(
        {eta}**2 * (a_left + a_right) * Matrix(Sigma).vec()
    )
    return Matrix(n, n, lambda i, j: vec[j * n + i])


def hessian_aware_drift_series(H, grad_f, {eta}={eta}):
    """The drift's series: sum over n of c[n] {eta}**n H**n grad_f."""
    H, term = Matrix(H), Matrix(grad_f)
    total = zeros(H.rows, 1)
    for n, c in enumerate(hessian_aware_drift_coefficients):
        total += c * {eta}**n * term
        term = H * term
    return total


def hessian_aware_diffusion_series(H, Sigma, {eta}={eta}):
    """The diffusion's series: sum over k, a of c[k][a] {eta}**(1 + k) H**a Sigma H**(k - a)."""
    H, Sigma = Matrix(H), Matrix(Sigma)
    total = zeros(H.rows, H.rows)
    for k, row in enumerate(hessian_aware_diffusion_coefficients):
        for a, c in enumerate(row):
            total += c * {eta}**(1 + k) * H**a * Sigma * H**(k - a)
    return total
"#,
        last = h.order - 1,
        order = h.order,
    );
    out.push_str(super::sympy::MAIN);
    out
}

/// The NumPy module: the closed forms evaluated through an eigendecomposition of `H`
/// (`numpy.linalg.eigh`), and the series in `H`, with the calling conventions of
/// [`super::numpy::render`].
pub fn numpy(h: &HaSme) -> String {
    use super::numpy::{df_name, moment_name, python_names, quote};
    let (states, eta) = python_names(&h.sme);
    let x = &states[0];
    let (grad, hess, sigma) = (df_name(1), df_name(2), moment_name(2, 0));
    let signature = format!("{x}, *, {grad}, {hess}, {sigma}, {eta}");
    let (drift, diffusion) = python_coefficients(h, false);
    let key = format!("({0}, {0})", quote(&h.sme.vars[0].name));
    format!(
        r#""""The Hessian-aware SME of {name} (Li, Shen, Zhang & He 2024); generated by smelt {version}.

    dX = b(X) dt + σ(X) dW,   D = σσᵀ,   one step of the optimizer = time {eta},   H = ∇²f

    b = (log(I - {eta} H)/({eta} H)) ∇f
    D = {eta}² (a(L) + a(R)) / (1 - (1 - {eta} L)(1 - {eta} R)) Σ,   a(z) = -log(1 - {eta} z)/{eta}
        (L, R: multiplication by H from the left, from the right)

Both are evaluated in an eigenbasis of H (numpy.linalg.eigh, H = V diag(lam) Vᵀ):

    b = V (-psi({eta} lam) * (Vᵀ ∇f)),   D = V ({eta} psi(1 - r_i r_j) * (Vᵀ Σ V)_ij) Vᵀ,
    r = 1 - {eta} lam,   psi(u) = -log(1 - u)/u,  psi(0) = 1,

so H may be singular or indefinite; {eta} lam_max(H) < 1 is needed (log(I - {eta} H) real).
The closed forms' series agree term by term with the order-{order} SME of the quadratic
part (through {eta}^{last}); DRIFT_SERIES and DIFFUSION_SERIES are its coefficients.

Inputs (keyword-only: arrays, or callables of the parameter; one dict serves every function):
    {grad:<10} ∇f, shape (d,)
    {hess:<10} ∇²f = H, shape (d, d), symmetric
    {sigma:<10} the noise covariance Σ, shape (d, d)
    {eta:<10} the small parameter (a float)

Functions:
    drift({signature})
        -> (b_{x},)
    diffusion({signature})
        -> {{{key}: D}}
    drift_series(...), diffusion_series(...)
        the same for the series through {eta}^{last}
    time_per_step(*, {eta})
        -> the time one step of the optimizer represents
"""

import numpy as np

OPTIMIZER = {name_q}
ORDER = {order}
STATE = ({x_q},)
SHAPES = ("vector",)
INPUTS = {{{grad_q}: ("f", 1), {hess_q}: ("f", 2), {sigma_q}: ("M", 2, 0)}}
HYPERS = {{{eta_q}: {small_q}}}
CLOCK = None
# DRIFT_SERIES[n]: the coefficient of {eta}**n H**n ∇f
DRIFT_SERIES = {drift}
# DIFFUSION_SERIES[k][a]: the coefficient of {eta}**(1 + k) H**a Σ H**(k - a)
DIFFUSION_SERIES = {diffusion}


def _inputs({x}, {grad}, {hess}, {sigma}):
    {x} = np.asarray({x}, dtype=float)

    def value(v):
        return np.asarray(v({x}) if callable(v) else v, dtype=float)

    return value({grad}), value({hess}), value({sigma})


def _psi(u):
    """-log(1 - u)/u, with its limit 1 at u = 0."""
    u = np.asarray(u, dtype=float)
    near = np.abs(u) < 1e-8
    safe = np.where(near, 0.5, u)
    return np.where(near, 1.0 + u / 2 + u * u / 3, -np.log1p(-safe) / safe)


def time_per_step(*, {eta}):
    """The time one step of the optimizer represents."""
    return np.float64({eta})


def drift({signature}):
    """The drift b = (log(I - {eta} H)/({eta} H)) ∇f, as a tuple with one entry."""
    g, h, _ = _inputs({x}, {grad}, {hess}, {sigma})
    lam, v = np.linalg.eigh(h)
    return (v @ (-_psi({eta} * lam) * (v.T @ g)),)


def diffusion({signature}):
    """The diffusion D = σσᵀ of the closed form, keyed by the pair of state names."""
    _, h, s = _inputs({x}, {grad}, {hess}, {sigma})
    lam, v = np.linalg.eigh(h)
    r = 1.0 - {eta} * lam
    return {{{key}: v @ ({eta} * _psi(1.0 - np.outer(r, r)) * (v.T @ s @ v)) @ v.T}}


def drift_series({signature}):
    """The drift's series through {eta}^{last}, as a tuple with one entry."""
    g, h, _ = _inputs({x}, {grad}, {hess}, {sigma})
    total, term = np.zeros_like(g), g
    for n, c in enumerate(DRIFT_SERIES):
        total = total + c * {eta}**n * term
        term = h @ term
    return (total,)


def diffusion_series({signature}):
    """The diffusion's series through {eta}^{last}, keyed by the pair of state names."""
    _, h, s = _inputs({x}, {grad}, {hess}, {sigma})
    powers = [np.eye(h.shape[0])]
    for _ in DIFFUSION_SERIES:
        powers.append(h @ powers[-1])
    total = np.zeros_like(s)
    for k, row in enumerate(DIFFUSION_SERIES):
        for a, c in enumerate(row):
            total = total + c * {eta}**(1 + k) * powers[a] @ s @ powers[k - a]
    return {{{key}: total}}
"#,
        name = h.sme.optimizer,
        version = env!("CARGO_PKG_VERSION"),
        order = h.order,
        last = h.order - 1,
        name_q = quote(&h.sme.optimizer),
        x_q = quote(x),
        grad_q = quote(&grad),
        hess_q = quote(&hess),
        sigma_q = quote(&sigma),
        eta_q = quote(&eta),
        small_q = quote(h.sme.symbols.name(h.sme.small)),
    )
}
