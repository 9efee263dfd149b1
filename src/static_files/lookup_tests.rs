//! Lookups over a real directory tree with symlinks in and out.

use super::testdir::TestDir;
use super::*;
use std::io::Read;
use std::os::unix::fs::symlink;

struct Fixture {
    site: TestDir,
    outside: TestDir,
    map: Vec<(String, PathBuf)>,
}

fn fixture() -> Fixture {
    let site = TestDir::new();
    let outside = TestDir::new();
    site.write("hello.txt", b"hello");
    site.write("css/site.css", b"body{}");
    site.write("docs/index.html", b"<h1>docs</h1>");
    site.write("empty/.keep", b"");
    outside.write("secret.txt", b"SECRET");
    symlink(
        outside.path().join("secret.txt"),
        site.path().join("leak.txt"),
    )
    .unwrap();
    symlink(outside.path(), site.path().join("outdir")).unwrap();
    symlink(site.path().join("hello.txt"), site.path().join("alias.css")).unwrap();
    let map = vec![("/static".to_string(), site.path().to_path_buf())];
    Fixture { site, outside, map }
}

fn files(map: &[(String, PathBuf)], index: &[String], gzip: bool) -> StaticFiles {
    StaticFiles::new(&StaticConfig {
        map,
        expires: &[],
        index,
        gzip,
    })
    .unwrap()
    .unwrap()
}

fn body(l: Lookup) -> Vec<u8> {
    match l {
        Lookup::File(mut r) => {
            let mut v = Vec::new();
            r.file.read_to_end(&mut v).unwrap();
            assert_eq!(v.len() as u64, r.len);
            v
        }
        other => panic!("expected a file, got {other:?}"),
    }
}

fn status(l: Lookup) -> Option<u16> {
    match l {
        Lookup::NotStatic => None,
        Lookup::Reject(s) => Some(s),
        Lookup::File(r) => panic!("served {:?}", r.path),
    }
}

#[test]
fn empty_map_is_none_and_bad_config_is_an_error() {
    let cfg = StaticConfig {
        map: &[],
        expires: &[],
        index: &[],
        gzip: false,
    };
    assert!(StaticFiles::new(&cfg).unwrap().is_none());
    let map = vec![("/s".to_string(), PathBuf::from("/nonexistent/capataz/dir"))];
    let err = StaticFiles::new(&StaticConfig { map: &map, ..cfg }).unwrap_err();
    assert!(err.contains("/nonexistent/capataz/dir"), "{err}");
    let f = fixture();
    let expires = vec![("(".to_string(), 10)];
    let err = StaticFiles::new(&StaticConfig {
        map: &f.map,
        expires: &expires,
        ..cfg
    })
    .unwrap_err();
    assert!(err.contains("static-expires"), "{err}");
    let file_map = vec![("/s".to_string(), f.site.path().join("hello.txt"))];
    assert!(StaticFiles::new(&StaticConfig {
        map: &file_map,
        ..cfg
    })
    .is_err());
}

#[test]
fn serves_regular_files_with_their_type() {
    let f = fixture();
    let s = files(&f.map, &[], false);
    assert_eq!(body(s.lookup(b"/static/hello.txt")), b"hello");
    assert_eq!(body(s.lookup(b"/static//css/./site.css")), b"body{}");
    assert_eq!(body(s.lookup(b"/static/%63ss/site.css")), b"body{}");
    match s.lookup(b"/static/css/site.css") {
        Lookup::File(r) => {
            assert_eq!(r.content_type, "text/css; charset=utf-8");
            assert!(r.path.starts_with(f.site.path().canonicalize().unwrap()));
            assert!(r.inode != 0);
        }
        other => panic!("{other:?}"),
    }
    // A symlink inside the mount is followed, and typed by its own name.
    match s.lookup(b"/static/alias.css") {
        Lookup::File(r) => {
            assert_eq!(r.content_type, "text/css; charset=utf-8");
            assert!(r.path.ends_with("hello.txt"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_files_and_other_paths_fall_through() {
    let f = fixture();
    let s = files(&f.map, &[], false);
    assert_eq!(status(s.lookup(b"/static/nope.txt")), None);
    assert_eq!(status(s.lookup(b"/static/hello.txt/x")), None);
    assert_eq!(status(s.lookup(b"/staticx/hello.txt")), None);
    assert_eq!(status(s.lookup(b"/app")), None);
    assert_eq!(
        status(s.lookup(b"/static/docs")),
        None,
        "no index configured"
    );
    assert_eq!(status(s.lookup(b"/static")), None);
}

#[test]
fn traversal_is_refused() {
    let f = fixture();
    let s = files(&f.map, &["index.html".to_string()], false);
    for (p, want) in [
        (&b"/static/../etc/passwd"[..], 404),
        (b"/static/%2e%2e/%2e%2e/etc/passwd", 404),
        (b"/static/css/../../x", 404),
        (b"/static/..%2f..%2fetc%2fpasswd", 400),
        (b"/static/%00", 400),
        (b"/static/a%5c..%5cb", 400),
        (b"/static/%zz", 400),
        (b"/static/leak.txt", 404),
        (b"/static/outdir/secret.txt", 404),
        (b"/static/outdir", 404),
    ] {
        assert_eq!(
            status(s.lookup(p)),
            Some(want),
            "{}",
            String::from_utf8_lossy(p)
        );
    }
    // A dangling link out of the mount leaks nothing either way.
    symlink("/nonexistent/capataz", f.site.path().join("dangling")).unwrap();
    assert_eq!(status(s.lookup(b"/static/dangling")), None);
    drop(f.outside);
}

#[test]
fn directories_use_the_index() {
    let f = fixture();
    let s = files(
        &f.map,
        &["missing.htm".to_string(), "index.html".to_string()],
        false,
    );
    assert_eq!(body(s.lookup(b"/static/docs/")), b"<h1>docs</h1>");
    assert_eq!(body(s.lookup(b"/static/docs")), b"<h1>docs</h1>");
    match s.lookup(b"/static/docs/") {
        Lookup::File(r) => assert_eq!(r.content_type, "text/html; charset=utf-8"),
        other => panic!("{other:?}"),
    }
    assert_eq!(status(s.lookup(b"/static/empty/")), None);
    // An index that is a symlink out of the mount is refused.
    symlink(
        f.outside.path().join("secret.txt"),
        f.site.path().join("empty/index.html"),
    )
    .unwrap();
    assert_eq!(status(s.lookup(b"/static/empty/")), Some(404));
}

#[test]
fn longest_mount_wins_and_same_prefix_mounts_overlay() {
    let a = TestDir::new();
    let b = TestDir::new();
    let c = TestDir::new();
    a.write("x.txt", b"root-x");
    a.write("static/y.txt", b"root-static-y");
    b.write("y.txt", b"b-y");
    c.write("z.txt", b"c-z");
    let map = vec![
        ("/".to_string(), a.path().to_path_buf()),
        ("/static".to_string(), b.path().to_path_buf()),
        ("/static/".to_string(), c.path().to_path_buf()),
    ];
    let s = files(&map, &[], false);
    assert_eq!(body(s.lookup(b"/x.txt")), b"root-x");
    assert_eq!(body(s.lookup(b"/static/y.txt")), b"b-y");
    assert_eq!(body(s.lookup(b"/static/z.txt")), b"c-z");
    assert_eq!(status(s.lookup(b"/nothing")), None);
}

#[test]
fn precompressed_siblings_are_found_only_with_gzip() {
    let f = fixture();
    f.site.write("app.js", b"console.log(1)");
    f.site.write("app.js.gz", b"GZ");
    f.site.write("app.js.br", b"BR");
    f.site.write("only.css", b"x");
    f.site.write("only.css.gz", b"GZ");
    symlink(
        f.outside.path().join("secret.txt"),
        f.site.path().join("only.css.br"),
    )
    .unwrap();
    let codings = |s: &StaticFiles, p: &[u8]| match s.lookup(p) {
        Lookup::File(r) => r.precompressed.iter().map(|c| c.coding).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let on = files(&f.map, &[], true);
    assert_eq!(codings(&on, b"/static/app.js"), ["br", "gzip"]);
    assert_eq!(codings(&on, b"/static/only.css"), ["gzip"]);
    assert!(codings(&on, b"/static/hello.txt").is_empty());
    let off = files(&f.map, &[], false);
    assert!(codings(&off, b"/static/app.js").is_empty());
}

#[test]
fn fifos_are_not_served() {
    let f = fixture();
    let fifo = f.site.path().join("pipe");
    // mkfifo(1) rather than libc::mkfifo keeps this module free of unsafe.
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let s = files(&f.map, &[], false);
    assert_eq!(status(s.lookup(b"/static/pipe")), None);
    assert!(open_regular(&fifo).is_err());
}

#[test]
fn expires_first_match_wins() {
    let f = fixture();
    let expires = vec![(r"\.css$".to_string(), 60), (r".*".to_string(), 5)];
    let s = StaticFiles::new(&StaticConfig {
        map: &f.map,
        expires: &expires,
        index: &[],
        gzip: false,
    })
    .unwrap()
    .unwrap();
    assert_eq!(s.expires_for(Path::new("/x/a.css")), Some(60));
    assert_eq!(s.expires_for(Path::new("/x/a.js")), Some(5));
}
