//! [`Server`]: the state every connection shares — configuration, keyspace, clients, statistics — and the
//! hot configuration values mirrored into atomics so the per-command path never takes the config lock.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::RwLock;
use tokio::sync::{watch, Notify};

use crate::client::ClientRegistry;
use crate::command::CommandTable;
use crate::config::{Config, EvictionPolicy, ProtectedAction};
use crate::keyspace::evict::{self, Victims};
use crate::keyspace::{AccessMode, Evictor, Keyspace, Now};
use crate::memory::MemoryMeter;
use crate::stats::Stats;

/// Configuration values read on the per-command path, copied out of [`Config`] after every change.
#[derive(Default)]
pub struct Settings {
    pub maxmemory: AtomicU64,
    policy: AtomicU8,
    pub samples: AtomicU32,
    pub tenacity: AtomicU32,
    pub lfu_log_factor: AtomicU32,
    pub lfu_decay_time: AtomicU32,
    pub proto_max_bulk_len: AtomicI64,
    pub query_buffer_limit: AtomicU64,
    pub auth_required: AtomicBool,
    pub timeout_secs: AtomicU64,
    pub maxclients: AtomicUsize,
    pub hz: AtomicU32,
    pub active_expire_effort: AtomicU32,
    /// 0 no, 1 yes, 2 local.
    pub enable_debug: AtomicU8,
    pub output_hard_limit: AtomicU64,
    pub active_expire_enabled: AtomicBool,
    pub cluster_allow_reads_when_down: AtomicBool,
    /// `min-replicas-to-ack`: replies to a batch with writes wait for this many replicas (0 = off).
    pub min_replicas_to_ack: AtomicUsize,
    /// `min-replicas-ack-timeout`, in ms.
    pub min_replicas_ack_timeout_ms: AtomicU64,
}

fn policy_code(p: EvictionPolicy) -> u8 {
    match p {
        EvictionPolicy::NoEviction => 0,
        EvictionPolicy::AllKeysLru => 1,
        EvictionPolicy::VolatileLru => 2,
        EvictionPolicy::AllKeysLfu => 3,
        EvictionPolicy::VolatileLfu => 4,
        EvictionPolicy::AllKeysRandom => 5,
        EvictionPolicy::VolatileRandom => 6,
        EvictionPolicy::VolatileTtl => 7,
    }
}

impl Settings {
    pub fn load(&self, c: &Config) {
        let r = Ordering::Relaxed;
        self.maxmemory.store(c.maxmemory, r);
        self.policy.store(policy_code(c.maxmemory_policy), r);
        self.samples.store(c.maxmemory_samples, r);
        self.tenacity.store(c.maxmemory_eviction_tenacity, r);
        self.lfu_log_factor.store(c.lfu_log_factor, r);
        self.lfu_decay_time.store(c.lfu_decay_time, r);
        self.proto_max_bulk_len.store(c.proto_max_bulk_len as i64, r);
        self.query_buffer_limit.store(c.client_query_buffer_limit, r);
        self.auth_required
            .store(c.requirepass.as_ref().is_some_and(|p| !p.is_empty()), r);
        self.timeout_secs.store(c.timeout as u64, r);
        self.maxclients.store(c.maxclients as usize, r);
        self.hz.store(c.hz, r);
        self.active_expire_effort.store(c.active_expire_effort, r);
        self.enable_debug.store(
            match c.enable_debug_command {
                ProtectedAction::No => 0,
                ProtectedAction::Yes => 1,
                ProtectedAction::Local => 2,
            },
            r,
        );
        self.output_hard_limit
            .store(c.client_output_buffer_limit.normal.hard_bytes, r);
        self.cluster_allow_reads_when_down
            .store(c.cluster_allow_reads_when_down, r);
        self.min_replicas_to_ack.store(c.min_replicas_to_ack as usize, r);
        self.min_replicas_ack_timeout_ms.store(c.min_replicas_ack_timeout, r);
    }

    /// Access-clock mode for the current policy.
    #[inline]
    pub fn access_mode(&self) -> AccessMode {
        match self.policy.load(Ordering::Relaxed) {
            3 | 4 => AccessMode::Lfu {
                log_factor: self.lfu_log_factor.load(Ordering::Relaxed),
                decay_time_min: self.lfu_decay_time.load(Ordering::Relaxed),
            },
            _ => AccessMode::Lru,
        }
    }

    /// Which keys eviction may take under the current policy.
    pub fn victims(&self) -> Victims {
        match self.policy.load(Ordering::Relaxed) {
            1 | 3 => Victims::Scored {
                volatile_only: false,
                by_ttl: false,
            },
            2 | 4 => Victims::Scored {
                volatile_only: true,
                by_ttl: false,
            },
            5 => Victims::Random { volatile_only: false },
            6 => Victims::Random { volatile_only: true },
            7 => Victims::Scored {
                volatile_only: true,
                by_ttl: true,
            },
            _ => Victims::None,
        }
    }

    pub fn is_lfu(&self) -> bool {
        matches!(self.policy.load(Ordering::Relaxed), 3 | 4)
    }
}

/// Entries handed to the background freeing thread.
struct LazyFreeJob {
    #[allow(dead_code)] // held only to be dropped on the freeing thread
    entries: Vec<Vec<crate::keyspace::Entry>>,
    count: u64,
}

/// Eviction keeps used memory under `maxmemory - maxmemory/1024` (the headroom bounded below and above).
const EVICTION_HEADROOM_DIVISOR: u64 = 1024;
const MIN_EVICTION_HEADROOM: u64 = 16 * 1024;
const MAX_EVICTION_HEADROOM: u64 = 1024 * 1024;

/// Used memory is over `maxmemory` and eviction cannot bring it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

/// CLIENT PAUSE / DEBUG SLEEP state.
#[derive(Default)]
pub struct Pause {
    until_ms: AtomicI64,
    writes_only: AtomicBool,
    pub unpaused: Notify,
}

impl Pause {
    /// Pauses clients until `until_ms` (unix ms): all commands, or only writes.
    pub fn pause(&self, until_ms: i64, writes_only: bool) {
        // A pause never shortens a longer one of a stricter kind, as in Redis.
        let cur = self.until_ms.load(Ordering::Relaxed);
        let cur_writes_only = self.writes_only.load(Ordering::Relaxed);
        if cur > until_ms && (!cur_writes_only || writes_only) {
            return;
        }
        self.writes_only.store(writes_only, Ordering::Relaxed);
        self.until_ms.store(until_ms, Ordering::Release);
    }

    pub fn unpause(&self) {
        self.until_ms.store(0, Ordering::Release);
        self.unpaused.notify_waiters();
    }

    /// Whether any pause may be in force at `now_ms` (one load; the per-command check starts here).
    #[inline]
    pub fn active(&self, now_ms: i64) -> bool {
        self.until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// If a command of this kind must wait at `now_ms`, until when.
    #[inline]
    pub fn blocks(&self, now_ms: i64, is_write: bool) -> Option<i64> {
        let until = self.until_ms.load(Ordering::Acquire);
        if until <= now_ms {
            return None;
        }
        if self.writes_only.load(Ordering::Relaxed) && !is_write {
            return None;
        }
        Some(until)
    }
}

/// Everything the connections share.
pub struct Server {
    pub config: RwLock<Config>,
    pub settings: Settings,
    pub keyspace: Keyspace,
    pub evictor: Evictor,
    pub clients: ClientRegistry,
    pub stats: Stats,
    pub commands: CommandTable,
    pub memory: MemoryMeter,
    pub pause: Pause,
    pub started: Instant,
    pub started_unix_ms: i64,
    pub run_id: String,
    /// The TCP port actually bound (differs from the config when it said 0).
    pub port: AtomicU32,
    shutdown_tx: watch::Sender<bool>,
    /// Bytes handed to the background freeing thread and not yet freed (INFO lazyfree_pending_objects).
    pub lazyfree_pending: AtomicU64,
    /// Entries the background thread has freed (INFO lazyfreed_objects).
    pub lazyfreed: AtomicU64,
    lazyfree: parking_lot::Mutex<Option<std::sync::mpsc::Sender<LazyFreeJob>>>,
    pub instantaneous: crate::cron::Instantaneous,
    /// Who serves each slot, as the cluster driver last published it (cluster mode only).
    pub routing: crate::routing::Routing,
    /// The cluster bus, once started (cluster mode only).
    pub cluster: std::sync::OnceLock<Arc<crate::cluster_bus::ClusterBus>>,
    cluster_enabled: bool,
    /// The role, the replication stream and the replicas.
    pub repl: crate::replication::Replication,
    /// This server's own `Arc`, for work that outlives a command (a replica link started by REPLICAOF).
    me: Weak<Server>,
}

impl Server {
    pub fn new(config: Config, commands: CommandTable) -> Arc<Server> {
        let srv = Arc::new_cyclic(|me| Server::build(config, commands, me.clone()));
        srv.started();
        srv
    }

    fn build(config: Config, commands: CommandTable, me: Weak<Server>) -> Server {
        let settings = Settings::default();
        settings.load(&config);
        settings.active_expire_enabled.store(true, Ordering::Relaxed);
        let keyspace = Keyspace::new(config.databases as usize);
        let cluster_enabled = config.cluster_enabled;
        let stats = Stats::new(commands.len());
        let (shutdown_tx, _) = watch::channel(false);
        let repl = crate::replication::Replication::new(&config);
        keyspace.feed().set_log(repl.backlog.clone());
        Server {
            port: AtomicU32::new(config.port as u32),
            config: RwLock::new(config),
            settings,
            keyspace,
            evictor: Evictor::new(),
            clients: ClientRegistry::new(),
            stats,
            commands,
            memory: MemoryMeter::new(),
            pause: Pause::default(),
            started: Instant::now(),
            started_unix_ms: crate::keyspace::access::unix_ms(),
            run_id: random_hex(40),
            shutdown_tx,
            lazyfree_pending: AtomicU64::new(0),
            lazyfreed: AtomicU64::new(0),
            lazyfree: parking_lot::Mutex::new(None),
            instantaneous: Default::default(),
            routing: crate::routing::Routing::new(),
            cluster: std::sync::OnceLock::new(),
            cluster_enabled,
            repl,
            me,
        }
    }

    /// Work that needs the finished server: the replication stream when `min-replicas-to-ack` is set.
    fn started(self: &Arc<Self>) {
        if self.config.read().min_replicas_to_ack > 0 {
            self.repl.start_stream(self);
        }
    }

    /// This server's `Arc` (None only while it is being dropped).
    pub fn shared(&self) -> Option<Arc<Server>> {
        self.me.upgrade()
    }

    /// Whether the server runs as a cluster node (fixed at startup).
    #[inline]
    pub fn cluster_enabled(&self) -> bool {
        self.cluster_enabled
    }

    /// The time as a command sees it now.
    #[inline]
    pub fn now(&self) -> Now {
        Now::wall(self.settings.access_mode())
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    pub fn request_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        self.clients.kill_all();
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown_tx.borrow()
    }

    /// Evicts keys if used memory is over `maxmemory`. Err when it cannot get under (noeviction, or nothing
    /// left to evict), which is when write commands are refused with OOM.
    pub fn evict_if_needed(&self, now: &Now) -> Result<(), OutOfMemory> {
        let max = self.settings.maxmemory.load(Ordering::Relaxed);
        if max == 0 {
            return Ok(());
        }
        // A replica holds what its primary holds: it evicts nothing itself (Redis's replica-ignore-maxmemory)
        // and gets the primary's DELs instead.
        if self.repl.is_replica() {
            return Ok(());
        }
        // Commands run on several threads at once, and each thread folds its allocations into the shared count
        // only every FLUSH_BYTES; so eviction keeps used memory a little under the limit (the headroom), and
        // what other threads add meanwhile never carries it over. Refusing writes (noeviction) still waits
        // for the limit itself, as in Redis.
        let headroom = (max / EVICTION_HEADROOM_DIVISOR).clamp(MIN_EVICTION_HEADROOM, MAX_EVICTION_HEADROOM);
        let low_water = max.saturating_sub(headroom);
        let mut used = self.memory.used();
        if used > low_water {
            crate::alloc::flush_thread();
            used = self.memory.used();
        }
        if used <= low_water {
            return Ok(());
        }
        let victims = self.settings.victims();
        let samples = self.settings.samples.load(Ordering::Relaxed) as usize;
        let budget = evict::time_limit(self.settings.tenacity.load(Ordering::Relaxed));
        let evicted = match victims {
            Victims::None => false,
            _ => self
                .evictor
                .evict(&self.keyspace, victims, samples, used - low_water, now, budget)
                .is_ok(),
        };
        if evicted || used <= max {
            Ok(())
        } else {
            Err(OutOfMemory)
        }
    }

    /// Frees entries in the background (FLUSHALL ASYNC, UNLINK of big values), so the caller's reply is not
    /// delayed by freeing millions of allocations. One long-lived thread does it, in order.
    pub fn free_in_background(&self, entries: Vec<Vec<crate::keyspace::Entry>>) {
        let n: u64 = entries.iter().map(|v| v.len() as u64).sum();
        if n == 0 {
            return;
        }
        self.lazyfree_pending.fetch_add(n, Ordering::Relaxed);
        let job = LazyFreeJob { entries, count: n };
        let sent = match self.lazyfree.lock().as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if let Err(job) = sent {
            // No freeing thread (tests, shutdown): free here.
            self.lazyfree_pending.fetch_sub(job.count, Ordering::Relaxed);
            drop(job);
        }
    }

    /// Starts the background freeing thread.
    pub fn start_lazyfree(self: &std::sync::Arc<Self>) -> std::io::Result<()> {
        let (tx, rx) = std::sync::mpsc::channel::<LazyFreeJob>();
        let srv = std::sync::Arc::downgrade(self);
        std::thread::Builder::new()
            .name("shoal-lazyfree".into())
            .spawn(move || {
                for job in rx {
                    let count = job.count;
                    drop(job);
                    crate::alloc::flush_thread();
                    if let Some(srv) = srv.upgrade() {
                        srv.lazyfree_pending.fetch_sub(count, Ordering::Relaxed);
                        srv.lazyfreed.fetch_add(count, Ordering::Relaxed);
                    }
                }
            })?;
        *self.lazyfree.lock() = Some(tx);
        Ok(())
    }
}

fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rand::random::<u8>() as usize % 16]))
        .collect()
}
