//! The independent certificate ([`smelt::internals::sim::certify`]) on every example, and on SMEs
//! broken on purpose.
//!
//! What makes the two sides independent: the optimizer's moments come from running the
//! update rule in the reference interpreter on a concrete random problem, and the SDE's
//! from the derived drift and diffusion compiled to scalar graphs and differentiated by
//! the graph; neither uses the derivation's series expansion. The broken SMEs below are
//! the mistakes smelt used to make (a spurious −(η/2)∇²f∇²f∇f in extragradient's drift,
//! `sqrt(m^2)` taken as `m`) and a wrong second-order coefficient: the check must reject
//! each with a residual power below `p + 1`.

#![allow(
    clippy::print_stderr,
    reason = "the test prints each example's figures for the log"
)]

use smelt::internals::algebra::tensor::{Atom, Kind, TExpr};
use smelt::internals::sim::certify::{check, Check, Verdict};
use smelt::{Options, Sme};

const SEED: u64 = 0x5EED_C4EC;

fn derive(source: &str, order: u32) -> (smelt::Optimizer, Sme) {
    let opt = smelt::check(source).expect("valid rule");
    let sme = smelt::derive_checked(&opt, &Options::order(order)).expect("derivable");
    (opt, sme)
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("example exists")
}

fn power(c: &Check, s: usize) -> f64 {
    c.moments[s - 1].power.unwrap_or(f64::NAN)
}

/// Every example at the orders that derive in well under a second passes, or is not run
/// for a stated reason (Malladi's Adam and RMSProp reach no weak order with general
/// noise: their order-1 condition on the third moment fails).
#[test]
fn every_example_passes() {
    let cases: &[(&str, &[u32])] = &[
        ("sgd.opt", &[1, 2, 3]),
        ("momentum.opt", &[1, 2, 3]),
        ("nesterov.opt", &[1, 2, 3]),
        ("rmsprop_ballistic.opt", &[1, 2]),
        ("adam_ballistic.opt", &[1, 2]),
        ("adam.opt", &[1]),
        ("adamw.opt", &[1]),
        ("rmsprop.opt", &[1]),
    ];
    for (file, orders) in cases {
        for &order in *orders {
            let (opt, sme) = derive(&example(file), order);
            let c = check(&opt, &sme, SEED);
            eprintln!("{file} order {order}: {}", c.summary());
            match &c.verdict {
                Verdict::Pass => {
                    for m in &c.moments {
                        let p = m.power.unwrap_or(f64::INFINITY);
                        assert!(p >= f64::from(sme.order + 1) - 0.25, "{file}: {p}");
                    }
                }
                Verdict::NotRun(why) => assert!(
                    sme.order == 0 && why.contains("no weak order"),
                    "{file} order {order}: not run: {why}"
                ),
                Verdict::Fail(why) => panic!("{file} order {order}: {why}"),
            }
        }
    }
}

/// SGD's order-2 SME with the η-term of its drift doubled: the first moments' residual
/// falls as τ², not τ³.
#[test]
fn a_wrong_second_order_drift_fails() {
    let (opt, mut sme) = derive(&example("sgd.opt"), 2);
    let eta = sme.small;
    sme.drift[0] = sme.drift[0].map_coef(|c| {
        if c.min_power(eta) == Some(1) {
            c.mul(&smelt::internals::algebra::poly::Poly::int(2))
        } else {
            c.clone()
        }
    });
    let c = check(&opt, &sme, SEED);
    assert!(c.failed(), "{}", c.summary());
    assert!(power(&c, 1) < 2.5, "{}", c.summary());
    assert!(c.summary().contains("FAILED"), "{}", c.summary());
}

const EXTRAGRADIENT: &str = "optimizer EG\n  param x\n  small h\n  time h^2\n  noise xi ~ gaussian\n  x = x - h^2*(grad f(x - h*grad f(x)) + xi)\n";

/// Stochastic extragradient: the derived SME passes at orders 2 and 3; with the
/// spurious −(h²/2) ∇²f ∇²f ∇f that the old expansion added, order 2 fails.
#[test]
fn extragradient_passes_and_its_old_mistake_fails() {
    for order in [2, 3] {
        let (opt, sme) = derive(EXTRAGRADIENT, order);
        let c = check(&opt, &sme, SEED);
        assert!(
            matches!(c.verdict, Verdict::Pass),
            "order {order}: {}",
            c.summary()
        );
    }
    let (opt, mut sme) = derive(EXTRAGRADIENT, 2);
    // −(h²/2) ∇²f[i,a] ∇²f[a,b] ∇f[b]
    let atoms = vec![
        Atom::new(Kind::DF(2), vec![0, 1]),
        Atom::new(Kind::DF(2), vec![1, 2]),
        Atom::new(Kind::DF(1), vec![2]),
    ];
    let coef = smelt::internals::algebra::poly::Poly::power(sme.small, 2)
        .scale(&smelt::internals::algebra::poly::rat(-1, 2));
    let spurious = TExpr::from_atoms(atoms, 1, coef, sme.dim);
    sme.drift[0] = sme.drift[0].add(&spurious);
    let c = check(&opt, &sme, SEED);
    assert!(c.failed(), "{}", c.summary());
    assert!(power(&c, 1) < 2.5, "{}", c.summary());
}

const SIGNED_STEP: &str = "optimizer AbsM\n  param x\n  state m\n  small eta\n  noise xi ~ general\n  m = m + eta*(grad f(x) + xi - m)\n  x = x - eta*m/sqrt(m^2 + eta)\n";

/// A rule whose step is m/|m| (a smoothed sign): the derived drift passes; the old
/// simplification `sqrt(m^2) = m` (drift −1 instead of −m/|m|) fails, because the
/// check draws m of both signs.
#[test]
fn the_root_of_a_square_is_checked_on_both_signs() {
    let (opt, sme) = derive(SIGNED_STEP, 2);
    let c = check(&opt, &sme, SEED);
    assert!(matches!(c.verdict, Verdict::Pass), "{}", c.summary());
    let (opt, mut sme) = derive(SIGNED_STEP, 2);
    fn strip(f: &smelt::internals::algebra::elem::FExpr) -> smelt::internals::algebra::elem::FExpr {
        use smelt::internals::algebra::elem::FExpr;
        match f {
            FExpr::Abs(a) => strip(a),
            FExpr::Sum(v) => FExpr::Sum(v.iter().map(strip).collect()),
            FExpr::Prod(v) => FExpr::Prod(v.iter().map(strip).collect()),
            FExpr::Pow(b, q) => FExpr::Pow(Box::new(strip(b)), q.clone()),
            FExpr::Exp(a) => FExpr::Exp(Box::new(strip(a))),
            FExpr::Log(a) => FExpr::Log(Box::new(strip(a))),
            other => other.clone(),
        }
    }
    let had_abs = sme
        .elem
        .functions
        .iter()
        .any(|f| format!("{f:?}").contains("Abs"));
    assert!(had_abs, "the derived SME reads |m|");
    for f in &mut sme.elem.functions {
        *f = strip(f);
    }
    let c = check(&opt, &sme, SEED);
    assert!(c.failed(), "{}", c.summary());
}

/// The result does not depend on the run: the same seed gives the same figures.
#[test]
fn the_check_is_reproducible() {
    let (opt, sme) = derive(&example("momentum.opt"), 2);
    assert_eq!(check(&opt, &sme, 7), check(&opt, &sme, 7));
}

/// The check travels in the JSON output and reads back to the same figures.
#[test]
fn the_check_round_trips_through_json() {
    let (opt, mut sme) = derive(&example("nesterov.opt"), 2);
    sme.independent = Some(check(&opt, &sme, SEED));
    let json = smelt::emit::json::to_json(&sme);
    assert!(json.contains("\"independent\""), "{json}");
    let back = smelt::emit::json::from_json(&json).expect("reads back");
    assert_eq!(back.independent, sme.independent);
    let text = smelt::emit::text::render(&sme);
    assert!(
        text.contains("independent check") && text.contains("passed"),
        "{text}"
    );
}
