//! Escape-time plots: survival curves of exit times and their scaling, as a standalone SVG.
//!
//! [`svg`] draws an [`EscapePlot`] in one or two panels, each 480 px wide and 420 px high:
//!
//! * Left: the Kaplan–Meier survival curves `P(τ > t)` of every model at one step size, as
//!   right-continuous step functions (horizontal, then vertical segments), each drawn flat
//!   up to its censoring horizon. The time axis is linear from 0 to the largest horizon (or
//!   last drop time), with ticks at 1, 2 or 5 × 10^k; the probability axis runs over
//!   [0, 1] with ticks at quarters. Long curves are thinned to at most two vertices per
//!   `1/300` of the panel width (the level entering and leaving that column, plus the
//!   column's extremes should the input not be monotone), so a curve of any length keeps
//!   its step shape with at most about 600 vertices.
//! * Right (when [`EscapePlot::scaling`] is set): mean exit times against a scaling
//!   variable, as markers with vertical 95% interval bars, per-series fitted lines (solid,
//!   in the series colour) and an optional predicted line (dashed grey). The y axis is
//!   base-10 logarithmic with decade ticks (and minor ticks at 2..9 when it spans at most
//!   four decades) when [`Scaling::log_y`] is set, linear otherwise; the x axis is linear.
//!
//! Model `i` has the same colour in both panels (Okabe–Ito palette, colour-blind safe).
//! Each panel has a legend, placed in whichever inner corner of the plot area hides the
//! least of the data.
//!
//! Nothing that cannot be drawn is drawn: curve points with a non-finite or negative time
//! or a non-finite probability, scaling points with a non-finite coordinate (or, on a log
//! axis, a non-positive y) are skipped and counted in a grey note under the panel.
//! Interval bars, fitted and predicted lines are clipped at the plot area's edges (a
//! clipped bar end has no cap). NaN or infinite values never appear in the output. All
//! text is XML-escaped. The output is a pure function of the input, with coordinates
//! printed with at most two decimals, so equal inputs give byte-identical documents.

use crate::report::plot::{esc, num, open_svg, truncate};
use std::f64::consts::LN_10;
use std::fmt::Write;

/// One model's Kaplan–Meier survival curve P(τ > t), a right-continuous step function.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// The legend label (the model's name).
    pub label: String,
    /// (t, S) at each time the curve drops, t increasing, S in \[0, 1\] non-increasing; S = 1 before the first point.
    pub points: Vec<(f64, f64)>,
    /// The censoring horizon: the curve is drawn flat up to here (None: up to the last point).
    pub horizon: Option<f64>,
}

/// One point of the scaling panel: y with a 95% interval [lo, hi].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalePoint {
    /// The scaling variable.
    pub x: f64,
    /// The estimate, e.g. the mean exit time.
    pub y: f64,
    /// The lower end of its 95% interval.
    pub lo: f64,
    /// The upper end of its 95% interval.
    pub hi: f64,
}

/// One model's points in the scaling panel, with an optional fitted line.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSeries {
    /// The legend label (the model's name); series `i` shares its colour with curve `i`.
    pub label: String,
    /// The points, in any order.
    pub points: Vec<ScalePoint>,
    /// A fitted line y = intercept + slope * x, drawn over the points' x range (in the plotted y units: if log_y, the fit is of ln y, i.e. y = exp(intercept + slope x)).
    pub fit: Option<(f64, f64)>, // (slope, intercept)
}

/// The right panel: an estimate (e.g. the mean exit time) against a scaling variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    /// Drawn above the panel.
    pub title: String,
    /// Drawn under the horizontal axis.
    pub x_label: String,
    /// Drawn rotated along the vertical axis.
    pub y_label: String,
    /// Whether y is drawn on a base-10 log axis (the fit is then of the natural log of y).
    pub log_y: bool,
    /// The models' points and fits.
    pub series: Vec<ScaleSeries>,
    /// A predicted line (label, slope, intercept) in the same units as the fits, drawn dashed grey.
    pub predicted: Option<(String, f64, f64)>,
}

/// A complete escape-time figure.
#[derive(Debug, Clone, PartialEq)]
pub struct EscapePlot {
    /// Drawn centred at the top of the figure.
    pub title: String,
    /// Left panel: survival curves of every model at one step size.
    pub survival_title: String,
    /// Drawn under the left panel's time axis.
    pub time_label: String,
    /// The survival curves, one per model.
    pub curves: Vec<Curve>,
    /// Right panel (optional): mean exit time against the scaling variable.
    pub scaling: Option<Scaling>,
}

const HEIGHT: f64 = 420.0;
const PANEL_W: f64 = 480.0;
/// The plot area of panel k: [k·PANEL_W + PLOT_L, k·PANEL_W + PLOT_R] × [TOP, BOTTOM].
const PLOT_L: f64 = 70.0;
const PLOT_R: f64 = 462.0;
const TOP: f64 = 58.0;
const BOTTOM: f64 = 350.0;
/// The probability axis runs over [-S_PAD, 1 + S_PAD], so levels 0 and 1 clear the frame.
const S_PAD: f64 = 0.03;
/// Survival curves keep at most about two vertices per 1/MAX_COLUMNS of the plot width.
const MAX_COLUMNS: f64 = 300.0;
/// Okabe–Ito colours (colour-blind safe), yellow left out for contrast on white.
const PALETTE: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];
const PREDICTED_COLOR: &str = "#777777";
/// Circle, square, triangle up, diamond, triangle down, cross.
const MARKERS: usize = 6;
const MARKER_R: f64 = 4.0;
const CAP_HALF: f64 = 3.5;
/// Bar ends, fit and predicted lines widen the y range at most this far beyond the
/// points (in decades on log axes; on linear axes half the points' span is used instead).
const LOG_REACH: f64 = 1.0;
const LEGEND_CHARS: usize = 30;
const LEGEND_ROW: f64 = 16.0;

/// The figure as a complete SVG document (deterministic: same input, byte-identical output).
pub fn svg(p: &EscapePlot) -> String {
    let panels = if p.scaling.is_some() { 2.0 } else { 1.0 };
    let width = PANEL_W * panels;
    let mut out = open_svg(width, HEIGHT, &p.title, 24.0);
    survival_panel(&mut out, p, Frame::panel(0));
    if let Some(s) = &p.scaling {
        scaling_panel(&mut out, s, Frame::panel(1));
    }
    out.push_str("</svg>\n");
    out
}

// ---------------------------------------------------------------------------------------
// Formatting

/// `x` rounded to the two decimals [`num`] prints, so equal printed values compare equal.
fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Trailing zeros (and a bare trailing point) of a decimal string removed.
fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// A value for a legend: three significant digits, plain or "1.23e-5"; "n/a" when not finite.
fn fmt_sig(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let a = x.abs();
    if (1e-3..1e5).contains(&a) {
        let magnitude = a.log10().floor() as i32;
        let decimals = (2 - magnitude).max(0) as usize;
        trim_zeros(&format!("{x:.decimals$}"))
    } else {
        let s = format!("{x:.2e}");
        match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim_zeros(m)),
            None => s,
        }
    }
}

/// A linear tick label: `v` is a multiple of the tick step 10^`exp` × (1, 2 or 5).
fn fmt_tick(v: f64, exp: i32) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let decimals = (-exp).max(0);
    if decimals <= 6 && v.abs() < 1e7 {
        let d = decimals as usize;
        return format!("{v:.d$}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let digits = (magnitude - exp).clamp(0, 8) as usize;
    let s = format!("{v:.digits$e}");
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{e}", trim_zeros(m)),
        None => s,
    }
}

/// A decade label: "1000" or "0.01" when `plain`, else "10³" with Unicode superscripts.
fn decade_label(d: i32, plain: bool) -> String {
    if plain {
        return if d >= 0 {
            format!("1{}", "0".repeat(d as usize))
        } else {
            format!("0.{}1", "0".repeat((-d - 1) as usize))
        };
    }
    crate::report::plot::decade_label(d)
}

// ---------------------------------------------------------------------------------------
// Geometry

/// A plot area in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn panel(k: usize) -> Frame {
        let ox = k as f64 * PANEL_W;
        Frame {
            left: ox + PLOT_L,
            right: ox + PLOT_R,
            top: TOP,
            bottom: BOTTOM,
        }
    }

    fn width(&self) -> f64 {
        self.right - self.left
    }

    fn mid_x(&self) -> f64 {
        (self.left + self.right) / 2.0
    }

    fn mid_y(&self) -> f64 {
        (self.top + self.bottom) / 2.0
    }
}

/// A point (x, y) in pixels.
type Pt = (f64, f64);
/// A segment between two points in pixels.
type Seg = (Pt, Pt);

/// A linear map from [lo, hi] (data) to [px_lo, px_hi] (pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Lin {
    lo: f64,
    hi: f64,
    px_lo: f64,
    px_hi: f64,
}

impl Lin {
    fn px(&self, v: f64) -> f64 {
        self.px_lo + (v - self.lo) / (self.hi - self.lo) * (self.px_hi - self.px_lo)
    }

    fn contains(&self, v: f64) -> bool {
        let eps = 1e-9 * (self.hi - self.lo);
        v >= self.lo - eps && v <= self.hi + eps
    }
}

/// Ticks at multiples of a 1, 2 or 5 × 10^k step inside [lo, hi]: the smallest such
/// step that cuts the range into at most `max_intervals`, with the step's exponent k
/// (for labelling). Empty for a degenerate range.
fn nice_ticks(lo: f64, hi: f64, max_intervals: f64) -> (Vec<f64>, i32) {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return (Vec::new(), 0);
    }
    let mut exp = (span / max_intervals).log10().floor() as i32;
    let unit = 10f64.powi(exp);
    let m = [1.0, 2.0, 5.0]
        .into_iter()
        .find(|m| span / (m * unit) <= max_intervals)
        .unwrap_or_else(|| {
            exp += 1;
            1.0
        });
    let step = m * 10f64.powi(exp);
    let eps = 1e-9 * span;
    let first = ((lo - eps) / step).ceil();
    let last = ((hi + eps) / step).floor();
    if !(first.is_finite() && last.is_finite()) || last - first > 50.0 {
        return (Vec::new(), exp);
    }
    let ticks = (first as i64..=last as i64)
        .map(|k| {
            let v = k as f64 * step;
            if v == 0.0 {
                0.0
            } else {
                v
            }
        })
        .collect();
    (ticks, exp)
}

/// [min, max] padded by 5% on each side (by 10% of |v|, or 1, when min = max);
/// `None` when not finite.
fn padded(min: f64, max: f64) -> Option<(f64, f64)> {
    let span = max - min;
    let pad = if span > 0.0 {
        0.05 * span
    } else if min != 0.0 {
        0.1 * min.abs()
    } else {
        1.0
    };
    let (lo, hi) = (min - pad, max + pad);
    (lo.is_finite() && hi.is_finite() && hi > lo).then_some((lo, hi))
}

/// The smallest and largest of some values; `None` when there are none.
fn extent(vs: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    vs.into_iter().fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((a, b)) => Some((a.min(v), b.max(v))),
    })
}

/// A log10 range [lo, hi] covering these log10 values: padded by 3% (at least 0.05
/// decades), widened to half decades, and to whole decades when needed for two labelled
/// decade ticks.
fn log_range(min: f64, max: f64) -> Option<(f64, f64)> {
    let pad = (0.03 * (max - min)).max(0.05);
    let mut lo = ((min - pad) * 2.0).floor() / 2.0;
    let mut hi = ((max + pad) * 2.0).ceil() / 2.0;
    if hi.floor() - lo.ceil() < 1.0 {
        hi = hi.ceil();
    }
    if hi.floor() - lo.ceil() < 1.0 {
        lo = lo.floor();
    }
    (lo.is_finite() && hi.is_finite() && hi > lo).then_some((lo, hi))
}

/// The labelled decades of a log10 range: every decade, or every k-th (≤ ~9 labels).
fn decades(lo: f64, hi: f64) -> Vec<i32> {
    let k = ((hi - lo) / 8.0).ceil().max(1.0) as i32;
    (lo.ceil() as i32..=hi.floor() as i32)
        .filter(|d| d.rem_euclid(k) == 0)
        .collect()
}

/// log10 of m·10^d for m = 2..9 strictly inside a log10 range spanning ≤ 4 decades.
fn minor_decades(lo: f64, hi: f64) -> Vec<f64> {
    if hi - lo > 4.0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for d in lo.floor() as i32..=hi.ceil() as i32 {
        for m in 2..=9 {
            let lv = f64::from(d) + f64::from(m).log10();
            if lv > lo && lv < hi {
                out.push(lv);
            }
        }
    }
    out
}

/// The part of segment a–b inside the frame (Liang–Barsky); `None` when it misses it.
fn clip(a: Pt, b: Pt, f: &Frame) -> Option<Seg> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - f.left),
        (dx, f.right - a.0),
        (-dy, a.1 - f.top),
        (dy, f.bottom - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    if t0.is_nan() || t1.is_nan() || t0 > t1 {
        return None;
    }
    let at = |t: f64| (a.0 + t * dx, a.1 + t * dy);
    let (c, d) = (at(t0), at(t1));
    [c.0, c.1, d.0, d.1]
        .iter()
        .all(|v| v.is_finite())
        .then_some((c, d))
}

// ---------------------------------------------------------------------------------------
// Shared drawing

/// One legend row: a swatch and a text.
struct LegendEntry {
    swatch: Swatch,
    text: String,
    /// A grey suffix after the text, e.g. a fitted slope.
    note: String,
}

enum Swatch {
    /// A solid line in model i's colour.
    Line(usize),
    /// Model i's marker, with a solid line through it when it has a fit.
    Marker(usize, bool),
    /// The dashed grey predicted line.
    Dashed,
}

/// The frame, grid lines, ticks and tick labels of a plot area: `x_ticks` and `y_ticks`
/// are (pixel, label) with labelled ticks; `y_minor` pixel rows get short unlabelled ticks.
fn draw_axes(
    out: &mut String,
    f: &Frame,
    x_ticks: &[(f64, String)],
    y_ticks: &[(f64, String)],
    y_minor: &[f64],
) {
    out.push_str(r##"<g class="grid" stroke="#ececec" stroke-width="1">"##);
    out.push('\n');
    for y in y_minor {
        let y = num(*y);
        let _ = writeln!(
            out,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#f5f5f5"/>"##,
            num(f.left),
            num(f.right)
        );
    }
    for (x, _) in x_ticks {
        let x = num(*x);
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            num(f.top),
            num(f.bottom)
        );
    }
    for (y, _) in y_ticks {
        let y = num(*y);
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
            num(f.left),
            num(f.right)
        );
    }
    out.push_str("</g>\n");
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333333"/>"##,
        num(f.left),
        num(f.top),
        num(f.width()),
        num(f.bottom - f.top)
    );
    out.push_str(r##"<g class="ticks" stroke="#333333" stroke-width="1">"##);
    out.push('\n');
    for (x, _) in x_ticks {
        let x = num(*x);
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            num(f.bottom),
            num(f.bottom + 5.0)
        );
    }
    let majors = y_ticks.iter().map(|(y, _)| (*y, 5.0));
    for (y, len) in majors.chain(y_minor.iter().map(|y| (*y, 3.0))) {
        let y = num(y);
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
            num(f.left - len),
            num(f.left)
        );
    }
    out.push_str("</g>\n");
    out.push_str(r##"<g class="tick-labels" font-size="11" fill="#333333">"##);
    out.push('\n');
    for (x, label) in x_ticks {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            num(*x),
            num(f.bottom + 18.0),
            esc(label)
        );
    }
    for (y, label) in y_ticks {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            num(f.left - 8.0),
            num(*y + 4.0),
            esc(label)
        );
    }
    out.push_str("</g>\n");
}

/// Panel title above, x label below, y label rotated on the left of the plot area.
fn draw_labels(out: &mut String, f: &Frame, title: &str, x_label: &str, y_label: &str) {
    if !title.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#,
            num(f.mid_x()),
            num(f.top - 12.0),
            esc(&truncate(title, 60))
        );
    }
    if !x_label.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
            num(f.mid_x()),
            num(f.bottom + 40.0),
            esc(&truncate(x_label, 60))
        );
    }
    if !y_label.is_empty() {
        let (x, y) = (num(f.left - PLOT_L + 18.0), num(f.mid_y()));
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{y}" transform="rotate(-90 {x} {y})" text-anchor="middle" font-size="13">{}</text>"#,
            esc(&truncate(y_label, 45))
        );
    }
}

/// A grey "no data" in an empty plot area.
fn draw_no_data(out: &mut String, f: &Frame) {
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333333"/>"##,
        num(f.left),
        num(f.top),
        num(f.width()),
        num(f.bottom - f.top)
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="16" fill="#888888">no data</text>"##,
        num(f.mid_x()),
        num(f.mid_y())
    );
}

/// A grey note under the panel's right edge, e.g. how many points were skipped.
fn draw_note(out: &mut String, f: &Frame, skipped: usize, what: &str) {
    if skipped == 0 {
        return;
    }
    let plural = if skipped == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        r##"<text class="note" x="{}" y="{}" text-anchor="end" font-size="10" fill="#666666">{skipped} {what}{plural} not drawable (skipped)</text>"##,
        num(f.right),
        num(HEIGHT - 8.0)
    );
}

/// Model i's marker centred at (x, y) with radius about r, in its colour.
fn marker(out: &mut String, i: usize, x: f64, y: f64, r: f64) {
    let color = PALETTE[i % PALETTE.len()];
    let poly = |pts: &[(f64, f64)]| {
        pts.iter()
            .map(|(dx, dy)| format!("{},{}", num(x + dx * r), num(y + dy * r)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = match i % MARKERS {
        0 => writeln!(
            out,
            r#"<circle class="marker" cx="{}" cy="{}" r="{}" fill="{color}"/>"#,
            num(x),
            num(y),
            num(r)
        ),
        1 => writeln!(
            out,
            r#"<rect class="marker" x="{}" y="{}" width="{s}" height="{s}" fill="{color}"/>"#,
            num(x - 0.85 * r),
            num(y - 0.85 * r),
            s = num(1.7 * r)
        ),
        2 => writeln!(
            out,
            r#"<polygon class="marker" points="{}" fill="{color}"/>"#,
            poly(&[(0.0, -1.2), (1.1, 0.8), (-1.1, 0.8)])
        ),
        3 => writeln!(
            out,
            r#"<polygon class="marker" points="{}" fill="{color}"/>"#,
            poly(&[(0.0, -1.25), (1.0, 0.0), (0.0, 1.25), (-1.0, 0.0)])
        ),
        4 => writeln!(
            out,
            r#"<polygon class="marker" points="{}" fill="{color}"/>"#,
            poly(&[(0.0, 1.2), (1.1, -0.8), (-1.1, -0.8)])
        ),
        _ => writeln!(
            out,
            r#"<path class="marker" d="M{} L{} M{} L{}" stroke="{color}" stroke-width="2" fill="none"/>"#,
            poly(&[(-1.0, -1.0)]),
            poly(&[(1.0, 1.0)]),
            poly(&[(-1.0, 1.0)]),
            poly(&[(1.0, -1.0)])
        ),
    };
}

/// The legend's box (x, y, width, height) in the inner corner of the plot area that
/// hides the least of `occupied` (segments in pixels; points are zero-length segments):
/// each segment counts its clipped length plus 8. Ties go to top right, top left,
/// bottom left, bottom right in that order.
fn legend_box(f: &Frame, entries: &[LegendEntry], occupied: &[Seg]) -> (f64, f64, f64, f64) {
    let chars = entries
        .iter()
        .map(|e| e.text.chars().count() + e.note.chars().count())
        .max()
        .unwrap_or(0);
    let w = (40.0 + 6.4 * chars as f64).clamp(60.0, f.width() - 16.0);
    let h = (LEGEND_ROW * entries.len() as f64 + 8.0).min(f.bottom - f.top - 16.0);
    let inset = 8.0;
    let (xl, xr) = (f.left + inset, f.right - inset - w);
    let (yt, yb) = (f.top + inset, f.bottom - inset - h);
    let corners = [(xr, yt), (xl, yt), (xl, yb), (xr, yb)];
    let mut best = (f64::INFINITY, corners[0]);
    for (x, y) in corners {
        let rect = Frame {
            left: x,
            right: x + w,
            top: y,
            bottom: y + h,
        };
        let score: f64 = occupied
            .iter()
            .filter_map(|&(a, b)| clip(a, b, &rect))
            .map(|(c, d)| 8.0 + (d.0 - c.0).hypot(d.1 - c.1))
            .sum();
        if score < best.0 {
            best = (score, (x, y));
        }
    }
    (best.1 .0, best.1 .1, w, h)
}

fn draw_legend(out: &mut String, f: &Frame, entries: &[LegendEntry], occupied: &[Seg]) {
    if entries.is_empty() {
        return;
    }
    let (x, y, w, h) = legend_box(f, entries, occupied);
    out.push_str(r#"<g class="legend">"#);
    out.push('\n');
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#ffffff" fill-opacity="0.85" stroke="#cccccc"/>"##,
        num(x),
        num(y),
        num(w),
        num(h)
    );
    let rows = ((h - 8.0) / LEGEND_ROW).floor().max(0.0) as usize;
    for (k, e) in entries.iter().enumerate().take(rows) {
        let row = y + 4.0 + LEGEND_ROW * (k as f64 + 0.5);
        let (x0, x1) = (x + 6.0, x + 28.0);
        match e.swatch {
            Swatch::Line(i) => {
                let _ = writeln!(
                    out,
                    r#"<line x1="{}" y1="{r}" x2="{}" y2="{r}" stroke="{}" stroke-width="2"/>"#,
                    num(x0),
                    num(x1),
                    PALETTE[i % PALETTE.len()],
                    r = num(row)
                );
            }
            Swatch::Marker(i, with_line) => {
                if with_line {
                    let _ = writeln!(
                        out,
                        r#"<line x1="{}" y1="{r}" x2="{}" y2="{r}" stroke="{}" stroke-width="1.5"/>"#,
                        num(x0),
                        num(x1),
                        PALETTE[i % PALETTE.len()],
                        r = num(row)
                    );
                }
                marker(out, i, (x0 + x1) / 2.0, row, MARKER_R);
            }
            Swatch::Dashed => {
                let _ = writeln!(
                    out,
                    r#"<line x1="{}" y1="{r}" x2="{}" y2="{r}" stroke="{PREDICTED_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"/>"#,
                    num(x0),
                    num(x1),
                    r = num(row)
                );
            }
        }
        let note = if e.note.is_empty() {
            String::new()
        } else {
            format!(r##"<tspan fill="#666666">{}</tspan>"##, esc(&e.note))
        };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">{}{note}</text>"#,
            num(x1 + 6.0),
            num(row + 4.0),
            esc(&e.text)
        );
    }
    if rows < entries.len() {
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" font-size="10" fill="#666666">… {} more</text>"##,
            num(x + w - 50.0),
            num(y + h - 3.0),
            entries.len() - rows
        );
    }
    out.push_str("</g>\n");
}

// ---------------------------------------------------------------------------------------
// Survival panel

/// A curve's drawable drops (sorted by time, S clamped to [0, 1]), where it ends, and how
/// many points were skipped.
struct Prepared {
    drops: Vec<(f64, f64)>,
    end: Option<f64>,
    skipped: usize,
}

fn prepare(c: &Curve) -> Prepared {
    let mut drops: Vec<(f64, f64)> = c
        .points
        .iter()
        .filter(|(t, s)| t.is_finite() && *t >= 0.0 && s.is_finite())
        .map(|&(t, s)| (t, s.clamp(0.0, 1.0)))
        .collect();
    let skipped = c.points.len() - drops.len();
    // A stable sort: linear on the (expected) already sorted input.
    drops.sort_by(|a, b| a.0.total_cmp(&b.0));
    let horizon = c.horizon.filter(|h| h.is_finite() && *h >= 0.0);
    let last = drops.last().map(|d| d.0);
    let end = match (horizon, last) {
        (Some(h), Some(l)) => Some(h.max(l)),
        (h, l) => h.or(l),
    };
    Prepared {
        drops,
        end,
        skipped,
    }
}

/// The vertices (in pixels, rounded to two decimals) of a step function starting at
/// (x0, y0), dropping to y at each (x, y) of `drops` (sorted by x), and running flat to
/// `x_end`. Drops in the same column (of width `col_w` from `x0`) are merged: the curve
/// runs flat to the column's first drop, then vertically to the level after its last
/// drop (through the column's extremes, should they lie outside that span).
fn step_vertices(
    drops: impl Iterator<Item = (f64, f64)>,
    (x0, y0): (f64, f64),
    x_end: f64,
    col_w: f64,
) -> Vec<(f64, f64)> {
    let column = |x: f64| ((x - x0) / col_w).floor() as i64;
    let mut v = vec![(r2(x0), r2(y0))];
    let mut cur = v[0];
    // The open column: its index, first x, lowest and highest y, last y.
    let mut open: Option<(i64, f64, f64, f64, f64)> = None;
    let flush = |v: &mut Vec<(f64, f64)>, cur: &mut (f64, f64), g: (i64, f64, f64, f64, f64)| {
        let (_, gx, lo, hi, exit) = g;
        let (gx, lo, hi, exit) = (r2(gx), r2(lo), r2(hi), r2(exit));
        if lo == cur.1 && hi == cur.1 {
            return;
        }
        if gx > cur.0 {
            cur.0 = gx;
            v.push(*cur);
        }
        let (a, b) = (cur.1.min(exit), cur.1.max(exit));
        for extreme in [(lo < a).then_some(lo), (hi > b).then_some(hi)]
            .into_iter()
            .flatten()
        {
            v.push((cur.0, extreme));
        }
        if v.last().is_some_and(|p| p.1 != exit) {
            v.push((cur.0, exit));
        }
        cur.1 = exit;
    };
    for (x, y) in drops {
        let c = column(x);
        open = match open {
            Some((oc, gx, lo, hi, _)) if oc == c => Some((oc, gx, lo.min(y), hi.max(y), y)),
            Some(g) => {
                flush(&mut v, &mut cur, g);
                Some((c, x, y, y, y))
            }
            None => Some((c, x, y, y, y)),
        };
    }
    if let Some(g) = open {
        flush(&mut v, &mut cur, g);
    }
    let x_end = r2(x_end);
    if x_end > cur.0 {
        v.push((x_end, cur.1));
    }
    v
}

/// SVG path data through the vertices, with H/V for horizontal/vertical segments.
fn path_data(v: &[(f64, f64)]) -> String {
    let mut d = String::new();
    for (k, &(x, y)) in v.iter().enumerate() {
        if k > 0 {
            d.push(' ');
        }
        if k == 0 {
            let _ = write!(d, "M{} {}", num(x), num(y));
        } else if x == v[k - 1].0 {
            let _ = write!(d, "V{}", num(y));
        } else if y == v[k - 1].1 {
            let _ = write!(d, "H{}", num(x));
        } else {
            let _ = write!(d, "L{} {}", num(x), num(y));
        }
    }
    d
}

fn survival_panel(out: &mut String, p: &EscapePlot, f: Frame) {
    out.push_str(r#"<g class="survival">"#);
    out.push('\n');
    draw_labels(out, &f, &p.survival_title, &p.time_label, "P(τ > t)");
    let prepared: Vec<Prepared> = p.curves.iter().map(prepare).collect();
    let skipped = prepared.iter().map(|c| c.skipped).sum();
    let t_max = prepared
        .iter()
        .filter_map(|c| c.end)
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))));
    let Some(t_max) = t_max else {
        draw_no_data(out, &f);
        draw_note(out, &f, skipped, "point");
        out.push_str("</g>\n");
        return;
    };
    // Every curve ends at t = 0: show the first time unit.
    let t_max = if t_max > 0.0 { t_max } else { 1.0 };
    let x = Lin {
        lo: 0.0,
        hi: t_max,
        px_lo: f.left,
        px_hi: f.right,
    };
    let y = Lin {
        lo: -S_PAD,
        hi: 1.0 + S_PAD,
        px_lo: f.bottom,
        px_hi: f.top,
    };
    let (ticks, exp) = nice_ticks(0.0, t_max, 7.0);
    let x_ticks: Vec<(f64, String)> = ticks.iter().map(|&t| (x.px(t), fmt_tick(t, exp))).collect();
    let y_ticks: Vec<(f64, String)> = [
        (0.0, "0"),
        (0.25, "0.25"),
        (0.5, "0.5"),
        (0.75, "0.75"),
        (1.0, "1"),
    ]
    .iter()
    .map(|&(s, l)| (y.px(s), l.to_string()))
    .collect();
    draw_axes(out, &f, &x_ticks, &y_ticks, &[]);
    let col_w = f.width() / MAX_COLUMNS;
    let mut occupied = Vec::new();
    let mut entries = Vec::new();
    for (i, (c, prep)) in p.curves.iter().zip(&prepared).enumerate() {
        entries.push(LegendEntry {
            swatch: Swatch::Line(i),
            text: truncate(&c.label, LEGEND_CHARS),
            note: String::new(),
        });
        let Some(end) = prep.end else { continue };
        let drops = prep.drops.iter().map(|&(t, s)| (x.px(t), y.px(s)));
        let v = step_vertices(drops, (f.left, y.px(1.0)), x.px(end), col_w);
        if v.len() < 2 {
            continue;
        }
        occupied.extend(v.windows(2).map(|w| (w[0], w[1])));
        let _ = writeln!(
            out,
            r#"<path class="curve" d="{}" fill="none" stroke="{}" stroke-width="1.6" stroke-linejoin="miter"/>"#,
            path_data(&v),
            PALETTE[i % PALETTE.len()]
        );
    }
    draw_legend(out, &f, &entries, &occupied);
    draw_note(out, &f, skipped, "point");
    out.push_str("</g>\n");
}

// ---------------------------------------------------------------------------------------
// Scaling panel

/// The y axis of the scaling panel, in plotted units u (log10 y on a log axis, else y).
#[derive(Debug, Clone, Copy, PartialEq)]
struct YAxis {
    log: bool,
    map: Lin,
}

impl YAxis {
    /// u of a data value, `None` when it cannot be drawn (not finite, or ≤ 0 on a log axis).
    fn u(&self, v: f64) -> Option<f64> {
        u_of(self.log, v)
    }
}

fn u_of(log: bool, v: f64) -> Option<f64> {
    if log {
        (v.is_finite() && v > 0.0).then(|| v.log10())
    } else {
        v.is_finite().then_some(v)
    }
}

/// u of a line (slope, intercept) at x: intercept + slope·x, divided by ln 10 on a log
/// axis (where the line is of ln y). `None` when not finite.
fn line_u(log: bool, slope: f64, intercept: f64, x: f64) -> Option<f64> {
    let v = intercept + slope * x;
    let u = if log { v / LN_10 } else { v };
    u.is_finite().then_some(u)
}

fn point_drawable(log: bool, p: &ScalePoint) -> bool {
    p.x.is_finite() && u_of(log, p.y).is_some()
}

/// The ends of a drawable point's interval bar in u: `Some(None)` for an end off the
/// axis (infinite, or ≤ 0 on a log axis), clipped at the plot edge. `None` (no bar) when
/// either end is NaN.
fn bar_ends(log: bool, p: &ScalePoint) -> Option<(Option<f64>, Option<f64>)> {
    if p.lo.is_nan() || p.hi.is_nan() {
        return None;
    }
    let (lo, hi) = if p.lo <= p.hi {
        (p.lo, p.hi)
    } else {
        (p.hi, p.lo)
    };
    Some((u_of(log, lo), u_of(log, hi)))
}

/// The x range of a series' drawable points, when it has some extent.
fn series_x_extent(log: bool, s: &ScaleSeries) -> Option<(f64, f64)> {
    extent(
        s.points
            .iter()
            .filter(|p| point_drawable(log, p))
            .map(|p| p.x),
    )
}

/// The scaling panel's axes; `None` when no point is drawable.
fn scaling_axes(s: &Scaling, f: &Frame) -> Option<(Lin, YAxis)> {
    let log = s.log_y;
    let drawable = || {
        s.series
            .iter()
            .flat_map(|se| se.points.iter())
            .filter(|p| point_drawable(log, p))
    };
    let (x_min, x_max) = extent(drawable().map(|p| p.x))?;
    let (u_min, u_max) = extent(drawable().filter_map(|p| u_of(log, p.y)))?;
    // Bar ends and lines widen the range, but only so far beyond the points.
    let reach = if log {
        LOG_REACH
    } else if u_max > u_min {
        0.5 * (u_max - u_min)
    } else {
        u_max.abs().max(1.0)
    };
    let clamp = |u: f64| u.clamp(u_min - reach, u_max + reach);
    let mut extra = Vec::new();
    for p in drawable() {
        if let Some((lo, hi)) = bar_ends(log, p) {
            extra.extend(lo.into_iter().chain(hi).map(clamp));
        }
    }
    for se in &s.series {
        if let (Some((slope, intercept)), Some((a, b))) = (se.fit, series_x_extent(log, se)) {
            for x in [a, b] {
                extra.extend(line_u(log, slope, intercept, x).map(clamp));
            }
        }
    }
    if let Some((_, slope, intercept)) = &s.predicted {
        for x in [x_min, x_max] {
            extra.extend(line_u(log, *slope, *intercept, x).map(clamp));
        }
    }
    let (lo, hi) = extent(extra.into_iter().chain([u_min, u_max]))?;
    let (y_lo, y_hi) = if log {
        log_range(lo, hi)?
    } else {
        padded(lo, hi)?
    };
    let (x_lo, x_hi) = padded(x_min, x_max)?;
    Some((
        Lin {
            lo: x_lo,
            hi: x_hi,
            px_lo: f.left,
            px_hi: f.right,
        },
        YAxis {
            log,
            map: Lin {
                lo: y_lo,
                hi: y_hi,
                px_lo: f.bottom,
                px_hi: f.top,
            },
        },
    ))
}

/// The labelled y ticks (u, label) and minor ticks (u) of the scaling panel.
fn y_ticks(y: &YAxis) -> (Vec<(f64, String)>, Vec<f64>) {
    let (lo, hi) = (y.map.lo, y.map.hi);
    if y.log {
        let ds = decades(lo, hi);
        let plain = ds.iter().all(|d| (-3..=4).contains(d));
        let major = ds
            .iter()
            .map(|&d| (f64::from(d), decade_label(d, plain)))
            .collect();
        (major, minor_decades(lo, hi))
    } else {
        let (ticks, exp) = nice_ticks(lo, hi, 7.0);
        (
            ticks.iter().map(|&u| (u, fmt_tick(u, exp))).collect(),
            Vec::new(),
        )
    }
}

fn scaling_panel(out: &mut String, s: &Scaling, f: Frame) {
    out.push_str(r#"<g class="scaling">"#);
    out.push('\n');
    draw_labels(out, &f, &s.title, &s.x_label, &s.y_label);
    let log = s.log_y;
    let skipped = s
        .series
        .iter()
        .flat_map(|se| se.points.iter())
        .filter(|p| !point_drawable(log, p))
        .count();
    let Some((x, y)) = scaling_axes(s, &f) else {
        draw_no_data(out, &f);
        draw_note(out, &f, skipped, "point");
        out.push_str("</g>\n");
        return;
    };
    let (xt, exp) = nice_ticks(x.lo, x.hi, 7.0);
    let x_ticks: Vec<(f64, String)> = xt.iter().map(|&v| (x.px(v), fmt_tick(v, exp))).collect();
    let (major, minor) = y_ticks(&y);
    let y_major: Vec<(f64, String)> = major.into_iter().map(|(u, l)| (y.map.px(u), l)).collect();
    let y_minor: Vec<f64> = minor.into_iter().map(|u| y.map.px(u)).collect();
    draw_axes(out, &f, &x_ticks, &y_major, &y_minor);

    let mut occupied = Vec::new();
    let mut entries = Vec::new();
    // The predicted line first, under the data.
    if let Some((_, slope, intercept)) = &s.predicted {
        let ends = [x.lo, x.hi]
            .map(|xv| line_u(log, *slope, *intercept, xv).map(|u| (x.px(xv), y.map.px(u))));
        if let [Some(a), Some(b)] = ends {
            if let Some((c, d)) = clip(a, b, &f) {
                occupied.push((c, d));
                let _ = writeln!(
                    out,
                    r#"<line class="predicted" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{PREDICTED_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
                    num(c.0),
                    num(c.1),
                    num(d.0),
                    num(d.1)
                );
            }
        }
    }
    for (i, se) in s.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        out.push_str(r#"<g class="series">"#);
        out.push('\n');
        if let (Some((slope, intercept)), Some((a, b))) = (se.fit, series_x_extent(log, se)) {
            let ends =
                [a, b].map(|xv| line_u(log, slope, intercept, xv).map(|u| (x.px(xv), y.map.px(u))));
            if let [Some(p0), Some(p1)] = ends {
                if let Some((c, d)) = clip(p0, p1, &f) {
                    occupied.push((c, d));
                    let _ = writeln!(
                        out,
                        r#"<line class="fit" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="1.5"/>"#,
                        num(c.0),
                        num(c.1),
                        num(d.0),
                        num(d.1)
                    );
                }
            }
        }
        for p in se.points.iter().filter(|p| point_drawable(log, p)) {
            let Some((lo, hi)) = bar_ends(log, p) else {
                continue;
            };
            let px = x.px(p.x);
            // Off-axis ends run to the edge: a missing lower end (≤ 0 on a log axis, or
            // -inf) to the bottom, a missing upper end (+inf) to the top.
            let lower_missing_is_bottom = log || p.lo.min(p.hi) == f64::NEG_INFINITY;
            let (bottom, cap_bottom) = match lo {
                Some(u) if y.map.contains(u) => (y.map.px(u), true),
                Some(u) if u > y.map.hi => (f.top, false),
                Some(_) => (f.bottom, false),
                None if lower_missing_is_bottom => (f.bottom, false),
                None => (f.top, false),
            };
            let (top, cap_top) = match hi {
                Some(u) if y.map.contains(u) => (y.map.px(u), true),
                Some(u) if u < y.map.lo => (f.bottom, false),
                Some(_) => (f.top, false),
                None if p.lo.max(p.hi) == f64::NEG_INFINITY => (f.bottom, false),
                None => (f.top, false),
            };
            let (top, bottom) = (top.clamp(f.top, f.bottom), bottom.clamp(f.top, f.bottom));
            if bottom - top > 0.0 {
                occupied.push(((px, top), (px, bottom)));
                let xs = num(px);
                let _ = writeln!(
                    out,
                    r#"<line class="bar" x1="{xs}" y1="{}" x2="{xs}" y2="{}" stroke="{color}" stroke-width="1.2"/>"#,
                    num(top),
                    num(bottom)
                );
            }
            for (row, cap) in [(top, cap_top), (bottom, cap_bottom)] {
                if cap {
                    let ys = num(row);
                    let _ = writeln!(
                        out,
                        r#"<line class="cap" x1="{}" y1="{ys}" x2="{}" y2="{ys}" stroke="{color}" stroke-width="1.2"/>"#,
                        num(px - CAP_HALF),
                        num(px + CAP_HALF)
                    );
                }
            }
        }
        for p in se.points.iter().filter(|p| point_drawable(log, p)) {
            let Some(u) = y.u(p.y) else { continue };
            let (px, py) = (x.px(p.x), y.map.px(u));
            if !(x.contains(p.x) && y.map.contains(u)) {
                continue;
            }
            occupied.push(((px, py), (px, py)));
            marker(out, i, px, py, MARKER_R);
        }
        out.push_str("</g>\n");
        entries.push(LegendEntry {
            swatch: Swatch::Marker(i, se.fit.is_some()),
            text: truncate(&se.label, LEGEND_CHARS),
            note: se
                .fit
                .map(|(slope, _)| format!(", slope {}", fmt_sig(slope)))
                .unwrap_or_default(),
        });
    }
    if let Some((label, slope, _)) = &s.predicted {
        entries.push(LegendEntry {
            swatch: Swatch::Dashed,
            text: truncate(label, LEGEND_CHARS),
            note: format!(", slope {}", fmt_sig(*slope)),
        });
    }
    draw_legend(out, &f, &entries, &occupied);
    draw_note(out, &f, skipped, "point");
    out.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plot::testing::{attr_of, well_formed};

    /// The `d` attributes of the survival curves' paths.
    fn curve_paths(doc: &str) -> Vec<String> {
        doc.lines()
            .filter(|l| l.contains(r#"class="curve""#))
            .map(|l| {
                let start = l.find(" d=\"").unwrap() + 4;
                let end = l[start..].find('"').unwrap() + start;
                l[start..end].to_string()
            })
            .collect()
    }

    fn curve(label: &str, points: Vec<(f64, f64)>, horizon: Option<f64>) -> Curve {
        Curve {
            label: label.to_string(),
            points,
            horizon,
        }
    }

    fn sp(x: f64, y: f64, lo: f64, hi: f64) -> ScalePoint {
        ScalePoint { x, y, lo, hi }
    }

    /// An exponential survival curve with n drops at rate `rate`, censored at `horizon`.
    fn exp_curve(label: &str, n: usize, rate: f64, horizon: f64) -> Curve {
        let points = (1..=n)
            .map(|k| {
                let s = 1.0 - k as f64 / (n as f64 + 1.0);
                (-s.ln() / rate, s)
            })
            .filter(|&(t, _)| t <= horizon)
            .collect();
        curve(label, points, Some(horizon))
    }

    fn sample() -> EscapePlot {
        let series = |label: &str, c: f64, slope: f64| ScaleSeries {
            label: label.to_string(),
            points: [2.0, 4.0, 6.0, 8.0, 10.0]
                .iter()
                .map(|&x| {
                    let y = (c + slope * x).exp();
                    sp(x, y, 0.8 * y, 1.25 * y)
                })
                .collect(),
            fit: Some((slope, c)),
        };
        EscapePlot {
            title: "Escape from a double well".to_string(),
            survival_title: "Survival at η = 0.05".to_string(),
            time_label: "time t".to_string(),
            curves: vec![
                exp_curve("SGD", 400, 0.02, 200.0),
                exp_curve("SME order 1", 300, 0.025, 200.0),
                exp_curve("SME order 2", 500, 0.021, 180.0),
            ],
            scaling: Some(Scaling {
                title: "Mean exit time".to_string(),
                x_label: "1/η".to_string(),
                y_label: "E τ".to_string(),
                log_y: true,
                series: vec![
                    series("SGD", 1.0, 0.5),
                    series("SME order 1", 1.2, 0.45),
                    series("SME order 2", 1.05, 0.49),
                ],
                predicted: Some(("Kramers".to_string(), 0.5, 1.0)),
            }),
        }
    }

    #[test]
    fn document_shape_and_balance() {
        let doc = svg(&sample());
        assert!(doc.starts_with("<svg"), "{doc}");
        assert!(doc.ends_with("</svg>\n"));
        well_formed(&doc).unwrap();
        assert_eq!(doc.matches("<g").count(), doc.matches("</g>").count());
        assert!(doc.contains(r#"width="960" height="420""#));
        assert!(doc.contains(">Escape from a double well</text>"));
        assert!(doc.contains(">P(τ &gt; t)</text>"));
        assert_eq!(curve_paths(&doc).len(), 3);
        assert_eq!(doc.matches(r#"class="fit""#).count(), 3);
        assert_eq!(doc.matches(r#"class="predicted""#).count(), 1);
        assert!(doc.contains(">Kramers<tspan"));
        assert!(!doc.contains("no data") && !doc.contains("skipped"));
        // One panel without scaling.
        let mut one = sample();
        one.scaling = None;
        let doc = svg(&one);
        well_formed(&doc).unwrap();
        assert!(doc.contains(r#"width="480" height="420""#));
        assert!(!doc.contains(r#"class="scaling""#));
    }

    #[test]
    fn a_model_has_the_same_colour_in_both_panels() {
        let doc = svg(&sample());
        let (left, right) = doc.split_at(doc.find(r#"<g class="scaling">"#).unwrap());
        for (i, color) in PALETTE.iter().take(3).enumerate() {
            let path = left
                .lines()
                .filter(|l| l.contains(r#"class="curve""#))
                .nth(i)
                .unwrap();
            assert!(path.contains(color), "{path}");
            let fit = right
                .lines()
                .filter(|l| l.contains(r#"class="fit""#))
                .nth(i)
                .unwrap();
            assert!(fit.contains(color), "{fit}");
        }
    }

    #[test]
    fn two_drops_give_the_expected_steps() {
        let p = EscapePlot {
            title: String::new(),
            survival_title: String::new(),
            time_label: String::new(),
            curves: vec![curve("m", vec![(1.0, 0.5), (2.0, 0.25)], Some(4.0))],
            scaling: None,
        };
        let paths = curve_paths(&svg(&p));
        // x: 70 + t/4 · 392; y: 350 − (S + 0.03)/1.06 · 292.
        // S = 1 → 66.26, S = 0.5 → 204, S = 0.25 → 272.87; t = 1 → 168, t = 2 → 266, t = 4 → 462.
        assert_eq!(paths, ["M70 66.26 H168 V204 H266 V272.87 H462"]);
        // Without a horizon the curve stops at its last drop, which then ends the axis.
        let mut p = p;
        p.curves[0].horizon = None;
        assert_eq!(curve_paths(&svg(&p)), ["M70 66.26 H266 V204 H462 V272.87"]);
    }

    #[test]
    fn long_curves_are_thinned_but_keep_their_steps() {
        let n = 200_000;
        let c = exp_curve("long", n, 1e-3, 1e4);
        let kept = c.points.len();
        assert!(kept > 190_000, "{kept}");
        let last_s = c.points.last().unwrap().1;
        let p = EscapePlot {
            title: String::new(),
            survival_title: String::new(),
            time_label: String::new(),
            curves: vec![c],
            scaling: None,
        };
        let doc = svg(&p);
        let d = &curve_paths(&doc)[0];
        let vertices = d.matches(['M', 'H', 'V', 'L']).count();
        assert!(vertices <= 2 * MAX_COLUMNS as usize + 2, "{vertices}");
        assert!(vertices <= 2000);
        assert!(vertices > 100, "still a detailed curve: {vertices}");
        assert!(
            !d.contains('L'),
            "only horizontal and vertical segments: {d}"
        );
        // Commands alternate H and V: a step function.
        let cmds: Vec<char> = d.chars().filter(|c| c.is_ascii_alphabetic()).collect();
        assert!(cmds.windows(2).skip(1).all(|w| w[0] != w[1]), "{d}");
        // It starts at S = 1 and ends at the last level, at the horizon (the right edge).
        assert!(d.starts_with("M70 66.26 "), "{}", &d[..40]);
        let end_y = 350.0 - (last_s + S_PAD) / (1.0 + 2.0 * S_PAD) * (BOTTOM - TOP);
        assert!(
            d.ends_with(&format!("V{} H462", num(end_y))),
            "{}",
            &d[d.len() - 40..]
        );
    }

    #[test]
    fn thinning_keeps_extremes_of_non_monotone_columns() {
        // Three drops in one column, going down then up: the low extreme is kept.
        let v = step_vertices(
            [(10.2, 50.0), (10.5, 80.0), (10.7, 60.0)].into_iter(),
            (0.0, 20.0),
            30.0,
            1.0,
        );
        assert_eq!(
            v,
            [
                (0.0, 20.0),
                (10.2, 20.0),
                (10.2, 80.0),
                (10.2, 60.0),
                (30.0, 60.0)
            ]
        );
    }

    #[test]
    fn hostile_values_are_skipped_and_never_print_nan_or_inf() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let p = EscapePlot {
            title: "hostile".to_string(),
            survival_title: String::new(),
            time_label: String::new(),
            curves: vec![
                curve(
                    "a",
                    vec![(nan, 0.5), (1.0, nan), (2.0, 0.5), (inf, 0.2), (-1.0, 0.9)],
                    Some(nan),
                ),
                curve("b", vec![], None),
                curve("c", vec![(1.0, 2.0), (3.0, -1.0)], Some(inf)),
            ],
            scaling: Some(Scaling {
                title: String::new(),
                x_label: String::new(),
                y_label: String::new(),
                log_y: true,
                series: vec![ScaleSeries {
                    label: "s".to_string(),
                    points: vec![
                        sp(1.0, 10.0, 5.0, 20.0),
                        sp(2.0, 100.0, -3.0, inf),
                        sp(nan, 10.0, 5.0, 20.0),
                        sp(3.0, nan, 5.0, 20.0),
                        sp(4.0, -5.0, 5.0, 20.0),
                        sp(5.0, inf, 5.0, 20.0),
                        sp(6.0, 50.0, nan, 60.0),
                        sp(7.0, 1e300, 1e299, 1e301),
                    ],
                    fit: Some((nan, 1.0)),
                }],
                predicted: Some(("p".to_string(), 1e308, 1e308)),
            }),
        };
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        let lower = doc.to_lowercase();
        assert!(!lower.contains("nan") && !lower.contains("inf"), "{doc}");
        // Curve a keeps only (2, 0.5) and ends there; c is clamped into [0, 1].
        let paths = curve_paths(&doc);
        assert_eq!(paths.len(), 2, "{doc}");
        assert!(paths[0].starts_with("M70 66.26 H"), "{}", paths[0]);
        assert_eq!(paths[0].matches('V').count(), 1, "{}", paths[0]);
        assert!(doc.contains(">4 points not drawable (skipped)</text>"));
        // Scaling: 4 of 8 points drawable, so 4 markers (circles) and a note.
        let right = &doc[doc.find(r#"<g class="scaling">"#).unwrap()..];
        let panel = &right[..right.find(r#"<g class="legend">"#).unwrap()];
        assert_eq!(panel.matches("<circle").count(), 4, "{panel}");
        assert!(right.contains(">4 points not drawable (skipped)</text>"));
        assert_eq!(right.matches(r#"class="fit""#).count(), 0);
        // Bars stay inside the plot area.
        for v in attr_of(right, r#"class="bar""#, "y1")
            .into_iter()
            .chain(attr_of(right, r#"class="bar""#, "y2"))
        {
            assert!((TOP..=BOTTOM).contains(&v), "{v}");
        }
    }

    #[test]
    fn interval_bars_are_clipped_at_the_panel_edges() {
        let p = EscapePlot {
            title: String::new(),
            survival_title: String::new(),
            time_label: String::new(),
            curves: vec![],
            scaling: Some(Scaling {
                title: String::new(),
                x_label: String::new(),
                y_label: String::new(),
                log_y: false,
                series: vec![ScaleSeries {
                    label: "s".to_string(),
                    points: vec![sp(1.0, 1.0, 0.9, 1.1), sp(2.0, 2.0, -1e300, 1e300)],
                    fit: None,
                }],
                predicted: None,
            }),
        };
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        assert!(doc.contains("no data"), "the empty survival panel says so");
        let y1 = attr_of(&doc, r#"class="bar""#, "y1");
        let y2 = attr_of(&doc, r#"class="bar""#, "y2");
        assert_eq!(y1.len(), 2);
        assert_eq!(
            (y1[1], y2[1]),
            (TOP, BOTTOM),
            "the wide bar runs edge to edge"
        );
        // Only the narrow bar has caps.
        assert_eq!(doc.matches(r#"class="cap""#).count(), 2);
    }

    #[test]
    fn deterministic() {
        let p = sample();
        let a = svg(&p);
        assert_eq!(a, svg(&p));
        assert_eq!(a, svg(&p.clone()));
    }

    #[test]
    fn coordinates_have_at_most_two_decimals() {
        let doc = svg(&sample());
        for value in doc.split('"').skip(1).step_by(2) {
            for token in value.split([' ', ',', '(', ')', 'M', 'L', 'H', 'V']) {
                if let Some((_, frac)) = token.split_once('.') {
                    if token.parse::<f64>().is_ok() {
                        assert!(frac.len() <= 2, "{token} in {value}");
                    }
                }
            }
        }
    }

    #[test]
    fn text_is_escaped() {
        let mut p = sample();
        p.title = "a<b & c>d \"q\"".to_string();
        p.curves[0].label = "<&>".to_string();
        p.time_label = "t'".to_string();
        if let Some(s) = &mut p.scaling {
            s.series[1].label = "x<y".to_string();
            s.predicted = Some(("A&B".to_string(), 0.5, 1.0));
        }
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        assert!(doc.contains(">a&lt;b &amp; c&gt;d &quot;q&quot;</text>"));
        assert!(doc.contains(">&lt;&amp;&gt;</text>"));
        assert!(doc.contains(">t&#39;</text>"));
        assert!(doc.contains(">x&lt;y<tspan"));
        assert!(doc.contains(">A&amp;B<tspan"));
        assert!(!doc.contains("<&>") && !doc.contains("a<b"));
    }

    #[test]
    fn log_axis_ticks_cover_the_decades() {
        let s = Scaling {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            log_y: true,
            series: vec![ScaleSeries {
                label: "s".to_string(),
                points: vec![sp(1.0, 3.0, 3.0, 3.0), sp(2.0, 3000.0, 3000.0, 3000.0)],
                fit: None,
            }],
            predicted: None,
        };
        let (_, y) = scaling_axes(&s, &Frame::panel(1)).unwrap();
        let (major, minor) = y_ticks(&y);
        let values: Vec<f64> = major.iter().map(|(u, _)| 10f64.powf(*u)).collect();
        for d in [10.0, 100.0, 1000.0] {
            assert!(
                values.iter().any(|v| (v / d - 1.0).abs() < 1e-9),
                "{d} in {values:?}"
            );
        }
        assert!(major.iter().any(|(_, l)| l == "1000"), "{major:?}");
        assert!(!minor.is_empty(), "minor ticks on a range of ≤ 4 decades");
        // The range covers the data, and the labels appear in the document.
        assert!(y.map.lo <= 3f64.log10() && y.map.hi >= 3000f64.log10());
        let doc = svg(&EscapePlot {
            title: String::new(),
            survival_title: String::new(),
            time_label: String::new(),
            curves: vec![],
            scaling: Some(s),
        });
        for label in [">10</text>", ">100</text>", ">1000</text>"] {
            assert!(doc.contains(label), "{label}");
        }
        // Wide ranges use superscript decade labels and no minor ticks.
        assert_eq!(decade_label(-3, false), "10⁻³");
        assert!(minor_decades(-8.0, 0.0).is_empty());
    }

    #[test]
    fn linear_ticks_are_nice() {
        let (ticks, exp) = nice_ticks(0.0, 6.3, 7.0);
        assert_eq!(ticks, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(exp, 0);
        let (ticks, exp) = nice_ticks(0.0, 200_000.0, 7.0);
        assert_eq!(ticks.len(), 5);
        assert_eq!(fmt_tick(ticks[1], exp), "50000");
        let (ticks, exp) = nice_ticks(-0.013, 0.021, 7.0);
        let labels: Vec<String> = ticks.iter().map(|&t| fmt_tick(t, exp)).collect();
        assert_eq!(
            labels,
            ["-0.010", "-0.005", "0", "0.005", "0.010", "0.015", "0.020"]
        );
        assert_eq!(fmt_tick(2e7, 7), "2e7");
        assert_eq!(fmt_sig(0.123456), "0.123");
        assert_eq!(fmt_sig(-1234.4), "-1234");
        assert_eq!(fmt_sig(1.5e-7), "1.5e-7");
    }

    #[test]
    fn legend_avoids_the_data() {
        // Survival curves that stay high fill the top; the legend goes to the bottom.
        let p = EscapePlot {
            title: String::new(),
            survival_title: String::new(),
            time_label: String::new(),
            curves: vec![curve("m", vec![(5.0, 0.95), (9.0, 0.9)], Some(10.0))],
            scaling: None,
        };
        let doc = svg(&p);
        let legend = &doc[doc.find(r#"<g class="legend">"#).unwrap()..];
        let y = attr_of(legend, "<rect", "y")[0];
        assert!(y > (TOP + BOTTOM) / 2.0, "{y}");
    }
}
