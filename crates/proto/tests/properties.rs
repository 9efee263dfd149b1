//! Property tests over the public API: no input panics a parser, and what the encoders
//! (or a well-behaved client) produce parses back to what went in.

use capataz_proto::http1::{
    parse_request_head, push_chunk_header, span, BodyFraming, ChunkedDecoder, ParseError, Version,
    CHUNK_TRAILER_CRLF, LAST_CHUNK,
};
use capataz_proto::limits::Limits;
use capataz_proto::uwsgi::parse_packet;
use proptest::prelude::*;

/// Feeds `input` to a fresh decoder in pieces cut at `cuts` (sorted offsets).
fn decode_in_pieces(
    input: &[u8],
    cuts: &[usize],
    limits: &Limits,
) -> Result<(Vec<u8>, usize, bool), ParseError> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        let (n, finished) = decoder.decode(&input[start..end], &mut out)?;
        consumed += n;
        if finished {
            return Ok((out, consumed, true));
        }
        start = end;
    }
    Ok((out, consumed, false))
}

fn small_limits() -> Limits {
    Limits {
        max_request_line: 64,
        max_headers: 8,
        max_header_field: 64,
        max_head: 512,
        max_body: Some(4096),
        max_chunk_ext: 32,
        max_trailers: 64,
    }
}

/// A chunk extension as a client might send it: `;name`, `;name=token` or
/// `;name="quoted"`, with optional BWS.
fn extension() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,8}".prop_map(|n| format!(";{n}")),
        ("[a-z]{1,8}", "[A-Za-z0-9]{0,8}").prop_map(|(n, v)| format!("; {n}={v}")),
        ("[a-z]{1,8}", "[ -!#-\\[\\]-~]{0,8}").prop_map(|(n, v)| format!(";{n}=\"{v}\\\"\"")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut headers = Vec::new();
        for limits in [Limits::default(), small_limits()] {
            let _ = parse_request_head(&input, &limits, &mut headers);
            let _ = decode_in_pieces(&input, &[input.len() / 2], &limits);
        }
        let _ = parse_packet(&input, 65535, &mut Vec::new());
        let _ = parse_packet(&input, 16, &mut Vec::new());
    }

    #[test]
    fn arbitrary_fields_never_panic(
        fields in proptest::collection::vec(any::<u8>(), 0..512),
        chunked in any::<bool>(),
    ) {
        // Behind a valid request line and Host, so the header and framing code is
        // reached.
        let line: &[u8] = if chunked {
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        } else {
            b"GET /x?y HTTP/1.1\r\nHost: x\r\n"
        };
        let input = [line, &fields[..], b"\r\n\r\n"].concat();
        let mut headers = Vec::new();
        if let Ok(Some(head)) = parse_request_head(&input, &Limits::default(), &mut headers) {
            prop_assert!(head.len <= input.len());
            for h in &headers {
                let _ = (span(&input, h.name), span(&input, h.value));
            }
        }
    }

    #[test]
    fn chunked_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        sizes in proptest::collection::vec(1usize..300, 1..32),
        extensions in proptest::collection::vec(extension(), 33),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        // Encode `body` as chunks of the given sizes (cycled), each with an extension.
        let mut encoded = Vec::new();
        let mut rest = &body[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            let mut header = Vec::new();
            push_chunk_header(&mut header, n);
            // Splice the extension in before the CRLF.
            header.truncate(header.len() - 2);
            header.extend_from_slice(extensions[i % extensions.len()].as_bytes());
            header.extend_from_slice(b"\r\n");
            encoded.extend_from_slice(&header);
            encoded.extend_from_slice(&rest[..n]);
            encoded.extend_from_slice(CHUNK_TRAILER_CRLF);
            rest = &rest[n..];
            i += 1;
        }
        encoded.extend_from_slice(LAST_CHUNK);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(encoded.len() + 1)).collect();
        cuts.sort_unstable();
        let decoded = decode_in_pieces(&encoded, &cuts, &Limits::default());
        prop_assert_eq!(decoded, Ok((body, encoded.len(), true)));
    }

    #[test]
    fn header_sets_round_trip(
        method in "[A-Z]{1,10}",
        path in "/[A-Za-z0-9/._~%-]{0,40}",
        query in proptest::option::of("[A-Za-z0-9=&%+]{0,40}"),
        fields in proptest::collection::vec(
            ("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", "([!-~\u{80}-\u{ff}]([ \t!-~\u{80}-\u{ff}]{0,30}[!-~])?)?"),
            0..20,
        ),
        http10 in any::<bool>(),
        // HTTP/1.2 to 1.9 are processed as 1.1 (RFC 9110 §2.5).
        higher_minor in proptest::option::of(2u8..=9),
        host_name in prop::sample::select(&["Host", "host", "HOST", "hOsT"][..]),
        host_value in "([A-Za-z0-9.-]{1,30}(:[0-9]{1,5})?)?",
        host_at in any::<prop::sample::Index>(),
        host_on_http10 in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut fields: Vec<(String, Vec<u8>)> = fields
            .into_iter()
            .filter(|(name, _)| {
                !["content-length", "transfer-encoding", "host"].contains(&name.to_ascii_lowercase().as_str())
            })
            // Values as latin-1 bytes, so obs-text is exercised too.
            .map(|(name, value)| (name, value.chars().map(|c| c as u32 as u8).collect()))
            .collect();
        // Exactly one Host, anywhere among the fields: required on 1.1 (RFC 9112 §3.2),
        // optional on 1.0.
        if !http10 || host_on_http10 {
            let at = host_at.index(fields.len() + 1);
            fields.insert(at, (host_name.to_string(), host_value.into_bytes()));
        }
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let version = match (http10, higher_minor) {
            (true, _) => "HTTP/1.0".to_string(),
            (false, None) => "HTTP/1.1".to_string(),
            (false, Some(minor)) => format!("HTTP/1.{minor}"),
        };
        let mut request = format!("{method} {target} {version}\r\n").into_bytes();
        for (name, value) in &fields {
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");

        let mut headers = Vec::new();
        let limits = Limits::default();
        let head = parse_request_head(&request, &limits, &mut headers)
            .expect("valid request")
            .expect("complete request");
        prop_assert_eq!(head.len, request.len());
        prop_assert_eq!(span(&request, head.method), method.as_bytes());
        prop_assert_eq!(span(&request, head.target), target.as_bytes());
        prop_assert_eq!(span(&request, head.path), path.as_bytes());
        prop_assert_eq!(span(&request, head.query), query.as_deref().unwrap_or("").as_bytes());
        prop_assert_eq!(head.framing, BodyFraming::None);
        prop_assert_eq!(head.version, if http10 { Version::Http10 } else { Version::Http11 });
        prop_assert_eq!(headers.len(), fields.len());
        for (h, (name, value)) in headers.iter().zip(&fields) {
            prop_assert_eq!(span(&request, h.name), name.as_bytes());
            prop_assert_eq!(span(&request, h.value), &value[..]);
        }
        // Any strict prefix is incomplete.
        let cut = cut.index(request.len());
        prop_assert_eq!(parse_request_head(&request[..cut], &limits, &mut headers), Ok(None));
    }
}

/// The request_head fuzz seeds are meant to be accepted requests, so that the fuzzer
/// starts from inputs that get past the head parser's checks.
#[test]
fn request_head_fuzz_seeds_are_accepted() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/request_head");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).expect("seed dir") {
        let path = entry.expect("seed entry").path();
        let input = std::fs::read(&path).expect("seed file");
        let mut headers = Vec::new();
        for limits in [Limits::default(), small_limits()] {
            let head = parse_request_head(&input, &limits, &mut headers);
            assert!(matches!(head, Ok(Some(_))), "{}: {head:?}", path.display());
        }
        seeds += 1;
    }
    assert!(seeds > 0, "no seeds in {dir}");
}
