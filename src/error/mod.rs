//! The library's error: what every fallible entry point returns.

pub mod diagnostic;

use diagnostic::Diagnostic;

/// Why smelt could not process an input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not a valid optimizer; each diagnostic points into the source.
    #[error("{}", .0.first().map_or_else(String::new, |d| d.message.clone()))]
    Invalid(Vec<Diagnostic>),
    /// A bug in smelt: an invariant of the derivation did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The diagnostics to show the user.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Invalid(d) => d,
            Error::Internal(_) => &[],
        }
    }
}
