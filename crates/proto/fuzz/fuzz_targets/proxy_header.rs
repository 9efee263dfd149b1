//! Fuzzes `proxy::parse_proxy_header`: never panics, a parsed header lies inside the
//! input, every strict prefix of it is "need more", and bytes after it change nothing.
#![no_main]

use capataz_proto::proxy::parse_proxy_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(header)) = parse_proxy_header(data) else {
        return;
    };
    assert!(header.len <= data.len());
    for cut in 0..header.len {
        assert_eq!(parse_proxy_header(&data[..cut]), Ok(None), "cut {cut}");
    }
    assert_eq!(parse_proxy_header(&data[..header.len]), Ok(Some(header)));
});
