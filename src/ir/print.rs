//! The canonical form: an [`Optimizer`] printed as source text that parses back to it.
//!
//! Scalings are printed as `let` lines and already substituted in the step; reads of a
//! state's start-of-step value after its update are written `old(v)`; parentheses are
//! the fewest that keep the tree (operators of equal precedence on the right get them,
//! so `a - (b - c)` and `a*(b*c)` survive the round trip).

use super::*;
use crate::syntax::CmpOp;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use std::collections::HashSet;
use std::fmt::Write;

/// Prints the optimizer in canonical form.
pub fn canonical(o: &Optimizer) -> String {
    let mut out = String::new();
    let p = Printer::new(o);
    let _ = writeln!(out, "optimizer {}", o.name);
    let _ = writeln!(out, "  param {}", o.param.name);
    for group in o.states.chunk_by(|a, b| a.shape == b.shape) {
        let names: Vec<&str> = group.iter().map(|s| s.name.as_str()).collect();
        let shape = match group[0].shape {
            Shape::Scalar => ": scalar",
            _ => "",
        };
        let _ = writeln!(out, "  state {}{shape}", names.join(", "));
    }
    for (scale, word) in [(Timescale::Fast, "fast"), (Timescale::Slow, "slow")] {
        let names: Vec<&str> = o
            .states
            .iter()
            .filter(|s| s.timescale.is_some_and(|(t, _)| t == scale))
            .map(|s| s.name.as_str())
            .collect();
        if !names.is_empty() {
            let _ = writeln!(out, "  {word} {}", names.join(", "));
        }
    }
    let _ = writeln!(out, "  small {}", o.small.name);
    for group in o.hypers.chunk_by(|a, b| a.constraint == b.constraint) {
        let names: Vec<&str> = group.iter().map(|h| h.name.as_str()).collect();
        let c = match &group[0].constraint {
            None => String::new(),
            Some(c) => format!(" {}", constraint(c)),
        };
        let _ = writeln!(out, "  hyper {}{c}", names.join(", "));
    }
    for s in &o.scalings {
        let _ = writeln!(out, "  let {} = {}", s.name, p.expr(&s.expr));
    }
    let _ = writeln!(out, "  time {}", p.expr(&o.time));
    for group in o.noises.chunk_by(|a, b| a.kind == b.kind && a.law == b.law) {
        let names: Vec<&str> = group.iter().map(|n| n.name.as_str()).collect();
        let kind = match group[0].kind {
            NoiseKind::Gaussian => "gaussian",
            NoiseKind::General => "general",
        };
        let law = match &group[0].law {
            Law::Problem => String::new(),
            Law::Isotropic(s) => format!("(({})*I)", p.expr(s)),
        };
        let _ = writeln!(out, "  noise {} ~ {kind}{law}", names.join(", "));
    }
    if let Some(c) = &o.counter {
        let _ = writeln!(out, "  counter {}", c.name);
    }
    out.push('\n');
    let mut p = p;
    for step in &o.steps {
        match &step.target {
            Target::Local(name) => {
                let _ = writeln!(
                    out,
                    "  let {name} = {}  # {}",
                    p.expr(&step.expr),
                    step.expr.shape.name()
                );
            }
            Target::Var(name) => {
                let _ = writeln!(out, "  {name} = {}", p.expr(&step.expr));
                p.updated.insert(name.clone());
            }
        }
    }
    out
}

fn constraint(c: &Constraint) -> String {
    match c {
        Constraint::Compare(op, bound) => format!("{} {}", cmp_symbol(*op), number(bound).0),
        Constraint::Interval {
            lo,
            lo_closed,
            hi,
            hi_closed,
        } => format!(
            "in {}{}, {}{}",
            if *lo_closed { "[" } else { "(" },
            number(lo).0,
            number(hi).0,
            if *hi_closed { "]" } else { ")" }
        ),
    }
}

fn cmp_symbol(op: CmpOp) -> &'static str {
    op.symbol()
}

/// Precedence levels, loosest first.
const SUM: u8 = 1;
const PRODUCT: u8 = 2;
const PREFIX: u8 = 3;
const POWER: u8 = 4;
const ATOM: u8 = 5;

/// Prints expressions of one optimizer; knows which variables the step has updated so
/// far, to write `old(v)` where a read sees the start-of-step value.
pub struct Printer<'a> {
    o: &'a Optimizer,
    updated: HashSet<String>,
}

impl<'a> Printer<'a> {
    pub fn new(o: &'a Optimizer) -> Printer<'a> {
        Printer {
            o,
            updated: HashSet::new(),
        }
    }

    /// The expression as source text.
    pub fn expr(&self, e: &Expr) -> String {
        self.prec(e).0
    }

    /// The text and the precedence of its outermost operator.
    fn prec(&self, e: &Expr) -> (String, u8) {
        match &e.kind {
            ExprKind::Num(n) => number(n),
            ExprKind::Small => (self.o.small.name.clone(), ATOM),
            ExprKind::Hyper(h) | ExprKind::Local(h) => (h.clone(), ATOM),
            ExprKind::Counter => (
                self.o
                    .counter
                    .as_ref()
                    .map_or_else(|| "k".to_string(), |c| c.name.clone()),
                ATOM,
            ),
            ExprKind::Var { name, version } => {
                if *version == Version::Old && self.updated.contains(name) {
                    (format!("old({name})"), ATOM)
                } else {
                    (name.clone(), ATOM)
                }
            }
            ExprKind::Noise { sample, at } => match at {
                None => (sample.clone(), ATOM),
                Some(at) => (format!("{sample}({})", self.expr(at)), ATOM),
            },
            ExprKind::Objective(at) => (format!("f({})", self.expr(at)), ATOM),
            ExprKind::Grad(at) => (format!("grad f({})", self.expr(at)), ATOM),
            ExprKind::Hess(at) => (format!("hess f({})", self.expr(at)), ATOM),
            ExprKind::Call(f, args) => {
                let args: Vec<String> = args.iter().map(|a| self.expr(a)).collect();
                (format!("{}({})", f.name(), args.join(", ")), ATOM)
            }
            ExprKind::Neg(a) => {
                let (s, p) = self.prec(a);
                (format!("-{}", paren_if(s, p <= PREFIX)), PREFIX)
            }
            ExprKind::Bin(op, a, b) => {
                let (prec, sym) = match op {
                    BinOp::Add => (SUM, " + "),
                    BinOp::Sub => (SUM, " - "),
                    BinOp::Mul => (PRODUCT, "*"),
                    BinOp::Div => (PRODUCT, "/"),
                    BinOp::MatMul => (PRODUCT, " @ "),
                    BinOp::Pow => (POWER, "^"),
                };
                let (ls, lp) = self.prec(a);
                let (rs, rp) = self.prec(b);
                let (left_paren, right_paren) = if *op == BinOp::Pow {
                    (lp <= prec, rp < prec)
                } else {
                    (lp < prec, rp <= prec)
                };
                (
                    format!(
                        "{}{sym}{}",
                        paren_if(ls, left_paren),
                        paren_if(rs, right_paren)
                    ),
                    prec,
                )
            }
        }
    }
}

fn paren_if(s: String, yes: bool) -> String {
    if yes {
        format!("({s})")
    } else {
        s
    }
}

/// A rational as the language writes it: `3`, `0.9`, `1e-8`, `1/3`, with its precedence.
fn number(n: &BigRational) -> (String, u8) {
    let negative = n.is_negative();
    let a = n.abs();
    let (text, prec) = if a.is_integer() {
        (integer(&a.to_integer()), ATOM)
    } else {
        match decimal(&a) {
            Some(s) => (s, ATOM),
            None => (format!("{}/{}", a.numer(), a.denom()), PRODUCT),
        }
    };
    if negative {
        (format!("-{text}"), prec.min(PREFIX))
    } else {
        (text, prec)
    }
}

/// An integer, with long runs of trailing zeros as an exponent (`1e20`).
fn integer(n: &BigInt) -> String {
    let digits = n.to_string();
    let zeros = digits.len() - digits.trim_end_matches('0').len();
    if zeros >= 6 && zeros < digits.len() {
        format!("{}e{zeros}", &digits[..digits.len() - zeros])
    } else {
        digits
    }
}

/// A terminating decimal for a positive rational whose denominator is 2^a 5^b.
fn decimal(a: &BigRational) -> Option<String> {
    let mut d = a.denom().clone();
    let (two, five) = (BigInt::from(2u32), BigInt::from(5u32));
    let mut k = 0usize;
    let (mut twos, mut fives) = (0usize, 0usize);
    while d.is_even() {
        d /= &two;
        twos += 1;
    }
    while (&d % &five).is_zero() {
        d /= &five;
        fives += 1;
    }
    if !d.is_one() {
        return None;
    }
    k = k.max(twos).max(fives);
    let scaled = a.numer() * num_traits::pow(BigInt::from(10u32), k) / a.denom();
    let digits = scaled.to_string();
    if k > 6 {
        return Some(format!("{digits}e-{k}"));
    }
    let digits = format!("{digits:0>width$}", width = k + 1);
    let (int, frac) = digits.split_at(digits.len() - k);
    Some(format!("{int}.{frac}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_written() {
        let r = |n: i64, d: i64| BigRational::new(n.into(), d.into());
        assert_eq!(number(&r(9, 10)).0, "0.9");
        assert_eq!(number(&r(1, 100_000_000)).0, "1e-8");
        assert_eq!(number(&r(3, 2)).0, "1.5");
        assert_eq!(number(&r(-1, 3)).0, "-1/3");
        assert_eq!(number(&r(1, 40)).0, "0.025");
        assert_eq!(number(&r(7, 1)).0, "7");
        assert_eq!(number(&r(3_000_000_000, 1)).0, "3e9");
        assert_eq!(number(&r(100_000, 1)).0, "100000");
    }
}
