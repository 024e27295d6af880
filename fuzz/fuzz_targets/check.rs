//! Any bytes: decoding and checking must return, never panic; an accepted input's
//! canonical form must check again to the same IR and print to the same text.
//!
//! Run from the repository root (needs cargo-fuzz and a nightly toolchain), seeding the
//! corpus with the examples and the failure cases:
//!     mkdir -p fuzz/corpus/check
//!     cargo +nightly fuzz run check fuzz/corpus/check examples tests/data/fail
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = match smelt::decode(data) {
        Ok(source) => source,
        Err((diagnostic, shown)) => {
            let _ = smelt::diagnostic::render(&[diagnostic], "fuzz.opt", &shown);
            return;
        }
    };
    match smelt::check(source) {
        Err(e) => {
            assert!(!e.diagnostics().is_empty(), "an error without diagnostics");
            let _ = smelt::diagnostic::render(e.diagnostics(), "fuzz.opt", source);
        }
        Ok(ir1) => {
            let text = smelt::canonical(&ir1);
            let ir2 = match smelt::check(&text) {
                Ok(ir2) => ir2,
                Err(e) => panic!(
                    "canonical form rejected:\n{text}\n{}",
                    smelt::diagnostic::render(e.diagnostics(), "canonical.opt", &text)
                ),
            };
            assert!(
                ir1.without_spans() == ir2.without_spans(),
                "canonical form checks to another IR:\n{text}"
            );
            assert_eq!(
                smelt::canonical(&ir2),
                text,
                "canonical is not a fixed point"
            );
        }
    }
});
