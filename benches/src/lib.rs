//! Shoal load generator and microbenchmarks.
