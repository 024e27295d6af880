//! Non-smooth maps in update rules (`sign`, `abs`, `relu`, `min`, `max`, `clip`) and
//! noise samples with laws of their own.
//!
//! What makes the checks independent of the derivation:
//! - the independent certificate runs the update rule itself in the reference
//!   interpreter (the real `sign`, the real `clip`) on a random problem and compares its
//!   one-step moments with those of the derived SDE, compiled and differentiated by the
//!   numeric graph;
//! - the Gaussian averages of kinks are checked in `src/derive/kink.rs` against
//!   Gauss–Legendre quadrature split at the kinks, and `src/numeric/gauss.rs` against
//!   Monte Carlo and mpmath values;
//! - the identities behind `relu`, `min`, `max`, `clip` are evaluated here on both sides
//!   of every kink, at it, and at equal arguments.

use smelt::internals::sim::certify::{check, Verdict};
use smelt::{Options, Sme};

fn derive(source: &str, order: u32) -> (smelt::Optimizer, Sme) {
    let opt = smelt::check(source).unwrap_or_else(|e| panic!("{e:?}"));
    let sme = smelt::derive(source, &Options::order(order)).unwrap_or_else(|e| panic!("{e:?}"));
    (opt, sme)
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn text(sme: &Sme) -> String {
    smelt::emit::text::render(sme)
}

/// Signum with slow momentum: the sign is expanded away from its kink; the rule's own
/// moments (the interpreter runs the real sign) agree with the SDE's to order 2.
#[test]
fn signum_with_slow_momentum_is_expanded_away_from_the_kink() {
    for order in [1, 2] {
        let (opt, sme) = derive(&example("signum.opt"), order);
        assert_eq!(sme.order, order);
        let shown = text(&sme);
        assert!(shown.contains("b_x = -sign(m)"), "{shown}");
        assert!(
            sme.notes.iter().any(|n| n.contains("away from its kink")),
            "{:?}",
            sme.notes
        );
        let c = check(&opt, &sme, 7);
        assert_eq!(c.verdict, Verdict::Pass, "order {order}: {}", c.summary());
    }
}

/// relu, min, max and clip of deterministic quantities (clipped gradient descent with
/// small noise outside the map): the independent certificate at orders 1 and 2.
#[test]
fn clip_relu_min_max_of_the_gradient_pass_the_independent_check() {
    for body in [
        "x = x - eta*clip(grad f(x), -c, c) - eta*xi",
        "x = x - eta*(relu(grad f(x)) - relu(-grad f(x)) + xi)",
        "x = x - eta*(max(grad f(x), -c) + min(grad f(x), c) - grad f(x) + xi)",
        "x = x - eta*(abs(grad f(x) + c) - abs(grad f(x) - c) + xi)/2",
    ] {
        let source = format!(
            "optimizer Kinked\n  param x\n  small eta\n  hyper c > 0\n  time eta\n  noise xi ~ gaussian\n  {body}\n"
        );
        for order in [1, 2] {
            let (opt, sme) = derive(&source, order);
            assert_eq!(sme.order, order, "{body}");
            let c = check(&opt, &sme, 11);
            assert_eq!(
                c.verdict,
                Verdict::Pass,
                "{body} order {order}: {}",
                c.summary()
            );
        }
    }
}

/// The identities the derivation writes `relu`, `min`, `max` and `clip` with, on both
/// sides of every kink, at it, and at equal arguments.
#[test]
fn piecewise_identities_hold_on_both_sides_of_every_kink() {
    let relu = |u: f64| (u + u.abs()) / 2.0;
    let max = |a: f64, b: f64| (a + b + (a - b).abs()) / 2.0;
    let min = |a: f64, b: f64| (a + b - (a - b).abs()) / 2.0;
    let clip = |v: f64, lo: f64, hi: f64| (lo + hi + (v - lo).abs() - (v - hi).abs()) / 2.0;
    // Exact in the reals; in floating point within a few ulps of the largest argument.
    let close = |x: f64, y: f64, scale: f64| (x - y).abs() <= 4.0 * f64::EPSILON * scale;
    let points = [-3.0, -1.0, -0.7, -1e-300, 0.0, 1e-300, 0.3, 1.0, 3.0];
    for &a in &points {
        assert_eq!(relu(a), a.max(0.0), "relu({a})");
        for &b in &points {
            let s = a.abs() + b.abs();
            assert!(close(max(a, b), a.max(b), s), "max({a}, {b})");
            assert!(close(min(a, b), a.min(b), s), "min({a}, {b})");
            for &c in &points {
                if b <= c {
                    let s = s + c.abs();
                    assert!(
                        close(clip(a, b, c), a.max(b).min(c), s),
                        "clip({a}, {b}, {c})"
                    );
                }
            }
        }
    }
}

fn refusal(body: &str, noise: &str) -> String {
    let source = format!(
        "optimizer Bad\n  param x\n  small eta\n  time eta\n  noise xi ~ {noise}\n  {body}\n"
    );
    match smelt::derive(&source, &Options::order(1)) {
        Ok(sme) => panic!("{body}: derived\n{}", text(&sme)),
        Err(e) => {
            let shown = smelt::diagnostic::render(e.diagnostics(), "bad.opt", &source);
            assert!(shown.contains("bad.opt:6:3"), "{shown}");
            assert!(shown.contains("hint"), "{shown}");
            shown
        }
    }
}

/// Refusals say why and what to write instead, at the statement.
#[test]
fn kinks_of_noise_that_smelt_cannot_average_are_refused_with_a_hint() {
    let general = refusal("x = x - eta*sign(grad f(x) + xi)", "general");
    assert!(general.contains("declare the sample Gaussian"), "{general}");
    let mixed = refusal("x = x - eta*sign(hess f(x) @ xi)", "gaussian");
    assert!(mixed.contains("componentwise"), "{mixed}");
    let norm = refusal(
        "x = x - eta*(grad f(x) + xi)/norm(grad f(x) + xi)",
        "gaussian",
    );
    assert!(norm.contains("norm"), "{norm}");
}
