//! Fan-out inside one gateway: a published frame handed to N local
//! connections' queues (what the broker's delivery callback does per frame).

#![allow(clippy::expect_used)] // a failed expect is a failed test (or benchmark), with its message

use std::sync::Arc;

use bytes::Bytes;
use chat_broker::envelope;
use chat_broker::memory::MemoryBroker;
use chat_gateway::hub::Conn;
use chat_gateway::{GatewayMetrics, Hub};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("fanout");
    for members in [10usize, 1_000] {
        let metrics = GatewayMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let hub = Hub::new(metrics);
        let handler = hub.handler();
        hub.attach(Arc::new(MemoryBroker::standalone(Arc::clone(&handler))));
        let mut queues = Vec::new();
        runtime.block_on(async {
            for _ in 0..members {
                let (conn, queue, _overflow) = Conn::new(1_024, None);
                hub.join("room:bench", &conn).await.expect("join");
                queues.push((conn, queue));
            }
        });
        let frame: Bytes = envelope::text(
            r#"{"type":"message","id":"01J","from":"a","room":"bench","body":"hello","ts":1}"#,
        );
        group.throughput(Throughput::Elements(members as u64));
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter(|| {
                handler("room:bench", frame.clone());
                // Empty the queues so every iteration does the same work.
                for (_, queue) in &mut queues {
                    while queue.try_recv().is_ok() {}
                }
            })
        });
    }
    group.finish();
}

/// Every connection of a channel leaving at once (a lobby emptied by a
/// restart or a network cut): the cost per connection must not grow with
/// the channel's size.
fn close_storm(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("leave, every connection of a channel");
    group.sample_size(10);
    for members in [1_000usize, 19_000] {
        let metrics = GatewayMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let hub = Hub::new(metrics);
        hub.attach(Arc::new(MemoryBroker::standalone(hub.handler())));
        group.throughput(Throughput::Elements(members as u64));
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, &n| {
            b.iter_batched(
                || {
                    runtime.block_on(async {
                        let mut conns = Vec::with_capacity(n);
                        for _ in 0..n {
                            let (conn, queue, _overflow) = Conn::new(4, None);
                            hub.join("lobby", &conn).await.expect("join");
                            conns.push((conn, queue));
                        }
                        conns
                    })
                },
                |conns| {
                    for (conn, _) in &conns {
                        hub.leave("lobby", conn.id());
                    }
                    conns
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, fanout, close_storm);
criterion_main!(benches);
