//! The canonical form is a fixed point: every example, printed canonically, checks
//! again to the same IR, and prints to the same text.

#[test]
fn examples_round_trip_through_the_canonical_form() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "opt") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        let ir1 = smelt::check(&source).unwrap_or_else(|e| {
            panic!(
                "{}",
                smelt::diagnostic::render(e.diagnostics(), &name, &source)
            )
        });
        let text = smelt::canonical(&ir1);
        let ir2 = smelt::check(&text).unwrap_or_else(|e| {
            panic!(
                "the canonical form of {name} is rejected:\n{}",
                smelt::diagnostic::render(e.diagnostics(), "canonical", &text)
            )
        });
        assert!(
            ir1.without_spans() == ir2.without_spans(),
            "{name}: the canonical form checks to another IR\n{text}"
        );
        assert_eq!(
            smelt::canonical(&ir2),
            text,
            "{name}: canonical is not a fixed point"
        );
    }
    assert!(seen >= 6, "only {seen} examples found");
}
