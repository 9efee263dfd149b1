//! Parser throughput: request heads (a browser request and the smallest useful one),
//! the chunked decoder and the uwsgi packet parser. Run with
//! `cargo bench -p capataz-proto`.

use std::hint::black_box;

use capataz_proto::http1::{parse_request_head, push_chunk_header, ChunkedDecoder, LAST_CHUNK};
use capataz_proto::limits::Limits;
use capataz_proto::uwsgi::parse_packet;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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

const TINY: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

fn request_head(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse_request_head");
    for (name, input) in [("browser", BROWSER), ("tiny", TINY)] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        // Reused across iterations, as the server reuses it across requests.
        let mut headers = Vec::with_capacity(limits.max_headers);
        // Measure the accept path: a rejected input (e.g. no Host on 1.1) would
        // benchmark the error path instead.
        assert!(
            matches!(
                parse_request_head(input, &limits, &mut headers),
                Ok(Some(_))
            ),
            "{name} must be a valid request"
        );
        group.bench_function(name, |b| {
            b.iter(|| parse_request_head(black_box(input), &limits, &mut headers))
        });
    }
    group.finish();
}

/// A body of `len` bytes in chunks of `chunk` bytes.
fn chunked_body(len: usize, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let data = vec![b'x'; chunk];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk);
        push_chunk_header(&mut out, n);
        out.extend_from_slice(&data[..n]);
        out.extend_from_slice(b"\r\n");
        left -= n;
    }
    out.extend_from_slice(LAST_CHUNK);
    out
}

fn chunked(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("chunked_decode");
    for (name, chunk) in [("64KiB_in_16B_chunks", 16), ("64KiB_in_4KiB_chunks", 4096)] {
        let input = chunked_body(64 * 1024, chunk);
        group.throughput(Throughput::Bytes(input.len() as u64));
        let mut out = Vec::with_capacity(64 * 1024);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut decoder = ChunkedDecoder::new(&limits);
                decoder.decode(black_box(&input), &mut out)
            })
        });
    }
    group.finish();
}

fn uwsgi(c: &mut Criterion) {
    let vars: &[(&[u8], &[u8])] = &[
        (b"QUERY_STRING", b"v=3"),
        (b"REQUEST_METHOD", b"GET"),
        (b"CONTENT_TYPE", b""),
        (b"CONTENT_LENGTH", b""),
        (b"REQUEST_URI", b"/static/app.js?v=3"),
        (b"PATH_INFO", b"/static/app.js"),
        (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"53422"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_NAME", b"www.example.com"),
        (b"HTTP_HOST", b"www.example.com"),
        (
            b"HTTP_USER_AGENT",
            b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0)",
        ),
        (b"HTTP_ACCEPT", b"text/html,application/xhtml+xml"),
    ];
    let mut block = Vec::new();
    for (k, v) in vars {
        block.extend_from_slice(&(k.len() as u16).to_le_bytes());
        block.extend_from_slice(k);
        block.extend_from_slice(&(v.len() as u16).to_le_bytes());
        block.extend_from_slice(v);
    }
    let mut packet = vec![0];
    packet.extend_from_slice(&(block.len() as u16).to_le_bytes());
    packet.push(0);
    packet.extend_from_slice(&block);

    let mut group = c.benchmark_group("uwsgi_packet");
    group.throughput(Throughput::Bytes(packet.len() as u64));
    let mut parsed = Vec::with_capacity(64);
    group.bench_function("nginx_params", |b| {
        b.iter(|| parse_packet(black_box(&packet), 65535, &mut parsed))
    });
    group.finish();
}

criterion_group!(benches, request_head, chunked, uwsgi);
criterion_main!(benches);
