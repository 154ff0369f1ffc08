//! The write lease: how Shoal bounds the writes a primary cut off from the majority accepts.
//!
//! Redis lets a primary in a minority partition accept writes until its `cluster_state` turns `fail`, which
//! takes the node timeout (a ping unanswered that long flags PFAIL) and often more; a replica on the majority
//! side may have been promoted by then, and every write the old primary acknowledged in between is lost when it
//! rejoins as a replica.
//!
//! Shoal's rule is stricter: **a primary serving slots accepts writes only while it has heard, within half the
//! node timeout, from a majority of the slot-serving primaries (itself counted)**. Any bus message counts as
//! hearing from its sender. The lease of a primary is thus `t_k + node_timeout / 2`, where `t_k` is the k-th
//! most recent time it heard from another slot-serving primary and `k = quorum - 1` (`quorum = size / 2 + 1`).
//!
//! Why this never overlaps a promotion: a replica on the other side can only be promoted once its primary is
//! FAIL, which needs a majority of primaries to flag it PFAIL, each after a ping of its own went unanswered for
//! longer than the node timeout. Those pings were sent after the partition began (earlier ones were answered),
//! so no promotion happens before `cut + node_timeout`, while the old primary's lease ends by
//! `cut + node_timeout / 2` — half the timeout to spare for clock-rate differences and scheduling delays.
//!
//! Rejoining: once a lease lapsed, the primary may have been failed over without knowing it yet, so a renewed
//! lease does not reopen writes at once: they resume a rejoin delay (the node timeout, clamped to
//! 0.5 ... 5 s, as Redis's `CLUSTER_*_REJOIN_DELAY`) after the lease was last seen lapsed, which gives the
//! newer configuration time to arrive (it comes with the first message from the new owner or an UPDATE).
//!
//! Keeping the lease alive costs little: in a big cluster a primary hears from most primaries every half node
//! timeout anyway; in a small one, when the lease has less than a quarter of the node timeout left, the primary
//! pings the slot-serving primaries it has not heard from for a quarter of the node timeout.
//!
//! Reads are not fenced: they follow Redis's `cluster_state` (a stale read from a cut-off primary is possible
//! for as long as in Redis); only writes, which could be lost, stop early.
//!
//! Limits: hearing from a node is taken as proof that it hears us; a link that carries messages one way only
//! (not something TCP sustains for long) could keep a lease alive up to the point the other side drops the
//! connection.

use super::{ClusterNode, LogLevel, MAX_REJOIN_DELAY_MS, MIN_REJOIN_DELAY_MS, TICK_INTERVAL_MS};
use crate::link::LinkId;
use crate::node::NodeId;

/// The lease lasts the node timeout divided by this.
const WRITE_LEASE_DIVISOR: u64 = 2;
/// Renewal pings start when less than the node timeout divided by this is left, and go to the primaries not
/// heard from for as long.
const WRITE_LEASE_RENEW_DIVISOR: u64 = 4;

impl ClusterNode {
    /// Whether this node may accept writes for the slots it serves right now (`now_ms` on its clock): it is a
    /// primary serving slots, `cluster_state` is ok, it holds the write lease, and it is not within the rejoin
    /// delay after a lapse. Replicas and primaries without slots accept no writes of their own.
    pub fn accepts_writes(&self, now_ms: u64) -> bool {
        let me = self.me();
        if !me.is_primary() || me.slots.is_empty() || !self.state_ok {
            return false;
        }
        if now_ms >= self.write_lease_until_ms {
            return false;
        }
        self.write_fenced_ms == 0 || now_ms >= self.write_fenced_ms.saturating_add(self.rejoin_delay_ms())
    }

    /// Until when (unix ms, this node's clock) writes stay allowed if nothing else arrives: 0 when
    /// [`Self::accepts_writes`] is false at `now_ms`. The driver publishes it after every batch of effects and
    /// every tick, and refuses a write to its own slots at or after it (`-CLUSTERDOWN`), so the fence is exact
    /// to the millisecond rather than to the tick.
    pub fn writes_allowed_until_ms(&self, now_ms: u64) -> u64 {
        if self.accepts_writes(now_ms) {
            self.write_lease_until_ms
        } else {
            0
        }
    }

    /// How long writes stay off after the lease was last seen lapsed (Redis's rejoin delay).
    pub(super) fn rejoin_delay_ms(&self) -> u64 {
        self.config
            .node_timeout_ms
            .clamp(MIN_REJOIN_DELAY_MS, MAX_REJOIN_DELAY_MS)
    }

    /// Whether this node is a primary serving slots: the only kind that holds a lease (and votes).
    pub(super) fn serves_slots(&self) -> bool {
        let me = self.me();
        me.is_primary() && !me.slots.is_empty()
    }

    /// The lease the heard-from times give now: the k-th most recent time a slot-serving primary was heard
    /// from, plus half the node timeout. `u64::MAX` when this node alone is a majority, 0 when too few
    /// primaries were ever heard from.
    pub(super) fn compute_write_lease(&self) -> u64 {
        let quorum = self.size / 2 + 1;
        // "Counting itself": we need quorum - 1 others.
        let others_needed = quorum.saturating_sub(1);
        if others_needed == 0 {
            return u64::MAX;
        }
        let mut heard: Vec<u64> = self
            .table
            .iter()
            .filter(|n| !n.is_myself() && n.is_primary() && !n.slots.is_empty())
            .map(|n| n.data_received_ms)
            .collect();
        if heard.len() < others_needed {
            return 0;
        }
        // The k-th most recent: sort descending up to position k - 1.
        let (_, kth, _) = heard.select_nth_unstable_by(others_needed - 1, |a, b| b.cmp(a));
        if *kth == 0 {
            return 0;
        }
        kth.saturating_add(self.config.node_timeout_ms / WRITE_LEASE_DIVISOR)
    }

    /// Recomputes the lease from everything heard so far, noting a lapse (writes then resume only after the
    /// rejoin delay). Called by every tick, after state updates, and by messages while the lease is about to
    /// end.
    pub(super) fn refresh_write_lease(&mut self, now: u64) {
        if !self.serves_slots() {
            self.write_lease_holder = false;
            self.write_lease_until_ms = 0;
            return;
        }
        let lease = self.compute_write_lease();
        // A lapse: the lease we held ended before now, or there is none. (A node that just became a primary held
        // none before; it lapses only if it has none now.)
        let lapsed = lease <= now || (self.write_lease_holder && self.write_lease_until_ms <= now);
        if lapsed {
            if self.write_fenced_ms == 0 || now.saturating_sub(self.write_fenced_ms) > self.rejoin_delay_ms() {
                self.log(
                    LogLevel::Warning,
                    "Write lease lost: no majority of primaries heard from within half the node timeout; \
                     refusing writes."
                        .into(),
                );
            }
            self.write_fenced_ms = now;
        }
        self.write_lease_holder = true;
        self.write_lease_until_ms = lease;
    }

    /// Before a message from `sender` refreshes its heard-from time: when our lease is about to end, check
    /// whether it had already lapsed (then note it, so writes resume only after the rejoin delay). True when
    /// the lease must be recomputed once the message is recorded.
    pub(super) fn lease_check_before_message(&mut self, sender: NodeId, now: u64) -> bool {
        if !self.write_lease_holder || self.write_lease_until_ms > now.saturating_add(TICK_INTERVAL_MS) {
            return false;
        }
        let from_primary = self
            .table
            .get(&sender)
            .is_some_and(|n| n.is_primary() && !n.slots.is_empty());
        if !from_primary {
            return false;
        }
        // The lease as it stood before this message, with everything heard since the last computation.
        self.refresh_write_lease(now);
        true
    }

    /// The slot-serving primaries to ping so that the lease does not run out: when less than a quarter of the
    /// node timeout is left, those not heard from for a quarter of the node timeout and not pinged that
    /// recently. Returns their outbound links and whether a ping is pending (then it is repeated, keeping its
    /// original time for failure detection).
    pub(super) fn lease_renewal_targets(&self, now: u64) -> Vec<(NodeId, LinkId, bool)> {
        let quarter = self.config.node_timeout_ms / WRITE_LEASE_RENEW_DIVISOR;
        if !self.serves_slots() || self.write_lease_until_ms == u64::MAX {
            return Vec::new();
        }
        if self.write_lease_until_ms > now.saturating_add(quarter) {
            return Vec::new();
        }
        self.table
            .iter()
            .filter(|n| !n.is_myself() && n.is_primary() && !n.slots.is_empty() && !n.in_handshake())
            .filter(|n| now.saturating_sub(n.data_received_ms) > quarter)
            .filter(|n| now.saturating_sub(n.ping_repeated_ms) > quarter / 2)
            .filter_map(|n| {
                let link = n.link.filter(|l| self.link_established(Some(*l)))?;
                Some((n.id, link, n.ping_sent_ms != 0))
            })
            .collect()
    }
}
