//! Fuzzes `ChunkedDecoder`: never panics, and splitting the input at any point (chosen
//! by the first byte) gives the same body, consumption and error as feeding it whole.
#![no_main]

use capataz_proto::http1::{ChunkedDecoder, ParseError};
use capataz_proto::limits::Limits;
use libfuzzer_sys::fuzz_target;

fn decode(pieces: &[&[u8]], limits: &Limits) -> Result<(Vec<u8>, usize, bool), ParseError> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut out = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        let (n, finished) = decoder.decode(piece, &mut out)?;
        assert!(n <= piece.len());
        consumed += n;
        if finished {
            return Ok((out, consumed, true));
        }
        assert_eq!(n, piece.len());
    }
    assert_eq!(decoder.body_len(), out.len() as u64);
    Ok((out, consumed, false))
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_body: Some(4096),
        max_chunk_ext: 16,
        max_trailers: 64,
        ..Limits::default()
    };
    let whole = decode(&[input], &limits);
    let (a, b) = input.split_at(usize::from(cut).min(input.len()));
    assert_eq!(decode(&[a, b], &limits), whole);
});
