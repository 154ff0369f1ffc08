//! Clients: the per-connection state commands see, and the registry behind CLIENT LIST, CLIENT KILL and
//! `maxclients`.
//!
//! A connection's own task owns its [`Client`]; what other connections need to see or change (its name for
//! CLIENT LIST, a kill request) lives in a shared [`ClientHandle`]. Fields that change per command are atomics
//! written by the owner only; fields that change rarely (name, library) sit behind a small mutex.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use shoal_protocol::Proto;

/// CLIENT REPLY mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// Suppress the reply of the next command only.
    SkipNext,
    /// Set by SkipNext for the command being run.
    Skipping,
}

/// Something the connection loop must do after the current command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write the replies so far, then close (QUIT, protocol errors, CLIENT KILL of oneself).
    Close,
    /// Sleep this long before going on (DEBUG SLEEP: the whole server pauses with it).
    Sleep(std::time::Duration),
    /// Shut the server down (SHUTDOWN): close without a reply.
    Shutdown,
    /// Wait until `replicas` replicas acknowledged the client's last write, or `timeout_ms` passes (0: no
    /// limit), then reply with how many did unless `reply` is false (WAIT).
    WaitAcks {
        replicas: usize,
        timeout_ms: u64,
        reply: bool,
    },
    /// Write the replies so far, then hand the connection to replication: it is a replica now (PSYNC).
    ReplicaLink,
}

/// What kind of client a connection is (CLIENT LIST flags, CLIENT KILL TYPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientKind {
    Normal = 0,
    /// A replica of this node (flags `S`).
    Replica = 1,
    /// This replica's link to its primary (flags `M`).
    Primary = 2,
}

/// Rarely changing, shared client attributes.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub name: Vec<u8>,
    pub lib_name: Vec<u8>,
    pub lib_ver: Vec<u8>,
}

/// What other connections may see of a client, and how to reach it.
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub fd: i32,
    pub created_ms: i64,
    pub info: Mutex<ClientInfo>,
    pub db: AtomicUsize,
    pub resp: AtomicU8,
    pub last_interaction_ms: AtomicI64,
    /// Command id of the last command run, plus one (0 = none yet).
    pub last_cmd: AtomicUsize,
    pub query_buf: AtomicUsize,
    pub query_buf_free: AtomicUsize,
    pub out_buf: AtomicUsize,
    pub no_evict: AtomicBool,
    pub no_touch: AtomicBool,
    pub killed: AtomicBool,
    /// Whether the connection still owns its socket; taken by killers so they never shut down a reused fd.
    alive: Mutex<bool>,
    /// Bytes of argument data of the command being run (CLIENT LIST argv-mem).
    pub argv_mem: AtomicU64,
    /// A [`ClientKind`].
    kind: AtomicU8,
}

impl ClientHandle {
    /// Closes the connection: its current command finishes, then the read or write it waits in fails.
    pub fn request_kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        let alive = self.alive.lock();
        if *alive && self.fd >= 0 {
            // SAFETY: the connection holds the fd open while `alive` is true, and cannot close it while we hold
            // the lock.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
    }

    /// Called by the connection before it closes its socket.
    pub fn mark_closed(&self) {
        *self.alive.lock() = false;
    }

    pub fn kind(&self) -> ClientKind {
        match self.kind.load(Ordering::Relaxed) {
            1 => ClientKind::Replica,
            2 => ClientKind::Primary,
            _ => ClientKind::Normal,
        }
    }

    pub fn set_kind(&self, kind: ClientKind) {
        self.kind.store(kind as u8, Ordering::Relaxed);
    }
}

/// The connection-local state commands work with.
pub struct Client {
    pub handle: Arc<ClientHandle>,
    pub db: usize,
    pub proto: Proto,
    pub authenticated: bool,
    pub reply_mode: ReplyMode,
    pub no_touch: bool,
    pub action: Option<Action>,
    /// Cluster READONLY: this connection may read from a replica.
    pub readonly: bool,
    /// Cluster ASKING: the next command may touch an importing slot.
    pub asking: bool,
    /// The slot and hash of the running request's first argument when the connection computed them already
    /// (to prefetch a pipelined batch); set before every command, see [`Key::with_hint`].
    pub key_hint: Option<crate::keyspace::KeyHint>,
    /// The last command name seen and its table id: clients mostly repeat a few commands, and comparing the
    /// bytes is cheaper than lower-casing and hashing them.
    pub cmd_cache: CommandCache,
    /// The replication stream offset after this client's last write (what WAIT waits for).
    pub woff: u64,
    /// What a replica said in REPLCONF before PSYNC.
    pub repl_handshake: Option<Box<crate::replication::primary::Handshake>>,
    /// Set by PSYNC: the connection becomes a replica link once its replies are written.
    pub repl_link: Option<Box<crate::replication::primary::LinkStart>>,
}

/// A one-entry cache from a command name, exactly as the client spells it, to its command id.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandCache {
    name: [u8; 16],
    len: u8,
    id: u32,
}

impl CommandCache {
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<usize> {
        (self.len as usize == name.len() && self.len > 0 && &self.name[..name.len()] == name)
            .then_some(self.id as usize)
    }

    #[inline]
    pub fn put(&mut self, name: &[u8], id: usize) {
        if name.len() <= self.name.len() {
            self.name[..name.len()].copy_from_slice(name);
            self.len = name.len() as u8;
            self.id = id as u32;
        }
    }
}

impl Client {
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> Client {
        Client {
            handle,
            db: 0,
            proto: Proto::Resp2,
            authenticated,
            reply_mode: ReplyMode::On,
            no_touch: false,
            action: None,
            readonly: false,
            asking: false,
            key_hint: None,
            cmd_cache: CommandCache::default(),
            woff: 0,
            repl_handshake: None,
            repl_link: None,
        }
    }

    /// Takes the stream offset of the writes this thread made for the client since the last call into
    /// `woff`. Called before every await of the connection, so the thread's writes are always its own.
    #[inline]
    pub fn note_writes(&mut self) -> bool {
        let end = crate::keyspace::feed::take_last_append_end();
        if end > self.woff {
            self.woff = end;
            true
        } else {
            false
        }
    }

    pub fn id(&self) -> u64 {
        self.handle.id
    }

    pub fn select(&mut self, db: usize) {
        self.db = db;
        self.handle.db.store(db, Ordering::Relaxed);
    }
}

/// Every connected client.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    next_id: AtomicU64,
    connected: AtomicUsize,
}

impl ClientRegistry {
    pub fn new() -> ClientRegistry {
        ClientRegistry {
            next_id: AtomicU64::new(1),
            ..Default::default()
        }
    }

    /// Registers a client unless `maxclients` are already connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        fd: i32,
        now_ms: i64,
        maxclients: usize,
    ) -> Result<Arc<ClientHandle>, u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut map = self.clients.lock();
        if map.len() >= maxclients {
            return Err(id);
        }
        let h = Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            fd,
            created_ms: now_ms,
            info: Mutex::new(ClientInfo::default()),
            db: AtomicUsize::new(0),
            resp: AtomicU8::new(2),
            last_interaction_ms: AtomicI64::new(now_ms),
            last_cmd: AtomicUsize::new(0),
            query_buf: AtomicUsize::new(0),
            query_buf_free: AtomicUsize::new(0),
            out_buf: AtomicUsize::new(0),
            no_evict: AtomicBool::new(false),
            no_touch: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            alive: Mutex::new(true),
            argv_mem: AtomicU64::new(0),
            kind: AtomicU8::new(ClientKind::Normal as u8),
        });
        map.insert(id, h.clone());
        self.connected.store(map.len(), Ordering::Relaxed);
        Ok(h)
    }

    pub fn unregister(&self, id: u64) {
        let mut map = self.clients.lock();
        map.remove(&id);
        self.connected.store(map.len(), Ordering::Relaxed);
    }

    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// A snapshot of every client, in id order.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.clients.lock().get(&id).cloned()
    }

    /// Asks every client to close (shutdown).
    pub fn kill_all(&self) {
        for c in self.clients.lock().values() {
            c.request_kill();
        }
    }
}
