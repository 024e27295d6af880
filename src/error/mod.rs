//! The library's error: what every fallible entry point returns, whatever the phase.
//!
//! A problem in an input is a list of [`Diagnostic`]s with spans, tagged by the file
//! they point into ([`Source`]): the optimizer file ([`Error::Invalid`]: parsing,
//! checking, the derivation, and compiling a step of the rule for the simulator) or the
//! problem file ([`Error::Problem`]). A failure at run time that no span explains (a
//! step size the run cannot use, a simulation that diverged) is [`Error::Other`], in
//! words; a broken invariant is [`Error::Internal`].

pub mod diagnostic;

use diagnostic::Diagnostic;

/// Which input file a diagnostic points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The optimizer (update rule) file.
    Optimizer,
    /// The problem file (objective, noise, start, test functions).
    Problem,
}

/// Why smelt could not process an input or finish a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The optimizer file is not valid, or its rule cannot be derived or simulated;
    /// each diagnostic points into the optimizer file.
    #[error("{}", .0.first().map_or_else(String::new, |d| d.message.clone()))]
    Invalid(Vec<Diagnostic>),
    /// The problem file is not valid, or does not fit the rule; the diagnostic points
    /// into the problem file.
    #[error("{0}")]
    Problem(Box<Diagnostic>),
    /// A failure at run time no span explains, in words: a numeric failure (naming the
    /// step size where there is one), a setting the run cannot use.
    #[error("{0}")]
    Other(String),
    /// A bug in smelt: an invariant of the derivation did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The diagnostics to show the user, all pointing into [`Error::source`]'s file.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Invalid(d) => d,
            Error::Problem(d) => std::slice::from_ref(d),
            Error::Other(_) | Error::Internal(_) => &[],
        }
    }

    /// The file the diagnostics point into, or `None` when there are none.
    pub fn source(&self) -> Option<Source> {
        match self {
            Error::Invalid(_) => Some(Source::Optimizer),
            Error::Problem(_) => Some(Source::Problem),
            Error::Other(_) | Error::Internal(_) => None,
        }
    }

    /// The error as the CLI prints it: diagnostics rendered against the file they point
    /// into (each given as its shown name and its text), else one `error:` line.
    pub fn render(&self, optimizer: (&str, &str), problem: (&str, &str)) -> String {
        match self {
            Error::Invalid(d) => diagnostic::render(d, optimizer.0, optimizer.1),
            Error::Problem(d) => diagnostic::render(std::slice::from_ref(d), problem.0, problem.1),
            Error::Other(msg) => format!("error: {msg}\n"),
            Error::Internal(msg) => format!("error: internal error in smelt: {msg}\n"),
        }
    }
}

impl From<Box<Diagnostic>> for Error {
    /// A lone boxed diagnostic is the problem file's (the problem loader's error).
    fn from(d: Box<Diagnostic>) -> Error {
        Error::Problem(d)
    }
}
