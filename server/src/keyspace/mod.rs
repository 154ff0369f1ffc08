//! The keyspace: every database's keys, grouped by hash slot, behind per-shard locks.
//!
//! * [`entry`] — one key/value/expiry/access-clock in one allocation.
//! * [`table`] — the per-slot hash table.
//! * [`db`] — a database: 16384 slot tables spread over [`SHARDS`] locks, and the operations commands use.
//! * [`access`] — the per-key access clock (LRU) and logarithmic counter (LFU).
//! * [`expire`] — the active expiry cycle. * [`evict`] — approximate LRU/LFU/TTL/random eviction.
//!
//! Slot `s` lives in shard `s % SHARDS`, so the keys of any slot range spread over every lock and every core,
//! while a command on one key takes exactly one uncontended lock.

pub mod access;
pub mod db;
pub mod entry;
pub mod evict;
pub mod expire;
pub mod feed;
pub mod table;

use std::hash::BuildHasher;
use std::sync::LazyLock;

pub use access::{AccessMode, Now};
pub use db::{set_applying_primary_stream, Db, Key, KeyHint, Keyspace, PrefetchStage, Shard, ShardGuard, ShardStats};
pub use entry::{Entry, ValueKind};
pub use evict::Evictor;
pub use table::{Hash, Pos, SlotTable};

/// Lock shards per database. A power of two well above the core count, so two cores rarely meet on one lock.
pub const SHARDS: usize = 64;
/// Slots per shard.
pub const SLOTS_PER_SHARD: usize = shoal_cluster::SLOT_COUNT / SHARDS;

/// Per-process random seed: keys hash differently in every process, so nobody can precompute collisions.
static KEY_HASHER: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

/// The table hash of a key.
#[inline]
pub fn hash_key(key: &[u8]) -> Hash {
    KEY_HASHER.hash_one(key)
}
