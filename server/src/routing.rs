//! Cluster routing as commands see it: who serves each slot, readable without a lock.
//!
//! The cluster state machine lives behind the bus driver's mutex and changes on every gossip message; commands
//! must not take that lock. The driver publishes a [`RoutingSnapshot`] whenever the configuration changes
//! (slot owners, migrations, node addresses, the cluster state), and the gate reads it with plain atomic
//! loads: one load of the slot's owner per keyed command.
//!
//! [`Routing::route`] is Redis 7.0's `getNodeByQuery` decision, in its order: CROSSSLOT as soon as a key's slot
//! differs from the first; "Hash slot not served" for an unowned slot; the cluster-down states; ASK or
//! TRYAGAIN for a slot migrating away with keys missing here; ASKING for an importing slot; READONLY reads on a
//! replica of the slot's owner; otherwise MOVED to the owner.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering};

use parking_lot::RwLock;
use shoal_cluster::{Redirect, Slot, SLOT_COUNT};

/// No node: an unassigned slot, or no primary.
pub const NO_NODE: u16 = u16::MAX;

const MIGRATING: u8 = 1;
const IMPORTING: u8 = 2;

/// A node as redirections name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedNode {
    /// `ip:port` as MOVED and ASK write it.
    pub endpoint: String,
}

/// The routing facts the driver publishes after each configuration change.
#[derive(Debug, Clone)]
pub struct RoutingSnapshot {
    pub nodes: Vec<RoutedNode>,
    /// Index into `nodes` of each slot's owner, or [`NO_NODE`].
    pub owners: Vec<u16>,
    /// Slots this node is migrating away, and to which node.
    pub migrating: Vec<(Slot, u16)>,
    /// Slots this node is importing.
    pub importing: Vec<Slot>,
    pub me: u16,
    /// This node's primary when it is a replica, else [`NO_NODE`].
    pub my_primary: u16,
    pub state_ok: bool,
}

/// What the gate needs to know about the command being routed.
pub struct RouteQuery<'a> {
    /// The key arguments, in order.
    pub keys: &'a [&'a [u8]],
    pub is_write: bool,
    /// The client sent ASKING before this command.
    pub asking: bool,
    /// The client sent READONLY (it may read from a replica).
    pub readonly: bool,
    pub allow_reads_when_down: bool,
    /// Unix ms, for the write lease.
    pub now_ms: i64,
}

/// The lock-free routing table.
pub struct Routing {
    owners: Box<[AtomicU16]>,
    open: Box<[AtomicU8]>,
    migrating_to: RwLock<Vec<(Slot, u16)>>,
    nodes: RwLock<Vec<RoutedNode>>,
    me: AtomicU16,
    my_primary: AtomicU16,
    state_ok: AtomicBool,
    /// Until when (unix ms) this primary may accept writes for its own slots: the state machine's write lease
    /// (see `shoal_cluster`'s `lease` module), 0 when it may not.
    writes_until_ms: AtomicU64,
}

impl Default for Routing {
    fn default() -> Self {
        Routing::new()
    }
}

impl Routing {
    pub fn new() -> Routing {
        Routing {
            owners: (0..SLOT_COUNT).map(|_| AtomicU16::new(NO_NODE)).collect(),
            open: (0..SLOT_COUNT).map(|_| AtomicU8::new(0)).collect(),
            migrating_to: RwLock::new(Vec::new()),
            nodes: RwLock::new(Vec::new()),
            me: AtomicU16::new(NO_NODE),
            my_primary: AtomicU16::new(NO_NODE),
            state_ok: AtomicBool::new(false),
            writes_until_ms: AtomicU64::new(0),
        }
    }

    /// Installs a new configuration. Commands routed meanwhile see either the old or the new owner of each
    /// slot, never a torn value; addresses are swapped in before owners so a new owner index always resolves.
    pub fn publish(&self, snap: RoutingSnapshot) {
        *self.nodes.write() = snap.nodes;
        *self.migrating_to.write() = snap.migrating.clone();
        for (i, o) in snap.owners.iter().enumerate().take(SLOT_COUNT) {
            self.owners[i].store(*o, Ordering::Relaxed);
        }
        let mut open = vec![0u8; SLOT_COUNT];
        for (s, _) in &snap.migrating {
            open[s.index()] |= MIGRATING;
        }
        for s in &snap.importing {
            open[s.index()] |= IMPORTING;
        }
        for (i, f) in open.into_iter().enumerate() {
            self.open[i].store(f, Ordering::Relaxed);
        }
        self.me.store(snap.me, Ordering::Relaxed);
        self.my_primary.store(snap.my_primary, Ordering::Relaxed);
        self.state_ok.store(snap.state_ok, Ordering::Release);
    }

    /// Publishes the write lease: writes to this node's own slots are refused from `until_ms` on.
    pub fn set_writes_until(&self, until_ms: u64) {
        self.writes_until_ms.store(until_ms, Ordering::Release);
    }

    /// Whether a write served here at `now_ms` is within the lease.
    fn write_lease_holds(&self, now_ms: i64) -> bool {
        u64::try_from(now_ms).is_ok_and(|now| now < self.writes_until_ms.load(Ordering::Acquire))
    }

    pub fn state_ok(&self) -> bool {
        self.state_ok.load(Ordering::Acquire)
    }

    fn endpoint(&self, node: u16) -> String {
        self.nodes
            .read()
            .get(node as usize)
            .map(|n| n.endpoint.clone())
            .unwrap_or_default()
    }

    /// Decides whether this node serves a keyed command. `key_exists` answers for keys of a slot in migration.
    /// Returns the slot on success (for the caller's bookkeeping), or the redirection to send.
    pub fn route(&self, q: &RouteQuery<'_>, key_exists: impl Fn(&[u8]) -> bool) -> Result<Option<Slot>, Redirect> {
        let Some(first) = q.keys.first() else { return Ok(None) };
        let slot = Slot::for_key(first);
        let owner = self.owners[slot.index()].load(Ordering::Relaxed);
        if owner == NO_NODE {
            return Err(Redirect::SlotUnserved);
        }
        let me = self.me.load(Ordering::Relaxed);
        let open = self.open[slot.index()].load(Ordering::Relaxed);
        let migrating = owner == me && open & MIGRATING != 0;
        let importing = open & IMPORTING != 0;
        let (mut existing, mut missing) = (0usize, 0usize);
        for key in q.keys {
            if Slot::for_key(key) != slot {
                return Err(Redirect::CrossSlot);
            }
            if migrating || importing {
                if key_exists(key) {
                    existing += 1;
                } else {
                    missing += 1;
                }
            }
        }
        if !self.state_ok() {
            if !q.allow_reads_when_down {
                return Err(Redirect::ClusterDown);
            }
            if q.is_write {
                return Err(Redirect::ClusterDownReadOnly);
            }
        }
        if migrating && missing > 0 {
            if existing > 0 {
                return Err(Redirect::TryAgain);
            }
            let target = self
                .migrating_to
                .read()
                .iter()
                .find(|(s, _)| *s == slot)
                .map(|(_, n)| *n);
            if let Some(target) = target {
                return Err(Redirect::Ask {
                    slot,
                    addr: self.endpoint(target),
                });
            }
        }
        if importing && q.asking {
            if q.keys.len() > 1 && missing > 0 {
                return Err(Redirect::TryAgain);
            }
            return self.fence_write(q, slot);
        }
        if q.readonly && !q.is_write && self.my_primary.load(Ordering::Relaxed) == owner {
            return Ok(Some(slot));
        }
        if owner != me {
            return Err(Redirect::Moved {
                slot,
                addr: self.endpoint(owner),
            });
        }
        self.fence_write(q, slot)
    }

    /// Shoal: a primary that has not heard from a majority of primaries lately stops taking writes before a
    /// replica elsewhere could be promoted, so what it acknowledges is not lost to a failover it cannot see.
    fn fence_write(&self, q: &RouteQuery<'_>, slot: Slot) -> Result<Option<Slot>, Redirect> {
        if q.is_write && !self.write_lease_holds(q.now_ms) {
            return Err(Redirect::ClusterDown);
        }
        Ok(Some(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A routing table whose write lease runs past the queries' clock.
    fn leased() -> Routing {
        let r = Routing::new();
        r.set_writes_until(2_000);
        r
    }

    #[test]
    fn writes_to_own_slots_stop_when_the_lease_runs_out_and_reads_go_on() {
        let r = leased();
        r.publish(snapshot(|_| 0));
        let slot = Some(Slot::for_key(b"foo"));
        let at = |now_ms, is_write| RouteQuery {
            now_ms,
            ..query(&[b"foo"], is_write)
        };
        assert_eq!(r.route(&at(1_999, true), |_| true), Ok(slot));
        assert_eq!(r.route(&at(2_000, true), |_| true), Err(Redirect::ClusterDown));
        assert_eq!(r.route(&at(2_000, false), |_| true), Ok(slot));
        // Writes for other nodes' slots are redirected as usual: the lease is about this node's own slots.
        r.publish(snapshot(|_| 1));
        assert!(matches!(
            r.route(&at(5_000, true), |_| true),
            Err(Redirect::Moved { .. })
        ));
        r.set_writes_until(0);
        r.publish(snapshot(|_| 0));
        assert_eq!(r.route(&at(1_000, true), |_| true), Err(Redirect::ClusterDown));
    }

    fn snapshot(owner_of: impl Fn(usize) -> u16) -> RoutingSnapshot {
        RoutingSnapshot {
            nodes: vec![
                RoutedNode {
                    endpoint: "127.0.0.1:7000".into(),
                },
                RoutedNode {
                    endpoint: "127.0.0.1:7001".into(),
                },
            ],
            owners: (0..SLOT_COUNT).map(owner_of).collect(),
            migrating: Vec::new(),
            importing: Vec::new(),
            me: 0,
            my_primary: NO_NODE,
            state_ok: true,
        }
    }

    fn query<'a>(keys: &'a [&'a [u8]], is_write: bool) -> RouteQuery<'a> {
        RouteQuery {
            keys,
            is_write,
            asking: false,
            readonly: false,
            allow_reads_when_down: false,
            now_ms: 1_000,
        }
    }

    #[test]
    fn own_slots_are_served_and_others_moved() {
        let r = leased();
        let mine = Slot::for_key(b"foo").index();
        r.publish(snapshot(|s| if s == mine { 0 } else { 1 }));
        assert_eq!(
            r.route(&query(&[b"foo"], false), |_| true),
            Ok(Some(Slot::for_key(b"foo")))
        );
        assert_eq!(
            r.route(&query(&[b"bar"], false), |_| true),
            Err(Redirect::Moved {
                slot: Slot::for_key(b"bar"),
                addr: "127.0.0.1:7001".into()
            })
        );
    }

    #[test]
    fn crossslot_comes_before_moved_and_down_states() {
        let r = leased();
        let mut snap = snapshot(|_| 1);
        snap.state_ok = false;
        r.publish(snap);
        assert_eq!(
            r.route(&query(&[b"foo", b"bar"], false), |_| true),
            Err(Redirect::CrossSlot)
        );
        assert_eq!(r.route(&query(&[b"foo"], false), |_| true), Err(Redirect::ClusterDown));
        let allow = RouteQuery {
            allow_reads_when_down: true,
            ..query(&[b"foo"], true)
        };
        assert_eq!(r.route(&allow, |_| true), Err(Redirect::ClusterDownReadOnly));
    }

    #[test]
    fn unassigned_slots_are_not_served() {
        let r = leased();
        r.publish(snapshot(|_| NO_NODE));
        assert_eq!(r.route(&query(&[b"foo"], false), |_| true), Err(Redirect::SlotUnserved));
        assert_eq!(r.route(&query(&[], false), |_| true), Ok(None));
    }

    #[test]
    fn migrating_slots_ask_for_missing_keys_and_tryagain_for_partial_sets() {
        let r = leased();
        let slot = Slot::for_key(b"{t}a");
        let mut snap = snapshot(|_| 0);
        snap.migrating = vec![(slot, 1)];
        r.publish(snap);
        let present = |k: &[u8]| k == b"{t}a";
        assert_eq!(r.route(&query(&[b"{t}a"], false), present), Ok(Some(slot)));
        assert_eq!(
            r.route(&query(&[b"{t}b"], false), present),
            Err(Redirect::Ask {
                slot,
                addr: "127.0.0.1:7001".into()
            })
        );
        assert_eq!(
            r.route(&query(&[b"{t}a", b"{t}b"], false), present),
            Err(Redirect::TryAgain)
        );
    }

    #[test]
    fn importing_slots_serve_asking_clients_only() {
        let r = leased();
        let slot = Slot::for_key(b"k");
        let mut snap = snapshot(|_| 1);
        snap.importing = vec![slot];
        r.publish(snap);
        let asking = RouteQuery {
            asking: true,
            ..query(&[b"k"], true)
        };
        assert_eq!(r.route(&asking, |_| false), Ok(Some(slot)));
        assert!(matches!(
            r.route(&query(&[b"k"], true), |_| false),
            Err(Redirect::Moved { .. })
        ));
    }

    #[test]
    fn readonly_replicas_serve_reads_of_their_primary() {
        let r = leased();
        let mut snap = snapshot(|_| 1);
        snap.my_primary = 1;
        r.publish(snap);
        let read = RouteQuery {
            readonly: true,
            ..query(&[b"k"], false)
        };
        assert_eq!(r.route(&read, |_| true), Ok(Some(Slot::for_key(b"k"))));
        let write = RouteQuery {
            readonly: true,
            ..query(&[b"k"], true)
        };
        assert!(matches!(r.route(&write, |_| true), Err(Redirect::Moved { .. })));
    }
}
