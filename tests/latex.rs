//! LaTeX output compiled with a real engine (the output itself is pinned in outputs.rs).
//!
//! The compile check needs `pdflatex` ([`support::latex`]).

use smelt::Options;

mod support;

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
    if !support::latex::have_pdflatex() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("smelt-latex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, order) in CASES {
        let name = format!("{}_{order}", file.trim_end_matches(".opt"));
        let tex = smelt::emit::latex::render(&derive(file, *order), true);
        support::latex::compile(&dir, &name, &tex);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
