//! The Shoal server as a library: the binary in `main.rs` is a thin wrapper, and benchmarks and tests reach the
//! keyspace and command table directly.
//!
//! Request path: [`listener`] accepts, [`connection`] reads and parses, [`dispatch`] checks and routes through
//! the [`command`] table to a handler in [`cmd`], which works on the [`keyspace`].

/// jemalloc, counting what it hands out (see [`alloc`]); declared here so the binary, the tests and the
/// benchmarks all measure memory the same way.
#[global_allocator]
static GLOBAL: alloc::CountingJemalloc = alloc::CountingJemalloc;

pub mod alloc;
pub mod client;
pub mod clock;
pub mod cluster_bus;
pub mod cmd;
pub mod command;
pub mod config;
pub mod connection;
pub mod cron;
pub mod dispatch;
pub mod error;
pub mod glob;
pub mod info;
pub mod keyspace;
pub mod listener;
pub mod memory;
pub mod num;
pub mod replication;
pub mod routing;
pub mod run;
pub mod server;
pub mod stats;
