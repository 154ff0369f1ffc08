//! Active expiry on a real server: a million keys written with a one-second TTL and never read again must go
//! away on their own — DBSIZE back to 0 and used_memory back near where it started — while the server keeps
//! answering other clients.

use std::time::{Duration, Instant};

use shoal_tests::{encode_command, info_field, ShoalServer};

const KEYS: usize = 1_000_000;
const BATCH: usize = 10_000;

fn integer_reply(reply: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(reply);
    text.trim()
        .strip_prefix(':')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not an integer: {text}"))
}

#[test]
fn a_million_keys_with_one_second_ttl_expire_and_free_their_memory() {
    let server = ShoalServer::start(&[]);
    let mut conn = server.raw();
    let baseline = info_field(&mut conn, "memory", "used_memory");

    // Load pipelined, 10,000 commands per write, every key with a one-second TTL.
    let value = vec![b'v'; 64];
    let load_started = Instant::now();
    let mut loader = server.raw();
    for batch in 0..KEYS / BATCH {
        let mut buf = Vec::with_capacity(BATCH * 110);
        for i in batch * BATCH..(batch + 1) * BATCH {
            buf.extend_from_slice(&encode_command(&[
                b"SET".as_slice(),
                format!("key:{i}").as_bytes(),
                &value,
                b"PX",
                b"1000",
            ]));
        }
        loader.send(&buf).expect("send batch");
        for _ in 0..BATCH {
            let r = loader.read_reply().expect("SET reply");
            assert_eq!(r, b"+OK\r\n");
        }
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    let peak = info_field(&mut conn, "memory", "used_memory");
    let loaded_at = Instant::now();

    // Poll until every key is gone, checking on each round that another client is served promptly.
    let mut other = server.raw();
    other.set_timeout(Duration::from_secs(2));
    let mut slowest_ping = Duration::ZERO;
    let mut gone_after = None;
    for round in 0..200 {
        let t = Instant::now();
        assert_eq!(other.cmd(&["SET", "unrelated", "x"]), b"+OK\r\n");
        assert_eq!(other.cmd(&["GET", "unrelated"]), b"$1\r\nx\r\n");
        slowest_ping = slowest_ping.max(t.elapsed());
        let dbsize = integer_reply(&conn.cmd(&["DBSIZE"]));
        if dbsize <= 1 {
            gone_after = Some(loaded_at.elapsed());
            break;
        }
        assert!(round < 199, "still {dbsize} keys after {:?}", loaded_at.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone_after = gone_after.expect("keys expired");
    let after = info_field(&mut conn, "memory", "used_memory");
    let expired = info_field(&mut conn, "stats", "expired_keys");
    eprintln!(
        "loaded {KEYS} keys in {load_secs:.2}s; used_memory baseline {baseline}, loaded {peak}, after expiry {after}; \
         all gone {gone_after:?} after the load ended; slowest SET+GET meanwhile {slowest_ping:?}; expired_keys {expired}"
    );
    assert_eq!(expired as usize, KEYS, "every key counted as expired");
    // "A few seconds": the TTL is one second and the cycle reclaims a million keys well within that again.
    assert!(gone_after < Duration::from_secs(5), "expiry took {gone_after:?}");
    // Back near the baseline: the million entries and their tables are freed; allow 4 MiB of allocator slack.
    assert!(
        after < baseline + 4 * 1024 * 1024,
        "used_memory {after} vs baseline {baseline} (peak {peak})"
    );
    assert!(
        peak > baseline + 50 * 1024 * 1024,
        "the load should have used real memory (peak {peak})"
    );
}
