//! Fast states (issue 19): a state that contracts at a fixed rate is eliminated, and the
//! SME of the slow states is derived from the reduced rule.
//!
//! What makes the two sides independent: each check compares the SME of a rule *with*
//! a fast state against the SME of a rule written without one, the published reduced
//! form (heavy ball with fixed μ is SGD with learning rate η/(1 − μ), shared/FORMULAS.md
//! §3.2, Kovachki & Stuart 2021; an EMA of the gradient with fixed β is SGD; Adam with a
//! fixed β₁ is RMSprop on the gradient). The second rule never goes through the
//! elimination, so a wrong classification, stationary value or noise weight shows as a
//! difference. `smelt verify` measures the weak error of the elimination itself
//! (README, *Fast states*).

use smelt::Options;

/// The drift and diffusion sections of the SME's text.
fn sme_body(source: &str) -> String {
    let sme =
        smelt::derive(source, &Options::order(1)).unwrap_or_else(|e| panic!("{source}\n{e:?}"));
    let text = smelt::emit::text::render(&sme);
    let start = text.find("\ndrift\n").expect("a drift section");
    let end = text.find("\nconditions\n").expect("a conditions section");
    text[start..end].to_string()
}

fn heavy_ball(mu: &str) -> String {
    format!(
        "optimizer HB\n param x\n state v\n small eta\n let mu = {mu}\n time eta\n noise xi ~ general\n v = mu*v - eta*(grad f(x) + xi)\n x = x + v\n"
    )
}

fn sgd(lr_factor: &str) -> String {
    format!(
        "optimizer SGD\n param x\n small eta\n time eta\n noise xi ~ general\n x = x - ({lr_factor})*eta*(grad f(x) + xi)\n"
    )
}

#[test]
fn heavy_ball_with_fixed_momentum_is_sgd_with_the_effective_learning_rate() {
    // 1/(1 − μ) for each μ, written out by hand; a negative μ oscillates but contracts.
    for (mu, factor) in [
        ("9/10", "10"),
        ("1/2", "2"),
        ("0", "1"),
        ("-1/2", "2/3"),
        ("99/100", "100"),
    ] {
        assert_eq!(
            sme_body(&heavy_ball(mu)),
            sme_body(&sgd(factor)),
            "heavy ball with mu = {mu}"
        );
    }
}

#[test]
fn nesterov_with_fixed_momentum_is_heavy_ball_at_order_one() {
    let nesterov = "optimizer NAG\n param x\n state v\n small eta\n let mu = 9/10\n time eta\n noise xi ~ general\n let y = x + mu*v\n v = mu*v - eta*(grad f(y) + xi(y))\n x = x + v\n";
    assert_eq!(sme_body(nesterov), sme_body(&sgd("10")));
    let file = std::fs::read_to_string("examples/nesterov_fixed.opt").unwrap();
    assert_eq!(sme_body(&file), sme_body(&sgd("10")));
    let file = std::fs::read_to_string("examples/heavy_ball_fixed.opt").unwrap();
    assert_eq!(sme_body(&file), sme_body(&sgd("10")));
}

#[test]
fn an_average_of_the_gradient_with_fixed_beta_is_sgd() {
    let file = std::fs::read_to_string("examples/ema_sgd_fixed.opt").unwrap();
    assert_eq!(sme_body(&file), sme_body(&sgd("1")));
    // The average read before its update (x moves by the old m) is the same at order 1.
    let old = "optimizer EMA\n param x\n state m\n small eta\n let beta = 3/4\n time eta\n noise xi ~ general\n x = x - eta*m\n m = beta*m + (1 - beta)*(grad f(x) + xi)\n";
    assert_eq!(sme_body(old), sme_body(&sgd("1")));
}

#[test]
fn adam_with_a_fixed_first_moment_average_is_rmsprop_on_the_gradient() {
    let adam = std::fs::read_to_string("examples/adam_fixed_beta1.opt").unwrap();
    let rmsprop = std::fs::read_to_string("examples/rmsprop.opt")
        .unwrap()
        .replace("hyper c, sigma0", "hyper c2, sigma0")
        .replace("1 - c*eta^2", "1 - c2*eta^2");
    assert_eq!(sme_body(&adam), sme_body(&rmsprop));
}

#[test]
fn the_sme_says_which_state_is_eliminated_and_what_it_assumes() {
    let file = std::fs::read_to_string("examples/heavy_ball_fixed.opt").unwrap();
    let sme = smelt::derive(&file, &Options::order(1)).unwrap();
    assert_eq!(sme.vars.len(), 1, "only x is a state of the SME");
    assert_eq!(sme.eliminated.len(), 1);
    assert_eq!(sme.eliminated[0].name, "v");
    assert_eq!(
        sme.eliminated[0].scale, 1,
        "v is of order eta on its slow manifold"
    );
    let text = smelt::emit::text::render(&sme);
    assert!(text.contains("`v` is fast"), "{text}");
    assert!(text.contains("|9/10| < 1"), "{text}");
    // The JSON document keeps it and reads back.
    let json = smelt::emit::json::to_json(&sme);
    assert!(json.contains("\"eliminated\""));
    let back = smelt::emit::json::from_json(&json).unwrap();
    assert_eq!(back.eliminated, sme.eliminated);
}

/// `fast v` and `slow v` decide where the detection should not: `slow` keeps a state
/// that would be eliminated (heavy ball with μ = 9/10 is then refused as O(1) per step,
/// the diagnostic of a rule without fast states), and `fast` on a state that does not
/// relax is refused at the declaration, naming it.
#[test]
fn declared_time_scales_override_the_detection() {
    let hb = |decl: &str, mu: &str| {
        format!("optimizer HB\n param x\n state v\n {decl}\n small eta\n let mu = {mu}\n time eta\n noise xi ~ general\n v = mu*v - eta*(grad f(x) + xi)\n x = x + v\n")
    };
    // `fast v` where it is detected anyway: the same SME.
    assert_eq!(sme_body(&hb("fast v", "9/10")), sme_body(&sgd("10")));
    let err = smelt::derive(&hb("slow v", "9/10"), &Options::order(1)).unwrap_err();
    assert!(format!("{err:?}").contains("does not vanish"), "{err:?}");
    let err = smelt::derive(&hb("fast v", "1"), &Options::order(1)).unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("`v` is declared fast"), "{text}");
    let err = smelt::check(&hb("fast x", "9/10")).unwrap_err();
    assert!(
        format!("{err:?}").contains("`fast x` names no state"),
        "{err:?}"
    );
    let err = smelt::check(&hb("fast v\n slow v", "9/10")).unwrap_err();
    assert!(
        format!("{err:?}").contains("a second time scale"),
        "{err:?}"
    );
}

/// Order 3 with a fast state is refused with a hint naming the state and the orders
/// that are derived.
#[test]
fn order_3_with_a_fast_state_is_refused() {
    let file = std::fs::read_to_string("examples/heavy_ball_fixed.opt").unwrap();
    let err = smelt::derive(&file, &Options::order(3)).unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("order 3 with the fast state `v`"), "{text}");
    assert!(text.contains("weak order 2 or less"), "{text}");
}

/// The independent check of a rule with a fast state: the SME against the numeric
/// one-step moments of the reduced rule (the variable the SME describes, with the fast
/// state eliminated), on a random quartic problem with a skewed noise law. It passes for
/// heavy ball and Nesterov at orders 1 and 2, and it can fail: heavy ball's order-2 SME
/// checked against Nesterov's rule (the same at order 1, −950η against −860η at order 2).
#[test]
fn the_independent_check_uses_the_reduced_rule_and_can_fail() {
    let load = |f: &str| std::fs::read_to_string(f).unwrap();
    let (hb, nag) = (
        load("examples/heavy_ball_fixed.opt"),
        load("examples/nesterov_fixed.opt"),
    );
    for src in [&hb, &nag] {
        let rule = smelt::check(src).unwrap();
        for order in [1, 2] {
            let sme = smelt::derive(src, &Options::order(order)).unwrap();
            let check = smelt::certify(&rule, &sme, 7);
            assert!(
                matches!(check.verdict, smelt::sme::Verdict::Pass),
                "order {order}: {:?}",
                check.verdict
            );
        }
    }
    let hb2 = smelt::derive(&hb, &Options::order(2)).unwrap();
    let check = smelt::certify(&smelt::check(&nag).unwrap(), &hb2, 7);
    assert!(
        matches!(check.verdict, smelt::sme::Verdict::Fail(_)),
        "{:?}",
        check.verdict
    );
}

/// Two fast states (an EMA of the gradient feeding a velocity, β = μ = 1/2) are
/// eliminated one after the other at order 1: the noise of one step reaches x with
/// total weight 1 · 1/(1 − μ) = 2, so the rule is SGD with learning rate 2η. Order 2 is
/// refused (tests/data/derive_fail/two_fast_states.opt): it treats every other state as
/// slow.
#[test]
fn two_fast_states_are_eliminated_at_order_one() {
    let rule = "optimizer TwoFast\n param x\n state m, v\n small eta\n let beta = 1/2\n let mu = 1/2\n time eta\n noise xi ~ general\n m = beta*m + (1 - beta)*(grad f(x) + xi)\n v = mu*v - eta*m\n x = x + v\n";
    assert_eq!(sme_body(rule), sme_body(&sgd("2")));
    let err = smelt::derive(rule, &Options::order(2)).unwrap_err();
    assert!(format!("{err:?}").contains("two fast states"), "{err:?}");
}
