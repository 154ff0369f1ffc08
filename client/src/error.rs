//! [`ClientError`], the one error type of the client crate, and the single mapping from an error *reply* to it.
//!
//! Two kinds of failure must not be confused: a transport failure (I/O, a framing error, a timeout, a closed
//! peer) leaves the connection unusable, because replies may be lost or out of step; an error reply (`-ERR
//! ...`, `-MOVED ...`) is an answer like any other and the connection goes on.

use bytes::Bytes;
use shoal_cluster::Redirect;
use shoal_protocol::{Frame, ProtocolError};

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed: connect refused, reset, broken pipe ...
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent bytes that are not RESP; the stream cannot be read any further.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// The server answered with an error reply that is not a cluster redirection, e.g. `ERR unknown command`.
    #[error("server error: {0}")]
    Server(String),
    /// The server answered with a cluster redirection or refusal (`MOVED`, `ASK`, `TRYAGAIN`, `CROSSSLOT`,
    /// `CLUSTERDOWN`).
    #[error("cluster redirection: {}", .0.error_text())]
    Redirect(Redirect),
    /// The peer closed the connection, or an earlier transport failure made this connection unusable.
    #[error("connection closed")]
    Closed,
    /// The operation did not finish within the connection's timeout; the connection is now unusable.
    #[error("timed out")]
    Timeout,
    /// `command` or `pipeline` was called while replies of earlier `queue`d commands were still unread, so the
    /// next reply would not be theirs.
    #[error("{0} queued replies are still unread")]
    Pending(usize),
    /// A well-formed reply of the wrong shape, e.g. a `CLUSTER SLOTS` reply that is not an array of ranges.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    /// The cluster client ran out of redirections or retries; `last` is the final failure.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: usize, last: Box<ClientError> },
    /// The cluster client knows no node to ask: no seed answered, or a slot has no owner after a refresh.
    #[error("no cluster node available: {0}")]
    NoNode(String),
}

impl ClientError {
    /// The error an error reply stands for: a [`Redirect`] when the text is one, [`ClientError::Server`]
    /// otherwise. `None` when `frame` is not an error reply.
    pub fn from_reply(frame: &Frame) -> Option<ClientError> {
        match frame {
            Frame::Error(text) | Frame::BlobError(text) => Some(Self::from_error_text(text)),
            _ => None,
        }
    }

    /// The error for an error reply's text (without the leading `-`).
    pub fn from_error_text(text: &Bytes) -> ClientError {
        let text = String::from_utf8_lossy(text);
        match Redirect::parse(&text) {
            Some(redirect) => ClientError::Redirect(redirect),
            None => ClientError::Server(text.into_owned()),
        }
    }

    /// True for failures after which the connection cannot be used again.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::Io(_) | ClientError::Protocol(_) | ClientError::Closed | ClientError::Timeout
        )
    }
}

/// Turns an error reply into `Err`, passing every other frame through.
pub fn check_reply(frame: Frame) -> Result<Frame, ClientError> {
    match ClientError::from_reply(&frame) {
        Some(err) => Err(err),
        None => Ok(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_cluster::Slot;

    #[test]
    fn a_plain_error_reply_is_a_server_error() {
        let err = check_reply(Frame::Error(Bytes::from_static(b"ERR unknown command 'FOO'")));
        assert!(matches!(err, Err(ClientError::Server(text)) if text == "ERR unknown command 'FOO'"));
    }

    #[test]
    fn a_redirection_reply_is_a_redirect_error() {
        let err = check_reply(Frame::Error(Bytes::from_static(b"MOVED 3999 127.0.0.1:6381")));
        let Err(ClientError::Redirect(Redirect::Moved { slot, addr })) = err else {
            panic!("{err:?}")
        };
        assert_eq!(slot, Slot::new(3999).unwrap_or_default());
        assert_eq!(addr, "127.0.0.1:6381");
    }

    #[test]
    fn a_blob_error_is_an_error_too() {
        assert!(matches!(
            check_reply(Frame::BlobError(Bytes::from_static(b"SYNTAX bad"))),
            Err(ClientError::Server(_))
        ));
    }

    #[test]
    fn other_frames_pass_through() {
        assert_eq!(check_reply(Frame::Integer(3)).ok(), Some(Frame::Integer(3)));
        assert_eq!(check_reply(Frame::Null).ok(), Some(Frame::Null));
    }

    #[test]
    fn transport_failures_are_told_apart_from_replies() {
        assert!(ClientError::Closed.is_transport());
        assert!(ClientError::Timeout.is_transport());
        assert!(!ClientError::Server("ERR x".into()).is_transport());
        assert!(!ClientError::Redirect(Redirect::TryAgain).is_transport());
    }
}
