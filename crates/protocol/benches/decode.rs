//! Decoding one inbound frame: the first thing every client frame costs.

use chat_protocol::decode;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn frames(c: &mut Criterion) {
    let typed = r#"{"type":"send","id":"c1","to":"bob","body":"hello bob, how is the weather over there today?"}"#;
    let seed = r#"{"sender":"alice","receiver":"bob","message":"hello bob"}"#;
    let refused = r#"{"type":"send","id":"c1","to":"bob","body":7}"#;
    let mut group = c.benchmark_group("decode");
    group.bench_function("typed send", |b| b.iter(|| decode(black_box(typed))));
    group.bench_function("seed frame", |b| b.iter(|| decode(black_box(seed))));
    group.bench_function("refused frame", |b| b.iter(|| decode(black_box(refused))));
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
