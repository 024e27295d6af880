//! User-facing errors: one message, the place it points at, and a hint.
//!
//! Every phase reports problems in the input as [`Diagnostic`]s; [`render`] turns them
//! into the text the CLI prints (file, line and column, the source line with a caret,
//! secondary labels and a hint). Rendering is a pure function, so snapshots pin it.

use crate::span::Span;
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

/// What kind of problem a diagnostic reports; stable names for tools and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The file is empty or holds only comments.
    EmptyFile,
    /// The bytes are not UTF-8 text.
    NotUtf8,
    /// The file or an expression is beyond what smelt reads.
    TooLarge,
    /// The text does not follow the grammar.
    Syntax,
    /// The file does not describe an optimizer.
    NotOptimizer,
    /// A number cannot be read or is out of range.
    BadNumber,
    /// A constraint on a hyperparameter is impossible.
    Constraint,
    /// A name is used but never defined.
    Undefined,
    /// A name is declared twice, or clashes with a built-in.
    Redeclared,
    /// A required declaration is missing or given twice.
    Declaration,
    /// A state or the parameter is declared but never updated.
    NeverUpdated,
    /// An update assigns to a name that is not the parameter or a state.
    UndeclaredUpdate,
    /// The same variable is updated twice in one step.
    UpdatedTwice,
    /// Shapes do not fit (a matrix added to a vector, say).
    Shape,
    /// An expression uses something where it is not allowed (noise in a scaling, say).
    Misuse,
    /// An increment does not vanish fast enough for the declared time per step.
    NotSmall,
    /// The declared time per step is longer than the step's own scale: the step's mean
    /// and covariance are of higher order, so the SME would say nothing moves.
    TimeScale,
    /// A construct the derivation does not handle yet.
    Unsupported,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::EmptyFile => "empty-file",
            Code::NotUtf8 => "not-utf8",
            Code::TooLarge => "too-large",
            Code::Syntax => "syntax",
            Code::NotOptimizer => "not-an-optimizer",
            Code::BadNumber => "bad-number",
            Code::Constraint => "constraint",
            Code::Undefined => "undefined-name",
            Code::Redeclared => "redeclared",
            Code::Declaration => "declaration",
            Code::NeverUpdated => "never-updated",
            Code::UndeclaredUpdate => "undeclared-update",
            Code::UpdatedTwice => "updated-twice",
            Code::Shape => "shape",
            Code::Misuse => "misuse",
            Code::NotSmall => "not-small",
            Code::TimeScale => "time-scale",
            Code::Unsupported => "unsupported",
        }
    }
}

/// One problem in the input, with the place it points at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Diagnostic {
    pub code: Code,
    /// Lowercase, no trailing period: "undefined name `bta`".
    pub message: String,
    pub span: Span,
    /// What the caret says about the primary span.
    pub label: String,
    /// Other places that explain the problem ("first updated here").
    pub secondary: Vec<(Span, String)>,
    /// What to do about it, starting with a verb where possible.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            span,
            label: String::new(),
            secondary: Vec::new(),
            hint: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Diagnostic {
        self.hint = hint;
        self
    }

    pub fn secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }
}

/// Renders diagnostics as plain text, as the CLI prints them.
pub fn render(diagnostics: &[Diagnostic], file_name: &str, source: &str) -> String {
    let shown = printable(source);
    let file = SimpleFile::new(file_name, shown.as_str());
    let config = Config::default();
    let mut out = String::new();
    for d in diagnostics {
        match term::emit_into_string(&config, &file, &to_codespan(d, source.len())) {
            Ok(text) => out.push_str(&text),
            // Rendering fails only on a span outside the file; fall back to one line.
            Err(_) => out.push_str(&format!("error[{}]: {}\n", d.code.name(), d.message)),
        }
    }
    out
}

/// The source with control characters made visible, byte offsets unchanged: a carriage
/// return becomes a space, other control characters `?` (or `¿` for two-byte ones), so
/// that nothing the file holds can drive the terminal.
fn printable(source: &str) -> String {
    source
        .chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            '\r' => ' ',
            c if c.is_control() && c.len_utf8() == 1 => '?',
            c if c.is_control() => '¿',
            c => c,
        })
        .collect()
}

fn to_codespan(d: &Diagnostic, len: usize) -> CsDiagnostic<()> {
    let clamp = |s: Span| s.start.min(len)..s.end.min(len).max(s.start.min(len));
    let mut labels = vec![Label::primary((), clamp(d.span)).with_message(d.label.clone())];
    for (span, msg) in &d.secondary {
        labels.push(Label::secondary((), clamp(*span)).with_message(msg.clone()));
    }
    let mut notes = Vec::new();
    if let Some(h) = &d.hint {
        notes.push(format!("hint: {h}"));
    }
    CsDiagnostic::error()
        .with_message(d.message.clone())
        .with_code(d.code.name())
        .with_labels(labels)
        .with_notes(notes)
}

/// The result of a phase that stops at its first diagnostic.
pub type Fallible<T> = Result<T, Box<Diagnostic>>;

/// A boxed diagnostic, for [`Fallible`] results (the builder methods follow through
/// [`Boxed`]).
pub fn boxed(code: Code, span: Span, message: impl Into<String>) -> Box<Diagnostic> {
    Box::new(Diagnostic::new(code, span, message))
}

/// The builder methods of [`Diagnostic`] on a boxed one, so that code returning
/// `Result<_, Box<Diagnostic>>` can build errors in place.
pub trait Boxed {
    fn label(self, label: impl Into<String>) -> Self;
    fn hint(self, hint: impl Into<String>) -> Self;
    fn secondary(self, span: Span, label: impl Into<String>) -> Self;
}

impl Boxed for Box<Diagnostic> {
    fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }
}
