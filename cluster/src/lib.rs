//! Shoal's cluster logic: hash slots and key hashing today; the node table, gossip, failure detection and
//! failover as a sans-IO state machine as the cluster grows. Nothing here does I/O, so the server drives it
//! over real sockets and tests drive it over a simulated network.

pub mod redirect;
pub mod slot;

pub use redirect::Redirect;
pub use slot::{Slot, SLOT_COUNT};
