//! Exact Gaussian elimination over the rationals, for the small linear systems of the
//! analyses (gradient potentials, scaling rules). The right-hand sides may be rationals
//! or polynomials: anything that can be scaled by a rational and subtracted.

use crate::algebra::poly::Poly;
use num_rational::BigRational;
use num_traits::Zero;

/// A right-hand side entry.
pub trait Rhs: Clone {
    fn scaled(&self, q: &BigRational) -> Self;
    fn minus(&self, other: &Self) -> Self;
    fn vanishes(&self) -> bool;
}

impl Rhs for BigRational {
    fn scaled(&self, q: &BigRational) -> Self {
        self * q
    }
    fn minus(&self, other: &Self) -> Self {
        self - other
    }
    fn vanishes(&self) -> bool {
        self.is_zero()
    }
}

impl Rhs for Poly {
    fn scaled(&self, q: &BigRational) -> Self {
        self.scale(q)
    }
    fn minus(&self, other: &Self) -> Self {
        self.sub(other)
    }
    fn vanishes(&self) -> bool {
        self.is_zero()
    }
}

/// The reduced system `A x = b` with `n` unknowns.
pub struct Solution<R> {
    /// (row, column) of each pivot; after reduction row `row` reads `x[col] + … = b[row]`.
    pub pivots: Vec<(usize, usize)>,
    /// The reduced right-hand side.
    pub rhs: Vec<R>,
    /// For each reduced row, the index of the equation it came from.
    pub origin: Vec<usize>,
}

impl<R: Rhs> Solution<R> {
    /// The first equation (original index) that cannot hold, if any.
    pub fn inconsistent(&self) -> Option<usize> {
        let rank = self.pivots.len();
        (rank..self.rhs.len())
            .find(|&i| !self.rhs[i].vanishes())
            .map(|i| self.origin[i])
    }

    /// The columns without a pivot (free unknowns).
    pub fn free(&self, n: usize) -> Vec<usize> {
        (0..n)
            .filter(|c| !self.pivots.iter().any(|(_, pc)| pc == c))
            .collect()
    }
}

/// Gauss–Jordan elimination with rational pivots.
pub fn eliminate<R: Rhs>(mut a: Vec<Vec<BigRational>>, mut b: Vec<R>, n: usize) -> Solution<R> {
    let m = a.len();
    let mut origin: Vec<usize> = (0..m).collect();
    let mut pivots = Vec::new();
    let mut r = 0;
    for col in 0..n {
        let Some(p) = (r..m).find(|&i| !a[i][col].is_zero()) else {
            continue;
        };
        a.swap(r, p);
        b.swap(r, p);
        origin.swap(r, p);
        let inv = a[r][col].recip();
        for x in a[r].iter_mut() {
            *x *= &inv;
        }
        b[r] = b[r].scaled(&inv);
        for i in 0..m {
            if i != r && !a[i][col].is_zero() {
                let f = a[i][col].clone();
                let row_r = a[r].clone();
                for (x, y) in a[i].iter_mut().zip(&row_r) {
                    *x -= &f * y;
                }
                b[i] = b[i].minus(&b[r].scaled(&f));
            }
        }
        pivots.push((r, col));
        r += 1;
    }
    Solution {
        pivots,
        rhs: b,
        origin,
    }
}
