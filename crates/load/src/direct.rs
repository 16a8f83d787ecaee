//! `direct`: P pairs, each sender sending acked direct messages to its
//! receiver at a share of the total rate R. Senders connect to the first
//! target, receivers to the last, so with two gateways every message crosses
//! Redis. Reports send→ack and send→delivery latency, and loss: messages
//! acked but never delivered.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Latency, Report, loss};
use crate::target::{Target, Ws};
use crate::{body_stamp, frame_type, next_text, open_many, send_phase, settle, stamped};

/// A direct-message run.
#[derive(clap::Args)]
#[group(skip)] // the fields join the subcommand's own
pub struct Direct {
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 500)]
    pub pairs: usize,
    /// Messages per second over all senders.
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Body bytes (at least the 24-byte stamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
}

/// Runs it.
pub async fn run(targets: &[Target], spec: Direct) -> anyhow::Result<Report> {
    let prefix = crate::run_prefix();
    let first = &targets[0];
    let last = &targets[targets.len() - 1];
    let pairs = spec.pairs.max(1);
    // Receivers first, so nothing sent waits in an offline list.
    let receivers = open_many(pairs, None, 32, |i| {
        last.user_owned(format!("{prefix}d{i}"))
    })
    .await
    .all()?;
    let senders = open_many(pairs, None, 32, |i| {
        first.user_owned(format!("{prefix}s{i}"))
    });
    let senders = senders.await;
    let connect_seconds = senders.seconds;
    let senders = senders.all()?;

    let counts = Arc::new(Counts::default());
    let (stop, stopped) = watch::channel(false);
    let mut delivery_readers = Vec::new();
    for socket in receivers {
        delivery_readers.push(tokio::spawn(deliveries(
            socket,
            Arc::clone(&counts),
            stopped.clone(),
        )));
    }
    let per_sender = (spec.rate as f64 / pairs as f64).max(0.1);
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    let started = Instant::now();
    let mut ack_readers = Vec::new();
    let mut writers = Vec::new();
    for (i, socket) in senders.into_iter().enumerate() {
        let (mut sink, stream) = socket.split();
        ack_readers.push(tokio::spawn(acks(
            stream,
            Arc::clone(&counts),
            stopped.clone(),
        )));
        let counts = Arc::clone(&counts);
        let to = format!("{prefix}d{i}");
        let (duration, size) = (spec.duration, spec.size.max(24));
        writers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            // Spread the senders' ticks over one interval.
            tokio::time::sleep(interval.mul_f64(i as f64 / pairs as f64)).await;
            let mut n: u64 = 0;
            while started.elapsed() < duration {
                tick.tick().await;
                let frame = serde_json::json!({
                    "type": "send", "id": n.to_string(), "to": to, "body": stamped(n, size)
                })
                .to_string();
                if sink.send(Message::text(frame)).await.is_err() {
                    break;
                }
                counts.sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            sink
        }));
    }
    let sinks = send_phase(started, spec.duration, writers).await?;
    let send_seconds = started.elapsed().as_secs_f64();
    settle(Duration::from_secs(3), || {
        let sent = counts.sent.load(Ordering::Relaxed);
        let answered =
            counts.acked.load(Ordering::Relaxed) + counts.refused.load(Ordering::Relaxed);
        let delivered = counts.delivered.load(Ordering::Relaxed);
        (
            answered + delivered,
            answered >= sent && delivered >= counts.acked.load(Ordering::Relaxed),
        )
    })
    .await;
    let _ = stop.send(true);
    let mut ack_latency = Latency::default();
    for reader in ack_readers {
        ack_latency.merge(&reader.await?);
    }
    let mut delivery_latency = Latency::default();
    for reader in delivery_readers {
        delivery_latency.merge(&reader.await?);
    }
    for mut sink in sinks {
        let _ = sink.close().await;
    }

    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (sent, acked, refused, delivered, duplicates) = (
        get(&counts.sent),
        get(&counts.acked),
        get(&counts.refused),
        get(&counts.delivered),
        get(&counts.duplicates),
    );
    let lost = acked.saturating_sub(delivered);
    let mut report = Report::new("direct");
    report
        .row(
            "setup",
            format!(
                "{pairs} pairs, senders on {} and receivers on {} ({} target(s)); {connect_seconds:.1}s for the senders",
                first.base(),
                last.base(),
                targets.len()
            ),
        )
        .row(
            "offered",
            format!("{}/s for {:.0}s", spec.rate, spec.duration.as_secs_f64()),
        )
        .row(
            "sent",
            format!("{sent}, acked {acked}, refused {refused} ({:.0} acked/s)", acked as f64 / send_seconds),
        )
        .row(
            "delivered",
            format!(
                "{delivered} distinct, {duplicates} duplicates, {lost} acked but lost ({:.3} %)",
                loss(delivered.min(acked), acked) * 100.0
            ),
        )
        .latency("send→ack", "ack_ms", &ack_latency)
        .latency("send→delivery", "delivery_ms", &delivery_latency)
        .field("targets", targets.len())
        .field("pairs", pairs)
        .field("rate", spec.rate)
        .field("seconds", send_seconds)
        .field("sent", sent)
        .field("acked", acked)
        .field("refused", refused)
        .field("delivered", delivered)
        .field("duplicates", duplicates)
        .field("lost", lost)
        .field("acked_per_sec", acked as f64 / send_seconds);
    Ok(report)
}

/// A sender's incoming side: acks (timed from the stamp they echo) and errors.
async fn acks(
    mut stream: futures_util::stream::SplitStream<Ws>,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) -> Latency {
    let mut latency = Latency::default();
    while let Some(text) = next_text(&mut stream, &mut stop).await {
        match frame_type(&text) {
            Some("ack") => {
                if let Some((sent, _)) = body_stamp(&text) {
                    latency.since(sent);
                }
                counts.acked.fetch_add(1, Ordering::Relaxed);
            }
            Some("error") => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    latency
}

/// A receiver: distinct messages by their sequence number, and their latency.
async fn deliveries(
    mut socket: Ws,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) -> Latency {
    let mut latency = Latency::default();
    let mut seen = HashSet::new();
    while let Some(text) = next_text(&mut socket, &mut stop).await {
        if frame_type(&text) != Some("message") {
            continue;
        }
        if let Some((sent, n)) = body_stamp(&text) {
            if seen.insert(n) {
                latency.since(sent);
                counts.delivered.fetch_add(1, Ordering::Relaxed);
            } else {
                counts.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let _ = socket.close(None).await;
    latency
}
