//! The JSON output: a pinned document, and the round trip back to the same result.

use smelt::emit::json::{from_json, to_json};
use smelt::Options;

fn derive(file: &str, order: u32, gaussian: bool) -> smelt::Sme {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut source = std::fs::read_to_string(path).unwrap();
    if gaussian {
        source = source.replace("~ general", "~ gaussian");
    }
    smelt::derive(&source, &Options::order(order)).unwrap()
}

#[test]
fn json_round_trips() {
    for (file, order, gaussian) in [
        ("sgd.opt", 1, false),
        ("sgd.opt", 2, false),
        ("sgd.opt", 3, false),
        ("sgd.opt", 3, true),
        ("momentum.opt", 2, false),
        ("nesterov.opt", 2, false),
    ] {
        let sme = derive(file, order, gaussian);
        let text = to_json(&sme);
        let back = from_json(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(back, sme, "{file} order {order}");
        assert_eq!(to_json(&back), text);
    }
}

#[test]
fn json_is_pinned() {
    insta::assert_snapshot!("sgd_2_json", to_json(&derive("sgd.opt", 2, false)));
}

#[test]
fn json_rejects_other_documents() {
    assert!(from_json("{}").is_err());
    let other = to_json(&derive("sgd.opt", 1, false)).replace("\"version\": 1", "\"version\": 99");
    let err = from_json(&other).unwrap_err().to_string();
    assert!(err.contains("version 99"), "{err}");
}
