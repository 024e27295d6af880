//! The pest parser, the Pratt parser for expressions, and the conversion of pest's
//! errors into diagnostics. Nothing of pest leaves this file.

use super::*;
use crate::error::diagnostic::{Code, Diagnostic};
use num_bigint::BigInt;
use num_traits::One;
use pest::iterators::Pair;
use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/smelt.pest"]
struct Grammar;

/// The largest file smelt reads (1 MiB): optimizer rules are a few lines long.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// The deepest nesting of parentheses.
pub const MAX_PAREN_DEPTH: usize = 64;
/// The deepest expression tree (operators nested in operators).
pub const MAX_EXPR_DEPTH: usize = 256;
/// The longest number literal, in characters.
const MAX_NUMBER_CHARS: usize = 100;
/// The largest decimal exponent in a number literal.
const MAX_EXPONENT: u32 = 90;

/// Parses one optimizer file.
pub fn parse(source: &str) -> ParseResult<File> {
    precheck(source)?;
    let mut pairs = Grammar::parse(Rule::file, source).map_err(|e| syntax_error(source, e))?;
    let file = pairs.next().expect("the file rule matched");
    build_file(file)
}

/// Parses one problem file.
pub fn parse_problem(source: &str) -> ParseResult<ProblemFile> {
    precheck(source).map_err(|mut d| {
        if d.code == Code::EmptyFile {
            d.message = "empty file: no problem to read".into();
            d.hint = Some("start with `problem NAME`, then `dim`, `objective f(x) = ...`, `noise gaussian cov = ...`, `start x = ...` and `horizon T`".into());
        } else if d.code == Code::TooLarge && d.message.contains("optimizer files") {
            d.message = d.message.replace("optimizer files", "problem files");
        }
        d
    })?;
    let first = source
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if first.split_whitespace().next() == Some("optimizer") {
        let at = source.find("optimizer").unwrap_or(0);
        return Err(Box::new(
            Diagnostic::new(
                Code::Syntax,
                Span::new(at, at + "optimizer".len()),
                "this is an optimizer file, not a problem file",
            )
            .label("a problem file starts with `problem NAME`")
            .hint("give the optimizer as the first argument and the problem with `--problem`"),
        ));
    }
    let mut pairs =
        Grammar::parse(Rule::problem_file, source).map_err(|e| syntax_error(source, e))?;
    let file = pairs.next().expect("the problem_file rule matched");
    let mut inner = children(file);
    let header = inner.next().expect("grammar: header first");
    let header_span = span_of(&header);
    let name = ident(children(header).next().expect("grammar: header name"));
    let mut items = Vec::new();
    for p in inner {
        items.push(build_pitem(p)?);
    }
    Ok(ProblemFile {
        name,
        header: header_span,
        items,
    })
}

/// Parses one expression alone.
pub fn parse_expr(source: &str) -> ParseResult<Expr> {
    let mut pairs = Grammar::parse(Rule::expr_only, source).map_err(|e| syntax_error(source, e))?;
    let e = children(pairs.next().expect("the expr_only rule matched"))
        .next()
        .expect("grammar: the expression");
    build_expr(e)
}

fn build_pitem(pair: Pair<Rule>) -> ParseResult<PItem> {
    let span = span_of(&pair);
    let rule = pair.as_rule();
    let mut inner = children(pair);
    let mut next = || inner.next().expect("grammar guarantees the child");
    let kind = match rule {
        Rule::dim_decl => PItemKind::Dim(build_expr(next())?),
        Rule::horizon_decl => PItemKind::Horizon(build_expr(next())?),
        Rule::objective_decl => {
            let name = ident(next());
            let var = ident(next());
            let body = build_expr(next())?;
            PItemKind::Objective { name, var, body }
        }
        Rule::pnoise_decl => {
            let word = |p: Pair<Rule>| Ident {
                name: p.as_str().to_string(),
                span: span_of(&p),
            };
            let model = word(next());
            let param = word(next());
            let value = build_expr(next())?;
            PItemKind::Noise {
                model,
                param,
                value,
            }
        }
        Rule::start_decl => {
            let n = ident(next());
            let value = next();
            if value.as_rule() == Rule::start_random {
                let at = span_of(&value);
                let args = children(value)
                    .map(|a| {
                        let mut parts = children(a);
                        let k = ident(parts.next().expect("grammar: argument name"));
                        Ok((k, build_expr(parts.next().expect("grammar: value"))?))
                    })
                    .collect::<ParseResult<Vec<_>>>()?;
                PItemKind::StartRandom(n, args, at)
            } else {
                PItemKind::Start(n, build_expr(value)?)
            }
        }
        Rule::plet_decl => {
            let n = ident(next());
            PItemKind::Let(n, build_expr(next())?)
        }
        Rule::observe_decl => {
            let n = ident(next());
            PItemKind::Observe(n, build_expr(next())?)
        }
        Rule::set_decl => {
            let n = ident(next());
            PItemKind::Set(n, build_expr(next())?)
        }
        Rule::etas_decl => PItemKind::Etas(inner.map(build_expr).collect::<ParseResult<_>>()?),
        Rule::data_decl => {
            let mut names = Vec::new();
            let mut source = None;
            let mut args = Vec::new();
            for p in inner.by_ref() {
                if p.as_rule() != Rule::data_name {
                    source = Some(ident(p));
                    break;
                }
                let mut parts = children(p);
                let n = ident(parts.next().expect("grammar: data name"));
                let width = parts.next().map(build_expr).transpose()?;
                names.push((n, width));
            }
            let source = source.expect("grammar: the data source");
            for a in inner {
                let mut parts = children(a);
                let first = parts.next().expect("grammar: data argument");
                args.push(if first.as_rule() == Rule::string {
                    let text = first.as_str();
                    DataArg::Text(text[1..text.len() - 1].to_string(), span_of(&first))
                } else {
                    let n = ident(first);
                    DataArg::Named(n, build_expr(parts.next().expect("grammar: value"))?)
                });
            }
            PItemKind::Data {
                names,
                source,
                args,
            }
        }
        other => unreachable!("grammar: unexpected problem statement {other:?}"),
    };
    Ok(PItem { kind, span })
}

/// Cheap linear checks that run before anything recursive: size, emptiness, nesting.
fn precheck(source: &str) -> ParseResult<()> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(Box::new(
            Diagnostic::new(
                Code::TooLarge,
                Span::at(0),
                format!(
                    "file is too large ({}); smelt reads optimizer files of at most 1 MiB",
                    human_bytes(source.len())
                ),
            )
            .label("file starts here")
            .hint("an optimizer file holds one update rule, a few lines long; check that this is the right file"),
        ));
    }
    let mut depth = 0usize;
    let mut in_comment = false;
    let mut blank = true;
    for (i, c) in source.char_indices() {
        match c {
            '\n' => in_comment = false,
            _ if in_comment => {}
            '#' => in_comment = true,
            '(' | '[' => {
                blank = false;
                depth += 1;
                if depth > MAX_PAREN_DEPTH {
                    return Err(Box::new(
                        Diagnostic::new(
                            Code::TooLarge,
                            Span::new(i, i + 1),
                            format!("parentheses nested more than {MAX_PAREN_DEPTH} deep"),
                        )
                        .label("this parenthesis is too deep")
                        .hint("split the expression with `let` definitions"),
                    ));
                }
            }
            ')' | ']' => {
                blank = false;
                depth = depth.saturating_sub(1);
            }
            c if c.is_whitespace() || c == '\u{feff}' => {}
            // A NUL or another control character (a binary file, a bad copy) would split
            // a word and be reported as a misspelled one.
            c if c.is_control() && c != '\t' && c != '\r' => {
                return Err(Box::new(
                    Diagnostic::new(
                        Code::Syntax,
                        Span::new(i, i + c.len_utf8()),
                        format!("unexpected control character U+{:04X} in the text", c as u32),
                    )
                    .label("this character")
                    .hint("files are plain text: remove the character (is this a binary file, or a bad copy?)"),
                ));
            }
            _ => blank = false,
        }
    }
    if blank {
        return Err(Box::new(
            Diagnostic::new(Code::EmptyFile, Span::at(0), "empty file: no optimizer to read")
                .label("nothing here")
                .hint("start with `optimizer NAME`, then declare `param x` and write its update, e.g. `x = x - eta*(grad f(x) + xi)`"),
        ));
    }
    Ok(())
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn span_of(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

/// Punctuation, keyword and separator tokens carry no meaning after parsing.
fn is_noise_token(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::eq
            | Rule::comma
            | Rule::colon
            | Rule::tilde
            | Rule::lparen
            | Rule::rparen
            | Rule::sep
            | Rule::EOI
            | Rule::kw_optimizer
            | Rule::kw_param
            | Rule::kw_state
            | Rule::kw_small
            | Rule::kw_hyper
            | Rule::kw_let
            | Rule::kw_time
            | Rule::kw_noise
            | Rule::kw_counter
            | Rule::kw_grad
            | Rule::kw_hess
            | Rule::kw_in
            | Rule::lbracket
            | Rule::rbracket
            | Rule::kw_problem
            | Rule::kw_dim
            | Rule::kw_objective
            | Rule::kw_start
            | Rule::kw_horizon
            | Rule::kw_observe
            | Rule::kw_set
            | Rule::kw_etas
            | Rule::kw_data
            | Rule::kw_random
    )
}

/// The meaningful children of a pair.
fn children(pair: Pair<Rule>) -> impl Iterator<Item = Pair<Rule>> {
    pair.into_inner().filter(|p| !is_noise_token(p.as_rule()))
}

fn ident(pair: Pair<Rule>) -> Ident {
    debug_assert_eq!(pair.as_rule(), Rule::ident);
    Ident {
        name: pair.as_str().to_string(),
        span: span_of(&pair),
    }
}

fn ident_list(pair: Pair<Rule>) -> Vec<Ident> {
    children(pair).map(ident).collect()
}

fn build_file(pair: Pair<Rule>) -> ParseResult<File> {
    let mut inner = children(pair);
    let header = inner.next().expect("grammar: header first");
    let header_span = span_of(&header);
    let name = ident(children(header).next().expect("grammar: header name"));
    let mut items = Vec::new();
    for p in inner {
        items.push(build_item(p)?);
    }
    Ok(File {
        name,
        header: header_span,
        items,
    })
}

fn build_item(pair: Pair<Rule>) -> ParseResult<Item> {
    let span = span_of(&pair);
    let rule = pair.as_rule();
    let mut inner = children(pair);
    let mut next = || inner.next().expect("grammar guarantees the child");
    let kind = match rule {
        Rule::param_decl => ItemKind::Param(ident(next())),
        Rule::small_decl => ItemKind::Small(ident(next())),
        Rule::counter_decl => ItemKind::Counter(ident(next())),
        Rule::timescale_decl => {
            let fast = next().as_str() == "fast";
            ItemKind::Timescale {
                names: ident_list(next()),
                fast,
            }
        }
        Rule::state_decl => {
            let names = ident_list(next());
            let shape = inner.next().map(|p| {
                let s = if p.as_str() == "scalar" {
                    StateShape::Scalar
                } else {
                    StateShape::Vector
                };
                (s, span_of(&p))
            });
            ItemKind::State { names, shape }
        }
        Rule::hyper_decl => {
            let names = ident_list(next());
            let constraint = match inner.next() {
                Some(c) => Some(build_constraint(c)?),
                None => None,
            };
            ItemKind::Hyper { names, constraint }
        }
        Rule::time_decl => ItemKind::Time(build_expr(next())?),
        Rule::noise_decl => {
            let names = ident_list(next());
            let kind = if next().as_str() == "gaussian" {
                NoiseKind::Gaussian
            } else {
                NoiseKind::General
            };
            let law = match inner.next() {
                Some(law) => {
                    let e = law
                        .into_inner()
                        .find(|p| p.as_rule() == Rule::expr)
                        .expect("the grammar puts an expression in a noise law");
                    Some(build_expr(e)?)
                }
                None => None,
            };
            ItemKind::Noise { names, kind, law }
        }
        Rule::let_stmt => {
            let name = ident(next());
            ItemKind::Let(name, build_expr(next())?)
        }
        Rule::update => {
            let name = ident(next());
            ItemKind::Update(name, build_expr(next())?)
        }
        other => unreachable!("grammar: unexpected statement rule {other:?}"),
    };
    Ok(Item { kind, span })
}

fn build_constraint(pair: Pair<Rule>) -> ParseResult<Constraint> {
    let c = children(pair).next().expect("grammar: constraint body");
    match c.as_rule() {
        Rule::comparison => {
            let mut inner = children(c);
            let op = match inner.next().expect("grammar: cmp_op").as_str() {
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                "<" => CmpOp::Lt,
                _ => CmpOp::Le,
            };
            let bound = number(inner.next().expect("grammar: bound"))?;
            Ok(Constraint::Compare(op, bound))
        }
        Rule::interval => {
            let span = span_of(&c);
            let mut inner = children(c);
            let lo_closed = inner.next().expect("grammar: open_end").as_str() == "[";
            let lo = number(inner.next().expect("grammar: lo"))?;
            let hi = number(inner.next().expect("grammar: hi"))?;
            let hi_closed = inner.next().expect("grammar: close_end").as_str() == "]";
            if lo >= hi {
                return Err(Box::new(
                    Diagnostic::new(Code::Constraint, span, "empty interval")
                        .label("the lower end is not below the upper end")
                        .hint("write the smaller bound first, e.g. `in (0, 1)`"),
                ));
            }
            Ok(Constraint::Interval {
                lo,
                lo_closed,
                hi,
                hi_closed,
            })
        }
        other => unreachable!("grammar: unexpected constraint rule {other:?}"),
    }
}

/// Reads a decimal literal exactly: `0.9` is 9/10, `1e-8` is 1/10^8.
fn number(pair: Pair<Rule>) -> ParseResult<BigRational> {
    let span = span_of(&pair);
    let text = pair.as_str();
    parse_decimal(text).map_err(|msg| {
        Box::new(
            Diagnostic::new(Code::BadNumber, span, msg)
                .label("this number")
                .hint(format!(
                    "write numbers with at most {MAX_NUMBER_CHARS} characters and exponents within ±{MAX_EXPONENT}"
                )),
        )
    })
}

fn parse_decimal(text: &str) -> Result<BigRational, String> {
    if text.len() > MAX_NUMBER_CHARS {
        return Err(format!(
            "number literal too long ({} characters)",
            text.len()
        ));
    }
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => {
            let e: i64 = body[i + 1..]
                .parse()
                .map_err(|_| format!("cannot read the exponent of `{text}`"))?;
            (&body[..i], e)
        }
        None => (body, 0),
    };
    if exponent.unsigned_abs() > u64::from(MAX_EXPONENT) {
        return Err(format!("exponent of `{text}` is out of range"));
    }
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = if digits.is_empty() { "0" } else { &digits };
    let mut numer: BigInt = digits
        .parse()
        .map_err(|_| format!("cannot read the number `{text}`"))?;
    let scale = exponent - frac_part.len() as i64;
    let ten = BigInt::from(10u32);
    let mut denom = BigInt::one();
    if scale >= 0 {
        numer *= num_traits::pow(ten, scale as usize);
    } else {
        denom = num_traits::pow(ten, (-scale) as usize);
    }
    if negative {
        numer = -numer;
    }
    Ok(BigRational::new(numer, denom))
}

// ---------------------------------------------------------------------------
// Expressions: a Pratt parser over the flat sequence the grammar yields
// ---------------------------------------------------------------------------

/// One element of the flat sequence `prefix* primary (infix prefix* primary)*`.
enum Token<'i> {
    Prefix(UnOp, Span),
    Infix(BinOp),
    Operand(Pair<'i, Rule>),
}

/// Binding power of prefix `-` and `+`: tighter than `*`, looser than `^`,
/// so `-a*b` is `(-a)*b` and `-a^2` is `-(a^2)`.
const PREFIX_BP: u8 = 5;

/// Left and right binding powers of the infix operators.
fn infix_bp(op: BinOp) -> (u8, u8) {
    match op {
        BinOp::Add | BinOp::Sub => (1, 2),
        BinOp::Mul | BinOp::Div | BinOp::MatMul => (3, 4),
        // right-associative: a^b^c = a^(b^c)
        BinOp::Pow => (8, 7),
    }
}

fn build_expr(pair: Pair<Rule>) -> ParseResult<Expr> {
    build_expr_at(pair, 0)
}

fn build_expr_at(pair: Pair<Rule>, depth: usize) -> ParseResult<Expr> {
    debug_assert_eq!(pair.as_rule(), Rule::expr);
    let span = span_of(&pair);
    let tokens: Vec<Token> = pair
        .into_inner()
        .map(|p| match p.as_rule() {
            Rule::neg => Token::Prefix(UnOp::Neg, span_of(&p)),
            Rule::pos => Token::Prefix(UnOp::Plus, span_of(&p)),
            Rule::add => Token::Infix(BinOp::Add),
            Rule::sub => Token::Infix(BinOp::Sub),
            Rule::mul => Token::Infix(BinOp::Mul),
            Rule::div => Token::Infix(BinOp::Div),
            Rule::matmul => Token::Infix(BinOp::MatMul),
            Rule::pow => Token::Infix(BinOp::Pow),
            _ => Token::Operand(p),
        })
        .collect();
    let mut pratt = Pratt {
        tokens: tokens.into_iter().peekable(),
        whole: span,
    };
    let (e, _) = pratt.expr(0, depth)?;
    Ok(e)
}

struct Pratt<'i> {
    tokens: std::iter::Peekable<std::vec::IntoIter<Token<'i>>>,
    whole: Span,
}

fn too_deep(span: Span) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::new(
            Code::TooLarge,
            span,
            format!("expression nested more than {MAX_EXPR_DEPTH} levels deep"),
        )
        .label("this expression is too deep")
        .hint("split the expression with `let` definitions"),
    )
}

impl<'i> Pratt<'i> {
    /// Parses operators binding tighter than `min_bp`; returns the tree and its depth.
    fn expr(&mut self, min_bp: u8, depth: usize) -> ParseResult<(Expr, usize)> {
        if depth > MAX_EXPR_DEPTH {
            return Err(too_deep(self.whole));
        }
        let (mut lhs, mut lhs_depth) = match self.tokens.next() {
            Some(Token::Prefix(op, span)) => {
                let (operand, d) = self.expr(PREFIX_BP, depth + 1)?;
                let span = span.to(operand.span);
                (
                    Expr {
                        kind: ExprKind::Unary(op, Box::new(operand)),
                        span,
                    },
                    d + 1,
                )
            }
            Some(Token::Operand(p)) => primary(p, depth + 1)?,
            _ => unreachable!("grammar: an operand follows every operator"),
        };
        while let Some(Token::Infix(op)) = self.tokens.peek() {
            let op = *op;
            let (l_bp, r_bp) = infix_bp(op);
            if l_bp < min_bp {
                break;
            }
            self.tokens.next();
            let (rhs, rhs_depth) = self.expr(r_bp, depth + 1)?;
            let d = 1 + lhs_depth.max(rhs_depth);
            if d > MAX_EXPR_DEPTH {
                return Err(too_deep(self.whole));
            }
            let span = lhs.span.to(rhs.span);
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
            lhs_depth = d;
        }
        Ok((lhs, lhs_depth))
    }
}

/// Depth of a finished subtree, for the nesting limit.
fn depth_of(e: &Expr) -> usize {
    match &e.kind {
        ExprKind::Number(_) | ExprKind::Name(_) => 1,
        ExprKind::Unary(_, a) => 1 + depth_of(a),
        ExprKind::Binary(_, a, b) => 1 + depth_of(a).max(depth_of(b)),
        ExprKind::Call { args, .. } => 1 + args.iter().map(depth_of).max().unwrap_or(0),
        ExprKind::Grad { at, .. } | ExprKind::Hess { at, .. } => 1 + depth_of(at),
        ExprKind::Index { index, to, .. } => {
            1 + depth_of(index).max(to.as_deref().map_or(0, depth_of))
        }
        ExprKind::List(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
    }
}

fn primary(pair: Pair<Rule>, depth: usize) -> ParseResult<(Expr, usize)> {
    let span = span_of(&pair);
    let e = match pair.as_rule() {
        Rule::number => Expr {
            kind: ExprKind::Number(number(pair)?),
            span,
        },
        Rule::ident => Expr {
            kind: ExprKind::Name(pair.as_str().to_string()),
            span,
        },
        Rule::paren => {
            let inner = children(pair).next().expect("grammar: paren body");
            let mut e = build_expr_at(inner, depth + 1)?;
            // The parentheses belong to the operand's span.
            e.span = span;
            e
        }
        Rule::grad_call | Rule::hess_call => {
            let is_grad = pair.as_rule() == Rule::grad_call;
            let mut inner = children(pair);
            let objective = ident(inner.next().expect("grammar: objective"));
            let at = Box::new(build_expr_at(
                inner.next().expect("grammar: point"),
                depth + 1,
            )?);
            let kind = if is_grad {
                ExprKind::Grad { objective, at }
            } else {
                ExprKind::Hess { objective, at }
            };
            Expr { kind, span }
        }
        Rule::call => {
            let mut inner = children(pair);
            let func = ident(inner.next().expect("grammar: function name"));
            let args = inner
                .map(|p| build_expr_at(p, depth + 1))
                .collect::<ParseResult<Vec<_>>>()?;
            Expr {
                kind: ExprKind::Call { func, args },
                span,
            }
        }
        Rule::index => {
            let mut inner = children(pair);
            let base = ident(inner.next().expect("grammar: indexed name"));
            let index = Box::new(build_expr_at(
                inner.next().expect("grammar: index"),
                depth + 1,
            )?);
            let to = inner
                .next()
                .map(|p| build_expr_at(p, depth + 1).map(Box::new))
                .transpose()?;
            Expr {
                kind: ExprKind::Index { base, index, to },
                span,
            }
        }
        Rule::list => {
            let items = children(pair)
                .map(|p| build_expr_at(p, depth + 1))
                .collect::<ParseResult<Vec<_>>>()?;
            Expr {
                kind: ExprKind::List(items),
                span,
            }
        }
        other => unreachable!("grammar: unexpected primary {other:?}"),
    };
    let d = depth_of(&e);
    if depth + d > MAX_EXPR_DEPTH {
        return Err(too_deep(span));
    }
    Ok((e, d))
}

// ---------------------------------------------------------------------------
// Errors: pest's rule lists, in words
// ---------------------------------------------------------------------------

/// What a rule means to a reader, or `None` for rules not worth naming.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::file | Rule::header | Rule::kw_optimizer => "`optimizer NAME`",
        Rule::ident | Rule::ident_list => "a name",
        Rule::number | Rule::signed_number => "a number",
        Rule::expr | Rule::paren | Rule::call | Rule::grad_call | Rule::hess_call => {
            "an expression"
        }
        Rule::neg | Rule::pos => "an expression",
        Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::matmul | Rule::pow => "an operator",
        Rule::param_decl
        | Rule::state_decl
        | Rule::small_decl
        | Rule::hyper_decl
        | Rule::time_decl
        | Rule::noise_decl
        | Rule::counter_decl
        | Rule::let_stmt
        | Rule::update => "a statement",
        Rule::eq => "`=`",
        Rule::comma => "`,`",
        Rule::colon => "`:`",
        Rule::tilde => "`~`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::sep => "the end of the line",
        Rule::EOI => "the end of the file",
        Rule::constraint | Rule::comparison | Rule::cmp_op | Rule::interval | Rule::kw_in => {
            "a constraint such as `> 0` or `in (0, 1)`"
        }
        Rule::open_end => "`(` or `[`",
        Rule::close_end => "`)` or `]`",
        Rule::noise_kind => "`gaussian` or `general`",
        Rule::problem_file | Rule::problem_header | Rule::kw_problem => "`problem NAME`",
        Rule::dim_decl
        | Rule::objective_decl
        | Rule::pnoise_decl
        | Rule::start_decl
        | Rule::horizon_decl
        | Rule::observe_decl
        | Rule::set_decl
        | Rule::etas_decl
        | Rule::data_decl
        | Rule::plet_decl => "a problem statement (`dim`, `objective`, `noise`, `start`, `horizon`, `observe`, `set`, `etas`, `data`, `let`)",
        Rule::start_random | Rule::kw_random => "`random(seed = …, scale = …)`",
        Rule::named_arg | Rule::data_name => "a name",
        Rule::noise_model => "`gaussian` or `minibatch`",
        Rule::noise_param => "`cov`, `factor` or `size`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::index | Rule::list => "an expression",
        Rule::string => "a quoted file name",
        Rule::shape_name => "`scalar` or `vector`",
        Rule::kw_param => "`param`",
        Rule::kw_state => "`state`",
        Rule::kw_small => "`small`",
        Rule::kw_hyper => "`hyper`",
        Rule::kw_let => "`let`",
        Rule::kw_time => "`time`",
        Rule::kw_noise => "`noise`",
        Rule::kw_counter => "`counter`",
        Rule::kw_grad => "`grad`",
        Rule::kw_hess => "`hess`",
        _ => return None,
    })
}

/// Joins phrases as "a, b or c".
fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// How the text at `offset` reads: "`}`", "the end of the line", "the name `foo`".
fn found_at(source: &str, offset: usize) -> String {
    let rest = &source[offset.min(source.len())..];
    match rest.chars().next() {
        None => "end of file".to_string(),
        Some('\n') | Some('\r') => "end of line".to_string(),
        Some(c) if c.is_alphabetic() || c == '_' => {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if KEYWORDS.contains(&word.as_str()) {
                format!("keyword `{word}`")
            } else {
                format!("name `{word}`")
            }
        }
        Some(c) if c.is_ascii_digit() => "number".to_string(),
        Some(c) if c.is_control() || c == '\u{feff}' => format!("character U+{:04X}", c as u32),
        Some(c) => format!("`{c}`"),
    }
}

/// The words of the language.
pub(crate) const KEYWORDS: &[&str] = &[
    "optimizer",
    "param",
    "state",
    "small",
    "hyper",
    "let",
    "time",
    "noise",
    "counter",
    "grad",
    "hess",
    "in",
    "gaussian",
    "general",
    "scalar",
    "vector",
    "fast",
    "slow",
];

/// Declaration keywords, for "did you mean" hints on a misspelled line start.
const DECL_KEYWORDS: &[&str] = &[
    "optimizer",
    "param",
    "state",
    "small",
    "hyper",
    "let",
    "time",
    "noise",
    "counter",
    "fast",
    "slow",
];

fn syntax_error(source: &str, err: pest::error::Error<Rule>) -> Box<Diagnostic> {
    let offset = match err.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<&str> = Vec::new();
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &err.variant {
        for r in positives {
            if let Some(d) = describe(*r) {
                if !expected.contains(&d) {
                    expected.push(d);
                }
            }
        }
    }
    // `[` (a component or a literal vector) is never the fix a reader is after.
    expected.retain(|d| *d != "`[`");
    // Drop what a more general phrase already says.
    if expected.contains(&"an expression") {
        expected.retain(|d| !matches!(*d, "`grad`" | "`hess`" | "`(`" | "a name" | "a number"));
    }
    let statement_words = [
        "`param`",
        "`state`",
        "`small`",
        "`hyper`",
        "`let`",
        "`time`",
        "`noise`",
        "`counter`",
    ];
    if expected.iter().any(|d| statement_words.contains(d)) {
        expected.push("a statement");
    }
    if expected.contains(&"the end of the line") {
        expected.retain(|d| *d != "the end of the file");
    }
    if expected.contains(&"an operator") {
        expected.retain(|d| *d != "`(`");
    }
    if expected.contains(&"a statement") {
        expected.retain(|d| {
            !matches!(
                *d,
                "`param`"
                    | "`state`"
                    | "`small`"
                    | "`hyper`"
                    | "`let`"
                    | "`time`"
                    | "`noise`"
                    | "`counter`"
                    | "a name"
            )
        });
    }
    // Order the phrases as a reader scans them: punctuation first, the generic last.
    expected.sort_by_key(|d| match *d {
        "an expression" | "a name" | "a number" => 1,
        "an operator" => 2,
        "a statement" => 3,
        "the end of the line" | "the end of the file" => 4,
        _ => 0,
    });
    let found = found_at(source, offset);
    let first_token = source
        .char_indices()
        .scan(false, |in_comment, (i, c)| {
            let skip = *in_comment || c == '#' || c.is_whitespace() || c == ';';
            if c == '#' {
                *in_comment = true;
            } else if c == '\n' {
                *in_comment = false;
            }
            Some((i, skip))
        })
        .find(|(_, skip)| !skip)
        .map_or(0, |(i, _)| i);

    let next = source[offset.min(source.len())..].chars().next();
    let end = match next {
        None | Some('\n') | Some('\r') => offset,
        Some(c) => offset + c.len_utf8(),
    };
    let mut span = Span::new(offset, end);
    if offset <= first_token && expected.contains(&"`optimizer NAME`") {
        return Box::new(
            Diagnostic::new(
                Code::NotOptimizer,
                span,
                "this file does not describe an optimizer",
            )
            .label("expected `optimizer NAME` here")
            .hint("start the file with `optimizer NAME`, then declare `param x` and write its update, e.g. `x = x - eta*(grad f(x) + xi)`"),
        );
    }
    let label = if expected.is_empty() {
        "unexpected here".to_string()
    } else {
        format!("expected {}", join_or(&expected))
    };
    let hint = syntax_hint(source, offset, &expected);
    // A misspelled keyword: point at the word, not at what follows it.
    if let Some(SyntaxHint::Keyword { word, keyword }) = &hint {
        span = *word;
        return Box::new(
            Diagnostic::new(
                Code::Syntax,
                span,
                format!("unknown declaration `{}`", &source[word.range()]),
            )
            .label("not a keyword")
            .hint(format!("did you mean the keyword `{keyword}`?")),
        );
    }
    Box::new(
        Diagnostic::new(Code::Syntax, span, format!("unexpected {found}"))
            .label(label)
            .maybe_hint(hint.map(|h| match h {
                SyntaxHint::Text(t) => t,
                SyntaxHint::Keyword { .. } => unreachable!("handled above"),
            })),
    )
}

enum SyntaxHint {
    Text(String),
    /// The line starts with `word`, a misspelling of a declaration keyword.
    Keyword {
        word: Span,
        keyword: &'static str,
    },
}

/// A hint for common slips: a misspelled keyword, `**`, `:=`, juxtaposition, two
/// statements on a line, an unclosed parenthesis, a keyword used as a name.
fn syntax_hint(source: &str, offset: usize, expected: &[&str]) -> Option<SyntaxHint> {
    let text = |s: &str| Some(SyntaxHint::Text(s.to_string()));
    let offset = offset.min(source.len());
    let rest = &source[offset..];
    let before = source[..offset].trim_end_matches([' ', '\t']);
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = rest.find('\n').map_or(source.len(), |i| offset + i);
    let line = &source[line_start..line_end];
    let line = line.split('#').next().unwrap_or("");
    let word_here: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if rest.starts_with("**") || rest.starts_with('*') && before.ends_with('*') {
        return text("write powers with `^`, as in `g^2`");
    }
    if rest.starts_with(":=") || rest.starts_with(':') && expected.contains(&"`=`") {
        return text("assign with `=`, as in `m = beta*m + (1 - beta)*g`");
    }
    if word_here == "optimizer" {
        return text("a file holds one optimizer; start a new file for the next");
    }
    if before.ends_with("grad") || before.ends_with("hess") {
        return text(
            "write the gradient and the Hessian of the objective as `grad f(x)` and `hess f(x)`",
        );
    }
    if KEYWORDS.contains(&word_here.as_str()) && expected.contains(&"a name") {
        return Some(SyntaxHint::Text(format!(
            "`{word_here}` is a keyword of the language; choose another name, e.g. `{word_here}_`"
        )));
    }
    let first_word: String = line
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !first_word.is_empty() && !KEYWORDS.contains(&first_word.as_str()) && !line.contains('=') {
        if let Some(k) = DECL_KEYWORDS
            .iter()
            .find(|k| strsim::damerau_levenshtein(k, &first_word) <= 2 && first_word.len() >= 3)
        {
            let start = line_start + (line.len() - line.trim_start().len());
            return Some(SyntaxHint::Keyword {
                word: Span::new(start, start + first_word.len()),
                keyword: k,
            });
        }
        if expected.contains(&"`=`") {
            return Some(SyntaxHint::Text(format!(
                "declarations start with a keyword (`param`, `state`, `hyper`, …); an update reads `{first_word} = …`"
            )));
        }
    }
    if expected.contains(&"`gaussian` or `general`") {
        return text("write `noise xi ~ gaussian` for Gaussian noise, or `noise xi ~ general` to keep its moments symbolic");
    }
    if expected.contains(&"`scalar` or `vector`") {
        return text("states are vectors unless declared `state s: scalar`");
    }
    if first_word == "let" && expected.contains(&"`=`") {
        return text("define a value with `let name = expression`");
    }
    if first_word == "hyper" && before.ends_with(['>', '<', '=']) {
        return text("write a bound after the comparison, e.g. `hyper c > 0`");
    }
    if expected.contains(&"`)`") && (rest.is_empty() || rest.starts_with(['\n', '\r'])) {
        return text("close the parenthesis before the end of the line");
    }
    if expected.contains(&"`optimizer NAME`") {
        return text("a file holds one optimizer; start a new file for the next");
    }
    if before.ends_with(['+', '-', '*', '/', '^', '@', '=', ',', '(']) {
        return text("an operator needs an operand on both sides");
    }
    if expected.contains(&"an operator") && !word_here.is_empty() {
        // Two statements on one line, or two operands side by side.
        let after_word = rest[word_here.len()..].trim_start();
        if after_word.starts_with('=') && !after_word.starts_with("==") {
            return text("write one statement per line, or separate statements with `;`");
        }
        return text("multiply with `*`: smelt does not read juxtaposition as a product");
    }
    if expected.contains(&"an operator") && rest.starts_with('(') {
        return text("multiply with `*`: smelt does not read juxtaposition as a product");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_traits::Zero;

    #[test]
    fn decimals_are_exact() {
        let r = |t: &str| parse_decimal(t).unwrap();
        assert_eq!(r("0.9"), BigRational::new(9.into(), 10.into()));
        assert_eq!(r("1e-8"), BigRational::new(1.into(), 100_000_000.into()));
        assert_eq!(r(".5"), BigRational::new(1.into(), 2.into()));
        assert_eq!(r("-2.50"), BigRational::new((-5).into(), 2.into()));
        assert_eq!(r("3E2"), BigRational::from_integer(300.into()));
        assert!(r("0").is_zero());
        assert!(parse_decimal("1e999").is_err());
    }

    #[test]
    fn precedence_follows_the_binding_powers() {
        fn show(e: &Expr) -> String {
            match &e.kind {
                ExprKind::Number(n) => n.to_string(),
                ExprKind::Name(s) => s.clone(),
                ExprKind::Unary(UnOp::Neg, a) => format!("(-{})", show(a)),
                ExprKind::Unary(UnOp::Plus, a) => format!("(+{})", show(a)),
                ExprKind::Binary(op, a, b) => format!("({} {} {})", show(a), op.symbol(), show(b)),
                _ => "?".into(),
            }
        }
        let cases = [
            ("a + b*c", "(a + (b * c))"),
            ("a - b - c", "((a - b) - c)"),
            ("a/b/c", "((a / b) / c)"),
            ("a^b^c", "(a ^ (b ^ c))"),
            ("-a^2", "(-(a ^ 2))"),
            ("-a*b", "((-a) * b)"),
            ("a*-b", "(a * (-b))"),
            ("a^-b*c", "((a ^ (-b)) * c)"),
            ("(a + b)*c", "((a + b) * c)"),
            ("a @ b * c", "((a @ b) * c)"),
        ];
        for (src, want) in cases {
            let file = parse(&format!("optimizer T\nx = {src}\n")).unwrap();
            let ItemKind::Update(_, e) = &file.items[0].kind else {
                panic!()
            };
            assert_eq!(show(e), want, "{src}");
        }
    }
}
