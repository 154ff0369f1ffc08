//! Fuzzes the reply-side parser: arbitrary bytes, whole and split, must never panic, and every frame parsed
//! must survive an encode/parse round trip unchanged.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shoal_protocol::{Frame, FrameLimits};

fuzz_target!(|data: &[u8]| {
    // Small limits, so the fuzzer reaches the limit checks without producing megabytes of input.
    let limits = FrameLimits {
        max_bulk_len: 1024,
        max_aggregate_len: 64,
        max_depth: 16,
        max_inline_len: 256,
    };
    let mut buf = BytesMut::from(data);
    let mut whole = Vec::new();
    let whole_err = loop {
        match Frame::parse(&mut buf, &limits) {
            Ok(Some(frame)) => whole.push(frame),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };

    // The same bytes fed in chunks, their size taken from the first byte, must give the same frames.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut buf = BytesMut::new();
    let mut split = Vec::new();
    let mut split_err = None;
    'feed: for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match Frame::parse(&mut buf, &limits) {
                Ok(Some(frame)) => split.push(frame),
                Ok(None) => break,
                Err(e) => {
                    split_err = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(whole, split);
    assert_eq!(whole_err.is_some(), split_err.is_some());

    // Re-encoding is canonical, so the round trip must be exact (attributes dropped inside aggregates are gone
    // from both sides already).
    for frame in &whole {
        let mut bytes = frame.to_bytes().into();
        let again = Frame::parse(&mut bytes, &FrameLimits::default());
        assert_eq!(again.as_ref().ok().and_then(Option::as_ref), Some(frame));
    }
});
