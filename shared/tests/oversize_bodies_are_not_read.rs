//! A body over the size limit is refused before it is read: decoding it
//! allocates nothing, however large it is. A worker so holds an oversize
//! message once, in its delivery, and dead-letters that same buffer.
//!
//! Alone in its test binary, because it counts every allocation of the
//! process.
#![allow(clippy::unwrap_used)]

use std::alloc::System;

use celeriac_shared::{Error, TaskMessage};
use chrono::Utc;
use serde_json::{Map, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn decoding_an_oversize_body_allocates_nothing() {
    let size = 8 << 20;
    let message = TaskMessage::new("demo.echo", vec![json!("x".repeat(size))], Map::new());
    let (body, properties) = message.encode(Utc::now()).unwrap();

    let region = Region::new(GLOBAL);
    let refused = TaskMessage::decode(&properties, &body, 1 << 20);
    let used = region.change();
    assert!(
        matches!(refused, Err(Error::Oversize { .. })),
        "{refused:?}"
    );
    assert_eq!(used.bytes_allocated, 0, "{used:?}");

    // The measure works: the same body within the limit is parsed, which
    // allocates at least its size.
    let region = Region::new(GLOBAL);
    let decoded = TaskMessage::decode(&properties, &body, usize::MAX).unwrap();
    assert!(region.change().bytes_allocated >= size);
    assert_eq!(decoded.args[0].as_str().map(str::len), Some(size));
}
