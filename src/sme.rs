//! The result of a derivation: a plain value that every emitter reads.

use crate::algebra::poly::{Poly, Sym, Symbols};
use crate::algebra::tensor::TExpr;
use crate::syntax::NoiseKind;

/// A stochastic modified equation `dZ = b(Z) dt + σ(Z) dW`, `D = σσᵀ`, of a given weak
/// order, with the conditions it needs and the certificate of its moment matching.
#[derive(Debug, Clone, PartialEq)]
pub struct Sme {
    /// The optimizer's name.
    pub optimizer: String,
    /// The order asked for.
    pub requested_order: u32,
    /// The weak order the result reaches (`requested_order` unless a condition fails).
    pub order: u32,
    /// Names of the small parameter, hyperparameters and other symbols in coefficients.
    pub symbols: Symbols,
    /// The small parameter's symbol.
    pub small: Sym,
    /// The symbol standing for the dimension d (appears only from traces of δ).
    pub dim: Sym,
    /// The time one step represents, `c·small^q`.
    pub time: Poly,
    /// The power `q` of the small parameter in the time per step.
    pub time_power: i32,
    /// The state variables, the parameter first.
    pub vars: Vec<StateInfo>,
    /// The drift of each state variable (one free index for a vector, none for a scalar),
    /// with the small parameter in its coefficients.
    pub drift: Vec<TExpr>,
    /// The diffusion blocks `D^{ac}` for `a ≤ c` (free indices: `a`'s, then `c`'s).
    pub diffusion: Vec<DiffusionBlock>,
    /// Set when the order does not determine the diffusion and the one shown is the
    /// leading diffusion that the next order forces (as in Li–Tai–E's SME-1).
    pub diffusion_from_next_order: bool,
    /// The noise samples of one step.
    pub noise: Vec<NoiseInfo>,
    /// Moment conditions beyond the drift and diffusion; a failed one limits the order.
    pub conditions: Vec<Condition>,
    /// The residual of every matched moment.
    pub certificate: Vec<Residual>,
    /// The elementwise functions the expressions refer to ([`crate::algebra::tensor::Kind::Elem`]).
    pub elem: crate::algebra::elem::Table,
    /// The clock `t` among the state variables, added when the rule reads the step
    /// counter (`k = t/τ`); its drift is 1 and it has no noise.
    pub clock: Option<usize>,
    /// Remarks on where the expansion holds (a state that must stay away from 0, say).
    pub notes: Vec<String>,
    /// The rule's fast states, eliminated from the SME (not among [`Sme::vars`]).
    pub eliminated: Vec<Eliminated>,
    /// The independent numeric check, when it was run ([`crate::sim::certify::check`]);
    /// the derivation itself leaves it `None`.
    pub independent: Option<Check>,
}

/// A state of the rule that relaxes at a fixed rate and is eliminated from the SME: each
/// step multiplies it by `rate` (a constant) and adds its forcing; on its slow manifold it
/// is of order ε^`scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eliminated {
    pub name: String,
    pub rate: crate::algebra::poly::Poly,
    pub scale: i32,
    /// Where the rate is a symbol μ: the name of the symbol κ that stands for
    /// 1/(1 − μ) in the coefficients (reduced so that no monomial has both).
    pub complement: Option<String>,
}

/// One noise sample of the step: its name, family and covariance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseInfo {
    pub name: String,
    pub kind: NoiseKind,
    /// `None`: the problem's gradient-noise covariance Σ(x); `Some(c)`: covariance `c·I`
    /// (a polynomial in the SME's symbols).
    pub scale: Option<crate::algebra::poly::Poly>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    pub name: String,
    pub scalar: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionBlock {
    pub rows: usize,
    pub cols: usize,
    pub expr: TExpr,
}

/// A one-step moment of order `s ≥ 3` (or a low-order moment) that no drift or
/// diffusion can fix: it must vanish for the equation to reach the next order.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The state variables of the moment `E[Δ_{a1} ⊗ … ⊗ Δ_{as}]`.
    pub vars: Vec<usize>,
    /// The power of the small parameter at which the moments differ.
    pub power: i32,
    /// Discrete minus continuous moment at that power (zero when the condition holds).
    pub residual: TExpr,
    /// The weak order that needs this condition.
    pub needed_for_order: u32,
}

/// One matched moment: zero residual through `matched_through`, and the leading residual.
#[derive(Debug, Clone, PartialEq)]
pub struct Residual {
    pub vars: Vec<usize>,
    /// Every power of the small parameter up to this one matches exactly.
    pub matched_through: i32,
    /// The first power that does not match and the number of terms of its residual, if
    /// one was computed.
    pub leading: Option<(i32, usize)>,
}

/// The outcome of the independent numeric check ([`crate::sim::certify`]): the update
/// rule's own one-step moments against the SME's, on a random problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The weak order checked (the derivation's, after its conditions).
    pub order: u32,
    /// The noise law used, in words.
    pub law: String,
    /// One fit per moment order `s = 1 … p`.
    pub moments: Vec<MomentFit>,
    pub verdict: Verdict,
}

/// The residuals of the moments of one order over the grid (serialised as such in the
/// JSON output's `independent.moments`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MomentFit {
    /// The moment order `s` (`E[Δ^{⊗s}]`).
    pub s: usize,
    /// The time per step at each grid point.
    pub tau: Vec<f64>,
    /// The largest residual over components and states at each grid point.
    pub residual: Vec<f64>,
    /// The rounding level at each grid point: residuals below 100× it are not fitted.
    pub floor: Vec<f64>,
    /// The fitted power of τ over the smallest clean points, if there are enough.
    pub power: Option<f64>,
}

/// What the check concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every moment's residual falls at least as fast as `τ^{p+1}` (or is at rounding level).
    Pass,
    /// Some moment's residual falls more slowly: the SME is not of the order it claims.
    Fail(String),
    /// The check could not be made (the reason).
    NotRun(String),
}

impl MomentFit {
    /// Whether every residual is at the rounding level.
    pub fn at_rounding(&self) -> bool {
        !self.residual.is_empty()
            && self
                .residual
                .iter()
                .zip(&self.floor)
                .all(|(r, f)| *r <= 100.0 * f)
    }
}

impl Check {
    /// Whether the check ran and failed.
    pub fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Fail(_))
    }

    /// One line: "one-step moment residuals ∝ τ^3.02 (order 2 needs 3)".
    pub fn summary(&self) -> String {
        let powers: Vec<String> = self
            .moments
            .iter()
            .map(|m| {
                let what = if m.s == 1 {
                    "E[Δ]".to_string()
                } else {
                    format!("E[Δ^⊗{}]", m.s)
                };
                match m.power {
                    Some(p) => format!("{what} ∝ τ^{p:.2}"),
                    None if m.at_rounding() => format!("{what} at rounding level"),
                    None => format!("{what}: too few clean points"),
                }
            })
            .collect();
        let head = match &self.verdict {
            Verdict::Pass => "passed",
            Verdict::Fail(_) => "FAILED",
            Verdict::NotRun(_) => "not run",
        };
        match &self.verdict {
            Verdict::NotRun(why) => format!("{head}: {why}"),
            Verdict::Fail(why) => format!(
                "{head}: {why}; residuals {} (order {} needs {})",
                powers.join(", "),
                self.order,
                self.order + 1
            ),
            Verdict::Pass => format!(
                "{head}: one-step moment residuals {} (order {} needs {})",
                powers.join(", "),
                self.order,
                self.order + 1
            ),
        }
    }
}
