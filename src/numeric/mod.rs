//! Numerics on update rules and derived SMEs.
//!
//! [`eval()`] is the reference evaluator of a derived SME: a [`crate::algebra::tensor::TExpr`] at a
//! point ([`Env`]: the dimension, the states, the symbol values, the derivatives of f and
//! the noise moments) by plain loops over every index, einsum semantics. [`step()`] is the
//! reference interpreter of the update rule itself: one optimizer step at concrete values,
//! the problem read through an [`Oracle`]. Both are deliberately simple; faster evaluators
//! and the exported code ([`crate::emit::numpy`]) are tested against them.

pub mod eval;
pub mod exact;
pub mod gauss;
pub mod graph;
pub mod linear_gaussian;
pub mod rng;
pub mod step;
pub mod tape;
pub mod vmath;
mod ziggurat_tables;

pub use eval::{eval, Env, Tensor, Value};
pub use step::{step, Oracle, Values};
