//! WebSocket framing errors are told apart from hang-ups: every protocol
//! error the WebSocket layer reports ends the connection with its close
//! code (RFC 6455 §7.4.1), on the lobby and on user connections, and is
//! counted in `chat_gateway_frame_errors_total{code}`; only a real end of
//! the stream is a hang-up, and what was sent before it is still handled.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

mod support;

use chat_testkit::http_get;
use chat_testkit::raw::{End, Frame, RawWs, opcode};
use chat_testkit::ws::WsClient;
use support::{Cluster, settings};

/// The largest frame the gateways under test take.
const MAX: usize = 4096;

/// One kind of bad framing, and the close code it must get.
struct Row {
    what: &'static str,
    frames: Vec<Frame>,
    code: u16,
}

fn rows() -> Vec<Row> {
    let text = |payload: &[u8]| Frame::new(opcode::TEXT, payload);
    let cont = |payload: &[u8]| Frame::new(opcode::CONTINUATION, payload);
    let half = vec![b'x'; MAX / 2 + 1];
    vec![
        Row {
            what: "one frame over the limit",
            frames: vec![text(&vec![b'x'; MAX + 1])],
            code: 1009,
        },
        Row {
            what: "a text message over the limit in fragments",
            frames: vec![text(&half).more(), cont(&half).more(), cont(b"end")],
            code: 1009,
        },
        Row {
            what: "a binary message over the limit in fragments",
            frames: vec![Frame::new(opcode::BINARY, half.clone()).more(), cont(&half)],
            code: 1009,
        },
        Row {
            what: "text that is not UTF-8",
            frames: vec![text(&[b'h', 0xff, 0xfe])],
            code: 1007,
        },
        Row {
            what: "text fragments that join into bad UTF-8",
            frames: vec![text(&[0xe2, 0x82]).more(), cont(&[0x28])],
            code: 1007,
        },
        Row {
            what: "RSV1 set with no extension",
            frames: vec![text(b"hi").rsv(0b100)],
            code: 1002,
        },
        Row {
            what: "RSV2 set",
            frames: vec![text(b"hi").rsv(0b010)],
            code: 1002,
        },
        Row {
            what: "RSV3 set",
            frames: vec![text(b"hi").rsv(0b001)],
            code: 1002,
        },
        Row {
            what: "a reserved data opcode",
            frames: vec![Frame::new(opcode::RESERVED_DATA, b"hi".as_slice())],
            code: 1002,
        },
        Row {
            what: "a reserved control opcode",
            frames: vec![Frame::new(opcode::RESERVED_CONTROL, b"".as_slice())],
            code: 1002,
        },
        Row {
            what: "a continuation with nothing to continue",
            frames: vec![cont(b"x")],
            code: 1002,
        },
        Row {
            what: "a new message before the last one ended",
            frames: vec![text(b"a").more(), text(b"b")],
            code: 1002,
        },
        Row {
            what: "a control frame over 125 bytes",
            frames: vec![Frame::new(opcode::PING, vec![b'p'; 126])],
            code: 1002,
        },
        Row {
            what: "an unmasked frame",
            frames: vec![text(b"hi").unmasked()],
            code: 1002,
        },
        Row {
            what: "a close frame with a one-byte payload",
            frames: vec![Frame::new(opcode::CLOSE, [0x03].as_slice())],
            code: 1002,
        },
        Row {
            what: "a close frame with a reserved code (1005)",
            frames: vec![Frame::new(opcode::CLOSE, 1005u16.to_be_bytes().as_slice())],
            code: 1002,
        },
    ]
}

/// `chat_gateway_frame_errors_total{code="…"}` on `addr`, 0 when absent.
async fn errors_counted(addr: &str, code: u16) -> u64 {
    let (_, metrics) = http_get(addr, "/metrics").await.unwrap();
    let series = format!("chat_gateway_frame_errors_total{{code=\"{code}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_error_closes_with_its_code_and_is_counted() {
    let mut s = settings();
    s.max_frame_bytes = MAX;
    let cluster = Cluster::memory(s).await;
    let addr = cluster.addr(0);
    for path in ["/ws/", "/ws/alice/"] {
        for row in rows() {
            let before = errors_counted(addr, row.code).await;
            let mut ws = RawWs::connect(addr, path).await.unwrap();
            ws.send(&row.frames).await.unwrap();
            assert_eq!(
                ws.end().await.unwrap(),
                End::Closed(row.code),
                "{} on {path}",
                row.what
            );
            assert_eq!(
                errors_counted(addr, row.code).await,
                before + 1,
                "{} on {path} is counted under {}",
                row.what,
                row.code
            );
        }
    }
}

/// A client that sends a message and hangs up (no close frame) has its
/// message handled; nothing is counted as a framing error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_is_no_framing_error_and_loses_nothing() {
    let cluster = Cluster::memory(settings()).await;
    let addr = cluster.addr(0);
    let mut listener = WsClient::lobby(addr).await.unwrap();
    let counted = |addr| async move {
        let mut all = 0;
        for code in [1002, 1007, 1009] {
            all += errors_counted(addr, code).await;
        }
        all
    };
    let before = counted(addr).await;
    let mut ws = RawWs::connect(addr, "/ws/").await.unwrap();
    ws.send(&[Frame::new(opcode::TEXT, b"last words".as_slice())])
        .await
        .unwrap();
    ws.hang_up().await.unwrap();
    assert_eq!(ws.end().await.unwrap(), End::Dropped);
    assert_eq!(listener.recv_text().await.unwrap(), "last words");
    // Fragments of one message under the limit are joined, not refused.
    let mut ws = RawWs::connect(addr, "/ws/").await.unwrap();
    ws.send(&[
        Frame::new(opcode::TEXT, b"in ".as_slice()).more(),
        Frame::new(opcode::CONTINUATION, b"three ".as_slice()).more(),
        Frame::new(opcode::CONTINUATION, b"parts".as_slice()),
    ])
    .await
    .unwrap();
    assert_eq!(listener.recv_text().await.unwrap(), "in three parts");
    assert_eq!(
        ws.next_text().await.unwrap().as_deref(),
        Some("in three parts")
    );
    assert_eq!(counted(addr).await, before, "no framing error counted");
}
