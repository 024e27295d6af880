//! Simulation of optimizers and SDEs over many paths (DESIGN.md §4): the seeded
//! generator every simulation draws from ([`crate::numeric::rng`]), the compiler from rules, SMEs and
//! test functions to tapes ([`compile`]).

pub mod certify;
pub mod compile;
pub mod escape;
pub mod ha;
pub mod sum;
pub mod weak;
