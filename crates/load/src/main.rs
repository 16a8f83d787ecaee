//! `chat-load`: the workspace's load generator. It speaks the product's own
//! protocol against a server on this machine (loopback targets only), runs
//! for a bounded time, stops by itself, and prints a table and one JSON line.
//!
//! Scenario `lobby`: N subscribers on `/ws/`, publishers sending timestamped
//! frames at a total rate R; every subscriber receives every frame (the lobby
//! includes the sender). Reports deliveries per second achieved against
//! expected, loss, and delivery latency percentiles (HDR histogram).

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for the chat backend (loopback targets only)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N lobby subscribers, publishers at a total rate: fan-out throughput and latency.
    Lobby {
        /// `host:port` of a gateway or chatd (must be a loopback address).
        #[arg(long, default_value = "127.0.0.1:8080")]
        target: String,
        /// Subscribing connections.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Publishing connections (each also subscribes, as the lobby includes the sender).
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Total frames per second over all publishers.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// How long to publish.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Frame payload size in bytes (at least the 24-byte header).
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
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

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Refuses anything but this machine: load goes to loopback only.
fn loopback(target: &str) -> anyhow::Result<()> {
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .collect();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        bail!("{target} is not a loopback address: chat-load only loads this machine");
    }
    Ok(())
}

struct Counters {
    delivered: AtomicU64,
    sent: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Lobby {
            target,
            subscribers,
            publishers,
            rate,
            duration,
            size,
        } => {
            loopback(&target)?;
            lobby(
                &target,
                subscribers,
                publishers,
                rate,
                duration,
                size.max(24),
            )
            .await
        }
    }
}

async fn lobby(
    target: &str,
    subscribers: usize,
    publishers: usize,
    rate: u64,
    duration: Duration,
    size: usize,
) -> anyhow::Result<()> {
    let url = format!("ws://{target}/ws/");
    let counters = Arc::new(Counters {
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
    });
    let bar = indicatif::ProgressBar::new((subscribers + publishers) as u64);
    bar.set_message("connecting");
    let mut streams = Vec::new();
    let mut writers = Vec::new();
    for i in 0..subscribers + publishers {
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .with_context(|| format!("connection {i} to {url}"))?;
        let (sink, stream) = socket.split();
        if i >= subscribers {
            writers.push(sink);
        }
        streams.push(stream);
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Readers start once everyone is connected, and stop after a quiet spell
    // longer than the gap between frames.
    let quiet = Duration::from_secs_f64((3.0 / rate.max(1) as f64).max(2.0));
    let mut readers = Vec::new();
    for mut stream in streams {
        let counters = Arc::clone(&counters);
        readers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, stream.next()).await {
                match message {
                    Message::Text(text) => {
                        if let Some(sent) =
                            text.as_str().get(..16).and_then(|t| t.parse::<u64>().ok())
                        {
                            let _ = latency.record(now_micros().saturating_sub(sent).max(1));
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            latency
        }));
    }

    // Publish at the total rate, spread over the publishers, for `duration`.
    let per_publisher = (rate as f64 / publishers as f64).max(1.0);
    let interval = Duration::from_secs_f64(1.0 / per_publisher);
    let started = Instant::now();
    let progress = indicatif::ProgressBar::new(duration.as_secs().max(1));
    let mut tasks = Vec::new();
    for mut sink in writers {
        let counters = Arc::clone(&counters);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n: u64 = 0;
            while started.elapsed() < duration {
                tick.tick().await;
                let mut frame = format!("{:016}{:08}", now_micros(), n);
                frame.extend(std::iter::repeat_n('x', size.saturating_sub(frame.len())));
                if sink.send(Message::text(frame)).await.is_err() {
                    break;
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            let _ = sink.close().await;
        }));
    }
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress.set_position(started.elapsed().as_secs());
    }
    for task in tasks {
        let _ = task.await;
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for reader in readers {
        latency.add(reader.await?)?;
    }
    let sent = counters.sent.load(Ordering::Relaxed);
    let expected = sent * (subscribers + publishers) as u64;
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let loss = if expected == 0 {
        0.0
    } else {
        1.0 - delivered as f64 / expected as f64
    };
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "scenario      lobby ({subscribers} subscribers + {publishers} publishers, {rate}/s for {:.0}s)",
        duration.as_secs_f64()
    );
    println!("sent          {sent}");
    println!(
        "delivered     {delivered} of {expected} ({:.3} % lost)",
        loss * 100.0
    );
    println!(
        "deliveries/s  {:.0} (expected {:.0})",
        delivered as f64 / elapsed,
        expected as f64 / elapsed
    );
    println!(
        "latency ms    p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        ms(1.0)
    );
    println!(
        "{}",
        serde_json::json!({
            "scenario": "lobby", "subscribers": subscribers, "publishers": publishers, "rate": rate,
            "seconds": elapsed, "sent": sent, "expected": expected, "delivered": delivered, "loss": loss,
            "deliveries_per_sec": delivered as f64 / elapsed,
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": ms(1.0)},
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_loaded() {
        assert!(loopback("127.0.0.1:8080").is_ok());
        assert!(loopback("[::1]:8080").is_ok());
        assert!(loopback("localhost:8080").is_ok());
        assert!(loopback("10.0.0.1:80").is_err());
        assert!(loopback("192.168.1.1:80").is_err());
    }

    #[test]
    fn durations_read_like_the_services_settings() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }
}
