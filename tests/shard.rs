//! Sharded runs (`--shard K/N`) merged by `smelt merge` against the single run.
//!
//! What makes the two sides independent: the single run folds every block in one
//! process; each shard is a separate `smelt` process that runs only its range of blocks,
//! and the shards meet only through their serialized JSON parts, which a further
//! process merges. The comparison is of the two JSON documents as text, line by line,
//! with only the wall-clock lines (`seconds`) left out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn smelt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs smelt")
}

/// The output of a run that succeeded (exit 0, or 3: a verification whose verdict
/// contradicts an order, which is a result).
fn ok(args: &[&str]) -> String {
    let out = smelt(args);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "smelt {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("smelt-shard-{}-{name}", std::process::id()));
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

/// The JSON's lines but those of wall-clock time.
fn without_seconds(json: &str) -> Vec<&str> {
    json.lines()
        .filter(|l| !l.trim_start().starts_with("\"seconds\""))
        .collect()
}

/// Runs `args` whole (`--format json`) and as `n` shards merged (the parts given to
/// `merge` in reverse order), and asserts the two reports are the same text.
fn same_as_single(name: &str, args: &[&str], n: usize) -> String {
    let mut single = args.to_vec();
    single.extend(["--format", "json", "-q"]);
    let whole = ok(&single);
    let dir = TempDir::new(&format!("{name}-{n}"));
    let mut files = Vec::new();
    for k in (1..=n).rev() {
        let shard = format!("{k}/{n}");
        let mut a = args.to_vec();
        a.extend(["--shard", &shard, "-q"]);
        let part = ok(&a);
        let file = dir.path().join(format!("part-{k}.json"));
        std::fs::write(&file, part).unwrap();
        files.push(file.display().to_string());
    }
    let mut m = vec!["merge", "--format", "json"];
    m.extend(files.iter().map(String::as_str));
    let merged = ok(&m);
    assert_eq!(
        without_seconds(&whole),
        without_seconds(&merged),
        "{name}: {n} shards merged differ from the single run"
    );
    // The text report too.
    let mut t = vec!["merge"];
    t.extend(files.iter().map(String::as_str));
    let text = ok(&t);
    assert!(text.contains("paths per"), "{text}");
    whole
}

const VERIFY: &[&str] = &[
    "verify",
    "examples/sgd.opt",
    "--problem",
    "examples/problems/quadratic.prob",
    "--etas",
    "2^-3,2^-4,2^-5",
    "--paths",
    "1500",
    "--orders",
    "1,2",
    "--budget",
    "0",
];

#[test]
fn verify_shards_merge_to_the_single_run() {
    // 1500 paths: 12 blocks of 128; 7 shards split them unevenly (1 or 2 blocks each).
    // A shard's --budget 0 is accepted (the default of a shard).
    for n in [1, 2, 3, 7] {
        let whole = same_as_single("verify", VERIFY, n);
        assert!(whole.contains("\"paths\": 1536"), "{whole}");
    }
}

#[test]
fn antithetic_shards_merge_to_the_single_run() {
    let args = [
        "verify",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/double_well_short.prob",
        "--etas",
        "2^-4,2^-5",
        "--paths",
        "700",
        "--budget",
        "0",
        "--orders",
        "1,2",
        "--antithetic",
    ];
    // 6 blocks: 7 shards leave one shard without blocks.
    for n in [2, 3, 7] {
        let whole = same_as_single("antithetic", &args, n);
        assert!(whole.contains("\"antithetic\": true"), "{whole}");
    }
}

#[test]
fn escape_shards_merge_to_the_single_run() {
    let args = [
        "escape",
        "examples/sgd.opt",
        "--problem",
        "examples/problems/saddle.prob",
        "--region",
        "ball 1",
        "--models",
        "sgd,sme1",
        "--etas",
        "0.1,0.05",
        "--paths",
        "3000",
    ];
    // 3000 paths: 5 blocks (quotas of 600).
    for n in [1, 2, 3, 7] {
        let whole = same_as_single("escape", &args, n);
        assert!(whole.contains("\"exited\": 3000"), "{whole}");
    }
}

/// A test function that is not finite on some paths whose states are: the single run
/// then runs each test function alone over all paths, and so must the shards.
#[test]
fn test_functions_not_finite_on_some_paths_merge_or_are_refused() {
    let dir = TempDir::new("nonfinite");
    let problem = dir.path().join("lossy.prob");
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/problems/quadratic.prob"),
    )
    .unwrap();
    // log of x[1] − c is NaN on the paths that end below c.
    let with = |c: &str| {
        let text = base.replace(
            "observe x1 = x[1]",
            &format!("observe x1 = x[1]\n  observe lg = log(x[1] - {c})"),
        );
        std::fs::write(&problem, text).unwrap();
    };
    let p = problem.display().to_string();
    let args = |paths: &'static str| {
        vec![
            "verify".to_string(),
            "examples/sgd.opt".into(),
            "--problem".into(),
            p.clone(),
            "--etas".into(),
            "2^-3,2^-4".into(),
            "--paths".into(),
            paths.into(),
            "--budget".into(),
            "0".into(),
            "--orders".into(),
            "1".into(),
        ]
    };
    // Lost on many paths: every shard loses some, runs each test function alone, and the
    // merge is the single run's.
    with("0.5");
    let a = args("1024");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let whole = same_as_single("lossy", &a, 2);
    assert!(whole.contains("\"not_finite\""), "{whole}");
    // Lost on few paths: some shards lose none, do not run each test function alone, and
    // the merge says what to do instead.
    with("0");
    let a = args("1024");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let whole = ok(&[&a[..], &["--format", "json", "-q"]].concat());
    assert!(whole.contains("\"not_finite\""), "few paths lost: {whole}");
    let mut files = Vec::new();
    for k in 1..=8 {
        let shard = format!("{k}/8");
        let part = ok(&[&a[..], &["--shard", &shard]].concat());
        let file = dir.path().join(format!("p{k}.json"));
        std::fs::write(&file, part).unwrap();
        files.push(file.display().to_string());
    }
    let mut m = vec!["merge"];
    m.extend(files.iter().map(String::as_str));
    let out = smelt(&m);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("run the verification whole") && err.contains("not finite on paths of"),
        "{err}"
    );
}

#[test]
fn merge_refuses_parts_that_are_not_one_whole_run() {
    let dir = TempDir::new("errors");
    let part = |extra: &[&str], shard: &str, name: &str| {
        let mut a = VERIFY.to_vec();
        a.extend(extra);
        a.extend(["--shard", shard]);
        let file = dir.path().join(name);
        std::fs::write(&file, ok(&a)).unwrap();
        file.display().to_string()
    };
    let p1 = part(&[], "1/3", "p1.json");
    let p2 = part(&[], "2/3", "p2.json");
    let p3 = part(&[], "3/3", "p3.json");
    let seed = part(&["--seed", "2"], "3/3", "seed.json");
    let two = part(&[], "2/2", "two.json");
    // The same rule with a comment: another file's text.
    let sgd =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sgd.opt"))
            .unwrap();
    let opt = dir.path().join("sgd_commented.opt");
    std::fs::write(&opt, format!("# commented\n{sgd}")).unwrap();
    let opt = opt.display().to_string();
    let mut other = VERIFY.to_vec();
    other[1] = &opt;
    other.extend(["--shard", "3/3"]);
    let rule = dir.path().join("rule.json");
    let rule_out = smelt(&other);
    let refused = |files: &[&str], want: &[&str]| {
        let mut m = vec!["merge"];
        m.extend(files);
        let out = smelt(&m);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{files:?}: {err}");
        for w in want {
            assert!(err.contains(w), "{files:?}: {err} lacks {w}");
        }
        assert!(out.stdout.is_empty());
    };
    refused(&[&p1, &p3], &["shard is", "2/3", "missing"]);
    refused(&[&p1, &p2, &p2, &p3], &["both shard 2/3", "p2.json"]);
    refused(&[&p1, &p2, &seed], &["seed.json", "another run", "`seed`"]);
    refused(&[&p1, &two], &["same N"]);
    assert!(rule_out.status.success());
    std::fs::write(&rule, &rule_out.stdout).unwrap();
    let r = rule.display().to_string();
    refused(&[&p1, &p2, &r], &["rule.json", "optimizer file"]);
    let bogus = dir.path().join("bogus.json");
    std::fs::write(&bogus, "{\"schema\": \"smelt-verify\"}").unwrap();
    refused(
        &[&p1, &bogus.display().to_string()],
        &["not a part of a sharded run"],
    );
    // The three parts in any order merge, and draw the single run's plot.
    let (merged_svg, single_svg) = (dir.path().join("m.svg"), dir.path().join("s.svg"));
    let (m, s) = (
        merged_svg.display().to_string(),
        single_svg.display().to_string(),
    );
    let out = smelt(&["merge", &p3, &p1, &p2, "--plot", &m]);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&[VERIFY, &["--plot", &s, "-q"]].concat());
    let svg = std::fs::read_to_string(&merged_svg).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert_eq!(svg, std::fs::read_to_string(&single_svg).unwrap());
    // What a shard cannot do.
    for (extra, want) in [
        (&["--budget", "100"][..], "--budget 0"),
        (&["--exact"][..], "exact mode"),
        (&["--shard", "0/3"][..], "1 ≤ K ≤ N"),
    ] {
        let mut a = VERIFY.to_vec();
        a.retain(|x| *x != "--budget" && *x != "0");
        a.extend(extra);
        if !extra.contains(&"--shard") {
            a.extend(["--shard", "1/2"]);
        }
        let out = smelt(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {err}");
        assert!(err.contains(want), "{a:?}: {err}");
    }
}

/// The Slurm script (scripts/slurm/verify-array.sh), without Slurm: `submit` against a
/// stand-in `sbatch` on the PATH that runs each job at once (the array's tasks with
/// `SLURM_ARRAY_TASK_ID`/`SLURM_ARRAY_TASK_COUNT` set, as Slurm sets them) and records
/// the dependency asked for; and `local`, which runs the same commands in turn. Both
/// merged reports against the single run made here.
#[test]
fn the_slurm_script_merges_to_the_single_run() {
    let dir = TempDir::new("slurm");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.path().join("sbatch.log");
    let fake = bin.join("sbatch");
    std::fs::write(
        &fake,
        r#"#!/usr/bin/env bash
array="" deps=""
while [[ "$1" == --* ]]; do
  case "$1" in
    --array=*) array="${1#--array=}" ;;
    --dependency=*) deps="${1#--dependency=}" ;;
  esac
  shift
done
echo "array=$array deps=$deps" >> "$FAKE_LOG"
if [ -n "$array" ]; then
  n="${array#1-}"
  for k in $(seq 1 "$n"); do
    SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_COUNT=$n SLURM_CPUS_PER_TASK=1 "$@" || exit 1
  done
  echo 4242
else
  "$@" || exit 1
  echo 4243
fi
"#,
    )
    .unwrap();
    let run = |mode: &str, out: &Path| {
        let status = Command::new("bash")
            .arg("scripts/slurm/verify-array.sh")
            .args([mode, "3", &out.display().to_string(), "--"])
            .args(&VERIFY[1..VERIFY.len() - 2])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SMELT", env!("CARGO_BIN_EXE_smelt"))
            .env("FAKE_LOG", &log)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .status()
            .expect("runs bash");
        assert!(status.success(), "{mode}");
    };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The single run: VERIFY with its `--budget 0` (which the script's arguments leave
    // out: a shard's budget is 0).
    let mut single = VERIFY.to_vec();
    single.extend(["--format", "json", "-q"]);
    let whole = ok(&single);
    for mode in ["submit", "local"] {
        let out = dir.path().join(mode);
        run(mode, &out);
        let merged = std::fs::read_to_string(out.join("verify.json")).unwrap();
        assert_eq!(without_seconds(&whole), without_seconds(&merged), "{mode}");
        let text = std::fs::read_to_string(out.join("verify.txt")).unwrap();
        assert!(text.contains("paths per step size"), "{text}");
    }
    let asked = std::fs::read_to_string(&log).unwrap();
    assert_eq!(asked, "array=1-3 deps=\narray= deps=afterok:4242\n");
}

/// A change made by hand to a part.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

/// Parts changed by hand (a field removed, an order or a test function more or less,
/// an impossible shard) are refused with a message, never read past their end.
#[test]
fn merge_refuses_changed_parts_without_panicking() {
    let dir = TempDir::new("changed");
    let mut a = VERIFY.to_vec();
    a.retain(|x| *x != "--budget" && *x != "0");
    a.extend(["--shard", "1/1"]);
    let part: serde_json::Value = serde_json::from_str(&ok(&a)).unwrap();
    let edits: Vec<(&str, Edit)> = vec![
        (
            "orders",
            Box::new(|v| v["run"]["options"]["orders"] = serde_json::json!([1])),
        ),
        (
            "orders",
            Box::new(|v| v["run"]["options"]["orders"] = serde_json::json!([1, 2, 3])),
        ),
        (
            "refused",
            Box::new(|v| v["steps"][0]["head"]["refused"] = serde_json::json!([null])),
        ),
        ("shard 0/1", Box::new(|v| v["shard"]["k"] = 0.into())),
        (
            "opt",
            Box::new(|v| v["steps"][0]["all"]["opt"] = serde_json::json!([])),
        ),
        (
            "sum",
            Box::new(|v| v["steps"][0]["all"]["opt"][0]["s"] = serde_json::json!(["x"])),
        ),
        ("blocks", Box::new(|v| v["blocks"] = 5.into())),
        (
            "observe",
            Box::new(|v| {
                let p = v["run"]["problem"]
                    .as_str()
                    .unwrap()
                    .replace("observe x1 = x[1]", "");
                v["run"]["problem"] = p.into();
            }),
        ),
    ];
    for (i, (what, edit)) in edits.iter().enumerate() {
        let mut v = part.clone();
        edit(&mut v);
        let file = dir.path().join(format!("changed-{i}.json"));
        std::fs::write(&file, v.to_string()).unwrap();
        let out = smelt(&["merge", &file.display().to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains("changed-"),
            "{what}: {err}"
        );
    }
    // The part unchanged merges (the edits above are what made them fail).
    let file = dir.path().join("unchanged.json");
    std::fs::write(&file, part.to_string()).unwrap();
    let out = smelt(&["merge", &file.display().to_string()]);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
