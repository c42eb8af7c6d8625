//! Writing an export's file as its rows come, so that memory does not grow
//! with the export: the reader (async: ClickHouse, the report's ordered
//! lines) hands chunks of rows through a bounded queue to a blocking writer
//! ([`RowWriter`]) that appends them to a temporary file of the store
//! ([`PartFile`]). The file is put in place — renamed atomically, as every
//! file of the store is — only once every row was read and written: a
//! partial file is never visible as an export's, and one left by a failure
//! or a crash is deleted (at once, or by the sweeper).
//!
//! What is held at a time: the chunks in the queue ([`QUEUE_CHUNKS`]), the
//! chunk being read and the one being written, whatever their size (the
//! readers' chunks: `report::REPORT_CHUNK`, `report::RAW_CHUNK`).

use std::fs;
use std::future::Future;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::render::{Record, RowWriter};
use super::store::{create_private, remove_quietly, sync_dir, TMP_MARK};
use super::{ExportError, ExportStore};
use crate::error::ApiError;
use crate::model::ExportFormat;

/// Chunks waiting for the writer at most; the reader waits when it is full.
pub const QUEUE_CHUNKS: usize = 2;

/// How often the writer reports its progress (rows written) at most.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A temporary file of the store (`.export.tmp-<uuid>`, only the service's
/// user may read it), deleted when dropped unless it was put in place.
#[derive(Debug)]
pub struct PartFile {
    path: PathBuf,
    placed: bool,
}

impl PartFile {
    /// Says the file is being written: the sweeper deletes temporary files
    /// untouched for an hour, and an XLSX file is only written at its end.
    fn touch(&self) {
        let touched = fs::File::options()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        if let Err(e) = touched {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot touch a temporary export file");
        }
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.placed {
            remove_quietly(&self.path);
        }
    }
}

/// A complete export file, synced, not yet visible: [`ExportStore::complete`]
/// or [`ExportStore::save`] puts it in place. Dropped, it is deleted.
#[derive(Debug)]
pub struct Written {
    part: PartFile,
    /// Data lines (the header excluded).
    pub rows: u64,
}

impl ExportStore {
    /// A new temporary file in the store's directory, open for writing.
    fn part(&self) -> Result<(PartFile, fs::File), ExportError> {
        let path = self
            .dir()
            .join(format!(".export{TMP_MARK}{}", Uuid::new_v4().simple()));
        let file = create_private(&path).map_err(|e| ExportError::io(&path, e))?;
        Ok((
            PartFile {
                path,
                placed: false,
            },
            file,
        ))
    }

    /// Writes `bytes` (a file rendered in memory) as a complete file.
    pub fn written(&self, rows: u64, bytes: &[u8]) -> Result<Written, ExportError> {
        use std::io::Write;
        let (part, mut file) = self.part()?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| ExportError::io(&part.path, e))?;
        Ok(Written { part, rows })
    }

    /// Renames a written file to `path`: readers see no file or the whole
    /// one, never a part.
    pub(super) fn place(
        &self,
        written: Written,
        path: &std::path::Path,
    ) -> Result<(), ExportError> {
        let mut part = written.part;
        fs::rename(&part.path, path).map_err(|e| ExportError::io(path, e))?;
        part.placed = true;
        sync_dir(self.dir());
        Ok(())
    }
}

/// A file being written: the rows so far in a temporary file of the store.
struct FileWriter<R: Record> {
    part: PartFile,
    rows: RowWriter<R, BufWriter<fs::File>>,
}

impl<R: Record> FileWriter<R> {
    fn create(store: &ExportStore, format: ExportFormat) -> Result<FileWriter<R>, ExportError> {
        let (part, file) = store.part()?;
        // XLSX keeps its rows in scratch files beside the exports (on
        // disk, unnamed), not in a temporary directory that may be memory.
        let rows = RowWriter::new(format, BufWriter::new(file), Some(store.dir()))?;
        Ok(FileWriter { part, rows })
    }

    /// The complete file: flushed and synced.
    fn finish(self) -> Result<Written, ExportError> {
        let rows = self.rows.rows();
        let path = self.part.path.clone();
        let file = self
            .rows
            .finish()?
            .into_inner()
            .map_err(|e| ExportError::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| ExportError::io(&path, e))?;
        Ok(Written {
            part: self.part,
            rows,
        })
    }
}

/// The answer of a reader whose writer stopped (the writer's own error is
/// the one reported).
pub fn writer_stopped() -> ApiError {
    ApiError::internal(&io::Error::other("the export's writer stopped"))
}

/// Writes the rows `read` sends, chunk by chunk, as a `format` file of
/// `store`, off the async threads, telling `progress` the rows written at
/// most every [`PROGRESS_EVERY`]. `read` gets the sending end of a queue of
/// [`QUEUE_CHUNKS`] chunks (a send waits while it is full; it fails once
/// the writer stopped: answer [`writer_stopped`]) and returns once every
/// row is sent. The file is complete only if both succeed; a writer's
/// error wins over its reader's.
pub async fn write_rows<R, F, Fut>(
    store: &ExportStore,
    format: ExportFormat,
    mut progress: impl FnMut(u64) + Send + 'static,
    read: F,
) -> Result<Written, ApiError>
where
    R: Record + Send + 'static,
    F: FnOnce(mpsc::Sender<Vec<R>>) -> Fut,
    Fut: Future<Output = Result<(), ApiError>>,
{
    let (sender, mut chunks) = mpsc::channel::<Vec<R>>(QUEUE_CHUNKS);
    let writer = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Result<FileWriter<R>, ExportError> {
            let mut file = FileWriter::<R>::create(&store, format)?;
            let mut told = (0, Instant::now());
            while let Some(chunk) = chunks.blocking_recv() {
                for row in &chunk {
                    file.rows.write(row)?;
                }
                let rows = file.rows.rows();
                if rows != told.0 && (told.0 == 0 || told.1.elapsed() >= PROGRESS_EVERY) {
                    progress(rows);
                    file.part.touch();
                    told = (rows, Instant::now());
                }
            }
            Ok(file)
        })
    };
    let read = read(sender).await;
    let file = match writer.await {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => return Err(ApiError::internal(&e)),
        Err(e) => return Err(ApiError::internal(&e)),
    };
    match read {
        Ok(()) => match tokio::task::spawn_blocking(move || file.finish()).await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(e)) => Err(ApiError::internal(&e)),
            Err(e) => Err(ApiError::internal(&e)),
        },
        Err(e) => {
            // The part is deleted off the async threads.
            let _ = tokio::task::spawn_blocking(move || drop(file)).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::scratch::TempDir;
    use crate::model::ReportRow;
    use crate::report::SeatUsageDay;
    use chrono::NaiveDate;

    fn day(i: usize) -> SeatUsageDay {
        SeatUsageDay {
            date: NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
            team_id: "t".into(),
            user_key: format!("u{i}"),
            name: None,
            email: None,
            product: "p".into(),
        }
    }

    fn names(store: &ExportStore) -> Vec<String> {
        let mut names: Vec<String> = store
            .entries()
            .expect("listed")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn rows_are_written_as_they_come_and_only_a_whole_file_is_kept() {
        let dir = TempDir::new("stream");
        let store = ExportStore::open(&dir.0).expect("store");
        let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let progress = {
            let told = told.clone();
            move |rows| told.lock().expect("lock").push(rows)
        };
        let written = write_rows(&store, ExportFormat::Csv, progress, |out| async move {
            for chunk in 0..3 {
                let rows = (0..10).map(|i| day(chunk * 10 + i)).collect();
                out.send(rows).await.map_err(|_| writer_stopped())?;
            }
            Ok(())
        })
        .await
        .expect("written");
        assert_eq!(written.rows, 30);
        assert_eq!(told.lock().expect("lock").first(), Some(&10));
        // Not visible until put in place; a temporary file until then.
        let parts = names(&store);
        assert_eq!(parts.len(), 1, "{parts:?}");
        assert!(parts[0].starts_with(".export.tmp-"), "{parts:?}");
        let path = store.dir().join("placed.csv");
        store.place(written, &path).expect("placed");
        let text = fs::read_to_string(&path).expect("file");
        assert!(text.starts_with("date,team_id,user_key,name,email,product\r\n"));
        assert_eq!(text.lines().count(), 31);
        assert_eq!(names(&store), vec!["placed.csv".to_owned()]);

        // A reader that fails leaves nothing behind.
        let failed = write_rows(
            &store,
            ExportFormat::Xlsx,
            |_| {},
            |out| async move {
                out.send(vec![day(1)]).await.map_err(|_| writer_stopped())?;
                Err(ApiError::unavailable(
                    "ClickHouse",
                    &io::Error::other("gone"),
                ))
            },
        )
        .await;
        assert_eq!(
            failed.map(|w| w.rows).err().map(|e| e.code()),
            Some("unavailable")
        );
        assert_eq!(names(&store), vec!["placed.csv".to_owned()]);

        // A written file that is dropped is deleted.
        let dropped =
            write_rows::<ReportRow, _, _>(&store, ExportFormat::Xlsx, |_| {}, |_| async { Ok(()) })
                .await
                .expect("written");
        assert_eq!(dropped.rows, 0);
        drop(dropped);
        assert_eq!(names(&store), vec!["placed.csv".to_owned()]);
    }
}
