//! An export's writer holds a few chunks of rows, never the file: ten
//! times more rows through the CSV writer (20,000 then 200,000 generated
//! rows) and the XLSX writer (10,000 then 100,000) leave this process's peak
//! resident memory (`VmHWM`) where the smaller export put it, give or take
//! a few MB, while holding the larger one's rows would take tens of MB.
//! (Its own binary: nothing else runs in the process while it measures.
//! The service's memory over a large dataset is the report benchmark's to
//! measure.)

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use usage_report::export::{write_rows, writer_stopped, ExportStore};
use usage_report::model::{ExportFormat, ExportKind, ReportParams};
use usage_report::report::{SeatUsageDay, RAW_CHUNK};

/// The peak resident memory of this process so far, in bytes.
fn peak_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// A row with an identity as long as real ones (a name, an email, a
/// 64-digit key): about 150 bytes of CSV.
fn row(i: usize) -> SeatUsageDay {
    SeatUsageDay {
        date: NaiveDate::from_ymd_opt(2026, 1, 1).expect("date")
            + chrono::TimeDelta::days((i % 90) as i64),
        team_id: format!("team-{:03}", i % 200),
        user_key: format!("{i:064x}"),
        name: Some(format!("Person {i:07} Withalongish Name")),
        email: Some(format!("person.{i:07}@a-rather-long-domain.example.com")),
        product: "photoshop".into(),
    }
}

/// What holding `rows` rows would take: their strings alone.
fn held_bytes(rows: usize) -> u64 {
    (0..rows)
        .map(|i| {
            let r = row(i);
            (r.team_id.len() + r.user_key.len() + r.product.len()) as u64
                + r.name.map_or(0, |n| n.len() as u64)
                + r.email.map_or(0, |e| e.len() as u64)
        })
        .sum()
}

/// Streams `rows` generated rows to a `format` export of `store`, as the
/// raw exports do (chunks of [`RAW_CHUNK`]); returns the file's size.
async fn export(store: &ExportStore, format: ExportFormat, rows: usize) -> u64 {
    let started = Instant::now();
    let written = write_rows(
        store,
        format,
        |_| {},
        |out| async move {
            for start in (0..rows).step_by(RAW_CHUNK) {
                let chunk = (start..(start + RAW_CHUNK).min(rows)).map(row).collect();
                out.send(chunk).await.map_err(|_| writer_stopped())?;
            }
            Ok(())
        },
    )
    .await
    .expect("written");
    assert_eq!(written.rows, rows as u64);
    let meta = store
        .save(
            "ada",
            ExportKind::SeatUsage,
            format,
            ReportParams::default(),
            None,
            written,
            Utc::now(),
        )
        .expect("saved");
    let (_, bytes) = store.open_file(&meta).expect("the file");
    eprintln!(
        "{}: {rows} rows, {} KiB, in {:?}; peak memory {} KiB",
        format.as_str(),
        bytes / 1024,
        started.elapsed(),
        peak_bytes() / 1024
    );
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_the_rows_take_no_more_memory() {
    let dir =
        std::env::temp_dir().join(format!("usage-report-export-memory-{}", std::process::id()));
    let store = ExportStore::open(&dir).expect("store");
    for (format, small, large) in [
        (ExportFormat::Csv, 20_000, 200_000),
        (ExportFormat::Xlsx, 10_000, 100_000),
    ] {
        export(&store, format, small).await;
        let before = peak_bytes();
        let file = export(&store, format, large).await;
        let grown = peak_bytes().saturating_sub(before);
        let held = held_bytes(large);
        eprintln!(
            "{}: the larger export raised the peak by {} KiB; its rows' strings are {} KiB, its file {} KiB",
            format.as_str(),
            grown / 1024,
            held / 1024,
            file / 1024
        );
        assert!(
            grown < held / 4,
            "{}: {large} rows raised the peak by {grown} bytes; holding them would take {held}",
            format.as_str()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
