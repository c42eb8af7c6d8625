//! `usage-report`: the usage report over HTTP for admins (overview tiles,
//! per-user rows, exports, schedules). Not built yet: this crate holds its
//! place in the workspace, and the binary says so rather than pretend.

fn main() -> std::process::ExitCode {
    eprintln!(
        "usage-report: the report service is not available in this version; \
         the rollups are in ClickHouse (see README, \"ClickHouse tables\")"
    );
    std::process::ExitCode::from(2)
}
