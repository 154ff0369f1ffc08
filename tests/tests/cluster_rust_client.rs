//! The `redis` crate's async cluster client against a six-node shoal-server cluster, over RESP2 and RESP3:
//! 100,000 keys written with pipelines and read back (MGET and GET pipelines), MGET over many slots, hash-tagged multi-key commands, CROSSSLOT where the
//! client sends keys of several slots as one command, and CLUSTER SLOTS, SHARDS and NODES parsed.

mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cluster_support::Cluster;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, ProtocolVersion, RedisError, Value};

const KEYS: usize = 100_000;
const BATCH: usize = 1_000;
/// Each protocol's whole run must finish within this.
const RUN_TIMEOUT: Duration = Duration::from_secs(40);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect(cluster: &Cluster, protocol: ProtocolVersion) -> ClusterConnection {
    let urls: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}/"))
        .collect();
    let client = ClusterClientBuilder::new(urls)
        .use_protocol(protocol)
        .connection_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(10))
        .build()
        .expect("cluster client");
    client.get_async_connection().await.expect("cluster connection")
}

fn is_crossslot(e: &RedisError) -> bool {
    e.code() == Some("CROSSSLOT") && e.detail() == Some("Keys in request don't hash to the same slot")
}

/// A RESP3 map or its RESP2 flat-array form as key/value pairs with text keys.
fn pairs(v: &Value) -> Vec<(String, Value)> {
    let text = |k: &Value| match k {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("map key {other:?}"),
    };
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        Value::Array(a) if a.len() % 2 == 0 => a.chunks(2).map(|kv| (text(&kv[0]), kv[1].clone())).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn string(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

/// A command sent to one node over a plain (non-cluster) connection of the same protocol: replicas are not in
/// the cluster client's pool (they are left out of CLUSTER SLOTS until they have synced).
async fn on_node(port: u16, protocol: ProtocolVersion, args: &[&str]) -> Value {
    let url = match protocol {
        ProtocolVersion::RESP2 => format!("redis://127.0.0.1:{port}/"),
        _ => format!("redis://127.0.0.1:{port}/?protocol=resp3"),
    };
    let client = redis::Client::open(url).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {port}: {e}"));
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("{args:?} on {port}: {e}"))
}

/// CLUSTER SLOTS, SHARDS and NODES from one node, parsed, and checked against each other.
async fn topology(cluster: &Cluster, port: u16, protocol: ProtocolVersion) {
    let ports: BTreeSet<u16> = cluster.ports().into_iter().collect();

    let slots = on_node(port, protocol, &["CLUSTER", "SLOTS"]).await;
    let mut covered = 0;
    let mut slot_owners = BTreeMap::new();
    for entry in array(&slots) {
        let e = array(entry);
        let (start, end) = (int(&e[0]), int(&e[1]));
        assert!(0 <= start && start <= end && end < 16384, "{entry:?}");
        covered += end - start + 1;
        let primary = array(&e[2]);
        assert_eq!(primary.len(), 4, "{entry:?}");
        assert_eq!(string(&primary[0]), "127.0.0.1");
        assert!(ports.contains(&(int(&primary[1]) as u16)), "{entry:?}");
        assert_eq!(string(&primary[2]).len(), 40);
        // The fourth element is a map of extra endpoints, empty without a hostname.
        assert!(pairs(&primary[3]).is_empty(), "{entry:?}");
        slot_owners.insert(string(&primary[2]), (start, end));
    }
    assert_eq!(covered, 16384, "{slots:?}");
    assert_eq!(slot_owners.len(), 3, "{slots:?}");

    let shards = on_node(port, protocol, &["CLUSTER", "SHARDS"]).await;
    assert_eq!(array(&shards).len(), 3, "{shards:?}");
    for shard in array(&shards) {
        let fields: BTreeMap<String, Value> = pairs(shard).into_iter().collect();
        let ranges: Vec<i64> = array(&fields["slots"]).iter().map(int).collect();
        let nodes = array(&fields["nodes"]);
        assert_eq!(nodes.len(), 2, "a primary and its replica: {shard:?}");
        let primary: BTreeMap<String, Value> = pairs(&nodes[0]).into_iter().collect();
        let replica: BTreeMap<String, Value> = pairs(&nodes[1]).into_iter().collect();
        assert_eq!(string(&primary["role"]), "master");
        assert_eq!(string(&replica["role"]), "replica");
        for n in [&primary, &replica] {
            let keys: Vec<&str> = n.keys().map(String::as_str).collect();
            let mut expected = vec!["endpoint", "health", "id", "ip", "port", "replication-offset", "role"];
            expected.sort_unstable();
            assert_eq!(keys, expected);
            assert!(ports.contains(&(int(&n["port"]) as u16)));
        }
        let id = string(&primary["id"]);
        assert_eq!(ranges, vec![slot_owners[&id].0, slot_owners[&id].1], "{shard:?}");
    }

    let nodes = string(&on_node(port, protocol, &["CLUSTER", "NODES"]).await);
    assert!(nodes.ends_with('\n'));
    let lines: Vec<Vec<&str>> = nodes.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 6, "{nodes}");
    let primaries: BTreeSet<&str> = lines
        .iter()
        .filter(|f| f[2].split(',').any(|x| x == "master"))
        .map(|f| f[0])
        .collect();
    assert_eq!(primaries, slot_owners.keys().map(String::as_str).collect(), "{nodes}");
    for f in &lines {
        assert!(f.len() >= 8, "{nodes}");
        assert_eq!(f[7], "connected", "{nodes}");
        if f[2].split(',').any(|x| x == "slave") {
            assert!(primaries.contains(f[3]), "a replica of an unknown primary: {nodes}");
            assert_eq!(f.len(), 8, "a replica serves no slot: {nodes}");
        } else {
            let (start, end) = slot_owners[f[0]];
            assert_eq!(f[8..], [format!("{start}-{end}").as_str()], "{nodes}");
        }
    }
}

async fn exercise(cluster: &Cluster, protocol: ProtocolVersion) {
    let mut con = connect(cluster, protocol).await;
    let tag = match protocol {
        ProtocolVersion::RESP2 => "r2",
        _ => "r3",
    };
    // The client sends a pipeline to one slot's node, so each pipeline's keys share a hash tag: 100 tags (spread
    // over every shard) of 1,000 keys.
    let key = |i: usize| format!("{{{tag}:{}}}:key:{i}", i / BATCH);

    let started = Instant::now();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(BATCH) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.set(key(i), i).ignore();
        }
        let () = pipe.query_async(&mut con).await.expect("SET pipeline");
    }
    let written = started.elapsed();

    // Read back: half with MGET, half with GET pipelines.
    for chunk in (0..KEYS / 2).collect::<Vec<_>>().chunks(BATCH) {
        let keys: Vec<String> = chunk.iter().map(|&i| key(i)).collect();
        let values: Vec<Option<usize>> = con.mget(&keys).await.expect("MGET");
        let expected: Vec<Option<usize>> = chunk.iter().map(|&i| Some(i)).collect();
        assert_eq!(values, expected);
    }
    for chunk in (KEYS / 2..KEYS).collect::<Vec<_>>().chunks(BATCH) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.get(key(i));
        }
        let values: Vec<usize> = pipe.query_async(&mut con).await.expect("GET pipeline");
        assert_eq!(values, chunk.to_vec());
    }
    eprintln!(
        "{tag}: {KEYS} keys written in {:.0?}, all read back after {:.0?}",
        written,
        started.elapsed()
    );

    // Untagged keys land in many slots; MGET over them is split by the client, one request per slot.
    let plain = |i: usize| format!("{tag}:plain:{i}");
    for i in 0..500 {
        let () = con.set(plain(i), i).await.expect("SET");
    }
    let keys: Vec<String> = (0..500).map(plain).collect();
    let values: Vec<usize> = con.mget(&keys).await.expect("MGET over many slots");
    assert_eq!(values, (0..500).collect::<Vec<_>>());

    // Every primary holds a share; replicas hold none (Shoal does not replicate data yet).
    let mut total = 0;
    for (i, port) in cluster.ports().into_iter().enumerate() {
        let n = int(&on_node(port, protocol, &["DBSIZE"]).await);
        if i < 3 {
            assert!(n > 0, "primary {port} holds no key");
        }
        total += n;
    }
    assert!(total >= KEYS as i64, "{total} keys in the cluster");

    // Hash-tagged multi-key commands are served whole by one node, in pipelines too.
    let tagged: Vec<(String, String)> = (0..100)
        .map(|i| (format!("{{{tag}:user:7}}:f{i}"), format!("v{i}")))
        .collect();
    let () = con.mset(&tagged).await.expect("hash-tagged MSET");
    let names: Vec<&str> = tagged.iter().map(|(k, _)| k.as_str()).collect();
    let back: Vec<String> = con.mget(&names).await.expect("hash-tagged MGET");
    assert_eq!(back, tagged.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    let (n, values, deleted): (i64, Vec<Option<String>>, i64) = redis::pipe()
        .exists(&names[..10])
        .mget(&names[..3])
        .del(&names[..5])
        .query_async(&mut con)
        .await
        .expect("hash-tagged pipeline");
    assert_eq!((n, deleted), (10, 5));
    assert_eq!(values, vec![Some("v0".into()), Some("v1".into()), Some("v2".into())]);
    let renamed: () = redis::cmd("RENAME")
        .arg(names[10])
        .arg(format!("{{{tag}:user:7}}:renamed"))
        .query_async(&mut con)
        .await
        .expect("RENAME within a slot");
    let () = renamed;

    // Keys of different slots in one command the client does not split: the server's CROSSSLOT.
    let (a, b) = (plain(1), plain(2));
    let slot = |k: &str| cluster.nodes[0].text(&["CLUSTER", "KEYSLOT", k]);
    assert_ne!(slot(&a), slot(&b));
    let e = redis::cmd("RENAME")
        .arg(&a)
        .arg(&b)
        .query_async::<()>(&mut con)
        .await
        .expect_err("RENAME across slots");
    assert!(is_crossslot(&e), "{e:?}");
    let e = redis::cmd("MSETNX")
        .arg(&a)
        .arg("x")
        .arg(&b)
        .arg("y")
        .query_async::<bool>(&mut con)
        .await
        .expect_err("MSETNX across slots");
    assert!(is_crossslot(&e), "{e:?}");
    let owner = cluster.owner_of(&a).port;
    let routed = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: "127.0.0.1".into(),
        port: owner,
    });
    // A routed command's error reply comes back as a value.
    let r = con
        .route_command(redis::cmd("MGET").arg(&a).arg(&b).clone(), routed)
        .await;
    let refused = match &r {
        Err(e) => is_crossslot(e),
        Ok(Value::ServerError(e)) => {
            e.code() == "CROSSSLOT" && e.details() == Some("Keys in request don't hash to the same slot")
        }
        Ok(_) => false,
    };
    assert!(refused, "MGET across slots sent whole: {r:?}");
    let v: Option<usize> = con.get(&a).await.expect("GET after refusals");
    assert_eq!(v, Some(1));

    // The topology replies, from a primary and from a replica.
    topology(cluster, cluster.nodes[0].port, protocol).await;
    topology(cluster, cluster.nodes[5].port, protocol).await;
}

#[test]
fn async_cluster_client_resp2_and_resp3() {
    let cluster = Cluster::start();
    let rt = runtime();
    for protocol in [ProtocolVersion::RESP2, ProtocolVersion::RESP3] {
        rt.block_on(async {
            tokio::time::timeout(RUN_TIMEOUT, exercise(&cluster, protocol))
                .await
                .unwrap_or_else(|_| panic!("{protocol:?} run did not finish within {RUN_TIMEOUT:?}"))
        });
    }
}
