//! The exact sum behind the cross-block reduction (`sim::sum::ExactSum`), against an
//! exact rational sum (num-rational's `BigRational`, built from each `f64` exactly):
//! the two sides share nothing but the inputs. The rational sum is rounded by a check
//! of its own (the candidate and its two neighbours), not by the accumulator's rounding.

use num_rational::BigRational;
use num_traits::{Signed, Zero};
use rand_core::Rng as _;
use rand_xoshiro::rand_core::SeedableRng as _;
use smelt::internals::sim::sum::{ExactSum, Term};

fn exact(xs: &[f64]) -> BigRational {
    xs.iter()
        .map(|&x| BigRational::from_float(x).expect("finite"))
        .fold(BigRational::zero(), |a, b| a + b)
}

fn next_up(x: f64) -> f64 {
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let b = x.to_bits();
    f64::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

fn next_down(x: f64) -> f64 {
    -next_up(-x)
}

/// Whether `v` is the exact sum rounded to nearest, ties to even.
fn correctly_rounded(v: f64, sum: &BigRational) -> bool {
    if !v.is_finite() {
        return false;
    }
    let at = |x: f64| (BigRational::from_float(x).expect("finite") - sum).abs();
    let d = at(v);
    for n in [next_up(v), next_down(v)] {
        if !n.is_finite() {
            continue;
        }
        let dn = at(n);
        if dn < d || (dn == d && v.to_bits() & 1 == 1) {
            return false;
        }
    }
    true
}

fn sum_of(xs: &[f64]) -> ExactSum {
    let mut s = ExactSum::default();
    for &x in xs {
        s.add(x);
    }
    s
}

/// Adversarial inputs: cancellations of huge values around tiny ones, mixed magnitudes,
/// negative zeros, subnormals, ties.
fn cases() -> Vec<Vec<f64>> {
    let tiny = f64::from_bits(1);
    let mut out = vec![
        vec![1e308, 1.0, -1e308],
        vec![1e308, 1e308, -1e308, -1e308, 3.0],
        vec![1.0, 1e-16, 1e-16],
        vec![1.0, f64::EPSILON / 2.0],
        vec![1.0, f64::EPSILON / 2.0, tiny],
        vec![1.0 + f64::EPSILON, f64::EPSILON / 2.0],
        vec![-0.0, -0.0],
        vec![-0.0, 0.0, -0.0],
        vec![tiny, tiny, -tiny, tiny],
        vec![f64::MIN_POSITIVE, -tiny],
        vec![f64::MIN_POSITIVE / 3.0, f64::MIN_POSITIVE / 7.0, -1e-320],
        vec![f64::MAX, -f64::MAX, f64::MAX / 2.0],
        vec![1e100, -1e-100, -1e100, 1e-100, 5e-324],
        vec![0.1; 10],
        vec![],
    ];
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(21);
    for _ in 0..40 {
        let len = 1 + (rng.next_u64() % 60) as usize;
        let mut v = Vec::new();
        for _ in 0..len {
            let mant = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let exp = (rng.next_u64() % 600) as i32 - 300;
            let sign = if rng.next_u64() & 1 == 1 { -1.0 } else { 1.0 };
            let x = sign * mant * 2f64.powi(exp);
            v.push(x);
            if rng.next_u64() % 4 == 0 {
                v.push(-x * (1.0 + f64::EPSILON));
            }
        }
        out.push(v);
    }
    out
}

#[test]
fn the_sum_is_the_exact_sum_correctly_rounded() {
    for xs in cases() {
        let s = sum_of(&xs);
        let exact = exact(&xs);
        let v = s.value();
        assert!(correctly_rounded(v, &exact), "{xs:?}: {v:e}");
        // A zero sum is +0.0 whatever zeros were added.
        if exact.is_zero() {
            assert_eq!(v.to_bits(), 0, "{xs:?}");
        }
    }
    // Where plain summation loses everything.
    assert_eq!(sum_of(&[1e308, 1.0, -1e308]).value(), 1.0);
    assert_eq!(1e308 + 1.0 - 1e308, 0.0);
}

#[test]
fn permutations_and_groupings_give_the_same_bits() {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
    for xs in cases() {
        let whole = sum_of(&xs).value();
        for _ in 0..8 {
            // A random permutation, cut into random groups summed apart and merged.
            let mut ys = xs.clone();
            for i in (1..ys.len()).rev() {
                ys.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let mut groups: Vec<ExactSum> = Vec::new();
            let mut cur = ExactSum::default();
            for &y in &ys {
                cur.add(y);
                if rng.next_u64() % 3 == 0 {
                    groups.push(std::mem::take(&mut cur));
                }
            }
            groups.push(cur);
            let mut total = ExactSum::default();
            for g in groups.iter().rev() {
                total.merge(g);
            }
            assert_eq!(total.value().to_bits(), whole.to_bits(), "{xs:?}");
        }
    }
}

#[test]
fn the_terms_round_trip_through_json() {
    for xs in cases() {
        let s = sum_of(&xs);
        let terms = s.terms();
        // Non-overlapping, largest first: each term beyond the first is at most half an
        // ulp of the one before.
        for w in terms.windows(2) {
            if let [Term::F(a), Term::F(b)] = w {
                assert!(b.abs() <= (next_up(a.abs()) - a.abs()) / 2.0, "{terms:?}");
            }
        }
        let text = serde_json::to_string(&s).expect("serializes");
        let back: ExactSum = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, s, "{text}");
        assert_eq!(
            exact(
                &back
                    .terms()
                    .iter()
                    .map(|t| match t {
                        Term::F(x) => *x,
                        Term::S(_) => 0.0,
                    })
                    .collect::<Vec<_>>()
            ),
            exact(&xs)
        );
    }
}

#[test]
fn non_finite_values_combine_in_any_order() {
    let inf = f64::INFINITY;
    for (xs, want) in [
        (vec![1.0, inf, 2.0], inf),
        (vec![-inf, 1e308, 1e308], -inf),
        (vec![inf, 1.0, -inf], f64::NAN),
        (vec![f64::NAN, 1.0], f64::NAN),
    ] {
        let mut ys = xs.clone();
        ys.reverse();
        for v in [sum_of(&xs).value(), sum_of(&ys).value()] {
            assert!(v.is_nan() && want.is_nan() || v == want, "{xs:?}: {v}");
        }
        let text = serde_json::to_string(&sum_of(&xs)).expect("serializes");
        let back: ExactSum = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, sum_of(&xs), "{text}");
    }
    // A finite sum past f64's range rounds to infinity, as IEEE rounding does, and
    // keeps its exact value.
    let big = sum_of(&[f64::MAX, f64::MAX]);
    assert_eq!(big.value(), inf);
    let back: ExactSum =
        serde_json::from_str(&serde_json::to_string(&big).expect("serializes")).expect("parses");
    assert_eq!(back, big);
    let mut down = back;
    down.add(-f64::MAX);
    assert_eq!(down.value(), f64::MAX);
    assert!(serde_json::from_str::<ExactSum>("[1.0, \"infinity\"]").is_err());
}
