//! Exit times (`smelt escape`): the statistics the escape issue asks for, pinned with
//! seeded runs and tolerances sized from their own standard errors.

use smelt::experiment::escape::{
    self, EtaResult, ModelResult, Options, Predictions, ScalingFit, Setup,
};
use std::collections::BTreeMap;

struct Run {
    setup: Setup,
    results: Vec<EtaResult>,
    pr: Predictions,
    fits: Vec<ScalingFit>,
}

#[allow(clippy::too_many_arguments)]
fn run(
    problem: &str,
    region: &str,
    models: &str,
    etas: &[f64],
    batches: &[f64],
    paths: usize,
    substeps: usize,
    em: bool,
) -> Run {
    let source = std::fs::read_to_string("examples/sgd.opt").unwrap();
    let rule = smelt::check(&source).unwrap();
    let problem = smelt::problem::load(problem).unwrap();
    let opts = Options {
        models: escape::parse_models(models, &rule.name).unwrap(),
        region: escape::parse_region(region).unwrap(),
        from: None,
        refine: true,
        saddle: None,
        horizon: None,
        substeps,
        em,
    };
    let mut setup = match escape::prepare(rule, problem, &BTreeMap::new(), opts) {
        Ok(s) => s,
        Err(e) => panic!("{e:?}"),
    };
    let mut results = Vec::new();
    for &b in batches {
        for &eta in etas {
            let ep = match escape::plan(&mut setup, eta, b) {
                Ok(p) => p,
                Err(e) => panic!("{e:?}"),
            };
            let (times, lane_steps) = smelt::internals::sim::escape::run(&ep.plan, paths, 11);
            results.push(escape::summarize(&ep, b, &times, lane_steps, 1.0));
        }
    }
    let pr = escape::predictions(&mut setup);
    let fits = escape::scaling(&setup, &pr, &results);
    Run {
        setup,
        results,
        pr,
        fits,
    }
}

fn model<'a>(r: &'a EtaResult, name: &str) -> &'a ModelResult {
    r.models.iter().find(|m| m.model == name).unwrap()
}

const SADDLE: &str = include_str!("../examples/problems/saddle.prob");

/// The first claim: on a quadratic saddle with ηλ_max = 0.5 the HA-SME's
/// exit-step law is SGD's (both are Gaussian with the same one-step transition), while
/// the order-1 SME's mean exit time is off by far more than five standard errors.
#[test]
fn on_a_quadratic_saddle_the_ha_sme_escapes_like_sgd_and_the_sme_does_not() {
    let r = run(
        SADDLE,
        "ball 1",
        "opt,sme1,ha",
        &[0.25],
        &[1.0],
        100_000,
        8,
        false,
    );
    assert_eq!(r.setup.point.index, 1, "started at the saddle");
    let res = &r.results[0];
    assert!(
        (res.stiffness - 0.5).abs() < 1e-12,
        "ηλ_max = {}",
        res.stiffness
    );
    let (sgd, sme, ha) = (model(res, "SGD"), model(res, "SME-1"), model(res, "HA-SME"));
    assert_eq!(sgd.exited, 100_000);
    // The log-rank test cannot tell the HA-SME from SGD...
    let p = ha.p_value.unwrap();
    assert!(p > 1e-3, "HA-SME vs SGD: p = {p}");
    let se = (sgd.mean_time_se.powi(2) + ha.mean_time_se.powi(2)).sqrt();
    assert!((sgd.mean_time - ha.mean_time).abs() < 4.0 * se);
    // ... and rejects the order-1 SME, whose mean is many standard errors away.
    let se1 = (sgd.mean_time_se.powi(2) + sme.mean_time_se.powi(2)).sqrt();
    assert!(
        (sgd.mean_time - sme.mean_time).abs() > 5.0 * se1,
        "{} vs {} ± {se1}",
        sgd.mean_time,
        sme.mean_time
    );
    assert!(sme.p_value.unwrap() < 1e-10);
}

/// The HA-SME simulated by Euler–Maruyama from its coefficients at each state (the
/// path every non-quadratic problem takes) converges to its exact transition: with 64
/// substeps its mean exit time agrees with SGD's to within the EM bias.
#[test]
fn the_ha_sme_by_euler_maruyama_matches_its_exact_transition() {
    let r = run(
        SADDLE,
        "ball 1",
        "opt,ha",
        &[0.25],
        &[1.0],
        20_000,
        64,
        true,
    );
    let res = &r.results[0];
    let (sgd, ha) = (model(res, "SGD"), model(res, "HA-SME"));
    let se = (sgd.mean_time_se.powi(2) + ha.mean_time_se.powi(2)).sqrt();
    assert!(
        (sgd.mean_time - ha.mean_time).abs() < 4.0 * se + 0.01 * sgd.mean_time,
        "{} vs {} ± {se}",
        sgd.mean_time,
        ha.mean_time
    );
}

/// Hu, Li, Li & Liu: small batches help SGD leave a saddle; the exit time grows with
/// the batch size (noise covariance Σ/B), like log B at the rate 1/(2λ) of the SME-1.
#[test]
fn exit_from_a_saddle_takes_longer_with_larger_batches() {
    let r = run(
        SADDLE,
        "ball 1",
        "opt,sme1",
        &[0.05],
        &[1.0, 4.0, 16.0, 64.0],
        8192,
        8,
        false,
    );
    // The closed forms of the linearised SME-1 and HA-SME (small noise, one unstable
    // direction) against the measured means, row by row: within 4 standard errors and
    // 1.5% (the neglected stable direction and curvature).
    for res in &r.results {
        let (sme, ha) = r.pr.saddle_times(res.tau, res.batch).unwrap();
        for (name, want) in [("SME-1", sme), ("SGD", ha)] {
            let m = model(res, name);
            assert!(
                (m.mean_time - want).abs() < 4.0 * m.mean_time_se + 0.015 * want,
                "B = {}: {name} {} ± {}, closed form {want}",
                res.batch,
                m.mean_time,
                m.mean_time_se
            );
        }
    }
    for name in ["SGD", "SME-1"] {
        let means: Vec<(f64, f64)> = r
            .results
            .iter()
            .map(|res| {
                let m = model(res, name);
                (m.mean_time, m.mean_time_se)
            })
            .collect();
        for w in means.windows(2) {
            let se = (w[0].1.powi(2) + w[1].1.powi(2)).sqrt();
            assert!(w[1].0 - w[0].0 > 5.0 * se, "{name}: {means:?}");
        }
        let fit = r
            .fits
            .iter()
            .find(|f| f.model == name && f.against == "log B")
            .unwrap();
        // λ = 2: the SME-1's closed-form slope 1/(2λ) = 0.25; at η = 0.05 (ηλ = 0.1)
        // both are within 15% of it.
        let (pred, _) = fit.predicted[0].clone();
        assert!((pred - 0.25).abs() < 1e-12);
        assert!(
            (fit.line.slope / pred - 1.0).abs() < 0.15,
            "{name}: slope {} ± {}",
            fit.line.slope,
            fit.line.slope_se
        );
    }
}

fn check_kramers_slopes(r: &Run, models: &[&str]) {
    let want = 2.0 * r.pr.barrier.unwrap() / r.pr.noise.unwrap();
    assert!((want - 0.5).abs() < 1e-9, "2ΔF/s² = {want}");
    for name in models {
        let fit = r
            .fits
            .iter()
            .find(|f| f.model == *name && f.against == "1/η")
            .unwrap_or_else(|| panic!("no fit for {name}"));
        assert_eq!(fit.left_out, 0);
        // Resolved well enough for a 10% claim to mean something.
        assert!(1.96 * fit.line.slope_se < 0.06, "{name}: {:?}", fit.line);
        assert!(
            (fit.line.slope / want - 1.0).abs() < 0.1,
            "{name}: slope {} ± {}, predicted {want}",
            fit.line.slope,
            1.96 * fit.line.slope_se
        );
    }
}

/// SGD, SME-1 and SME-2 from the minimum −1 past the saddle at 0, η = 0.2 … 0.1.
fn kramers_case(src: &str, region: &str) {
    let r = run(
        src,
        region,
        "opt,sme1,sme2",
        &[0.2, 0.15, 0.125, 0.1],
        &[1.0],
        2048,
        4,
        false,
    );
    assert_eq!(r.setup.point.index, 0);
    assert_eq!(r.setup.saddle.as_ref().unwrap().index, 1);
    assert!(r.pr.kramers_prefactor.is_some());
    check_kramers_slopes(&r, &["SGD", "SME-1", "SME-2"]);
}

/// From a minimum of the 1-D double well, log E τ grows linearly in 1/η at the rate
/// 2ΔF/s² that the barrier and the noise give (Eyring–Kramers), within 10%, for SGD
/// and for its SMEs.
#[test]
fn escape_from_a_double_well_minimum_follows_kramers_in_one_dimension() {
    kramers_case(
        include_str!("../examples/problems/double_well_escape.prob"),
        "past 0",
    );
}

/// The same in d = 2, with a second, stable coordinate.
#[test]
fn escape_from_a_double_well_minimum_follows_kramers_in_two_dimensions() {
    kramers_case(
        include_str!("../examples/problems/double_well_escape_2d.prob"),
        "past [0, 0]",
    );
}

/// Results do not depend on the number of threads.
#[test]
fn exit_times_do_not_depend_on_the_thread_count() {
    let go = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(SADDLE, "ball 1", "opt,sme1", &[0.1], &[1.0], 3000, 4, false))
    };
    let (a, b) = (go(1), go(2));
    for (x, y) in a.results[0].models.iter().zip(&b.results[0].models) {
        assert_eq!(x.mean_time, y.mean_time);
        assert_eq!(x.exited, 3000);
    }
}

/// A model that cannot be simulated is reported, never averaged in: the HA-SME does
/// not exist where ηλ ≥ 1 (log(I − ηH) is not real).
#[test]
fn the_ha_sme_is_reported_missing_where_it_does_not_exist() {
    let source = std::fs::read_to_string("examples/sgd.opt").unwrap();
    let rule = smelt::check(&source).unwrap();
    let problem = smelt::problem::load(SADDLE).unwrap();
    let opts = Options {
        models: escape::parse_models("opt,ha", &rule.name).unwrap(),
        region: escape::parse_region("ball 1").unwrap(),
        from: None,
        refine: true,
        saddle: None,
        horizon: None,
        substeps: 4,
        em: false,
    };
    let mut setup = escape::prepare(rule, problem, &BTreeMap::new(), opts).unwrap();
    // λ = 1 on the stable axis: η = 1.25 gives ηλ = 1.25.
    let ep = escape::plan(&mut setup, 1.25, 1.0).unwrap();
    assert_eq!(ep.plan.models.len(), 1);
    assert_eq!(ep.skipped.len(), 1);
    assert!(
        ep.skipped[0].1.contains("does not exist"),
        "{:?}",
        ep.skipped
    );
}

#[test]
fn regions_and_models_read_or_say_why_not() {
    assert!(matches!(
        escape::parse_region("ball 0.5").unwrap(),
        escape::RegionSpec::Ball(r) if r == 0.5
    ));
    assert!(matches!(
        escape::parse_region("x[1] > -0.5").unwrap(),
        escape::RegionSpec::Expr { greater: true, value, .. } if value == -0.5
    ));
    assert!(matches!(
        escape::parse_region("past [0, 1]").unwrap(),
        escape::RegionSpec::Past(p) if p == vec![0.0, 1.0]
    ));
    for bad in ["ball -1", "ball x", "somewhere", "x[1] < y"] {
        assert!(escape::parse_region(bad).is_err(), "{bad}");
    }
    assert!(escape::parse_models("sgd,sme2,ha", "SGD").is_ok());
    let e = escape::parse_models("opt,sme7", "SGD").unwrap_err();
    assert!(e.to_string().contains("sme7"), "{e}");
}

/// The HA-SME too (per-state coefficients on a non-quadratic f), at step sizes where
/// it exists on all but a few paths (ηf'' ≥ 1 only beyond |x| ≈ 1.9).
#[test]
fn the_ha_sme_escapes_the_double_well_at_the_kramers_rate() {
    let src = include_str!("../examples/problems/double_well_escape.prob");
    let r = run(
        src,
        "past 0",
        "opt,ha",
        &[0.125, 0.1, 0.0833],
        &[1.0],
        1024,
        4,
        false,
    );
    check_kramers_slopes(&r, &["SGD", "HA-SME"]);
}
