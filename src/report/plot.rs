//! Weak-error plots: a log–log chart of weak error against step size, as a standalone SVG.
//!
//! [`svg`] draws, for each [`Series`], the measured weak errors `e(η)` as markers with
//! error bars at ±2 Monte Carlo standard errors, the fitted power law `e = C η^p` as a
//! solid line in the series colour, and a legend entry with the label and the fitted
//! slope. Optional dashed grey horizontal lines ([`Plot::floors`]) mark error levels the
//! measurement cannot resolve below, for example the SDE scheme's own discretization
//! error. Both axes are base-10 logarithmic; their ranges cover all finite positive data
//! (errors, error-bar ends, fit-line ends, floors), padded a little and widened to whole
//! or half decades, with labelled ticks at decades and minor ticks at 2..9 when the range
//! spans at most four decades.
//!
//! Nothing that cannot be drawn on log axes is drawn: points whose error is zero,
//! negative or not finite (or whose step is not positive) are listed in a note under the
//! legend instead, error bars whose lower end `e − 2·se` is not positive run to the
//! bottom of the plot, and error bars reaching more than one decade beyond their point
//! are clipped at the plot's edge (clipped ends have no cap). NaN or infinite inputs
//! never appear in the output. The output is a pure function of the input: all
//! coordinates are printed with at most two decimals, so the same [`Plot`] gives a
//! byte-identical document.

use std::fmt::Write;

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
/// The plot area: [LEFT, RIGHT] × [TOP, BOTTOM] in pixels.
const LEFT: f64 = 80.0;
const RIGHT: f64 = 520.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 420.0;
/// The legend and notes column, right of the plot area, down to LEGEND_BOTTOM.
const LEGEND_X: f64 = 534.0;
const LEGEND_BOTTOM: f64 = 474.0;
const MARKER_R: f64 = 4.5;
const CAP_HALF: f64 = 3.5;
/// Error-bar ends count towards the axis range only up to this many decades from their point.
const BAR_REACH: f64 = 1.0;
/// Okabe–Ito colours (colourblind-safe), yellow left out for contrast on white.
const PALETTE: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];
/// Circle, square, triangle up, diamond, triangle down, cross.
const MARKERS: usize = 6;
const LEGEND_LABEL_CHARS: usize = 24;
const FLOOR_LABEL_CHARS: usize = 40;
const NOTE_CHARS: usize = 36;
/// The height of one legend note line.
const NOTE_LINE: f64 = 12.0;

/// The plot as a complete SVG document (deterministic: same input, byte-identical output).
pub fn svg(plot: &Plot) -> String {
    let mut out = open_svg(WIDTH, HEIGHT, &plot.title, 30.0);
    let axes = layout(plot);
    match &axes {
        Some(axes) => draw_axes(&mut out, axes),
        None => {
            let _ = writeln!(
                out,
                r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333333"/>"##,
                num(LEFT),
                num(TOP),
                num(RIGHT - LEFT),
                num(BOTTOM - TOP)
            );
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{}" text-anchor="middle" font-size="16" fill="#888888">no data</text>"##,
                num((LEFT + RIGHT) / 2.0),
                num((TOP + BOTTOM) / 2.0)
            );
        }
    }
    draw_axis_labels(&mut out, plot);
    if let Some(axes) = &axes {
        draw_floors(&mut out, plot, axes);
        for (i, series) in plot.series.iter().enumerate() {
            draw_series(&mut out, i, series, axes);
        }
    }
    let notes_top = draw_legend(&mut out, plot);
    draw_notes(&mut out, plot, notes_top);
    out.push_str("</svg>\n");
    out
}

/// A number for an SVG attribute: at most two decimals, no trailing zeros, no "-0";
/// non-finite values (which the drawing code never produces) print as 0.
/// A document's opening: the `<svg>` element, a white background and the title (if
/// any) centred at height `title_y`.
pub(crate) fn open_svg(width: f64, height: f64, title: &str, title_y: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#,
        w = num(width),
        h = num(height)
    );
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
        num(width),
        num(height)
    );
    if !title.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
            num(width / 2.0),
            num(title_y),
            esc(title)
        );
    }
    out
}

pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "0".to_string();
    }
    let mut s = format!("{x:.2}");
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(trimmed);
    }
    if s == "-0" {
        s = "0".to_string();
    }
    s
}

/// A step size for a note: two significant digits ("0.0078", "3.0e-6"); "?" when not finite.
fn fmt_step(x: f64) -> String {
    if !x.is_finite() {
        return "?".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let a = x.abs();
    if (1e-4..1e4).contains(&a) {
        let magnitude = a.log10().floor() as i32;
        let decimals = (1 - magnitude).max(0) as usize;
        let mut s = format!("{x:.decimals$}");
        if s.contains('.') {
            let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
            s.truncate(trimmed);
        }
        s
    } else {
        format!("{x:.1e}")
    }
}

/// Text content or attribute value: `<`, `>`, `&`, `"`, `'` escaped; control characters
/// (not allowed in XML) replaced by spaces.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, the last one "…" when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// "10⁻³": a decade label with Unicode superscripts.
pub(crate) fn decade_label(d: i32) -> String {
    let mut s = String::from("10");
    for c in d.to_string().chars() {
        s.push(match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            _ => '⁹',
        });
    }
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

/// One log10 axis range, [lo, hi] in decades.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    lo: f64,
    hi: f64,
}

impl Range {
    /// The range covering these log10 values: padded by 3% (at least 0.05 decades),
    /// widened to half decades, and to whole decades when that is needed for two
    /// labelled decade ticks. `None` without a finite value.
    fn covering(logs: &[f64]) -> Option<Range> {
        let mut finite = logs.iter().copied().filter(|v| v.is_finite());
        let first = finite.next()?;
        let (min, max) = finite.fold((first, first), |(a, b), v| (a.min(v), b.max(v)));
        let pad = (0.03 * (max - min)).max(0.05);
        let mut lo = ((min - pad) * 2.0).floor() / 2.0;
        let mut hi = ((max + pad) * 2.0).ceil() / 2.0;
        if hi.floor() - lo.ceil() < 1.0 {
            hi = hi.ceil();
        }
        if hi.floor() - lo.ceil() < 1.0 {
            lo = lo.floor();
        }
        Some(Range { lo, hi })
    }

    fn span(&self) -> f64 {
        self.hi - self.lo
    }

    /// Where a log10 value falls, 0 at lo and 1 at hi.
    fn frac(&self, lv: f64) -> f64 {
        (lv - self.lo) / self.span()
    }

    fn contains(&self, lv: f64) -> bool {
        lv >= self.lo - 1e-9 && lv <= self.hi + 1e-9
    }

    /// The labelled decades: every decade, or every k-th for wide ranges (≤ ~9 labels).
    fn decades(&self) -> Vec<i32> {
        let k = (self.span() / 8.0).ceil().max(1.0) as i32;
        (self.lo.ceil() as i32..=self.hi.floor() as i32)
            .filter(|d| d.rem_euclid(k) == 0)
            .collect()
    }

    /// log10 of m·10^d for m = 2..9 strictly inside the range, if it spans ≤ 4 decades.
    fn minor(&self) -> Vec<f64> {
        if self.span() > 4.0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for d in self.lo.floor() as i32..=self.hi.ceil() as i32 {
            for m in 2..=9 {
                let lv = f64::from(d) + f64::from(m).log10();
                if lv > self.lo && lv < self.hi {
                    out.push(lv);
                }
            }
        }
        out
    }
}

/// The mapping from data to pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axes {
    x: Range,
    y: Range,
}

impl Axes {
    fn x_px_log(&self, lx: f64) -> f64 {
        LEFT + self.x.frac(lx) * (RIGHT - LEFT)
    }

    fn y_px_log(&self, ly: f64) -> f64 {
        BOTTOM - self.y.frac(ly) * (BOTTOM - TOP)
    }

    /// Pixel column of a positive step size.
    fn x_px(&self, step: f64) -> f64 {
        self.x_px_log(step.log10())
    }

    /// Pixel row of a positive error.
    fn y_px(&self, error: f64) -> f64 {
        self.y_px_log(error.log10())
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
    Some(Axes {
        x: Range::covering(&xs)?,
        y: Range::covering(&ys)?,
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
        Some(u) if axes.y.contains(u.log10()) => (axes.y_px(u).max(TOP), true),
        _ => (TOP, false),
    };
    let (bottom, cap_bottom) = match lower {
        Some(l) if axes.y.contains(l.log10()) => (axes.y_px(l).min(BOTTOM), true),
        _ => (BOTTOM, false),
    };
    Some(Bar {
        x: axes.x_px(p.step),
        top,
        bottom,
        cap_top,
        cap_bottom,
    })
}

fn draw_axes(out: &mut String, axes: &Axes) {
    // Grid: minor lines first, decades over them.
    out.push_str(r##"<g class="grid-minor" stroke="#f0f0f0" stroke-width="1">"##);
    out.push('\n');
    for lx in axes.x.minor() {
        let x = num(axes.x_px_log(lx));
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            num(TOP),
            num(BOTTOM)
        );
    }
    for ly in axes.y.minor() {
        let y = num(axes.y_px_log(ly));
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
            num(LEFT),
            num(RIGHT)
        );
    }
    out.push_str("</g>\n");
    out.push_str(r##"<g class="grid" stroke="#d9d9d9" stroke-width="1">"##);
    out.push('\n');
    for d in axes.x.decades() {
        let x = num(axes.x_px_log(f64::from(d)));
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            num(TOP),
            num(BOTTOM)
        );
    }
    for d in axes.y.decades() {
        let y = num(axes.y_px_log(f64::from(d)));
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
            num(LEFT),
            num(RIGHT)
        );
    }
    out.push_str("</g>\n");
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333333"/>"##,
        num(LEFT),
        num(TOP),
        num(RIGHT - LEFT),
        num(BOTTOM - TOP)
    );
    // Ticks point outwards: 6 px at decades, 3 px at minor positions.
    out.push_str(r##"<g class="ticks" stroke="#333333" stroke-width="1">"##);
    out.push('\n');
    let x_ticks = axes.x.decades().into_iter().map(|d| (f64::from(d), 6.0));
    for (lx, len) in x_ticks.chain(axes.x.minor().into_iter().map(|lx| (lx, 3.0))) {
        let x = num(axes.x_px_log(lx));
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            num(BOTTOM),
            num(BOTTOM + len)
        );
    }
    let y_ticks = axes.y.decades().into_iter().map(|d| (f64::from(d), 6.0));
    for (ly, len) in y_ticks.chain(axes.y.minor().into_iter().map(|ly| (ly, 3.0))) {
        let y = num(axes.y_px_log(ly));
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
            num(LEFT - len),
            num(LEFT)
        );
    }
    out.push_str("</g>\n");
    out.push_str(r##"<g class="tick-labels" font-size="11" fill="#333333">"##);
    out.push('\n');
    for d in axes.x.decades() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            num(axes.x_px_log(f64::from(d))),
            num(BOTTOM + 19.0),
            decade_label(d)
        );
    }
    for d in axes.y.decades() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            num(LEFT - 8.0),
            num(axes.y_px_log(f64::from(d)) + 4.0),
            decade_label(d)
        );
    }
    out.push_str("</g>\n");
}

fn draw_axis_labels(out: &mut String, plot: &Plot) {
    if !plot.x_label.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
            num((LEFT + RIGHT) / 2.0),
            num(BOTTOM + 44.0),
            esc(&plot.x_label)
        );
    }
    if !plot.y_label.is_empty() {
        let (x, y) = (num(24.0), num((TOP + BOTTOM) / 2.0));
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{y}" transform="rotate(-90 {x} {y})" text-anchor="middle" font-size="13">{}</text>"#,
            esc(&plot.y_label)
        );
    }
}

fn draw_floors(out: &mut String, plot: &Plot, axes: &Axes) {
    let floors: Vec<(&String, f64)> = plot
        .floors
        .iter()
        .filter(|(_, v)| drawable(*v))
        .map(|(label, v)| (label, *v))
        .collect();
    if floors.is_empty() {
        return;
    }
    out.push_str(r##"<g class="floors" fill="#666666" font-size="10">"##);
    out.push('\n');
    for (label, v) in floors {
        let y = axes.y_px(v);
        let _ = writeln!(
            out,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#888888" stroke-width="1.2" stroke-dasharray="6 4"/>"##,
            num(LEFT),
            num(RIGHT),
            y = num(y)
        );
        if !label.is_empty() {
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                num(RIGHT - 4.0),
                num(y - 4.0),
                esc(&truncate(label, FLOOR_LABEL_CHARS))
            );
        }
    }
    out.push_str("</g>\n");
}

fn draw_series(out: &mut String, i: usize, series: &Series, axes: &Axes) {
    let color = PALETTE[i % PALETTE.len()];
    let _ = writeln!(out, r#"<g class="series">"#);
    if let Some([(x0, y0), (x1, y1)]) = series.fit.as_ref().and_then(fit_ends) {
        let _ = writeln!(
            out,
            r#"<line class="fit" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="1.5"/>"#,
            num(axes.x_px(x0)),
            num(axes.y_px(y0)),
            num(axes.x_px(x1)),
            num(axes.y_px(y1))
        );
    }
    for p in &series.points {
        if let Some(bar) = error_bar(p, axes) {
            let x = num(bar.x);
            let _ = writeln!(
                out,
                r#"<line class="err" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{color}" stroke-width="1.2"/>"#,
                num(bar.top),
                num(bar.bottom)
            );
            for (row, cap) in [(bar.top, bar.cap_top), (bar.bottom, bar.cap_bottom)] {
                if cap {
                    let y = num(row);
                    let _ = writeln!(
                        out,
                        r#"<line class="cap" x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="1.2"/>"#,
                        num(bar.x - CAP_HALF),
                        num(bar.x + CAP_HALF)
                    );
                }
            }
        }
    }
    for p in series.points.iter().filter(|p| point_drawable(p)) {
        marker(out, i, axes.x_px(p.step), axes.y_px(p.error), MARKER_R);
    }
    out.push_str("</g>\n");
}

/// Series i's marker centred at (x, y) with radius about r, in its colour.
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
            r#"<circle cx="{}" cy="{}" r="{}" fill="{color}"/>"#,
            num(x),
            num(y),
            num(r)
        ),
        1 => writeln!(
            out,
            r#"<rect x="{}" y="{}" width="{s}" height="{s}" fill="{color}"/>"#,
            num(x - 0.85 * r),
            num(y - 0.85 * r),
            s = num(1.7 * r)
        ),
        2 => writeln!(
            out,
            r#"<polygon points="{}" fill="{color}"/>"#,
            poly(&[(0.0, -1.2), (1.1, 0.8), (-1.1, 0.8)])
        ),
        3 => writeln!(
            out,
            r#"<polygon points="{}" fill="{color}"/>"#,
            poly(&[(0.0, -1.25), (1.0, 0.0), (0.0, 1.25), (-1.0, 0.0)])
        ),
        4 => writeln!(
            out,
            r#"<polygon points="{}" fill="{color}"/>"#,
            poly(&[(0.0, 1.2), (1.1, -0.8), (-1.1, -0.8)])
        ),
        _ => writeln!(
            out,
            r#"<path d="M{} L{} M{} L{}" stroke="{color}" stroke-width="2" fill="none"/>"#,
            poly(&[(-1.0, -1.0)]),
            poly(&[(1.0, 1.0)]),
            poly(&[(-1.0, 1.0)]),
            poly(&[(1.0, -1.0)])
        ),
    };
}

/// The legend, top right; returns the row below it, where the notes start.
fn draw_legend(out: &mut String, plot: &Plot) -> f64 {
    let mut row = TOP + 8.0;
    if plot.series.is_empty() {
        return row;
    }
    out.push_str(r#"<g class="legend">"#);
    out.push('\n');
    for (i, s) in plot.series.iter().enumerate() {
        let height = if s.fit.is_some() { 30.0 } else { 16.0 } + NOTE_LINE * s.notes.len() as f64;
        if row + height > LEGEND_BOTTOM {
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{}" font-size="10" fill="#555555">… {} more series</text>"##,
                num(LEGEND_X),
                num(row + 4.0),
                plot.series.len() - i
            );
            row += 16.0;
            break;
        }
        let color = PALETTE[i % PALETTE.len()];
        if s.fit.is_some() {
            let _ = writeln!(
                out,
                r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="1.5"/>"#,
                num(LEGEND_X),
                num(LEGEND_X + 22.0),
                y = num(row)
            );
        }
        marker(out, i, LEGEND_X + 11.0, row, MARKER_R);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">{}</text>"#,
            num(LEGEND_X + 30.0),
            num(row + 4.0),
            esc(&truncate(&s.label, LEGEND_LABEL_CHARS))
        );
        if let Some(fit) = &s.fit {
            let slope = if fit.slope.is_finite() {
                format!("slope {:.2}", fit.slope)
            } else {
                "slope n/a".to_string()
            };
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{}" font-size="11" fill="#444444">{slope}</text>"##,
                num(LEGEND_X + 30.0),
                num(row + 18.0)
            );
        }
        let first = row + if s.fit.is_some() { 18.0 } else { 4.0 } + NOTE_LINE;
        let fill = if s.alarm { "#B00020" } else { "#555555" };
        for (k, note) in s.notes.iter().enumerate() {
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" font-size="10" fill="{fill}">{}</text>"#,
                num(LEGEND_X + 30.0),
                num(first + NOTE_LINE * k as f64),
                esc(&truncate(note, NOTE_CHARS))
            );
        }
        row += height + 6.0;
    }
    out.push_str("</g>\n");
    row
}

/// Everything that could not be drawn, under the legend: series points first (with the
/// series' marker), then floors.
fn draw_notes(out: &mut String, plot: &Plot, top: f64) {
    let mut notes: Vec<(Option<usize>, String)> = Vec::new();
    for (i, s) in plot.series.iter().enumerate() {
        for p in &s.points {
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
    let fit = ((LEGEND_BOTTOM - first) / line).floor().max(0.0) as usize + 1;
    let (shown, hidden) = if notes.len() <= fit {
        (notes.len(), 0)
    } else {
        let shown = fit.saturating_sub(1);
        (shown, notes.len() - shown)
    };
    out.push_str(r##"<g class="notes" font-size="10" fill="#555555">"##);
    out.push('\n');
    for (k, (series, text)) in notes.iter().take(shown).enumerate() {
        let y = first + line * k as f64;
        if let Some(i) = series {
            marker(out, *i, LEGEND_X + 4.0, y - 3.5, 3.0);
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">{}</text>"#,
            num(LEGEND_X + 12.0),
            num(y),
            esc(&truncate(text, NOTE_CHARS))
        );
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">… and {hidden} more not drawn</text>"#,
            num(LEGEND_X + 12.0),
            num(first + line * shown as f64)
        );
    }
    out.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::testing::{attr_of, well_formed};
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
                    notes: Vec::new(),
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

    #[test]
    fn document_shape_and_balance() {
        let doc = svg(&sample());
        assert!(doc.starts_with("<svg"), "{doc}");
        assert!(doc.ends_with("</svg>\n"));
        well_formed(&doc).unwrap();
        assert_eq!(doc.matches("<g").count(), doc.matches("</g>").count());
        assert!(doc.contains(r#"width="720" height="480""#));
        assert!(doc.contains(r#"font-family="sans-serif""#));
        assert!(doc.contains(">Weak error of SGD</text>"));
        assert!(doc.contains("transform=\"rotate(-90"));
        assert!(doc.contains(">SME order 2</text>"));
        assert!(doc.contains(">slope 2.01</text>"));
        assert_eq!(
            doc.matches("slope ").count(),
            1,
            "no slope for the series without a fit"
        );
        assert!(doc.contains("stroke-dasharray"), "the floor is dashed");
        assert!(doc.contains(">SDE discretization</text>"));
        // Both series' colours and distinct markers.
        assert!(doc.contains(PALETTE[0]) && doc.contains(PALETTE[1]));
        assert!(doc.contains("<circle") && doc.contains("<rect x"));
        assert!(!doc.contains("no data"));
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
        // Every attribute value made of digits has at most two decimals.
        for value in doc.split('"').skip(1).step_by(2) {
            for token in value.split([' ', ',', '(', ')', 'M', 'L']) {
                if let Some((_, frac)) = token.split_once('.') {
                    if token.parse::<f64>().is_ok() {
                        assert!(frac.len() <= 2, "{token} in {value}");
                    }
                }
            }
        }
        assert_eq!(num(1.0), "1");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(1.234_567), "1.23");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(-12.3456), "-12.35");
        assert_eq!(fmt_step(0.0078125), "0.0078");
        assert_eq!(fmt_step(0.5), "0.5");
        assert_eq!(fmt_step(3e-6), "3.0e-6");
        assert_eq!(fmt_step(f64::INFINITY), "?");
    }

    #[test]
    fn hostile_values_never_print_nan_or_inf() {
        let mut p = sample();
        p.series[0].points.extend([
            pt(0.0078125, 0.0, 0.0),
            pt(0.004, -1e-6, 1e-7),
            pt(0.002, f64::NAN, f64::NAN),
            pt(0.001, f64::INFINITY, 1.0),
            pt(f64::NAN, 1e-3, 0.0),
            pt(-0.1, 1e-3, 0.0),
            pt(0.03, 1e-3, f64::NAN),
            pt(0.03, 1e-3, f64::INFINITY),
            pt(0.03, 1e-3, -1.0),
            pt(f64::MIN_POSITIVE, f64::MAX, f64::MAX),
        ]);
        p.series[1].fit = Some(FitLine {
            slope: f64::NAN,
            log_c: f64::INFINITY,
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
        p.floors.extend([
            ("bad floor".to_string(), f64::NAN),
            ("zero".to_string(), 0.0),
            ("neg".to_string(), -1.0),
        ]);
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        let lower = doc.to_lowercase();
        assert!(!lower.contains("nan"), "{doc}");
        assert!(!lower.contains("inf"), "{doc}");
        assert!(doc.contains("η = 0.0078: error not resolved"), "{doc}");
        assert!(doc.contains("η = 0.004: error not resolved"));
        assert!(doc.contains("η = ?: step not drawable"));
        assert!(doc.contains("slope n/a"));
        assert!(doc.contains("η = -0.1: step not drawable"));
        assert!(doc.contains("neg: floor not drawable"));
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
        // Pixels per decade on each axis, from the mapping itself.
        let x_decade = axes.x_px_log(1.0) - axes.x_px_log(0.0);
        let y_decade = axes.y_px_log(0.0) - axes.y_px_log(1.0);
        assert!((x_decade - (RIGHT - LEFT) / axes.x.span()).abs() < 1e-9);
        assert!((y_decade - (BOTTOM - TOP) / axes.y.span()).abs() < 1e-9);
        let [(s0, e0), (s1, e1)] = fit_ends(&p.series[0].fit.unwrap()).unwrap();
        let dx = axes.x_px(s1) - axes.x_px(s0);
        let dy = axes.y_px(e0) - axes.y_px(e1);
        assert!((dx - x_decade).abs() < 1e-9, "one decade of η");
        assert!(
            (dy - 2.0 * y_decade).abs() < 1e-6,
            "two decades of error: {dy} vs {y_decade}"
        );
        // The drawn line is exactly that segment (to the printed precision).
        let doc = svg(&p);
        let get = |a: &str| attr_of(&doc, "class=\"fit\"", a)[0];
        assert!((get("x1") - axes.x_px(s0)).abs() <= 0.005);
        assert!((get("y1") - axes.y_px(e0)).abs() <= 0.005);
        assert!((get("x2") - axes.x_px(s1)).abs() <= 0.005);
        assert!((get("y2") - axes.y_px(e1)).abs() <= 0.005);
        // And the markers sit on it.
        let cx = attr_of(&doc, "<circle", "cx");
        let cy = attr_of(&doc, "<circle", "cy");
        assert!((cx[0] - get("x1")).abs() < 0.02 && (cy[0] - get("y1")).abs() < 0.02);
        assert!((cx[1] - get("x2")).abs() < 0.02 && (cy[1] - get("y2")).abs() < 0.02);
    }

    #[test]
    fn axis_ranges_are_padded_half_decades_with_decade_ticks() {
        let r = Range::covering(&[-3.3, -1.2]).unwrap();
        assert!(r.lo <= -3.3 - 0.05 && r.hi >= -1.2 + 0.05);
        assert_eq!((r.lo * 2.0).fract(), 0.0);
        assert_eq!((r.hi * 2.0).fract(), 0.0);
        assert_eq!(r, Range { lo: -3.5, hi: -1.0 });
        assert_eq!(r.decades(), vec![-3, -2, -1]);
        assert_eq!(
            r.minor().len(),
            6 + 8 + 8,
            "4..9 above 10⁻³·⁵, 2..9 in 10⁻³ and 10⁻²"
        );
        // A single value still gets two labelled decades.
        let one = Range::covering(&[-3.0]).unwrap();
        assert!(one.decades().len() >= 2 && one.contains(-3.0));
        // Wide ranges: no minor ticks, at most ~9 labels.
        let wide = Range::covering(&[-12.0, 0.0]).unwrap();
        assert!(wide.minor().is_empty());
        assert!(wide.decades().len() <= 9);
        assert!(Range::covering(&[f64::NAN]).is_none());
        assert_eq!(decade_label(-3), "10⁻³");
        assert_eq!(decade_label(0), "10⁰");
        assert_eq!(decade_label(12), "10¹²");
        let doc = svg(&sample());
        assert!(doc.contains(">10⁻³</text>") && doc.contains(">10⁻¹</text>"));
        assert!(doc.contains("class=\"grid-minor\""));
    }

    #[test]
    fn text_is_escaped() {
        let nasty = "a<b & c>\"d\"";
        let mut p = sample();
        p.title = nasty.to_string();
        p.x_label = nasty.to_string();
        p.y_label = nasty.to_string();
        p.series[0].label = nasty.to_string();
        p.floors[0].0 = nasty.to_string();
        p.series[1].label = "tab\there\u{0}".to_string();
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        assert!(!doc.contains("a<b"));
        assert!(!doc.contains("c>\""));
        assert_eq!(doc.matches("a&lt;b &amp; c&gt;&quot;d&quot;").count(), 5);
        assert!(!doc.contains('\u{0}'));
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
            assert_eq!(bar.bottom, BOTTOM);
            assert!(!bar.cap_bottom);
            assert!(bar.cap_top);
            assert!((bar.top - axes.y_px(q.error + 2.0 * q.std_err)).abs() < 1e-9);
        }
        let bar = error_bar(&inside, &axes).unwrap();
        assert!(bar.cap_bottom && bar.cap_top);
        assert!((bar.bottom - axes.y_px(8e-3)).abs() < 1e-9);
        assert!(bar.bottom < BOTTOM && bar.top > TOP);
        assert!(
            error_bar(&pt(0.01, 1e-3, 0.0), &axes).is_none(),
            "exact: no bar"
        );
        // In the document: three bars, two running to the bottom, four caps in all.
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        let y2 = attr_of(&doc, "class=\"err\"", "y2");
        assert_eq!(y2.len(), 3);
        assert_eq!(y2.iter().filter(|&&y| y == BOTTOM).count(), 2);
        assert!(y2.iter().all(|&y| (TOP..=BOTTOM).contains(&y)));
        assert_eq!(doc.matches("class=\"cap\"").count(), 4);
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
            (TOP, false, BOTTOM, false)
        );
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
        assert!(doc.starts_with("<svg") && doc.ends_with("</svg>\n"));
        assert!(doc.contains(">no data</text>"));

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
        let doc = svg(&unresolved);
        well_formed(&doc).unwrap();
        assert!(doc.contains(">no data</text>"));
        assert!(doc.contains("η = 0.0078: error not resolved"));
        assert!(doc.contains("η = 0.016: error not resolved"));
        assert!(!doc.contains("NaN"));
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
                fit: Some(FitLine {
                    slope: 2.0,
                    log_c: 0.0,
                    step_lo: 0.003,
                    step_hi: 0.1,
                }),
            })
            .collect();
        let p = Plot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series,
            floors: Vec::new(),
        };
        let doc = svg(&p);
        well_formed(&doc).unwrap();
        assert!(doc.contains("more series"));
        for y in attr_of(&doc, "<text", "y") {
            assert!((0.0..=HEIGHT).contains(&y), "text at y = {y}");
        }
        // Six markers and seven colours: the first seven series differ in colour, and
        // series 0 and 6 (same marker) still differ in colour.
        assert_ne!(PALETTE[0], PALETTE[6 % PALETTE.len()]);
    }
    #[test]
    fn legend_notes_show_under_the_slope_and_alarms_in_red() {
        let mut p = Plot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![Series {
                label: "SME-2 · sq".to_string(),
                notes: vec![
                    "order 3 asked, order 2 derived".to_string(),
                    "1.02 ± 0.03 contradicts order 2".to_string(),
                ],
                alarm: true,
                points: vec![PlotPoint {
                    step: 0.1,
                    error: 0.01,
                    std_err: 0.0,
                }],
                fit: None,
            }],
            floors: Vec::new(),
        };
        let doc = svg(&p);
        assert!(
            doc.contains(">order 3 asked, order 2 derived</text>"),
            "{doc}"
        );
        assert!(doc.contains(r##"fill="#B00020">1.02 ± 0.03 contradicts order 2</text>"##));
        p.series[0].alarm = false;
        assert!(!svg(&p).contains("#B00020"));
    }
}

/// Checks shared by the tests of the SVG modules.
#[cfg(test)]
pub(crate) mod testing {

    /// A small XML well-formedness check: tags nest and close, attributes are quoted,
    /// text and attribute values hold no raw `<` and only known entities, one root element.
    pub(crate) fn well_formed(doc: &str) -> Result<(), String> {
        fn entities(s: &str) -> Result<(), String> {
            let mut rest = s;
            while let Some(i) = rest.find('&') {
                let end = rest[i..].find(';').ok_or("unterminated entity")?;
                let name = &rest[i + 1..i + end];
                if !["amp", "lt", "gt", "quot", "#39"].contains(&name) {
                    return Err(format!("unknown entity &{name};"));
                }
                rest = &rest[i + end + 1..];
            }
            Ok(())
        }
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut rest = doc;
        while let Some(i) = rest.find('<') {
            let text = &rest[..i];
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            if text.contains('>') {
                return Err(format!("raw '>' in text: {text:?}"));
            }
            entities(text)?;
            let after = &rest[i + 1..];
            // The tag ends at the first '>' outside quotes.
            let mut in_quote = false;
            let mut close = None;
            for (k, c) in after.char_indices() {
                match c {
                    '"' => in_quote = !in_quote,
                    '<' if in_quote => return Err("raw '<' in an attribute".into()),
                    '<' => return Err("'<' inside a tag".into()),
                    '>' if !in_quote => {
                        close = Some(k);
                        break;
                    }
                    _ => {}
                }
            }
            let close = close.ok_or("unterminated tag")?;
            let tag = &after[..close];
            rest = &after[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or("closing tag without opening")?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
            let name = &body[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad tag name {name:?}"));
            }
            // Attributes: name="value" pairs separated by whitespace.
            let mut attrs = body[name_end..].trim_start();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or(format!("bad attribute in {tag:?}"))?;
                let attr = &attrs[..eq];
                if attr.is_empty()
                    || !attr
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
                {
                    return Err(format!("bad attribute name {attr:?}"));
                }
                let value_end = attrs[eq + 2..].find('"').ok_or("unterminated attribute")?;
                entities(&attrs[eq + 2..eq + 2 + value_end])?;
                let after_value = &attrs[eq + 2 + value_end + 1..];
                if !after_value.is_empty() && !after_value.starts_with(char::is_whitespace) {
                    return Err(format!("attributes not separated in {tag:?}"));
                }
                attrs = after_value.trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        if !rest.trim().is_empty() {
            return Err("text after the root".into());
        }
        if !stack.is_empty() {
            return Err(format!("unclosed: {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    /// Attribute values of `attr` on elements whose tag contains `marker`.
    pub(crate) fn attr_of(doc: &str, marker: &str, attr: &str) -> Vec<f64> {
        doc.lines()
            .filter(|l| l.contains(marker))
            .filter_map(|l| {
                let key = format!(" {attr}=\"");
                let start = l.find(&key)? + key.len();
                let end = l[start..].find('"')? + start;
                l[start..end].parse().ok()
            })
            .collect()
    }
}
