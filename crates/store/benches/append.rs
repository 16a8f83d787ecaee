//! The Redis store's append: the one script call every direct message makes
//! (both inboxes, the conversation, the unread counter, the publishes).
//! Needs Redis: `REDIS_URL`, or a private `redis-server` started for the run.

#![allow(clippy::expect_used)] // a failed expect is a failed test (or benchmark), with its message

use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::{Direct, FrameText, Limits, MessageStore};
use chat_testkit::redis::TestRedis;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let redis = TestRedis::start().expect("Redis for the benchmark");
    let store = runtime.block_on(async {
        RedisStore::start(RedisStoreOptions {
            url: redis.url().into(),
            prefix: redis.prefix().into(),
            limits: Limits::default(),
        })
        .expect("store")
    });
    let message = |n: u64| Direct {
        id: format!("01JBENCH{n:018}"),
        from: "alice".into(),
        to: "bob".into(),
        client_id: Some(format!("c{n}")),
        frame: FrameText::Typed {
            head: r#"{"type":"message","seq":"#.into(),
            tail: r#","id":"x","from":"alice","to":"bob","body":"hi","ts":1}"#.into(),
        },
        history: r#"{"id":"x","from":"alice","to":"bob","body":"hi","ts":1}"#.into(),
        copy_to_sender: true,
        envelope_header: chat_broker::envelope::text_header(),
        reply_to: None,
    };
    let mut group = c.benchmark_group("redis store");
    group.throughput(Throughput::Elements(1));
    let mut n = 0;
    group.bench_function("append, one at a time", |b| {
        b.iter(|| {
            n += 1;
            runtime
                .block_on(store.append_direct(message(n)))
                .expect("appended")
        })
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("append, 64 concurrent", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let batch: Vec<_> = (0..64)
                    .map(|_| {
                        n += 1;
                        store.append_direct(message(n))
                    })
                    .collect();
                for appended in futures_util::future::join_all(batch).await {
                    appended.expect("appended");
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
