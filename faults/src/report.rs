//! One row per fault, the printed table and the JSON file.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A pass/fail check of a fault beyond the rollups (e.g. "no crash").
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub(crate) name: String,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

/// The outcome of one fault.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Row {
    /// Short id (`1`, `2`, ..., `8a`).
    pub(crate) id: String,
    /// What was done, with its sizes.
    pub(crate) fault: String,
    /// Messages published (duplicates, poison and injected input included).
    pub(crate) published: u64,
    /// Distinct authorizations stored (`uniqExact(event_id)`).
    pub(crate) in_rollups: u64,
    /// Distinct authorizations the oracle counts.
    pub(crate) expected: u64,
    /// `expected - in_rollups`, at least 0.
    pub(crate) lost: u64,
    /// Rollup rows with a figure above the oracle's, plus rows the oracle
    /// does not have at all.
    pub(crate) double_counted: u64,
    /// Every difference between the warehouse and the oracle.
    pub(crate) differences: Vec<String>,
    /// Dead letters by reason (distinct source offsets).
    pub(crate) dlq: BTreeMap<String, u64>,
    /// The oracle's dead letters by reason.
    pub(crate) dlq_expected: BTreeMap<String, u64>,
    /// Messages in the dead-letter topic (copies written again after a
    /// kill, a rebalance or a replay included).
    pub(crate) dlq_messages: u64,
    /// Peak resident memory of any usage-ingest instance (VmHWM), MiB.
    pub(crate) peak_rss_mib: f64,
    /// From the end of the fault to rollups equal to the oracle, seconds.
    pub(crate) recovery_secs: Option<f64>,
    /// Wall time of the whole fault run, seconds.
    pub(crate) elapsed_secs: f64,
    /// usage-ingest processes started.
    pub(crate) instances: u32,
    pub(crate) checks: Vec<Check>,
    pub(crate) notes: Vec<String>,
    /// Rollups equal, nothing lost, DLQ as expected, every check passed.
    pub(crate) passed: bool,
    /// Set when the fault could not be run to its end.
    pub(crate) error: Option<String>,
}

impl Row {
    pub(crate) fn dlq_ok(&self) -> bool {
        self.dlq == self.dlq_expected
    }

    /// Decides `passed` from the figures and checks.
    pub(crate) fn judge(&mut self) {
        self.passed = self.error.is_none()
            && self.differences.is_empty()
            && self.lost == 0
            && self.double_counted == 0
            && self.dlq_ok()
            && self.checks.iter().all(|c| c.ok);
    }

    fn dlq_cell(&self) -> String {
        let total: u64 = self.dlq.values().sum();
        let expected: u64 = self.dlq_expected.values().sum();
        if self.dlq_ok() {
            format!("{total} (=)")
        } else {
            format!("{total} (!={expected})")
        }
    }
}

fn mib(v: f64) -> String {
    if v > 0.0 {
        format!("{v:.0} MiB")
    } else {
        "-".into()
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "never".into(), |s| format!("{s:.1} s"))
}

/// The printed table, the dead letters by reason, and every failure.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let header = [
        "fault",
        "published",
        "in rollups",
        "expected",
        "lost",
        "double",
        "DLQ (oracle)",
        "peak RSS",
        "recovery",
        "result",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                format!("{} {}", r.id, r.fault),
                r.published.to_string(),
                r.in_rollups.to_string(),
                r.expected.to_string(),
                r.lost.to_string(),
                r.double_counted.to_string(),
                r.dlq_cell(),
                mib(r.peak_rss_mib),
                secs(r.recovery_secs),
                if r.passed { "ok" } else { "FAILED" }.to_owned(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, row: &[String]| {
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i == 0 {
                let _ = write!(out, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    line(&mut out, &header);
    for row in &cells {
        line(&mut out, row);
    }

    // Dead letters by reason: one column per fault.
    let reasons: BTreeSet<&String> = rows
        .iter()
        .flat_map(|r| r.dlq.keys().chain(r.dlq_expected.keys()))
        .collect();
    if !reasons.is_empty() {
        let _ = writeln!(
            out,
            "\nDLQ by reason (distinct source offsets; \"!N\": the oracle expects N)"
        );
        let width = reasons.iter().map(|r| r.len()).max().unwrap_or(6).max(6);
        let _ = write!(out, "{:<width$}", "reason");
        for r in rows {
            let _ = write!(out, " {:>8}", r.id);
        }
        out.push('\n');
        for reason in reasons {
            let _ = write!(out, "{reason:<width$}");
            for r in rows {
                let got = r.dlq.get(reason).copied().unwrap_or(0);
                let want = r.dlq_expected.get(reason).copied().unwrap_or(0);
                let cell = if got == want {
                    got.to_string()
                } else {
                    format!("{got}!{want}")
                };
                let _ = write!(out, " {cell:>8}");
            }
            out.push('\n');
        }
        let _ = write!(out, "{:<width$}", "(messages)");
        for r in rows {
            let _ = write!(out, " {:>8}", r.dlq_messages);
        }
        out.push('\n');
    }

    // Checks and notes.
    for r in rows {
        let _ = writeln!(
            out,
            "\n{} {}: {} ({:.0} s, {} usage-ingest processes)",
            r.id,
            r.fault,
            if r.passed { "ok" } else { "FAILED" },
            r.elapsed_secs,
            r.instances
        );
        if let Some(error) = &r.error {
            let _ = writeln!(out, "  error: {error}");
        }
        for c in &r.checks {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        for n in &r.notes {
            let _ = writeln!(out, "  - {n}");
        }
        if !r.differences.is_empty() {
            let _ = writeln!(
                out,
                "  {} differences with the oracle, first ones:",
                r.differences.len()
            );
            for d in r.differences.iter().take(12) {
                let _ = writeln!(out, "    {d}");
            }
        }
    }
    out
}
