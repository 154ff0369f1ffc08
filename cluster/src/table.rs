//! The node table: every node this node knows (itself included) and the slot map, kept consistent with each
//! other — a slot's owner in the [`SlotMap`] is always the node whose [`SlotRanges`] hold it.
//!
//! Nodes live in a vector (walked by every tick, indexed by gossip's random picks) with a hash index by id. Ids
//! are random, so their first bytes are the hash. The order of the vector is the order of arrival (a removal
//! moves the last node into the hole): deterministic, so a simulation replays exactly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rand::Rng;

use crate::node::{NodeFlags, NodeId, NodeInfo};
use crate::slot::Slot;
use crate::slots::{SlotMap, SlotRanges};

/// Hashes a [`NodeId`] by its first eight bytes: ids are uniformly random.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // NodeId hashes as its byte array: the length prefix first, then the bytes.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(5) ^ n as u64;
    }
}

type IdIndex = HashMap<NodeId, usize, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Clone)]
pub struct NodeTable {
    nodes: Vec<NodeInfo>,
    index: IdIndex,
    slots: SlotMap,
}

impl NodeTable {
    pub(crate) fn new() -> NodeTable {
        NodeTable {
            nodes: Vec::new(),
            index: IdIndex::default(),
            slots: SlotMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, id: &NodeId) -> Option<&NodeInfo> {
        self.nodes.get(*self.index.get(id)?)
    }

    pub(crate) fn get_mut(&mut self, id: &NodeId) -> Option<&mut NodeInfo> {
        self.nodes.get_mut(*self.index.get(id)?)
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.index.contains_key(id)
    }

    /// Every node, in order of arrival.
    pub fn iter(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter()
    }

    /// A node picked uniformly at random.
    pub(crate) fn random_id<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<NodeId> {
        if self.nodes.is_empty() {
            return None;
        }
        self.nodes.get(rng.random_range(0..self.nodes.len())).map(|n| n.id)
    }

    pub fn slot_map(&self) -> &SlotMap {
        &self.slots
    }

    pub(crate) fn slot_map_mut(&mut self) -> &mut SlotMap {
        &mut self.slots
    }

    pub fn slot_owner(&self, slot: Slot) -> Option<NodeId> {
        self.slots.owner(slot)
    }

    /// Adds a node; an entry with the same id is replaced (callers check first).
    pub(crate) fn insert(&mut self, mut info: NodeInfo) {
        let id = info.id;
        // Slots only enter the table through `assign_slot`, so the two views cannot disagree.
        let slots = std::mem::take(&mut info.slots);
        if self.contains(&id) {
            self.remove(id);
        }
        self.index.insert(id, self.nodes.len());
        self.nodes.push(info);
        for slot in slots.slots() {
            self.assign_slot(slot, id);
        }
    }

    /// Removes a node as Redis's `clusterDelNode` does: its slots become unassigned, migration marks that name
    /// it are dropped, the failure reports it sent are withdrawn, and its replicas lose their primary.
    pub(crate) fn remove(&mut self, id: NodeId) -> Option<NodeInfo> {
        let at = self.index.remove(&id)?;
        let info = self.nodes.swap_remove(at);
        if let Some(moved) = self.nodes.get(at) {
            self.index.insert(moved.id, at);
        }
        for slot in info.slots.slots() {
            self.slots.set_owner(slot, None);
        }
        self.slots.forget_node(id);
        for node in &mut self.nodes {
            node.failure_reports.retain(|r| r.reporter != id);
            if node.primary == Some(id) {
                node.primary = None;
            }
        }
        Some(info)
    }

    /// Gives a node its real id (a handshake placeholder learning who answered, or `RESET HARD`).
    pub(crate) fn rename(&mut self, old: NodeId, new: NodeId) -> bool {
        if old == new || self.contains(&new) {
            return false;
        }
        let Some(at) = self.index.remove(&old) else {
            return false;
        };
        self.index.insert(new, at);
        let Some(info) = self.nodes.get_mut(at) else {
            return false;
        };
        info.id = new;
        let slots = info.slots.clone();
        for slot in slots.slots() {
            self.slots.set_owner(slot, Some(new));
        }
        for (slot, target) in self.slots.migrating().collect::<Vec<_>>() {
            if target == old {
                self.slots.set_migrating(slot, Some(new));
            }
        }
        for (slot, source) in self.slots.importing().collect::<Vec<_>>() {
            if source == old {
                self.slots.set_importing(slot, Some(new));
            }
        }
        for node in &mut self.nodes {
            if node.primary == Some(old) {
                node.primary = Some(new);
            }
            for report in &mut node.failure_reports {
                if report.reporter == old {
                    report.reporter = new;
                }
            }
        }
        true
    }

    /// Makes `owner` the owner of `slot`, taking it from its previous owner.
    pub(crate) fn assign_slot(&mut self, slot: Slot, owner: NodeId) {
        if !self.contains(&owner) {
            return;
        }
        if let Some(previous) = self.slots.owner(slot) {
            if previous == owner {
                return;
            }
            if let Some(prev) = self.get_mut(&previous) {
                prev.slots.remove(slot);
            }
        }
        if let Some(node) = self.get_mut(&owner) {
            node.slots.insert(slot);
        }
        self.slots.set_owner(slot, Some(owner));
    }

    /// Leaves `slot` without owner; returns the owner it had.
    pub(crate) fn unassign_slot(&mut self, slot: Slot) -> Option<NodeId> {
        let previous = self.slots.owner(slot)?;
        if let Some(prev) = self.get_mut(&previous) {
            prev.slots.remove(slot);
        }
        self.slots.set_owner(slot, None);
        Some(previous)
    }

    /// Unassigns every slot of `id`; returns them.
    pub(crate) fn unassign_node_slots(&mut self, id: NodeId) -> SlotRanges {
        let Some(node) = self.get_mut(&id) else {
            return SlotRanges::new();
        };
        let slots = std::mem::take(&mut node.slots);
        for slot in slots.slots() {
            self.slots.set_owner(slot, None);
        }
        slots
    }

    /// The replicas of `primary`, in table order.
    pub fn replicas_of(&self, primary: NodeId) -> impl Iterator<Item = &NodeInfo> {
        self.nodes
            .iter()
            .filter(move |n| n.primary == Some(primary) && n.flags.contains(NodeFlags::REPLICA))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ShardId;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 20])
    }

    fn slot(n: u32) -> Slot {
        Slot::new(n).unwrap()
    }

    fn table_with(ids: &[u8]) -> NodeTable {
        let mut t = NodeTable::new();
        for &n in ids {
            t.insert(NodeInfo::new(
                id(n),
                NodeFlags::PRIMARY,
                ShardId::from_bytes([n; 20]),
                0,
            ));
        }
        t
    }

    #[test]
    fn assigning_a_slot_moves_it_between_owners() {
        let mut t = table_with(&[1, 2]);
        t.assign_slot(slot(7), id(1));
        t.assign_slot(slot(7), id(2));
        assert_eq!(t.slot_owner(slot(7)), Some(id(2)));
        assert!(t.get(&id(1)).unwrap().slots.is_empty());
        assert_eq!(t.get(&id(2)).unwrap().slot_count(), 1);
    }

    #[test]
    fn removing_a_node_frees_its_slots_and_orphans_its_replicas() {
        let mut t = table_with(&[1, 2]);
        t.assign_slot(slot(1), id(1));
        t.get_mut(&id(2)).unwrap().primary = Some(id(1));
        t.get_mut(&id(2)).unwrap().flags = NodeFlags::REPLICA;
        t.slot_map_mut().set_migrating(slot(1), Some(id(1)));
        t.remove(id(1));
        assert_eq!(t.slot_owner(slot(1)), None);
        assert_eq!(t.get(&id(2)).unwrap().primary, None);
        assert_eq!(t.slot_map().migrating_to(slot(1)), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.iter().map(|n| n.id).collect::<Vec<_>>(), vec![id(2)]);
        assert!(t.get(&id(2)).is_some(), "the index follows the moved node");
    }

    #[test]
    fn renaming_carries_slots_and_references() {
        let mut t = table_with(&[1, 2]);
        t.assign_slot(slot(3), id(1));
        t.get_mut(&id(2)).unwrap().primary = Some(id(1));
        t.get_mut(&id(2)).unwrap().flags = NodeFlags::REPLICA;
        assert!(t.rename(id(1), id(9)));
        assert_eq!(t.slot_owner(slot(3)), Some(id(9)));
        assert_eq!(t.get(&id(2)).unwrap().primary, Some(id(9)));
        assert_eq!(t.replicas_of(id(9)).count(), 1);
        assert!(!t.rename(id(2), id(9)), "ids stay unique");
        assert!(t.get(&id(1)).is_none());
        assert_eq!(t.get(&id(9)).unwrap().id, id(9));
    }
}
