//! A scaling rule ([`crate::analysis::scaling`]) as text.

use crate::analysis::scaling::{power_text, Blocker, NoiseScale, Outcome};
use crate::ir::Optimizer;
use crate::sme::Sme;

/// Why no scaling exists, in words (the blocking term printed as the text output does).
pub fn blocker(sme: &Sme, why: &Blocker) -> String {
    match why {
        Blocker::Term { what, term } => {
            let names = super::text::Names::of(sme);
            let text = super::text::texpr(
                super::notation::Style::Text,
                term,
                &sme.symbols,
                sme.small,
                &names,
            );
            format!("no scaling keeps {what}: {text} unchanged")
        }
        Blocker::Other(why) => why.clone(),
    }
}

/// The rule as text.
pub fn render(opt: &Optimizer, sme: &Sme, batch: &NoiseScale, outcome: &Outcome) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let what = match batch {
        NoiseScale::Covariance => "the noise covariance Σ ∝ 1/κ".to_string(),
        NoiseScale::Named(n) => format!("the noise scale `{n}` ∝ κ^(-1/2)"),
    };
    let _ = writeln!(
        out,
        "scaling rule for {} when the batch grows by a factor κ ({what}):",
        opt.name
    );
    match outcome {
        Outcome::Impossible(why) => {
            let _ = writeln!(out, "  none: {}", blocker(sme, why));
            let _ = writeln!(
                out,
                "  (the first-order SME changes with the batch size whatever the hyperparameters do)"
            );
        }
        Outcome::Rule(r) => {
            for (h, e) in &r.hypers {
                let _ = writeln!(out, "  {h:<10} {}", power_text(e));
            }
            if !r.derived.is_empty() {
                out.push_str(
                    "  so that
",
                );
                for (h, e) in &r.derived {
                    let _ = writeln!(out, "  {h:<10} {}", power_text(e));
                }
            }
            let _ = writeln!(
                out,
                "  steps to a fixed time horizon {}",
                power_text(&r.steps)
            );
            if !r.free.is_empty() {
                let _ = writeln!(
                    out,
                    "  not constrained by the first-order SME (left unchanged above): {}",
                    r.free.join(", ")
                );
            }
        }
    }
    out
}
