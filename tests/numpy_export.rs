//! The NumPy export ([`smelt::emit::numpy`]) against the reference evaluator
//! ([`smelt::internals::numeric::eval`]), and the evaluator against hand-written formulas.
//!
//! For every case (SGD orders 1–3, heavy ball and Nesterov at order 2, Adam at order 1)
//! in d = 1 and d = 3: random concrete values (states, positive symbols, symmetric
//! tensors for `∇^k f`, a positive definite Σ and symmetric moment derivatives, from a
//! seeded xorshift generator) are evaluated by the Rust evaluator and by the generated
//! Python module, run with the project's Python (`.venv/bin/python`, created by
//! `scripts/python-env.sh`); every component must agree to 1e-10 relative. Without a
//! Python the comparison is skipped with a notice, unless the environment variable `CI`
//! is set, where it fails.

#![allow(
    clippy::print_stderr,
    reason = "the test says on stderr when it skips for want of Python"
)]

use serde_json::{json, Value as Json};
use smelt::internals::algebra::elem::FExpr;
use smelt::internals::algebra::poly::Poly;
use smelt::internals::algebra::tensor::{Atom, Kind, TExpr, Term};
use smelt::internals::numeric::eval::{self, Env, Tensor, Value};
use smelt::{Options, Sme};
use support::python::python;

mod support;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

// ---------------------------------------------------------------------------------
// Seeded generator (xorshift64*).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-1, 1).
    fn sym(&mut self) -> f64 {
        2.0 * self.unit() - 1.0
    }
    /// Uniform in [0.3, 1.5): positive, away from 0.
    fn positive(&mut self) -> f64 {
        0.3 + 1.2 * self.unit()
    }
}

// ---------------------------------------------------------------------------------
// Random inputs.

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for k in 0..=p.len() {
            let mut q = p.clone();
            q.insert(k, n - 1);
            out.push(q);
        }
    }
    out
}

/// A random tensor in dimension `dim` whose slots come in consecutive groups of the
/// given sizes, symmetric within each group (the average over its permutations).
fn symmetric(rng: &mut Rng, dim: usize, groups: &[usize]) -> Tensor {
    let rank: usize = groups.iter().sum();
    let raw = Tensor::from_fn(dim, rank, |_| rng.sym());
    // Every combination of one permutation per group, as a permutation of all slots.
    let mut perms: Vec<Vec<usize>> = vec![Vec::new()];
    let mut start = 0;
    for &g in groups {
        let mut next = Vec::new();
        for p in &perms {
            for q in permutations(g) {
                let mut r = p.clone();
                r.extend(q.iter().map(|&i| start + i));
                next.push(r);
            }
        }
        perms = next;
        start += g;
    }
    let mut permuted = vec![0; rank];
    Tensor::from_fn(dim, rank, |idx| {
        let mut total = 0.0;
        for p in &perms {
            for (k, &s) in p.iter().enumerate() {
                permuted[k] = idx[s];
            }
            total += raw.get(&permuted);
        }
        total / perms.len() as f64
    })
}

/// A random symmetric positive definite matrix `A Aᵀ/d + I/2`.
fn spd(rng: &mut Rng, dim: usize) -> Tensor {
    let a = Tensor::from_fn(dim, 2, |_| rng.sym());
    Tensor::from_fn(dim, 2, |i| {
        let aat: f64 = (0..dim)
            .map(|k| a.get(&[i[0], k]) * a.get(&[i[1], k]))
            .sum();
        aat / dim as f64 + if i[0] == i[1] { 0.5 } else { 0.0 }
    })
}

/// The highest derivative of f and of the noise moments given.
const MAX_DF: usize = 4;
const MAX_MOMENT: usize = 4;
const MAX_MOMENT_DERIV: usize = 3;

/// A random point for `sme` in dimension `dim`: states (positive where an elementwise
/// function reads them, and scalar states), positive symbol values, `∇^k f` for
/// k ≤ 4, Σ positive definite, and `∂^j M_r` symmetric in the moment's and in the
/// derivative's slots.
fn random_env(sme: &Sme, dim: usize, seed: u64) -> Env {
    let mut rng = Rng::new(seed);
    let read_by_elem = |v: usize| sme.elem.functions.iter().any(|f| f.reads(v as u8));
    let state = sme
        .vars
        .iter()
        .enumerate()
        .map(|(v, info)| {
            if info.scalar {
                Value::Scalar(rng.positive())
            } else if read_by_elem(v) {
                Value::Vector((0..dim).map(|_| rng.positive()).collect())
            } else {
                Value::Vector((0..dim).map(|_| rng.sym()).collect())
            }
        })
        .collect();
    let symbols: BTreeMap<String, f64> = (0..)
        .map_while(|i| sme.symbols.try_name(i))
        .filter(|n| *n != "d")
        .map(|n| (n.to_string(), rng.positive()))
        .collect();
    let grad_f = (0..=MAX_DF)
        .map(|k| symmetric(&mut rng, dim, &[k]))
        .collect();
    let moments = (0..=MAX_MOMENT)
        .map(|r| {
            if r < 2 {
                return Vec::new();
            }
            (0..=MAX_MOMENT_DERIV)
                .map(|j| {
                    if r == 2 && j == 0 {
                        spd(&mut rng, dim)
                    } else {
                        symmetric(&mut rng, dim, &[r, j])
                    }
                })
                .collect()
        })
        .collect();
    Env {
        dim,
        state,
        symbols,
        grad_f,
        moments,
    }
}

fn derive(file: &str, order: u32, gaussian: bool) -> Sme {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut source = std::fs::read_to_string(path).expect("example file");
    if gaussian {
        source = source.replace("~ general", "~ gaussian");
    }
    smelt::derive(&source, &Options::order(order)).unwrap_or_else(|e| panic!("{file}: {e:?}"))
}

// ---------------------------------------------------------------------------------
// The project's Python.

/// The project's Python, or `None` after a skip notice (a failure under CI).
fn python_or_skip(what: &str) -> Option<&'static Path> {
    match python() {
        Ok(p) => Some(p),
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{what}: no Python with NumPy under CI: {why}"
            );
            eprintln!("skipped: {what}: {why}");
            None
        }
    }
}

/// Reads the generated module, fills its inputs from the point, and prints the drift,
/// the diffusion blocks and the time per step as JSON.
const DRIVER: &str = r#"
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import sme_module as mod

with open(sys.argv[1]) as fh:
    point = json.load(fh)

def tensor(t):
    return np.array(t["data"], dtype=float).reshape(t["shape"])

state = [np.array(v, dtype=float) if isinstance(v, list) else v for v in point["state"]]
hypers = {name: point["symbols"][sym] for name, sym in mod.HYPERS.items()}
kw = dict(hypers)
for name, desc in mod.INPUTS.items():
    if desc[0] == "f":
        kw[name] = tensor(point["f"][desc[1]])
    else:
        kw[name] = tensor(point["moments"][desc[1]][desc[2]])

def out(a):
    a = np.asarray(a, dtype=float)
    return {"shape": list(a.shape), "data": a.ravel().tolist()}

b = mod.drift(*state, **kw)
D = mod.diffusion(*state, **kw)
json.dump({
    "state": list(mod.STATE),
    "drift": [out(v) for v in b],
    "drift_types": [type(v).__name__ for v in b],
    "diffusion": [{"key": list(k), **out(v)} for k, v in D.items()],
    "time": float(mod.time_per_step(**hypers)),
}, sys.stdout)
"#;

fn tensor_json(t: &Tensor) -> Json {
    json!({"shape": t.shape, "data": t.data})
}

fn env_json(env: &Env) -> Json {
    json!({
        "state": env.state.iter().map(|v| match v {
            Value::Vector(x) => json!(x),
            Value::Scalar(x) => json!(x),
        }).collect::<Vec<_>>(),
        "symbols": env.symbols,
        "f": env.grad_f.iter().map(tensor_json).collect::<Vec<_>>(),
        "moments": env.moments.iter().map(|m| m.iter().map(tensor_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
    })
}

/// Compares a Python result `{"shape", "data"}` with the reference tensor.
fn compare(what: &str, got: &Json, want: &Tensor) {
    let shape: Vec<usize> = got["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no shape in {got}"))
        .iter()
        .map(|x| x.as_u64().expect("a dimension") as usize)
        .collect();
    assert_eq!(shape, want.shape, "{what}: shape");
    let data: Vec<f64> = got["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no data in {got}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect();
    assert_eq!(data.len(), want.data.len(), "{what}: number of entries");
    // At least 1: a block that cancels to 0 (normalized SGD's diffusion in d = 1, terms of
    // order 1 summing to ±2e-16) is compared at the rounding of its terms.
    let scale = want.data.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    for (k, (a, b)) in data.iter().zip(&want.data).enumerate() {
        let tol = 1e-10 * a.abs().max(b.abs()) + 1e-14 * scale;
        assert!(
            (a - b).abs() <= tol,
            "{what}: entry {k}: numpy {a} vs reference {b} (difference {:e})",
            (a - b).abs()
        );
    }
    assert!(
        want.data.iter().all(|x| x.is_finite()),
        "{what}: the reference is not finite"
    );
}

/// The generated module at one random point versus the reference evaluator.
fn check_point(python: &Path, name: &str, sme: &Sme, module: &str, env: &Env) {
    let dim = env.dim;
    let what = format!("{name}, d = {dim}");
    let drift = eval::drift(sme, env).unwrap_or_else(|e| panic!("{what}: {e}"));
    let diffusion = eval::diffusion(sme, env).unwrap_or_else(|e| panic!("{what}: {e}"));
    let time = eval::time_per_step(sme, env).unwrap_or_else(|e| panic!("{what}: {e}"));

    let dir = std::env::temp_dir().join(format!("smelt-numpy-{}-{name}-{dim}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("sme_module.py"), module).expect("write module");
    std::fs::write(dir.join("driver.py"), DRIVER).expect("write driver");
    std::fs::write(dir.join("point.json"), env_json(env).to_string()).expect("write point");
    let run = Command::new(python)
        .arg(dir.join("driver.py"))
        .arg(dir.join("point.json"))
        .output()
        .expect("run python");
    assert!(
        run.status.success(),
        "{what}: the generated module failed (files in {}):\n{}",
        dir.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let out: Json = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: driver output is not JSON ({e}): {}",
            String::from_utf8_lossy(&run.stdout)
        )
    });

    let names: Vec<&str> = sme.vars.iter().map(|v| v.name.as_str()).collect();
    let state: Vec<&str> = out["state"]
        .as_array()
        .expect("STATE")
        .iter()
        .map(|x| x.as_str().expect("a name"))
        .collect();
    assert_eq!(state, names, "{what}: STATE");
    let got = out["drift"].as_array().expect("drift");
    assert_eq!(got.len(), drift.len(), "{what}: one drift per state");
    for (v, want) in drift.iter().enumerate() {
        compare(&format!("{what}: b_{}", names[v]), &got[v], want);
        if sme.vars[v].scalar {
            assert_eq!(out["drift_types"][v], "float64", "{what}: a scalar drift");
        }
    }
    let got = out["diffusion"].as_array().expect("diffusion");
    assert_eq!(got.len(), diffusion.len(), "{what}: diffusion blocks");
    for (block, ((a, c), want)) in got.iter().zip(&diffusion) {
        assert_eq!(block["key"], json!([names[*a], names[*c]]), "{what}: key");
        compare(
            &format!("{what}: D_{}{}", names[*a], names[*c]),
            block,
            want,
        );
    }
    let t = out["time"].as_f64().expect("time");
    assert!(
        (t - time).abs() <= 1e-14 * time.abs(),
        "{what}: time {t} vs {time}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// One case: the module of the derived SME in d = 1 and d = 3.
fn check(name: &str, file: &str, order: u32, gaussian: bool) {
    let sme = derive(file, order, gaussian);
    assert_eq!(sme.order, order, "{name}: the order is reached");
    check_sme(name, &sme, &|_| {});
}

/// The module of `sme` in d = 1 and d = 3; `fix` adjusts the random point (values of
/// opaque constants).
fn check_sme(name: &str, sme: &Sme, fix: &dyn Fn(&mut Env)) {
    let module = smelt::emit::numpy::render(sme);
    // Nothing the module needs is missing from the point the test builds.
    assert!(!module.contains("_unsupported("), "{name}: {module}");
    let Some(python) = python_or_skip(name) else {
        return;
    };
    let seed = name
        .bytes()
        .fold(17u64, |h, b| h.wrapping_mul(31) ^ b as u64);
    for (k, dim) in [1, 3].into_iter().enumerate() {
        let mut env = random_env(sme, dim, seed + k as u64);
        fix(&mut env);
        check_point(python, name, sme, &module, &env);
    }
}

#[test]
fn sgd_order_1() {
    check("sgd1", "sgd.opt", 1, false);
}

#[test]
fn sgd_order_2() {
    check("sgd2", "sgd.opt", 2, false);
}

#[test]
fn sgd_order_3_gaussian() {
    check("sgd3", "sgd.opt", 3, true);
}

#[test]
fn heavy_ball_order_2() {
    check("momentum2", "momentum.opt", 2, false);
}

#[test]
fn nesterov_order_2() {
    check("nesterov2", "nesterov.opt", 2, false);
}

#[test]
fn adam_order_1_gaussian() {
    check("adam1", "adam.opt", 1, true);
}

#[test]
fn adamw_and_rmsprop_order_1_gaussian() {
    check("adamw1", "adamw.opt", 1, true);
    check("rmsprop1", "rmsprop.opt", 1, true);
}

#[test]
fn python_names_and_opaque_constants() {
    // `lambda` is a Python keyword, `S` an input's name, `sqrt(c)` a constant the
    // derivation keeps as a symbol; the module computes it from `c`.
    let source = "optimizer Renamed\n  param x\n  state v\n  small h\n  hyper lambda, S, c > 0\n  time h\n  noise xi ~ gaussian\n  v = v - h*(lambda*v + sqrt(c)*grad f(x) + S*xi)\n  x = x + h*v\n";
    let sme = smelt::derive(source, &Options::order(2)).expect("derives");
    assert!(sme.symbols.get("sqrt(c)").is_some(), "an opaque constant");
    let module = smelt::emit::numpy::render(&sme);
    for name in ["lambda_", "S_", "\"lambda_\": \"lambda\"", "np.sqrt(c)"] {
        assert!(module.contains(name), "{name} in\n{module}");
    }
    check_sme("renamed", &sme, &|env| {
        let c = env.symbols["c"];
        env.symbols.insert("sqrt(c)".to_string(), c.sqrt());
    });
}

#[test]
fn every_factor_kind() {
    // Adam's SME (vector states x, m, u and the scalar clock t) with hand-made terms in
    // place of its drift and diffusion, so that the module meets every factor the
    // examples do not: the ones vector, δ (free, and traced into d), f's value, the
    // symbol d, a free index no factor carries, elementwise functions of the scalar
    // state with and without an index, S and ∂Σ with repeated indices.
    let mut sme = derive("adam.opt", 1, true);
    let sym = |n: &str| sme.symbols.get(n).expect("a symbol");
    let (c1, c2, dim) = (sym("c1"), sym("c2"), sme.dim);
    let t = sme.clock.expect("a clock") as u8;
    let decay = FExpr::Exp(Box::new(FExpr::Prod(vec![
        FExpr::Const(Poly::power(c1, 1).neg()),
        FExpr::Var(t),
    ])));
    let of_t = sme.elem.push(decay);
    let of_u = sme.elem.push(FExpr::Log(Box::new(FExpr::Sum(vec![
        FExpr::Var(2),
        FExpr::Const(Poly::power(c2, 1)),
    ]))));
    let term = |e: &mut TExpr, coef: Poly, atoms: Vec<Atom>| {
        e.terms.insert(Term { atoms }, coef);
    };
    let a = Atom::new;
    let mut bx = TExpr::zero(1);
    term(&mut bx, Poly::power(c1, 1), vec![a(Kind::One, vec![0])]);
    term(
        &mut bx,
        Poly::int(-2),
        vec![a(Kind::DF(0), vec![]), a(Kind::DF(1), vec![0])],
    );
    term(
        &mut bx,
        Poly::int(3),
        vec![a(Kind::Elem(of_t), vec![0]), a(Kind::State(2), vec![0])],
    );
    term(
        &mut bx,
        Poly::int(1),
        vec![a(Kind::Delta, vec![0, 1]), a(Kind::DF(1), vec![1])],
    );
    term(&mut bx, Poly::power(dim, 1), vec![]);
    term(
        &mut bx,
        Poly::int(5),
        vec![a(Kind::Moment { r: 3, d: 0 }, vec![0, 1, 1])],
    );
    term(
        &mut bx,
        Poly::int(7),
        vec![a(Kind::Moment { r: 2, d: 1 }, vec![1, 1, 0])],
    );
    term(
        &mut bx,
        Poly::int(1),
        vec![a(Kind::Elem(of_u), vec![0]), a(Kind::Elem(of_t), vec![])],
    );
    sme.drift[0] = bx;
    let mut bt = TExpr::zero(0);
    term(
        &mut bt,
        Poly::int(1),
        vec![a(Kind::DF(0), vec![]), a(Kind::State(t), vec![])],
    );
    term(&mut bt, Poly::int(-1), vec![a(Kind::Delta, vec![0, 0])]);
    term(
        &mut bt,
        Poly::power(dim, -1),
        vec![a(Kind::DF(2), vec![0, 0])],
    );
    sme.drift[t as usize] = bt;
    for block in &mut sme.diffusion {
        let mut e = TExpr::zero(block.expr.free);
        match e.free {
            2 => term(&mut e, Poly::int(2), vec![a(Kind::Delta, vec![0, 1])]),
            1 => term(
                &mut e,
                Poly::int(1),
                vec![a(Kind::Elem(of_t), vec![]), a(Kind::DF(1), vec![0])],
            ),
            _ => term(&mut e, Poly::int(1), vec![a(Kind::Elem(of_t), vec![])]),
        }
        block.expr = e;
    }
    let module = smelt::emit::numpy::render(&sme);
    for needed in [
        "np.ones(_d)",
        "np.eye(_d)",
        "np.full(_d, _e",
        "\"f\": (\"f\", 0)",
        "dSigma",
        "S",
    ] {
        assert!(module.contains(needed), "{needed} in\n{module}");
    }
    check_sme("factors", &sme, &|_| {});
}

// ---------------------------------------------------------------------------------
// The reference evaluator against formulas written out by hand.

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn evaluator_matches_sgd_order_2_by_hand() {
    // Li, Tai & E: b = -∇f - (η/2) ∇²f ∇f, D = η Σ.
    let sme = derive("sgd.opt", 2, false);
    let d = 3;
    let env = random_env(&sme, d, 7);
    let (g, h, sigma) = (&env.grad_f[1], &env.grad_f[2], &env.moments[2][0]);
    let eta = env.symbols["eta"];
    let b = eval::eval(&sme, &sme.drift[0], &env).unwrap();
    assert_eq!(b.shape, vec![d]);
    for i in 0..d {
        let hg: f64 = (0..d).map(|j| h.get(&[i, j]) * g.get(&[j])).sum();
        assert!(close(b.data[i], -g.get(&[i]) - eta / 2.0 * hg), "b_{i}");
    }
    let dd = eval::eval(&sme, &sme.diffusion[0].expr, &env).unwrap();
    assert_eq!(dd.shape, vec![d, d]);
    for i in 0..d {
        for j in 0..d {
            assert!(close(dd.get(&[i, j]), eta * sigma.get(&[i, j])), "D_{i}{j}");
        }
    }
}

#[test]
fn evaluator_matches_adam_by_hand() {
    // Malladi et al.: dθ = -(√γ2/γ1) m/(σ0 √u + ε0 √γ2) dt, dm = c1(∇f - m) dt +
    // σ0 c1 Σ^{1/2} dW, du = c2(diag Σ - u) dt, γi = 1 - exp(-ci t): elementwise
    // functions of vector and scalar states and a diagonal, in d = 3.
    let sme = derive("adam.opt", 1, true);
    let d = 3;
    let env = random_env(&sme, d, 11);
    let var = |name: &str| sme.vars.iter().position(|v| v.name == name).unwrap();
    let vector = |name: &str| match &env.state[var(name)] {
        Value::Vector(x) => x.clone(),
        Value::Scalar(_) => panic!("{name} is a vector"),
    };
    let (m, u) = (vector("m"), vector("u"));
    let t = match env.state[sme.clock.expect("a clock")] {
        Value::Scalar(t) => t,
        Value::Vector(_) => panic!("the clock is a scalar"),
    };
    let s = |n: &str| env.symbols[n];
    let (c1, c2, s0, e0) = (s("c1"), s("c2"), s("sigma0"), s("eps0"));
    let (g1, g2) = (1.0 - (-c1 * t).exp(), 1.0 - (-c2 * t).exp());
    let (g, sigma) = (&env.grad_f[1], &env.moments[2][0]);
    let b = eval::drift(&sme, &env).unwrap();
    for i in 0..d {
        let want = -(g2.sqrt() / g1) * m[i] / (s0 * u[i].sqrt() + e0 * g2.sqrt());
        assert!(close(b[var("x")].data[i], want), "b_x[{i}]");
        assert!(close(b[var("m")].data[i], c1 * (g.get(&[i]) - m[i])), "b_m");
        assert!(
            close(b[var("u")].data[i], c2 * (sigma.get(&[i, i]) - u[i])),
            "b_u"
        );
    }
    assert_eq!(b[var("t")].shape, Vec::<usize>::new());
    assert!(close(b[var("t")].data[0], 1.0));
    for ((a, c), block) in eval::diffusion(&sme, &env).unwrap() {
        let want = |i: usize, j: usize| {
            if (a, c) == (var("m"), var("m")) {
                c1 * c1 * s0 * s0 * sigma.get(&[i, j])
            } else {
                0.0
            }
        };
        let rank = block.rank();
        for k in 0..block.data.len() {
            let (i, j) = match rank {
                2 => (k / d, k % d),
                _ => (0, 0),
            };
            let w = if rank == 2 { want(i, j) } else { 0.0 };
            assert!(close(block.data[k], w), "D_{a}{c}");
        }
    }
}

#[test]
fn inputs_may_be_callables() {
    let Some(python) = python_or_skip("numpy callables") else {
        return;
    };
    let sme = derive("sgd.opt", 2, false);
    let dir = std::env::temp_dir().join(format!("smelt-np-callables-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sme.py"), smelt::emit::numpy::render(&sme)).unwrap();
    let driver = r#"
import numpy as np, sme
H = np.array([[2.0, 0.5], [0.5, 1.0]])
x = np.array([0.3, -0.2])
with_arrays = sme.drift(x, grad_f=H @ x, hess_f=H, Sigma=np.eye(2), eta=0.1)[0]
with_callables = sme.drift(x, grad_f=lambda y: H @ y, hess_f=lambda y: H, Sigma=lambda y: np.eye(2), eta=0.1)[0]
assert np.allclose(with_arrays, with_callables), (with_arrays, with_callables)
assert np.allclose(with_arrays, -(H @ x) - 0.05 * H @ (H @ x))
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(driver)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The non-smooth rules: Φ and φ (Gaussian averages of kinks at one index), the kink
/// pairs (bivariate normal means, Φ₂ by a Python transcription of Genz's BVNU) in d = 3
/// with a random covariance; a sample with its own law (SGLD); sign expanded away from
/// its kink (Signum).
#[test]
fn non_smooth_rules() {
    check("signsgd1", "signsgd.opt", 1, false);
    check("lion1", "lion.opt", 1, false);
    check("clipped1", "clipped_sgd.opt", 1, false);
    check("signum2", "signum.opt", 2, false);
    check("sgld2", "sgld.opt", 2, false);
}

/// Norms expanded away from 0: scalar functions that sum over the index (‖m‖, ‖∇f‖),
/// `np.sum` in NumPy, a Python loop over components in the Rust evaluator.
#[test]
fn norms() {
    check("nsgd2", "normalized_sgd.opt", 2, false);
    check("nsam2", "sam_normalized.opt", 2, false);
    check("nmom2", "normalized_momentum.opt", 2, false);
}

/// A second, independent sample at a random point: its covariance Σ(y) at y built
/// from the first sample, averaged conditionally (∇Σ terms).
#[test]
fn independent_sample_at_a_random_point() {
    check("eg2", "extragradient_two_samples.opt", 2, false);
}
