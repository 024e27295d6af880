//! The library as a user's program sees it: only the curated surface documented in
//! `src/lib.rs` (no `smelt::internals`, which `tests/architecture.rs` forbids here).
//!
//! Each check compares smelt with a fact that does not come from smelt: Li, Tai & E's
//! order-2 SME of SGD (stated here by hand), the linear scaling rule, the order of the
//! weak error on a linear-Gaussian problem computed exactly, a line and column counted
//! in the source text.

use smelt::experiment::verify;
use smelt::report::Status;
use std::collections::BTreeMap;

const SGD: &str =
    "optimizer SGD\n  param x\n  small eta\n  noise xi ~ general\n  x = x - eta*(grad f(x) + xi)\n";

#[test]
fn a_rule_is_checked_printed_back_and_derived() {
    let opt = smelt::check(SGD).expect("SGD checks");
    assert_eq!(opt.name, "SGD");
    // The canonical form is a rule that checks to the same IR.
    let again = smelt::check(&smelt::canonical(&opt)).expect("canonical form checks");
    assert_eq!(smelt::canonical(&again), smelt::canonical(&opt));

    // Li, Tai & E (2017, 2019): b = -∇f - (η/4)∇‖∇f‖² = -∇f - (η/2)∇²f∇f.
    let sme = smelt::derive_checked(&opt, &smelt::Options::order(2)).expect("derives");
    assert_eq!(sme.order, 2);
    let text = smelt::emit::text::render(&sme);
    assert!(text.contains("b_x = -∇f - (η/2) ∇²f ∇f"), "{text}");
    assert!(text.contains("= -∇(f + (η/4) ‖∇f‖²)"), "{text}");
    // Parsing and deriving in one call gives the same SME.
    assert_eq!(
        smelt::emit::text::render(&smelt::derive(SGD, &smelt::Options::order(2)).unwrap()),
        text
    );
    // Every format is reachable from the surface.
    assert!(smelt::emit::latex::render(&sme, false).contains("\\nabla"));
    assert!(smelt::emit::json::to_json(&sme).contains("\"order\""));

    // The independent certificate: the rule's own one-step moments against the SME's.
    let check = smelt::certify(&opt, &sme, 1);
    assert_eq!(check.order, 2);
    assert_eq!(
        check.verdict,
        smelt::sme::Verdict::Pass,
        "{:?}",
        check.verdict
    );
}

#[test]
fn bad_input_is_a_diagnostic_at_its_line_and_column() {
    let source = "optimizer Bad\n  param x\n  small eta\n  x = x - eta*grad g(x)\n";
    let err = smelt::check(source).expect_err("g is not the objective");
    let d = &err.diagnostics()[0];
    // The span points at `g` on line 4, column 19 (counted by hand).
    let line4 = source.lines().nth(3).unwrap();
    let col = line4.find("g(x)").unwrap() + 1;
    assert_eq!(&source[d.span.start..d.span.start + 1], "g");
    let shown = smelt::diagnostic::render(err.diagnostics(), "bad.opt", source);
    assert!(shown.contains(&format!("bad.opt:4:{col}")), "{shown}");
    // Too much input is refused before parsing, with the limit named.
    let huge = " ".repeat(smelt::MAX_SOURCE_BYTES + 1);
    assert!(smelt::check(&huge).is_err());
}

#[test]
fn sgd_follows_the_linear_scaling_rule() {
    use smelt::analysis::scaling::{rule, NoiseScale, Outcome};
    let opt = smelt::check(SGD).unwrap();
    let sme = smelt::derive_checked(&opt, &smelt::Options::order(1)).unwrap();
    let Outcome::Rule(r) = rule(&opt, &sme, &NoiseScale::Covariance).unwrap() else {
        panic!("SGD has a scaling rule")
    };
    // Goyal et al.'s linear scaling rule: η → κη.
    let eta = r.hypers.iter().find(|(h, _)| h == "eta").unwrap();
    assert_eq!(eta.1, num_rational::BigRational::from_integer(1.into()));
}

#[test]
fn verify_confirms_sgd_exactly_on_a_linear_gaussian_problem() {
    let problem = smelt::problem::load(
        "problem quadratic\n  dim 2\n  objective f(x) = 0.5*(1.5*x[1]^2 + 0.8*x[1]*x[2] + x[2]^2)\n  noise gaussian cov = [[0.6, 0.2], [0.2, 0.4]]\n  start x = [1, -0.5]\n  horizon 1\n  observe sq = sum(x^2)\n",
    )
    .expect("the problem loads");
    let rule = smelt::check(SGD).unwrap();
    let mut prepared =
        verify::prepare(rule, problem, &[1, 2], &BTreeMap::new()).expect("SGD binds to it");
    let etas: Vec<f64> = (3..=8).map(|k| 0.5f64.powi(k)).collect();
    let series = verify::exact(&mut prepared, &etas).expect("exact mode runs");
    assert_eq!(series.len(), 2);
    for s in &series {
        // The weak error of SGD's order-p SME is O(η^p): computed exactly, not sampled.
        assert_eq!(
            s.status,
            Status::Confirmed,
            "order {}: {}",
            s.order,
            s.verdict
        );
        let fit = s.fit.as_ref().expect("a fit");
        assert!((fit.slope - s.order as f64).abs() < 0.05, "{}", fit.slope);
    }
}

#[test]
fn an_sme_means_the_same_after_other_derivations() {
    // Adaptive SMEs hold elementwise functions (1/(σ√u + ε)); an Sme carries its own
    // table of them, so deriving another optimizer on the same thread must not change
    // how an earlier result prints or what its scaling rule is.
    use smelt::analysis::scaling::{rule, NoiseScale};
    let read = |f: &str| {
        std::fs::read_to_string(format!("{}/examples/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let adam = smelt::check(&read("adam.opt")).unwrap();
    let sme = smelt::derive_checked(&adam, &smelt::Options::order(1)).unwrap();
    let sigma = NoiseScale::Named("sigma".into());
    let text = smelt::emit::text::render(&sme);
    let scaling = format!("{:?}", rule(&adam, &sme, &sigma).unwrap());
    assert!(
        text.contains('√'),
        "Adam's SME has elementwise functions: {text}"
    );
    let json = smelt::emit::json::to_json(&sme);
    for other in ["rmsprop.opt", "adamw.opt", "sgd.opt"] {
        let o = smelt::check(&read(other)).unwrap();
        smelt::derive_checked(&o, &smelt::Options::order(2)).unwrap();
        assert_eq!(smelt::emit::text::render(&sme), text, "after {other}");
        assert_eq!(
            format!("{:?}", rule(&adam, &sme, &sigma).unwrap()),
            scaling,
            "after {other}"
        );
        // Read back from JSON on a thread that has derived something else since.
        let back = smelt::emit::json::from_json(&json).expect("reads back");
        assert_eq!(
            smelt::emit::text::render(&back),
            text,
            "read back after {other}"
        );
    }
}
