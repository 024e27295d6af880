//! The two-layer network of `examples/problems/digits_net.prob` (d = 991, scikit-learn's
//! digits as a binary task) as smelt compiles it, against a forward and backward pass
//! written out here in plain Rust over the CSV's rows: the objective f, its full-batch
//! gradient ∇f (compiled tapes, one point per lane) and one SGD step on a minibatch of
//! chosen rows (the optimizer's compiled step).

#![allow(
    clippy::needless_range_loop,
    reason = "index loops over the parameter's slots read as the formulas do"
)]

use smelt::internals::numeric::tape::{Tape, LANES};
use std::collections::BTreeMap;

const H: usize = 15;
const IN: usize = 64;
const D: usize = IN * H + H + H + 1;
const RIDGE: f64 = 0.0005;

/// The rows of the CSV, read here independently of smelt: 64 pixels, then the label.
fn rows() -> Vec<(Vec<f64>, f64)> {
    let text = std::fs::read_to_string("examples/problems/data/digits.csv").unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|s| s.parse().unwrap()).collect();
            assert_eq!(v.len(), IN + 1);
            (v[..IN].to_vec(), v[IN])
        })
        .collect()
}

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The loss of one row and its gradient (without the ridge term): W is x[0..960] by
/// rows (15 × 64), b = x[960..975], v = x[975..990], c = x[990].
fn loss_and_grad(x: &[f64], a: &[f64], y: f64, grad: &mut [f64]) -> f64 {
    let (w, b, v, c) = (&x[..IN * H], &x[IN * H..IN * H + H], &x[975..990], x[990]);
    let mut h = [0.0; H];
    for j in 0..H {
        let z: f64 = (0..IN).map(|k| w[j * IN + k] * a[k]).sum::<f64>() + b[j];
        h[j] = z.tanh();
    }
    let out: f64 = (0..H).map(|j| v[j] * h[j]).sum::<f64>() + c;
    let m = -y * out;
    // d softplus(m)/d out = sigmoid(m) · (−y)
    let s = sigmoid(m) * -y;
    for j in 0..H {
        grad[975 + j] += s * h[j];
        let dz = s * v[j] * (1.0 - h[j] * h[j]);
        grad[IN * H + j] += dz;
        for k in 0..IN {
            grad[j * IN + k] += dz * a[k];
        }
    }
    grad[990] += s;
    softplus(m)
}

/// f and ∇f over all rows, by hand.
fn full(x: &[f64], data: &[(Vec<f64>, f64)]) -> (f64, Vec<f64>) {
    let mut g = vec![0.0; D];
    let mut f = 0.0;
    for (a, y) in data {
        f += loss_and_grad(x, a, *y, &mut g);
    }
    let n = data.len() as f64;
    let ridge: f64 = x.iter().map(|v| v * v).sum();
    for (gi, xi) in g.iter_mut().zip(x) {
        *gi = *gi / n + 2.0 * RIDGE * xi;
    }
    (f / n + RIDGE * ridge, g)
}

fn load() -> smelt::problem::Problem {
    let source = std::fs::read_to_string("examples/problems/digits_net.prob").unwrap();
    smelt::problem::load_in(&source, std::path::Path::new("examples/problems")).unwrap()
}

/// Points: the problem's start, a larger one, and a few from a simple generator.
fn points(start: &[f64]) -> Vec<Vec<f64>> {
    let mut out = vec![start.to_vec(), start.iter().map(|v| 4.0 * v).collect()];
    let mut s = 12345u64;
    for _ in 0..2 {
        out.push(
            (0..D)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.8
                })
                .collect(),
        );
    }
    out
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-11 * want.abs().max(1e-3),
        "{what}: smelt {got}, by hand {want}"
    );
}

#[test]
fn the_network_and_its_gradient_match_a_pass_by_hand() {
    let mut p = load();
    assert_eq!(p.dim, D);
    let data = rows();
    assert_eq!(data.len(), 1797);
    let model = &mut p.model;
    let mut outs = vec![model.f];
    outs.extend(model.df(1));
    let tape = Tape::compile(&model.graph, &outs, D);
    let pts = points(&p.starts[0].value);
    let mut regs = tape.registers();
    for i in 0..D {
        if let Some(r) = tape.input_reg(i) {
            for (lane, x) in pts.iter().enumerate() {
                regs[r * LANES + lane] = x[i];
            }
        }
    }
    tape.run(&mut regs);
    for (lane, x) in pts.iter().enumerate() {
        let (f, g) = full(x, &data);
        close(
            regs[tape.output_reg(0) * LANES + lane],
            f,
            &format!("f at point {lane}"),
        );
        for (i, gi) in g.iter().enumerate() {
            close(
                regs[tape.output_reg(1 + i) * LANES + lane],
                *gi,
                &format!("∂f/∂x{} at point {lane}", i + 1),
            );
        }
    }
}

/// The start is `random(seed = 1, scale = 0.1)`: 991 numbers of scale 0.1, the same
/// on every load.
#[test]
fn the_random_start_is_small_and_reproducible() {
    let a = load().starts[0].value.clone();
    let b = load().starts[0].value.clone();
    assert_eq!(a, b);
    assert_eq!(a.len(), D);
    let rms = (a.iter().map(|v| v * v).sum::<f64>() / D as f64).sqrt();
    assert!((0.09..0.11).contains(&rms), "rms {rms}");
    assert!(a.windows(2).all(|w| w[0] != w[1]));
}

/// One SGD step (η = 1/4) on a minibatch of 16 chosen rows, through the optimizer's
/// compiled step: x − η (1/B) Σ_j ∇ℓ(x; row_j).
#[test]
fn one_sgd_step_on_chosen_rows_matches_the_step_by_hand() {
    let p = load();
    let data = rows();
    let start = p.starts[0].value.clone();
    let rule = smelt::check(&std::fs::read_to_string("examples/sgd.opt").unwrap()).unwrap();
    let mut prep = smelt::experiment::verify::prepare(rule, p, &[1], &BTreeMap::new()).unwrap();
    let nums = smelt::internals::sim::compile::Numbers {
        small: 0.25,
        hypers: prep.hypers.clone(),
    };
    let step = smelt::internals::sim::compile::compile_step(
        &prep.rule,
        &mut prep.problem.model,
        &prep.layout,
        &nums,
    )
    .unwrap();
    let batch = 16;
    assert_eq!(step.draws, batch * (IN + 1));
    let chosen: Vec<usize> = (0..batch).map(|j| (j * 113 + 7) % data.len()).collect();
    let mut regs = step.tape.registers();
    for i in 0..D {
        if let Some(r) = step.tape.input_reg(i) {
            regs[r * LANES..(r + 1) * LANES].fill(start[i]);
        }
    }
    for (j, &row) in chosen.iter().enumerate() {
        let (a, y) = &data[row];
        for c in 0..=IN {
            let v = if c < IN { a[c] } else { *y };
            if let Some(r) = step.tape.input_reg(step.normal_input(0, j * (IN + 1) + c)) {
                regs[r * LANES..(r + 1) * LANES].fill(v);
            }
        }
    }
    step.tape.run(&mut regs);
    let mut g = vec![0.0; D];
    for &row in &chosen {
        loss_and_grad(&start, &data[row].0, data[row].1, &mut g);
    }
    for i in 0..D {
        let want = start[i] - 0.25 * (g[i] / batch as f64 + 2.0 * RIDGE * start[i]);
        let got = regs[step.tape.output_reg(i) * LANES + 3];
        assert!(
            (got - want).abs() <= 1e-13 * want.abs().max(1e-2),
            "x{} after the step: smelt {got}, by hand {want}",
            i + 1
        );
    }
}

/// What forms d × d or d × d × d objects at a large d says so, with its limit, instead
/// of running out of memory: a covariance matrix's Cholesky factor and exact mode (d³),
/// `escape`'s Hessian and the reference oracle's (d²).
#[test]
fn dense_objects_past_their_limits_are_refused_with_the_limit() {
    use smelt::internals::numeric::step::Oracle as _;
    let big = smelt::problem::MAX_CUBIC_DIM + 1;
    let source = format!(
        "problem p\n  dim {big}\n  objective f(x) = sum(x^2)\n  noise gaussian cov = diag(1 + 0*x)\n  start x = 1\n  horizon 1\n  observe s = sum(x^2)\n"
    );
    let d = smelt::problem::load(&source).unwrap_err();
    assert!(
        d.message
            .contains(&format!("at most d = {}", smelt::problem::MAX_CUBIC_DIM))
            && d.message.contains(&format!("d = {big}")),
        "{}",
        d.message
    );
    // A number or a vector is fine at any d, and Σ = S Sᵀ of a diagonal factor is d
    // products.
    let source = source.replace("diag(1 + 0*x)", "0.5");
    let mut p = smelt::problem::load(&source).unwrap();
    let sigma = p.model.sigma();
    let at = p.model.graph.eval(&sigma, &vec![1.0; big]);
    for i in 0..big {
        for j in 0..big {
            let want = if i == j { 0.5 } else { 0.0 };
            assert!((at[i * big + j] - want).abs() < 1e-15, "Σ{i}{j}");
        }
    }
    // Exact mode's ∇³f.
    let rule = smelt::check(&std::fs::read_to_string("examples/sgd.opt").unwrap()).unwrap();
    let mut prep = smelt::experiment::verify::prepare(rule, p, &[1], &BTreeMap::new()).unwrap();
    let Err(smelt::experiment::verify::Error::Other(msg)) =
        smelt::experiment::verify::exact(&mut prep, &[0.1])
    else {
        panic!("exact mode ran at d = {big}")
    };
    assert!(msg.contains("at most d = 64"), "{msg}");
    // escape's Hessian and the oracle's, at d past MAX_DENSE_DIM.
    let dense = smelt::problem::MAX_DENSE_DIM + 1;
    let source = source.replace(&format!("dim {big}"), &format!("dim {dense}"));
    let mut p = smelt::problem::load(&source).unwrap();
    let msg = smelt::experiment::escape::stationary(&mut p.model, &vec![0.0; dense], true)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("at most d = 256"), "{msg}");
    let oracle = p.model.oracle();
    let why = oracle
        .hess_unavailable()
        .expect("no Hessian past the limit");
    assert!(why.contains("at most d = 256"), "{why}");
    // Below the limit the oracle's Hessian is formed on demand: 2 I here.
    let mut p = smelt::problem::load(&source.replace(&format!("dim {dense}"), "dim 3")).unwrap();
    let oracle = p.model.oracle();
    assert!(oracle.hess_unavailable().is_none());
    assert_eq!(
        oracle.hess(&[0.3, -1.0, 2.0]),
        [2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0]
    );
}

/// A test function may read a `let` whole (written out in place, with the `let`s it
/// reads in turn); the values are those of the expressions by hand.
#[test]
fn test_functions_read_lets_whole() {
    let source = "problem p\n  dim 4\n  let v = x[2:3]\n  let u = 2*v + x[4]\n  \
                  objective f(x) = sum(u^2)\n  noise gaussian cov = 1\n  start x = 1\n  \
                  horizon 1\n  observe s = sum(u)\n  observe q = dot(v, v)\n";
    let p = smelt::problem::load(source).unwrap();
    let rule = smelt::check(&std::fs::read_to_string("examples/sgd.opt").unwrap()).unwrap();
    let prep = smelt::experiment::verify::prepare(rule, p, &[1], &BTreeMap::new()).unwrap();
    let (_, g, outs) =
        smelt::internals::sim::compile::compile_observables(&prep.problem, &prep.layout).unwrap();
    let x = [0.5, -1.5, 2.0, 0.25];
    let s = (2.0 * x[1] + x[3]) + (2.0 * x[2] + x[3]);
    let q = x[1] * x[1] + x[2] * x[2];
    assert_eq!(g.eval(&outs, &x), vec![s, q]);
    // The objective reads them too: f = Σ (2 x_{2,3} + x_4)² at the start x = 1: 18.
    let mut model = prep.problem.model.clone();
    let f = model.df(0);
    assert_eq!(model.graph.eval(&f, &[1.0; 4]), vec![18.0]);
}

/// SGD's SME-1 on the network (D = η Σ, Σ the minibatch covariance of 991 parameters,
/// d² ≈ 10⁶ row means if formed) compiles with its noise drawn from the rows: no D, no
/// factor (and `coefficients` says so). One substep from the start over 768 paths (6
/// fine substeps' streams × 128 lanes) has the SDE's law as computed here by hand from the rows: mean −∇f δ in every
/// component (5 standard errors, the variances by hand too), and variance η δ Σₖₖ in
/// seven components that vary (5 standard errors of a sample variance).
#[test]
fn the_sme_of_the_network_draws_its_noise_from_the_rows() {
    use smelt::internals::numeric::rng::{row_key, row_stream};
    use smelt::internals::numeric::tape::LANES;
    let rule = smelt::check(&std::fs::read_to_string("examples/sgd.opt").unwrap()).unwrap();
    let mut prep =
        smelt::experiment::verify::prepare(rule, load(), &[1], &BTreeMap::new()).unwrap();
    let eta = 0.25;
    let plan = smelt::experiment::verify::plan(&mut prep, eta, 8).unwrap();
    let sde = &plan.sdes[0].1;
    assert!(sde.rows.is_some() && sde.diffusion.is_empty() && sde.factor.is_empty());
    let x0 = prep.start.clone();
    // The Python package's `coefficients` says D is not formed, rather than return it
    // empty.
    let Err(e) = smelt::experiment::verify::coefficients(&mut prep, 0, eta, &x0) else {
        panic!("D at d = 991 was returned")
    };
    let msg = format!("{e:?}");
    assert!(
        msg.contains("past the 64") && msg.contains("n = 991"),
        "{msg}"
    );
    let data = rows();
    let n = data.len() as f64;
    let batch = 16.0;
    // Per-row gradients (with the ridge), their mean and the diagonal of Σ, by hand.
    let per_row: Vec<Vec<f64>> = data
        .iter()
        .map(|(a, y)| {
            let mut g = vec![0.0; D];
            loss_and_grad(&x0, a, *y, &mut g);
            for (gi, xi) in g.iter_mut().zip(&x0) {
                *gi += 2.0 * RIDGE * xi;
            }
            g
        })
        .collect();
    let gbar: Vec<f64> = (0..D)
        .map(|k| per_row.iter().map(|g| g[k]).sum::<f64>() / n)
        .collect();
    let sigma: Vec<f64> = (0..D)
        .map(|k| {
            per_row
                .iter()
                .map(|g| (g[k] - gbar[k]).powi(2))
                .sum::<f64>()
                / n
                / batch
        })
        .collect();
    let delta = 0.01;
    let tape = &sde.tape;
    let mut inc: Vec<Vec<f64>> = Vec::new();
    for c in 0..6u64 {
        let mut regs = tape.registers();
        let mut set = |i: usize, v: &dyn Fn(usize) -> f64| {
            if let Some(r) = tape.input_reg(i) {
                for l in 0..LANES {
                    regs[r * LANES + l] = v(l);
                }
            }
        };
        for (i, &xi) in x0.iter().enumerate() {
            set(i, &|_| xi);
        }
        set(2 * D, &|_| delta);
        set(2 * D + 1, &|l| row_stream(row_key(21, l as u64), c));
        tape.run(&mut regs);
        for l in 0..LANES {
            inc.push(
                (0..D)
                    .map(|k| tape.lane(&regs, tape.output_reg(k))[l] - x0[k])
                    .collect(),
            );
        }
    }
    let m = inc.len() as f64;
    for k in 0..D {
        let mean = inc.iter().map(|v| v[k]).sum::<f64>() / m;
        let se = (eta * delta * sigma[k] / m).sqrt();
        let want = -gbar[k] * delta;
        assert!(
            (mean - want).abs() <= 5.0 * se + 1e-15,
            "component {k}: mean increment {mean}, −∇f δ {want} (se {se})"
        );
    }
    // Components that vary from row to row (a pixel that is 0 in every image has Σ = 0).
    let top = sigma.iter().fold(0.0f64, |a, &b| a.max(b));
    let varied: Vec<usize> = (0..D).filter(|&k| sigma[k] > 1e-2 * top).collect();
    assert!(varied.len() > 20, "{} components vary", varied.len());
    for &k in varied.iter().step_by(varied.len() / 6).chain(&[990]) {
        let mean = inc.iter().map(|v| v[k]).sum::<f64>() / m;
        let var = inc.iter().map(|v| (v[k] - mean).powi(2)).sum::<f64>() / (m - 1.0);
        let want = eta * delta * sigma[k];
        assert!(
            (var - want).abs() < 5.0 * want * (2.0 / m).sqrt(),
            "component {k}: variance {var}, η δ Σ {want}"
        );
    }
}

/// Gaussian noise past the dense limits: its fourth moment at d = 100 is refused with
/// the limit in the message.
#[test]
fn gaussian_moments_past_their_limits_are_refused() {
    // Gaussian noise past the limit too, and its fourth moment past MAX_CUBIC_DIM.
    let source = "problem p\n  dim 100\n  objective f(x) = sum(x^2)\n  noise gaussian cov = 1\n  \
                  start x = 1\n  horizon 1\n  observe s = sum(x^2)\n";
    let mut p = smelt::problem::load(source).unwrap();
    assert!(p.model.moment(2, 0).is_ok());
    let msg = p.model.moment(4, 0).unwrap_err().to_string();
    assert!(msg.contains("at most d = 64"), "{msg}");
}
