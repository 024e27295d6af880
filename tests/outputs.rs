//! Every example at orders 1 and 2: text, LaTeX and JSON pinned, and the JSON read back.
//! (The derivations themselves are checked against the papers in derive.rs, adaptive.rs
//! and the numeric tests; these snapshots pin how they are written.)

use smelt::Options;

/// The examples smelt derives at order 1 and refuses at order 2 with a hint: Gaussian
/// noise of order one inside a kink, and a fast state whose fluctuation sets its size
/// (Adam's first moment with σ = σ₀/η).
const FIRST_ORDER_ONLY: &[&str] = &["signsgd", "lion", "clipped_sgd", "adam_fixed_beta1"];

fn check(name: &str) {
    let path = format!("{}/examples/{name}.opt", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(path).unwrap();
    for order in [1, 2] {
        if order == 2 && FIRST_ORDER_ONLY.contains(&name) {
            let e = smelt::derive(&source, &Options::order(order)).expect_err("order 2 refused");
            assert!(format!("{e:?}").contains("--order 1"), "{name}: {e:?}");
            continue;
        }
        let sme = smelt::derive(&source, &Options::order(order))
            .unwrap_or_else(|e| panic!("{name} order {order}: {e:?}"));
        let key = format!("{name}_{order}");
        insta::assert_snapshot!(format!("{key}_text"), smelt::emit::text::render(&sme));
        insta::assert_snapshot!(
            format!("{key}_latex"),
            smelt::emit::latex::render(&sme, false)
        );
        let json = smelt::emit::json::to_json(&sme);
        let back = smelt::emit::json::from_json(&json).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(back, sme, "{key}: the JSON reads back to the same result");
        insta::assert_snapshot!(format!("{key}_json"), json);
    }
}

/// One test per example file, so that they run in parallel.
macro_rules! examples {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*

        #[test]
        fn every_example_file_is_listed() {
            let dir = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "opt"))
                .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
                .collect();
            files.sort();
            let mut listed = vec![$(stringify!($name).to_string()),*];
            listed.sort();
            assert_eq!(files, listed, "add the new example to the list in tests/outputs.rs");
        }
    };
}

examples!(
    adam,
    adam_fixed_beta1,
    ema_sgd_fixed,
    heavy_ball_fixed,
    heavy_ball_mu,
    nesterov_fixed,
    adam_ballistic,
    adamw,
    extragradient,
    momentum,
    nesterov,
    rmsprop,
    rmsprop_ballistic,
    sam,
    sam_sqrt,
    sgd,
    sgld,
    normalized_sgd,
    normalized_momentum,
    sam_normalized,
    extragradient_two_samples,
    signum,
    signsgd,
    lion,
    clipped_sgd,
    svag
);
