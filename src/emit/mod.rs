//! Phase 5: the derived SME as text (and later LaTeX, JSON, SymPy, NumPy).
//! Every emitter is a pure function of a [`crate::Sme`] (or of a [`crate::analysis::hasme::HaSme`]).

pub mod components;
pub mod hasme;
pub mod json;
pub mod latex;
pub mod notation;
pub mod numpy;
pub mod scaling;
pub mod sympy;
pub mod text;

/// Joins the printed terms of a sum with ` + `, turning ` + -t` into ` - t` for every
/// term after the first whose flag says its leading minus binds the whole term.
pub(crate) fn join_sum(terms: impl IntoIterator<Item = (String, bool)>) -> String {
    let mut out = String::new();
    for (k, (t, foldable)) in terms.into_iter().enumerate() {
        match t.strip_prefix('-') {
            Some(rest) if k > 0 && foldable => {
                out.push_str(" - ");
                out.push_str(rest);
            }
            _ => {
                if k > 0 {
                    out.push_str(" + ");
                }
                out.push_str(&t);
            }
        }
    }
    out
}
