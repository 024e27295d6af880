//! Escape-time plots: survival curves of exit times and their scaling, as SVG or PNG.
//!
//! [`svg`] (and [`png()`]) draws an [`EscapePlot`] in one or two panels, each 480 px wide
//! and 420 px high:
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
//! least of the data (plotters' own series legend only takes a fixed position, hence
//! the legend is laid out here and drawn with plotters' primitives).
//!
//! Nothing that cannot be drawn is drawn: curve points with a non-finite or negative time
//! or a non-finite probability, scaling points with a non-finite coordinate (or, on a log
//! axis, a non-positive y) are skipped and counted in a grey note under the panel; a
//! panel without drawable data says "no data". Interval bars, fitted and predicted lines
//! are clipped at the plot area's edges (a clipped bar end has no cap). The output is a
//! pure function of the input.

use super::{
    clip, color, draw_axes, draw_labels, draw_no_data, draw_swatch, extent, fmt_sig, lin_ticks,
    log_range, log_ticks, padded, truncate, Anchor, Font, Frame, Lin, PlotError, Scene, Seg,
    Swatch, Ticks, GREY, LIGHT,
};
use plotters::style::{Color, RGBColor, WHITE};
use std::f64::consts::LN_10;

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
const MARKER_R: f64 = 4.0;
const CAP_HALF: f64 = 3.5;
/// Bar ends, fit and predicted lines widen the y range at most this far beyond the
/// points (in decades on log axes; on linear axes half the points' span is used instead).
const LOG_REACH: f64 = 1.0;
const LEGEND_CHARS: usize = 30;
const LEGEND_ROW: f64 = 16.0;

/// The figure as a complete SVG document (deterministic: same input, byte-identical output).
pub fn svg(p: &EscapePlot) -> String {
    scene(p).svg()
}

/// The figure as a PNG image (twice the SVG's size: 1920 × 840 with both panels).
pub fn png(p: &EscapePlot) -> Result<Vec<u8>, PlotError> {
    scene(p).png()
}

pub(crate) fn scene(p: &EscapePlot) -> Scene {
    let panels = if p.scaling.is_some() { 2.0 } else { 1.0 };
    let width = PANEL_W * panels;
    let mut s = Scene::new(width, HEIGHT);
    s.text(
        width / 2.0,
        24.0,
        &p.title,
        Font::new(16.0).anchor(Anchor::Middle).bold(),
    );
    survival_panel(&mut s, p, panel(0));
    if let Some(sc) = &p.scaling {
        scaling_panel(&mut s, sc, panel(1));
    }
    s
}

fn panel(k: usize) -> Frame {
    let ox = k as f64 * PANEL_W;
    Frame {
        left: ox + PLOT_L,
        right: ox + PLOT_R,
        top: TOP,
        bottom: BOTTOM,
    }
}

/// `x` rounded to two decimals, so nearly equal pixel positions compare equal.
fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------
// Legend and notes

/// One legend row: a swatch and a text.
struct LegendEntry {
    swatch: Swatch,
    text: String,
    /// A grey suffix after the text, e.g. a fitted slope.
    note: String,
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

fn draw_legend(s: &mut Scene, f: &Frame, entries: &[LegendEntry], occupied: &[Seg]) {
    if entries.is_empty() {
        return;
    }
    let (x, y, w, h) = legend_box(f, entries, occupied);
    s.rect(
        (x, y),
        (x + w, y + h),
        Some(WHITE.mix(0.85)),
        Some(RGBColor(0xcc, 0xcc, 0xcc)),
    );
    let rows = ((h - 8.0) / LEGEND_ROW).floor().max(0.0) as usize;
    for (k, e) in entries.iter().enumerate().take(rows) {
        let row = y + 4.0 + LEGEND_ROW * (k as f64 + 0.5);
        let (x0, x1) = (x + 6.0, x + 28.0);
        draw_swatch(s, e.swatch, x0, x1, row, MARKER_R);
        // The grey note follows the text: one text with both when there is a note, the
        // note's colour kept apart by drawing it after an estimated text width.
        s.text(x1 + 6.0, row + 4.0, &e.text, Font::new(12.0));
        if !e.note.is_empty() {
            let text_w = 6.7 * e.text.chars().count() as f64;
            s.text(
                x1 + 6.0 + text_w,
                row + 4.0,
                &e.note,
                Font::new(12.0).color(GREY),
            );
        }
    }
    if rows < entries.len() {
        s.text(
            x + w - 50.0,
            y + h - 3.0,
            &format!("… {} more", entries.len() - rows),
            Font::new(10.0).color(GREY),
        );
    }
}

/// A grey note under the panel's right edge: how many points were skipped.
fn draw_note(s: &mut Scene, f: &Frame, skipped: usize) {
    if skipped == 0 {
        return;
    }
    let plural = if skipped == 1 { "" } else { "s" };
    s.text(
        f.right,
        HEIGHT - 8.0,
        &format!("{skipped} point{plural} not drawable (skipped)"),
        Font::new(10.0).color(GREY).anchor(Anchor::End),
    );
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

fn survival_panel(s: &mut Scene, p: &EscapePlot, f: Frame) {
    draw_labels(
        s,
        &f,
        &p.survival_title,
        &p.time_label,
        "P(τ > t)",
        f.left - PLOT_L + 18.0,
    );
    let prepared: Vec<Prepared> = p.curves.iter().map(prepare).collect();
    let skipped = prepared.iter().map(|c| c.skipped).sum();
    let Some((_, t_max)) = extent(prepared.iter().filter_map(|c| c.end)) else {
        draw_no_data(s, &f);
        draw_note(s, &f, skipped);
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
    let y_ticks = Ticks {
        major: [
            (0.0, "0"),
            (0.25, "0.25"),
            (0.5, "0.5"),
            (0.75, "0.75"),
            (1.0, "1"),
        ]
        .iter()
        .map(|&(v, l)| (y.px(v), l.to_string()))
        .collect(),
        minor: Vec::new(),
    };
    draw_axes(s, &f, &lin_ticks(&x), &y_ticks);
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
        let drops = prep.drops.iter().map(|&(t, sv)| (x.px(t), y.px(sv)));
        let v = step_vertices(drops, (f.left, y.px(1.0)), x.px(end), col_w);
        if v.len() < 2 {
            continue;
        }
        occupied.extend(v.windows(2).map(|w| (w[0], w[1])));
        s.path("curve", v, color(i), 1.6, false);
    }
    draw_legend(s, &f, &entries, &occupied);
    draw_note(s, &f, skipped);
}

// ---------------------------------------------------------------------------------------
// Scaling panel

/// The y axis of the scaling panel, in plotted units u (log10 y on a log axis, else y).
#[derive(Debug, Clone, Copy, PartialEq)]
struct YAxis {
    log: bool,
    map: Lin,
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

/// The x range of a series' drawable points.
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
        log_range([lo, hi])?
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

/// The y ticks of the scaling panel: decades (plain numbers in 10⁻³..10⁴) on a log axis.
fn y_ticks(y: &YAxis) -> Ticks {
    if y.log {
        log_ticks(&y.map, true)
    } else {
        lin_ticks(&y.map)
    }
}

fn scaling_panel(s: &mut Scene, sc: &Scaling, f: Frame) {
    draw_labels(
        s,
        &f,
        &sc.title,
        &sc.x_label,
        &sc.y_label,
        f.left - PLOT_L + 18.0,
    );
    let log = sc.log_y;
    let skipped = sc
        .series
        .iter()
        .flat_map(|se| se.points.iter())
        .filter(|p| !point_drawable(log, p))
        .count();
    let Some((x, y)) = scaling_axes(sc, &f) else {
        draw_no_data(s, &f);
        draw_note(s, &f, skipped);
        return;
    };
    draw_axes(s, &f, &lin_ticks(&x), &y_ticks(&y));

    let mut occupied = Vec::new();
    let mut entries = Vec::new();
    // The predicted line first, under the data.
    if let Some((_, slope, intercept)) = &sc.predicted {
        let ends = [x.lo, x.hi]
            .map(|xv| line_u(log, *slope, *intercept, xv).map(|u| (x.px(xv), y.map.px(u))));
        if let [Some(a), Some(b)] = ends {
            if let Some((c, d)) = clip(a, b, &f) {
                occupied.push((c, d));
                s.path("predicted", vec![c, d], LIGHT, 1.5, true);
            }
        }
    }
    for (i, se) in sc.series.iter().enumerate() {
        let col = color(i);
        if let (Some((slope, intercept)), Some((a, b))) = (se.fit, series_x_extent(log, se)) {
            let ends =
                [a, b].map(|xv| line_u(log, slope, intercept, xv).map(|u| (x.px(xv), y.map.px(u))));
            if let [Some(p0), Some(p1)] = ends {
                if let Some((c, d)) = clip(p0, p1, &f) {
                    occupied.push((c, d));
                    s.line("fit", c, d, col, 1.5);
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
                s.line("bar", (px, top), (px, bottom), col, 1.2);
            }
            for (row, cap) in [(top, cap_top), (bottom, cap_bottom)] {
                if cap {
                    s.line("cap", (px - CAP_HALF, row), (px + CAP_HALF, row), col, 1.2);
                }
            }
        }
        for p in se.points.iter().filter(|p| point_drawable(log, p)) {
            let Some(u) = u_of(log, p.y) else { continue };
            if !(x.contains(p.x) && y.map.contains(u)) {
                continue;
            }
            let (px, py) = (x.px(p.x), y.map.px(u));
            occupied.push(((px, py), (px, py)));
            s.marker(i, px, py, MARKER_R);
        }
        entries.push(LegendEntry {
            swatch: Swatch::Marker(i, se.fit.is_some()),
            text: truncate(&se.label, LEGEND_CHARS),
            note: se
                .fit
                .map(|(slope, _)| format!(", slope {}", fmt_sig(slope)))
                .unwrap_or_default(),
        });
    }
    if let Some((label, slope, _)) = &sc.predicted {
        entries.push(LegendEntry {
            swatch: Swatch::Dashed,
            text: truncate(label, LEGEND_CHARS),
            note: format!(", slope {}", fmt_sig(*slope)),
        });
    }
    draw_legend(s, &f, &entries, &occupied);
    draw_note(s, &f, skipped);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{png_size, texts, well_formed};
    use super::super::Shape;
    use super::*;

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

    fn empty() -> EscapePlot {
        EscapePlot {
            title: String::new(),
            survival_title: String::new(),
            time_label: String::new(),
            curves: Vec::new(),
            scaling: None,
        }
    }

    /// (tag, colour, points) of the scene's paths.
    fn paths(s: &Scene, tag: &str) -> Vec<(RGBColor, Vec<(f64, f64)>)> {
        s.shapes
            .iter()
            .filter_map(|sh| match sh {
                Shape::Path {
                    tag: t, pts, color, ..
                } if *t == tag => Some((*color, pts.clone())),
                _ => None,
            })
            .collect()
    }

    fn has_text(s: &Scene, want: &str) -> bool {
        s.shapes
            .iter()
            .any(|sh| matches!(sh, Shape::Text { text, .. } if text == want))
    }

    #[test]
    fn document_shape_legend_and_png() {
        let doc = svg(&sample());
        assert!(
            doc.starts_with("<svg") && doc.ends_with("</svg>\n"),
            "{doc}"
        );
        well_formed(&doc).unwrap();
        assert!(doc.contains(r#"width="960" height="420""#));
        let t = texts(&doc);
        for want in [
            "Escape from a double well",
            "Survival at η = 0.05",
            "P(τ > t)",
            "Mean exit time",
            "SGD",
            "SME order 2",
            "Kramers",
            ", slope 0.5",
            "100",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} in {t:?}");
        }
        assert!(!t.iter().any(|x| x == "no data" || x.contains("skipped")));
        let s = scene(&sample());
        assert_eq!(paths(&s, "curve").len(), 3);
        assert_eq!(paths(&s, "fit").len(), 3);
        assert_eq!(paths(&s, "predicted").len(), 1);
        assert_eq!(png_size(&png(&sample()).unwrap()), Some((1920, 840)));
        let mut one = sample();
        one.scaling = None;
        let doc = svg(&one);
        well_formed(&doc).unwrap();
        assert!(doc.contains(r#"width="480" height="420""#));
        assert_eq!(png_size(&png(&one).unwrap()), Some((960, 840)));
    }

    #[test]
    fn a_model_has_the_same_colour_in_both_panels() {
        let s = scene(&sample());
        let curves = paths(&s, "curve");
        let fits = paths(&s, "fit");
        for i in 0..3 {
            assert_eq!(curves[i].0, color(i));
            assert_eq!(fits[i].0, color(i));
        }
    }

    #[test]
    fn two_drops_give_the_expected_steps() {
        let mut p = empty();
        p.curves = vec![curve("m", vec![(1.0, 0.5), (2.0, 0.25)], Some(4.0))];
        // x: 70 + t/4 · 392; y: 350 − (S + 0.03)/1.06 · 292.
        let c = paths(&scene(&p), "curve");
        assert_eq!(
            c[0].1,
            [
                (70.0, 66.26),
                (168.0, 66.26),
                (168.0, 204.0),
                (266.0, 204.0),
                (266.0, 272.87),
                (462.0, 272.87)
            ]
        );
        // Without a horizon the curve stops at its last drop, which then ends the axis.
        p.curves[0].horizon = None;
        let c = paths(&scene(&p), "curve");
        assert_eq!(c[0].1.last(), Some(&(462.0, 272.87)));
    }

    #[test]
    fn long_curves_are_thinned_but_keep_their_steps() {
        let mut p = empty();
        p.curves = vec![exp_curve("long", 200_000, 1e-3, 1e4)];
        let v = &paths(&scene(&p), "curve")[0].1;
        assert!(v.len() <= 2 * MAX_COLUMNS as usize + 2, "{}", v.len());
        assert!(v.len() > 100, "still a detailed curve: {}", v.len());
        // Segments alternate horizontal and vertical: a step function.
        for w in v.windows(3) {
            let h0 = w[0].1 == w[1].1;
            let h1 = w[1].1 == w[2].1;
            assert!(h0 != h1 && (h0 || w[0].0 == w[1].0), "{w:?}");
        }
    }

    #[test]
    fn thinning_keeps_extremes_of_non_monotone_columns() {
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

    /// NaN, ±inf, zero and negative values, single points, empty curves and series:
    /// a plot with notes (SVG and PNG), never a panic or a non-finite number.
    #[test]
    fn garbage_inputs_give_a_plot() {
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
                series: vec![
                    ScaleSeries {
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
                    },
                    ScaleSeries {
                        label: "empty".to_string(),
                        points: Vec::new(),
                        fit: Some((1.0, 1.0)),
                    },
                ],
                predicted: Some(("p".to_string(), 1e308, 1e308)),
            }),
        };
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        let lower = doc.to_lowercase();
        assert!(!lower.contains("nan") && !lower.contains("inf"), "{doc}");
        let s = scene(&p);
        let c = paths(&s, "curve");
        assert_eq!(c.len(), 2);
        assert_eq!(
            texts(&doc)
                .iter()
                .filter(|t| *t == "4 points not drawable (skipped)")
                .count(),
            2
        );
        assert!(paths(&s, "fit").is_empty());
        for (_, b) in paths(&s, "bar") {
            assert!(b.iter().all(|q| (TOP..=BOTTOM).contains(&q.1)), "{b:?}");
        }
        assert!(png_size(&png(&p).unwrap()).is_some());
        // Single points, and nothing at all.
        let mut single = empty();
        single.curves = vec![curve("one", vec![(0.0, 0.0)], None)];
        single.scaling = Some(Scaling {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            log_y: false,
            series: vec![ScaleSeries {
                label: "one".to_string(),
                points: vec![sp(1.0, 0.0, 0.0, 0.0)],
                fit: Some((0.0, 0.0)),
            }],
            predicted: None,
        });
        well_formed(&svg(&single)).unwrap();
        assert!(png_size(&png(&single).unwrap()).is_some());
        let s = scene(&empty());
        assert!(has_text(&s, "no data"));
        assert!(png_size(&png(&empty()).unwrap()).is_some());
    }

    #[test]
    fn interval_bars_are_clipped_at_the_panel_edges() {
        let mut p = empty();
        p.scaling = Some(Scaling {
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
        });
        let s = scene(&p);
        assert!(has_text(&s, "no data"), "the empty survival panel says so");
        let bars = paths(&s, "bar");
        assert_eq!(bars.len(), 2);
        assert_eq!((bars[1].1[0].1, bars[1].1[1].1), (TOP, BOTTOM));
        assert_eq!(paths(&s, "cap").len(), 2, "only the narrow bar has caps");
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
        let (_, y) = scaling_axes(&s, &panel(1)).unwrap();
        let ticks = y_ticks(&y);
        let labels: Vec<&str> = ticks.major.iter().map(|(_, l)| l.as_str()).collect();
        for d in ["10", "100", "1000"] {
            assert!(labels.contains(&d), "{d} in {labels:?}");
        }
        assert!(!ticks.minor.is_empty());
        assert!(y.map.lo <= 3f64.log10() && y.map.hi >= 3000f64.log10());
    }

    #[test]
    fn legend_avoids_the_data() {
        // Survival curves that stay high fill the top; the legend goes to the bottom.
        let mut p = empty();
        p.curves = vec![curve("m", vec![(5.0, 0.95), (9.0, 0.9)], Some(10.0))];
        let s = scene(&p);
        let legend_y = s.shapes.iter().find_map(|sh| match sh {
            Shape::Rect {
                y0, fill: Some(_), ..
            } if *y0 > 0.0 => Some(*y0),
            _ => None,
        });
        let y = legend_y.unwrap();
        assert!(y > (TOP + BOTTOM) / 2.0, "{y}");
    }

    #[test]
    fn text_is_escaped() {
        let mut p = sample();
        p.title = "a<b & c>d \"q\"".to_string();
        p.curves[0].label = "<&>".to_string();
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        assert!(doc.contains("a&lt;b &amp; c&gt;d &quot;q&quot;"));
        assert!(doc.contains("&lt;&amp;&gt;"));
        assert!(!doc.contains("<&>") && !doc.contains("a<b"));
    }
}
