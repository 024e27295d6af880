//! Weak-error plots: a log–log chart of weak error against step size, as SVG or PNG.
//!
//! [`svg`] (and [`png()`]) draws, for each [`Series`], the measured weak errors `e(η)` as
//! markers with error bars at ±2 Monte Carlo standard errors, the fitted power law
//! `e = C η^p` as a solid line in the series colour, and a legend entry (beside the plot)
//! with the label, the fitted slope and the series' notes (e.g. the verdict, in red when
//! [`Series::alarm`]). Optional dashed grey horizontal lines ([`Plot::floors`]) mark error
//! levels the measurement cannot resolve below. Both axes are base-10 logarithmic; their
//! ranges cover all finite positive data (errors, error-bar ends, fit-line ends, floors),
//! padded a little and widened to whole or half decades, with labelled ticks at decades
//! and minor ticks at 2..9 when the range spans at most four decades.
//!
//! Nothing that cannot be drawn on log axes is drawn: points whose error is zero,
//! negative or not finite (or whose step is not positive) are listed in a note under the
//! legend instead, error bars whose lower end `e − 2·se` is not positive run to the
//! bottom of the plot, and error bars reaching more than one decade beyond their point
//! are clipped at the plot's edge (clipped ends have no cap). A plot without a drawable
//! point says "no data". The output is a pure function of the input.

use super::{
    color, draw_axes, draw_labels, draw_no_data, draw_swatch, fmt_step, log_range, log_ticks,
    truncate, Anchor, Font, Frame, Lin, PlotError, Scene, Swatch, ALARM, GREY, LIGHT,
};
use plotters::style::RGBColor;

/// One measured point: step size η, weak error, its Monte Carlo standard error (0 when exact).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotPoint {
    /// The step size η (drawn only when finite and positive).
    pub step: f64,
    /// The weak error at this step size (drawn only when finite and positive).
    pub error: f64,
    /// Its Monte Carlo standard error; error bars span ±2 of these. 0 when exact.
    pub std_err: f64,
}

/// A fitted power law e = C η^slope drawn over [step_lo, step_hi].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitLine {
    /// The exponent of the power law, shown in the legend with two decimals.
    pub slope: f64,
    /// The natural logarithm of the prefactor C.
    pub log_c: f64,
    /// The smallest step size the line is drawn from.
    pub step_lo: f64,
    /// The largest step size the line is drawn to.
    pub step_hi: f64,
}

/// One curve of the plot: measured points and, optionally, the power law fitted to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend label.
    pub label: String,
    /// The measured points, in any order.
    pub points: Vec<PlotPoint>,
    /// The fitted power law, drawn as a solid line; its slope goes into the legend.
    pub fit: Option<FitLine>,
    /// Further legend lines under the slope (an order capped by the derivation, a
    /// verdict), in small grey type.
    pub notes: Vec<String>,
    /// Whether the notes report a failure (a contradicted order): drawn in red.
    pub alarm: bool,
}

/// A complete weak-error plot: title, axis labels, series and floors.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// Drawn centred at the top.
    pub title: String,
    /// Drawn under the horizontal (step size) axis.
    pub x_label: String,
    /// Drawn rotated along the vertical (weak error) axis.
    pub y_label: String,
    /// The curves, each in its own colour and marker.
    pub series: Vec<Series>,
    /// Optional dashed horizontal lines, e.g. the SDE scheme's own discretization error: (label, value).
    pub floors: Vec<(String, f64)>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 480.0;
/// The plot area.
const FRAME: Frame = Frame {
    left: 80.0,
    right: 520.0,
    top: 50.0,
    bottom: 420.0,
};
/// The legend and notes column, right of the plot area, down to LEGEND_BOTTOM.
const LEGEND_X: f64 = 534.0;
const LEGEND_BOTTOM: f64 = 474.0;
const MARKER_R: f64 = 4.5;
const CAP_HALF: f64 = 3.5;
/// Error-bar ends count towards the axis range only up to this many decades from their point.
const BAR_REACH: f64 = 1.0;
const LEGEND_LABEL_CHARS: usize = 24;
const FLOOR_LABEL_CHARS: usize = 40;
const NOTE_CHARS: usize = 36;
/// The height of one legend note line.
const NOTE_LINE: f64 = 12.0;

/// The plot as a complete SVG document (deterministic: same input, byte-identical output).
pub fn svg(plot: &Plot) -> String {
    scene(plot).svg()
}

/// The plot as a PNG image (1440 × 960 pixels).
pub fn png(plot: &Plot) -> Result<Vec<u8>, PlotError> {
    scene(plot).png()
}

pub(crate) fn scene(plot: &Plot) -> Scene {
    let mut s = Scene::new(WIDTH, HEIGHT);
    s.text(
        WIDTH / 2.0,
        30.0,
        &plot.title,
        Font::new(16.0).anchor(Anchor::Middle).bold(),
    );
    let axes = layout(plot);
    match &axes {
        Some(axes) => {
            draw_axes(
                &mut s,
                &FRAME,
                &log_ticks(&axes.x, false),
                &log_ticks(&axes.y, false),
            );
        }
        None => draw_no_data(&mut s, &FRAME),
    }
    draw_labels(&mut s, &FRAME, "", &plot.x_label, &plot.y_label, 24.0);
    if let Some(axes) = &axes {
        draw_floors(&mut s, plot, axes);
        for (i, series) in plot.series.iter().enumerate() {
            draw_series(&mut s, i, series, axes);
        }
    }
    let notes_top = draw_legend(&mut s, plot);
    draw_notes(&mut s, plot, notes_top);
    s
}

fn drawable(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

fn point_drawable(p: &PlotPoint) -> bool {
    drawable(p.step) && drawable(p.error)
}

/// The fit line's two ends as (step, error), when both are drawable.
fn fit_ends(f: &FitLine) -> Option<[(f64, f64); 2]> {
    if !(drawable(f.step_lo) && drawable(f.step_hi) && f.slope.is_finite() && f.log_c.is_finite()) {
        return None;
    }
    let at = |s: f64| (f.log_c + f.slope * s.ln()).exp();
    let (a, b) = (at(f.step_lo), at(f.step_hi));
    (drawable(a) && drawable(b)).then_some([(f.step_lo, a), (f.step_hi, b)])
}

/// The ends e ± 2·se of a drawable point's error bar; `None` for an end that is off any
/// log scale (upper overflowing, lower ≤ 0). No bar at all without a positive finite se.
fn bar_ends(p: &PlotPoint) -> Option<(Option<f64>, Option<f64>)> {
    if !(point_drawable(p) && drawable(p.std_err)) {
        return None;
    }
    let upper = p.error + 2.0 * p.std_err;
    let lower = p.error - 2.0 * p.std_err;
    Some((
        drawable(upper).then_some(upper),
        drawable(lower).then_some(lower),
    ))
}

/// The mapping from log10 data to pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axes {
    x: Lin,
    y: Lin,
}

impl Axes {
    /// Pixel column of a positive step size.
    fn x_px(&self, step: f64) -> f64 {
        self.x.px(step.log10())
    }

    /// Pixel row of a positive error.
    fn y_px(&self, error: f64) -> f64 {
        self.y.px(error.log10())
    }
}

/// The axes for this plot; `None` when no point is drawable.
fn layout(plot: &Plot) -> Option<Axes> {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for s in &plot.series {
        for p in s.points.iter().filter(|p| point_drawable(p)) {
            let le = p.error.log10();
            xs.push(p.step.log10());
            ys.push(le);
            if let Some((upper, lower)) = bar_ends(p) {
                ys.push(upper.map_or(le + BAR_REACH, |u| u.log10().min(le + BAR_REACH)));
                if let Some(l) = lower {
                    ys.push(l.log10().max(le - BAR_REACH));
                }
            }
        }
    }
    if xs.is_empty() {
        return None;
    }
    for s in &plot.series {
        if let Some(ends) = s.fit.as_ref().and_then(fit_ends) {
            for (step, error) in ends {
                xs.push(step.log10());
                ys.push(error.log10());
            }
        }
    }
    for &(_, v) in &plot.floors {
        if drawable(v) {
            ys.push(v.log10());
        }
    }
    let (x_lo, x_hi) = log_range(xs)?;
    let (y_lo, y_hi) = log_range(ys)?;
    Some(Axes {
        x: Lin {
            lo: x_lo,
            hi: x_hi,
            px_lo: FRAME.left,
            px_hi: FRAME.right,
        },
        y: Lin {
            lo: y_lo,
            hi: y_hi,
            px_lo: FRAME.bottom,
            px_hi: FRAME.top,
        },
    })
}

/// An error bar in pixels: column, top and bottom rows, and whether each end has a cap
/// (an end without a cap is clipped at the plot's edge).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bar {
    x: f64,
    top: f64,
    bottom: f64,
    cap_top: bool,
    cap_bottom: bool,
}

fn error_bar(p: &PlotPoint, axes: &Axes) -> Option<Bar> {
    let (upper, lower) = bar_ends(p)?;
    let (top, cap_top) = match upper {
        Some(u) if axes.y.contains(u.log10()) => (axes.y_px(u).max(FRAME.top), true),
        _ => (FRAME.top, false),
    };
    let (bottom, cap_bottom) = match lower {
        Some(l) if axes.y.contains(l.log10()) => (axes.y_px(l).min(FRAME.bottom), true),
        _ => (FRAME.bottom, false),
    };
    Some(Bar {
        x: axes.x_px(p.step),
        top,
        bottom,
        cap_top,
        cap_bottom,
    })
}

fn draw_floors(s: &mut Scene, plot: &Plot, axes: &Axes) {
    for (label, v) in plot.floors.iter().filter(|(_, v)| drawable(*v)) {
        let y = axes.y_px(*v);
        s.path(
            "floor",
            vec![(FRAME.left, y), (FRAME.right, y)],
            LIGHT,
            1.2,
            true,
        );
        s.text(
            FRAME.right - 4.0,
            y - 4.0,
            &truncate(label, FLOOR_LABEL_CHARS),
            Font::new(10.0).color(GREY).anchor(Anchor::End),
        );
    }
}

fn draw_series(s: &mut Scene, i: usize, series: &Series, axes: &Axes) {
    let col = color(i);
    if let Some([(x0, y0), (x1, y1)]) = series.fit.as_ref().and_then(fit_ends) {
        s.line(
            "fit",
            (axes.x_px(x0), axes.y_px(y0)),
            (axes.x_px(x1), axes.y_px(y1)),
            col,
            1.5,
        );
    }
    for p in &series.points {
        if let Some(bar) = error_bar(p, axes) {
            s.line("bar", (bar.x, bar.top), (bar.x, bar.bottom), col, 1.2);
            for (row, cap) in [(bar.top, bar.cap_top), (bar.bottom, bar.cap_bottom)] {
                if cap {
                    s.line(
                        "cap",
                        (bar.x - CAP_HALF, row),
                        (bar.x + CAP_HALF, row),
                        col,
                        1.2,
                    );
                }
            }
        }
    }
    for p in series.points.iter().filter(|p| point_drawable(p)) {
        s.marker(i, axes.x_px(p.step), axes.y_px(p.error), MARKER_R);
    }
}

/// The legend, right of the plot; returns the row below it, where the notes start.
fn draw_legend(s: &mut Scene, plot: &Plot) -> f64 {
    let mut row = FRAME.top + 8.0;
    for (i, se) in plot.series.iter().enumerate() {
        let height = if se.fit.is_some() { 30.0 } else { 16.0 } + NOTE_LINE * se.notes.len() as f64;
        // The last row is kept for the "more series" line.
        if row + height > LEGEND_BOTTOM - 16.0 {
            s.text(
                LEGEND_X,
                row + 4.0,
                &format!("… {} more series", plot.series.len() - i),
                Font::new(10.0).color(GREY),
            );
            row += 16.0;
            break;
        }
        draw_swatch(
            s,
            Swatch::Marker(i, se.fit.is_some()),
            LEGEND_X,
            LEGEND_X + 22.0,
            row,
            MARKER_R,
        );
        s.text(
            LEGEND_X + 30.0,
            row + 4.0,
            &truncate(&se.label, LEGEND_LABEL_CHARS),
            Font::new(12.0),
        );
        if let Some(fit) = &se.fit {
            let slope = if fit.slope.is_finite() {
                format!("slope {:.2}", fit.slope)
            } else {
                "slope n/a".to_string()
            };
            s.text(
                LEGEND_X + 30.0,
                row + 18.0,
                &slope,
                Font::new(11.0).color(RGBColor(0x44, 0x44, 0x44)),
            );
        }
        let first = row + if se.fit.is_some() { 18.0 } else { 4.0 } + NOTE_LINE;
        let fill = if se.alarm { ALARM } else { GREY };
        for (k, note) in se.notes.iter().enumerate() {
            s.text(
                LEGEND_X + 30.0,
                first + NOTE_LINE * k as f64,
                &truncate(note, NOTE_CHARS),
                Font::new(10.0).color(fill),
            );
        }
        row += height + 6.0;
    }
    row
}

/// Everything that could not be drawn, under the legend: series points first (with the
/// series' marker), then floors.
fn draw_notes(s: &mut Scene, plot: &Plot, top: f64) {
    let mut notes: Vec<(Option<usize>, String)> = Vec::new();
    for (i, se) in plot.series.iter().enumerate() {
        for p in &se.points {
            let problem = if !drawable(p.step) {
                "step not drawable"
            } else if !drawable(p.error) {
                "error not resolved"
            } else {
                continue;
            };
            notes.push((Some(i), format!("η = {}: {problem}", fmt_step(p.step))));
        }
    }
    for (label, v) in &plot.floors {
        if !drawable(*v) {
            notes.push((None, format!("{}: floor not drawable", truncate(label, 16))));
        }
    }
    if notes.is_empty() {
        return;
    }
    let line = 13.0;
    let first = top + 6.0;
    if first > LEGEND_BOTTOM {
        // A full legend already ends in "… more series".
        return;
    }
    let fit = ((LEGEND_BOTTOM - first) / line).floor().max(0.0) as usize + 1;
    let (shown, hidden) = if notes.len() <= fit {
        (notes.len(), 0)
    } else {
        let shown = fit.saturating_sub(1);
        (shown, notes.len() - shown)
    };
    let font = Font::new(10.0).color(GREY);
    for (k, (series, text)) in notes.iter().take(shown).enumerate() {
        let y = first + line * k as f64;
        if let Some(i) = series {
            s.marker(*i, LEGEND_X + 4.0, y - 3.5, 3.0);
        }
        s.text(LEGEND_X + 12.0, y, &truncate(text, NOTE_CHARS), font);
    }
    if hidden > 0 {
        s.text(
            LEGEND_X + 12.0,
            first + line * shown as f64,
            &format!("… and {hidden} more not drawn"),
            font,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{png_size, texts, well_formed};
    use super::super::{Shape, PALETTE};
    use super::*;

    fn pt(step: f64, error: f64, std_err: f64) -> PlotPoint {
        PlotPoint {
            step,
            error,
            std_err,
        }
    }

    /// Two series, second-order and first-order, with a floor.
    fn sample() -> Plot {
        let steps = [0.1, 0.05, 0.025, 0.0125];
        Plot {
            title: "Weak error of SGD".to_string(),
            x_label: "step size η".to_string(),
            y_label: "weak error".to_string(),
            series: vec![
                Series {
                    label: "SME order 2".to_string(),
                    notes: vec!["2.01 ± 0.04: confirms order 2".to_string()],
                    alarm: false,
                    points: steps
                        .iter()
                        .map(|&h| pt(h, 3.0 * h * h, 0.1 * h * h))
                        .collect(),
                    fit: Some(FitLine {
                        slope: 2.0149,
                        log_c: 3.0f64.ln(),
                        step_lo: 0.0125,
                        step_hi: 0.1,
                    }),
                },
                Series {
                    label: "ODE".to_string(),
                    notes: Vec::new(),
                    alarm: false,
                    points: steps.iter().map(|&h| pt(h, 0.5 * h, 0.0)).collect(),
                    fit: None,
                },
            ],
            floors: vec![("SDE discretization".to_string(), 1e-5)],
        }
    }

    fn paths<'a>(s: &'a Scene, tag: &str) -> Vec<&'a Vec<(f64, f64)>> {
        s.shapes
            .iter()
            .filter_map(|sh| match sh {
                Shape::Path { tag: t, pts, .. } if *t == tag => Some(pts),
                _ => None,
            })
            .collect()
    }

    fn markers(s: &Scene) -> Vec<(usize, f64, f64)> {
        s.shapes
            .iter()
            .filter_map(|sh| match sh {
                Shape::Marker { series, x, y, .. } => Some((*series, *x, *y)),
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
        assert!(doc.starts_with("<svg"), "{doc}");
        assert!(doc.ends_with("</svg>\n"));
        well_formed(&doc).unwrap();
        assert!(doc.contains(r#"width="720" height="480""#));
        assert!(doc.contains(r#"font-family="sans-serif""#));
        let t = texts(&doc);
        for want in [
            "Weak error of SGD",
            "step size η",
            "weak error",
            "SME order 2",
            "slope 2.01",
            "2.01 ± 0.04: confirms order 2",
            "ODE",
            "SDE discretization",
            "10⁻³",
            "10⁻¹",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} in {t:?}");
        }
        assert_eq!(
            t.iter().filter(|x| x.starts_with("slope ")).count(),
            1,
            "no slope for the series without a fit"
        );
        assert!(doc.contains("rotate(270"), "the y label is vertical");
        // Both series' colours and distinct markers (circle, square).
        let hex = |c: RGBColor| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        assert!(doc.contains(&hex(PALETTE[0])) && doc.contains(&hex(PALETTE[1])));
        assert!(doc.contains("<circle") && doc.contains("<rect"));
        assert!(!t.iter().any(|x| x == "no data"));
        let png = png(&sample()).unwrap();
        assert_eq!(png_size(&png), Some((1440, 960)));
    }

    #[test]
    fn deterministic() {
        let p = sample();
        assert_eq!(svg(&p), svg(&p.clone()));
        assert_eq!(png(&p).unwrap(), png(&p).unwrap());
    }

    #[test]
    fn slope_two_spans_two_decades_per_decade_of_step() {
        let p = Plot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![Series {
                label: "order 2".to_string(),
                notes: Vec::new(),
                alarm: false,
                points: vec![pt(0.01, 1e-4, 0.0), pt(0.1, 1e-2, 0.0)],
                fit: Some(FitLine {
                    slope: 2.0,
                    log_c: 0.0,
                    step_lo: 0.01,
                    step_hi: 0.1,
                }),
            }],
            floors: Vec::new(),
        };
        let axes = layout(&p).unwrap();
        let x_decade = axes.x.px(1.0) - axes.x.px(0.0);
        let y_decade = axes.y.px(0.0) - axes.y.px(1.0);
        let s = scene(&p);
        let fit = paths(&s, "fit");
        assert_eq!(fit.len(), 1);
        let [(x0, y0), (x1, y1)] = [fit[0][0], fit[0][1]];
        assert!(((x1 - x0) - x_decade).abs() < 1e-9, "one decade of η");
        assert!(
            ((y0 - y1) - 2.0 * y_decade).abs() < 1e-6,
            "two decades of error"
        );
        // The markers sit on the line's ends.
        let m = markers(&s);
        let legend_free: Vec<_> = m.iter().filter(|(_, x, _)| *x < FRAME.right).collect();
        assert_eq!(legend_free.len(), 2);
        assert!((legend_free[0].1 - x0).abs() < 1e-9 && (legend_free[0].2 - y0).abs() < 1e-9);
        assert!((legend_free[1].1 - x1).abs() < 1e-9 && (legend_free[1].2 - y1).abs() < 1e-9);
    }

    #[test]
    fn axis_ranges_are_padded_half_decades_with_decade_ticks() {
        let (lo, hi) = log_range([-3.3, -1.2]).unwrap();
        assert_eq!((lo, hi), (-3.5, -1.0));
        assert_eq!(super::super::decades(lo, hi), vec![-3, -2, -1]);
        assert_eq!(super::super::minor_decades(lo, hi).len(), 6 + 8 + 8);
        let (lo, hi) = log_range([-3.0]).unwrap();
        assert!(super::super::decades(lo, hi).len() >= 2 && lo <= -3.0 && hi >= -3.0);
    }

    #[test]
    fn error_bars_clip_at_the_bottom_when_lower_end_is_not_positive() {
        let clipped = pt(0.01, 1e-3, 1e-3); // e − 2se = −1e-3
        let exact_zero = pt(0.02, 2e-3, 1e-3); // e − 2se = 0
        let inside = pt(0.04, 1e-2, 1e-3); // e − 2se = 8e-3
        let p = Plot {
            title: "bars".to_string(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![Series {
                label: "s".to_string(),
                notes: Vec::new(),
                alarm: false,
                points: vec![clipped, exact_zero, inside],
                fit: None,
            }],
            floors: Vec::new(),
        };
        let axes = layout(&p).unwrap();
        for q in [clipped, exact_zero] {
            let bar = error_bar(&q, &axes).unwrap();
            assert_eq!(bar.bottom, FRAME.bottom);
            assert!(!bar.cap_bottom && bar.cap_top);
            assert!((bar.top - axes.y_px(q.error + 2.0 * q.std_err)).abs() < 1e-9);
        }
        let bar = error_bar(&inside, &axes).unwrap();
        assert!(bar.cap_bottom && bar.cap_top);
        assert!(bar.bottom < FRAME.bottom && bar.top > FRAME.top);
        assert!(
            error_bar(&pt(0.01, 1e-3, 0.0), &axes).is_none(),
            "exact: no bar"
        );
        let s = scene(&p);
        let bars = paths(&s, "bar");
        assert_eq!(bars.len(), 3);
        assert_eq!(bars.iter().filter(|b| b[1].1 == FRAME.bottom).count(), 2);
        assert_eq!(paths(&s, "cap").len(), 4);
        well_formed(&s.svg()).unwrap();
    }

    #[test]
    fn huge_error_bars_are_clipped_at_the_top() {
        let p = Plot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![Series {
                label: "s".to_string(),
                notes: Vec::new(),
                alarm: false,
                points: vec![pt(0.01, 1e-3, 1.0), pt(0.1, 1e-2, 0.0)],
                fit: None,
            }],
            floors: Vec::new(),
        };
        let axes = layout(&p).unwrap();
        assert!(
            axes.y.hi < 0.0,
            "a wild standard error does not stretch the axis"
        );
        let bar = error_bar(&p.series[0].points[0], &axes).unwrap();
        assert_eq!(
            (bar.top, bar.cap_top, bar.bottom, bar.cap_bottom),
            (FRAME.top, false, FRAME.bottom, false)
        );
    }

    /// NaN, ±inf, zero and negative values, a single point, empty series and an empty
    /// plot: a plot (SVG and PNG) and notes, never a panic or a non-finite number.
    #[test]
    fn garbage_inputs_give_a_plot() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let mut p = sample();
        p.series[0].points.extend([
            pt(0.0078125, 0.0, 0.0),
            pt(0.004, -1e-6, 1e-7),
            pt(0.002, nan, nan),
            pt(0.001, inf, 1.0),
            pt(nan, 1e-3, 0.0),
            pt(-0.1, 1e-3, 0.0),
            pt(0.03, 1e-3, nan),
            pt(0.03, 1e-3, inf),
            pt(0.03, 1e-3, -1.0),
            pt(f64::MIN_POSITIVE, f64::MAX, f64::MAX),
        ]);
        p.series[1].fit = Some(FitLine {
            slope: nan,
            log_c: inf,
            step_lo: 0.0,
            step_hi: -1.0,
        });
        p.series.push(Series {
            label: "huge fit".to_string(),
            notes: Vec::new(),
            alarm: false,
            points: vec![pt(0.1, 1e-3, 0.0)],
            fit: Some(FitLine {
                slope: 1e300,
                log_c: 1e300,
                step_lo: 0.01,
                step_hi: 0.1,
            }),
        });
        p.series.push(Series {
            label: "empty".to_string(),
            notes: Vec::new(),
            alarm: false,
            points: Vec::new(),
            fit: None,
        });
        p.floors.extend([
            ("bad floor".to_string(), nan),
            ("zero".to_string(), 0.0),
            ("neg".to_string(), -1.0),
        ]);
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        let lower = doc.to_lowercase();
        assert!(!lower.contains("nan") && !lower.contains("inf"), "{doc}");
        let t = texts(&doc);
        for want in [
            "η = 0.0078: error not resolved",
            "η = 0.004: error not resolved",
            "η = ?: step not drawable",
            "η = -0.1: step not drawable",
            "slope n/a",
            "empty",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} in {t:?}");
        }
        assert!(png_size(&png(&p).unwrap()).is_some());

        let single = Plot {
            series: vec![Series {
                label: "one".to_string(),
                notes: Vec::new(),
                alarm: false,
                points: vec![pt(0.1, 1e-3, 1e-4)],
                fit: None,
            }],
            ..sample()
        };
        let s = scene(&single);
        assert_eq!(paths(&s, "bar").len(), 1);
        assert!(!has_text(&s, "no data"));
        assert!(png_size(&png(&single).unwrap()).is_some());
    }

    #[test]
    fn empty_plots_say_no_data() {
        let empty = Plot {
            title: "nothing".to_string(),
            x_label: "η".to_string(),
            y_label: "error".to_string(),
            series: Vec::new(),
            floors: vec![("floor".to_string(), 1e-3)],
        };
        let doc = svg(&empty);
        well_formed(&doc).unwrap();
        assert!(texts(&doc).contains(&"no data".to_string()));
        assert!(png_size(&png(&empty).unwrap()).is_some());
        let unresolved = Plot {
            series: vec![Series {
                label: "all zero".to_string(),
                notes: Vec::new(),
                alarm: false,
                points: vec![pt(0.0078125, 0.0, 0.0), pt(0.015625, f64::NAN, 0.0)],
                fit: None,
            }],
            ..empty
        };
        let s = scene(&unresolved);
        assert!(has_text(&s, "no data"));
        assert!(has_text(&s, "η = 0.0078: error not resolved"));
        assert!(has_text(&s, "η = 0.016: error not resolved"));
    }

    #[test]
    fn text_is_escaped() {
        let nasty = "a<b & c>\"d\"";
        let mut p = sample();
        p.title = nasty.to_string();
        p.series[0].label = nasty.to_string();
        p.series[1].label = "tab\there\u{0}".to_string();
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        assert!(!doc.contains("a<b") && !doc.contains('\u{0}'));
        assert_eq!(doc.matches("a&lt;b &amp; c&gt;&quot;d&quot;").count(), 2);
    }

    #[test]
    fn many_series_and_notes_stay_inside_the_canvas() {
        let series: Vec<Series> = (0..20)
            .map(|k| Series {
                label: format!("series number {k} with a rather long label"),
                notes: Vec::new(),
                alarm: false,
                points: (0..6)
                    .map(|j| {
                        let h = 0.1 / f64::from(1u32 << j);
                        pt(h, if j == 5 { 0.0 } else { h * h }, 0.0)
                    })
                    .collect(),
                fit: None,
            })
            .collect();
        let p = Plot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series,
            floors: Vec::new(),
        };
        let s = scene(&p);
        assert!(s
            .shapes
            .iter()
            .any(|sh| matches!(sh, Shape::Text { text, .. } if text.ends_with("more series"))));
        for sh in &s.shapes {
            if let Shape::Text { y, .. } = sh {
                assert!((0.0..=HEIGHT).contains(y), "text at y = {y}");
            }
        }
    }

    #[test]
    fn legend_notes_show_under_the_slope_and_alarms_in_red() {
        let mut p = sample();
        p.series[0].notes = vec![
            "order 3 asked, order 2 derived".to_string(),
            "1.02 ± 0.03 contradicts order 2".to_string(),
        ];
        p.series[0].alarm = true;
        let red = |s: &Scene, want: &str| {
            s.shapes.iter().any(|sh| {
                matches!(sh, Shape::Text { text, color, .. } if text == want && *color == ALARM)
            })
        };
        let s = scene(&p);
        assert!(red(&s, "1.02 ± 0.03 contradicts order 2"));
        assert!(red(&s, "order 3 asked, order 2 derived"));
        assert!(texts(&s.svg()).contains(&"1.02 ± 0.03 contradicts order 2".to_string()));
        p.series[0].alarm = false;
        assert!(!red(&scene(&p), "1.02 ± 0.03 contradicts order 2"));
    }
}
