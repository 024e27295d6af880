//! SVAG (Li, Malladi & Arora, NeurIPS 2021; shared/FORMULAS.md §5), `examples/svag.opt`:
//! two independent minibatches per step, amplified so that the update's covariance is
//! l Σ at step η/l. Two facts from the paper, checked against smelt:
//!
//! 1. Its SME is SGD's first-order SME at learning rate η, `dX = −∇f dt + √η Σ^{1/2} dW`,
//!    whatever l: here smelt derives it from the rule and compiles it on a problem with
//!    state-dependent correlated noise, and its b and D are compared with the paper's
//!    formula evaluated from the problem's f and Σ written out by hand in this test.
//! 2. SVAG tracks that SDE weakly to order 1 in 1/l (= 2u², so the time per step τ =
//!    2ηu² is ∝ 1/l): `verify` simulates the rule (two noise draws a step) and the SDE (one
//!    Brownian increment) and fits the slope against τ. The sides are independent in
//!    what matters: the rule's paths never see Σ^{1/2}, only the two draws.

use smelt::experiment::verify;
use std::collections::BTreeMap;

fn load(problem: &str) -> verify::Prepared {
    let rule = smelt::check(&std::fs::read_to_string("examples/svag.opt").unwrap()).unwrap();
    let text = std::fs::read_to_string(problem).unwrap();
    let p = smelt::problem::load(&text).unwrap();
    let set: BTreeMap<String, f64> = [("eta".to_string(), 0.3)].into();
    verify::prepare(rule, p, &[1], &set).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn svag_has_sgds_first_order_sme_at_its_learning_rate() {
    let mut p = load("examples/problems/double_well_2d.prob");
    let eta = 0.3;
    for (x1, x2) in [(0.5, 0.5), (-1.2, 0.3), (0.0, -2.0)] {
        // Any u: the SME does not depend on l.
        for s in [0.5, 0.125] {
            let (b, d) = verify::coefficients(&mut p, 0, s, &[x1, x2]).unwrap();
            // f = Σ (x⁴/4 − x²/2) + 0.2 x1 x2; Σ = [[0.5 + 0.1 x2², 0.1], [0.1, 0.4]].
            let grad = [x1 * x1 * x1 - x1 + 0.2 * x2, x2 * x2 * x2 - x2 + 0.2 * x1];
            let sigma = [0.5 + 0.1 * x2 * x2, 0.1, 0.1, 0.4];
            for i in 0..2 {
                assert!(
                    (b[i] + grad[i]).abs() < 1e-12,
                    "b at ({x1}, {x2}), s = {s}: {b:?}"
                );
            }
            for k in 0..4 {
                assert!(
                    (d[k] - eta * sigma[k]).abs() < 1e-12,
                    "D at ({x1}, {x2}), s = {s}: {d:?}"
                );
            }
        }
    }
}

#[test]
fn svag_converges_to_the_sde_with_order_one_in_one_over_l() {
    // The double well with Gaussian noise: the rule's two draws and the SDE's increment
    // are coupled, so the slope resolves with few paths. l = 2, 8, 32, 128.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args([
            "verify",
            "examples/svag.opt",
            "--problem",
            "examples/problems/double_well.prob",
            "--set",
            "eta=0.5",
            "--etas",
            "2^-1,2^-2,2^-3,2^-4",
            "--orders",
            "1",
            "--paths",
            "16384",
            "--budget",
            "0",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for series in doc["series"].as_array().unwrap() {
        let slope = series["slope"].as_f64().unwrap();
        assert_eq!(
            series["status"], "confirmed",
            "{}: {}",
            series["observable"], series["verdict"]
        );
        assert!((slope - 1.0).abs() < 0.1, "slope {slope}");
        // The time per step is 2ηu² = η/l.
        let taus: Vec<f64> = series["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["tau"].as_f64().unwrap())
            .collect();
        assert_eq!(taus, [0.25, 0.0625, 0.015625, 0.00390625]);
    }
}
