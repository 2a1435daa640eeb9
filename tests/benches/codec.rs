//! The task message codec: `TaskMessage::encode` and `TaskMessage::decode`
//! of a typical small message (`demo.add(2, 3)` as kwargs, with a reply
//! queue and an origin, as `Producer::send` publishes it).
//!
//! Run with `cargo bench -p celeriac-tests --bench codec`.

#![allow(missing_docs)]

use std::hint::black_box;

use celeriac_demo::{Add, AddArgs};
use celeriac_shared::{DEFAULT_MAX_MESSAGE_SIZE, SendOptions, Task, TaskMessage, encode_arguments};
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The message a producer sends for `demo.add(2, 3)` with a result wanted.
fn typical_message() -> TaskMessage {
    let (args, kwargs) =
        encode_arguments(&AddArgs { x: 2, y: 3 }).expect("AddArgs encodes as kwargs");
    let mut message = TaskMessage::new(Add::NAME, args, kwargs);
    SendOptions::default().apply(&mut message, Utc::now());
    message.headers.origin = Some("gen12345@bench-host".into());
    message.reply_to = Some(format!("celeriac.reply.{}", uuid::Uuid::new_v4()));
    message
}

fn codec(c: &mut Criterion) {
    let message = typical_message();
    let now = Utc::now();
    let (body, properties) = message.encode(now).expect("the message encodes");

    let mut group = c.benchmark_group("task_message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        b.iter(|| {
            black_box(&message)
                .encode(now)
                .expect("the message encodes")
        });
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            TaskMessage::decode(
                black_box(&properties),
                black_box(&body),
                DEFAULT_MAX_MESSAGE_SIZE,
            )
            .expect("the message decodes")
        });
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
