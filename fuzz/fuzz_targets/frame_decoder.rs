//! Fuzz target: any bytes, fed to a `FrameDecoder` in chunks whose sizes the
//! first input byte picks, with a small body limit; every frame that comes
//! out is decoded, and whatever decodes must re-encode and decode the same.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringraft::rpc::{decode_packet, encode_packet, Frame, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let mut d = FrameDecoder::new(4096);
    for c in rest.chunks(usize::from(chunk).max(1)) {
        d.push(c);
        while let Ok(Some(f)) = d.next_frame() {
            if let Ok(p) = decode_packet(&f) {
                let mut out = BytesMut::new();
                if encode_packet(&mut out, &p).is_ok() {
                    let f2 = Frame::decode_exact(&out, u32::MAX).expect("re-encoded frame decodes");
                    assert_eq!(decode_packet(&f2).expect("re-encoded body decodes"), p);
                }
            }
        }
    }
});
