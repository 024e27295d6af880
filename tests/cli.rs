//! The `smelt` binary: exit codes and where its messages go.
//! 0 success, 1 invalid input (diagnostic on stderr), 2 bad usage or an unreadable file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn smelt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run the smelt binary")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("smelt exited normally")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A scratch directory of this test process, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("smelt-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_valid_file_prints_its_canonical_form() {
    let out = smelt(&["check", "examples/adam.opt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("optimizer Adam"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn several_valid_files_are_each_printed() {
    let out = smelt(&["check", "examples/sgd.opt", "examples/adam.opt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# examples/sgd.opt"), "{text}");
    assert!(text.contains("optimizer SGD"), "{text}");
    assert!(text.contains("optimizer Adam"), "{text}");
}

#[test]
fn an_invalid_file_exits_1_with_a_diagnostic() {
    let out = smelt(&["check", "tests/data/fail/undefined_name.opt"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("undefined_name.opt:8:7"), "{err}");
    assert!(err.contains("error"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn every_fail_file_exits_1() {
    for entry in std::fs::read_dir(root().join("tests/data/fail")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let out = smelt(&["check", path.to_str().unwrap()]);
        assert_eq!(code(&out), 1, "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(&name), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("error"), "{name}: {}", stderr(&out));
    }
}

#[test]
fn a_valid_and_an_invalid_file_exit_1_and_print_the_valid_one() {
    let out = smelt(&[
        "check",
        "examples/sgd.opt",
        "tests/data/fail/noise_unused.opt",
    ]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("optimizer SGD"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("noise_unused.opt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["check"],
        &["check", "--no-such-flag", "x.opt"],
    ] {
        let out = smelt(args);
        assert_eq!(code(&out), 2, "smelt {args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "smelt {args:?}: no message");
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [["--help"], ["--version"]] {
        let out = smelt(&args);
        assert_eq!(code(&out), 0, "smelt {args:?}: {}", stderr(&out));
        assert!(!stdout(&out).is_empty());
    }
}

#[test]
fn a_missing_file_exits_2() {
    let out = smelt(&["check", "examples/no_such_optimizer.opt"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("no_such_optimizer.opt"), "{err}");
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn a_missing_file_among_valid_ones_still_exits_2() {
    let out = smelt(&[
        "check",
        "examples/sgd.opt",
        "nope.opt",
        "tests/data/fail/empty.opt",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stdout(&out).contains("optimizer SGD"));
    assert!(stderr(&out).contains("nope.opt"));
    assert!(stderr(&out).contains("empty.opt"));
}

#[test]
fn a_directory_exits_2() {
    let out = smelt(&["check", "examples"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

#[test]
fn a_huge_file_is_refused_quickly() {
    let dir = TempDir::new("huge");
    let path = dir.path().join("huge.opt");
    // 50 MB of a plausible line, as if a data file had been passed by mistake.
    std::fs::write(&path, "x = x - eta*(grad f(x) + xi)\n".repeat(1_750_000)).unwrap();
    let start = Instant::now();
    let out = smelt(&["check", path.to_str().unwrap()]);
    let took = start.elapsed();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("too large"), "{err}");
    assert!(err.contains("huge.opt"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_file_that_is_not_utf8_exits_1() {
    let out = smelt(&["check", "tests/data/fail/not_utf8.opt"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("not UTF-8"), "{err}");
    assert!(err.contains("not_utf8.opt:4:25"), "{err}");
}

#[test]
fn binary_garbage_exits_1() {
    let dir = TempDir::new("garbage");
    let path = dir.path().join("garbage.opt");
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let out = smelt(&["check", path.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("error"));
}

#[test]
fn verify_prints_a_table_json_and_a_plot() {
    let dir = TempDir::new("verify");
    let svg = dir.0.join("plot.svg");
    let out = smelt(&[
        "verify",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well.prob",
        "--paths",
        "1024",
        "--etas",
        "0.25,0.125,0.0625",
        "--plot",
        svg.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("SME order 1 · φ = sq") && text.contains("SME order 2 · φ = cos"),
        "{text}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.ends_with("</svg>\n"));
    let out = smelt(&[
        "verify",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/quadratic.prob",
        "--exact",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schema"], "smelt-verify");
    assert_eq!(v["mode"], "exact");
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 4);
    for s in series {
        let order = s["order"].as_f64().unwrap();
        assert!((s["slope"].as_f64().unwrap() - order).abs() < 0.01, "{s}");
        assert_eq!(s["pass"], true);
    }
}

/// General noise caps SGD's SME at order 2 (order 3 needs a vanishing third moment):
/// asked for order 3, verify labels the row in the table, the JSON and the plot, and
/// judges the slope against the order derived.
#[test]
fn verify_labels_an_order_the_derivation_capped() {
    let dir = TempDir::new("verify-capped");
    let svg = dir.0.join("plot.svg");
    let args = |json: bool| {
        let mut a = vec![
            "verify",
            "examples/sgd.opt",
            "--problem",
            "examples/problems/quadratic.prob",
            "--exact",
            "--orders",
            "1,3",
            "--plot",
            svg.to_str().unwrap(),
        ];
        if json {
            a.extend(["--format", "json"]);
        }
        smelt(&a)
    };
    let out = args(false);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("SME order 3 asked, order 2 derived · φ = sq"),
        "{text}"
    );
    assert!(text.contains("SME order 1 · φ = sq"), "{text}");
    assert!(text.contains("confirms order 2"), "{text}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.contains("\norder 3 asked, order 2 derived\n</text>"),
        "{plot}"
    );
    assert!(plot.contains("confirms order 2\n</text>"), "{plot}");
    let out = args(true);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["contradicted"], false);
    let capped: Vec<&serde_json::Value> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["asked"] == 3)
        .collect();
    assert!(!capped.is_empty());
    for s in capped {
        assert_eq!(s["derived"], 2, "{s}");
        assert_eq!(s["status"], "confirmed", "{s}");
        assert_eq!(s["pass"], true, "{s}");
    }
}

/// A rule that checks (and derives) but cannot be simulated: the failure is a
/// diagnostic on the statement, rendered against the optimizer file; a problem-file
/// mistake beside it still renders against the problem file.
#[test]
fn verify_points_a_rule_it_cannot_simulate_at_the_statement() {
    let dir = TempDir::new("unsimulable");
    let rule = dir.path().join("overflow.opt");
    std::fs::write(
        &rule,
        "optimizer Overflow\n  param x\n  small eta\n  time eta\n  noise xi ~ general\n\n  x = x - eta*(grad f(x) + xi)*1e90*1e90*1e90*1e90\n",
    )
    .unwrap();
    let rule = rule.to_str().unwrap();
    let out = smelt(&["check", rule]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = smelt(&[
        "verify",
        rule,
        "--problem",
        "examples/problems/quadratic.prob",
        "--etas",
        "0.1",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("error[bad-number]"), "{err}");
    assert!(err.contains("overflow.opt:7:3"), "{err}");
    assert!(
        err.contains("the simulator cannot compile this statement"),
        "{err}"
    );
    assert!(err.contains("= hint: "), "{err}");
    // escape compiles the same rule the same way, and keeps the span too.
    let out = smelt(&[
        "escape",
        rule,
        "--problem",
        "examples/problems/saddle.prob",
        "--region",
        "ball 1",
        "--etas",
        "0.1",
        "-q",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("error[bad-number]"), "{err}");
    assert!(err.contains("overflow.opt:7:3"), "{err}");
    let out = smelt(&[
        "verify",
        rule,
        "--problem",
        "tests/data/fail_problem/not_psd.prob",
    ]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("not_psd.prob:4:24"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_reports_bad_input_with_its_exit_code() {
    // A problem-file mistake: exit 1 and a diagnostic naming the problem file.
    let out = smelt(&[
        "verify",
        "examples/sgd.opt",
        "--problem",
        "tests/data/fail_problem/not_psd.prob",
    ]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("not_psd.prob:4:24"),
        "{}",
        stderr(&out)
    );
    // A missing hyperparameter value.
    let out = smelt(&[
        "verify",
        "examples/momentum.opt",
        "--problem",
        "examples/problems/double_well.prob",
    ]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("no value for the hyperparameter `lambda`"),
        "{}",
        stderr(&out)
    );
    // Exact mode on a problem that is not linear-Gaussian.
    let out = smelt(&[
        "verify",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well.prob",
        "--exact",
    ]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("linear-Gaussian"), "{}", stderr(&out));
    // Bad usage: exit 2.
    for args in [
        vec![
            "verify",
            "examples/sgd.opt",
            "--problem",
            "examples/problems/double_well.prob",
            "--substeps",
            "6",
        ],
        vec![
            "verify",
            "examples/sgd.opt",
            "--problem",
            "examples/problems/double_well.prob",
            "--etas",
            "-1",
        ],
        vec![
            "verify",
            "examples/sgd.opt",
            "--problem",
            "no/such/file.prob",
        ],
    ] {
        let out = smelt(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn escape_prints_a_report_json_and_a_plot() {
    let dir = TempDir::new("escape");
    let svg = dir.0.join("escape.svg");
    let out = smelt(&[
        "escape",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/saddle.prob",
        "--region",
        "ball 1",
        "--models",
        "sgd,sme1,ha",
        "--etas",
        "0.25,0.125,0.0625",
        "--paths",
        "2000",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "a saddle (one unstable direction)",
        "HA-SME",
        "E τ against log(1/η)",
        "closed forms, linearised at the saddle",
        "τ·max|λ| = 0.500: not small",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.ends_with("</svg>\n"));
    let out = smelt(&[
        "escape",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well_escape.prob",
        "--region",
        "x < 0",
        "--etas",
        "0.2",
        "--paths",
        "500",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schema"], "smelt-escape");
    assert_eq!(v["start"]["index"], 0);
    let models = v["results"][0]["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for m in models {
        assert_eq!(
            m["exited"].as_u64().unwrap() + m["censored"].as_u64().unwrap(),
            500
        );
    }
}

#[test]
fn escape_reports_bad_input_with_its_exit_code() {
    let base = [
        "escape",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well_escape.prob",
        "--etas",
        "0.2",
        "--paths",
        "128",
    ];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        smelt(&a)
    };
    // Bad usage: exit 2 with the reason.
    for (extra, why) in [
        (vec!["--region", "somewhere"], "write `ball R`"),
        (vec!["--region", "ball -1"], "radius must be positive"),
        (
            vec!["--region", "ball 1", "--models", "sgd,sme9"],
            "`sme9` is not a model",
        ),
        (vec!["--region", "ball 1", "--batch", "0.5"], "at least 1"),
    ] {
        let out = with(&extra);
        assert_eq!(code(&out), 2, "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{extra:?}: {}", stderr(&out));
    }
    // Input that does not fit: exit 1 with the reason.
    for (extra, why) in [
        (vec!["--region", "x > 0"], "not inside the region"),
        (vec!["--region", "sum(x^2) + [1, 2] < 1"], "--region"),
        (vec!["--region", "y < 0"], "`y`"),
        (vec!["--region", "past 0.9"], "not a saddle"),
        (
            vec![
                "--region", "ball 1", "--models", "opt,ha", "--from", "[1, 2]",
            ],
            "d = 1",
        ),
    ] {
        let out = with(&extra);
        assert_eq!(code(&out), 1, "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{extra:?}: {}", stderr(&out));
    }
    // A rule that is not SGD's form has no HA-SME.
    let out = smelt(&[
        "escape",
        "examples/momentum.opt",
        "--problem",
        "examples/problems/double_well_escape.prob",
        "--region",
        "ball 1",
        "--models",
        "opt,ha",
        "--set",
        "lambda=0.5",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("Hessian-aware"), "{}", stderr(&out));
}

/// The commands that print a result, with arguments that make them quick.
fn printing_commands() -> Vec<Vec<&'static str>> {
    vec![
        vec!["check", "examples/sgd.opt"],
        vec!["derive", "examples/sgd.opt", "--order", "2"],
        vec!["derive", "examples/sgd.opt", "--hessian-aware"],
        vec!["scaling", "examples/adam.opt", "--noise-scale", "sigma"],
        vec![
            "verify",
            "examples/sgd.opt",
            "--problem",
            "examples/problems/quadratic.prob",
            "--exact",
        ],
        vec![
            "escape",
            "examples/sgd.opt",
            "--problem",
            "examples/problems/double_well_escape.prob",
            "--region",
            "x < 0",
            "--etas",
            "0.2",
            "--paths",
            "128",
        ],
    ]
}

/// A reader that has gone (`smelt … | head -c1` once head has exited) ends the output
/// quietly: no panic, nothing on stderr, the command's own exit status.
#[test]
fn a_closed_pipe_on_stdout_ends_the_output_quietly() {
    for args in printing_commands() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args(&args)
            .current_dir(root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the smelt binary");
        // Close the only read end before smelt has read its files: every write fails
        // with a broken pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(code(&out), 0, "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// Any other write error (a full disk) is an error on stderr and a non-zero exit.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_on_stdout_is_an_error() {
    for args in printing_commands() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args(&args)
            .current_dir(root())
            .stdout(full)
            .output()
            .expect("run the smelt binary");
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(code(&out), 2, "{args:?}: {err}");
        assert!(
            err.contains("error: cannot write the output: No space left on device"),
            "{args:?}: {err}"
        );
    }
}

/// `--etas` reads numbers as problem files write them (`2^-4`, `1/8`), through the
/// problem file's expression parser.
#[test]
fn etas_take_the_expressions_of_problem_files() {
    let series = |etas: &str| {
        let out = smelt(&[
            "verify",
            "examples/sgd.opt",
            "--problem",
            "examples/problems/quadratic.prob",
            "--exact",
            "--format",
            "json",
            "--etas",
            etas,
        ]);
        assert_eq!(code(&out), 0, "{etas}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["series"].clone()
    };
    assert_eq!(series("2^-2,1/8,2^-4"), series("0.25,0.125,0.0625"));
    let out = smelt(&[
        "escape",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well_escape.prob",
        "--region",
        "x < 0",
        "--etas",
        "2^-3",
        "--paths",
        "128",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["results"][0]["eta"], 0.125);
    // What does not read is bad usage, with the parser's reason.
    let out = smelt(&[
        "verify",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/quadratic.prob",
        "--exact",
        "--etas",
        "2^^3",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`2^^3` is not a number: unexpected `^`"),
        "{}",
        stderr(&out)
    );
}

/// η·λ ≥ 1 at the start: the HA-SME is undefined there, and the report says so and why
/// instead of counting stopped paths.
#[test]
fn escape_says_the_ha_sme_is_undefined_at_the_start() {
    let out = smelt(&[
        "escape",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well_escape.prob",
        "--region",
        "x < 0",
        "--models",
        "opt,ha",
        "--etas",
        "0.6",
        "--paths",
        "128",
        "-q",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("HA-SME     not run: the HA-SME does not exist at the start point: η·λ = 1.200 ≥ 1 for the eigenvalue λ = 2 of ∇²f there (log(I − ηH) is not real; take η < 0.5)"),
        "{text}"
    );
    assert!(!text.contains("paths stopped"), "{text}");
}

/// A state that overflows where the region does not look (here x₂, the region reads
/// x₁) is a diverged path, not a censored one.
#[test]
fn escape_counts_an_overflowed_state_as_diverged() {
    let dir = TempDir::new("escape-overflow");
    let prob = dir.path().join("blowup.prob");
    std::fs::write(
        &prob,
        "problem blowup\n  dim 2\n  objective f(x) = x[1]^2/2 - 5*x[2]^2\n  \
         noise gaussian cov = 0.01\n  start x = [0.5, 0.1]\n  horizon 100\n",
    )
    .unwrap();
    let args = |json: bool| {
        let mut a = vec![
            "escape",
            "examples/sgd.opt",
            "--problem",
            prob.to_str().unwrap(),
            "--region",
            "x[1] > -10",
            "--no-refine",
            "--models",
            "sme1",
            "--etas",
            "0.5",
            "--paths",
            "256",
        ];
        if json {
            a.extend(["--format", "json"]);
        }
        smelt(&a)
    };
    let out = args(true);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let m = &v["results"][0]["models"][0];
    assert_eq!(
        (m["diverged"].as_u64(), m["censored"].as_u64()),
        (Some(256), Some(0)),
        "{m}"
    );
    // Found when it happens (e^(10 t) overflows near t = 71), not at the horizon.
    assert!(m["first_divergence"].as_u64().unwrap() < 200, "{m}");
    let text = stdout(&args(false));
    assert!(text.contains("256 paths diverged"), "{text}");
}

/// A `--plot` path that cannot be written is refused before the run.
#[test]
fn escape_refuses_an_unwritable_plot_before_the_run() {
    let started = Instant::now();
    let out = smelt(&[
        "escape",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well_escape.prob",
        "--region",
        "x < 0",
        "--etas",
        "0.1,0.075",
        // Minutes of simulation, were it run first.
        "--paths",
        "2000000",
        "--plot",
        "no/such/dir/escape.svg",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write `no/such/dir/escape.svg`"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    assert!(started.elapsed() < Duration::from_secs(20));
    // `-q` is accepted (no progress bar; none is drawn off a terminal anyway).
    let out = smelt(&[
        "escape",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well_escape.prob",
        "--region",
        "x < 0",
        "--etas",
        "0.2",
        "--paths",
        "128",
        "-q",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// A horizon that is not a whole number of steps (T = 1, τ = 0.3: the runs end at 0.9)
/// is said in the header and in the JSON; a grid that divides T says nothing.
#[test]
fn verify_says_when_the_horizon_is_not_a_whole_number_of_steps() {
    let run = |etas: &str, format: &str| {
        smelt(&[
            "verify",
            "examples/sgd.opt",
            "--problem",
            "examples/problems/double_well.prob",
            "--etas",
            etas,
            "--orders",
            "1",
            "--paths",
            "256",
            "--budget",
            "0",
            "--format",
            format,
        ])
    };
    let off = run("0.3,0.25", "text");
    let text = stdout(&off);
    assert!(
        text.contains("not a whole number of steps")
            && text.contains("3.0000e-1 (ends at 0.900000)"),
        "{text}"
    );
    assert!(!text.contains("2.5000e-1 (ends"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&run("0.3,0.25", "json").stdout).unwrap();
    let listed = json["horizon_off"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["eta"], 0.3);
    assert!((listed[0]["end"].as_f64().unwrap() - 0.9).abs() < 1e-12);
    let whole = stdout(&run("0.25,0.125", "text"));
    assert!(!whole.contains("whole number of steps"), "{whole}");
}
