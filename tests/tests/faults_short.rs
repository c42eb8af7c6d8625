//! The short fault suite (`usage-faults --short`, see `faults/README.md`):
//! usage-ingest killed, ClickHouse and the broker stopped, a rebalance
//! storm, duplicates and a replay, bad input and failing inserts, each
//! against the load generator's oracle, on a ClickHouse and a broker of the
//! suite's own (the shared services are never stopped or paused). A few
//! minutes; the long suite runs before a release (`scripts/faults`).

use std::process::Command;
use usage_tests::services;

#[test]
fn the_short_fault_suite_passes() {
    // Both binaries: the suite runs the debug usage-ingest it finds beside it.
    let suite = services::binary("usage-faults", "usage-faults");
    let _ = services::binary("usage-ingest", "usage-ingest");
    let output = Command::new(&suite)
        .arg("--short")
        .current_dir(usage_tests::repo_root())
        .output()
        .expect("usage-faults runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the short fault suite failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
