//! Derivations of the examples, checked against the published formulas
//! (shared/FORMULAS.md, cited per test) and pinned as text snapshots.

use num_rational::BigRational;
use smelt::internals::algebra::poly::Poly;
use smelt::internals::algebra::tensor::{Atom, Kind, TExpr};
use smelt::{Options, Sme};

fn derive(file: &str, order: u32) -> Sme {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap();
    derive_source(&source, order)
}

fn derive_source(source: &str, order: u32) -> Sme {
    smelt::derive(source, &Options::order(order)).unwrap_or_else(|e| panic!("{e:?}"))
}

fn gaussian(file: &str) -> String {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .replace("~ general", "~ gaussian")
}

fn r(n: i64, d: i64) -> BigRational {
    BigRational::new(n.into(), d.into())
}

/// A term `c · small^k · Π atoms` with `free` output indices.
fn term(sme: &Sme, free: u8, c: BigRational, small_power: i32, atoms: &[(Kind, &[u8])]) -> TExpr {
    let coef = Poly::constant(c).shift(sme.small, small_power);
    let atoms = atoms
        .iter()
        .map(|(k, idx)| Atom::new(*k, idx.to_vec()))
        .collect();
    TExpr::from_atoms(atoms, free, coef, sme.dim)
}

fn sum(terms: Vec<TExpr>) -> TExpr {
    terms
        .into_iter()
        .reduce(|a, b| a.add(&b))
        .expect("at least one term")
}

fn with_hyper(sme: &Sme, e: TExpr, name: &str, power: i32) -> TExpr {
    let s = sme.symbols.get(name).unwrap();
    e.map_coef(|c| c.shift(s, power))
}

const G: Kind = Kind::DF(1);
const H: Kind = Kind::DF(2);
const T3: Kind = Kind::DF(3);
const SIGMA: Kind = Kind::Moment { r: 2, d: 0 };
const DSIGMA: Kind = Kind::Moment { r: 2, d: 1 };

#[test]
fn sgd_order_1_is_gradient_flow_with_the_leading_noise() {
    // FORMULAS.md §2, SME-1 (Li, Tai & E): dX = -∇f dt + sqrt(η) Σ^{1/2} dW.
    let sme = derive("sgd.opt", 1);
    assert_eq!(sme.order, 1);
    assert_eq!(sme.drift[0], term(&sme, 1, r(-1, 1), 0, &[(G, &[0])]));
    assert_eq!(
        sme.diffusion[0].expr,
        term(&sme, 2, r(1, 1), 1, &[(SIGMA, &[0, 1])])
    );
    // order 1 does not constrain the diffusion; the one shown is what order 2 forces
    assert!(sme.diffusion_from_next_order);
}

#[test]
fn sgd_order_2_matches_li_tai_e() {
    // FORMULAS.md §2, SME-2: b = -∇(f + (η/4)|∇f|²) = -∇f - (η/2) ∇²f ∇f, D = η Σ.
    let sme = derive("sgd.opt", 2);
    assert_eq!(sme.order, 2);
    let want = sum(vec![
        term(&sme, 1, r(-1, 1), 0, &[(G, &[0])]),
        term(&sme, 1, r(-1, 2), 1, &[(H, &[0, 1]), (G, &[1])]),
    ]);
    assert_eq!(sme.drift[0], want);
    assert_eq!(
        sme.diffusion[0].expr,
        term(&sme, 2, r(1, 1), 1, &[(SIGMA, &[0, 1])])
    );
    assert!(sme.conditions.is_empty());
}

#[test]
fn sgd_order_3_needs_a_vanishing_third_moment() {
    // FORMULAS.md §9 step 6 and DESIGN.md §1.4: order 3 needs S = 0.
    let sme = derive("sgd.opt", 3);
    assert_eq!(sme.order, 2, "skewed noise caps the order at 2");
    assert_eq!(sme.conditions.len(), 1);
    let c = &sme.conditions[0];
    assert_eq!(
        (c.vars.clone(), c.power, c.needed_for_order),
        (vec![0, 0, 0], 3, 3)
    );
    let s = Kind::Moment { r: 3, d: 0 };
    assert_eq!(c.residual, term(&sme, 3, r(-1, 1), 0, &[(s, &[0, 1, 2])]));
}

#[test]
fn sgd_order_3_with_gaussian_noise() {
    // The baseline's sgd3 in d dimensions (shared/baselines/README.md, 1-D:
    // -f' - (η/2) f'f'' - (η²/12)(4 f'f''² + f'²f''' - 3 s f'''), σ² = η s + η²(s f'' + f's'/2)),
    // and the quadratic check of FORMULAS.md §9: b₂ = -(1/3) H² ∇f, a₁ = (HΣ + ΣH)/2.
    let sme = derive_source(&gaussian("sgd.opt"), 3);
    assert_eq!(sme.order, 3);
    let want = sum(vec![
        term(&sme, 1, r(-1, 1), 0, &[(G, &[0])]),
        term(&sme, 1, r(-1, 2), 1, &[(H, &[0, 1]), (G, &[1])]),
        term(
            &sme,
            1,
            r(-1, 3),
            2,
            &[(H, &[0, 1]), (H, &[1, 2]), (G, &[2])],
        ),
        term(
            &sme,
            1,
            r(-1, 12),
            2,
            &[(T3, &[0, 1, 2]), (G, &[1]), (G, &[2])],
        ),
        term(&sme, 1, r(1, 4), 2, &[(T3, &[0, 1, 2]), (SIGMA, &[1, 2])]),
    ]);
    assert_eq!(sme.drift[0], want);
    let want = sum(vec![
        term(&sme, 2, r(1, 1), 1, &[(SIGMA, &[0, 1])]),
        term(&sme, 2, r(1, 2), 2, &[(H, &[0, 2]), (SIGMA, &[2, 1])]),
        term(&sme, 2, r(1, 2), 2, &[(SIGMA, &[0, 2]), (H, &[2, 1])]),
        term(&sme, 2, r(1, 2), 2, &[(DSIGMA, &[0, 1, 2]), (G, &[2])]),
    ]);
    assert_eq!(sme.diffusion[0].expr, want);
}

#[test]
fn heavy_ball_order_2_matches_the_step_h_form() {
    // FORMULAS.md §3.1: b₀ = (v, -(λv + ∇f)), b₁ = (-(λv + ∇f)/2, Hv/2 - λ(λv + ∇f)/2),
    // D_vv = h Σ; the baseline's mom2 agrees in 1-D.
    let sme = derive("momentum.opt", 2);
    assert_eq!(sme.order, 2);
    let v = Kind::State(1);
    let bx = sum(vec![
        term(&sme, 1, r(1, 1), 0, &[(v, &[0])]),
        with_hyper(&sme, term(&sme, 1, r(-1, 2), 1, &[(v, &[0])]), "lambda", 1),
        term(&sme, 1, r(-1, 2), 1, &[(G, &[0])]),
    ]);
    assert_eq!(sme.drift[0], bx);
    let bv = sum(vec![
        with_hyper(&sme, term(&sme, 1, r(-1, 1), 0, &[(v, &[0])]), "lambda", 1),
        term(&sme, 1, r(-1, 1), 0, &[(G, &[0])]),
        term(&sme, 1, r(1, 2), 1, &[(H, &[0, 1]), (v, &[1])]),
        with_hyper(&sme, term(&sme, 1, r(-1, 2), 1, &[(v, &[0])]), "lambda", 2),
        with_hyper(&sme, term(&sme, 1, r(-1, 2), 1, &[(G, &[0])]), "lambda", 1),
    ]);
    assert_eq!(sme.drift[1], bv);
    let dvv = sme
        .diffusion
        .iter()
        .find(|d| (d.rows, d.cols) == (1, 1))
        .unwrap();
    assert_eq!(dvv.expr, term(&sme, 2, r(1, 1), 1, &[(SIGMA, &[0, 1])]));
    for d in sme.diffusion.iter().filter(|d| (d.rows, d.cols) != (1, 1)) {
        assert!(d.expr.is_zero(), "only the velocity is noisy at this order");
    }
}

#[test]
fn nesterov_differs_from_heavy_ball_by_the_look_ahead() {
    // FORMULAS.md §3.3: the look-ahead turns +Hv/2 into -Hv/2 in b₁ of the velocity.
    let hb = derive("momentum.opt", 2);
    let nag = derive("nesterov.opt", 2);
    assert_eq!(nag.drift[0], hb.drift[0]);
    let v = Kind::State(1);
    let diff = nag.drift[1].sub(&hb.drift[1]);
    assert_eq!(diff, term(&nag, 1, r(-1, 1), 1, &[(H, &[0, 1]), (v, &[1])]));
    // At order 1 both are the same underdamped Langevin equation.
    assert_eq!(
        derive("nesterov.opt", 1).drift,
        derive("momentum.opt", 1).drift
    );
}

#[test]
fn certificates_cover_every_matched_moment() {
    for (file, order) in [
        ("sgd.opt", 1),
        ("sgd.opt", 2),
        ("momentum.opt", 2),
        ("nesterov.opt", 2),
    ] {
        let sme = derive(file, order);
        let q = sme.time_power;
        let through = (order as i32 + 1) * q - 1;
        assert!(!sme.certificate.is_empty());
        for r in &sme.certificate {
            assert_eq!(
                r.matched_through, through,
                "{file} order {order}: {:?}",
                r.vars
            );
        }
    }
}

#[test]
fn text_snapshots() {
    let cases: Vec<(&str, String, u32)> = vec![
        (
            "sgd_1",
            std::fs::read_to_string("examples/sgd.opt").unwrap(),
            1,
        ),
        (
            "sgd_2",
            std::fs::read_to_string("examples/sgd.opt").unwrap(),
            2,
        ),
        (
            "sgd_3",
            std::fs::read_to_string("examples/sgd.opt").unwrap(),
            3,
        ),
        ("sgd_gaussian_3", gaussian("sgd.opt"), 3),
        (
            "momentum_1",
            std::fs::read_to_string("examples/momentum.opt").unwrap(),
            1,
        ),
        (
            "momentum_2",
            std::fs::read_to_string("examples/momentum.opt").unwrap(),
            2,
        ),
        (
            "nesterov_1",
            std::fs::read_to_string("examples/nesterov.opt").unwrap(),
            1,
        ),
        (
            "nesterov_2",
            std::fs::read_to_string("examples/nesterov.opt").unwrap(),
            2,
        ),
    ];
    for (name, source, order) in cases {
        let sme = derive_source(&source, order);
        insta::assert_snapshot!(name, smelt::emit::text::render(&sme));
    }
}

#[test]
fn derivation_diagnostics() {
    insta::glob!("data/derive_fail/*.opt", |path| {
        let source = std::fs::read_to_string(path).unwrap();
        let err = smelt::derive(&source, &Options::order(2)).expect_err("must fail");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        insta::assert_snapshot!(smelt::diagnostic::render(err.diagnostics(), &name, &source));
    });
}

#[test]
fn component_snapshots() {
    for (name, file, order, d) in [
        ("sgd_2_dim2", "sgd.opt", 2, 2),
        ("momentum_2_dim2", "momentum.opt", 2, 2),
    ] {
        let sme = derive(file, order);
        insta::assert_snapshot!(name, smelt::emit::text::render_components(&sme, d));
    }
}

/// A root of a constant that tends to a positive number is algebraic, not
/// transcendental: it is expanded as a binomial series in the small parameter, and an
/// irrational leading root (`sqrt(2)`) is kept as an opaque constant.
#[test]
fn roots_of_constants_are_binomial_series() {
    let sgd = |c: &str| {
        format!("optimizer S\n param x\n small eta\n noise xi ~ general\n x = x - eta*{c}*(grad f(x) + xi)\n")
    };
    let text = |c: &str, order: u32| smelt::emit::text::render(&derive_source(&sgd(c), order));
    // sqrt(4 − η²) = 2 − η²/4 + O(η⁴); (8 + 12η)^(2/3) = 4 + 4η − η² + O(η³).
    for order in [1, 2, 3] {
        assert_eq!(text("sqrt(4 - eta^2)", order), text("(2 - eta^2/4)", order));
    }
    assert_eq!(
        text("(8 + 12*eta)^(2/3)", 2),
        text("(4 + 4*eta - eta^2)", 2)
    );
    let root2 = text("sqrt(2 - eta^2)", 2);
    assert!(root2.contains("sqrt(2)"), "{root2}");
    // A root of a constant that is negative at leading order is refused, with why.
    let err = smelt::derive(&sgd("sqrt(eta^2 - 2)"), &Options::order(2)).unwrap_err();
    let d = &err.diagnostics()[0];
    assert!(
        d.message.contains("leading term is negative"),
        "{}",
        d.message
    );
}

/// A derivation beyond `max_terms` stops with an error that names the limit and how to
/// raise it; the progress callback is told how far a derivation is.
#[test]
fn limits_and_progress() {
    let path = format!("{}/examples/adam.opt", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap();
    let options = Options {
        max_terms: 50,
        ..Options::order(3)
    };
    let started = std::time::Instant::now();
    let err = smelt::derive(&source, &options).expect_err("beyond the limit");
    assert!(started.elapsed().as_secs() < 10);
    let d = &err.diagnostics()[0];
    assert_eq!(d.code, smelt::Code::TooLarge);
    assert!(d.message.contains("50 terms"), "{}", d.message);
    assert!(format!("{d:?}").contains("--max-terms"), "{d:?}");

    let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = steps.clone();
    let options = Options {
        progress: Some(smelt::Progress(std::sync::Arc::new(move |s| {
            seen.lock().unwrap().push(s.clone());
        }))),
        ..Options::order(3)
    };
    let sme = smelt::derive(&source, &options).expect("derives");
    assert_eq!(
        sme.order, 0,
        "Malladi's Adam with general noise fails at order 1"
    );
    let steps = steps.lock().unwrap();
    assert!(!steps.is_empty());
    assert!(steps.iter().all(|s| s.done < s.total), "{steps:?}");
    // Order 1 fails, so the conditions of order 2 are derived and those of order 3 not.
    assert!(sme.conditions.iter().all(|c| c.needed_for_order <= 2));
    assert!(sme.notes.iter().any(|n| n.contains("were not derived")));
}

/// A learning rate with a rational factor in front of the small parameter, `(2/3)*eta`,
/// lowers to `2η/3`; its lower bound in ε was taken from an expansion through ε⁰, where
/// it truncates to zero, and the gradient behind it was dropped (the rule was refused as
/// having the wrong time scale, or, with the noise written apart, given a zero drift).
/// The SME here is written by hand: E Δx = −(2/3)η∇f, Cov Δx = (4/9)η²Σ.
#[test]
fn a_rational_factor_in_the_learning_rate_keeps_the_gradient() {
    for rule in [
        "x = x - (2/3)*eta*(grad f(x) + xi)",
        "x = x - 2/3*eta*grad f(x) - (2/3)*eta*xi",
        "x = x - eta/3*(2*grad f(x) + 2*xi)",
    ] {
        let source = format!(
            "optimizer SGD\n param x\n small eta\n time eta\n noise xi ~ general\n {rule}\n"
        );
        let text = smelt::emit::text::render(&derive_source(&source, 1));
        assert!(text.contains("b_x = -(2/3) ∇f"), "{rule}:\n{text}");
        assert!(text.contains("D_xx = (4η/9) Σ"), "{rule}:\n{text}");
    }
}
