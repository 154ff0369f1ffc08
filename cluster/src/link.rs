//! Cluster bus links as the state machine sees them: an id per connection, its direction, and which node it
//! belongs to once known. The sockets themselves are the driver's.
//!
//! As in Redis, every pair of nodes has two links: each node connects to the other (outbound, "to") and sends
//! its PING, MEET, FAIL and UPDATE messages there, and answers the other's pings on the link the other opened
//! (inbound, "from"). An inbound link belongs to no node until a message on it names a known sender.

use std::net::IpAddr;

use crate::node::NodeId;

/// One bus connection. Ids are allocated by the state machine, for both directions, and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link#{}", self.0)
    }
}

/// Which side opened the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDirection {
    /// We connected to the node ("to" in CLUSTER LINKS).
    Outbound,
    /// The node connected to us ("from" in CLUSTER LINKS).
    Inbound,
}

impl LinkDirection {
    /// The word CLUSTER LINKS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkDirection::Outbound => "to",
            LinkDirection::Inbound => "from",
        }
    }
}

/// A link as CLUSTER LINKS reports it; the driver adds `events` and the send-buffer sizes, which only it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub link: LinkId,
    pub direction: LinkDirection,
    pub node: NodeId,
    /// When the link was created (unix ms).
    pub created_ms: u64,
}

/// The state machine's record of one link.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub direction: LinkDirection,
    /// The node the link belongs to: for outbound links from creation (possibly a handshake placeholder), for
    /// inbound ones from the first message of a known sender.
    pub node: Option<NodeId>,
    /// The peer's IP: the address we connected to, or the one an inbound connection came from.
    pub peer_ip: IpAddr,
    /// Our own IP on this connection, for inbound links (how a node learns its address from a MEET).
    pub local_ip: Option<IpAddr>,
    pub created_ms: u64,
    /// Outbound links are usable once the driver reports the connection established; inbound ones at once.
    pub established: bool,
}
