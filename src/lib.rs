//! # smelt
//!
//! smelt takes an optimizer's update rule as written in a paper and derives its
//! stochastic modified equation (SME). This crate is the library; the `smelt` binary
//! is a thin command line over it.
//!
//! ## Architecture
//!
//! One folder per phase, in pipeline order. The deriving half:
//!
//! | module | phase |
//! |---|---|
//! | `syntax` | text → syntax tree with spans (pest grammar in `grammar/smelt.pest`, Pratt parser for precedence) |
//! | `ir` | syntax tree → typed IR: names resolved, scalings substituted, shapes and versions checked; canonical printing |
//! | `derive` | IR → [`Sme`]: the step as a series in the small parameter, noise moments, the generator's moments, the order-by-order solve, conditions, certificate |
//! | `algebra` | what the derivation computes with: exact Laurent coefficients (`algebra::poly`), einsum terms in canonical form (`algebra::tensor`), elementwise functions of the state (`algebra::elem`), exact linear solves |
//! | `simplify` | compact forms: gradient potentials (exact linear solve) and equality saturation (egg, private to this module) |
//! | [`sme`] | the result: a plain value every later phase reads |
//! | [`emit`] | text, LaTeX, JSON, SymPy, NumPy, components: pure functions of an [`Sme`] (or of an [`analysis::hasme::HaSme`]) |
//! | [`analysis`] | analyses of derived results: batch-size scaling rules, the Hessian-aware SME |
//!
//! The checking half:
//!
//! | module | phase |
//! |---|---|
//! | `numeric` | numbers: the seeded generator and its CPU dispatch, the reference evaluator of derived expressions (the compiled simulation is tested against it), hash-consed graphs and their tapes, dense linear algebra, exact moments of linear-Gaussian models |
//! | [`problem`] | problem files: objective, noise (Gaussian Σ(x) or minibatches of data), starts, test functions |
//! | `sim` | compiled simulation: rules, SMEs and test functions compiled to tapes, weak-error runs, exit-time runs, the HA-SME per state, the independent certificate |
//! | [`experiment`] | the two checks against the optimizer, each prepare → plan → run: weak errors against the step size ([`experiment::verify`]); exit times, scaling laws and their closed forms ([`experiment::escape`]) |
//! | [`report`] | fits and verdicts (weighted least-squares slopes with confidence intervals, one verdict rule); tables; plots for both commands, SVG and PNG through plotters ([`report::plot`]) |
//! | [`Error`], [`diagnostic`] (`error/`), `span` | the one error type users see, the diagnostics it carries, their rendering with file, line, column and hint |
//!
//! Modules shown as code (`syntax`, `ir`, …) are private: their items reach users through
//! the surface below, and the crate's own tests reach their insides through a hidden
//! `internals` module.
//!
//! The binary's `cli/` parses arguments, calls the library and prints; nothing else.
//! Imports run one way, down this list (numeric below problem below sim below
//! experiment below report): `tests/architecture.rs` fails on any import cycle between
//! files or folders, and on any top-level file beyond `lib`, `main`, `error`, `span`
//! and `sme`.
//!
//! ## The library's surface
//!
//! - Derive: [`check`] and [`lower`] (text → [`Optimizer`], with [`canonical`] to print
//!   it back), [`derive()`] and [`derive_checked`] (→ [`Sme`], under [`Options`] with
//!   [`Progress`] reports), [`certify`] (the independent numeric certificate).
//! - Print: [`emit`] (text, LaTeX, JSON, SymPy, NumPy, components) and [`analysis`]
//!   (the Hessian-aware SME, batch-size scaling rules).
//! - Check: [`problem`] (problem files), [`experiment`] (`verify` and `escape`: prepare →
//!   plan → run), [`report`] (fits, verdicts, plots).
//! - Fail well: [`Error`], its [`Diagnostic`]s with [`Code`]s and [`Span`]s, rendered by
//!   [`diagnostic::render`].
//!
//! `tests/api.rs` uses only this surface.
//!
//! Architecture invariants:
//! - `syntax` knows nothing of the IR or of later phases; pest's types never leave it.
//! - The library never prints: it returns values and [`Error`]s. Only the binary's
//!   `cli` module writes to the terminal (enforced by clippy's `print_stdout` lint).
//! - Every user-facing error carries a span into the source; rendering is a pure function.
//! - The symbolic path is deterministic: the same input gives byte-identical output
//!   (egg runs with its `deterministic` feature under iteration and node limits; the
//!   numeric identity test of elementwise functions uses fixed points).
//! - Hostile input is bounded before anything recursive runs: file size, nesting depth
//!   and literal length have limits that produce diagnostics, never a crash; expansions
//!   stop with a clean error beyond a term limit.
//! - Every printed or exported form is checked against an independent computation in
//!   the tests (published formulas, numeric moments, SymPy, NumPy, pdflatex).
//!
//! ## Example
//!
//! ```
//! let source = "optimizer SGD\n  param x\n  small eta\n  noise xi ~ general\n  x = x - eta*(grad f(x) + xi)\n";
//! let sgd = smelt::check(source).unwrap();
//! assert_eq!(sgd.name, "SGD");
//! assert!(smelt::ir::canonical(&sgd).contains("x = x - eta*(grad f(x) + xi)"));
//! ```

// The phases. Those marked hidden are not part of the surface: their public items reach
// users through the `pub use` list below, and the crate's own tests reach their insides
// through `internals`.
#[doc(hidden)]
pub mod algebra;
pub mod analysis;
#[doc(hidden)]
pub mod derive;
pub mod emit;
mod error;
pub mod experiment;
#[doc(hidden)]
pub mod ir;
#[doc(hidden)]
pub mod numeric;
pub mod problem;
pub mod report;
#[doc(hidden)]
pub mod sim;
#[doc(hidden)]
pub mod simplify;
pub mod sme;
#[doc(hidden)]
pub mod span;
#[doc(hidden)]
pub mod syntax;

// The library's surface: derive, check, print, verify.
pub use derive::{Options, Progress, Step, MAX_ORDER, MAX_TERMS};
pub use error::diagnostic;
pub use error::diagnostic::{Code, Diagnostic};
pub use error::{Error, Source};
pub use ir::{canonical, Optimizer};
pub use sim::certify::check as certify;
pub use sme::Sme;
pub use span::Span;
pub use syntax::MAX_SOURCE_BYTES;

/// The phases' insides (the modules above marked hidden), public only so that the crate's own integration tests, benches
/// and examples can test them from outside (the algebra against brute force, the
/// reference evaluators against the compiled tapes, the generator against `rand_distr`).
/// Not part of the library's surface: no stability promise, not documented, and
/// `tests/architecture.rs` keeps the binary and `tests/api.rs` from naming it.
#[doc(hidden)]
pub mod internals {
    pub use crate::{algebra, derive, ir, numeric, sim, simplify, span, syntax};
}

/// Parses and checks an optimizer file, returning its typed IR.
///
/// Beside the syntax, names, shapes and scalings, the check scans the step at leading
/// order ([`derive::time_scale`]): a declared time per step longer than the step's own
/// scale (`x = x - eta^2*g` with `time eta`) is refused here, at the `time` line.
pub fn check(source: &str) -> Result<Optimizer, Error> {
    let opt = lower(source)?;
    derive::time_scale(&opt)?;
    Ok(opt)
}

/// [`check`] without the leading-order scan: the syntax, names, shapes and scalings.
/// [`derive::derive`] makes the scan's finding itself.
pub fn lower(source: &str) -> Result<Optimizer, Error> {
    let file = syntax::parse(source).map_err(|d| Error::Invalid(vec![*d]))?;
    ir::lower(&file).map_err(Error::Invalid)
}

/// Parses, checks and derives the SME of an optimizer file.
///
/// ```
/// let sgd = "optimizer SGD\n param x\n small eta\n noise xi ~ general\n x = x - eta*(grad f(x) + xi)\n";
/// let sme = smelt::derive(sgd, &smelt::Options::order(2)).unwrap();
/// assert_eq!(sme.order, 2);
/// let text = smelt::emit::text::render(&sme);
/// assert!(text.contains("b_x = -∇f - (η/2) ∇²f ∇f"));
/// assert!(text.contains("= -∇(f + (η/4) ‖∇f‖²)"));
/// // Order 3 needs the third moment of general noise to vanish: the result says so.
/// let sme3 = smelt::derive(sgd, &smelt::Options::order(3)).unwrap();
/// assert_eq!((sme3.order, sme3.conditions.len()), (2, 1));
/// ```
pub fn derive(source: &str, options: &Options) -> Result<Sme, Error> {
    let opt = lower(source)?;
    derive::derive(&opt, options)
}

/// Derives the SME of an optimizer already checked ([`check`] or [`lower`]): [`derive()`]
/// without the parsing, for callers that keep the IR (to print it with [`canonical`], to
/// certify the result with [`certify`], or to derive several orders).
pub fn derive_checked(opt: &Optimizer, options: &Options) -> Result<Sme, Error> {
    derive::derive(opt, options)
}

/// Decodes a file's bytes as UTF-8, or returns a diagnostic at the first invalid byte.
///
/// On failure the second value is the text to render the diagnostic against (the
/// invalid bytes replaced), so that line and column point at the right place.
#[allow(
    clippy::result_large_err,
    reason = "called once per file; the error is rendered at once"
)]
pub fn decode(bytes: &[u8]) -> Result<&str, (Diagnostic, String)> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let at = e.valid_up_to();
            let shown = String::from_utf8_lossy(bytes).into_owned();
            // The replacement character is 3 bytes long in the lossy text.
            let d = Diagnostic::new(
                Code::NotUtf8,
                span::Span::new(at, at + '\u{FFFD}'.len_utf8()),
                format!(
                    "the file is not UTF-8 text (invalid byte 0x{:02x})",
                    bytes[at]
                ),
            )
            .label("invalid byte here")
            .hint("save the file as UTF-8; optimizer files are plain text");
            Err((d, shown))
        }
    }
}
