//! What each connection sends: the command mix, the key distribution, and the keys and values themselves.
//!
//! Keys are `key:<n>` with `n` uniform over the keyspace or Zipf-distributed (`key:0` the most popular).
//! Values embed the connection and its write sequence number (`<connection>.<sequence>.` then padding), so
//! every write is distinguishable and an acknowledgement log can later be checked against the data.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::config::{Config, KeyPattern};

/// The command types the generator sends, each with its own latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set = 0,
    Get = 1,
    /// The `WAIT` that follows a SET when replica acknowledgement is asked for.
    Wait = 2,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Set, Op::Get, Op::Wait];

    pub fn name(self) -> &'static str {
        match self {
            Op::Set => "SET",
            Op::Get => "GET",
            Op::Wait => "WAIT",
        }
    }
}

/// The filler after a value's tag.
const PAD: u8 = b'x';

enum KeyDist {
    Uniform,
    Zipf(Zipf<f64>),
}

/// One connection's stream of operations and keys; deterministic for a given seed and connection.
pub struct Workload {
    rng: SmallRng,
    keys: KeyDist,
    keyspace: u64,
    /// SETs and GETs per cycle of the mix, and where in the cycle the next request falls.
    sets: u32,
    cycle: u32,
    pos: u32,
}

impl Workload {
    pub fn new(cfg: &Config, connection: usize) -> Workload {
        // Distinct, well-mixed streams per connection from one user seed.
        let seed = cfg.seed ^ (connection as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let keys = match cfg.key_pattern {
            KeyPattern::Uniform => KeyDist::Uniform,
            KeyPattern::Zipf { exponent } => match Zipf::new(cfg.keyspace as f64, exponent) {
                Ok(z) => KeyDist::Zipf(z),
                Err(_) => KeyDist::Uniform,
            },
        };
        let (sets, gets) = cfg.ratio;
        Workload {
            rng: SmallRng::seed_from_u64(seed),
            keys,
            keyspace: cfg.keyspace,
            sets,
            cycle: sets + gets,
            // Connections start at different points of the cycle so that SETs are spread out in time.
            pos: (connection as u32) % (sets + gets).max(1),
        }
    }

    /// The next command: the mix repeats `sets` SETs then `gets` GETs.
    pub fn next_op(&mut self) -> Op {
        let op = if self.pos < self.sets { Op::Set } else { Op::Get };
        self.pos = (self.pos + 1) % self.cycle.max(1);
        op
    }

    /// The next key number, below the keyspace size.
    pub fn next_key(&mut self) -> u64 {
        match &self.keys {
            KeyDist::Uniform => self.rng.random_range(0..self.keyspace),
            // Zipf samples ranks 1..=n; rank 1 becomes key 0.
            KeyDist::Zipf(z) => (z.sample(&mut self.rng) as u64)
                .saturating_sub(1)
                .min(self.keyspace - 1),
        }
    }
}

/// Writes `key:<n>` into `out`, replacing its contents.
pub fn write_key(out: &mut Vec<u8>, n: u64) {
    out.clear();
    out.extend_from_slice(b"key:");
    push_decimal(out, n);
}

/// Writes the value of write number `seq` of `connection` into `out`: the tag `<connection>.<seq>.` padded to
/// `size` bytes. A tag longer than `size` is cut to `size` unless `keep_tag`, which an acknowledgement log
/// needs so every value stays unique.
pub fn write_value(out: &mut Vec<u8>, connection: usize, seq: u64, size: usize, keep_tag: bool) {
    out.clear();
    push_decimal(out, connection as u64);
    out.push(b'.');
    push_decimal(out, seq);
    out.push(b'.');
    if out.len() > size && !keep_tag {
        out.truncate(size);
    }
    if out.len() < size {
        out.resize(size, PAD);
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use clap::Parser;

    fn config(extra: &[&str]) -> Config {
        let mut argv = vec!["shoal-bench"];
        argv.extend_from_slice(extra);
        Config::from_args(&Args::parse_from(argv)).expect("config")
    }

    #[test]
    fn the_mix_follows_the_ratio_exactly() {
        let mut w = Workload::new(&config(&["--ratio", "1:10"]), 0);
        let sets = (0..1100).filter(|_| w.next_op() == Op::Set).count();
        assert_eq!(sets, 100);
        let mut only_sets = Workload::new(&config(&["--ratio", "1:0"]), 3);
        assert!((0..50).all(|_| only_sets.next_op() == Op::Set));
        let mut only_gets = Workload::new(&config(&["--ratio", "0:1"]), 3);
        assert!((0..50).all(|_| only_gets.next_op() == Op::Get));
    }

    #[test]
    fn uniform_keys_stay_in_the_keyspace_and_cover_it() {
        let mut w = Workload::new(&config(&["--keyspace", "10"]), 0);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let k = w.next_key();
            assert!(k < 10);
            seen[k as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn zipf_keys_favour_the_first_keys() {
        let mut w = Workload::new(&config(&["--keyspace", "100000", "--key-pattern", "zipf:1.2"]), 0);
        let draws: Vec<u64> = (0..10_000).map(|_| w.next_key()).collect();
        assert!(draws.iter().all(|&k| k < 100_000));
        // P(rank <= 10) = H(10, 1.2) / H(100000, 1.2), about 0.45; uniform draws would hit 0.01 %.
        let hot = draws.iter().filter(|&&k| k < 10).count();
        assert!(hot > 4_000, "only {hot} of 10000 draws hit the 10 hottest keys");
    }

    #[test]
    fn the_same_seed_gives_the_same_keys() {
        let cfg = config(&["--seed", "42"]);
        let a: Vec<u64> = {
            let mut w = Workload::new(&cfg, 7);
            (0..20).map(|_| w.next_key()).collect()
        };
        let mut w = Workload::new(&cfg, 7);
        assert_eq!(a, (0..20).map(|_| w.next_key()).collect::<Vec<_>>());
        let mut other = Workload::new(&cfg, 8);
        assert_ne!(a, (0..20).map(|_| other.next_key()).collect::<Vec<_>>());
    }

    #[test]
    fn keys_and_values_are_spelt_as_documented() {
        let mut buf = Vec::new();
        write_key(&mut buf, 0);
        assert_eq!(buf, b"key:0");
        write_key(&mut buf, 18_446_744_073_709_551_615);
        assert_eq!(buf, b"key:18446744073709551615");
        write_value(&mut buf, 3, 41, 10, false);
        assert_eq!(buf, b"3.41.xxxxx");
        write_value(&mut buf, 3, 123_456, 4, false);
        assert_eq!(buf, b"3.12");
        write_value(&mut buf, 3, 123_456, 4, true);
        assert_eq!(buf, b"3.123456.");
    }
}
