//! The one error type of the protocol crate.

/// A framing error: the byte stream cannot be parsed any further. The `Display` text is exactly what Redis puts
/// after `-ERR ` for the same input, so the server can reply with it verbatim and then close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    #[error("Protocol error: expected '$', got '{}'", *.0 as char)]
    ExpectedDollar(u8),
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// A reply-side (client) framing error: an unknown type byte, a malformed number, a missing CRLF, nesting
    /// deeper than allowed, ...
    #[error("Protocol error: {0}")]
    Invalid(&'static str),
}

impl ProtocolError {
    /// The reply text as Redis sends it, byte for byte. It equals the `Display` text except for
    /// [`ProtocolError::ExpectedDollar`] with a non-ASCII byte: Redis's `%c` writes that byte raw, while a Rust
    /// `String` can only hold it UTF-8 encoded.
    pub fn reply_bytes(&self) -> Vec<u8> {
        match self {
            ProtocolError::ExpectedDollar(b) => {
                let mut out = b"Protocol error: expected '$', got '".to_vec();
                out.push(*b);
                out.push(b'\'');
                out
            }
            other => other.to_string().into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_bytes_carry_the_offending_byte_raw() {
        assert_eq!(
            ProtocolError::ExpectedDollar(0xc8).reply_bytes(),
            b"Protocol error: expected '$', got '\xc8'".to_vec()
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'X').reply_bytes(),
            ProtocolError::ExpectedDollar(b'X').to_string().into_bytes()
        );
    }

    #[test]
    fn reply_bytes_equal_the_display_text_for_other_errors() {
        assert_eq!(
            ProtocolError::InlineTooBig.reply_bytes(),
            b"Protocol error: too big inline request".to_vec()
        );
    }
}
