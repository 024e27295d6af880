//! Every example parses, lowers and prints in canonical form; the forms are pinned.

#[test]
fn canonical_forms() {
    insta::glob!("../examples", "*.opt", |path| {
        let source = std::fs::read_to_string(path).unwrap();
        let opt = smelt::check(&source).unwrap_or_else(|e| {
            panic!(
                "{}",
                smelt::diagnostic::render(e.diagnostics(), &path.display().to_string(), &source)
            )
        });
        insta::assert_snapshot!(smelt::canonical(&opt));
    });
}
