//! `chat-load`: the workspace's load generator. It speaks the product's own
//! protocol against servers on this machine (loopback targets only), runs for
//! a bounded time, stops by itself, and prints a table and one JSON line.
//!
//! Every scenario takes one or more targets: one `chatd`, or several
//! `gateway` replicas sharing Redis, over which connections are spread.
//! Frames carry their send time (wall clock, µs) in their first 16 digits, so
//! latency is measured at the receiver without a second round trip.

pub mod cli;
pub mod direct;
pub mod fanout;
pub mod idle;
pub mod mixed;
pub mod report;
pub mod target;
pub mod upload;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use target::Refusal;

/// Wall-clock microseconds since the epoch: comparable across processes.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A payload stamped with its send time and sequence number, padded to `size`.
pub fn stamped(n: u64, size: usize) -> String {
    let mut text = format!("{:016}{:08}", now_micros(), n);
    text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
    text
}

/// The send time and sequence number at the start of a stamped payload.
pub fn stamp(text: &str) -> Option<(u64, u64)> {
    let sent = text.get(..16)?.parse().ok()?;
    let n = text.get(16..24)?.parse().ok()?;
    Some((sent, n))
}

/// The stamp of a typed frame's `body` (the first `"body":"` in the frame).
pub fn body_stamp(frame: &str) -> Option<(u64, u64)> {
    const BODY: &str = "\"body\":\"";
    let at = frame.find(BODY)? + BODY.len();
    stamp(&frame[at..])
}

/// A typed frame's `type`, read without parsing the whole frame: every
/// server frame starts with it.
pub fn frame_type(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix("{\"type\":\"")?;
    rest.get(..rest.find('"')?)
}

/// A run-unique prefix for user and room names, so runs never meet each
/// other's history or unread counters.
pub fn run_prefix() -> String {
    let secs = now_micros() / 1_000_000;
    format!("l{}", radix36(secs % 36u64.pow(6)))
}

fn radix36(mut n: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// What a connection phase achieved.
pub struct Opened<T> {
    /// The connections that opened, with their index.
    pub ok: Vec<(usize, T)>,
    /// Attempts that failed, by reason.
    pub refused: BTreeMap<String, usize>,
    /// Wall time of the whole phase.
    pub seconds: f64,
}

impl<T> Opened<T> {
    /// Fails unless every attempt opened.
    pub fn all(self) -> anyhow::Result<Vec<T>> {
        if let Some((reason, count)) = self.refused.iter().next() {
            anyhow::bail!("{count} connections failed: {reason}");
        }
        Ok(self.ok.into_iter().map(|(_, t)| t).collect())
    }

    /// `reason: count, …` of the refusals.
    pub fn refusals(&self) -> String {
        if self.refused.is_empty() {
            return "none".into();
        }
        let parts: Vec<_> = self
            .refused
            .iter()
            .map(|(reason, n)| format!("{n} × {reason}"))
            .collect();
        parts.join(", ")
    }
}

/// Runs `open(i)` for `i` in `0..count`, at most `concurrency` at once and,
/// when given, started at `rate` per second; a progress bar on a terminal.
pub async fn open_many<T, F, Fut>(
    count: usize,
    rate: Option<u64>,
    concurrency: usize,
    open: F,
) -> Opened<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, Refusal>>,
{
    let bar = indicatif::ProgressBar::new(count as u64);
    let started = Instant::now();
    let open = &open;
    let bar_ref = &bar;
    let results: Vec<(usize, Result<T, Refusal>)> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            if let Some(rate) = rate.filter(|r| *r > 0) {
                let at = started + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            }
            let result = open(i).await;
            bar_ref.inc(1);
            (i, result)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let mut ok = Vec::new();
    let mut refused = BTreeMap::new();
    for (i, result) in results {
        match result {
            Ok(t) => ok.push((i, t)),
            Err(e) => *refused.entry(e.to_string()).or_insert(0) += 1,
        }
    }
    ok.sort_by_key(|(i, _)| *i);
    Opened {
        ok,
        refused,
        seconds,
    }
}

/// The next text frame a reader gets, or `None` once it is stopped or its
/// connection ends; other frames (pings, binary) are skipped.
pub async fn next_text<S>(
    stream: &mut S,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<tokio_tungstenite::tungstenite::Utf8Bytes>
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    loop {
        let message = tokio::select! {
            _ = stop.changed() => return None,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => return Some(text),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

/// Waits out a sending phase of `duration` from `started` (a progress bar on
/// a terminal), then collects what each writer task hands back.
pub async fn send_phase<T>(
    started: Instant,
    duration: Duration,
    writers: Vec<tokio::task::JoinHandle<T>>,
) -> anyhow::Result<Vec<T>> {
    let progress = indicatif::ProgressBar::new(duration.as_secs().max(1));
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        progress.set_position(started.elapsed().as_secs());
    }
    let mut out = Vec::new();
    for writer in writers {
        out.push(writer.await?);
    }
    progress.finish_and_clear();
    Ok(out)
}

/// Waits until `done()` or until it has not changed for `quiet`: the end of
/// a run, once the last in-flight frames had their chance to arrive.
pub async fn settle(quiet: Duration, mut progress: impl FnMut() -> (u64, bool)) {
    let mut last = progress().0;
    let mut since = Instant::now();
    loop {
        let (now, done) = progress();
        if done {
            return;
        }
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Parses `10s`, `250ms`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (n, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 10s"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("'{text}': use ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_survive_the_trip_in_a_body() {
        let body = stamped(42, 64);
        assert_eq!(body.len(), 64);
        let (sent, n) = stamp(&body).expect("stamped");
        assert_eq!(n, 42);
        assert!(now_micros() >= sent);
        let frame =
            format!(r#"{{"type":"message","id":"x","from":"a","to":"b","body":"{body}","ts":1}}"#);
        assert_eq!(body_stamp(&frame), Some((sent, 42)));
        assert_eq!(frame_type(&frame), Some("message"));
        assert_eq!(frame_type("hello"), None);
        assert_eq!(stamp("not a stamp at all, no digits"), None);
    }

    #[test]
    fn run_prefixes_are_valid_user_names() {
        let name = format!("{}s123", run_prefix());
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric()), "{name}");
        assert_eq!(radix36(0), "0");
        assert_eq!(radix36(35), "z");
        assert_eq!(radix36(36), "10");
    }

    #[test]
    fn durations_read_like_the_services_settings() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }

    #[tokio::test]
    async fn open_many_counts_refusals_by_reason_and_keeps_order() {
        let opened = open_many(10, None, 3, |i| async move {
            if i % 5 == 0 {
                Err(Refusal::Status(503))
            } else {
                Ok(i * 2)
            }
        })
        .await;
        assert_eq!(opened.refused.get("HTTP 503"), Some(&2));
        let got: Vec<_> = opened.ok.iter().map(|(i, v)| (*i, *v)).collect();
        assert_eq!(
            got,
            vec![
                (1, 2),
                (2, 4),
                (3, 6),
                (4, 8),
                (6, 12),
                (7, 14),
                (8, 16),
                (9, 18)
            ]
        );
        assert_eq!(opened.refusals(), "2 × HTTP 503");
    }
}
