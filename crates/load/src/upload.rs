//! `upload`: concurrent uploads of a given size to the media service; MiB/s
//! and, given its PID, the server's RSS growth.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::report::{Latency, Report, rss_kib};
use crate::target::Target;

/// An upload run.
#[derive(clap::Args)]
#[group(skip)] // the fields join the subcommand's own
pub struct Upload {
    /// Bytes per file (suffixes k, m, g: powers of 1024).
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    pub size: u64,
    /// Files in all.
    #[arg(long, default_value_t = 50)]
    pub count: usize,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// The server's PID, for its RSS growth.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Parses `512`, `1m`, `200M`, `1g` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, shift) = match lower.strip_suffix(['k', 'm', 'g']) {
        Some(d) => (
            d,
            match lower.as_bytes()[lower.len() - 1] {
                b'k' => 10,
                b'm' => 20,
                _ => 30,
            },
        ),
        None => (lower.as_str(), 0),
    };
    digits
        .parse::<u64>()
        .map(|n| n << shift)
        .map_err(|_| format!("'{text}' is not a size like 1m or 200m"))
}

const BOUNDARY: &str = "chat-load-boundary-7f3a9c";

/// One multipart body holding `size` pseudo-random bytes as the field `file`.
/// Built once; every request sends the same bytes (a cheap `Bytes` clone).
fn body(size: u64) -> Bytes {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"load.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let mut out = Vec::with_capacity(head.len() + size as usize + tail.len());
    out.extend_from_slice(head.as_bytes());
    // Incompressible, so nothing on the way can shortcut it.
    let mut rng = fastrand::Rng::with_seed(7);
    out.extend((0..size).map(|_| rng.u8(..)));
    out.extend_from_slice(tail.as_bytes());
    Bytes::from(out)
}

/// Runs it.
pub async fn run(target: &Target, spec: Upload) -> anyhow::Result<Report> {
    if spec.count == 0 || spec.size == 0 {
        bail!("upload needs --count and --size above 0");
    }
    let body = body(spec.size);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let mut url = format!("{}/api/v1/media", target.base());
    let token = target.token("load")?;
    if token.is_none() {
        url.push_str("?user=load");
    }

    // The server's RSS, sampled while the uploads run.
    let baseline = spec.pid.map(rss_kib).transpose()?;
    let peak = Arc::new(AtomicU64::new(baseline.unwrap_or(0)));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = spec.pid.map(|pid| {
        let (peak, running) = (Arc::clone(&peak), Arc::clone(&running));
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    });

    let started = Instant::now();
    let results: Vec<Result<Duration, String>> = futures_util::stream::iter(0..spec.count)
        .map(|_| {
            let mut request = client
                .post(&url)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(body.clone());
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            async move {
                let began = Instant::now();
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let text = response.text().await.map_err(|e| e.to_string())?;
                if status.as_u16() != 201 {
                    return Err(format!("HTTP {status}: {text}"));
                }
                Ok(began.elapsed())
            }
        })
        .buffer_unordered(spec.concurrency.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        sampler.await?;
    }

    let mut latency = Latency::default();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(took) => latency.record(took.as_micros() as u64),
            Err(e) => failures.push(e),
        }
    }
    let stored = latency.count();
    let mib = (stored * spec.size) as f64 / 1_048_576.0;
    let mut report = Report::new("upload");
    report
        .row(
            "offered",
            format!(
                "{} × {} bytes, {} at once",
                spec.count, spec.size, spec.concurrency
            ),
        )
        .row(
            "stored",
            format!(
                "{stored} (201), {} failed{}",
                failures.len(),
                failures
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        )
        .row(
            "throughput",
            format!("{:.1} MiB/s ({mib:.0} MiB in {seconds:.2}s)", mib / seconds),
        )
        .latency("per upload", "upload_ms", &latency)
        .field("size", spec.size)
        .field("count", spec.count)
        .field("concurrency", spec.concurrency)
        .field("stored", stored)
        .field("failed", failures.len())
        .field("seconds", seconds)
        .field("mib_per_sec", mib / seconds);
    if let Some(before) = baseline {
        let growth = peak.load(Ordering::Relaxed).saturating_sub(before) as f64 / 1024.0;
        report
            .row(
                "server RSS",
                format!("{before} KiB before, peak growth {growth:.1} MiB"),
            )
            .field("rss_growth_mib", growth);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_powers_of_1024() {
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("200M"), Ok(200 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn the_body_is_one_file_field_of_the_asked_size() {
        let body = body(1000);
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{BOUNDARY}\r\n")));
        assert!(text.contains("name=\"file\""));
        assert!(text.ends_with(&format!("\r\n--{BOUNDARY}--\r\n")));
        let start = text.find("\r\n\r\n").expect("headers end") + 4;
        let end = body.len() - format!("\r\n--{BOUNDARY}--\r\n").len();
        assert_eq!(end - start, 1000);
    }
}
