//! A six-node shoal-server cluster driven by the Redis tools: formed by `redis-cli --cluster create`, checked by
//! `redis-cli --cluster check`, used through `redis-cli -c` (MOVED followed on keys of all three shards), with
//! CROSSSLOT refusals, hash-tagged MSET/MGET, `redis-benchmark --cluster`, and a node killed and restarted from
//! its `nodes.conf`.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{Cluster, CONVERGE_TIMEOUT, NODE_TIMEOUT_MS};
use shoal_tests::{redis_benchmark, redis_cli, RunOutput};

const CLI_TIMEOUT: Duration = Duration::from_secs(20);
const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

fn cli_ok(port: u16, args: &[&str]) -> String {
    let out = redis_cli(port, args, None, CLI_TIMEOUT);
    assert!(
        out.success(),
        "redis-cli -p {port} {args:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout_str(),
        out.stderr_str()
    );
    out.stdout_str()
}

fn assert_check_clean(out: &RunOutput) {
    let stdout = out.stdout_str();
    assert!(
        out.success()
            && stdout.contains("[OK] All nodes agree about slots configuration.")
            && stdout.contains("[OK] All 16384 slots covered.")
            && !stdout.contains("[WARNING]")
            && !stdout.contains("[ERR]"),
        "redis-cli --cluster check is not clean ({:?}):\n{stdout}\n{}",
        out.status,
        out.stderr_str()
    );
}

/// One key served by each of the three primaries.
fn key_per_shard(cluster: &Cluster) -> Vec<(String, u16)> {
    let mut found: Vec<(String, u16)> = Vec::new();
    for i in 0..1000 {
        let key = format!("key:{i}");
        let port = cluster.owner_of(&key).port;
        if !found.iter().any(|(_, p)| *p == port) {
            found.push((key, port));
        }
        if found.len() == 3 {
            return found;
        }
    }
    panic!("fewer than three shards serve keys: {found:?}");
}

#[test]
fn redis_tools_against_a_six_node_cluster() {
    let cluster = Cluster::start();
    println!(
        "redis-cli --cluster create (6 shoal-server nodes): {} ms",
        cluster.create_time.as_millis()
    );
    let p0 = cluster.nodes[0].port;

    // Every slot covered, every node agreeing, no warnings.
    assert_check_clean(&cluster.check());

    // Three primaries with slots and three replicas, as every node sees it.
    for n in &cluster.nodes {
        let nodes = n.text(&["CLUSTER", "NODES"]);
        assert!(nodes.ends_with('\n'), "{nodes:?}");
        let lines: Vec<&str> = nodes.lines().collect();
        assert_eq!(lines.len(), 6, "{nodes}");
        assert_eq!(lines.iter().filter(|l| l.contains("master - ")).count(), 3, "{nodes}");
        assert_eq!(lines.iter().filter(|l| l.contains("slave ")).count(), 3, "{nodes}");
        assert_eq!(lines.iter().filter(|l| l.contains("myself,")).count(), 1, "{nodes}");
        assert!(lines.iter().all(|l| l.contains(" connected")), "{nodes}");
    }

    // redis-cli -c follows MOVED: keys of all three shards written through one node, read through another.
    let keys = key_per_shard(&cluster);
    for (key, owner) in &keys {
        assert_eq!(cli_ok(p0, &["-c", "SET", key, &format!("v-{key}")]), "OK\n");
        let other = cluster.nodes[1].port;
        assert_eq!(cli_ok(other, &["-c", "GET", key]), format!("v-{key}\n"));
        assert_eq!(cli_ok(*owner, &["GET", key]), format!("v-{key}\n"));
    }
    // Without -c, the redirection itself, as clients parse it.
    let (key, owner) = keys.iter().find(|(_, p)| *p != p0).expect("a key on another shard");
    let moved = cluster.nodes[0].text(&["GET", key]);
    let slot = cluster.nodes[0].text(&["CLUSTER", "KEYSLOT", key]);
    assert_eq!(moved, format!("-MOVED {slot} 127.0.0.1:{owner}"));

    // CROSSSLOT for keys of different slots, even on the node owning the first key; hash tags keep keys
    // together.
    let (k1, k1_owner) = &keys[0];
    let (k2, _) = &keys[1];
    let on_owner = cluster.nodes.iter().find(|n| n.port == *k1_owner).expect("owner");
    assert_eq!(on_owner.text(&["MSET", k1, "1", k2, "2"]), format!("-{CROSSSLOT}"));
    assert_eq!(on_owner.text(&["MGET", k1, k2]), format!("-{CROSSSLOT}"));
    assert_eq!(on_owner.text(&["DEL", k1, k2]), format!("-{CROSSSLOT}"));
    assert_eq!(cli_ok(p0, &["-c", "MGET", k1, k2]), format!("{CROSSSLOT}\n\n"));
    assert_eq!(
        cli_ok(
            p0,
            &["-c", "MSET", "{user:1}:a", "1", "{user:1}:b", "2", "{user:1}:c", "3"]
        ),
        "OK\n"
    );
    assert_eq!(
        cli_ok(
            cluster.nodes[2].port,
            &["-c", "MGET", "{user:1}:a", "{user:1}:b", "nope{user:1}", "{user:1}:c"]
        ),
        "1\n2\n\n3\n"
    );
    assert_eq!(cli_ok(p0, &["-c", "DEL", "{user:1}:a", "{user:1}:b"]), "2\n");

    // redis-benchmark in cluster mode: both tests complete and no error reply aborts the run.
    let args = ["--cluster", "-t", "set,get", "-n", "100000", "-q"];
    let out = redis_benchmark(p0, &args, Duration::from_secs(60));
    let stdout = out.stdout_str();
    let stderr = out.stderr_str();
    eprintln!(
        "redis-benchmark {args:?}: {:?} after {:.1?}\n{stdout}\n{stderr}",
        out.status, out.elapsed
    );
    assert!(out.success(), "redis-benchmark failed:\n{stdout}\n{stderr}");
    let finals: Vec<&str> = stdout
        .lines()
        .map(|l| l.rsplit('\r').next().unwrap_or(l).trim())
        .filter(|l| l.contains("requests per second"))
        .collect();
    assert!(
        finals.iter().any(|l| l.starts_with("SET:")) && finals.iter().any(|l| l.starts_with("GET:")),
        "no SET and GET results:\n{stdout}"
    );
    let lower = format!("{stdout}\n{stderr}").to_ascii_lowercase();
    assert!(
        !lower.contains("error"),
        "redis-benchmark reported errors:\n{stdout}\n{stderr}"
    );

    // The benchmark's keys landed on all three primaries, none on replicas.
    let mut total = 0;
    for (i, n) in cluster.nodes.iter().enumerate() {
        let keys: u64 = n.text(&["DBSIZE"]).parse().expect("DBSIZE");
        if i < 3 {
            assert!(keys > 0, "primary {} holds no key", n.port);
        }
        total += keys;
    }
    assert!(total > 0);
    assert_check_clean(&cluster.check());
}

#[test]
fn a_restarted_node_keeps_its_identity_and_the_cluster_recovers() {
    let mut cluster = Cluster::start();
    let victim = 0;
    let id = cluster.nodes[victim].my_id();
    let own_line = |text: &str| -> String {
        text.lines()
            .find(|l| l.contains("myself,"))
            .map(|l| {
                // Drop the ping/pong times, which change all the time.
                let f: Vec<&str> = l.split(' ').collect();
                [&f[..4], &f[6..]].concat().join(" ")
            })
            .unwrap_or_default()
    };
    let before = own_line(&cluster.nodes[victim].text(&["CLUSTER", "NODES"]));
    let conf = std::fs::read_to_string(cluster.nodes[victim].dir.join("nodes.conf")).expect("nodes.conf written");
    assert!(conf.contains(&id) && conf.contains("vars currentEpoch"), "{conf}");

    // A primary goes away without warning: the others see its slots fail after the node timeout.
    cluster.nodes[victim].kill();
    let down_deadline = Instant::now() + Duration::from_millis(NODE_TIMEOUT_MS * 5);
    loop {
        if cluster.nodes[1].info_field("cluster_state").as_deref() == Some("fail") {
            break;
        }
        assert!(
            Instant::now() < down_deadline,
            "the cluster did not notice the lost primary: {}",
            cluster.nodes[1].text(&["CLUSTER", "NODES"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The same node, the same directory, the same nodes.conf.
    let restarted = Instant::now();
    let n = &mut cluster.nodes[victim];
    n.start().unwrap_or_else(|e| panic!("restart: {e}\n{}", n.log()));
    assert_eq!(cluster.nodes[victim].my_id(), id, "the node came back with another id");
    cluster.wait_state_ok(CONVERGE_TIMEOUT + Duration::from_millis(NODE_TIMEOUT_MS * 4));
    eprintln!(
        "restarted primary: cluster_state:ok everywhere {} ms after the restart",
        restarted.elapsed().as_millis()
    );
    // Its replica may have been elected meanwhile (the node was FAIL when it came back): then it rejoins as the
    // replica of its former replica; otherwise it is the same primary with the same slots.
    let after = own_line(&cluster.nodes[victim].text(&["CLUSTER", "NODES"]));
    assert!(
        after == before || after.contains("myself,slave"),
        "before the restart: {before}\nafter: {after}"
    );
    assert_check_clean(&cluster.check());
    // Its slots are served again, by whichever node owns them now (a primary that saw its replica ask for votes
    // refuses writes for a moment before it is sure it is still the owner).
    let primary_id = after.split(' ').nth(3).unwrap_or("-").to_string();
    let home = if after == before {
        cluster.nodes[victim].port
    } else {
        cluster
            .nodes
            .iter()
            .find(|n| n.my_id() == primary_id)
            .map(|n| n.port)
            .expect("the restarted node's primary is one of the nodes")
    };
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| cluster.owner_of(k).port == home)
        .expect("a key of the restarted node's shard");
    let deadline = Instant::now() + Duration::from_millis(NODE_TIMEOUT_MS * 5);
    loop {
        let reply = cluster.owner_of(&key).text(&["SET", &key, "back"]);
        if reply == "OK" {
            break;
        }
        assert!(Instant::now() < deadline, "{key} not writable: {reply}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
