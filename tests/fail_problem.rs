//! Malformed problem files: every file in `tests/data/fail_problem/` is rejected with a
//! diagnostic that points into it (when read, or when bound to `examples/sgd.opt`), and
//! the rendered diagnostics are pinned by snapshots.

use std::collections::BTreeMap;
use std::path::Path;

fn render_rejection(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let source = std::fs::read_to_string(path).unwrap();
    let d = match smelt::problem::load(&source) {
        Err(d) => d,
        Ok(problem) => {
            let rule = smelt::check(&std::fs::read_to_string("examples/sgd.opt").unwrap()).unwrap();
            match smelt::verify::prepare(rule, problem, &[1], &BTreeMap::new()) {
                Err(smelt::verify::Error::Problem(d)) => d,
                Err(e) => panic!("{name}: not a problem-file diagnostic: {e:?}"),
                Ok(_) => panic!("{name} was accepted, but it is malformed"),
            }
        }
    };
    smelt::diagnostic::render(&[*d], &name, &source)
}

#[test]
fn diagnostics() {
    insta::glob!("data/fail_problem/*.prob", |path| {
        let rendered = render_rejection(path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            rendered.contains(&format!("{name}:")),
            "{name}: the diagnostic does not name the file:\n{rendered}"
        );
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn every_example_problem_loads() {
    for entry in std::fs::read_dir("examples/problems").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "prob") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        if let Err(d) = smelt::problem::load_in(&source, path.parent().unwrap()) {
            panic!(
                "{}",
                smelt::diagnostic::render(&[*d], &path.display().to_string(), &source)
            );
        }
    }
}
