//! Fuzzes the server's request parser: arbitrary bytes must never panic, and feeding them in chunks (the
//! chunk size taken from the first input byte) must give exactly the requests and error of parsing them whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_protocol::{ProtocolError, RequestLimits, RequestParser};

type Outcome = (Vec<Vec<Vec<u8>>>, Option<ProtocolError>);

fn parse(data: &[u8], step: usize, limits: &RequestLimits) -> Outcome {
    let mut parser = RequestParser::new();
    let mut requests = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for chunk in data.chunks(step.max(1)) {
        pending.extend_from_slice(chunk);
        loop {
            match parser.parse(&pending, limits) {
                Ok(Some(n)) => {
                    let req = parser.request(&pending);
                    assert_eq!(req.iter().len(), req.len());
                    requests.push(req.iter().map(<[u8]>::to_vec).collect());
                    pending.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (requests, Some(e)),
            }
        }
    }
    (requests, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let limits = RequestLimits {
        max_bulk_len: 4096,
        authenticated: first & 0x80 == 0,
    };
    let whole = parse(rest, rest.len(), &limits);
    let split = parse(rest, usize::from(first & 0x7f), &limits);
    // Past the 64 KiB line limit the error may come before or after more bytes arrive, but only then.
    if rest.len() <= 64 * 1024 {
        assert_eq!(whole, split);
    }
});
