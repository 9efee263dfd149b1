//! Unit tests for the chunked decoder; every input goes through the shotgun helper.

use super::*;
use crate::shotgun;

fn decode_with(input: &[u8], limits: &Limits) -> Result<shotgun::Decoded, ParseError> {
    shotgun::decode_chunked(input, limits)
}

/// Decodes a complete body, returning (body, bytes consumed).
fn decode(input: &[u8]) -> (Vec<u8>, usize) {
    match decode_with(input, &Limits::default()) {
        Ok((body, consumed, true)) => (body, consumed),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn err_with(input: &[u8], limits: &Limits) -> ParseError {
    match decode_with(input, limits) {
        Err(e) => e,
        other => panic!("accepted {:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn err(input: &[u8]) -> ParseError {
    err_with(input, &Limits::default())
}

#[test]
fn simple_body() {
    let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert_eq!(decode(input), (b"hello world".to_vec(), input.len()));
}

#[test]
fn empty_body() {
    assert_eq!(decode(b"0\r\n\r\n"), (Vec::new(), 5));
    assert_eq!(decode(b"000\r\n\r\n"), (Vec::new(), 7));
}

#[test]
fn hex_sizes_any_case() {
    let data = vec![b'x'; 0x1a];
    for size in ["1a", "1A", "001a"] {
        let input = [format!("{size}\r\n").as_bytes(), &data, b"\r\n0\r\n\r\n"].concat();
        assert_eq!(decode(&input).0, data);
    }
}

#[test]
fn stops_at_the_end_of_the_body() {
    let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(decode(input), (b"abc".to_vec(), 13));
    // Called again once finished, it consumes nothing.
    let mut d = ChunkedDecoder::new(&Limits::default());
    let mut out = Vec::new();
    assert_eq!(d.decode(input, &mut out), Ok((13, true)));
    assert!(d.is_finished());
    assert_eq!(d.decode(b"more", &mut out), Ok((0, true)));
    assert_eq!(d.body_len(), 3);
}

#[test]
fn partial_body_reports_progress() {
    let mut d = ChunkedDecoder::new(&Limits::default());
    let mut out = Vec::new();
    assert_eq!(d.decode(b"5\r\nhel", &mut out), Ok((6, false)));
    assert_eq!(d.body_len(), 3);
    assert_eq!(out, b"hel");
}

#[test]
fn extensions_are_accepted_and_ignored() {
    for line in [
        "5;name=value",
        "5;a;b=c",
        "5 ;name",
        "5\t; name = value",
        "5;name=\"quoted ; value with \\\" escape\"",
        "5;x=\u{e9}",
    ] {
        let input = format!("{line}\r\nhello\r\n0;last=1\r\n\r\n");
        assert_eq!(decode(input.as_bytes()).0, b"hello", "{line:?}");
    }
}

#[test]
fn extension_limit() {
    let l = Limits {
        max_chunk_ext: 8,
        ..Limits::default()
    };
    assert_eq!(
        decode_with(b"1;abcdefg\r\nx\r\n0\r\n\r\n", &l).unwrap().0,
        b"x"
    );
    // The cap is per line: each line may use it all.
    let each = b"1;abcdefg\r\nx\r\n1;abcdefg\r\ny\r\n0;abcdefg\r\n\r\n";
    assert_eq!(decode_with(each, &l).unwrap().0, b"xy");
    let e = err_with(b"1;abcdefgh\r\nx\r\n0\r\n\r\n", &l);
    assert_eq!((e, e.status()), (ParseError::ChunkExtensionTooLong, 400));
    // Whitespace before the ';' counts too, so it cannot run forever.
    assert_eq!(
        err_with(b"1         ;\r\n", &l),
        ParseError::ChunkExtensionTooLong
    );
}

#[test]
fn control_bytes_in_extensions() {
    assert_eq!(
        err(b"1;a\0b\r\nx\r\n0\r\n\r\n"),
        ParseError::InvalidChunkExtension
    );
    assert_eq!(
        err(b"1;a\x7f\r\nx\r\n0\r\n\r\n"),
        ParseError::InvalidChunkExtension
    );
    assert_eq!(err(b"1;a\rb\r\nx\r\n0\r\n\r\n"), ParseError::BareLineEnding);
}

#[test]
fn invalid_chunk_sizes() {
    for size in ["+5", "-5", "0x5", " 5", "", "g", "5 ", ";a", "\t5"] {
        let input = format!("{size}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(
            err(input.as_bytes()),
            ParseError::InvalidChunkSize,
            "{size:?}"
        );
    }
}

#[test]
fn chunk_size_overflow() {
    // 16 digits fit u64; 17 are refused even with leading zeros.
    let l = Limits::default();
    let mut d = ChunkedDecoder::new(&l);
    assert_eq!(
        d.decode(b"ffffffffffffffff\r\nabc", &mut Vec::new()),
        Ok((21, false))
    );
    assert_eq!(
        err(b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
        ParseError::InvalidChunkSize
    );
    assert_eq!(err(b"10000000000000000\r\n"), ParseError::InvalidChunkSize);
}

#[test]
fn bare_lf_in_chunk_lines() {
    for input in [
        &b"5\nhello\r\n0\r\n\r\n"[..],
        b"5;ext\nhello\r\n0\r\n\r\n",
        b"0\n\r\n",
        b"0\r\n\n",
        b"0\r\nX: y\n\r\n",
        b"5\rhello",
        b"0\r\n\rx",
    ] {
        assert_eq!(err(input), ParseError::BareLineEnding, "{input:?}");
    }
}

#[test]
fn data_must_end_in_crlf() {
    for input in [
        &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\rX0\r\n\r\n",
    ] {
        assert_eq!(err(input), ParseError::InvalidChunkTerminator, "{input:?}");
    }
}

#[test]
fn trailers_are_accepted_and_discarded() {
    let input = b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Checksum:abc\r\nX-Empty:\r\n\r\nNEXT";
    assert_eq!(decode(input), (b"hello".to_vec(), input.len() - 4));
}

#[test]
fn bad_trailer_syntax() {
    for trailer in [
        "X : y", " X: y", "\tX: y", "X y", ": y", "X(: y", "X: a\0b", "X: a\x01",
    ] {
        let input = format!("0\r\n{trailer}\r\n\r\n");
        assert_eq!(
            err(input.as_bytes()),
            ParseError::InvalidTrailer,
            "{trailer:?}"
        );
    }
}

#[test]
fn trailer_limit() {
    // "X: 1234\r\n" is 9 bytes, plus the final CRLF: 11.
    let input = b"0\r\nX: 1234\r\n\r\n";
    let fits = Limits {
        max_trailers: 11,
        ..Limits::default()
    };
    assert!(decode_with(input, &fits).unwrap().2);
    let over = Limits {
        max_trailers: 10,
        ..Limits::default()
    };
    let e = err_with(input, &over);
    assert_eq!((e, e.status()), (ParseError::TrailersTooLarge, 431));
}

#[test]
fn body_limit() {
    let l = Limits {
        max_body: Some(10),
        ..Limits::default()
    };
    assert_eq!(
        decode_with(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", &l)
            .unwrap()
            .0,
        b"helloworld"
    );
    let e = err_with(b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", &l);
    assert_eq!((e, e.status()), (ParseError::BodyTooLarge, 413));
    // Refused from the size line alone, before any data arrives.
    let mut d = ChunkedDecoder::new(&l);
    assert_eq!(
        d.decode(b"b\r", &mut Vec::new()),
        Err(ParseError::BodyTooLarge)
    );
    let mut d = ChunkedDecoder::new(&l);
    assert_eq!(
        d.decode(b"ffffffffffffffff;", &mut Vec::new()),
        Err(ParseError::BodyTooLarge)
    );
}

#[test]
fn unlimited_body_by_default() {
    let mut d = ChunkedDecoder::new(&Limits::default());
    let mut out = Vec::new();
    assert_eq!(d.decode(b"8000000000000000\r\n", &mut out), Ok((18, false)));
}
