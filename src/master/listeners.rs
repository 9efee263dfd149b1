//! Binding the listening sockets the workers share (TCP and unix).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::values::{parse_address, ListenAddress};
use crate::worker::ListenerMeta;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {address}: {reason}")]
    Bind { address: String, reason: String },
}

pub struct Listener {
    pub fd: OwnedFd,
    pub meta: ListenerMeta,
}

/// The kernel's cap on the accept backlog.
fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Clamps the `listen` backlog to somaxconn with a warning (uWSGI aborts instead).
pub fn effective_backlog(requested: u32) -> i32 {
    match somaxconn() {
        Some(max) if requested > max => {
            tracing::warn!("listen = {requested} exceeds net.core.somaxconn ({max}); using {max}");
            max as i32
        }
        _ => requested.min(i32::MAX as u32) as i32,
    }
}

fn bind_tcp(address: &str, host: &str, port: u16, backlog: i32) -> Result<Listener, ListenError> {
    let fail = |reason: String| ListenError::Bind {
        address: address.to_string(),
        reason,
    };
    let host_for_lookup = if host.is_empty() { "0.0.0.0" } else { host };
    let addr: SocketAddr = (host_for_lookup, port)
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("the host does not resolve".into()))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .map_err(|e| fail(e.to_string()))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| fail(e.to_string()))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(true);
    }
    socket.bind(&addr.into()).map_err(|e| fail(e.to_string()))?;
    socket.listen(backlog).map_err(|e| fail(e.to_string()))?;
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    Ok(Listener {
        fd: socket.into(),
        meta: ListenerMeta {
            address: address.to_string(),
            unix: false,
            server_name: if host.is_empty() {
                "0.0.0.0".to_string()
            } else {
                host.to_string()
            },
            server_port: local.port().to_string(),
        },
    })
}

/// A unix socket path that exists but accepts no connection is stale (left
/// by a crashed server) and may be replaced; a live one is an error.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server is listening on it",
                ));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        )),
        Err(_) => Ok(()),
    }
}

fn bind_unix(
    address: &str,
    sockaddr: SockAddr,
    backlog: i32,
    path: Option<&Path>,
) -> Result<Listener, ListenError> {
    let fail = |reason: String| ListenError::Bind {
        address: address.to_string(),
        reason,
    };
    if let Some(path) = path {
        remove_stale_socket(path).map_err(|e| fail(e.to_string()))?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| fail(e.to_string()))?;
    socket.bind(&sockaddr).map_err(|e| fail(e.to_string()))?;
    socket.listen(backlog).map_err(|e| fail(e.to_string()))?;
    Ok(Listener {
        fd: socket.into(),
        meta: ListenerMeta {
            address: address.to_string(),
            unix: true,
            server_name: "localhost".to_string(),
            server_port: String::new(),
        },
    })
}

/// Binds one configured HTTP address.
pub fn bind(address: &str, backlog: i32) -> Result<Listener, ListenError> {
    let fail = |reason: String| ListenError::Bind {
        address: address.to_string(),
        reason,
    };
    match parse_address(address).map_err(fail)? {
        ListenAddress::Tcp { host, port } => bind_tcp(address, &host, port, backlog),
        ListenAddress::Unix(path) => {
            let sockaddr = SockAddr::unix(&path).map_err(|e| fail(e.to_string()))?;
            bind_unix(address, sockaddr, backlog, Some(&path))
        }
        ListenAddress::Abstract(name) => {
            use std::os::unix::ffi::OsStrExt;
            // A leading NUL selects Linux's abstract namespace.
            let mut raw = vec![0u8];
            raw.extend_from_slice(name.as_bytes());
            let sockaddr = SockAddr::unix(std::ffi::OsStr::from_bytes(&raw))
                .map_err(|e| fail(e.to_string()))?;
            bind_unix(address, sockaddr, backlog, None)
        }
    }
}
