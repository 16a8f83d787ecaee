//! `mixed`: a day in miniature. Many idle users hold typed connections and
//! some of them reconnect all the time (churn); a few active users sit in
//! rooms of 50 and send room messages and direct messages to each other.
//! Some receivers roam: they only get direct messages and keep reconnecting
//! with `?since=`. Reports room deliveries against expected, DMs acked
//! against delivered (roaming receivers apart), latencies, and how the
//! reconnects went.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Latency, Report, loss};
use crate::target::{Target, Ws};
use crate::{body_stamp, frame_type, next_text, open_many, settle, stamped};

/// A mixed run.
#[derive(Clone, Copy, clap::Args)]
#[group(skip)] // the fields join the subcommand's own
pub struct Mixed {
    /// Idle users: connected, doing nothing.
    #[arg(long, default_value_t = 2000)]
    pub idle: usize,
    /// Active users (at most 999).
    #[arg(long, default_value_t = 200)]
    pub active: usize,
    /// Members per room (active users only).
    #[arg(long, default_value_t = 50)]
    pub room_size: usize,
    /// Room messages per second per active user.
    #[arg(long, default_value_t = 1.0)]
    pub room_rate: f64,
    /// Direct messages per second per active user.
    #[arg(long, default_value_t = 1.0)]
    pub dm_rate: f64,
    /// Idle users reconnecting per second.
    #[arg(long, default_value_t = 20.0)]
    pub churn: f64,
    /// Users who only receive direct messages and keep reconnecting (to
    /// any target, with `?since=` their last sequence number): the audit of
    /// what reaches a receiver whose connection comes and goes.
    #[arg(long, default_value_t = 20)]
    pub roaming: usize,
    /// Roaming users reconnecting per second.
    #[arg(long, default_value_t = 5.0)]
    pub roam_churn: f64,
    /// How long.
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    pub duration: Duration,
}

/// Sequence numbers are `sender × SPAN + n`, so they are unique per run.
const SPAN: u64 = 100_000;

#[derive(Default)]
struct Counts {
    room_acked: AtomicU64,
    room_expected: AtomicU64,
    room_delivered: AtomicU64,
    dm_acked: AtomicU64,
    dm_delivered: AtomicU64,
    dm_duplicates: AtomicU64,
    refused: AtomicU64,
    sent: AtomicU64,
    roam_acked: AtomicU64,
    roam_delivered: AtomicU64,
    roam_copies: AtomicU64,
    roam_reconnects: AtomicU64,
    roam_failures: AtomicU64,
}

/// Runs it.
pub async fn run(targets: &[Target], spec: Mixed) -> anyhow::Result<Report> {
    if spec.active == 0 || spec.active >= 1000 {
        bail!("--active must be between 1 and 999");
    }
    let prefix = crate::run_prefix();
    let pick = |i: usize| &targets[i % targets.len()];
    let idle = open_many(spec.idle, None, 32, |i| {
        pick(i).user_owned(format!("{prefix}i{i}"))
    })
    .await
    .all()?;
    let room_size = spec.room_size.max(2);
    let room_of = |a: usize| format!("{prefix}g{}", a / room_size);
    let members_of = |a: usize| {
        let first = a / room_size * room_size;
        (spec.active - first).min(room_size) as u64
    };
    let active = open_many(spec.active, None, 32, |a| {
        let (target, user, room) = (pick(a + 1), format!("{prefix}a{a}"), room_of(a));
        async move {
            let mut ws = target.user(&user).await?;
            crate::fanout::join(&mut ws, &room).await?;
            Ok(ws)
        }
    })
    .await
    .all()?;

    let counts = Arc::new(Counts::default());
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (a, ws) in active.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        readers.push(tokio::spawn(active_reader(
            stream,
            format!("\"from\":\"{prefix}a{a}\""),
            format!("\"to\":\"{prefix}w"),
            members_of(a),
            Arc::clone(&counts),
            stopped.clone(),
        )));
        writers.push(tokio::spawn(active_writer(
            sink,
            a,
            room_of(a),
            prefix.clone(),
            spec,
            Arc::clone(&counts),
            started,
        )));
    }

    // Roaming receivers: each a task that reconnects whenever poked.
    let shared: Arc<Vec<Target>> = Arc::new(targets.to_vec());
    let mut roamers = Vec::new();
    for r in 0..spec.roaming {
        let (poke, poked) = tokio::sync::mpsc::channel::<()>(1);
        roamers.push((
            poke,
            tokio::spawn(roam(
                Arc::clone(&shared),
                format!("{prefix}w{r}"),
                poked,
                Arc::clone(&counts),
                stopped.clone(),
            )),
        ));
    }

    // Idle users: each held by a task that drains its socket until told to stop.
    let mut holders: Vec<(watch::Sender<bool>, JoinHandle<()>)> =
        idle.into_iter().map(spawn_holder).collect();
    let (mut reconnected, mut failed) = (0u64, Vec::new());
    let mut reconnect = Latency::default();
    let churn_every = Duration::from_secs_f64(1.0 / spec.churn.max(0.001));
    let mut next_churn = Instant::now() + churn_every;
    let roam_every = Duration::from_secs_f64(1.0 / spec.roam_churn.max(0.001));
    let mut next_roam = Instant::now() + roam_every;
    let progress = indicatif::ProgressBar::new(spec.duration.as_secs().max(1));
    while started.elapsed() < spec.duration {
        tokio::time::sleep(Duration::from_millis(20)).await;
        progress.set_position(started.elapsed().as_secs());
        while spec.roam_churn > 0.0 && !roamers.is_empty() && Instant::now() >= next_roam {
            next_roam += roam_every;
            // A full channel means that roamer is already about to reconnect.
            let _ = roamers[fastrand::usize(..roamers.len())].0.try_send(());
        }
        while spec.churn > 0.0 && !holders.is_empty() && Instant::now() >= next_churn {
            next_churn += churn_every;
            let i = fastrand::usize(..holders.len());
            let (stop, task) = holders.swap_remove(i);
            let _ = stop.send(true);
            let _ = task.await;
            let began = Instant::now();
            match pick(fastrand::usize(..targets.len()))
                .user(&format!("{prefix}i{i}"))
                .await
            {
                Ok(ws) => {
                    reconnect.record(began.elapsed().as_micros() as u64);
                    reconnected += 1;
                    holders.push(spawn_holder(ws));
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
    }
    progress.finish_and_clear();
    let mut sinks = Vec::new();
    for writer in writers {
        sinks.push(writer.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    settle(Duration::from_secs(3), || {
        let (room, dm) = (get(&counts.room_delivered), get(&counts.dm_delivered));
        let acked = get(&counts.room_acked) + get(&counts.dm_acked) + get(&counts.refused);
        (
            room + dm + acked,
            acked + get(&counts.roam_acked) >= get(&counts.sent)
                && room >= get(&counts.room_expected)
                && dm >= get(&counts.dm_acked)
                && get(&counts.roam_delivered) >= get(&counts.roam_acked),
        )
    })
    .await;
    let _ = stop.send(true);
    let (mut room_latency, mut dm_latency) = (Latency::default(), Latency::default());
    for reader in readers {
        let (room, dm) = reader.await?;
        room_latency.merge(&room);
        dm_latency.merge(&dm);
    }
    for mut sink in sinks {
        let _ = sink.close().await;
    }
    for (stop, task) in holders {
        let _ = stop.send(true);
        let _ = task.await;
    }
    let mut roam_latency = Latency::default();
    for (_, task) in roamers {
        roam_latency.merge(&task.await?);
    }

    let (room_expected, room_delivered) = (get(&counts.room_expected), get(&counts.room_delivered));
    let (dm_acked, dm_delivered) = (get(&counts.dm_acked), get(&counts.dm_delivered));
    let dm_lost = dm_acked.saturating_sub(dm_delivered);
    let (roam_acked, roam_delivered) = (get(&counts.roam_acked), get(&counts.roam_delivered));
    let roam_lost = roam_acked.saturating_sub(roam_delivered);
    let mut report = Report::new("mixed");
    report
        .row(
            "users",
            format!(
                "{} idle, {} active in rooms of {room_size}, on {} target(s)",
                spec.idle,
                spec.active,
                targets.len()
            ),
        )
        .row(
            "offered",
            format!(
                "per active user {}/s to the room + {}/s direct; {}/s idle reconnects; {:.0}s",
                spec.room_rate,
                spec.dm_rate,
                spec.churn,
                spec.duration.as_secs_f64()
            ),
        )
        .row(
            "room",
            format!(
                "{} acked, {room_delivered} of {room_expected} deliveries ({:.3} % lost)",
                get(&counts.room_acked),
                loss(room_delivered.min(room_expected), room_expected) * 100.0
            ),
        )
        .row(
            "direct",
            format!(
                "{dm_acked} acked, {dm_delivered} delivered, {dm_lost} lost, {} duplicates",
                get(&counts.dm_duplicates)
            ),
        )
        .row(
            "roaming",
            format!(
                "{} receivers, {} reconnects ({} failed): {roam_acked} acked to them, {roam_delivered} delivered, {roam_lost} lost, {} extra copies dropped by id",
                spec.roaming,
                get(&counts.roam_reconnects),
                get(&counts.roam_failures),
                get(&counts.roam_copies)
            ),
        )
        .row("refused", get(&counts.refused).to_string())
        .row(
            "reconnects",
            format!(
                "{reconnected} ok, {} failed{}",
                failed.len(),
                failed
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        )
        .latency("room delivery", "room_ms", &room_latency)
        .latency("direct delivery", "direct_ms", &dm_latency)
        .latency("reconnect", "reconnect_ms", &reconnect)
        .latency("roaming delivery", "roam_ms", &roam_latency)
        .field("roam_acked", roam_acked)
        .field("roam_delivered", roam_delivered)
        .field("roam_lost", roam_lost)
        .field("roam_copies", get(&counts.roam_copies))
        .field("roam_reconnects", get(&counts.roam_reconnects))
        .field("roam_failures", get(&counts.roam_failures))
        .field("targets", targets.len())
        .field("seconds", seconds)
        .field("room_expected", room_expected)
        .field("room_delivered", room_delivered)
        .field("dm_acked", dm_acked)
        .field("dm_delivered", dm_delivered)
        .field("dm_lost", dm_lost)
        .field("dm_duplicates", get(&counts.dm_duplicates))
        .field("refused", get(&counts.refused))
        .field("reconnects", reconnected)
        .field("reconnects_failed", failed.len());
    Ok(report)
}

fn spawn_holder(mut ws: Ws) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                message = ws.next() => if !matches!(message, Some(Ok(_))) { return },
            }
        }
        let _ = ws.close(None).await;
    });
    (stop, task)
}

async fn active_writer(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    me: usize,
    room: String,
    prefix: String,
    spec: Mixed,
    counts: Arc<Counts>,
    started: Instant,
) -> futures_util::stream::SplitSink<Ws, Message> {
    let rate = spec.room_rate + spec.dm_rate;
    let (duration, active, room_share) = (
        spec.duration,
        spec.active,
        spec.room_rate / rate.max(f64::MIN_POSITIVE),
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Spread the users' ticks.
    tokio::time::sleep(Duration::from_secs_f64(fastrand::f64() / rate.max(0.001))).await;
    let mut n = 0u64;
    while started.elapsed() < duration && n < SPAN {
        tick.tick().await;
        let body = stamped(me as u64 * SPAN + n, 48);
        let frame = if (active < 2 && spec.roaming == 0) || fastrand::f64() < room_share {
            serde_json::json!({"type": "send", "id": n.to_string(), "room": room, "body": body})
        } else if spec.roaming > 0 && (active < 2 || fastrand::bool()) {
            let to = format!("{prefix}w{}", fastrand::usize(..spec.roaming));
            serde_json::json!({"type": "send", "id": n.to_string(), "to": to, "body": body})
        } else {
            let mut to = fastrand::usize(..active - 1);
            if to >= me {
                to += 1;
            }
            serde_json::json!({"type": "send", "id": n.to_string(), "to": format!("{prefix}a{to}"), "body": body})
        };
        if sink.send(Message::text(frame.to_string())).await.is_err() {
            break;
        }
        counts.sent.fetch_add(1, Ordering::Relaxed);
        n += 1;
    }
    sink
}

/// An active user's incoming side: acks of its own sends, room messages
/// (its own included, as rooms include the sender) and direct messages to it
/// (deduplicated by sequence number).
async fn active_reader(
    mut stream: futures_util::stream::SplitStream<Ws>,
    from_me: String,
    to_roaming: String,
    room_members: u64,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) -> (Latency, Latency) {
    let (mut room, mut direct) = (Latency::default(), Latency::default());
    let mut seen = HashSet::new();
    while let Some(text) = next_text(&mut stream, &mut stop).await {
        let to_room = text.contains("\"room\":");
        match frame_type(&text) {
            Some("ack") if to_room => {
                counts.room_acked.fetch_add(1, Ordering::Relaxed);
                counts
                    .room_expected
                    .fetch_add(room_members, Ordering::Relaxed);
            }
            Some("ack") if text.contains(&to_roaming) => {
                counts.roam_acked.fetch_add(1, Ordering::Relaxed);
            }
            Some("ack") => {
                counts.dm_acked.fetch_add(1, Ordering::Relaxed);
            }
            Some("error") => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
            }
            Some("message") => {
                let Some((sent, n)) = body_stamp(&text) else {
                    continue;
                };
                if to_room {
                    room.since(sent);
                    counts.room_delivered.fetch_add(1, Ordering::Relaxed);
                } else if text.contains(&from_me) {
                    // The copy of its own message every connection of the
                    // sender gets: not a delivery.
                } else if seen.insert(n) {
                    direct.since(sent);
                    counts.dm_delivered.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.dm_duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
    (room, direct)
}

/// A roaming receiver: connects to a random target with `?since=` the last
/// sequence number it saw, keeps every direct message it gets (dropping
/// copies by their sequence number), and reconnects whenever poked, until
/// stopped.
async fn roam(
    targets: Arc<Vec<Target>>,
    user: String,
    mut poked: tokio::sync::mpsc::Receiver<()>,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) -> Latency {
    let mut latency = Latency::default();
    let mut seen = HashSet::new();
    let mut since = 0u64;
    let mut first = true;
    while !*stop.borrow() {
        let target = &targets[fastrand::usize(..targets.len())];
        let mut ws = match target.user_since(&user, since).await {
            Ok(ws) => ws,
            Err(_) => {
                counts.roam_failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !first {
            counts.roam_reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        loop {
            let message = tokio::select! {
                _ = stop.changed() => break,
                Some(()) = poked.recv() => break,
                message = ws.next() => message,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                _ => break,
            };
            if frame_type(&text) != Some("message") {
                continue;
            }
            if let Some(seq) = seq_of(&text) {
                since = since.max(seq);
            }
            let Some((sent, n)) = body_stamp(&text) else {
                continue;
            };
            if seen.insert(n) {
                latency.since(sent);
                counts.roam_delivered.fetch_add(1, Ordering::Relaxed);
            } else {
                counts.roam_copies.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = ws.close(None).await;
    }
    latency
}

/// The `seq` of a typed message frame (`"seq":` then digits).
fn seq_of(frame: &str) -> Option<u64> {
    const SEQ: &str = "\"seq\":";
    let at = frame.find(SEQ)? + SEQ.len();
    let digits: String = frame[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
