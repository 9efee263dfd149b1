//! `[socket:NAME]`: sockets the master binds at startup (before dropping
//! privileges) and hands to programs, circus-style: the program's command
//! gets the descriptor number through `$(capataz.sockets.NAME)`.
//!
//! A unix socket's file is removed when `update` closes the socket, and at
//! exit with `vacuum` (like the listeners'; without it the file stays, as in
//! uWSGI), in both cases only while the file is still the one we bound
//! ([`UnixSocketFile`]).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::sections::SocketConfig;
use crate::master::listeners::UnixSocketFile;

/// A bound, listening shared socket.
#[derive(Debug)]
pub struct SharedSocket {
    pub name: String,
    pub fd: OwnedFd,
    /// What it listens on, for logs.
    pub address: String,
    /// A unix socket's file as bound, to remove it when `update` closes the
    /// socket, and at exit with `vacuum`, if the file is still ours.
    unix_file: Option<UnixSocketFile>,
}

impl SharedSocket {
    pub fn raw(&self) -> (String, RawFd) {
        (self.name.clone(), self.fd.as_raw_fd())
    }

    /// Removes a unix socket's file, if it is still the one we bound.
    fn remove_file(&self) {
        if let Some(file) = &self.unix_file {
            if let Err(e) = file.remove_if_ours() {
                tracing::warn!("shared socket {}: {}: {e}", self.name, file.path.display());
            }
        }
    }
}

/// The host of a TCP `[socket:x]` that names only a port.
const DEFAULT_HOST: &str = "127.0.0.1";

fn bind_one(config: &SocketConfig) -> io::Result<SharedSocket> {
    if let Some(path) = &config.path {
        // A leftover socket file from an earlier run is replaced; a socket
        // another server listens on, or anything else, is an error.
        crate::master::listeners::remove_stale_socket(path)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777 & !config.umask))?;
        socket.listen(config.backlog as i32)?;
        return Ok(SharedSocket {
            name: config.name.clone(),
            fd: socket.into(),
            address: path.display().to_string(),
            unix_file: UnixSocketFile::bound_at(path),
        });
    }
    let host = config.host.as_deref().unwrap_or(DEFAULT_HOST);
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
        unix_file: None,
    })
}

/// Binds every `[socket:x]`; the error names the socket.
pub fn bind_all(configs: &[SocketConfig]) -> Result<Vec<SharedSocket>, String> {
    configs
        .iter()
        .map(|c| {
            bind_one(c).map_err(|e| {
                let address = match (&c.path, &c.host, c.port) {
                    (Some(path), _, _) => path.display().to_string(),
                    (None, host, port) => format!(
                        "{}:{}",
                        host.as_deref().unwrap_or(DEFAULT_HOST),
                        port.unwrap_or(0)
                    ),
                };
                format!(
                    "[socket:{}] ({}): cannot listen on {address}: {e}",
                    c.name, c.origin
                )
            })
        })
        .collect()
}

/// One `[socket:x]` as the master holds it.
#[derive(Debug)]
struct Entry {
    config: SocketConfig,
    /// `None` while waiting to be bound, or after binding failed.
    bound: Option<SharedSocket>,
    /// Removed or replaced by `update`: closed once no process uses it.
    retiring: bool,
    /// Binding failed (logged); programs that use it cannot start.
    failed: bool,
}

/// What `update` changes among the sockets, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SocketChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Every `[socket:x]`, and the life cycle `update` gives them: an added
/// socket is bound at once; a removed one is closed once no process that
/// uses it is left; a changed one is closed the same way and only then
/// bound anew (its address may be the same, which cannot be bound twice).
#[derive(Debug, Default)]
pub struct SocketTable {
    entries: Vec<Entry>,
}

/// Two socket sections mean the same socket (where they are written does
/// not matter).
fn same(a: &SocketConfig, b: &SocketConfig) -> bool {
    SocketConfig {
        origin: String::new(),
        ..a.clone()
    } == SocketConfig {
        origin: String::new(),
        ..b.clone()
    }
}

impl SocketTable {
    /// The sockets bound at startup, with their sections (same order).
    pub fn new(configs: &[SocketConfig], bound: Vec<SharedSocket>) -> SocketTable {
        SocketTable {
            entries: configs
                .iter()
                .cloned()
                .zip(bound)
                .map(|(config, s)| Entry {
                    config,
                    bound: Some(s),
                    retiring: false,
                    failed: false,
                })
                .collect(),
        }
    }

    /// Name and descriptor of each usable socket, for `$(capataz.sockets.NAME)`.
    pub fn fds(&self) -> Vec<(String, RawFd)> {
        self.entries
            .iter()
            .filter(|e| !e.retiring)
            .filter_map(|e| e.bound.as_ref().map(SharedSocket::raw))
            .collect()
    }

    /// Whether `name` waits to be bound (its old version is still in use).
    pub fn pending(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.config.name == name && !e.retiring && e.bound.is_none() && !e.failed)
    }

    /// Every unix socket file bound (retiring ones too), for `vacuum`.
    pub fn unix_files(&self) -> impl Iterator<Item = &UnixSocketFile> {
        self.entries
            .iter()
            .filter_map(|e| e.bound.as_ref()?.unix_file.as_ref())
    }

    pub fn has_retiring(&self) -> bool {
        self.entries.iter().any(|e| e.retiring)
    }

    fn current(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.retiring)
    }

    /// Compares the sections with what the table holds.
    pub fn diff(&self, configs: &[SocketConfig]) -> SocketChanges {
        let mut changes = SocketChanges::default();
        for e in self.current() {
            match configs.iter().find(|c| c.name == e.config.name) {
                None => changes.removed.push(e.config.name.clone()),
                Some(c) if !same(c, &e.config) => changes.changed.push(e.config.name.clone()),
                Some(_) => {}
            }
        }
        for c in configs {
            if !self.current().any(|e| e.config.name == c.name) {
                changes.added.push(c.name.clone());
            }
        }
        changes
    }

    /// Applies `changes` (from [`SocketTable::diff`] against `configs`):
    /// retires the removed and changed sockets and binds what it can now.
    /// Returns the binding errors.
    pub fn apply(&mut self, configs: &[SocketConfig], changes: &SocketChanges) -> Vec<String> {
        for e in &mut self.entries {
            if changes.removed.contains(&e.config.name) || changes.changed.contains(&e.config.name)
            {
                e.retiring = true;
            }
        }
        for name in changes.added.iter().chain(&changes.changed) {
            if let Some(config) = configs.iter().find(|c| c.name == *name) {
                self.entries.push(Entry {
                    config: config.clone(),
                    bound: None,
                    retiring: false,
                    failed: false,
                });
            }
        }
        self.bind_pending()
    }

    /// Closes the retiring sockets no process uses (`in_use(name)`), then
    /// binds the pending ones whose old version is gone. Returns the
    /// binding errors (also logged).
    pub fn settle(&mut self, in_use: impl Fn(&str) -> bool) -> Vec<String> {
        self.entries.retain(|e| {
            let close = e.retiring && !in_use(&e.config.name);
            if close {
                if let Some(s) = &e.bound {
                    tracing::info!("shared socket {} on {} closed", s.name, s.address);
                    s.remove_file();
                }
            }
            !close
        });
        self.bind_pending()
    }

    fn bind_pending(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        let retiring: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.retiring)
            .map(|e| e.config.name.clone())
            .collect();
        for e in &mut self.entries {
            if e.retiring || e.bound.is_some() || e.failed || retiring.contains(&e.config.name) {
                continue;
            }
            match bind_all(std::slice::from_ref(&e.config)) {
                Ok(mut s) => {
                    let s = s.remove(0);
                    tracing::info!(
                        "shared socket {} on {} (fd {})",
                        s.name,
                        s.address,
                        s.raw().1
                    );
                    e.bound = Some(s);
                }
                Err(message) => {
                    tracing::error!("{message}");
                    e.failed = true;
                    errors.push(message);
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(name: &str, port: u16) -> SocketConfig {
        SocketConfig {
            name: name.into(),
            host: Some("127.0.0.1".into()),
            port: Some(port),
            path: None,
            umask: 0o022,
            backlog: 16,
            origin: "test.ini:1".into(),
        }
    }

    #[test]
    fn a_removed_unix_socket_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let config = SocketConfig {
            path: Some(path.clone()),
            host: None,
            port: None,
            ..tcp("u", 0)
        };
        let configs = vec![config];
        let mut table = SocketTable::new(&configs, bind_all(&configs).unwrap());
        assert!(path.exists());
        let changes = table.diff(&[]);
        table.apply(&[], &changes);
        table.settle(|_| true);
        assert!(path.exists(), "still in use");
        table.settle(|_| false);
        assert!(!path.exists());
    }

    #[test]
    fn vacuum_removes_the_unix_socket_files_that_are_still_ours() {
        let dir = tempfile::tempdir().unwrap();
        let unix = |name: &str| SocketConfig {
            path: Some(dir.path().join(format!("{name}.sock"))),
            host: None,
            port: None,
            ..tcp(name, 0)
        };
        let configs = vec![unix("a"), tcp("t", 0), unix("b")];
        let table = SocketTable::new(&configs, bind_all(&configs).unwrap());
        let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let listed: Vec<_> = table.unix_files().map(|f| f.path.clone()).collect();
        assert_eq!(listed, [a.clone(), b.clone()]);
        // Another server took b's path since: its file is not ours.
        std::fs::remove_file(&b).unwrap();
        let _other = std::os::unix::net::UnixListener::bind(&b).unwrap();
        crate::master::listeners::vacuum(table.unix_files());
        assert!(!a.exists());
        assert!(b.exists(), "removed a file that is not ours");
    }

    #[test]
    fn a_changed_socket_is_rebound_once_its_users_are_gone() {
        let configs = vec![tcp("a", 0), tcp("b", 0)];
        let bound = bind_all(&configs).unwrap();
        let mut table = SocketTable::new(&configs, bound);
        let port_a = table.entries[0].bound.as_ref().unwrap().address.clone();
        // Moving the section elsewhere is no change.
        let mut same_a = tcp("a", 0);
        same_a.origin = "other.ini:9".into();
        let new = vec![
            same_a,
            SocketConfig {
                backlog: 32,
                ..tcp("b", 0)
            },
            tcp("c", 0),
        ];
        let changes = table.diff(&new);
        assert_eq!(
            changes,
            SocketChanges {
                added: vec!["c".into()],
                changed: vec!["b".into()],
                removed: vec![],
            }
        );
        assert!(table.apply(&new, &changes).is_empty());
        let names = |t: &SocketTable| t.fds().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(&table), ["a", "c"], "b waits for its old users");
        assert!(table.pending("b"));
        table.settle(|name| name == "b");
        assert!(table.pending("b"), "still in use");
        table.settle(|_| false);
        assert!(!table.pending("b"));
        assert_eq!(names(&table), ["a", "c", "b"]);
        assert_eq!(table.entries[0].bound.as_ref().unwrap().address, port_a);
        assert!(table.diff(&new) == SocketChanges::default());

        let changes = table.diff(&new[..1]);
        assert_eq!(changes.removed, ["c", "b"]);
        table.apply(&new[..1], &changes);
        table.settle(|_| false);
        assert_eq!(names(&table), ["a"]);
    }
}
