//! What a cache lookup observes of the tables: a version of the whole
//! database's contents, so an entry computed from data nobody has written
//! to since lives on ([`super::cache`]).
//!
//! The version folds the database's active parts: every write to a
//! MergeTree table makes a new part, with a name never used before in its
//! table (block numbers only grow), and every merge or mutation replaces
//! parts by new ones; so a change of the data changes the set of parts.
//! The set is hashed with its size and rows, the parts' hashed (table,
//! name) combined by XOR — equal versions mean an unchanged set but for a
//! 64-bit hash collision. A merge changes the version without changing
//! the data: an entry is then computed again, never wrong.
//!
//! One server only: on a cluster each node holds its own parts, so the
//! cache keeps its age rule alone there. A read is reused by the lookups of
//! the next [`REUSE`] (the page's three requests make one), its moment being
//! when it was sent; a failed or slow read observes nothing (the age rule
//! again).

use std::time::{Duration, Instant};

use clickhouse::Client;
use tokio::sync::Mutex;

use super::cache::Observed;

/// How long one read of the version serves the lookups that follow.
pub(super) const REUSE: Duration = Duration::from_millis(250);

/// How long a lookup waits for the version: past it, it observes nothing,
/// so a slow or unreachable ClickHouse never holds up an answer the cache
/// has within its age bound.
const PATIENCE: Duration = Duration::from_secs(1);

const VERSION: &str = "SELECT cityHash64(count(), sum(rows), \
     groupBitXor(cityHash64(table, name))) \
     FROM system.parts WHERE database = currentDatabase() AND active";

/// The last version read, reused for [`REUSE`].
#[derive(Default)]
pub(super) struct Versions {
    last: Mutex<Option<Observed>>,
}

impl Versions {
    /// The tables' version now (or read less than [`REUSE`] ago); `None`
    /// when ClickHouse does not answer.
    pub(super) async fn observe(&self, client: &Client) -> Option<Observed> {
        let mut last = self.last.lock().await;
        if let Some(seen) = *last {
            if seen.at.elapsed() < REUSE {
                return Some(seen);
            }
        }
        let at = Instant::now();
        let read = tokio::time::timeout(PATIENCE, client.query(VERSION).fetch_one::<u64>()).await;
        match read {
            Ok(Ok(version)) => {
                *last = Some(Observed { version, at });
                *last
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reading the tables' version");
                None
            }
            Err(_) => {
                tracing::debug!("reading the tables' version: no answer in time");
                None
            }
        }
    }
}
