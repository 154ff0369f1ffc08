//! RESP2 and RESP3 on the wire, and nothing else: bytes in, frames out.
//!
//! * [`frame`] — the [`Frame`] enum covering every RESP2/RESP3 type, its incremental parser and its encoder
//!   (used by clients and tests, where replies of every type arrive).
//! * [`request`] — the server's request parser: multibulk and inline commands parsed in place into argument
//!   spans over the read buffer, with Redis's limits and exact protocol error texts.
//! * [`reply`] — [`ReplyWriter`], which encodes replies straight into an output buffer for either protocol
//!   version, downgrading RESP3-only types the way Redis does for RESP2 clients.
//!
//! No I/O and no async runtime here, so that the server, the client, the fuzzer and the property tests all
//! share one implementation.

pub mod error;
pub mod frame;
pub mod reply;
pub mod request;

pub use error::ProtocolError;
pub use frame::{Frame, FrameDecoder, FrameLimits};
pub use reply::{Proto, ReplyWriter};
pub use request::{Request, RequestLimits, RequestParser};
