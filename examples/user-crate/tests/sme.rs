//! The derivation is part of this crate's tests: if the rule (or smelt) changes the SME,
//! the snapshot diff shows exactly how, and `cargo insta review` accepts it.

#[test]
fn the_sme_of_my_optimizer_is_pinned() {
    let source = include_str!("../my_optimizer.opt");
    let sme = smelt::derive(source, &smelt::Options::order(2)).expect("derives");
    assert_eq!(sme.order, 2);
    insta::assert_snapshot!("text", smelt::emit::text::render(&sme));
    insta::assert_snapshot!("latex", smelt::emit::latex::render(&sme, false));
}
