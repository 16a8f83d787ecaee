//! One connection's task: hand each client message to the connection,
//! write what comes back, and say goodbye in order.

use std::time::Instant;

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
    let mut catching_up = true;
    let mut started = Instant::now();
    let close = loop {
        match socket.next(work.as_mut(), catching_up).await {
            Event::Message(message) => {
                // No work in flight (the socket reads only then): the
                // connection is idle.
                let Some(connection) = idle.take() else {
                    break None;
                };
                started = Instant::now();
                work = Some(connection.handle(message).boxed());
            }
            Event::Done((connection, outcome)) => {
                work = None;
                idle = Some(connection);
                if !catching_up {
                    metrics
                        .frame_handling
                        .observe(started.elapsed().as_secs_f64());
                }
                catching_up = false;
                match outcome {
                    Outcome::Continue => {}
                    Outcome::Write(frames) => {
                        if socket.write_all(frames).await.is_err() {
                            break None;
                        }
                    }
                    Outcome::Close(reason) => break Some(reason),
                }
            }
            Event::End(reason) => break reason,
        }
    };
    debug!(endpoint, ?close, "connection ending");
    if let Some(work) = work.take() {
        idle = Some(work.await.0);
    }
    gauge.dec();
    socket.close(close).await;
    if let Some(online) = online {
        online.leave().await;
    }
    drop(idle);
}
