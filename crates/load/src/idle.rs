//! `idle`: open N connections at a given rate, hold them, and report how many
//! opened, how fast, what the servers' memory grew by per connection, and —
//! with a probe — how long one lobby frame took to reach the last of them.
//!
//! With `--storm`, every held connection then closes at once (as when a
//! load balancer restarts or a network cuts) while two users exchange room
//! messages on the same gateway: the report gives their delivery latency
//! before and during the storm, so a registry that stalls while thousands
//! leave a channel shows.
//!
//! Several `chat-load idle` processes (each at most ~19 500 descriptors)
//! against several gateways make the 100 000-connection run: each waits for
//! a probe (`--probe await`) that `chat-load probe` sends once every process
//! has written its `--ready-file`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Latency, Report, rss_kib};
use crate::target::{Target, Ws};
use crate::{body_stamp, frame_type, open_many, stamp, stamped};

/// Which connections to open.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Kind {
    /// `/ws/`, the lobby.
    Lobby,
    /// `/ws/{user}`, typed user connections (each registers presence).
    Users,
}

/// What happens once everyone is connected.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Probe {
    /// Nothing: hold, then report.
    None,
    /// Send one lobby frame and time its arrival at every connection.
    Send,
    /// Wait for a lobby frame sent by someone else (`chat-load probe`).
    Await,
}

/// An idle run.
#[derive(clap::Args)]
#[group(skip)] // the fields join the subcommand's own
pub struct Idle {
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Lobby or user connections.
    #[arg(long, value_enum, default_value = "lobby")]
    pub kind: Kind,
    /// New connections per second (0: as fast as --concurrency allows).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to hold the connections (a probe ends the hold early).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub hold: Duration,
    /// After connecting: nothing, send one lobby frame, or await one from `chat-load probe`.
    #[arg(long, value_enum, default_value = "none")]
    pub probe: Probe,
    /// Server PIDs, one per --target in the same order, for RSS per connection.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// A file written once every connection is open.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Close every held connection at once, and time room messages between
    /// two other users on the first target before and during it.
    #[arg(long)]
    pub storm: bool,
}

/// How often the storm's probe sends (within the default rate limit of
/// 50 frames a second), and for how long before and after
/// the connections close.
const STORM_EVERY: Duration = Duration::from_millis(25);
const STORM_BEFORE: Duration = Duration::from_secs(1);
const STORM_AFTER: Duration = Duration::from_secs(3);
/// The sequence number of the storm probe's closing message.
const STORM_LAST: u64 = 99_999_999;

/// Runs it.
pub async fn run(targets: &[Target], spec: Idle) -> anyhow::Result<Report> {
    if !spec.pids.is_empty() && spec.pids.len() != targets.len() {
        bail!("give one --pid per --target, in the same order");
    }
    if spec.probe != Probe::None && spec.kind != Kind::Lobby {
        bail!("the probe is a lobby frame: use --kind lobby");
    }
    let rss_before: Vec<u64> = spec
        .pids
        .iter()
        .map(|p| rss_kib(*p))
        .collect::<Result<_, _>>()?;
    let prefix = crate::run_prefix();
    let kind = spec.kind;
    let rate = (spec.rate > 0).then_some(spec.rate);
    // Every connection starts reading as soon as it opens (which also
    // answers the server's pings: a connection that waited for the others
    // unread would meet the server's idle timeout); a probe frame is timed
    // and counted.
    let probed = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(Latency::default()));
    let (stop, stopped) = watch::channel(false);
    let reader = |ws: Ws| {
        tokio::spawn(hold(
            ws,
            Arc::clone(&probed),
            Arc::clone(&closed),
            Arc::clone(&latency),
            stopped.clone(),
        ))
    };
    // The probe's sender connects first, so a gateway at its cap still has
    // room for it; it reads like the others and writes once everyone is in.
    let mut probe_sender = None;
    let mut first_readers = Vec::new();
    if spec.probe == Probe::Send {
        let ws = targets[0]
            .lobby()
            .await
            .map_err(|e| anyhow::anyhow!("probe connection: {e}"))?;
        let (sink, stream) = ws.split();
        probe_sender = Some(sink);
        first_readers.push(tokio::spawn(hold(
            stream,
            Arc::clone(&probed),
            Arc::clone(&closed),
            Arc::clone(&latency),
            stopped.clone(),
        )));
    }
    let opened = open_many(spec.connections, rate, spec.concurrency, |i| {
        let target = &targets[i % targets.len()];
        let user = format!("{prefix}i{i}");
        let reader = &reader;
        async move {
            let ws = match kind {
                Kind::Lobby => target.lobby().await,
                Kind::Users => target.user(&user).await,
            }?;
            Ok(reader(ws))
        }
    })
    .await;
    let setup_seconds = opened.seconds;
    let refusals = opened.refusals();
    let refused: usize = opened.refused.values().sum();
    let mut per_target = vec![0usize; targets.len()];
    for (i, _) in &opened.ok {
        per_target[i % targets.len()] += 1;
    }
    let open = opened.ok.len();
    let mut readers = first_readers;
    readers.extend(opened.ok.into_iter().map(|(_, task)| task));
    if let Some(path) = &spec.ready_file {
        std::fs::write(path, format!("{open}\n"))?;
    }
    let storm = if spec.storm {
        Some(StormProbe::start(&targets[0], &prefix).await?)
    } else {
        None
    };
    let held_since = Instant::now();
    let mut probe_sent = false;
    if let Some(mut sink) = probe_sender {
        sink.send(Message::text(stamped(0, 64))).await?;
        probe_sent = true;
    }
    let progress = indicatif::ProgressBar::new(spec.hold.as_secs().max(1));
    let expected = readers.len() as u64;
    while held_since.elapsed() < spec.hold {
        if spec.probe != Probe::None && probed.load(Ordering::Relaxed) >= expected {
            break;
        }
        if storm.is_some() && held_since.elapsed() >= STORM_BEFORE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress.set_position(held_since.elapsed().as_secs());
    }
    progress.finish_and_clear();
    // Memory is read while every connection is still open (and, with a
    // probe, after each has handled a frame).
    let rss_after: Vec<u64> = spec
        .pids
        .iter()
        .map(|p| rss_kib(*p))
        .collect::<Result<_, _>>()?;
    // Every reader drops its connection now: all close at once.
    let stormed_at = crate::now_micros();
    let _ = stop.send(true);
    for reader in readers {
        reader.await?;
    }
    let storm = match storm {
        Some(probe) => Some(probe.finish(stormed_at).await?),
        None => None,
    };

    let probed = probed.load(Ordering::Relaxed);
    let closed = closed.load(Ordering::Relaxed);
    let latency = latency.lock().map(|l| l.clone()).unwrap_or_default();
    let mut report = Report::new("idle");
    report
        .row(
            "opened",
            format!(
                "{open} of {} ({kind:?}) on {} target(s); refused: {refusals}",
                spec.connections,
                targets.len()
            ),
        )
        .row(
            "setup",
            format!(
                "{setup_seconds:.2}s, {:.0} connections/s ({} in flight{})",
                open as f64 / setup_seconds,
                spec.concurrency,
                rate.map(|r| format!(", paced at {r}/s"))
                    .unwrap_or_default()
            ),
        )
        .row(
            "held",
            format!(
                "{:.1}s; {closed} closed by the server meanwhile",
                held_since.elapsed().as_secs_f64()
            ),
        )
        .field("connections", spec.connections)
        .field("opened", open)
        .field("refused", refused)
        .field("refusals", refusals)
        .field("setup_seconds", setup_seconds)
        .field("connections_per_sec", open as f64 / setup_seconds)
        .field("closed_by_server", closed);
    let mut per_conn = Vec::new();
    for (t, (before, after)) in rss_before.iter().zip(&rss_after).enumerate() {
        let kib = after.saturating_sub(*before) as f64 / per_target[t].max(1) as f64;
        per_conn.push(kib);
        report.row(
            &format!("server {} RSS", spec.pids[t]),
            format!(
                "{before} → {after} KiB for {} connections: {kib:.2} KiB each",
                per_target[t]
            ),
        );
    }
    report.field("rss_kib_per_connection", per_conn);
    if spec.probe != Probe::None {
        report
            .row(
                "probe",
                format!(
                    "{}reached {probed} of {expected} connections",
                    if probe_sent { "sent; " } else { "" }
                ),
            )
            .row(
                "to the last",
                format!(
                    "{:.1} ms",
                    latency.json()["max"].as_f64().unwrap_or(f64::NAN)
                ),
            )
            .latency("probe", "probe_ms", &latency)
            .field("probed", probed)
            .field("probe_expected", expected);
    }
    if let Some((before, during, lost)) = storm {
        report
            .row("probe before the storm", before.line())
            .row(
                "probe during the storm",
                format!(
                    "{} (the {STORM_AFTER:?} after {open} closed at once)",
                    during.line()
                ),
            )
            .row("probe messages lost", lost.to_string())
            .latency("storm_before", "storm_before_ms", &before)
            .latency("storm_during", "storm_during_ms", &during)
            .field("storm_lost", lost);
    }
    Ok(report)
}

/// Two users in a room of their own: one sends a stamped message every
/// [`STORM_EVERY`], the other times each one's arrival.
struct StormProbe {
    sender: tokio::task::JoinHandle<anyhow::Result<u64>>,
    receiver: tokio::task::JoinHandle<anyhow::Result<Vec<(u64, u64)>>>,
    stop: watch::Sender<bool>,
}

impl StormProbe {
    async fn start(target: &Target, prefix: &str) -> anyhow::Result<Self> {
        let room = format!("{prefix}storm");
        let room_ref = &room;
        let open = |user: String| async move {
            let mut ws = target
                .user(&user)
                .await
                .map_err(|e| anyhow::anyhow!("storm probe: {e}"))?;
            crate::fanout::join(&mut ws, room_ref)
                .await
                .map_err(|e| anyhow::anyhow!("storm probe: {e}"))?;
            anyhow::Ok(ws)
        };
        let mut sender = open(format!("{prefix}storm-a")).await?;
        let mut receiver = open(format!("{prefix}storm-b")).await?;
        let (stop, stopped) = watch::channel(false);
        let receiver = tokio::spawn(async move {
            // (sent, arrived) of every probe message.
            let mut arrivals = Vec::new();
            while let Some(message) = receiver.next().await {
                let Message::Text(text) = message? else {
                    continue;
                };
                if frame_type(&text) == Some("message")
                    && let Some((sent, n)) = body_stamp(&text)
                {
                    arrivals.push((sent, crate::now_micros()));
                    if n == STORM_LAST {
                        break;
                    }
                }
            }
            anyhow::Ok(arrivals)
        });
        let sender = tokio::spawn(async move {
            let mut tick = tokio::time::interval(STORM_EVERY);
            let mut n = 0;
            while !*stopped.borrow() {
                tick.tick().await;
                n += 1;
                let frame = serde_json::json!({
                    "type": "send", "id": n.to_string(), "room": room, "body": stamped(n, 32)
                });
                sender.send(Message::text(frame.to_string())).await?;
            }
            // The last one says so, so the receiver knows when to stop.
            let last = serde_json::json!({
                "type": "send", "id": "last", "room": room, "body": stamped(STORM_LAST, 32)
            });
            sender.send(Message::text(last.to_string())).await?;
            // Keep the connection until the receiver has it.
            let _ = tokio::time::timeout(Duration::from_secs(10), sender.next()).await;
            anyhow::Ok(n)
        });
        Ok(Self {
            sender,
            receiver,
            stop,
        })
    }

    /// Probes for [`STORM_AFTER`] more, then answers the latency of the
    /// messages sent before `stormed_at` (µs) and after, and how many of
    /// the messages sent never arrived.
    async fn finish(self, stormed_at: u64) -> anyhow::Result<(Latency, Latency, u64)> {
        tokio::time::sleep(STORM_AFTER).await;
        let _ = self.stop.send(true);
        let sent = self.sender.await??;
        let arrivals = tokio::time::timeout(Duration::from_secs(10), self.receiver)
            .await
            .map_err(|_| anyhow::anyhow!("the storm probe's last message never arrived"))???;
        let (mut before, mut during) = (Latency::default(), Latency::default());
        for (sent_at, arrived) in &arrivals {
            let latency = if *sent_at < stormed_at {
                &mut before
            } else {
                &mut during
            };
            latency.record(arrived.saturating_sub(*sent_at));
        }
        // `sent` counts the timed messages; the closing one is extra.
        let lost = (sent + 1).saturating_sub(arrivals.len() as u64);
        Ok((before, during, lost))
    }
}

/// Reads one connection until stopped; dropping it at the end ends it.
async fn hold<S>(
    mut ws: S,
    probed: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    latency: Arc<Mutex<Latency>>,
    mut stop: watch::Receiver<bool>,
) where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = ws.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let stamp = stamp(&text).or_else(|| {
                    (frame_type(&text) == Some("message"))
                        .then(|| body_stamp(&text))
                        .flatten()
                });
                if let Some((sent, _)) = stamp {
                    if let Ok(mut l) = latency.lock() {
                        l.since(sent);
                    }
                    probed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Ok(_)) => {}
            _ => {
                closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// `chat-load probe`: one stamped lobby frame, for `idle --probe await`.
pub async fn send_probe(target: &Target) -> anyhow::Result<()> {
    let mut ws = target.lobby().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    ws.send(Message::text(stamped(0, 64))).await?;
    // The lobby echoes to the sender too: its return means it was published.
    let echoed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = ws.next().await {
            if matches!(&message, Message::Text(text) if stamp(text).is_some()) {
                return true;
            }
        }
        false
    })
    .await;
    if echoed != Ok(true) {
        bail!("the probe did not come back from the lobby within 10 s");
    }
    ws.close(None).await?;
    Ok(())
}
