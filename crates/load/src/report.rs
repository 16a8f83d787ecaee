//! What a run prints: a table for people and one JSON line for scripts.

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

/// Latencies in microseconds, 1 µs to 60 s (longer ones count as 60 s), 3
/// significant digits.
#[derive(Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // expect: 1 ≤ low, high ≥ 2·low and 3 significant figures are valid bounds.
        #[allow(clippy::expect_used)]
        Self(Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid"))
    }
}

impl Latency {
    /// Records the time from `sent_micros` (a wall-clock stamp) to now.
    pub fn since(&mut self, sent_micros: u64) {
        self.0
            .saturating_record(crate::now_micros().saturating_sub(sent_micros).max(1));
    }

    /// Records a duration in microseconds.
    pub fn record(&mut self, micros: u64) {
        self.0.saturating_record(micros.max(1));
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.0.add(&other.0);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    fn ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// `p50 … max` in milliseconds, for the table.
    pub fn line(&self) -> String {
        if self.0.is_empty() {
            return "no samples".into();
        }
        format!(
            "p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.ms(1.0)
        )
    }

    /// The same percentiles as JSON.
    pub fn json(&self) -> Value {
        if self.0.is_empty() {
            return Value::Null;
        }
        json!({"p50": self.ms(0.5), "p99": self.ms(0.99), "p999": self.ms(0.999), "max": self.ms(1.0)})
    }
}

/// A run's figures, printed as `name  value` lines and then one JSON object.
pub struct Report {
    rows: Vec<(String, String)>,
    json: Map<String, Value>,
}

impl Report {
    /// A report for `scenario`.
    pub fn new(scenario: &str) -> Self {
        let mut json = Map::new();
        json.insert("scenario".into(), scenario.into());
        Self {
            rows: vec![("scenario".into(), scenario.into())],
            json,
        }
    }

    /// A table row only.
    pub fn row(&mut self, name: &str, text: impl Into<String>) -> &mut Self {
        self.rows.push((name.into(), text.into()));
        self
    }

    /// A JSON field only.
    pub fn field(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.json.insert(key.into(), value.into());
        self
    }

    /// A latency: one row and one field.
    pub fn latency(&mut self, name: &str, key: &str, latency: &Latency) -> &mut Self {
        self.row(&format!("{name} ms"), latency.line());
        self.field(key, latency.json())
    }

    /// The figures as the JSON line holds them, for programs (the soak test).
    pub fn fields(&self) -> &Map<String, Value> {
        &self.json
    }

    /// The table, then the JSON line.
    pub fn render(&self) -> String {
        let width = self.rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
        let mut out = String::new();
        for (name, text) in &self.rows {
            out.push_str(&format!("{name:width$}{text}\n"));
        }
        out.push_str(&Value::Object(self.json.clone()).to_string());
        out
    }
}

/// `1 - got / expected`, 0 when nothing was expected.
pub fn loss(got: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        1.0 - got as f64 / expected as f64
    }
}

/// A process's resident memory in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    field_kib(pid, "VmRSS:")
}

/// A process's peak resident memory in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    field_kib(pid, "VmHWM:")
}

fn field_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_ends_with_one_json_line_holding_the_fields() {
        let mut latency = Latency::default();
        for us in [1_000, 2_000, 3_000] {
            latency.record(us);
        }
        let mut report = Report::new("demo");
        report
            .row("sent", "3")
            .field("sent", 3)
            .latency("delivery", "delivery_ms", &latency);
        let text = report.render();
        let last: Value = serde_json::from_str(text.lines().last().expect("lines")).expect("json");
        assert_eq!(last["scenario"], "demo");
        assert_eq!(last["sent"], 3);
        assert!((last["delivery_ms"]["max"].as_f64().expect("max") - 3.0).abs() < 0.01);
        assert!(text.starts_with("scenario"));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(std::process::id()).expect("readable") > 0);
        assert!(
            peak_rss_kib(std::process::id()).expect("readable")
                >= rss_kib(std::process::id()).expect("readable") / 2
        );
    }

    #[test]
    fn loss_is_the_missing_fraction() {
        assert_eq!(loss(0, 0), 0.0);
        assert!((loss(99, 100) - 0.01).abs() < 1e-9);
    }
}
