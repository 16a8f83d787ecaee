//! `lobby` and `room`: N subscribers, publishers at a total rate R; every
//! member receives every frame (the sender too). Reports deliveries per
//! second against expected, loss, and delivery latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Latency, Report, loss};
use crate::target::{Refusal, Target, Ws};
use crate::{body_stamp, frame_type, next_text, open_many, send_phase, settle, stamp, stamped};

/// Where the frames go.
#[derive(Clone)]
pub enum Audience {
    /// `/ws/`: raw text frames to everyone.
    Lobby,
    /// A room of typed user connections (`join`, then `send` with `room`).
    Room(String),
}

/// A fan-out run.
pub struct Fanout {
    /// Lobby or a room.
    pub audience: Audience,
    /// Receiving connections.
    pub subscribers: usize,
    /// Sending connections (members too).
    pub publishers: usize,
    /// Frames per second over all publishers.
    pub rate: u64,
    /// How long to publish.
    pub duration: Duration,
    /// Payload bytes (at least the 24-byte stamp).
    pub size: usize,
}

/// Runs it, connections spread over `targets` in turn.
pub async fn run(targets: &[Target], spec: Fanout) -> anyhow::Result<Report> {
    let members = spec.subscribers + spec.publishers;
    let prefix = crate::run_prefix();
    let audience = &spec.audience;
    let sockets = open_many(members, None, 32, |i| {
        let target = &targets[i % targets.len()];
        let user = format!("{prefix}r{i}");
        async move {
            match audience {
                Audience::Lobby => target.lobby().await,
                Audience::Room(room) => {
                    let mut ws = target.user(&user).await?;
                    join(&mut ws, room).await?;
                    Ok(ws)
                }
            }
        }
    })
    .await;
    let connect_seconds = sockets.seconds;
    let sockets = sockets.all()?;

    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let (sink, stream) = socket.split();
        if i >= spec.subscribers {
            writers.push(sink);
        }
        readers.push(tokio::spawn(read(
            stream,
            spec.audience.clone(),
            Arc::clone(&delivered),
            stopped.clone(),
        )));
    }

    let sent = Arc::new(AtomicU64::new(0));
    let per_publisher = (spec.rate as f64 / spec.publishers.max(1) as f64).max(0.1);
    let interval = Duration::from_secs_f64(1.0 / per_publisher);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut sink in writers {
        let sent = Arc::clone(&sent);
        let audience = spec.audience.clone();
        let (duration, size) = (spec.duration, spec.size.max(24));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n: u64 = 0;
            while started.elapsed() < duration {
                tick.tick().await;
                let body = stamped(n, size);
                let frame = match &audience {
                    Audience::Lobby => body,
                    Audience::Room(room) => serde_json::json!({
                        "type": "send", "id": n.to_string(), "room": room, "body": body
                    })
                    .to_string(),
                };
                if sink.send(Message::text(frame)).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            sink
        }));
    }
    let sinks = send_phase(started, spec.duration, tasks).await?;
    let publish_seconds = started.elapsed().as_secs_f64();
    let expected = sent.load(Ordering::Relaxed) * members as u64;
    settle(Duration::from_secs(3), || {
        let got = delivered.load(Ordering::Relaxed);
        (got, got >= expected)
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let mut latency = Latency::default();
    for reader in readers {
        latency.merge(&reader.await?);
    }
    for mut sink in sinks {
        let _ = sink.close().await;
    }

    let sent = sent.load(Ordering::Relaxed);
    let delivered = delivered.load(Ordering::Relaxed);
    let name = match &spec.audience {
        Audience::Lobby => "lobby",
        Audience::Room(_) => "room",
    };
    let mut report = Report::new(name);
    report
        .row(
            "setup",
            format!(
                "{members} connections on {} target(s) in {connect_seconds:.1}s",
                targets.len()
            ),
        )
        .row(
            "offered",
            format!(
                "{}/s for {:.0}s by {} publisher(s), {} bytes",
                spec.rate,
                spec.duration.as_secs_f64(),
                spec.publishers,
                spec.size
            ),
        )
        .row("sent", sent.to_string())
        .row(
            "delivered",
            format!(
                "{delivered} of {expected} ({:.3} % lost)",
                loss(delivered, expected) * 100.0
            ),
        )
        .row(
            "deliveries/s",
            format!(
                "{:.0} (offered {:.0})",
                delivered as f64 / elapsed,
                expected as f64 / publish_seconds
            ),
        )
        .latency("delivery", "latency_ms", &latency)
        .field("targets", targets.len())
        .field("subscribers", spec.subscribers)
        .field("publishers", spec.publishers)
        .field("rate", spec.rate)
        .field("seconds", elapsed)
        .field("sent", sent)
        .field("expected", expected)
        .field("delivered", delivered)
        .field("loss", loss(delivered, expected))
        .field("deliveries_per_sec", delivered as f64 / elapsed);
    Ok(report)
}

/// Joins `room` and waits for `joined` (skipping the `unread` that opens a
/// user connection).
pub(crate) async fn join(ws: &mut Ws, room: &str) -> Result<(), Refusal> {
    let frame = serde_json::json!({"type": "join", "id": "j", "room": room}).to_string();
    ws.send(Message::text(frame))
        .await
        .map_err(|e| Refusal::Other(e.to_string()))?;
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return Err(Refusal::Other("no `joined` within 10 s".into())),
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match frame_type(&text) {
                    Some("joined") => return Ok(()),
                    Some("error") => return Err(Refusal::Other(format!("join refused: {text}"))),
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Refusal::Other(e.to_string())),
                None => return Err(Refusal::Other("closed before `joined`".into())),
            },
        }
    }
}

/// Counts and times the stamped frames one member receives until stopped.
async fn read(
    mut stream: futures_util::stream::SplitStream<Ws>,
    audience: Audience,
    delivered: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Latency {
    let mut latency = Latency::default();
    while let Some(text) = next_text(&mut stream, &mut stop).await {
        let stamp = match audience {
            Audience::Lobby => stamp(&text),
            Audience::Room(_) if frame_type(&text) == Some("message") => body_stamp(&text),
            Audience::Room(_) => None,
        };
        if let Some((sent, _)) = stamp {
            latency.since(sent);
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
    latency
}

/// Refuses a run whose figures could not mean anything.
pub fn check(spec: &Fanout) -> anyhow::Result<()> {
    if spec.publishers == 0 || spec.rate == 0 {
        bail!("a fan-out run needs at least one publisher and a rate above 0");
    }
    Ok(())
}
