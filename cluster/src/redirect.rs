//! The closed set of cluster redirections and refusals, shared by the server (which writes them) and the
//! client (which parses and follows them), so the two cannot drift apart. Texts are Redis Cluster's, which
//! every cluster client parses.

use crate::slot::Slot;

/// Why a keyed command is not executed here, and where to go instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The slot lives on another node for good: `-MOVED <slot> <host>:<port>`.
    Moved { slot: Slot, addr: String },
    /// The slot is being migrated and this key is already at the target: `-ASK <slot> <host>:<port>`.
    Ask { slot: Slot, addr: String },
    /// The keys of one command are in different slots.
    CrossSlot,
    /// A multi-key command during a migration found only some of its keys here.
    TryAgain,
    /// The cluster as a whole is not serving (`cluster_state:fail`).
    ClusterDown,
    /// The cluster is down and `cluster-allow-reads-when-down` lets only reads through.
    ClusterDownReadOnly,
    /// This slot has no node serving it.
    SlotUnserved,
}

impl Redirect {
    /// The error reply text, without the leading `-`.
    pub fn error_text(&self) -> String {
        match self {
            Redirect::Moved { slot, addr } => format!("MOVED {slot} {addr}"),
            Redirect::Ask { slot, addr } => format!("ASK {slot} {addr}"),
            Redirect::CrossSlot => "CROSSSLOT Keys in request don't hash to the same slot".into(),
            Redirect::TryAgain => "TRYAGAIN Multiple keys request during rehashing of slot".into(),
            Redirect::ClusterDown => "CLUSTERDOWN The cluster is down".into(),
            Redirect::ClusterDownReadOnly => "CLUSTERDOWN The cluster is down and only accepts read commands".into(),
            Redirect::SlotUnserved => "CLUSTERDOWN Hash slot not served".into(),
        }
    }

    /// Recognises a redirection or refusal in an error reply's text (with or without the leading `-`).
    pub fn parse(text: &str) -> Option<Redirect> {
        let text = text.strip_prefix('-').unwrap_or(text);
        let mut parts = text.split_whitespace();
        let code = parts.next()?;
        match code {
            "MOVED" | "ASK" => {
                let slot = Slot::new(parts.next()?.parse().ok()?)?;
                let addr = parts.next()?.to_string();
                Some(if code == "MOVED" {
                    Redirect::Moved { slot, addr }
                } else {
                    Redirect::Ask { slot, addr }
                })
            }
            "CROSSSLOT" => Some(Redirect::CrossSlot),
            "TRYAGAIN" => Some(Redirect::TryAgain),
            "CLUSTERDOWN" if text.contains("Hash slot not served") => Some(Redirect::SlotUnserved),
            "CLUSTERDOWN" if text.contains("only accepts read commands") => Some(Redirect::ClusterDownReadOnly),
            "CLUSTERDOWN" => Some(Redirect::ClusterDown),
            _ => None,
        }
    }

    /// Whether retrying the same command, after following the redirection or waiting, can succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, Redirect::CrossSlot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        let all = [
            Redirect::Moved {
                slot: Slot::for_key(b"foo"),
                addr: "127.0.0.1:7001".into(),
            },
            Redirect::Ask {
                slot: Slot::for_key(b"bar"),
                addr: "10.0.0.2:7000".into(),
            },
            Redirect::CrossSlot,
            Redirect::TryAgain,
            Redirect::ClusterDown,
            Redirect::ClusterDownReadOnly,
            Redirect::SlotUnserved,
        ];
        for r in all {
            assert_eq!(Redirect::parse(&r.error_text()), Some(r.clone()));
            assert_eq!(Redirect::parse(&format!("-{}", r.error_text())), Some(r));
        }
    }

    #[test]
    fn exact_redis_texts() {
        assert_eq!(
            Redirect::CrossSlot.error_text(),
            "CROSSSLOT Keys in request don't hash to the same slot"
        );
        assert_eq!(
            Redirect::Moved {
                slot: Slot::for_key(b"foo"),
                addr: "127.0.0.1:7002".into()
            }
            .error_text(),
            "MOVED 12182 127.0.0.1:7002"
        );
        assert_eq!(Redirect::parse("ERR nope"), None);
    }
}
