//! The `chunked` transfer coding decoder (RFC 9112 §7.1): an explicit state machine,
//! one small function per state, with hard caps on extensions, trailers and body size.

use super::bytes::{is_field_byte, TCHAR};
use super::ParseError;
use crate::limits::Limits;

/// Where the decoder is in the chunked grammar:
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*("0") [ chunk-ext ] CRLF
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits.
    Size,
    /// BWS after the size: only `;` (an extension) may follow (§7.1.1).
    SizeWhitespace,
    /// Inside chunk extensions, up to the CR. Accepted and ignored.
    Extension,
    /// Expecting the LF of the chunk-size line.
    SizeLf,
    /// Copying chunk-data; `remaining` bytes left in this chunk.
    Data,
    /// Expecting the CR after chunk-data.
    DataCr,
    /// Expecting the LF after chunk-data.
    DataLf,
    /// At the start of a trailer line, or of the final CRLF.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value, up to the CR.
    TrailerValue,
    /// Expecting the LF ending a trailer line.
    TrailerLf,
    /// Expecting the LF of the final CRLF.
    EndLf,
    /// The body is complete; nothing more is consumed.
    Done,
}

/// Decodes a `chunked` request body incrementally. Feed it whatever bytes arrive;
/// it never needs them again.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being parsed, then the bytes left in the current chunk.
    remaining: u64,
    size_digits: u8,
    ext_len: usize,
    trailer_len: usize,
    body_len: u64,
    max_body: Option<u64>,
    max_chunk_ext: usize,
    max_trailers: usize,
}

/// A chunk-size of more than 16 hex digits cannot fit in u64; longer sizes (even with
/// leading zeros) are rejected rather than risk an overflow disagreement with a proxy.
const MAX_SIZE_DIGITS: u8 = 16;

impl ChunkedDecoder {
    /// A decoder at the start of a body, enforcing `max_body`, `max_chunk_ext` and
    /// `max_trailers` from `limits`.
    pub fn new(limits: &Limits) -> Self {
        ChunkedDecoder {
            state: State::Size,
            remaining: 0,
            size_digits: 0,
            ext_len: 0,
            trailer_len: 0,
            body_len: 0,
            max_body: limits.max_body,
            max_chunk_ext: limits.max_chunk_ext,
            max_trailers: limits.max_trailers,
        }
    }

    /// Decodes as much of `input` as possible, appending body data to `out`.
    ///
    /// Returns the bytes of `input` consumed and whether the body is finished (last
    /// chunk, trailers and final CRLF all seen). Once finished, bytes after the body
    /// (a pipelined request) are left unconsumed. After an error the decoder is unusable.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), ParseError> {
        let mut pos = 0;
        loop {
            if self.state == State::Done {
                return Ok((pos, true));
            }
            if pos == input.len() {
                return Ok((pos, false));
            }
            if self.state == State::Data {
                pos += self.data(&input[pos..], out);
                continue;
            }
            let b = input[pos];
            pos += 1;
            self.state = match self.state {
                State::Size => self.size(b)?,
                State::SizeWhitespace => self.size_whitespace(b)?,
                State::Extension => self.extension(b)?,
                State::SizeLf => self.size_lf(b)?,
                State::DataCr => expect(b, b'\r', State::DataLf)?,
                State::DataLf => expect(b, b'\n', State::Size)?,
                State::TrailerStart => self.trailer_start(b)?,
                State::TrailerName => self.trailer_name(b)?,
                State::TrailerValue => self.trailer_value(b)?,
                State::TrailerLf => self.trailer_byte(b, b'\n', State::TrailerStart)?,
                State::EndLf => self.trailer_byte(b, b'\n', State::Done)?,
                State::Data | State::Done => unreachable!("handled above"),
            };
        }
    }

    /// Decoded body bytes so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Whether the whole body, trailers included, has been decoded.
    pub fn is_finished(&self) -> bool {
        self.state == State::Done
    }

    /// chunk-size = 1*HEXDIG. No sign, no `0x`, no leading whitespace.
    fn size(&mut self, b: u8) -> Result<State, ParseError> {
        if let Some(digit) = hex_value(b) {
            if self.size_digits == MAX_SIZE_DIGITS {
                return Err(ParseError::InvalidChunkSize);
            }
            self.size_digits += 1;
            // Cannot overflow: at most 16 digits.
            self.remaining = (self.remaining << 4) | u64::from(digit);
            return Ok(State::Size);
        }
        if self.size_digits == 0 {
            return Err(ParseError::InvalidChunkSize);
        }
        self.check_body_limit()?;
        match b {
            b'\r' => Ok(State::SizeLf),
            b';' => self.extension_byte(State::Extension),
            b' ' | b'\t' => self.extension_byte(State::SizeWhitespace),
            b'\n' => Err(ParseError::BareLineEnding),
            _ => Err(ParseError::InvalidChunkSize),
        }
    }

    /// §7.1.1 allows BWS before the `;` of an extension, but not before the CRLF.
    fn size_whitespace(&mut self, b: u8) -> Result<State, ParseError> {
        match b {
            b' ' | b'\t' => self.extension_byte(State::SizeWhitespace),
            b';' => self.extension_byte(State::Extension),
            _ => Err(ParseError::InvalidChunkSize),
        }
    }

    /// Extensions are ignored, so only their bytes are checked: any field byte (which
    /// covers tokens, `=`, BWS and quoted strings) up to the CR; no other CTLs.
    fn extension(&mut self, b: u8) -> Result<State, ParseError> {
        match b {
            b'\r' => Ok(State::SizeLf),
            b'\n' => Err(ParseError::BareLineEnding),
            _ if is_field_byte(b) => self.extension_byte(State::Extension),
            _ => Err(ParseError::InvalidChunkExtension),
        }
    }

    fn extension_byte(&mut self, next: State) -> Result<State, ParseError> {
        self.ext_len += 1;
        if self.ext_len > self.max_chunk_ext {
            return Err(ParseError::ChunkExtensionTooLong);
        }
        Ok(next)
    }

    fn size_lf(&mut self, b: u8) -> Result<State, ParseError> {
        if b != b'\n' {
            return Err(ParseError::BareLineEnding);
        }
        self.size_digits = 0;
        self.ext_len = 0;
        Ok(if self.remaining == 0 {
            State::TrailerStart
        } else {
            State::Data
        })
    }

    /// Copies as much of the current chunk as `input` holds; returns bytes consumed.
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let n = input
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        out.extend_from_slice(&input[..n]);
        self.remaining -= n as u64;
        self.body_len += n as u64;
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
        n
    }

    /// Checked when a chunk's size is known, before any of its data is accepted, so an
    /// oversized body is refused without reading it.
    fn check_body_limit(&self) -> Result<(), ParseError> {
        match self.max_body {
            Some(max) if self.body_len.saturating_add(self.remaining) > max => {
                Err(ParseError::BodyTooLarge)
            }
            _ => Ok(()),
        }
    }

    /// trailer-section = *( field-line CRLF ), then the final CRLF. Fields are parsed
    /// only to validate them (RFC 9112 §7.1.2 lets us discard them). obs-fold is
    /// rejected as in the head.
    fn trailer_start(&mut self, b: u8) -> Result<State, ParseError> {
        self.count_trailer_byte()?;
        match b {
            b'\r' => Ok(State::EndLf),
            b'\n' => Err(ParseError::BareLineEnding),
            _ if TCHAR[usize::from(b)] => Ok(State::TrailerName),
            _ => Err(ParseError::InvalidTrailer),
        }
    }

    /// No whitespace is allowed between a field name and its colon (RFC 9112 §5.1).
    fn trailer_name(&mut self, b: u8) -> Result<State, ParseError> {
        self.count_trailer_byte()?;
        match b {
            b':' => Ok(State::TrailerValue),
            _ if TCHAR[usize::from(b)] => Ok(State::TrailerName),
            _ => Err(ParseError::InvalidTrailer),
        }
    }

    fn trailer_value(&mut self, b: u8) -> Result<State, ParseError> {
        self.count_trailer_byte()?;
        match b {
            b'\r' => Ok(State::TrailerLf),
            b'\n' => Err(ParseError::BareLineEnding),
            _ if is_field_byte(b) => Ok(State::TrailerValue),
            _ => Err(ParseError::InvalidTrailer),
        }
    }

    fn trailer_byte(&mut self, b: u8, want: u8, next: State) -> Result<State, ParseError> {
        self.count_trailer_byte()?;
        if b != want {
            return Err(ParseError::BareLineEnding);
        }
        Ok(next)
    }

    fn count_trailer_byte(&mut self) -> Result<(), ParseError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_trailers {
            return Err(ParseError::TrailersTooLarge);
        }
        Ok(())
    }
}

/// The CRLF after chunk-data is mandatory (RFC 9112 §7.1); anything else means the
/// declared size disagrees with the data.
fn expect(b: u8, want: u8, next: State) -> Result<State, ParseError> {
    if b == want {
        Ok(next)
    } else {
        Err(ParseError::InvalidChunkTerminator)
    }
}

#[inline]
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
