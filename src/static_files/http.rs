//! Pure parsers for the request fields static serving reads: entity-tag
//! lists, HTTP dates, `Range` and `Accept-Encoding` (RFC 9110).
//!
//! Bytes in, values out: no I/O, so `serve` only decides and formats.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One entity-tag: (weak, opaque-tag without the quotes).
pub type Tag<'a> = (bool, &'a [u8]);

/// A parsed `If-Match` / `If-None-Match` value (RFC 9110 §13.1.1, §13.1.2).
#[derive(Debug, PartialEq, Eq)]
pub enum EtagList<'a> {
    /// `*`
    Any,
    /// The tags, in order.
    Tags(Vec<Tag<'a>>),
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ows(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ows(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// Parses one entity-tag at the start of `v` (RFC 9110 §8.8.3:
/// `[ "W/" ] DQUOTE *etagc DQUOTE`); returns it and the rest.
fn parse_etag(v: &[u8]) -> Option<(Tag<'_>, &[u8])> {
    let (weak, v) = match v.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let v = v.strip_prefix(b"\"")?;
    // etagc = %x21 / %x23-7E / obs-text: anything visible but DQUOTE, so
    // a comma inside the quotes is part of the tag, not a list separator.
    let end = v.iter().position(|&b| b == b'"')?;
    let opaque = &v[..end];
    if opaque.iter().any(|&b| b < 0x21 || b == 0x7f) {
        return None;
    }
    Some(((weak, opaque), &v[end + 1..]))
}

/// Parses an entity-tag list or `*`; None when malformed, which callers
/// treat as "no tag matches".
pub fn parse_etag_list(v: &[u8]) -> Option<EtagList<'_>> {
    let v = trim(v);
    if v == b"*" {
        return Some(EtagList::Any);
    }
    let mut tags = Vec::new();
    let mut rest = v;
    loop {
        // RFC 9110 §5.6.1.2: recipients accept empty list elements.
        while let [b, tail @ ..] = rest {
            if is_ows(*b) || *b == b',' {
                rest = tail;
            } else {
                break;
            }
        }
        if rest.is_empty() {
            break;
        }
        let (tag, tail) = parse_etag(rest)?;
        tags.push(tag);
        rest = trim(tail);
        match rest.first() {
            None => break,
            Some(b',') => {}
            Some(_) => return None,
        }
    }
    (!tags.is_empty()).then_some(EtagList::Tags(tags))
}

/// Whether `list` matches our (always strong) tag `ours` (the opaque part,
/// without quotes). RFC 9110 §8.8.3.2: the strong comparison needs both
/// tags strong; the weak one only compares the opaque parts.
pub fn etag_list_matches(list: &EtagList<'_>, ours: &[u8], strong: bool) -> bool {
    match list {
        EtagList::Any => true,
        EtagList::Tags(tags) => tags
            .iter()
            .any(|&(weak, opaque)| opaque == ours && !(strong && weak)),
    }
}

/// An HTTP-date (RFC 9110 §5.6.7; all three historical formats).
pub fn parse_date(v: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(trim(v)).ok()?).ok()
}

/// Whole seconds since the epoch; times before it count as 0, since
/// HTTP-dates cannot express them anyway.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `t` truncated to a whole second, the resolution of an HTTP-date.
pub fn truncate_secs(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_secs(t))
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RangeRequest {
    /// Serve the whole representation: no usable range (malformed, another
    /// unit, several ranges; RFC 9110 §14.2 lets a server ignore Range).
    Full,
    /// One satisfiable range, `first..=last` clamped to the length.
    Single { first: u64, last: u64 },
    /// A syntactically valid single range that is not satisfiable: 416.
    Unsatisfiable,
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Overflow means a position beyond any file: saturate, which keeps
    // `first` unsatisfiable and `last`/suffix lengths clamped to the file.
    Some(v.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Parses a `Range` value against a representation of `len` bytes
/// (RFC 9110 §14.1.1 syntax, §14.1.2 satisfiability).
pub fn parse_range(v: &[u8], len: u64) -> RangeRequest {
    let v = trim(v);
    // The range unit is case-insensitive (§14.1).
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"bytes=") {
        return RangeRequest::Full;
    }
    let specs: Vec<&[u8]> = v[6..]
        .split(|&b| b == b',')
        .map(trim)
        .filter(|s| !s.is_empty())
        .collect();
    // Several ranges would need multipart/byteranges; §14.2 allows serving
    // the whole representation instead, which is also what protects us from
    // many-small-ranges amplification.
    let [spec] = specs.as_slice() else {
        return RangeRequest::Full;
    };
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    // An empty representation has no byte to point at (Content-Range cannot
    // even express an empty range), so serve it whole.
    if len == 0 {
        return RangeRequest::Full;
    }
    if first.is_empty() {
        // suffix-range: the last N bytes; N = 0 is unsatisfiable (§14.1.2).
        let Some(n) = parse_u64(last) else {
            return RangeRequest::Full;
        };
        if n == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Single {
            first: len.saturating_sub(n),
            last: len - 1,
        };
    }
    let Some(first) = parse_u64(first) else {
        return RangeRequest::Full;
    };
    let last = if last.is_empty() {
        None
    } else {
        match parse_u64(last) {
            Some(l) => Some(l),
            None => return RangeRequest::Full,
        }
    };
    // §14.1.1: last-pos < first-pos makes the range-spec invalid, and an
    // invalid Range is ignored rather than answered with 416.
    if last.is_some_and(|l| l < first) {
        return RangeRequest::Full;
    }
    if first >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Single {
        first,
        last: last.map_or(len - 1, |l| l.min(len - 1)),
    }
}

/// A preference weight in thousandths (RFC 9110 §12.4.2 qvalue); None if
/// malformed.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int[0] {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The weight `Accept-Encoding` gives to a content coding, in thousandths
/// (RFC 9110 §12.5.3): its own entry if listed (any of `names`, which lets
/// `x-gzip` count as `gzip`, §8.4.1.3), else the `*` entry, else 0.
pub fn coding_weight(accept_encoding: &[u8], names: &[&str]) -> u16 {
    let mut star = None;
    for item in accept_encoding.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let coding = trim(parts.next().unwrap_or_default());
        if coding.is_empty() {
            continue;
        }
        let mut q = Some(1000);
        for param in parts {
            let param = trim(param);
            if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                q = parse_qvalue(trim(&param[2..]));
            }
        }
        // A malformed weight is treated as "not acceptable": sending an
        // encoding the client may not decode is the worse mistake.
        let q = q.unwrap_or(0);
        if names
            .iter()
            .any(|n| coding.eq_ignore_ascii_case(n.as_bytes()))
        {
            return q;
        }
        if coding == b"*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    //! The header parsers, by example and by property.

    use super::*;
    use proptest::prelude::*;

    fn tags(v: &str) -> Vec<(bool, &[u8])> {
        match parse_etag_list(v.as_bytes()) {
            Some(EtagList::Tags(t)) => t,
            other => panic!("{v:?}: {other:?}"),
        }
    }

    #[test]
    fn etag_lists() {
        assert_eq!(parse_etag_list(b" * "), Some(EtagList::Any));
        assert_eq!(tags("\"a\""), vec![(false, &b"a"[..])]);
        assert_eq!(
            tags("W/\"a\", \"b,c\" ,, \"\""),
            vec![(true, &b"a"[..]), (false, &b"b,c"[..]), (false, &b""[..])]
        );
        assert_eq!(parse_etag_list(b"a"), None);
        assert_eq!(parse_etag_list(b"\"a"), None);
        assert_eq!(parse_etag_list(b"\"a\" \"b\""), None);
        assert_eq!(parse_etag_list(b"w/\"a\""), None);
        assert_eq!(parse_etag_list(b""), None);
        assert_eq!(parse_etag_list(b"\"a b\""), None);
    }

    #[test]
    fn etag_comparison() {
        let weak = parse_etag_list(b"W/\"x\"").unwrap();
        let strong = parse_etag_list(b"\"y\", \"x\"").unwrap();
        assert!(etag_list_matches(&weak, b"x", false));
        assert!(!etag_list_matches(&weak, b"x", true));
        assert!(etag_list_matches(&strong, b"x", true));
        assert!(!etag_list_matches(&strong, b"z", false));
        assert!(etag_list_matches(&EtagList::Any, b"z", true));
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let r = |v: &str, len| parse_range(v.as_bytes(), len);
        assert_eq!(r("bytes=0-9", 100), Single { first: 0, last: 9 });
        assert_eq!(r("BYTES=0-9", 100), Single { first: 0, last: 9 });
        assert_eq!(
            r("bytes=90-200", 100),
            Single {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            r("bytes=10-", 100),
            Single {
                first: 10,
                last: 99
            }
        );
        assert_eq!(
            r("bytes=-10", 100),
            Single {
                first: 90,
                last: 99
            }
        );
        assert_eq!(r("bytes=-1000", 100), Single { first: 0, last: 99 });
        assert_eq!(r("bytes= 5-5 ,", 100), Single { first: 5, last: 5 });
        assert_eq!(
            r("bytes=99-99", 100),
            Single {
                first: 99,
                last: 99
            }
        );
        assert_eq!(r("bytes=100-", 100), Unsatisfiable);
        assert_eq!(r("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(r("bytes=-0", 100), Unsatisfiable);
        assert_eq!(r("bytes=99999999999999999999999-", 100), Unsatisfiable);
        assert_eq!(
            r("bytes=0-99999999999999999999999", 100),
            Single { first: 0, last: 99 }
        );
        // Ignored: malformed, other units, several ranges, empty file.
        assert_eq!(r("bytes=9-0", 100), Full);
        assert_eq!(r("bytes=a-b", 100), Full);
        assert_eq!(r("bytes=-", 100), Full);
        assert_eq!(r("bytes=5", 100), Full);
        assert_eq!(r("bytes=+1-2", 100), Full);
        assert_eq!(r("items=0-1", 100), Full);
        assert_eq!(r("bytes=0-1,5-6", 100), Full);
        assert_eq!(r("bytes=", 100), Full);
        assert_eq!(r("", 100), Full);
        assert_eq!(r("bytes=0-0", 0), Full);
    }

    #[test]
    fn accept_encoding_weights() {
        let w = |v: &str, c: &str| coding_weight(v.as_bytes(), &[c]);
        assert_eq!(w("gzip, br", "br"), 1000);
        assert_eq!(w("gzip;q=0.5, br;q=0.8", "gzip"), 500);
        assert_eq!(w("gzip;q=0, *", "gzip"), 0);
        assert_eq!(w("*;q=0.3", "br"), 300);
        assert_eq!(w("identity", "gzip"), 0);
        assert_eq!(w("", "gzip"), 0);
        assert_eq!(w("GZIP ; Q=1.000", "gzip"), 1000);
        assert_eq!(w("gzip;q=1.5", "gzip"), 0);
        assert_eq!(w("gzip;q=0.1234", "gzip"), 0);
        assert_eq!(w("deflate, gzip;q=0.001", "gzip"), 1);
        assert_eq!(coding_weight(b"x-gzip", &["gzip", "x-gzip"]), 1000);
    }

    #[test]
    fn dates() {
        let t = parse_date(b"Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(unix_secs(t), 784111777);
        assert_eq!(parse_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_date(b"Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_date(b"yesterday"), None);
        assert_eq!(parse_date(b"\xff"), None);
        let later = t + Duration::from_millis(999);
        assert_eq!(truncate_secs(later), t);
    }

    proptest! {
        /// Whatever the header, a Single range lies inside the file.
        #[test]
        fn single_ranges_are_in_bounds(v in "(bytes|BYTES|x)=[0-9 ,-]{0,12}", len in 0u64..1000) {
            if let RangeRequest::Single { first, last } = parse_range(v.as_bytes(), len) {
                prop_assert!(first <= last && last < len);
            }
        }

        /// No input makes the parsers panic.
        #[test]
        fn parsers_never_panic(v in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_range(&v, 10);
            let _ = parse_etag_list(&v);
            let _ = coding_weight(&v, &["br"]);
            let _ = parse_date(&v);
        }
    }
}
