//! Differential test: every data file in `tests/diff/` is replayed against the real redis-server and against
//! shoal-server, and the raw reply bytes are compared. All mismatches are reported before the test fails.
//! The file format is in `tests/diff/README.md`; `DIFF_FILES=strings,keys` runs only some files and
//! `DIFF_TRACE=1` prints every command with both replies.

use shoal_tests::diff;
use shoal_tests::{RedisServer, ShoalServer};

#[test]
fn replies_match_redis() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("diff");
    let files = diff::data_files(&dir);
    assert!(!files.is_empty(), "no data files in {}", dir.display());

    let args = ["--enable-debug-command", "yes"];
    let redis = RedisServer::start(&args);
    let shoal = ShoalServer::start(&args);

    let (commands, mismatches) = diff::run_files(&files, redis.port, shoal.port);
    eprintln!(
        "differential: {} files, {commands} commands, {} mismatches",
        files.len(),
        mismatches.len()
    );
    if !mismatches.is_empty() {
        let mut text = String::new();
        for m in &mismatches {
            text.push_str(&m.to_string());
            text.push('\n');
        }
        panic!(
            "{} of {commands} commands replied differently from redis-server:\n{text}",
            mismatches.len()
        );
    }
}
