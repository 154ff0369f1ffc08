//! Replica promotion: elections and votes, manual failover (`CLUSTER FAILOVER`), replica migration. After the
//! Redis Cluster specification and Redis 7.0's `clusterHandleSlaveFailover`, `clusterGetSlaveRank`,
//! `clusterSendFailoverAuthIfNeeded`, `clusterHandleManualFailover` and `clusterHandleSlaveMigration`.
//!
//! # Elections
//! A replica whose primary is FAIL (and serves slots) schedules an election, unless it is `nofailover` or its
//! data is too old (`cluster-replica-validity-factor`). When its turn comes it increments the current epoch
//! and asks every node for a vote ([`Body::FailoverAuthRequest`]: the header carries the new epoch, the
//! primary's slots and config epoch). Every primary serving slots grants at most one vote per epoch
//! ([`Body::FailoverAuthAck`]), recording the epoch in `nodes.conf` before the ack leaves. A replica with the
//! votes of a majority of the slot-serving primaries takes the election epoch as its config epoch — greater than
//! any other, since no other node can win that epoch — claims its primary's slots, and broadcasts a PONG; the
//! others adopt the claim by its greater config epoch, and stale nodes learn it through UPDATE.
//!
//! # Shoal's schedule: ranked, short, and deterministic
//! Redis waits `500 ms + random(0..500) + rank * 1000 ms` before asking. Shoal asks after
//! [`ELECTION_DELAY_MS`]` + rank * `[`ELECTION_RANK_STEP_MS`]: the fixed delay lets the FAIL message reach the
//! voters and the replicas exchange their final offsets (each broadcasts its own to its siblings when it
//! schedules, and re-ranks just before asking); the rank orders the replicas by replication offset as
//! `clusterGetSlaveRank` does, with ties broken by node id, so siblings never share a rank when their views
//! agree and the random delay is not needed. A split vote needs two replicas that each believe they rank
//! first, which needs both their views to be stale by more than the fixed delay; it is then recovered by a new
//! attempt two node timeouts later (the voters' lockout), as in Redis.
//!
//! A replica that has not heard from a majority of the slot-serving primaries within the node timeout does not
//! ask: it could not win, and each attempt would raise the epoch.
//!
//! # Manual failover
//! `CLUSTER FAILOVER` on a replica: by default it sends MFSTART to its primary, which pauses writes
//! ([`Effect::PauseWrites`]), learns from the driver at which replication offset they stopped
//! ([`ClusterNode::on_writes_paused`]) and sends it flagged [`MFLAG_PAUSED`]; once the replica has processed
//! that offset it runs the election at once, its request flagged [`MFLAG_FORCE_ACK`] so primaries vote although
//! the primary is up. FORCE runs that election without the primary's agreement; TAKEOVER takes a new config
//! epoch without any election. Either gives up after [`MANUAL_FAILOVER_TIMEOUT_MS`].
//!
//! # Replica migration
//! A replica of the primary with the most working replicas (more than `cluster-migration-barrier`), the one
//! with the smallest id among those replicas, moves to a primary that had replicas and has none left, once it
//! has been orphaned for [`REPLICA_MIGRATION_DELAY_MS`].

use std::collections::{BTreeMap, BTreeSet};

use super::{ClusterNode, Effect, LogLevel};
use crate::error::ClusterError;
use crate::link::LinkId;
use crate::message::{Body, Header, MessageKind, MFLAG_FORCE_ACK, MFLAG_PAUSED};
use crate::node::{Epoch, NodeFlags, NodeId};

/// Fixed part of the wait before a replica asks for votes, in ms: time for the FAIL message to reach the voters
/// and for sibling replicas to exchange their final replication offsets (Redis: 500 ms plus up to 500 ms at
/// random).
pub const ELECTION_DELAY_MS: u64 = 100;
/// Extra wait per rank, in ms: the replica with the greatest offset asks first, the next one this much later
/// (Redis: 1000 ms). Long enough for the first one's request and victory to reach the others.
pub const ELECTION_RANK_STEP_MS: u64 = 200;
/// An election that has not won within this long (at least the node timeout) has expired, in ms.
const ELECTION_MIN_VOTE_WAIT_MS: u64 = 1_000;
/// A contested election (another shard's candidate asked for the same epoch or a later one) that has no
/// majority this long after asking is tried again with a new epoch, in ms.
const ELECTION_CONTESTED_GRACE_MS: u64 = ELECTION_DELAY_MS;
/// A manual failover that has not completed within this long is abandoned (`CLUSTER_MF_TIMEOUT`), in ms.
pub const MANUAL_FAILOVER_TIMEOUT_MS: u64 = 5_000;
/// The primary pauses writes for this many manual failover timeouts at most (`CLUSTER_MF_PAUSE_MULT`).
pub const MANUAL_FAILOVER_PAUSE_MULT: u64 = 2;
/// A primary must stay orphaned this long before a replica migrates to it (`CLUSTER_SLAVE_MIGRATION_DELAY`),
/// in ms: during a failover its own replicas need a moment to announce their new primary.
pub const REPLICA_MIGRATION_DELAY_MS: u64 = 5_000;

/// What `CLUSTER FAILOVER` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// No option: coordinated with the primary, which pauses writes until the replica has caught up.
    Default,
    /// `FORCE`: an election without the primary's agreement (it may be down), still needing a majority.
    Force,
    /// `TAKEOVER`: a new config epoch without any election (the majority may be unreachable).
    Takeover,
}

/// Counters of this node's failover activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailoverStats {
    /// Elections this replica started (vote requests sent, each with a new epoch).
    pub elections_started: u64,
    /// Elections this replica won.
    pub elections_won: u64,
    /// Votes this primary granted.
    pub votes_granted: u64,
}

/// Why a replica of a failed primary is not (yet) taking over, logged when it changes
/// (`clusterLogCantFailover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CantFailover {
    DataAge,
    WaitingDelay,
    Expired,
    WaitingVotes,
    NoMajority,
}

impl CantFailover {
    fn text(self) -> &'static str {
        match self {
            CantFailover::DataAge => {
                "Disconnected from master for longer than allowed. Please check the \
                                      'cluster-replica-validity-factor' configuration option."
            }
            CantFailover::WaitingDelay => "Waiting the delay before I can start a new failover.",
            CantFailover::Expired => "Failover attempt expired.",
            CantFailover::WaitingVotes => "Waiting for votes, but majority still not reached.",
            CantFailover::NoMajority => "Not asking for votes: a majority of the masters is unreachable.",
        }
    }
}

/// A replica's current (or last) election: Redis's `failover_auth_*`.
#[derive(Debug, Default)]
pub(crate) struct Election {
    /// When this attempt may ask for votes; 0 when none was ever scheduled.
    pub start_ms: u64,
    pub rank: usize,
    /// Whether the votes were asked for.
    pub requested: bool,
    /// The epoch asked for.
    pub epoch: Epoch,
    /// The primaries that voted for us in that epoch.
    pub votes: BTreeSet<NodeId>,
    /// A manual failover's attempt (no delay, FORCEACK).
    pub manual: bool,
    /// The FAIL of our primary this attempt is for (its `fail_time_ms`): a new FAIL is a new failure, with an
    /// election of its own whatever the last attempt was.
    pub fail_time_ms: u64,
    /// Where our primary stands among the failed primaries (their elections go one step apart).
    pub queue: usize,
    /// When the votes were asked for.
    pub requested_ms: u64,
    /// The primaries of other shards whose candidates asked for our epoch or a later one while we waited for
    /// votes: they may take votes we need. A new attempt waits one step for each whose id is smaller.
    pub rivals: BTreeSet<NodeId>,
    /// What the siblings' requests told us; kept across attempts.
    pub siblings: SiblingNews,
    /// The reason last logged for not taking over.
    pub blocked: Option<CantFailover>,
}

/// What this replica learned from its siblings' requests for votes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SiblingNews {
    /// A sibling with more recent data runs its election: we do not ask before this time.
    pub deferred_until_ms: u64,
    /// When a sibling with less recent data asked for votes (0: none lately): our primary failed in its view,
    /// and we should be the one to replace it.
    pub worse_asked_ms: u64,
}

impl Election {
    /// A new attempt: what the siblings told us, and the last reason logged, carry over.
    fn fresh(&self) -> Election {
        Election {
            siblings: self.siblings,
            blocked: self.blocked,
            ..Election::default()
        }
    }
}

/// A manual failover in progress: Redis's `mf_*`.
#[derive(Debug, Default)]
pub(crate) struct ManualFailover {
    /// When it is abandoned (unix ms); 0 when none is in progress.
    pub end_ms: u64,
    /// Replica side: the election may start (the offset was reached, or FORCE).
    pub can_start: bool,
    /// Replica side: the offset at which the paused primary stopped writing.
    pub primary_offset: Option<u64>,
    /// Primary side: the replica that asked.
    pub replica: Option<NodeId>,
    /// Primary side: the offset writes stopped at, once the driver reported it.
    pub paused_offset: Option<u64>,
    /// Primary side: writes are paused, so [`Effect::ResumeWrites`] is owed.
    pub paused: bool,
}

impl ClusterNode {
    /// This node's failover counters.
    pub fn failover_stats(&self) -> FailoverStats {
        self.failover_stats
    }

    /// How long an election may wait for votes.
    fn vote_wait_ms(&self) -> u64 {
        self.config.node_timeout_ms.max(ELECTION_MIN_VOTE_WAIT_MS)
    }

    /// When a new attempt may follow a failed one: two node timeouts, when the voters that voted in it may vote
    /// about the same primary again.
    fn election_retry_ms(&self) -> u64 {
        2 * self.vote_wait_ms()
    }

    fn cant_failover(&mut self, reason: CantFailover) {
        if self.election.blocked != Some(reason) {
            self.election.blocked = Some(reason);
            self.log(
                LogLevel::Notice,
                format!("Currently unable to failover: {}", reason.text()),
            );
        }
    }

    /// The replica's rank among its primary's replicas (`clusterGetSlaveRank`): how many siblings that may fail
    /// over and are not FAIL have a greater replication offset, or the same offset and a smaller id.
    pub(crate) fn replica_rank(&self) -> usize {
        let Some(primary) = self.me().primary else {
            return 0;
        };
        let mine = (self.my_repl_offset, self.myself);
        self.table
            .replicas_of(primary)
            .filter(|r| !r.is_myself() && !r.flags.intersects(NodeFlags::NOFAILOVER | NodeFlags::FAIL))
            .filter(|r| {
                // Greater offset first; on a tie the smaller id, so that ranks are distinct.
                r.repl_offset > mine.0 || (r.repl_offset == mine.0 && r.id < mine.1)
            })
            .count()
    }

    /// Where our primary stands, by id, among the failed primaries serving slots that have a replica able to
    /// fail over: elections of different shards go one [`ELECTION_RANK_STEP_MS`] apart instead of competing for
    /// the same epoch (each primary votes once per epoch, so two candidates asking at once can both lose).
    fn election_queue_position(&self) -> usize {
        let Some(mine) = self.me().primary else {
            return 0;
        };
        let mut before: BTreeSet<NodeId> = BTreeSet::new();
        for n in self.table.iter() {
            if !n.is_replica() || n.flags.intersects(NodeFlags::FAIL | NodeFlags::NOFAILOVER) {
                continue;
            }
            let Some(p) = n.primary.filter(|p| *p < mine) else {
                continue;
            };
            if self
                .table
                .get(&p)
                .is_some_and(|p| p.is_primary() && p.is_failed() && !p.slots.is_empty())
            {
                before.insert(p);
            }
        }
        before.len()
    }

    /// Whether this node is in contact with a majority of the slot-serving primaries (heard from within the node
    /// timeout, not flagged PFAIL by our own detector): a replica that is not cannot win an election and does
    /// not start one. Contact, not the FAIL flag: a primary's FAIL lingers for a while after it is reachable
    /// again, and it is the others' word.
    fn reaches_majority_of_primaries(&self, now: u64) -> bool {
        let quorum = self.size / 2 + 1;
        let timeout = self.config.node_timeout_ms;
        let reachable = self
            .table
            .iter()
            .filter(|n| n.is_primary() && !n.slots.is_empty())
            .filter(|n| n.is_myself() || !n.timed_out())
            .filter(|n| n.is_myself() || now.saturating_sub(n.data_received_ms) <= timeout)
            .count();
        reachable >= quorum
    }

    /// The replica's side of failover, run by every tick and whenever a FAIL, a vote or a manual failover step
    /// arrives (`clusterHandleSlaveFailover`).
    pub(super) fn handle_replica_failover(&mut self, now: u64) {
        let timeout = self.config.node_timeout_ms;
        let manual = self.manual.end_ms != 0 && self.manual.can_start;
        let me = self.me();
        let primary = me
            .primary
            .filter(|_| me.is_replica())
            .and_then(|id| self.table.get(&id));
        // "Pre conditions to run the function, that must be met both in case of an automatic or manual failover:
        // 1) We are a slave. 2) Our master is flagged as FAIL, or this is a manual failover. 3) We don't have the
        // no failover configuration set, and this is not a manual failover. 4) It is serving slots."
        let Some(primary) = primary else {
            self.election.blocked = None;
            return;
        };
        let primary_id = primary.id;
        // Shoal: a sibling with less recent data asking for votes means our primary failed in its view; we have
        // more recent data, so we run too (the voters check FAIL themselves, and prefer us).
        let worse_asked = self.election.siblings.worse_asked_ms;
        let sibling_says_failed = worse_asked != 0 && now.saturating_sub(worse_asked) <= self.vote_wait_ms();
        let fail_time = if primary.is_failed() {
            primary.fail_time_ms
        } else if sibling_says_failed {
            worse_asked
        } else {
            0
        };
        let may_fail_over_automatically =
            (primary.is_failed() || sibling_says_failed) && !self.config.replica_no_failover;
        if !(manual || may_fail_over_automatically) || primary.slots.is_empty() {
            self.election.blocked = None;
            return;
        }

        // "Set data_age to the number of milliseconds we are disconnected from the master. Remove the node
        // timeout from the data age as it is fine that we are disconnected from our master at least for the time
        // it was down to be flagged as FAIL, that's the baseline."
        let mut data_age = now.saturating_sub(self.repl_last_interaction_ms);
        if data_age > timeout {
            data_age -= timeout;
        }
        // "Check if our data is recent enough according to the slave validity factor configured by the user.
        // Check bypassed for manual failovers."
        let factor = self.config.replica_validity_factor;
        let max_age = self
            .config
            .repl_ping_replica_period_ms
            .saturating_add(timeout.saturating_mul(factor));
        if factor != 0 && data_age > max_age && !manual {
            self.cant_failover(CantFailover::DataAge);
            return;
        }

        // Shoal: a replica cut off from the majority could not win, and asking would only raise the epoch. It
        // waits unscheduled (an attempt that never asked holds nobody back), and schedules afresh, by rank, once
        // a majority is back.
        if !self.reaches_majority_of_primaries(now) {
            if !self.election.requested {
                self.election = self.election.fresh();
            }
            self.cant_failover(CantFailover::NoMajority);
            return;
        }

        // "If the previous failover attempt timeout and the retry time has elapsed, we can setup a new one." A
        // manual failover starts its own attempt at once, whatever the last one was.
        let auth_age = now.saturating_sub(self.election.start_ms);
        let new_manual_attempt = manual && !self.election.manual;
        let new_failure = !manual && fail_time != self.election.fail_time_ms;
        if self.election.start_ms == 0 || auth_age > self.election_retry_ms() || new_manual_attempt || new_failure {
            let (rank, queue) = if manual {
                (0, 0)
            } else {
                (self.replica_rank(), self.election_queue_position())
            };
            let delay = if manual {
                0
            } else {
                ELECTION_DELAY_MS + (rank + queue) as u64 * ELECTION_RANK_STEP_MS
            };
            self.election = Election {
                start_ms: now + delay,
                rank,
                queue,
                manual,
                fail_time_ms: fail_time,
                ..self.election.fresh()
            };
            let offset = self.my_repl_offset;
            self.log(
                LogLevel::Notice,
                format!(
                    "Start of election delayed for {delay} milliseconds (rank #{rank}, offset {offset}, shard #{queue} in \
                     line)."
                ),
            );
            // "Now that we have a scheduled election, broadcast our offset to all the other slaves so that
            // they'll updated their offsets if our offset is better."
            self.broadcast_pong_to_siblings();
            if !manual {
                return;
            }
        }

        // "It is possible that we received more updated offsets from other slaves for the same master since we
        // computed our election delay. Update the delay if our rank changed." (Not for a manual failover.)
        // Shoal: likewise for the line of shards, should more primaries have failed meanwhile.
        if !self.election.requested && !self.election.manual {
            let (new_rank, new_queue) = (self.replica_rank(), self.election_queue_position());
            let (old, new) = (self.election.rank + self.election.queue, new_rank + new_queue);
            if new > old {
                let added = (new - old) as u64 * ELECTION_RANK_STEP_MS;
                self.election.start_ms += added;
                self.election.rank = new_rank;
                self.election.queue = new_queue;
                self.log(
                    LogLevel::Notice,
                    format!(
                        "Replica rank updated to #{new_rank} (shard #{new_queue} in line), added {added} milliseconds of \
                         delay."
                    ),
                );
            }
        }

        // "Return ASAP if we can't still start the election."
        if now < self.election.start_ms {
            self.cant_failover(CantFailover::WaitingDelay);
            return;
        }
        // "Return ASAP if the election is too old to be valid."
        if now.saturating_sub(self.election.start_ms) > self.vote_wait_ms() {
            self.cant_failover(CantFailover::Expired);
            return;
        }

        // "Ask for votes if needed."
        if !self.election.requested {
            // Shoal: a better-ranked sibling is running its election; let it (it has the more recent data).
            if now < self.election.siblings.deferred_until_ms && !self.election.manual {
                self.cant_failover(CantFailover::WaitingDelay);
                return;
            }
            self.current_epoch = self.current_epoch.next();
            self.election.epoch = self.current_epoch;
            self.election.requested = true;
            self.election.requested_ms = now;
            self.failover_stats.elections_started += 1;
            self.log(
                LogLevel::Notice,
                format!("Starting a failover election for epoch {}.", self.current_epoch),
            );
            // The new epoch is saved before the requests leave (SaveConfig heads the batch).
            self.save();
            self.update_state_later();
            let mflags = if self.manual.end_ms != 0 { MFLAG_FORCE_ACK } else { 0 };
            self.broadcast_flagged(Body::FailoverAuthRequest, mflags);
            return; // "Wait for replies."
        }

        // "Check if we reached the quorum."
        let needed_quorum = self.size / 2 + 1;
        if self.election.votes.len() >= needed_quorum {
            self.log(LogLevel::Notice, "Failover election won: I'm the new master.".into());
            // "Update my configEpoch to the epoch of the election."
            if self.me().config_epoch < self.election.epoch {
                let epoch = self.election.epoch;
                self.me_mut().config_epoch = epoch;
                self.log(
                    LogLevel::Notice,
                    format!("configEpoch set to {epoch} after successful failover"),
                );
            }
            self.failover_stats.elections_won += 1;
            // The votes came from a majority just now: this node is not in a minority, whatever it saw before.
            self.among_minority_ms = 0;
            self.replace_my_primary(now);
        } else if !self.election.rivals.is_empty() && now >= self.election.requested_ms + ELECTION_CONTESTED_GRACE_MS {
            // Shoal: other shards' candidates took votes in our epoch. Our voters may vote for us again in a new
            // epoch (the two-timeout rule is about another replica of our primary), so try again now rather than
            // two node timeouts later, in the order of the primaries' ids: every candidate saw the same requests,
            // so they go one after another.
            let ahead = self.election.rivals.iter().filter(|p| **p < primary_id).count();
            let wait = ahead as u64 * ELECTION_RANK_STEP_MS;
            let (epoch, rivals) = (self.election.epoch, self.election.rivals.len());
            self.log(
                LogLevel::Notice,
                format!(
                    "Election for epoch {epoch} contested by {rivals} other shard(s): trying again in {wait} \
                     milliseconds."
                ),
            );
            self.election = Election {
                start_ms: now + wait,
                rank: self.election.rank,
                queue: self.election.queue,
                manual: self.election.manual,
                fail_time_ms: self.election.fail_time_ms,
                ..self.election.fresh()
            };
            self.failover_pending = wait == 0;
        } else {
            self.cant_failover(CantFailover::WaitingVotes);
        }
    }

    /// Every node sees every request for votes: a replica notes a better-ranked sibling's (it lets that election
    /// run) and, while waiting for votes, another shard's candidate asking for our epoch or a later one.
    fn observe_competing_request(&mut self, sender: NodeId, hdr: &Header, now: u64) {
        let me = self.me();
        let Some(my_primary) = me.primary.filter(|_| me.is_replica()) else {
            return;
        };
        let Some(their_primary) = self
            .table
            .get(&sender)
            .filter(|n| n.is_replica())
            .and_then(|n| n.primary)
        else {
            return;
        };
        if their_primary == my_primary {
            let better = hdr.repl_offset > self.my_repl_offset
                || (hdr.repl_offset == self.my_repl_offset && sender < self.myself);
            if better {
                if !self.election.requested && !self.election.manual {
                    self.election.siblings.deferred_until_ms = now + self.vote_wait_ms();
                    self.log(
                        LogLevel::Notice,
                        format!("Replica {sender}, with more recent data, runs an election: letting it."),
                    );
                }
            } else {
                let (last, wait) = (self.election.siblings.worse_asked_ms, self.vote_wait_ms());
                if last == 0 || now.saturating_sub(last) > wait {
                    self.election.siblings.worse_asked_ms = now;
                    self.failover_pending = true;
                    self.log(
                        LogLevel::Notice,
                        format!("Replica {sender}, with less recent data, runs an election: running too."),
                    );
                }
            }
        } else if self.election.requested && hdr.current_epoch >= self.election.epoch {
            self.election.rivals.insert(their_primary);
            self.failover_pending = true;
        }
    }

    /// Sends our offset to the other replicas of our primary (`clusterBroadcastPong(LOCAL_SLAVES)`).
    fn broadcast_pong_to_siblings(&mut self) {
        let Some(primary) = self.me().primary else {
            return;
        };
        let links: Vec<LinkId> = self
            .table
            .replicas_of(primary)
            .filter(|r| !r.is_myself())
            .filter_map(|r| r.link)
            .collect();
        for link in links {
            self.send_pong(link, 0);
        }
    }

    /// This replica becomes the primary of its primary's slots (`clusterFailoverReplaceYourMaster`).
    fn replace_my_primary(&mut self, now: u64) {
        let me = self.me();
        let Some(old) = me.primary.filter(|_| me.is_replica()) else {
            return;
        };
        // A promotion over a primary that is not FAIL (FORCE or TAKEOVER) and did not pause for us: it may still
        // be accepting writes until our configuration reaches it, so ours start a rejoin delay later.
        let old_failed = self.table.get(&old).is_some_and(|n| n.is_failed());
        if !old_failed && self.manual.primary_offset.is_none() {
            self.write_fenced_ms = now;
        }
        // "1) Turn this node into a master."
        self.set_node_as_primary(self.myself);
        self.emit(Effect::BecomePrimary);
        // "2) Claim all the slots assigned to our master."
        let slots = self.table.get(&old).map(|n| n.slots.clone()).unwrap_or_default();
        for slot in slots.slots() {
            self.table.unassign_slot(slot);
            self.table.assign_slot(slot, self.myself);
        }
        // "3) Update state and save config."
        self.update_state(now);
        self.save();
        // "4) Pong all the other nodes so that they can update the state accordingly and detect that we switched
        // to master role."
        self.broadcast_pong();
        // "5) If there was a manual failover in progress, clear the state."
        self.reset_manual_failover();
        self.election = Election::default();
    }

    // ------------------------------------------------------------------------------------------------------
    // Votes
    // ------------------------------------------------------------------------------------------------------

    /// FAILOVER_AUTH_REQUEST, FAILOVER_AUTH_ACK and MFSTART from a known node.
    pub(super) fn process_failover_message(&mut self, kind: MessageKind, sender: NodeId, hdr: &Header, link: LinkId) {
        let now = self.now_ms;
        match kind {
            MessageKind::FailoverAuthRequest => {
                self.observe_competing_request(sender, hdr, now);
                self.send_failover_auth_if_needed(sender, hdr, link, now);
            }
            MessageKind::FailoverAuthAck => self.process_failover_auth_ack(sender, hdr),
            MessageKind::MfStart => self.process_mf_start(sender, now),
            _ => {}
        }
    }

    /// A replica asks for our vote (`clusterSendFailoverAuthIfNeeded`).
    fn send_failover_auth_if_needed(&mut self, candidate: NodeId, hdr: &Header, link: LinkId, now: u64) {
        // Shoal: one of our own replicas asks to replace us. Whatever the voters decide, stop writes for the
        // rejoin delay: if it wins, we learn its configuration well within that time, and nothing we accept
        // meanwhile can be lost.
        let my_replica = self
            .table
            .get(&candidate)
            .is_some_and(|n| n.is_replica() && n.primary == Some(self.myself));
        if my_replica && self.serves_slots() {
            self.write_fenced_ms = now;
            self.log(
                LogLevel::Warning,
                format!("My replica {candidate} asks for votes to replace me: refusing writes for a while."),
            );
        }
        // "If we are not a master serving at least 1 slot, we don't have the right to vote, as the cluster size
        // in Redis Cluster is the number of masters serving at least one slot, and quorum is the cluster size
        // + 1."
        if !self.serves_slots() {
            return;
        }
        let request_epoch = hdr.current_epoch;
        let current = self.current_epoch;
        // "Request epoch must be >= our currentEpoch." (It cannot be greater: the header raised ours.)
        if request_epoch < current {
            self.deny(candidate, format!("reqEpoch ({request_epoch}) < curEpoch({current})"));
            return;
        }
        // "I already voted for this epoch? Return ASAP."
        if self.last_vote_epoch == current {
            self.deny(candidate, format!("already voted for epoch {current}"));
            return;
        }
        // "Node must be a slave and its master down. The master can be non failing if the request is flagged
        // with CLUSTERMSG_FLAG0_FORCEACK (manual failover)."
        let force_ack = hdr.mflags & MFLAG_FORCE_ACK != 0;
        let Some(node) = self.table.get(&candidate) else {
            return;
        };
        if node.is_primary() {
            self.deny(candidate, "it is a master node".into());
            return;
        }
        let Some(primary) = node.primary.and_then(|id| self.table.get(&id)) else {
            self.deny(candidate, "I don't know its master".into());
            return;
        };
        if !primary.is_failed() && !force_ack {
            self.deny(candidate, "its master is up".into());
            return;
        }
        // "We did not voted for a slave about this master for two times the node timeout. This is not strictly
        // needed for correctness of the algorithm but makes the base case more linear." Its point is that no
        // other replica wins a second failover; the same replica asking again in a new epoch (its election
        // collided with another shard's) may have our vote again.
        let lockout = 2 * self.config.node_timeout_ms;
        let since_vote = now.saturating_sub(primary.voted_ms);
        if primary.voted_ms != 0 && since_vote < lockout && primary.voted_for != Some(candidate) {
            let left = lockout - since_vote;
            self.deny(
                candidate,
                format!("can't vote about this master before {left} milliseconds"),
            );
            return;
        }
        // Shoal: and we have not heard from that primary for the node timeout ourselves. A primary that still
        // talks to us is not failed, whatever an older FAIL flag says (FAIL of a primary serving slots lingers
        // for two node timeouts after it comes back); replacing it now would leave two primaries accepting
        // writes until it learned. A real failure never meets this: FAIL needs a majority of primaries that
        // heard nothing from it for longer than the node timeout, and the request comes later still.
        let heard_ago = now.saturating_sub(primary.data_received_ms);
        if !force_ack && primary.data_received_ms != 0 && heard_ago <= self.config.node_timeout_ms {
            self.deny(
                candidate,
                format!("I heard from its master {heard_ago} milliseconds ago"),
            );
            return;
        }
        let primary_id = primary.id;
        // Shoal: and no other replica of that primary we heard from within the node timeout announced more recent
        // data. Our view of its offset can only be behind, so it really has more; it will ask too (the request
        // it sees tells it to). This keeps every write its primary had acknowledged under WAIT to all replicas.
        let fresher = self
            .table
            .replicas_of(primary_id)
            .filter(|r| r.id != candidate && !r.is_myself())
            .filter(|r| !r.flags.intersects(NodeFlags::FAIL | NodeFlags::NOFAILOVER))
            .filter(|r| now.saturating_sub(r.data_received_ms) <= self.config.node_timeout_ms)
            .find(|r| r.repl_offset > hdr.repl_offset)
            .map(|r| (r.id, r.repl_offset));
        if let (Some((other, offset)), false) = (fresher, force_ack) {
            let text = format!(
                "replica {other} has more recent data (offset {offset} > {})",
                hdr.repl_offset
            );
            self.deny(candidate, text);
            return;
        }
        // "The slave requesting the vote must have a configEpoch for the claimed slots that is >= the one of the
        // masters currently serving the same slots in the current configuration."
        for slot in hdr.slots.slots() {
            let Some(owner) = self.table.slot_owner(slot).and_then(|id| self.table.get(&id)) else {
                continue;
            };
            if owner.config_epoch > hdr.config_epoch {
                let text = format!(
                    "slot {slot} epoch ({}) > reqEpoch ({})",
                    owner.config_epoch, hdr.config_epoch
                );
                self.deny(candidate, text);
                return;
            }
        }
        // "We can vote for this slave." The vote is saved before the ack leaves: SaveConfig heads the batch.
        self.last_vote_epoch = current;
        if let Some(primary) = self.table.get_mut(&primary_id) {
            primary.voted_ms = now;
            primary.voted_for = Some(candidate);
        }
        self.save();
        self.failover_stats.votes_granted += 1;
        let reply = self
            .table
            .get(&candidate)
            .and_then(|n| n.link)
            .filter(|l| self.link_established(Some(*l)))
            .unwrap_or(link);
        self.send(reply, Body::FailoverAuthAck);
        self.log(
            LogLevel::Notice,
            format!("Failover auth granted to {candidate} for epoch {current}"),
        );
    }

    fn deny(&mut self, candidate: NodeId, why: String) {
        self.log(LogLevel::Warning, format!("Failover auth denied to {candidate}: {why}"));
    }

    /// A vote for us: it counts if the voter is a primary serving slots and its epoch is the election's or
    /// newer.
    fn process_failover_auth_ack(&mut self, voter: NodeId, hdr: &Header) {
        if !self.election.requested {
            return;
        }
        let counts = self
            .table
            .get(&voter)
            .is_some_and(|n| n.is_primary() && !n.slots.is_empty());
        if counts && hdr.current_epoch >= self.election.epoch {
            self.election.votes.insert(voter);
            // "Maybe we reached a quorum here, set a flag to make sure we check ASAP."
            self.failover_pending = true;
        }
    }

    // ------------------------------------------------------------------------------------------------------
    // Manual failover
    // ------------------------------------------------------------------------------------------------------

    /// `CLUSTER FAILOVER [FORCE|TAKEOVER]` on a replica; the reply is OK once the failover is under way (it
    /// completes, or is abandoned after [`MANUAL_FAILOVER_TIMEOUT_MS`], in the background).
    pub fn failover(&mut self, mode: FailoverMode, now_ms: u64) -> Result<(), ClusterError> {
        self.now_ms = now_ms;
        let me = self.me();
        if me.is_primary() {
            return Err(ClusterError::FailoverOnPrimary);
        }
        let Some(primary) = me.primary.and_then(|id| self.table.get(&id)) else {
            return Err(ClusterError::FailoverPrimaryUnknown);
        };
        if mode == FailoverMode::Default && (primary.is_failed() || !self.link_established(primary.link)) {
            return Err(ClusterError::FailoverPrimaryDown);
        }
        let primary_link = primary.link;
        self.reset_manual_failover();
        self.manual.end_ms = now_ms + MANUAL_FAILOVER_TIMEOUT_MS;
        match mode {
            FailoverMode::Takeover => {
                // "A takeover does not perform any initial check. It just generates a new configuration epoch for
                // this node without consensus, claims the master's slots, and broadcast the new configuration."
                // A replica's own config epoch is no claim of anything, so the new one is always fresh (Redis
                // keeps it when it happens to be the greatest, which can leave it equal to the primary's).
                self.log(LogLevel::Warning, "Taking over the master (user request).".into());
                self.current_epoch = self.current_epoch.next();
                let epoch = self.current_epoch;
                self.me_mut().config_epoch = epoch;
                self.log(LogLevel::Notice, format!("New configEpoch set to {epoch}"));
                self.replace_my_primary(now_ms);
            }
            FailoverMode::Force => {
                // "If this is a forced failover, we don't need to talk with our master to agree about the offset.
                // We just failover taking over it without coordination."
                self.log(LogLevel::Warning, "Forced failover user request accepted.".into());
                self.manual.can_start = true;
                self.handle_replica_failover(now_ms);
            }
            FailoverMode::Default => {
                self.log(LogLevel::Warning, "Manual failover user request accepted.".into());
                if let Some(link) = primary_link {
                    self.send(link, Body::MfStart);
                }
            }
        }
        Ok(())
    }

    /// Whether a manual failover (`CLUSTER FAILOVER` in any mode) is under way on this node.
    pub fn manual_failover_in_progress(&self) -> bool {
        self.manual.end_ms != 0
    }

    /// MFSTART: one of our replicas asks us to pause writes for a manual failover.
    fn process_mf_start(&mut self, sender: NodeId, now: u64) {
        // "This message is acceptable only if I'm a master and the sender is one of my slaves."
        let mine = self
            .table
            .get(&sender)
            .is_some_and(|n| n.is_replica() && n.primary == Some(self.myself));
        if !self.me().is_primary() || !mine {
            return;
        }
        // "Manual failover requested from slaves. Initialize the state accordingly."
        self.reset_manual_failover();
        self.manual.end_ms = now + MANUAL_FAILOVER_TIMEOUT_MS;
        self.manual.replica = Some(sender);
        self.manual.paused = true;
        self.emit(Effect::PauseWrites {
            until_ms: now + MANUAL_FAILOVER_TIMEOUT_MS * MANUAL_FAILOVER_PAUSE_MULT,
        });
        self.log(
            LogLevel::Notice,
            format!("Manual failover requested by replica {sender}."),
        );
    }

    /// The driver paused writes for a manual failover ([`Effect::PauseWrites`]) and none is in flight: `offset`
    /// is the replication offset they stopped at. The replica is told at once (a PING flagged PAUSED carrying
    /// it), and every later header carries it too.
    pub fn on_writes_paused(&mut self, offset: u64, now_ms: u64) -> Vec<Effect> {
        self.now_ms = now_ms;
        if self.manual.paused && self.me().is_primary() {
            self.manual.paused_offset = Some(offset);
            self.my_repl_offset = offset;
            // "We need to send a ping message to the replica, as it would carry the offset at which the master
            // paused clients, so that the replica would know that it is safe to [start] to complete failover as
            // quickly as possible."
            let link = self
                .manual
                .replica
                .and_then(|id| self.table.get(&id))
                .and_then(|n| n.link);
            if let Some(link) = link {
                self.send_ping(link, MessageKind::Ping);
            }
        }
        self.finish()
    }

    /// A message from our primary while our manual failover waits for its paused offset.
    pub(super) fn note_paused_primary_offset(&mut self, sender: NodeId, hdr: &Header) {
        let me = self.me();
        if self.manual.end_ms == 0
            || !me.is_replica()
            || me.primary != Some(sender)
            || hdr.mflags & MFLAG_PAUSED == 0
            || self.manual.primary_offset.is_some()
        {
            return;
        }
        self.manual.primary_offset = Some(hdr.repl_offset);
        self.failover_pending = true;
        self.log(
            LogLevel::Notice,
            format!(
                "Received replication offset for paused master manual failover: {}",
                hdr.repl_offset
            ),
        );
    }

    /// The replica waits for its offset to reach the paused primary's (`clusterHandleManualFailover`).
    pub(super) fn handle_manual_failover(&mut self) {
        if self.manual.end_ms == 0 || self.manual.can_start || !self.me().is_replica() {
            return;
        }
        let Some(target) = self.manual.primary_offset else {
            return; // "Wait for offset..."
        };
        if self.my_repl_offset >= target {
            // "Our replication offset matches the master replication offset announced after clients were
            // paused. We can start the failover."
            self.manual.can_start = true;
            self.log(
                LogLevel::Notice,
                "All master replication stream processed, manual failover can start.".into(),
            );
            self.failover_pending = true;
        }
    }

    /// Abandons a manual failover past its deadline (`manualFailoverCheckTimeout`).
    pub(super) fn check_manual_failover_timeout(&mut self, now: u64) {
        if self.manual.end_ms != 0 && self.manual.end_ms < now {
            self.log(LogLevel::Warning, "Manual failover timed out.".into());
            self.reset_manual_failover();
        }
    }

    /// Clears the manual failover state, resuming writes on a paused primary (`resetManualFailover`).
    pub(super) fn reset_manual_failover(&mut self) {
        if self.manual.paused {
            self.emit(Effect::ResumeWrites);
        }
        self.manual = ManualFailover::default();
        if self.election.manual {
            // A manual attempt's schedule does not apply to a later automatic one.
            self.election.manual = false;
        }
    }

    // ------------------------------------------------------------------------------------------------------
    // Replica migration
    // ------------------------------------------------------------------------------------------------------

    /// Moves this replica to an orphaned primary when it is the designated one (`clusterCron`'s orphan count,
    /// then `clusterHandleSlaveMigration`).
    pub(super) fn handle_replica_migration(&mut self, now: u64) {
        // Working replicas per primary, and the smallest id among them.
        let mut ok_replicas: BTreeMap<NodeId, (usize, NodeId)> = BTreeMap::new();
        for n in self.table.iter() {
            if let Some(p) = n.primary.filter(|_| n.is_replica() && !n.is_failed()) {
                let entry = ok_replicas.entry(p).or_insert((0, n.id));
                entry.0 += 1;
                entry.1 = entry.1.min(n.id);
            }
        }
        // "A master is orphaned if it is serving a non-zero number of slots, have no working slaves, but used to
        // have at least one slave, or failed over a master that used to have slaves." Track since when.
        let mut orphaned = Vec::new();
        let mut max_replicas = 0;
        for n in self.table.iter() {
            if !n.is_primary() || n.is_failed() {
                continue;
            }
            let count = ok_replicas.get(&n.id).map_or(0, |c| c.0);
            max_replicas = max_replicas.max(count);
            if count == 0 && n.flags.contains(NodeFlags::MIGRATE_TO) {
                orphaned.push((n.id, !n.slots.is_empty()));
            }
        }
        let orphan_ids: BTreeSet<NodeId> = orphaned.iter().map(|(id, _)| *id).collect();
        let ids: Vec<NodeId> = self.table.iter().map(|n| n.id).collect();
        for id in ids {
            if let Some(n) = self.table.get_mut(&id) {
                if !orphan_ids.contains(&id) {
                    n.orphaned_since_ms = 0;
                } else if n.orphaned_since_ms == 0 {
                    n.orphaned_since_ms = now;
                }
            }
        }

        let me = self.me();
        if !me.is_replica() || !self.config.allow_replica_migration {
            return;
        }
        let Some(my_primary) = me.primary else {
            return;
        };
        let mine = ok_replicas.get(&my_primary).map_or(0, |c| c.0);
        // "It does not make sense to try a migration if there is no master with at least *two* working slaves."
        if !orphaned.iter().any(|(_, slots)| *slots) || max_replicas < 2 || mine != max_replicas {
            return;
        }
        // "Step 1: Don't migrate if the cluster state is not ok."
        if !self.state_ok {
            return;
        }
        // "Step 2: Don't migrate if my master will not be left with at least 'migration-barrier' slaves after my
        // migration."
        let healthy = self
            .table
            .replicas_of(my_primary)
            .filter(|r| !r.flags.intersects(NodeFlags::FAIL | NodeFlags::PFAIL))
            .count();
        if healthy <= self.config.migration_barrier {
            return;
        }
        // "Step 3: Identify a candidate for migration, and check if among the masters with the greatest number of
        // ok slaves, I'm the one with the smallest node ID." (Among working replicas: a dead one with a smaller
        // id would block migration until it came back.)
        let candidate = ok_replicas
            .values()
            .filter(|(count, _)| *count == max_replicas)
            .map(|(_, smallest)| *smallest)
            .min();
        if candidate != Some(self.myself) {
            return;
        }
        // "Step 4: perform the migration if there is a target, and if I'm the candidate, but only if the master
        // is continuously orphaned for a couple of seconds."
        let target = orphaned
            .iter()
            .filter(|(_, slots)| *slots)
            .filter_map(|(id, _)| self.table.get(id))
            .find(|n| now.saturating_sub(n.orphaned_since_ms) > REPLICA_MIGRATION_DELAY_MS)
            .map(|n| n.id);
        if let Some(target) = target {
            self.log(LogLevel::Notice, format!("Migrating to orphaned master {target}"));
            self.set_my_primary(target);
        }
    }
}
