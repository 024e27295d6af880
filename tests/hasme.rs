//! The Hessian-aware SME of SGD (Li, Shen, Zhang & He 2024; shared/FORMULAS.md §8.1):
//! recognised from the derived series of the quadratic part, and checked against the
//! closed forms' coefficients computed by hand.

use num_rational::BigRational;
use smelt::emit::hasme::text as render;
use smelt::hasme::hessian_aware;

fn q(n: i64, d: i64) -> BigRational {
    BigRational::new(n.into(), d.into())
}

fn source(file: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn sgd_series_is_the_hessian_aware_closed_form() {
    let opt = smelt::check(&source("sgd.opt")).unwrap();
    let h = hessian_aware(&opt, 4).unwrap();
    assert!(h.mismatches.is_empty(), "{:?}", h.mismatches);
    // drift (log(I - ηH)/(ηH)) ∇f = -(1 + ηH/2 + η²H²/3 + η³H³/4 + …) ∇f
    assert_eq!(h.drift, vec![q(-1, 1), q(-1, 2), q(-1, 3), q(-1, 4)]);
    // diffusion: η[Σ + (η/2)(HΣ + ΣH) + (η²/6)(2H²Σ + HΣH + 2ΣH²) + …], by hand from
    // g(u, w) = (-log(1-u) - log(1-w))/(u + w - uw), u = ηL, w = ηR.
    assert_eq!(h.diffusion[0], vec![q(1, 1)]);
    assert_eq!(h.diffusion[1], vec![q(1, 2), q(1, 2)]);
    assert_eq!(h.diffusion[2], vec![q(1, 3), q(1, 6), q(1, 3)]);
    insta::assert_snapshot!("sgd", render(&h));
}

#[test]
fn momentum_is_declined_with_a_reason() {
    let opt = smelt::check(&source("momentum.opt")).unwrap();
    let err = hessian_aware(&opt, 4).unwrap_err();
    assert_eq!(err.diagnostics()[0].code, smelt::Code::Unsupported);
}
