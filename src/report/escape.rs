//! The text report of `smelt escape`: exit times side by side per step size, the
//! scaling laws fitted to them and the closed forms beside them; and the values the
//! report is made of ([`EtaResult`], [`ScalingFit`], [`Predictions`]), which
//! [`crate::experiment::escape`] computes.

pub use crate::report::Line;
use crate::sim::escape::Survival;

/// A stationary point as the report states it.
#[derive(Debug, Clone)]
pub struct Point {
    pub x: Vec<f64>,
    /// "minimum", "saddle (one unstable direction)", …
    pub kind: String,
    pub f: f64,
    pub grad_norm: f64,
    /// The Hessian's eigenvalues, ascending.
    pub eigenvalues: Vec<f64>,
}

/// What the report says of the run before its results.
#[derive(Debug, Clone)]
pub struct Header {
    pub optimizer: String,
    pub problem: String,
    pub dim: usize,
    /// The region in words ("the ball |x − x₀| < 1", …).
    pub region: String,
    pub start: Point,
    pub saddle: Option<Point>,
    /// The censoring horizon in time.
    pub horizon: f64,
}

/// One model at one (η, B).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelResult {
    pub model: String,
    /// Kaplan–Meier summary in optimizer steps.
    #[serde(skip)]
    pub survival: Survival,
    /// Restricted mean exit time (time units, `steps · τ`) and its standard error.
    pub mean_time: f64,
    pub mean_time_se: f64,
    pub mean_steps: f64,
    pub median_steps: Option<f64>,
    pub exited: usize,
    pub censored: usize,
    pub diverged: usize,
    pub undefined: usize,
    pub first_divergence: Option<u32>,
    /// Log-rank p-value against the optimizer's exit steps (None for the optimizer).
    pub p_value: Option<f64>,
    /// The survival curve `(t, P(τ > t))` at most 201 points: where it crosses each
    /// level 1 − j/200 (and its end).
    pub survival_curve: Vec<(f64, f64)>,
}

/// All models at one (η, B).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EtaResult {
    pub eta: f64,
    pub batch: f64,
    pub tau: f64,
    pub max_steps: usize,
    pub stiffness: f64,
    pub models: Vec<ModelResult>,
    pub skipped: Vec<(String, String)>,
    pub schemes: Vec<(String, String)>,
    pub seconds: f64,
    pub path_steps: f64,
}

/// One fitted scaling law of one model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScalingFit {
    pub model: String,
    /// "log E τ" or "E τ".
    pub quantity: String,
    /// "1/η", "log(1/η)", "B" or "log B".
    pub against: String,
    /// The other variable's value (the batch for fits against η, η for fits against B).
    pub at: f64,
    pub line: Line,
    /// The points left out (censored: the restricted mean is only a lower bound).
    pub left_out: usize,
    /// Closed-form slopes, where there are any, and what each is.
    pub predicted: Vec<(f64, String)>,
}

/// The closed-form predictions of the SME-1.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Predictions {
    /// From a minimum: the barrier ΔF = f(saddle) − f(min) and the noise level s² (Σ =
    /// s² I at B = 1), when Σ is constant and isotropic.
    pub barrier: Option<f64>,
    pub noise: Option<f64>,
    /// Eyring–Kramers: E τ ≈ prefactor · exp(2ΔF B/(η s²)) (time to reach the saddle's
    /// hyperplane: half the transition time).
    pub kramers_prefactor: Option<f64>,
    /// From a saddle: the unstable rate λ (−the negative eigenvalue) and vᵀΣv.
    pub unstable_rate: Option<f64>,
    pub unstable_noise: Option<f64>,
    /// From a saddle through a ball: its radius (for the closed-form mean exit times).
    pub radius: Option<f64>,
    /// Why a prediction is missing.
    pub notes: Vec<String>,
}

impl Predictions {
    /// From an index-1 saddle of an SGD-form rule through a ball of radius r, the mean
    /// exit times (time units, read on the grid) of the linearised SME-1 and of the
    /// linearised HA-SME (SGD's own linear dynamics), asymptotic for small noise: the
    /// unstable coordinate grows like `e^{λt} (y₀ + σ N)`, so
    /// `E τ ≈ (log r − log σ + (γ + log 2)/2) / rate + τ/2`, with
    /// rate λ and `σ² = τ vᵀΣv/(2λB)` for the SME-1, and rate `log(1 + τλ)/τ` and
    /// `σ² = τ² vᵀΣv/(B((1 + τλ)² − 1))` for the HA-SME.
    pub fn saddle_times(&self, tau: f64, batch: f64) -> Option<(f64, f64)> {
        let (l, vsv, r) = (self.unstable_rate?, self.unstable_noise?, self.radius?);
        let c = 0.5 * (0.577_215_664_901_532_9 + std::f64::consts::LN_2);
        let sme = (r.ln() - 0.5 * (tau * vsv / (2.0 * l * batch)).ln() + c) / l + tau / 2.0;
        let rho = 1.0 + tau * l;
        let rate = rho.ln() / tau;
        let ha = (r.ln() - 0.5 * (tau * tau * vsv / (batch * (rho * rho - 1.0))).ln() + c) / rate
            + tau / 2.0;
        Some((sme, ha))
    }
}

/// The report as text.
pub fn render_text(
    h: &Header,
    pr: &Predictions,
    results: &[EtaResult],
    fits: &[ScalingFit],
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Exit times of {} and its SDEs on {} (d = {}), from {}",
        h.optimizer, h.problem, h.dim, h.region
    );
    let pt = &h.start;
    let _ = writeln!(
        o,
        "start x₀ = {} : a {} of f (f = {:.6}, |∇f| = {:.1e}, eigenvalues of ∇²f {})",
        fmt_vec(&pt.x),
        pt.kind,
        pt.f,
        pt.grad_norm,
        fmt_vec(&pt.eigenvalues)
    );
    if let Some(sd) = &h.saddle {
        let _ = writeln!(
            o,
            "saddle    = {} : f = {:.6}, eigenvalues {}",
            fmt_vec(&sd.x),
            sd.f,
            fmt_vec(&sd.eigenvalues)
        );
    }
    let _ = writeln!(
        o,
        "exit read on the optimizer's grid t = kτ; censored at T = {}; log-rank p-value of each SDE against {}",
        h.horizon, h.optimizer
    );
    for r in results {
        let _ = writeln!(
            o,
            "\nη = {}{}  (τ = {}, horizon {} steps, τ·max|λ| = {:.3}{}; {:.2} s, {:.0} M path-steps/s)",
            r.eta,
            if r.batch != 1.0 {
                format!(", B = {}", r.batch)
            } else {
                String::new()
            },
            r.tau,
            r.max_steps,
            r.stiffness,
            if r.stiffness > 0.1 {
                ": not small, the SMEs' expansions are stretched here"
            } else {
                ""
            },
            r.seconds,
            r.path_steps / r.seconds.max(1e-9) / 1e6
        );
        let _ = writeln!(
            o,
            "  {:<10} {:>22} {:>11} {:>9} {:>9} {:>9}  vs optimizer",
            "model", "E τ (time) ± 2se", "E steps", "median", "exited", "censored"
        );
        for m in &r.models {
            let mean = if m.exited + m.censored == 0 {
                "—".to_string()
            } else {
                format!(
                    "{}{:.4} ± {:.4}",
                    if m.censored > 0 { "≥" } else { "" },
                    m.mean_time,
                    2.0 * m.mean_time_se
                )
            };
            let _ = writeln!(
                o,
                "  {:<10} {:>22} {:>11} {:>9} {:>9} {:>9}  {}",
                m.model,
                mean,
                if m.exited + m.censored == 0 {
                    "—".to_string()
                } else {
                    format!("{:.2}", m.mean_steps)
                },
                m.median_steps.map_or("—".into(), |v| format!("{v:.0}")),
                m.exited,
                m.censored,
                match m.p_value {
                    Some(pv) if m.exited + m.censored > 0 => format!("p = {}", fmt_p(pv)),
                    _ => "—".into(),
                }
            );
            if m.diverged > 0 {
                let _ = writeln!(
                    o,
                    "  {:<10} {} paths {} (first at step {}): {}; not averaged in",
                    "",
                    m.diverged,
                    if m.undefined > 0 {
                        "stopped"
                    } else {
                        "diverged"
                    },
                    m.first_divergence.unwrap_or(0),
                    if m.undefined > 0 {
                        format!(
                            "{} reached states where the model is not defined (1 − ηλ ≤ 0)",
                            m.undefined
                        )
                    } else {
                        "the state stopped being finite".into()
                    }
                );
            }
        }
        for (m, why) in &r.skipped {
            let _ = writeln!(o, "  {m:<10} not run: {why}");
        }
        if let Some((sme, ha)) = pr.saddle_times(r.tau, r.batch) {
            let _ = writeln!(
                o,
                "  closed forms, linearised at the saddle (small noise): SME-1 E τ ≈ {sme:.4}, HA-SME (SGD's linear dynamics) E τ ≈ {ha:.4}"
            );
        }
    }
    if !fits.is_empty() {
        let _ = writeln!(o, "\nScaling laws (weighted least squares, 95% intervals):");
        for f in fits {
            let other = if f.against.contains('η') {
                if f.at != 1.0 {
                    format!(" at B = {}", f.at)
                } else {
                    String::new()
                }
            } else {
                format!(" at η = {}", f.at)
            };
            let _ = write!(
                o,
                "  {:<10} {} against {}{}: slope {:.4} ± {:.4}",
                f.model,
                f.quantity,
                f.against,
                other,
                f.line.slope,
                1.96 * f.line.slope_se
            );
            for (v, how) in &f.predicted {
                let _ = write!(
                    o,
                    "\n  {:<10}   predicted {v:.4} ({how}): off by {:+.1}%",
                    "",
                    100.0 * (f.line.slope / v - 1.0)
                );
            }
            if f.left_out > 0 {
                let _ = write!(o, " [{} censored points left out]", f.left_out);
            }
            let _ = writeln!(o);
        }
    }
    if let Some(pf) = pr.kramers_prefactor {
        let _ = writeln!(
            o,
            "Eyring–Kramers (SME-1, asymptotic as η → 0): E τ ≈ {pf:.4} · exp(2ΔF·B/(η s²)), ΔF = {:.4}, s² = {:.4}",
            pr.barrier.unwrap_or(f64::NAN),
            pr.noise.unwrap_or(f64::NAN)
        );
    }
    for n in &pr.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o
}

fn fmt_vec(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{}", round_sig(*x))).collect();
    format!("[{}]", items.join(", "))
}

/// `x` rounded to 7 significant digits (zero and non-finite values as they are).
pub fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = 10f64.powi(6 - x.abs().log10().ceil() as i32);
    let r = (x * e).round() / e;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// The text report's last line: the run's size, seed, time and generator.
pub fn render_footer(paths: usize, seed: u64, seconds: f64, generator: &str) -> String {
    format!(
        "{paths} paths per model and step size, seed {seed}, {seconds:.1} s; generator: {generator}\n"
    )
}
