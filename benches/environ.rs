//! In-process microbenches of the Python side of a request, so a regression
//! in the environ build or the app call shows without wrk (issue 3):
//!
//! - `environ/*`: [`wsgi::environ::build`] for a request head, the GIL held;
//! - `handle/hello`: all of [`wsgi::Wsgi::handle`] for `GET /hello` against
//!   `bench/app.py`: take the GIL, build the environ, call the app, its
//!   `start_response`, encode the list response into the output buffer,
//!   release the GIL. Only the socket write is left out.
//!
//! The interpreter is the embedded one, initialised as a worker does it
//! ([`wsgi::Wsgi::boot`]). Run with `cargo bench --bench environ`.
//!
//! The `wsgi` module is compiled into this bench from its source (the crate
//! is a binary, with no library to link against); it needs only
//! `worker::output` and `worker::stream` besides.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use capataz_proto::http1::{parse_request_head, Version};
use capataz_proto::limits::Limits;
use criterion::{criterion_group, criterion_main, Criterion};

// Unused items, and the unit tests' imports (benches build with cfg(test)
// but run no #[test]), are expected here.
#[path = "../src/worker/output.rs"]
#[allow(dead_code, unused_imports)]
mod output;
#[path = "../src/worker/stream.rs"]
#[allow(dead_code, unused_imports)]
mod stream;
#[path = "../src/wsgi/mod.rs"]
#[allow(dead_code, unused_imports)]
mod wsgi;
/// What `wsgi` reaches as `crate::worker::{output, stream}`.
mod worker {
    pub(crate) use crate::output;
    pub(crate) use crate::stream;
}

use wsgi::{AppSpec, Body, Head, ListenerEnv, Request, ThreadState, Wsgi};

/// The request wrk sends for the hello workload.
const HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// A browser's request: 13 header fields, a cookie, a query string.
const BROWSER: &[u8] = b"GET /static/app.js?v=3&lang=en HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/index.html\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.2.3.4\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Priority: u=0, i\r\n\r\n";

const DATE: &[u8] = b"Wed, 25 Nov 2026 21:00:00 GMT";

fn boot() -> Wsgi {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/app.py");
    let spec = AppSpec {
        module: None,
        wsgi_file: Some(&app),
        callable: "application",
        virtualenv: None,
        pythonpath: &[],
        threads: 1,
        processes: 1,
    };
    let listeners = [ListenerEnv {
        server_name: "127.0.0.1".into(),
        server_port: "8080".into(),
    }];
    match Wsgi::boot(&spec, &listeners) {
        Ok(w) => w,
        Err(e) => panic!("cannot boot bench/app.py: {e}"),
    }
}

/// A parsed head and its header fields, as a connection holds them.
struct Parsed {
    buf: &'static [u8],
    head: capataz_proto::http1::RequestHead,
    headers: Vec<capataz_proto::http1::Header>,
}

fn parse(buf: &'static [u8]) -> Parsed {
    let mut headers = Vec::with_capacity(32);
    let head = match parse_request_head(buf, &Limits::default(), &mut headers) {
        Ok(Some(head)) => head,
        other => panic!("bench request does not parse: {other:?}"),
    };
    Parsed { buf, head, headers }
}

impl Parsed {
    fn request(&self) -> Request<'_> {
        Request {
            head_buf: self.buf,
            head: Head::Http {
                head: &self.head,
                headers: &self.headers,
                trusted_proxy: false,
            },
            body: Body::Memory(&[]),
            remote_addr: "127.0.0.1",
            remote_port: "54321",
            listener: 0,
            method: b"GET",
            uri: b"/",
        }
    }
}

fn benches(c: &mut Criterion) {
    let wsgi = boot();
    let requests = [("hello", parse(HELLO)), ("browser", parse(BROWSER))];

    let mut group = c.benchmark_group("environ");
    pyo3::Python::attach(|_py| {
        for (name, parsed) in &requests {
            group.bench_function(*name, |b| {
                b.iter(|| {
                    // SAFETY: the GIL is held (Python::attach); the dict is
                    // dropped inside this closure, still under the GIL.
                    let env = unsafe { wsgi::environ::build(&wsgi, parsed.request()) };
                    black_box(env.expect("environ build failed"))
                })
            });
        }
    });
    group.finish();

    let thread_state = ThreadState::attach_current_thread();
    // fd -1: a hello response is far below the flush threshold, so handle()
    // only appends to the buffer and never writes.
    let mut out = output::Output::new(-1, Duration::from_secs(1));
    let hello = &requests[0].1;
    let mut group = c.benchmark_group("handle");
    group.bench_function("hello", |b| {
        b.iter(|| {
            out.buf.clear();
            let outcome = wsgi.handle(
                &thread_state,
                hello.request(),
                &mut out,
                Version::Http11,
                false,
                true,
                false,
                DATE,
            );
            assert_eq!(outcome.status, 200);
            black_box(out.buf.len())
        })
    });
    group.finish();
    // Python objects are released with the GIL held.
    pyo3::Python::attach(|_py| drop(wsgi));
}

criterion_group!(environ, benches);
criterion_main!(environ);
