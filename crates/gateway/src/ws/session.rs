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

use super::connection::Connection;
use super::handler::Outcome;
use super::presence::Online;
use super::socket::{Event, Socket};
use super::sync::Replay;
use crate::metrics::GatewayMetrics;

type Work = BoxFuture<'static, (Connection, Outcome)>;

/// Runs the connection to its end. First the catch-up (its frames go out
/// before anything live queued meanwhile), then one message at a time; the
/// socket keeps writing deliveries while a message is being handled. At
/// the end: the work in flight finishes (its answers go out before the
/// close), the socket closes, the connection is counted out (retried until
/// it lands), and only then unsubscribed — a message in between is kept
/// offline and also delivered (a duplicate), never neither.
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
    let close = loop {
        match socket.next(work.as_mut(), hold_outbound).await {
            Event::Message(message) => {
                // No work in flight (the socket reads only then): the
                // connection is idle.
                let Some(connection) = idle.take() else {
                    break None;
                };
                started = Instant::now();
                timing = true;
                work = Some(connection.handle(message).boxed());
            }
            Event::Control(control) => match idle.take() {
                Some(connection) => work = Some(connection.control(control).boxed()),
                None => controls.push_back(control),
            },
            Event::Done((connection, outcome)) => {
                work = None;
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
                match controls.pop_front() {
                    Some(control) => work = Some(connection.control(control).boxed()),
                    None => idle = Some(connection),
                }
                if let Err(end) = write(&mut socket, outcome).await {
                    break end;
                }
            }
            Event::End(reason) => break reason,
        }
    };
    debug!(endpoint, ?close, "connection ending");
    // The frame in flight finishes, and its answer goes out before the
    // close: a catch-up may have taken the offline list already.
    let last = match work.take() {
        Some(work) => {
            let (connection, outcome) = work.await;
            idle = Some(connection);
            last_frames(&mut socket, outcome)
        }
        None => Vec::new(),
    };
    gauge.dec();
    socket.close(close, last).await;
    if let Some(online) = online {
        online.leave().await;
    }
    drop(idle);
}

/// Writes what a handled frame asks for ([`Outcome`]).
///
/// Errors: how the connection ends (`None`: the socket is gone).
async fn write(socket: &mut Socket, outcome: Outcome) -> Result<(), Option<CloseReason>> {
    match outcome {
        // A follow is the session loop's to carry out.
        Outcome::Continue | Outcome::Follow { .. } => Ok(()),
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
        Outcome::Continue | Outcome::Close(_) => Vec::new(),
    }
}
