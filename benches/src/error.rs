//! [`BenchError`], the one error type of the load generator: what stops a run before or after it, never what
//! happens to a single request (those are counted, see [`crate::stats`]).

use shoal_client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Config(String),
    /// A node could not be reached or the cluster could not be discovered before the run.
    #[error("{addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: ClientError,
    },
    /// Writing the JSON results or the acknowledgement log failed.
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}
