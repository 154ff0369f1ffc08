//! [`SlotMap`]: which node serves each of the 16384 hash slots, as learnt from `CLUSTER SLOTS` and corrected
//! by `MOVED` redirections.
//!
//! Slots hold a small index into a table of node addresses rather than the address itself, so the whole map is
//! 32 KiB, a lookup is one array read, and a node's address string exists once however many slots it serves.

use shoal_cluster::{Slot, SLOT_COUNT};
use shoal_protocol::Frame;

use crate::error::ClientError;

/// A slot nobody is known to serve.
const UNASSIGNED: u16 = u16::MAX;

/// Slot → primary node address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    slots: Vec<u16>,
    nodes: Vec<String>,
}

impl Default for SlotMap {
    fn default() -> Self {
        SlotMap::new()
    }
}

impl SlotMap {
    /// A map with every slot unassigned.
    pub fn new() -> SlotMap {
        SlotMap {
            slots: vec![UNASSIGNED; SLOT_COUNT],
            nodes: Vec::new(),
        }
    }

    /// Builds the map from a `CLUSTER SLOTS` reply. `queried` is the `host:port` the reply came from: Redis
    /// sends an empty host for "the address you reached me at", which is resolved against it. Ranges whose
    /// host is `?` (an endpoint the server does not know) stay unassigned. Replica entries are ignored: commands
    /// go to primaries.
    pub fn from_cluster_slots(reply: &Frame, queried: &str) -> Result<SlotMap, ClientError> {
        let bad = |what: &str| ClientError::UnexpectedReply(format!("CLUSTER SLOTS: {what}"));
        let Frame::Array(ranges) = reply else {
            return Err(bad("not an array"));
        };
        let queried_host = split_addr(queried).map(|(h, _)| h).unwrap_or(queried);
        let mut map = SlotMap::new();
        for range in ranges {
            let Frame::Array(fields) = range else {
                return Err(bad("a range is not an array"));
            };
            let (Some(start), Some(end), Some(Frame::Array(primary))) = (
                fields.first().and_then(Frame::as_integer),
                fields.get(1).and_then(Frame::as_integer),
                fields.get(2),
            ) else {
                return Err(bad("a range lacks its bounds or primary"));
            };
            let (Some(host), Some(port)) = (
                primary.first().and_then(Frame::as_bulk),
                primary.get(1).and_then(Frame::as_integer),
            ) else {
                return Err(bad("a node lacks its host or port"));
            };
            let slot = |n: i64| u32::try_from(n).ok().and_then(Slot::new);
            let (Some(start), Some(end)) = (slot(start), slot(end)) else {
                return Err(bad("a slot is out of range"));
            };
            if host.as_ref() == b"?" {
                continue;
            }
            let host = String::from_utf8_lossy(host);
            let host = if host.is_empty() { queried_host } else { &host };
            let addr = join_addr(host, port);
            for n in start.get()..=end.get() {
                if let Some(slot) = Slot::new(u32::from(n)) {
                    map.assign(slot, &addr);
                }
            }
        }
        Ok(map)
    }

    /// The node serving `slot`, if known.
    #[inline]
    pub fn node(&self, slot: Slot) -> Option<&str> {
        self.node_index(slot).map(|i| self.nodes[i].as_str())
    }

    /// The index into [`SlotMap::nodes`] of the node serving `slot`, if known.
    #[inline]
    pub fn node_index(&self, slot: Slot) -> Option<usize> {
        match self.slots[slot.index()] {
            UNASSIGNED => None,
            i => Some(usize::from(i)),
        }
    }

    /// The node serving `key`'s slot, if known.
    pub fn node_for_key(&self, key: &[u8]) -> Option<&str> {
        self.node(Slot::for_key(key))
    }

    /// Every node address the map has ever held, in order of first appearance (indices are stable).
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Records that `addr` serves `slot` (a `MOVED` redirection).
    pub fn assign(&mut self, slot: Slot, addr: &str) {
        let addr = normalize_addr(addr);
        let index = match self.nodes.iter().position(|n| *n == addr) {
            Some(i) => i,
            None => {
                self.nodes.push(addr);
                self.nodes.len() - 1
            }
        };
        // More distinct nodes than u16 can count cannot come from a real cluster; such slots stay as they were.
        if let Ok(index) = u16::try_from(index) {
            if index != UNASSIGNED {
                self.slots[slot.index()] = index;
            }
        }
    }

    /// How many slots have no known node.
    pub fn unassigned(&self) -> usize {
        self.slots.iter().filter(|&&i| i == UNASSIGNED).count()
    }
}

/// `host:port`, bracketing an IPv6 host so the result parses as a socket address.
pub fn join_addr(host: &str, port: i64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host:port` at the last colon, without brackets around the host.
fn split_addr(addr: &str) -> Option<(&str, &str)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']'), port))
}

/// An address as redirections spell it (`::1:7000`, bare IPv6) turned into one that connects (`[::1]:7000`).
pub fn normalize_addr(addr: &str) -> String {
    match split_addr(addr) {
        Some((host, port)) => match port.parse::<i64>() {
            Ok(port) => join_addr(host, port),
            Err(_) => addr.to_string(),
        },
        None => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn range(start: i64, end: i64, host: &str, port: i64) -> Frame {
        Frame::Array(vec![
            Frame::Integer(start),
            Frame::Integer(end),
            Frame::Array(vec![bulk(host), Frame::Integer(port), bulk("id")]),
            Frame::Array(vec![bulk("10.9.9.9"), Frame::Integer(1), bulk("replica")]),
        ])
    }

    fn slot(n: u32) -> Slot {
        Slot::new(n).unwrap_or_default()
    }

    #[test]
    fn cluster_slots_ranges_become_primary_addresses() {
        let reply = Frame::Array(vec![
            range(0, 5460, "127.0.0.1", 7000),
            range(5461, 10922, "127.0.0.1", 7001),
            range(10923, 16383, "127.0.0.1", 7002),
        ]);
        let map = SlotMap::from_cluster_slots(&reply, "127.0.0.1:7000").expect("map");
        assert_eq!(map.node(slot(0)), Some("127.0.0.1:7000"));
        assert_eq!(map.node(slot(5461)), Some("127.0.0.1:7001"));
        assert_eq!(map.node(slot(16383)), Some("127.0.0.1:7002"));
        assert_eq!(map.nodes().len(), 3);
        assert_eq!(map.unassigned(), 0);
        assert_eq!(map.node_for_key(b"foo"), Some("127.0.0.1:7002"));
    }

    #[test]
    fn an_empty_host_means_the_node_that_was_asked_and_unknown_ones_are_skipped() {
        let reply = Frame::Array(vec![range(0, 99, "", 7005), range(100, 199, "?", 7006)]);
        let map = SlotMap::from_cluster_slots(&reply, "10.1.2.3:7000").expect("map");
        assert_eq!(map.node(slot(50)), Some("10.1.2.3:7005"));
        assert_eq!(map.node(slot(150)), None);
        assert_eq!(map.unassigned(), SLOT_COUNT - 100);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for reply in [
            Frame::Integer(1),
            Frame::Array(vec![Frame::Integer(1)]),
            Frame::Array(vec![range(0, 16384, "h", 1)]),
            Frame::Array(vec![range(-1, 5, "h", 1)]),
            Frame::Array(vec![Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(1),
                Frame::Array(vec![]),
            ])]),
        ] {
            assert!(SlotMap::from_cluster_slots(&reply, "h:1").is_err(), "{reply:?}");
        }
    }

    #[test]
    fn assign_reuses_node_indices() {
        let mut map = SlotMap::new();
        map.assign(slot(1), "a:1");
        map.assign(slot(2), "b:1");
        map.assign(slot(3), "a:1");
        assert_eq!(map.nodes(), ["a:1".to_string(), "b:1".to_string()]);
        assert_eq!(map.node_index(slot(3)), Some(0));
        assert_eq!(map.node(slot(4)), None);
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(normalize_addr("::1:7000"), "[::1]:7000");
        assert_eq!(normalize_addr("[::1]:7000"), "[::1]:7000");
        assert_eq!(normalize_addr("127.0.0.1:7000"), "127.0.0.1:7000");
        assert_eq!(join_addr("fe80::2", 1), "[fe80::2]:1");
    }
}
