//! `smelt verify` end to end: the weak-error slopes the theory promises, measured by
//! simulating each optimizer beside its derived SMEs (DESIGN.md §4, issue "verify").
//!
//! Every run is seeded, so each number here is deterministic; the tolerances are the
//! issue's (slope within 0.1 of the order) and the fits' own 95% intervals, which come
//! from the measured standard errors. A slope that missed its order would fail these
//! tests, and so would a wrong drift: `a_wrong_sme_fails_its_order` checks that the
//! method can tell.

#![allow(
    clippy::print_stderr,
    reason = "the measured slopes are shown with --nocapture"
)]

use smelt::experiment::verify::{self, Prepared, Series};
use std::collections::BTreeMap;

fn prepare(opt: &str, problem: &str, orders: &[u32], set: &[(&str, f64)]) -> Prepared {
    prepare_source(&std::fs::read_to_string(opt).unwrap(), problem, orders, set)
}

fn prepare_source(src: &str, problem: &str, orders: &[u32], set: &[(&str, f64)]) -> Prepared {
    let rule = smelt::check(src).unwrap();
    let psrc = std::fs::read_to_string(problem).unwrap();
    let p = smelt::problem::load(&psrc).unwrap();
    let set: BTreeMap<String, f64> = set.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    match verify::prepare(rule, p, orders, &set) {
        Ok(p) => p,
        Err(e) => panic!("prepare failed: {e:?}"),
    }
}

/// The run `smelt verify` makes at its defaults: 65 536 paths, and the grid extended to
/// smaller steps within 8× the given grid's path-steps while a verdict is unsettled.
fn run_defaults(p: &mut Prepared, seed: u64) -> Vec<Series> {
    let etas = p.problem.etas.clone().unwrap();
    let paths = 65536;
    let budget = 8 * verify::path_steps(p, &etas, paths).unwrap();
    let mut sim = |plan: &smelt::internals::sim::weak::Plan| {
        smelt::internals::sim::weak::run(
            plan,
            &smelt::internals::sim::weak::Sampling::new(paths, seed),
            &|_| {},
        )
    };
    let (_, s, ext) = verify::run_extending(p, &etas, paths, 8, budget, &mut sim).unwrap();
    eprintln!("{ext:?}");
    s
}

fn series<'a>(all: &'a [Series], order: u32, obs: &str) -> &'a Series {
    all.iter()
        .find(|s| s.order == order && s.observable == obs)
        .unwrap()
}

/// The slope is within 0.1 of the order and its 95% interval excludes the other orders;
/// the SDE's own bias is far below every resolved error; coupling pays off.
fn assert_order(s: &Series, what: &str) {
    let slope = s.slope.unwrap_or(f64::NAN);
    let hw = s.half_width.unwrap_or(f64::NAN);
    eprintln!(
        "{what}: order {} on {}: slope {slope:.3} ± {hw:.3} (local {:?}, dropped {})",
        s.order, s.observable, s.local_slopes, s.dropped
    );
    assert!(
        (slope - s.order as f64).abs() <= 0.1,
        "{what}: slope {slope} is not within 0.1 of {}",
        s.order
    );
    assert!(s.pass, "{what}: {}", s.verdict);
    for p in s.points.iter().filter(|p| p.resolved) {
        assert!(
            p.discretization.abs() + 3.0 * p.discretization_se < 0.1 * p.error.abs(),
            "{what}: at η = {} the SDE bias estimate {} ± {} is not far below the error {}",
            p.eta,
            p.discretization,
            p.discretization_se,
            p.error
        );
    }
    let last = s.points.last().unwrap();
    assert!(
        last.coupling_gain > 5.0,
        "{what}: coupling gain {}",
        last.coupling_gain
    );
}

#[test]
fn sgd_double_well_1d_has_orders_1_and_2() {
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/double_well.prob",
        &[1, 2],
        &[],
    );
    let s = run_defaults(&mut p, 1);
    for obs in ["sq", "cos"] {
        assert_order(series(&s, 1, obs), "SGD 1-D");
        assert_order(series(&s, 2, obs), "SGD 1-D");
    }
}

#[test]
fn sgd_double_well_2d_has_orders_1_and_2() {
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/double_well_2d.prob",
        &[1, 2],
        &[],
    );
    let etas = p.problem.etas.clone().unwrap();
    let (_, s) = verify::run(&mut p, &etas, 16384, 2, 8).unwrap();
    for obs in ["sq", "x1"] {
        assert_order(series(&s, 1, obs), "SGD 2-D");
        assert_order(series(&s, 2, obs), "SGD 2-D");
    }
}

#[test]
fn heavy_ball_has_orders_1_and_2() {
    let mut p = prepare(
        "examples/momentum.opt",
        "examples/problems/double_well.prob",
        &[1, 2],
        &[("lambda", 1.0)],
    );
    let s = run_defaults(&mut p, 3);
    assert_order(series(&s, 1, "sq"), "heavy ball");
    assert_order(series(&s, 2, "sq"), "heavy ball");
}

#[test]
fn adam_in_the_malladi_regime_has_order_1_in_the_time_per_step() {
    let mut p = prepare(
        "examples/adam.opt",
        "examples/problems/adam_double_well.prob",
        &[1],
        &[],
    );
    let etas = p.problem.etas.clone().unwrap();
    let (stats, s) = verify::run(&mut p, &etas, 8192, 4, 8).unwrap();
    // One step is time η²: the order is the slope against τ = η², not η.
    for st in &stats {
        assert!((st.tau - st.eta * st.eta).abs() < 1e-15);
    }
    // The slope is order 1 to within 0.05. (The fit's interval, 1.02 ± 0.01 at these
    // paths, excludes 1 by a hair: the rule calls that contradicted; what is left of
    // the pre-asymptotic bias is not yet in the interval, see the report.)
    let adam = series(&s, 1, "sq");
    let slope = adam.slope.unwrap();
    eprintln!("Adam order 1: {}", adam.verdict);
    assert!((slope - 1.0).abs() < 0.05, "{}", adam.verdict);
    // Under general noise the derivation reaches no order (the third moment of Δm must
    // vanish); on this problem's Gaussian noise it does, so the order-1 coefficients
    // are judged as order 1, and a note says why. Under other noise they would not be.
    let adam = series(&s, 1, "sq");
    assert_eq!((adam.asked, adam.derived, adam.judged), (1, 0, 1));
    assert_eq!(verify::order_on_problem(&p.smes[0], false), 0);
    assert!(verify::render_text("", &s).contains(
        "SME order 1 asked, no order derived (order 1 on this problem: its noise has no third moment)"
    ));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut p = prepare(
        "examples/momentum.opt",
        "examples/problems/double_well.prob",
        &[1, 2],
        &[("lambda", 1.0)],
    );
    let plan = verify::plan(&mut p, 0.125, 8).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            smelt::internals::sim::weak::run(
                &plan,
                &smelt::internals::sim::weak::Sampling::new(64 * 40, 9),
                &|_| {},
            )
        })
    };
    let (a, b) = (run(1), run(2));
    for (x, y) in a.opt.iter().zip(&b.opt) {
        assert_eq!(x, y);
    }
    for (x, y) in a.orders.iter().flatten().zip(b.orders.iter().flatten()) {
        assert_eq!((x.err, x.disc, x.sde), (y.err, y.disc, y.sde));
    }
}

#[test]
fn a_wrong_sme_fails_its_order() {
    // The order-2 SME with its η-correction of the drift halved is a wrong SME of
    // order 1: the method must not call it order 2.
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/double_well.prob",
        &[2],
        &[],
    );
    let small = p.smes[0].small;
    let drift = &mut p.smes[0].drift[0];
    let mut changed = 0;
    for c in drift.terms.values_mut() {
        if c.min_power(small) == Some(1) {
            *c = c.scale(&smelt::internals::algebra::poly::rat(1, 2));
            changed += 1;
        }
    }
    assert!(changed > 0, "the order-2 drift has an η term");
    let etas = p.problem.etas.clone().unwrap();
    let (_, s) = verify::run(&mut p, &etas, 16384, 1, 8).unwrap();
    let bad = series(&s, 2, "sq");
    eprintln!("wrong SME: {} (local {:?})", bad.verdict, bad.local_slopes);
    assert!(!bad.pass, "a wrong drift passed: {}", bad.verdict);
    let (slope, hw) = (bad.slope.unwrap(), bad.half_width.unwrap());
    assert!(slope + hw < 1.5, "its error is O(η): {}", bad.verdict);
    assert_eq!(
        bad.status,
        smelt::report::Status::Contradicted,
        "{}",
        bad.verdict
    );
    assert!(
        bad.verdict.contains("contradicts derived order 2"),
        "{}",
        bad.verdict
    );
    assert!(verify::render_text("", &s).contains("CONTRADICTED"));
}

/// An SME whose order-2 drift term is dropped is the order-1 SME claiming order 2: on a
/// linear-Gaussian problem its exact weak error is O(η), and the verdict (the one rule
/// behind the table, the JSON and the plot) says that this contradicts order 2, where
/// the true order-2 SME confirms it.
#[test]
fn an_sme_missing_its_order_2_drift_is_contradicted() {
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/quadratic.prob",
        &[2, 2],
        &[],
    );
    let small = p.smes[1].small;
    let before = p.smes[1].drift[0].terms.len();
    p.smes[1]
        .drift
        .iter_mut()
        .for_each(|b| b.terms.retain(|_, c| c.min_power(small) != Some(1)));
    assert!(
        p.smes[1].drift[0].terms.len() < before,
        "the drift had an η term"
    );
    assert_eq!(p.smes[1].order, 2, "the wrong SME still claims order 2");
    let etas = p.problem.etas.clone().unwrap();
    let s = verify::exact(&mut p, &etas).unwrap();
    let names: Vec<String> = p
        .problem
        .observables
        .iter()
        .map(|o| o.name.clone())
        .collect();
    for (k, se) in s.iter().enumerate() {
        eprintln!("{}: {}", se.observable, se.verdict);
        let right = k < names.len();
        if right {
            assert_eq!(
                se.status,
                smelt::report::Status::Confirmed,
                "{}",
                se.verdict
            );
            assert!(se.pass && se.verdict.contains("confirms order 2"));
        } else {
            assert_eq!(
                se.status,
                smelt::report::Status::Contradicted,
                "{}",
                se.verdict
            );
            assert!(!se.pass);
            assert!(
                se.verdict.contains("contradicts derived order 2"),
                "{}",
                se.verdict
            );
        }
    }
    let text = verify::render_text("", &s);
    assert!(text.contains("CONTRADICTED"), "{text}");
}

#[test]
fn divergent_step_sizes_are_reported_not_averaged() {
    // Steep quartic: SGD blows up at η = 1 from x0 = 2 (|x| grows like x³ per step,
    // past the largest double in six steps).
    let src = std::fs::read_to_string("examples/sgd.opt").unwrap();
    let rule = smelt::check(&src).unwrap();
    let prob = smelt::problem::load(
        "problem steep\n dim 1\n objective f(x) = sum(x^4)\n noise gaussian cov = 0.1\n start x = 2\n horizon 8\n observe sq = sum(x^2)\n",
    )
    .unwrap();
    let mut p = verify::prepare(rule, prob, &[1], &BTreeMap::new()).unwrap();
    let (stats, s) = verify::run(&mut p, &[1.0, 0.01, 0.005, 0.0025], 256, 1, 8).unwrap();
    let d = stats[0].opt_divergence.expect("η = 1 diverges");
    assert!((4..=8).contains(&d.step), "diverged at step {}", d.step);
    assert_eq!(d.paths, 256);
    let first = &series(&s, 1, "sq").points[0];
    assert_eq!(first.diverged_in, Some("optimizer"));
    assert!(!first.resolved);
    assert!(stats[1..].iter().all(|st| st.opt_divergence.is_none()));
}

/// An exact-mode series: its slope within 0.01 of its order (to two decimals).
fn assert_exact_order(se: &Series, what: &str) {
    let slope = se.slope.unwrap();
    eprintln!(
        "{what} exact: order {} on {}: slope {slope:.4} ± {:.4} (local {:?})",
        se.order,
        se.observable,
        se.half_width.unwrap(),
        se.local_slopes
    );
    assert!(
        (slope - se.order as f64).abs() < 0.01,
        "{what}: {}",
        se.verdict
    );
}

#[test]
fn exact_mode_gives_orders_1_and_2_to_two_decimals() {
    for (opt, set) in [
        ("examples/sgd.opt", vec![]),
        ("examples/momentum.opt", vec![("lambda", 1.5)]),
        ("examples/nesterov.opt", vec![("lambda", 1.5)]),
    ] {
        let mut p = prepare(opt, "examples/problems/quadratic.prob", &[1, 2], &set);
        let etas = p.problem.etas.clone().unwrap();
        let s = verify::exact(&mut p, &etas).unwrap();
        for se in &s {
            assert_exact_order(se, opt);
            assert!(se.pass, "{opt}: {}", se.verdict);
            // No sampling: every error is exact and non-zero.
            assert!(se.points.iter().all(|q| q.std_err == 0.0 && q.error != 0.0));
        }
    }
}

#[test]
fn exact_mode_refuses_what_is_not_linear_gaussian() {
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/double_well.prob",
        &[1],
        &[],
    );
    let Err(verify::Error::Other(msg)) = verify::exact(&mut p, &[0.1]) else {
        panic!("the double well is not quadratic")
    };
    assert!(msg.contains("not quadratic"), "{msg}");
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/double_well_2d.prob",
        &[1],
        &[],
    );
    let Err(verify::Error::Other(msg)) = verify::exact(&mut p, &[0.1]) else {
        panic!("the 2-D double well is not quadratic")
    };
    assert!(msg.contains("linear-Gaussian"), "{msg}");
}

/// One rule, read by every output: on a set of fits (among them the 0.72 ± 0.42
/// against order 1, undetermined, and 1.89 ± 0.05 against order 2, whose interval
/// [1.84, 1.94] excludes 2: contradicted), the table, the JSON and the plot's legend
/// say the same thing, and what resolves an undetermined verdict in exact mode is never
/// more paths.
#[test]
fn text_json_and_plot_agree_on_every_verdict() {
    use smelt::report::{Fit, Mode, Status};
    let fit = |slope: f64, half_width: f64| Fit {
        slope,
        half_width,
        local: Vec::new(),
        dropped: 0,
    };
    let point = |eta: f64, error: f64| verify::ErrorPoint {
        eta,
        tau: eta,
        steps: (1.0 / eta) as usize,
        error,
        std_err: 1e-3 * error.abs(),
        discretization: 0.0,
        discretization_se: 0.0,
        coupling_gain: 10.0,
        resolved: true,
        diverged: None,
        diverged_in: None,
        refused: None,
        not_finite: None,
    };
    let cases = [
        ((1, 1, 1), 0.72, 0.42, Mode::Sampled, Status::Undetermined),
        ((2, 2, 2), 1.89, 0.05, Mode::Sampled, Status::Contradicted),
        ((2, 2, 2), 1.98, 0.04, Mode::Sampled, Status::Confirmed),
        ((3, 2, 2), 2.01, 0.03, Mode::Exact, Status::Confirmed),
        ((2, 2, 2), 2.05, 0.3, Mode::Exact, Status::Undetermined),
        ((1, 1, 1), 1.31, 0.08, Mode::Sampled, Status::Contradicted),
    ];
    let series: Vec<Series> = cases
        .iter()
        .enumerate()
        .map(|(k, &(orders, slope, hw, mode, _))| {
            let pts = vec![point(0.1, 0.01), point(0.05, 0.0025)];
            Series::judge(orders, format!("phi{k}"), pts, Some(fit(slope, hw)), mode)
        })
        .collect();
    let text = verify::render_text("", &series);
    let json = serde_json::to_value(&series).unwrap();
    let plot = verify::plot_named("R", "P", "eta", &series);
    let svg = smelt::report::plot::verify::svg(&plot);
    for (k, ((_, slope, hw, mode, want), s)) in cases.iter().zip(&series).enumerate() {
        assert_eq!(s.status, *want, "{}", s.verdict);
        let fig = format!("{slope:.2} ± {hw:.2}");
        // The table: the verdict line, with the figure and the verb.
        assert!(text.contains(&format!("  {}\n", s.verdict)), "{text}");
        assert!(s.verdict.contains(&fig) && s.verdict.contains(want.verb()));
        // The JSON.
        let j = &json[k];
        let word = serde_json::to_value(want).unwrap();
        assert_eq!(j["status"], word, "{j}");
        assert_eq!(j["pass"], *want == Status::Confirmed, "{j}");
        assert_eq!(j["verdict"], s.verdict.as_str());
        // The plot's legend: the same figure and verb, red exactly when contradicted.
        let line = &plot.series[k];
        let legend = line.notes.last().unwrap();
        assert_eq!(legend, &s.short);
        assert!(
            legend.contains(&fig) && legend.contains(want.verb()),
            "{legend}"
        );
        assert!(svg.contains(legend.as_str()), "{legend}");
        assert_eq!(line.alarm, *want == Status::Contradicted);
        if *want == Status::Undetermined {
            let r = j["resolve"].as_str().unwrap();
            assert_eq!(r.contains("more paths"), *mode == Mode::Sampled, "{r}");
            assert!(s.verdict.contains(r));
        } else {
            assert!(j.get("resolve").is_none(), "{j}");
        }
    }
    // A capped order is labelled as such everywhere.
    assert!(
        text.contains("SME order 3 asked, order 2 derived · φ = phi3"),
        "{text}"
    );
    assert_eq!(
        (json[3]["asked"].clone(), json[3]["derived"].clone()),
        (3.into(), 2.into())
    );
    assert!(plot.series[3]
        .notes
        .contains(&"order 3 asked, order 2 derived".to_string()));
    assert!(text.contains("CONTRADICTED"), "{text}");
}

/// Adam's order-2 SME is no SDE at the problem's step sizes (its diffusion matrix is not
/// positive semidefinite at the start): verify used to refuse the whole run; now those
/// step sizes are marked for order 2, and order 1 still runs and is fitted.
#[test]
fn an_order_whose_diffusion_is_not_psd_is_marked_and_the_others_run() {
    let mut p = prepare(
        "examples/adam.opt",
        "examples/problems/adam_double_well.prob",
        &[1, 2],
        &[],
    );
    let etas = p.problem.etas.clone().unwrap();
    let (stats, s) = verify::run(&mut p, &etas, 2048, 4, 8).expect("order 1 still runs");
    assert!(stats.iter().all(|st| st.refused[0].is_none()));
    let two = series(&s, 2, "sq");
    let refused: Vec<&str> = two
        .points
        .iter()
        .filter_map(|q| q.refused.as_deref())
        .collect();
    assert!(!refused.is_empty());
    assert!(
        refused[0].contains("not positive semidefinite"),
        "{}",
        refused[0]
    );
    assert!(two
        .points
        .iter()
        .filter(|q| q.refused.is_some())
        .all(|q| !q.resolved));
    let text = verify::render_text("", &s);
    assert!(
        text.contains("not simulated: D is not positive semidefinite"),
        "{text}"
    );
    let one = series(&s, 1, "sq");
    assert!(one.points.iter().all(|q| q.refused.is_none() && q.resolved));
    assert!(one.slope.is_some(), "{}", one.verdict);
    if two.points.iter().all(|q| q.refused.is_some()) {
        assert_eq!(two.status, smelt::report::Status::Undetermined);
        assert!(!two.verdict.contains("paths"), "{}", two.verdict);
    }
}

/// The grid extends to smaller steps by itself within its budget, deterministically:
/// the steps added follow the grid's ratio, the path-steps used never pass the budget,
/// a budget of the grid's own count adds nothing, and two runs agree bit for bit.
#[test]
fn the_grid_extends_within_its_budget_deterministically() {
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/double_well.prob",
        &[2],
        &[],
    );
    // Few paths and large steps: the verdicts stay unsettled, so the run extends.
    let etas = [0.25, 0.125, 0.0625];
    let paths = 128;
    let grid = verify::path_steps(&mut p, &etas, paths).unwrap();
    assert_eq!(grid, 128 * (4 + 8 + 16));
    let mut run = |budget: u64| {
        let mut sim = |plan: &smelt::internals::sim::weak::Plan| {
            smelt::internals::sim::weak::run(
                plan,
                &smelt::internals::sim::weak::Sampling::new(paths, 7),
                &|_| {},
            )
        };
        verify::run_extending(&mut p, &etas, paths, 8, budget, &mut sim).unwrap()
    };
    let (_, _, none) = run(grid);
    assert!(none.added.is_empty());
    assert_eq!(none.used, grid);
    let budget = grid + 128 * (32 + 64);
    let (stats, s, ext) = run(budget);
    eprintln!("{ext:?}");
    assert!(ext.used <= budget);
    if !ext.resolved {
        assert_eq!(ext.added, vec![0.03125, 0.015625]);
        assert_eq!(ext.used, budget);
    }
    assert_eq!(stats.len(), etas.len() + ext.added.len());
    assert_eq!(
        verify::next_eta(&[0.5, 0.35355339, 0.25]),
        0.25 * 0.25 / 0.35355339
    );
    let (_, again, ext2) = run(budget);
    assert_eq!(ext, ext2);
    for (a, b) in s.iter().zip(&again) {
        assert_eq!(a.verdict, b.verdict);
        for (x, y) in a.points.iter().zip(&b.points) {
            assert_eq!(x.error.to_bits(), y.error.to_bits());
        }
    }
}

/// A wrong order-1 SME, its drift 1.1 × −∇f, is an O(1) error: contradicted, however
/// the fit's interval holds the model's bias beyond the first correction.
#[test]
fn an_order_1_sme_with_a_wrong_drift_is_contradicted() {
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/double_well.prob",
        &[1],
        &[],
    );
    let small = p.smes[0].small;
    let mut changed = 0;
    for c in p.smes[0].drift[0].terms.values_mut() {
        if c.min_power(small) == Some(0) {
            *c = c.scale(&smelt::internals::algebra::poly::rat(11, 10));
            changed += 1;
        }
    }
    assert!(changed > 0, "the order-1 drift has an η⁰ term");
    let etas = p.problem.etas.clone().unwrap();
    let (_, s) = verify::run(&mut p, &etas, 16384, 1, 8).unwrap();
    for obs in ["sq", "cos"] {
        let bad = series(&s, 1, obs);
        eprintln!("wrong order-1 drift, {obs}: {}", bad.verdict);
        assert_eq!(
            bad.status,
            smelt::report::Status::Contradicted,
            "{}",
            bad.verdict
        );
    }
}

/// A test function that is not finite (NaN here, from the log of a negative number) is
/// named with the step size and left out, row by row; the other test functions keep
/// every path and their verdicts, and no NaN reaches a slope or the table.
#[test]
fn a_test_function_that_is_not_finite_is_named_and_left_out() {
    let src = std::fs::read_to_string("examples/sgd.opt").unwrap();
    let rule = smelt::check(&src).unwrap();
    for bad in ["log(x[1] - 10)", "1/(x[1] - x[1])"] {
        let prob = smelt::problem::load(&format!(
            "problem p\n dim 1\n objective f(x) = sum(x^4/4 - x^2/2)\n noise gaussian cov = 0.5\n start x = 0.5\n horizon 1\n observe sq = sum(x^2)\n observe bad = {bad}\n"
        ))
        .unwrap();
        let mut p = verify::prepare(rule.clone(), prob, &[1], &BTreeMap::new()).unwrap();
        let etas = [0.25, 0.125, 0.0625, 0.03125];
        let (_, s) = verify::run(&mut p, &etas, 4096, 1, 8).unwrap();
        let b = series(&s, 1, "bad");
        assert!(b.slope.is_none(), "{bad}: {:?}", b.slope);
        assert!(b.points.iter().all(|q| !q.resolved));
        let why = b.points[0].not_finite.as_deref().expect("named");
        assert!(why.contains("φ = bad") && why.contains("2.500e-1"), "{why}");
        assert!(!b.verdict.contains("paths"), "{}", b.verdict);
        let text = verify::render_text("", &s);
        for num in ["+NaN", "-NaN", " NaN×", "slope NaN"] {
            assert!(!text.contains(num), "{text}");
        }
        assert!(text.contains("φ = bad is not finite"), "{text}");
        // The good one is untouched: every path, a fit.
        let good = series(&s, 1, "sq");
        assert!(good
            .points
            .iter()
            .all(|q| q.not_finite.is_none() && q.resolved));
        assert!(good.slope.is_some_and(f64::is_finite), "{}", good.verdict);
    }
}

/// Adam's order-2 SME is no SDE at any step size: the extension does not spend the
/// budget on it, and says so; order 1 alone decides whether the grid extends.
#[test]
fn a_series_that_is_never_simulable_does_not_extend_the_grid() {
    let mut p = prepare(
        "examples/adam.opt",
        "examples/problems/adam_double_well.prob",
        &[1, 2],
        &[],
    );
    let etas = p.problem.etas.clone().unwrap();
    let paths = 1024;
    let budget = 8 * verify::path_steps(&mut p, &etas, paths).unwrap();
    let mut sim = |plan: &smelt::internals::sim::weak::Plan| {
        smelt::internals::sim::weak::run(
            plan,
            &smelt::internals::sim::weak::Sampling::new(paths, 5),
            &|_| {},
        )
    };
    let (_, s, ext) = verify::run_extending(&mut p, &etas, paths, 8, budget, &mut sim).unwrap();
    eprintln!("{ext:?}");
    assert!(series(&s, 2, "sq")
        .points
        .iter()
        .all(|q| q.refused.is_some()));
    assert_eq!(ext.skipped.len(), 1, "{ext:?}");
    assert!(ext.skipped[0].contains("order 2"), "{ext:?}");
    assert!(ext.describe("eta").contains("not extended for order 2"));
    // Whatever was added was for order 1, which is unsettled only if it says so.
    if !ext.added.is_empty() {
        assert_ne!(series(&s, 1, "sq").status, smelt::report::Status::Confirmed);
    }
}

/// Exact mode extends an unsettled grid to smaller steps within its budget (of
/// optimizer steps), and a settled one not at all.
#[test]
fn exact_mode_extends_an_unsettled_grid() {
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/quadratic.prob",
        &[1, 2],
        &[],
    );
    // Two large steps: too few points to fit; smaller ones settle it.
    let etas = [0.25, 0.125];
    let before = verify::exact(&mut p, &etas).unwrap();
    assert!(before.iter().all(|s| !s.pass));
    let budget = 1 << 12;
    let (s, ext) = verify::exact_extending(&mut p, &etas, budget).unwrap();
    eprintln!("{ext:?}");
    assert!(!ext.added.is_empty() && ext.used <= budget);
    assert_eq!(ext.added[0], 0.0625);
    for se in &s {
        assert!(se.pass, "{}", se.verdict);
        assert!(!se.verdict.contains("paths"));
    }
    let given = verify::exact_steps(&p, &etas).unwrap();
    let (_, none) = verify::exact_extending(&mut p, &etas, given).unwrap();
    assert!(none.added.is_empty());
}

/// `--time-steps`: times per step become values of the small parameter through the
/// rule's `time` (τ = η² for Adam, τ = h for heavy ball), and back.
#[test]
fn time_steps_convert_through_the_rules_time() {
    let p = prepare(
        "examples/adam.opt",
        "examples/problems/adam_double_well.prob",
        &[1],
        &[],
    );
    let taus = [0.125, 0.0625];
    let etas = verify::etas_for_times(&p, &taus).unwrap();
    for (e, t) in etas.iter().zip(taus) {
        assert!((e * e - t).abs() < 1e-14, "{e}");
    }
    assert!(!verify::time_is_small(&p));
    let p = prepare(
        "examples/momentum.opt",
        "examples/problems/double_well.prob",
        &[1],
        &[("lambda", 1.0)],
    );
    assert_eq!(verify::etas_for_times(&p, &taus).unwrap(), taus.to_vec());
    assert!(verify::time_is_small(&p));
}

/// The grid's path-steps count what the plans simulate.
#[test]
fn path_steps_count_the_plans_steps() {
    let mut p = prepare(
        "examples/adam.opt",
        "examples/problems/adam_double_well.prob",
        &[1],
        &[],
    );
    let etas = p.problem.etas.clone().unwrap();
    let lanes = smelt::internals::numeric::tape::LANES;
    let mut want = 0;
    for &e in &etas {
        want += lanes as u64 * verify::plan(&mut p, e, 8).unwrap().steps as u64;
    }
    assert_eq!(verify::path_steps(&mut p, &etas, lanes).unwrap(), want);
}

/// An example with a fixed momentum, its rate set to `mu`.
fn with_momentum(example: &str, mu: &str) -> String {
    let src = std::fs::read_to_string(example).unwrap();
    assert!(src.contains("let mu = 9/10"), "{example}");
    src.replace("let mu = 9/10", &format!("let mu = {mu}"))
}

/// Fixed momentum (issue 19): the fast state is eliminated, the optimizer starts on its
/// slow manifold, and the exact laws give the orders of the reduced SMEs to two
/// decimals with μ = 1/2 (η = 2⁻⁶ … 2⁻¹⁰). With μ = 9/10 the expansion's constants grow as (1 − μ)⁻³
/// (950η∇²f∇f against 10∇f), so the asymptotic regime starts near η = 2⁻¹¹: on
/// η = 2⁻¹² … 2⁻¹⁶ the slopes are again within 0.01 (local slopes 1.93 → 1.99 for
/// order 2).
#[test]
fn fixed_momentum_exact_mode_gives_orders_1_and_2() {
    let grid = |from: i32, to: i32| (from..=to).map(|k| 2f64.powi(-k)).collect::<Vec<_>>();
    for (example, mu, etas) in [
        ("examples/heavy_ball_fixed.opt", "1/2", grid(6, 10)),
        ("examples/nesterov_fixed.opt", "1/2", grid(6, 10)),
        ("examples/heavy_ball_fixed.opt", "9/10", grid(12, 16)),
        ("examples/nesterov_fixed.opt", "9/10", grid(12, 16)),
    ] {
        let src = with_momentum(example, mu);
        let mut p = prepare_source(&src, "examples/problems/quadratic.prob", &[1, 2], &[]);
        let s = verify::exact(&mut p, &etas).unwrap();
        for se in &s {
            assert_exact_order(se, &format!("{example} mu = {mu}"));
        }
    }
}

/// Heavy ball with μ = 1/2 on the double well, Monte Carlo at the defaults (the
/// optimizer on its slow manifold, the SDE's noise coupled through the fast state):
/// order 1 confirmed; order 2's slope within 0.1 of 2 with an interval that excludes 1
/// and 3, though at 65,536 paths wider than the ±0.1 of a confirmation (4,194,304 paths
/// confirm it: README, *Fast states*).
#[test]
fn heavy_ball_with_fixed_momentum_has_orders_1_and_2() {
    let src = with_momentum("examples/heavy_ball_fixed.opt", "1/2");
    let mut p = prepare_source(&src, "examples/problems/double_well.prob", &[1, 2], &[]);
    let s = run_defaults(&mut p, 5);
    for obs in ["sq", "cos"] {
        assert_order(series(&s, 1, obs), "heavy ball, mu = 1/2");
        let two = series(&s, 2, obs);
        let (slope, hw) = (two.slope.unwrap(), two.half_width.unwrap());
        eprintln!("heavy ball, mu = 1/2: order 2 on {obs}: {slope:.3} ± {hw:.3}");
        assert!((slope - 2.0).abs() <= 0.1, "{}", two.verdict);
        assert!(slope - hw > 1.0 && slope + hw < 3.0, "{}", two.verdict);
    }
}

/// Runs the grid as given (no extension) with the paths in antithetic pairs.
fn run_antithetic(
    p: &mut Prepared,
    etas: &[f64],
    paths: usize,
    seed: u64,
    substeps: usize,
) -> Vec<Series> {
    let sampling = smelt::internals::sim::weak::Sampling {
        paths,
        seed,
        antithetic: true,
    };
    let mut sim = |plan: &smelt::internals::sim::weak::Plan| {
        let st = smelt::internals::sim::weak::run(plan, &sampling, &|_| {});
        // Each pair is one sample, and the pairs cover every path.
        for a in &st.opt {
            assert_eq!((a.n, a.paths), (paths as f64 / 2.0, paths as f64));
        }
        st
    };
    verify::run_extending(p, etas, paths, substeps, 0, &mut sim)
        .unwrap()
        .1
}

/// Antithetic pairs keep the estimator unbiased. On the linear-Gaussian quadratic, exact
/// mode propagates both sides' means and covariances with no sampling (a computation
/// independent of the simulation); the weak errors that antithetic pairs estimate agree
/// with it within 4 standard errors plus the SDE's own bias estimate, for SGD and for
/// heavy ball with a fixed momentum (its fast state started on its slow manifold).
#[test]
fn antithetic_pairs_estimate_the_exact_errors() {
    for (src, set) in [
        (std::fs::read_to_string("examples/sgd.opt").unwrap(), vec![]),
        (
            with_momentum("examples/heavy_ball_fixed.opt", "1/2"),
            vec![],
        ),
    ] {
        let etas = [2f64.powi(-4), 2f64.powi(-5), 2f64.powi(-6)];
        let mut p = prepare_source(&src, "examples/problems/quadratic.prob", &[1, 2], &set);
        let exact = verify::exact(&mut p, &etas).unwrap();
        let mc = run_antithetic(&mut p, &etas, 8192, 3, 8);
        for (e, m) in exact.iter().zip(&mc) {
            assert_eq!((e.order, &e.observable), (m.order, &m.observable));
            for (a, b) in e.points.iter().zip(&m.points) {
                let tol = 4.0 * b.std_err + 2.0 * b.discretization.abs() + 1e-9;
                eprintln!(
                    "order {} {} η = {}: exact {:.6e}, pairs {:.6e} ± {:.1e}",
                    e.order, e.observable, a.eta, a.error, b.error, b.std_err
                );
                assert!(
                    (a.error - b.error).abs() <= tol,
                    "order {} {} at η = {}: exact {} against {} ± {}",
                    e.order,
                    e.observable,
                    a.eta,
                    a.error,
                    b.error,
                    b.std_err
                );
            }
        }
    }
}

/// Fixed momentum μ = 9/10 on the double well over T = 1/8 (issue 19). A path's error
/// carries the fast state's end fluctuation C(v_N − v̄), about 15η per path against an
/// O(η²) mean: independent paths need about 10¹¹ path-steps to resolve order 2. That
/// fluctuation is odd in the noise, so antithetic pairs cancel it (at η = 2⁻¹³ the
/// standard error falls about 25×, measured). On η = 2⁻¹² … 2⁻¹⁵, where the expansion
/// is asymptotic (see `fixed_momentum_exact_mode_gives_orders_1_and_2`), heavy ball's
/// order 2 is then confirmed at 16,384 paths (seeds 1–3: 2.01, 1.99, 1.96 ± 0.07). (Order 1 and Nesterov confirm too, on the
/// same grid: README, *Fast states*; left out here for the test's time, as are half the
/// SDE's substeps, whose bias estimate stays far below the errors, which `assert_order`
/// checks.)
#[test]
fn fixed_momentum_nine_tenths_has_order_2_in_antithetic_pairs() {
    let example = "examples/heavy_ball_fixed.opt";
    let mut p = prepare(
        example,
        "examples/problems/double_well_short.prob",
        &[2],
        &[],
    );
    let etas = p.problem.etas.clone().unwrap();
    assert_eq!(etas, (12..=15).map(|k| 2f64.powi(-k)).collect::<Vec<_>>());
    let s = run_antithetic(&mut p, &etas, 16384, 1, 4);
    for obs in ["sq", "cos"] {
        assert_order(series(&s, 2, obs), example);
    }
}

/// Minibatch noise draws rows, which have no antithetic: such a run is refused with the
/// reason, not silently run with independent paths.
#[test]
fn antithetic_pairs_are_refused_with_minibatch_noise() {
    let mut p = prepare(
        "examples/sgd.opt",
        "examples/problems/logistic.prob",
        &[1],
        &[],
    );
    let config = verify::Config {
        paths: 256,
        antithetic: true,
        ..verify::Config::default()
    };
    let err = verify::execute(&mut p, &config, &|_| {}).unwrap_err();
    let text = format!("{err}");
    assert!(
        text.contains("minibatch") && text.contains("--antithetic"),
        "{text}"
    );
}
