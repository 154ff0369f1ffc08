//! The async, cluster-aware Shoal client.
