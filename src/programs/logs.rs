//! Capturing a program's stdout and stderr: one thread per pipe, so a slow
//! disk or a chatty program never blocks the master loop.
//!
//! Output is cut into lines and each line is written with one `write_all`
//! (under the destination's lock for capataz's own stdout/stderr), so lines
//! from different programs and the server log never interleave mid-line.
//! A line longer than [`MAX_LINE`] is written in pieces of that size.
//! Files rotate supervisord-style: before a write that would pass
//! `maxbytes`, `log` becomes `log.1`, `log.1` becomes `log.2`, … keeping
//! `backups` old files (0 = truncate in place). The last [`RING_BYTES`] of
//! output are also kept in memory for `capataz ctl tail`.
//!
//! SIGUSR1 (logrotate's `postrotate`) calls [`reopen_files`]: every log file
//! is reopened at its path before its next line, so lines written after
//! logrotate moved the file go to a fresh file at the original path.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::config::sections::LogTarget;

/// Bytes kept in memory per process for `ctl tail`.
pub const RING_BYTES: usize = 64 * 1024;
/// Longest line written in one piece.
pub const MAX_LINE: usize = 64 * 1024;

/// The recent output of one process, shared with the control server.
#[derive(Debug, Default)]
pub struct LogRing {
    inner: Mutex<RingInner>,
    grew: Condvar,
}

#[derive(Debug, Default)]
struct RingInner {
    buf: VecDeque<u8>,
    /// Bytes ever appended; the offset just past the newest byte.
    total: u64,
}

impl LogRing {
    pub fn append(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.buf.extend(bytes);
        let excess = inner.buf.len().saturating_sub(RING_BYTES);
        inner.buf.drain(..excess);
        inner.total += bytes.len() as u64;
        self.grew.notify_all();
    }

    /// The last `n` bytes, and the offset after them.
    pub fn last(&self, n: usize) -> (Vec<u8>, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let skip = inner.buf.len().saturating_sub(n);
        (inner.buf.iter().skip(skip).copied().collect(), inner.total)
    }

    /// Bytes after `offset` (what is still kept), waiting up to `timeout`
    /// for some; and the new offset.
    pub fn since(&self, offset: u64, timeout: Duration) -> (Vec<u8>, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (inner, _) = self
            .grew
            .wait_timeout_while(inner, timeout, |i| i.total <= offset)
            .unwrap_or_else(|e| e.into_inner());
        let new = (inner.total - offset.min(inner.total)) as usize;
        let new = new.min(inner.buf.len());
        let skip = inner.buf.len() - new;
        (inner.buf.iter().skip(skip).copied().collect(), inner.total)
    }
}

/// Bumped by [`reopen_files`]; a [`RotatingFile`] opened under an older
/// value reopens its path before its next write.
static REOPEN_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Has every program log file reopen its path before its next line
/// (SIGUSR1). Never blocks: the capture threads do the reopening.
pub fn reopen_files() {
    REOPEN_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A file that rotates at `maxbytes`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    maxbytes: u64,
    backups: u32,
    /// The [`REOPEN_GENERATION`] this file was opened under.
    generation: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, maxbytes: u64, backups: u32) -> io::Result<RotatingFile> {
        let generation = REOPEN_GENERATION.load(Ordering::Relaxed);
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            maxbytes,
            backups,
            generation,
        })
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.backups == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(self.numbered(self.backups));
        for n in (1..self.backups).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        *self = RotatingFile::open(&self.path, self.maxbytes, self.backups)?;
        Ok(())
    }

    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.generation != REOPEN_GENERATION.load(Ordering::Relaxed) {
            *self = RotatingFile::open(&self.path, self.maxbytes, self.backups)?;
        }
        if self.maxbytes > 0 && self.size > 0 && self.size + line.len() as u64 > self.maxbytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// Where captured lines go.
#[derive(Debug)]
pub enum Sink {
    /// capataz's stderr, each line prefixed.
    Prefixed(String),
    Stdout,
    Stderr,
    File(RotatingFile),
}

impl Sink {
    /// The sink for a log target; `None` when output is discarded.
    pub fn for_target(
        target: &LogTarget,
        stdout: bool,
        process_name: &str,
        expand: impl Fn(&str) -> Result<String, String>,
    ) -> io::Result<Option<Sink>> {
        Ok(Some(match target {
            LogTarget::Discard => return Ok(None),
            LogTarget::Prefixed => Sink::Prefixed(format!("[program {process_name}] ")),
            LogTarget::Inherit if stdout => Sink::Stdout,
            LogTarget::Inherit => Sink::Stderr,
            LogTarget::File {
                path,
                maxbytes,
                backups,
            } => {
                let path = expand(path).map_err(io::Error::other)?;
                Sink::File(RotatingFile::open(Path::new(&path), *maxbytes, *backups)?)
            }
        }))
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Sink::Prefixed(prefix) => {
                let mut out = Vec::with_capacity(prefix.len() + line.len());
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(line);
                io::stderr().lock().write_all(&out)
            }
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Sink::Stderr => io::stderr().lock().write_all(line),
            Sink::File(f) => f.write_line(line),
        }
    }
}

/// Splits a byte stream into lines (each ending in '\n'), holding a partial
/// line until it completes or reaches [`MAX_LINE`] (then it is emitted in a
/// piece of that size, ending in the cut marker, if any, and a newline).
/// Also used for workers' output ([`crate::master::worker_output`]).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    /// Appended to a piece cut at [`MAX_LINE`], before its newline.
    cut_marker: &'static [u8],
}

impl LineSplitter {
    /// A splitter that ends pieces cut at [`MAX_LINE`] with `marker`.
    pub fn with_cut_marker(marker: &'static [u8]) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            cut_marker: marker,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            let line = &bytes[..=nl];
            if self.pending.is_empty() && line.len() <= MAX_LINE {
                emit(line);
            } else {
                self.pending.extend_from_slice(line);
                // A complete line may hold MAX_LINE bytes before its newline.
                while self.pending.len() > MAX_LINE + 1 {
                    self.emit_cut(&mut emit);
                }
                emit(&self.pending);
                self.pending.clear();
            }
            bytes = &bytes[nl + 1..];
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= MAX_LINE {
            self.emit_cut(&mut emit);
        }
    }

    /// Emits the first [`MAX_LINE`] pending bytes as a cut piece.
    fn emit_cut(&mut self, emit: &mut impl FnMut(&[u8])) {
        let mut piece: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
        piece.extend_from_slice(self.cut_marker);
        piece.push(b'\n');
        emit(&piece);
    }

    /// At end of stream: the unterminated rest, with a newline added.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// Reads `pipe` on its own thread until EOF, writing lines to `sink` and
/// keeping them in `ring`.
pub fn capture(
    name: &str,
    pipe: OwnedFd,
    mut sink: Option<Sink>,
    ring: Arc<LogRing>,
) -> io::Result<()> {
    let label = name.to_string();
    std::thread::Builder::new()
        .name(format!("log {name}"))
        .spawn(move || {
            let mut file = File::from(pipe);
            let mut buf = vec![0u8; 16 * 1024];
            let mut lines = LineSplitter::default();
            let mut failed = false;
            let mut write = |line: &[u8]| {
                ring.append(line);
                if let Some(sink) = sink.as_mut() {
                    if let Err(e) = sink.write_line(line) {
                        if !failed {
                            tracing::error!("program {label}: cannot write its log: {e}");
                            failed = true;
                        }
                    }
                }
            };
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => lines.push(&buf[..n], &mut write),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            lines.finish(&mut write);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.push(c, |l| out.push(l.to_vec()));
        }
        s.finish(|l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_are_whole_whatever_the_chunking() {
        let text = b"alpha\nbeta gamma\n\ndelta";
        for cut in 0..text.len() {
            let out = split_all(&[&text[..cut], &text[cut..]]);
            assert_eq!(
                out,
                vec![
                    b"alpha\n".to_vec(),
                    b"beta gamma\n".to_vec(),
                    b"\n".to_vec(),
                    b"delta\n".to_vec()
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn overlong_lines_are_cut() {
        let big = vec![b'x'; MAX_LINE + 10];
        let out = split_all(&[&big]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE + 1);
        // Also when the newline arrives in the same chunk, whatever the cut.
        let mut line = vec![b'y'; 2 * MAX_LINE + 3];
        line.push(b'\n');
        for cut in [0, 1, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, line.len() - 1] {
            let out = split_all(&[&line[..cut], &line[cut..]]);
            let lens: Vec<usize> = out.iter().map(|l| l.len()).collect();
            assert_eq!(lens, vec![MAX_LINE + 1, MAX_LINE + 1, 4], "cut at {cut}");
            assert!(out.iter().all(|l| l.ends_with(b"\n")));
        }
    }

    #[test]
    fn rotation_keeps_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        let line = [b'a'; 39].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for _ in 0..10 {
            f.write_line(&line).unwrap();
        }
        // 40-byte lines, 100-byte files: two lines per file.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 80);
        assert_eq!(
            std::fs::metadata(dir.path().join("p.log.1")).unwrap().len(),
            80
        );
        assert!(dir.path().join("p.log.2").exists());
        assert!(!dir.path().join("p.log.3").exists());
    }

    #[test]
    fn reopen_follows_a_moved_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let mut f = RotatingFile::open(&path, 0, 0).unwrap();
        f.write_line(b"before\n").unwrap();
        std::fs::rename(&path, dir.path().join("p.log.old")).unwrap();
        f.write_line(b"still old\n").unwrap();
        reopen_files();
        f.write_line(b"after\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"after\n");
        assert_eq!(
            std::fs::read(dir.path().join("p.log.old")).unwrap(),
            b"before\nstill old\n"
        );
    }

    #[test]
    fn zero_backups_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let mut f = RotatingFile::open(&path, 10, 0).unwrap();
        f.write_line(b"12345678\n").unwrap();
        f.write_line(b"abc\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc\n");
        assert!(!dir.path().join("p.log.1").exists());
    }

    #[test]
    fn ring_keeps_the_tail_and_follows() {
        let ring = LogRing::default();
        ring.append(b"one\n");
        let (data, off) = ring.last(100);
        assert_eq!((data.as_slice(), off), (&b"one\n"[..], 4));
        ring.append(b"two\n");
        let (data, off) = ring.since(off, Duration::from_millis(10));
        assert_eq!((data.as_slice(), off), (&b"two\n"[..], 8));
        let (data, _) = ring.since(off, Duration::from_millis(10));
        assert!(data.is_empty());
        ring.append(&vec![b'z'; RING_BYTES * 2]);
        assert_eq!(ring.last(usize::MAX).0.len(), RING_BYTES);
    }
}
