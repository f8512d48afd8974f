//! Fuzzes `wire::xdr::decode`: no input may panic, and any datagram it accepts must
//! re-encode to the same bytes (the decoder accepts only canonical messages).
//!
//! The codec is compiled from its source files, with the metric types it uses (and the
//! wire-safety rules those call), so this crate does not build the whole host (wasmtime).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../host/src/metric/mod.rs"]
mod metric;
#[allow(dead_code, unused_imports)]
#[path = "../shared/wire/mod.rs"]
mod wire;
use wire::xdr;

fuzz_target!(|datagram: &[u8]| {
    if let Ok(message) = xdr::decode(datagram) {
        let mut encoded = Vec::new();
        if let Err(err) = xdr::encode_with_limit(&message, usize::MAX, &mut encoded) {
            panic!("a decoded message does not encode: {err}");
        }
        assert_eq!(encoded, datagram, "decode accepted a non-canonical datagram: {message:?}");
    }
});
