//! The algebra the derivation runs on: exact polynomial coefficients ([`poly`]), einsum
//! terms in canonical form ([`tensor`]), elementwise functions of the state ([`elem`]),
//! and exact linear solves over them (`linear`).

pub mod elem;
pub(crate) mod linear;
pub mod poly;
pub mod tensor;
