//! The body of the `frame_decoder` fuzz target, shared (through `#[path]`) by the
//! cargo-fuzz binary `net/fuzz/fuzz_targets/frame_decoder.rs` and the stable test
//! `net/tests/protocol_props.rs`, so CI runs exactly what the fuzzer runs.

use bytes::BytesMut;
use strata_net::protocol::{HEADER_LEN, Request, Response, split_frame};

/// Splits `data` into frames under a small limit and decodes every frame both as a
/// request and as a response. Panics only if the protocol code breaks a promise: a
/// decoder panicking, a frame over the limit, bytes lost or consumed from an incomplete
/// frame, or a decoded message that does not survive re-encoding.
pub fn frame_decoder(data: &[u8]) {
    // The first byte picks the frame limit (16 to 4096 bytes), so oversize frames occur.
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let max_frame = HEADER_LEN + usize::from(pick) * 16;
    let mut buf = BytesMut::from(rest);
    loop {
        let before = buf.len();
        match split_frame(&mut buf, max_frame) {
            Ok(Some(frame)) => {
                assert!(HEADER_LEN + frame.body.len() <= max_frame);
                assert_eq!(buf.len(), before - HEADER_LEN - frame.body.len());
                if let Ok(req) = Request::decode(frame.kind, frame.body.clone()) {
                    let mut out = BytesMut::new();
                    if let Some(tail) = req.encode(frame.request_id, &mut out) {
                        out.extend_from_slice(&tail);
                    }
                    let again = split_frame(&mut out, usize::MAX).unwrap().unwrap();
                    assert_eq!(again.request_id, frame.request_id);
                    assert_eq!(Request::decode(again.kind, again.body).unwrap(), req);
                }
                if let Ok(resp) = Response::decode(frame.kind, frame.body) {
                    let mut out = BytesMut::new();
                    if let Some(tail) = resp.encode(frame.request_id, &mut out) {
                        out.extend_from_slice(&tail);
                    }
                    let again = split_frame(&mut out, usize::MAX).unwrap().unwrap();
                    assert_eq!(again.request_id, frame.request_id);
                    assert_eq!(Response::decode(again.kind, again.body).unwrap(), resp);
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame was consumed");
                return;
            }
            Err(_) => return,
        }
    }
}
