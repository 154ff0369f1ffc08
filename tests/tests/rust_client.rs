//! The `redis` crate (async, tokio) against shoal-server, over RESP2 and RESP3.

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Value};
use shoal_tests::{ShoalServer, TestServer};

/// Every test body runs under this limit.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test body timed out");
}

async fn connect(s: &TestServer, resp3: bool) -> MultiplexedConnection {
    let url = if resp3 {
        format!("{}?protocol=resp3", s.url())
    } else {
        s.url()
    };
    let client = redis::Client::open(url).expect("client");
    client.get_multiplexed_async_connection().await.expect("connect")
}

async fn strings_and_expiry(con: &mut MultiplexedConnection) {
    let _: () = redis::cmd("FLUSHALL").query_async(con).await.unwrap();
    let _: () = con.set("k", "v").await.unwrap();
    let v: String = con.get("k").await.unwrap();
    assert_eq!(v, "v");
    let missing: Option<String> = con.get("missing").await.unwrap();
    assert_eq!(missing, None);

    // Binary-safe values.
    let bin: Vec<u8> = (0..=255u8).collect();
    let _: () = con.set("bin", &bin[..]).await.unwrap();
    let back: Vec<u8> = con.get("bin").await.unwrap();
    assert_eq!(back, bin);

    let _: () = con.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).await.unwrap();
    let vals: Vec<Option<String>> = con.mget(&["a", "b", "missing", "c"]).await.unwrap();
    assert_eq!(vals, vec![Some("1".into()), Some("2".into()), None, Some("3".into())]);

    let n: i64 = con.incr("counter", 1).await.unwrap();
    assert_eq!(n, 1);
    let n: i64 = con.incr("counter", 41).await.unwrap();
    assert_eq!(n, 42);
    let n: i64 = con.decr("counter", 2).await.unwrap();
    assert_eq!(n, 40);
    let f: f64 = redis::cmd("INCRBYFLOAT")
        .arg("counter")
        .arg(0.5)
        .query_async(con)
        .await
        .unwrap();
    assert_eq!(f, 40.5);
    let e = con.incr::<_, _, i64>("k", 1).await.unwrap_err();
    assert!(e.to_string().contains("value is not an integer or out of range"), "{e}");

    let len: i64 = con.append("k", "alue").await.unwrap();
    assert_eq!(len, 5);
    let len: i64 = con.strlen("k").await.unwrap();
    assert_eq!(len, 5);
    let r: String = con.getrange("k", 1, -2).await.unwrap();
    assert_eq!(r, "alu");
    let prev: Option<String> = redis::cmd("GETSET").arg("k").arg("new").query_async(con).await.unwrap();
    assert_eq!(prev.as_deref(), Some("value"));
    let d: Option<String> = con.get_del("k").await.unwrap();
    assert_eq!(d.as_deref(), Some("new"));
    let set: bool = con.set_nx("k", "x").await.unwrap();
    assert!(set);
    let set: bool = con.set_nx("k", "y").await.unwrap();
    assert!(!set);

    // Expiry
    let ok: bool = con.expire("k", 100).await.unwrap();
    assert!(ok);
    let ttl: i64 = redis::cmd("TTL").arg("k").query_async(con).await.unwrap();
    assert!((99..=100).contains(&ttl), "TTL {ttl}");
    let pttl: i64 = redis::cmd("PTTL").arg("k").query_async(con).await.unwrap();
    assert!((98_000..=100_000).contains(&pttl), "PTTL {pttl}");
    let ok: bool = con.persist("k").await.unwrap();
    assert!(ok);
    let ttl: i64 = redis::cmd("TTL").arg("k").query_async(con).await.unwrap();
    assert_eq!(ttl, -1);
    let ttl: i64 = redis::cmd("TTL").arg("missing").query_async(con).await.unwrap();
    assert_eq!(ttl, -2);
    let ok: bool = con.expire("missing", 100).await.unwrap();
    assert!(!ok);
    let _: () = con.set_ex("short", "v", 100).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("px")
        .arg("v")
        .arg("PX")
        .arg(100)
        .query_async(con)
        .await
        .unwrap();
    let _: () = con.pset_ex("px2", "v", 100).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let gone: Option<String> = con.get("px").await.unwrap();
    assert_eq!(gone, None);
    let n: i64 = con.exists(&["px", "px2", "short"]).await.unwrap();
    assert_eq!(n, 1);

    let t: String = redis::cmd("TYPE").arg("a").query_async(con).await.unwrap();
    assert_eq!(t, "string");
    let n: i64 = con.del(&["a", "b", "missing"]).await.unwrap();
    assert_eq!(n, 2);
    let size: i64 = redis::cmd("DBSIZE").query_async(con).await.unwrap();
    assert_eq!(size, 5); // bin c counter k short
}

#[tokio::test]
async fn strings_and_expiry_resp2() {
    let s = ShoalServer::start(&[]);
    bounded(async {
        let mut con = connect(&s, false).await;
        strings_and_expiry(&mut con).await;
    })
    .await;
}

#[tokio::test]
async fn strings_and_expiry_resp3() {
    let s = ShoalServer::start(&[]);
    bounded(async {
        let mut con = connect(&s, true).await;
        strings_and_expiry(&mut con).await;
    })
    .await;
}

#[tokio::test]
async fn pipelines_of_a_thousand_commands() {
    let s = ShoalServer::start(&[]);
    bounded(async {
        for resp3 in [false, true] {
            let mut con = connect(&s, resp3).await;
            let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
            let mut p = redis::pipe();
            for i in 0..1000 {
                p.set(format!("p:{i}"), i).ignore();
            }
            let _: () = p.query_async(&mut con).await.unwrap();

            let mut p = redis::pipe();
            for i in 0..1000 {
                p.get(format!("p:{i}"));
            }
            let vals: Vec<i64> = p.query_async(&mut con).await.unwrap();
            assert_eq!(vals, (0..1000).collect::<Vec<i64>>());

            // Mixed commands, replies in order.
            let mut p = redis::pipe();
            for i in 0..250 {
                p.incr("pc", 1)
                    .expire(format!("p:{i}"), 1000)
                    .ttl(format!("p:{i}"))
                    .exists(format!("p:{i}"));
            }
            let vals: Vec<Value> = p.query_async(&mut con).await.unwrap();
            assert_eq!(vals.len(), 1000);
            for (i, chunk) in vals.chunks(4).enumerate() {
                assert_eq!(chunk[0], Value::Int(i as i64 + 1));
                assert_eq!(chunk[1], Value::Int(1));
                assert!(matches!(chunk[2], Value::Int(999 | 1000)), "{:?}", chunk[2]);
                assert_eq!(chunk[3], Value::Int(1));
            }

            // A failing command inside a pipeline fails the query; the connection keeps working.
            let mut p = redis::pipe();
            p.set("x", "notanumber").incr("x", 1).get("x");
            let r: redis::RedisResult<Vec<Value>> = p.query_async(&mut con).await;
            assert!(r.is_err(), "{r:?}");
            let v: String = con.get("x").await.unwrap();
            assert_eq!(v, "notanumber");

            let size: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
            assert_eq!(size, 1002);
        }
    })
    .await;
}

#[tokio::test]
async fn resp3_reply_types() {
    let s = ShoalServer::start(&[]);
    bounded(async {
        let mut con = connect(&s, true).await;
        let hello: Value = redis::cmd("HELLO").arg(3).query_async(&mut con).await.unwrap();
        let Value::Map(pairs) = hello else {
            panic!("HELLO 3 is not a map: {hello:?}")
        };
        assert!(
            pairs.contains(&(Value::BulkString(b"proto".to_vec()), Value::Int(3))),
            "{pairs:?}"
        );

        let v: Value = redis::cmd("GET").arg("missing").query_async(&mut con).await.unwrap();
        assert_eq!(v, Value::Nil);
        let v: Value = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(
            v,
            Value::Map(vec![(
                Value::BulkString(b"maxmemory".to_vec()),
                Value::BulkString(b"0".to_vec())
            )])
        );
        let v: Value = redis::cmd("CLIENT").arg("INFO").query_async(&mut con).await.unwrap();
        assert!(
            matches!(&v, Value::VerbatimString { text, .. } if text.contains("resp=3")),
            "CLIENT INFO over RESP3: {v:?}"
        );
        let v: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg("get")
            .query_async(&mut con)
            .await
            .unwrap();
        let Value::Array(cmds) = v else {
            panic!("COMMAND INFO: {v:?}")
        };
        let Value::Array(info) = &cmds[0] else {
            panic!("COMMAND INFO get: {cmds:?}")
        };
        assert_eq!(info[0], Value::BulkString(b"get".to_vec()));
        assert!(
            matches!(info[2], Value::Set(_)),
            "flags are a set in RESP3: {:?}",
            info[2]
        );

        // RESP2 on another connection: the same commands in RESP2 types.
        let mut con2 = connect(&s, false).await;
        let v: Value = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query_async(&mut con2)
            .await
            .unwrap();
        assert!(matches!(v, Value::Array(_)), "{v:?}");
        let v: Value = redis::cmd("CLIENT").arg("INFO").query_async(&mut con2).await.unwrap();
        assert!(
            matches!(&v, Value::BulkString(b) if String::from_utf8_lossy(b).contains("resp=2")),
            "{v:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn scan_iterates_every_key() {
    let s = ShoalServer::start(&[]);
    bounded(async {
        let mut con = connect(&s, false).await;
        let mut p = redis::pipe();
        for i in 0..5000 {
            p.set(
                if i % 5 == 0 {
                    format!("five:{i}")
                } else {
                    format!("other:{i}")
                },
                i,
            )
            .ignore();
        }
        let _: () = p.query_async(&mut con).await.unwrap();
        let mut keys = std::collections::BTreeSet::new();
        {
            let mut it = con.scan_match::<_, String>("five:*").await.unwrap();
            let mut n = 0;
            while let Some(k) = it.next_item().await {
                keys.insert(k.unwrap());
                n += 1;
                assert!(n <= 100_000, "SCAN does not end");
            }
        }
        assert_eq!(keys.len(), 1000);
        assert!(keys.iter().all(|k| k.starts_with("five:")));
        let all: Vec<String> = {
            let mut it = con.scan::<String>().await.unwrap();
            let mut v = Vec::new();
            while let Some(k) = it.next_item().await {
                v.push(k.unwrap());
                assert!(v.len() <= 100_000, "SCAN does not end");
            }
            v
        };
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), 5000);
    })
    .await;
}

#[tokio::test]
async fn many_concurrent_clients() {
    let s = ShoalServer::start(&[]);
    bounded(async {
        let mut tasks = Vec::new();
        for t in 0..20 {
            let mut con = connect(&s, t % 2 == 1).await;
            tasks.push(tokio::spawn(async move {
                for i in 0..500 {
                    let _: i64 = con.incr("shared", 1).await.unwrap();
                    let _: () = con.set(format!("t{t}:{i}"), i).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut con = connect(&s, false).await;
        let n: i64 = con.get("shared").await.unwrap();
        assert_eq!(n, 10_000);
        let size: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
        assert_eq!(size, 10_001);
    })
    .await;
}
