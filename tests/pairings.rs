//! Every example × problem pairing the README names for `smelt verify`, run through the
//! binary (`-f json -q`) and confirmed: exit code 0 and every series' `status`
//! `confirmed` (Adam's order 2, whose diffusion matrix is not positive semidefinite on
//! the README's grid, is reported as such at every step size instead).
//!
//! The paths are reduced from the default 65 536 to the fewest that still confirm
//! (measured with seed 1; the fits' intervals narrow like 1/√paths, and order 2 needs a
//! half-width ≤ 0.1). The exact-mode pairings take milliseconds. The sampled ones take
//! seconds to tens of seconds each in the test profile (smelt at opt-level 2, its
//! dependencies unoptimized): the file took 64 s on 2 cores at load 4.5 when smelt was
//! built at opt-level 1. The heavy ball's order 2 confirms only at the
//! default 65 536 paths, minutes there, so that pairing is `#[ignore]`d with its figures
//! rather than run at fewer paths with a weaker assertion: run it with
//! `cargo test --release --test pairings -- --ignored`.

use serde_json::Value;
use std::process::Command;

/// Runs `smelt verify ARGS -f json -q`; the exit code and the parsed report.
fn verify(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_smelt"))
        .arg("verify")
        .args(args)
        .args(["-f", "json", "-q"])
        .output()
        .expect("the smelt binary runs");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: the report is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

fn series(doc: &Value) -> &Vec<Value> {
    let s = doc["series"].as_array().expect("a `series` array");
    assert!(!s.is_empty(), "no series in {doc}");
    s
}

/// What one series says, for the failure messages.
fn describe(s: &Value) -> String {
    format!(
        "order {} φ = {}: {} (slope {} ± {}): {}",
        s["order"], s["observable"], s["status"], s["slope"], s["half_width"], s["verdict"]
    )
}

/// Exit code 0, and every series (orders 1 and 2, every test function) confirmed.
fn assert_all_confirmed(args: &[&str]) {
    let (code, doc) = verify(args);
    assert_eq!(code, 0, "{args:?}: exit code {code}");
    let all = series(&doc);
    let orders: Vec<u64> = all.iter().filter_map(|s| s["order"].as_u64()).collect();
    assert!(
        orders.contains(&1) && orders.contains(&2),
        "{args:?}: orders {orders:?}"
    );
    for s in all {
        assert_eq!(s["status"], "confirmed", "{args:?}: {}", describe(s));
    }
}

#[test]
fn sgd_heavy_ball_and_nesterov_are_confirmed_exactly_on_the_quadratic() {
    let q = "examples/problems/quadratic.prob";
    assert_all_confirmed(&["examples/sgd.opt", "--problem", q, "--exact"]);
    for opt in ["examples/momentum.opt", "examples/nesterov.opt"] {
        assert_all_confirmed(&[opt, "--problem", q, "--exact", "--set", "lambda=1.5"]);
    }
}

/// 16 384 paths: order 2 at 2.07 ± 0.08 (φ = x²), 2.08 ± 0.08 (cos x), after the grid
/// extends by two step sizes; 35 s in the test profile on 2 cores at load 7. 4096 paths
/// leave order 2 undetermined.
#[test]
fn sgd_is_confirmed_on_the_double_well() {
    assert_all_confirmed(&[
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well.prob",
        "--paths",
        "16384",
    ]);
}

/// 16 384 paths: order 2 at 2.01 ± 0.08 (‖x‖²), 2.05 ± 0.09 (x₁); 33 s in the test
/// profile on 2 cores at load 4 (83 s at load 7). 8192 paths would widen the order-2
/// intervals past 0.1.
#[test]
fn sgd_is_confirmed_on_the_correlated_2d_double_well() {
    assert_all_confirmed(&[
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well_2d.prob",
        "--paths",
        "16384",
    ]);
}

/// Order 2 is 1.95 ± 0.21 at 16 384 paths (undetermined, even after the grid extends):
/// it needs the default 65 536, where it is 1.96 ± 0.09 (x²) and 1.95 ± 0.09 (cos x),
/// in 338 s in the test profile on 2 cores at load 7.
#[test]
#[ignore = "338 s in the test profile: order 2 needs the default 65 536 paths"]
fn heavy_ball_is_confirmed_on_the_double_well() {
    assert_all_confirmed(&[
        "examples/momentum.opt",
        "--problem",
        "examples/problems/double_well.prob",
        "--set",
        "lambda=1",
        "--paths",
        "65536",
    ]);
}

/// Order 1 confirmed (against τ = η²); order 2 not simulated: at every step size of the
/// grid its diffusion matrix is not positive semidefinite, and the report says so there.
#[test]
fn adam_is_confirmed_at_order_1_and_its_order_2_is_reported_not_psd() {
    let args = [
        "examples/adam.opt",
        "--problem",
        "examples/problems/adam_double_well.prob",
        "--paths",
        "4096",
    ];
    let (code, doc) = verify(&args);
    assert_eq!(code, 0);
    let all = series(&doc);
    assert!(all.iter().any(|s| s["order"] == 1) && all.iter().any(|s| s["order"] == 2));
    for s in all {
        if s["order"] == 1 {
            assert_eq!(s["status"], "confirmed", "{}", describe(s));
        } else {
            assert_ne!(s["status"], "confirmed", "{}", describe(s));
            assert_ne!(s["status"], "contradicted", "{}", describe(s));
            let points = s["points"].as_array().expect("points");
            assert!(!points.is_empty());
            for p in points {
                let why = p["refused"].as_str().unwrap_or_default();
                assert!(
                    why.contains("not positive semidefinite"),
                    "η = {}: {why:?}",
                    p["eta"]
                );
            }
        }
    }
}

/// The normalized rules on the double well started far from its minima (the gradient
/// stays away from 0, where their SMEs hold), order 1, τ = 2⁻³ … 2⁻⁶: 8192 paths give
/// normalized SGD 1.01 ± 0.04 (‖x‖²) and 1.08 ± 0.08 (x₁) with seed 1 (seeds 2 and 3
/// confirm too); normalized SAM 1.03 ± 0.07 and 1.04 ± 0.08. Both in 1.6 s in the test
/// profile. (Order 2 needs 262 144 paths and minutes: README.)
#[test]
fn normalized_rules_are_confirmed_at_order_1_away_from_critical_points() {
    for (rule, set) in [
        ("examples/normalized_sgd.opt", "s=1"),
        ("examples/sam_normalized.opt", "r=0.5"),
    ] {
        let args = [
            rule,
            "--set",
            set,
            "--problem",
            "examples/problems/double_well_2d_far.prob",
            "--orders",
            "1",
            "--time-steps",
            "2^-3,2^-4,2^-5,2^-6",
            "--paths",
            "8192",
        ];
        let (code, doc) = verify(&args);
        assert_eq!(code, 0, "{args:?}: exit code {code}");
        let all = series(&doc);
        assert_eq!(all.len(), 2, "{args:?}: two test functions at order 1");
        for s in all {
            assert_eq!(s["order"], 1, "{args:?}: {}", describe(s));
            assert_eq!(s["status"], "confirmed", "{args:?}: {}", describe(s));
        }
    }
}
