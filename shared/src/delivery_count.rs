//! The headers that count how often a message was delivered, which the
//! worker's delivery limit reads and a dead letter's replay removes.

/// The header a celeriac worker counts deliveries in on classic queues
/// (it republishes a redelivered message with the count raised).
pub const DELIVERIES_HEADER: &str = "x-celeriac-deliveries";

/// The header a quorum queue counts redeliveries in itself.
pub const QUORUM_DELIVERIES_HEADER: &str = "x-delivery-count";

/// The deliveries after which a worker dead-letters a message unrun (it
/// crashed or stalled every worker that took it), and the
/// `x-delivery-limit` of quorum task queues: 5.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;
