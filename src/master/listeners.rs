//! Binding the listening sockets the workers share (TCP and unix).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::values::{parse_address, ListenAddress};
use crate::worker::{ListenerMeta, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {address}: {reason}")]
    Bind { address: String, reason: String },
}

pub struct Listener {
    pub fd: OwnedFd,
    pub meta: ListenerMeta,
    /// For unix sockets bound by us: the file, for `vacuum`.
    pub unix_path: Option<UnixSocketFile>,
}

/// A unix socket file we bound: its path, and its (device, inode) right
/// after bind, so it is removed (`vacuum`, or a `[socket:x]` that `ctl
/// update` closes) only while it is still ours, never a file another server
/// has put at the same path since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocketFile {
    pub path: PathBuf,
    identity: (u64, u64),
}

impl UnixSocketFile {
    /// The file just bound at `path`; `None` if it cannot be looked up.
    pub fn bound_at(path: &Path) -> Option<UnixSocketFile> {
        socket_identity(path).map(|identity| UnixSocketFile {
            path: path.to_path_buf(),
            identity,
        })
    }

    /// Removes the file if it is still the one we bound. `Ok(false)`: it is
    /// gone, or another file is there now (left alone).
    pub fn remove_if_ours(&self) -> io::Result<bool> {
        if socket_identity(&self.path) != Some(self.identity) {
            return Ok(false);
        }
        std::fs::remove_file(&self.path).map(|()| true)
    }
}

/// `vacuum` at exit: removes each unix socket file that is still ours,
/// logging what it removed.
pub fn vacuum<'a>(files: impl IntoIterator<Item = &'a UnixSocketFile>) {
    for file in files {
        match file.remove_if_ours() {
            Ok(true) => tracing::info!("vacuum: removed {}", file.path.display()),
            Ok(false) => {}
            Err(e) => tracing::warn!("vacuum: {}: {e}", file.path.display()),
        }
    }
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

fn bind_tcp(
    address: &str,
    protocol: Protocol,
    host: &str,
    port: u16,
    backlog: i32,
) -> Result<Listener, ListenError> {
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
        unix_path: None,
        meta: ListenerMeta {
            address: address.to_string(),
            unix: false,
            protocol,
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
pub(crate) fn remove_stale_socket(path: &Path) -> io::Result<()> {
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

/// What to do to a unix socket file after binding it: `chmod-socket` and
/// `chown-socket`.
#[derive(Debug, Clone, Default)]
pub struct SocketFilePerms {
    pub chmod: Option<u32>,
    /// "user" or "user:group"; resolved when applied (the master is still
    /// root then).
    pub chown: Option<String>,
}

impl SocketFilePerms {
    pub fn from_config(config: &crate::config::Config) -> SocketFilePerms {
        SocketFilePerms {
            chmod: config.chmod_socket,
            chown: config.chown_socket.clone(),
        }
    }

    fn apply(&self, path: &Path) -> Result<(), String> {
        if let Some(mode) = self.chmod {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod-socket {mode:o}: {e}"))?;
        }
        if let Some(owner) = &self.chown {
            use super::privileges::{lookup_group, lookup_user};
            let fail = |e: &dyn std::fmt::Display| format!("chown-socket {owner}: {e}");
            // "user" alone keeps the group, as chown(1) does.
            let (user, group) = owner
                .split_once(':')
                .map_or((owner.as_str(), None), |(u, g)| (u, Some(g)));
            let (uid, _) = lookup_user(user).map_err(|e| fail(&e))?;
            let gid = group.map(lookup_group).transpose().map_err(|e| fail(&e))?;
            std::os::unix::fs::chown(path, Some(uid), gid).map_err(|e| fail(&e))?;
        }
        Ok(())
    }
}

fn bind_unix(
    address: &str,
    protocol: Protocol,
    sockaddr: SockAddr,
    backlog: i32,
    path: Option<&Path>,
    perms: &SocketFilePerms,
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
    let mut unix_path = None;
    if let Some(path) = path {
        perms.apply(path).map_err(fail)?;
        unix_path = UnixSocketFile::bound_at(path);
    }
    socket.listen(backlog).map_err(|e| fail(e.to_string()))?;
    Ok(Listener {
        fd: socket.into(),
        unix_path,
        meta: ListenerMeta {
            address: address.to_string(),
            unix: true,
            protocol,
            server_name: "localhost".to_string(),
            server_port: String::new(),
        },
    })
}

/// Binds one address for an HTTP listener; `chmod` applies to unix socket
/// paths.
pub fn bind(address: &str, backlog: i32, chmod: Option<u32>) -> Result<Listener, ListenError> {
    let perms = SocketFilePerms { chmod, chown: None };
    bind_as(address, Protocol::Http, backlog, &perms)
}

/// Binds one configured address speaking `protocol`; `perms` apply to unix
/// socket paths.
pub fn bind_as(
    address: &str,
    protocol: Protocol,
    backlog: i32,
    perms: &SocketFilePerms,
) -> Result<Listener, ListenError> {
    let fail = |reason: String| ListenError::Bind {
        address: address.to_string(),
        reason,
    };
    match parse_address(address).map_err(fail)? {
        ListenAddress::Tcp { host, port } => bind_tcp(address, protocol, &host, port, backlog),
        ListenAddress::Unix(path) => {
            let sockaddr = SockAddr::unix(&path).map_err(|e| fail(e.to_string()))?;
            bind_unix(address, protocol, sockaddr, backlog, Some(&path), perms)
        }
        ListenAddress::Abstract(name) => {
            use std::os::unix::ffi::OsStrExt;
            // A leading NUL selects Linux's abstract namespace.
            let mut raw = vec![0u8];
            raw.extend_from_slice(name.as_bytes());
            let sockaddr = SockAddr::unix(std::ffi::OsStr::from_bytes(&raw))
                .map_err(|e| fail(e.to_string()))?;
            bind_unix(
                address,
                protocol,
                sockaddr,
                backlog,
                None,
                &SocketFilePerms::default(),
            )
        }
    }
}

/// The (device, inode) of the file at `path`: what makes a socket file ours.
fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Sockets passed by systemd socket activation (`LISTEN_FDS`, starting at
/// fd 3), when `LISTEN_PID` is unset or names this process.
pub fn take_inherited() -> Vec<Socket> {
    let count: i32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) if n > 0 => n,
        _ => return Vec::new(),
    };
    if let Some(pid) = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return Vec::new();
        }
    }
    (0..count)
        .filter_map(|i| {
            let fd = 3 + i;
            // SAFETY: systemd's protocol hands us fds 3..3+LISTEN_FDS to own.
            let socket = unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            socket.set_cloexec(true).ok()?;
            Some(socket)
        })
        .collect()
}

/// Whether an inherited socket listens on the configured `address`.
fn inherited_matches(socket: &Socket, address: &str) -> bool {
    let Ok(local) = socket.local_addr() else {
        return false;
    };
    match parse_address(address) {
        Ok(ListenAddress::Tcp { host, port }) => match local.as_socket() {
            Some(sa) if sa.port() == port => {
                host.is_empty()
                    || (host.as_str(), port)
                        .to_socket_addrs()
                        .is_ok_and(|mut a| a.any(|a| a == sa))
            }
            _ => false,
        },
        Ok(ListenAddress::Unix(path)) => local.as_pathname().is_some_and(|p| p == path),
        Ok(ListenAddress::Abstract(name)) => local
            .as_abstract_namespace()
            .is_some_and(|n| n == name.as_bytes()),
        Err(_) => false,
    }
}

/// Describes an inherited socket as a listener.
fn adopt(socket: Socket, address: &str, protocol: Protocol) -> Listener {
    let local = socket.local_addr().ok();
    let tcp = local.as_ref().and_then(|a| a.as_socket());
    Listener {
        meta: ListenerMeta {
            address: address.to_string(),
            unix: tcp.is_none(),
            protocol,
            server_name: tcp.map_or_else(|| "localhost".to_string(), |a| a.ip().to_string()),
            server_port: tcp.map_or_else(String::new, |a| a.port().to_string()),
        },
        fd: socket.into(),
        unix_path: None,
    }
}

/// Binds every configured address with its protocol, using inherited sockets
/// where they match (and serving unmatched inherited sockets as HTTP).
pub fn bind_all(
    addresses: &[(String, Protocol)],
    backlog: i32,
    perms: &SocketFilePerms,
) -> Result<Vec<Listener>, ListenError> {
    let mut inherited: Vec<Option<Socket>> = take_inherited().into_iter().map(Some).collect();
    let mut out = Vec::new();
    for (address, protocol) in addresses {
        let (address, protocol) = (address.as_str(), *protocol);
        let hit = inherited
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| inherited_matches(s, address)))
            .and_then(Option::take);
        match hit {
            Some(socket) => {
                tracing::info!("using inherited socket for {address} (LISTEN_FDS)");
                out.push(adopt(socket, address, protocol));
            }
            None => {
                let l = bind_as(address, protocol, backlog, perms)?;
                tracing::info!("listening on {} ({})", l.meta.address, protocol.name());
                out.push(l);
            }
        }
    }
    for socket in inherited.into_iter().flatten() {
        let name = socket
            .local_addr()
            .ok()
            .and_then(|a| {
                a.as_socket()
                    .map(|s| s.to_string())
                    .or_else(|| a.as_pathname().map(|p| p.display().to_string()))
            })
            .unwrap_or_else(|| "inherited socket".to_string());
        tracing::info!("using inherited socket {name} (LISTEN_FDS) for HTTP");
        out.push(adopt(socket, &name, Protocol::Http));
    }
    Ok(out)
}
