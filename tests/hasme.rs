//! The Hessian-aware SME of SGD (Li, Shen, Zhang & He 2024; shared/FORMULAS.md §8.1):
//! recognised from the derived series of the quadratic part, and checked against the
//! closed forms' coefficients computed by hand.

use num_rational::BigRational;
use smelt::analysis::hasme::hessian_aware;
use smelt::emit::hasme::text as render;

fn q(n: i64, d: i64) -> BigRational {
    BigRational::new(n.into(), d.into())
}

fn source(file: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn sgd_series_is_the_hessian_aware_closed_form() {
    let opt = smelt::check(&source("sgd.opt")).unwrap();
    let h = hessian_aware(&opt, 4).unwrap();
    assert!(h.mismatches.is_empty(), "{:?}", h.mismatches);
    // drift (log(I - ηH)/(ηH)) ∇f = -(1 + ηH/2 + η²H²/3 + η³H³/4 + …) ∇f
    assert_eq!(h.drift, vec![q(-1, 1), q(-1, 2), q(-1, 3), q(-1, 4)]);
    // diffusion: η[Σ + (η/2)(HΣ + ΣH) + (η²/6)(2H²Σ + HΣH + 2ΣH²) + …], by hand from
    // g(u, w) = (-log(1-u) - log(1-w))/(u + w - uw), u = ηL, w = ηR.
    assert_eq!(h.diffusion[0], vec![q(1, 1)]);
    assert_eq!(h.diffusion[1], vec![q(1, 2), q(1, 2)]);
    assert_eq!(h.diffusion[2], vec![q(1, 3), q(1, 6), q(1, 3)]);
    insta::assert_snapshot!("sgd", render(&h));
}

#[test]
fn momentum_is_declined_with_a_reason() {
    let opt = smelt::check(&source("momentum.opt")).unwrap();
    let err = hessian_aware(&opt, 4).unwrap_err();
    assert_eq!(err.diagnostics()[0].code, smelt::Code::Unsupported);
}

// ---------------------------------------------------------------------------------
// The other formats. The SymPy and NumPy checks run the generated code against SGD's
// exact one-step law on a 2×2 quadratic, computed separately in Python (mpmath, 50
// digits): x' = x - η(Hx - c + ξ), ξ ~ N(0, Σ), with H and Σ that do not commute.

mod support;

use smelt::emit::hasme;
use smelt::emit::json::{hasme_from_json, hasme_to_json};

fn sgd(order: u32) -> smelt::analysis::hasme::HaSme {
    let opt = smelt::check(&source("sgd.opt")).unwrap();
    hessian_aware(&opt, order).unwrap()
}

/// SGD's exact one-step law and the exact transition of an OU process, in mpmath.
const EXACT: &str = r#"
from mpmath import mp, mpf, matrix, expm, eye as mp_eye, zeros as mp_zeros, mnorm, log as mp_log
mp.dps = 50

def mpm(rows):
    return matrix([[mpf(v) for v in row] for row in rows])

# f(x) = xᵀHx/2 - cᵀx, noise covariance SIG; H·SIG ≠ SIG·H. Start: mean M0, covariance C0.
PROBLEMS = {
    'definite': [[2, 1], [1, 3]],
    'indefinite': [[1, 2], [2, -1]],
    'singular': [[1, 1], [1, 1]],
}
C_LIN = mpm([[1], [-2]])
SIG = mpm([['1', '0.5'], ['0.5', '2']])
M0 = mpm([['0.25'], ['-1']])
C0 = mpm([['0.5', '0.125'], ['0.125', '0.25']])
for _h in PROBLEMS.values():
    assert mnorm(mpm(_h) * SIG - SIG * mpm(_h), 1) > 0.1

def block(m, r0, r1, c0, c1):
    return matrix([[m[i, j] for j in range(c0, c1)] for i in range(r0, r1)])

def sgd_step(h, m, c, e):
    """One SGD step: mean and covariance exactly."""
    r = mp_eye(2) - e * h
    return r * m + e * C_LIN, r * c * r.T + e**2 * SIG

def ou_step(b, beta, d, m, c, e):
    """The law of dX = (bX + beta) dt + d^(1/2) dW after time e, exactly: the mean by the
    exponential of the augmented drift, the covariance by Van Loan's block exponential."""
    n = b.rows
    aug = mp_zeros(n + 1, n + 1)
    vl = mp_zeros(2 * n, 2 * n)
    for i in range(n):
        aug[i, n] = beta[i, 0]
        for j in range(n):
            aug[i, j] = b[i, j]
            vl[i, j] = -b[i, j]
            vl[i, n + j] = d[i, j]
            vl[n + i, n + j] = b[j, i]
    a = expm(aug * e)
    phi, shift = block(a, 0, n, 0, n), block(a, 0, n, n, n + 1)
    f = expm(vl * e)
    noise = block(f, n, 2 * n, n, 2 * n).T * block(f, 0, n, n, 2 * n)
    return phi * m + shift, phi * c * phi.T + noise

def compare(name, coefficients, h, e, steps):
    """The OU process of (b, beta, d) = coefficients(e) against SGD: the largest
    difference of mean and covariance over the steps."""
    b, beta, d = coefficients(e)
    m, c = M0, C0
    mo, co = M0, C0
    worst = mpf(0)
    for _ in range(steps):
        m, c = sgd_step(h, m, c, e)
        mo, co = ou_step(b, beta, d, mo, co, e)
        worst = max(worst, mnorm(m - mo, 1), mnorm(c - co, 1))
    return worst

def assert_exact(name, coefficients, h, e, tol):
    worst = compare(name, coefficients, h, e, 3)
    assert worst < tol, (name, worst)
    print(name, 'exact to', mp.nstr(worst, 3))

def assert_order(name, coefficients, h, p):
    """One step of the series' OU process errs as e^(p+1): local slopes over halvings."""
    for what in (0, 1):
        errs = []
        for e in (mpf(1) / 20, mpf(1) / 40, mpf(1) / 80):
            b, beta, d = coefficients(e)
            m, c = sgd_step(h, M0, C0, e)
            mo, co = ou_step(b, beta, d, M0, C0, e)
            errs.append(mnorm(m - mo, 1) if what == 0 else mnorm(c - co, 1))
        slopes = [mp_log(errs[i] / errs[i + 1], 2) for i in range(2)]
        print(name, ('mean', 'covariance')[what], 'local slopes', [mp.nstr(s, 4) for s in slopes])
        assert all(abs(s - (p + 1)) < 0.4 for s in slopes), (name, what, slopes, errs)
"#;

#[test]
fn sympy_closed_forms_are_sgd_exactly_and_the_series_to_its_order() {
    let h = sgd(4);
    let script = hasme::sympy(&h, Some(2));
    let checks = r#"
from sympy import N as _N, Rational as _R, eye as _se, Matrix as _M

def from_sympy(a):
    return matrix([[mpf(str(_N(a[i, j], 60))) for j in range(a.cols)] for i in range(a.rows)])

h_s = _M(PROBLEMS['definite'])
c_s = _M([1, -2])
sig_s = _M([[1, _R(1, 2)], [_R(1, 2), 2]])
h_mp = mpm(PROBLEMS['definite'])

def rational(e):
    return _R(int(e * 80), 80) if e * 80 == int(e * 80) else _R(1, 10)

def in_h(drift_fn, diffusion_fn):
    """b(x) = G (Hx - c) with G read off drift_fn on the unit vectors."""
    def coefficients(e):
        e = rational(e)
        g = _M.hstack(*[drift_fn(h_s, _se(2)[:, j], e) for j in range(2)])
        return from_sympy(g * h_s), from_sympy(-g * c_s), from_sympy(diffusion_fn(h_s, sig_s, e))
    return coefficients

# The component series of the script (`drift`, `diffusion`) on the same quadratic.
_quadratic = {f: (x.T * h_s * x)[0] / 2 - (c_s.T * x)[0],
              Sigma_1_1: sig_s[0, 0], Sigma_1_2: sig_s[0, 1], Sigma_2_2: sig_s[1, 1]}
_b = drift.subs(_quadratic).doit()
_d = diffusion.subs(_quadratic).doit()

def components(e):
    e = rational(e)
    b = _b.subs(eta, e)
    return (from_sympy(b.jacobian([x1, x2])), from_sympy(b.subs({x1: 0, x2: 0})),
            from_sympy(_d.subs(eta, e)))

assert_exact('closed forms', in_h(hessian_aware_drift, hessian_aware_diffusion), h_mp, mpf(1) / 10, mpf(10)**-40)
p = hessian_aware_order
assert p == 4
assert_order('series in H', in_h(hessian_aware_drift_series, hessian_aware_diffusion_series), h_mp, p)
assert_order('component series', components, h_mp, p)
print('checks passed')
"#;
    support::python::run_checks(
        "hasme-sympy",
        &format!("{script}\n# ---- the test's checks ----\n{EXACT}\n{checks}"),
        &[],
    );
}

#[test]
fn numpy_closed_forms_are_sgd_exactly_and_the_series_to_its_order() {
    let module = hasme::numpy(&sgd(4));
    let checks = r#"
import numpy as np
import hasme_module as mod

def from_numpy(a):
    a = np.atleast_2d(a)
    return matrix([[mpf(float(v)) for v in row] for row in a])

def coefficients_of(drift_fn, diffusion_fn, h):
    h_np = np.array(h, dtype=float)
    c_np = np.array([1.0, -2.0])
    sig_np = np.array([[1.0, 0.5], [0.5, 2.0]])
    def coefficients(e):
        kw = dict(hess_f=h_np, Sigma=sig_np, eta=float(e))
        g = np.column_stack([drift_fn(np.zeros(2), grad_f=np.eye(2)[:, j], **kw)[0] for j in range(2)])
        (d,) = diffusion_fn(np.zeros(2), grad_f=np.zeros(2), **kw).values()
        return from_numpy(g @ h_np), from_numpy((-(g @ c_np))[:, None]), from_numpy(d)
    return coefficients

assert mod.STATE == ('x',) and mod.ORDER == 4
for name, h in PROBLEMS.items():
    assert_exact('closed forms, ' + name, coefficients_of(mod.drift, mod.diffusion, h), mpm(h), mpf(1) / 10, 1e-13)
    assert_order('series, ' + name, coefficients_of(mod.drift_series, mod.diffusion_series, h), mpm(h), mod.ORDER)
# A callable input is called at the parameter.
b1 = mod.drift(np.ones(2), grad_f=lambda x: 2 * x, hess_f=np.eye(2), Sigma=np.eye(2), eta=0.1)[0]
b2 = mod.drift(np.ones(2), grad_f=np.full(2, 2.0), hess_f=np.eye(2), Sigma=np.eye(2), eta=0.1)[0]
assert np.array_equal(b1, b2)
print('checks passed')
"#;
    support::python::run_checks(
        "hasme-numpy",
        &format!("{EXACT}\n{checks}"),
        &[("hasme_module.py", &module)],
    );
}

#[test]
fn json_reads_back_with_the_coefficients() {
    for order in [2, 3, 4] {
        let h = sgd(order);
        let text = hasme_to_json(&h);
        let back = hasme_from_json(&text).unwrap_or_else(|e| panic!("order {order}: {e}"));
        assert_eq!(back, h, "order {order}");
        assert_eq!(hasme_to_json(&back), text);
        // The coefficients as read back: the closed forms' series, by hand.
        let drift: Vec<BigRational> = (0..order as i64).map(|n| q(-1, n + 1)).collect();
        assert_eq!(back.drift, drift);
        assert_eq!(back.diffusion.len(), order as usize - 1);
        let by_hand = [vec![q(1, 1)], vec![q(1, 2), q(1, 2)]];
        for (row, hand) in back.diffusion.iter().zip(&by_hand) {
            assert_eq!(row, hand);
        }
    }
    let text = hasme_to_json(&sgd(3));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["schema"], "smelt-hasme");
    assert_eq!(doc["certified"], true);
    assert_eq!(doc["sme"]["schema"], "smelt-sme");
    assert_eq!(
        doc["diffusion_series"][2],
        serde_json::json!({"power": 2, "left": 1, "right": 0, "coefficient": "1/2"})
    );
    insta::assert_snapshot!("sgd_json", text);
    // Another schema, or a series out of order, is refused.
    let other = text.replace(
        "\"version\": 1,\n  \"optimizer\"",
        "\"version\": 9,\n  \"optimizer\"",
    );
    assert!(hasme_from_json(&other)
        .unwrap_err()
        .to_string()
        .contains("version 9"));
    let swapped = text.replacen(
        "\"left\": 0,\n      \"right\": 1",
        "\"left\": 2,\n      \"right\": 1",
        1,
    );
    assert!(hasme_from_json(&swapped)
        .unwrap_err()
        .to_string()
        .contains("out of order"));
}

#[test]
fn latex_is_pinned_and_the_standalone_document_compiles() {
    let h = sgd(4);
    insta::assert_snapshot!("sgd_latex", hasme::latex(&h, false));
    if !support::latex::have_pdflatex() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("smelt-hasme-latex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for order in [2, 4] {
        support::latex::compile(
            &dir,
            &format!("hasme_{order}"),
            &hasme::latex(&sgd(order), true),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn components_write_out_the_series() {
    let text = hasme::components(&sgd(3), 2);
    assert!(text.starts_with(&render(&sgd(3))), "{text}");
    // D = ηΣ + (η²/2)(HΣ + ΣH): entry (1,1) is η Σ₁₁ + η²(∂₁₁f Σ₁₁ + ∂₁₂f Σ₁₂).
    assert!(
        text.contains("D_xx₁₁ = η² ∂₁₁f Σ₁₁ + η² ∂₁₂f Σ₁₂ + η Σ₁₁"),
        "{text}"
    );
    assert!(text.contains("b_x₂ = "), "{text}");
}

/// The command line: every format, and the orders it cannot honour.
#[test]
fn the_command_line_honours_format_dim_standalone_and_order() {
    let sgd_file = format!("{}/examples/sgd.opt", env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args(["derive", &sgd_file, "--hessian-aware"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let h = sgd(3);
    let cases: [(&[&str], String); 6] = [
        (&["-o", "3"], render(&h)),
        (&["-o", "3", "--dim", "2"], hasme::components(&h, 2)),
        (&["-o", "3", "-f", "json"], hasme_to_json(&h)),
        (
            &["-o", "3", "-f", "latex", "--standalone"],
            hasme::latex(&h, true),
        ),
        (
            &["-o", "3", "-f", "sympy", "--dim", "2"],
            hasme::sympy(&h, Some(2)),
        ),
        (&["-o", "3", "-f", "numpy"], hasme::numpy(&h)),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = run(args);
        assert_eq!(
            (code, stdout.as_str()),
            (0, expected.as_str()),
            "{args:?}: {stderr}"
        );
    }
    // Without --order: the series through η³.
    let (code, stdout, _) = run(&[]);
    assert_eq!((code, stdout), (0, render(&sgd(4))));
    // Orders that cannot be honoured are errors, not clamped.
    for order in ["1", "7"] {
        let (code, stdout, stderr) = run(&["-o", order]);
        assert_eq!(code, 1, "order {order}");
        assert!(stdout.is_empty());
        assert!(
            stderr.contains(&format!("cannot be certified at order {order}"))
                && stderr.contains("between 2 and 6"),
            "{stderr}"
        );
    }
    // A rule whose series are not the closed forms': shown in text and JSON (exit 1),
    // nothing to export in the other formats.
    let dir = std::env::temp_dir().join(format!("smelt-hasme-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let odd = dir.join("odd.opt");
    let rule = "x = x - eta*(grad f(x) + xi)";
    let text = source("sgd.opt").replace(rule, &format!("{rule} - eta^2*grad f(x)"));
    std::fs::write(&odd, text).unwrap();
    let odd_run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args([
                "derive",
                odd.to_str().unwrap(),
                "--hessian-aware",
                "-o",
                "3",
            ])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let (code, stdout, _) = odd_run(&[]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("do not match") && stdout.contains("terms other than H^n ∇f remain"));
    let (code, stdout, _) = odd_run(&["-f", "json"]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("\"certified\": false"), "{stdout}");
    for format in ["latex", "sympy", "numpy"] {
        let (code, stdout, stderr) = odd_run(&["-f", format]);
        assert_eq!(code, Some(1), "{format}");
        assert!(
            stdout.is_empty() && stderr.contains("none to export"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Options that do not apply to the format are usage errors.
    for args in [&["--standalone"][..], &["-f", "numpy", "--dim", "2"][..]] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(
            stdout.is_empty() && stderr.starts_with("error: "),
            "{stderr}"
        );
    }
}
