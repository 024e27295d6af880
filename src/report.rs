//! Weak-error reports: the fitted order of convergence with its confidence interval.
//!
//! Given weak errors `e(η)` measured on a grid of step sizes, each with a standard error,
//! [`fit`] fits `log e = log C + p log η` by weighted least squares (weights from the
//! standard errors of `log e`, by the delta method), gives the slope's 95% confidence
//! interval, and the local slopes between neighbouring step sizes; [`judge`] words the
//! one verdict every report uses (confirms, contradicts, …). The
//! largest step sizes are often pre-asymptotic (DESIGN.md §4), so [`fit_asymptotic`]
//! drops leading points while the local slopes disagree with the fit.

/// One measured point: step size, weak error, its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub step: f64,
    pub error: f64,
    pub std_err: f64,
}

/// A fitted order of convergence.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// The slope of log error against log step.
    pub slope: f64,
    /// Half-width of its 95% confidence interval.
    pub half_width: f64,
    /// Slopes between neighbouring points, largest step first.
    pub local: Vec<f64>,
    /// How many of the largest steps were left out as pre-asymptotic.
    pub dropped: usize,
}

/// How close a slope must be to an order to confirm it, and how far below it the whole
/// confidence interval must lie to contradict it.
pub const TOLERANCE: f64 = 0.1;

/// What a fitted slope says about the weak order an SME was derived to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The slope is within [`TOLERANCE`] of the order and its 95% interval excludes the
    /// neighbouring orders, on one sign of the error.
    Confirms,
    /// The whole 95% interval lies more than [`TOLERANCE`] below the order: the SME's
    /// error shrinks more slowly than its derivation claims.
    Contradicts,
    /// The whole interval lies more than [`TOLERANCE`] above the order: the error
    /// vanishes faster on this problem than the order promises (an order is a bound,
    /// so this contradicts nothing).
    Steeper,
    /// Anything else: no fit, an interval too wide, errors that change sign, a slope
    /// between orders.
    Inconclusive,
}

/// A verdict on one fit: its status and the sentence that says it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: Status,
    /// "slope 2.02 ± 0.05: confirms order 2".
    pub text: String,
}

/// The one rule by which every report (text, JSON, plot) judges a fitted slope against
/// the order the derivation reached (`derived`). `one_sign` says whether the resolved
/// errors keep one sign (a power law does); `no_fit` is the sentence when there is no
/// fit. A wide interval never confirms: it must stay within half an order of `derived`.
pub fn judge(fit: Option<&Fit>, derived: u32, one_sign: bool, no_fit: &str) -> Verdict {
    let inconclusive = |text: String| Verdict {
        status: Status::Inconclusive,
        text,
    };
    let Some(f) = fit else {
        return inconclusive(no_fit.to_string());
    };
    let slope = format!("slope {:.2} ± {:.2}", f.slope, f.half_width);
    if !(f.slope.is_finite() && f.half_width.is_finite()) || f.half_width > 0.5 {
        return inconclusive(format!(
            "{slope}: too uncertain to tell the order (use more paths, or larger steps)"
        ));
    }
    if !one_sign {
        return inconclusive(format!(
            "{slope}: the resolved errors change sign, so they follow no one power law"
        ));
    }
    if derived == 0 {
        return inconclusive(format!(
            "{slope}: the derivation reached no weak order, so there is none to check"
        ));
    }
    let p = derived as f64;
    let (lo, hi) = (f.slope - f.half_width, f.slope + f.half_width);
    if hi < p - TOLERANCE {
        return Verdict {
            status: Status::Contradicts,
            text: format!(
                "{slope} contradicts derived order {derived}: the SME's error shrinks more slowly than its derivation claims"
            ),
        };
    }
    if lo > p + TOLERANCE {
        return Verdict {
            status: Status::Steeper,
            text: format!(
                "{slope}: steeper than derived order {derived} (the error vanishes faster on this problem)"
            ),
        };
    }
    // Confirmed: near the order, and closer to it than to any other order with 95%
    // confidence (the interval stays within half an order of it).
    if (f.slope - p).abs() <= TOLERANCE && p - 0.5 < lo && hi < p + 0.5 {
        return Verdict {
            status: Status::Confirms,
            text: format!("{slope}: confirms order {derived}"),
        };
    }
    if (f.slope - p).abs() <= TOLERANCE {
        inconclusive(format!(
            "{slope}: near order {derived}, but the interval reaches half-way to the neighbouring orders (use more paths)"
        ))
    } else {
        inconclusive(format!(
            "{slope}: neither confirms nor contradicts order {derived} (the interval reaches within {TOLERANCE} of it; use more paths or smaller steps)"
        ))
    }
}

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom; 1.96 beyond.
fn t975(dof: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if dof == 0 {
        f64::INFINITY
    } else if dof <= 30 {
        T[dof - 1]
    } else {
        1.96
    }
}

/// The usable points (positive error and step), largest step first, with their weights
/// `1/var(log e) = e²/se²` (delta method; equal weights without standard errors) and
/// their logarithms.
struct LogData {
    pts: Vec<Point>,
    w: Vec<f64>,
    x: Vec<f64>,
    y: Vec<f64>,
}

fn log_data(points: &[Point]) -> LogData {
    let mut pts: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.error > 0.0 && p.step > 0.0)
        .collect();
    pts.sort_by(|a, b| b.step.total_cmp(&a.step));
    let w = pts
        .iter()
        .map(|p| {
            if p.std_err > 0.0 {
                (p.error / p.std_err).powi(2)
            } else {
                1.0
            }
        })
        .collect();
    let x = pts.iter().map(|p| p.step.ln()).collect();
    let y = pts.iter().map(|p| p.error.ln()).collect();
    LogData { pts, w, x, y }
}

/// Weighted least squares on all points (at least two with positive errors).
pub fn fit(points: &[Point]) -> Option<Fit> {
    let LogData { pts, w, x, y } = log_data(points);
    if pts.len() < 2 {
        return None;
    }
    let sw: f64 = w.iter().sum();
    let xm = w.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() / sw;
    let ym = w.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>() / sw;
    let sxx: f64 = w.iter().zip(&x).map(|(a, b)| a * (b - xm).powi(2)).sum();
    let sxy: f64 = w
        .iter()
        .zip(&x)
        .zip(&y)
        .map(|((a, b), c)| a * (b - xm) * (c - ym))
        .sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let n = pts.len();
    let half_width = if n > 2 {
        let rss: f64 = w
            .iter()
            .zip(&x)
            .zip(&y)
            .map(|((a, b), c)| a * (c - ym - slope * (b - xm)).powi(2))
            .sum();
        // Residual scatter, but never below what the standard errors alone imply
        // (exact data, without standard errors, has only the scatter).
        let exact = pts.iter().all(|p| p.std_err == 0.0);
        let sigma2 = if exact {
            rss / (n - 2) as f64
        } else {
            (rss / (n - 2) as f64).max(1.0)
        };
        t975(n - 2) * (sigma2 / sxx).sqrt()
    } else {
        1.96 * (1.0 / sxx).sqrt()
    };
    let local = pts
        .windows(2)
        .map(|p| (p[0].error / p[1].error).ln() / (p[0].step / p[1].step).ln())
        .collect();
    Some(Fit {
        slope,
        half_width,
        local,
        dropped: 0,
    })
}

/// [`fit`] after dropping the largest steps while their local slope falls outside the
/// confidence interval of the fit on the remaining points (keeping at least three).
pub fn fit_asymptotic(points: &[Point]) -> Option<Fit> {
    let mut pts: Vec<Point> = points.to_vec();
    pts.sort_by(|a, b| b.step.total_cmp(&a.step));
    let mut dropped = 0;
    while pts.len() > 3 {
        let rest = fit(&pts[1..])?;
        let first_local = (pts[0].error / pts[1].error).ln() / (pts[0].step / pts[1].step).ln();
        if (first_local - rest.slope).abs() <= 2.0 * rest.half_width.max(0.05) {
            break;
        }
        pts.remove(0);
        dropped += 1;
    }
    let mut f = fit(&pts)?;
    f.dropped = dropped;
    Some(f)
}

/// Fits `e = C h^p (1 + c h)` (the leading power with its first correction, DESIGN.md
/// §4) by weighted Gauss–Newton on the logarithms, at least four points. For exact data
/// (no standard errors) this recovers the order to two decimals where a pure power law
/// is pulled off by the largest steps. `local` and `dropped` are as in [`fit`] (nothing
/// is dropped).
pub fn fit_corrected(points: &[Point]) -> Option<Fit> {
    let base = fit(points)?;
    let LogData { pts, w, x, y } = log_data(points);
    if pts.len() < 4 {
        return None;
    }
    let h: Vec<f64> = pts.iter().map(|p| p.step).collect();
    let n = pts.len();
    // Start from the straight line.
    let xm = x.iter().sum::<f64>() / n as f64;
    let ym = y.iter().sum::<f64>() / n as f64;
    let mut theta = [ym - base.slope * xm, base.slope, 0.0];
    let model = |t: &[f64; 3], i: usize| t[0] + t[1] * x[i] + (1.0 + t[2] * h[i]).ln();
    let mut jtj = [[0.0; 3]; 3];
    for _ in 0..100 {
        let mut jtr = [0.0; 3];
        jtj = [[0.0; 3]; 3];
        for i in 0..n {
            if 1.0 + theta[2] * h[i] <= 0.0 {
                return None;
            }
            let r = y[i] - model(&theta, i);
            let j = [1.0, x[i], h[i] / (1.0 + theta[2] * h[i])];
            for a in 0..3 {
                jtr[a] += w[i] * j[a] * r;
                for b in 0..3 {
                    jtj[a][b] += w[i] * j[a] * j[b];
                }
            }
        }
        let step = solve3(&jtj, &jtr)?;
        for a in 0..3 {
            theta[a] += step[a];
        }
        if step.iter().all(|s| s.abs() < 1e-13) {
            break;
        }
    }
    let rss: f64 = (0..n)
        .map(|i| w[i] * (y[i] - model(&theta, i)).powi(2))
        .sum();
    let dof = n - 3;
    let exact = pts.iter().all(|p| p.std_err == 0.0);
    let sigma2 = if exact {
        rss / dof as f64
    } else {
        (rss / dof as f64).max(1.0)
    };
    let cov_pp = solve3(&jtj, &[0.0, 1.0, 0.0])?[1];
    let half_width = t975(dof) * (sigma2 * cov_pp).max(0.0).sqrt();
    theta[1].is_finite().then_some(Fit {
        slope: theta[1],
        half_width,
        local: base.local,
        dropped: 0,
    })
}

/// Solves a 3×3 system by Cramer's rule (None when singular).
fn solve3(m: &[[f64; 3]; 3], b: &[f64; 3]) -> Option<[f64; 3]> {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(m);
    if d == 0.0 || !d.is_finite() {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut mk = *m;
        for r in 0..3 {
            mk[r][k] = b[r];
        }
        *o = det(&mk) / d;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(c: f64, p: f64, steps: &[f64]) -> Vec<Point> {
        steps
            .iter()
            .map(|&h| Point {
                step: h,
                error: c * h.powf(p),
                std_err: 0.01 * c * h.powf(p),
            })
            .collect()
    }

    #[test]
    fn exact_power_laws_give_their_slope() {
        let f = fit(&points(3.0, 2.0, &[0.25, 0.125, 0.0625, 0.03125])).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-12);
        assert!(f.half_width < 0.05);
        let v = |p| judge(Some(&f), p, true, "");
        assert_eq!(v(2).status, Status::Confirms);
        assert!(v(2).text.contains("confirms order 2"), "{}", v(2).text);
        assert_eq!(v(3).status, Status::Contradicts);
        assert!(v(3).text.contains("contradicts derived order 3"));
        assert_eq!(v(1).status, Status::Steeper);
        assert!(f.local.iter().all(|s| (s - 2.0).abs() < 1e-12));
    }

    #[test]
    fn a_pre_asymptotic_point_is_dropped() {
        // e = η²(1 + 4η): the largest step bends the line.
        let steps = [0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125];
        let pts: Vec<Point> = steps
            .iter()
            .map(|&h| Point {
                step: h,
                error: h * h * (1.0 + 4.0 * h),
                std_err: 1e-4 * h * h,
            })
            .collect();
        let all = fit(&pts).unwrap();
        let asym = fit_asymptotic(&pts).unwrap();
        assert!(asym.dropped >= 1);
        assert!((asym.slope - 2.0).abs() < (all.slope - 2.0).abs());
    }

    #[test]
    fn the_corrected_fit_recovers_the_order_of_a_bent_power_law() {
        let steps = [0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625];
        let pts: Vec<Point> = steps
            .iter()
            .map(|&h| Point {
                step: h,
                error: 0.7 * h * (1.0 - 2.5 * h),
                std_err: 0.0,
            })
            .collect();
        let plain = fit(&pts).unwrap();
        let f = fit_corrected(&pts).unwrap();
        assert!(
            (plain.slope - 1.0).abs() > 0.05,
            "the bend shows: {}",
            plain.slope
        );
        assert!((f.slope - 1.0).abs() < 1e-6, "{}", f.slope);
        assert!(f.half_width < 1e-3);
    }

    #[test]
    fn a_wide_interval_confirms_nothing() {
        let f = |slope, half_width| Fit {
            slope,
            half_width,
            local: Vec::new(),
            dropped: 0,
        };
        // Centred on the order but reaching the next one: not a confirmation.
        assert_eq!(
            judge(Some(&f(2.0, 1.2)), 2, true, "").status,
            Status::Inconclusive
        );
        assert_eq!(
            judge(Some(&f(1.95, 0.6)), 2, true, "").status,
            Status::Inconclusive
        );
        assert_eq!(
            judge(Some(&f(1.95, 0.3)), 2, true, "").status,
            Status::Confirms
        );
        // Errors that change sign follow no power law.
        assert_eq!(
            judge(Some(&f(1.95, 0.3)), 2, false, "").status,
            Status::Inconclusive
        );
        // Below, but the interval reaches within the tolerance: not a contradiction.
        assert_eq!(
            judge(Some(&f(1.7, 0.25)), 2, true, "").status,
            Status::Inconclusive
        );
        assert_eq!(
            judge(Some(&f(1.7, 0.15)), 2, true, "").status,
            Status::Contradicts
        );
        assert_eq!(judge(None, 2, true, "no fit").text, "no fit");
    }

    #[test]
    fn too_few_points_give_nothing() {
        assert!(fit(&points(1.0, 1.0, &[0.1])).is_none());
    }
}
