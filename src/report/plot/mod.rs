//! Plots of `verify` and `escape`, drawn through the [`plotters`] crate as SVG or PNG.
//!
//! * [`verify`]: the log–log weak-error plot ([`verify::Plot`], [`verify::svg`], [`verify::png()`]).
//! * [`escape`]: survival curves and the scaling-law panel.
//!
//! Both build a `Scene`: a list of shapes (paths, rectangles, markers, texts) in pixel
//! coordinates, laid out by the code in this module (palette, markers per series index,
//! log ranges with decade ticks, linear "nice" ticks, number formatting, frames with
//! grids and tick labels, legend swatches, segment clipping). A scene is then drawn with
//! plotters' elements ([`PathElement`], [`DashedPathElement`], [`Rectangle`], [`Circle`],
//! [`Polygon`], [`Text`]) onto its `SVGBackend` (a string) or its `BitMapBackend` (an RGB
//! buffer at twice the size, encoded by the `png` crate).
//!
//! Why plotters' primitives and not its `ChartBuilder`: what the plots show needs pixel
//! positions the chart API does not expose or choose. Its log axes pick their own tick
//! values and labels (no whole/half-decade padding, no `10⁻³` labels with minor ticks
//! only on short ranges); error bars here are asymmetric on a log axis, with an end at or
//! below zero running to the frame without a cap (plotters' `ErrorBar` always caps both
//! ends and needs both in range); its series legend sits at a fixed
//! `SeriesLabelPosition`, while the escape panels put theirs in the corner that hides
//! the least of the drawn data, and verify's legend is a column beside the plot with
//! the verdict notes and the list of points that could not be drawn. So the layout
//! stays ours, the drawing is plotters'.
//!
//! Text: the SVG backend writes `<text>` elements itself (the viewer's `sans-serif`
//! font); the bitmap backend rasterizes with `ab_glyph` and DejaVu Sans, bundled in
//! `src/report/plot/fonts/` (Bitstream Vera licence, permissive; see `LICENSE-DejaVu` there)
//! and registered once from its bytes. Plotters writes integer pixel coordinates.
//!
//! Nothing non-finite reaches plotters: a shape with a non-finite coordinate is dropped
//! when it is added to the scene, coordinates are clamped to a few canvas sizes around
//! the canvas, and text has control characters replaced by spaces.

pub mod escape;
pub mod verify;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, FontTransform};
use std::path::Path;
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence), for the bitmap backend's text.
static DEJAVU_SANS: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// The font family named in the SVG and registered for the bitmap backend.
const FAMILY: &str = "sans-serif";

/// PNG output has this many pixels per SVG pixel.
const PNG_SCALE: f64 = 2.0;

/// Plotters' SVG backend writes `font-size` as the style's size divided by 1.24.
const FONT_FACTOR: f64 = 1.24;

/// Okabe–Ito colours (colour-blind safe), yellow left out for contrast on white.
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x00, 0x00, 0x00),
];
/// Circle, square, triangle up, diamond, triangle down, cross.
pub(crate) const MARKERS: usize = 6;
pub(crate) const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
pub(crate) const GREY: RGBColor = RGBColor(0x66, 0x66, 0x66);
pub(crate) const LIGHT: RGBColor = RGBColor(0x88, 0x88, 0x88);
pub(crate) const GRID: RGBColor = RGBColor(0xe0, 0xe0, 0xe0);
pub(crate) const GRID_MINOR: RGBColor = RGBColor(0xf2, 0xf2, 0xf2);
pub(crate) const ALARM: RGBColor = RGBColor(0xB0, 0x00, 0x20);

/// Series i's colour.
pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The output format of a plot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A standalone SVG document.
    Svg,
    /// A PNG image (twice the SVG's pixel size).
    Png,
}

impl Format {
    /// PNG when the path ends in `.png` (any case), SVG otherwise.
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("png") => Format::Png,
            _ => Format::Svg,
        }
    }
}

/// Why a plot could not be rendered (only the PNG encoder can fail in practice).
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Plotters reported an error while drawing.
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    /// The PNG encoder failed.
    #[error("cannot encode the PNG: {0}")]
    Encode(String),
}

// ---------------------------------------------------------------------------------------
// Scene

/// Horizontal text anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Start,
    Middle,
    End,
}

/// One drawable shape, in SVG pixels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// A polyline; `tag` names its role for tests ("fit", "bar", "cap", "curve", …).
    Path {
        tag: &'static str,
        pts: Vec<(f64, f64)>,
        color: RGBColor,
        width: f64,
        dashed: bool,
    },
    /// A rectangle, filled and/or stroked.
    Rect {
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        fill: Option<RGBAColor>,
        stroke: Option<RGBColor>,
    },
    /// Series `series`' marker centred at (x, y), radius about r.
    Marker {
        series: usize,
        x: f64,
        y: f64,
        r: f64,
    },
    /// A line of text; (x, y) is its anchor point on the baseline.
    Text {
        x: f64,
        y: f64,
        text: String,
        size: f64,
        color: RGBColor,
        anchor: Anchor,
        bold: bool,
        vertical: bool,
    },
}

/// A figure: its size and shapes, in drawing order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scene {
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) shapes: Vec<Shape>,
}

/// Text options beyond position and content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Font {
    pub(crate) size: f64,
    pub(crate) color: RGBColor,
    pub(crate) anchor: Anchor,
    pub(crate) bold: bool,
    pub(crate) vertical: bool,
}

impl Font {
    pub(crate) fn new(size: f64) -> Font {
        Font {
            size,
            color: RGBColor(0, 0, 0),
            anchor: Anchor::Start,
            bold: false,
            vertical: false,
        }
    }
    pub(crate) fn color(self, color: RGBColor) -> Font {
        Font { color, ..self }
    }
    pub(crate) fn anchor(self, anchor: Anchor) -> Font {
        Font { anchor, ..self }
    }
    pub(crate) fn bold(self) -> Font {
        Font { bold: true, ..self }
    }
    pub(crate) fn vertical(self) -> Font {
        Font {
            vertical: true,
            ..self
        }
    }
}

fn finite(vs: &[f64]) -> bool {
    vs.iter().all(|v| v.is_finite())
}

impl Scene {
    pub(crate) fn new(width: f64, height: f64) -> Scene {
        let mut s = Scene {
            width,
            height,
            shapes: Vec::new(),
        };
        s.rect((0.0, 0.0), (width, height), Some(WHITE.to_rgba()), None);
        s
    }

    /// A polyline (dropped when a coordinate is not finite or it has < 2 points).
    pub(crate) fn path(
        &mut self,
        tag: &'static str,
        pts: Vec<(f64, f64)>,
        color: RGBColor,
        width: f64,
        dashed: bool,
    ) {
        if pts.len() >= 2 && pts.iter().all(|p| finite(&[p.0, p.1])) {
            self.shapes.push(Shape::Path {
                tag,
                pts,
                color,
                width,
                dashed,
            });
        }
    }

    /// A straight segment.
    pub(crate) fn line(
        &mut self,
        tag: &'static str,
        a: (f64, f64),
        b: (f64, f64),
        color: RGBColor,
        width: f64,
    ) {
        self.path(tag, vec![a, b], color, width, false);
    }

    pub(crate) fn rect(
        &mut self,
        (x0, y0): (f64, f64),
        (x1, y1): (f64, f64),
        fill: Option<RGBAColor>,
        stroke: Option<RGBColor>,
    ) {
        if finite(&[x0, y0, x1, y1]) {
            self.shapes.push(Shape::Rect {
                x0,
                y0,
                x1,
                y1,
                fill,
                stroke,
            });
        }
    }

    pub(crate) fn marker(&mut self, series: usize, x: f64, y: f64, r: f64) {
        if finite(&[x, y, r]) {
            self.shapes.push(Shape::Marker { series, x, y, r });
        }
    }

    /// Text at (x, y) (baseline); control characters become spaces. Empty text is dropped.
    pub(crate) fn text(&mut self, x: f64, y: f64, text: &str, f: Font) {
        if text.is_empty() || !finite(&[x, y, f.size]) {
            return;
        }
        let text = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.shapes.push(Shape::Text {
            x,
            y,
            text,
            size: f.size,
            color: f.color,
            anchor: f.anchor,
            bold: f.bold,
            vertical: f.vertical,
        });
    }

    /// The scene as an SVG document.
    pub(crate) fn svg(&self) -> String {
        let mut out = String::new();
        {
            let backend =
                SVGBackend::with_string(&mut out, (px_size(self.width), px_size(self.height)));
            let area = backend.into_drawing_area();
            // Drawing into a string cannot fail; a failure would only lose a shape.
            let _ = self.draw(&area, 1.0);
            let _ = area.present();
        }
        out
    }

    /// The scene as a PNG image at twice the size.
    pub(crate) fn png(&self) -> Result<Vec<u8>, PlotError> {
        register_font();
        let (w, h) = (
            px_size(self.width * PNG_SCALE),
            px_size(self.height * PNG_SCALE),
        );
        let mut buf = vec![255u8; w as usize * h as usize * 3];
        {
            let backend = BitMapBackend::with_buffer(&mut buf, (w, h));
            let area = backend.into_drawing_area();
            self.draw(&area, PNG_SCALE)?;
            area.present().map_err(|e| PlotError::Draw(e.to_string()))?;
        }
        let mut out = Vec::new();
        let mut enc = ::png::Encoder::new(&mut out, w, h);
        enc.set_color(::png::ColorType::Rgb);
        enc.set_depth(::png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| PlotError::Encode(e.to_string()))?;
        writer
            .write_image_data(&buf)
            .map_err(|e| PlotError::Encode(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| PlotError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// Every shape onto a plotters drawing area, coordinates multiplied by `k`. The
    /// first error is returned after drawing the rest.
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        k: f64,
    ) -> Result<(), PlotError> {
        let lim = 4.0 * k * self.width.max(self.height);
        let c = |v: f64| -> i32 { (v * k).clamp(-lim, lim).round() as i32 };
        let p = |(x, y): (f64, f64)| (c(x), c(y));
        let w = |width: f64| -> u32 { (width * k).round().clamp(1.0, 20.0) as u32 };
        let mut first: Option<String> = None;
        let mut note = |r: Result<(), String>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        for shape in &self.shapes {
            match shape {
                Shape::Path {
                    pts,
                    color,
                    width,
                    dashed,
                    ..
                } => {
                    let style = color.stroke_width(w(*width));
                    let pts: Vec<(i32, i32)> = pts.iter().map(|&q| p(q)).collect();
                    let r = if *dashed {
                        area.draw(&DashedPathElement::new(pts, c(6.0), c(4.0), style))
                    } else {
                        area.draw(&PathElement::new(pts, style))
                    };
                    note(r.map_err(|e| e.to_string()));
                }
                Shape::Rect {
                    x0,
                    y0,
                    x1,
                    y1,
                    fill,
                    stroke,
                } => {
                    let corners = [p((*x0, *y0)), p((*x1, *y1))];
                    if let Some(fill) = fill {
                        note(
                            area.draw(&Rectangle::new(corners, fill.filled()))
                                .map_err(|e| e.to_string()),
                        );
                    }
                    if let Some(stroke) = stroke {
                        note(
                            area.draw(&Rectangle::new(corners, stroke.stroke_width(w(1.0))))
                                .map_err(|e| e.to_string()),
                        );
                    }
                }
                Shape::Marker { series, x, y, r } => {
                    let col = color(*series);
                    let at = |dx: f64, dy: f64| p((x + dx * r, y + dy * r));
                    let poly = |v: &[(f64, f64)]| -> Vec<(i32, i32)> {
                        v.iter().map(|&(dx, dy)| at(dx, dy)).collect()
                    };
                    let res = match series % MARKERS {
                        0 => area.draw(&Circle::new(
                            p((*x, *y)),
                            (r * k).round().clamp(1.0, 100.0) as u32,
                            col.filled(),
                        )),
                        1 => area.draw(&Rectangle::new(
                            [at(-0.85, -0.85), at(0.85, 0.85)],
                            col.filled(),
                        )),
                        2 => area.draw(&Polygon::new(
                            poly(&[(0.0, -1.2), (1.1, 0.8), (-1.1, 0.8)]),
                            col.filled(),
                        )),
                        3 => area.draw(&Polygon::new(
                            poly(&[(0.0, -1.25), (1.0, 0.0), (0.0, 1.25), (-1.0, 0.0)]),
                            col.filled(),
                        )),
                        4 => area.draw(&Polygon::new(
                            poly(&[(0.0, 1.2), (1.1, -0.8), (-1.1, -0.8)]),
                            col.filled(),
                        )),
                        _ => area
                            .draw(&PathElement::new(
                                poly(&[(-1.0, -1.0), (1.0, 1.0)]),
                                col.stroke_width(w(2.0)),
                            ))
                            .and_then(|()| {
                                area.draw(&PathElement::new(
                                    poly(&[(-1.0, 1.0), (1.0, -1.0)]),
                                    col.stroke_width(w(2.0)),
                                ))
                            }),
                    };
                    note(res.map_err(|e| e.to_string()));
                }
                Shape::Text {
                    x,
                    y,
                    text,
                    size,
                    color,
                    anchor,
                    bold,
                    vertical,
                } => {
                    let h = match anchor {
                        Anchor::Start => HPos::Left,
                        Anchor::Middle => HPos::Center,
                        Anchor::End => HPos::Right,
                    };
                    let style = if *bold {
                        FontStyle::Bold
                    } else {
                        FontStyle::Normal
                    };
                    let mut font =
                        TextStyle::from((FAMILY, size * k * FONT_FACTOR).into_font().style(style))
                            .color(color)
                            .pos(Pos::new(h, VPos::Center));
                    // Plotters anchors at the text's middle; our y is its baseline.
                    let mid = if *vertical {
                        font = font.transform(FontTransform::Rotate270);
                        (x - 0.35 * size, *y)
                    } else {
                        (*x, y - 0.35 * size)
                    };
                    note(
                        area.draw(&Text::new(text.clone(), p(mid), font))
                            .map_err(|e| e.to_string()),
                    );
                }
            }
        }
        match first {
            Some(e) => Err(PlotError::Draw(e)),
            None => Ok(()),
        }
    }
}

fn px_size(v: f64) -> u32 {
    v.round().clamp(1.0, 16384.0) as u32
}

/// Registers DejaVu Sans as plotters' `sans-serif` (once); bold falls back to it.
fn register_font() {
    static DONE: OnceLock<bool> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
}

// ---------------------------------------------------------------------------------------
// Geometry

/// A plot area in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Frame {
    pub(crate) left: f64,
    pub(crate) right: f64,
    pub(crate) top: f64,
    pub(crate) bottom: f64,
}

impl Frame {
    pub(crate) fn width(&self) -> f64 {
        self.right - self.left
    }
    pub(crate) fn mid_x(&self) -> f64 {
        (self.left + self.right) / 2.0
    }
    pub(crate) fn mid_y(&self) -> f64 {
        (self.top + self.bottom) / 2.0
    }
}

/// A point (x, y) in pixels.
pub(crate) type Pt = (f64, f64);
/// A segment between two points in pixels.
pub(crate) type Seg = (Pt, Pt);

/// A linear map from [lo, hi] (data, or log10 of data) to [px_lo, px_hi] (pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Lin {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) px_lo: f64,
    pub(crate) px_hi: f64,
}

impl Lin {
    pub(crate) fn px(&self, v: f64) -> f64 {
        self.px_lo + (v - self.lo) / (self.hi - self.lo) * (self.px_hi - self.px_lo)
    }

    pub(crate) fn contains(&self, v: f64) -> bool {
        let eps = 1e-9 * (self.hi - self.lo);
        v >= self.lo - eps && v <= self.hi + eps
    }
}

/// A log10 range [lo, hi] covering these log10 values (non-finite ones ignored): padded
/// by 3% (at least 0.05 decades), widened to half decades, and to whole decades when
/// that is needed for two labelled decade ticks. `None` without a finite value.
pub(crate) fn log_range(logs: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (min, max) = extent(logs.into_iter().filter(|v| v.is_finite()))?;
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
pub(crate) fn decades(lo: f64, hi: f64) -> Vec<i32> {
    let k = ((hi - lo) / 8.0).ceil().max(1.0) as i32;
    (lo.ceil() as i32..=hi.floor() as i32)
        .filter(|d| d.rem_euclid(k) == 0)
        .collect()
}

/// log10 of m·10^d for m = 2..9 strictly inside a log10 range spanning ≤ 4 decades.
pub(crate) fn minor_decades(lo: f64, hi: f64) -> Vec<f64> {
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

/// Ticks at multiples of a 1, 2 or 5 × 10^k step inside [lo, hi]: the smallest such
/// step that cuts the range into at most `max_intervals`, with the step's exponent k
/// (for labelling). Empty for a degenerate range.
pub(crate) fn nice_ticks(lo: f64, hi: f64, max_intervals: f64) -> (Vec<f64>, i32) {
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
pub(crate) fn padded(min: f64, max: f64) -> Option<(f64, f64)> {
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
pub(crate) fn extent(vs: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    vs.into_iter().fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((a, b)) => Some((a.min(v), b.max(v))),
    })
}

/// The part of segment a–b inside the frame (Liang–Barsky); `None` when it misses it.
pub(crate) fn clip(a: Pt, b: Pt, f: &Frame) -> Option<Seg> {
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
    finite(&[c.0, c.1, d.0, d.1]).then_some((c, d))
}

// ---------------------------------------------------------------------------------------
// Formatting

/// Trailing zeros (and a bare trailing point) of a decimal string removed.
pub(crate) fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// A value for a legend: three significant digits, plain or "1.23e-5"; "n/a" when not finite.
pub(crate) fn fmt_sig(x: f64) -> String {
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

/// A step size for a note: two significant digits ("0.0078", "3.0e-6"); "?" when not finite.
pub(crate) fn fmt_step(x: f64) -> String {
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
        trim_zeros(&format!("{x:.decimals$}"))
    } else {
        format!("{x:.1e}")
    }
}

/// A linear tick label: `v` is a multiple of the tick step 10^`exp` × (1, 2 or 5).
pub(crate) fn fmt_tick(v: f64, exp: i32) -> String {
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

/// A decade label: "1000" or "0.01" when `plain`, else "10⁻³" with Unicode superscripts.
pub(crate) fn decade_label(d: i32, plain: bool) -> String {
    if plain {
        return if d >= 0 {
            format!("1{}", "0".repeat(d as usize))
        } else {
            format!("0.{}1", "0".repeat((-d - 1) as usize))
        };
    }
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

// ---------------------------------------------------------------------------------------
// Shared drawing

/// Ticks of one axis: labelled (pixel, label) and minor (pixel) positions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ticks {
    pub(crate) major: Vec<(f64, String)>,
    pub(crate) minor: Vec<f64>,
}

/// Log ticks of a log10 range mapped by `map`: labelled decades (plain numbers when
/// `plain_ok` and all decades lie in 10⁻³..10⁴, else superscripts) and minor ticks.
pub(crate) fn log_ticks(map: &Lin, plain_ok: bool) -> Ticks {
    let ds = decades(map.lo, map.hi);
    let plain = plain_ok && ds.iter().all(|d| (-3..=4).contains(d));
    Ticks {
        major: ds
            .iter()
            .map(|&d| (map.px(f64::from(d)), decade_label(d, plain)))
            .collect(),
        minor: minor_decades(map.lo, map.hi)
            .into_iter()
            .map(|u| map.px(u))
            .collect(),
    }
}

/// Linear "nice" ticks of a map's range.
pub(crate) fn lin_ticks(map: &Lin) -> Ticks {
    let (ticks, exp) = nice_ticks(map.lo, map.hi, 7.0);
    Ticks {
        major: ticks
            .iter()
            .map(|&v| (map.px(v), fmt_tick(v, exp)))
            .collect(),
        minor: Vec::new(),
    }
}

/// The frame, grid lines (minor, then major), outward ticks and tick labels of a plot area.
pub(crate) fn draw_axes(s: &mut Scene, f: &Frame, x: &Ticks, y: &Ticks) {
    for &px in &x.minor {
        s.line("grid", (px, f.top), (px, f.bottom), GRID_MINOR, 1.0);
    }
    for &py in &y.minor {
        s.line("grid", (f.left, py), (f.right, py), GRID_MINOR, 1.0);
    }
    for (px, _) in &x.major {
        s.line("grid", (*px, f.top), (*px, f.bottom), GRID, 1.0);
    }
    for (py, _) in &y.major {
        s.line("grid", (f.left, *py), (f.right, *py), GRID, 1.0);
    }
    s.rect((f.left, f.top), (f.right, f.bottom), None, Some(INK));
    let majors = x.major.iter().map(|(px, _)| (*px, 6.0));
    for (px, len) in majors.chain(x.minor.iter().map(|px| (*px, 3.0))) {
        s.line("tick", (px, f.bottom), (px, f.bottom + len), INK, 1.0);
    }
    let majors = y.major.iter().map(|(py, _)| (*py, 6.0));
    for (py, len) in majors.chain(y.minor.iter().map(|py| (*py, 3.0))) {
        s.line("tick", (f.left - len, py), (f.left, py), INK, 1.0);
    }
    let font = Font::new(11.0).color(INK);
    for (px, label) in &x.major {
        s.text(*px, f.bottom + 19.0, label, font.anchor(Anchor::Middle));
    }
    for (py, label) in &y.major {
        s.text(f.left - 8.0, py + 4.0, label, font.anchor(Anchor::End));
    }
}

/// Panel title above, x label below, y label rotated at column `y_label_x`.
pub(crate) fn draw_labels(
    s: &mut Scene,
    f: &Frame,
    title: &str,
    x_label: &str,
    y_label: &str,
    y_label_x: f64,
) {
    let big = Font::new(13.0).anchor(Anchor::Middle);
    s.text(f.mid_x(), f.top - 12.0, &truncate(title, 60), big.bold());
    s.text(f.mid_x(), f.bottom + 42.0, &truncate(x_label, 60), big);
    s.text(y_label_x, f.mid_y(), &truncate(y_label, 45), big.vertical());
}

/// The frame and a grey "no data" in an empty plot area.
pub(crate) fn draw_no_data(s: &mut Scene, f: &Frame) {
    s.rect((f.left, f.top), (f.right, f.bottom), None, Some(INK));
    s.text(
        f.mid_x(),
        f.mid_y(),
        "no data",
        Font::new(16.0).color(LIGHT).anchor(Anchor::Middle),
    );
}

/// A legend swatch between x0 and x1 at row y.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Swatch {
    /// A solid line in series i's colour.
    Line(usize),
    /// Series i's marker, with a solid line through it when it has a fit.
    Marker(usize, bool),
    /// A dashed grey line.
    Dashed,
}

pub(crate) fn draw_swatch(s: &mut Scene, swatch: Swatch, x0: f64, x1: f64, y: f64, marker_r: f64) {
    match swatch {
        Swatch::Line(i) => s.line("swatch", (x0, y), (x1, y), color(i), 2.0),
        Swatch::Marker(i, with_line) => {
            if with_line {
                s.line("swatch", (x0, y), (x1, y), color(i), 1.5);
            }
            s.marker(i, (x0 + x1) / 2.0, y, marker_r);
        }
        Swatch::Dashed => s.path("swatch", vec![(x0, y), (x1, y)], LIGHT, 1.5, true),
    }
}

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
                if !["amp", "lt", "gt", "quot", "apos", "#39"].contains(&name) {
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
        if let Some(open) = stack.pop() {
            return Err(format!("<{open}> never closed"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    /// The texts of a document's `<text>` elements, unescaped, in order.
    pub(crate) fn texts(doc: &str) -> Vec<String> {
        doc.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..t.find("</text>")?];
                Some(
                    body.trim()
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&quot;", "\"")
                        .replace("&apos;", "'")
                        .replace("&amp;", "&"),
                )
            })
            .collect()
    }

    /// PNG dimensions from the IHDR chunk, after checking the signature.
    pub(crate) fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
        if bytes.len() < 24 || bytes[..8] != [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A] {
            return None;
        }
        if &bytes[12..16] != b"IHDR" {
            return None;
        }
        let be =
            |k: usize| u32::from_be_bytes([bytes[k], bytes[k + 1], bytes[k + 2], bytes[k + 3]]);
        Some((be(16), be(20)))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{png_size, texts, well_formed};
    use super::*;

    #[test]
    fn scenes_render_to_well_formed_svg_and_decodable_png() {
        let mut s = Scene::new(200.0, 100.0);
        let f = Frame {
            left: 40.0,
            right: 190.0,
            top: 10.0,
            bottom: 70.0,
        };
        let x = Lin {
            lo: -2.0,
            hi: 0.0,
            px_lo: f.left,
            px_hi: f.right,
        };
        draw_axes(&mut s, &f, &log_ticks(&x, false), &Ticks::default());
        for i in 0..MARKERS + 1 {
            s.marker(i, 50.0 + 10.0 * i as f64, 40.0, 4.0);
        }
        s.path("d", vec![(40.0, 20.0), (190.0, 60.0)], LIGHT, 1.5, true);
        s.text(5.0, 50.0, "a<b & \"c\"\u{7}", Font::new(12.0).vertical());
        let doc = s.svg();
        well_formed(&doc).unwrap();
        assert!(
            doc.starts_with("<svg") && doc.ends_with("</svg>\n"),
            "{doc}"
        );
        let t = texts(&doc);
        assert!(t.contains(&"10⁻¹".to_string()), "{t:?}");
        assert!(t.contains(&"a<b & \"c\"".to_string()), "{t:?}");
        assert!(doc.contains("rotate(270"), "vertical text is rotated");
        let png = s.png().unwrap();
        assert_eq!(png_size(&png), Some((400, 200)));
        let decoded = ::png::Decoder::new(std::io::Cursor::new(&png)).read_info();
        assert!(decoded.is_ok());
    }

    #[test]
    fn png_text_is_rasterized_with_the_bundled_font() {
        // The same scene with and without a text differs: the font is registered.
        let blank = Scene::new(120.0, 40.0);
        let mut with_text = blank.clone();
        with_text.text(10.0, 25.0, "slope 2.00 η", Font::new(14.0));
        assert_ne!(blank.png().unwrap(), with_text.png().unwrap());
    }

    #[test]
    fn non_finite_shapes_are_dropped_and_huge_ones_clamped() {
        let mut s = Scene::new(100.0, 100.0);
        let n = s.shapes.len();
        s.line("x", (f64::NAN, 0.0), (1.0, 1.0), INK, 1.0);
        s.marker(0, f64::INFINITY, 0.0, 3.0);
        s.rect((0.0, 0.0), (f64::NEG_INFINITY, 1.0), None, Some(INK));
        s.text(f64::NAN, 0.0, "t", Font::new(10.0));
        assert_eq!(s.shapes.len(), n);
        s.line("x", (-1e300, 0.0), (1e300, 1e300), INK, 1e9);
        s.marker(1, 1e12, -1e12, 1e12);
        well_formed(&s.svg()).unwrap();
        assert!(png_size(&s.png().unwrap()).is_some());
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(Format::of_path(Path::new("a/b.PNG")), Format::Png);
        assert_eq!(Format::of_path(Path::new("b.png")), Format::Png);
        assert_eq!(Format::of_path(Path::new("b.svg")), Format::Svg);
        assert_eq!(Format::of_path(Path::new("png")), Format::Svg);
    }

    #[test]
    fn ranges_ticks_and_numbers() {
        let (lo, hi) = log_range([3f64.log10(), 3000f64.log10(), f64::NAN]).unwrap();
        assert!(lo <= 3f64.log10() && hi >= 3000f64.log10());
        assert!(log_range([f64::NAN]).is_none());
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
        assert!(nice_ticks(1.0, 1.0, 7.0).0.is_empty());
        assert!(nice_ticks(0.0, f64::INFINITY, 7.0).0.is_empty());
        assert_eq!(fmt_tick(2e7, 7), "2e7");
        assert_eq!(fmt_sig(0.123456), "0.123");
        assert_eq!(fmt_sig(-1234.4), "-1234");
        assert_eq!(fmt_sig(1.5e-7), "1.5e-7");
        assert_eq!(fmt_sig(f64::NAN), "n/a");
        assert_eq!(fmt_step(0.0078125), "0.0078");
        assert_eq!(fmt_step(3e-6), "3.0e-6");
        assert_eq!(decade_label(-3, false), "10⁻³");
        assert_eq!(decade_label(-3, true), "0.001");
        assert_eq!(decade_label(3, true), "1000");
        assert!(minor_decades(-8.0, 0.0).is_empty());
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn clipping() {
        let f = Frame {
            left: 0.0,
            right: 10.0,
            top: 0.0,
            bottom: 10.0,
        };
        assert_eq!(
            clip((-5.0, 5.0), (15.0, 5.0), &f),
            Some(((0.0, 5.0), (10.0, 5.0)))
        );
        assert_eq!(clip((-5.0, -5.0), (-1.0, 20.0), &f), None);
        assert_eq!(clip((f64::NAN, 0.0), (1.0, 1.0), &f), None);
    }
}
