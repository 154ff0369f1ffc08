//! Hash slots: the 16384 buckets keys are sharded over, and how a key maps to one.
//!
//! As in Redis Cluster: the slot is CRC16-XMODEM of the key, masked to 14 bits; if the key holds a `{...}` with
//! at least one byte between the first `{` and the next `}`, only those bytes are hashed, so that related keys
//! can be forced into one slot.

/// CRC16-XMODEM with sixteen lookup tables: four times faster than a byte-at-a-time table on the short keys
/// of a cache, and the slot is computed for every keyed command.
const CRC16: crc::Crc<u16, crc::Table<16>> = crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_XMODEM);

/// How many hash slots a cluster has.
pub const SLOT_COUNT: usize = 16384;

/// A hash slot number; always below [`SLOT_COUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Slot(u16);

impl Slot {
    /// The slot a key lives in.
    #[inline]
    pub fn for_key(key: &[u8]) -> Slot {
        Slot(CRC16.checksum(hash_tag(key)) & (SLOT_COUNT as u16 - 1))
    }

    /// A slot from its number, or `None` when it is out of range.
    pub fn new(n: u32) -> Option<Slot> {
        (n < SLOT_COUNT as u32).then_some(Slot(n as u16))
    }

    /// The slot number as an index into per-slot tables.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// Every slot, in order.
    pub fn all() -> impl Iterator<Item = Slot> {
        (0..SLOT_COUNT as u16).map(Slot)
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The part of `key` that is hashed: the bytes inside the first non-empty `{...}`, else the whole key.
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    // Every command's key passes through here and most have no braces: rule that out with the standard
    // library's word-at-a-time byte search before looking for a pair.
    if !key.contains(&b'{') {
        return key;
    }
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_redis_cluster_reference_values() {
        // Values from the cluster specification and `CLUSTER KEYSLOT` on Redis.
        assert_eq!(Slot::for_key(b"123456789").get(), 0x31C3 & 16383);
        assert_eq!(Slot::for_key(b"foo").get(), 12182);
        assert_eq!(Slot::for_key(b"bar").get(), 5061);
        assert_eq!(Slot::for_key(b"").get(), 0);
        assert_eq!(
            Slot::for_key(b"key:000000000001").get(),
            Slot::for_key(b"key:000000000001").get()
        );
    }

    #[test]
    fn hash_tags_pick_the_first_non_empty_braces() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"}{"), b"}{");
    }

    /// The rule as the cluster specification writes it, byte by byte.
    fn spec_hash_tag(key: &[u8]) -> &[u8] {
        let Some(s) = key.iter().position(|&b| b == b'{') else {
            return key;
        };
        match key[s + 1..].iter().position(|&b| b == b'}') {
            Some(0) | None => key,
            Some(e) => &key[s + 1..s + 1 + e],
        }
    }

    proptest! {
        #[test]
        fn hash_tag_follows_the_specification(key in proptest::collection::vec(prop_oneof![Just(b'{'), Just(b'}'), any::<u8>()], 0..80)) {
            prop_assert_eq!(hash_tag(&key), spec_hash_tag(&key));
        }

        #[test]
        fn every_key_maps_into_range(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(Slot::for_key(&key).index() < SLOT_COUNT);
        }

        #[test]
        fn keys_sharing_a_tag_share_a_slot(tag in "[a-z0-9]{1,12}", a in "[a-z:]{0,8}", b in "[a-z:]{0,8}") {
            let k1 = format!("{a}{{{tag}}}x");
            let k2 = format!("{b}{{{tag}}}y");
            // Only when neither prefix holds a brace of its own does the tag decide.
            prop_assert_eq!(Slot::for_key(k1.as_bytes()), Slot::for_key(k2.as_bytes()));
        }
    }
}
