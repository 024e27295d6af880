//! Hostile and malformed input: `smelt::check` must return `Ok` or `Err`, never panic,
//! and must finish quickly. Big inputs are built in memory; random ones come from a
//! seeded xorshift generator, so every run tests the same cases.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long one of the big inputs below may take. The slowest, a 1 MiB sum, takes about
/// 3 s in a debug build and 0.3 s in a release build.
const SLOW: Duration = Duration::from_secs(if cfg!(debug_assertions) { 20 } else { 2 });

/// A short, printable preview of an input for failure messages.
fn preview(source: &str) -> String {
    const MAX: usize = 300;
    if source.len() <= MAX {
        format!("{source:?}")
    } else {
        let mut end = MAX;
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}… ({} bytes)", &source[..end], source.len())
    }
}

/// Runs `smelt::check`, turning a panic into a test failure that shows the input.
fn check(source: &str) -> Result<smelt::Optimizer, smelt::Error> {
    match catch_unwind(AssertUnwindSafe(|| smelt::check(source))) {
        Ok(result) => result,
        Err(_) => panic!("smelt::check panicked on {}", preview(source)),
    }
}

/// Checks that the input is rejected, with at least one diagnostic whose span lies in
/// the source, and that rendering the diagnostics does not panic either.
fn rejected(source: &str) -> smelt::Error {
    let e = match check(source) {
        Ok(_) => panic!("accepted malformed input {}", preview(source)),
        Err(e) => e,
    };
    assert!(
        !e.diagnostics().is_empty(),
        "no diagnostic for {}",
        preview(source)
    );
    for d in e.diagnostics() {
        assert!(
            d.span.start <= d.span.end && d.span.end <= source.len(),
            "span {:?} outside the source for {}",
            d.span,
            preview(source)
        );
    }
    rendered(&e, source);
    e
}

fn rendered(e: &smelt::Error, source: &str) -> String {
    match catch_unwind(|| smelt::diagnostic::render(e.diagnostics(), "input.opt", source)) {
        Ok(text) => text,
        Err(_) => panic!("rendering panicked for {}", preview(source)),
    }
}

/// Rejected, within `SLOW`, with a diagnostic of the given code.
fn rejected_fast(what: &str, source: &str, code: smelt::Code) {
    let start = Instant::now();
    let e = rejected(source);
    let took = start.elapsed();
    assert!(took < SLOW, "{what}: took {took:?}");
    let codes: Vec<_> = e.diagnostics().iter().map(|d| d.code).collect();
    assert!(
        codes.contains(&code),
        "{what}: expected a {code:?} diagnostic, got {codes:?}"
    );
}

/// A header that makes the rest of the file reach the expression parser.
const HEAD: &str = "optimizer T\nparam x\nsmall eta\nnoise xi ~ general\n";

fn update_of(expr: &str) -> String {
    format!("{HEAD}x = {expr}\n")
}

#[test]
fn deeply_nested_parentheses() {
    let n = 100_000;
    let src = update_of(&format!("{}x{}", "(".repeat(n), ")".repeat(n)));
    rejected_fast("100,000 nested parentheses", &src, smelt::Code::TooLarge);
    // Unbalanced, and with brackets: still cut off by the nesting limit.
    let src = update_of(&"(".repeat(n));
    rejected_fast("100,000 open parentheses", &src, smelt::Code::TooLarge);
    let src = update_of(&format!("{}x", "[".repeat(n)));
    rejected_fast("100,000 open brackets", &src, smelt::Code::TooLarge);
    // Parentheses in a comment do not count.
    let src = format!("# {}\n{}", "(".repeat(n), update_of("x"));
    assert!(matches!(check(&src), Ok(_) | Err(_)));
}

#[test]
fn long_operator_chains() {
    let n = 100_000;
    let pow = update_of(&format!("{}x", "x^".repeat(n)));
    rejected_fast("x^x^…^x", &pow, smelt::Code::TooLarge);
    let neg = update_of(&format!("{}x", "-".repeat(n)));
    rejected_fast("-----x", &neg, smelt::Code::TooLarge);
    // Shorter chains of other operators: the same limit, at a fraction of the cost.
    let mixed = update_of(&format!("{}x", "-x^".repeat(10_000)));
    rejected_fast("-x^-x^…", &mixed, smelt::Code::TooLarge);
    let product = update_of(&format!("{}x", "x*".repeat(10_000)));
    rejected_fast("x*x*…*x", &product, smelt::Code::TooLarge);
}

#[test]
fn the_size_limit() {
    let limit = smelt::MAX_SOURCE_BYTES;
    // `x + x + … + x` as long as the limit allows: read, then cut off by the depth limit.
    let fixed = update_of("x").len();
    let terms = (limit - fixed) / 4;
    let under = update_of(&format!("{}x", "x + ".repeat(terms)));
    assert!(
        under.len() <= limit && under.len() > limit - 4,
        "{}",
        under.len()
    );
    rejected_fast(
        "a sum just under the size limit",
        &under,
        smelt::Code::TooLarge,
    );
    // One byte over the limit: refused before parsing.
    let over = format!("{under}#{}", " ".repeat(limit - under.len()));
    assert_eq!(over.len(), limit + 1);
    rejected_fast(
        "a file just over the size limit",
        &over,
        smelt::Code::TooLarge,
    );
    let e = check(&over).unwrap_err();
    assert!(e.diagnostics()[0].message.contains("too large"));
    // Just at the limit, a valid optimizer padded with a comment is accepted.
    let sgd = std::fs::read_to_string(examples_dir().join("sgd.opt")).unwrap();
    let padded = format!("{sgd}#{}", "x".repeat(limit - sgd.len() - 1));
    assert_eq!(padded.len(), limit);
    assert!(
        check(&padded).is_ok(),
        "a file of exactly the limit is refused"
    );
}

#[test]
fn fifty_megabytes() {
    let huge = "x = x + 1\n".repeat(5_000_000);
    let start = Instant::now();
    let e = check(&huge).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(e.diagnostics()[0].code, smelt::Code::TooLarge);
}

/// A small, seeded pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0; the tiny bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..2_000 {
        let len = rng.below(301);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = check(&text);
        // Bytes after a valid header reach the statement parser.
        let _ = check(&format!("optimizer T\n{text}"));
    }
}

/// Words and symbols of the language, to build token soups that get past the lexer.
const TOKENS: &[&str] = &[
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
    "x",
    "m",
    "v",
    "eta",
    "c",
    "xi",
    "k",
    "g",
    "f",
    "sqrt",
    "exp",
    "log",
    "abs",
    "dot",
    "norm",
    "old",
    "0",
    "1",
    "2",
    "0.9",
    "1e-8",
    "1e400",
    "=",
    "+",
    "-",
    "*",
    "/",
    "@",
    "^",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "~",
    ">",
    "<=",
    ";",
    "\n",
    " ",
    "#",
    "é",
    "θ",
];

/// Operands and operators for random expressions that mostly parse.
const OPERANDS: &[&str] = &[
    "x",
    "m",
    "s",
    "eta",
    "c",
    "xi",
    "k",
    "g",
    "0",
    "1",
    "2",
    "0.5",
    "1e-8",
    "grad f(x)",
    "grad f(x + m)",
    "hess f(x)",
    "f(x)",
    "xi(x + eta*m)",
    "sqrt(m)",
    "exp(c)",
    "log(s)",
    "abs(x)",
    "dot(x, m)",
    "norm(g)",
    "old(x)",
    "old(m)",
    "old(s)",
];
const OPERATORS: &[&str] = &["+", "-", "*", "/", "@", "^"];

/// A random expression of up to `size` operands, with some parentheses and signs.
fn random_expr(rng: &mut Rng, size: usize) -> String {
    let mut out = String::new();
    let mut open = 0;
    for i in 0..=rng.below(size) {
        if i > 0 {
            out.push_str(&format!(" {} ", rng.pick(OPERATORS)));
        }
        if rng.below(4) == 0 {
            out.push('-');
        }
        if rng.below(4) == 0 {
            out.push('(');
            open += 1;
        }
        out.push_str(rng.pick(OPERANDS));
        if open > 0 && rng.below(3) == 0 {
            out.push(')');
            open -= 1;
        }
    }
    out.push_str(&")".repeat(open));
    out
}

#[test]
fn random_token_soups() {
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..1_000 {
        let mut src = String::from(HEAD);
        for _ in 0..rng.below(40) {
            src.push_str(rng.pick(TOKENS));
            if rng.below(2) == 0 {
                src.push(' ');
            }
        }
        if let Ok(opt) = check(&src) {
            round_trip(&src, &opt);
        }
    }
}

/// Random but well-formed statements: these reach the checks of lowering, and the
/// accepted ones must survive the canonical round trip.
#[test]
fn random_rules() {
    let mut rng = Rng(0x5eed_0004);
    let mut accepted = 0;
    for _ in 0..2_000 {
        let mut src = String::from(
            "optimizer R\nparam x\nstate m\nstate s: scalar\nsmall eta\nhyper c > 0\n",
        );
        src.push_str(rng.pick(&["", "noise xi ~ general\n", "noise xi ~ gaussian\n"]));
        src.push_str(rng.pick(&["", "counter k\n", "time eta^2\n", "time c*eta\n"]));
        for _ in 0..rng.below(5) {
            let target = rng.pick(&["let g = ", "x = ", "m = ", "s = ", "let h = "]);
            src.push_str(&format!("{target}{}\n", random_expr(&mut rng, 6)));
        }
        if let Ok(opt) = check(&src) {
            accepted += 1;
            round_trip(&src, &opt);
        }
    }
    assert!(accepted > 0, "no random rule was accepted");
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn examples() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "opt") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no examples found");
    out
}

/// An accepted input's canonical form must be accepted again, as the same IR.
fn round_trip(source: &str, opt: &smelt::Optimizer) {
    let text = smelt::canonical(opt);
    match check(&text) {
        Ok(again) => assert!(
            again.without_spans() == opt.without_spans(),
            "canonical form changes the IR\ninput: {}\ncanonical:\n{text}",
            preview(source)
        ),
        Err(e) => panic!(
            "canonical form is rejected\ninput: {}\n{}",
            preview(source),
            rendered(&e, &text)
        ),
    }
}

/// Characters to insert: the language's own, and some it does not know.
const INSERTS: &[char] = &[
    '(', ')', '[', ']', '+', '-', '*', '/', '^', '@', '=', ',', ':', ';', '~', '<', '>', '#', '\n',
    ' ', '\t', '\r', '.', 'e', 'x', 'm', '0', '9', '_', 'é', 'ξ', '\u{0}', '\u{feff}', '\u{200b}',
    '"', '\\',
];

/// Deletes, inserts or replaces one random character.
fn mutate(rng: &mut Rng, source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let at = rng.below(chars.len() + 1);
    let mut out: Vec<char> = chars.clone();
    match rng.below(3) {
        0 if at < chars.len() => {
            out.remove(at);
        }
        1 if at < chars.len() => out[at] = rng.pick(INSERTS),
        _ => out.insert(at, rng.pick(INSERTS)),
    }
    out.into_iter().collect()
}

#[test]
fn mutated_examples() {
    let mut rng = Rng(0x5eed_0003);
    for (name, source) in examples() {
        let original = smelt::canonical(&check(&source).expect("the example checks"));
        let mut accepted = 0;
        for _ in 0..300 {
            let mutant = mutate(&mut rng, &source);
            match check(&mutant) {
                Ok(opt) => {
                    accepted += 1;
                    // Most accepted mutants changed a comment; their canonical form is
                    // the example's, whose round trip is tested elsewhere.
                    if smelt::canonical(&opt) != original {
                        round_trip(&mutant, &opt);
                    }
                }
                Err(e) => {
                    let text = rendered(&e, &mutant);
                    assert!(text.contains("input.opt:"), "{name}: {text}");
                }
            }
        }
        // Most one-character edits land in comments or blanks; some must still parse.
        assert!(accepted > 0, "{name}: no mutant was accepted");
    }
}

#[test]
fn truncated_examples() {
    for (name, source) in examples() {
        for (end, _) in source.char_indices() {
            let prefix = &source[..end];
            if let Ok(opt) = check(prefix) {
                round_trip(prefix, &opt);
            }
        }
        assert!(check(&source).is_ok(), "{name} itself is rejected");
    }
}

// ---------------------------------------------------------------------------
// Inputs that once hung, exhausted memory or broke the round trip. Each runs in a
// thread with a deadline, so that a regression fails instead of hanging.
// ---------------------------------------------------------------------------

/// Checks the input on another thread; fails if it takes longer than `limit`.
fn finishes_within(limit: Duration, source: String) -> Result<smelt::Optimizer, smelt::Error> {
    let (send, receive) = std::sync::mpsc::channel();
    let shown = preview(&source);
    std::thread::spawn(move || {
        let _ = send.send(smelt::check(&source));
    });
    match receive.recv_timeout(limit) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("smelt::check did not finish within {limit:?} on {shown}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("smelt::check panicked on {shown}")
        }
    }
}

#[test]
fn doubling_scalings_finish_quickly() {
    // 40 short lines; the substituted expression of a30 has 2^30 leaves.
    let mut src =
        String::from("optimizer T\nparam x\nsmall eta\nnoise xi ~ general\nlet a0 = eta\n");
    for i in 1..=30 {
        src.push_str(&format!("let a{i} = a{p}*a{p}\n", p = i - 1));
    }
    src.push_str("x = x - a30*(grad f(x) + xi)\n");
    let _ = finishes_within(Duration::from_secs(5), src);
}

#[test]
fn folded_powers_finish_quickly() {
    for expr in [
        "x - (1e400^64)^8*eta*(grad f(x) + xi)",
        "x - (1e80^64)^8*eta*(grad f(x) + xi)",
        "x - (3^4000)*eta*(grad f(x) + xi)",
    ] {
        let _ = finishes_within(Duration::from_secs(5), update_of(expr));
    }
}

#[test]
fn doubling_scalings_that_do_not_simplify_are_bounded() {
    // sqrt(c) keeps the product from collapsing to a power of eta: a size limit applies.
    let mut src = String::from(
        "optimizer T\nparam x\nsmall eta\nhyper c > 0\nnoise xi ~ general\nlet a0 = eta + sqrt(c)\n",
    );
    for i in 1..=30 {
        src.push_str(&format!("let a{i} = a{p}*a{p}\n", p = i - 1));
    }
    src.push_str("x = x - a30*(grad f(x) + xi)\n");
    let e = finishes_within(Duration::from_secs(5), src).expect_err("too large");
    assert_eq!(e.diagnostics()[0].code, smelt::Code::TooLarge);
}

#[test]
fn big_constants_round_trip() {
    for src in [
        format!("{HEAD}hyper c < 1e80\nx = x - eta*c*(grad f(x) + xi)\n"),
        update_of("x - 1e40^2*eta*(grad f(x) + xi)"),
        update_of("x - 7^90*eta*(grad f(x) + xi)"),
    ] {
        let opt = check(&src).expect("accepted");
        round_trip(&src, &opt);
    }
}

/// Rules that check but were never meant to be derived: the derivation returns a result
/// or a diagnostic, never a panic or an internal error.
#[test]
fn mutated_examples_derive_or_explain() {
    let mut rng = Rng(0x5eed_0042);
    let mut derived = 0;
    for (name, source) in examples() {
        let original = smelt::canonical(&check(&source).expect("the example checks"));
        let mut tried = 0;
        for _ in 0..400 {
            if tried == 12 {
                break;
            }
            let mutant = mutate(&mut rng, &source);
            let Ok(opt) = check(&mutant) else { continue };
            if smelt::canonical(&opt) == original {
                continue;
            }
            tried += 1;
            let result = catch_unwind(AssertUnwindSafe(|| {
                smelt::derive_checked(&opt, &smelt::Options::order(1))
            }))
            .unwrap_or_else(|_| panic!("{name}: derive panicked on {}", preview(&mutant)));
            match result {
                Ok(sme) => {
                    derived += 1;
                    let _ = smelt::emit::text::render(&sme);
                    let _ = smelt::emit::latex::render(&sme, true);
                    let json = smelt::emit::json::to_json(&sme);
                    assert_eq!(
                        smelt::emit::json::from_json(&json).ok().as_ref(),
                        Some(&sme)
                    );
                }
                Err(smelt::Error::Internal(msg)) => {
                    panic!("{name}: internal error {msg} on {}", preview(&mutant))
                }
                Err(e) => {
                    let text = rendered(&e, &mutant);
                    assert!(text.contains("input.opt:"), "{name}: {text}");
                }
            }
        }
    }
    assert!(derived > 0, "some mutants derive");
}
