//! A message to a room: the one script call a room `send` makes. Stored
//! once for the room (fan-out on read), so its cost must not depend on how
//! many members the room has: timed, and its Redis commands and the bytes
//! it writes to the append-only file counted, for a room of 1 member and
//! one of 10 000.
//! Needs Redis: `REDIS_URL`, or a private `redis-server` started for the run.

#![allow(clippy::expect_used)] // a failed expect is a failed test (or benchmark), with its message
#![allow(clippy::print_stdout)] // the counts are part of the benchmark's report

use chat_protocol::{ChatMessage, ServerFrame};
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::{Admission, Direct, FrameText, Limits, MessageStore, RoomSend, RoomStore};
use chat_testkit::redis::TestRedis;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MEMBERS: usize = 10_000;
/// Messages the commands and memory are averaged over.
const SAMPLE: u64 = 1_000;

fn message(room: &str, n: u64) -> RoomSend {
    let body = ChatMessage {
        seq: None,
        id: format!("01JBENCH{n:018}"),
        from: "m0".into(),
        from_name: None,
        to: None,
        room: Some(room.into()),
        body: "a message of a few words, as people write them".into(),
        media: None,
        ts: 1_764_500_000_000,
        ..Default::default()
    };
    let (head, tail) = ServerFrame::Message(body.clone()).room_template();
    RoomSend {
        room: room.into(),
        id: body.id,
        from: "m0".into(),
        client_id: format!("c{n}"),
        head,
        tail,
        envelope_header: chat_broker::envelope::text_header(),
        reply_to: None,
        as_server: false,
    }
}

/// A direct message of the same words, for comparison.
fn direct(n: u64) -> Direct {
    let frame = |seq: &str| {
        format!(
            r#"{{"type":"message"{seq},"id":"01JBENCH{n:018}","from":"m0","to":"m1","body":"a message of a few words, as people write them","ts":1764500000000}}"#
        )
    };
    Direct {
        id: format!("01JBENCH{n:018}"),
        from: "m0".into(),
        to: "m1".into(),
        client_id: Some(format!("c{n}")),
        frame: FrameText::Typed {
            head: r#"{"type":"message","seq":"#.into(),
            tail: frame("")[r#"{"type":"message""#.len()..].to_owned(),
        },
        history: frame(""),
        copy_to_sender: true,
        envelope_header: chat_broker::envelope::text_header(),
        reply_to: None,
    }
}

/// Commands run (a script's own commands included) and the append-only
/// file's size (bytes), from `INFO`.
fn counters(redis: &TestRedis) -> (i64, i64) {
    let mut conn = redis.connection().expect("connection");
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query(&mut conn)
        .expect("INFO");
    let field = |name: &str| -> i64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("total_commands_processed"), field("aof_current_size"))
}

fn room(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The store's connections start tasks on the runtime they are made in.
    let _entered = runtime.enter();
    // A private server (INFO counts every client's commands) with the
    // append-only file compose runs: what a message writes is what it adds.
    let redis = TestRedis::private_durable().expect("redis-server for the benchmark");
    let store = RedisStore::start(RedisStoreOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        limits: Limits::default(),
    })
    .expect("store");
    runtime.block_on(async {
        store
            .join_room("one", "m0", Admission::Join)
            .await
            .expect("join");
        for n in 0..MEMBERS {
            store
                .join_room("many", &format!("m{n}"), Admission::Join)
                .await
                .expect("join");
        }
    });
    let mut n = 0;
    for room in ["one", "many"] {
        // Warm: the script loaded, and both histories at their bound (so
        // every append trims one entry, as a busy room's does) and past the
        // client-id window: the two rooms differ only in their members.
        runtime.block_on(async {
            for _ in 0..Limits::DEFAULT.history_max + 1_100 {
                n += 1;
                store.append_room(message(room, n)).await.expect("sent");
            }
        });
        let (commands, written) = counters(&redis);
        runtime.block_on(async {
            for _ in 0..SAMPLE {
                n += 1;
                store.append_room(message(room, n)).await.expect("sent");
            }
        });
        let (commands_after, written_after) = counters(&redis);
        println!(
            "room of {:>6} member(s): {:.1} Redis commands and {:.0} bytes written per message",
            if room == "one" { 1 } else { MEMBERS },
            (commands_after - commands - 1) as f64 / SAMPLE as f64,
            (written_after - written) as f64 / SAMPLE as f64,
        );
    }
    // The same for a direct message (both inboxes, the conversation, the
    // unread counter), warmed the same way.
    runtime.block_on(async {
        for _ in 0..Limits::DEFAULT.history_max + 1_100 {
            n += 1;
            store.append_direct(direct(n)).await.expect("sent");
        }
    });
    let (commands, written) = counters(&redis);
    runtime.block_on(async {
        for _ in 0..SAMPLE {
            n += 1;
            store.append_direct(direct(n)).await.expect("sent");
        }
    });
    let (commands_after, written_after) = counters(&redis);
    println!(
        "direct message:             {:.1} Redis commands and {:.0} bytes written per message",
        (commands_after - commands - 1) as f64 / SAMPLE as f64,
        (written_after - written) as f64 / SAMPLE as f64,
    );
    let mut group = c.benchmark_group("redis room");
    group.throughput(Throughput::Elements(1));
    for (room, label) in [
        ("one", "message, room of 1"),
        ("many", "message, room of 10 000"),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                n += 1;
                runtime
                    .block_on(store.append_room(message(room, n)))
                    .expect("sent")
            })
        });
    }
    group.bench_function("direct message, for comparison", |b| {
        b.iter(|| {
            n += 1;
            runtime
                .block_on(store.append_direct(direct(n)))
                .expect("sent")
        })
    });
    group.finish();
}

criterion_group!(benches, room);
criterion_main!(benches);
