//! The committed JSON Schemas of the protocol (`proto/schema/`).

use std::sync::OnceLock;

use anyhow::Context;
use serde_json::Value;

/// Every schema in `proto/schema/`, compiled once per test process.
pub struct Schemas {
    server: jsonschema::Validator,
    seed: jsonschema::Validator,
}

fn load(name: &str) -> anyhow::Result<jsonschema::Validator> {
    let path = crate::workspace_root().join("proto/schema").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    let schema: Value = serde_json::from_str(&text)?;
    jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

impl Schemas {
    /// The process-wide instance.
    pub fn get() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| {
            #[allow(clippy::unwrap_used)] // unwrap: a test cannot run without the schemas
            Schemas {
                server: load("server-frame.schema.json").unwrap(),
                seed: load("seed-frame.schema.json").unwrap(),
            }
        })
    }

    /// Checks a webhook event against its schema,
    /// `proto/webhooks/{type}.schema.json`.
    pub fn check_webhook(&self, event: &Value) -> anyhow::Result<()> {
        let kind = event["type"].as_str().context("an event has a type")?;
        let path = crate::workspace_root().join(format!("proto/webhooks/{kind}.schema.json"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
        let schema: Value = serde_json::from_str(&text)?;
        let validator =
            jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("{kind}: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(event)
            .map(|e| e.to_string())
            .collect();
        anyhow::ensure!(
            errors.is_empty(),
            "event {event} breaks its schema: {errors:?}"
        );
        Ok(())
    }

    /// Checks a frame the server sent on a user connection: a typed frame
    /// against the server-frame schema, anything else against the seed frame.
    pub fn check_server_frame(&self, frame: &Value) -> anyhow::Result<()> {
        let validator = if frame.get("type").is_some() {
            &self.server
        } else {
            &self.seed
        };
        let errors: Vec<String> = validator
            .iter_errors(frame)
            .map(|e| e.to_string())
            .collect();
        anyhow::ensure!(
            errors.is_empty(),
            "frame {frame} breaks the schema: {errors:?}"
        );
        Ok(())
    }
}
