//! The reference interpreter of update rules (`smelt::internals::numeric::step`) against the
//! optimizers written out by hand in their usual textbook forms, which are not the
//! rescaled forms of the example files: Adam and AdamW as in PyTorch (the state `v`, not
//! `u = v/σ²`), Nesterov as `x' = y − lr ∇f(y)`, `y' = x' + μ (x' − x)` (no velocity), heavy
//! ball with the unscaled velocity. Agreement over many steps of a non-quadratic problem
//! with state-dependent noise pins the interpreter's reading of the language (old and new
//! values, locals, the counter, noise at another point, elementwise arithmetic).

mod support;

use smelt::internals::numeric::step::{step, variables, Oracle, Values};
use smelt::internals::numeric::Value;
use support::Rng;

/// f(x) = Σ a_i x_i⁴/4 + ½ xᵀ H x, noise Σ(x)^{1/2} draw with Σ(x)^{1/2} = L + diag(x²).
struct Problem {
    a: Vec<f64>,
    h: Vec<f64>,
    l: Vec<f64>,
}

impl Problem {
    fn new(d: usize, rng: &mut Rng) -> Problem {
        let a = (0..d).map(|_| rng.range(0.5, 1.5)).collect();
        let b: Vec<f64> = (0..d * d).map(|_| rng.sym()).collect();
        let mut h = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                h[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>()
                    + if i == j { 0.5 } else { 0.0 };
            }
        }
        let l = (0..d * d)
            .map(|ij| {
                if ij / d >= ij % d {
                    rng.range(0.2, 1.0)
                } else {
                    0.0
                }
            })
            .collect();
        Problem { a, h, l }
    }
}

impl Oracle for Problem {
    fn dim(&self) -> usize {
        self.a.len()
    }
    fn value(&self, x: &[f64]) -> f64 {
        let d = self.dim();
        let quad: f64 = (0..d)
            .map(|i| (0..d).map(|j| x[i] * self.h[i * d + j] * x[j]).sum::<f64>())
            .sum();
        (0..d).map(|i| self.a[i] * x[i].powi(4) / 4.0).sum::<f64>() + quad / 2.0
    }
    fn grad(&self, x: &[f64]) -> Vec<f64> {
        let d = self.dim();
        (0..d)
            .map(|i| {
                self.a[i] * x[i].powi(3) + (0..d).map(|j| self.h[i * d + j] * x[j]).sum::<f64>()
            })
            .collect()
    }
    fn hess(&self, x: &[f64]) -> Vec<f64> {
        let d = self.dim();
        let mut m = self.h.clone();
        for i in 0..d {
            m[i * d + i] += 3.0 * self.a[i] * x[i] * x[i];
        }
        m
    }
    fn noise(&self, index: usize, x: &[f64], draw: &[f64]) -> Vec<f64> {
        assert_eq!(index, 0);
        let d = self.dim();
        (0..d)
            .map(|i| {
                (0..d).map(|j| self.l[i * d + j] * draw[j]).sum::<f64>() + x[i] * x[i] * draw[i]
            })
            .collect()
    }
}

fn rule(name: &str) -> smelt::Optimizer {
    let path = format!("{}/examples/{name}.opt", env!("CARGO_MANIFEST_DIR"));
    smelt::check(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn draws(rng: &mut Rng, d: usize) -> Vec<Vec<f64>> {
    // Uniform with variance 1: the interpreter does not care about the law.
    vec![(0..d).map(|_| rng.sym() * 3f64.sqrt()).collect()]
}

fn vector(v: &Value) -> &[f64] {
    match v {
        Value::Vector(x) => x,
        Value::Scalar(_) => panic!("expected a vector"),
    }
}

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= 1e-12 * (1.0 + x.abs().max(y.abs())),
            "{what}: {a:?} vs {b:?}"
        );
    }
}

fn axpy(a: f64, x: &[f64], y: &[f64]) -> Vec<f64> {
    x.iter().zip(y).map(|(x, y)| a * x + y).collect()
}

#[test]
fn adam_and_adamw_are_pytorch_adam_in_the_rescaled_state() {
    for (name, decay) in [("adam", false), ("adamw", true)] {
        let opt = rule(name);
        assert_eq!(variables(&opt), ["x", "m", "u"]);
        let d = 3;
        let mut rng = Rng::new(7);
        let p = Problem::new(d, &mut rng);
        let (eta, c1, c2, sigma0, eps0, lambda0) = (0.3, 0.8, 1.7, 0.6, 0.05, 0.4);
        let mut values = Values {
            small: eta,
            ..Values::default()
        };
        for (k, v) in [
            ("c1", c1),
            ("c2", c2),
            ("sigma0", sigma0),
            ("eps0", eps0),
            ("lambda0", lambda0),
        ] {
            values.hypers.insert(k.to_string(), v);
        }
        // PyTorch's Adam(W) with lr = eta, its betas, eps and weight decay from the scaling.
        let (b1, b2, sigma, eps, wd) = (
            1.0 - c1 * eta * eta,
            1.0 - c2 * eta * eta,
            sigma0 / eta,
            eps0 / eta,
            lambda0 * eta,
        );
        let x0: Vec<f64> = (0..d).map(|_| rng.sym()).collect();
        let (mut x, mut m, mut v) = (x0.clone(), vec![0.0; d], vec![0.0; d]);
        let mut state = vec![
            Value::Vector(x0),
            Value::Vector(vec![0.0; d]),
            Value::Vector(vec![0.0; d]),
        ];
        for k in 0..40u64 {
            let dr = draws(&mut rng, d);
            values.counter = k;
            step(&opt, &mut state, &p, &values, &dr).unwrap();
            let noise = p.noise(0, &x, &dr[0]);
            let g: Vec<f64> = p
                .grad(&x)
                .iter()
                .zip(&noise)
                .map(|(g, n)| g + sigma * n)
                .collect();
            let t = (k + 1) as i32;
            for i in 0..d {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                if decay {
                    x[i] -= eta * wd * x[i];
                }
                x[i] -= eta * mh / (vh.sqrt() + eps);
            }
            assert_close(vector(&state[0]), &x, &format!("{name} x, step {k}"));
            assert_close(vector(&state[1]), &m, &format!("{name} m, step {k}"));
            let u: Vec<f64> = v.iter().map(|v| v / (sigma * sigma)).collect();
            assert_close(
                vector(&state[2]),
                &u,
                &format!("{name} u = v/sigma^2, step {k}"),
            );
        }
    }
}

#[test]
fn nesterov_is_the_look_ahead_recursion_without_velocity() {
    let opt = rule("nesterov");
    let d = 2;
    let mut rng = Rng::new(11);
    let p = Problem::new(d, &mut rng);
    let (h, lambda) = (0.2, 1.5);
    let mut values = Values {
        small: h,
        ..Values::default()
    };
    values.hypers.insert("lambda".into(), lambda);
    let (mu, lr) = (1.0 - lambda * h, h * h);
    let x0: Vec<f64> = (0..d).map(|_| rng.sym()).collect();
    let v0: Vec<f64> = (0..d).map(|_| rng.sym()).collect();
    // Sutskever's form: x_{k+1} = y_k − lr g(y_k), y_{k+1} = x_{k+1} + μ (x_{k+1} − x_k),
    // with the gradient and its noise both at the look-ahead point y_k.
    let mut prev = axpy(-h, &v0, &x0); // x_{-1}, so that x_0 − x_{-1} = h v_0
    let mut x = x0.clone();
    let mut state = vec![Value::Vector(x0), Value::Vector(v0)];
    for k in 0..60 {
        let dr = draws(&mut rng, d);
        step(&opt, &mut state, &p, &values, &dr).unwrap();
        let y: Vec<f64> = x.iter().zip(&prev).map(|(x, p)| x + mu * (x - p)).collect();
        let g: Vec<f64> = p
            .grad(&y)
            .iter()
            .zip(p.noise(0, &y, &dr[0]))
            .map(|(g, n)| g + n)
            .collect();
        let next = axpy(-lr, &g, &y);
        prev = std::mem::replace(&mut x, next);
        assert_close(vector(&state[0]), &x, &format!("nesterov x, step {k}"));
        let vel: Vec<f64> = x.iter().zip(&prev).map(|(x, p)| (x - p) / h).collect();
        assert_close(vector(&state[1]), &vel, &format!("nesterov v, step {k}"));
    }
}

#[test]
fn heavy_ball_reads_the_new_velocity() {
    let opt = rule("momentum");
    let d = 3;
    let mut rng = Rng::new(5);
    let p = Problem::new(d, &mut rng);
    let (h, lambda) = (0.25, 0.9);
    let mut values = Values {
        small: h,
        ..Values::default()
    };
    values.hypers.insert("lambda".into(), lambda);
    // Polyak's form: p' = μ p − lr g(x), x' = x + p', with lr = h², p = h v.
    let (mu, lr) = (1.0 - lambda * h, h * h);
    let mut x: Vec<f64> = (0..d).map(|_| rng.sym()).collect();
    let mut mom = vec![0.0; d];
    let mut state = vec![Value::Vector(x.clone()), Value::Vector(vec![0.0; d])];
    for k in 0..60 {
        let dr = draws(&mut rng, d);
        step(&opt, &mut state, &p, &values, &dr).unwrap();
        let g: Vec<f64> = p
            .grad(&x)
            .iter()
            .zip(p.noise(0, &x, &dr[0]))
            .map(|(g, n)| g + n)
            .collect();
        mom = axpy(-lr, &g, &mom.iter().map(|p| mu * p).collect::<Vec<_>>());
        x = axpy(1.0, &mom, &x);
        assert_close(vector(&state[0]), &x, &format!("heavy ball x, step {k}"));
        let vel: Vec<f64> = mom.iter().map(|p| p / h).collect();
        assert_close(vector(&state[1]), &vel, &format!("heavy ball v, step {k}"));
    }
}

#[test]
fn rules_with_hessians_norms_and_dots_evaluate_as_written() {
    // A made-up rule exercising what the examples do not: hess, @, dot, norm, exp, log,
    // abs, a scalar state, the objective's value, and a noise read twice at two points.
    let src = "optimizer Odd
  param x
  state s: scalar
  small eta
  hyper a > 0
  time eta
  noise xi ~ general
  let y = x - eta*grad f(x)
  let n = xi + xi(y)
  s = s + log(1 + f(x)^2) + dot(x, n)
  x = x - eta*(hess f(y) @ x) / (1 + norm(x)) - eta*a*exp(-abs(x))*n + eta*s*x
";
    let opt = smelt::check(src).unwrap();
    let d = 3;
    let mut rng = Rng::new(3);
    let p = Problem::new(d, &mut rng);
    let (eta, a) = (0.05, 0.7);
    let mut values = Values {
        small: eta,
        ..Values::default()
    };
    values.hypers.insert("a".into(), a);
    let mut x: Vec<f64> = (0..d).map(|_| rng.sym()).collect();
    let mut s = 0.3;
    let mut state = vec![Value::Vector(x.clone()), Value::Scalar(s)];
    for k in 0..20 {
        let dr = draws(&mut rng, d);
        step(&opt, &mut state, &p, &values, &dr).unwrap();
        let y = axpy(-eta, &p.grad(&x), &x);
        let n: Vec<f64> = p
            .noise(0, &x, &dr[0])
            .iter()
            .zip(p.noise(0, &y, &dr[0]))
            .map(|(a, b)| a + b)
            .collect();
        s += (1.0 + p.value(&x).powi(2)).ln() + x.iter().zip(&n).map(|(x, n)| x * n).sum::<f64>();
        let hy = p.hess(&y);
        let norm = x.iter().map(|x| x * x).sum::<f64>().sqrt();
        x = (0..d)
            .map(|i| {
                let hx: f64 = (0..d).map(|j| hy[i * d + j] * x[j]).sum();
                x[i] - eta * hx / (1.0 + norm) - eta * a * (-x[i].abs()).exp() * n[i]
                    + eta * s * x[i]
            })
            .collect();
        assert_close(vector(&state[0]), &x, &format!("x, step {k}"));
        match state[1] {
            Value::Scalar(v) => assert_close(&[v], &[s], &format!("s, step {k}")),
            Value::Vector(_) => panic!("s must stay a scalar"),
        }
    }
}

#[test]
fn bad_inputs_and_divergence_are_errors_not_panics() {
    let opt = rule("adam");
    let mut rng = Rng::new(1);
    let p = Problem::new(2, &mut rng);
    let mut values = Values {
        small: 0.1,
        ..Values::default()
    };
    let good = || {
        vec![
            Value::Vector(vec![0.1, 0.2]),
            Value::Vector(vec![0.0; 2]),
            Value::Vector(vec![0.0; 2]),
        ]
    };
    let dr = vec![vec![0.5, -0.5]];
    // No hyperparameter values.
    let err = step(&opt, &mut good(), &p, &values, &dr)
        .unwrap_err()
        .to_string();
    assert!(err.contains("hyperparameter"), "{err}");
    for (k, v) in [("c1", 1.0), ("c2", 1.0), ("sigma0", 1.0), ("eps0", 0.1)] {
        values.hypers.insert(k.to_string(), v);
    }
    step(&opt, &mut good(), &p, &values, &dr).unwrap();
    // Wrong number of states, wrong dimension, wrong number of draws.
    assert!(step(&opt, &mut good()[..2].to_vec(), &p, &values, &dr)
        .unwrap_err()
        .to_string()
        .contains("state variables"));
    let mut wrong_dim = good();
    wrong_dim[1] = Value::Vector(vec![0.0; 3]);
    assert!(step(&opt, &mut wrong_dim, &p, &values, &dr)
        .unwrap_err()
        .to_string()
        .contains("d = 2"));
    assert!(step(&opt, &mut good(), &p, &values, &[])
        .unwrap_err()
        .to_string()
        .contains("noise"));

    // SGD on the quartic with a step far too large overflows: reported at the step it
    // happened, not carried along as NaN.
    let sgd = rule("sgd");
    let values = Values {
        small: 3.0,
        ..Values::default()
    };
    let mut state = vec![Value::Vector(vec![2.0, -2.0])];
    let zero = vec![vec![0.0, 0.0]];
    let failed = (0..100).find_map(|k| {
        step(&sgd, &mut state, &p, &values, &zero)
            .err()
            .map(|e| (k, e.to_string()))
    });
    let (k, err) = failed.expect("the run must diverge");
    assert!(
        k > 0 && err.contains("non-finite") && err.contains("`x`"),
        "step {k}: {err}"
    );
}
