//! Fuzzes `uwsgi::parse_packet`: never panics, var spans stay inside the vars block,
//! and every strict prefix of an accepted packet is "need more".
#![no_main]

use capataz_proto::http1::span;
use capataz_proto::uwsgi::{parse_packet, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut vars = Vec::new();
    for max_vars in [65535, 64] {
        let Ok(Some(packet)) = parse_packet(data, max_vars, &mut vars) else {
            continue;
        };
        assert!(packet.len <= data.len() && packet.len - HEADER_LEN <= max_vars);
        for &(k, v) in &vars {
            assert!(!span(data, k).is_empty());
            assert!(k.0 as usize >= HEADER_LEN && v.1 as usize <= packet.len);
            let _ = span(data, v);
        }
        let mut again = Vec::new();
        assert_eq!(parse_packet(&data[..packet.len - 1], max_vars, &mut again), Ok(None));
    }
});
