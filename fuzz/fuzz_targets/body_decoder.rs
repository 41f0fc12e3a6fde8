//! Fuzz target: the first byte picks the message type (so every body
//! decoder is reached), the rest is the body. Decoding must never panic, and
//! whatever decodes must re-encode and decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringraft::core::GroupId;
use ringraft::rpc::{decode_body, decode_packet, encode_packet, Frame};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    if let Ok(p) = decode_body(kind, GroupId(1), 7, Bytes::copy_from_slice(body)) {
        let mut out = BytesMut::new();
        if encode_packet(&mut out, &p).is_ok() {
            let f = Frame::decode_exact(&out, u32::MAX).expect("re-encoded frame decodes");
            assert_eq!(decode_packet(&f).expect("re-encoded body decodes"), p);
        }
    }
});
