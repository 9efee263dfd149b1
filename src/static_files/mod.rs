//! Static files served on the I/O side (`static-map`, `static-expires`,
//! `static-index`, `static-gzip`): Python never sees these requests.
//!
//! [`StaticFiles::lookup`] turns a raw request path into an open file or a
//! refusal; [`StaticFiles::respond`] (in `serve`) turns that file and the
//! request's headers into a response head and a byte range to sendfile.
//! The path half is split in two: `resolve` is pure (decoding, `..`,
//! encoded separators) and exhaustively tested; this module does the file
//! system half, where symlinks are defeated by canonicalising and checking
//! the result is still under the canonical mount directory.

pub mod http;
pub mod mime;
pub mod resolve;
pub mod serve;

// The wiring may name these as `static_files::X` or `static_files::serve::X`;
// whichever path it does not use must not trip unused-import lints.
#[allow(unused_imports)]
pub use serve::{Reply, RequestInfo};

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The static-file options, borrowed from the validated config.
#[derive(Debug, Clone, Copy)]
pub struct StaticConfig<'a> {
    /// `(mount prefix like "/static", directory)`; the mount has no
    /// trailing '/' unless it is "/".
    pub map: &'a [(String, PathBuf)],
    /// `(regex source matched against the resolved file's full path,
    /// seconds)`.
    pub expires: &'a [(String, u64)],
    /// Index file names tried for a directory, e.g. `["index.html"]`.
    pub index: &'a [String],
    /// Serve precompressed `<file>.br` / `<file>.gz` siblings when accepted.
    pub gzip: bool,
}

#[derive(Debug)]
struct Mount {
    prefix: Vec<u8>,
    /// Canonical, so that "still under the mount" is a component-wise
    /// prefix test on canonical paths.
    root: PathBuf,
    /// `root` opened as an O_PATH directory, for the one-syscall fast path
    /// of [`open_beneath`]; `None` if it could not be opened.
    dir: Option<std::os::fd::OwnedFd>,
}

/// The static-file server of one worker, built once at start.
#[derive(Debug)]
pub struct StaticFiles {
    /// Longest prefix first.
    mounts: Vec<Mount>,
    expires: Vec<(regex::bytes::Regex, u64)>,
    index: Vec<String>,
    gzip: bool,
}

/// What [`StaticFiles::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// No mount matches, or no such file: the app handles the request, as
    /// uWSGI does.
    NotStatic,
    /// A traversal attempt or a malformed path: answer with this status
    /// (400 or 404) and nothing else.
    Reject(u16),
    /// A regular file under a mount.
    File(Resolved),
}

/// A precompressed sibling of the resolved file, found at lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precompressed {
    /// The Content-Encoding it is served with: "br" or "gzip".
    pub coding: &'static str,
    /// Canonical path of `<file>.br` / `<file>.gz`, checked to be a regular
    /// file under the mount; opened only if chosen.
    pub path: PathBuf,
}

/// A regular file found under a mount, opened.
#[derive(Debug)]
pub struct Resolved {
    /// Canonical path (symlinks resolved), under the mount's directory.
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    pub mtime: SystemTime,
    /// From the extension of the name that was requested (or of the index
    /// file), not of a symlink's target.
    pub content_type: &'static str,
    /// Inode number, for the ETag.
    pub inode: u64,
    /// Siblings to prefer when the client accepts them, best first (br,
    /// then gzip). Empty unless `static-gzip` is on.
    pub precompressed: Vec<Precompressed>,
}

/// Why a path under a mount did not yield a file, before it becomes a
/// [`Lookup`].
enum Miss {
    /// Does not exist, or is not something we serve: fall through.
    Absent,
    /// Resolves outside the mount (a symlink escape): 404, never the file.
    Escapes,
}

impl StaticFiles {
    /// None when `map` is empty. Err(message) when a directory does not
    /// exist or a regex fails to compile.
    pub fn new(cfg: &StaticConfig<'_>) -> Result<Option<StaticFiles>, String> {
        if cfg.map.is_empty() {
            return Ok(None);
        }
        let mut mounts = Vec::with_capacity(cfg.map.len());
        for (prefix, dir) in cfg.map {
            let root = dir
                .canonicalize()
                .map_err(|e| format!("static-map {prefix}={}: {e}", dir.display()))?;
            if !root.is_dir() {
                return Err(format!(
                    "static-map {prefix}={}: not a directory",
                    dir.display()
                ));
            }
            // Be lenient with a trailing '/' ("/static/") although config
            // validation should already have removed it: otherwise the mount
            // would silently never match "/static".
            let mut prefix = prefix.trim_end_matches('/').as_bytes().to_vec();
            if prefix.is_empty() {
                prefix.push(b'/');
            }
            if prefix[0] != b'/' {
                return Err(format!(
                    "static-map {}={}: the mount must start with '/'",
                    String::from_utf8_lossy(&prefix),
                    dir.display()
                ));
            }
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(&root)
                .ok()
                .map(std::os::fd::OwnedFd::from);
            mounts.push(Mount { prefix, root, dir });
        }
        // Stable: mounts with the same prefix keep their config order, and
        // lookup falls through from one to the next (see `lookup`).
        mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        let expires = cfg
            .expires
            .iter()
            .map(|(src, secs)| {
                regex::bytes::Regex::new(src)
                    .map(|re| (re, *secs))
                    .map_err(|e| format!("static-expires {src:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(StaticFiles {
            mounts,
            expires,
            index: cfg.index.to_vec(),
            gzip: cfg.gzip,
        }))
    }

    /// Resolves `raw_path`, the request path exactly as received (not
    /// percent-decoded, no query).
    ///
    /// Mounts are tried longest first. When the file is missing under one,
    /// the next matching mount is tried, as uWSGI tries every static-map in
    /// turn, so two maps of the same prefix overlay their directories.
    pub fn lookup(&self, raw_path: &[u8]) -> Lookup {
        for mount in &self.mounts {
            let Some(rest) = resolve::strip_mount(raw_path, &mount.prefix) else {
                continue;
            };
            let rel = match resolve::decode_path(rest) {
                Ok(rel) => rel,
                Err(e) => {
                    tracing::debug!(
                        path = %String::from_utf8_lossy(raw_path),
                        reason = %e,
                        "static path refused"
                    );
                    return Lookup::Reject(e.status());
                }
            };
            match self.find(mount, &rel) {
                Ok(resolved) => return Lookup::File(resolved),
                Err(Miss::Absent) => continue,
                Err(Miss::Escapes) => {
                    tracing::warn!(
                        path = %String::from_utf8_lossy(raw_path),
                        "static path resolves outside its mount; refused"
                    );
                    return Lookup::Reject(404);
                }
            }
        }
        Lookup::NotStatic
    }

    /// The file for `rel` (already free of `..`) under `mount`, or the
    /// index file if it names a directory.
    fn find(&self, mount: &Mount, rel: &Path) -> Result<Resolved, Miss> {
        let requested = mount.root.join(rel);
        // Fast path: a plain file reached without any symlink is opened in
        // one syscall, and its path is already canonical. Anything else
        // (a directory, a symlink anywhere on the way, an old kernel) takes
        // the canonicalising path below, which decides.
        if let Some(dir) = &mount.dir {
            match open_beneath(dir, rel) {
                Ok(file) => {
                    if let Ok(meta) = file.metadata() {
                        if meta.is_file() {
                            return self.open_file(
                                mount,
                                requested.clone(),
                                &requested,
                                file,
                                meta,
                            );
                        }
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    return Err(Miss::Absent)
                }
                Err(_) => {}
            }
        }
        let canonical = canonical_under(&mount.root, &requested)?;
        let meta = std::fs::metadata(&canonical).map_err(|_| Miss::Absent)?;
        if meta.is_dir() {
            for name in &self.index {
                let candidate = canonical.join(name);
                match canonical_under(&mount.root, &candidate) {
                    Ok(path) if path.is_file() => return self.open(mount, path, &candidate),
                    Ok(_) | Err(Miss::Absent) => {}
                    Err(Miss::Escapes) => return Err(Miss::Escapes),
                }
            }
            return Err(Miss::Absent);
        }
        if !meta.is_file() {
            // FIFOs, sockets, devices: opening a FIFO would block the I/O
            // thread, and none of them is content.
            return Err(Miss::Absent);
        }
        self.open(mount, canonical, &requested)
    }

    fn open(&self, mount: &Mount, path: PathBuf, requested: &Path) -> Result<Resolved, Miss> {
        let (file, meta) = open_regular(&path).map_err(|_| Miss::Absent)?;
        self.open_file(mount, path, requested, file, meta)
    }

    fn open_file(
        &self,
        mount: &Mount,
        path: PathBuf,
        requested: &Path,
        file: File,
        meta: std::fs::Metadata,
    ) -> Result<Resolved, Miss> {
        let mut precompressed = Vec::new();
        if self.gzip {
            for (suffix, coding) in [(".br", "br"), (".gz", "gzip")] {
                let mut sibling = path.clone().into_os_string();
                sibling.push(suffix);
                // A sibling that is a symlink out of the mount is simply not
                // used: the original file is still fine to serve.
                if let Ok(p) = canonical_under(&mount.root, Path::new(&sibling)) {
                    if p.is_file() {
                        precompressed.push(Precompressed { coding, path: p });
                    }
                }
            }
        }
        Ok(Resolved {
            content_type: mime::content_type(requested),
            len: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            inode: meta.ino(),
            path,
            file,
            precompressed,
        })
    }

    /// The `static-expires` max-age for a resolved path: the first regex
    /// that matches wins, as in uWSGI.
    pub fn expires_for(&self, path: &Path) -> Option<u64> {
        let bytes = path.as_os_str().as_bytes();
        self.expires
            .iter()
            .find(|(re, _)| re.is_match(bytes))
            .map(|&(_, secs)| secs)
    }

    /// Whether precompressed siblings are looked for.
    pub fn gzip(&self) -> bool {
        self.gzip
    }
}

/// Canonicalises `path` and requires it to stay under `root` (canonical).
/// Canonicalising resolves every symlink, so a link pointing outside shows
/// up as a path outside `root`.
fn canonical_under(root: &Path, path: &Path) -> Result<PathBuf, Miss> {
    let canonical = path.canonicalize().map_err(|_| Miss::Absent)?;
    if canonical.starts_with(root) {
        Ok(canonical)
    } else {
        Err(Miss::Escapes)
    }
}

/// Opens `rel` (no `..`, from [`resolve::decode_path`]) under the mount's
/// directory with openat2(2): RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS make
/// the kernel refuse any path that leaves the directory or crosses a
/// symlink (ELOOP / EXDEV), so what opens is inside the mount by
/// construction. O_NONBLOCK: a FIFO must not block the I/O thread; the
/// caller checks the type on the descriptor.
fn open_beneath(dir: &std::os::fd::OwnedFd, rel: &Path) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let rel = std::ffi::CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    /// `struct open_how` of openat2(2) (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 reads `how` (of the size passed) and the NUL-terminated
    // path; both outlive the call. A non-negative result is a new descriptor
    // that we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor from openat2.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// Opens a canonical path for reading, refusing anything but a regular file.
///
/// O_NOFOLLOW: the path was just canonicalised, so a symlink in the last
/// component now means someone swapped one in since; refuse it rather than
/// follow it out of the mount. O_NONBLOCK: if a FIFO was swapped in, open
/// must not block the I/O thread; it has no effect on regular files. The
/// type is then checked on the opened descriptor itself, so what we serve
/// is what we checked.
pub fn open_regular(path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

#[cfg(test)]
pub(crate) mod testdir {
    //! A temporary directory for file-system tests, removed on drop (no
    //! tempfile crate in this module's dependency set).

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct TestDir(pub PathBuf);

    impl TestDir {
        pub fn new() -> TestDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "capataz-static-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TestDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }

        pub fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            p
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
