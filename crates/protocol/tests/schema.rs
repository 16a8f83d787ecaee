//! `proto/` is generated from these types and must not drift from them.
//!
//! Regenerate after changing a frame: `UPDATE_PROTO=1 cargo test -p chat-protocol --test schema`.

#![allow(clippy::expect_used)] // a failed expect is a failed test (or benchmark), with its message
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::path::{Path, PathBuf};

use chat_protocol::{ClientFrame, SeedFrame, ServerFrame};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn proto() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

fn schemas() -> Vec<(&'static str, Value)> {
    let value = |s: schemars::Schema| serde_json::to_value(s).expect("schema serialises");
    vec![
        ("client-frame", value(schemars::schema_for!(ClientFrame))),
        ("server-frame", value(schemars::schema_for!(ServerFrame))),
        ("seed-frame", value(schemars::schema_for!(SeedFrame))),
    ]
}

#[test]
fn the_committed_schemas_match_the_types() {
    let update = std::env::var_os("UPDATE_PROTO").is_some();
    for (name, schema) in schemas() {
        let path = proto().join("schema").join(format!("{name}.schema.json"));
        let generated = serde_json::to_string_pretty(&schema).expect("json") + "\n";
        if update {
            std::fs::write(&path, &generated).expect("write schema");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date; run UPDATE_PROTO=1 cargo test -p chat-protocol --test schema",
            path.display()
        );
    }
}

/// Every example is valid against its schema and survives a decode/encode
/// round trip unchanged.
fn check_examples<T: Serialize + DeserializeOwned>(folder: &str, schema_name: &str) -> usize {
    let schema = schemas()
        .into_iter()
        .find(|(n, _)| *n == schema_name)
        .expect("schema")
        .1;
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let dir = proto().join("examples").join(folder);
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples folder") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let example: Value = serde_json::from_str(&text).expect("example is JSON");
        let errors: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let typed: T = serde_json::from_value(example.clone())
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
        assert_eq!(
            serde_json::to_value(&typed).expect("encodes"),
            example,
            "{}",
            path.display()
        );
        seen += 1;
    }
    seen
}

#[test]
fn every_client_example_is_valid_and_round_trips() {
    assert!(check_examples::<ClientFrame>("client", "client-frame") >= ClientFrame::TYPES.len());
}

#[test]
fn every_server_example_is_valid_and_round_trips() {
    assert!(check_examples::<ServerFrame>("server", "server-frame") >= 5);
}

#[test]
fn every_seed_example_is_valid_and_round_trips() {
    assert!(check_examples::<SeedFrame>("seed", "seed-frame") >= 2);
}

#[test]
fn the_schema_refuses_what_the_decoder_refuses() {
    let (_, schema) = schemas()
        .into_iter()
        .find(|(n, _)| *n == "client-frame")
        .expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for bad in [
        r#"{"type":"send","id":"1","to":"bob","body":5}"#,
        r#"{"type":"dance"}"#,
        r#"{"type":"join"}"#,
        r#"{"type":"join","room":"x","extra":1}"#,
    ] {
        let value: Value = serde_json::from_str(bad).expect("json");
        assert!(!validator.is_valid(&value), "schema accepts {bad}");
        assert!(chat_protocol::decode(bad).is_err(), "decoder accepts {bad}");
    }
}
