//! `[socket:NAME]`: sockets the master binds at startup (before dropping
//! privileges) and hands to programs, circus-style: the program's command
//! gets the descriptor number through `$(capataz.sockets.NAME)`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::sections::SocketConfig;

/// A bound, listening shared socket.
#[derive(Debug)]
pub struct SharedSocket {
    pub name: String,
    pub fd: OwnedFd,
    /// What it listens on, for logs.
    pub address: String,
}

impl SharedSocket {
    pub fn raw(&self) -> (String, RawFd) {
        (self.name.clone(), self.fd.as_raw_fd())
    }
}

fn bind_one(config: &SocketConfig) -> io::Result<SharedSocket> {
    if let Some(path) = &config.path {
        // A leftover socket file from an earlier run is replaced; anything
        // else at that path is an error.
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777 & !config.umask))?;
        socket.listen(config.backlog as i32)?;
        return Ok(SharedSocket {
            name: config.name.clone(),
            fd: socket.into(),
            address: path.display().to_string(),
        });
    }
    let host = config.host.as_deref().unwrap_or("127.0.0.1");
    let port = config.port.unwrap_or(0);
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("the host does not resolve"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(config.backlog as i32)?;
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    Ok(SharedSocket {
        name: config.name.clone(),
        fd: socket.into(),
        address: local.to_string(),
    })
}

/// Binds every `[socket:x]`; the error names the socket.
pub fn bind_all(configs: &[SocketConfig]) -> Result<Vec<SharedSocket>, String> {
    configs
        .iter()
        .map(|c| {
            bind_one(c)
                .map_err(|e| format!("[socket:{}] ({}): cannot listen: {e}", c.name, c.origin))
        })
        .collect()
}
