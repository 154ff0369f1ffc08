//! A server and a client in one process, for unit tests of command handlers: commands go through the real
//! dispatch gate and replies come back as parsed frames.

use std::sync::Arc;

use bytes::BytesMut;
use shoal_protocol::{Frame, FrameLimits, Proto, ReplyWriter};

use crate::client::{Client, ClientRegistry};
use crate::command::CommandTable;
use crate::config::Config;
use crate::dispatch::dispatch;
use crate::server::Server;

pub struct TestClient {
    pub srv: Arc<Server>,
    pub client: Client,
    out: ReplyWriter,
}

impl TestClient {
    /// A fresh server with the default configuration, changed by `tweak`.
    pub fn with_config(tweak: impl FnOnce(&mut Config)) -> TestClient {
        let mut config = Config::default();
        tweak(&mut config);
        let table = match CommandTable::build(&super::handlers()) {
            Ok(t) => t,
            Err(e) => panic!("command table: {e}"),
        };
        let srv = Server::new(config, table);
        TestClient::attach(srv)
    }

    pub fn new() -> TestClient {
        TestClient::with_config(|_| {})
    }

    /// Another client of the same server.
    pub fn attach(srv: Arc<Server>) -> TestClient {
        let reg: &ClientRegistry = &srv.clients;
        let addr = "127.0.0.1:1".parse().expect("literal address");
        let handle = match reg.register(addr, addr, -1, 0, usize::MAX) {
            Ok(h) => h,
            Err(_) => panic!("registry full"),
        };
        let authenticated = !srv.settings.auth_required.load(std::sync::atomic::Ordering::Relaxed);
        let client = Client::new(handle, authenticated);
        TestClient {
            srv,
            client,
            out: ReplyWriter::new(Proto::Resp2),
        }
    }

    /// Cluster mode: makes this node the owner of every slot, with the cluster up.
    pub fn own_all_slots(&self) {
        self.srv.routing.publish(crate::routing::RoutingSnapshot {
            nodes: vec![crate::routing::RoutedNode {
                endpoint: "127.0.0.1:7000".into(),
            }],
            owners: vec![0; shoal_cluster::SLOT_COUNT],
            migrating: Vec::new(),
            importing: Vec::new(),
            me: 0,
            my_primary: crate::routing::NO_NODE,
            state_ok: true,
        });
        // A lone primary that owns every slot holds the write lease for good.
        self.srv.routing.set_writes_until(u64::MAX);
    }

    /// Runs one command and returns its reply (or `Frame::Null` when the reply was suppressed).
    pub fn call(&mut self, args: &[&str]) -> Frame {
        let raw: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes(&raw)
    }

    pub fn call_bytes(&mut self, args: &[&[u8]]) -> Frame {
        self.out.clear();
        self.out.set_proto(self.client.proto);
        let now = self.srv.now();
        let stats = self.srv.stats.local();
        dispatch(&self.srv, &mut self.client, &mut self.out, args, &now, &stats);
        let mut buf = BytesMut::from(self.out.as_bytes());
        match Frame::parse(&mut buf, &FrameLimits::default()) {
            Ok(Some(f)) => f,
            Ok(None) => Frame::Null,
            Err(e) => panic!("unparseable reply {:?}: {e}", self.out.as_bytes()),
        }
    }

    /// Runs a command and returns the reply as text: bulk/simple as their text, integers as digits,
    /// errors as `-<text>`, nulls as `(nil)`.
    pub fn text(&mut self, args: &[&str]) -> String {
        render(&self.call(args))
    }
}

impl Default for TestClient {
    fn default() -> Self {
        TestClient::new()
    }
}

/// A compact text form of a reply for assertions.
pub fn render(f: &Frame) -> String {
    match f {
        Frame::Simple(s) | Frame::Bulk(s) | Frame::BigNumber(s) => String::from_utf8_lossy(s).into_owned(),
        Frame::Verbatim { text, .. } => String::from_utf8_lossy(text).into_owned(),
        Frame::Error(e) | Frame::BlobError(e) => format!("-{}", String::from_utf8_lossy(e)),
        Frame::Integer(n) => n.to_string(),
        Frame::Double(d) => d.to_string(),
        Frame::Boolean(b) => b.to_string(),
        Frame::Null | Frame::NullBulk | Frame::NullArray => "(nil)".into(),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", "))
        }
        Frame::Map(pairs) | Frame::Attribute(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
