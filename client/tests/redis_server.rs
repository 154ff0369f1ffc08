//! The client against a real `redis-server`: long pipelines, RESP3, split halves, and a three-node Redis
//! Cluster built on the spot (slots assigned and nodes introduced with our own client, no `redis-cli`).
//!
//! Every server is started on a free port with persistence off and killed by its pid when the test ends;
//! every wait is bounded.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_client::{ClientError, ClusterClient, ClusterOptions, ConnectOptions, Connection, Frame, Slot};

/// How long a started server gets to accept connections, and a cluster to agree on its state.
const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// A `redis-server` child process, killed on drop.
struct RedisServer {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

async fn start_redis(extra: &[&str]) -> RedisServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    let addr = format!("127.0.0.1:{port}");
    let server = RedisServer { child, addr, _dir: dir };
    let deadline = Instant::now() + STARTUP_LIMIT;
    while Connection::connect(&server.addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server on {} did not start",
            server.addr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

#[tokio::test]
async fn a_pipeline_of_ten_thousand_commands_comes_back_in_order() {
    let server = start_redis(&[]).await;
    let mut conn = Connection::connect(&server.addr).await.expect("connect");
    let mut cmds: Vec<Vec<String>> = Vec::new();
    for i in 0..5_000 {
        cmds.push(vec!["SET".into(), format!("key:{i}"), format!("value-{i}")]);
        cmds.push(vec!["GET".into(), format!("key:{i}")]);
    }
    let replies = conn.pipeline(&cmds).await.expect("pipeline");
    assert_eq!(replies.len(), 10_000);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], Frame::Simple(Bytes::from_static(b"OK")));
        assert_eq!(pair[1], bulk(&format!("value-{i}")));
    }
    assert_eq!(conn.command(&["DBSIZE"]).await.expect("dbsize"), Frame::Integer(5_000));
}

#[tokio::test]
async fn resp3_brings_maps_and_doubles() {
    let server = start_redis(&[]).await;
    let options = ConnectOptions {
        protocol: 3,
        ..ConnectOptions::default()
    };
    let mut conn = Connection::connect_with(&server.addr, &options).await.expect("connect");
    assert_eq!(conn.protocol(), 3);
    conn.command(&["ZADD", "z", "1.5", "m"]).await.expect("zadd");
    assert_eq!(
        conn.command(&["ZSCORE", "z", "m"]).await.expect("zscore"),
        Frame::Double(1.5)
    );
    let config = conn.command(&["CONFIG", "GET", "maxmemory"]).await.expect("config");
    assert_eq!(config, Frame::Map(vec![(bulk("maxmemory"), bulk("0"))]));
    assert_eq!(conn.command(&["GET", "missing"]).await.expect("get"), Frame::Null);

    let mut resp2 = Connection::connect(&server.addr).await.expect("connect");
    assert_eq!(resp2.command(&["ZSCORE", "z", "m"]).await.expect("zscore"), bulk("1.5"));
    assert_eq!(resp2.command(&["GET", "missing"]).await.expect("get"), Frame::NullBulk);
}

#[tokio::test]
async fn error_replies_are_errors_and_the_connection_goes_on() {
    let server = start_redis(&[]).await;
    let mut conn = Connection::connect(&server.addr).await.expect("connect");
    conn.command(&["SET", "s", "abc"]).await.expect("set");
    let incr = conn.command(&["INCR", "s"]).await;
    assert!(
        matches!(&incr, Err(ClientError::Server(t)) if t.starts_with("ERR value is not an integer")),
        "{incr:?}"
    );
    let wrong = conn.command(&["LPUSH", "s", "x"]).await;
    assert!(
        matches!(&wrong, Err(ClientError::Server(t)) if t.starts_with("WRONGTYPE")),
        "{wrong:?}"
    );
    assert_eq!(
        conn.command(&["PING"]).await.expect("ping"),
        Frame::Simple(Bytes::from_static(b"PONG"))
    );
}

#[tokio::test]
async fn split_halves_keep_sending_while_replies_are_read() {
    let server = start_redis(&[]).await;
    let conn = Connection::connect(&server.addr).await.expect("connect");
    let (mut writer, mut reader) = conn.into_split();
    let n = 20_000;
    let sender = tokio::spawn(async move {
        for _ in 0..n / 100 {
            for _ in 0..100 {
                writer.queue(&["INCR", "counter"]);
            }
            writer.flush().await?;
            tokio::task::yield_now().await;
        }
        Ok::<_, ClientError>(writer)
    });
    for i in 1..=n {
        assert_eq!(reader.read_reply().await.expect("reply"), Frame::Integer(i));
    }
    sender.await.expect("join").expect("send");
}

#[tokio::test]
async fn a_plain_server_is_not_a_cluster() {
    let server = start_redis(&[]).await;
    let result = ClusterClient::connect(&[server.addr.as_str()]).await;
    assert!(matches!(result, Err(ClientError::NoNode(_))), "{result:?}");
}

/// Three cluster-enabled servers made into one cluster: slot thirds assigned with `CLUSTER ADDSLOTSRANGE`,
/// nodes introduced with `CLUSTER MEET`, then waited on until every node reports `cluster_state:ok`.
async fn start_cluster() -> Vec<RedisServer> {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(start_redis(&["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]).await);
    }
    let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
    for (server, (lo, hi)) in servers.iter().zip(ranges) {
        let mut conn = Connection::connect(&server.addr).await.expect("connect");
        conn.command(&["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()])
            .await
            .expect("addslots");
        for other in &servers {
            let (host, port) = other.addr.rsplit_once(':').expect("host:port");
            conn.command(&["CLUSTER", "MEET", host, port]).await.expect("meet");
        }
    }
    let deadline = Instant::now() + STARTUP_LIMIT;
    for server in &servers {
        let mut conn = Connection::connect(&server.addr).await.expect("connect");
        loop {
            let info = conn.command(&["CLUSTER", "INFO"]).await.expect("cluster info");
            let ok = info
                .as_bulk()
                .is_some_and(|b| String::from_utf8_lossy(b).contains("cluster_state:ok"));
            let slots = conn.command(&["CLUSTER", "SLOTS"]).await.expect("cluster slots");
            if ok && matches!(&slots, Frame::Array(r) if r.len() == 3) {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    servers
}

#[tokio::test]
async fn a_real_cluster_routes_keys_and_follows_a_moved_slot() {
    let servers = start_cluster().await;
    let mut client = ClusterClient::connect_with(&[servers[0].addr.as_str()], ClusterOptions::default())
        .await
        .expect("connect");
    assert_eq!(client.slot_map().unassigned(), 0);
    assert_eq!(client.slot_map().nodes().len(), 3);

    let cmds: Vec<Vec<String>> = (0..300)
        .map(|i| vec!["SET".into(), format!("key:{i}"), i.to_string()])
        .collect();
    let replies = client.pipeline(&cmds).await.expect("pipeline");
    assert!(
        replies.iter().all(|r| *r == Frame::Simple(Bytes::from_static(b"OK"))),
        "{replies:?}"
    );
    for i in (0..300).step_by(7) {
        assert_eq!(
            client.command(&["GET", &format!("key:{i}")]).await.expect("get"),
            bulk(&i.to_string())
        );
    }
    assert_eq!(client.stats().moved, 0);

    // Hand an empty slot from its owner to another node behind the client's back: the next command for it
    // meets a real MOVED.
    let key = "moving-key";
    let slot = Slot::for_key(key.as_bytes());
    let owner = client.slot_map().node(slot).expect("owner").to_string();
    let target = servers.iter().find(|s| s.addr != owner).expect("another node");
    let mut target_conn = Connection::connect(&target.addr).await.expect("connect");
    let target_id = target_conn.command(&["CLUSTER", "MYID"]).await.expect("myid");
    let target_id = String::from_utf8_lossy(target_id.as_bulk().expect("id")).into_owned();
    for server in &servers {
        let mut conn = Connection::connect(&server.addr).await.expect("connect");
        conn.command(&["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &target_id])
            .await
            .expect("setslot");
    }
    assert_eq!(
        client.command(&["SET", key, "v"]).await.expect("set"),
        Frame::Simple(Bytes::from_static(b"OK"))
    );
    assert_eq!(client.stats().moved, 1);
    assert_eq!(client.slot_map().node(slot), Some(target.addr.as_str()));
    assert_eq!(target_conn.command(&["GET", key]).await.expect("get"), bulk("v"));
}
