//! The data of finite-sum problems: `data a, y = logistic(n = 256, seed = 1)` generates a
//! logistic-regression data set, `data a, y = csv("points.csv")` reads one.
//!
//! A row binds the names in order: the first to a vector of `d` columns, each further
//! name to one column (so `a, y` is features and a label), unless a name gives its
//! number of columns (`data a[64], y = csv("digits.csv")`: a network over `d`
//! parameters reads 64 features). The generated set draws the
//! features `a_i ~ N(0, I_d)` and the labels `y_i = ±1` with `P(y_i = 1) =
//! sigmoid(a_i · x_true)`, `x_true = (1, −1, 1, …)`, from the named seed with smelt's
//! generator ([`crate::numeric::rng`]), so it is the same on every machine.

use super::expr;
use crate::error::diagnostic::{boxed as err, Boxed as _, Code, Fallible as R};
use crate::numeric::graph::{Graph, Id};
use crate::syntax::{DataArg, Expr, Ident};
use ndarray::{Array2, ArrayView1};
use std::collections::BTreeMap;

/// The rows of a finite-sum problem and its loss per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    /// The names a row binds, with their widths (a vector of `d`, or a scalar).
    pub columns: Vec<(String, usize)>,
    /// The total width of a row.
    pub width: usize,
    /// The samples, one a row (`rows × width`), the columns in the order of `columns`:
    /// read once, shared by every program that reads them (never copied).
    pub rows: std::sync::Arc<Array2<f64>>,
    /// The loss of one sample: a node over x (inputs `0..d`) and the row (`d..d+width`).
    pub loss: Id,
    /// Where the data came from, for reports.
    pub source: String,
}

impl Data {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.rows.nrows()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.rows.nrows() == 0
    }

    /// Sample `i` (panics when `i ≥ len()`, as slice indexing does).
    pub fn row(&self, i: usize) -> ArrayView1<'_, f64> {
        self.rows.row(i)
    }

    /// The columns of the name `name` (`None` if the data has no such name).
    pub fn column(&self, name: &str) -> Option<ndarray::ArrayView2<'_, f64>> {
        let mut at = 0;
        for (n, w) in &self.columns {
            if n == name {
                return Some(self.rows.slice(ndarray::s![.., at..at + w]));
            }
            at += w;
        }
        None
    }
}

/// The most rows a data set may have. The rows are data (one array, shared by every
/// program): the objective is a row mean over them, run as a loop, so the limit is one
/// of memory (8 bytes a number) and time (every SME substep runs over all rows).
pub const MAX_ROWS: usize = 1_000_000;

/// The largest CSV file read, in bytes (room for [`MAX_ROWS`] rows of about 40 numbers
/// written to full precision); a larger file is refused once this much has been read.
pub const MAX_CSV_BYTES: u64 = 1 << 30;

/// Reads a data file as UTF-8 text, stopping as soon as it is longer than
/// [`MAX_CSV_BYTES`] (`/dev/zero` or a stream never ends).
fn read_limited(full: &std::path::Path, span: crate::span::Span) -> R<String> {
    use std::io::Read as _;
    let cannot = |why: String| {
        err(
            Code::Misuse,
            span,
            format!("cannot read `{}`: {why}", full.display()),
        )
        .label("this file")
        .hint("the path is relative to the problem file")
    };
    let file = std::fs::File::open(full).map_err(|e| cannot(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(e.to_string()))?;
    if bytes.len() as u64 > MAX_CSV_BYTES {
        return Err(err(
            Code::TooLarge,
            span,
            format!(
                "`{}` is larger than {} MiB, the most smelt reads of a data file",
                full.display(),
                MAX_CSV_BYTES >> 20
            ),
        )
        .label("this file")
        .hint(format!(
            "a data set has at most {MAX_ROWS} rows; check that this is the right file"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        cannot(format!(
            "not UTF-8 text (invalid byte 0x{:02x} at byte {})",
            e.as_bytes()[e.utf8_error().valid_up_to()],
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The most columns a name of a row may have.
pub const MAX_WIDTH: usize = 100_000;

pub(super) fn read(
    names: &[(Ident, Option<Expr>)],
    source: &Ident,
    args: &[DataArg],
    d: usize,
    dir: &std::path::Path,
    g: &mut Graph,
    consts: &BTreeMap<String, f64>,
) -> R<Data> {
    let scope: expr::Scope = consts
        .iter()
        .map(|(k, &v)| (k.clone(), expr::PV::S(g.constant(v))))
        .collect();
    let mut columns: Vec<(String, usize)> = Vec::new();
    for (k, (n, w)) in names.iter().enumerate() {
        if let Some(prev) = names[..k].iter().find(|p| p.0.name == n.name) {
            return Err(err(
                Code::Redeclared,
                n.span,
                format!("the data name `{}` is given twice", n.name),
            )
            .label("name used again")
            .secondary(prev.0.span, "first given here"));
        }
        let width = match w {
            None => {
                if k == 0 {
                    d
                } else {
                    1
                }
            }
            Some(e) => {
                let v = expr::constant(g, e, &scope, "a number of columns")?;
                if v != v.trunc() || !(1.0..=MAX_WIDTH as f64).contains(&v) {
                    return Err(err(
                        Code::Misuse,
                        e.span,
                        format!(
                            "a number of columns must be a whole number from 1 to {MAX_WIDTH}, this is {v}"
                        ),
                    )
                    .label("not a number of columns")
                    .hint("write `data a[64], y = csv(\"file.csv\")`: `a` is the first 64 columns of a row, `y` the next one"));
                }
                v as usize
            }
        };
        columns.push((n.name.clone(), width));
    }
    let width = columns.iter().map(|c| c.1).sum();
    let (rows, what) = match source.name.as_str() {
        "logistic" => {
            if names.len() != 2 {
                return Err(err(
                    Code::Misuse,
                    source.span,
                    format!(
                        "`logistic` makes features and labels: two names, {} given",
                        names.len()
                    ),
                )
                .label("two names before `=`")
                .hint("write `data a, y = logistic(n = 256, seed = 1)`"));
            }
            let mut n = 256.0;
            let mut seed = 1.0;
            for a in args {
                match a {
                    DataArg::Named(k, e) => {
                        let v = expr::constant(g, e, &scope, &format!("`{}`", k.name))?;
                        match k.name.as_str() {
                            "n" => n = v,
                            "seed" => seed = v,
                            other => {
                                return Err(err(
                                    Code::Misuse,
                                    k.span,
                                    format!("`logistic` takes `n` and `seed`, not `{other}`"),
                                )
                                .label("unknown argument"))
                            }
                        }
                    }
                    DataArg::Text(_, span) => {
                        return Err(err(
                            Code::Misuse,
                            *span,
                            "`logistic` takes `n = …` and `seed = …`, not a file name",
                        )
                        .label("unexpected"))
                    }
                }
            }
            if n != n.trunc() || !(2.0..=MAX_ROWS as f64).contains(&n) {
                return Err(err(
                    Code::Misuse,
                    source.span,
                    format!("`n` must be a whole number from 2 to {MAX_ROWS}, this is {n}"),
                )
                .label("too many or too few rows"));
            }
            if seed != seed.trunc() || seed < 0.0 {
                return Err(err(
                    Code::Misuse,
                    source.span,
                    "`seed` must be a whole number ≥ 0",
                )
                .label("not a seed"));
            }
            (
                logistic(n as usize, columns[0].1, seed as u64),
                format!("logistic(n = {n}, seed = {seed})"),
            )
        }
        "csv" => {
            let [DataArg::Text(path, span)] = args else {
                return Err(err(
                    Code::Misuse,
                    source.span,
                    "`csv` takes one quoted file name",
                )
                .label("here")
                .hint("write `data a, y = csv(\"points.csv\")`"));
            };
            let full = dir.join(path);
            let text = read_limited(&full, *span)?;
            (
                crate::numeric::exact::from_rows(&parse_csv(&text, &columns, *span, path)?),
                format!("csv(\"{path}\")"),
            )
        }
        other => {
            return Err(err(
                Code::Undefined,
                source.span,
                format!("unknown data source `{other}`"),
            )
            .label("not a data source")
            .hint("use `logistic(n = 256, seed = 1)` or `csv(\"file.csv\")`"))
        }
    };
    Ok(Data {
        columns,
        width,
        rows: std::sync::Arc::new(rows),
        loss: 0,
        source: what,
    })
}

/// Features `N(0, I_d)`, labels ±1 with `P(1) = sigmoid(a·x_true)`, `x_true = (1, −1, …)`.
pub fn logistic(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut rng = crate::numeric::rng::Streams::new(seed).stream(0);
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            let a: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
            let z: f64 = a
                .iter()
                .enumerate()
                .map(|(j, v)| if j % 2 == 0 { *v } else { -*v })
                .sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let y = if rng.uniform() < p { 1.0 } else { -1.0 };
            let mut row = a;
            row.push(y);
            row
        })
        .collect();
    crate::numeric::exact::from_rows(&rows)
}

/// Rows of numbers separated by commas (or blanks); a first line that is not numbers is
/// a header. Every row must have `width` numbers.
fn parse_csv(
    text: &str,
    columns: &[(String, usize)],
    span: crate::span::Span,
    path: &str,
) -> R<Vec<Vec<f64>>> {
    let width: usize = columns.iter().map(|c| c.1).sum();
    let layout = columns
        .iter()
        .map(|(n, w)| format!("`{n}` {w}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|f| !f.is_empty())
            .collect();
        let nums: Result<Vec<f64>, _> = fields.iter().map(|f| f.parse::<f64>()).collect();
        match nums {
            Err(_) if rows.is_empty() && k == 0 => continue, // a header
            Err(_) => {
                return Err(err(
                    Code::BadNumber,
                    span,
                    format!("`{path}` line {}: not a row of numbers: `{line}`", k + 1),
                )
                .label("in this file"))
            }
            Ok(v) if v.len() != width => {
                return Err(err(
                    Code::Shape,
                    span,
                    format!(
                        "`{path}` line {}: {} numbers, a row here has {width} ({})",
                        k + 1,
                        v.len(),
                        layout
                    ),
                )
                .label("in this file")
                .hint("the first name has d columns and each further name one, unless given: `data a[64], y = csv(\"…\")`"))
            }
            Ok(v) if v.iter().any(|x| !x.is_finite()) => {
                let c = v.iter().position(|x| !x.is_finite()).unwrap_or(0);
                return Err(err(
                    Code::BadNumber,
                    span,
                    format!(
                        "`{path}` line {}, column {}: `{}` is not a finite number",
                        k + 1,
                        c + 1,
                        fields[c]
                    ),
                )
                .label("in this file")
                .hint("data values must be finite numbers; NaN and infinities are not accepted (drop or fill the row)"));
            }
            Ok(v) => rows.push(v),
        }
        if rows.len() > MAX_ROWS {
            return Err(err(
                Code::TooLarge,
                span,
                format!("`{path}` has more than {MAX_ROWS} rows"),
            )
            .label("too large"));
        }
    }
    if rows.len() < 2 {
        return Err(err(
            Code::Shape,
            span,
            format!("`{path}` has fewer than two rows"),
        )
        .label("too little data"));
    }
    Ok(rows)
}
