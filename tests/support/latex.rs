//! Compiling LaTeX with a real engine. The check needs `pdflatex` (Debian:
//! texlive-latex-base); without it a test says so and passes, except in CI (`CI` set),
//! where its absence is a failure (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;

/// Whether `pdflatex` runs here; `false` after a skip notice (a failure under CI).
pub fn have_pdflatex() -> bool {
    if Command::new("pdflatex").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "pdflatex is required in CI (.ci/run installs texlive-latex-base)"
    );
    #[allow(clippy::print_stderr, reason = "a skipped check says so")]
    {
        eprintln!("skipped: pdflatex not found; install texlive-latex-base to run this check");
    }
    false
}

/// Compiles the document `tex` as `dir/name.tex` and asserts that the PDF is made.
pub fn compile(dir: &Path, name: &str, tex: &str) {
    let path = dir.join(format!("{name}.tex"));
    std::fs::write(&path, tex).expect("write the document");
    let out = Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error"])
        .arg(&path)
        .current_dir(dir)
        .output()
        .expect("run pdflatex");
    assert!(
        out.status.success(),
        "{name}: pdflatex failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(dir.join(format!("{name}.pdf")).exists());
}
