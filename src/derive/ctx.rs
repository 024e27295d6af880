//! The state one derivation shares between its phases ([`Ctx`]), why it stops
//! ([`Failure`]), and the size limits every expansion and product runs under. The
//! phases (`expand.rs`, `moments.rs`, `mod.rs`) read it; it reads none of them.

use crate::algebra::poly::{Poly, Sym, Symbols};
use crate::algebra::tensor::{Label, Part, TExpr};
use crate::error::diagnostic::{Code, Diagnostic};
use crate::span::Span;
use crate::syntax::NoiseKind;

/// A product may form this many times [`super::Options::max_terms`] combinations of terms.
pub const PRODUCT_FACTOR: usize = 20;

/// Why a derivation stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    Diagnostic(Box<Diagnostic>),
    Internal(String),
}

impl From<Failure> for crate::Error {
    fn from(f: Failure) -> crate::Error {
        match f {
            Failure::Diagnostic(d) => crate::Error::Invalid(vec![*d]),
            Failure::Internal(msg) => crate::Error::Internal(msg),
        }
    }
}

/// Shared state of one derivation.
pub(crate) struct Ctx {
    pub syms: Symbols,
    pub eps: Sym,
    pub dim: Sym,
    pub var_names: Vec<String>,
    pub var_scalar: Vec<bool>,
    pub sample_names: Vec<String>,
    pub sample_kind: Vec<NoiseKind>,
    /// The covariance of each sample: `None` for the problem's Σ(x), else the multiple
    /// of the identity its law fixes (through [`Ctx::work`]).
    pub sample_scale: Vec<Option<Poly>>,
    /// The kinks of noisy arguments met so far ([`crate::algebra::tensor::Kind::Kink`]).
    pub kinks: Vec<super::kink::KinkDef>,
    /// Displacements of the points at which noise is evaluated (0: the parameter).
    pub points: Vec<TExpr>,
    /// The point each sample is evaluated at, by sample number (`u8::MAX`: none yet).
    pub sample_points: Vec<u8>,
    /// The highest power of ε any expansion needs.
    pub work: i32,
    /// The time of one step, `c ε^q`, and `q`.
    pub time: Poly,
    pub time_power: i32,
    /// The clock `t`, a scalar state added when the rule reads the step counter.
    pub clock: Option<u8>,
    /// Remarks on the validity of the expansion, for the result.
    pub notes: Vec<String>,
    /// Only the quadratic part: f quadratic, Σ constant ([`super::derive_quadratic`]).
    pub quadratic: bool,
    /// [`super::Options::max_terms`].
    pub max_terms: usize,
}

impl Ctx {
    /// A derivation's shared state before anything is expanded: the symbols, the variables
    /// and the samples of `opt`.
    pub fn fresh(opt: &crate::ir::Optimizer, max_terms: usize, quadratic: bool) -> Ctx {
        let mut syms = Symbols::default();
        let dim = syms.intern("d");
        let eps = syms.intern(&opt.small.name);
        for h in &opt.hypers {
            syms.intern(&h.name);
        }
        let mut var_names = vec![opt.param.name.clone()];
        let mut var_scalar = vec![false];
        for s in &opt.states {
            var_names.push(s.name.clone());
            var_scalar.push(s.shape == crate::ir::Shape::Scalar);
        }
        Ctx {
            syms,
            eps,
            dim,
            var_names,
            var_scalar,
            sample_names: opt.noises.iter().map(|n| n.name.clone()).collect(),
            sample_kind: opt.noises.iter().map(|n| n.kind).collect(),
            sample_scale: vec![None; opt.noises.len()],
            kinks: Vec::new(),
            points: vec![TExpr::zero(1)],
            sample_points: Vec::new(),
            work: 0,
            time: Poly::one(),
            time_power: 1,
            clock: None,
            notes: Vec::new(),
            quadratic,
            max_terms,
        }
    }

    pub fn var_id(&self, name: &str) -> u8 {
        self.var_names
            .iter()
            .position(|n| n == name)
            .expect("lowering resolved every variable") as u8
    }

    pub fn sample_id(&self, name: &str) -> u8 {
        self.sample_names
            .iter()
            .position(|n| n == name)
            .expect("lowering resolved every noise sample") as u8
    }

    pub fn check_size(&self, e: &TExpr, span: Span) -> Result<(), Failure> {
        if e.len() > self.max_terms {
            return Err(self.too_large(
                span,
                format!("the expansion grew beyond {} terms", self.max_terms),
            ));
        }
        Ok(())
    }

    /// The error of a derivation that reached its size limit.
    fn too_large(&self, span: Span, what: String) -> Failure {
        Failure::Diagnostic(Box::new(
            Diagnostic::new(Code::TooLarge, span, what)
                .label("while expanding this")
                .hint(format!(
                    "ask for a lower order, or raise the limit with `--max-terms` (now {}; `Options::max_terms` in the library): time and memory grow with it",
                    self.max_terms
                )),
        ))
    }

    /// [`crate::algebra::tensor::product_into`] under the limits of [`super::Options::max_terms`].
    pub fn product_into(
        &self,
        out: &mut TExpr,
        parts: &[Part],
        keep: &dyn crate::algebra::tensor::Truncation,
    ) -> Result<(), Failure> {
        let limit = self.max_terms.saturating_mul(PRODUCT_FACTOR);
        crate::algebra::tensor::product_into(out, parts, keep, self.dim, limit).map_err(|_| {
            self.too_large(
                Span::default(),
                format!(
                    "a product of the expansion formed more than {limit} combinations of terms ({PRODUCT_FACTOR} × the limit of {} terms)",
                    self.max_terms
                ),
            )
        })?;
        self.check_size(out, Span::default())
    }

    pub(super) fn nvars(&self) -> usize {
        self.var_names.len()
    }

    pub(super) fn slots(&self, v: usize) -> u8 {
        if self.var_scalar[v] {
            0
        } else {
            1
        }
    }
}

/// Output labels of each factor of a moment over `tuple`: vector variables get the next
/// free index, scalar ones none.
pub(crate) fn tuple_labels(ctx: &Ctx, tuple: &[usize]) -> (Vec<Vec<Label>>, u8) {
    let mut next = 0u8;
    let labels = tuple
        .iter()
        .map(|&v| {
            if ctx.var_scalar[v] {
                vec![]
            } else {
                next += 1;
                vec![next - 1]
            }
        })
        .collect();
    (labels, next)
}
