//! Test helper: feed every input split at every byte offset, the way real sockets
//! deliver it, and check the parsers answer the same as for the whole input.

use crate::http1::{parse_request_head, ChunkedDecoder, Header, ParseError, RequestHead};
use crate::limits::Limits;

/// Parses `input` whole, then checks every prefix: a prefix shorter than the head must
/// be `Ok(None)` (or, for a rejected input, the same error), and any prefix that holds
/// the whole head must give the same answer. Returns the whole-input result.
pub(crate) fn parse_head(
    input: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, Vec<Header>)>, ParseError> {
    let mut headers = Vec::new();
    let whole = parse_request_head(input, limits, &mut headers)
        .map(|head| head.map(|h| (h, headers.clone())));
    let mut reused = Vec::new();
    for cut in 0..input.len() {
        let got = parse_request_head(&input[..cut], limits, &mut reused)
            .map(|head| head.map(|h| (h, reused.clone())));
        match (&whole, &got) {
            (_, Ok(None)) => {}
            (Ok(Some((head, _))), _) => {
                assert!(
                    cut >= head.len,
                    "complete at {cut} before head end {}",
                    head.len
                );
                assert_eq!(&got, &whole, "prefix of {cut} bytes");
            }
            (Err(_), Err(_)) => assert_eq!(&got, &whole, "prefix of {cut} bytes"),
            _ => panic!("prefix of {cut} bytes gave {got:?}, whole gave {whole:?}"),
        }
    }
    whole
}

/// What decoding a chunked body gave: body bytes, input consumed, finished.
pub(crate) type Decoded = (Vec<u8>, usize, bool);

/// Decodes `input` whole, split at every offset into two pieces, and byte by byte;
/// all must agree. Returns the whole-input result.
pub(crate) fn decode_chunked(input: &[u8], limits: &Limits) -> Result<Decoded, ParseError> {
    let whole = decode_pieces([input], limits);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(decode_pieces([a, b], limits), whole, "split at {cut}");
    }
    assert_eq!(
        decode_pieces(input.chunks(1), limits),
        whole,
        "byte by byte"
    );
    whole
}

fn decode_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    limits: &Limits,
) -> Result<Decoded, ParseError> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut out = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        let (n, finished) = decoder.decode(piece, &mut out)?;
        consumed += n;
        if finished {
            assert_eq!(decoder.body_len(), out.len() as u64);
            return Ok((out, consumed, true));
        }
        assert_eq!(n, piece.len(), "an unfinished decoder consumes everything");
    }
    Ok((out, consumed, false))
}
