//! Adaptive methods in the scaling of Malladi, Lyu, Panigrahi & Arora (NeurIPS 2022),
//! checked against their SDEs as restated in shared/FORMULAS.md §6.2 (RMSprop) and §6.3
//! (Adam), by evaluating the derived coefficients in one dimension at random points.

use smelt::internals::algebra::poly::Sym;
use smelt::internals::algebra::tensor::{Kind, TExpr};
use smelt::{Options, Sme};

fn derive(file: &str, order: u32, gaussian: bool) -> Sme {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut source = std::fs::read_to_string(path).unwrap();
    if gaussian {
        source = source.replace("~ general", "~ gaussian");
    }
    smelt::derive(&source, &Options::order(order)).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Values at one point in d = 1: state variables, symbols, and f's derivatives, Σ, S.
struct Point<'a> {
    state: &'a [(&'a str, f64)],
    syms: &'a [(&'a str, f64)],
    grad: [f64; 4],
    sigma: f64,
    skew: f64,
}

fn eval1d(sme: &Sme, e: &TExpr, p: &Point) -> f64 {
    let var = |v: u8| {
        let name = &sme.vars[v as usize].name;
        p.state
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, x)| *x)
            .unwrap_or_else(|| panic!("no value for {name}"))
    };
    let sym = |s: Sym| {
        let name = sme.symbols.name(s);
        if name == "d" {
            return 1.0;
        }
        p.syms
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, x)| *x)
            .unwrap_or_else(|| panic!("no value for {name}"))
    };
    let mut total = 0.0;
    for (t, c) in &e.terms {
        let mut v = c.eval(&sym);
        for a in &t.atoms {
            v *= match a.kind {
                Kind::DF(k) => p.grad[k as usize],
                Kind::Moment { r: 2, d: 0 } => p.sigma,
                Kind::Moment { r: 3, d: 0 } => p.skew,
                Kind::Moment { r: 2, d: 1 } => 0.0, // constant Σ in these checks
                Kind::State(s) => var(s),
                Kind::Elem(id) => sme.elem.get(id).eval(&var, &sym),
                Kind::One | Kind::Delta => 1.0,
                other => panic!("unexpected factor {other:?}"),
            };
        }
        total += v;
    }
    total
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-10 * (1.0 + a.abs().max(b.abs()))
}

fn block(sme: &Sme, a: usize, c: usize) -> &TExpr {
    &sme.diffusion
        .iter()
        .find(|d| (d.rows, d.cols) == (a, c))
        .unwrap()
        .expr
}

const POINTS: &[(f64, f64, f64, f64)] = &[
    (0.7, 0.3, 1.3, 0.4),
    (1.9, -0.8, 0.5, 2.2),
    (0.2, 1.1, 0.9, 0.05),
];

#[test]
fn rmsprop_matches_malladi_et_al() {
    // §6.2: dθ = -P⁻¹(∇f dt + σ0 Σ^{1/2} dW), du = c(diag Σ - u) dt, P = σ0 √u + ε0.
    let sme = derive("rmsprop.opt", 1, true);
    assert_eq!(sme.order, 1);
    assert!(sme.conditions.is_empty());
    let (c, s0, e0) = (0.8, 1.7, 0.3);
    for &(u, g, sigma, eta) in POINTS {
        let p = Point {
            state: &[("u", u)],
            syms: &[("c", c), ("sigma0", s0), ("eps0", e0), ("eta", eta)],
            grad: [0.0, g, 0.0, 0.0],
            sigma,
            skew: 0.0,
        };
        let pinv = 1.0 / (s0 * u.sqrt() + e0);
        assert!(close(eval1d(&sme, &sme.drift[0], &p), -pinv * g));
        assert!(close(eval1d(&sme, &sme.drift[1], &p), c * (sigma - u)));
        assert!(close(
            eval1d(&sme, block(&sme, 0, 0), &p),
            s0 * s0 * pinv * pinv * sigma
        ));
        assert!(
            block(&sme, 0, 1).is_zero() && block(&sme, 1, 1).is_zero(),
            "u is deterministic at order 1"
        );
    }
}

#[test]
fn rmsprop_needs_low_skewness() {
    // With general noise the third moment of Δθ is O(η³) = O(τ^{3/2}) and must match:
    // Malladi et al.'s low-skewness condition, found by the derivation.
    let sme = derive("rmsprop.opt", 1, false);
    assert_eq!(sme.order, 0);
    let c = &sme.conditions[0];
    assert_eq!(
        (c.vars.clone(), c.power, c.needed_for_order),
        (vec![0, 0, 0], 3, 1)
    );
    assert!(c.residual.terms.keys().all(|t| t
        .atoms
        .iter()
        .any(|a| a.kind == Kind::Moment { r: 3, d: 0 })));
}

#[test]
fn adam_matches_malladi_et_al() {
    // §6.3: dθ = -(√γ2/γ1) P⁻¹ m dt, dm = c1(∇f - m) dt + σ0 c1 Σ^{1/2} dW,
    // du = c2(diag Σ - u) dt, P = σ0 √u + ε0 √γ2, γi = 1 - exp(-ci t).
    for file in ["adam.opt", "adamw.opt"] {
        let sme = derive(file, 1, true);
        assert_eq!(sme.order, 1, "{file}");
        let clock = sme.clock.expect("the rule reads the step counter");
        let (c1, c2, s0, e0, l0) = (0.8, 1.9, 1.7, 0.3, 0.45);
        for &(u, g, sigma, t) in POINTS {
            let (m, x) = (g * 0.6 - 0.1, 0.35);
            let p = Point {
                state: &[("u", u), ("m", m), ("t", t.abs() + 0.1), ("x", x)],
                syms: &[
                    ("c1", c1),
                    ("c2", c2),
                    ("sigma0", s0),
                    ("eps0", e0),
                    ("eta", 0.1),
                    ("lambda0", l0),
                ],
                grad: [0.0, g, 0.0, 0.0],
                sigma,
                skew: 0.0,
            };
            let t = t.abs() + 0.1;
            let (g1, g2) = (1.0 - (-c1 * t).exp(), 1.0 - (-c2 * t).exp());
            let decay = if file == "adamw.opt" { -l0 * x } else { 0.0 };
            let want = -(g2.sqrt() / g1) * m / (s0 * u.sqrt() + e0 * g2.sqrt()) + decay;
            assert!(close(eval1d(&sme, &sme.drift[0], &p), want), "{file}");
            assert!(close(eval1d(&sme, &sme.drift[1], &p), c1 * (g - m)));
            assert!(close(eval1d(&sme, &sme.drift[2], &p), c2 * (sigma - u)));
            assert!(close(eval1d(&sme, &sme.drift[clock], &p), 1.0));
            assert!(close(
                eval1d(&sme, block(&sme, 1, 1), &p),
                c1 * c1 * s0 * s0 * sigma
            ));
            for d in &sme.diffusion {
                if (d.rows, d.cols) != (1, 1) {
                    assert!(d.expr.is_zero(), "only m is noisy at order 1");
                }
            }
        }
    }
}

#[test]
fn adaptive_text_snapshots() {
    for (file, gaussian) in [
        ("rmsprop.opt", true),
        ("rmsprop.opt", false),
        ("adam.opt", true),
        ("adamw.opt", true),
    ] {
        let name = format!(
            "{}_{}",
            file.trim_end_matches(".opt"),
            if gaussian { "gaussian" } else { "general" }
        );
        insta::assert_snapshot!(name, smelt::emit::text::render(&derive(file, 1, gaussian)));
    }
}

#[test]
fn rmsprop_ballistic_order_2_matches_callisti_et_al() {
    // shared/FORMULAS.md §7.1 with the exact ∂_v(1/(√v + ε)) (§7.4) and the v-noise M22 of
    // §7.4 item 1, in d = 1 with constant Σ = s:
    //   b_x = -d g + τ(-d² h g/2 + c (g² + s - v) g d'/2),  d = 1/(√v + ε), d' = -1/(2√v (√v + ε)²)
    //   b_v = c(g² + s - v) + τ(c d g² h + c² (g² + s - v)/2)
    //   D_xx = τ d² s,  D_xv = -2cτ d s g,  D_vv = 2c²τ(2 g² s + s²)
    let sme = derive("rmsprop_ballistic.opt", 2, true);
    assert_eq!(sme.order, 2);
    let (c, eps) = (0.7, 0.2);
    for &(v, g, s, tau) in POINTS {
        let h = 1.3 * g - 0.4;
        let p = Point {
            state: &[("v", v)],
            syms: &[("c", c), ("eps", eps), ("tau", tau)],
            grad: [0.0, g, h, 0.0],
            sigma: s,
            skew: 0.0,
        };
        let d = 1.0 / (v.sqrt() + eps);
        let dd = -1.0 / (2.0 * v.sqrt() * (v.sqrt() + eps).powi(2));
        let r = g * g + s - v;
        let bx = -d * g + tau * (-d * d * h * g / 2.0 + c * r * g * dd / 2.0);
        let bv = c * r + tau * (c * d * g * g * h + c * c * r / 2.0);
        assert!(close(eval1d(&sme, &sme.drift[0], &p), bx));
        assert!(close(eval1d(&sme, &sme.drift[1], &p), bv));
        assert!(close(eval1d(&sme, block(&sme, 0, 0), &p), tau * d * d * s));
        assert!(close(
            eval1d(&sme, block(&sme, 0, 1), &p),
            -2.0 * c * tau * d * s * g
        ));
        assert!(close(
            eval1d(&sme, block(&sme, 1, 1), &p),
            2.0 * c * c * tau * (2.0 * g * g * s + s * s)
        ));
    }
}
