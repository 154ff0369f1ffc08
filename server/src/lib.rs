//! The Shoal server as a library: the binary in `main.rs` is a thin wrapper, and benchmarks and tests reach the
//! keyspace and command table directly.

pub mod keyspace;
pub mod num;
