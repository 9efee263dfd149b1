//! Pure request-path resolution for static files: mount matching and a
//! traversal-proof percent-decoding of the path into safe relative segments.
//!
//! Nothing here touches the file system, so every property that keeps a
//! request inside its mount directory can be tested exhaustively. The file
//! system half (canonicalising, refusing symlinks that escape) lives in
//! `super::lookup`, which only ever joins what [`decode_path`] returns.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Why a request path cannot name a static file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits (RFC 3986 §2.1 makes that
    /// malformed): 400.
    #[error("invalid percent-escape")]
    BadEscape,
    /// A NUL byte, raw or `%00`: no file name can contain one, and C APIs
    /// would silently truncate the path there. 400.
    #[error("NUL byte in path")]
    Nul,
    /// `%2F` or `%5C`: an encoded separator would let a segment smuggle a
    /// `/` (or a Windows-style `\`) past the segment checks. 400.
    #[error("encoded slash or backslash")]
    EncodedSeparator,
    /// A `..` segment, raw or encoded: we never walk up. 404.
    #[error("'..' segment")]
    DotDot,
}

impl PathError {
    /// The status to answer with: malformed input is a client error (400),
    /// while `..` is answered as if the file did not exist (404), which is
    /// what a traversal probe deserves and what nginx does.
    pub fn status(self) -> u16 {
        match self {
            PathError::DotDot => 404,
            PathError::BadEscape | PathError::Nul | PathError::EncodedSeparator => 400,
        }
    }
}

/// If `raw_path` is under `mount`, the rest of the path after the mount
/// (empty or starting with `/`).
///
/// The mount must be followed by `/` or the end, so mount `/static` does
/// not capture `/staticfoo`. Mount `/` captures every path, and then the
/// remainder is the whole path. Matching is on the raw bytes, as uWSGI
/// does: `/%73tatic` is not `/static`.
pub fn strip_mount<'p>(raw_path: &'p [u8], mount: &[u8]) -> Option<&'p [u8]> {
    if mount == b"/" {
        return raw_path.starts_with(b"/").then_some(raw_path);
    }
    let rest = raw_path.strip_prefix(mount)?;
    (rest.is_empty() || rest[0] == b'/').then_some(rest)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one raw segment (which contains no raw `/`).
fn decode_segment(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex);
            let lo = raw.get(i + 2).copied().and_then(hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            let d = (hi << 4) | lo;
            match d {
                0 => return Err(PathError::Nul),
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                _ => out.push(d),
            }
            i += 3;
        } else if b == 0 {
            return Err(PathError::Nul);
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Decodes the part of a request path below a mount into a relative path
/// made only of normal components (no root, no `.`, no `..`, no empty
/// segments), safe to join onto the mount directory.
///
/// Every raw segment is checked in full before anything is returned, so a
/// `..` anywhere is refused even where a later segment would have "cancelled"
/// it, and the answer does not depend on which error is met first except
/// that 400-class errors in a segment are found before it is compared to
/// `..`. Invalid UTF-8 is allowed: Linux file names are bytes.
pub fn decode_path(rest: &[u8]) -> Result<PathBuf, PathError> {
    let mut path = PathBuf::new();
    // Splitting on the raw '/' before decoding is what makes an encoded
    // slash unable to create a segment boundary (it is refused anyway).
    for raw in rest.split(|&b| b == b'/') {
        let seg = decode_segment(raw)?;
        match seg.as_slice() {
            b"" | b"." => {}
            b".." => return Err(PathError::DotDot),
            _ => path.push(OsStr::from_bytes(&seg)),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    //! Unit, exhaustive and property tests of the path decoder.

    use super::*;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    fn ok(s: &str) -> PathBuf {
        decode_path(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> PathError {
        decode_path(s.as_bytes()).expect_err(s)
    }

    #[test]
    fn mounts_match_on_a_segment_boundary() {
        assert_eq!(strip_mount(b"/static", b"/static"), Some(&b""[..]));
        assert_eq!(strip_mount(b"/static/", b"/static"), Some(&b"/"[..]));
        assert_eq!(
            strip_mount(b"/static/a.css", b"/static"),
            Some(&b"/a.css"[..])
        );
        assert_eq!(strip_mount(b"/staticfoo", b"/static"), None);
        assert_eq!(strip_mount(b"/stati", b"/static"), None);
        assert_eq!(strip_mount(b"/other/static/x", b"/static"), None);
        assert_eq!(strip_mount(b"/%73tatic/x", b"/static"), None);
        assert_eq!(strip_mount(b"/a/b", b"/a/b"), Some(&b""[..]));
        assert_eq!(strip_mount(b"/a/b/c", b"/a/b"), Some(&b"/c"[..]));
    }

    #[test]
    fn root_mount_matches_everything_with_a_slash() {
        assert_eq!(strip_mount(b"/", b"/"), Some(&b"/"[..]));
        assert_eq!(strip_mount(b"/x/y", b"/"), Some(&b"/x/y"[..]));
        assert_eq!(strip_mount(b"*", b"/"), None);
        assert_eq!(strip_mount(b"", b"/"), None);
    }

    #[test]
    fn plain_paths_decode_to_their_segments() {
        assert_eq!(ok("/a/b.css"), Path::new("a/b.css"));
        assert_eq!(ok(""), Path::new(""));
        assert_eq!(ok("/"), Path::new(""));
        assert_eq!(ok("//a///b//"), Path::new("a/b"));
        assert_eq!(ok("/./a/./b/."), Path::new("a/b"));
        assert_eq!(ok("/%61%2Eb"), Path::new("a.b"));
        assert_eq!(ok("/my%20file.txt"), Path::new("my file.txt"));
        assert_eq!(ok("/..."), Path::new("..."));
        assert_eq!(ok("/..a/a.."), Path::new("..a/a.."));
        // A raw backslash is an ordinary file-name byte on Linux.
        assert_eq!(ok("/a\\b"), Path::new("a\\b"));
        // Invalid UTF-8 is allowed: file names are bytes.
        assert_eq!(ok("/%ff").as_os_str().as_bytes(), b"\xff");
    }

    #[test]
    fn dot_dot_in_any_spelling_is_404() {
        for s in [
            "/..",
            "/../etc/passwd",
            "/a/../b",
            "/a/..",
            "/%2e%2e/etc",
            "/%2E%2E/etc",
            "/.%2e/x",
            "/%2e./x",
            "/a/%2e%2e",
            "..",
        ] {
            assert_eq!(err(s), PathError::DotDot, "{s}");
            assert_eq!(err(s).status(), 404);
        }
    }

    #[test]
    fn malformed_and_smuggling_paths_are_400() {
        assert_eq!(err("/..%2f..%2fetc%2fpasswd"), PathError::EncodedSeparator);
        assert_eq!(err("/a%2Fb"), PathError::EncodedSeparator);
        assert_eq!(err("/a%5cb"), PathError::EncodedSeparator);
        assert_eq!(err("/..%5c..%5cwin.ini"), PathError::EncodedSeparator);
        assert_eq!(err("/%00"), PathError::Nul);
        assert_eq!(err("/a\0b"), PathError::Nul);
        assert_eq!(err("/%"), PathError::BadEscape);
        assert_eq!(err("/%2"), PathError::BadEscape);
        assert_eq!(err("/%zz"), PathError::BadEscape);
        assert_eq!(err("/%%32e"), PathError::BadEscape);
        // No double decoding: %252e is the three bytes "%2e", a harmless name.
        assert_eq!(ok("/%252e%252e"), Path::new("%2e%2e"));
        for e in [
            PathError::BadEscape,
            PathError::Nul,
            PathError::EncodedSeparator,
        ] {
            assert_eq!(e.status(), 400);
        }
    }

    /// The invariant everything else relies on: a successful decode is a
    /// relative path of normal components, none containing '/' or NUL.
    fn assert_safe(input: &[u8], p: &Path) {
        assert!(p.is_relative(), "{input:?} -> {p:?}");
        for c in p.components() {
            match c {
                Component::Normal(n) => {
                    let b = n.as_bytes();
                    assert!(
                        !b.is_empty() && b != b"." && b != b"..",
                        "{input:?} -> {p:?}"
                    );
                    assert!(!b.contains(&b'/') && !b.contains(&0), "{input:?} -> {p:?}");
                }
                other => panic!("{input:?} -> {p:?} has {other:?}"),
            }
        }
        let root = Path::new("/srv/static");
        assert!(root.join(p).starts_with(root));
    }

    /// Every string up to length 5 over the alphabet that traversal tricks
    /// are made of: each either fails or decodes to a safe path, and never
    /// succeeds when its decoded segments include "..".
    #[test]
    fn exhaustive_short_strings_are_safe() {
        const ALPHABET: &[u8] = b"./%2eEfF5c0a\\";
        let n = ALPHABET.len();
        let mut checked = 0usize;
        for len in 0..=5u32 {
            for mut code in 0..n.pow(len) {
                let mut s = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    s.push(ALPHABET[code % n]);
                    code /= n;
                }
                match decode_path(&s) {
                    Ok(p) => assert_safe(&s, &p),
                    Err(e) => {
                        // A 404 is only ever for a real `..` segment.
                        if e == PathError::DotDot {
                            let lower = s.to_ascii_lowercase();
                            assert!(
                                lower.windows(2).any(|w| w == b"..")
                                    || lower.windows(4).any(|w| w == b"%2e." || w == b".%2e")
                                    || lower.windows(6).any(|w| w == b"%2e%2e"),
                                "{s:?}"
                            );
                        }
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 400_000);
    }

    fn encode_all(seg: &[u8]) -> String {
        seg.iter().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary bytes never produce an unsafe path.
        #[test]
        fn arbitrary_bytes_never_escape(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = decode_path(&input) {
                assert_safe(&input, &p);
            }
        }

        /// Paths built from traversal-flavoured pieces never escape, and
        /// any that holds a `..` segment (in any spelling) is refused.
        #[test]
        fn traversal_pieces_never_escape(
            pieces in proptest::collection::vec(
                prop::sample::select(vec![
                    "/", "..", ".", "%2e", "%2E", "%2f", "%5c", "%00", "a", "etc", "passwd",
                    "%", "%2", "//", "\\", "%25", "%c0%ae", "..%2f", "%2e%2e",
                ]),
                0..12,
            )
        ) {
            let s: String = pieces.concat();
            match decode_path(s.as_bytes()) {
                Ok(p) => {
                    assert_safe(s.as_bytes(), &p);
                    for seg in s.split('/') {
                        let d = seg.to_ascii_lowercase().replace("%2e", ".");
                        prop_assert!(d != "..", "{s:?} decoded despite a '..' segment");
                    }
                }
                Err(e) => prop_assert!(e.status() == 400 || e.status() == 404),
            }
        }

        /// Fully percent-encoding safe segments round-trips to the same path.
        #[test]
        fn encoded_segments_round_trip(
            segs in proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("sep", |b| !matches!(b, 0 | b'/' | b'\\')), 1..8)
                    .prop_filter("dots", |s| s != b"." && s != b".."),
                0..6,
            )
        ) {
            let raw: String = segs.iter().map(|s| format!("/{}", encode_all(s))).collect();
            let p = decode_path(raw.as_bytes()).expect("safe segments decode");
            let got: Vec<&[u8]> = p.components().map(|c| c.as_os_str().as_bytes()).collect();
            let want: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
            prop_assert_eq!(got, want);
        }

        /// The mount match is a prefix on a segment boundary and gives back
        /// exactly the rest of the path.
        #[test]
        fn strip_mount_is_a_boundary_prefix(
            mount in "/[a-z]{1,4}(/[a-z]{1,3})?",
            path in "/[a-z/]{0,10}",
        ) {
            if let Some(rest) = strip_mount(path.as_bytes(), mount.as_bytes()) {
                let mut joined = mount.clone().into_bytes();
                joined.extend_from_slice(rest);
                prop_assert_eq!(joined, path.clone().into_bytes());
                prop_assert!(rest.is_empty() || rest[0] == b'/');
            } else {
                prop_assert!(
                    !path.starts_with(&mount)
                        || path.as_bytes().get(mount.len()).is_some_and(|&b| b != b'/')
                );
            }
        }
    }
}
