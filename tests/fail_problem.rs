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
            match smelt::experiment::verify::prepare(rule, problem, &[1], &BTreeMap::new()) {
                Err(smelt::experiment::verify::Error::Problem(d)) => d,
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

const SGD_W: &str =
    "optimizer SGD\n  param w\n  small eta\n  noise xi ~ general\n  w = w - eta*(grad f(w) + xi)\n";
const HEAVY_BALL: &str = "optimizer HB\n  param x\n  state v\n  small h\n  time h\n  noise xi ~ general\n  v = v - h*(grad f(x) + xi)\n  x = x + h*v\n";

/// Binds a problem (given by its variable names) to a rule.
fn bind(
    rule: &str,
    problem: &str,
) -> Result<smelt::experiment::verify::Prepared, (smelt::experiment::verify::Error, String)> {
    let rule = smelt::check(rule).unwrap();
    let p = smelt::problem::load(problem).map_err(|d| {
        let shown = smelt::diagnostic::render(&[*d.clone()], "p.prob", problem);
        (smelt::experiment::verify::Error::Problem(d), shown)
    })?;
    smelt::experiment::verify::prepare(rule, p, &[1], &BTreeMap::new()).map_err(|e| {
        let shown = match &e {
            smelt::experiment::verify::Error::Problem(d) => {
                smelt::diagnostic::render(&[*d.clone()], "p.prob", problem)
            }
            other => format!("{other:?}"),
        };
        (e, shown)
    })
}

fn problem(var: &str, start: &str, observe: &str) -> String {
    format!(
        "problem p\n  dim 2\n  objective f({var}) = sum({var}^2)\n  noise gaussian cov = 1\n  \
         start {start} = [1, 2]\n  horizon 1\n  observe s = {observe}[1] + 10*{observe}[2]\n"
    )
}

/// With `param w`, the problem may name the parameter `w` (the rule's name) or `x` (the
/// objective's variable) in the objective, the start and the test functions alike.
#[test]
fn the_rules_parameter_name_works_everywhere_in_the_problem_file() {
    for (var, start, observe) in [
        ("w", "w", "w"),
        ("x", "x", "x"),
        ("x", "w", "w"),
        ("x", "x", "w"),
        ("x", "w", "x"),
    ] {
        let source = problem(var, start, observe);
        let p = match bind(SGD_W, &source) {
            Ok(p) => p,
            Err((_, shown)) => panic!("f({var}), start {start}, observe {observe}:\n{shown}"),
        };
        assert_eq!(p.start, vec![1.0, 2.0], "{source}");
        // The test function reads the parameter's slots.
        let (_, g, outs) =
            smelt::internals::sim::compile::compile_observables(&p.problem, &p.layout).unwrap();
        assert_eq!(g.eval(&outs, &[3.0, 4.0]), vec![43.0], "{source}");
    }
    // A name that is neither is still an error, at its place.
    let (_, shown) = bind(SGD_W, &problem("x", "x", "y")).err().unwrap();
    assert!(shown.contains("undefined name `y`"), "{shown}");
}

/// The objective's variable may not be the name of another variable of the rule: `x`
/// would be both the parameter and that state.
#[test]
fn the_objectives_variable_may_not_name_a_state() {
    let source = problem("v", "v", "v");
    let (_, shown) = bind(HEAVY_BALL, &source).err().unwrap();
    assert!(
        shown.contains("the objective's variable `v` is also the name of a state of the rule")
            && shown.contains("p.prob:3:15")
            && shown.contains("`f(x)`"),
        "{shown}"
    );
}

/// The parameter must be started, under either of its names.
#[test]
fn the_parameter_must_be_started() {
    let source = "problem p\n  dim 1\n  objective f(x) = sum(x^2)\n  noise gaussian cov = 1\n  \
                  start v = 1\n  horizon 1\n  observe s = sum(x^2)\n";
    let (_, shown) = bind(HEAVY_BALL, source).err().unwrap();
    assert!(
        shown.contains("no start value for the parameter `x`") && shown.contains("start x = ..."),
        "{shown}"
    );
}

/// A data file is read up to a limit: `/dev/zero` never ends, and is refused once the
/// limit is read, with the limit in the message.
#[cfg(target_os = "linux")]
#[test]
fn an_endless_data_file_stops_at_the_limit() {
    let source = "problem p\n  dim 2\n  data a, y = csv(\"/dev/zero\")\n  \
                  objective f(x) = softplus(-y*dot(a, x))\n  noise minibatch size = 2\n  \
                  start x = 0\n  horizon 1\n  observe s = sum(x^2)\n";
    let started = std::time::Instant::now();
    let d = smelt::problem::load(source).err().unwrap();
    let shown = smelt::diagnostic::render(&[*d], "p.prob", source);
    assert!(
        shown.contains("`/dev/zero` is larger than 1024 MiB") && shown.contains("p.prob:3:19"),
        "{shown}"
    );
    assert!(started.elapsed().as_secs() < 30);
}
