//! The demo tasks that the README's demo, the `celeriac sum` command and
//! the tests use: their typed definitions ([`Add`], [`SumRange`],
//! [`Sleep`], [`Fail`], [`Flaky`]), their handlers ([`handlers`]) and the
//! `celeriac-demo-worker` binary that serves them.

pub mod handlers;
mod tasks;

pub use handlers::registry;
pub use tasks::*;
