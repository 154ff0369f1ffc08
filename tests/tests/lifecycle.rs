//! The server's life as an operator sees it: configuration from flags and files (and refusal of bad ones),
//! authentication, the client limit, logging, and shutdown by SIGTERM, SIGINT and SHUTDOWN.

use std::process::Command;
use std::time::Duration;

use shoal_tests::{redis_cli, shoal_server_bin, RawConn, ShoalServer};

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

#[test]
fn sigterm_sigint_and_shutdown_stop_the_server_cleanly() {
    for how in ["SIGTERM", "SIGINT", "SHUTDOWN"] {
        let mut server = ShoalServer::start(&[]);
        let mut idle_client = server.raw();
        assert_eq!(idle_client.cmd(&["SET", "k", "v"]), b"+OK\r\n");
        match how {
            "SIGTERM" => signal(server.pid(), libc::SIGTERM),
            "SIGINT" => signal(server.pid(), libc::SIGINT),
            _ => {
                let mut c = server.raw();
                c.send_command(&["SHUTDOWN", "NOSAVE"]).expect("send SHUTDOWN");
                // A successful SHUTDOWN closes the connection without a reply, as Redis does.
                let (reply, closed) = c.read_to_close(Duration::from_secs(5));
                assert!(closed && reply.is_empty(), "SHUTDOWN replied {reply:?}");
            }
        }
        let status = server
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{how}: still running"));
        assert!(status.success(), "{how}: exit status {status}");
        let (_, closed) = idle_client.read_to_close(Duration::from_secs(2));
        assert!(closed, "{how}: idle client not disconnected");
        assert!(server.log().contains("bye bye"), "{how}: log {}", server.log());
    }
}

#[test]
fn unknown_options_and_bad_values_stop_startup_with_a_message_naming_them() {
    let cases: &[(&[&str], &str)] = &[
        (&["--maxmemry", "1mb"], "maxmemry"),
        (&["--maxmemory-policy", "allkeys-lruu"], "allkeys-lruu"),
        (&["--port", "99999"], "port"),
        (&["--maxmemory", "lots"], "maxmemory"),
    ];
    for (args, named) in cases {
        let out = Command::new(shoal_server_bin())
            .args(*args)
            .output()
            .expect("run shoal-server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started anyway");
        assert!(
            stderr.contains(named),
            "{args:?}: message does not name {named}: {stderr}"
        );
    }
}

#[test]
fn a_toml_file_configures_the_server_and_flags_override_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("shoal.toml");
    std::fs::write(
        &file,
        "maxmemory = \"64mb\"\nmaxmemory-policy = \"allkeys-lfu\"\nhz = 20\ndatabases = 4\n",
    )
    .expect("write config");
    let server = ShoalServer::start_with_config(&file, &["--hz", "15"]);
    let mut c = server.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory"]),
        b"*2\r\n$9\r\nmaxmemory\r\n$8\r\n67108864\r\n"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory-policy"]),
        b"*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lfu\r\n"
    );
    assert_eq!(c.cmd(&["CONFIG", "GET", "hz"]), b"*2\r\n$2\r\nhz\r\n$2\r\n15\r\n");
    assert_eq!(c.cmd(&["SELECT", "4"]), b"-ERR DB index is out of range\r\n");
    assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory", "32mb"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["CONFIG", "REWRITE"]), b"+OK\r\n");
    let rewritten = std::fs::read_to_string(&file).expect("read rewritten config");
    assert!(rewritten.contains("maxmemory = \"32mb\""), "{rewritten}");
    assert!(rewritten.contains("maxmemory-policy = \"allkeys-lfu\""), "{rewritten}");
}

#[test]
fn requirepass_is_enforced_for_redis_cli() {
    let server = ShoalServer::start(&["--requirepass", "s3cret"]);
    let t = Duration::from_secs(10);
    let denied = redis_cli(server.port, &["GET", "x"], None, t);
    assert!(
        denied.stdout_str().contains("NOAUTH Authentication required."),
        "{}",
        denied.stdout_str()
    );
    let wrong = redis_cli(server.port, &["--no-auth-warning", "-a", "nope", "PING"], None, t);
    // redis-cli reports the failed AUTH on stderr and goes on unauthenticated.
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("AUTH failed: WRONGPASS"),
        "{:?}",
        wrong.stderr
    );
    assert!(wrong.stdout_str().contains("NOAUTH"), "{}", wrong.stdout_str());
    let ok = redis_cli(server.port, &["--no-auth-warning", "-a", "s3cret", "PING"], None, t);
    assert_eq!(ok.stdout_str().trim(), "PONG");
}

#[test]
fn clients_past_maxclients_are_refused_with_redis_error() {
    let server = ShoalServer::start(&["--maxclients", "3"]);
    // The connections of the startup check may still be closing server-side: retry until three are held.
    let mut held: Vec<RawConn> = Vec::new();
    for _ in 0..100 {
        if held.len() == 3 {
            break;
        }
        let mut c = server.raw();
        if c.command(&["PING"]).map(|r| r == b"+PONG\r\n").unwrap_or(false) {
            held.push(c);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(held.len(), 3, "could not hold three clients");
    let mut extra = server.raw();
    let (reply, closed) = extra.read_to_close(Duration::from_secs(5));
    assert_eq!(reply, b"-ERR max number of clients reached\r\n");
    assert!(closed);
    let stats = held[0].cmd(&["INFO", "stats"]);
    assert!(
        String::from_utf8_lossy(&stats).contains("rejected_connections:1"),
        "{}",
        String::from_utf8_lossy(&stats)
    );
    drop(held.pop());
    // The freed place is taken again, once the server has seen the close.
    let mut ok = false;
    for _ in 0..50 {
        let mut c = server.raw();
        if c.command(&["PING"]).map(|r| r == b"+PONG\r\n").unwrap_or(false) {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "a client slot was not released");
}

#[test]
fn logfile_and_loglevel_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("shoal.log");
    let log_arg = log.to_string_lossy().into_owned();
    let server = ShoalServer::start(&["--logfile", &log_arg, "--loglevel", "verbose", "--save", "900 1"]);
    let text = std::fs::read_to_string(&log).expect("log file written");
    assert!(text.contains("Ready to accept connections"), "{text}");
    // Persistence options are accepted and the log says they do nothing.
    assert!(text.to_lowercase().contains("save"), "{text}");
    drop(server);
}

#[test]
fn a_corrupt_nodes_conf_stops_a_cluster_node_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("nodes.conf"),
        "this is not a cluster config\nvars nonsense\n",
    )
    .expect("write");
    let port = shoal_tests::free_port().to_string();
    let out = Command::new(shoal_server_bin())
        .args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
        ])
        .arg("nodes.conf")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run shoal-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a corrupt nodes.conf");
    assert!(
        stderr.contains("nodes.conf") && stderr.contains("corrupt"),
        "unclear message: {stderr}"
    );
}
