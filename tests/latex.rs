//! LaTeX output compiled with a real engine (the output itself is pinned in outputs.rs).
//!
//! The compile check needs `pdflatex` (Debian: texlive-latex-base). Without it the
//! test says so and passes, except in CI (`CI=true`), where its absence is a failure;
//! `.ci/run` installs it.
#![allow(clippy::print_stderr, reason = "a skipped check says so")]

use smelt::Options;
use std::process::Command;

const CASES: &[(&str, u32)] = &[
    ("sgd.opt", 1),
    ("sgd.opt", 2),
    ("sgd.opt", 3),
    ("momentum.opt", 1),
    ("momentum.opt", 2),
    ("nesterov.opt", 1),
    ("nesterov.opt", 2),
    ("rmsprop.opt", 1),
    ("adam.opt", 1),
    ("adamw.opt", 1),
    ("rmsprop_ballistic.opt", 2),
    ("adam_ballistic.opt", 2),
];

fn derive(file: &str, order: u32) -> smelt::Sme {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(path).unwrap();
    smelt::derive(&source, &Options::order(order)).unwrap()
}

#[test]
fn standalone_latex_compiles() {
    let have = Command::new("pdflatex").arg("--version").output().is_ok();
    if !have {
        assert!(
            std::env::var("CI").is_err(),
            "pdflatex is required in CI (.ci/run installs texlive-latex-base)"
        );
        eprintln!("skipped: pdflatex not found; install texlive-latex-base to run this check");
        return;
    }
    let dir = std::env::temp_dir().join(format!("smelt-latex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, order) in CASES {
        let name = format!("{}_{order}", file.trim_end_matches(".opt"));
        let tex = dir.join(format!("{name}.tex"));
        std::fs::write(
            &tex,
            smelt::emit::latex::render(&derive(file, *order), true),
        )
        .unwrap();
        let out = Command::new("pdflatex")
            .args(["-interaction=nonstopmode", "-halt-on-error"])
            .arg(&tex)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: pdflatex failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(dir.join(format!("{name}.pdf")).exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
