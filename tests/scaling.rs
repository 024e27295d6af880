//! Scaling rules found from the first-order SME: the linear rule for SGD and the
//! square-root rule of Malladi et al. (NeurIPS 2022) for RMSprop and Adam
//! (shared/FORMULAS.md §5 and §6.4).

use num_rational::BigRational;
use smelt::analysis::scaling::{rule, NoiseScale, Outcome, Rule};

fn sme_and_rule(file: &str, batch: NoiseScale) -> (smelt::Sme, Outcome) {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(path).unwrap();
    let opt = smelt::check(&source).unwrap();
    let sme = smelt::derive_checked(&opt, &smelt::Options::order(1)).unwrap();
    let outcome = rule(&opt, &sme, &batch).unwrap();
    (sme, outcome)
}

fn rule_of(file: &str, batch: NoiseScale) -> Outcome {
    sme_and_rule(file, batch).1
}

fn q(n: i64, d: i64) -> BigRational {
    BigRational::new(n.into(), d.into())
}

fn exponent(r: &Rule, name: &str) -> BigRational {
    r.hypers
        .iter()
        .chain(&r.derived)
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {r:?}"))
        .1
        .clone()
}

#[test]
fn sgd_follows_the_linear_scaling_rule() {
    let Outcome::Rule(r) = rule_of("sgd.opt", NoiseScale::Covariance) else {
        panic!()
    };
    assert_eq!(exponent(&r, "eta"), q(1, 1));
    assert_eq!(r.steps, q(-1, 1), "a fixed horizon takes 1/κ as many steps");
}

#[test]
fn adaptive_methods_follow_the_square_root_rule() {
    for (file, betas) in [
        ("rmsprop.opt", vec!["1 - beta"]),
        ("adam.opt", vec!["1 - beta1", "1 - beta2"]),
    ] {
        let Outcome::Rule(r) = rule_of(file, NoiseScale::Named("sigma".into())) else {
            panic!("{file}")
        };
        assert_eq!(exponent(&r, "eta"), q(1, 2), "{file}: η → √κ η");
        for b in betas {
            assert_eq!(exponent(&r, b), q(1, 1), "{file}: 1 - β → κ(1 - β)");
        }
        assert_eq!(exponent(&r, "eps"), q(-1, 2), "{file}: ε → ε/√κ");
        assert_eq!(r.steps, q(-1, 1), "{file}");
        assert!(r.free.is_empty(), "{file}: {:?}", r.free);
    }
}

#[test]
fn impossible_rules_name_the_obstruction() {
    // In RMSprop's file the state u = v/σ² is measured against σ: if the covariance of the
    // normalised noise z changed instead, u's equation could not stay the same.
    let why = |file: &str, batch: NoiseScale| {
        let (sme, outcome) = sme_and_rule(file, batch);
        let Outcome::Impossible(why) = outcome else {
            panic!("{file}: a rule exists")
        };
        smelt::emit::scaling::blocker(&sme, &why)
    };
    let rms = why("rmsprop.opt", NoiseScale::Covariance);
    assert!(rms.contains("drift of u"), "{rms}");
    let sgd = why("sgd.opt", NoiseScale::Named("eta".into()));
    assert!(sgd.contains("`eta`"), "{sgd}");
}

/// Fixed-β momentum (issue 19): with the velocity eliminated the SME is SGD's with
/// learning rate η/(1 − μ), so the rule is linear in η and leaves μ alone (as Goyal et
/// al. train with momentum 0.9 at every batch size); the same for an EMA of the gradient.
#[test]
fn fixed_momentum_follows_the_linear_rule_with_the_momentum_unchanged() {
    for file in [
        "heavy_ball_fixed.opt",
        "nesterov_fixed.opt",
        "ema_sgd_fixed.opt",
    ] {
        let Outcome::Rule(r) = rule_of(file, NoiseScale::Covariance) else {
            panic!("{file}")
        };
        assert_eq!(exponent(&r, "eta"), q(1, 1), "{file}");
        assert_eq!(r.steps, q(-1, 1), "{file}");
        let rate = if file.starts_with("ema") {
            "beta"
        } else {
            "mu"
        };
        assert_eq!(exponent(&r, rate), q(0, 1), "{file}: {r:?}");
    }
}
