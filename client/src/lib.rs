//! The async, cluster-aware Shoal client.
//!
//! * [`connection`] — [`Connection`]: one server, RESP2 or RESP3, single commands, pipelines, or split
//!   writer/reader halves for callers that keep requests in flight.
//! * [`cluster`] — [`ClusterClient`]: routes by hash slot over a [`SlotMap`], follows `MOVED`/`ASK`, retries
//!   `TRYAGAIN`/`CLUSTERDOWN` with a bounded backoff, splits pipelines by node.
//! * [`slot_map`] — [`SlotMap`]: slot → node, from `CLUSTER SLOTS`.
//! * [`error`] — [`ClientError`], and the one mapping from an error reply to it.
//!
//! Replies are [`shoal_protocol::Frame`]s, so callers see exactly what the server sent, RESP3 types included.

pub mod cluster;
pub mod connection;
pub mod error;
pub mod slot_map;

pub use cluster::{ClusterClient, ClusterOptions, ClusterStats};
pub use connection::{encode_command, CommandWriter, ConnectOptions, Connection, ReplyReader};
pub use error::{check_reply, ClientError};
pub use shoal_cluster::{Redirect, Slot};
pub use shoal_protocol::Frame;
pub use slot_map::SlotMap;
