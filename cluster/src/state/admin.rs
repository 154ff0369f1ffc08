//! The CLUSTER subcommands that change the configuration: MEET, ADDSLOTS[RANGE], DELSLOTS[RANGE], FLUSHSLOTS,
//! SETSLOT, BUMPEPOCH, SET-CONFIG-EPOCH, FORGET, REPLICATE, RESET.
//!
//! Each checks its arguments in the order Redis 7.0 does, so the same bad command gets the same error; refusals
//! are [`ClusterError`]s whose [`ClusterError::wire_text`] is Redis's reply. The server parses integers (with
//! Redis's rules) and passes what only it knows, such as whether the keyspace is empty. Effects (SaveConfig
//! above all) are collected with [`ClusterNode::take_effects`] after the call.

use std::net::IpAddr;

use super::{ClusterNode, Effect, LogLevel, BUS_PORT_OFFSET, FORGET_BAN_MS};
use crate::error::ClusterError;
use crate::node::{Epoch, NodeFlags, NodeId, NodeInfo, ShardId};
use crate::slot::{Slot, SLOT_COUNT};

/// What `CLUSTER SETSLOT <slot> ...` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetSlot<'a> {
    /// `MIGRATING <node-id>`: this node, the owner, is moving the slot to the node.
    Migrating(&'a str),
    /// `IMPORTING <node-id>`: this node is receiving the slot from the node.
    Importing(&'a str),
    /// `STABLE`: clear both marks.
    Stable,
    /// `NODE <node-id>`: the slot belongs to the node now. `keys_in_slot` is how many keys this node still
    /// holds in it.
    Node { id: &'a str, keys_in_slot: u64 },
}

impl ClusterNode {
    /// `CLUSTER MEET <ip> <port> [<bus-port>]`: start a handshake with the node at that address (the bus port
    /// defaults to port + 10000). A handshake already under way for the address is not started twice, and is not
    /// an error.
    pub fn meet(&mut self, ip: &str, port: i64, bus_port: Option<i64>, now_ms: u64) -> Result<(), ClusterError> {
        self.now_ms = now_ms;
        let bus_port = bus_port.unwrap_or(port + i64::from(BUS_PORT_OFFSET));
        let invalid = || ClusterError::InvalidNodeAddress {
            ip: ip.to_owned(),
            port: port.to_string(),
        };
        let addr: IpAddr = ip.parse().map_err(|_| invalid())?;
        let (Ok(port), Ok(bus_port)) = (u16::try_from(port), u16::try_from(bus_port)) else {
            return Err(invalid());
        };
        if port == 0 || bus_port == 0 {
            return Err(invalid());
        }
        let ip = Some(addr.to_canonical());
        let in_progress = self
            .table
            .iter()
            .any(|n| n.in_handshake() && n.ip == ip && n.port == port && n.bus_port == bus_port);
        if in_progress {
            return Ok(());
        }
        let id = NodeId::random(&mut self.rng);
        let shard = ShardId::random(&mut self.rng);
        let mut node = NodeInfo::new(id, NodeFlags::HANDSHAKE | NodeFlags::MEET, shard, now_ms);
        node.ip = ip;
        node.port = port;
        node.bus_port = bus_port;
        self.table.insert(node);
        Ok(())
    }

    /// `CLUSTER ADDSLOTS <slot> ...` (the server refuses unparsable or out-of-range arguments first, with
    /// [`ClusterError::InvalidSlot`]).
    pub fn add_slots(&mut self, slots: &[Slot]) -> Result<(), ClusterError> {
        self.change_slots(slots.iter().map(|s| Ok((*s, *s))), false)
    }

    /// `CLUSTER DELSLOTS <slot> ...`.
    pub fn del_slots(&mut self, slots: &[Slot]) -> Result<(), ClusterError> {
        self.change_slots(slots.iter().map(|s| Ok((*s, *s))), true)
    }

    /// `CLUSTER ADDSLOTSRANGE <start> <end> ...`; `None` stands for an argument that is not a valid slot (Redis
    /// checks the pairs one after the other, parsing included).
    pub fn add_slot_ranges(&mut self, ranges: &[(Option<Slot>, Option<Slot>)]) -> Result<(), ClusterError> {
        self.change_slots(ranges.iter().map(checked_range), false)
    }

    /// `CLUSTER DELSLOTSRANGE <start> <end> ...`.
    pub fn del_slot_ranges(&mut self, ranges: &[(Option<Slot>, Option<Slot>)]) -> Result<(), ClusterError> {
        self.change_slots(ranges.iter().map(checked_range), true)
    }

    /// Checks every slot (busy or unassigned, then repeated), then changes them all or none.
    fn change_slots(
        &mut self,
        ranges: impl Iterator<Item = Result<(Slot, Slot), ClusterError>>,
        del: bool,
    ) -> Result<(), ClusterError> {
        let mut seen = vec![false; SLOT_COUNT];
        let mut chosen = Vec::new();
        for range in ranges {
            let (start, end) = range?;
            for n in start.get()..=end.get() {
                let Some(slot) = Slot::new(u32::from(n)) else {
                    return Err(ClusterError::InvalidSlot);
                };
                let owned = self.table.slot_owner(slot).is_some();
                if del && !owned {
                    return Err(ClusterError::SlotUnassigned(slot));
                }
                if !del && owned {
                    return Err(ClusterError::SlotBusy(slot));
                }
                match seen.get_mut(slot.index()) {
                    Some(true) => return Err(ClusterError::SlotRepeated(slot)),
                    Some(flag) => *flag = true,
                    None => return Err(ClusterError::InvalidSlot),
                }
                chosen.push(slot);
            }
        }
        let me = self.myself;
        for slot in chosen {
            // "If this slot was set as importing we can clear this state as now we are the real owner."
            self.table.slot_map_mut().set_importing(slot, None);
            if del {
                self.table.unassign_slot(slot);
            } else {
                self.table.assign_slot(slot, me);
            }
        }
        self.save();
        self.update_state_later();
        Ok(())
    }

    /// `CLUSTER FLUSHSLOTS`: this node serves no slot any more. Refused unless the keyspace is empty.
    pub fn flush_slots(&mut self, db_is_empty: bool) -> Result<(), ClusterError> {
        if !db_is_empty {
            return Err(ClusterError::FlushSlotsNotEmpty);
        }
        self.table.unassign_node_slots(self.myself);
        self.save();
        self.update_state_later();
        Ok(())
    }

    /// `CLUSTER SETSLOT <slot> ...`. `slot` is `None` when the argument is not a valid slot, `action` is
    /// `None` when the subcommand word or the argument count is wrong: Redis refuses a replica first, then a bad
    /// slot, then a bad action.
    pub fn set_slot(&mut self, slot: Option<Slot>, action: Option<SetSlot<'_>>) -> Result<(), ClusterError> {
        if self.me().is_replica() {
            return Err(ClusterError::SetSlotOnReplica);
        }
        let slot = slot.ok_or(ClusterError::InvalidSlot)?;
        let action = action.ok_or(ClusterError::InvalidSetSlotAction)?;
        let owner = self.table.slot_owner(slot);
        match action {
            SetSlot::Migrating(id) => {
                if owner != Some(self.myself) {
                    return Err(ClusterError::NotSlotOwner(slot));
                }
                let target = self
                    .known(id)
                    .ok_or_else(|| ClusterError::DontKnowNode(id.to_owned()))?;
                self.table.slot_map_mut().set_migrating(slot, Some(target));
            }
            SetSlot::Importing(id) => {
                if owner == Some(self.myself) {
                    return Err(ClusterError::AlreadySlotOwner(slot));
                }
                let source = self
                    .known(id)
                    .ok_or_else(|| ClusterError::DontKnowNode(id.to_owned()))?;
                self.table.slot_map_mut().set_importing(slot, Some(source));
            }
            SetSlot::Stable => {
                self.table.slot_map_mut().set_importing(slot, None);
                self.table.slot_map_mut().set_migrating(slot, None);
            }
            SetSlot::Node { id, keys_in_slot } => {
                let target = self.known(id).ok_or_else(|| ClusterError::UnknownNode(id.to_owned()))?;
                // "If this hash slot was served by 'myself' before to switch make sure there are no longer
                // local keys for this hash slot."
                if owner == Some(self.myself) && target != self.myself && keys_in_slot != 0 {
                    return Err(ClusterError::SlotHasKeys(slot));
                }
                // "If this slot is in migrating status but we have no keys for it assigning the slot to another
                // node will clear the migrating status."
                if keys_in_slot == 0 && self.table.slot_map().migrating_to(slot).is_some() {
                    self.table.slot_map_mut().set_migrating(slot, None);
                }
                let slot_was_mine = owner == Some(self.myself);
                self.table.unassign_slot(slot);
                self.table.assign_slot(slot, target);
                // "If we are a master left without slots, we should turn into a replica of the new master."
                if slot_was_mine
                    && target != self.myself
                    && self.me().slots.is_empty()
                    && self.config.allow_replica_migration
                {
                    self.log(
                        LogLevel::Notice,
                        format!("Configuration change detected. Reconfiguring myself as a replica of {target}"),
                    );
                    self.set_my_primary(target);
                }
                // "If this node was importing this slot, assigning the slot to itself also clears the importing
                // status" - and the slot was manually migrated, so a new config epoch, taken without consensus,
                // lets the cluster adopt the new owner; collisions are resolved as usual.
                if target == self.myself && self.table.slot_map().importing_from(slot).is_some() {
                    if self.bump_config_epoch_without_consensus() {
                        self.log(
                            LogLevel::Notice,
                            format!("configEpoch updated after importing slot {slot}"),
                        );
                    }
                    self.table.slot_map_mut().set_importing(slot, None);
                    // "After importing this slot, let the other nodes know as soon as possible."
                    self.broadcast_pong();
                }
            }
        }
        self.save();
        self.update_state_later();
        Ok(())
    }

    /// `CLUSTER BUMPEPOCH`: a new config epoch for this node unless it already has the greatest. Returns whether
    /// it bumped and the config epoch (`BUMPED <epoch>` / `STILL <epoch>`).
    pub fn bump_epoch(&mut self) -> (bool, Epoch) {
        let bumped = self.bump_config_epoch_without_consensus();
        (bumped, self.me().config_epoch)
    }

    /// `CLUSTER SET-CONFIG-EPOCH <epoch>`: only on a node that knows no other node and has config epoch 0, so
    /// that a new cluster starts with distinct epochs without waiting for collision resolution.
    pub fn set_config_epoch(&mut self, epoch: i64) -> Result<(), ClusterError> {
        let Ok(value) = u64::try_from(epoch) else {
            return Err(ClusterError::InvalidConfigEpoch(epoch));
        };
        if self.table.len() > 1 {
            return Err(ClusterError::ConfigEpochOthersKnown);
        }
        if self.me().config_epoch != Epoch::ZERO {
            return Err(ClusterError::ConfigEpochNonZero);
        }
        self.me_mut().config_epoch = Epoch(value);
        self.log(
            LogLevel::Notice,
            format!("configEpoch set to {value} via CLUSTER SET-CONFIG-EPOCH"),
        );
        if self.current_epoch < Epoch(value) {
            self.current_epoch = Epoch(value);
        }
        self.save();
        self.update_state_later();
        Ok(())
    }

    /// `CLUSTER FORGET <node-id>`: drop the node and refuse to re-learn it from gossip for 60 s, the time an
    /// operator has to send FORGET to every node.
    pub fn forget(&mut self, id: &str, now_ms: u64) -> Result<(), ClusterError> {
        self.now_ms = now_ms;
        let node = self.known(id).ok_or_else(|| ClusterError::UnknownNode(id.to_owned()))?;
        if node == self.myself {
            return Err(ClusterError::CantForgetMyself);
        }
        if self.me().is_replica() && self.me().primary == Some(node) {
            return Err(ClusterError::CantForgetMyPrimary);
        }
        self.forgotten.insert(node, now_ms + FORGET_BAN_MS);
        self.delete_node(node);
        self.save();
        self.update_state_later();
        Ok(())
    }

    /// `CLUSTER REPLICATE <node-id>`: become a replica of a primary. A primary must be empty (no slots, no
    /// keys) to do so; a replica may switch primaries.
    pub fn replicate(&mut self, id: &str, db_is_empty: bool) -> Result<(), ClusterError> {
        let primary = self.known(id).ok_or_else(|| ClusterError::UnknownNode(id.to_owned()))?;
        if primary == self.myself {
            return Err(ClusterError::CantReplicateMyself);
        }
        if self.table.get(&primary).is_some_and(NodeInfo::is_replica) {
            return Err(ClusterError::CantReplicateReplica);
        }
        if self.me().is_primary() && (!self.me().slots.is_empty() || !db_is_empty) {
            return Err(ClusterError::ReplicateNotEmpty);
        }
        self.set_my_primary(primary);
        self.save();
        self.update_state_later();
        Ok(())
    }

    /// `CLUSTER RESET [SOFT|HARD]`: forget every other node and every slot; a replica turns primary (and the
    /// server empties it). HARD also zeroes the epochs and takes a new node id. A primary holding keys refuses.
    pub fn reset(&mut self, hard: bool, db_is_empty: bool) -> Result<(), ClusterError> {
        if self.me().is_primary() && !db_is_empty {
            return Err(ClusterError::ResetWithKeys);
        }
        if self.me().is_replica() {
            self.set_node_as_primary(self.myself);
            self.emit(Effect::BecomePrimary);
        }
        self.reset_manual_failover();
        self.election = super::failover::Election::default();
        self.table.slot_map_mut().close_all();
        let ids: Vec<NodeId> = self.table.iter().map(|n| n.id).collect();
        for id in &ids {
            self.table.unassign_node_slots(*id);
        }
        for id in ids {
            if id != self.myself {
                self.delete_node(id);
            }
        }
        if hard {
            self.current_epoch = Epoch::ZERO;
            self.last_vote_epoch = Epoch::ZERO;
            self.me_mut().config_epoch = Epoch::ZERO;
            self.log(LogLevel::Warning, "configEpoch set to 0 via CLUSTER RESET HARD".into());
            let new_id = NodeId::random(&mut self.rng);
            if self.table.rename(self.myself, new_id) {
                self.myself = new_id;
            }
            self.log(LogLevel::Notice, format!("Node hard reset, now I'm {new_id}"));
        }
        self.save();
        self.update_state_later();
        Ok(())
    }

    /// The id of a known node by the text a client gave.
    fn known(&self, id: &str) -> Option<NodeId> {
        NodeId::parse(id).filter(|n| self.table.contains(n))
    }
}

fn checked_range(pair: &(Option<Slot>, Option<Slot>)) -> Result<(Slot, Slot), ClusterError> {
    let start = pair.0.ok_or(ClusterError::InvalidSlot)?;
    let end = pair.1.ok_or(ClusterError::InvalidSlot)?;
    if start > end {
        return Err(ClusterError::SlotRangeReversed { start, end });
    }
    Ok((start, end))
}
