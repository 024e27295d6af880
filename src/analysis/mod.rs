//! Analyses of derived results: the Hessian-aware SME ([`hasme`]) and batch-size
//! scaling rules ([`scaling`]).

pub mod hasme;
pub mod scaling;
