//! Dropping root after binding (`uid`, `gid`), so `:80` with `uid = www-data`
//! works: the master binds every socket as root (the listeners, the control
//! socket, the stats sockets, as uWSGI does), then becomes the user before
//! it spawns any worker or starts any thread.

use std::ffi::CString;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("unknown user '{0}'")]
    UnknownUser(String),
    #[error("unknown group '{0}'")]
    UnknownGroup(String),
    #[error("cannot switch to {what}: {source}")]
    Switch {
        what: String,
        source: std::io::Error,
    },
}

/// (uid, primary gid) of a user name or number.
pub fn lookup_user(user: &str) -> Result<(libc::uid_t, libc::gid_t), PrivilegeError> {
    let name = CString::new(user).map_err(|_| PrivilegeError::UnknownUser(user.into()))?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage we read
    // at once; the master is single-threaded here (before spawning).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if !pw.is_null() {
        // SAFETY: non-null result of getpwnam.
        return Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) });
    }
    let uid: libc::uid_t = user
        .parse()
        .map_err(|_| PrivilegeError::UnknownUser(user.into()))?;
    // SAFETY: as above, by number.
    let pw = unsafe { libc::getpwuid(uid) };
    // SAFETY: non-null result of getpwuid.
    let gid = if pw.is_null() {
        uid
    } else {
        unsafe { (*pw).pw_gid }
    };
    Ok((uid, gid))
}

/// The gid of a group name or number.
pub fn lookup_group(group: &str) -> Result<libc::gid_t, PrivilegeError> {
    let name = CString::new(group).map_err(|_| PrivilegeError::UnknownGroup(group.into()))?;
    // SAFETY: as in lookup_user.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if !gr.is_null() {
        // SAFETY: non-null result of getgrnam.
        return Ok(unsafe { (*gr).gr_gid });
    }
    group
        .parse()
        .map_err(|_| PrivilegeError::UnknownGroup(group.into()))
}

fn check(ret: libc::c_int, what: String) -> Result<(), PrivilegeError> {
    if ret == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::Switch {
            what,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// The user and group the master becomes (`uid`, `gid`), resolved while it
/// is still root. `gid` defaults to the user's primary group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity {
    pub uid: Option<libc::uid_t>,
    pub gid: Option<libc::gid_t>,
}

impl Identity {
    /// Resolves the `uid` / `gid` options (names or numbers).
    pub fn resolve(uid: Option<&str>, gid: Option<&str>) -> Result<Identity, PrivilegeError> {
        let user = uid.map(lookup_user).transpose()?;
        let gid = match gid {
            Some(g) => Some(lookup_group(g)?),
            None => user.map(|(_, primary)| primary),
        };
        Ok(Identity {
            uid: user.map(|(u, _)| u),
            gid,
        })
    }

    /// The uid the process has once [`Identity::switch`] ran.
    pub fn effective_uid(&self) -> libc::uid_t {
        // SAFETY: geteuid has no preconditions.
        self.uid.unwrap_or_else(|| unsafe { libc::geteuid() })
    }

    /// Gives `path` (a socket the master binds as root for itself: the
    /// control socket, a unix stats socket) to this identity, so the master
    /// and its user can still use it after the switch. No-op without
    /// `uid`/`gid`, and when not root: only root can give a file away, and
    /// then [`Identity::switch`] fails with its own, clearer message.
    pub fn chown(&self, path: &std::path::Path) -> std::io::Result<()> {
        if (self.uid.is_none() && self.gid.is_none()) || !is_root() {
            return Ok(());
        }
        std::os::unix::fs::chown(path, self.uid, self.gid)
    }

    /// Switches the process to `gid` then `uid` (either may be None).
    pub fn switch(&self) -> Result<(), PrivilegeError> {
        if let Some(g) = self.gid {
            // SAFETY: plain syscalls; order matters: groups and gid before uid.
            unsafe {
                if libc::geteuid() == 0 {
                    check(libc::setgroups(1, &g), format!("supplementary group {g}"))?;
                }
                check(libc::setgid(g), format!("gid {g}"))?;
            }
            tracing::info!("running as gid {g}");
        }
        if let Some(u) = self.uid {
            // SAFETY: plain syscall.
            check(unsafe { libc::setuid(u) }, format!("uid {u}"))?;
            tracing::info!("running as uid {u}");
        }
        Ok(())
    }
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}
