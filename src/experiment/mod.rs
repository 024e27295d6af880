//! The two checks against the optimizer itself: weak errors against the step size
//! ([`verify`]) and exit times with their scaling laws ([`escape`]).

pub mod escape;
pub mod shard;
pub mod verify;

/// The simulations' generator, named for reports (JSON `generator`, the text footer).
pub const GENERATOR: &str = crate::numeric::rng::NAME;
