//! Accepting connections and dispatching readiness events to them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;

use super::conn::{Conn, Next, Peer};
use super::poll::Wait;
use super::{Shared, ThreadCx};

/// Connections accepted per readiness event before re-arming the listener,
/// so one thread does not spend long accepting while requests wait.
const ACCEPT_BATCH: usize = 64;

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The peer's address (`None` for unix sockets); IPv4-mapped IPv6 peers
/// are reported as IPv4.
fn peer_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)).to_canonical();
            Some(SocketAddr::new(ip, u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// The peer as CGI strings (empty for unix sockets), and whether it is
/// trusted: in `forwarded-allow-ips`, or on a unix socket.
fn peer(shared: &Shared, storage: &libc::sockaddr_storage) -> Peer {
    match peer_addr(storage) {
        Some(addr) => Peer {
            addr: addr.ip().to_string(),
            port: addr.port().to_string(),
            trusted: shared.trusted_peers.contains(addr.ip()),
        },
        None => Peer {
            addr: String::new(),
            port: String::new(),
            trusted: true,
        },
    }
}

/// Accepts what is pending on listener `index`, then re-arms it (unless the
/// worker is at `worker-connections`, in which case the reaper re-arms it).
pub fn accept_ready(shared: &Shared, index: usize) {
    if shared.is_draining() {
        return;
    }
    let (listener, meta) = &shared.listeners[index];
    let lfd = listener.as_raw_fd();
    for _ in 0..ACCEPT_BATCH {
        if shared.open.load(Ordering::Relaxed) >= shared.max_connections {
            let _ = shared.poller.pause_listener(lfd, index as u64);
            shared.pause_listener(index);
            tracing::warn!(
                "worker-connections ({}) reached; pausing accept",
                shared.max_connections
            );
            return;
        }
        // SAFETY: storage/len describe a writable sockaddr buffer.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: as above; accept4 returns a new descriptor we then own.
        let fd = unsafe {
            libc::accept4(
                lfd,
                &mut storage as *mut _ as *mut libc::sockaddr,
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ECONNABORTED) => {}
                _ => tracing::warn!("accept on {}: {e}", meta.address),
            }
            break;
        }
        // SAFETY: fd is a fresh descriptor from accept4.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if !meta.unix {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a valid int option value.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    &one as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        let peer = peer(shared, &storage);
        let raw = fd.as_raw_fd();
        let (slot, timer) = shared.registry.insert(raw);
        let mut conn = Box::new(Conn::new(
            fd,
            slot,
            timer.clone(),
            index,
            meta.protocol,
            peer,
            shared.proxy_protocol,
            shared.send_timeout,
        ));
        conn.mark_fresh();
        shared.open.fetch_add(1, Ordering::Relaxed);
        timer.park(&shared.clock, Wait::Idle, shared.header_timeout_ms);
        let token = Box::into_raw(conn) as u64;
        if let Err(e) = shared.poller.add_conn(raw, token) {
            tracing::warn!("epoll add: {e}");
            // SAFETY: the token was just made from a Box and never shared.
            close_conn(shared, unsafe { Box::from_raw(token as *mut Conn) });
        }
    }
    let _ = shared.poller.rearm_listener(lfd, index as u64);
}

fn close_conn(shared: &Shared, conn: Box<Conn>) {
    shared.registry.remove(conn.slot);
    shared.open.fetch_sub(1, Ordering::Relaxed);
    drop(conn);
}

/// Runs a connection that became ready, then parks or closes it.
pub fn handle_conn(cx: &mut ThreadCx<'_>, token: u64) {
    let ptr = token as *mut Conn;
    // SAFETY: tokens above the listener range are Box<Conn> pointers made in
    // accept_ready. EPOLLONESHOT delivers each arming to one thread only, so
    // this thread has exclusive access until it re-arms or closes.
    let conn = unsafe { &mut *ptr };
    match conn.drive(cx) {
        Next::Park {
            events,
            wait,
            timeout_ms,
        } => {
            let fd = conn.raw_fd();
            conn.timer.park(&cx.shared.clock, wait, timeout_ms);
            // After rearm another thread may own the connection: no more access.
            if cx.shared.poller.rearm_conn(fd, token, events).is_err() {
                // SAFETY: re-arming failed, so no other thread can receive it.
                close_conn(cx.shared, unsafe { Box::from_raw(ptr) });
            }
        }
        Next::Close => {
            // SAFETY: exclusive ownership as above; the pointer came from Box::into_raw.
            close_conn(cx.shared, unsafe { Box::from_raw(ptr) });
        }
    }
}
