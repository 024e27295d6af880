//! Exact moments for linear-Gaussian problems: dense symmetric linear algebra
//! (eigen-decomposition, matrix functions, the matrix exponential) and one step of an
//! Ornstein–Uhlenbeck model's mean and covariance, `dX = −A X dt + Q^{1/2} dW` with A a
//! function of a symmetric H. The exact mode of the numeric verification builds on this;
//! the Hessian-aware SME's exactness on quadratics is tested with it
//! (tests/hasme_exact.rs). The matrix exponential serves the exact mode of
//! [`super::linear_gaussian`].
//!
//! Matrices and vectors cross this API as [`ndarray`] arrays ([`M`] = `Array2<f64>`,
//! [`V`] = `Array1<f64>`); the factorizations are `nalgebra`'s, reached through
//! [`to_na`] and [`from_na`].
//!
//! **Why nalgebra (and not faer).** The matrices here are small and dense (`d` up to
//! ~100 today, 10³ later) and the work is a symmetric eigen-decomposition, the matrix
//! exponential, a Cholesky factorization and small solves. nalgebra has all four in-tree
//! (`SymmetricEigen`, `Matrix::exp` — the scaling-and-squaring Padé method of Al-Mohy &
//! Higham, as in SciPy's `expm` —, `Cholesky`, `LU`); faer (0.24) has the
//! factorizations but no matrix exponential, so Van Loan's block exponentials would stay
//! hand-written, and its own documentation recommends nalgebra for applications that
//! work on small matrices, faer being tuned for medium and large ones. nalgebra is the
//! lighter dependency as well (with default features off: `simba`, `matrixmultiply`,
//! `num-complex`, `approx`, `typenum`, `wide`; faer brings `gemm`, `pulp`, `dyn-stack`,
//! `equator`, …); the build times measured are in the commit that made the change.
//! Both are accurate to rounding on these sizes (QR iterations on the tridiagonal form
//! for the eigenproblem).

use ndarray::{Array1, Array2, ArrayView2};

/// A dense matrix (rows × columns).
pub type M = Array2<f64>;
/// A dense vector.
pub type V = Array1<f64>;

/// An ndarray matrix as a nalgebra one.
pub fn to_na(a: ArrayView2<f64>) -> nalgebra::DMatrix<f64> {
    nalgebra::DMatrix::from_fn(a.nrows(), a.ncols(), |i, j| a[[i, j]])
}

/// A nalgebra matrix as an ndarray one.
pub fn from_na(m: &nalgebra::DMatrix<f64>) -> M {
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}

/// A matrix from its rows (rows of unequal length are cut to the shortest).
pub fn from_rows(rows: &[Vec<f64>]) -> M {
    let c = rows.iter().map(Vec::len).min().unwrap_or(0);
    Array2::from_shape_fn((rows.len(), c), |(i, j)| rows[i][j])
}

/// A `d × d` matrix from `d²` numbers, row by row (missing ones are NaN).
pub fn from_row_major(d: usize, flat: &[f64]) -> M {
    Array2::from_shape_fn((d, d), |(i, j)| {
        flat.get(i * d + j).copied().unwrap_or(f64::NAN)
    })
}

pub fn zeros(d: usize) -> M {
    Array2::zeros((d, d))
}

pub fn identity(d: usize) -> M {
    Array2::eye(d)
}

/// `A B`.
pub fn mul(a: &M, b: &M) -> M {
    a.dot(b)
}

/// `Aᵀ`.
pub fn transpose(a: &M) -> M {
    a.t().to_owned()
}

/// `A + s B`.
pub fn add(a: &M, b: &M, s: f64) -> M {
    a + &(b * s)
}

/// `A x`.
pub fn mv(a: &M, x: &[f64]) -> V {
    a.dot(&ndarray::ArrayView1::from(x))
}

/// Eigen-decomposition of a symmetric matrix (nalgebra's `SymmetricEigen`: Householder
/// tridiagonalization, then implicit symmetric QR): (λ, V) with A = V diag(λ) Vᵀ, V
/// orthogonal, the eigenvalues ascending (`V[[i, k]]`: component i of the k-th vector).
/// Only the lower triangle is read. A matrix with a non-finite entry, or one on which
/// the iteration does not converge, gives NaN eigenvalues and vectors.
pub fn eigh(a: &M) -> (V, M) {
    let d = a.nrows();
    let nan = || {
        (
            Array1::from_elem(d, f64::NAN),
            Array2::from_elem((d, d), f64::NAN),
        )
    };
    if a.ncols() != d || !a.iter().all(|x| x.is_finite()) {
        return nan();
    }
    let Some(e) = nalgebra::SymmetricEigen::try_new(to_na(a.view()), f64::EPSILON, 1000 + 100 * d)
    else {
        return nan();
    };
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&p, &q| e.eigenvalues[p].total_cmp(&e.eigenvalues[q]));
    let lam = order.iter().map(|&k| e.eigenvalues[k]).collect();
    let v = Array2::from_shape_fn((d, d), |(i, k)| e.eigenvectors[(i, order[k])]);
    (lam, v)
}

/// Serializes a vector as a plain sequence of numbers (as a `Vec<f64>` would be).
pub fn serialize_vector<S: serde::Serializer>(v: &V, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter())
}

/// Serializes a matrix as a sequence of rows (as a `Vec<Vec<f64>>` would be).
pub fn serialize_rows<S: serde::Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.rows().into_iter().map(|r| r.to_vec()))
}

/// `V diag(g(λ)) Vᵀ`.
pub fn func(l: &V, v: &M, g: impl Fn(f64) -> f64) -> M {
    let gl = l.mapv(g);
    (v * &gl).dot(&v.t())
}

/// An OU model: drift matrix A (as a function of H's eigenvalues) and diffusion Q.
pub struct Ou {
    /// The drift matrix as a function of the eigenvalues of H.
    pub a: Box<dyn Fn(f64) -> f64>,
    /// The diffusion matrix.
    pub q: M,
}

/// One step of time η of the OU moments; the noise integral by 20-point Gauss–Legendre.
pub fn ou_step(m: &Ou, l: &V, v: &M, eta: f64, mu: &V, c: &M) -> (V, M) {
    let e = func(l, v, |x| (-(m.a)(x) * eta).exp());
    let mu2 = e.dot(mu);
    let mut c2 = e.dot(c).dot(&e.t());
    let (nodes, weights) = gauss_legendre(20);
    for (x, w) in nodes.iter().zip(&weights) {
        let s = 0.5 * eta * (x + 1.0);
        let es = func(l, v, |y| (-(m.a)(y) * s).exp());
        c2 = c2 + es.dot(&m.q).dot(&es.t()) * (0.5 * eta * w);
    }
    (mu2, c2)
}

/// Gauss–Legendre nodes and weights on [-1, 1], by Newton's method on the Legendre
/// polynomial. Kept over Golub–Welsch through [`eigh`]
/// ([`gauss_legendre_golub_welsch`]): against 50-digit nodes and weights, Newton's
/// largest node error is 1.1e-16 at n = 5, 20 and 64 and its largest relative weight
/// error 3.5e-16, 8.3e-15, 9.3e-14; Golub–Welsch's are 6.7e-16, 1.2e-15, 1.6e-15 and
/// 1.5e-15, 6.8e-14, 5.7e-13. |Σw − 2| is ≤ 4.4e-16 (Newton) against ≤ 1.6e-15, and the
/// error of `∫x^(2n−2)` ≤ 2.6e-16 against ≤ 2.3e-15.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    // P_n(z) and P_n'(z) by the three-term recurrence.
    let legendre = |z: f64| {
        let (mut p0, mut p1) = (1.0, z);
        for k in 2..=n {
            let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
            p0 = p1;
            p1 = p2;
        }
        (p1, n as f64 * (z * p1 - p0) / (z * z - 1.0))
    };
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..n {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        for _ in 0..100 {
            let (p, dp) = legendre(z);
            let dz = p / dp;
            z -= dz;
            if dz.abs() < 1e-16 {
                break;
            }
        }
        let (_, dp) = legendre(z);
        x[i] = z;
        w[i] = 2.0 / ((1.0 - z * z) * dp * dp);
    }
    (x, w)
}

/// Gauss–Legendre nodes and weights by Golub–Welsch: the eigenvalues of the Jacobi
/// matrix and the squared first components of its eigenvectors (times 2), ascending.
pub fn gauss_legendre_golub_welsch(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut j = zeros(n);
    for k in 1..n {
        let b = k as f64 / ((4 * k * k - 1) as f64).sqrt();
        j[[k - 1, k]] = b;
        j[[k, k - 1]] = b;
    }
    let (x, v) = eigh(&j);
    let w = (0..n).map(|k| 2.0 * v[[0, k]] * v[[0, k]]).collect();
    (x.to_vec(), w)
}

/// The 1-norm (largest column sum of absolute values).
pub fn norm1(a: &M) -> f64 {
    a.columns()
        .into_iter()
        .map(|c| c.iter().map(|x| x.abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

/// `e^A` (nalgebra's `Matrix::exp`: scaling and squaring with Padé approximants, Al-Mohy
/// & Higham 2009). A matrix with a non-finite or astronomically large entry, or one not
/// square, gives NaN entries.
pub fn expm(a: &M) -> M {
    let norm = norm1(a);
    if a.nrows() != a.ncols() || !norm.is_finite() || norm > 1e300 {
        return Array2::from_elem(a.dim(), f64::NAN);
    }
    if a.nrows() == 0 {
        return zeros(0);
    }
    from_na(&to_na(a.view()).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// A deterministic pseudo-random number in [-1, 1).
    fn rnd(s: &mut u64) -> f64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    fn max_diff(a: &M, b: &M) -> f64 {
        (a - b).iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    /// A = V diag(λ) Vᵀ, VᵀV = I, λ ascending.
    fn check_eigh(a: &M, tol: f64) {
        let d = a.nrows();
        let (l, v) = eigh(a);
        let scale = 1.0 + norm1(a);
        assert!(max_diff(&func(&l, &v, |x| x), a) < tol * scale, "{a}");
        assert!(max_diff(&v.t().dot(&v), &identity(d)) < tol);
        assert!(l.windows(2).into_iter().all(|w| w[0] <= w[1]), "{l}");
    }

    #[test]
    fn eigh_reconstructs_the_matrix() {
        let a = array![[2.0, 0.6, -0.3], [0.6, 1.0, 0.4], [-0.3, 0.4, -0.5]];
        check_eigh(&a, 1e-13);
    }

    #[test]
    fn eigh_reconstructs_random_symmetric_matrices() {
        let mut s = 0x1234_5678_9abc_def1;
        for d in [1, 2, 5, 17, 40] {
            let b = Array2::from_shape_fn((d, d), |_| rnd(&mut s));
            let a = &b + &b.t();
            check_eigh(&a, 1e-12);
        }
    }

    #[test]
    fn eigh_handles_repeated_eigenvalues() {
        // Q diag(2, 2, 2, −1, 0, 0) Qᵀ with a random orthogonal Q (from another eigh).
        let mut s = 77;
        let b = Array2::from_shape_fn((6, 6), |_| rnd(&mut s));
        let (_, q) = eigh(&(&b + &b.t()));
        let want = array![-1.0, 0.0, 0.0, 2.0, 2.0, 2.0];
        let a = func(&array![2.0, 2.0, 2.0, -1.0, 0.0, 0.0], &q, |x| x);
        check_eigh(&a, 1e-13);
        let (l, _) = eigh(&a);
        assert!((&l - &want).iter().all(|x| x.abs() < 1e-13), "{l}");
        // The identity and the zero matrix.
        check_eigh(&identity(4), 1e-15);
        check_eigh(&zeros(3), 1e-15);
    }

    #[test]
    fn eigh_of_a_non_finite_matrix_is_nan_not_a_panic() {
        let (l, v) = eigh(&array![[1.0, f64::NAN], [f64::NAN, 1.0]]);
        assert!(l.iter().chain(v.iter()).all(|x| x.is_nan()));
        let (l, _) = eigh(&array![[f64::INFINITY, 0.0], [0.0, 1.0]]);
        assert!(l.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn expm_matches_closed_forms() {
        // A rotation generator: e^{[[0, −θ], [θ, 0]]} = [[cos θ, −sin θ], [sin θ, cos θ]].
        for theta in [0.1, 1.0, 3.0, 20.0] {
            let e = expm(&array![[0.0, -theta], [theta, 0.0]]);
            let (c, s) = (f64::cos(theta), f64::sin(theta));
            assert!(
                max_diff(&e, &array![[c, -s], [s, c]]) < 1e-13 * (1.0 + theta),
                "{e}"
            );
        }
        // A diagonal: the exponentials of its entries.
        let e = expm(&Array2::from_diag(&array![-3.0, 0.0, 0.5, 7.0]));
        let want = Array2::from_diag(&array![(-3f64).exp(), 1.0, 0.5f64.exp(), 7f64.exp()]);
        assert!(
            (&e - &want)
                .iter()
                .zip(want.iter())
                .all(|(d, w)| d.abs() <= 1e-14 * w.abs().max(1e-300) || *d == 0.0),
            "{e}"
        );
        assert_eq!(expm(&zeros(3)), identity(3));
        // A nilpotent Jordan block: e^N = I + N + N²/2.
        let n = array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]];
        let want = array![[1.0, 1.0, 0.5], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]];
        assert!(max_diff(&expm(&n), &want) < 1e-15);
    }

    #[test]
    fn expm_of_a_matrix_and_its_negative_are_inverses() {
        let mut s = 99;
        for (d, scale) in [(2, 0.3), (5, 1.0), (12, 4.0)] {
            let a = Array2::from_shape_fn((d, d), |_| scale * rnd(&mut s));
            let (e, f) = (expm(&a), expm(&-&a));
            // Rounding in the product grows with the conditioning ‖e^A‖‖e^−A‖.
            let tol = 1e-15 * d as f64 * norm1(&e) * norm1(&f);
            let p = e.dot(&f);
            assert!(max_diff(&p, &identity(d)) < tol, "d = {d}: {p}");
        }
    }

    #[test]
    fn expm_of_a_non_finite_or_huge_matrix_is_nan() {
        assert!(expm(&array![[f64::NAN, 0.0], [0.0, 1.0]])
            .iter()
            .all(|x| x.is_nan()));
        assert!(expm(&array![[1e301, 0.0], [0.0, 1.0]])
            .iter()
            .all(|x| x.is_nan()));
        assert!(expm(&Array2::zeros((2, 3))).iter().all(|x| x.is_nan()));
    }

    #[test]
    fn gauss_legendre_rules_integrate_polynomials_of_degree_2n_minus_1() {
        for n in [5, 20, 64] {
            for (tol, (x, w)) in [
                (1e-15, gauss_legendre(n)),
                (5e-15, gauss_legendre_golub_welsch(n)),
            ] {
                assert_eq!((x.len(), w.len()), (n, n));
                let q = |p: i32| x.iter().zip(&w).map(|(x, w)| w * x.powi(p)).sum::<f64>();
                assert!((q(0) - 2.0).abs() < tol, "n = {n}: Σw = {}", q(0));
                let p = 2 * n as i32 - 2;
                assert!((q(p) - 2.0 / (p + 1) as f64).abs() < tol, "n = {n}");
                assert!(q(p + 1).abs() < tol, "n = {n}");
            }
        }
        // n = 5 against its closed form: ±√(5 ∓ 2√(10/7))/3 and 0.
        let (x, _) = gauss_legendre(5);
        let r = (10f64 / 7.0).sqrt();
        let mut want = [
            -(5.0 + 2.0 * r).sqrt() / 3.0,
            -(5.0 - 2.0 * r).sqrt() / 3.0,
            0.0,
            (5.0 - 2.0 * r).sqrt() / 3.0,
            (5.0 + 2.0 * r).sqrt() / 3.0,
        ];
        want.sort_by(f64::total_cmp);
        let mut got = x.clone();
        got.sort_by(f64::total_cmp);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 3e-16, "{g} vs {w}");
        }
    }

    #[test]
    fn cholesky_of_a_singular_psd_matrix() {
        // Σ = u uᵀ + w wᵀ in d = 3: rank 2, one zero eigenvalue.
        let (u, w) = (array![1.0, 2.0, -1.0], array![0.5, -1.0, 3.0]);
        let outer = |a: &V| {
            let c = a.view().insert_axis(ndarray::Axis(1));
            c.dot(&c.t())
        };
        let sigma = outer(&u) + outer(&w);
        let (l, _) = eigh(&sigma);
        assert!(l[0].abs() < 1e-13 * l[2], "{l}");
        // nalgebra's Cholesky refuses it (Σ is not definite) ...
        let psd =
            crate::numeric::linear_gaussian::Quadratic::new(zeros(3), V::zeros(3), sigma.clone());
        assert_eq!(
            psd.err().map(|e| e.to_string()).as_deref(),
            Some("Σ must be positive definite")
        );
        // ... the semidefinite factor of the simulations takes it, with L Lᵀ = Σ.
        let mut f = vec![0.0; 9];
        let flat: Vec<f64> = sigma.iter().copied().collect();
        crate::sim::ha::cholesky_psd(&flat, &mut f, 3);
        let f = from_row_major(3, &f);
        assert!(max_diff(&f.dot(&f.t()), &sigma) < 1e-12, "{f}");
        // And a definite one factors through nalgebra: Σ + I.
        let ok = crate::numeric::linear_gaussian::Quadratic::new(
            zeros(3),
            V::zeros(3),
            sigma + identity(3),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn gauss_legendre_integrates_polynomials() {
        let (x, w) = gauss_legendre(20);
        let integral: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(10)).sum();
        assert!((integral - 2.0 / 11.0).abs() < 1e-13);
    }
}
