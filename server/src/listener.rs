//! Listening sockets and the accept loop: binding the configured addresses, refusing clients past
//! `maxclients` with Redis's error, and stopping on shutdown.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};

use crate::connection;
use crate::error;
use crate::server::Server;

/// Binds every address of `bind` on `port`. Redis's `*` means all IPv4 addresses and `::*` all IPv6 ones;
/// a leading `-` marks an address whose failure to bind is not fatal.
pub fn bind_all(bind: &[String], port: u16, backlog: u32) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    let mut last_err = None;
    for spec in bind {
        let (optional, addr) = match spec.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, spec.as_str()),
        };
        let ip = match addr {
            "*" => "0.0.0.0",
            "::*" => "::",
            other => other,
        };
        let sa: SocketAddr = match format!("{ip}:{port}")
            .parse()
            .or_else(|_| format!("[{ip}]:{port}").parse())
        {
            Ok(sa) => sa,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("invalid bind address '{addr}'"),
                ))
            }
        };
        match listen(sa, backlog) {
            Ok(l) => out.push(l),
            Err(e) if optional => {
                tracing::debug!("skipping optional bind address {sa}: {e}");
                last_err = Some(e);
            }
            Err(e) => {
                return Err(std::io::Error::new(e.kind(), format!("could not bind {sa}: {e}")));
            }
        }
    }
    if out.is_empty() {
        return Err(last_err.unwrap_or_else(|| std::io::Error::other("no address to listen on")));
    }
    Ok(out)
}

fn listen(sa: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let sock = if sa.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    if sa.is_ipv6() {
        // Keep IPv6 listeners IPv6-only, so `* ::*` can bind both families on one port.
        let fd = sock.as_raw_fd();
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on our own socket with a correctly sized int option.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    sock.bind(sa)?;
    sock.listen(backlog)
}

/// Accepts clients on `listener` until shutdown.
pub async fn accept_loop(srv: Arc<Server>, listener: TcpListener) {
    let mut shutdown = srv.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (mut stream, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        srv.stats.connections_received.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let laddr = stream.local_addr().unwrap_or(addr);
        let fd = stream.as_raw_fd();
        let maxclients = srv.settings.maxclients.load(Ordering::Relaxed);
        match srv
            .clients
            .register(addr, laddr, fd, crate::keyspace::access::unix_ms(), maxclients)
        {
            Ok(handle) => {
                tokio::spawn(connection::serve(srv.clone(), stream, handle));
            }
            Err(_) => {
                srv.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let msg = format!("-{}\r\n", error::MAX_CLIENTS);
                    let _ = stream.write_all(msg.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        }
    }
}
