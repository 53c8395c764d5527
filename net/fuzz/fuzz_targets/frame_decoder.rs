//! Fuzzes the frame splitter and both body decoders (see `net/fuzz/README.md`).

#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in its own file so that `net/tests/protocol_props.rs` runs the same
// code on stable in CI.
#[path = "../shared/frame_decoder.rs"]
mod shared;

fuzz_target!(|data: &[u8]| shared::frame_decoder(data));
