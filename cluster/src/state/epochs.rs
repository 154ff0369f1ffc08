//! Who owns which slots, decided by config epochs; config-epoch collisions; role changes that follow.
//!
//! The specification's rule: a slot belongs to the primary claiming it with the greatest config epoch; a claim
//! on an unassigned slot is taken as is. Claims arrive in every PING/PONG header and in UPDATE messages.
//! Config epochs must end up unique among primaries: when two primaries share one, the one with the smaller node
//! id moves to a new epoch (the greatest it knows plus one), so that repeated collisions settle.

use super::{ClusterNode, Effect, LogLevel};
use crate::node::{Epoch, NodeFlags, NodeId};
use crate::slots::SlotRanges;

impl ClusterNode {
    /// Applies `sender`'s claim on `slots` under `sender_epoch` (`clusterUpdateSlotsConfigWith`).
    pub(super) fn update_slots_config_with(&mut self, sender: NodeId, sender_epoch: Epoch, slots: &SlotRanges) {
        if sender == self.myself {
            self.log(LogLevel::Notice, "Discarding UPDATE message about myself.".into());
            return;
        }
        let me = self.me();
        // The node whose slots are "ours": us, or our primary when we are a replica.
        let cur_primary = if me.is_primary() { Some(self.myself) } else { me.primary };
        let mut new_primary = None;
        let mut migrated_our_slots = 0usize;
        let mut sender_slots = 0usize;
        let mut lost_mine = SlotRanges::new();
        let mut changed = false;
        for slot in slots.slots() {
            sender_slots += 1;
            let owner = self.table.slot_owner(slot);
            if owner == Some(sender) {
                continue;
            }
            // "The slot is in importing state, it should be modified only manually via redis-cli."
            if self.table.slot_map().importing_from(slot).is_some() {
                continue;
            }
            // "We rebind the slot to the new node claiming it if the slot was unassigned or the new node claims
            // it with a greater configEpoch."
            let owner_epoch = owner.and_then(|id| self.table.get(&id)).map(|n| n.config_epoch);
            if owner_epoch.is_none_or(|e| e < sender_epoch) {
                if owner == Some(self.myself) {
                    lost_mine.insert(slot);
                }
                if owner.is_some() && owner == cur_primary {
                    new_primary = Some(sender);
                    migrated_our_slots += 1;
                }
                self.table.assign_slot(slot, sender);
                changed = true;
            }
        }
        if changed {
            self.save();
            self.update_state_later();
        }

        let cur_primary_empty = cur_primary
            .and_then(|id| self.table.get(&id))
            .is_some_and(|n| n.slots.is_empty());
        let grand_primary = self
            .me()
            .primary
            .and_then(|id| self.table.get(&id))
            .and_then(|p| p.primary)
            .filter(|gp| *gp != self.myself);
        if let (Some(new), true) = (new_primary, cur_primary_empty) {
            // "We are a master left without slots (we were failed over), or a slave whose master is left without
            // slots: replicate the new slots owner."
            if self.config.allow_replica_migration || sender_slots == migrated_our_slots {
                self.log(
                    LogLevel::Notice,
                    format!("Configuration change detected. Reconfiguring myself as a replica of {new}"),
                );
                self.set_my_primary(new);
                return;
            }
        }
        if let Some(gp) = grand_primary {
            // "Safeguard against sub-replicas."
            self.log(
                LogLevel::Notice,
                format!("I'm a sub-replica! Reconfiguring myself as a replica of grandmaster {gp}"),
            );
            self.set_my_primary(gp);
        } else if !lost_mine.is_empty() {
            // Still a primary, but some slots went to a newer configuration: their keys must go.
            self.emit(Effect::DeleteKeysInSlots(lost_mine));
        }
    }

    /// Two primaries with the same config epoch: "if this node has the lexicographically smaller Node ID
    /// compared to the other node with the conflicting epoch (the 'sender' node), it will assign itself the
    /// greatest configuration epoch currently detected among nodes plus 1" (`clusterHandleConfigEpochCollision`).
    pub(super) fn handle_config_epoch_collision(&mut self, sender: NodeId) {
        let Some(other) = self.table.get(&sender) else {
            return;
        };
        let me = self.me();
        if other.config_epoch != me.config_epoch || !other.is_primary() || !me.is_primary() {
            return;
        }
        // "Don't act if the colliding node has a smaller Node ID."
        if sender <= self.myself {
            return;
        }
        self.current_epoch = self.current_epoch.next();
        let epoch = self.current_epoch;
        self.me_mut().config_epoch = epoch;
        // Persisted before anything else is sent: SaveConfig heads the batch.
        self.save();
        self.log(
            LogLevel::Verbose,
            format!("WARNING: configEpoch collision with node {sender}. configEpoch set to {epoch}"),
        );
    }

    /// A new config epoch for this node without agreement (`clusterBumpConfigEpochWithoutConsensus`), unless it
    /// already has the greatest one. True when it bumped.
    pub(super) fn bump_config_epoch_without_consensus(&mut self) -> bool {
        let max_epoch = self
            .table
            .iter()
            .map(|n| n.config_epoch)
            .max()
            .unwrap_or_default()
            .max(self.current_epoch);
        let mine = self.me().config_epoch;
        if mine == Epoch::ZERO || mine != max_epoch {
            self.current_epoch = self.current_epoch.next();
            let epoch = self.current_epoch;
            self.me_mut().config_epoch = epoch;
            self.save();
            self.log(LogLevel::Notice, format!("New configEpoch set to {epoch}"));
            true
        } else {
            false
        }
    }

    /// Records that `id` acts as a primary (`clusterSetNodeAsMaster`).
    pub(super) fn set_node_as_primary(&mut self, id: NodeId) {
        let myself = self.myself;
        let Some(node) = self.table.get_mut(&id) else {
            return;
        };
        if node.is_primary() {
            return;
        }
        if node.primary.take().is_some() && id != myself {
            // A replica promoted over a primary that had replicas is a valid target for replica migration.
            node.flags.insert(NodeFlags::MIGRATE_TO);
        }
        node.flags.remove(NodeFlags::REPLICA);
        node.flags.insert(NodeFlags::PRIMARY);
        self.save();
        self.update_state_later();
    }

    /// Makes this node a replica of `primary` (`clusterSetMaster`). It must serve no slots.
    pub(super) fn set_my_primary(&mut self, primary: NodeId) {
        if primary == self.myself || !self.me().slots.is_empty() {
            return;
        }
        let Some(target) = self.table.get(&primary) else {
            return;
        };
        let (ip, port, shard) = (target.ip, target.port, target.shard_id);
        if self.me().is_primary() {
            let me = self.me_mut();
            me.flags.remove(NodeFlags::PRIMARY | NodeFlags::MIGRATE_TO);
            me.flags.insert(NodeFlags::REPLICA);
            self.table.slot_map_mut().close_all();
        }
        let me = self.me_mut();
        me.primary = Some(primary);
        me.shard_id = shard;
        if let Some(target) = self.table.get_mut(&primary) {
            // It has a replica now: a target for replica migration once orphaned (`clusterNodeAddSlave`).
            target.flags.insert(NodeFlags::MIGRATE_TO);
        }
        if let Some(ip) = ip {
            self.emit(Effect::ReplicateFrom { primary, ip, port });
        }
        // A manual failover of ours, on either side, is over: a paused primary resumes (as a replica it will
        // redirect the writes it was holding).
        self.reset_manual_failover();
        self.save();
        self.update_state_later();
    }
}
