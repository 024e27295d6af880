//! JSON output, schema `smelt-sme` version 1.
//!
//! A pure function of a [`Sme`]; [`from_json`] reads it back to the same value (the round
//! trip is tested). The schema, field by field:
//!
//! ```text
//! {
//!   "schema": "smelt-sme", "version": 1,
//!   "optimizer": "SGD",                  // the optimizer's name
//!   "order": 2,                          // weak order reached
//!   "requested_order": 2,                // weak order asked for
//!   "symbols": ["d", "eta", ...],        // names of the coefficient symbols; "d" is the dimension
//!   "small": "eta",                      // the small parameter
//!   "time": Poly, "time_power": 1,       // one step = time c·small^q
//!   "state": [{"name": "x", "shape": "vector" | "scalar"}],   // the parameter first
//!   "noise": [{"name": "xi", "kind": "general" | "gaussian",
//!              "covariance": Poly}],    // only for a fixed covariance c·I (absent: Σ(x))
//!   "drift": [{"state": "x", "text": "-∇f - (η/2) ∇²f ∇f", "expr": TExpr}],
//!   "diffusion": [{"rows": "x", "cols": "x", "text": "η Σ", "expr": TExpr}],   // blocks rows ≤ cols
//!   "diffusion_from_next_order": false,  // the diffusion shown is the leading one order p+1 forces
//!   "conditions": [{"moment": ["x","x","x"], "power": 3, "needed_for_order": 3,
//!                   "text": "-S", "residual": TExpr}],
//!   "notes": ["…"],                     // where the expansion holds (a state kept away from 0)
//!   "clock": null | "t",                 // the clock state when the rule reads the step counter
//!   "certificate": [{"moment": ["x"], "matched_through": 2,
//!                    "leading": null | {"power": 3, "terms": 4}}],  // first unmatched power, residual size
//!   "independent": {                     // only when the independent numeric check was run
//!     "order": 2, "law": "random quartic f in d = 2, …", "verdict": "pass" | "fail" | "not run",
//!     "reason": "…", "summary": "passed: one-step moment residuals E[Δ] ∝ τ^3.01, … (order 2 needs 3)",
//!     "moments": [{"s": 1, "power": 3.01 | null, "tau": [..], "residual": [..], "floor": [..]}]}
//! }
//! Poly  = [{"coefficient": "-1/2", "powers": [["eta", 1], ["lambda", 2]]}, ...]   // Σ c·Π s^k
//! TExpr = {"free": 1, "terms": [{"coefficient": Poly, "factors": [Factor, ...]}]}
//!         // einsum: indices < free are the output slots, the others are summed
//! Factor = {"kind": "grad_f", "order": k, "indices": [...]}          // ∇^k f (k = 0: f)
//!        | {"kind": "noise_moment", "moment": r, "derivative": j, "indices": [...]}
//!                                                   // ∂^j M_r (r = 2: Σ; first r indices the moment's)
//!        | {"kind": "state", "state": "v", "indices": [i] or []}
//!        | {"kind": "ones", "indices": [i]} | {"kind": "delta", "indices": [i, j]}
//!        | {"kind": "elementwise", "function": k, "indices": [i] or []}   // functions[k] at index i
//!        | {"kind": "pair", "pair": k, "indices": [i, j]}   // pairs[k] at (i, j)
//! "pairs": [{"left": Side, "right": Side, "covariance": Poly, "diagonal": k}]
//!         // E[F(A_i + C_i ξ_i) G(A'_j + C'_j ξ_j)], ξ ~ N(0, Σ) (or N(0, c I) with
//!         // "covariance" c); the entries i = j are functions[diagonal]
//! Side = {"map": "sign" | "abs", "mean": FExpr, "coef": FExpr}   // F(A + C ξ)
//! "functions": [FExpr, ...]   // elementwise functions of the state components:
//! FExpr = {"var": "u"} | {"const": Poly} | {"sum": [FExpr..]} | {"prod": [FExpr..]}
//!       | {"pow": [FExpr, "1/2"]} | {"exp": FExpr} | {"log": FExpr} | {"abs": FExpr}
//!       | {"sign": FExpr} | {"ncdf": FExpr} | {"npdf": FExpr}   // Φ and φ of the standard normal
//!       | {"field": "grad_f" | "noise_variance"}   // ∂_i f, Σ_ii at the function's index
//! ```
//!
//! The Hessian-aware SME ([`hasme_to_json`], read back by [`hasme_from_json`]) has its own
//! schema, `smelt-hasme` version 1, with `H = ∇²f` and `l`, `r` eigenvalues of H:
//!
//! ```text
//! {
//!   "schema": "smelt-hasme", "version": 1,
//!   "optimizer": "SGD",
//!   "small": "eta",                       // the small parameter; one step = time eta
//!   "order": 4,                           // the order p of the SME whose series certify the forms
//!   "certified": true,                    // the series below are the closed forms' through eta^(p-1)
//!   "mismatches": [],                     // where they are not (certified: false)
//!   "closed_form": {
//!     "drift": "(log(I - ηH)/(ηH)) ∇f",   // as text
//!     "diffusion": "η² (a(L) + a(R)) / (1 - (1 - ηL)(1 - ηR)) Σ,   a(z) = -log(1 - ηz)/η",
//!     "drift_eigen": "log(1 - eta*l)/(eta*l)",
//!         // SymPy syntax: b = V diag(g(l_i)) Vᵀ ∇f for H = V diag(l) Vᵀ (g(0) = -1)
//!     "diffusion_eigen": "-eta*log((1 - eta*l)*(1 - eta*r))/(1 - (1 - eta*l)*(1 - eta*r))"
//!         // D = V (φ(l_i, l_j) (VᵀΣV)_ij) Vᵀ (φ = eta where the denominator vanishes)
//!   },
//!   "drift_series": [{"power": 1, "coefficient": "-1/2"}, ...],
//!         // b = Σ coefficient · eta^power H^power ∇f, power = 0 … p-1
//!   "diffusion_series": [{"power": 2, "left": 0, "right": 1, "coefficient": "1/2"}, ...],
//!         // D = Σ coefficient · eta^power H^left Σ H^right, power = 1 + left + right ≤ p - 1,
//!         // ordered by power, then left
//!   "conditions": ["ηλ_max(H) < 1, so that log(I - ηH) is real; exact for quadratic f with constant Σ"],
//!   "sme": {...}                          // the order-p SME of the quadratic part, schema smelt-sme
//! }
//! ```

use crate::algebra::poly::{Poly, Symbols};
use crate::algebra::tensor::{Atom, Kind, TExpr};
use crate::analysis::hasme::HaSme;
use crate::sme::{Condition, DiffusionBlock, Residual, Sme, StateInfo};
use crate::syntax::NoiseKind;
use num_rational::BigRational;
use serde::{Deserialize, Serialize};

/// The schema's name and version.
pub const SCHEMA: &str = "smelt-sme";
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Doc {
    schema: String,
    version: u32,
    optimizer: String,
    order: u32,
    requested_order: u32,
    symbols: Vec<String>,
    small: String,
    time: Vec<MonoJ>,
    time_power: i32,
    state: Vec<StateJ>,
    noise: Vec<NoiseJ>,
    drift: Vec<DriftJ>,
    diffusion: Vec<DiffJ>,
    diffusion_from_next_order: bool,
    conditions: Vec<CondJ>,
    certificate: Vec<CertJ>,
    #[serde(default)]
    functions: Vec<FExprJ>,
    /// The kink pairs the `pair` factors refer to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pairs: Vec<PairJ>,
    /// The clock state's name, when the rule reads the step counter.
    #[serde(default)]
    clock: Option<String>,
    /// Remarks on where the expansion holds.
    #[serde(default)]
    notes: Vec<String>,
    /// The fast states eliminated from the SME.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    eliminated: Vec<EliminatedJ>,
    /// The independent numeric check, when it was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    independent: Option<IndependentJ>,
}

/// `{"order": 2, "law": "…", "verdict": "pass" | "fail" | "not run", "reason": "…",
/// "summary": "…", "moments": [{"s": 1, "power": 3.01, "tau": [..], "residual": [..],
/// "floor": [..]}]}`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct IndependentJ {
    order: u32,
    law: String,
    verdict: String,
    #[serde(default)]
    reason: String,
    summary: String,
    moments: Vec<crate::sme::MomentFit>,
}

fn independent_j(c: &crate::sme::Check) -> IndependentJ {
    use crate::sme::Verdict;
    let (verdict, reason) = match &c.verdict {
        Verdict::Pass => ("pass", String::new()),
        Verdict::Fail(r) => ("fail", r.clone()),
        Verdict::NotRun(r) => ("not run", r.clone()),
    };
    IndependentJ {
        order: c.order,
        law: c.law.clone(),
        verdict: verdict.to_string(),
        reason,
        summary: c.summary(),
        moments: c.moments.clone(),
    }
}

fn independent_of(j: &IndependentJ) -> Result<crate::sme::Check, String> {
    use crate::sme::Verdict;
    let verdict = match j.verdict.as_str() {
        "pass" => Verdict::Pass,
        "fail" => Verdict::Fail(j.reason.clone()),
        "not run" => Verdict::NotRun(j.reason.clone()),
        other => {
            return Err(format!(
                "unknown verdict `{other}` of the independent check"
            ))
        }
    };
    Ok(crate::sme::Check {
        order: j.order,
        law: j.law.clone(),
        moments: j.moments.clone(),
        verdict,
    })
}

/// An elementwise function: `{"var": "u"}`, `{"const": Poly}`, `{"sum": [..]}`,
/// `{"prod": [..]}`, `{"pow": [base, "1/2"]}`, `{"exp": f}`, `{"log": f}`, `{"abs": f}`,
/// `{"index_sum": f}`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum FExprJ {
    Const(Vec<MonoJ>),
    Var(String),
    Sum(Vec<FExprJ>),
    Prod(Vec<FExprJ>),
    Pow(Box<FExprJ>, String),
    Exp(Box<FExprJ>),
    Log(Box<FExprJ>),
    Abs(Box<FExprJ>),
    Sign(Box<FExprJ>),
    /// Φ, the standard normal distribution function.
    Ncdf(Box<FExprJ>),
    /// φ, the standard normal density.
    Npdf(Box<FExprJ>),
    /// `"grad_f"` (∂_i f) or `"noise_variance"` (Σ_ii) at the function's index.
    Field(String),
    /// `{"index_sum": f}`: Σ_j f_j, a scalar (`‖m‖²` is `{"index_sum": m²}`).
    IndexSum(Box<FExprJ>),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct MonoJ {
    coefficient: String,
    powers: Vec<(String, i32)>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct StateJ {
    name: String,
    shape: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct NoiseJ {
    name: String,
    kind: String,
    /// A fixed covariance `c·I` (absent: the problem's Σ(x)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    covariance: Option<Vec<MonoJ>>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct DriftJ {
    state: String,
    text: String,
    expr: TExprJ,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct DiffJ {
    rows: String,
    cols: String,
    text: String,
    expr: TExprJ,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct CondJ {
    moment: Vec<String>,
    power: i32,
    needed_for_order: u32,
    text: String,
    residual: TExprJ,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct CertJ {
    moment: Vec<String>,
    matched_through: i32,
    leading: Option<LeadJ>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct LeadJ {
    power: i32,
    terms: usize,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TExprJ {
    free: u8,
    terms: Vec<TermJ>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TermJ {
    coefficient: Vec<MonoJ>,
    factors: Vec<FactorJ>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FactorJ {
    GradF {
        order: u8,
        indices: Vec<u8>,
    },
    NoiseMoment {
        moment: u8,
        derivative: u8,
        indices: Vec<u8>,
    },
    State {
        state: String,
        indices: Vec<u8>,
    },
    Ones {
        indices: Vec<u8>,
    },
    Delta {
        indices: Vec<u8>,
    },
    /// An elementwise function of the state (`functions[function]`) at its index.
    Elementwise {
        function: u32,
        indices: Vec<u8>,
    },
    /// The mean of two kinks of one Gaussian sample (`pairs[pair]`) at two indices.
    Pair {
        pair: u32,
        indices: Vec<u8>,
    },
}

/// One side of a kink pair: `{"map": "sign" | "abs", "mean": FExpr, "coef": FExpr}`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SideJ {
    map: String,
    mean: FExprJ,
    coef: FExprJ,
}

/// `{"state": "v", "rate": [monomials], "scale": 1}`: a fast state, eliminated; with a
/// symbolic rate μ, `"complement": "kappa"` names the symbol that stands for 1/(1 − μ).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct EliminatedJ {
    state: String,
    rate: Vec<MonoJ>,
    scale: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    complement: Option<String>,
}

/// A kink pair: its two sides, the sample's fixed covariance (absent: Σ(x)) and the
/// function number of its diagonal.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct PairJ {
    left: SideJ,
    right: SideJ,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    covariance: Option<Vec<MonoJ>>,
    diagonal: u32,
}

fn poly_j(p: &Poly, syms: &Symbols) -> Vec<MonoJ> {
    p.terms()
        .map(|(m, c)| MonoJ {
            coefficient: c.to_string(),
            powers: m
                .iter()
                .map(|(s, e)| (syms.name(*s).to_string(), *e))
                .collect(),
        })
        .collect()
}

fn texpr_j(e: &TExpr, sme: &Sme) -> TExprJ {
    let vars: Vec<&str> = sme.vars.iter().map(|v| v.name.as_str()).collect();
    TExprJ {
        free: e.free,
        terms: e
            .terms
            .iter()
            .map(|(t, c)| TermJ {
                coefficient: poly_j(c, &sme.symbols),
                factors: t
                    .atoms
                    .iter()
                    .map(|a| {
                        let indices = a.idx.to_vec();
                        match a.kind {
                            Kind::DF(order) => FactorJ::GradF { order, indices },
                            Kind::Moment { r, d } => FactorJ::NoiseMoment {
                                moment: r,
                                derivative: d,
                                indices,
                            },
                            Kind::State(v) | Kind::Disp(v) => FactorJ::State {
                                state: vars[v as usize].to_string(),
                                indices,
                            },
                            Kind::One | Kind::Noise { .. } | Kind::Kink(_) => {
                                FactorJ::Ones { indices }
                            }
                            Kind::Delta => FactorJ::Delta { indices },
                            Kind::Elem(function) => FactorJ::Elementwise { function, indices },
                            Kind::Pair(pair) => FactorJ::Pair { pair, indices },
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn fexpr_j(f: &crate::algebra::elem::FExpr, sme: &Sme) -> FExprJ {
    use crate::algebra::elem::FExpr;
    match f {
        FExpr::Const(c) => FExprJ::Const(poly_j(c, &sme.symbols)),
        FExpr::Var(v) => FExprJ::Var(sme.vars[*v as usize].name.clone()),
        FExpr::Sum(items) => FExprJ::Sum(items.iter().map(|i| fexpr_j(i, sme)).collect()),
        FExpr::Prod(items) => FExprJ::Prod(items.iter().map(|i| fexpr_j(i, sme)).collect()),
        FExpr::Pow(b, q) => FExprJ::Pow(Box::new(fexpr_j(b, sme)), q.to_string()),
        FExpr::Exp(a) => FExprJ::Exp(Box::new(fexpr_j(a, sme))),
        FExpr::Log(a) => FExprJ::Log(Box::new(fexpr_j(a, sme))),
        FExpr::Abs(a) => FExprJ::Abs(Box::new(fexpr_j(a, sme))),
        FExpr::Sign(a) => FExprJ::Sign(Box::new(fexpr_j(a, sme))),
        FExpr::Ncdf(a) => FExprJ::Ncdf(Box::new(fexpr_j(a, sme))),
        FExpr::Npdf(a) => FExprJ::Npdf(Box::new(fexpr_j(a, sme))),
        FExpr::Contract(a) => FExprJ::IndexSum(Box::new(fexpr_j(a, sme))),
        FExpr::Field(f) => FExprJ::Field(
            match f {
                crate::algebra::elem::Field::Grad => "grad_f",
                crate::algebra::elem::Field::NoiseVar => "noise_variance",
            }
            .to_string(),
        ),
    }
}

fn names(vars: &[usize], sme: &Sme) -> Vec<String> {
    vars.iter().map(|&v| sme.vars[v].name.clone()).collect()
}

/// The SME as pretty-printed JSON.
pub fn to_json(sme: &Sme) -> String {
    serde_json::to_string_pretty(&doc(sme)).expect("serialisable") + "\n"
}

/// The document of an SME (also the `sme` field of a `smelt-hasme` document).
fn doc(sme: &Sme) -> Doc {
    let text = |e: &TExpr| {
        let names = super::text::Names::of(sme);
        super::text::texpr(
            super::notation::Style::Text,
            e,
            &sme.symbols,
            sme.small,
            &names,
        )
    };
    let nsyms = (0..)
        .map_while(|i| sme.symbols.try_name(i).map(str::to_string))
        .collect();
    Doc {
        schema: SCHEMA.to_string(),
        version: VERSION,
        optimizer: sme.optimizer.clone(),
        order: sme.order,
        requested_order: sme.requested_order,
        symbols: nsyms,
        small: sme.symbols.name(sme.small).to_string(),
        time: poly_j(&sme.time, &sme.symbols),
        time_power: sme.time_power,
        state: sme
            .vars
            .iter()
            .map(|v| StateJ {
                name: v.name.clone(),
                shape: if v.scalar { "scalar" } else { "vector" }.to_string(),
            })
            .collect(),
        noise: sme
            .noise
            .iter()
            .map(|n| NoiseJ {
                name: n.name.clone(),
                kind: match n.kind {
                    NoiseKind::General => "general",
                    NoiseKind::Gaussian => "gaussian",
                }
                .to_string(),
                covariance: n.scale.as_ref().map(|c| poly_j(c, &sme.symbols)),
            })
            .collect(),
        drift: sme
            .drift
            .iter()
            .enumerate()
            .map(|(i, b)| DriftJ {
                state: sme.vars[i].name.clone(),
                text: text(b),
                expr: texpr_j(b, sme),
            })
            .collect(),
        diffusion: sme
            .diffusion
            .iter()
            .map(|d| DiffJ {
                rows: sme.vars[d.rows].name.clone(),
                cols: sme.vars[d.cols].name.clone(),
                text: text(&d.expr),
                expr: texpr_j(&d.expr, sme),
            })
            .collect(),
        diffusion_from_next_order: sme.diffusion_from_next_order,
        conditions: sme
            .conditions
            .iter()
            .map(|c| CondJ {
                moment: names(&c.vars, sme),
                power: c.power,
                needed_for_order: c.needed_for_order,
                text: text(&c.residual),
                residual: texpr_j(&c.residual, sme),
            })
            .collect(),
        certificate: sme
            .certificate
            .iter()
            .map(|r| CertJ {
                moment: names(&r.vars, sme),
                matched_through: r.matched_through,
                leading: r.leading.map(|(power, terms)| LeadJ { power, terms }),
            })
            .collect(),
        functions: sme.elem.functions.iter().map(|f| fexpr_j(f, sme)).collect(),
        pairs: sme
            .elem
            .pairs
            .iter()
            .map(|p| {
                let side = |s: &crate::algebra::elem::Side| SideJ {
                    map: if s.abs { "abs" } else { "sign" }.to_string(),
                    mean: fexpr_j(&s.mean, sme),
                    coef: fexpr_j(&s.coef, sme),
                };
                PairJ {
                    left: side(&p.left),
                    right: side(&p.right),
                    covariance: p.scale.as_ref().map(|c| poly_j(c, &sme.symbols)),
                    diagonal: p.diag,
                }
            })
            .collect(),
        clock: sme.clock.map(|c| sme.vars[c].name.clone()),
        notes: sme.notes.clone(),
        eliminated: sme
            .eliminated
            .iter()
            .map(|e| EliminatedJ {
                state: e.name.clone(),
                rate: poly_j(&e.rate, &sme.symbols),
                scale: e.scale,
                complement: e.complement.clone(),
            })
            .collect(),
        independent: sme.independent.as_ref().map(independent_j),
    }
}

/// Reads a document written by [`to_json`] back into an [`Sme`].
pub fn from_json(text: &str) -> Result<Sme, crate::Error> {
    from_json_inner(text).map_err(crate::Error::Other)
}

fn from_json_inner(text: &str) -> Result<Sme, String> {
    let doc: Doc =
        serde_json::from_str(text).map_err(|e| format!("not a smelt SME document: {e}"))?;
    sme_of(&doc)
}

/// The SME a document describes.
fn sme_of(doc: &Doc) -> Result<Sme, String> {
    if doc.schema != SCHEMA || doc.version != VERSION {
        return Err(format!(
            "unsupported schema {} version {} (this smelt reads {SCHEMA} version {VERSION})",
            doc.schema, doc.version
        ));
    }
    let mut symbols = Symbols::default();
    for s in &doc.symbols {
        symbols.intern(s);
    }
    let sym = |name: &str| {
        symbols
            .get(name)
            .ok_or_else(|| format!("unknown symbol `{name}`"))
    };
    let poly = |monos: &[MonoJ]| -> Result<Poly, String> {
        let mut p = Poly::zero();
        for m in monos {
            let c: BigRational = m
                .coefficient
                .parse()
                .map_err(|_| format!("bad coefficient `{}`", m.coefficient))?;
            let mut mono = Vec::new();
            for (s, e) in &m.powers {
                mono.push((sym(s)?, *e));
            }
            mono.sort();
            p.add_term(&mono, &c);
        }
        Ok(p)
    };
    let var = |name: &str| {
        doc.state
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("unknown state `{name}`"))
    };
    let dim = sym("d")?;
    fn fexpr(
        f: &FExprJ,
        poly: &dyn Fn(&[MonoJ]) -> Result<Poly, String>,
        var: &dyn Fn(&str) -> Result<usize, String>,
    ) -> Result<crate::algebra::elem::FExpr, String> {
        use crate::algebra::elem::FExpr;
        Ok(match f {
            FExprJ::Const(c) => FExpr::Const(poly(c)?),
            FExprJ::Var(v) => FExpr::Var(var(v)? as u8),
            FExprJ::Sum(items) => FExpr::Sum(
                items
                    .iter()
                    .map(|i| fexpr(i, poly, var))
                    .collect::<Result<_, _>>()?,
            ),
            FExprJ::Prod(items) => FExpr::Prod(
                items
                    .iter()
                    .map(|i| fexpr(i, poly, var))
                    .collect::<Result<_, _>>()?,
            ),
            FExprJ::Pow(b, q) => FExpr::Pow(
                Box::new(fexpr(b, poly, var)?),
                q.parse().map_err(|_| format!("bad exponent `{q}`"))?,
            ),
            FExprJ::Exp(a) => FExpr::Exp(Box::new(fexpr(a, poly, var)?)),
            FExprJ::Log(a) => FExpr::Log(Box::new(fexpr(a, poly, var)?)),
            FExprJ::Abs(a) => FExpr::Abs(Box::new(fexpr(a, poly, var)?)),
            FExprJ::Sign(a) => FExpr::Sign(Box::new(fexpr(a, poly, var)?)),
            FExprJ::Ncdf(a) => FExpr::Ncdf(Box::new(fexpr(a, poly, var)?)),
            FExprJ::Npdf(a) => FExpr::Npdf(Box::new(fexpr(a, poly, var)?)),
            FExprJ::IndexSum(a) => FExpr::Contract(Box::new(fexpr(a, poly, var)?)),
            FExprJ::Field(name) => FExpr::Field(match name.as_str() {
                "grad_f" => crate::algebra::elem::Field::Grad,
                "noise_variance" => crate::algebra::elem::Field::NoiseVar,
                other => {
                    return Err(format!(
                        "unknown field `{other}` in an elementwise function"
                    ))
                }
            }),
        })
    }
    let mut table = crate::algebra::elem::Table::default();
    for f in &doc.functions {
        table.push(fexpr(f, &poly, &var)?);
    }
    let nfun = table.functions.len() as u32;
    for p in &doc.pairs {
        let side = |s: &SideJ| -> Result<crate::algebra::elem::Side, String> {
            Ok(crate::algebra::elem::Side {
                abs: match s.map.as_str() {
                    "abs" => true,
                    "sign" => false,
                    other => return Err(format!("unknown kink `{other}`")),
                },
                mean: fexpr(&s.mean, &poly, &var)?,
                coef: fexpr(&s.coef, &poly, &var)?,
            })
        };
        if p.diagonal >= nfun {
            return Err(format!("unknown function {}", p.diagonal));
        }
        table.pairs.push(crate::algebra::elem::Pair {
            left: side(&p.left)?,
            right: side(&p.right)?,
            scale: p.covariance.as_deref().map(poly).transpose()?,
            diag: p.diagonal,
        });
    }
    let npairs = table.pairs.len() as u32;
    let texpr_in_scope = |e: &TExprJ| -> Result<TExpr, String> {
        let mut out = TExpr::zero(e.free);
        for t in &e.terms {
            let mut atoms = Vec::new();
            for f in &t.factors {
                atoms.push(match f {
                    FactorJ::GradF { order, indices } => {
                        Atom::new(Kind::DF(*order), indices.clone())
                    }
                    FactorJ::NoiseMoment {
                        moment,
                        derivative,
                        indices,
                    } => Atom::new(
                        Kind::Moment {
                            r: *moment,
                            d: *derivative,
                        },
                        indices.clone(),
                    ),
                    FactorJ::State { state, indices } => {
                        Atom::new(Kind::State(var(state)? as u8), indices.clone())
                    }
                    FactorJ::Ones { indices } => Atom::new(Kind::One, indices.clone()),
                    FactorJ::Delta { indices } => Atom::new(Kind::Delta, indices.clone()),
                    FactorJ::Elementwise { function, indices } => {
                        if *function >= nfun {
                            return Err(format!("unknown function {function}"));
                        }
                        Atom::new(Kind::Elem(*function), indices.clone())
                    }
                    FactorJ::Pair { pair, indices } => {
                        if *pair >= npairs || indices.len() != 2 {
                            return Err(format!("unknown kink pair {pair}"));
                        }
                        Atom::new(Kind::Pair(*pair), indices.clone())
                    }
                });
            }
            out.add_raw(atoms, poly(&t.coefficient)?, dim);
        }
        Ok(out)
    };
    // The expressions are canonicalized in their own table of elementwise functions.
    let texpr = |e: &TExprJ| -> Result<TExpr, String> {
        crate::algebra::elem::scoped(table.clone(), || texpr_in_scope(e)).0
    };
    let vars_of = |names: &[String]| names.iter().map(|n| var(n)).collect::<Result<Vec<_>, _>>();
    let eliminated = doc
        .eliminated
        .iter()
        .map(|e| {
            Ok(crate::sme::Eliminated {
                name: e.state.clone(),
                rate: poly(&e.rate)?,
                scale: e.scale,
                complement: e.complement.clone(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Sme {
        optimizer: doc.optimizer.clone(),
        requested_order: doc.requested_order,
        order: doc.order,
        small: sym(&doc.small)?,
        dim,
        time: poly(&doc.time)?,
        time_power: doc.time_power,
        vars: doc
            .state
            .iter()
            .map(|s| StateInfo {
                name: s.name.clone(),
                scalar: s.shape == "scalar",
            })
            .collect(),
        drift: doc
            .drift
            .iter()
            .map(|d| texpr(&d.expr))
            .collect::<Result<_, _>>()?,
        diffusion: doc
            .diffusion
            .iter()
            .map(|d| {
                Ok(DiffusionBlock {
                    rows: var(&d.rows)?,
                    cols: var(&d.cols)?,
                    expr: texpr(&d.expr)?,
                })
            })
            .collect::<Result<_, String>>()?,
        diffusion_from_next_order: doc.diffusion_from_next_order,
        noise: doc
            .noise
            .iter()
            .map(|n| {
                let kind = if n.kind == "gaussian" {
                    NoiseKind::Gaussian
                } else {
                    NoiseKind::General
                };
                Ok(crate::sme::NoiseInfo {
                    name: n.name.clone(),
                    kind,
                    scale: n.covariance.as_deref().map(poly).transpose()?,
                })
            })
            .collect::<Result<_, String>>()?,
        conditions: doc
            .conditions
            .iter()
            .map(|c| {
                Ok(Condition {
                    vars: vars_of(&c.moment)?,
                    power: c.power,
                    residual: texpr(&c.residual)?,
                    needed_for_order: c.needed_for_order,
                })
            })
            .collect::<Result<_, String>>()?,
        certificate: doc
            .certificate
            .iter()
            .map(|r| {
                Ok(Residual {
                    vars: vars_of(&r.moment)?,
                    matched_through: r.matched_through,
                    leading: r.leading.as_ref().map(|l| (l.power, l.terms)),
                })
            })
            .collect::<Result<_, String>>()?,
        symbols,
        elem: table,
        clock: match &doc.clock {
            None => None,
            Some(c) => Some(var(c)?),
        },
        notes: doc.notes.clone(),
        eliminated,
        independent: doc.independent.as_ref().map(independent_of).transpose()?,
    })
}

/// The schema of the Hessian-aware SME's document and its version.
pub const HASME_SCHEMA: &str = "smelt-hasme";
pub const HASME_VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct HaDoc {
    schema: String,
    version: u32,
    optimizer: String,
    small: String,
    order: u32,
    certified: bool,
    mismatches: Vec<String>,
    closed_form: ClosedJ,
    drift_series: Vec<DriftCoefJ>,
    diffusion_series: Vec<DiffCoefJ>,
    conditions: Vec<String>,
    sme: Doc,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct ClosedJ {
    drift: String,
    diffusion: String,
    drift_eigen: String,
    diffusion_eigen: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct DriftCoefJ {
    power: usize,
    coefficient: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct DiffCoefJ {
    power: usize,
    left: usize,
    right: usize,
    coefficient: String,
}

/// The Hessian-aware SME as pretty-printed JSON, schema `smelt-hasme` version 1.
pub fn hasme_to_json(h: &HaSme) -> String {
    use super::notation::Style;
    let e = super::hasme::small(Style::Text, h);
    let eta = h.sme.symbols.name(h.sme.small).to_string();
    let doc = HaDoc {
        schema: HASME_SCHEMA.to_string(),
        version: HASME_VERSION,
        optimizer: h.sme.optimizer.clone(),
        small: eta.clone(),
        order: h.order,
        certified: h.mismatches.is_empty(),
        mismatches: h.mismatches.clone(),
        closed_form: ClosedJ {
            drift: super::hasme::closed_drift(Style::Text, &e),
            diffusion: super::hasme::closed_diffusion(Style::Text, &e),
            drift_eigen: format!("log(1 - {eta}*l)/({eta}*l)"),
            diffusion_eigen: format!(
                "-{eta}*log((1 - {eta}*l)*(1 - {eta}*r))/(1 - (1 - {eta}*l)*(1 - {eta}*r))"
            ),
        },
        drift_series: h
            .drift
            .iter()
            .enumerate()
            .map(|(n, c)| DriftCoefJ {
                power: n,
                coefficient: c.to_string(),
            })
            .collect(),
        diffusion_series: h
            .diffusion
            .iter()
            .enumerate()
            .flat_map(|(k, row)| {
                row.iter().enumerate().map(move |(a, c)| DiffCoefJ {
                    power: 1 + k,
                    left: a,
                    right: k - a,
                    coefficient: c.to_string(),
                })
            })
            .collect(),
        conditions: vec![super::hasme::condition(&e)],
        sme: doc(&h.sme),
    };
    serde_json::to_string_pretty(&doc).expect("serialisable") + "\n"
}

/// Reads a document written by [`hasme_to_json`] back into a [`HaSme`].
pub fn hasme_from_json(text: &str) -> Result<HaSme, crate::Error> {
    hasme_from_json_inner(text).map_err(crate::Error::Other)
}

fn hasme_from_json_inner(text: &str) -> Result<HaSme, String> {
    let doc: HaDoc = serde_json::from_str(text)
        .map_err(|e| format!("not a smelt Hessian-aware SME document: {e}"))?;
    if doc.schema != HASME_SCHEMA || doc.version != HASME_VERSION {
        return Err(format!(
            "unsupported schema {} version {} (this smelt reads {HASME_SCHEMA} version {HASME_VERSION})",
            doc.schema, doc.version
        ));
    }
    let q = |c: &str| {
        c.parse::<BigRational>()
            .map_err(|_| format!("bad coefficient `{c}`"))
    };
    let mut drift = Vec::new();
    for (n, c) in doc.drift_series.iter().enumerate() {
        if c.power != n {
            return Err(format!("drift_series[{n}] has power {}", c.power));
        }
        drift.push(q(&c.coefficient)?);
    }
    let mut diffusion: Vec<Vec<BigRational>> = Vec::new();
    for c in &doc.diffusion_series {
        // In order: by power, then by the power of H on the left.
        let k = c.left + c.right;
        let rows = if c.left == 0 { k } else { k + 1 };
        let in_order = c.power == 1 + k
            && diffusion.len() == rows
            && (c.left == 0 || diffusion[k].len() == c.left);
        if !in_order {
            return Err(format!(
                "diffusion_series: η^{} H^{} Σ H^{} is out of order",
                c.power, c.left, c.right
            ));
        }
        if c.left == 0 {
            diffusion.push(Vec::new());
        }
        diffusion[k].push(q(&c.coefficient)?);
    }
    Ok(HaSme {
        sme: sme_of(&doc.sme)?,
        order: doc.order,
        drift,
        diffusion,
        mismatches: doc.mismatches,
    })
}
