//! The master side of the control socket: an accept thread, a short-lived
//! thread per connection, and a channel into the master loop.
//!
//! Connection threads never touch master state: they parse the request,
//! send it with a reply channel to the loop, write one byte to the loop's
//! wake pipe, and write back whatever the loop answers. `tail -f` streams
//! from the process's [`LogRing`] on the connection thread.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use super::{Call, Request, Response, FAILURE, USAGE};
use crate::programs::logs::LogRing;

/// Longest request line.
const MAX_REQUEST: u64 = 64 * 1024;
/// Connections served at once; more are refused.
const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the master loop answers.
#[derive(Debug)]
pub enum Reply {
    Done(Response),
    /// Stream a process's output after the response line.
    Tail {
        response: Response,
        ring: Arc<LogRing>,
        bytes: usize,
        follow: bool,
    },
}

/// A request on its way to the master loop.
#[derive(Debug)]
pub struct Envelope {
    pub request: Request,
    pub reply: Sender<Reply>,
}

/// A way into the master loop for other master threads (the dashboard's
/// buttons): the same channel and wake-up the control socket uses, so a
/// request takes the same path as one from `capataz ctl`.
#[derive(Clone, Debug)]
pub struct ControlHandle {
    tx: Sender<Envelope>,
    waker: Arc<OwnedFd>,
}

impl ControlHandle {
    /// Sends `request` to the master loop and waits up to `timeout` for its
    /// answer. A `tail` reply is answered with its response line only.
    pub fn call(&self, request: Request, timeout: Duration) -> Response {
        let (reply_tx, reply_rx) = mpsc::channel();
        if self
            .tx
            .send(Envelope {
                request,
                reply: reply_tx,
            })
            .is_err()
        {
            return Response::error(FAILURE, "the master is shutting down");
        }
        // SAFETY: writing one byte from a local to the master's wake pipe.
        unsafe { libc::write(self.waker.as_raw_fd(), b"c".as_ptr().cast(), 1) };
        match reply_rx.recv_timeout(timeout) {
            Ok(Reply::Done(response)) | Ok(Reply::Tail { response, .. }) => response,
            Err(mpsc::RecvTimeoutError::Timeout) => Response::ok("in progress (no answer yet)"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Response::error(FAILURE, "the master is shutting down")
            }
        }
    }
}

impl ControlHandle {
    /// The last `bytes` of a side program's output, through `ctl tail`'s
    /// request (no follow); an error response when the name is not one
    /// process.
    pub fn tail(&self, name: &str, bytes: usize, timeout: Duration) -> Result<Vec<u8>, Response> {
        let (reply_tx, reply_rx) = mpsc::channel();
        let request = Request::Tail {
            name: name.to_string(),
            bytes,
            follow: false,
        };
        if self
            .tx
            .send(Envelope {
                request,
                reply: reply_tx,
            })
            .is_err()
        {
            return Err(Response::error(FAILURE, "the master is shutting down"));
        }
        // SAFETY: writing one byte from a local to the master's wake pipe.
        unsafe { libc::write(self.waker.as_raw_fd(), b"c".as_ptr().cast(), 1) };
        match reply_rx.recv_timeout(timeout) {
            Ok(Reply::Tail { ring, bytes, .. }) => Ok(ring.last(bytes).0),
            Ok(Reply::Done(response)) => Err(response),
            Err(_) => Err(Response::error(FAILURE, "no answer from the master")),
        }
    }
}

/// The listening control socket.
#[derive(Debug)]
pub struct ControlServer {
    requests: Receiver<Envelope>,
    handle: ControlHandle,
    path: PathBuf,
    /// (dev, inode) of the socket file we created, for removal on exit.
    identity: Option<(u64, u64)>,
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// A control socket bound (and given to its owner) but not served yet: the
/// master binds it while still root and serves it after dropping to `uid`.
#[derive(Debug)]
pub struct BoundControl {
    listener: UnixListener,
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl BoundControl {
    /// Binds `path` (mode 0600, then `chown(path)`, which gives it to the
    /// user the master will run as). Returns `Ok(None)` when `path` is the
    /// default and another live master serves it.
    pub fn bind(
        path: &Path,
        explicit: bool,
        chown: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<Option<BoundControl>, String> {
        let fail = |e: io::Error| format!("control socket {}: {e}", path.display());
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if UnixStream::connect(path).is_ok() {
                if explicit {
                    return Err(format!(
                        "control socket {}: another capataz is serving it",
                        path.display()
                    ));
                }
                tracing::warn!(
                    "control socket {} is served by another capataz; running without one (set control-socket)",
                    path.display()
                );
                return Ok(None);
            }
            if !meta.file_type().is_socket() {
                return Err(format!(
                    "control socket {}: exists and is not a socket",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(fail)?;
        }
        let listener = UnixListener::bind(path).map_err(fail)?;
        // std binds and listens in one call, so for a moment the socket has
        // the umask's mode; the per-connection uid check covers that window.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        chown(path).map_err(fail)?;
        Ok(Some(BoundControl {
            listener,
            path: path.to_path_buf(),
            identity: identity(path),
        }))
    }

    /// Starts the accept thread; `waker` is written to after each request
    /// is queued. `config_files` are the ini files this master was started
    /// from: a `capataz ctl --ini` naming another file is refused.
    pub fn serve(self, config_files: &[PathBuf], waker: OwnedFd) -> Result<ControlServer, String> {
        let fail = |e: io::Error| format!("control socket {}: {e}", self.path.display());
        let (tx, rx) = mpsc::channel();
        let waker = Arc::new(waker);
        let owner = Arc::new(Owner {
            files: config_files.iter().map(|f| canonical(f)).collect(),
            socket: self.path.clone(),
        });
        let handle = ControlHandle {
            tx: tx.clone(),
            waker: waker.clone(),
        };
        let listener = self.listener;
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(listener, tx, waker, owner))
            .map_err(fail)?;
        tracing::info!("control socket: {}", self.path.display());
        Ok(ControlServer {
            requests: rx,
            handle,
            path: self.path,
            identity: self.identity,
        })
    }
}

impl ControlServer {
    /// A handle other master threads use to send requests to the loop.
    pub fn handle(&self) -> ControlHandle {
        self.handle.clone()
    }

    /// Requests waiting for the loop; never blocks.
    pub fn pending(&self) -> Vec<Envelope> {
        self.requests.try_iter().collect()
    }

    /// Removes the socket file if it is still the one we created.
    pub fn remove(&self) {
        if self.identity.is_some() && identity(&self.path) == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whose socket this is: the master's ini files (canonical) and the path.
#[derive(Debug)]
struct Owner {
    files: Vec<PathBuf>,
    socket: PathBuf,
}

impl Owner {
    /// Refuses a `ctl --ini FILE` whose FILE this master was not started from.
    fn check(&self, ini: Option<&Path>) -> Result<(), Response> {
        let Some(ini) = ini else { return Ok(()) };
        if self.files.contains(&canonical(ini)) {
            return Ok(());
        }
        let ours = if self.files.is_empty() {
            "command-line options".to_string()
        } else {
            self.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(Response::error(
            FAILURE,
            format!(
                "the control socket {} belongs to the capataz started from {ours} (pid {}), \
                 not from {}; that one has no control socket of its own (the default path \
                 was taken): set control-socket in {}",
                self.socket.display(),
                std::process::id(),
                ini.display(),
                ini.display(),
            ),
        ))
    }
}

/// `path` with symlinks resolved when it exists, as given otherwise.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn accept_loop(
    listener: UnixListener,
    tx: Sender<Envelope>,
    waker: Arc<OwnedFd>,
    owner: Arc<Owner>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let _ = reply_line(
                &mut stream,
                &Response::error(FAILURE, "too many control connections"),
            );
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (tx, waker, active, owner) = (tx.clone(), waker.clone(), active.clone(), owner.clone());
        let spawned = std::thread::Builder::new()
            .name("control conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &tx, &waker, &owner) {
                    tracing::debug!("control connection: {e}");
                }
                active.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            tracing::warn!("control socket: cannot start a connection thread");
        }
    }
}

/// The uid of the peer (SO_PEERCRED).
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for getsockopt(SO_PEERCRED) on a unix socket.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn reply_line(stream: &mut UnixStream, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

fn serve(
    mut stream: UnixStream,
    tx: &Sender<Envelope>,
    waker: &OwnedFd,
    owner: &Owner,
) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let ours = unsafe { libc::geteuid() };
    let peer = peer_uid(&stream)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    // The request is read (never acted on) before a stranger is answered,
    // so the answer is not lost to a reset from unread data.
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    // Root may always ask: it could signal the master anyway, and it is who
    // runs `capataz ctl` for a master that dropped to `uid`.
    if peer != ours && peer != 0 {
        tracing::warn!("control socket: rejected a peer with uid {peer} (ours is {ours})");
        return reply_line(&mut stream, &Response::error(FAILURE, "permission denied"));
    }
    let request = match serde_json::from_str::<Call>(line.trim()) {
        Ok(call) => match owner.check(call.ini.as_deref()) {
            Ok(()) => call.request,
            Err(refused) => return reply_line(&mut stream, &refused),
        },
        Err(e) => {
            return reply_line(
                &mut stream,
                &Response::error(USAGE, format!("bad request: {e}")),
            )
        }
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    if tx
        .send(Envelope {
            request,
            reply: reply_tx,
        })
        .is_err()
    {
        return reply_line(
            &mut stream,
            &Response::error(FAILURE, "the master is shutting down"),
        );
    }
    // SAFETY: writing one byte from a local to the master's wake pipe.
    unsafe { libc::write(waker.as_raw_fd(), b"c".as_ptr().cast(), 1) };
    match reply_rx.recv() {
        Ok(Reply::Done(response)) => reply_line(&mut stream, &response),
        Ok(Reply::Tail {
            response,
            ring,
            bytes,
            follow,
        }) => {
            reply_line(&mut stream, &response)?;
            let (data, mut offset) = ring.last(bytes);
            stream.write_all(&data)?;
            if follow {
                loop {
                    let (data, next) = ring.since(offset, Duration::from_secs(1));
                    offset = next;
                    // Writing (even nothing) notices a client that hung up.
                    stream.write_all(&data)?;
                    if data.is_empty() && client_gone(&stream) {
                        break;
                    }
                }
            }
            Ok(())
        }
        Err(_) => reply_line(
            &mut stream,
            &Response::error(FAILURE, "the master is shutting down"),
        ),
    }
}

/// True when the peer closed its end (a zero-length peek).
fn client_gone(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: non-blocking peek into a local buffer.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0 || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock)
}
