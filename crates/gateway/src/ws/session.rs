//! One connection's task: hand each client message to the connection,
//! write what comes back, and say goodbye in order.

use std::collections::VecDeque;
use std::time::Instant;

use actix_ws::CloseReason;
use chat_broker::envelope::Control;
use chat_protocol::ServerFrame;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tracing::debug;

use super::connection::{Connection, Frame};
use super::handler::Outcome;
use super::presence::Online;
use super::socket::{Event, Socket};
use super::sync::Replay;
use crate::metrics::GatewayMetrics;

type Work = BoxFuture<'static, (Connection, Outcome)>;

/// How many frames of one connection may wait in the store's queue
/// ([`Outcome::Queued`]) before the next is read: a client's burst of
/// direct messages is written together (the embedded store commits them
/// in one transaction) instead of one per round trip.
const QUEUED_MAX: usize = 64;

/// Runs the connection to its end. First the catch-up (its frames go out
/// before anything live queued meanwhile), then one message at a time; the
/// socket keeps writing deliveries while a message is being handled.
///
/// Direct `send`s are the exception: once one has its place in the store
/// ([`Outcome::Queued`]), the next frame is read, and while it is a direct
/// `send` too it is handled at once (up to [`QUEUED_MAX`] waiting). Their
/// answers go out in their frames' order; any other frame, and any control,
/// waits until every queued one is answered, so frames are still answered
/// in order and handled after what came before them is stored.
///
/// At the end: the queued frames and the work in flight finish (their
/// answers go out before the close), the socket closes, the connection is
/// counted out (retried until it lands), and only then unsubscribed — a
/// message in between is kept offline and also delivered (a duplicate),
/// never neither.
pub(crate) async fn run(
    mut socket: Socket,
    connection: Connection,
    replay: Replay,
    online: Option<Online>,
    metrics: GatewayMetrics,
    endpoint: &'static str,
) {
    let gauge = metrics.connections.with_label_values(&[endpoint]);
    gauge.inc();
    let mut idle: Option<Connection> = None;
    let mut work: Option<Work> = Some(connection.catch_up(replay).boxed());
    // Live deliveries wait while the work in flight writes what must come
    // before them: the catch-up, or a room's entries as it is followed.
    let mut hold_outbound = true;
    // A client frame is in flight (timed), not a catch-up or a control.
    let mut timing = false;
    let mut started = Instant::now();
    // Controls that came while something was in flight, applied in order
    // before the next client frame is read.
    let mut controls: VecDeque<Control> = VecDeque::new();
    // Queued frames still to be answered, oldest first, and a frame read
    // meanwhile that must wait until they are (with when it was read).
    let mut queued: VecDeque<BoxFuture<'static, ()>> = VecDeque::new();
    let mut parked: Option<(Frame, Instant)> = None;
    let close = loop {
        if queued.is_empty() && (parked.is_some() || !controls.is_empty()) && idle.is_some() {
            if controls.is_empty() {
                // The queued sends' answers go out before the frame that
                // waited for them, as they would before any frame is read
                // (its answer may be written straight to the socket).
                match socket.flush().await {
                    Ok(held) => controls.extend(held),
                    Err(end) => break end,
                }
            }
            if let Some((next, read_at)) = next_work(&mut idle, &mut controls, &mut parked) {
                work = Some(next);
                (started, timing) = (read_at.unwrap_or_else(Instant::now), read_at.is_some());
            }
        }
        // Waiting controls stop the reading: the queued sends are answered,
        // then the controls applied (a removal closes the connection), even
        // when the client keeps sending.
        let read =
            idle.is_some() && parked.is_none() && controls.is_empty() && queued.len() < QUEUED_MAX;
        match socket
            .next(work.as_mut(), queued.front_mut(), hold_outbound, read)
            .await
        {
            Event::Message(message) => {
                // No work in flight (the socket reads only then): the
                // connection is idle.
                let Some(connection) = idle.take() else {
                    break None;
                };
                let frame = connection.read(message);
                if queued.is_empty() || frame.queues() {
                    started = Instant::now();
                    timing = true;
                    let defer = !queued.is_empty();
                    work = Some(connection.handle(frame, defer).boxed());
                } else {
                    parked = Some((frame, Instant::now()));
                    idle = Some(connection);
                }
            }
            Event::Answered => {
                queued.pop_front();
            }
            // Applied at the top of the loop once nothing is in flight.
            Event::Control(control) => controls.push_back(control),
            Event::Done((connection, outcome)) => {
                work = None;
                if let Outcome::Queued(answer) = outcome {
                    // Timed until it is answered.
                    let handling = metrics.frame_handling.clone();
                    queued.push_back(Box::pin(async move {
                        answer.await;
                        handling.observe(started.elapsed().as_secs_f64());
                    }));
                    timing = false;
                    idle = Some(connection);
                    continue;
                }
                if timing {
                    metrics
                        .frame_handling
                        .observe(started.elapsed().as_secs_f64());
                    timing = false;
                }
                hold_outbound = false;
                if let Outcome::Follow { id, room, seq } = outcome {
                    // What was queued before (a `left` of the same room,
                    // say) goes out before `joined` and the replay, which
                    // are written straight to the socket.
                    match socket.flush().await {
                        Ok(held) => controls.extend(held),
                        Err(end) => break end,
                    }
                    work = Some(connection.follow(id, room, seq).boxed());
                    hold_outbound = true;
                    continue;
                }
                // The next control, or the frame that waited, starts at
                // the top of the loop.
                idle = Some(connection);
                if let Err(end) = write(&mut socket, outcome).await {
                    break end;
                }
            }
            Event::End(reason) => break reason,
        }
    };
    debug!(endpoint, ?close, "connection ending");
    // The queued frames, the frame in flight and one that waited finish,
    // in order, and their answers go out before the close: their messages
    // may be stored already, and a catch-up may have taken the offline list.
    while let Some(answer) = queued.pop_front() {
        answer.await;
    }
    let mut last = Vec::new();
    if let Some(work) = work.take() {
        let (connection, outcome) = work.await;
        idle = Some(connection);
        last.extend(finish(&mut socket, outcome).await);
    }
    if let (Some((frame, _)), Some(connection)) = (parked.take(), idle.take()) {
        let (connection, outcome) = connection.handle(frame, false).await;
        idle = Some(connection);
        last.extend(finish(&mut socket, outcome).await);
    }
    gauge.dec();
    socket.close(close, last).await;
    if let Some(online) = online {
        online.leave().await;
    }
    drop(idle);
}

/// The idle connection's next work once nothing is queued: a control that
/// came meanwhile, else the frame that waited (with when it was read).
/// `None` (the connection stays idle) when there is neither.
fn next_work(
    idle: &mut Option<Connection>,
    controls: &mut VecDeque<Control>,
    parked: &mut Option<(Frame, Instant)>,
) -> Option<(Work, Option<Instant>)> {
    if controls.is_empty() && parked.is_none() {
        return None;
    }
    let connection = idle.take()?;
    Some(match controls.pop_front() {
        Some(control) => (connection.control(control).boxed(), None),
        None => {
            let (frame, read_at) = parked.take()?;
            (connection.handle(frame, false).boxed(), Some(read_at))
        }
    })
}

/// The frames a handled frame leaves for the goodbye: a queued one's
/// answer is awaited (it goes through the reply queue, which the close
/// writes first).
async fn finish(socket: &mut Socket, outcome: Outcome) -> Vec<String> {
    match outcome {
        Outcome::Queued(answer) => {
            answer.await;
            Vec::new()
        }
        outcome => last_frames(socket, outcome),
    }
}

/// Writes what a handled frame asks for ([`Outcome`]).
///
/// Errors: how the connection ends (`None`: the socket is gone).
async fn write(socket: &mut Socket, outcome: Outcome) -> Result<(), Option<CloseReason>> {
    match outcome {
        // A follow is the session loop's to carry out, a queued frame's
        // answer the queue's.
        Outcome::Continue | Outcome::Follow { .. } | Outcome::Queued(_) => Ok(()),
        Outcome::Close(reason) => Err(Some(reason)),
        written @ (Outcome::Write(_) | Outcome::Followed { .. }) => {
            let frames = last_frames(socket, written);
            socket.write_all(frames).await
        }
    }
}

/// The frames an outcome leaves to write, a followed room fenced first;
/// for a follow the close cut short, the `joined` answer (the store took
/// the `join`: the next connection follows the room from the user's rooms).
fn last_frames(socket: &mut Socket, outcome: Outcome) -> Vec<String> {
    match outcome {
        Outcome::Write(frames) => frames,
        Outcome::Followed {
            frames,
            room,
            until,
        } => {
            socket.fence(room, until);
            frames
        }
        Outcome::Follow { id, room, .. } => vec![ServerFrame::Joined { id, room }.to_json()],
        Outcome::Continue | Outcome::Close(_) | Outcome::Queued(_) => Vec::new(),
    }
}
