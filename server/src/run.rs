//! Process life: configuration, logging, daemonizing, the runtime, listeners, signals, and an orderly exit.
//!
//! The tokio runtime gets one worker per CPU this process may run on (its affinity mask, so a server pinned to
//! one core runs one worker and never contends with itself). SIGTERM, SIGINT and SHUTDOWN all end the same
//! way: stop accepting, close clients after their current command, remove the pid file, exit 0.

use std::time::Duration;

use anyhow::{bail, Context};

use crate::cmd;
use crate::command::CommandTable;
use crate::config::{self, Config, Invocation, LogLevel};
use crate::server::Server;
use crate::{cron, listener};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Redis version Shoal answers as, for clients that gate features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

/// Runs the server with command-line arguments (without argv[0]).
pub fn main(args: Vec<String>) -> anyhow::Result<()> {
    let config = match config::parse_args(args)? {
        Invocation::Version => {
            println!("Shoal server v={VERSION} (redis compatible {REDIS_COMPAT_VERSION}) bits=64");
            return Ok(());
        }
        Invocation::Help => {
            println!("{}", usage());
            return Ok(());
        }
        Invocation::Run(c) => c,
    };
    std::env::set_current_dir(&config.dir)
        .with_context(|| format!("changing to the working directory {}", config.dir.display()))?;
    if config.daemonize {
        daemonize().context("daemonize")?;
    }
    init_logging(&config)?;
    for note in config.startup_notes() {
        tracing::warn!("{note}");
    }
    if let Some(pidfile) = &config.pidfile {
        std::fs::write(pidfile, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pidfile {}", pidfile.display()))?;
    }
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    crate::connection::set_burst_replies(workers == 1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("shoal-worker")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let pidfile = config.pidfile.clone();
    let result = runtime.block_on(serve(*config));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Some(p) = pidfile {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// Binds, serves, and returns after shutdown.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    crate::clock::calibrate();
    let handlers = cmd::handlers();
    let commands = CommandTable::build(&handlers).map_err(anyhow::Error::msg)?;
    let listeners = listener::bind_all(&config.bind, config.port, config.tcp_backlog)?;
    let port = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or(config.port);
    let srv = Server::new(config, commands);
    srv.start_lazyfree().context("starting the background freeing thread")?;
    if srv.cluster_enabled() {
        let bus = crate::cluster_bus::ClusterBus::start(&srv).await?;
        let _ = srv.cluster.set(bus);
    }
    srv.port.store(port as u32, std::sync::atomic::Ordering::Relaxed);
    let replicaof = srv.config.read().replicaof.clone();
    if let (Some((host, primary_port)), false) = (replicaof, srv.cluster_enabled()) {
        srv.repl.become_replica(&srv, &host, primary_port);
    }
    let cron = cron::spawn(srv.clone()).context("starting the cron thread")?;
    for l in listeners {
        tracing::info!(
            "listening on {}",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        tokio::spawn(listener::accept_loop(srv.clone(), l));
    }
    tracing::info!(pid = std::process::id(), port, "Ready to accept connections");
    let mut shutdown = srv.shutdown_signal();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = sigterm.recv() => tracing::warn!("Received SIGTERM scheduling shutdown..."),
        _ = sigint.recv() => tracing::warn!("Received SIGINT scheduling shutdown..."),
        _ = shutdown.changed() => tracing::warn!("User requested shutdown..."),
    }
    srv.request_shutdown();
    // Give connections a moment to finish their current command and close.
    for _ in 0..200 {
        if srv.clients.connected() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = tokio::task::spawn_blocking(move || cron.join()).await;
    tracing::warn!("Shoal is now ready to exit, bye bye...");
    Ok(())
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::filter::LevelFilter;
    let level = match config.loglevel {
        LogLevel::Debug => LevelFilter::TRACE,
        LogLevel::Verbose => LevelFilter::DEBUG,
        LogLevel::Notice => LevelFilter::INFO,
        LogLevel::Warning => LevelFilter::WARN,
        LogLevel::Nothing => LevelFilter::OFF,
    };
    let builder = tracing_subscriber::fmt().with_max_level(level).with_target(false);
    if config.logfile.is_empty() {
        use std::io::IsTerminal;
        let ansi = std::io::stdout().is_terminal();
        let _ = builder.with_ansi(ansi).with_writer(std::io::stdout).try_init();
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.logfile)
            .with_context(|| format!("opening logfile {}", config.logfile))?;
        let _ = builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    }
    Ok(())
}

/// Detaches from the terminal like redis-server's `daemonize yes`: fork, new session, stdio to /dev/null.
fn daemonize() -> anyhow::Result<()> {
    // SAFETY: called before any thread is started, so fork duplicates only this thread.
    match unsafe { libc::fork() } {
        -1 => bail!("fork failed: {}", std::io::Error::last_os_error()),
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: plain libc calls on our own process; the path is a valid C string.
    unsafe {
        libc::setsid();
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
    Ok(())
}

fn usage() -> String {
    format!(
        "Usage: shoal-server [/path/to/config.toml | /path/to/redis.conf] [options] [-]\n\
         \x20      shoal-server -v or --version\n\
         \x20      shoal-server -h or --help\n\n\
         Options are redis-server's, as --name value:\n\
         \x20      shoal-server --port 7000 --maxmemory 100mb --maxmemory-policy allkeys-lru\n\
         \x20      shoal-server /etc/shoal.toml --loglevel verbose\n\n\
         Shoal {VERSION}"
    )
}
