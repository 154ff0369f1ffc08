//! Sets of slots and the cluster's slot map.
//!
//! [`SlotRanges`] is a set of slots kept as merged inclusive ranges: a primary usually serves one or a few
//! ranges, so this is what CLUSTER NODES prints, what the bus carries (a handful of bytes instead of Redis's
//! 2048-byte bitmap) and what comparing two claims costs. [`SlotMap`] is the owner of every slot (for routing
//! and CLUSTER SLOTS) plus this node's own migrating/importing marks.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::node::NodeId;
use crate::slot::{Slot, SLOT_COUNT};

/// The highest slot number.
const LAST_SLOT: u16 = SLOT_COUNT as u16 - 1;

/// Slots `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
}

impl SlotRange {
    pub fn len(self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Never true: a range holds at least one slot. (For clippy's `len` convention.)
    pub fn is_empty(self) -> bool {
        false
    }

    pub fn contains(self, slot: u16) -> bool {
        (self.start..=self.end).contains(&slot)
    }
}

/// A set of slots as sorted, disjoint, non-adjacent inclusive ranges (so every set has one spelling).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<(u16, u16)>", into = "Vec<(u16, u16)>")]
pub struct SlotRanges(Vec<SlotRange>);

impl SlotRanges {
    pub const fn new() -> SlotRanges {
        SlotRanges(Vec::new())
    }

    /// The set of every slot.
    pub fn all() -> SlotRanges {
        SlotRanges(vec![SlotRange {
            start: 0,
            end: LAST_SLOT,
        }])
    }

    /// The set of `start..=end`.
    pub fn range(start: Slot, end: Slot) -> SlotRanges {
        let mut set = SlotRanges::new();
        if start <= end {
            set.0.push(SlotRange {
                start: start.get(),
                end: end.get(),
            });
        }
        set
    }

    /// Ranges that must already be in canonical form (sorted, each within 0..16384, start <= end, and a gap of
    /// at least one slot between neighbours): what a peer sends is checked, never repaired.
    pub fn from_canonical(pairs: &[(u16, u16)]) -> Result<SlotRanges, String> {
        let mut ranges = Vec::with_capacity(pairs.len());
        let mut next_free: u32 = 0;
        for &(start, end) in pairs {
            if start > end || end > LAST_SLOT {
                return Err(format!("bad slot range {start}-{end}"));
            }
            if u32::from(start) < next_free {
                return Err(format!(
                    "slot range {start}-{end} is out of order or touches the previous one"
                ));
            }
            next_free = u32::from(end) + 2;
            ranges.push(SlotRange { start, end });
        }
        Ok(SlotRanges(ranges))
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[SlotRange] {
        &self.0
    }

    /// How many slots the set holds.
    pub fn len(&self) -> usize {
        self.0.iter().map(|r| r.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, slot: Slot) -> bool {
        let s = slot.get();
        let after = self.0.partition_point(|r| r.start <= s);
        after > 0 && self.0.get(after - 1).is_some_and(|r| r.end >= s)
    }

    /// Adds `slot`; false when it was already in.
    pub fn insert(&mut self, slot: Slot) -> bool {
        let s = slot.get();
        // `at` is the first range starting after `s`; the one before it is the only one that can hold `s`.
        let at = self.0.partition_point(|r| r.start <= s);
        let prev_touches = match at.checked_sub(1).and_then(|i| self.0.get(i)) {
            Some(prev) if prev.end >= s => return false,
            Some(prev) => prev.end + 1 == s,
            None => false,
        };
        let next_touches = self.0.get(at).is_some_and(|next| next.start == s + 1);
        match (prev_touches, next_touches) {
            (true, true) => {
                let next_end = self.0.remove(at).end;
                if let Some(prev) = self.0.get_mut(at - 1) {
                    prev.end = next_end;
                }
            }
            (true, false) => {
                if let Some(prev) = self.0.get_mut(at - 1) {
                    prev.end = s;
                }
            }
            (false, true) => {
                if let Some(next) = self.0.get_mut(at) {
                    next.start = s;
                }
            }
            (false, false) => self.0.insert(at, SlotRange { start: s, end: s }),
        }
        true
    }

    /// Removes `slot`; false when it was not in.
    pub fn remove(&mut self, slot: Slot) -> bool {
        let s = slot.get();
        let Some(i) = self.0.partition_point(|r| r.start <= s).checked_sub(1) else {
            return false;
        };
        let Some(range) = self.0.get_mut(i) else {
            return false;
        };
        if range.end < s {
            return false;
        }
        match (range.start == s, range.end == s) {
            (true, true) => {
                self.0.remove(i);
            }
            (true, false) => range.start = s + 1,
            (false, true) => range.end = s - 1,
            (false, false) => {
                let tail = SlotRange {
                    start: s + 1,
                    end: range.end,
                };
                range.end = s - 1;
                self.0.insert(i + 1, tail);
            }
        }
        true
    }

    /// Whether the two sets share a slot (a walk over both range lists).
    pub fn intersects(&self, other: &SlotRanges) -> bool {
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
            if x.end < y.start {
                a.next();
            } else if y.end < x.start {
                b.next();
            } else {
                return true;
            }
        }
        false
    }

    /// Every slot, in order.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.0
            .iter()
            .flat_map(|r| (r.start..=r.end).filter_map(|s| Slot::new(u32::from(s))))
    }

    /// Appends ` a-b c d-e` (a space before each range; a lone slot without a dash), as CLUSTER NODES does.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        for r in &self.0 {
            // Writing to a String cannot fail.
            let _ = if r.start == r.end {
                write!(out, " {}", r.start)
            } else {
                write!(out, " {}-{}", r.start, r.end)
            };
        }
    }
}

impl FromIterator<Slot> for SlotRanges {
    fn from_iter<I: IntoIterator<Item = Slot>>(iter: I) -> SlotRanges {
        let mut set = SlotRanges::new();
        for slot in iter {
            set.insert(slot);
        }
        set
    }
}

impl TryFrom<Vec<(u16, u16)>> for SlotRanges {
    type Error = String;
    fn try_from(pairs: Vec<(u16, u16)>) -> Result<SlotRanges, String> {
        SlotRanges::from_canonical(&pairs)
    }
}

impl From<SlotRanges> for Vec<(u16, u16)> {
    fn from(set: SlotRanges) -> Vec<(u16, u16)> {
        set.0.into_iter().map(|r| (r.start, r.end)).collect()
    }
}

impl fmt::Debug for SlotRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.render(&mut s);
        write!(f, "SlotRanges[{}]", s.trim_start())
    }
}

/// A maximal run of consecutive slots with one owner, as CLUSTER SLOTS lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedRange {
    pub start: Slot,
    pub end: Slot,
    pub owner: NodeId,
}

/// Who serves each slot, and which of this node's slots are being migrated away or imported.
#[derive(Clone)]
pub struct SlotMap {
    owners: Box<[Option<NodeId>]>,
    migrating_to: BTreeMap<Slot, NodeId>,
    importing_from: BTreeMap<Slot, NodeId>,
}

impl Default for SlotMap {
    fn default() -> SlotMap {
        SlotMap::new()
    }
}

impl fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotMap")
            .field("runs", &self.runs().collect::<Vec<_>>())
            .field("migrating_to", &self.migrating_to)
            .field("importing_from", &self.importing_from)
            .finish()
    }
}

impl SlotMap {
    pub fn new() -> SlotMap {
        SlotMap {
            owners: vec![None; SLOT_COUNT].into_boxed_slice(),
            migrating_to: BTreeMap::new(),
            importing_from: BTreeMap::new(),
        }
    }

    /// The node serving `slot`, if any.
    pub fn owner(&self, slot: Slot) -> Option<NodeId> {
        self.owners.get(slot.index()).copied().flatten()
    }

    pub(crate) fn set_owner(&mut self, slot: Slot, owner: Option<NodeId>) {
        if let Some(entry) = self.owners.get_mut(slot.index()) {
            *entry = owner;
        }
    }

    /// How many slots have an owner.
    pub fn assigned(&self) -> usize {
        self.owners.iter().filter(|o| o.is_some()).count()
    }

    /// The owned slots as maximal runs of one owner, in slot order.
    pub fn runs(&self) -> impl Iterator<Item = OwnedRange> + '_ {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            while at < SLOT_COUNT {
                let start = at;
                let owner = self.owners.get(start).copied().flatten();
                at += 1;
                while at < SLOT_COUNT && self.owners.get(at).copied().flatten() == owner {
                    at += 1;
                }
                if let Some(owner) = owner {
                    return Some(OwnedRange {
                        start: Slot::new(start as u32)?,
                        end: Slot::new(at as u32 - 1)?,
                        owner,
                    });
                }
            }
            None
        })
    }

    /// Where this node is migrating `slot` to (`SETSLOT <slot> MIGRATING <id>`).
    pub fn migrating_to(&self, slot: Slot) -> Option<NodeId> {
        self.migrating_to.get(&slot).copied()
    }

    /// Where this node is importing `slot` from (`SETSLOT <slot> IMPORTING <id>`).
    pub fn importing_from(&self, slot: Slot) -> Option<NodeId> {
        self.importing_from.get(&slot).copied()
    }

    /// Every slot in migration, in slot order.
    pub fn migrating(&self) -> impl Iterator<Item = (Slot, NodeId)> + '_ {
        self.migrating_to.iter().map(|(s, n)| (*s, *n))
    }

    /// Every slot being imported, in slot order.
    pub fn importing(&self) -> impl Iterator<Item = (Slot, NodeId)> + '_ {
        self.importing_from.iter().map(|(s, n)| (*s, *n))
    }

    pub(crate) fn set_migrating(&mut self, slot: Slot, to: Option<NodeId>) {
        match to {
            Some(id) => self.migrating_to.insert(slot, id),
            None => self.migrating_to.remove(&slot),
        };
    }

    pub(crate) fn set_importing(&mut self, slot: Slot, from: Option<NodeId>) {
        match from {
            Some(id) => self.importing_from.insert(slot, id),
            None => self.importing_from.remove(&slot),
        };
    }

    /// Drops every migrating and importing mark (a primary turning replica, RESET).
    pub(crate) fn close_all(&mut self) {
        self.migrating_to.clear();
        self.importing_from.clear();
    }

    /// Drops the marks that point at `id` (the node is being forgotten).
    pub(crate) fn forget_node(&mut self, id: NodeId) {
        self.migrating_to.retain(|_, n| *n != id);
        self.importing_from.retain(|_, n| *n != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn slot(n: u32) -> Slot {
        Slot::new(n).unwrap()
    }

    fn text(set: &SlotRanges) -> String {
        let mut s = String::new();
        set.render(&mut s);
        s
    }

    #[test]
    fn adjacent_slots_merge_and_single_slots_print_without_a_dash() {
        let mut set = SlotRanges::new();
        for n in [5, 3, 4, 100, 0, 16383] {
            assert!(set.insert(slot(n)));
        }
        assert!(!set.insert(slot(4)));
        assert_eq!(text(&set), " 0 3-5 100 16383");
        assert_eq!(set.len(), 6);
    }

    #[test]
    fn removing_from_the_middle_splits_a_range() {
        let mut set = SlotRanges::range(slot(0), slot(5460));
        assert!(set.remove(slot(100)));
        assert!(!set.remove(slot(100)));
        assert_eq!(text(&set), " 0-99 101-5460");
        assert!(set.remove(slot(0)));
        assert!(set.remove(slot(5460)));
        assert_eq!(text(&set), " 1-99 101-5459");
        assert!(!set.contains(slot(100)));
        assert!(set.contains(slot(101)));
    }

    #[test]
    fn canonical_form_is_checked_not_repaired() {
        assert!(SlotRanges::from_canonical(&[(0, 5), (7, 9)]).is_ok());
        assert!(
            SlotRanges::from_canonical(&[(0, 5), (6, 9)]).is_err(),
            "adjacent ranges must be merged"
        );
        assert!(SlotRanges::from_canonical(&[(7, 9), (0, 5)]).is_err(), "out of order");
        assert!(SlotRanges::from_canonical(&[(5, 1)]).is_err(), "reversed");
        assert!(SlotRanges::from_canonical(&[(0, 16384)]).is_err(), "past the last slot");
    }

    #[test]
    fn the_slot_map_lists_runs_of_one_owner() {
        let a = NodeId::from_bytes([1; 20]);
        let b = NodeId::from_bytes([2; 20]);
        let mut map = SlotMap::new();
        for n in 0..10 {
            map.set_owner(slot(n), Some(a));
        }
        for n in 10..20 {
            map.set_owner(slot(n), Some(b));
        }
        map.set_owner(slot(16383), Some(a));
        let runs: Vec<_> = map.runs().map(|r| (r.start.get(), r.end.get(), r.owner)).collect();
        assert_eq!(runs, vec![(0, 9, a), (10, 19, b), (16383, 16383, a)]);
        assert_eq!(map.assigned(), 21);
    }

    proptest! {
        #[test]
        fn ranges_behave_like_a_set(ops in proptest::collection::vec((any::<bool>(), 0u32..64), 0..200)) {
            let mut set = SlotRanges::new();
            let mut model = BTreeSet::new();
            for (add, n) in ops {
                let s = slot(n);
                if add {
                    prop_assert_eq!(set.insert(s), model.insert(n));
                } else {
                    prop_assert_eq!(set.remove(s), model.remove(&n));
                }
                prop_assert_eq!(set.len(), model.len());
                let pairs: Vec<(u16, u16)> = set.clone().into();
                prop_assert!(SlotRanges::from_canonical(&pairs).is_ok(), "always canonical");
            }
            let got: Vec<u32> = set.slots().map(|s| u32::from(s.get())).collect();
            prop_assert_eq!(got, model.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn intersects_is_sharing_a_slot(a in proptest::collection::btree_set(0u32..80, 0..30),
                                        b in proptest::collection::btree_set(0u32..80, 0..30)) {
            let set_a: SlotRanges = a.iter().map(|n| slot(*n)).collect();
            let set_b: SlotRanges = b.iter().map(|n| slot(*n)).collect();
            prop_assert_eq!(set_a.intersects(&set_b), a.intersection(&b).next().is_some());
        }
    }
}
