//! Unit tests of `serve::respond` over real files in a temporary directory.

use super::super::testdir::TestDir;
use super::super::{Lookup, StaticConfig, StaticFiles};
use super::*;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

const DATE: &[u8] = b"Wed, 01 Jan 2025 00:00:00 GMT";
/// 2024-12-31 00:00:00, a day before DATE: a strong Last-Modified.
const MTIME: u64 = 1_735_603_200;
const MTIME_HTTP: &str = "Tue, 31 Dec 2024 00:00:00 GMT";

struct Site {
    dir: TestDir,
    map: Vec<(String, PathBuf)>,
    expires: Vec<(String, u64)>,
    gzip: bool,
}

impl Site {
    fn new() -> Site {
        let dir = TestDir::new();
        let map = vec![("/s".to_string(), dir.path().to_path_buf())];
        Site {
            dir,
            map,
            expires: Vec::new(),
            gzip: false,
        }
    }

    fn file(&self, rel: &str, data: &[u8]) {
        let p = self.dir.write(rel, data);
        let f = File::options().write(true).open(p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME))
            .unwrap();
    }

    fn server(&self) -> StaticFiles {
        StaticFiles::new(&StaticConfig {
            map: &self.map,
            expires: &self.expires,
            index: &[],
            gzip: self.gzip,
        })
        .unwrap()
        .unwrap()
    }
}

struct Resp {
    status: u16,
    status_line: String,
    headers: HashMap<String, String>,
    /// The bytes the body range covers (read from the returned file).
    body: Option<Vec<u8>>,
    inline: Vec<u8>,
}

impl Resp {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

fn request(site: &Site, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    request_v(site, method, path, headers, true, true)
}

fn request_v(
    site: &Site,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    http11: bool,
    keep_alive: bool,
) -> Resp {
    let s = site.server();
    let Lookup::File(resolved) = s.lookup(path.as_bytes()) else {
        panic!("{path} not found");
    };
    let owned: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let lookup = |name: &[u8]| {
        owned
            .iter()
            .find(|(k, _)| k.as_bytes() == name)
            .map(|(_, v)| v.as_slice())
    };
    let req = RequestInfo {
        method: method.as_bytes(),
        header: &lookup,
        http11,
        keep_alive,
        date: DATE,
    };
    let reply = s.respond(resolved, &req);
    parse(reply)
}

fn parse(reply: Reply) -> Resp {
    let head = String::from_utf8(reply.head).unwrap();
    assert!(head.ends_with("\r\n\r\n"), "{head:?}");
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(status, reply.status);
    let mut headers = HashMap::new();
    for line in lines {
        let (k, v) = line.split_once(": ").unwrap();
        let dup = headers.insert(k.to_ascii_lowercase(), v.to_string());
        assert!(dup.is_none(), "duplicate {k}");
    }
    let body = reply.body.map(|(mut f, off, len)| {
        f.seek(SeekFrom::Start(off)).unwrap();
        let mut v = vec![0; len as usize];
        f.read_exact(&mut v).unwrap();
        v
    });
    Resp {
        status,
        status_line,
        headers,
        body,
        inline: reply.inline_body,
    }
}

fn site_with(data: &[u8]) -> Site {
    let site = Site::new();
    site.file("f.txt", data);
    site
}

#[test]
fn get_sends_the_file_with_its_metadata() {
    let site = site_with(b"0123456789");
    let r = request(&site, "GET", "/s/f.txt", &[]);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.body.as_deref(), Some(&b"0123456789"[..]));
    assert_eq!(r.h("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.h("content-length"), Some("10"));
    assert_eq!(r.h("last-modified"), Some(MTIME_HTTP));
    assert_eq!(r.h("date"), Some(std::str::from_utf8(DATE).unwrap()));
    assert_eq!(r.h("accept-ranges"), Some("bytes"));
    assert_eq!(r.h("connection"), None);
    assert_eq!(r.h("vary"), None);
    assert_eq!(r.h("cache-control"), None);
    let etag = r.h("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
    assert!(etag.contains(&format!("{MTIME:x}.0-a-")), "{etag}");
    // Same file, same tag: it is derived from metadata only.
    assert_eq!(request(&site, "GET", "/s/f.txt", &[]).h("etag"), Some(etag));
}

#[test]
fn empty_files_have_no_body_range() {
    let site = site_with(b"");
    let r = request(&site, "GET", "/s/f.txt", &[("Range", "bytes=0-0")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.h("content-length"), Some("0"));
    assert!(r.body.is_none());
}

#[test]
fn head_has_the_headers_and_no_body() {
    let site = site_with(b"0123456789");
    let get = request(&site, "GET", "/s/f.txt", &[]);
    let head = request(&site, "HEAD", "/s/f.txt", &[("Range", "bytes=0-1")]);
    assert_eq!(head.status, 200, "Range is ignored on HEAD");
    assert!(head.body.is_none());
    assert_eq!(head.headers, get.headers);
}

#[test]
fn other_methods_get_405() {
    let site = site_with(b"x");
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
        let r = request(&site, m, "/s/f.txt", &[]);
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.h("allow"), Some("GET, HEAD"));
        assert!(r.body.is_none());
        assert_eq!(
            r.h("content-length"),
            Some(r.inline.len().to_string().as_str())
        );
    }
}

#[test]
fn connection_header_follows_version_and_keep_alive() {
    let site = site_with(b"x");
    let c = |v11, ka| request_v(&site, "GET", "/s/f.txt", &[], v11, ka);
    assert_eq!(c(true, true).h("connection"), None);
    assert_eq!(c(true, false).h("connection"), Some("close"));
    let r = c(false, true);
    assert!(r.status_line.starts_with("HTTP/1.0 200"));
    assert_eq!(r.h("connection"), Some("keep-alive"));
    assert_eq!(c(false, false).h("connection"), None);
}

#[test]
fn if_none_match() {
    let site = site_with(b"0123456789");
    let etag = request(&site, "GET", "/s/f.txt", &[])
        .h("etag")
        .unwrap()
        .to_string();
    let weak = format!("W/{etag}");
    let list = format!("\"nope\", {etag}");
    for v in [etag.as_str(), weak.as_str(), list.as_str(), "*"] {
        for m in ["GET", "HEAD"] {
            let r = request(&site, m, "/s/f.txt", &[("If-None-Match", v)]);
            assert_eq!(r.status, 304, "{m} {v}");
            assert!(r.body.is_none());
            assert_eq!(r.h("etag"), Some(etag.as_str()));
            assert_eq!(r.h("last-modified"), Some(MTIME_HTTP));
            assert!(r.h("date").is_some());
            assert_eq!(r.h("content-length"), None);
        }
    }
    let r = request(&site, "GET", "/s/f.txt", &[("If-None-Match", "\"other\"")]);
    assert_eq!(r.status, 200);
    // §13.2.2: If-Modified-Since is not evaluated when If-None-Match is present.
    let r = request(
        &site,
        "GET",
        "/s/f.txt",
        &[
            ("If-None-Match", "\"other\""),
            ("If-Modified-Since", MTIME_HTTP),
        ],
    );
    assert_eq!(r.status, 200);
    let r = request(&site, "GET", "/s/f.txt", &[("If-None-Match", "garbage")]);
    assert_eq!(r.status, 200);
}

#[test]
fn if_modified_since() {
    let site = site_with(b"0123456789");
    let ims = |v: &str| request(&site, "GET", "/s/f.txt", &[("If-Modified-Since", v)]).status;
    assert_eq!(ims(MTIME_HTTP), 304);
    assert_eq!(ims("Tue, 31 Dec 2024 00:00:01 GMT"), 304);
    assert_eq!(ims("Mon, 30 Dec 2024 23:59:59 GMT"), 200);
    assert_eq!(ims("Tuesday, 31-Dec-24 00:00:00 GMT"), 304);
    assert_eq!(ims("not a date"), 200);
    // Sub-second mtimes compare at the one-second resolution of the header.
    let p = site.dir.path().join("f.txt");
    let f = File::options().write(true).open(p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_millis(MTIME * 1000 + 700))
        .unwrap();
    assert_eq!(ims(MTIME_HTTP), 304);
}

#[test]
fn if_match_and_if_unmodified_since() {
    let site = site_with(b"0123456789");
    let etag = request(&site, "GET", "/s/f.txt", &[])
        .h("etag")
        .unwrap()
        .to_string();
    let st = |h: &[(&str, &str)]| request(&site, "GET", "/s/f.txt", h).status;
    assert_eq!(st(&[("If-Match", &etag)]), 200);
    assert_eq!(st(&[("If-Match", "*")]), 200);
    assert_eq!(st(&[("If-Match", "\"x\"")]), 412);
    assert_eq!(
        st(&[("If-Match", &format!("W/{etag}"))]),
        412,
        "strong comparison"
    );
    assert_eq!(st(&[("If-Unmodified-Since", MTIME_HTTP)]), 200);
    assert_eq!(
        st(&[("If-Unmodified-Since", "Mon, 30 Dec 2024 00:00:00 GMT")]),
        412
    );
    assert_eq!(st(&[("If-Unmodified-Since", "junk")]), 200);
}

#[test]
fn ranges() {
    let site = site_with(b"0123456789");
    let range = |v: &str| request(&site, "GET", "/s/f.txt", &[("Range", v)]);
    let r = range("bytes=2-4");
    assert_eq!(r.status_line, "HTTP/1.1 206 Partial Content");
    assert_eq!(r.body.as_deref(), Some(&b"234"[..]));
    assert_eq!(r.h("content-range"), Some("bytes 2-4/10"));
    assert_eq!(r.h("content-length"), Some("3"));
    assert_eq!(r.h("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.h("etag").is_some() && r.h("last-modified").is_some());
    let r = range("bytes=-3");
    assert_eq!((r.status, r.body.as_deref()), (206, Some(&b"789"[..])));
    assert_eq!(r.h("content-range"), Some("bytes 7-9/10"));
    let r = range("bytes=8-");
    assert_eq!((r.status, r.body.as_deref()), (206, Some(&b"89"[..])));
    let r = range("bytes=5-100");
    assert_eq!(r.h("content-range"), Some("bytes 5-9/10"));
    let r = range("bytes=10-");
    assert_eq!(r.status, 416);
    assert_eq!(r.h("content-range"), Some("bytes */10"));
    assert_eq!(r.h("content-length"), Some("0"));
    assert!(r.body.is_none());
    for ignored in ["bytes=0-1,3-4", "bytes=x-y", "lines=1-2", "bytes=5-1"] {
        let r = range(ignored);
        assert_eq!(r.status, 200, "{ignored}");
        assert_eq!(r.body.as_deref(), Some(&b"0123456789"[..]));
    }
}

#[test]
fn if_range() {
    let site = site_with(b"0123456789");
    let etag = request(&site, "GET", "/s/f.txt", &[])
        .h("etag")
        .unwrap()
        .to_string();
    let st = |ir: &str| {
        request(
            &site,
            "GET",
            "/s/f.txt",
            &[("Range", "bytes=0-0"), ("If-Range", ir)],
        )
        .status
    };
    assert_eq!(st(&etag), 206);
    assert_eq!(st(MTIME_HTTP), 206);
    assert_eq!(st("\"stale\""), 200);
    assert_eq!(
        st(&format!("W/{etag}")),
        200,
        "weak tags never match If-Range"
    );
    assert_eq!(st("Mon, 30 Dec 2024 00:00:00 GMT"), 200);
    assert_eq!(st("garbage"), 200);
    // An unsatisfiable range whose If-Range fails is a plain 200.
    let r = request(
        &site,
        "GET",
        "/s/f.txt",
        &[("Range", "bytes=50-"), ("If-Range", "\"x\"")],
    );
    assert_eq!(r.status, 200);
    // A Last-Modified less than a second older than Date is weak (§8.8.2.2).
    let p = site.dir.path().join("f.txt");
    let f = File::options().write(true).open(p).unwrap();
    f.set_modified(httpdate::parse_http_date(std::str::from_utf8(DATE).unwrap()).unwrap())
        .unwrap();
    assert_eq!(st(std::str::from_utf8(DATE).unwrap()), 200);
}

#[test]
fn future_mtime_is_clamped_to_date() {
    let site = site_with(b"x");
    let p = site.dir.path().join("f.txt");
    let f = File::options().write(true).open(p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(4_000_000_000))
        .unwrap();
    let r = request(&site, "GET", "/s/f.txt", &[]);
    assert_eq!(r.h("last-modified"), r.h("date"));
}

#[test]
fn expires() {
    let mut site = site_with(b"body{}");
    site.file("a.css", b"body{}");
    site.expires = vec![(r"\.css$".into(), 3600), (r"\.txt$".into(), u64::MAX)];
    let r = request(&site, "GET", "/s/a.css", &[]);
    assert_eq!(r.h("cache-control"), Some("max-age=3600"));
    assert_eq!(r.h("expires"), Some("Wed, 01 Jan 2025 01:00:00 GMT"));
    let r = request(&site, "GET", "/s/a.css", &[("If-None-Match", "*")]);
    assert_eq!(r.status, 304);
    assert_eq!(r.h("cache-control"), Some("max-age=3600"));
    assert!(r.h("expires").is_some());
    let r = request(&site, "GET", "/s/f.txt", &[]);
    assert_eq!(r.h("cache-control"), Some("max-age=2147483648"));
    assert!(r.h("expires").unwrap().ends_with("GMT"));
}

#[test]
fn precompressed_variants() {
    let mut site = Site::new();
    site.gzip = true;
    site.file("app.js", b"console.log('hello')");
    site.file("app.js.gz", b"GZIPPED");
    site.file("app.js.br", b"BROTLI!!");
    site.file("plain.css", b"x");
    let get = |ae: Option<&str>| {
        let h: Vec<(&str, &str)> = ae.map(|v| ("Accept-Encoding", v)).into_iter().collect();
        request(&site, "GET", "/s/app.js", &h)
    };
    let id = get(None);
    assert_eq!(id.body.as_deref(), Some(&b"console.log('hello')"[..]));
    assert_eq!(id.h("content-encoding"), None);
    assert_eq!(id.h("vary"), Some("Accept-Encoding"));
    let br = get(Some("gzip, deflate, br"));
    assert_eq!(br.body.as_deref(), Some(&b"BROTLI!!"[..]));
    assert_eq!(br.h("content-encoding"), Some("br"));
    assert_eq!(br.h("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(br.h("content-length"), Some("8"));
    assert_eq!(br.h("vary"), Some("Accept-Encoding"));
    let gz = get(Some("gzip"));
    assert_eq!(gz.body.as_deref(), Some(&b"GZIPPED"[..]));
    assert_eq!(gz.h("content-encoding"), Some("gzip"));
    assert_eq!(
        get(Some("br;q=0, gzip")).h("content-encoding"),
        Some("gzip")
    );
    assert_eq!(
        get(Some("br;q=0.5, gzip")).h("content-encoding"),
        Some("gzip")
    );
    assert_eq!(get(Some("x-gzip")).h("content-encoding"), Some("gzip"));
    assert_eq!(get(Some("*")).h("content-encoding"), Some("br"));
    assert_eq!(get(Some("identity")).h("content-encoding"), None);
    let tags = [id.h("etag"), br.h("etag"), gz.h("etag")];
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    assert!(tags[1].unwrap().ends_with("-br\""));
    // Preconditions and ranges apply to the chosen representation.
    let br_tag = br.h("etag").unwrap();
    let r = request(
        &site,
        "GET",
        "/s/app.js",
        &[("Accept-Encoding", "br"), ("If-None-Match", br_tag)],
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.h("vary"), Some("Accept-Encoding"));
    let r = request(&site, "GET", "/s/app.js", &[("If-None-Match", br_tag)]);
    assert_eq!(r.status, 200, "identity does not match the br tag");
    let r = request(
        &site,
        "GET",
        "/s/app.js",
        &[("Accept-Encoding", "br"), ("Range", "bytes=0-1")],
    );
    assert_eq!((r.status, r.body.as_deref()), (206, Some(&b"BR"[..])));
    assert_eq!(r.h("content-range"), Some("bytes 0-1/8"));
    // A file without siblings does not vary.
    let r = request(&site, "GET", "/s/plain.css", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.h("vary"), None);
    // A sibling deleted between lookup and respond falls back to identity.
    let s = site.server();
    let Lookup::File(resolved) = s.lookup(b"/s/app.js") else {
        panic!()
    };
    std::fs::remove_file(site.dir.path().join("app.js.br")).unwrap();
    std::fs::remove_file(site.dir.path().join("app.js.gz")).unwrap();
    let ae = |n: &[u8]| (n == b"accept-encoding").then_some(&b"br, gzip"[..]);
    let req = RequestInfo {
        method: b"GET",
        header: &ae,
        http11: true,
        keep_alive: true,
        date: DATE,
    };
    let r = parse(s.respond(resolved, &req));
    assert_eq!(r.h("content-encoding"), None);
    assert_eq!(r.body.as_deref(), Some(&b"console.log('hello')"[..]));
}
