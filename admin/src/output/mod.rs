//! What the `celeriac` CLI prints, as functions the tests can call.

pub mod control;
pub mod dead_letters;
pub mod delays;
