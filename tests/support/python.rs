//! The project's Python (`.venv/bin/python`, made by `scripts/python-env.sh` with SymPy,
//! NumPy and mpmath) for the tests that run generated code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The project's Python, created once when missing, or why there is none.
pub fn python() -> Result<&'static Path, &'static str> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join(".venv/bin/python");
        let works = |p: &Path| {
            Command::new(p)
                .args(["-c", "import sympy, numpy, mpmath"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if works(&venv) {
            return Ok(venv);
        }
        let setup = Command::new("bash")
            .arg(root.join("scripts/python-env.sh"))
            .output();
        match setup {
            Ok(o) if o.status.success() && works(&venv) => Ok(venv),
            Ok(o) => Err(format!(
                "scripts/python-env.sh did not give a Python with SymPy and NumPy: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("could not run scripts/python-env.sh: {e}")),
        }
    });
    found.as_deref().map_err(String::as_str)
}

/// Runs `source` as a Python file named `name` in a fresh directory, beside the given
/// extra files, and asserts that it exits 0 and prints `checks passed`. Without a Python
/// it says so and returns (under `CI` that is a failure).
pub fn run_checks(name: &str, source: &str, files: &[(&str, &str)]) {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{name}: no Python under CI: {why}"
            );
            #[allow(clippy::print_stderr, reason = "a skipped check says so")]
            {
                eprintln!("skipped: {name}: {why}");
            }
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("smelt-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("write a module");
    }
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, source).expect("write the checks");
    let out = Command::new(python)
        .arg(&path)
        .current_dir(&dir)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "{name}: the checks failed ({})\n--- stderr\n{stderr}\n--- stdout\n{stdout}\n--- files in {}",
        out.status,
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
