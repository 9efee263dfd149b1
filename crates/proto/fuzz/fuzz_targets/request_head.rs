//! Fuzzes `parse_request_head`: never panics, spans stay in bounds, every strict
//! prefix of an accepted head is "need more", and a chunked body after it decodes
//! without panicking.
#![no_main]

use capataz_proto::http1::{parse_request_head, span, BodyFraming, ChunkedDecoder};
use capataz_proto::limits::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_request_line: 128,
        max_headers: 8,
        max_header_field: 128,
        max_head: 1024,
        max_body: Some(1024),
        max_chunk_ext: 16,
        max_trailers: 64,
    };
    let mut headers = Vec::new();
    for limits in [Limits::default(), small] {
        let Ok(Some(head)) = parse_request_head(data, &limits, &mut headers) else {
            continue;
        };
        assert!(head.len <= data.len() && head.len <= limits.max_head);
        for s in [head.method, head.target, head.path, head.query] {
            let _ = span(data, s);
        }
        if let Some(authority) = head.authority {
            // Inside the target, and never carrying userinfo.
            assert!(head.target.0 <= authority.0 && authority.1 <= head.target.1);
            assert!(!span(data, authority).contains(&b'@'));
        }
        for h in &headers {
            let _ = (span(data, h.name), span(data, h.value));
        }
        let n = headers.len();
        assert!(n <= limits.max_headers);
        assert!(head.content_length_idx.is_none_or(|i| usize::from(i) < n));
        assert!(head.content_type_idx.is_none_or(|i| usize::from(i) < n));
        let mut again = Vec::new();
        assert_eq!(
            parse_request_head(&data[..head.len - 1], &limits, &mut again),
            Ok(None),
            "a strict prefix of an accepted head must be incomplete"
        );
        if head.framing == BodyFraming::Chunked {
            let mut decoder = ChunkedDecoder::new(&limits);
            let mut out = Vec::new();
            if let Ok((consumed, _)) = decoder.decode(&data[head.len..], &mut out) {
                assert!(consumed <= data.len() - head.len);
                assert_eq!(decoder.body_len(), out.len() as u64);
            }
        }
    }
});
